"""Delivery to an external file: mbox format, the texts local(8) logs, /dev/null."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from postier.delivery.status import Kind
from postier.local.file import deliver_file

MSG = [b"Subject: hi\n\nFrom here\nbye\n"]


def _deliver(path: str, size_limit: int = 0):
    return deliver_file(path, sender="ann@example.org", recipient="log@example.com",
                        orig_recipient="log@example.com", content=iter(MSG), arrival=0.0,
                        size_limit=size_limit, locks=["fcntl", "dotlock"], uid=None, gid=None,
                        lock_attempts=2, lock_delay=0.01, stale_lock_time=500)


def test_appends_in_mbox_format_twice(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    for _ in range(2):
        st = _deliver(str(path))
        assert (st.kind, st.dsn, st.text) == (Kind.SENT, "2.0.0", f"delivered to file: {path}")
    data = path.read_bytes()
    assert data.count(b"From ann@example.org  ") == 2
    assert b"\nDelivered-To: log@example.com\n" in data
    assert b"\n>From here\n" in data
    assert not (tmp_path / "archive.lock").exists()


def test_failure_text_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    st = _deliver(str(path), size_limit=10)
    assert st.kind is Kind.BOUNCED
    assert st.text.startswith(f"cannot append message to file {path}: "), st.text
    assert path.read_bytes() == b""  # truncated back


def test_a_directory_is_refused(tmp_path: Path) -> None:
    st = _deliver(str(tmp_path))
    assert st.kind is not Kind.SENT
    assert st.text.startswith(f"cannot append message to file {tmp_path}: ")


def test_dev_null_takes_the_message() -> None:
    st = _deliver("/dev/null")
    assert (st.kind, st.text) == (Kind.SENT, "delivered to file: /dev/null")


def _unwritable_dir_file() -> tuple[Path, int | None]:
    """A 0666 file in a directory its deliverer cannot write: as root, a root-owned 0755
    directory delivered to as nobody; otherwise a 0555 directory of our own."""
    base = Path(tempfile.mkdtemp(prefix="postier-file-"))
    target = base / "sink.mbox"
    target.touch()
    target.chmod(0o666)
    if os.geteuid() == 0:
        base.chmod(0o755)
        return target, 65534
    base.chmod(0o555)
    return target, None


def test_dotlock_may_fail_in_an_unwritable_directory() -> None:
    """Postfix delivers to a writable file in a directory the user cannot write: the
    dotlock is skipped (MBOX_DOT_LOCK_MAY_FAIL), the fcntl lock still taken."""
    target, uid = _unwritable_dir_file()
    try:
        for _ in range(2):
            st = deliver_file(str(target), sender="ann@example.org", recipient="log@example.com",
                              orig_recipient="log@example.com", content=iter(MSG), arrival=0.0,
                              size_limit=0, locks=["fcntl", "dotlock"], uid=uid, gid=uid,
                              lock_attempts=2, lock_delay=0.01, stale_lock_time=500)
            assert (st.kind, st.text) == (Kind.SENT, f"delivered to file: {target}"), st.text
        assert target.read_bytes().count(b"From ann@example.org  ") == 2
        assert not Path(str(target) + ".lock").exists()
    finally:
        target.parent.chmod(0o755)
        shutil.rmtree(target.parent)


def test_a_held_dotlock_still_defers(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    (tmp_path / "archive.lock").write_bytes(b"")
    st = _deliver(str(path))
    assert st.kind is Kind.DEFERRED
    assert st.text == (f"cannot append message to file {path}: "
                       f"unable to create lock file {path}.lock: File exists"), st.text
