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
import weakref
from types import TracebackType


class PeerGone(ConnectionError):
    """The peer went away (reset, closed, unreachable). ``str()`` is the system's reason.

    A ``ConnectionError``, so that code catching those already catches this one too.
    """


class PeerTimeout(Exception):
    """The peer neither sent nor read anything for the time limit (``*_timeout``)."""


class peer_errors:
    """Inside, what the event loop raises because the peer is gone becomes ``PeerGone``.

    ``OSError`` and ``EOFError`` (``IncompleteReadError``) always mean that; a
    ``RuntimeError`` only while ``transport`` is closing (uvloop's closed handle), else
    it is our bug and goes through unchanged, as does every other exception.
    (A class rather than a generator-based ``contextmanager``: it wraps every read
    and write, and costs a fifth as much.)
    """

    __slots__ = ("transport",)

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, PeerGone):
            return
        if isinstance(exc, OSError | EOFError):
            raise PeerGone(reason(exc)) from exc
        if isinstance(exc, RuntimeError) and self.transport.is_closing():
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


class _ReadWatch:
    """The read timeout of one connection: one timer for many reads.

    ``asyncio.timeout`` per read makes and cancels an event-loop timer each time (about
    15 us with uvloop, most of a command's reading cost). Here a read only notes when
    it began; the timer, armed once, fires at the earliest possible expiry and then
    either cancels the read that has waited ``timeout`` seconds or re-arms for the
    read in progress (and stays unarmed while none is). The outcome is the same as
    ``asyncio.timeout``'s: the read is cancelled, and becomes ``PeerTimeout``.
    """

    __slots__ = ("armed_at", "deadline", "fired", "handle", "loop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.handle: asyncio.TimerHandle | None = None
        self.armed_at = 0.0
        self.task: asyncio.Task[object] | None = None
        self.deadline = 0.0
        self.fired = False

    def start(self, task: asyncio.Task[object], timeout: float) -> None:
        self.task = task
        self.fired = False
        self.deadline = self.loop.time() + timeout
        if self.handle is not None and self.armed_at <= self.deadline:
            return  # fires early enough: it re-arms for us if we are still reading
        if self.handle is not None:
            self.handle.cancel()
        self.arm()

    def arm(self) -> None:
        self.armed_at = self.deadline
        self.handle = self.loop.call_at(self.deadline, self.expire)

    def expire(self) -> None:
        self.handle = None
        if self.task is None:
            return  # no read waiting: the next one arms the timer again
        if self.loop.time() < self.deadline:
            self.arm()
            return
        self.fired = True
        self.task.cancel()

    def stop(self) -> None:
        self.task = None

    def cancel(self) -> None:
        self.task = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


#: Each stream's watch, by its reader: a reader outlives a STARTTLS (its transport does
#: not, and asyncio's TLS transport cannot even be weakly referenced).
_watches: weakref.WeakKeyDictionary[asyncio.StreamReader, _ReadWatch] = (
    weakref.WeakKeyDictionary())


async def read(reader: asyncio.StreamReader, transport: asyncio.BaseTransport,
               size: int, timeout: float) -> bytes:
    """Up to ``size`` bytes; ``b""`` at the end of the stream (the peer closed cleanly).

    Raises ``PeerGone`` (reset…), ``PeerTimeout`` when nothing came for ``timeout`` seconds.
    """
    task = asyncio.current_task()
    assert task is not None, "stream.read outside a task"
    loop = task.get_loop()
    watch = _watches.get(reader)
    if watch is None or watch.loop is not loop:
        watch = _watches[reader] = _ReadWatch(loop)
    watch.start(task, timeout)
    try:
        with peer_errors(transport):
            data = await reader.read(size)
    except PeerGone:
        watch.cancel()  # the connection is over: no timer left behind for it
        raise
    except asyncio.CancelledError:
        # Ours only when the watch fired and nobody else asked for a cancellation, as
        # asyncio.timeout decides.
        if watch.fired and task.uncancel() == 0:
            watch.cancel()
            raise PeerTimeout("timeout while reading") from None
        raise
    finally:
        watch.stop()
    if not data:
        watch.cancel()  # the end of the stream: no more reads to time
    return data


async def close(writer: asyncio.StreamWriter, timeout: float) -> None:
    """Close the connection, sending what is buffered for at most ``timeout`` seconds.

    Never raises because of the peer: a peer that is gone or reads nothing only makes
    the close end sooner (abort).
    """
    transport = writer.transport
    reader = getattr(writer, "_reader", None)  # asyncio keeps the writer's reader there
    watch = _watches.pop(reader, None) if isinstance(reader, asyncio.StreamReader) else None
    if watch is not None:
        watch.cancel()
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
