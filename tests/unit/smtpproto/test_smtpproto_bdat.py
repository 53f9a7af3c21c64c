"""BDAT (RFC 3030) in the server core: chunks as sent, pipelining, sequence rules, size
limit, discarded chunks, syntax; each reply as Postfix 3.7's smtpd gives it (checked
side by side). Inputs are fed whole, byte by byte and in pieces (h11 style)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtpproto_helpers import positive, run, splits

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection, State

START = b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
QID = "3F1A2B4C5D"


def shell(event: ev.Event) -> Reply | None:
    """An accepting shell, for BDAT too."""
    if isinstance(event, ev.ChunkEnd):
        if event.refusal is not None:
            return event.refusal
        return r.bdat_queued(event.total, QID) if event.last else r.bdat_ok(event.size)
    return positive(event)


def content_of(events: list[ev.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, ev.DataChunk))


def ends(events: list[ev.Event]) -> list[ev.ChunkEnd]:
    return [e for e in events if isinstance(e, ev.ChunkEnd)]


def replies_of(out: bytes) -> list[str]:
    return out.decode().split("\r\n")[:-1]


def bdat(chunks: list[bytes]) -> bytes:
    """``BDAT n`` for each chunk, the last one ``BDAT n LAST``."""
    out = b""
    for i, chunk in enumerate(chunks):
        out += b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if i == len(chunks) - 1 else b"")
        out += chunk
    return out


@pytest.mark.parametrize(
    ("chunks", "content", "total"),
    [
        ([b"Subject: x\r\n", b"\r\nbody\r\n"], b"Subject: x\n\nbody\n", 20),
        ([b"a\r", b"\nb\r\n"], b"a\nb\n", 6),  # a CRLF split across two chunks
        ([b"hello", b"abc", b""], b"helloabc\n", 10),  # the last line is ended (+CRLF)
        ([b".\r\n", b"..x\r\n.\r\n"], b".\n..x\n.\n", 11),  # no dot handling
        ([b"a\rb\nc\r\n"], b"a\rb\nc\n", 7),  # bare CR and bare LF kept
        ([b"x\x00\xff\r\n"], b"x\x00\xff\n", 5),  # binary octets as sent
        ([b""], b"", 0),  # BDAT 0 LAST alone
    ],
)
def test_chunks_as_sent(chunks: list[bytes], content: bytes, total: int) -> None:
    for pieces in splits(START + bdat(chunks) + b"NOOP\r\n"):
        conn = ServerConnection()
        events, out = run(pieces, shell, conn)
        assert content_of(events) == content
        assert [(e.size, e.last) for e in ends(events)] == [
            (len(c), i == len(chunks) - 1) for i, c in enumerate(chunks)]
        assert ends(events)[-1].total == total
        assert isinstance(events[-1], ev.Noop)  # the bytes after the chunk are commands
        assert replies_of(out)[-2] == f"250 2.0.0 Ok: {total} bytes queued as {QID}"
        assert conn.state is State.IDLE and not conn.bdat


@pytest.mark.parametrize("n", [2, 10])
def test_pipelined_chunks(n: int) -> None:
    chunks = [b"line %d\r\n" % i for i in range(n)]
    for pieces in splits(START + bdat(chunks) + b"QUIT\r\n"):
        events, out = run(pieces, shell)
        assert content_of(events) == b"".join(c.replace(b"\r\n", b"\n") for c in chunks)
        lines = replies_of(out)
        assert lines[-(n + 1):-1] == [f"250 2.0.0 Ok: {len(c)} bytes" for c in chunks[:-1]] + [
            f"250 2.0.0 Ok: {sum(map(len, chunks))} bytes queued as {QID}"]


def test_a_chunk_that_looks_like_commands_is_content() -> None:
    chunk = b"RSET\r\nQUIT\r\n"
    events, _ = run([START + bdat([chunk])], shell)
    assert content_of(events) == b"RSET\nQUIT\n"
    assert not any(isinstance(e, ev.Rset | ev.Quit) for e in events)


def test_data_mail_rcpt_after_bdat_are_refused() -> None:
    # Postfix 3.7: 503 5.5.1 Error: DATA after BDAT; the transaction goes on.
    events, out = run([START + b"BDAT 5\r\nhelloBDAT 3\r\nabcDATA\r\nRCPT TO:<e@f>\r\n"
                       b"MAIL FROM:<a@b>\r\nBDAT 0 LAST\r\n"], shell)
    assert replies_of(out)[-6:] == [
        "250 2.0.0 Ok: 5 bytes", "250 2.0.0 Ok: 3 bytes",
        "503 5.5.1 Error: DATA after BDAT", "503 5.5.1 Error: RCPT after BDAT",
        "503 5.5.1 Error: nested MAIL command",
        f"250 2.0.0 Ok: 10 bytes queued as {QID}"]
    assert content_of(events) == b"helloabc\n"


def test_mail_after_a_refused_bdat_without_transaction() -> None:
    # Postfix 3.7, side by side: the refused BDAT starts a sequence; its chunk is dropped.
    out = run([b"EHLO c\r\nBDAT 3\r\nabcMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
               b"BDAT 3 LAST\r\nabcMAIL FROM:<a@b>\r\n"], shell)[1]
    assert replies_of(out)[3:] == [
        "503 5.5.1 Error: need RCPT command", "503 5.5.1 Error: MAIL after BDAT",
        "503 5.5.1 Error: need MAIL command", "551 5.0.0 Discarded 3 bytes after earlier error",
        "250 2.1.0 Ok"]


def test_bdat_without_recipient() -> None:
    events, out = run([b"EHLO c\r\nMAIL FROM:<a@b>\r\nBDAT 3\r\nabcRCPT TO:<c@d>\r\n"
                       b"BDAT 3 LAST\r\nabc"], shell)
    assert replies_of(out)[-3:] == [
        "554 5.5.1 Error: no valid recipients", "503 5.5.1 Error: RCPT after BDAT",
        "551 5.0.0 Discarded 3 bytes after earlier error"]
    assert content_of(events) == b""
    assert ends(events)[-1].last and ends(events)[-1].refusal is not None


def test_null_bdat() -> None:
    _, out = run([START + b"BDAT 0\r\nBDAT 3 LAST\r\nabcNOOP\r\n"], shell)
    assert replies_of(out)[-3:] == [
        "551 5.7.1 Null BDAT request", "551 5.0.0 Discarded 3 bytes after earlier error",
        "250 2.0.0 Ok"]


@pytest.mark.parametrize("sizes", [[2500], [1500, 1500], [1999, 2]])
def test_message_size_limit_across_chunks(sizes: list[int]) -> None:
    # Postfix 3.7: 552 5.3.4 Chunk exceeds message size limit, before the chunk is used;
    # every later chunk up to LAST is read and dropped.
    chunks = [b"a" * (n - 1) + b"\n" for n in sizes] + [b"b" * 10]
    wire = START + bdat(chunks) + b"NOOP\r\n"
    for pieces in [[wire], [wire[:150], wire[150:]]]:
        conn = ServerConnection(message_size_limit=2000)
        events, out = run(pieces, shell, conn)
        lines = replies_of(out)[-(len(sizes) + 2):]
        assert lines[len(sizes) - 1] == "552 5.3.4 Chunk exceeds message size limit"
        assert lines[-2] == "551 5.0.0 Discarded 10 bytes after earlier error"
        assert lines[-1] == "250 2.0.0 Ok"
        assert b"b" not in content_of(events)
        assert conn.state is State.IDLE


def test_size_limit_exactly_reached_is_fine() -> None:
    _, out = run([START + bdat([b"a" * 1000, b"b" * 1000])],
                 shell, message_size_limit=2000)
    assert replies_of(out)[-1] == f"250 2.0.0 Ok: 2002 bytes queued as {QID}"


@pytest.mark.parametrize("line", [b"BDAT", b"BDAT x", b"BDAT 3 FOO", b"BDAT 1 LAST x",
                                  b"BDAT -1", b"BDAT 99999999999999999999"])
def test_bad_syntax_closes(line: bytes) -> None:
    conn = ServerConnection()
    events, out = run([START + line + b"\r\nNOOP\r\n"], shell, conn)
    assert replies_of(out)[-1] == "521 5.5.4 Syntax: BDAT count [LAST]"
    assert isinstance(events[-1], ev.Closed) and conn.state is State.CLOSED


def test_lower_case_last_and_leading_zeros() -> None:
    events, out = run([START + b"bdat 00003 last\r\nabc"], shell)
    assert content_of(events) == b"abc\n"
    assert replies_of(out)[-1] == f"250 2.0.0 Ok: 5 bytes queued as {QID}"


def test_rset_ends_the_sequence() -> None:
    conn = ServerConnection()
    _, out = run([START + b"BDAT 2\r\nabRSET\r\nMAIL FROM:<a@b>\r\n"], shell, conn)
    assert replies_of(out)[-2:] == ["250 2.0.0 Ok", "250 2.1.0 Ok"]
    assert not conn.bdat


def test_refused_last_chunk_by_the_shell_ends_the_transaction() -> None:
    def refusing(event: ev.Event) -> Reply | None:
        if isinstance(event, ev.ChunkEnd) and event.last:
            return r.QUEUE_WRITE_ERROR
        return shell(event)

    conn = ServerConnection()
    _, out = run([START + b"BDAT 1 LAST\r\nxRCPT TO:<c@d>\r\n"], refusing, conn)
    assert replies_of(out)[-1] == "503 5.5.1 Error: need MAIL command"


def test_binarymime_needs_bdat() -> None:
    _, out = run([b"EHLO c\r\nMAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                  b"BDAT 2 LAST\r\n\x00\n"], shell)
    assert replies_of(out)[-2:] == ["503 5.5.1 Error: BODY=BINARYMIME requires BDAT",
                                    f"250 2.0.0 Ok: 2 bytes queued as {QID}"]


def test_eof_inside_a_chunk_closes() -> None:
    conn = ServerConnection()
    events, _ = run([START + b"BDAT 10\r\nabc", b""], shell, conn)
    assert isinstance(events[-1], ev.Closed)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=6), st.data())
def test_random_chunks_any_cut(chunks: list[bytes], data: st.DataObject) -> None:
    chunks = [c for c in chunks[:-1] if c] + chunks[-1:]  # BDAT 0 (not LAST) is refused
    wire = START + bdat(chunks) + b"NOOP\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True) if b > a]
    events, _ = run(pieces, shell)
    raw = b"".join(chunks)
    expected = raw.replace(b"\r\n", b"\n")
    if raw and not raw.endswith(b"\n"):
        expected += b"\n"
    assert content_of(events) == expected
    assert isinstance(events[-1], ev.Noop)
