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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from postier.config.params import PARAMS, ParamSource
from postier.dns.result import DnsResult
from postier.restrictions.lookups import Ask as Ask  # re-exported: what rows declare
from postier.restrictions.lookups import Facts as Facts  # re-exported: what answers them
from postier.restrictions.lookups import (
    Steps,
    TableFailed,
    ask_address_class,
    ask_domain_dns,
    ask_local_recipient,
    ask_mynetworks,
    ask_relay_recipient,
    ask_sender_logins,
    ask_table,
    run,
)
from postier.rewrite.address import (
    HostnameProblem,
    fold_domain,
    has_sender_routing,
    invalid_hostname_problem,
    is_fqdn,
    non_fqdn_hostname_problem,
    parse_address,
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


#: The ``SmtpdState`` fields each stage brings (what a restriction's ``Needs.state`` means).
STATE_FIELDS: Mapping[Stage, frozenset[str]] = {
    Stage.CLIENT: frozenset({"client_address", "client_name", "reverse_client_name", "esmtp",
                             "pipelining_violation"}),
    Stage.HELO: frozenset({"helo_name"}),
    Stage.SENDER: frozenset({"sender"}),
    Stage.RECIPIENT: frozenset({"recipient"}),
}


@dataclass(frozen=True)
class RejectCodes:
    """The ``*_reject_code`` parameters (main.cf names) and ``soft_bounce``."""

    unknown_local_recipient_reject_code: int = (
        PARAMS["unknown_local_recipient_reject_code"].default_value()
    )
    unknown_relay_recipient_reject_code: int = (
        PARAMS["unknown_relay_recipient_reject_code"].default_value()
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
    soft_bounce: bool = PARAMS["soft_bounce"].default_value()

    @classmethod
    def from_config(cls, cfg: ParamSource) -> RejectCodes:
        return cls(**{name: cfg[PARAMS[name]] for name in cls.__dataclass_fields__})


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
    """

    action: Action
    reply: Reply | None = None
    sleeps: list[float] = field(default_factory=list)
    warnings: list[Reply] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    restriction: str | None = None
    stage: Stage | None = None

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
    defer_if_permit: Reply | None = None
    defer_if_reject: Reply | None = None
    decided_by: str | None = None


@dataclass
class Ctx:
    state: SmtpdState
    codes: RejectCodes
    stage: Stage  # the list being evaluated
    run: _Run
    depth: int = 0  # > 0 inside an access(5) action naming a restriction


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
    return "ETRN"


def _negative(code: int) -> Verdict:
    return Verdict.REJECT if code >= 500 else Verdict.DEFER


def _authorized_destination(recipient: str) -> Steps[bool]:
    """reject_unauth_destination's test: our domain (any class but default), no routing."""
    parsed = parse_address(recipient)
    cls = yield from ask_address_class(parsed.domain or "")
    return cls.is_authorized and not has_sender_routing(parsed.localpart)


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
    authorized = yield from _authorized_destination(rcpt)
    return PERMIT if authorized else DUNNO


def r_reject_unauth_destination(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None or (yield from _authorized_destination(rcpt)):
        return DUNNO
    code = ctx.codes.relay_domains_reject_code
    return Outcome(_negative(code), replies.relay_denied(rcpt, code))


def r_defer_unauth_destination(ctx: Ctx, arg: str | None) -> Steps[Outcome]:
    rcpt = ctx.state.recipient
    if rcpt is None or (yield from _authorized_destination(rcpt)):
        return DUNNO
    return Outcome(Verdict.DEFER, replies.relay_denied(rcpt, 454))


def _unlisted(ctx: Ctx, address: str | None, what: ReplyClass) -> Steps[Outcome]:
    if not address:
        return DUNNO
    cls = yield from ask_address_class(parse_address(address).domain or "")
    if cls is AddressClass.RELAY:
        listed = yield from ask_relay_recipient(address)
        if listed:
            return DUNNO
        if listed is None:
            return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(address))
        code = ctx.codes.unknown_relay_recipient_reject_code
        return Outcome(_negative(code), replies.user_unknown(address, code, what, "relay"))
    if cls is not AddressClass.LOCAL:
        return DUNNO  # virtual recipient tables: not supported yet
    known = yield from ask_local_recipient(address)
    if known:
        return DUNNO
    if known is None:
        return Outcome(Verdict.DEFER, replies.temporary_lookup_failure(address))
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
        return PERMIT
    if upper in _ACCESS_NOTES:
        ctx.run.notes.append((upper, text))
        return DUNNO
    row = RESTRICTIONS.get(word.lower())
    if row is not None and not row.needs.table and not text and ctx.depth == 0:
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


# --- the table -------------------------------------------------------------------------

#: A restriction's check: an outcome at once, or steps that ask for facts first.
Check = Callable[[Ctx, str | None], Outcome | Steps[Outcome]]


@dataclass(frozen=True)
class Needs:
    """What a restriction needs.

    ``state``: the stage whose session data it reads (CLIENT: only what is known at
    connect; see ``STATE_FIELDS``); ``asks``: the kinds of fact it may ask for; ``dns``:
    the part of the state (HELO, SENDER, RECIPIENT) whose domain it asks the DNS about;
    ``table``: it takes a ``type:table`` argument; ``sasl``: it reads the SASL login.
    A restriction named by an access(5) answer asks what its own row declares.
    """

    state: Stage = Stage.CLIENT
    asks: frozenset[Ask] = frozenset()
    dns: Stage | None = None
    table: bool = False
    sasl: bool = False


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
_UNLISTED = frozenset({_A.ADDRESS_CLASS, _A.LOCAL_RECIPIENT, _A.RELAY_RECIPIENT})
_DOMAIN_DNS = frozenset({_A.ADDRESS_CLASS, _A.DNS})
_TABLE = frozenset({_A.TABLE})
_LOGINS = frozenset({_A.SENDER_LOGINS})
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
)

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


def parse_restrictions(
    items: Sequence[str], *, stage: Stage, delay_reject: bool = True
) -> list[RestrictionCall]:
    """Validate a restriction list against the rows, at configuration time.

    ``items`` are the list's elements (``Config.get_list``); an element holding
    whitespace (``"sleep 1"``) is split. A ValueError names the culprit: an
    unknown restriction, a missing or bad argument, ``warn_if_reject`` with
    nothing to modify, or a restriction not allowed in ``stage`` (its data is not
    known there: ``etrn``, or any list with ``smtpd_delay_reject = no``).
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
        if row is None:
            raise ValueError(f'unknown smtpd restriction: "{word}"')
        arg = None
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
        return Decision(action, reply, run.sleeps, run.warnings, run.notes, run.decided_by, stage)
    if run.defer_if_permit is not None:
        reply = _soften(run.defer_if_permit, codes)
        return Decision("defer", reply, run.sleeps, run.warnings, run.notes,
                        "defer_if_permit", stage)
    action = "permit" if out.verdict is Verdict.PERMIT else "dunno"
    return Decision(action, None, run.sleeps, run.warnings, run.notes, run.decided_by, stage)


def evaluate_steps(
    restrictions: Sequence[RestrictionCall] | Sequence[str],
    state: SmtpdState,
    codes: RejectCodes,
    *,
    stage: Stage | None = None,
) -> Steps[Decision]:
    """Evaluate one restriction list (``stage`` defaults to ``state.stage``), asking for
    facts as it goes. A pending ``defer_if_permit`` turns a permit or dunno at the end
    into a defer."""
    list_stage = stage or state.stage
    calls = _as_calls(restrictions, list_stage)
    run = _Run()
    out = yield from _run_list(calls, Ctx(state, codes, list_stage, run))
    return _finish(out, run, codes, list_stage)


def evaluate_stage_steps(
    lists: Mapping[Stage, Sequence[RestrictionCall]] | Mapping[Stage, Sequence[str]],
    state: SmtpdState,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool = True,
    reject_unlisted_sender: bool = False,
) -> Steps[Decision]:
    """Every list up to ``state.stage`` with ``smtpd_delay_reject = yes`` semantics,
    asking for facts as it goes.

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
    if target in DELAYED_STAGES:
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
        out = yield from _run_list(calls, Ctx(state, codes, stage, run))
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
) -> Decision:
    """``evaluate_steps`` answered by a synchronous ``facts``."""
    return run(evaluate_steps(restrictions, state, codes, stage=stage), facts)


def evaluate_stage(
    lists: Mapping[Stage, Sequence[RestrictionCall]] | Mapping[Stage, Sequence[str]],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool = True,
    reject_unlisted_sender: bool = False,
) -> Decision:
    """``evaluate_stage_steps`` answered by a synchronous ``facts``."""
    return run(evaluate_stage_steps(lists, state, codes,
                                    reject_unlisted_recipient=reject_unlisted_recipient,
                                    reject_unlisted_sender=reject_unlisted_sender), facts)


def with_stage(state: SmtpdState, stage: Stage) -> SmtpdState:
    """A copy of ``state`` for another stage."""
    return replace(state, stage=stage)
