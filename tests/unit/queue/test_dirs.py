"""Queue directories: layout, hashed paths, move, scan, recover."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueWriter, Recipient


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path / "spool")
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def enqueue(qdir: str, body: bytes = b"x\n") -> str:
    w = QueueWriter.create(qdir)
    w.write(body)
    return w.commit(Envelope("s@x", [Recipient("r@y")], 1.0))


def _mode(qdir: str, name: str) -> int:
    return stat.S_IMODE(os.stat(os.path.join(qdir, name)).st_mode)


def test_ensure_creates_postfix_layout_with_modes(qdir: str) -> None:
    for name in ("incoming", "active", "deferred", "hold", "corrupt", "bounce", "defer",
                 "trace", "flush", "saved", "maildrop", "private", "public", "pid"):
        st = os.stat(os.path.join(qdir, name))
        assert stat.S_ISDIR(st.st_mode)
    assert _mode(qdir, "active") == 0o700
    assert _mode(qdir, "private") == 0o700
    assert _mode(qdir, "public") == 0o2710  # Debian's postfix: setgid_group postdrop
    assert _mode(qdir, "maildrop") == 0o1730
    assert _mode(qdir, "pid") == 0o755
    assert _mode(qdir, "") == 0o755


def test_ensure_keeps_an_existing_layout_and_set_permissions_repairs_it(qdir: str) -> None:
    os.chmod(os.path.join(qdir, "incoming"), 0o777)
    os.chmod(os.path.join(qdir, "public"), 0o710)  # as Postfix's own postfix-files makes it
    assert dirs.ensure(qdir, None, None) == []
    assert _mode(qdir, "incoming") == 0o777
    assert _mode(qdir, "public") == 0o710
    changes = dirs.set_permissions(qdir, None, None)
    assert _mode(qdir, "incoming") == 0o700
    assert _mode(qdir, "public") == 0o2710
    assert len(changes) == 2
    assert dirs.set_permissions(qdir, None, None) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_ensure_gives_dirs_to_mail_owner(tmp_path: Path) -> None:
    d = str(tmp_path / "q")
    dirs.ensure(d, 12345, 23456)
    st = os.stat(os.path.join(d, "deferred"))
    assert st.st_uid == 12345
    assert st.st_gid == 0  # Postfix leaves the group of its private directories alone
    for name, mode in (("public", 0o2710), ("maildrop", 0o1730)):
        st = os.stat(os.path.join(d, name))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, mode)
    assert os.stat(os.path.join(d, "pid")).st_uid == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_ensure_never_regroups_an_existing_public_but_set_permissions_does(
        tmp_path: Path) -> None:
    d = str(tmp_path / "q")
    dirs.ensure(d, 12345, 23456)
    os.chown(os.path.join(d, "public"), 54321, 11111)
    os.chmod(os.path.join(d, "public"), 0o755)
    assert dirs.ensure(d, 12345, 23456) == [f"{d}/public: owner 54321 -> 12345"]
    st = os.stat(os.path.join(d, "public"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 11111, 0o755)
    dirs.set_permissions(d, 12345, 23456)
    st = os.stat(os.path.join(d, "public"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o2710)


def test_hashed_paths() -> None:
    assert dirs.path("/q", "deferred", "22D2A8871") == "/q/deferred/2/22D2A8871"
    assert dirs.path("/q", "defer", "22D2A8871") == "/q/defer/2/22D2A8871"
    assert dirs.path("/q", "incoming", "22D2A8871") == "/q/incoming/22D2A8871"
    assert dirs.path("/q", "deferred", "22D2A8871", depth=2) == "/q/deferred/2/2/22D2A8871"
    assert dirs.path("/q", "deferred", "22D2A8871", depth=0) == "/q/deferred/22D2A8871"
    assert (dirs.path("/q", "active", "B2A8871", hash_names=["active"], depth=3)
            == "/q/active/B/2/A/B2A8871")


def test_move_round_trip_through_hashed_state(qdir: str) -> None:
    qid = enqueue(qdir)
    p = dirs.move(qdir, qid, "incoming", "active")
    assert p == os.path.join(qdir, "active", qid) and os.path.isfile(p)
    p = dirs.move(qdir, qid, "active", "deferred")
    assert p == os.path.join(qdir, "deferred", qid[0], qid) and os.path.isfile(p)
    assert list(dirs.scan(qdir, "deferred")) == [(qid, p)]
    p = dirs.move(qdir, qid, "deferred", "active")
    assert list(dirs.scan(qdir, "deferred")) == []
    assert list(dirs.scan(qdir, "active")) == [(qid, p)]


def test_move_missing_raises(qdir: str) -> None:
    with pytest.raises(FileNotFoundError):
        dirs.move(qdir, "ABCDEF1", "incoming", "active")
    with pytest.raises(FileNotFoundError):
        dirs.move(qdir, "ABCDEF1", "deferred", "active")


def test_move_twice_only_one_wins(qdir: str) -> None:
    qid = enqueue(qdir)
    dirs.move(qdir, qid, "incoming", "active")
    with pytest.raises(FileNotFoundError):
        dirs.move(qdir, qid, "incoming", "active")


def test_scan_skips_temp_files_and_dirs(qdir: str) -> None:
    ids = {enqueue(qdir) for _ in range(20)}
    w = QueueWriter.create(qdir)
    w.write(b"in progress")
    os.mkdir(os.path.join(qdir, "incoming", "X"))
    assert {q for q, _ in dirs.scan(qdir, "incoming")} == ids
    w.abort()


def test_scan_hashed_depth_two(qdir: str) -> None:
    ids = [enqueue(qdir) for _ in range(10)]
    for qid in ids:
        dirs.move(qdir, qid, "incoming", "deferred", depth=2)
    found = dict(dirs.scan(qdir, "deferred", depth=2))
    assert set(found) == set(ids)
    for qid, p in found.items():
        assert p == os.path.join(qdir, "deferred", qid[0], qid[1], qid)


def test_scan_missing_state_dir_is_empty(tmp_path: Path) -> None:
    assert list(dirs.scan(str(tmp_path), "incoming")) == []


def test_recover_moves_active_back_and_removes_stale_temps(qdir: str) -> None:
    ids = [enqueue(qdir) for _ in range(5)]
    for qid in ids[:3]:
        dirs.move(qdir, qid, "incoming", "active")
    stale = QueueWriter.create(qdir)
    stale.write(b"crashed writer")
    fresh = QueueWriter.create(qdir)
    fresh.write(b"busy writer")
    old = 1_000_000.0
    os.utime(stale._tmp_path, (old, old))
    assert dirs.recover(qdir) == 3
    assert list(dirs.scan(qdir, "active")) == []
    assert {q for q, _ in dirs.scan(qdir, "incoming")} == set(ids)
    assert not os.path.exists(stale._tmp_path)
    assert os.path.exists(fresh._tmp_path)
    assert dirs.recover(qdir) == 0
    fresh.abort()
    stale.abort()


def test_long_ids_hash_on_microseconds(qdir: str) -> None:
    from postier.queue.ids import new_long_queue_id
    qid = new_long_queue_id(0x8871, 1_764_103_732_000_000 + 0xA2D2A)
    assert dirs.path("/q", "deferred", qid) == f"/q/deferred/A/{qid}"
    assert dirs.path("/q", "deferred", qid, depth=2) == f"/q/deferred/A/2/{qid}"
    w = QueueWriter.create(qdir, long_queue_ids=True)
    w.write(b"x\n")
    lid = w.commit(Envelope("s", [Recipient("r")], 1.0))
    p = dirs.move(qdir, lid, "incoming", "deferred")
    assert list(dirs.scan(qdir, "deferred")) == [(lid, p)]
