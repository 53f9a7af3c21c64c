"""The queue manager: has each new message delivered, then removes, defers or bounces it.

Follows Postfix's qmgr(8): at start, mail left in active/ by a crash goes back to
incoming/; a message moves to active/ by rename while it is being delivered; a
recipient that was delivered is marked done in the queue file (so a crash never
delivers it again, except in the short window between the delivery and the mark);
deferred mail waits in deferred/ with the file's mtime as its next attempt time (the
deferred queue is scanned every ``queue_run_delay``), with
backoff between ``minimal_backoff_time`` and ``maximal_backoff_time``; mail older than
``maximal_queue_lifetime`` is bounced. After each attempt it queues the delivery
status notifications bounce(8) would (failure, success and delay notices, postmaster
copies, double bounces: ``scheduler.notices`` decides, ``bounce.dsn`` words them).
Messages in hold/ are never taken (only incoming/ and due deferred/ files are); an
unreadable queue file moves to corrupt/ with a warning. smtpd announces new mail with
a datagram to ``public/qmgr``; a periodic scan of incoming/ makes a lost datagram
harmless. The same socket takes the queue tools' requests (``postier.queue.control``:
scan deferred/ now, or flush it all). A message that postsuper moves or deletes while
it is active is left where postsuper put it.

This is the asyncio shell around ``postier.qmgr.scheduler`` (every decision) and the
transports of ``postier.delivery.registry`` (every delivery: local, smtp/relay/lmtp,
error, discard). Queue files are opened, marked, moved, scanned and bounces written in
worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from postier import daemon, metrics
from postier.bounce import notify
from postier.bounce.dsn import Failed, Notice, NoticeKind, build_notice
from postier.cleanup.cleanup import Cleanup
from postier.cleanup.headers import local_received_header
from postier.cleanup.rewrite import rewriting_from_config, virtual_alias_domain_tables
from postier.config.params import (
    BOUNCE_NOTICE_RECIPIENT,
    DELAY_NOTICE_RECIPIENT,
    DOUBLE_BOUNCE_SENDER,
    MAIL_NAME,
    MYHOSTNAME,
    MYORIGIN,
    PARAM_2BOUNCE_NOTICE_RECIPIENT,
    QUEUE_DIRECTORY,
    SMTPUTF8_AUTODETECT_CLASSES,
    SYSLOG_FACILITY,
    SYSLOG_NAME,
)
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.registry import CONCURRENCY_DEFAULTS, TransportSetup, build_transports
from postier.delivery.route import ResolveError, Resolver
from postier.delivery.status import DeliveryStatus, status_log_line
from postier.delivery.transport import (
    DeliveryRequest,
    RcptResult,
    Transport,
    TransportUnavailable,
)
from postier.dns.resolver import local_addresses
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.qmgr import scheduler
from postier.qmgr.scheduler import Batch, Destination, Notices, Route, Settlement
from postier.queue import control, dirs
from postier.queue.file import ATTR_SMTPUTF8, CorruptQueueFile, Envelope, QueueFile, Recipient
from postier.rewrite.resolve import Classifier
from postier.tables import Tables
from postier.tables.domainlist import domain_lists

INCOMING_SCAN_SECONDS = 1.0
STOP_SECONDS = 5.0  # on stop, how long deliveries in progress may take to finish
#: Messages being worked on at once (Postfix's qmgr_message_active_limit, much smaller).
MESSAGE_ACTIVE_LIMIT = 100
#: What the ``retry`` transport says when transport_maps cannot answer (qmgr(8)).
RESOLVER_FAILURE = "4.3.0 address resolver failure"

_T = TypeVar("_T")


def build_classifier(cfg: Config, tables: Tables | None = None,
                     warn: Callable[[str], None] = lambda text: None) -> Classifier:
    """qmgr's address classifier (mydestination, the interfaces, relay_domains,
    virtual_alias_domains with its tables when ``tables`` is given): built here only."""
    domains = virtual_alias_domain_tables(cfg, tables, warn) if tables is not None else None
    lists = domain_lists(cfg, tables) if tables is not None else None
    return Classifier.from_config(cfg, local_addresses(), virtual_alias_tables=domains,
                                  lists=lists)


@dataclass(frozen=True)
class Outgoing:
    """One notification to queue: what it says, its envelope sender, whom it reports, and
    the words of qmgr's log line (``sender non-delivery notification``)."""

    notice: Notice
    envelope_sender: str
    recipients: tuple[Failed, ...]
    log_words: str


def write_notice(
    cleanup: Cleanup, myhostname: str, qf: QueueFile, out: Outgoing, shown_sender: str,
    now: float, *, myorigin: str = "", mail_name: str = "Postfix",
) -> str:
    """Queue the notification ``out`` about ``qf``; its queue ID.

    ``shown_sender`` is ``qf``'s sender as the notice shows it (``MAILER-DAEMON@…`` for
    ``<>``). Goes into the queue the one way every message does (``cleanup``).
    Blocking (writes and fsyncs a queue file): call it off the event loop. Raises
    OSError when the queue cannot be written (nothing is left behind).
    """
    env = qf.envelope

    def content(new_queue_id: str) -> list[bytes]:
        when = datetime.fromtimestamp(now).astimezone()
        return [
            # as Postfix's cleanup does for locally generated mail
            local_received_header(by_host=myhostname, mail_name=mail_name,
                                  queue_id=new_queue_id, when=when),
            build_notice(
                out.notice,
                myhostname=myhostname,
                queue_id=qf.queue_id,
                new_queue_id=new_queue_id,
                sender=shown_sender,
                arrival=datetime.fromtimestamp(env.arrival).astimezone(),
                now=datetime.fromtimestamp(now).astimezone(),
                recipients=out.recipients,
                original=qf.iter_content(),
                myorigin=myorigin,
            )
        ]

    notice = Envelope(
        sender=out.envelope_sender, recipients=[Recipient(out.notice.to)], arrival=now,
        # a notice about a SMTPUTF8 message needs SMTPUTF8 too (as Postfix's bounce(8))
        attrs={"origin": "bounce",
               **({ATTR_SMTPUTF8: env.attrs[ATTR_SMTPUTF8]} if env.smtputf8 else {})},
    )
    return cleanup.enqueue(notice, content)


class Qmgr:
    """The queue manager's state: the scheduler's policy and counters, transports, tasks.

    ``transports`` replaces the registry's (tests); every method that touches the queue
    does it in a worker thread.
    """

    def __init__(
        self, cfg: Config, log: Log, transports: dict[str, Transport] | None = None
    ) -> None:
        self.cfg = cfg
        self.log = log
        self._program_logs: dict[tuple[str, str, str], Log] = {}
        # Postfix's bounce(8) logs "QID: sender non-delivery notification: NEWID".
        self.bounce_log = self.program_log("bounce", cfg)
        self.queue_dir = cfg[QUEUE_DIRECTORY]
        # qmgr schedules the bounces it writes itself: no trigger, no extra log line.
        self.cleanup = Cleanup(self.queue_dir, log=None, trigger=None,
                               smtputf8_autodetect=cfg[SMTPUTF8_AUTODETECT_CLASSES])
        self.transports = (
            build_transports(TransportSetup(self.queue_dir, log, cfg,
                                            program_log=self.program_log))
            if transports is None else transports
        )
        self.policy = scheduler.Policy.from_config(
            cfg, self.transports, CONCURRENCY_DEFAULTS
        )
        self.concurrency = scheduler.Concurrency(self.policy)
        self.waiters: dict[Destination, deque[asyncio.Future[None]]] = {}
        self.busy: set[str] = set()
        self.myhostname = cfg[MYHOSTNAME]
        self.myorigin = cfg[MYORIGIN]
        self.double_bounce_sender = self.qualify(cfg[DOUBLE_BOUNCE_SENDER])
        self.bounce_notice_recipient = self.qualify(cfg[BOUNCE_NOTICE_RECIPIENT])
        self.delay_notice_recipient = self.qualify(cfg[DELAY_NOTICE_RECIPIENT])
        self.double_bounce_recipient = self.qualify(cfg[PARAM_2BOUNCE_NOTICE_RECIPIENT])
        self.routing = scheduler.Routing.from_config(cfg)  # ConfigError first, as before
        self.tables = Tables(warn=log.warning)
        self.classify = build_classifier(cfg, self.tables, log.warning)
        # notices go through the canonical and virtual alias maps too, as Postfix's
        # bounce(8) hands them to cleanup(8): a sender in a virtual alias domain gets them
        self.cleanup.rewriting = rewriting_from_config(cfg, self.tables, self.qualify)
        resolver = Resolver.from_config(cfg, self.tables, self.classify)
        self.transport_maps, self.transport_search = resolver.transport_maps, resolver.search
        self.tasks: set[asyncio.Task[None]] = set()
        self.limit = asyncio.Semaphore(MESSAGE_ACTIVE_LIMIT)

    def qualify(self, address: str) -> str:
        """``address`` with ``@$myorigin`` appended when it has no domain."""
        return address if "@" in address else f"{address}@{self.myorigin}"

    async def _io(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run blocking file work in a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(fn, *args)
        )

    def route(self, address: str, table_entry: str | None = None) -> Route:
        """The transport and next hop of ``address`` (its address class, the routing
        settings, and ``table_entry``, its transport_maps entry if any)."""
        domain = address.rpartition("@")[2]
        return scheduler.route(address, self.classify(domain), self.routing, table_entry)

    async def resolve(self, addresses: Iterable[str]) -> dict[str, Route]:
        """Each address's route (``delivery.route.Resolver``: ``transport_maps`` searched
        in transport(5) order, database tables off the event loop). A table that cannot
        answer routes the address to the ``retry`` transport, as Postfix's qmgr does
        after an address resolver failure (deferred, ``4.3.0 address resolver
        failure``, logged)."""
        resolver = Resolver(self.classify, self.routing, self.transport_maps,
                            self.transport_search)
        routes: dict[str, Route] = {}
        for address in addresses:
            if address in routes:
                continue
            try:
                routes[address] = await resolver.resolve(address)
            except ResolveError as exc:
                self.log.warning(f"{exc.source} lookup error for \"{address}\": {exc.error}")
                routes[address] = Route("retry", RESOLVER_FAILURE)
        return routes

    # --- messages in and out of the active queue ----------------------------------------

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
            problem = await self._io(self._park, queue_id, time.time())
            if problem:
                self.log.warning(f"{queue_id}: cannot move to the deferred queue: {problem}")
        finally:
            self.busy.discard(queue_id)

    def _park(self, queue_id: str, now: float) -> str | None:
        """After a failure of our own, retry the message later rather than forget it in active/.

        Blocking. Returns the OS error's text when it cannot be moved, else None.
        """
        try:
            path = dirs.move(self.queue_dir, queue_id, "active", "deferred")
            when = now + self.policy.minimal_backoff_time
            os.utime(path, (when, when))
        except FileNotFoundError:
            pass
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    async def scan_incoming(self) -> None:
        for queue_id in await self._io(self._list, "incoming"):
            self.schedule(queue_id, "incoming")

    async def scan_deferred(self, *, everything: bool = False) -> None:
        """Take the deferred messages that are due (``everything``: all, as a flush asks)."""
        now = float("inf") if everything else time.time()
        for queue_id in await self._io(self._due_deferred, now):
            self.schedule(queue_id, "deferred")

    def trigger(self, data: bytes) -> None:
        """Act on one datagram of ``public/qmgr`` (``queue.control``: an ID, or requests)."""
        request = control.parse(data)
        if request is None:
            return
        if request.queue_id is not None:
            self.schedule(request.queue_id, "incoming")
        elif request.requests:
            scan = self.scan_deferred(everything=control.Request.SCAN_ALL in request.requests)
            task = asyncio.create_task(scan)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _list(self, state: str) -> list[str]:
        return [queue_id for queue_id, _path in dirs.scan(self.queue_dir, state)]

    def _due_deferred(self, now: float) -> list[str]:
        due = []
        for queue_id, path in dirs.scan(self.queue_dir, "deferred"):
            try:
                if scheduler.is_due(os.stat(path).st_mtime, now):
                    due.append(queue_id)
            except FileNotFoundError:
                continue
        return due

    # --- one message --------------------------------------------------------------------

    def _take(self, queue_id: str, state: str) -> QueueFile | CorruptQueueFile | None:
        """Move to active/ and open (blocking); None when gone, the error when corrupt."""
        try:
            path = dirs.move(self.queue_dir, queue_id, state, "active")
        except FileNotFoundError:
            return None  # another scan took it, or it is gone
        try:
            return QueueFile.open(path)
        except CorruptQueueFile as exc:
            dirs.move(self.queue_dir, queue_id, "active", "corrupt")
            return exc

    async def process(self, queue_id: str, state: str) -> None:
        taken = await self._io(self._take, queue_id, state)
        if taken is None:
            return
        if isinstance(taken, CorruptQueueFile):
            self.log.warning(f"{queue_id}: corrupt queue file: {taken}; moved to corrupt")
            return
        qf = taken
        closed = False
        try:
            env = qf.envelope
            self.log.info(
                f"{queue_id}: from=<{env.sender}>, size={qf.content_size}, "
                f"nrcpt={len(env.recipients)} (queue active)"
            )
            results = await self.deliver(qf)
            closed = True  # finish() closes it, whatever happens
            await self.finish(qf, results)
        finally:
            if not closed:
                await self._io(qf.close)

    async def deliver(self, qf: QueueFile) -> dict[int, DeliveryStatus]:
        """One attempt at every recipient not yet done; each recipient's status by index."""
        env = qf.envelope
        routes = await self.resolve(r.address for r in env.recipients if not r.done)
        plan = scheduler.plan(env.recipients, routes.__getitem__, self.policy, self.transports)
        results: dict[int, DeliveryStatus] = dict(plan.decided)
        own = set(plan.decided)  # results qmgr decided itself, and so logs itself
        if len(plan.batches) == 1:
            outcomes = [await self._attempt(qf, plan.batches[0])]
        else:
            outcomes = await asyncio.gather(*(self._attempt(qf, b) for b in plan.batches))
        for batch, outcome in zip(plan.batches, outcomes, strict=True):
            if isinstance(outcome, TransportUnavailable):
                for rr in batch.recipients:
                    results[rr.index] = status.deferred("4.3.0", str(outcome), relay="none")
                    own.add(rr.index)
            else:
                for res in outcome:
                    results[res.index] = res.status
        now = time.time()
        for i, st in results.items():  # postier_metrics_listen
            metrics.RECORDER.delivery(routes[env.recipients[i].address].transport,
                                      st.kind.value, now - env.arrival)
        for i in sorted(own):
            r = env.recipients[i]
            self.log.info(
                status_log_line(qf.queue_id, r.address, r.orig, env.arrival, results[i], now)
            )
        return results

    async def _attempt(
        self, qf: QueueFile, batch: Batch
    ) -> list[RcptResult] | TransportUnavailable:
        env = qf.envelope
        request = DeliveryRequest(
            qf.queue_id, qf.path, env.sender, env.arrival, batch.recipients,
            batch.route.nexthop, env.attrs,
        )
        await self._acquire(batch.destination)
        ok = False
        try:
            results = await self.transports[batch.route.transport].deliver(request)
            ok = True
            return results
        except TransportUnavailable as exc:
            return exc
        finally:
            self._release(batch.destination, ok)

    async def _acquire(self, d: Destination) -> None:
        while not self.concurrency.try_start(d):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self.waiters.setdefault(d, deque())
            queue.append(fut)
            try:
                await fut
            finally:
                if not fut.done():
                    fut.cancel()

    def _release(self, d: Destination, ok: bool) -> None:
        self.concurrency.finish(d, ok)
        queue = self.waiters.get(d)
        if queue is None:
            return
        free = self.concurrency.free(d)
        while queue and (free is None or free > 0):
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)
                if free is not None:
                    free -= 1
        if not queue:
            del self.waiters[d]

    async def finish(self, qf: QueueFile, results: dict[int, DeliveryStatus]) -> None:
        """Remove, defer or bounce after an attempt, with its notifications; close ``qf``."""
        env = qf.envelope
        try:
            now = time.time()
            done = scheduler.settle(
                env.recipients, results, env.sender, env.arrival, now, self.policy
            )
            if done.expired:
                # Past maximal_queue_lifetime (bounce_queue_lifetime for bounces), a
                # recipient that is still deferred is returned to the sender.
                self.log.info(
                    f"{qf.queue_id}: from=<{env.sender}>, status=expired, returned to sender"
                )
            todo = scheduler.notices(
                env.recipients, done, env.sender, env.arrival, now, self.policy,
                delay_warned=qf.delay_warned,
                double_bounce_sender=env.sender.lower() == self.double_bounce_sender.lower(),
            )
            outgoing = self.outgoing(qf, done, todo)
            if todo.discarded and env.sender:
                # bounce(8): a failed postmaster notice is never answered (no triple
                # bounce); a failed bounce without the 2bounce class goes silently.
                self.bounce_log.warning(
                    f"{qf.queue_id}: undeliverable postmaster notification discarded")
        except BaseException:
            await self._io(qf.close)
            raise
        written = await self._io(self._settle, qf, done, outgoing, todo.delay_warned)
        for out, new_id in written:
            self.bounce_log.info(f"{qf.queue_id}: {out.log_words}: {new_id}")
            self.schedule(new_id, "incoming")
        if not done.keep:
            self.log.info(f"{qf.queue_id}: removed")

    def program_log(self, program: str, cfg: Config | None) -> Log:
        """The log of a program folded into qmgr (smtp, lmtp, error, discard, bounce):
        Postfix's program name (and that service's syslog_name), qmgr's pid and target."""
        c = cfg if cfg is not None else self.cfg
        key = (program, c[SYSLOG_NAME], c[SYSLOG_FACILITY])
        if key not in self._program_logs:
            self._program_logs[key] = self.log.sibling(program, syslog_name=key[1],
                                                       facility=key[2])
        return self._program_logs[key]

    def outgoing(self, qf: QueueFile, done: Settlement, todo: Notices) -> list[Outgoing]:
        """The notifications ``todo`` asks for, ready to write (pure)."""
        if not (todo.failure or todo.success or todo.delay or todo.postmaster_failure
                or todo.double_bounce or todo.postmaster_delay):
            return []  # the common case: no notice, so none of the six is built
        env = qf.envelope
        envid = env.attrs.get(notify.ATTR_ENVID, "")
        hdrs = env.attrs.get(notify.ATTR_RET) == "HDRS"

        def reported(indices: tuple[int, ...]) -> tuple[Failed, ...]:
            out = []
            for i in indices:
                r = env.recipients[i]
                st = done.results.get(i)
                if st is None:  # pending, not tried this time: its recorded status
                    st = status.DeliveryStatus(r.status or "4.0.0", r.reason, relay="none")
                out.append(Failed.of(r.address, r.orig, st, r.dsn_orcpt))
            return tuple(out)

        def notice(
            kind: NoticeKind, to: str, *, postmaster: bool = False, headers_only: bool = False,
        ) -> Notice:
            return Notice(
                kind, to=to, postmaster=postmaster, headers_only=headers_only, envid=envid,
                delay_warning_time=self.policy.delay_warning_time,
                maximal_queue_lifetime=self.policy.maximal_queue_lifetime,
            )

        plan: list[tuple[tuple[int, ...], Notice, str, str]] = [
            (todo.failure, notice(NoticeKind.FAILURE, env.sender, headers_only=hdrs), "",
             "sender non-delivery notification"),
            (todo.success, notice(NoticeKind.SUCCESS, env.sender, headers_only=True), "",
             "sender delivery status notification"),
            (todo.delay, notice(NoticeKind.DELAY, env.sender, headers_only=True), "",
             "sender delay notification"),
            (todo.postmaster_failure,
             notice(NoticeKind.FAILURE, self.bounce_notice_recipient, postmaster=True,
                    headers_only=True),
             self.double_bounce_sender, "postmaster non-delivery notification"),
            (todo.double_bounce,
             notice(NoticeKind.FAILURE, self.double_bounce_recipient, postmaster=True),
             self.double_bounce_sender, "postmaster non-delivery notification"),
            (todo.postmaster_delay,
             notice(NoticeKind.DELAY, self.delay_notice_recipient, postmaster=True,
                    headers_only=True),
             self.double_bounce_sender, "postmaster delay notification"),
        ]
        return [
            Outgoing(n, sender, reported(indices), words)
            for indices, n, sender, words in plan if indices
        ]

    def _settle(
        self, qf: QueueFile, done: Settlement, outgoing: list[Outgoing], delay_warned: bool,
    ) -> list[tuple[Outgoing, str]]:
        """Do on disk what ``done`` says (blocking), then close; the notices' queue IDs."""
        with qf:
            env = qf.envelope
            # Record who was delivered before anything else can fail, so that a retry
            # never delivers to them again; bounced ones once their notices are queued.
            for i in done.mark_sent:
                qf.mark_done(i)
            shown = env.sender or f"MAILER-DAEMON@{self.myorigin}"
            written = [
                (out, write_notice(self.cleanup, self.myhostname, qf, out, shown, time.time(),
                                   myorigin=self.cfg[MYORIGIN],
                                   mail_name=self.cfg[MAIL_NAME]))
                for out in outgoing
            ]
            for i in done.mark_bounced:
                qf.mark_done(i)
            try:
                if not done.keep:
                    os.unlink(qf.path)
                    return written
                deferred = {
                    i: (st.dsn, st.text) for i, st in done.results.items()
                    if st.kind is status.Kind.DEFERRED and not env.recipients[i].done
                }
                qf.record_status(deferred)  # the reason postqueue and delay notices show
                if delay_warned:
                    qf.record_delay_warning()
                new_path = dirs.move(self.queue_dir, qf.queue_id, "active", "deferred")
            except FileNotFoundError:
                # postsuper moved (-h, -r) or deleted (-d) it meanwhile: leave it there, with
                # every recipient this attempt settled marked done, so none is sent twice.
                for i, st in done.results.items():
                    if st.kind is not status.Kind.DEFERRED:
                        qf.mark_done(i)
                return written
            when = scheduler.next_attempt(env.arrival, time.time(), self.policy)
            os.utime(new_path, (when, when))
            return written


def bind_trigger(queue_dir: str) -> socket.socket:
    path = os.path.join(queue_dir, "public", "qmgr")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o622)
    sock.setblocking(False)
    return sock


def unbind_trigger(queue_dir: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(queue_dir, "public", "qmgr"))


async def serve(qmgr: Qmgr, ready_fd: int, lifeline_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    recovered = await loop.run_in_executor(None, dirs.recover, qmgr.queue_dir)
    if recovered:
        qmgr.log.info(f"recovered {recovered} message(s) from the active queue")
    trigger = await loop.run_in_executor(None, bind_trigger, qmgr.queue_dir)

    def on_trigger() -> None:
        while True:
            try:
                data = trigger.recv(256)
            except BlockingIOError:
                return
            qmgr.trigger(data)

    loop.add_reader(trigger.fileno(), on_trigger)
    daemon.report_ready(ready_fd)
    last_deferred: float | None = None
    while not stop.is_set():
        await qmgr.scan_incoming()
        if scheduler.deferred_scan_due(last_deferred, time.monotonic(), qmgr.policy):
            await qmgr.scan_deferred()
            last_deferred = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INCOMING_SCAN_SECONDS)
    loop.remove_reader(trigger.fileno())
    trigger.close()
    await loop.run_in_executor(None, unbind_trigger, qmgr.queue_dir)
    # Stop or reload: deliveries in progress may finish (a bounded wait); what is still
    # running then stays in active/, recovered by the next qmgr (nothing is lost).
    if qmgr.tasks:
        await asyncio.wait(list(qmgr.tasks), timeout=STOP_SECONDS)
    for task in list(qmgr.tasks):
        task.cancel()


def main(argv: list[str] | None = None) -> int:
    args = daemon.child_arguments("qmgr").parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("qmgr", cfg, foreground=args.foreground)
    metrics.install(cfg)  # postier_metrics_listen: before the privilege drop
    return daemon.run(
        log, args.user, lambda: serve(Qmgr(cfg, log), args.ready_fd, args.lifeline_fd)
    )


if __name__ == "__main__":
    sys.exit(main())
