"""qmgr's scheduling decisions, as a pure core: routes, requests, concurrency, backoff, expiry.

Follows Postfix's qmgr(8) and trivial-rewrite(8): each recipient goes to a transport
and next hop (``route``: ``local_transport``, ``relay_transport``, ``default_transport``,
``relayhost``; ``transport_maps`` plugs in there); the
recipients of one message that share them are grouped into delivery requests of at
most ``<transport>_destination_recipient_limit`` (else
``default_destination_recipient_limit``) recipients; at most
``<transport>_destination_concurrency_limit`` (else
``default_destination_concurrency_limit``) requests to one destination are in flight,
starting from ``initial_destination_concurrency`` (slow start: one more per delivery
that completed, back to the initial window when a transport could not try); with a
recipient limit of 1 the destination is the recipient itself, as in Postfix. A
deferred message waits ``minimal_backoff_time`` <= its age <= ``maximal_backoff_time``
before its next attempt, found by the deferred queue scan every ``queue_run_delay``;
a recipient still deferred after ``maximal_queue_lifetime`` (``bounce_queue_lifetime``
for mail from ``<>``) is bounced with 5.4.7. After an attempt, ``notices`` decides the
delivery status notifications, as Postfix's bounce(8) and RFC 3461: failure, success
and delay notices to the sender as each recipient's NOTIFY asks (a delay notice once,
at the first attempt after ``delay_warning_time``), postmaster copies per
``notify_classes``, and for mail from ``<>`` a double bounce to the postmaster (class
``2bounce``) or nothing.

No sockets, files or clock: times are passed in, in seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postier.bounce import notify
from postier.config.params import (
    BOUNCE_QUEUE_LIFETIME,
    DEFAULT_DESTINATION_CONCURRENCY_LIMIT,
    DEFAULT_DESTINATION_RECIPIENT_LIMIT,
    DEFER_TRANSPORTS,
    DELAY_WARNING_TIME,
    INITIAL_DESTINATION_CONCURRENCY,
    MAXIMAL_BACKOFF_TIME,
    MAXIMAL_QUEUE_LIFETIME,
    MINIMAL_BACKOFF_TIME,
    NOTIFY_CLASSES,
    QUEUE_RUN_DELAY,
)
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.protocol import RcptRequest
from postier.delivery.route import ERROR_TRANSPORTS as ERROR_TRANSPORTS
from postier.delivery.route import UNDELIVERABLE as UNDELIVERABLE
from postier.delivery.route import VIRTUAL_ALIAS_UNKNOWN as VIRTUAL_ALIAS_UNKNOWN
from postier.delivery.route import Route as Route
from postier.delivery.route import Routing as Routing
from postier.delivery.route import parse_transport as parse_transport
from postier.delivery.route import route as route
from postier.delivery.status import DeliveryStatus, Kind

# --- routes: trivial-rewrite(8)'s resolve step lives in delivery.route ----------------


# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """One transport's per-destination limits (postconf(5)); a limit of 0 means none."""

    recipient_limit: int
    concurrency_limit: int
    initial_concurrency: int


@dataclass(frozen=True)
class Policy:
    """Every setting the scheduler reads; times in seconds.

    ``transport_limits`` holds the transports whose limits differ from
    ``default_limits``.
    """

    minimal_backoff_time: float
    maximal_backoff_time: float
    queue_run_delay: float
    maximal_queue_lifetime: float
    bounce_queue_lifetime: float
    defer_transports: frozenset[str] = frozenset()
    default_limits: Limits = Limits(50, 20, 5)
    delay_warning_time: float = 0.0
    notify_classes: frozenset[str] = frozenset({"resource", "software"})
    transport_limits: Mapping[str, Limits] = field(default_factory=dict)

    def limits(self, transport: str) -> Limits:
        return self.transport_limits.get(transport, self.default_limits)

    @classmethod
    def from_config(
        cls, cfg: Config, transports: Iterable[str],
        concurrency_defaults: Mapping[str, int] | None = None,
    ) -> Policy:
        """The policy in ``cfg``; ``<transport>_destination_*`` read for each of ``transports``.

        ``concurrency_defaults`` gives a transport's own default concurrency limit (used
        when its parameter is not set), in place of default_destination_concurrency_limit.
        Raises ``ConfigError`` on a value of the wrong type.
        """
        own = concurrency_defaults or {}
        default = Limits(
            cfg[DEFAULT_DESTINATION_RECIPIENT_LIMIT],
            cfg[DEFAULT_DESTINATION_CONCURRENCY_LIMIT],
            cfg[INITIAL_DESTINATION_CONCURRENCY],
        )
        per: dict[str, Limits] = {}
        for t in transports:
            rcpt_name = f"{t}_destination_recipient_limit"
            conc_name = f"{t}_destination_concurrency_limit"
            rcpt = cfg.get_int(rcpt_name) if cfg.known(rcpt_name) else default.recipient_limit
            conc = (cfg.get_int(conc_name) if cfg.known(conc_name)
                    else own.get(t, default.concurrency_limit))
            if (rcpt, conc) != (default.recipient_limit, default.concurrency_limit):
                per[t] = Limits(rcpt, conc, default.initial_concurrency)
        return cls(
            minimal_backoff_time=cfg[MINIMAL_BACKOFF_TIME],
            maximal_backoff_time=cfg[MAXIMAL_BACKOFF_TIME],
            queue_run_delay=cfg[QUEUE_RUN_DELAY],
            maximal_queue_lifetime=cfg[MAXIMAL_QUEUE_LIFETIME],
            bounce_queue_lifetime=cfg[BOUNCE_QUEUE_LIFETIME],
            defer_transports=frozenset(cfg[DEFER_TRANSPORTS]),
            default_limits=default,
            transport_limits=per,
            delay_warning_time=cfg[DELAY_WARNING_TIME],
            notify_classes=frozenset(c.lower() for c in cfg[NOTIFY_CLASSES]),
        )


# --- grouping into delivery requests ------------------------------------------------------


class QueuedRecipient(Protocol):
    """A recipient as the queue file holds it (``postier.queue.file.Recipient`` is one)."""

    @property
    def address(self) -> str: ...
    @property
    def orig(self) -> str: ...
    @property
    def done(self) -> bool: ...
    @property
    def dsn_notify(self) -> str: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True, order=True)
class Destination:
    """What concurrency is counted against: a transport and a destination name."""

    transport: str
    name: str


@dataclass(frozen=True)
class Batch:
    """The recipients of one future delivery request, and the destination it counts against."""

    route: Route
    destination: Destination
    recipients: tuple[RcptRequest, ...]


@dataclass(frozen=True)
class Plan:
    """One message's attempt: requests to make, and the statuses qmgr decided itself.

    ``decided`` maps a recipient index to its status; qmgr logs these.
    """

    batches: tuple[Batch, ...]
    decided: Mapping[int, DeliveryStatus]


def unavailable(transport: str) -> DeliveryStatus:
    """The status of a recipient whose transport has no delivery agent yet."""
    return status.deferred(
        "4.3.0", f"mail transport unavailable: no {transport} delivery agent yet", relay="none"
    )


DEFERRED_TRANSPORT = status.deferred("4.3.2", "deferred transport", relay="none")


def plan(
    recipients: Sequence[QueuedRecipient],
    resolve: Callable[[str], Route],
    policy: Policy,
    available: Collection[str],
) -> Plan:
    """Group the recipients not yet done into batches, per route, in queue file order.

    ``resolve`` gives a recipient address's route; ``available`` holds the transports that
    have an agent. A recipient whose transport is in ``defer_transports`` is deferred
    with 4.3.2, one without an agent with 4.3.0: both end in ``decided``. A route's
    recipients are cut into batches of at most its transport's recipient limit.
    """
    decided: dict[int, DeliveryStatus] = {}
    by_route: dict[Route, list[RcptRequest]] = {}
    for i, r in enumerate(recipients):
        if r.done:
            continue
        rt = resolve(r.address)
        if rt.transport in policy.defer_transports:
            decided[i] = DEFERRED_TRANSPORT
        elif rt.transport not in available:
            decided[i] = unavailable(rt.transport)
        else:
            by_route.setdefault(rt, []).append(RcptRequest(i, r.address, r.orig))
    batches: list[Batch] = []
    for rt, rcpts in by_route.items():
        limit = policy.limits(rt.transport).recipient_limit
        size = limit if limit > 0 else len(rcpts)
        for start in range(0, len(rcpts), size):
            chunk = tuple(rcpts[start:start + size])
            # Postfix: with one recipient per request, the recipient is the destination.
            name = chunk[0].address.lower() if limit == 1 else rt.nexthop
            batches.append(Batch(rt, Destination(rt.transport, name), chunk))
    return Plan(tuple(batches), decided)


# --- concurrency --------------------------------------------------------------------------


class Concurrency:
    """In-flight requests per destination, within a window that opens as deliveries succeed.

    ``try_start(d)`` takes a slot when one is free (True) or says to wait (False);
    ``finish(d, ok)`` gives it back: ``ok`` (the transport tried) widens the window by
    one up to the transport's concurrency limit, not ``ok`` (it could not try) closes it
    back to ``initial_destination_concurrency``. A limit of 0 means no limit.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.active: dict[Destination, int] = {}
        self.windows: dict[Destination, int] = {}

    def window(self, d: Destination) -> int:
        """How many requests to ``d`` may be in flight now (0: unlimited)."""
        limits = self.policy.limits(d.transport)
        if limits.concurrency_limit <= 0:
            return 0
        initial = min(max(1, limits.initial_concurrency), limits.concurrency_limit)
        return self.windows.get(d, initial)

    def free(self, d: Destination) -> int | None:
        """How many more requests to ``d`` may start now; None when there is no limit."""
        window = self.window(d)
        return None if window == 0 else max(0, window - self.active.get(d, 0))

    def try_start(self, d: Destination) -> bool:
        window = self.window(d)
        busy = self.active.get(d, 0)
        if window and busy >= window:
            return False
        self.active[d] = busy + 1
        return True

    def finish(self, d: Destination, ok: bool) -> None:
        busy = self.active.get(d, 0) - 1
        assert busy >= 0, d
        if busy:
            self.active[d] = busy
        else:
            del self.active[d]
        limits = self.policy.limits(d.transport)
        if limits.concurrency_limit <= 0:
            return
        if ok:
            self.windows[d] = min(self.window(d) + 1, limits.concurrency_limit)
        else:
            self.windows.pop(d, None)


# --- backoff and expiry -------------------------------------------------------------------


def backoff_delay(age: float, policy: Policy) -> float:
    """Seconds until a deferred message's next attempt: its age, clamped to the backoff times."""
    return min(max(age, policy.minimal_backoff_time), policy.maximal_backoff_time)


def next_attempt(arrival: float, now: float, policy: Policy) -> float:
    """When a message deferred at ``now`` is next due (its deferred file's mtime)."""
    return now + backoff_delay(max(0.0, now - arrival), policy)


def is_due(next_attempt_time: float, now: float) -> bool:
    """Whether the deferred queue scan at ``now`` takes a message due at that time."""
    return next_attempt_time <= now


def deferred_scan_due(last_scan: float | None, now: float, policy: Policy) -> bool:
    """Whether the deferred queue is scanned now (the first time, and every queue_run_delay)."""
    return last_scan is None or now - last_scan >= policy.queue_run_delay


def lifetime(sender: str, policy: Policy) -> float:
    """How long mail from ``sender`` may stay queued: bounce_queue_lifetime for ``<>``."""
    return policy.bounce_queue_lifetime if sender == "" else policy.maximal_queue_lifetime


def is_expired(sender: str, arrival: float, now: float, policy: Policy) -> bool:
    return now - arrival > lifetime(sender, policy)


def expired(deferred_status: DeliveryStatus) -> DeliveryStatus:
    """What a recipient still deferred past its lifetime gets: a 5.4.7 bounce."""
    return status.bounced(
        "5.4.7", f"delivery temporarily suspended: {deferred_status.text}",
        relay=deferred_status.relay,
    )


@dataclass(frozen=True)
class Settlement:
    """What becomes of a message after an attempt, in the order qmgr does it.

    ``results`` are the attempt's statuses after expiry; ``expired`` says that some
    deferred recipients were returned to the sender (qmgr logs it); ``mark_sent`` are
    the indices to mark done first, ``bounced`` the indices for a bounce (or, from
    ``<>``, to discard), ``mark_bounced`` those to mark done once the bounce is queued;
    ``keep`` says the message stays queued (deferred), else it is removed.
    """

    results: Mapping[int, DeliveryStatus]
    expired: bool
    mark_sent: tuple[int, ...]
    bounced: tuple[int, ...]
    mark_bounced: tuple[int, ...]
    keep: bool


def settle(
    recipients: Sequence[QueuedRecipient],
    results: Mapping[int, DeliveryStatus],
    sender: str,
    arrival: float,
    now: float,
    policy: Policy,
) -> Settlement:
    """Decide removal, deferral, bounces and marks from one attempt's ``results``.

    A recipient not done and without a result counts as deferred. Recipients that were
    sent are marked only when the message stays queued or bounces (so that a retry
    never delivers to them again); bounced ones are marked only when the message stays.
    """
    final = dict(results)
    was_expired = False
    if is_expired(sender, arrival, now, policy):
        for i, d in results.items():
            if d.kind is Kind.DEFERRED:
                final[i] = expired(d)
                was_expired = True
    bounced: list[int] = []
    pending = False
    for i, r in enumerate(recipients):
        if r.done:
            continue
        st = final.get(i)
        if st is None or st.kind is Kind.DEFERRED:
            pending = True
        elif st.kind is Kind.BOUNCED:
            bounced.append(i)

    def marked(kind: Kind) -> tuple[int, ...]:
        return tuple(
            i for i, r in enumerate(recipients)
            if not r.done and (st := final.get(i)) is not None and st.kind is kind
        )

    return Settlement(
        results=final,
        expired=was_expired,
        mark_sent=marked(Kind.SENT) if bounced or pending else (),
        bounced=tuple(bounced),
        mark_bounced=marked(Kind.BOUNCED) if bounced and pending else (),
        keep=pending,
    )


# --- notifications ------------------------------------------------------------------------


@dataclass(frozen=True)
class Notices:
    """The notifications one attempt calls for, as recipient indices per notice.

    ``failure``, ``success``, ``delay``: to the sender; ``postmaster_failure`` and
    ``postmaster_delay``: the headers-only postmaster copies (classes ``bounce`` and
    ``delay``); ``double_bounce``: failures of mail from ``<>``, to
    ``2bounce_notice_recipient``; ``discarded``: failures nobody is told about (mail from
    ``<>`` without the ``2bounce`` class, or from the double-bounce sender);
    ``delay_warned``: the delay warning is due now (record it, whoever gets a notice).
    """

    failure: tuple[int, ...] = ()
    success: tuple[int, ...] = ()
    delay: tuple[int, ...] = ()
    postmaster_failure: tuple[int, ...] = ()
    postmaster_delay: tuple[int, ...] = ()
    double_bounce: tuple[int, ...] = ()
    discarded: tuple[int, ...] = ()
    delay_warned: bool = False


def delay_warning_due(
    arrival: float, now: float, already_warned: bool, policy: Policy,
) -> bool:
    """Whether a message still deferred at ``now`` gets its (single) delay warning."""
    return (policy.delay_warning_time > 0 and not already_warned
            and now - arrival >= policy.delay_warning_time)


def notices(
    recipients: Sequence[QueuedRecipient],
    done: Settlement,
    sender: str,
    arrival: float,
    now: float,
    policy: Policy,
    *,
    delay_warned: bool = False,
    double_bounce_sender: bool = False,
) -> Notices:
    """Decide the notifications after ``done`` (from ``settle``) for mail from ``sender``.

    ``delay_warned``: the message's delay warning was sent before; ``double_bounce_sender``:
    ``sender`` is the double-bounce address (a postmaster notice, never answered). A
    recipient's NOTIFY (``dsn_notify``, RFC 3461) chooses its notices to the sender;
    postmaster copies ignore it. The ``bounce`` class implies ``2bounce``, as Postfix.
    """
    classes = policy.notify_classes
    bounced = done.bounced
    if double_bounce_sender or not sender:
        if not sender and not double_bounce_sender and classes & {"bounce", "2bounce"}:
            return Notices(double_bounce=bounced)
        return Notices(discarded=bounced)
    sent = tuple(
        i for i, r in enumerate(recipients)
        if not r.done and (st := done.results.get(i)) is not None and st.kind is Kind.SENT
    )
    delayed: tuple[int, ...] = ()
    warned = done.keep and delay_warning_due(arrival, now, delay_warned, policy)
    if warned:
        delayed = tuple(
            i for i, r in enumerate(recipients)
            if not r.done and i not in bounced and i not in sent
            and ((st := done.results.get(i)) is not None or r.status)
        )
    return Notices(
        failure=tuple(i for i in bounced if notify.wants_failure(recipients[i].dsn_notify)),
        success=tuple(i for i in sent if notify.wants_success(recipients[i].dsn_notify)),
        delay=tuple(i for i in delayed if notify.wants_delay(recipients[i].dsn_notify)),
        postmaster_failure=bounced if "bounce" in classes else (),
        postmaster_delay=delayed if "delay" in classes else (),
        delay_warned=warned,
    )
