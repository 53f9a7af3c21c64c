"""queue.postdrop: Postfix's record format as postdrop(1) writes it, parsed."""

from __future__ import annotations

import pytest

from postier.queue import postdrop
from postier.queue.postdrop import CorruptDropFile, notify_text, parse, records


def rec(rtype: str, data: bytes | str) -> bytes:
    """One record: type byte, length in 7-bit groups (low first), data."""
    raw = data.encode() if isinstance(data, str) else data
    n, length = len(raw), bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            length.append(byte | 0x80)
        else:
            length.append(byte)
            break
    return rtype.encode() + bytes(length) + raw


def envelope(*extra: bytes, sender: str = "tintin@example.com") -> bytes:
    return (rec("T", "1796008195 356567") + rec("A", "rewrite_context=local")
            + rec("F", "Tintin") + rec("S", sender) + b"".join(extra))


def test_a_sendmail_t_file_gives_its_extracted_recipients_and_content() -> None:
    data = (envelope() + rec("M", "") + rec("N", "To: x@example.com")
            + rec("N", "Subject: x") + rec("N", "") + rec("N", "body")
            + rec("X", "") + rec("R", "x@example.com") + rec("E", ""))
    drop = parse(data)
    assert drop.sender == "tintin@example.com"
    assert drop.full_name == "Tintin"
    assert drop.arrival == 1796008195.0
    assert [r.address for r in drop.recipients] == ["x@example.com"]
    assert drop.attrs == {"rewrite_context": "local"}
    assert drop.content == b"To: x@example.com\nSubject: x\n\nbody\n"


def test_long_lines_are_joined_and_a_last_line_without_end_gets_one() -> None:
    long = "a" * 3000  # a length of two 7-bit groups
    data = (envelope(rec("R", "a@b.c")) + rec("M", "") + rec("N", "Subject: y")
            + rec("N", "") + rec("L", long[:2048]) + rec("N", long[2048:])
            + rec("L", "body2") + rec("N", "") + rec("X", "") + rec("E", ""))
    assert rec("L", long[:2048])[1:3] == b"\x80\x10"
    assert parse(data).content == f"Subject: y\n\n{long}\nbody2\n".encode()


def test_dsn_attributes_go_with_the_next_recipient_and_the_message() -> None:
    data = envelope(
        rec("A", "envelope_id=myenvid"), rec("A", "ret_flags=2"),
        rec("A", "notify_flags=10"), rec("A", "dsn_orig_rcpt=rfc822;c@d.e"), rec("R", "c@d.e"),
        rec("R", "f@g.h"), rec("A", "notify_flags=1"), rec("R", "i@j.k"),
        sender="",
    ) + rec("M", "") + rec("N", "") + rec("X", "") + rec("E", "")
    drop = parse(data)
    assert drop.sender == ""
    assert (drop.envid, drop.ret) == ("myenvid", "HDRS")
    got = [(r.address, r.dsn_notify, r.dsn_orcpt) for r in drop.recipients]
    assert got == [("c@d.e", "SUCCESS,DELAY", "rfc822;c@d.e"), ("f@g.h", "", ""),
                   ("i@j.k", "NEVER", "")]
    assert "envelope_id" not in drop.attrs and "notify_flags" not in drop.attrs


def test_notify_text() -> None:
    assert notify_text(0) == ""
    assert notify_text(1) == "NEVER"
    assert notify_text(4) == "FAILURE"
    assert notify_text(2 | 4 | 8) == "SUCCESS,FAILURE,DELAY"


def test_records_reads_types_and_data() -> None:
    data = rec("S", "x" * 200) + rec("E", "")
    assert list(records(data)) == [(ord("S"), b"x" * 200), (ord("E"), b"")]


COMPLETE = envelope(rec("R", "a@b.c")) + rec("M", "") + rec("N", "x") + rec("X", "") + rec(
    "E", "")


@pytest.mark.parametrize(("data", "why"), [
    (COMPLETE[:-2], "incomplete"),  # postdrop still writing: no E record
    (COMPLETE[:-3], "cut short"),
    (COMPLETE + rec("N", "more"), "after the end"),
    (envelope(rec("R", "a@b.c")) + rec("M", "") + rec("R", "z@y.x") + rec("X", "")
     + rec("E", ""), "in the message content"),
    (envelope(rec("R", "a@b.c")) + rec("Q", "?") + rec("M", "") + rec("X", "") + rec("E", ""),
     "unexpected record type"),
    (rec("T", "1 2") + rec("R", "a@b.c") + rec("M", "") + rec("X", "") + rec("E", ""),
     "no sender"),
    (rec("T", "soon") + rec("S", "") + rec("M", "") + rec("X", "") + rec("E", ""), "bad time"),
    (b"S\xff\xff\xff\xff\xff\x01", "too long"),
    (b"S\x85", "cut short"),
    (b"S\x05abc", "cut short"),
    (b"\x00garbage that is not a queue file", "cut short"),
    (b"\x00\x03abc", "unexpected record type"),
])
def test_a_broken_file_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(CorruptDropFile, match=why):
        parse(data)


def test_a_file_made_by_the_real_postdrop_parses() -> None:
    """The bytes /usr/sbin/postdrop wrote for ``sendmail -t -f tintin@example.com``
    (captured from Postfix 3.7), read back."""
    captured = (
        b"T\x111796008195 356567A\x15rewrite_context=localF\x04rootS\x12tintin@example.com"
        b"M\x00N\x11To: x@example.comN\nSubject: xN\x00N\x04bodyN\tlong line"
        b"X\x00R\rx@example.comE\x00")
    drop = postdrop.parse(captured)
    assert drop.sender == "tintin@example.com"
    assert [r.address for r in drop.recipients] == ["x@example.com"]
    assert drop.content == b"To: x@example.com\nSubject: x\n\nbody\nlong line\n"
