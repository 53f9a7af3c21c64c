"""Stream I/O with the peer's failures mapped once: whatever the event loop raises
because the other end went away becomes ``PeerGone``; a peer too slow, ``PeerTimeout``.

Follows Postfix's smtp_stream(3), whose reads and writes end a session with one of two
outcomes (``SMTP_ERR_EOF``: "lost connection", ``SMTP_ERR_TIME``: "timeout") whatever
the system said. Here the event loops differ in what they raise for one event: a peer
that resets the connection surfaces as ``ConnectionResetError`` from a read or a drain,
as ``RuntimeError`` ("the handler is closed") from uvloop's ``write`` on the closed
transport, as ``asyncio.IncompleteReadError`` from ``readexactly``, as any ``OSError``
(``EPIPE``, ``ETIMEDOUT``, ``EHOSTUNREACH``…). Shells read and write through these
helpers, so that they tell three kinds apart with one ``except`` each: the peer
(``PeerGone``/``PeerTimeout``: one log line, carry on), the environment (another
``OSError``: a disk, a queue file), our bug (anything else: a traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class PeerGone(ConnectionError):
    """The peer went away (reset, closed, unreachable). ``str()`` is the system's reason.

    A ``ConnectionError``, so that code catching those already catches this one too.
    """


class PeerTimeout(Exception):
    """The peer neither sent nor read anything for the time limit (``*_timeout``)."""


@contextlib.contextmanager
def peer_errors(transport: asyncio.BaseTransport) -> Iterator[None]:
    """Inside, what the event loop raises because the peer is gone becomes ``PeerGone``.

    ``OSError`` and ``EOFError`` (``IncompleteReadError``) always mean that; a
    ``RuntimeError`` only while ``transport`` is closing (uvloop's closed handle), else
    it is our bug and goes through unchanged, as does every other exception.
    """
    try:
        yield
    except PeerGone:
        raise
    except (OSError, EOFError) as exc:
        raise PeerGone(reason(exc)) from exc
    except RuntimeError as exc:
        if not transport.is_closing():
            raise
        raise PeerGone("connection closed") from exc


def reason(exc: BaseException) -> str:
    """The system's words for ``exc`` (``Connection reset by peer``), else its text."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, asyncio.IncompleteReadError):
        return "unexpected end of stream"
    return str(exc) or type(exc).__name__


def write(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Hand ``data`` to the transport (buffered; see ``drain``).

    Raises ``PeerGone`` when the transport is already closing (the peer left, or we
    closed it): nothing is written to a closed transport, whatever the loop.
    """
    if writer.transport.is_closing():
        raise PeerGone("connection closed")
    with peer_errors(writer.transport):
        writer.write(data)


async def drain(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Wait until the transport's buffer is below its high-water mark.

    Raises ``PeerGone``; ``PeerTimeout`` when the peer has read nothing for ``timeout``
    seconds, after aborting the connection (the unread bytes are dropped).
    """
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            with peer_errors(writer.transport):
                await writer.drain()
    except TimeoutError:
        if not deadline.expired():
            raise  # not ours: peer_errors maps every OSError, so this is a bug
        writer.transport.abort()
        raise PeerTimeout("timeout while sending") from None


async def read(reader: asyncio.StreamReader, transport: asyncio.BaseTransport,
               size: int, timeout: float) -> bytes:
    """Up to ``size`` bytes; ``b""`` at the end of the stream (the peer closed cleanly).

    Raises ``PeerGone`` (reset…), ``PeerTimeout`` when nothing came for ``timeout`` seconds.
    """
    deadline = asyncio.timeout(timeout)  # a deadline, not a task per read
    try:
        async with deadline:
            with peer_errors(transport):
                return await reader.read(size)
    except TimeoutError:
        if not deadline.expired():
            raise
        raise PeerTimeout("timeout while reading") from None


async def close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close the connection, sending what is buffered for at most ``timeout`` seconds.

    Never raises because of the peer: a peer that is gone or reads nothing only makes
    the close end sooner (abort).
    """
    transport = writer.transport
    with contextlib.suppress(PeerGone):
        with peer_errors(transport):
            writer.close()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                with peer_errors(transport):
                    await writer.wait_closed()
        except TimeoutError:
            if not deadline.expired():
                raise
            transport.abort()
