"""The queue manager: has each new message delivered, then removes, defers or bounces it.

Follows Postfix's qmgr(8): at start, mail left in active/ by a crash goes back to
incoming/; a message moves to active/ by rename while it is being delivered; a
recipient that was delivered is marked done in the queue file (so a crash never
delivers it again, except in the short window between the delivery and the mark);
deferred mail waits in deferred/ with the file's mtime as its next attempt time (the
deferred queue is scanned every ``queue_run_delay``), with
backoff between ``minimal_backoff_time`` and ``maximal_backoff_time``; mail older than
``maximal_queue_lifetime`` is bounced. smtpd announces new mail with a datagram to
``public/qmgr``; a periodic scan of incoming/ makes a lost datagram harmless.

Only the ``local`` transport exists so far: other recipients are deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import traceback
from datetime import UTC, datetime

from postier import daemon, stream
from postier.bounce.dsn import Failed, build_bounce
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.protocol import DeliverAnswer, DeliverRequest, RcptRequest
from postier.delivery.status import DeliveryStatus, Kind, status_log_line
from postier.dns.resolver import local_addresses
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.queue import dirs
from postier.queue.file import CorruptQueueFile, Envelope, QueueFile, QueueWriter, Recipient
from postier.rewrite.resolve import AddressClass, Classifier

INCOMING_SCAN_SECONDS = 1.0


class LocalClient:
    """A pipelined client of the local delivery agent's socket."""

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


class Qmgr:
    def __init__(self, cfg: Config, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.queue_dir = cfg.get("queue_directory")
        self.local = LocalClient(os.path.join(self.queue_dir, "private", "local"))
        self.busy: set[str] = set()
        self.classify = Classifier.from_lists(
            cfg.get_list("mydestination"), local_addresses(), cfg.get_list("relay_domains")
        )
        self.defer_transports = set(cfg.get_list("defer_transports"))
        self.min_backoff = cfg.get_time("minimal_backoff_time")
        self.max_backoff = cfg.get_time("maximal_backoff_time")
        self.max_lifetime = cfg.get_time("maximal_queue_lifetime")
        self.bounce_lifetime = cfg.get_time("bounce_queue_lifetime")
        self.myhostname = cfg.get("myhostname")
        self.queue_run_delay = cfg.get_time("queue_run_delay")
        self.tasks: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.limit = asyncio.Semaphore(100)

    # --- scheduling ---------------------------------------------------------------------

    def schedule(self, queue_id: str, state: str) -> None:
        if queue_id in self.busy:
            return
        self.busy.add(queue_id)
        task = asyncio.create_task(self._run(queue_id, state))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, queue_id: str, state: str) -> None:
        try:
            async with self.limit:
                await self.process(queue_id, state)
        except Exception:
            self.log.error(f"{queue_id}: {traceback.format_exc().strip()}")
            self.park(queue_id)
        finally:
            self.busy.discard(queue_id)

    def park(self, queue_id: str) -> None:
        """After a failure of our own, retry the message later rather than forget it in active/."""
        try:
            path = dirs.move(self.queue_dir, queue_id, "active", "deferred")
            when = time.time() + self.min_backoff
            os.utime(path, (when, when))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.warning(f"{queue_id}: cannot move to the deferred queue: {exc.strerror}")

    def scan_incoming(self) -> None:
        for queue_id, _path in dirs.scan(self.queue_dir, "incoming"):
            self.schedule(queue_id, "incoming")

    def scan_deferred(self) -> None:
        now = time.time()
        for queue_id, path in dirs.scan(self.queue_dir, "deferred"):
            try:
                if os.stat(path).st_mtime <= now:
                    self.schedule(queue_id, "deferred")
            except FileNotFoundError:
                continue

    # --- one message --------------------------------------------------------------------

    async def process(self, queue_id: str, state: str) -> None:
        try:
            path = dirs.move(self.queue_dir, queue_id, state, "active")
        except FileNotFoundError:
            return  # another scan took it, or it is gone
        try:
            qf = QueueFile.open(path)
        except CorruptQueueFile as exc:
            self.log.warning(f"{queue_id}: corrupt queue file: {exc}; moved to corrupt")
            dirs.move(self.queue_dir, queue_id, "active", "corrupt")
            return
        with qf:
            env = qf.envelope
            self.log.info(
                f"{queue_id}: from=<{env.sender}>, size={qf.content_size}, "
                f"nrcpt={len(env.recipients)} (queue active)"
            )
            results = await self.deliver(qf)
            await self.finish(qf, results)

    def transport_for(self, address: str) -> str:
        """local for our own domains (smtpd's address classes); smtp for the rest."""
        domain = address.rpartition("@")[2]
        return "local" if self.classify(domain) is AddressClass.LOCAL else "smtp"

    async def deliver(self, qf: QueueFile) -> dict[int, DeliveryStatus]:
        env = qf.envelope
        results: dict[int, DeliveryStatus] = {}
        own: set[int] = set()  # results qmgr decided itself, and so logs itself
        local_rcpts: list[RcptRequest] = []
        for i, r in enumerate(env.recipients):
            if r.done:
                continue
            transport = self.transport_for(r.address)
            if transport in self.defer_transports:
                results[i] = status.deferred("4.3.2", "deferred transport", relay="none")
            elif transport != "local":
                results[i] = status.deferred(
                    "4.3.0",
                    f"mail transport unavailable: no {transport} delivery agent yet",
                    relay="none",
                )
            else:
                local_rcpts.append(RcptRequest(i, r.address, r.orig))
        if local_rcpts:
            req = DeliverRequest(
                0, qf.queue_id, qf.path, env.sender, env.arrival, local_rcpts, env.attrs
            )
            try:
                answer = await self.local.deliver(req)
                for res in answer.results:
                    results[res.index] = res.status
            except (OSError, ConnectionError) as exc:
                for lr in local_rcpts:
                    results[lr.index] = status.deferred(
                        "4.3.0", f"local delivery agent unavailable: {exc}", relay="none"
                    )
                    own.add(lr.index)
        now = time.time()
        for i in sorted(own | (set(results) - {lr.index for lr in local_rcpts})):
            r = env.recipients[i]
            self.log.info(
                status_log_line(qf.queue_id, r.address, r.orig, env.arrival, results[i], now)
            )
        return results

    async def finish(self, qf: QueueFile, results: dict[int, DeliveryStatus]) -> None:
        env = qf.envelope
        lifetime = self.bounce_lifetime if env.sender == "" else self.max_lifetime
        if time.time() - env.arrival > lifetime:
            # Past maximal_queue_lifetime (bounce_queue_lifetime for bounces), a
            # recipient that is still deferred is returned to the sender.
            expired = {i: d for i, d in results.items() if d.kind is Kind.DEFERRED}
            for i, d in expired.items():
                results[i] = status.bounced(
                    "5.4.7", f"delivery temporarily suspended: {d.text}", relay=d.relay
                )
            if expired:
                self.log.info(
                    f"{qf.queue_id}: from=<{env.sender}>, status=expired, returned to sender"
                )
        bounced: list[Failed] = []
        pending = False
        for i, r in enumerate(env.recipients):
            if r.done:
                continue
            st = results.get(i)
            if st is None or st.kind is Kind.DEFERRED:
                pending = True
                continue
            if st.kind is Kind.BOUNCED:
                bounced.append(Failed(r.address, r.orig, st))
        if bounced or pending:
            # Record who was delivered before anything else can fail, so that a retry
            # never delivers to them again; bounced ones once their bounce is queued.
            self.mark(qf, results, Kind.SENT)
        if bounced and env.sender:
            self.send_bounce(qf, bounced)
        elif bounced:
            for f in bounced:
                self.log.warning(
                    f"{qf.queue_id}: undeliverable bounce to <{f.recipient}> discarded"
                )
        if bounced and pending:
            self.mark(qf, results, Kind.BOUNCED)
        if not pending:
            os.unlink(qf.path)
            self.log.info(f"{qf.queue_id}: removed")
            return
        age = max(0.0, time.time() - env.arrival)
        delay = min(max(age, self.min_backoff), self.max_backoff)
        new_path = dirs.move(self.queue_dir, qf.queue_id, "active", "deferred")
        when = time.time() + delay
        os.utime(new_path, (when, when))

    @staticmethod
    def mark(qf: QueueFile, results: dict[int, DeliveryStatus], kind: Kind) -> None:
        for i, r in enumerate(qf.envelope.recipients):
            st = results.get(i)
            if not r.done and st is not None and st.kind is kind:
                qf.mark_done(i)

    def send_bounce(self, qf: QueueFile, failed: list[Failed]) -> None:
        env = qf.envelope
        writer = QueueWriter.create(self.queue_dir)
        try:
            body = build_bounce(
                myhostname=self.myhostname,
                queue_id=qf.queue_id,
                new_queue_id=writer.queue_id,
                sender=env.sender,
                arrival=datetime.fromtimestamp(env.arrival, UTC),
                now=datetime.now(UTC),
                failed=failed,
                original=qf.iter_content(),
            )
            writer.write(body)
            new_id = writer.commit(
                Envelope(
                    sender="",
                    recipients=[Recipient(env.sender)],
                    arrival=time.time(),
                    attrs={"origin": "bounce"},
                )
            )
        except BaseException:
            writer.abort()
            raise
        self.log.info(f"{qf.queue_id}: sender non-delivery notification: {new_id}")
        self.schedule(new_id, "incoming")


def bind_trigger(queue_dir: str) -> socket.socket:
    path = os.path.join(queue_dir, "public", "qmgr")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o622)
    sock.setblocking(False)
    return sock


async def serve(qmgr: Qmgr, ready_fd: int, lifeline_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    recovered = dirs.recover(qmgr.queue_dir)
    if recovered:
        qmgr.log.info(f"recovered {recovered} message(s) from the active queue")
    trigger = bind_trigger(qmgr.queue_dir)

    def on_trigger() -> None:
        while True:
            try:
                data = trigger.recv(256)
            except BlockingIOError:
                return
            queue_id = data.decode("ascii", "replace").strip()
            if queue_id and "/" not in queue_id and not queue_id.startswith("."):
                qmgr.schedule(queue_id, "incoming")

    loop.add_reader(trigger.fileno(), on_trigger)
    daemon.report_ready(ready_fd)
    last_deferred = 0.0
    while not stop.is_set():
        qmgr.scan_incoming()
        if time.monotonic() - last_deferred >= qmgr.queue_run_delay:
            qmgr.scan_deferred()
            last_deferred = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INCOMING_SCAN_SECONDS)
    loop.remove_reader(trigger.fileno())
    trigger.close()
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(qmgr.queue_dir, "public", "qmgr"))
    for task in list(qmgr.tasks):
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    args = daemon.child_arguments("qmgr").parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("qmgr", cfg, foreground=args.foreground)
    return daemon.run(
        log, args.user, lambda: serve(Qmgr(cfg, log), args.ready_fd, args.lifeline_fd)
    )


if __name__ == "__main__":
    sys.exit(main())
