"""A scripted shell for driving ServerConnection in tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection

HOST = "tintin.example.com"


def positive(event: ev.Event) -> Reply | None:
    """The reply an accepting shell gives."""
    match event:
        case ev.Helo(extended=True):
            return r.ehlo(HOST, ["PIPELINING", "SIZE 10240000"])
        case ev.Helo():
            return r.helo(HOST)
        case ev.Mail():
            return r.MAIL_OK
        case ev.Rcpt():
            return r.RCPT_OK
        case ev.Data():
            return r.DATA_GO
        case ev.DataEnd(too_big=True):
            return r.MESSAGE_TOO_BIG
        case ev.DataEnd():
            return r.queued("3F1A2B4C5D")
        case ev.Rset() | ev.Noop():
            return r.OK
        case ev.Quit():
            return r.BYE
        case ev.Vrfy(argument=arg):
            return r.vrfy_ok(arg)
        case ev.StartTls():
            return r.STARTTLS_GO
        case ev.Auth() | ev.AuthLine():
            return r.AUTH_OK
        case ev.ProtocolError(reply=reply):
            return reply
        case _:
            return None


def merge(events: Iterable[ev.Event]) -> list[ev.Event]:
    """Consecutive DataChunks joined into one (chunking depends on how bytes arrived)."""
    out: list[ev.Event] = []
    for e in events:
        if isinstance(e, ev.DataChunk) and out and isinstance(out[-1], ev.DataChunk):
            out[-1] = ev.DataChunk(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def drain(
    conn: ServerConnection, shell: Callable[[ev.Event], Reply | None] = positive
) -> tuple[list[ev.Event], bytes]:
    events: list[ev.Event] = []
    out = b""
    while True:
        e = conn.next_event()
        if e is ev.NEED_DATA:
            return events, out
        assert not isinstance(e, ev.NeedData)
        events.append(e)
        if isinstance(e, ev.Closed):
            return events, out
        reply = shell(e)
        if reply is not None:
            out += conn.send(reply)


def run(
    pieces: Iterable[bytes],
    shell: Callable[[ev.Event], Reply | None] = positive,
    conn: ServerConnection | None = None,
    **kwargs: object,
) -> tuple[list[ev.Event], bytes]:
    conn = conn or ServerConnection(**kwargs)  # type: ignore[arg-type]
    events: list[ev.Event] = []
    out = b""
    for piece in pieces:
        conn.receive_data(piece)
        evs, o = drain(conn, shell)
        events += evs
        out += o
    return merge(events), out


def splits(data: bytes) -> list[list[bytes]]:
    """The input whole, byte by byte, and in 7-byte pieces."""
    return [[data], [data[i:i + 1] for i in range(len(data))],
            [data[i:i + 7] for i in range(0, len(data), 7)]]
