"""The smtpd restriction evaluator: restriction lists plus facts in, a decision out (pure).

Follows Postfix's smtpd(8), postconf(5) (each restriction, ``smtpd_*_restrictions``,
``smtpd_delay_reject``, ``smtpd_reject_unlisted_recipient``/``_sender``, the
``*_reject_code`` parameters, ``soft_bounce``), access(5) and SMTPD_ACCESS_README.

A list is read left to right until a restriction permits, rejects or defers;
``sleep N`` and ``warn_if_reject`` modify the walk. ``evaluate_stage`` gives
``smtpd_delay_reject = yes`` semantics: at RCPT time the client, helo, sender,
relay and recipient lists run in that order; a permit ends only its own list, a
reject or defer anywhere ends everything.

Every restriction is one row of ``RESTRICTIONS``: its name, what it needs (the part of
the session state it reads, the facts it asks for, a ``type:table`` argument, SASL),
the stages it may run in (derived from the state it reads), whether it guards
relaying, and its check. A check that needs a fact (mynetworks, address class, local
recipient, DNS, access table) is a generator: it yields a ``lookups.Lookup`` and is
resumed with the answer; the ``*_steps`` functions are evaluations in that form, and
``evaluate``/``evaluate_stage`` drive them with a synchronous ``Facts``. Reply texts
come from ``smtpproto.replies``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from postier.config.params import PARAMS, ParamSource
from postier.delivery.route import ERROR_TRANSPORTS
from postier.dns.result import DnsResult
from postier.restrictions.lookups import Ask as Ask  # re-exported: what rows declare
from postier.restrictions.lookups import Facts as Facts  # re-exported: what answers them
from postier.restrictions.lookups import (
    Steps,
    TableFailed,
    ask_address_class,
    ask_dns_records,
    ask_domain_dns,
    ask_inet_interface,
    ask_local_recipient,
    ask_mynetworks,
    ask_policy,
    ask_relay_recipient,
    ask_route,
    ask_sender_logins,
    ask_table,
    run,
)
from postier.rewrite.address import (
    MAX_ROUTING_STEPS,
    Address,
    HostnameProblem,
    fold_domain,
    has_sender_routing,
    invalid_hostname_problem,
    is_fqdn,
    non_fqdn_hostname_problem,
    parse_address,
    routing_step,
)
from postier.rewrite.resolve import AddressClass
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply, ReplyClass
from postier.tables.search import Subject


class Stage(enum.Enum):
    """A restriction list: the SMTP stage at which smtpd evaluates it."""

    CLIENT = "client"
    HELO = "helo"
    SENDER = "sender"
    RELAY = "relay"
    RECIPIENT = "recipient"
    DATA = "data"
    END_OF_DATA = "end_of_data"
    ETRN = "etrn"

    @property
    def rank(self) -> int:
        """How much of the session is known there: a stage sees the data of lower ranks."""
        return _RANK[self]

    @property
    def reply_class(self) -> ReplyClass:
        """What a reject in this list says it is about."""
        return _REPLY_CLASS[self]


_RANK = {Stage.CLIENT: 0, Stage.HELO: 1, Stage.SENDER: 2, Stage.RELAY: 3, Stage.RECIPIENT: 3,
         Stage.DATA: 4, Stage.END_OF_DATA: 4, Stage.ETRN: 1}
_REPLY_CLASS = {
    Stage.CLIENT: ReplyClass.CLIENT, Stage.HELO: ReplyClass.HELO,
    Stage.SENDER: ReplyClass.SENDER, Stage.RELAY: ReplyClass.RECIPIENT,
    Stage.RECIPIENT: ReplyClass.RECIPIENT, Stage.DATA: ReplyClass.DATA,
    Stage.END_OF_DATA: ReplyClass.END_OF_DATA, Stage.ETRN: ReplyClass.ETRN,
}

#: The lists smtpd evaluates at RCPT time, in smtpd_delay_reject order.
DELAYED_STAGES = (Stage.CLIENT, Stage.HELO, Stage.SENDER, Stage.RELAY, Stage.RECIPIENT)

NULL_ACCESS_KEY = "<>"  # smtpd_null_access_lookup_key default


@dataclass(frozen=True)
class SmtpdState:
    """The session facts restrictions look at. ``sender``: None before MAIL, "" for <>."""

    client_address: str
    client_name: str = "unknown"
    reverse_client_name: str = "unknown"
    helo_name: str | None = None
    sender: str | None = None
    recipient: str | None = None
    sasl_username: str | None = None
    esmtp: bool = True
    pipelining_violation: bool = False
    stage: Stage = Stage.RECIPIENT
    server_address: str = ""
    server_port: str = ""
    client_port: str = ""
    encrypted: bool = False  # TLS is active (reject_plaintext_session)
    recipient_count: int = 0  # recipients accepted so far (at DATA: all of them)
    queue_id: str = ""
    size: int = 0  # MAIL's SIZE, then the message size
    sasl_method: str = ""
    sasl_sender: str = ""
    instance: str = ""  # one value per mail transaction (policy servers' "instance")
    # TLS (after STARTTLS): the client certificate's CN and issuer's CN, its fingerprint
    # and public key fingerprint (smtpd_tls_fingerprint_digest, "AB:CD:…"; "" without a
    # certificate), whether it chained to smtpd_tls_CAfile/CApath; the protocol, cipher
    # and its secret bits.
    ccert_subject: str = ""
    ccert_issuer: str = ""
    ccert_fingerprint: str = ""
    ccert_pubkey_fingerprint: str = ""
    ccert_trusted: bool = False
    encryption_protocol: str = ""
    encryption_cipher: str = ""
    encryption_keysize: int = 0
    etrn_domain: str | None = None  # ETRN's site, in smtpd_etrn_restrictions


#: The ``SmtpdState`` fields each stage brings (what a restriction's ``Needs.state`` means).
STATE_FIELDS: Mapping[Stage, frozenset[str]] = {
    Stage.CLIENT: frozenset({"client_address", "client_name", "reverse_client_name", "esmtp",
                             "pipelining_violation", "server_address", "server_port", "client_port",
                             "encrypted", "ccert_subject", "ccert_issuer", "ccert_fingerprint",
                             "ccert_pubkey_fingerprint", "ccert_trusted", "encryption_protocol",
                             "encryption_cipher", "encryption_keysize"}),
    Stage.HELO: frozenset({"helo_name"}),
    Stage.SENDER: frozenset({"sender", "recipient_count", "size", "queue_id", "instance",
                             "sasl_method", "sasl_sender"}),
    Stage.RECIPIENT: frozenset({"recipient"}),
    Stage.ETRN: frozenset({"etrn_domain"}),
}


@dataclass(frozen=True)
class RejectCodes:
    """The ``*_reject_code`` parameters (main.cf names), ``soft_bounce``, and the other
    parameters that shape replies: ``default_rbl_reply``, ``rbl_reply_maps`` (its tables),
    ``smtpd_policy_service_default_action`` and ``_policy_context``; ``relay_clientcerts``
    (its tables, for permit_tls_clientcerts) and ``smtpd_tls_ask_ccert`` (without it the
    client certificate rows warn, as Postfix's)."""

    unknown_local_recipient_reject_code: int = (
        PARAMS["unknown_local_recipient_reject_code"].default_value()
    )
    unknown_relay_recipient_reject_code: int = (
        PARAMS["unknown_relay_recipient_reject_code"].default_value()
    )
    unknown_virtual_alias_reject_code: int = (
        PARAMS["unknown_virtual_alias_reject_code"].default_value()
    )
    unknown_address_reject_code: int = PARAMS["unknown_address_reject_code"].default_value()
    relay_domains_reject_code: int = PARAMS["relay_domains_reject_code"].default_value()
    non_fqdn_reject_code: int = PARAMS["non_fqdn_reject_code"].default_value()
    invalid_hostname_reject_code: int = PARAMS["invalid_hostname_reject_code"].default_value()
    reject_code: int = PARAMS["reject_code"].default_value()
    defer_code: int = PARAMS["defer_code"].default_value()
    access_map_reject_code: int = PARAMS["access_map_reject_code"].default_value()
    access_map_defer_code: int = PARAMS["access_map_defer_code"].default_value()
    unknown_client_reject_code: int = PARAMS["unknown_client_reject_code"].default_value()
    unknown_hostname_reject_code: int = PARAMS["unknown_hostname_reject_code"].default_value()
    multi_recipient_bounce_reject_code: int = (
        PARAMS["multi_recipient_bounce_reject_code"].default_value()
    )
    plaintext_reject_code: int = PARAMS["plaintext_reject_code"].default_value()
    maps_rbl_reject_code: int = PARAMS["maps_rbl_reject_code"].default_value()
    default_rbl_reply: str = PARAMS["default_rbl_reply"].default_value()
    rbl_reply_maps: tuple[str, ...] = ()
    relay_clientcerts: tuple[str, ...] = ()
    smtpd_tls_ask_ccert: bool = PARAMS["smtpd_tls_ask_ccert"].default_value()
    smtpd_policy_service_default_action: str = (
        PARAMS["smtpd_policy_service_default_action"].default_value()
    )
    smtpd_policy_service_policy_context: str = ""
    soft_bounce: bool = PARAMS["soft_bounce"].default_value()
    # trivial-rewrite's resolve step: the restrictions see the resolved destination
    allow_percent_hack: bool = PARAMS["allow_percent_hack"].default_value()
    swap_bangpath: bool = PARAMS["swap_bangpath"].default_value()

    @classmethod
    def from_config(cls, cfg: ParamSource) -> RejectCodes:
        values = {name: cfg[PARAMS[name]] for name in cls.__dataclass_fields__}
        values["rbl_reply_maps"] = tuple(values["rbl_reply_maps"])
        values["relay_clientcerts"] = tuple(values["relay_clientcerts"])
        return cls(**values)


@dataclass(frozen=True)
class RestrictionCall:
    """One element of a parsed list: a restriction or modifier, with its argument."""

    name: str
    arg: str | None = None


Action = Literal["permit", "dunno", "reject", "defer"]


@dataclass
class Decision:
    """The result: ``action`` permit/dunno (accepted) or reject/defer with ``reply``.

    ``sleeps``: the ``sleep`` seconds met before the decision (the shell sleeps).
    ``warnings``: replies that ``warn_if_reject`` turned into log-only
    ``reject_warning`` lines. ``notes``: access(5) actions with side effects
    (``HOLD``, ``DISCARD``, ``WARN``, ``INFO``, ``FILTER``, ``REDIRECT``, ``PREPEND``,
    ``BCC``) as (ACTION, text). ``restriction``/``stage``: what decided, for the log.
    ``alerts``: configuration warnings met on the way, for smtpd's log as ``warning:``
    lines (``check_ccert_access is requested, but "smtpd_tls_ask_ccert = no"``).
    ``whatsup``: the notes as smtpd logs them, (ACTION, ``<subject>: Recipient address
    triggers HOLD action``…), as smtpd_check's log_whatsup (PREPEND is not logged).
    """

    action: Action
    reply: Reply | None = None
    sleeps: list[float] = field(default_factory=list)
    warnings: list[Reply] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    restriction: str | None = None
    stage: Stage | None = None
    alerts: list[str] = field(default_factory=list)
    whatsup: list[tuple[str, str]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.action in ("permit", "dunno")


# --- internal results ------------------------------------------------------------------


class Verdict(enum.Enum):
    PERMIT = "permit"
    DUNNO = "dunno"
    REJECT = "reject"
    DEFER = "defer"
    DEFER_IF_PERMIT = "defer_if_permit"
    DEFER_IF_REJECT = "defer_if_reject"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reply: Reply | None = None


PERMIT = Outcome(Verdict.PERMIT)
DUNNO = Outcome(Verdict.DUNNO)


@dataclass
class _Run:
    """What accumulates over one evaluation (several lists)."""

    sleeps: list[float] = field(default_factory=list)
    warnings: list[Reply] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    whatsup: list[tuple[str, str]] = field(default_factory=list)
    defer_if_permit: Reply | None = None
    defer_if_reject: Reply | None = None
    decided_by: str | None = None
    alerts: list[str] = field(default_factory=list)


@dataclass
class Ctx:
    state: SmtpdState
    codes: RejectCodes
    stage: Stage  # the list being evaluated
    run: _Run
    depth: int = 0  # > 0 inside an access(5) action naming a restriction
    classes: Mapping[str, Sequence[RestrictionCall]] = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------


def _client_subject(state: SmtpdState) -> str:
    return f"{state.client_name or 'unknown'}[{state.client_address}]"


def _subject(ctx: Ctx) -> str:
    """What a reply about the current list puts in angle brackets."""
    s, stage = ctx.state, ctx.stage
    if stage is Stage.CLIENT:
        return _client_subject(s)
    if stage is Stage.HELO:
        return s.helo_name or ""
    if stage is Stage.SENDER:
        return s.sender or ""
    if stage in (Stage.RECIPIENT, Stage.RELAY):
        return s.recipient or ""
    if stage is Stage.DATA:
        return "DATA"
    if stage is Stage.END_OF_DATA:
        return "END-OF-MESSAGE"
    return s.etrn_domain or "ETRN"


def _negative(code: int) -> Verdict:
    return Verdict.REJECT if code >= 500 else Verdict.DEFER


def _resolved(ctx: Ctx, address: str) -> Steps[Address]:
    """``address`` as trivial-rewrite resolves it (``rewrite.address.resolve_routing``:
    ``user%remote@local`` -> ``user@remote``), asking the address class of each domain."""
    current = address
    for _ in range(MAX_ROUTING_STEPS):
        parsed = parse_address(current)
        if parsed.is_null:
            break
        if parsed.domain is not None:
            cls = yield from ask_address_class(parsed.domain)
            if cls is not AddressClass.LOCAL:
                break
        nxt = routing_step(parsed.localpart, percent_hack=ctx.codes.allow_percent_hack,
                           swap_bangpath=ctx.codes.swap_bangpath)
        if nxt is None:
            break
        current = nxt
    return parse_address(current)


def _authorized_destination(ctx: Ctx, recipient: str) -> Steps[bool | None]:
    """reject_unauth_destination's test on the resolved recipient: our domain (any class
    but default), no routing left; None when a domain list's table failed (Postfix:
    451 4.3.0, never accept)."""
    parsed = yield from _resolved(ctx, recipient)
    cls = yield from ask_address_class(parsed.domain or "")
    if isinstance(cls, TableFailed):
        return None
    return cls.is_authorized and not has_sender_routing(parsed.localpart)


def _lookup_failed(recipient: str) -> Outcome:
    """A domain list's table could not answer for ``recipient``: 451 4.3.0."""
    return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(recipient))


# --- the restrictions ------------------------------------------------------------------


def r_permit(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT


def r_dunno(ctx: Ctx, arg: str | None) -> Outcome:
    return DUNNO


def r_reject(ctx: Ctx, arg: str | None) -> Outcome:
    code = ctx.codes.reject_code
    return Outcome(_negative(code),
                   replies.access_denied(code, ctx.stage.reply_class, _subject(ctx)))


def r_defer(ctx: Ctx, arg: str | None) -> Outcome:
    return Outcome(Verdict.DEFER, replies.try_again_later(ctx.codes.defer_code,
                                                          ctx.stage.reply_class, _subject(ctx)))


def r_defer_if_permit(ctx: Ctx, arg: str | None) -> Outcome:
    reply = replies.defer_requested(ctx.codes.defer_code, ctx.stage.reply_class, _subject(ctx),
                                    "defer_if_permit")
    return Outcome(Verdict.DEFER_IF_PERMIT, reply)


def r_defer_if_reject(ctx: Ctx, arg: str | None) -> Outcome:
    reply = replies.defer_requested(ctx.codes.defer_code, ctx.stage.reply_class, _subject(ctx),
                                    "defer_if_reject")
    return Outcome(Verdict.DEFER_IF_REJECT, reply)


def r_permit_mynetworks(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    inside = yield from ask_mynetworks(ctx.state.client_address)
    if isinstance(inside, TableFailed):  # a bad entry or a failed table: Postfix tempfails
        return Outcome(Verdict.DEFER,
                       replies.temporary_lookup_failure(_client_subject(ctx.state)))
    return PERMIT if inside else DUNNO


def r_permit_sasl_authenticated(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT if ctx.state.sasl_username else DUNNO


def _auth_sender_login_mismatch(ctx: Ctx, *, allow_unknown: bool) -> Steps[Outcome]:
    """An authenticated client's sender must be owned by its login (smtpd_sender_login_maps);
    ``allow_unknown``: a sender in no map passes."""
    sender, login = ctx.state.sender, ctx.state.sasl_username
    if not sender or not login:
        return DUNNO
    owners = yield from ask_sender_logins(sender)
    if isinstance(owners, TableFailed):
        return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(sender))
    if owners is None or (allow_unknown and not owners):
        return DUNNO
    if any(login.casefold() == owner.casefold() for owner in owners):
        return DUNNO
    return Outcome(Verdict.REJECT, replies.sender_not_owned(sender, login))


def _unauth_sender_login_mismatch(ctx: Ctx) -> Steps[Outcome]:
    """A sender that some login owns needs an authenticated client."""
    sender = ctx.state.sender
    if not sender or ctx.state.sasl_username:
        return DUNNO
    owners = yield from ask_sender_logins(sender)
    if isinstance(owners, TableFailed):
        return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(sender))
    if owners:
        return Outcome(Verdict.REJECT, replies.sender_not_logged_in(sender))
    return DUNNO


def r_reject_sender_login_mismatch(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    if ctx.state.sasl_username:
        return (yield from _auth_sender_login_mismatch(ctx, allow_unknown=False))
    return (yield from _unauth_sender_login_mismatch(ctx))


def r_reject_known_sender_login_mismatch(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    if ctx.state.sasl_username:
        return (yield from _auth_sender_login_mismatch(ctx, allow_unknown=True))
    return (yield from _unauth_sender_login_mismatch(ctx))


def r_reject_authenticated_sender_login_mismatch(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return (yield from _auth_sender_login_mismatch(ctx, allow_unknown=False))


def r_reject_unauthenticated_sender_login_mismatch(
    ctx: Ctx, arg: str | None
) -> Steps[Outcome]:
    return (yield from _unauth_sender_login_mismatch(ctx))


def r_permit_auth_destination(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None:
        return DUNNO
    authorized = yield from _authorized_destination(ctx, rcpt)
    if authorized is None:
        return _lookup_failed(rcpt)
    return PERMIT if authorized else DUNNO


def r_reject_unauth_destination(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None:
        return DUNNO
    authorized = yield from _authorized_destination(ctx, rcpt)
    if authorized is None:
        return _lookup_failed(rcpt)
    if authorized:
        return DUNNO
    code = ctx.codes.relay_domains_reject_code
    return Outcome(_negative(code), replies.relay_denied(rcpt, code))


def r_defer_unauth_destination(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None:
        return DUNNO
    authorized = yield from _authorized_destination(ctx, rcpt)
    if authorized is None:
        return _lookup_failed(rcpt)
    if authorized:
        return DUNNO
    return Outcome(Verdict.DEFER, replies.relay_denied(rcpt, 454))


def _unlisted(ctx: Ctx, address: str | None, what: ReplyClass) -> Steps[Outcome]:
    if not address:
        return DUNNO
    resolved = yield from _resolved(ctx, address)
    # the lookups are of the resolved address; the replies name the address as sent
    target = address
    if resolved.internal() != parse_address(address).internal():
        target = resolved.external()
    cls = yield from ask_address_class(resolved.domain or "")
    if isinstance(cls, TableFailed):
        return _lookup_failed(address)
    if cls is not AddressClass.VIRTUAL_ALIAS:  # its own reply below, as Postfix's
        # an address that resolves to the error (retry) transport is known to be
        # undeliverable (not deliverable now), as Postfix's check_rcpt_maps: refused now
        # (550; 450) rather than accepted, then bounced or deferred
        route = yield from ask_route(target)
        if isinstance(route, TableFailed):
            return _lookup_failed(address)
        if route is not None and route.transport in ERROR_TRANSPORTS:
            reply = replies.error_transport(address, route.transport, route.nexthop, what)
            return Outcome(_negative(reply.code), reply)
    if cls is AddressClass.RELAY:
        listed = yield from ask_relay_recipient(target)
        if listed:
            return DUNNO
        if listed is None:
            return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(address))
        code = ctx.codes.unknown_relay_recipient_reject_code
        return Outcome(_negative(code), replies.user_unknown(address, code, what, "relay"))
    if cls not in (AddressClass.LOCAL, AddressClass.VIRTUAL_ALIAS):
        return DUNNO  # virtual mailbox tables: not supported yet
    # the facts answer from the canonical and virtual alias maps first, then (local
    # class) local_recipient_maps, as Postfix's check_rcpt_maps
    known = yield from ask_local_recipient(target)
    if known:
        return DUNNO
    if known is None:
        return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(address))
    if cls is AddressClass.VIRTUAL_ALIAS:
        code = ctx.codes.unknown_virtual_alias_reject_code
        return Outcome(_negative(code), replies.user_unknown_virtual_alias(address, code, what))
    code = ctx.codes.unknown_local_recipient_reject_code
    return Outcome(_negative(code), replies.user_unknown(address, code, what))


def r_reject_unlisted_recipient(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return (yield from _unlisted(ctx, ctx.state.recipient, ReplyClass.RECIPIENT))


def r_reject_unlisted_sender(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return (yield from _unlisted(ctx, ctx.state.sender, ReplyClass.SENDER))


def _unknown_domain(ctx: Ctx, address: str | None, what: ReplyClass) -> Steps[Outcome]:
    if not address:
        return DUNNO
    parsed = parse_address(address)
    if not parsed.domain or parsed.is_literal:
        return DUNNO
    cls = yield from ask_address_class(parsed.domain)
    if isinstance(cls, TableFailed):
        return _lookup_failed(address)
    if cls.is_final:
        return DUNNO
    result = yield from ask_domain_dns(fold_domain(parsed.domain))
    if result is DnsResult.HAS_ADDRESS:
        return DUNNO
    if result is DnsResult.TEMP_FAIL:  # unknown_address_tempfail_action = defer_if_permit
        return Outcome(Verdict.DEFER_IF_PERMIT,
                       replies.unknown_domain(address, ctx.codes.defer_code, what))
    code = ctx.codes.unknown_address_reject_code
    return Outcome(_negative(code), replies.unknown_domain(address, code, what))


def r_reject_unknown_sender_domain(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return (yield from _unknown_domain(ctx, ctx.state.sender, ReplyClass.SENDER))


def r_reject_unknown_recipient_domain(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return (yield from _unknown_domain(ctx, ctx.state.recipient, ReplyClass.RECIPIENT))


def _non_fqdn(ctx: Ctx, address: str | None, what: ReplyClass) -> Outcome:
    if not address or is_fqdn(parse_address(address).domain):
        return DUNNO
    code = ctx.codes.non_fqdn_reject_code
    return Outcome(_negative(code), replies.non_fqdn_address(address, code, what))


def r_reject_non_fqdn_sender(ctx: Ctx, arg: str | None) -> Outcome:
    return _non_fqdn(ctx, ctx.state.sender, ReplyClass.SENDER)


def r_reject_non_fqdn_recipient(ctx: Ctx, arg: str | None) -> Outcome:
    return _non_fqdn(ctx, ctx.state.recipient, ReplyClass.RECIPIENT)


def _helo_problem(ctx: Ctx, helo: str, problem: HostnameProblem | None) -> Outcome:
    """The refusal for a HELO name's problem; a bad address literal is answered with
    invalid_hostname_reject_code whichever restriction found it, as Postfix does."""
    if problem is None:
        return DUNNO
    if problem is HostnameProblem.INVALID_IP_ADDRESS:
        code = ctx.codes.invalid_hostname_reject_code
        return Outcome(_negative(code), replies.invalid_helo_address(helo, code))
    if problem is HostnameProblem.NOT_FQDN:
        code = ctx.codes.non_fqdn_reject_code
        return Outcome(_negative(code), replies.non_fqdn_helo(helo, code))
    code = ctx.codes.invalid_hostname_reject_code
    return Outcome(_negative(code), replies.invalid_helo(helo, code))


def r_reject_non_fqdn_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None:
        return DUNNO
    return _helo_problem(ctx, helo, non_fqdn_hostname_problem(helo))


def r_reject_invalid_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None:
        return DUNNO
    return _helo_problem(ctx, helo, invalid_hostname_problem(helo))


def r_reject_unknown_helo_hostname(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    helo = ctx.state.helo_name
    if helo is None or helo.startswith("["):
        return DUNNO
    result = yield from ask_domain_dns(fold_domain(helo))
    if result is DnsResult.HAS_ADDRESS:
        return DUNNO
    if result is DnsResult.TEMP_FAIL:
        return Outcome(Verdict.DEFER_IF_PERMIT,
                       replies.unknown_helo_hostname(helo, ctx.codes.defer_code))
    code = ctx.codes.unknown_hostname_reject_code
    return Outcome(_negative(code), replies.unknown_helo_hostname(helo, code))


def _unknown_client(ctx: Ctx, name: str, *, reverse: bool) -> Outcome:
    if name and name != "unknown":
        return DUNNO
    code = ctx.codes.unknown_client_reject_code
    return Outcome(_negative(code),
                   replies.unknown_client(ctx.state.client_address, code, reverse=reverse))


def r_reject_unknown_client_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_client(ctx, ctx.state.client_name, reverse=False)


def r_reject_unknown_reverse_client_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_client(ctx, ctx.state.reverse_client_name, reverse=True)


def r_reject_unauth_pipelining(ctx: Ctx, arg: str | None) -> Outcome:
    if not ctx.state.pipelining_violation:
        return DUNNO
    return Outcome(Verdict.REJECT, replies.unauth_pipelining(ctx.stage.reply_class,
                                                             _subject(ctx)))


# --- access(5) tables ------------------------------------------------------------------


_ACCESS_NOTES = frozenset({"HOLD", "WARN", "INFO", "FILTER", "REDIRECT", "PREPEND", "BCC"})


def _whatsup(action: str, what: ReplyClass, subject: str, text: str) -> str:
    """An access(5) action as smtpd logs it: ``<subject>: Recipient address triggers HOLD
    action`` (HOLD, DISCARD, WARN, INFO: the table's text, if any, replaces ``triggers
    ACTION action``), ``<subject>: Recipient address triggers REDIRECT addr`` (FILTER,
    REDIRECT, BCC)."""
    if action in ("FILTER", "REDIRECT", "BCC"):
        return f"<{subject}>: {what.value} triggers {action} {text}"
    return f"<{subject}>: {what.value} {text or f'triggers {action} action'}"


def _access_action(ctx: Ctx, value: str, what: ReplyClass, subject: str) -> Steps[Outcome]:
    """Interpret one access(5) right-hand side."""
    word, _, rest = value.strip().partition(" ")
    text = rest.strip()
    upper = word.upper()
    if upper in ("OK", "PERMIT") or (word.isdigit() and not text):
        return PERMIT
    if upper == "DUNNO" or not word:
        return DUNNO
    if upper in ("REJECT", "DEFER", "DEFER_IF_PERMIT", "DEFER_IF_REJECT"):
        code = {"REJECT": ctx.codes.access_map_reject_code,
                "DEFER": ctx.codes.access_map_defer_code}.get(upper, ctx.codes.defer_code)
        verdict = {"REJECT": _negative(code), "DEFER": Verdict.DEFER,
                   "DEFER_IF_PERMIT": Verdict.DEFER_IF_PERMIT,
                   "DEFER_IF_REJECT": Verdict.DEFER_IF_REJECT}[upper]
        return Outcome(verdict, replies.access_text(code, what, subject, text or "Access denied"))
    if len(word) == 3 and word.isdigit() and word[0] in "45":
        code = int(word)
        return Outcome(_negative(code),
                       replies.access_text(code, what, subject, text or "Access denied"))
    if upper == "DISCARD":
        ctx.run.notes.append((upper, text))
        ctx.run.whatsup.append((upper, _whatsup(upper, what, subject, text)))
        return PERMIT
    if upper in _ACCESS_NOTES:
        ctx.run.notes.append((upper, text))
        if upper != "PREPEND":
            ctx.run.whatsup.append((upper, _whatsup(upper, what, subject, text)))
        return DUNNO
    if word in ctx.classes and not text:
        return (yield from _run_class(ctx, word))
    row = RESTRICTIONS.get(word.lower())
    if (row is not None and not row.needs.table and row.needs.argument is None and not text
            and ctx.depth == 0):
        ctx.depth += 1
        try:
            return (yield from _check(row, ctx, None))
        finally:
            ctx.depth -= 1
    # Postfix answers an access table it cannot understand with a configuration error.
    return Outcome(Verdict.DEFER, replies.SERVER_CONFIGURATION_ERROR)


def _access(ctx: Ctx, table: str | None, lookups: Sequence[tuple[Subject, str]],
            what: ReplyClass, subject: str) -> Steps[Outcome]:
    """Search ``table`` for each (kind, text) in turn (the keys of each: tables.search);
    the first found decides. A table that fails tempfails (451 4.3.0)."""
    if not table:
        return DUNNO
    for kind, text in lookups:
        value = yield from ask_table(table, text, kind)
        if isinstance(value, TableFailed):
            return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(subject))
        if value is not None:
            return (yield from _access_action(ctx, value, what, subject))
    return DUNNO


def _client_lookups(name: str, address: str) -> list[tuple[Subject, str]]:
    """check_client_access's order: the name and its parents, then the address and its
    prefixes (access(5) "HOST NAME/ADDRESS PATTERNS")."""
    return [(Subject.HOSTNAME, name), (Subject.CLIENT_ADDRESS, address)]


def r_check_client_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    s = ctx.state
    return (yield from _access(ctx, arg, _client_lookups(s.client_name, s.client_address),
                               ReplyClass.CLIENT, _client_subject(s)))


def r_check_reverse_client_hostname_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    s = ctx.state
    return (yield from _access(ctx, arg,
                               _client_lookups(s.reverse_client_name, s.client_address),
                               ReplyClass.CLIENT, _client_subject(s)))


def r_check_helo_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    helo = ctx.state.helo_name
    if helo is None:
        return DUNNO
    return (yield from _access(ctx, arg, [(Subject.HOSTNAME, helo)], ReplyClass.HELO, helo))


def r_check_sender_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    sender = ctx.state.sender
    if sender is None:
        return DUNNO
    return (yield from _access(ctx, arg, [(Subject.ADDRESS, sender)], ReplyClass.SENDER,
                               sender))


def r_check_recipient_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None:
        return DUNNO
    return (yield from _access(ctx, arg, [(Subject.ADDRESS, rcpt)], ReplyClass.RECIPIENT,
                               rcpt))


# --- access by DNS servers: check_*_{a,mx,ns}_access ------------------------------------


def _domain_of(address: str | None) -> str | None:
    if not address:
        return None
    return parse_address(address).domain or None


def _server_access(ctx: Ctx, table: str | None, domain: str | None, rdtype: str,
                   what: ReplyClass, subject: str) -> Steps[Outcome]:
    """check_*_{a,mx,ns}_access: the ``rdtype`` hosts of ``domain`` (A: the domain itself;
    MX: the domain itself when it has no MX; NS: the nearest parent that has some), each
    host's name (not for A) then its addresses, searched in ``table``. A DNS failure or
    a null MX applies no restriction; ``OK`` is not allowed (it counts as DUNNO)."""
    if not table or not domain:
        return DUNNO
    if domain.startswith("[") and domain.endswith("]"):
        bare = domain[1:-1]
        bare = bare[5:] if bare.lower().startswith("ipv6:") else bare
        return (yield from _server_value(ctx, table, Subject.CLIENT_ADDRESS, bare, what,
                                         subject))
    name = fold_domain(domain)
    if rdtype == "A":
        hosts: tuple[str, ...] = (name,)
    else:
        found = yield from ask_dns_records(name, rdtype)
        if rdtype == "NS":
            while found == () and "." in name:
                name = name.partition(".")[2]
                found = yield from ask_dns_records(name, rdtype)
        if found == () and rdtype == "MX":
            found = (name,)
        if not isinstance(found, tuple) or not found or found == (".",):
            return DUNNO
        hosts = found
    for host in hosts:
        if _is_ip(host):
            out = yield from _server_value(ctx, table, Subject.CLIENT_ADDRESS, host, what,
                                           subject)
            if out is not _NOT_FOUND:
                return out
            continue
        if rdtype != "A":
            out = yield from _server_value(ctx, table, Subject.HOSTNAME, host, what, subject)
            if out is not _NOT_FOUND:
                return out
        for family in ("A", "AAAA"):
            addrs = yield from ask_dns_records(host, family)
            for addr in addrs if isinstance(addrs, tuple) else ():
                out = yield from _server_value(ctx, table, Subject.CLIENT_ADDRESS, addr, what,
                                               subject)
                if out is not _NOT_FOUND:
                    return out
    return DUNNO


_NOT_FOUND = Outcome(Verdict.DUNNO, None)  # identity-compared: "no key matched"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _server_value(ctx: Ctx, table: str, kind: Subject, key: str, what: ReplyClass,
                  subject: str) -> Steps[Outcome]:
    value = yield from ask_table(table, key, kind)
    if value is None:
        return _NOT_FOUND
    if isinstance(value, TableFailed):
        return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(subject))
    word = value.strip().partition(" ")[0]
    if word.upper() in ("OK", "PERMIT") or (word.isdigit() and len(word) != 3):
        return DUNNO  # "OK is not allowed for safety reasons" (postconf(5))
    out = yield from _access_action(ctx, value, what, subject)
    return DUNNO if out.verdict is Verdict.PERMIT else out


def _client_domain(ctx: Ctx) -> str | None:
    name = ctx.state.client_name
    return None if not name or name == "unknown" else name


def _helo_domain(ctx: Ctx) -> str | None:
    return ctx.state.helo_name or None


def _server_row(rdtype: str, part: Stage) -> Check:
    """The check of check_<part>_<rdtype>_access."""
    def check(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
        s = ctx.state
        if part is Stage.CLIENT:
            domain, what, subject = _client_domain(ctx), ReplyClass.CLIENT, _client_subject(s)
        elif part is Stage.HELO:
            domain, what, subject = _helo_domain(ctx), ReplyClass.HELO, s.helo_name or ""
        elif part is Stage.SENDER:
            domain, what, subject = _domain_of(s.sender), ReplyClass.SENDER, s.sender or ""
        else:
            domain = _domain_of(s.recipient)
            what, subject = ReplyClass.RECIPIENT, s.recipient or ""
        return (yield from _server_access(ctx, arg, domain, rdtype, what, subject))
    return check


# --- DNS block and allow lists ----------------------------------------------------------


def split_dnsxl(arg: str) -> tuple[str, str | None]:
    """``domain[=filter]`` as (domain, filter or None)."""
    domain, eq, pattern = arg.partition("=")
    return domain, (pattern if eq else None)


def _octet_matches(pattern: str, value: int) -> bool:
    if pattern.startswith("[") and pattern.endswith("]"):
        for part in pattern[1:-1].split(";"):
            low, dots, high = part.partition("..")
            if dots and low.isdigit() and high.isdigit():
                if int(low) <= value <= int(high):
                    return True
            elif part.isdigit() and int(part) == value:
                return True
        return False
    return pattern.isdigit() and int(pattern) == value


def dnsxl_filter_matches(pattern: str, address: str) -> bool:
    """Does an A record of a DNS list match ``=filter`` (``127.0.0.2``,
    ``127.0.0.[2..11;15]``: each octet a number, or a bracketed set of numbers and
    ranges; postconf(5) reject_rbl_client)?"""
    octets = re.findall(r"\[[^\]]*\]|[^.]+", pattern)
    values = address.split(".")
    if len(octets) != 4 or len(values) != 4 or not all(v.isdigit() for v in values):
        return False
    return all(_octet_matches(p, int(v)) for p, v in zip(octets, values, strict=True))


def valid_dnsxl(arg: str) -> bool:
    """Is ``arg`` a usable ``domain[=filter]``?"""
    domain, pattern = split_dnsxl(arg)
    if not domain or not re.fullmatch(r"[A-Za-z0-9_.-]+", domain):
        return False
    if pattern is None:
        return True
    return bool(re.fullmatch(r"(\d+|\[[\d.;]+\])(\.(\d+|\[[\d.;]+\])){3}", pattern))


def _reversed_address(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    pointer = ip.reverse_pointer
    return pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa


#: How a listed thing is named in the reply ($rbl_class).
_RBL_CLASS_REVERSE = "Unverified Client host"


def _dnsxl_listed(query: str, pattern: str | None) -> Steps[tuple[str, ...] | None]:
    """The A records of ``query`` that pass the filter (None: not listed, or no
    definitive DNS answer: a list that does not answer blocks nobody)."""
    found = yield from ask_dns_records(query, "A")
    if not isinstance(found, tuple) or not found:
        return None
    hits = tuple(a for a in found if pattern is None or dnsxl_filter_matches(pattern, a))
    return hits or None


_EXPAND = re.compile(r"\$(?:\{(\w+)(?:([?:])([^}]*))?\}|(\w+))")


def expand_rbl_template(template: str, lookup: Callable[[str], str]) -> str:
    """``$name``, ``${name}``, ``${name?text}`` (text when set) and ``${name:text}``
    (text when unset) of a reply template, as Postfix expands ``default_rbl_reply``;
    ``lookup(name)`` gives a value ("" for unknown names)."""
    def one(m: re.Match[str]) -> str:
        value = lookup(m.group(1) or m.group(4))
        if m.group(2) == "?":
            return expand_rbl_template(m.group(3), lookup) if value else ""
        if m.group(2) == ":":
            return "" if value else expand_rbl_template(m.group(3), lookup)
        return value
    return _EXPAND.sub(one, template)


#: The session attributes a reply template may name (read only when named).
_TEMPLATE_STATE: Mapping[str, Callable[[SmtpdState], str]] = {
    "client_address": lambda s: s.client_address, "client_name": lambda s: s.client_name,
    "reverse_client_name": lambda s: s.reverse_client_name,
    "helo_name": lambda s: s.helo_name or "", "sender": lambda s: s.sender or "",
    "recipient": lambda s: s.recipient or "",
}


def _rbl_reject(ctx: Ctx, domain: str, what: str, rbl_class: str, query: str
                ) -> Steps[Outcome]:
    txt = yield from ask_dns_records(query, "TXT")
    reason = " / ".join(txt)[:500] if isinstance(txt, tuple) else ""
    template: str | None = None
    for table in ctx.codes.rbl_reply_maps:
        value = yield from ask_table(table, domain)
        if isinstance(value, TableFailed):
            return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(what))
        if value is not None:
            template = value
            break
    rbl = {"rbl_code": str(ctx.codes.maps_rbl_reject_code), "rbl_domain": domain,
           "rbl_reason": reason, "rbl_txt": reason, "rbl_what": what, "rbl_class": rbl_class}

    def lookup(name: str) -> str:
        if name in rbl:
            return rbl[name]
        field_of = _TEMPLATE_STATE.get(name)
        return field_of(ctx.state) if field_of is not None else ""

    text = expand_rbl_template(template or ctx.codes.default_rbl_reply, lookup)
    reply = replies.template_reply(text, ctx.codes.maps_rbl_reject_code)
    return Outcome(_negative(reply.code), reply)


def r_reject_rbl_client(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    assert arg is not None
    domain, pattern = split_dnsxl(arg)
    reversed_ip = _reversed_address(ctx.state.client_address)
    if reversed_ip is None:
        return DUNNO
    query = f"{reversed_ip}.{domain}"
    if (yield from _dnsxl_listed(query, pattern)) is None:
        return DUNNO
    return (yield from _rbl_reject(ctx, domain, ctx.state.client_address,
                                   ReplyClass.CLIENT.value, query))


def _rhsbl_row(part: str) -> Check:
    """The check of reject_rhsbl_<part>: the domain (or host name) that ``part`` names."""
    def check(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
        assert arg is not None
        s = ctx.state
        name: str | None
        if part == "client":
            name, rbl_class = _client_domain(ctx), ReplyClass.CLIENT.value
        elif part == "reverse_client":
            rev = s.reverse_client_name
            name, rbl_class = (None if not rev or rev == "unknown" else rev), _RBL_CLASS_REVERSE
        elif part == "helo":
            name, rbl_class = s.helo_name, ReplyClass.HELO.value
        elif part == "sender":
            name, rbl_class = _domain_of(s.sender), ReplyClass.SENDER.value
        else:
            name, rbl_class = _domain_of(s.recipient), ReplyClass.RECIPIENT.value
        if not name or name.startswith("[") or _is_ip(name):
            return DUNNO
        domain, pattern = split_dnsxl(arg)
        query = f"{fold_domain(name)}.{domain}"
        if (yield from _dnsxl_listed(query, pattern)) is None:
            return DUNNO
        return (yield from _rbl_reject(ctx, domain, fold_domain(name), rbl_class, query))
    return check


def _allowlist_may_permit(ctx: Ctx) -> Steps[bool]:
    """An allow list never overrides reject_unauth_destination: in the relay and recipient
    lists it permits only mail for our own destinations (postconf(5) permit_dnswl_client)."""
    if ctx.stage not in (Stage.RELAY, Stage.RECIPIENT) or ctx.state.recipient is None:
        return True
    return bool((yield from _authorized_destination(ctx, ctx.state.recipient)))


def r_permit_dnswl_client(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    assert arg is not None
    domain, pattern = split_dnsxl(arg)
    reversed_ip = _reversed_address(ctx.state.client_address)
    if reversed_ip is None or (yield from _dnsxl_listed(f"{reversed_ip}.{domain}",
                                                        pattern)) is None:
        return DUNNO
    return PERMIT if (yield from _allowlist_may_permit(ctx)) else DUNNO


def r_permit_rhswl_client(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    assert arg is not None
    name = _client_domain(ctx)
    domain, pattern = split_dnsxl(arg)
    if name is None or (yield from _dnsxl_listed(f"{fold_domain(name)}.{domain}",
                                                 pattern)) is None:
        return DUNNO
    return PERMIT if (yield from _allowlist_may_permit(ctx)) else DUNNO


# --- the remaining restrictions ---------------------------------------------------------


def r_reject_multi_recipient_bounce(ctx: Ctx, arg: str | None) -> Outcome:
    """A null sender with more than one recipient: at RCPT, a second one; at DATA, the
    whole envelope."""
    s = ctx.state
    if s.sender != "":
        return DUNNO
    at_rcpt = ctx.stage in (Stage.RELAY, Stage.RECIPIENT) and s.stage in (Stage.RELAY,
                                                                           Stage.RECIPIENT)
    already = s.recipient_count + (1 if at_rcpt else 0)
    if already <= 1:
        return DUNNO
    code = ctx.codes.multi_recipient_bounce_reject_code
    return Outcome(_negative(code),
                   replies.multi_recipient_bounce(code, ctx.stage.reply_class, _subject(ctx)))


def r_permit_inet_interfaces(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    return PERMIT if (yield from ask_inet_interface(ctx.state.client_address)) else DUNNO


def r_reject_plaintext_session(ctx: Ctx, arg: str | None) -> Outcome:
    if ctx.state.encrypted:
        return DUNNO
    code = ctx.codes.plaintext_reject_code
    return Outcome(_negative(code), replies.plaintext_session(code))


# --- the policy service (SMTPD_POLICY_README) --------------------------------------------

_PROTOCOL_STATE = {Stage.CLIENT: "CONNECT", Stage.SENDER: "MAIL", Stage.RELAY: "RCPT",
                   Stage.RECIPIENT: "RCPT", Stage.DATA: "DATA",
                   Stage.END_OF_DATA: "END-OF-MESSAGE", Stage.ETRN: "ETRN"}


# --- client certificates (after STARTTLS) -----------------------------------------------


def _ccert_lookups(state: SmtpdState) -> list[tuple[Subject, str]]:
    """Postfix 3.7's default search order: the certificate fingerprint, then the
    public key fingerprint (each as the whole key)."""
    return [(Subject.WHOLE, fp) for fp in (state.ccert_fingerprint,
                                           state.ccert_pubkey_fingerprint) if fp]


def _ask_ccert_off(ctx: Ctx, name: str) -> None:
    """Postfix's warning when a client certificate row runs without smtpd_tls_ask_ccert."""
    if not ctx.codes.smtpd_tls_ask_ccert:
        ctx.run.alerts.append(f'{name} is requested, but "smtpd_tls_ask_ccert = no"')


def r_check_ccert_access(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    """access(5) by fingerprint; a certificate need not be trusted. Replies name the
    certificate's CN: ``<CN>: Client certificate rejected: …``."""
    _ask_ccert_off(ctx, "check_ccert_access")  # in plaintext too, as Postfix 3.7
    s = ctx.state
    if not s.ccert_fingerprint:
        return DUNNO
    return (yield from _access(ctx, arg, _ccert_lookups(s), ReplyClass.CCERT,
                               s.ccert_subject))


def r_permit_tls_clientcerts(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    """PERMIT when the certificate's fingerprint or public key fingerprint is a key of
    relay_clientcerts (trusted or not, as Postfix); a table that fails tempfails."""
    s = ctx.state
    if s.encrypted:
        _ask_ccert_off(ctx, "permit_tls_clientcerts")
    if not s.ccert_fingerprint:
        return DUNNO
    for _kind, fp in _ccert_lookups(s):
        for table in ctx.codes.relay_clientcerts:
            value = yield from ask_table(table, fp, Subject.WHOLE)
            if isinstance(value, TableFailed):
                return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(_subject(ctx)))
            if value is not None:
                return PERMIT
    return DUNNO


def r_permit_tls_all_clientcerts(ctx: Ctx, arg: str | None) -> Outcome:
    """PERMIT any client certificate that chained to smtpd_tls_CAfile/CApath."""
    if ctx.state.encrypted:
        _ask_ccert_off(ctx, "permit_tls_all_clientcerts")
    return PERMIT if ctx.state.ccert_trusted else DUNNO


def policy_attributes(state: SmtpdState, policy_context: str = ""
                      ) -> tuple[tuple[str, str], ...]:
    """The request a policy server receives for ``state`` (SMTPD_POLICY_README's
    attributes, in the order Postfix 3.7 sends them; ``protocol_state`` is the SMTP
    command being answered)."""
    stage = state.stage
    protocol_state = ("EHLO" if state.esmtp else "HELO") if stage is Stage.HELO \
        else _PROTOCOL_STATE[stage]
    return (
        ("request", "smtpd_access_policy"),
        ("protocol_state", protocol_state),
        ("protocol_name", "ESMTP" if state.esmtp else "SMTP"),
        ("client_address", state.client_address),
        ("client_name", state.client_name),
        ("client_port", state.client_port),
        ("reverse_client_name", state.reverse_client_name),
        ("server_address", state.server_address),
        ("server_port", state.server_port),
        ("helo_name", state.helo_name or ""),
        ("sender", state.sender or ""),
        ("recipient", state.recipient or ""),
        ("recipient_count", str(state.recipient_count)),
        ("queue_id", state.queue_id),
        ("instance", state.instance),
        ("size", str(state.size)),
        ("etrn_domain", state.etrn_domain or ""),
        ("stress", ""),
        ("sasl_method", state.sasl_method),
        ("sasl_username", state.sasl_username or ""),
        ("sasl_sender", state.sasl_sender),
        # Postfix sends the subject and issuer of a trusted certificate only.
        ("ccert_subject", state.ccert_subject if state.ccert_trusted else ""),
        ("ccert_issuer", state.ccert_issuer if state.ccert_trusted else ""),
        ("ccert_fingerprint", state.ccert_fingerprint),
        ("ccert_pubkey_fingerprint", state.ccert_pubkey_fingerprint),
        ("encryption_protocol", state.encryption_protocol),
        ("encryption_cipher", state.encryption_cipher),
        ("encryption_keysize", str(state.encryption_keysize)),
        ("policy_context", policy_context),
    )


def r_check_policy_service(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    """The policy server's ``action=`` acted on as an access(5) result; no usable answer
    gives ``smtpd_policy_service_default_action``."""
    assert arg is not None
    action = yield from ask_policy(arg, policy_attributes(
        ctx.state, ctx.codes.smtpd_policy_service_policy_context))
    if isinstance(action, TableFailed):
        action = ctx.codes.smtpd_policy_service_default_action
    return (yield from _access_action(ctx, action, ctx.stage.reply_class, _subject(ctx)))


# --- the table -------------------------------------------------------------------------

#: A restriction's check: an outcome at once, or steps that ask for facts first.
Check = Callable[[Ctx, str | None], Outcome | Steps[Outcome]]


@dataclass(frozen=True)
class Needs:
    """What a restriction needs.

    ``state``: the stage whose session data it reads (CLIENT: only what is known at
    connect; see ``STATE_FIELDS``); ``asks``: the kinds of fact it may ask for; ``dns``:
    the part of the state (HELO, SENDER, RECIPIENT) whose domain it asks the DNS about;
    ``table``: it takes a ``type:table`` argument; ``argument``: another argument it
    takes ("dnsxl": ``domain[=filter]``, "service": ``unix:…``/``inet:host:port``);
    ``sasl``: it reads the SASL login; ``whole_state``: it sends whatever the session knows
    (a policy service). A restriction named by an access(5) answer asks what its own row
    declares.
    """

    state: Stage = Stage.CLIENT
    asks: frozenset[Ask] = frozenset()
    dns: Stage | None = None
    table: bool = False
    sasl: bool = False
    argument: Literal["dnsxl", "service"] | None = None
    whole_state: bool = False


@dataclass(frozen=True)
class Restriction:
    """One restriction: its name, what it needs, whether it guards relaying, its check."""

    name: str
    check: Check
    needs: Needs = Needs()
    relay_guard: bool = False  # counts for Postfix's "no open relay" start-up check

    @property
    def stages(self) -> frozenset[Stage]:
        """The lists whose own stage knows the data this restriction reads
        (all it may run in with ``smtpd_delay_reject = no``, and in ``etrn``)."""
        return frozenset(s for s in Stage if s.rank >= self.needs.state.rank)

    def allowed_in(self, stage: Stage, *, delay_reject: bool = True) -> bool:
        """May it appear in ``stage``'s list? With ``smtpd_delay_reject = yes`` every list
        evaluated at RCPT time sees the recipient."""
        return stage in self.stages or (delay_reject and stage in DELAYED_STAGES)


_A = Ask
_CLASS = frozenset({_A.ADDRESS_CLASS})
_UNLISTED = frozenset({_A.ADDRESS_CLASS, _A.LOCAL_RECIPIENT, _A.RELAY_RECIPIENT, _A.ROUTE})
_DOMAIN_DNS = frozenset({_A.ADDRESS_CLASS, _A.DNS})
_TABLE = frozenset({_A.TABLE})
_LOGINS = frozenset({_A.SENDER_LOGINS})
_SERVER_ASKS = frozenset({_A.TABLE, _A.DNS_RECORDS})
_A_ASKS = frozenset({_A.TABLE, _A.DNS_RECORDS})
_RBL = frozenset({_A.DNS_RECORDS})  # + TABLE when rbl_reply_maps is set
_DNSWL = frozenset({_A.DNS_RECORDS, _A.ADDRESS_CLASS})
_HELO, _SENDER, _RCPT = Stage.HELO, Stage.SENDER, Stage.RECIPIENT

_ROWS = (
    Restriction("permit", r_permit),
    Restriction("dunno", r_dunno),
    Restriction("reject", r_reject, relay_guard=True),
    Restriction("defer", r_defer, relay_guard=True),
    Restriction("defer_if_permit", r_defer_if_permit, relay_guard=True),
    Restriction("defer_if_reject", r_defer_if_reject),
    Restriction("permit_mynetworks", r_permit_mynetworks,
                Needs(asks=frozenset({_A.MYNETWORKS}))),
    Restriction("permit_sasl_authenticated", r_permit_sasl_authenticated, Needs(sasl=True)),
    Restriction("reject_sender_login_mismatch", r_reject_sender_login_mismatch,
                Needs(_SENDER, _LOGINS, sasl=True)),
    Restriction("reject_known_sender_login_mismatch", r_reject_known_sender_login_mismatch,
                Needs(_SENDER, _LOGINS, sasl=True)),
    Restriction("reject_authenticated_sender_login_mismatch",
                r_reject_authenticated_sender_login_mismatch, Needs(_SENDER, _LOGINS, sasl=True)),
    Restriction("reject_unauthenticated_sender_login_mismatch",
                r_reject_unauthenticated_sender_login_mismatch,
                Needs(_SENDER, _LOGINS, sasl=True)),
    Restriction("permit_auth_destination", r_permit_auth_destination, Needs(_RCPT, _CLASS)),
    Restriction("reject_unauth_destination", r_reject_unauth_destination,
                Needs(_RCPT, _CLASS), relay_guard=True),
    Restriction("defer_unauth_destination", r_defer_unauth_destination,
                Needs(_RCPT, _CLASS), relay_guard=True),
    Restriction("reject_unlisted_recipient", r_reject_unlisted_recipient, Needs(_RCPT, _UNLISTED)),
    Restriction("check_recipient_maps", r_reject_unlisted_recipient, Needs(_RCPT, _UNLISTED)),
    Restriction("reject_unlisted_sender", r_reject_unlisted_sender, Needs(_SENDER, _UNLISTED)),
    Restriction("reject_unknown_sender_domain", r_reject_unknown_sender_domain,
                Needs(_SENDER, _DOMAIN_DNS, dns=_SENDER)),
    Restriction("reject_unknown_recipient_domain", r_reject_unknown_recipient_domain,
                Needs(_RCPT, _DOMAIN_DNS, dns=_RCPT)),
    Restriction("reject_non_fqdn_sender", r_reject_non_fqdn_sender, Needs(_SENDER)),
    Restriction("reject_non_fqdn_recipient", r_reject_non_fqdn_recipient, Needs(_RCPT)),
    Restriction("reject_non_fqdn_helo_hostname", r_reject_non_fqdn_helo_hostname, Needs(_HELO)),
    Restriction("reject_non_fqdn_hostname", r_reject_non_fqdn_helo_hostname, Needs(_HELO)),
    Restriction("reject_invalid_helo_hostname", r_reject_invalid_helo_hostname, Needs(_HELO)),
    Restriction("reject_invalid_hostname", r_reject_invalid_helo_hostname, Needs(_HELO)),
    Restriction("reject_unknown_helo_hostname", r_reject_unknown_helo_hostname,
                Needs(_HELO, frozenset({_A.DNS}), dns=_HELO)),
    Restriction("reject_unknown_hostname", r_reject_unknown_helo_hostname,
                Needs(_HELO, frozenset({_A.DNS}), dns=_HELO)),
    Restriction("reject_unknown_client_hostname", r_reject_unknown_client_hostname),
    Restriction("reject_unknown_client", r_reject_unknown_client_hostname),
    Restriction("reject_unknown_reverse_client_hostname",
                r_reject_unknown_reverse_client_hostname),
    Restriction("reject_unauth_pipelining", r_reject_unauth_pipelining),
    Restriction("check_client_access", r_check_client_access, Needs(asks=_TABLE, table=True)),
    Restriction("check_reverse_client_hostname_access", r_check_reverse_client_hostname_access,
                Needs(asks=_TABLE, table=True)),
    Restriction("check_helo_access", r_check_helo_access, Needs(_HELO, _TABLE, table=True)),
    Restriction("check_sender_access", r_check_sender_access,
                Needs(_SENDER, _TABLE, table=True)),
    Restriction("check_recipient_access", r_check_recipient_access,
                Needs(_RCPT, _TABLE, table=True)),
    *(Restriction(f"check_{part.value}_{rdtype.lower()}_access", _server_row(rdtype, part),
                  Needs(part, _SERVER_ASKS if rdtype != "A" else _A_ASKS, table=True))
      for part in (Stage.CLIENT, Stage.HELO, Stage.SENDER, Stage.RECIPIENT)
      for rdtype in ("A", "MX", "NS")),
    Restriction("reject_rbl_client", r_reject_rbl_client, Needs(asks=_RBL, argument="dnsxl")),
    Restriction("reject_rhsbl_client", _rhsbl_row("client"), Needs(asks=_RBL, argument="dnsxl")),
    Restriction("reject_rhsbl_reverse_client", _rhsbl_row("reverse_client"),
                Needs(asks=_RBL, argument="dnsxl")),
    Restriction("reject_rhsbl_helo", _rhsbl_row("helo"), Needs(_HELO, _RBL, argument="dnsxl")),
    Restriction("reject_rhsbl_sender", _rhsbl_row("sender"),
                Needs(_SENDER, _RBL, argument="dnsxl")),
    Restriction("reject_rhsbl_recipient", _rhsbl_row("recipient"),
                Needs(_RCPT, _RBL, argument="dnsxl")),
    Restriction("permit_dnswl_client", r_permit_dnswl_client,
                Needs(asks=_DNSWL, argument="dnsxl")),
    Restriction("permit_rhswl_client", r_permit_rhswl_client,
                Needs(asks=_DNSWL, argument="dnsxl")),
    Restriction("reject_multi_recipient_bounce", r_reject_multi_recipient_bounce,
                Needs(_SENDER)),
    Restriction("permit_inet_interfaces", r_permit_inet_interfaces,
                Needs(asks=frozenset({_A.INTERFACE}))),
    Restriction("reject_plaintext_session", r_reject_plaintext_session),
    Restriction("check_ccert_access", r_check_ccert_access, Needs(asks=_TABLE, table=True)),
    # Asks relay_clientcerts' tables (RejectCodes) when set, as rbl_reply_maps.
    Restriction("permit_tls_clientcerts", r_permit_tls_clientcerts),
    Restriction("permit_tls_all_clientcerts", r_permit_tls_all_clientcerts),
    Restriction("check_policy_service", r_check_policy_service,
                Needs(asks=frozenset({_A.POLICY}), sasl=True, argument="service",
                      whole_state=True)),
)

#: Restrictions Postfix documents that postier refuses at start, and why.
NOT_BUILT: Mapping[str, str] = {
    "reject_unverified_sender": "address verification (verify(8)) is not built",
    "reject_unverified_recipient": "address verification (verify(8)) is not built",
    "check_sasl_access": "SASL login access tables are not built",
}

#: Every restriction postier knows, by name: the one table.
RESTRICTIONS: Mapping[str, Restriction] = {row.name: row for row in _ROWS}

#: Not restrictions: ``sleep`` takes the next element (seconds); ``warn_if_reject``
#: changes the next restriction.
MODIFIERS = ("sleep", "warn_if_reject")

RELAY_GUARD_MESSAGE = (
    "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at "
    "least one working instance of: reject_unauth_destination, defer_unauth_destination, "
    "reject, defer, defer_if_permit or check_relay_domains"
)

#: Applied after the relay list when neither list guards relaying (never an open relay).
_IMPLICIT_RELAY_GUARD = (
    RestrictionCall("permit_mynetworks"), RestrictionCall("permit_sasl_authenticated"),
    RestrictionCall("reject_unauth_destination"),
)


def _check(row: Restriction, ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    """Run one row's check, asking what it asks."""
    result = row.check(ctx, arg)
    if isinstance(result, Outcome):
        return result
    return (yield from result)


# --- configuration time -----------------------------------------------------------------


def _words(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += item.replace(",", " ").split()
    return out


def _valid_table(arg: str) -> bool:
    kind, colon, name = arg.partition(":")
    return bool(colon and name and kind[:1].isalpha()
                and kind.replace("_", "").replace("-", "").isalnum())


def _valid_service(arg: str) -> bool:
    kind, colon, where = arg.partition(":")
    if kind == "unix":
        return bool(where)
    if kind == "inet":
        _host, colon, port = where.rpartition(":")
        return bool(colon and port)
    return False


def parse_restrictions(
    items: Sequence[str], *, stage: Stage, delay_reject: bool = True,
    classes: Collection[str] = (),
) -> list[RestrictionCall]:
    """Validate a restriction list against the rows, at configuration time.

    ``items`` are the list's elements (``Config.get_list``); an element holding
    whitespace (``"sleep 1"``) is split. A ValueError names the culprit: an
    unknown restriction, a missing or bad argument, ``warn_if_reject`` with
    nothing to modify, or a restriction not allowed in ``stage`` (its data is not
    known there: ``etrn``, or any list with ``smtpd_delay_reject = no``), a restriction
    postier does not build (``NOT_BUILT``). A name in ``classes``
    (smtpd_restriction_classes) is a call of that class's list.
    """
    words = _words(items)
    calls: list[RestrictionCall] = []
    i = 0
    while i < len(words):
        word = words[i]
        name = word.lower()
        i += 1
        if name == "sleep":
            if i >= len(words) or not words[i].isdigit():
                got = words[i] if i < len(words) else "nothing"
                raise ValueError(f'restriction "sleep" needs a number of seconds, not {got}')
            calls.append(RestrictionCall(name, words[i]))
            i += 1
            continue
        if name == "warn_if_reject":
            if i >= len(words) or words[i].lower() in MODIFIERS:
                raise ValueError('restriction "warn_if_reject" must be followed by a restriction')
            calls.append(RestrictionCall(name))
            continue
        row = RESTRICTIONS.get(name)
        if row is None and word in classes:
            calls.append(RestrictionCall(word))
            continue
        if row is None and name in NOT_BUILT:
            raise ValueError(f'restriction "{word}" is not available: {NOT_BUILT[name]}')
        if row is None:
            raise ValueError(f'unknown smtpd restriction: "{word}"')
        arg = None
        if row.needs.argument is not None:
            valid = valid_dnsxl if row.needs.argument == "dnsxl" else _valid_service
            if i >= len(words) or not valid(words[i]):
                got = words[i] if i < len(words) else "nothing"
                wanted = ("a domain[=filter] argument" if row.needs.argument == "dnsxl"
                          else "a unix:/path or inet:host:port argument")
                raise ValueError(f'restriction "{name}" needs {wanted}, not {got}')
            arg = words[i]
            i += 1
        if row.needs.table:
            if i >= len(words) or not _valid_table(words[i]):
                got = words[i] if i < len(words) else "nothing"
                raise ValueError(f'restriction "{name}" needs a type:table argument, not {got}')
            arg = words[i]
            i += 1
        if not row.allowed_in(stage, delay_reject=delay_reject and stage is not Stage.ETRN):
            raise ValueError(
                f'restriction "{name}" needs the {row.needs.state.value} and cannot be used in '
                f"the {stage.value} restrictions"
                + ("" if stage is Stage.ETRN else " with smtpd_delay_reject = no")
            )
        calls.append(RestrictionCall(name, arg))
    return calls


def _as_calls(
    items: Sequence[RestrictionCall] | Sequence[str], stage: Stage
) -> list[RestrictionCall]:
    if all(isinstance(x, RestrictionCall) for x in items):
        return [x for x in items if isinstance(x, RestrictionCall)]
    return parse_restrictions([str(x) for x in items], stage=stage)


def has_relay_protection(*lists: Sequence[RestrictionCall]) -> bool:
    """Does one of the lists hold a working relay guard (not modified by warn_if_reject)?"""
    for calls in lists:
        warned = False
        for call in calls:
            row = RESTRICTIONS.get(call.name)
            if row is not None and row.relay_guard and not warned:
                return True
            warned = call.name == "warn_if_reject"
    return False


def check_relay_protection(
    relay: Sequence[RestrictionCall], recipient: Sequence[RestrictionCall]
) -> None:
    """Postfix refuses to start as an open relay by configuration mistake; so do we."""
    if not has_relay_protection(relay, recipient):
        raise ValueError(RELAY_GUARD_MESSAGE)


# --- evaluation ------------------------------------------------------------------------


def _run_list(calls: Sequence[RestrictionCall], ctx: Ctx) -> Steps[Outcome]:
    """One list: PERMIT, REJECT, DEFER or DUNNO (fell off the end)."""
    warn_next = False
    for call in calls:
        if call.name == "sleep":
            ctx.run.sleeps.append(float(call.arg or 0))
            continue
        if call.name == "warn_if_reject":
            warn_next = True
            continue
        if call.name in ctx.classes and call.name not in RESTRICTIONS:
            out = yield from _run_class(ctx, call.name)
        else:
            out = yield from _check(RESTRICTIONS[call.name], ctx, call.arg)
        warn, warn_next = warn_next, False
        if out.verdict is Verdict.DEFER_IF_PERMIT:
            if ctx.run.defer_if_permit is None:
                ctx.run.defer_if_permit = out.reply
            continue
        if out.verdict is Verdict.DEFER_IF_REJECT:
            if ctx.run.defer_if_reject is None:
                ctx.run.defer_if_reject = out.reply
            continue
        if out.verdict in (Verdict.REJECT, Verdict.DEFER):
            assert out.reply is not None
            if warn:
                ctx.run.warnings.append(out.reply)
                continue
            ctx.run.decided_by = call.name
            if out.verdict is Verdict.REJECT and ctx.run.defer_if_reject is not None:
                return Outcome(Verdict.DEFER, ctx.run.defer_if_reject)
            return out
        if out.verdict is Verdict.PERMIT:
            ctx.run.decided_by = call.name
            return out
    return DUNNO


def _run_class(ctx: Ctx, name: str) -> Steps[Outcome]:
    """A restriction class (smtpd_restriction_classes): its list decides for it; a
    class that names itself, directly or not, is a configuration error."""
    if ctx.depth > 20:
        return Outcome(Verdict.DEFER, replies.SERVER_CONFIGURATION_ERROR)
    ctx.depth += 1
    try:
        out = yield from _run_list(ctx.classes[name], ctx)
    finally:
        ctx.depth -= 1
    return out


def _soften(reply: Reply, codes: RejectCodes) -> Reply:
    """soft_bounce: 5XX becomes 4XX (postconf(5))."""
    if not codes.soft_bounce or reply.code < 500:
        return reply
    enhanced = "4" + reply.enhanced[1:] if reply.enhanced else None
    return Reply(reply.code - 100, enhanced, reply.text)


def _finish(out: Outcome, run: _Run, codes: RejectCodes, stage: Stage | None) -> Decision:
    if out.verdict in (Verdict.REJECT, Verdict.DEFER) and out.reply is not None:
        reply = _soften(out.reply, codes)
        action: Action = "reject" if reply.code >= 500 else "defer"
        return Decision(action, reply, run.sleeps, run.warnings, run.notes, run.decided_by, stage,
                        run.alerts, run.whatsup)
    if run.defer_if_permit is not None:
        reply = _soften(run.defer_if_permit, codes)
        return Decision("defer", reply, run.sleeps, run.warnings, run.notes,
                        "defer_if_permit", stage, run.alerts, run.whatsup)
    action = "permit" if out.verdict is Verdict.PERMIT else "dunno"
    return Decision(action, None, run.sleeps, run.warnings, run.notes, run.decided_by, stage,
                    run.alerts, run.whatsup)


def evaluate_steps(
    restrictions: Sequence[RestrictionCall] | Sequence[str],
    state: SmtpdState,
    codes: RejectCodes,
    *,
    stage: Stage | None = None,
    classes: Mapping[str, Sequence[RestrictionCall]] | None = None,
) -> Steps[Decision]:
    """Evaluate one restriction list (``stage`` defaults to ``state.stage``), asking for
    facts as it goes. A pending ``defer_if_permit`` turns a permit or dunno at the end
    into a defer. ``classes``: smtpd_restriction_classes, name -> parsed list."""
    list_stage = stage or state.stage
    calls = _as_calls(restrictions, list_stage)
    run = _Run()
    out = yield from _run_list(calls, Ctx(state, codes, list_stage, run,
                                          classes=classes or {}))
    return _finish(out, run, codes, list_stage)


def evaluate_stage_steps(
    lists: Mapping[Stage, Sequence[RestrictionCall]] | Mapping[Stage, Sequence[str]],
    state: SmtpdState,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool = True,
    reject_unlisted_sender: bool = False,
    classes: Mapping[str, Sequence[RestrictionCall]] | None = None,
    delay_reject: bool = True,
) -> Steps[Decision]:
    """Every list up to ``state.stage`` with ``smtpd_delay_reject = yes`` semantics,
    asking for facts as it goes. ``delay_reject`` False (``smtpd_delay_reject = no``):
    only the stage's own list (at RECIPIENT: relay then recipient, with their implicit
    guards; at SENDER: with the implicit reject_unlisted_sender), each at its command.

    At RECIPIENT: client, helo, sender, [implicit reject_unlisted_sender],
    relay, [implicit relay guard when neither relay nor recipient list has a
    working one], recipient, [implicit reject_unlisted_recipient]. A permit ends
    only its own list; a reject or defer ends everything; a pending
    ``defer_if_permit`` defers whatever would have been accepted. Stages
    DATA/END_OF_DATA/ETRN evaluate just their own list.
    """
    run = _Run()
    parsed = {stage: _as_calls(calls, stage) for stage, calls in lists.items()}
    target = state.stage
    if target in DELAYED_STAGES and not delay_reject:
        order = [s for s in DELAYED_STAGES if s.rank == target.rank]
    elif target in DELAYED_STAGES:
        order = [s for s in DELAYED_STAGES if s.rank <= target.rank]
    else:
        order = [target]
    last = DUNNO
    planned: list[tuple[Stage, Sequence[RestrictionCall]]] = []
    for stage in order:
        planned.append((stage, parsed.get(stage, [])))
        if stage is Stage.SENDER and reject_unlisted_sender:
            planned.append((stage, [RestrictionCall("reject_unlisted_sender")]))
        if stage is Stage.RELAY and not has_relay_protection(
            parsed.get(Stage.RELAY, []), parsed.get(Stage.RECIPIENT, [])
        ):
            planned.append((stage, _IMPLICIT_RELAY_GUARD))
        if stage is Stage.RECIPIENT and reject_unlisted_recipient:
            planned.append((stage, [RestrictionCall("reject_unlisted_recipient")]))
    for stage, calls in planned:
        out = yield from _run_list(calls, Ctx(state, codes, stage, run, classes=classes or {}))
        if out.verdict in (Verdict.REJECT, Verdict.DEFER):
            return _finish(out, run, codes, stage)
        if calls:
            last = out
    return _finish(last, run, codes, order[-1] if order else None)


def evaluate(
    restrictions: Sequence[RestrictionCall] | Sequence[str],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    stage: Stage | None = None,
    classes: Mapping[str, Sequence[RestrictionCall]] | None = None,
) -> Decision:
    """``evaluate_steps`` answered by a synchronous ``facts``."""
    return run(evaluate_steps(restrictions, state, codes, stage=stage, classes=classes), facts)


def evaluate_stage(
    lists: Mapping[Stage, Sequence[RestrictionCall]] | Mapping[Stage, Sequence[str]],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool = True,
    reject_unlisted_sender: bool = False,
    classes: Mapping[str, Sequence[RestrictionCall]] | None = None,
    delay_reject: bool = True,
) -> Decision:
    """``evaluate_stage_steps`` answered by a synchronous ``facts``."""
    return run(evaluate_stage_steps(lists, state, codes,
                                    reject_unlisted_recipient=reject_unlisted_recipient,
                                    reject_unlisted_sender=reject_unlisted_sender,
                                    classes=classes, delay_reject=delay_reject), facts)


def with_stage(state: SmtpdState, stage: Stage) -> SmtpdState:
    """A copy of ``state`` for another stage."""
    return replace(state, stage=stage)
