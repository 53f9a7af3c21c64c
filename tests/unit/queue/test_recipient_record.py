"""Recipient records: today's six fields, older two-field files, durable last status."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import CorruptQueueFile, Envelope, QueueFile, QueueWriter, Recipient


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def commit(qdir: str, env: Envelope, content: bytes = b"Subject: x\n\nbody\n") -> str:
    w = QueueWriter.create(qdir)
    w.write(content)
    qid = w.commit(env)
    return dirs.path(qdir, "incoming", qid)


# A queue file exactly as postier wrote it before recipient records had six fields
# (two-element R records), built by hand so that the writer cannot hide a change.
OLD_CONTENT = b"Received: from x\nSubject: old\n\nhello\n"
OLD_ENVELOPE = (
    b'T 1764103732.123456\n'
    b'S "sender@example.net"\n'
    b'A ["client_address", "192.0.2.1"]\n'
    b'RR ["alice@example.com", "Alice@Example.com"]\n'
    b'RD ["bob@example.com", ""]\n'
    b'RR ["carol@example.com", "carol@example.com"]\n'
    b'X\n'
)


def old_format_file(qdir: str) -> str:
    offset = len(qfile.MAGIC) + 18 + len(OLD_CONTENT)
    data = qfile.MAGIC + f"E{offset:016x}\n".encode() + OLD_CONTENT + OLD_ENVELOPE
    path = os.path.join(qdir, "incoming", "4F2B31A7C")
    Path(path).write_bytes(data)
    return path


def test_todays_format_is_read_with_empty_new_fields(qdir: str) -> None:
    with QueueFile.open(old_format_file(qdir)) as qf:
        assert qf.envelope == Envelope(
            "sender@example.net",
            [
                Recipient("alice@example.com", "Alice@Example.com"),
                Recipient("bob@example.com", "", done=True),
                Recipient("carol@example.com", "carol@example.com"),
            ],
            1764103732.123456,
            {"client_address": "192.0.2.1"},
        )
        assert b"".join(qf.iter_content()) == OLD_CONTENT
        assert all(r.dsn_notify == r.dsn_orcpt == r.status == r.reason == ""
                   for r in qf.envelope.recipients)


def test_todays_format_takes_mark_done_and_status(qdir: str) -> None:
    path = old_format_file(qdir)
    with QueueFile.open(path) as qf:
        qf.mark_done(2)
        qf.record_status({0: ("4.2.2", "mailbox full")})
    with QueueFile.open(path) as qf:
        rcpts = qf.envelope.recipients
        assert [r.done for r in rcpts] == [False, True, True]
        assert (rcpts[0].status, rcpts[0].reason) == ("4.2.2", "mailbox full")
        assert b"".join(qf.iter_content()) == OLD_CONTENT


def test_new_fields_round_trip(qdir: str) -> None:
    env = Envelope("s@x", [
        Recipient("a@x", "A@x", False, "SUCCESS,DELAY", "rfc822;A@x", "4.4.1",
                  "connect to mx.x[192.0.2.9]:25: Connection refused"),
        Recipient("b@x", "", True, "NEVER", "", "2.0.0", "delivered to mailbox"),
        Recipient("c\udcff@x\n", "\u00e9", False, "", "utf-8;\u00e9@x", "", ""),
    ], 2.5)
    with QueueFile.open(commit(qdir, env)) as qf:
        assert qf.envelope == env


def test_record_status_is_durable_and_the_last_one_wins(
    qdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x"), Recipient("b@x"),
                                         Recipient("c@x", status="4.0.0", reason="old")], 1.0))
    fsyncs: list[int] = []
    real_fsync = qfile._fsync

    def fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(qfile, "_fsync", fsync)
    with QueueFile.open(path) as qf:
        qf.record_status({0: ("4.4.1", "connection refused"), 2: ("4.2.0", "locked")})
        assert len(fsyncs) == 1  # one write and one fsync for the whole batch
        assert qf.envelope.recipients[0].reason == "connection refused"
        qf.record_status({0: ("4.4.2", "lost connection")})
        assert len(fsyncs) == 2
    with QueueFile.open(path) as qf:
        got = [(r.status, r.reason) for r in qf.envelope.recipients]
        assert got == [("4.4.2", "lost connection"), ("", ""), ("4.2.0", "locked")]
        assert b"".join(qf.iter_content()) == b"Subject: x\n\nbody\n"
        qf.mark_done(1)  # the R records did not move
    with QueueFile.open(path) as qf:
        assert [r.done for r in qf.envelope.recipients] == [False, True, False]
        assert qf.envelope.recipients[0].status == "4.4.2"


def test_record_status_unknown_index_writes_nothing(qdir: str) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x")], 1.0))
    size = os.path.getsize(path)
    with QueueFile.open(path) as qf, pytest.raises(IndexError):
        qf.record_status({0: ("4.0.0", "x"), 1: ("4.0.0", "y")})
    assert os.path.getsize(path) == size


def test_torn_append_is_ignored_then_overwritten(qdir: str) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x"), Recipient("b@x")], 1.0))
    with QueueFile.open(path) as qf:
        qf.record_status({0: ("4.4.1", "first")})
    # A crash in the middle of the next append: part of a record, no newline.
    with open(path, "ab") as f:
        f.write(b'L [1, "4.4.1", "a much longer reason that never got its newl')
    with QueueFile.open(path) as qf:
        assert [(r.status, r.reason) for r in qf.envelope.recipients] == [
            ("4.4.1", "first"), ("", "")]
        qf.record_status({1: ("4.2.0", "short")})
    with QueueFile.open(path) as qf:
        assert [(r.status, r.reason) for r in qf.envelope.recipients] == [
            ("4.4.1", "first"), ("4.2.0", "short")]
    assert Path(path).read_bytes().endswith(b'\nL [1, "4.2.0", "short"]\n')


def test_failed_status_fsync_cuts_the_append_off(
    qdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x")], 1.0))
    size = os.path.getsize(path)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with QueueFile.open(path) as qf:
        monkeypatch.setattr(qfile, "_fsync", eio)
        with pytest.raises(OSError):
            qf.record_status({0: ("4.4.1", "x")})
        assert qf.envelope.recipients[0].status == ""
        monkeypatch.undo()
        assert os.path.getsize(path) == size
        qf.record_status({0: ("4.4.2", "y")})
    with QueueFile.open(path) as qf:
        assert qf.envelope.recipients[0].status == "4.4.2"


@pytest.mark.parametrize("record", [
    b'L [5, "4.0.0", "x"]\n',  # no such recipient
    b'L [-1, "4.0.0", "x"]\n',
    b'L ["0", "4.0.0", "x"]\n',
    b'L [0, "4.0.0"]\n',
    b'Q [0, "4.0.0", "x"]\n',  # unknown record after the mark
    b'RR ["late@x", ""]\n',
])
def test_bad_records_after_the_mark_are_corrupt(qdir: str, record: bytes) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x")], 1.0))
    with open(path, "ab") as f:
        f.write(record)
    with pytest.raises(CorruptQueueFile):
        QueueFile.open(path)


@pytest.mark.parametrize("fields", [
    b'["a@x"]', b'["a@x", "", ""]', b'["a@x", "", "", "", "", "", ""]',
    b'["a@x", "", "", "", "", 5]',
])
def test_recipient_record_of_the_wrong_shape_is_corrupt(qdir: str, fields: bytes) -> None:
    path = commit(qdir, Envelope("s@x", [Recipient("a@x")], 1.0))
    data = Path(path).read_bytes()
    start = data.index(b"RR [")
    end = data.index(b"\n", start)
    Path(path).write_bytes(data[:start] + b"RR " + fields + data[end:])
    with pytest.raises(CorruptQueueFile):
        QueueFile.open(path)
