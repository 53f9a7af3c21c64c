#!/usr/bin/env python3
"""Load generator: N concurrent SMTP sessions, each greeted and after EHLO, then idle.

Follows RFC 5321 (SMTP: the 220 greeting, EHLO, a 421 closing the session). One asyncio
process (uvloop when importable) holds every socket, each bound to its own loopback
source address under 127.12.0.0/16 (source_address()) so that N connections never run
short of ephemeral ports. The soft RLIMIT_NOFILE is raised to the hard limit first.

Usage: ``python3 bench/sessions_client.py --port PORT [-n 2000] [--connecting 100]
[--timeout 120]``. When every session has settled (open, refused with 421, or failed) it
prints one JSON object on stdout (``open``, ``refused``,
``failed``, ``seconds``, ``first_error``), then holds the open sessions until a line or
EOF arrives on stdin, prints ``{"still_open": N}`` (sessions the server has neither
closed nor spoken on since), sends QUIT on each and exits 0. Standard library only
(uvloop optional).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

HELO_NAME = "client.bench.example.com"


def source_address(index: int) -> str:
    """The loopback address session INDEX (from 0) connects from: 250 per /24, from
    127.12.1.1 (127.12.0.1 is the relay scenario's sink)."""
    third, fourth = divmod(index, 250)
    if third > 254:
        raise ValueError(f"session index {index} is beyond 127.12.255.250")
    return f"127.12.{third + 1}.{fourth + 1}"


def reply_complete(line: bytes) -> bool:
    """Whether LINE is the last line of a reply (``250 x``, not ``250-x``)."""
    return len(line) < 4 or line[3:4] != b"-"


def reply_code(line: bytes) -> int:
    """The three-digit code of a reply line; ValueError if it has none."""
    if len(line) < 3 or not line[:3].isdigit():
        raise ValueError(f"not an SMTP reply: {line[:80]!r}")
    return int(line[:3])


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


@dataclass
class Report:
    open: int = 0
    refused: int = 0
    failed: int = 0
    seconds: float = 0.0
    nofile: int = 0
    first_error: str = ""
    # of the open sessions, seconds: connect() returned, then the 220 greeting arrived
    connect_median: float = 0.0
    connect_max: float = 0.0
    greeting_median: float = 0.0
    greeting_max: float = 0.0


class SmtpReplyError(Exception):
    """The server answered something else than the expected reply, or closed."""


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One whole reply: (code, last line). SmtpReplyError on EOF."""
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpReplyError("connection closed by the server")
        if reply_complete(line):
            return reply_code(line), line.rstrip()


class Sessions:
    """The N sessions and their outcomes."""

    def __init__(self, port: int, address: str, timeout: float) -> None:
        self.port = port
        self.address = address
        self.timeout = timeout
        self.report = Report()
        self.writers: list[asyncio.StreamWriter] = []
        self.watchers: list[asyncio.Task[None]] = []
        self.dropped = 0  # open sessions the server ended (or spoke on) since
        self.connect_times: list[float] = []
        self.greeting_times: list[float] = []

    async def one(self, index: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            try:
                await asyncio.wait_for(self._open(index), self.timeout)
            except SmtpReplyError as exc:
                if str(exc).startswith("421"):
                    self.report.refused += 1
                else:
                    self._fail(index, str(exc))
            except (OSError, TimeoutError, ValueError) as exc:
                self._fail(index, f"{type(exc).__name__}: {exc}")

    def _fail(self, index: int, error: str) -> None:
        self.report.failed += 1
        if not self.report.first_error:
            self.report.first_error = f"session {index}: {error}"

    async def _open(self, index: int) -> None:
        t0 = time.monotonic()
        reader, writer = await asyncio.open_connection(
            self.address, self.port, local_addr=(source_address(index), 0))
        t1 = time.monotonic()
        try:
            for command in (None, f"EHLO {HELO_NAME}\r\n".encode()):
                if command is not None:
                    writer.write(command)
                code, line = await read_reply(reader)
                if code != (220 if command is None else 250):
                    raise SmtpReplyError(line.decode("ascii", "replace"))
                if command is None:
                    self.greeting_times.append(time.monotonic() - t1)
        except BaseException:
            writer.close()
            raise
        self.connect_times.append(t1 - t0)
        self.writers.append(writer)
        self.watchers.append(asyncio.ensure_future(self._watch(reader)))
        self.report.open += 1

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        """Count the session as dropped if the server says anything more or closes (an
        idle session's ``421 ... timeout`` after smtpd_timeout, a reset)."""
        with contextlib.suppress(OSError):
            await reader.read(1)
        self.dropped += 1

    async def close_all(self) -> None:
        for watcher in self.watchers:
            watcher.cancel()
        for writer in self.writers:
            with contextlib.suppress(OSError):
                writer.write(b"QUIT\r\n")
                writer.close()
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> Report:
    sessions = Sessions(args.port, args.address, args.timeout)
    sessions.report.nofile = raise_nofile_limit()
    gate = asyncio.Semaphore(args.connecting)
    t0 = time.monotonic()
    await asyncio.gather(*(sessions.one(i, gate) for i in range(args.sessions)))
    sessions.report.seconds = time.monotonic() - t0
    r = sessions.report
    if sessions.connect_times:
        r.connect_median = statistics.median(sessions.connect_times)
        r.connect_max = max(sessions.connect_times)
    if sessions.greeting_times:
        r.greeting_median = statistics.median(sessions.greeting_times)
        r.greeting_max = max(sessions.greeting_times)
    print(json.dumps(asdict(sessions.report)), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"still_open": sessions.report.open - sessions.dropped}), flush=True)
    await sessions.close_all()
    return sessions.report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--sessions", "-n", type=int, default=2000)
    p.add_argument("--connecting", type=int, default=100,
                   help="sessions being set up at once (connect to EHLO reply)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for one session to be greeted and answer EHLO")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        asyncio.run(run(args))
    else:
        uvloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
