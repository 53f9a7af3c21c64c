"""The ``smtp``/``relay``/``lmtp`` transport: a delivery request to the next hop's servers.

Follows Postfix smtp(8)/lmtp(8): the next hop (``postier.smtp.nexthop``: a domain's MX
hosts in preference order, equal ones shuffled, each of their addresses, the domain's
own addresses when it has no MX, ``[host]`` without MX lookup, a list tried in order,
then ``smtp_fallback_relay``) is tried server after server until one takes the
transaction; a null MX (RFC 7505) bounces with 5.1.10, a domain that does not exist with
5.4.4, a DNS failure defers with 4.4.3. A connection that finished a transaction is kept
for the next request to the same next hop (``smtp_connection_cache_on_demand``) for
``smtp_connection_cache_time_limit`` seconds, and for at most
``smtp_connection_reuse_time_limit`` after it opened. The content is read from the queue
file in worker threads, a chunk at a time. Each recipient's status line is logged here
in Postfix's form: ``relay=host[addr]:port, delay=…, delays=a/b/c/d, dsn=…, status=…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from postier.config.braces import split_list
from postier.delivery.status import DeliveryStatus, Kind, status_log_line
from postier.delivery.transport import (
    DeliveryRequest,
    RcptResult,
    StatusLog,
    TransportUnavailable,
)
from postier.dns.result import AddressAnswer, Lookup, MxAnswer
from postier.queue.file import QueueFile
from postier.smtp import auth, diagnostics
from postier.smtp.nexthop import Kind as HopKind
from postier.smtp.nexthop import NextHop, dedupe, order_mx, parse_list
from postier.smtp.session import Message, Recipient, Session, SessionError
from postier.smtp.settings import SmtpSettings
from postier.tables import Maps, TableError
from postier.tls.client import ClientTlsLevel, client_context

_T = TypeVar("_T")
CHUNK_SIZE = 65536


def needs_smtputf8(message: Message, recipients: Sequence[Recipient]) -> bool:
    """Does this delivery need a server that offers SMTPUTF8? As Postfix 3.7's smtp(8):
    cleanup found UTF-8 in the message (``smtputf8_required``, autodetection), or it was
    received with SMTPUTF8 and its sender or one of these recipients is not ASCII (then
    UTF-8 in headers alone does not count: sent without SMTPUTF8)."""
    return message.smtputf8_required or (message.smtputf8 and not (
        message.sender.isascii() and all(r.address.isascii() for r in recipients)))


def _before_mail(session: Session, message: Message,
                 recipients: Sequence[Recipient]) -> DeliveryStatus | None:
    """What fails the whole message on this server before MAIL (a new connection or a
    cached one): its SIZE is too small (5.3.4), or the message needs SMTPUTF8 and the
    server does not offer it (5.6.7); None: go on."""
    limit = session.size_limit
    if limit and message.size > limit:
        return diagnostics.size_exceeded(message.size, limit, session.host, session.relay)
    if needs_smtputf8(message, recipients) and "SMTPUTF8" not in session.conn.extensions:
        return diagnostics.smtputf8_required(session.host, session.relay)
    return None


class Resolver(Protocol):
    """The DNS questions the client asks (``postier.dns.resolver.Resolver`` answers them)."""

    async def mx(self, domain: str) -> MxAnswer: ...
    async def host_addresses(self, name: str, *, ipv4: bool = True,
                             ipv6: bool = True) -> AddressAnswer: ...


@dataclass(frozen=True)
class Server:
    """One server to try: ``name`` (host name or IP), ``addr`` (IP or socket path), ``port``
    (0: a unix socket)."""

    name: str
    addr: str
    port: int


@dataclass
class _Cached:
    session: Session
    timer: asyncio.TimerHandle


class SmtpTransport:
    """``deliver(request)``: one status per recipient, each logged.

    ``settings`` from ``SmtpSettings.from_config``; ``resolver`` answers MX and address
    questions; ``clock`` gives seconds since the epoch (for the log's delays);
    ``password_maps``: smtp_sasl_password_maps, opened (used when smtp_sasl_auth_enable).
    Raises ``ConfigError`` when smtp_tls_CAfile/CApath cannot be loaded.
    """

    def __init__(self, settings: SmtpSettings, log: StatusLog, resolver: Resolver, *,
                 clock: Callable[[], float] = time.time,
                 password_maps: Maps | None = None) -> None:
        self.settings = settings
        self.log = log
        self.resolver = resolver
        self.clock = clock
        self.cache: dict[str, list[_Cached]] = {}
        self.password_maps = password_maps or Maps("smtp_sasl_password_maps", ())
        self.tls_context = (client_context(settings.tls)
                            if settings.tls.level is not ClientTlsLevel.NONE else None)

    # --- the request ----------------------------------------------------------------------

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        begin = self.clock()
        try:
            qf = await _io(QueueFile.open, request.path)
        except OSError as exc:  # the environment: qmgr defers the request (4.3.0)
            raise TransportUnavailable(f"cannot read queue file: {exc}") from exc
        try:
            message, recipients = _message(qf, request)
            timing = _Timing(begin)
            statuses = await self._deliver(request.nexthop, message, recipients, timing)
        finally:
            await _io(qf.close)
        now = self.clock()
        setup = max(0.0, timing.connected - begin)
        xfer = max(0.0, now - timing.connected)
        delays = (max(0.0, begin - request.arrival), 0.0, setup, xfer)
        results = []
        for r in request.recipients:
            st = statuses[r.index]
            self.log.info(status_log_line(
                request.queue_id, r.address, r.orig, request.arrival, st, now, delays))
            results.append(RcptResult(r.index, st))
        return results

    async def _deliver(self, nexthop: str, message: Message, recipients: list[Recipient],
                       timing: _Timing) -> dict[int, DeliveryStatus]:
        cached = self._take_cached(nexthop)
        if cached is not None:
            timing.connected = self.clock()
            refused = _before_mail(cached, message, recipients)
            if refused is not None:
                await self._after(nexthop, cached, cached.usable)
                return {r.index: refused for r in recipients}
            outcome = await cached.transaction(message, recipients)
            if not outcome.stale:
                await self._after(nexthop, cached, outcome.reusable)
                return outcome.statuses
            cached.abort()  # it went away while cached: start afresh
        try:
            written = {parse_list(t, lmtp=self.settings.lmtp)[0]: t.strip()
                       for t in split_list(nexthop)}
            hops = parse_list(nexthop, lmtp=self.settings.lmtp)
            fallback = parse_list(" ".join(self.settings.fallback_relay),
                                  lmtp=self.settings.lmtp)
        except ValueError as exc:
            st = diagnostics.bad_destination(str(exc))
            return {r.index: st for r in recipients}
        if not hops:
            st = diagnostics.bad_destination(f"empty next hop {nexthop!r}")
            return {r.index: st for r in recipients}
        soft: DeliveryStatus | None = None
        hard: DeliveryStatus | None = None
        for hop in dedupe([*hops, *[f for f in fallback if f not in hops]]):
            servers, problem = await self._servers(hop)
            if problem is not None and problem.kind is Kind.BOUNCED:
                if len(hops) == 1 or problem.dsn == "5.1.10":
                    # No such domain, or one that takes no mail: no fallback relay.
                    return {r.index: problem for r in recipients}
                hard = problem
            elif problem is not None:
                soft = problem
            for server in servers:
                session = await self._open(server, hop, written.get(hop, hop.label))
                if isinstance(session, DeliveryStatus):
                    soft = session
                    continue
                timing.connected = self.clock()
                refused = _before_mail(session, message, recipients)
                if refused is not None:
                    await session.quit()
                    return {r.index: refused for r in recipients}
                outcome = await session.transaction(message, recipients)
                await self._after(nexthop, session, outcome.reusable)
                return outcome.statuses
        final = soft or hard or diagnostics.bad_destination(nexthop)
        return {r.index: final for r in recipients}

    async def _open(self, server: Server, hop: NextHop, dest: str) -> Session | DeliveryStatus:
        """A session with ``server`` ready for mail: connected, greeted, TLS as the
        level asks, logged in when smtp_sasl_auth_enable has a password for it; else the
        status of the failure (logged, as smtp(8) logs each server that failed). At
        level may a failed TLS handshake is tried once more without TLS."""
        plain = False
        while True:
            try:
                session = await Session.connect(server.name, server.addr, server.port,
                                                self.settings)
            except SessionError as exc:
                self.log.info(exc.status.text)
                return exc.status
            try:
                await session.handshake()
                await self._secure(session, hop, dest, plain)
            except SessionError as exc:
                if session.warning:
                    self.log.info(session.warning)
                self.log.info(exc.status.text)
                if exc.plain_retry and not plain:
                    session.abort()
                    plain = True
                    continue
                await session.quit()
                return exc.status
            return session

    async def _secure(self, session: Session, hop: NextHop, dest: str, plain: bool) -> None:
        """STARTTLS and AUTH on a greeted session; raises ``SessionError``."""
        policy = self.settings.tls
        if self.tls_context is not None and not plain:
            await session.starttls(policy, self.tls_context, hop.host)
            if session.tls is not None and policy.loglevel >= 1:
                self.log.info(session.tls_established())
        if not self.settings.sasl_enable or not session.auth_mechanisms:
            return
        try:
            value = await self.password_maps.search_async(
                auth.password_keys(session.host.partition("[")[0], dest))
        except TableError as exc:
            raise SessionError(DeliveryStatus("4.3.0", str(exc), session.relay),
                               try_next=False) from None
        if value is None:
            return  # no password for this server: send without AUTH, as smtp(8)
        options = (self.settings.sasl_tls_options if session.tls is not None
                   else self.settings.sasl_options)
        await session.authenticate(auth.Credentials.parse(value), options,
                                   soft_bounce=self.settings.sasl_soft_bounce)

    async def _servers(self, hop: NextHop) -> tuple[list[Server], DeliveryStatus | None]:
        """The servers of one next hop, in the order to try them, and the problem found
        while looking them up (None when every name resolved)."""
        if hop.kind is HopKind.UNIX:
            return [Server(self.settings.helo_name, hop.host, 0)], None
        names: list[str]
        from_mx = False
        if hop.kind is HopKind.MX:
            mx = await self.resolver.mx(hop.host)
            if mx.lookup is Lookup.FOUND:
                if mx.null:
                    return [], diagnostics.null_mx(hop.host)
                names = order_mx(mx.records)
                from_mx = True
            elif mx.lookup is Lookup.NO_DATA:
                names = [hop.host]
            else:
                return [], diagnostics.host_not_found(
                    mx.error, permanent=mx.lookup is Lookup.NOT_FOUND)
        else:
            names = [hop.host]
        servers: list[Server] = []
        problem: DeliveryStatus | None = None
        for name in names:
            answer = await self.resolver.host_addresses(
                name, ipv4=self.settings.ipv4, ipv6=self.settings.ipv6)
            if answer.lookup is not Lookup.FOUND:
                # An MX host without an address defers; the destination itself bounces.
                permanent = answer.lookup is not Lookup.TEMP_FAIL and not from_mx
                problem = diagnostics.host_not_found(answer.error, permanent=permanent)
                continue
            servers += [Server(name, addr, hop.port) for addr in answer.addresses]
        return servers, (problem if not servers else None)

    # --- the connection cache -------------------------------------------------------------

    def _take_cached(self, nexthop: str) -> Session | None:
        entries = self.cache.get(nexthop)
        while entries:
            entry = entries.pop()
            entry.timer.cancel()
            if entry.session.usable:
                if not entries:
                    del self.cache[nexthop]
                return entry.session
            entry.session.abort()
        self.cache.pop(nexthop, None)
        return None

    async def _after(self, nexthop: str, session: Session, reusable: bool) -> None:
        """Keep ``session`` for the next request to ``nexthop``, or QUIT."""
        young = time.monotonic() - session.started < self.settings.reuse_time_limit
        if reusable and young and self.settings.cache_on_demand and session.usable:
            loop = asyncio.get_running_loop()
            entry = _Cached(session, loop.call_later(
                self.settings.cache_time_limit, self._expire, nexthop, session))
            self.cache.setdefault(nexthop, []).append(entry)
            return
        await session.quit()

    def _expire(self, nexthop: str, session: Session) -> None:
        entries = self.cache.get(nexthop, [])
        for entry in entries:
            if entry.session is session:
                entries.remove(entry)
                break
        else:
            return
        if not entries:
            self.cache.pop(nexthop, None)
        task = asyncio.get_running_loop().create_task(session.quit())
        _closing.add(task)
        task.add_done_callback(_closing.discard)

    async def close(self) -> None:
        """QUIT every cached connection (at stop)."""
        entries = [e for es in self.cache.values() for e in es]
        self.cache.clear()
        for e in entries:
            e.timer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*(e.session.quit() for e in entries))


_closing: set[asyncio.Task[None]] = set()


@dataclass
class _Timing:
    begin: float
    connected: float = 0.0

    def __post_init__(self) -> None:
        self.connected = self.begin


async def _io(fn: Callable[..., _T], *args: object) -> _T:
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(fn, *args))


def _message(qf: QueueFile, request: DeliveryRequest) -> tuple[Message, list[Recipient]]:
    """The transaction's message and recipients from the queue file (DSN fields by index)."""
    env = qf.envelope
    attrs = env.attrs

    async def content() -> AsyncIterator[bytes]:
        chunks = qf.iter_content(CHUNK_SIZE)
        while True:
            chunk = await _io(next, chunks, None)
            if chunk is None:
                return
            yield chunk

    message = Message(
        sender=request.sender,
        size=qf.content_size,
        content=content,
        body=attrs.get("body", "").upper(),
        smtputf8=env.smtputf8,
        smtputf8_required=env.smtputf8_required,
        ret=attrs.get("dsn_ret", ""),
        envid=attrs.get("dsn_envid", ""),
    )
    recipients = []
    for r in request.recipients:
        queued = env.recipients[r.index] if r.index < len(env.recipients) else None
        recipients.append(Recipient(
            r.index, r.address,
            notify=queued.dsn_notify if queued else "",
            orcpt=queued.dsn_orcpt if queued else ""))
    return message, recipients

