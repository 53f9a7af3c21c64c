"""The anvil process: serves the counting core (``anvil.counts``) on ``private/anvil``.

Follows Postfix's anvil(8): smtpd workers connect to the UNIX socket
``QUEUE_DIR/private/anvil`` (bound by the master, inherited as ``--listen-fd``) and
send requests in the attribute protocol of ``postier.anvilclient.protocol``; each
worker's stream is one owner of connections, dropped when the stream closes. Every
``anvil_status_update_time`` and when it stops, anvil logs its peaks
(``statistics: max connection rate 4/60s for (smtp:192.0.2.1) at Nov 30 01:57:55``);
idents idle for ``anvil_rate_time_unit`` are forgotten. Runs as ``mail_owner``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from typing import cast

from postier import daemon
from postier.anvil.counts import Anvil
from postier.anvilclient import protocol
from postier.config.params import ANVIL_RATE_TIME_UNIT, ANVIL_STATUS_UPDATE_TIME
from postier.config.settings import Config
from postier.log import Log
from postier.log import for_config as log_for_config


class AnvilProtocol(asyncio.Protocol):
    """One smtpd worker's stream: requests in, answers out, in order."""

    def __init__(self, anvil: Anvil, log: Log) -> None:
        self.anvil = anvil
        self.log = log
        self.reader = protocol.Reader()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            requests = self.reader.feed(data)
        except protocol.ProtocolError as exc:
            self.log.warning(f"bad request from an anvil client: {exc}; closing")
            self.transport.close()
            return
        out = bytearray()
        now = time.time()
        for attrs in requests:
            try:
                request, ident = protocol.decode_request(attrs)
            except protocol.ProtocolError as exc:
                self.log.warning(f"{exc}, ignored")
                out += protocol.encode({"status": protocol.STAT_FAIL})
                continue
            answer = self.anvil.handle(self, request, ident, now)
            out += answer.encode(request)
        if out and not self.transport.is_closing():
            self.transport.write(bytes(out))

    def connection_lost(self, exc: Exception | None) -> None:
        self.anvil.drop_owner(self, time.time())


async def serve(anvil: Anvil, log: Log, status_every: float, listen_fd: int, ready_fd: int,
                lifeline_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    sock = socket.socket(fileno=listen_fd)
    server = await loop.create_unix_server(lambda: AnvilProtocol(anvil, log), sock=sock)
    daemon.report_ready(ready_fd)

    async def housekeeping() -> None:
        next_status = time.monotonic() + status_every
        while True:
            await asyncio.sleep(min(anvil.time_unit, max(next_status - time.monotonic(), 0)))
            anvil.expire(time.time())
            if time.monotonic() >= next_status:
                for line in anvil.statistics():
                    log.info(line)
                next_status = time.monotonic() + status_every

    task = asyncio.create_task(housekeeping())
    try:
        async with server:
            await stop.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for line in anvil.statistics():  # Postfix's anvil reports at exit too
            log.info(line)


def main(argv: list[str] | None = None) -> int:
    parser: argparse.ArgumentParser = daemon.child_arguments("anvil")
    parser.add_argument("--listen-fd", type=int, required=True)
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("anvil", cfg, foreground=args.foreground)
    anvil = Anvil(max(cfg[ANVIL_RATE_TIME_UNIT], 1.0))
    status_every = max(cfg[ANVIL_STATUS_UPDATE_TIME], 1.0)
    return daemon.run(
        log, args.user,
        lambda: serve(anvil, log, status_every, args.listen_fd, args.ready_fd,
                      args.lifeline_fd))


if __name__ == "__main__":
    sys.exit(main())
