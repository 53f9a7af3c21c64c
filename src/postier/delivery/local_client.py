"""The ``local`` transport: the queue manager's client of the local delivery agent.

Follows Postfix's local(8) as seen from qmgr(8): each delivery request goes to the
local process over the unix stream socket ``private/local`` as one line of
``postier.delivery.protocol``; requests are pipelined on one connection and answers
matched by ``id``. The local process logs every status it returns. A socket that
cannot be reached or goes away raises ``TransportUnavailable`` for the requests in
flight; the next request reconnects.
"""

from __future__ import annotations

import asyncio

from postier import stream
from postier.delivery.protocol import DeliverAnswer, DeliverRequest
from postier.delivery.transport import DeliveryRequest, RcptResult, TransportUnavailable


class LocalClient:
    """A pipelined client of the local delivery agent's socket at ``path``.

    ``deliver(req)`` sets ``req.id`` and returns the matching answer; it raises
    ``OSError``/``ConnectionError`` when the agent cannot be reached or goes away.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future[DeliverAnswer]] = {}
        self.next_id = 1
        self.lock = asyncio.Lock()
        self.reader_task: asyncio.Task[None] | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_unix_connection(self.path)
        self.reader_task = asyncio.create_task(self._read_answers(self.reader))

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                answer = DeliverAnswer.decode(line)
                fut = self.pending.pop(answer.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(answer)
        except (ConnectionError, OSError):
            pass  # every pending request fails below; the next request reconnects
        finally:
            self.writer = None
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("local delivery agent went away"))
            self.pending.clear()

    async def deliver(self, req: DeliverRequest) -> DeliverAnswer:
        async with self.lock:
            if self.writer is not None and self.writer.is_closing() and self.reader_task:
                # The agent went away; its reader fails what was pending, then we reconnect.
                await asyncio.wait([self.reader_task])
            if self.writer is None:
                await self._connect()
            req.id = self.next_id
            self.next_id += 1
            fut: asyncio.Future[DeliverAnswer] = asyncio.get_running_loop().create_future()
            self.pending[req.id] = fut
            assert self.writer is not None
            try:  # the agent gone (its transport closing): PeerGone, a ConnectionError
                stream.write(self.writer, req.encode())
            except stream.PeerGone:
                del self.pending[req.id]
                raise
        return await fut


class LocalTransport:
    """The ``local`` transport over a ``LocalClient`` (the next hop is not sent)."""

    def __init__(self, path: str) -> None:
        self.client = LocalClient(path)

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        wire = DeliverRequest(
            0, request.queue_id, request.path, request.sender, request.arrival,
            list(request.recipients), request.attrs,
        )
        try:
            answer = await self.client.deliver(wire)
        except (OSError, ConnectionError) as exc:
            raise TransportUnavailable(f"local delivery agent unavailable: {exc}") from exc
        return answer.results
