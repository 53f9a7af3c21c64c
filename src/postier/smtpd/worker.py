"""An smtpd worker process: serves SMTP sessions on the listening sockets the master passed.

One asyncio loop (uvloop) serves every ``inet`` smtpd service of master.cf, each
with its own settings (main.cf plus that service's ``-o`` overrides). Runs as
``mail_owner``; never binds a socket itself. Tells the queue manager about each new
message with a datagram to ``public/qmgr``. Each service's sessions are limited to this
worker's share of its process limit (master.cf ``maxproc``, as Postfix's master(8)
counts processes); on stop a message being received is answered before the worker
exits; on the master's reload the worker drains (stops accepting, finishes its sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

from postier import daemon, instance, metrics
from postier.config import mastercf
from postier.config.settings import Config
from postier.log import for_config as log_for_config
from postier.smtpd.process import Worker
from postier.smtpd.service import Service
from postier.smtpd.session import Session
from postier.smtpproto import replies

STOP_DATA_SECONDS = 5.0  # on stop, how long a message being received may take to finish
BUSY_WARN_SECONDS = 1000.0  # Postfix's master repeats its process-limit warning this rarely
ACCEPT_RETRY_SECONDS = 1.0
OVERFLOW_WAIT_SECONDS = 10.0  # a client past the session limit waits this long to be served
#: a worker whose share is full waits this long before taking a waiting client, so that a
#: worker with a free slot takes it (the kernel wakes every worker; the first to accept wins)
SHARE_FULL_PAUSE_SECONDS = 0.5
OVERFLOW_FACTOR = 10  # ... and at most this many times the share of clients wait


class Listener:
    """One inherited listening socket of one service, with this worker's share of the
    service's session limit (``instance.session_limit``). Past its share the socket is
    not accepted from: new clients wait in the kernel's listen queue (or another worker
    takes them), as Postfix's master leaves them when a service is at its process limit."""

    def __init__(
        self, sock: socket.socket, service: Service, *, share: int, process_limit: int,
        endpoint: str,
    ) -> None:
        self.sock = sock
        self.service = service
        self.share = share  # sessions this worker serves at once on the service; 0: no limit
        self.process_limit = process_limit  # the service's limit, as master.cf says
        self.endpoint = endpoint  # Postfix's name of the endpoint: "25", "127.0.0.1:2525"
        self.slots = asyncio.Semaphore(share) if share > 0 else None
        self.busy_warned = -BUSY_WARN_SECONDS

    def warn_busy(self) -> None:
        """Postfix's master(8) warning, at most once per ``BUSY_WARN_SECONDS``."""
        now = time.monotonic()
        if now - self.busy_warned < BUSY_WARN_SECONDS:
            return
        self.busy_warned = now
        log = self.service.log
        log.warning(
            f'service "{self.service.name}" ({self.endpoint}) has reached its process limit '
            f'"{self.process_limit}": new clients may experience noticeable delays'
        )
        log.warning("to avoid this condition, increase the process count in master.cf "
                    "or reduce the service time per client")
        log.warning("see http://www.postfix.org/STRESS_README.html for examples of "
                    "stress-adapting configuration settings")


def interruptible(session: Session) -> bool:
    """Whether a 421 may end ``session`` now: not while a message's content is being
    received or committed (its client must get the DATA reply: acknowledged and on disk,
    or refused)."""
    return session.message is None or session.last_command not in ("DATA", "BDAT")


async def serve(worker: Worker, listen: list[Listener], ready_fd: int, lifeline_fd: int) -> None:
    """Serve ``listen`` until stopped. SIGTERM (or the master gone): stop accepting, end
    every idle session with 421, give a message being received ``STOP_DATA_SECONDS`` to
    finish, then 421 the rest. ``daemon.DRAIN_SIGNAL`` (the master's reload): stop
    accepting, let every session finish under this configuration, then exit."""
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    drain = asyncio.Event()
    loop.add_signal_handler(daemon.DRAIN_SIGNAL, drain.set)
    sessions: dict[asyncio.Task[None], Session] = {}

    async def run_session(session: Session, abort: Callable[[], None]) -> None:
        try:
            # Session.run maps the peer's and the environment's errors itself
            # and logs its own bugs; what reaches here is a bug before it ran.
            await session.run()
        except Exception:
            worker.log.error(traceback.format_exc().strip())
            abort()

    def spawn(listener: Listener, session: Session, abort: Callable[[], None]) -> None:
        task = loop.create_task(run_session(session, abort))
        sessions[task] = session  # held from now on, not only once it runs

        def done(t: asyncio.Task[None]) -> None:
            sessions.pop(t, None)
            if listener.slots is not None:
                listener.slots.release()

        task.add_done_callback(done)

    acceptors = [loop.create_task(accept_loop(lst, spawn)) for lst in listen]
    daemon.report_ready(ready_fd)
    stopper = loop.create_task(stop.wait())
    drainer = loop.create_task(drain.wait())
    await asyncio.wait([stopper, drainer], return_when=asyncio.FIRST_COMPLETED)
    for acceptor in acceptors:
        acceptor.cancel()
    await asyncio.gather(*acceptors, return_exceptions=True)
    for lst in listen:
        lst.sock.close()  # this process's copy: the master and the new workers keep theirs
    # Reload: old sessions finish under the old configuration; a stop still ends them.
    while sessions and not stop.is_set():
        await asyncio.wait([stopper, *sessions], return_when=asyncio.FIRST_COMPLETED)
    await end_sessions(sessions)
    stopper.cancel()
    drainer.cancel()
    await worker.close()


async def end_sessions(sessions: dict[asyncio.Task[None], Session]) -> None:
    """Stop: 421 and end each session as soon as ``interruptible``, every one after
    ``STOP_DATA_SECONDS``; wait (5 s more at most) for them to close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_DATA_SECONDS
    ended: set[asyncio.Task[None]] = set()
    while sessions:
        late = loop.time() >= deadline
        for task, session in list(sessions.items()):
            if task not in ended and not task.done() and (late or interruptible(session)):
                ended.add(task)
                session.send(replies.service_unavailable(session.svc.hostname))
                task.cancel()  # Session.end() flushes the 421, closes, logs the disconnect
        if late:
            break
        await asyncio.wait(list(sessions), timeout=0.05)
    if sessions:
        await asyncio.wait(list(sessions), timeout=5)


async def accept_loop(
    listener: Listener, spawn: Callable[[Listener, Session, Callable[[], None]], None]
) -> None:
    """Accept on one listening socket for ever, one session per connection, never more
    than the listener's share at once. Past the share a client waits (accepted, not yet
    greeted) up to ``OVERFLOW_WAIT_SECONDS`` for a session to end, at most
    ``OVERFLOW_FACTOR`` times the share of them; else it gets ``421 4.7.0 … too many
    connections``. A worker whose share is full takes a waiting client only after
    ``SHARE_FULL_PAUSE_SECONDS``, so that the service's limit, not one worker's share,
    is what clients meet. The kernel's listen queue stays short, so no client is left to
    time out there. An accept error (descriptors exhausted) is logged and retried after a
    pause, as Postfix's master does: nothing is accepted and closed without a word."""
    loop = asyncio.get_running_loop()
    svc = listener.service
    slots = listener.slots
    waiting: set[asyncio.Task[None]] = set()  # past the share: waiting for a slot, or refused
    opening: set[asyncio.Task[None]] = set()  # accepted, streams being made

    def start(conn: socket.socket) -> None:
        if svc.tls.policy.wrappermode:
            # smtps: the TLS layer must read the connection from its first byte, so the
            # socket is handed to the handshake unread.
            session = Session(svc, asyncio.StreamReader(limit=1 << 16), None, wrapped=conn)
            spawn(listener, session, conn.close)
            return
        # Not cancelled with the acceptor (drain, stop): an accepted client gets its session.
        task = loop.create_task(open_session(listener, conn, spawn))
        opening.add(task)
        task.add_done_callback(opening.discard)

    async def wait_for_slot(conn: socket.socket) -> None:
        assert slots is not None
        try:
            async with asyncio.timeout(OVERFLOW_WAIT_SECONDS):
                await slots.acquire()
        except TimeoutError:
            await refuse(conn, svc)
            return
        except asyncio.CancelledError:  # stopping: say so rather than close silently
            with contextlib.suppress(OSError):
                conn.send(replies.service_unavailable(svc.hostname).to_bytes())
            conn.close()
            raise
        start(conn)

    async def take(conn: socket.socket) -> None:
        """One accepted client: a session now, or the overflow's wait (or its 421)."""
        conn.setblocking(False)
        if slots is None:
            start(conn)
        elif not slots.locked():
            await slots.acquire()  # free: returns at once
            start(conn)
        else:
            listener.warn_busy()
            if len(waiting) >= OVERFLOW_FACTOR * listener.share:
                task = loop.create_task(refuse(conn, svc))
            else:
                task = loop.create_task(wait_for_slot(conn))
            waiting.add(task)
            task.add_done_callback(waiting.discard)

    try:
        while True:
            try:
                if slots is not None and slots.locked():
                    # Full: a worker with a free slot gets the waiting clients first;
                    # what is still waiting after the pause goes to the overflow at once.
                    await _readable(loop, listener.sock)
                    listener.warn_busy()
                    await asyncio.sleep(SHARE_FULL_PAUSE_SECONDS)
                    while slots.locked():
                        try:
                            conn, _ = listener.sock.accept()
                        except BlockingIOError:
                            break  # the queue is empty (another worker took them)
                        await take(conn)
                    continue
                conn, _ = await loop.sock_accept(listener.sock)
            except OSError as exc:
                svc.log.warning(f"service {svc.name}: accept: {exc.strerror or exc}")
                await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            await take(conn)
    finally:
        for task in list(waiting):
            task.cancel()
        if opening:  # their sessions must be known to the worker before it drains
            await asyncio.wait(list(opening))


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Return once ``sock`` (a listening socket) has a connection waiting."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


async def open_session(
    listener: Listener, conn: socket.socket,
    spawn: Callable[[Listener, Session, Callable[[], None]], None],
) -> None:
    """Wrap an accepted plaintext connection in streams, as ``asyncio.start_server`` does
    (server side: ``StreamWriter.start_tls`` then handshakes as the server), and start its
    session (its slot is taken); a connection gone meanwhile gives its slot back."""
    loop = asyncio.get_running_loop()
    svc = listener.service

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spawn(listener, Session(svc, reader, writer), writer.transport.abort)

    reader = asyncio.StreamReader(limit=1 << 16)
    try:
        await loop.connect_accepted_socket(
            lambda: asyncio.StreamReaderProtocol(reader, connected), sock=conn)
    except OSError:  # gone before it could be wrapped: nothing said, nothing owed
        conn.close()
        if listener.slots is not None:
            listener.slots.release()


async def refuse(conn: socket.socket, svc: Service) -> None:
    """``421 4.7.0 HOST Error: too many connections``, then close (1 s at most)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(1):
            await loop.sock_sendall(conn, replies.too_many_connections(svc.hostname).to_bytes())
    except (OSError, TimeoutError):
        pass
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("smtpd")
    parser.add_argument("--listen", action="append", default=[], help="FD:SERVICE")
    parser.add_argument("--workers", type=int, default=1,
                        help="how many smtpd workers share the session limits")
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("smtpd", cfg, foreground=args.foreground)

    def setup() -> Coroutine[Any, Any, None]:
        services = {
            s.name: s
            for s in mastercf.load(os.path.join(args.config_dir, "master.cf"))
            if s.type == "inet" and s.command == "smtpd"
        }
        metrics.install(cfg)  # postier_metrics_listen: before the privilege drop
        worker = Worker(cfg, log)
        built: dict[str, Service] = {}
        listen: list[Listener] = []
        for item in args.listen:
            fd_text, _, name = item.partition(":")
            svc = services[name]
            if name not in built:
                scfg = cfg.with_overrides(svc.overrides, source=f"{svc.file}, line {svc.line}")
                built[name] = Service(name, scfg, worker)
            limit = instance.process_limit(svc, cfg)
            host, port = mastercf.inet_endpoint(name)
            sock = socket.socket(fileno=int(fd_text))
            sock.setblocking(False)
            listen.append(Listener(
                sock, built[name], share=instance.session_share(limit, args.workers),
                process_limit=limit, endpoint=f"{host}:{port}" if host else str(port),
            ))
        return serve(worker, listen, args.ready_fd, args.lifeline_fd)

    return daemon.run(log, args.user, setup)


if __name__ == "__main__":
    sys.exit(main())
