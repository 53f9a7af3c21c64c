"""The client of Postfix's policy delegation protocol: one request, one ``action=`` answer.

Follows SMTPD_POLICY_README (requests are ``name=value`` lines ended by an empty line;
the answer is ``action=…`` lines ended by an empty line) and postconf(5)
``check_policy_service`` with ``smtpd_policy_service_timeout``, ``_max_idle``,
``_max_ttl``, ``_try_limit``, ``_retry_delay`` and ``_request_limit``. The server is
``unix:/path`` (a relative path is under ``queue_directory``, as ``private/policy``) or
``inet:host:port``. One connection per service is kept open between requests of a
process and reused (closed after ``max_idle`` of silence, ``max_ttl`` of age or
``request_limit`` requests). A request that gets no answer (connection refused, timeout,
a reply without ``action=``) is tried again up to ``try_limit`` times; after that the
caller gets ``PolicyUnavailable`` and applies ``smtpd_policy_service_default_action``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: The longest answer line read (Postfix's line_length_limit default).
MAX_LINE = 2048


class PolicyUnavailable(Exception):
    """The policy server gave no usable answer (the text says why, for the log)."""


@dataclass(frozen=True)
class PolicyServiceSettings:
    """The ``smtpd_policy_service_*`` parameters, in seconds and counts."""

    timeout: float = 100.0
    max_idle: float = 300.0
    max_ttl: float = 1000.0
    try_limit: int = 2
    retry_delay: float = 1.0
    request_limit: int = 0  # 0: no limit


def encode_request(attributes: Sequence[tuple[str, str]]) -> bytes:
    """A request: ``name=value`` lines, then an empty line. A newline inside a value
    would end the request early: it is replaced by a space."""
    lines = [f"{name}={value.replace(chr(10), ' ').replace(chr(13), ' ')}"
             for name, value in attributes]
    return ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape")


def parse_answer(lines: Sequence[str]) -> str:
    """The ``action=`` value of an answer's lines (without the empty line); raises
    PolicyUnavailable when there is none."""
    for line in lines:
        name, eq, value = line.partition("=")
        if eq and name.strip() == "action":
            return value.strip()
    raise PolicyUnavailable("policy server answer without action=")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float
    last_used: float
    requests: int = 0

    def close(self) -> None:
        self.writer.close()


class PolicyClient:
    """Requests to one policy service, over a reused connection.

    ``service``: ``unix:path`` or ``inet:host:port``; ``queue_directory``: where a
    relative unix path is; ``clock``: monotonic seconds (tests).
    """

    def __init__(self, service: str, settings: PolicyServiceSettings, queue_directory: str = "/",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.settings = settings
        self.queue_directory = queue_directory
        self.clock = clock
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()

    async def _open(self) -> _Connection:
        kind, _, where = self.service.partition(":")
        if kind == "inet":
            host, _, port = where.rpartition(":")
            reader, writer = await asyncio.open_connection(host.strip("[]") or "localhost",
                                                           int(port), limit=MAX_LINE * 4)
        else:
            path = where if kind == "unix" else self.service
            reader, writer = await asyncio.open_unix_connection(
                os.path.join(self.queue_directory, path), limit=MAX_LINE * 4)
        now = self.clock()
        return _Connection(reader, writer, now, now)

    def _usable(self, conn: _Connection) -> bool:
        s, now = self.settings, self.clock()
        return not (now - conn.last_used > s.max_idle or now - conn.opened > s.max_ttl
                    or (s.request_limit and conn.requests >= s.request_limit)
                    or conn.writer.is_closing())

    async def _once(self, request: bytes) -> str:
        conn = self._conn
        if conn is not None and not self._usable(conn):
            conn.close()
            conn = self._conn = None
        if conn is None:
            conn = self._conn = await self._open()
        conn.writer.write(request)
        await conn.writer.drain()
        lines: list[str] = []
        while True:
            raw = await conn.reader.readline()
            if not raw:
                raise PolicyUnavailable("policy server closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                break
            lines.append(line)
        conn.requests += 1
        conn.last_used = self.clock()
        return parse_answer(lines)

    async def ask(self, attributes: Sequence[tuple[str, str]]) -> str:
        """The server's action for one request; raises PolicyUnavailable after
        ``try_limit`` tries without an answer."""
        request = encode_request(attributes)
        reason = "no try"
        async with self._lock:
            for attempt in range(max(1, self.settings.try_limit)):
                if attempt:
                    await asyncio.sleep(self.settings.retry_delay)
                try:
                    return await asyncio.wait_for(self._once(request), self.settings.timeout)
                except TimeoutError:
                    reason = "timeout"
                except (OSError, ValueError, asyncio.LimitOverrunError,
                        PolicyUnavailable) as exc:
                    reason = str(exc) or type(exc).__name__
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
        raise PolicyUnavailable(f"problem talking to server {self.service}: {reason}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
