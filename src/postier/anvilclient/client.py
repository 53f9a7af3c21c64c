"""smtpd's client of the anvil service: one stream per process, requests pipelined.

Follows Postfix's anvil_clnt(3) and clnt_stream(3): the stream to
``QUEUE_DIR/private/anvil`` is opened at the first request and reopened after a
loss; every session of the worker shares it, and answers come back in the order of
the requests. When anvil cannot be reached, or does not answer within ``timeout``,
the request gets None and smtpd goes on without limits, as Postfix does; the
failure is logged as Postfix logs it (``warning: connect to private/anvil: No such
file or directory``, ``warning: problem talking to server private/anvil: …``) and
the next connection attempt waits ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections import deque
from typing import Protocol

from postier.anvilclient.protocol import Answer, ProtocolError, Reader, Request, encode_request

SERVICE_PATH = "private/anvil"  # relative to queue_directory, as Postfix names it


class Warn(Protocol):
    def __call__(self, text: str, /) -> None: ...


class AnvilClient:
    """Ask anvil about one event; ``await client.ask(Request.CONNECT, ident)`` gives the
    ``Answer``, or None when anvil is unavailable (already logged).

    ``queue_dir``: the queue directory; ``warn``: a logger's ``warning``; ``timeout``
    and ``retry_after`` in seconds.
    """

    def __init__(self, queue_dir: str, warn: Warn, *, timeout: float = 10.0,
                 retry_after: float = 1.0) -> None:
        self.path = os.path.join(queue_dir, SERVICE_PATH)
        self.warn = warn
        self.timeout = timeout
        self.retry_after = retry_after
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: deque[asyncio.Future[Answer | None]] = deque()
        self._connecting: asyncio.Lock | None = None
        self._next_try = 0.0

    async def ask(self, request: Request, ident: str) -> Answer | None:
        """Send one request and wait for its answer (None: anvil unavailable)."""
        writer = await self._stream()
        if writer is None:
            return None
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        try:
            writer.write(encode_request(request, ident))
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(future)
        except TimeoutError:
            self._lost("timeout")
        except OSError as exc:
            self._lost(exc.strerror or str(exc))
        return None

    async def _stream(self) -> asyncio.StreamWriter | None:
        if self._writer is not None and not self._writer.is_closing():
            return self._writer
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connection attempt at a time
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            if time.monotonic() < self._next_try:
                return None
            try:
                async with asyncio.timeout(self.timeout):
                    reader, writer = await asyncio.open_unix_connection(self.path)
            except (OSError, TimeoutError) as exc:
                reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else \
                    os.strerror(errno.ETIMEDOUT)
                self.warn(f"connect to {SERVICE_PATH}: {reason}")
                self.warn(f"problem talking to server {SERVICE_PATH}: {reason}")
                self._next_try = time.monotonic() + self.retry_after
                return None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader))
            return writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = Reader()
        reason = "lost connection"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                for attrs in parser.feed(data):
                    answer = Answer.decode(attrs)
                    if self._pending:
                        future = self._pending.popleft()
                        if not future.done():
                            future.set_result(answer)
        except ProtocolError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = exc.strerror or str(exc)
        self._reader_task = None  # this task ends here: _lost must not cancel it
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        """Close the stream; every request still waiting gets None."""
        if self._writer is None:
            return
        self.warn(f"problem talking to server {SERVICE_PATH}: {reason}")
        self._writer.close()
        self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            self._reader_task = None
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_result(None)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_result(None)
