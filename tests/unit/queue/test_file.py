"""Queue files: round trips, in-place status, incomplete files, crash injection."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import CorruptQueueFile, Envelope, QueueFile, QueueWriter, Recipient
from postier.queue.ids import is_queue_id


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def write_message(qdir: str, chunks: list[bytes], env: Envelope) -> str:
    w = QueueWriter.create(qdir)
    for c in chunks:
        w.write(c)
    assert w.size == sum(len(c) for c in chunks)
    return w.commit(env)


def read_back(qdir: str, qid: str) -> tuple[Envelope, bytes]:
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        assert qf.queue_id == qid
        content = b"".join(qf.iter_content(chunk_size=1000))
        assert qf.content_size == len(content)
        return qf.envelope, content


def test_round_trip_null_sender_many_recipients(qdir: str) -> None:
    rcpts = [Recipient(f"user{i}@example.com", f"User{i}@Example.com") for i in range(300)]
    env = Envelope("", rcpts, 1764103732.123456,
                   {"client_name": "localhost", "client_address": "127.0.0.1",
                    "helo_name": "milou.example.net", "protocol": "ESMTP", "sasl_username": ""})
    qid = write_message(qdir, [b"Subject: hi\n\nbody\n"], env)
    assert is_queue_id(qid)
    got, content = read_back(qdir, qid)
    assert got == env
    assert content == b"Subject: hi\n\nbody\n"


def test_empty_content_and_odd_strings(qdir: str) -> None:
    env = Envelope("we\"ird\nsender\udcff@x", [Recipient("a b@x", "")], 0.0,
                   {"k\n": "v\x00\u00e9"})
    qid = write_message(qdir, [], env)
    got, content = read_back(qdir, qid)
    assert content == b""
    assert got == env


def test_multi_megabyte_binary_streamed(qdir: str) -> None:
    block = bytes(range(256)) * 256 + b"\nFrom the start\n>From x\n\x00\xff\r\n"
    chunks = [block] * 60 + [b"x" * 70000, b"tail without newline"]
    qid = write_message(qdir, chunks, Envelope("s@x", [Recipient("r@y")], 5.0))
    _env, content = read_back(qdir, qid)
    assert content == b"".join(chunks)
    assert len(content) > 4_000_000


def test_writer_does_not_hold_the_message(qdir: str) -> None:
    w = QueueWriter.create(qdir)
    for _ in range(100):
        w.write(b"y" * 50_000)
        assert len(w._buf) < 1 << 17
    w.abort()


def test_mark_done_in_place_survives_reopen(qdir: str) -> None:
    env = Envelope("s@x", [Recipient("a@x"), Recipient("b@x"), Recipient("c@x")], 1.0)
    qid = write_message(qdir, [b"hello\n"], env)
    path = dirs.path(qdir, "incoming", qid)
    size = os.path.getsize(path)
    with QueueFile.open(path) as qf:
        qf.mark_done(1)
        assert qf.envelope.recipients[1].done
    assert os.path.getsize(path) == size
    with QueueFile.open(path) as qf:
        assert [r.done for r in qf.envelope.recipients] == [False, True, False]
        qf.mark_done(2)
    with QueueFile.open(path) as qf:
        assert [r.done for r in qf.envelope.recipients] == [False, True, True]


def test_done_recipients_written_at_commit(qdir: str) -> None:
    env = Envelope("s@x", [Recipient("a@x", done=True), Recipient("b@x")], 1.0)
    got, _ = read_back(qdir, write_message(qdir, [b"x\n"], env))
    assert [r.done for r in got.recipients] == [True, False]


def test_incomplete_file_is_corrupt(qdir: str) -> None:
    w = QueueWriter.create(qdir)
    w.write(b"a" * 100_000)  # flushed: the header says "not committed"
    w._flush()
    tmp = w._tmp_path
    final = os.path.join(qdir, "incoming", "ABCDEF123")
    os.link(tmp, final)
    with pytest.raises(CorruptQueueFile):
        QueueFile.open(final)
    w.abort()
    assert not os.path.exists(tmp)


@pytest.mark.parametrize("cut", [0, 3, 10, 22, 40, -3, -1])
def test_truncated_file_is_corrupt(qdir: str, cut: int) -> None:
    qid = write_message(qdir, [b"Subject: x\n\nbody\n"], Envelope("s", [Recipient("r")], 1.0))
    path = dirs.path(qdir, "incoming", qid)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:cut])
    with pytest.raises(CorruptQueueFile):
        QueueFile.open(path)


def test_garbled_envelope_is_corrupt(qdir: str) -> None:
    qid = write_message(qdir, [b"x\n"], Envelope("s", [Recipient("r")], 1.0))
    path = dirs.path(qdir, "incoming", qid)
    data = Path(path).read_bytes().replace(b'S "s"', b"Q zzz")
    Path(path).write_bytes(data)
    with pytest.raises(CorruptQueueFile):
        QueueFile.open(path)


def test_abort_is_idempotent_and_leaves_nothing(qdir: str) -> None:
    w = QueueWriter.create(qdir)
    w.write(b"data\n")
    w.abort()
    w.abort()
    assert os.listdir(os.path.join(qdir, "incoming")) == []


def test_temp_file_is_invisible_to_scan(qdir: str) -> None:
    w = QueueWriter.create(qdir)
    w.write(b"x\n")
    assert list(dirs.scan(qdir, "incoming")) == []
    qid = w.commit(Envelope("s", [Recipient("r")], 1.0))
    assert [q for q, _ in dirs.scan(qdir, "incoming")] == [qid]


def test_commit_twice_refused(qdir: str) -> None:
    w = QueueWriter.create(qdir)
    w.commit(Envelope("s", [Recipient("r")], 1.0))
    with pytest.raises(ValueError):
        w.commit(Envelope("s", [Recipient("r")], 1.0))


def test_queue_ids_unique(qdir: str) -> None:
    writers = [QueueWriter.create(qdir) for _ in range(500)]
    ids = {w.queue_id for w in writers}
    assert len(ids) == 500
    assert all(is_queue_id(i) for i in ids)
    for w in writers:
        w.abort()


class Crash(Exception):
    pass


def _steps(qdir: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run one commit, recording the fsync/rename steps it takes."""
    steps: list[str] = []
    real_rename = os.rename

    def fsync(fd: int) -> None:
        steps.append("fsync")

    def rename(a: str, b: str) -> None:
        steps.append("rename")
        real_rename(a, b)

    monkeypatch.setattr(qfile, "_fsync", fsync)
    monkeypatch.setattr(qfile, "_rename", rename)
    w = QueueWriter.create(qdir)
    w.write(b"x" * 1024)
    w.commit(Envelope("s", [Recipient("r")], 1.0))
    return steps


def test_small_commit_costs_two_fsyncs(qdir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _steps(qdir, monkeypatch) == ["fsync", "rename", "fsync"]


@pytest.mark.parametrize("content", [b"x" * 1024, b"y" * 200_000])
@pytest.mark.parametrize("crash_at", [0, 1, 2])
def test_crash_at_each_step(
    qdir: str, monkeypatch: pytest.MonkeyPatch, crash_at: int, content: bytes,
) -> None:
    """A crash at any step leaves no visible file or a complete one, never a half one."""
    count = 0
    real_rename = os.rename

    def step(real: Callable[[], None]) -> None:
        nonlocal count
        if count == crash_at:
            count += 1
            raise Crash
        count += 1
        real()

    monkeypatch.setattr(qfile, "_fsync", lambda fd: step(lambda: None))
    monkeypatch.setattr(qfile, "_rename", lambda a, b: step(lambda: real_rename(a, b)))
    w = QueueWriter.create(qdir)
    w.write(content)
    with pytest.raises(Crash):
        w.commit(Envelope("s", [Recipient("r")], 1.0))
    # The process "dies" here: no abort. What does the next start see?
    visible = list(dirs.scan(qdir, "incoming"))
    for _qid, path in visible:
        with QueueFile.open(path) as qf:
            assert b"".join(qf.iter_content()) == content
            assert qf.envelope.sender == "s"
    # Before the rename nothing is visible; when the directory fsync fails the rename is
    # undone (the client gets an error, so the message must not be delivered either).
    assert visible == []
    # Stale temp files are cleaned at recovery.
    assert dirs.recover(qdir, now=10**12) == 0
    assert [n for n in os.listdir(os.path.join(qdir, "incoming")) if n.startswith(".")] == []
    w.abort()


def test_crash_between_fsync_and_rename_keeps_complete_temp(
    qdir: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The temp file left by a crash before rename is complete but never delivered."""
    def boom(a: str, b: str) -> None:
        raise Crash
    monkeypatch.setattr(qfile, "_rename", boom)
    w = QueueWriter.create(qdir)
    w.write(b"hello\n")
    with pytest.raises(Crash):
        w.commit(Envelope("s", [Recipient("r")], 1.0))
    names = os.listdir(os.path.join(qdir, "incoming"))
    assert len(names) == 1 and names[0].startswith(qfile.TMP_PREFIX)
    assert list(dirs.scan(qdir, "incoming")) == []
    assert dirs.recover(qdir) == 0  # young temp files stay (a writer may still be busy)
    assert len(os.listdir(os.path.join(qdir, "incoming"))) == 1
    w.abort()
    assert os.listdir(os.path.join(qdir, "incoming")) == []


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_files_are_corrupt_or_valid(qdir: str, data: st.DataObject) -> None:
    """Any damage gives CorruptQueueFile or a parse; never another exception."""
    qid = write_message(qdir, [b"Subject: x\n\nbody\n"],
                        Envelope("s@x", [Recipient("r@y", "R@y")], 1.0, {"a": "b"}))
    path = Path(dirs.path(qdir, "incoming", qid))
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.sampled_from(b'0123456789abcdefRDXSTA "[],\n\x00\xff'))
    path.write_bytes(bytes(raw))
    try:
        with QueueFile.open(str(path)) as qf:
            b"".join(qf.iter_content())
            assert all(isinstance(r.address, str) for r in qf.envelope.recipients)
    except CorruptQueueFile:
        pass
    path.unlink()
