"""stream: what each event loop raises for a peer gone becomes PeerGone, and only that."""

from __future__ import annotations

import asyncio
import errno

import pytest

from postier import stream


class FakeTransport(asyncio.WriteTransport):
    """A transport that is open or closing, and whose write raises what it is told to."""

    def __init__(self, closing: bool = False, raises: BaseException | None = None) -> None:
        super().__init__()
        self.closing = closing
        self.raises = raises
        self.written = b""
        self.aborted = False
        self.buffered = 0

    def is_closing(self) -> bool:
        return self.closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.raises is not None:
            raise self.raises
        self.written += bytes(data)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = self.closing = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeWriter:
    """The part of asyncio.StreamWriter the helpers use."""

    def __init__(self, transport: FakeTransport, drain: BaseException | None = None) -> None:
        self.transport = transport
        self.drain_raises = drain
        self.drain_blocks = False
        self.closed_waited = False

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self.drain_raises is not None:
            raise self.drain_raises
        if self.drain_blocks:
            await asyncio.Event().wait()

    def close(self) -> None:
        self.transport.close()

    async def wait_closed(self) -> None:
        self.closed_waited = True
        if self.drain_raises is not None:
            raise self.drain_raises
        if self.drain_blocks:
            await asyncio.Event().wait()


def writer(
    transport: FakeTransport, drain: BaseException | None = None, blocks: bool = False
) -> asyncio.StreamWriter:
    """A FakeWriter typed as the StreamWriter it stands for."""
    fake = FakeWriter(transport, drain)
    fake.drain_blocks = blocks
    return fake  # type: ignore[return-value]


PEER_GONE = [
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    BrokenPipeError(errno.EPIPE, "Broken pipe"),
    OSError(errno.EHOSTUNREACH, "No route to host"),
    TimeoutError(errno.ETIMEDOUT, "Connection timed out"),
    asyncio.IncompleteReadError(b"partial", 10),
]


@pytest.mark.parametrize("exc", PEER_GONE, ids=lambda e: type(e).__name__)
def test_what_the_loop_raises_for_a_peer_gone_is_peer_gone(exc: BaseException) -> None:
    with pytest.raises(stream.PeerGone) as info, stream.peer_errors(FakeTransport()):
        raise exc
    assert info.value.__cause__ is exc
    assert isinstance(info.value, ConnectionError)  # old `except ConnectionError` still works


def test_peer_gone_says_the_systems_words() -> None:
    reset = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    with pytest.raises(stream.PeerGone) as info, stream.peer_errors(FakeTransport()):
        raise reset
    assert str(info.value) == "Connection reset by peer"


def test_runtime_error_of_a_closed_transport_is_peer_gone() -> None:
    # uvloop: "unable to perform operation on <TCPTransport closed=True …>; the handler is closed"
    closed = RuntimeError("unable to perform operation; the handler is closed")
    with pytest.raises(stream.PeerGone), stream.peer_errors(FakeTransport(closing=True)):
        raise closed


@pytest.mark.parametrize("exc", [RuntimeError("our bug"), ValueError("x"), KeyError("k")])
def test_our_bugs_go_through_unchanged(exc: Exception) -> None:
    # A RuntimeError while the transport is open is ours, not the peer's.
    with pytest.raises(type(exc)) as info, stream.peer_errors(FakeTransport()):
        raise exc
    assert info.value is exc


def test_write_to_a_closing_transport_writes_nothing_and_raises_peer_gone() -> None:
    transport = FakeTransport(closing=True)
    with pytest.raises(stream.PeerGone):
        stream.write(writer(transport), b"250 ok\r\n")
    assert transport.written == b""


def test_write_to_an_open_transport_writes() -> None:
    transport = FakeTransport()
    stream.write(writer(transport), b"250 ok\r\n")
    assert transport.written == b"250 ok\r\n"


@pytest.mark.parametrize(
    "exc", [RuntimeError("the handler is closed"), BrokenPipeError(errno.EPIPE, "Broken pipe")]
)
def test_write_that_fails_because_the_peer_left_raises_peer_gone(exc: BaseException) -> None:
    transport = FakeTransport(raises=exc)

    def close_then_raise() -> None:  # the loop closes the transport as it fails
        transport.closing = True
        raise exc

    transport.write = lambda data: close_then_raise()  # type: ignore[method-assign]
    with pytest.raises(stream.PeerGone):
        stream.write(writer(transport), b"x")


def test_drain_reset_is_peer_gone() -> None:
    w = writer(FakeTransport(), ConnectionResetError(errno.ECONNRESET, "reset"))
    with pytest.raises(stream.PeerGone):
        asyncio.run(stream.drain(w, 10))


def test_drain_of_a_peer_that_reads_nothing_aborts_and_times_out() -> None:
    transport = FakeTransport()
    with pytest.raises(stream.PeerTimeout):
        asyncio.run(stream.drain(writer(transport, blocks=True), 0))
    assert transport.aborted


def test_read_reset_is_peer_gone_and_eof_is_empty() -> None:
    async def read(feed: BaseException | None) -> bytes:
        reader = asyncio.StreamReader()
        if feed is None:
            reader.feed_eof()
        else:
            reader.set_exception(feed)
        return await stream.read(reader, FakeTransport(), 100, 10)

    assert asyncio.run(read(None)) == b""
    with pytest.raises(stream.PeerGone):
        asyncio.run(read(ConnectionResetError(errno.ECONNRESET, "reset")))


def test_read_of_a_silent_peer_times_out() -> None:
    async def read() -> bytes:
        return await stream.read(asyncio.StreamReader(), FakeTransport(), 100, 0)

    with pytest.raises(stream.PeerTimeout):
        asyncio.run(read())


def test_each_read_gets_its_own_timeout_though_the_timer_is_shared() -> None:
    # Five reads of 0.06 s each, 0.15 s allowed per read: 0.3 s in all, twice the
    # timeout, and none may time out (the shared timer re-arms for the read in progress).
    async def main() -> list[bytes]:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        loop = asyncio.get_running_loop()
        got = []
        for i in range(5):
            loop.call_later(0.06, reader.feed_data, b"%d" % i)
            got.append(await stream.read(reader, transport, 100, 0.15))
        return got

    assert asyncio.run(main()) == [b"0", b"1", b"2", b"3", b"4"]


def test_a_shorter_timeout_after_a_longer_one_still_applies() -> None:
    async def main() -> None:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        reader.feed_data(b"x")
        assert await stream.read(reader, transport, 100, 300) == b"x"
        await asyncio.wait_for(stream.read(reader, transport, 100, 0.05), 5)

    with pytest.raises(stream.PeerTimeout):
        asyncio.run(main())


def test_a_silent_peer_times_out_after_the_timeout_not_before() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(stream.PeerTimeout):
            await stream.read(asyncio.StreamReader(), FakeTransport(), 100, 0.1)
        return loop.time() - start

    assert 0.09 <= asyncio.run(main()) < 5


def test_a_read_cancelled_by_someone_else_is_cancelled_not_timed_out() -> None:
    async def main() -> None:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        task = asyncio.create_task(stream.read(reader, transport, 100, 300))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # and the connection's next read still works, with its own timeout
        reader.feed_data(b"y")
        assert await stream.read(reader, transport, 100, 300) == b"y"
        with pytest.raises(stream.PeerTimeout):
            await stream.read(reader, transport, 100, 0.01)

    asyncio.run(main())


def test_an_outer_timeout_around_a_read_stays_the_outer_ones() -> None:
    # smtpd's early_input: asyncio.timeout(0) around a read that finds nothing.
    async def main() -> bytes:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        try:
            async with asyncio.timeout(0):
                await stream.read(reader, transport, 100, 300)
        except TimeoutError:
            pass
        reader.feed_data(b"late")
        return await stream.read(reader, transport, 100, 300)

    assert asyncio.run(main()) == b"late"


def test_a_transport_read_under_a_new_loop_gets_a_new_timer() -> None:
    transport = FakeTransport()

    async def once() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"z")
        return await stream.read(reader, transport, 100, 300)

    async def silent() -> bytes:
        return await asyncio.wait_for(
            stream.read(asyncio.StreamReader(), transport, 100, 0.05), 5)

    assert asyncio.run(once()) == b"z"
    with pytest.raises(stream.PeerTimeout):  # timed by this loop, not the closed one
        asyncio.run(silent())


def test_a_peer_gone_leaves_no_timer() -> None:
    async def main() -> int:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        loop = asyncio.get_running_loop()
        reader.set_exception(ConnectionResetError(errno.ECONNRESET, "reset"))
        with pytest.raises(stream.PeerGone):
            await stream.read(reader, transport, 100, 300)
        await asyncio.sleep(0)
        return len(loop._scheduled)  # type: ignore[attr-defined]

    assert asyncio.run(main()) == 0


class SlottedTransport(asyncio.Transport):
    """Like asyncio's TLS transport: no weak reference can be made to it."""

    __slots__ = ()

    def is_closing(self) -> bool:
        return False


def test_read_times_a_transport_that_cannot_be_weakly_referenced() -> None:
    # asyncio's _SSLProtocolTransport (after STARTTLS) has __slots__ and no __weakref__.
    async def main() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"tls")
        transport = SlottedTransport()
        got = await stream.read(reader, transport, 100, 300)
        with pytest.raises(stream.PeerTimeout):
            await stream.read(reader, transport, 100, 0.01)
        return got

    assert asyncio.run(main()) == b"tls"


def test_close_cancels_the_read_timer() -> None:
    async def main() -> int:
        reader, transport = asyncio.StreamReader(), FakeTransport()
        reader.feed_data(b"x")
        await stream.read(reader, transport, 100, 300)
        loop = asyncio.get_running_loop()
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        w = writer(transport)
        w._reader = reader  # type: ignore[attr-defined]  # as asyncio's StreamWriter has it
        await stream.close(w, 10)
        await asyncio.sleep(0)
        return before - len(loop._scheduled)  # type: ignore[attr-defined]

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize(
    "exc", [None, ConnectionResetError(errno.ECONNRESET, "reset"), RuntimeError("closed")]
)
def test_close_never_raises_for_the_peer(exc: BaseException | None) -> None:
    transport = FakeTransport()
    w = writer(transport, exc)
    asyncio.run(stream.close(w, 10))
    assert transport.closing and w.closed_waited  # type: ignore[attr-defined]


def test_close_of_a_peer_that_reads_nothing_aborts() -> None:
    transport = FakeTransport()
    asyncio.run(stream.close(writer(transport, blocks=True), 0))
    assert transport.aborted
