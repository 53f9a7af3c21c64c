"""The Dovecot authentication client: one connection per process, shared by its sessions (asyncio).

Follows Postfix's xsasl_dovecot_server.c (smtpd_sasl_type = dovecot,
``smtpd_sasl_path`` = a UNIX socket relative to ``queue_directory`` or
``inet:host:port``) and Dovecot's auth protocol (``dovecot_protocol``). The socket is
connected lazily, so after smtpd dropped its privileges (a listener with ``mode =
0660, group = postfix`` works); a connection lost is reopened at the next request;
every wait is bounded by ``timeout``. Failures to reach the server are logged once per
attempt as Postfix does (``SASL: Connect to Dovecot auth socket '…' failed: …``) and
answered ``Status.TEMP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from postier.sasl import dovecot_protocol as dp
from postier.sasl.api import ClientInfo, Status, Step, Unavailable
from postier.sasl.mechanisms import Mechanism

DEFAULT_TIMEOUT = 30.0  # seconds for a connect + handshake, and for each reply
MAX_LINE = 65536


class Logger(Protocol):
    def warning(self, text: str) -> None: ...


@dataclass(frozen=True)
class Endpoint:
    """Where Dovecot listens: a UNIX socket ``path``, or ``host``:``port``.
    ``name`` is the configured text, for log lines."""

    name: str
    path: str | None = None
    host: str | None = None
    port: int = 0


def endpoint(sasl_path: str, queue_directory: str) -> Endpoint:
    """``smtpd_sasl_path`` as Postfix reads it for Dovecot: ``inet:host:port``,
    ``unix:path`` or a path (relative ones under ``queue_directory``).
    Raises ValueError for an ``inet:`` without a port."""
    if sasl_path.startswith("inet:"):
        host, colon, port = sasl_path[5:].rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"smtpd_sasl_path: bad inet address: {sasl_path}")
        return Endpoint(sasl_path, host=host.strip("[]") or "localhost", port=int(port))
    path = sasl_path[5:] if sasl_path.startswith("unix:") else sasl_path
    return Endpoint(sasl_path, path=os.path.join(queue_directory, path))


class _Connection:
    """One open connection: its mechanisms and the replies awaited, by request ID."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 mechanisms: list[Mechanism]) -> None:
        self.reader = reader
        self.writer = writer
        self.mechanisms = mechanisms
        self.waiting: dict[int, asyncio.Future[Step]] = {}
        self.ids = itertools.count(1)
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    def send(self, data: bytes) -> None:
        if self.closed or self.writer.transport.is_closing():
            raise Unavailable("connection to the authentication server is closed")
        self.writer.write(data)

    async def read_replies(self, log: Logger, where: str) -> None:
        """Route every reply line to its request until the connection ends."""
        reason = "connection closed"
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    reason = "line too long or incomplete"
                    break
                text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
                request_id, step = dp.parse_reply(text)
                future = self.waiting.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result(step)
        except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
            reason = str(exc) or type(exc).__name__
        log.warning(f"SASL: Dovecot auth socket '{where}': {reason}")
        self.close(reason)

    def close(self, reason: str) -> None:
        self.closed = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(Unavailable(reason))
        self.waiting.clear()
        self.writer.transport.abort()


class DovecotClient:
    """``Authenticator`` for smtpd_sasl_type = dovecot; one per smtpd process."""

    def __init__(self, where: Endpoint, log: Logger, *, timeout: float = DEFAULT_TIMEOUT,
                 pid: int | None = None) -> None:
        self.where = where
        self.log = log
        self.timeout = timeout
        self.pid = os.getpid() if pid is None else pid
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    async def connection(self) -> _Connection:
        """The open connection, opened (and its handshake read) when needed.
        Raises ``Unavailable`` (logged)."""
        async with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            try:
                async with asyncio.timeout(self.timeout):
                    self._conn = await self._open()
            except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (
                    str(exc) or "timeout")
                self.log.warning(
                    f"SASL: Connect to Dovecot auth socket '{self.where.name}' failed: {reason}")
                raise Unavailable(reason) from exc
            return self._conn

    async def _open(self) -> _Connection:
        if self.where.path is not None:
            reader, writer = await asyncio.open_unix_connection(self.where.path, limit=MAX_LINE)
        else:
            reader, writer = await asyncio.open_connection(
                self.where.host, self.where.port, limit=MAX_LINE)
        try:
            writer.write(dp.hello(self.pid))
            handshake = dp.Handshake()
            while not handshake.done:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise ValueError("connection closed during the handshake")
                handshake.feed(line.rstrip(b"\r\n").decode("utf-8", "surrogateescape"))
        except BaseException:
            writer.transport.abort()
            raise
        conn = _Connection(reader, writer, handshake.mechanisms)
        conn.task = asyncio.get_running_loop().create_task(
            conn.read_replies(self.log, self.where.name))
        return conn

    async def mechanisms(self) -> Sequence[Mechanism]:
        return (await self.connection()).mechanisms

    def conversation(self, mechanism: str, client: ClientInfo) -> DovecotConversation:
        return DovecotConversation(self, mechanism, client)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close("closed")
            if conn.task is not None:
                conn.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await conn.task


class DovecotConversation:
    """One AUTH exchange over the shared connection."""

    def __init__(self, client: DovecotClient, mechanism: str, info: ClientInfo) -> None:
        self.client = client
        self.mechanism = mechanism
        self.info = info
        self.conn: _Connection | None = None
        self.request_id = 0
        self.finished = False

    async def start(self, initial: str | None) -> Step:
        try:
            self.conn = await self.client.connection()
        except Unavailable:
            self.finished = True
            return Step(Status.TEMP)
        if not any(m.name == self.mechanism for m in self.conn.mechanisms):
            self.finished = True
            return Step(Status.FAIL, reason="Invalid authentication mechanism")
        self.request_id = next(self.conn.ids)
        return await self._ask(dp.auth_request(self.request_id, self.mechanism, self.info,
                                               initial))

    async def respond(self, response: str) -> Step:
        if self.finished or self.conn is None:
            return Step(Status.TEMP)
        return await self._ask(dp.cont_request(self.request_id, response))

    async def _ask(self, request: bytes) -> Step:
        conn = self.conn
        assert conn is not None
        future: asyncio.Future[Step] = asyncio.get_running_loop().create_future()
        try:
            conn.waiting[self.request_id] = future
            conn.send(request)
            async with asyncio.timeout(self.client.timeout):
                step = await future
        except TimeoutError:
            self.client.log.warning(
                f"SASL: Dovecot auth socket '{self.client.where.name}': timeout")
            self.cancel()
            return Step(Status.TEMP)
        except Unavailable:
            conn.waiting.pop(self.request_id, None)
            self.finished = True
            return Step(Status.TEMP)
        except BaseException:  # cancelled with the session: tell Dovecot to forget it
            self.cancel()
            raise
        if step.status is not Status.MORE:
            self.finished = True
        return step

    def cancel(self) -> None:
        conn = self.conn
        if self.finished or conn is None:
            return
        self.finished = True
        conn.waiting.pop(self.request_id, None)
        with contextlib.suppress(Unavailable, OSError, RuntimeError):
            conn.send(dp.cancel_request(self.request_id))
