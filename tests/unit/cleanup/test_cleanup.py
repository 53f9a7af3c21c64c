"""cleanup.cleanup: content in, a committed queue file out; failures leave nothing queued."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.cleanup.cleanup import Cleanup, QmgrTrigger, Received
from postier.cleanup.headers import received_header
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient

WHEN = datetime(2026, 11, 25, 20, 48, 52, tzinfo=UTC)
CONTENT = [
    b"From: a@example.net\nBcc: hidden@example.net\nMessage-ID: <m1@ex",
    b"ample.net>\nSubject: hi\n\nbody line\n",
    b"Bcc: not a header in the body\n",
]


class Recorder:
    """A LogSink: ``lines`` and, beside each, the program that logged it."""

    def __init__(self, program: str = "smtpd", shared: Recorder | None = None) -> None:
        self.program = program
        self.lines: list[str] = shared.lines if shared is not None else []
        self.programs: list[str] = shared.programs if shared is not None else []

    def info(self, text: str) -> None:
        self.lines.append(text)
        self.programs.append(self.program)

    def warning(self, text: str) -> None:
        self.lines.append(f"warning: {text}")
        self.programs.append(self.program)

    def for_program(self, program: str) -> Recorder:
        return Recorder(program, shared=self)


class Triggers:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def notify(self, queue_id: str) -> None:
        self.sent.append(queue_id)


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def incoming(qdir: str) -> list[str]:
    return sorted(os.listdir(os.path.join(qdir, "incoming")))


def envelope(*rcpts: str) -> Envelope:
    return Envelope("s@example.net", [Recipient(r, r) for r in rcpts], 1764103732.5,
                    {"client_address": "192.0.2.1"})


def received(recipient: str | None) -> Received:
    return Received(
        helo="milou.example.net", client_name="milou.example.net", client_addr="192.0.2.1",
        protocol="ESMTP", by_host="tintin.example.com", mail_name="Postfix",
        recipient=recipient, when=WHEN,
    )


def read(qdir: str, qid: str) -> tuple[Envelope, bytes]:
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        return qf.envelope, b"".join(qf.iter_content())


def test_streamed_message_is_committed_with_headers_processed(qdir: str) -> None:
    log, trig = Recorder(), Triggers()
    cleanup = Cleanup(qdir, log=log, trigger=trig)
    msg = cleanup.open(client="milou.example.net[192.0.2.1]")
    assert log.lines == [f"{msg.queue_id}: client=milou.example.net[192.0.2.1]"]
    msg.begin_content(received("r@example.com"))
    for chunk in CONTENT:
        msg.write(chunk)
    msg.end_content()
    assert msg.error is None
    assert trig.sent == []  # nothing announced before the commit
    env = envelope("r@example.com")
    qid = msg.commit(env)
    assert qid == msg.queue_id
    assert incoming(qdir) == [qid]
    got, content = read(qdir, qid)
    assert got == env
    top = received_header(
        helo="milou.example.net", client_name="milou.example.net", client_addr="192.0.2.1",
        protocol="ESMTP", by_host="tintin.example.com", mail_name="Postfix", queue_id=qid,
        recipient="r@example.com", when=WHEN,
    )
    assert content == top + (
        b"From: a@example.net\nMessage-ID: <m1@example.net>\nSubject: hi\n\nbody line\n"
        b"Bcc: not a header in the body\n"
    )
    assert log.lines[1:] == [f"{qid}: message-id=<m1@example.net>"]
    # client= is the caller's line (postfix/smtpd), message-id= is cleanup(8)'s
    assert log.programs == ["smtpd", "cleanup"]
    assert trig.sent == [qid]


def test_no_message_id_no_line_and_no_received_without_facts(qdir: str) -> None:
    log = Recorder()
    msg = Cleanup(qdir, log=log, trigger=None).open()
    msg.write(b"Subject: x\n\nbody\n")
    qid = msg.commit(envelope("r@x"))
    assert log.lines == []  # no client given, no Message-ID header
    assert read(qdir, qid)[1] == b"Subject: x\n\nbody\n"


def test_enqueue_whole_message_from_an_iterable(qdir: str) -> None:
    log, trig = Recorder(), Triggers()
    qid = Cleanup(qdir, log=log, trigger=trig).enqueue(envelope("a@x", "b@x"), iter(CONTENT))
    got, content = read(qdir, qid)
    assert [r.address for r in got.recipients] == ["a@x", "b@x"]
    assert content.startswith(b"From: a@example.net\nMessage-ID:")  # no Received:, Bcc gone
    assert b"Bcc: hidden" not in content
    assert trig.sent == [qid]
    assert log.lines == [f"{qid}: message-id=<m1@example.net>"]


def test_enqueue_content_may_name_its_own_queue_id(qdir: str) -> None:
    seen: list[str] = []

    def content(queue_id: str) -> list[bytes]:
        seen.append(queue_id)
        return [f"Message-Id: <x.{queue_id}@h>\n\nbody\n".encode()]

    qid = Cleanup(qdir, log=None, trigger=None).enqueue(envelope("r@x"), content)
    assert seen == [qid]
    assert read(qdir, qid)[1] == f"Message-Id: <x.{qid}@h>\n\nbody\n".encode()


def test_received_names_the_recipient_only_when_there_is_one(qdir: str) -> None:
    qid = Cleanup(qdir, log=None, trigger=None).enqueue(
        envelope("a@x", "b@x"), [b"\nbody\n"], received=received(None)
    )
    content = read(qdir, qid)[1]
    assert b"for <" not in content
    assert content.startswith(b"Received: from milou.example.net (milou.example.net [192.0.2.1])\n")
    assert f"with ESMTP id {qid};\n".encode() in content


def test_abort_removes_the_file_and_is_idempotent(qdir: str) -> None:
    trig = Triggers()
    msg = Cleanup(qdir, log=None, trigger=trig).open()
    msg.begin_content(received("r@x"))
    msg.write(b"x" * 200_000)  # past the buffer: bytes are on disk
    assert incoming(qdir) != []
    msg.abort()
    msg.abort()
    assert incoming(qdir) == []
    assert trig.sent == []


def _disk_full(fd: int, data: object, offset: int | None = None) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_error_is_kept_and_refused_at_commit(
    qdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, trig = Recorder(), Triggers()
    msg = Cleanup(qdir, log=log, trigger=trig).open()
    msg.begin_content(received("r@x"))
    monkeypatch.setattr(qfile, "write_all", _disk_full)
    msg.write(b"Subject: x\n\n" + b"y" * 100_000)  # does not raise: the client sends on
    msg.write(b"more\n")
    msg.end_content()
    assert isinstance(msg.error, OSError) and msg.error.errno == errno.ENOSPC
    monkeypatch.undo()
    with pytest.raises(OSError) as info:
        msg.commit(envelope("r@x"))
    assert info.value is msg.error
    assert incoming(qdir) == []
    assert trig.sent == [] and log.lines == []


@pytest.mark.parametrize("fail_at", ["fsync", "rename", "dir_fsync"])
def test_commit_failure_leaves_nothing_acknowledged(
    qdir: str, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """Whatever step of the commit fails, the caller gets OSError and nothing is queued."""
    calls: list[str] = []
    real_rename = os.rename

    def fsync(fd: int) -> None:
        step = "fsync" if "rename" not in calls else "dir_fsync"
        calls.append(step)
        if step == fail_at:
            raise OSError(errno.EIO, "Input/output error")

    def rename(a: str, b: str) -> None:
        calls.append("rename")
        if fail_at == "rename":
            raise OSError(errno.EIO, "Input/output error")
        real_rename(a, b)

    monkeypatch.setattr(qfile, "_fsync", fsync)
    monkeypatch.setattr(qfile, "_rename", rename)
    log, trig = Recorder(), Triggers()
    msg = Cleanup(qdir, log=log, trigger=trig).open()
    msg.write(b"Message-ID: <m@x>\n\nbody\n")
    with pytest.raises(OSError):
        msg.commit(envelope("r@x"))
    assert calls[-1] == fail_at
    assert incoming(qdir) == []  # neither the temp file nor the queue file
    assert list(dirs.scan(qdir, "incoming")) == []
    assert trig.sent == [] and log.lines == []  # no message-id=, qmgr not told
    msg.abort()  # the session's abort afterwards is harmless


def test_enqueue_content_failure_queues_nothing(qdir: str) -> None:
    def broken() -> Iterator[bytes]:
        yield b"Subject: x\n\n" + b"z" * 100_000
        raise qfile.CorruptQueueFile("original went away")

    trig = Triggers()
    with pytest.raises(qfile.CorruptQueueFile):
        Cleanup(qdir, log=None, trigger=trig).enqueue(envelope("r@x"), broken())
    assert incoming(qdir) == [] and trig.sent == []


def test_commit_costs_what_a_queue_writer_costs(
    qdir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No extra fsync or rename per message: file fsync, rename, one directory fsync."""
    steps: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(qfile, "_fsync", lambda fd: steps.append("fsync"))

    def rename(a: str, b: str) -> None:
        steps.append("rename")
        real_rename(a, b)

    monkeypatch.setattr(qfile, "_rename", rename)
    Cleanup(qdir, log=None, trigger=None).enqueue(envelope("r@x"), [b"x\n"])
    assert steps == ["fsync", "rename", "fsync"]


def test_qmgr_trigger_sends_the_queue_id(qdir: str) -> None:
    path = dirs.public_path(qdir, "qmgr")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    log = Recorder()
    trigger = QmgrTrigger(qdir, log)
    try:
        trigger.notify("22D2A8871")
        assert sock.recv(64) == b"22D2A8871"
        assert log.lines == []
    finally:
        trigger.close()
        sock.close()


def test_qmgr_trigger_without_qmgr_warns_and_carries_on(qdir: str) -> None:
    log = Recorder()
    trigger = QmgrTrigger(qdir, log)
    trigger.notify("22D2A8871")  # nobody bound public/qmgr
    trigger.close()
    assert len(log.lines) == 1
    assert log.lines[0].startswith("warning: 22D2A8871: cannot trigger qmgr: ")


# --- SMTPUTF8 (RFC 6531/6532): what reaches the queue, and smtputf8_autodetect_classes ----


def test_utf8_headers_and_addresses_are_queued_unchanged(qdir: str) -> None:
    text = "From: élise@exämple.com\nSubject: ü\n\nbody ü\n".encode()
    env = Envelope("jérôme@example.net", [Recipient("ö@example.com", "ö@example.com")],
                   1764103732.5, {qfile.ATTR_SMTPUTF8: "1"})
    qid = Cleanup(qdir, log=None, trigger=None).enqueue(env, [text])
    got, content = read(qdir, qid)
    assert content == text
    assert got == env and got.smtputf8


@pytest.mark.parametrize(("classes", "origin", "sender", "rcpt", "text", "flagged"), [
    # Postfix 3.7 (autodetect smtpd): detected whether or not MAIL said SMTPUTF8
    (("smtpd",), None, "s@x", "r@x", "Subject: ü\n\n", True),
    ((), None, "jé@x", "r@x", "Subject: ü\n\n", False),  # nothing to detect for
    (("sendmail", "verify"), None, "jé@x", "r@x", "Subject: ü\n\n", False),  # Postfix default
    (("smtpd",), None, "jé@x", "r@x", "Subject: x\n\n", True),  # UTF-8 sender
    (("smtpd",), None, "s@x", "ré@x", "Subject: x\n\n", True),  # UTF-8 recipient
    (("smtpd",), None, "s@x", "r@x", "Subject: x\n\tü\n\n", True),  # UTF-8 in a header
    (("smtpd",), None, "s@x", "r@x", "Subject: x\n\nbody ü\n", False),  # the body: never
    (("smtpd",), "bounce", "s@x", "ré@x", "Subject: x\n\n", False),  # not its class
    (("bounce",), "bounce", "", "ré@x", "Subject: x\n\n", True),
    (("ALL",), "bounce", "", "ré@x", "Subject: x\n\n", True),
])
def test_smtputf8_autodetect_classes(
    qdir: str, classes: tuple[str, ...], origin: str | None, sender: str, rcpt: str,
    text: str, flagged: bool,
) -> None:
    attrs = {"origin": origin} if origin else {}
    env = Envelope(sender, [Recipient(rcpt, rcpt)], 1764103732.5, attrs)
    cleanup = Cleanup(qdir, log=None, trigger=None, smtputf8_autodetect=classes)
    got, _ = read(qdir, cleanup.enqueue(env, [text.encode()]))
    assert got.smtputf8 is flagged
    assert got.smtputf8_required is flagged
    assert (got.attrs.get(qfile.ATTR_SMTPUTF8) == qfile.SMTPUTF8_REQUIRED) is flagged


@pytest.mark.parametrize("classes", [(), ("smtpd",)])
def test_a_requested_smtputf8_message_is_required_only_when_detected(
    qdir: str, classes: tuple[str, ...],
) -> None:
    env = Envelope("s@x", [Recipient("r@x", "r@x")], 1764103732.5,
                   {qfile.ATTR_SMTPUTF8: qfile.SMTPUTF8_REQUESTED})
    cleanup = Cleanup(qdir, log=None, trigger=None, smtputf8_autodetect=classes)
    got, _ = read(qdir, cleanup.enqueue(env, ["Subject: ü\n\n".encode()]))
    assert got.smtputf8
    assert got.smtputf8_required is bool(classes)
