"""DATA content: end-of-data, smuggling, dot-unstuffing, size limit, bounded buffers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtpproto_helpers import drain, merge, positive, run, splits

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.server import ServerConnection, State

START = b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
OPENING = [ev.Mail("a@b", {}), ev.Rcpt("c@d", {}), ev.Data()]


def content_of(events: list[ev.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ev.DataChunk))


@pytest.mark.parametrize(
    ("raw", "content"),
    [
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\n"),
        (b"a\r\nb\r\n.\r\n", b"a\nb\n"),
        (b"..x\r\n.\r\n", b".x\n"),
        (b"...\r\n.\r\n", b"..\n"),
        (b"..\r\n.\r\n", b".\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\n.b\n"),
        (b"a\nb\r\n.\r\n", b"a\nb\n"),  # bare LF ends a content line
        (b"a\rb\r\n.\r\n", b"a\rb\n"),  # bare CR is content
        (b"a\n..b\r\n.\r\n", b"a\n..b\n"),  # no unstuffing after a bare LF
        (b".a\r\n.\r\n", b"a\n"),
        (b"x" * 20000 + b"\r\n.\r\n", b"x" * 20000 + b"\n"),
    ],
)
def test_content(raw: bytes, content: bytes) -> None:
    for pieces in splits(START + raw + b"NOOP\r\n"):
        events, _ = run(pieces)
        assert content_of(events) == content
        tail = [e for e in events if not isinstance(e, ev.DataChunk)]
        assert tail == [*OPENING, ev.DataEnd(False, len(content)), ev.Noop()]


SMUGGLE = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\r\r\n", b"\n.\r\r\n",
           b"\r\n\x00.\r\n", b"\r\n .\r\n"]


@pytest.mark.parametrize("marker", SMUGGLE)
def test_smuggling_attempts_never_end_data(marker: bytes) -> None:
    evil = b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nFrom: forged\r\n\r\nhi\r\n"
    raw = START + b"Subject: a\r\n\r\nhello" + marker + evil + b".\r\nQUIT\r\n"
    for pieces in splits(raw):
        events, _ = run(pieces)
        kinds = [type(e) for e in events]
        assert kinds == [ev.Mail, ev.Rcpt, ev.Data, ev.DataChunk, ev.DataEnd, ev.Quit, ev.Closed]
        assert b"MAIL FROM:<evil@x>\n" in content_of(events)


def test_smuggling_endings_become_content() -> None:
    events, _ = run([START + b"a\n.\nb\r\n.\r\n"])
    assert content_of(events) == b"a\n.\nb\n"
    events, _ = run([START + b"a\n.\r\nb\r\n.\r\n"])
    assert content_of(events) == b"a\n.\nb\n"
    events, _ = run([START + b"a\r.\r\n.\r\n"])
    assert content_of(events) == b"a\r.\n"


def test_size_limit_stops_chunks_but_reads_to_the_end() -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(100))
    events, out = run([START, body[:300], body[300:] + b".\r\nMAIL FROM:<e@f>\r\n"],
                      message_size_limit=100)
    end = next(e for e in events if isinstance(e, ev.DataEnd))
    assert end.too_big
    assert end.size == len(body.replace(b"\r\n", b"\n"))
    assert len(content_of(events)) <= 100
    assert out.endswith(r.MESSAGE_TOO_BIG.to_bytes() + r.MAIL_OK.to_bytes())
    assert events[-1] == ev.Mail("e@f", {})


def test_size_at_the_limit_is_fine() -> None:
    events, _ = run([START + b"12345\r\n.\r\n"], message_size_limit=6)
    assert events[-1] == ev.DataEnd(False, 6)
    events, _ = run([START + b"123456\r\n.\r\n"], message_size_limit=6)
    assert events[-1] == ev.DataEnd(True, 7)
    events, _ = run([START + b"x" * 100 + b"\r\n.\r\n"], message_size_limit=0)
    assert events[-1] == ev.DataEnd(False, 101)


def test_long_line_is_streamed_with_bounded_buffer() -> None:
    conn = ServerConnection(message_size_limit=0)
    conn.receive_data(START)
    events, _ = drain(conn)
    for _ in range(1000):
        conn.receive_data(b"y" * 999 + b"\r")
        more, _ = drain(conn)
        events += more
        assert len(conn._buf) <= 8192
    conn.receive_data(b"\n.\r\n")
    events += drain(conn)[0]
    assert content_of(events) == (b"y" * 999 + b"\r") * 999 + b"y" * 999 + b"\n"
    assert merge(events)[-1] == ev.DataEnd(False, 1000 * 1000)


def test_eof_in_data() -> None:
    conn = ServerConnection()
    conn.receive_data(START + b"partial")
    drain(conn)
    conn.receive_data(b"")
    assert conn.next_event() == ev.Closed()
    assert conn.state is State.CLOSED


def reference_content(raw: bytes) -> tuple[bytes, bytes] | None:
    """A slow line-by-line model of the content rules: (content, rest) or None."""
    out: list[bytes] = []
    pos = 0
    after_crlf = True
    while True:
        nl = raw.find(b"\n", pos)
        if nl < 0:
            return None
        line = raw[pos:nl + 1]
        crlf = line.endswith(b"\r\n")
        body = line[:-2] if crlf else line[:-1]
        if after_crlf and crlf and body == b".":
            return b"".join(out), raw[nl + 1:]
        if after_crlf and body.startswith(b"."):
            body = body[1:]
        out.append(body + b"\n")
        after_crlf = crlf
        pos = nl + 1


content_bytes = st.lists(
    st.sampled_from([b"\r", b"\n", b".", b"\r\n", b"a", b"\x00", b"\xff", b"MAIL FROM:<x@y>"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(raw=content_bytes, cuts=st.lists(st.integers(0, 400), max_size=6))
def test_content_matches_reference_model(raw: bytes, cuts: list[int]) -> None:
    data = raw + b"\r\n.\r\nNOOP\r\n"
    expected = reference_content(data)
    assert expected is not None
    content, rest = expected
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    conn = ServerConnection(data_partial_limit=16, message_size_limit=0)
    conn.receive_data(START)
    drain(conn)
    events: list[ev.Event] = []
    for piece in pieces:
        if piece:  # b"" would mean end of input
            conn.receive_data(piece)
            events += drain(conn)[0]
    assert content_of(events) == content
    ends = [e for e in events if isinstance(e, ev.DataEnd)]
    assert ends == [ev.DataEnd(False, len(content))]
    assert bytes(conn._buf) == b"" or rest.endswith(bytes(conn._buf))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=8),
       limit=st.integers(8, 64))
def test_garbage_never_raises_and_buffer_stays_bounded(
    data: bytes, cuts: list[int], limit: int
) -> None:
    conn = ServerConnection(max_line_length=limit, data_partial_limit=32, message_size_limit=50)
    conn.send(r.greeting("x"))
    points = sorted({min(c, len(data)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        if a == b:
            continue
        conn.receive_data(data[a:b])
        events, _ = drain(conn, positive)
        for e in events:
            assert isinstance(e, ev.Helo | ev.Mail | ev.Rcpt | ev.Data | ev.DataChunk | ev.DataEnd
                              | ev.Rset | ev.Noop | ev.Quit | ev.Vrfy | ev.StartTls | ev.Auth
                              | ev.AuthLine | ev.ProtocolError | ev.Closed)
        assert len(conn._buf) <= max(limit + 1, 32)
    conn.receive_data(b"")
    assert drain(conn)[0][-1] == ev.Closed()


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=10))
def test_random_command_lines_yield_events(lines: list[bytes]) -> None:
    conn = ServerConnection()
    conn.receive_data(b"".join(line + b"\r\n" for line in lines))
    events, _ = drain(conn)
    if not any(isinstance(e, ev.Closed) for e in events):
        # one reply-expecting event per line, whatever the line held
        assert len(events) >= len(lines) or conn.state in (State.DATA, State.AUTH)
