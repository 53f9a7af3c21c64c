"""The shared wire pieces: the bounded line buffer, the reply reader, EHLO keywords and
the dot-stuffing writer, and the writer read back by the server core."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smtpproto_helpers import run, splits

from postier.smtpproto import events as ev
from postier.smtpproto.buffer import TOO_LONG, LineBuffer
from postier.smtpproto.readers import (
    MalformedReply,
    ReplyProblem,
    ReplyReader,
    parse_ehlo,
)
from postier.smtpproto.replies import Reply
from postier.smtpproto.writers import DotStuffer, command_line, dot_stuff

# --- LineBuffer ----------------------------------------------------------------------


def lines_of(pieces: list[bytes], limit: int = 10) -> list[object]:
    buf = LineBuffer(limit)
    out: list[object] = []
    for piece in pieces:
        buf.feed(piece)
        while (line := buf.next_line()) is not None:
            out.append(line)
    return out


@pytest.mark.parametrize("pieces", splits(b"abc\r\nde\nf\r\r\n\r\n"))
def test_lines_end_in_crlf_or_bare_lf(pieces: list[bytes]) -> None:
    assert lines_of(pieces) == [b"abc", b"de", b"f\r", b""]


@pytest.mark.parametrize("pieces", splits(b"0123456789\r\n01234567890\r\n" + b"x" * 40
                                          + b"\r\nok\r\n"))
def test_over_long_lines_are_reported_once_and_skipped(pieces: list[bytes]) -> None:
    assert lines_of(pieces) == [b"0123456789", TOO_LONG, TOO_LONG, b"ok"]


def test_over_long_line_keeps_its_head() -> None:
    buf = LineBuffer(10)
    buf.feed(b"0123456789abc\r\nnext\r\n")
    assert buf.next_line() is TOO_LONG and buf.overflow_head == b"0123456789"
    assert buf.next_line() == b"next"
    buf.feed(b"z" * 30)
    assert buf.next_line() is TOO_LONG and buf.overflow_head == b"z" * 10


def test_buffer_stays_bounded_on_an_endless_line() -> None:
    buf = LineBuffer(10)
    seen = []
    for _ in range(100):
        buf.feed(b"y" * 7)
        seen.append(buf.next_line())
        assert len(buf) <= 12
    assert seen.count(TOO_LONG) == 1
    buf.feed(b"tail\r\nnext\r\n")
    assert buf.next_line() == b"next"


# --- ReplyReader -----------------------------------------------------------------------


def read_all(pieces: list[bytes]) -> list[Reply | MalformedReply]:
    buf = LineBuffer(100)
    reader = ReplyReader()
    out: list[Reply | MalformedReply] = []
    for piece in pieces:
        buf.feed(piece)
        while (r := reader.read(buf)) is not None:
            out.append(r)
    return out


@pytest.mark.parametrize("pieces", splits(
    b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
    b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
    b"250 2.1.5 Ok\n"
    b"354 End data\r\n"
    b"421\r\n"))
def test_reply_reader(pieces: list[bytes]) -> None:
    assert read_all(pieces) == [
        Reply(250, None, ("mx.example", "PIPELINING", "SIZE 100")),
        Reply(550, "5.7.1", ("first", "second", "third")),
        Reply(250, "2.1.5", "Ok"),
        Reply(354, None, "End data"),
        Reply(421, None, ""),
    ]


@pytest.mark.parametrize(("wire", "expected"), [
    (b"250 5.0.0 wrong class\r\n", Reply(250, None, "5.0.0 wrong class")),
    (b"354 2.0.0 no codes on 3xx\r\n", Reply(354, None, "2.0.0 no codes on 3xx")),
    (b"250 2.0.0\r\n", Reply(250, "2.0.0", "")),
    (b"250 2.0.00x not a code\r\n", Reply(250, None, "2.0.00x not a code")),
    (b"550-5.1.1 a\r\n550 b\r\n", Reply(550, "5.1.1", ("a", "b"))),
    (b"250 caf\xc3\xa9\tok\x01\r\n", Reply(250, None, "café\tok?")),
])
def test_reply_text_and_enhanced_codes(wire: bytes, expected: Reply) -> None:
    assert read_all([wire]) == [expected]


@pytest.mark.parametrize(("wire", "problem"), [
    (b"hello\r\n", ReplyProblem.NO_CODE),
    (b"25 short\r\n", ReplyProblem.NO_CODE),
    (b"150 preliminary\r\n", ReplyProblem.NO_CODE),
    (b"250x\r\n", ReplyProblem.NO_CODE),
    (b"250-a\r\n550 b\r\n", ReplyProblem.CODE_CHANGED),
    (b"250 \xff\xfe garbage\r\n", ReplyProblem.NOT_TEXT),
    (b"250 " + b"x" * 200 + b"\r\n", ReplyProblem.LINE_TOO_LONG),
    (b"250-x\r\n" * 101 + b"250 x\r\n", ReplyProblem.TOO_MANY_LINES),
])
def test_malformed_replies(wire: bytes, problem: ReplyProblem) -> None:
    for pieces in splits(wire):
        bad = [r for r in read_all(pieces) if isinstance(r, MalformedReply)]
        assert bad[0].problem is problem
        assert "\n" not in bad[0].text and "\r" not in bad[0].text


def test_ehlo_keywords() -> None:
    reply = Reply(250, None, ("mx.example greets you", "PIPELINING", "SIZE 10240000",
                              "8BITMIME", "smtputf8", "DSN", "STARTTLS",
                              "AUTH=LOGIN", "AUTH PLAIN  LOGIN", "CHUNKING",
                              "ENHANCEDSTATUSCODES", "-not a keyword"))
    assert parse_ehlo(reply) == {
        "PIPELINING": "", "SIZE": "10240000", "8BITMIME": "", "SMTPUTF8": "", "DSN": "",
        "STARTTLS": "", "AUTH": "LOGIN PLAIN", "CHUNKING": "", "ENHANCEDSTATUSCODES": "",
    }
    assert parse_ehlo(Reply(250, None, "mx.example")) == {}


# --- writers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "wire"), [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b".starts\n..two\nmid.dle\n.", b"..starts\r\n...two\r\nmid.dle\r\n..\r\n.\r\n"),
    (b"bare\nlf\n", b"bare\r\nlf\r\n.\r\n"),
    (b"bare\rcr\r", b"bare\r\ncr\r\n.\r\n"),
    (b"mixed\r\r\n\n.x", b"mixed\r\n\r\n\r\n..x\r\n.\r\n"),
])
def test_dot_stuffing(content: bytes, wire: bytes) -> None:
    assert dot_stuff(content) == wire
    for pieces in splits(content):
        stuffer = DotStuffer()
        assert b"".join(stuffer.write(p) for p in pieces) + stuffer.end() == wire


def test_writer_refuses_use_after_end_and_smuggled_lines() -> None:
    stuffer = DotStuffer()
    stuffer.end()
    with pytest.raises(ValueError):
        stuffer.write(b"x")
    with pytest.raises(ValueError):
        stuffer.end()
    with pytest.raises(ValueError):
        command_line("RCPT TO:<a@b>\r\nRCPT TO:<c@d>")
    assert command_line("MAIL FROM:<é@b>") == "MAIL FROM:<é@b>\r\n".encode()


def normalised(content: bytes) -> bytes:
    """What the server core hands on: line ends as LF, a final one added."""
    text = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text + b"\n" if text and not text.endswith(b"\n") else text


def server_reads(wire: bytes, pieces: list[int]) -> bytes:
    head = b"HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    data = head + wire + b"QUIT\r\n"
    cuts = sorted({min(c, len(data)) for c in pieces})
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True) if i < j]
    events, _ = run(chunks, message_size_limit=0)
    content = [e for e in events if isinstance(e, ev.DataChunk)]
    assert events[-2:] == [ev.Quit(), ev.Closed()]
    return content[0].data if content else b""


@given(st.binary(max_size=300) | st.lists(st.sampled_from(
    [b".", b"\r", b"\n", b"\r\n", b"x", b"..", b"\r\n.\r\n"]), max_size=40).map(b"".join),
    st.lists(st.integers(min_value=1, max_value=400), max_size=6),
    st.lists(st.integers(min_value=0, max_value=300), max_size=5))
def test_any_content_written_by_the_client_reads_back_identical(
    content: bytes, cuts: list[int], write_cuts: list[int]
) -> None:
    stuffer = DotStuffer()
    bounds = sorted({min(c, len(content)) for c in write_cuts})
    parts = [content[i:j] for i, j in zip([0, *bounds], [*bounds, len(content)], strict=True)]
    wire = b"".join(stuffer.write(p) for p in parts) + stuffer.end()
    assert wire == dot_stuff(content)
    assert server_reads(wire, cuts) == normalised(content)
