"""An smtpd worker process: serves SMTP sessions on the listening sockets the master passed.

One asyncio loop (uvloop) serves every ``inet`` smtpd service of master.cf, each
with its own settings (main.cf plus that service's ``-o`` overrides). Runs as
``mail_owner``; never binds a socket itself. Tells the queue manager about each new
message with a datagram to ``public/qmgr``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from postier import daemon
from postier.config import mastercf
from postier.config.settings import Config
from postier.log import for_config as log_for_config
from postier.smtpd.process import Worker
from postier.smtpd.service import Service
from postier.smtpd.session import Session


async def serve(
    worker: Worker, listen: list[tuple[int, Service]], ready_fd: int, lifeline_fd: int
) -> None:
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    sessions: set[asyncio.Task[None]] = set()
    servers = []
    acceptors: list[asyncio.Task[None]] = []

    async def run_session(session: Session, abort: Callable[[], None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        sessions.add(task)
        try:
            # Session.run maps the peer's and the environment's errors itself
            # and logs its own bugs; what reaches here is a bug before it ran.
            await session.run()
        except Exception:
            worker.log.error(traceback.format_exc().strip())
            abort()
        finally:
            sessions.discard(task)

    def spawn(session: Session, abort: Callable[[], None]) -> None:
        task = loop.create_task(run_session(session, abort))
        sessions.add(task)  # held from now on, not only once it runs
        task.add_done_callback(sessions.discard)

    for fd, service in listen:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        if service.tls.policy.wrappermode:
            # smtps: the TLS layer must read the connection from its first byte, so
            # these sockets are accepted here and handed to the handshake unread.
            acceptors.append(loop.create_task(accept_wrapped(sock, service, spawn)))
            continue

        def make_handler(svc: Service):  # type: ignore[no-untyped-def]
            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await run_session(Session(svc, reader, writer), writer.transport.abort)

            return handler

        servers.append(await asyncio.start_server(make_handler(service), sock=sock, limit=1 << 16))
    daemon.report_ready(ready_fd)
    await stop.wait()
    for server in servers:
        server.close()
    for acceptor in acceptors:
        acceptor.cancel()
    for task in list(sessions):
        task.cancel()
    if sessions:
        await asyncio.wait(list(sessions), timeout=5)
    await worker.close()


async def accept_wrapped(
    sock: socket.socket, svc: Service,
    spawn: Callable[[Session, Callable[[], None]], None],
) -> None:
    """Accept smtps connections on ``sock`` for ever; each becomes a Session whose first
    step is the TLS handshake. An accept error (descriptors exhausted) is logged and
    retried after a pause, as Postfix's master does."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = await loop.sock_accept(sock)
        except OSError as exc:
            svc.log.warning(f"service {svc.name}: accept: {exc.strerror or exc}")
            await asyncio.sleep(1)
            continue
        conn.setblocking(False)
        session = Session(svc, asyncio.StreamReader(limit=1 << 16), None, wrapped=conn)
        spawn(session, conn.close)


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("smtpd")
    parser.add_argument("--listen", action="append", default=[], help="FD:SERVICE")
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("smtpd", cfg, foreground=args.foreground)

    def setup() -> Coroutine[Any, Any, None]:
        services = {
            s.name: s
            for s in mastercf.load(os.path.join(args.config_dir, "master.cf"))
            if s.type == "inet" and s.command == "smtpd"
        }
        worker = Worker(cfg, log)
        listen: list[tuple[int, Service]] = []
        for item in args.listen:
            fd_text, _, name = item.partition(":")
            svc = services[name]
            scfg = cfg.with_overrides(svc.overrides, source=f"{svc.file}, line {svc.line}")
            listen.append((int(fd_text), Service(name, scfg, worker)))
        return serve(worker, listen, args.ready_fd, args.lifeline_fd)

    return daemon.run(log, args.user, setup)


if __name__ == "__main__":
    sys.exit(main())
