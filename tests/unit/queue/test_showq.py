"""The queue listing's data: pending recipients, reasons first, sizes as Postfix counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.queue import dirs, showq
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, QueueWriter, Recipient
from postier.queue.showq import ListedRecipient


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    dirs.ensure(str(tmp_path), None, None)
    yield str(tmp_path)
    qfile.forget_dir_fds()


def commit(qdir: str, env: Envelope, content: bytes, state: str = "incoming") -> str:
    w = QueueWriter.create(qdir, fsync=False)
    w.write(content)
    qid = w.commit(env)
    if state != "incoming":
        return dirs.move(qdir, qid, "incoming", state)
    return dirs.path(qdir, "incoming", qid)


def test_summary_lists_pending_recipients_reasons_first() -> None:
    env = Envelope("", [
        Recipient("a@x.example"),
        Recipient("b@x.example", done=True, status="2.0.0", reason="sent"),
        Recipient("c@x.example", status="4.4.1", reason="refused"),
        Recipient('we ird@x.example', status="4.4.1", reason="refused"),
    ], 1795996666.9)
    m = showq.summarize("deferred", "ABCDEF123", env, 42)
    assert m.sender == "MAILER-DAEMON"
    assert m.arrival_time == 1795996666
    assert m.recipients == (
        ListedRecipient("c@x.example", "refused"),
        ListedRecipient('"we ird"@x.example', "refused"),
        ListedRecipient("a@x.example", ""),
    )


def test_external_form() -> None:
    assert showq.external("a@b.example") == "a@b.example"
    assert showq.external("a b@c.example") == '"a b"@c.example'
    assert showq.external("postmaster") == "postmaster"
    assert showq.external("") == ""


def test_message_size_counts_line_ends_as_crlf(qdir: str) -> None:
    path = commit(qdir, Envelope("a@b.example", [Recipient("c@d.example")], 1.0),
                  b"Subject: x\n\nline\nlast")
    with QueueFile.open(path, readonly=True) as qf:
        assert qf.content_size == 21
        assert showq.message_size(qf) == 21 + 3 + 2  # three LFs, and the last line's CRLF


def test_scan_reads_the_queues_in_showqs_order_and_skips_junk(qdir: str) -> None:
    env = Envelope("a@b.example", [Recipient("c@d.example")], 1.0)
    held = commit(qdir, env, b"x\n", "hold")
    deferred = commit(qdir, env, b"x\n", "deferred")
    incoming = commit(qdir, env, b"x\n")
    Path(qdir, "active", "ABCDEF999").write_bytes(b"not a queue file")
    listed = [(m.queue_name, m.queue_id) for m in showq.scan(qdir)]
    assert listed == [
        ("incoming", Path(incoming).name), ("deferred", Path(deferred).name),
        ("hold", Path(held).name),
    ]


def test_read_message_of_a_vanished_file(qdir: str) -> None:
    assert showq.read_message("deferred", str(Path(qdir, "deferred", "ABCDEF123"))) is None


def test_find(qdir: str) -> None:
    env = Envelope("a@b.example", [Recipient("c@d.example")], 1.0)
    path = commit(qdir, env, b"x\n", "deferred")
    qid = Path(path).name
    assert showq.find(qdir, qid) == ("deferred", path)
    assert showq.find(qdir, "ABCDEF123") is None


def test_readonly_queue_file_cannot_be_marked(qdir: str) -> None:
    path = commit(qdir, Envelope("a@b.example", [Recipient("c@d.example")], 1.0), b"x\n")
    with QueueFile.open(path, readonly=True) as qf, pytest.raises(OSError):
        qf.mark_done(0)


def test_maildrop_files_are_listed_first_as_postdrop_wrote_them(qdir: str) -> None:
    env = Envelope("a@b.example", [Recipient("c@d.example")], 1.0)
    incoming = commit(qdir, env, b"x\n")
    drop = (b"T\x111796008195 356567S\x00R\x03bobA\x0enotify_flags=4R\x05a@b.c"
            b"M\x00N\x04bodyX\x00E\x00")
    Path(qdir, "maildrop", "5717B2204").write_bytes(drop)
    Path(qdir, "maildrop", "5717B2205").write_bytes(drop[:-2])  # still being written
    listed = list(showq.scan(qdir))
    assert [(m.queue_name, m.queue_id) for m in listed] == [
        ("maildrop", "5717B2204"), ("incoming", Path(incoming).name)]
    m = listed[0]
    assert m.message_size == len(drop)  # the file's size, as showq(8) says for maildrop
    assert m.arrival_time == 1796008195
    assert m.sender == "MAILER-DAEMON"
    assert [r.address for r in m.recipients] == ["bob", "a@b.c"]
    assert showq.find(qdir, "5717B2204") is None  # no queue file: postcat cannot read it
