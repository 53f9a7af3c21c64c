"""The smtpd restriction evaluator: a pure function from restriction lists and facts to a decision.

Follows Postfix's postconf(5) entries for each restriction and SMTPD_ACCESS_README:
a list is evaluated left to right until a restriction permits, rejects or defers; with
``smtpd_delay_reject = yes`` every list is evaluated at RCPT time, in the order
client, helo, sender, relay, recipient, and a ``permit`` ends only its own list.
Each restriction is one entry in ``RESTRICTIONS``. Facts that need I/O (DNS, tables)
come through the ``Facts`` protocol, which the shell fills in beforehand
(``dns_domains_needed`` says which domains it must resolve).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from postier.config.settings import Config
from postier.rewrite.address import is_fqdn, parse_address, valid_hostname
from postier.rewrite.resolve import AddressClass
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply

STAGES = ("client", "helo", "sender", "relay", "recipient")


class DnsResult(enum.Enum):
    HAS_ADDRESS = "has_address"
    NOT_FOUND = "not_found"
    TEMP_FAIL = "temp_fail"


class Facts(Protocol):
    def mynetworks(self, ip: str) -> bool: ...
    def address_class(self, domain: str) -> AddressClass: ...
    def is_local_recipient(self, address: str) -> bool | None: ...
    def domain_dns(self, domain: str) -> DnsResult: ...
    def lookup(self, table: str, key: str) -> str | None: ...


@dataclass(frozen=True)
class SmtpdState:
    client_address: str
    client_name: str
    reverse_client_name: str
    helo_name: str | None
    sender: str | None
    recipient: str | None
    sasl_username: str | None
    esmtp: bool
    pipelining_violation: bool
    stage: str


@dataclass(frozen=True)
class RejectCodes:
    unknown_local_recipient_reject_code: int = 550
    unknown_address_reject_code: int = 450
    relay_domains_reject_code: int = 554
    non_fqdn_reject_code: int = 504
    invalid_hostname_reject_code: int = 501
    reject_code: int = 554
    defer_code: int = 450
    access_map_reject_code: int = 554

    @classmethod
    def from_config(cls, cfg: Config) -> RejectCodes:
        return cls(**{name: cfg.get_int(name) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RestrictionCall:
    name: str
    arg: str | None = None


class Verdict(enum.Enum):
    PERMIT = "permit"
    REJECT = "reject"
    DEFER = "defer"
    DUNNO = "dunno"


@dataclass
class Decision:
    action: str  # "permit", "reject", "defer" or "dunno"
    reply: Reply | None = None
    sleeps: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ctx:
    state: SmtpdState
    facts: Facts
    codes: RejectCodes
    stage: str


Outcome = tuple[Verdict, Reply | None]
DUNNO: Outcome = (Verdict.DUNNO, None)
PERMIT: Outcome = (Verdict.PERMIT, None)


def _domain(address: str | None) -> str | None:
    if not address:
        return None
    return parse_address(address).domain


def _ours(ctx: Ctx, domain: str | None) -> bool:
    if domain is None:
        return True
    return ctx.facts.address_class(domain) is not AddressClass.DEFAULT


def _subject(ctx: Ctx) -> str:
    s = ctx.state
    return {
        "client": f"{s.client_name}[{s.client_address}]",
        "helo": s.helo_name or "",
        "sender": s.sender or "",
    }.get(ctx.stage, s.recipient or "")


# --- the restrictions ---------------------------------------------------------------


def permit(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT


def dunno(ctx: Ctx, arg: str | None) -> Outcome:
    return DUNNO


def reject(ctx: Ctx, arg: str | None) -> Outcome:
    return Verdict.REJECT, _generic(ctx, ctx.codes.reject_code, "Access denied")


def defer(ctx: Ctx, arg: str | None) -> Outcome:
    return Verdict.DEFER, _generic(ctx, ctx.codes.defer_code, "Access denied")


def _generic(ctx: Ctx, code: int, reason: str) -> Reply:
    enhanced = f"{code // 100}.7.1"
    s = ctx.state
    if ctx.stage == "client":
        return replies.client_rejected(code, enhanced, _subject(ctx), reason)
    if ctx.stage == "helo":
        return replies.helo_rejected(code, enhanced, s.helo_name or "", reason)
    if ctx.stage == "sender":
        return replies.sender_rejected(code, enhanced, s.sender or "", reason)
    return replies.recipient_rejected(code, enhanced, s.recipient or "", reason)


def permit_mynetworks(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT if ctx.facts.mynetworks(ctx.state.client_address) else DUNNO


def permit_sasl_authenticated(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT if ctx.state.sasl_username else DUNNO


def _unauth_destination(ctx: Ctx) -> bool:
    rcpt = ctx.state.recipient
    return rcpt is not None and not _ours(ctx, _domain(rcpt))


def reject_unauth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    if _unauth_destination(ctx):
        assert ctx.state.recipient is not None
        return Verdict.REJECT, replies.relay_denied(
            ctx.state.recipient, ctx.codes.relay_domains_reject_code
        )
    return DUNNO


def defer_unauth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    if _unauth_destination(ctx):
        assert ctx.state.recipient is not None
        return Verdict.DEFER, replies.relay_denied(ctx.state.recipient, 454)
    return DUNNO


def permit_auth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if rcpt is not None and _ours(ctx, _domain(rcpt)):
        return PERMIT
    return DUNNO


def _unlisted(ctx: Ctx, address: str | None) -> bool:
    if not address:
        return False
    domain = _domain(address)
    if domain is not None and ctx.facts.address_class(domain) is not AddressClass.LOCAL:
        return False
    return ctx.facts.is_local_recipient(address) is False


def reject_unlisted_recipient(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if _unlisted(ctx, rcpt):
        assert rcpt is not None
        return Verdict.REJECT, replies.user_unknown(
            rcpt, ctx.codes.unknown_local_recipient_reject_code
        )
    return DUNNO


def reject_unlisted_sender(ctx: Ctx, arg: str | None) -> Outcome:
    sender = ctx.state.sender
    if _unlisted(ctx, sender):
        assert sender is not None
        code = ctx.codes.unknown_local_recipient_reject_code
        return Verdict.REJECT, replies.sender_rejected(
            code, f"{code // 100}.1.0", sender, "User unknown in local recipient table"
        )
    return DUNNO


def _dns_check(ctx: Ctx, address: str | None, make: Callable[[str, int], Reply]) -> Outcome:
    domain = _domain(address)
    if not address or domain is None or _ours(ctx, domain):
        return DUNNO
    result = ctx.facts.domain_dns(domain)
    if result is DnsResult.HAS_ADDRESS:
        return DUNNO
    code = ctx.codes.unknown_address_reject_code
    if result is DnsResult.TEMP_FAIL:
        return Verdict.DEFER, make(address, 450 if code >= 500 else code)
    return (Verdict.REJECT if code >= 500 else Verdict.DEFER), make(address, code)


def reject_unknown_sender_domain(ctx: Ctx, arg: str | None) -> Outcome:
    return _dns_check(ctx, ctx.state.sender, replies.unknown_sender_domain)


def reject_unknown_recipient_domain(ctx: Ctx, arg: str | None) -> Outcome:
    return _dns_check(ctx, ctx.state.recipient, replies.unknown_recipient_domain)


def reject_non_fqdn_sender(ctx: Ctx, arg: str | None) -> Outcome:
    sender = ctx.state.sender
    if sender and not is_fqdn(_domain(sender)):
        return Verdict.REJECT, replies.non_fqdn_sender(sender, ctx.codes.non_fqdn_reject_code)
    return DUNNO


def reject_non_fqdn_recipient(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if rcpt and not is_fqdn(_domain(rcpt)):
        return Verdict.REJECT, replies.non_fqdn_recipient(rcpt, ctx.codes.non_fqdn_reject_code)
    return DUNNO


def reject_invalid_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is not None and not valid_hostname(helo):
        return Verdict.REJECT, replies.invalid_helo(helo, ctx.codes.invalid_hostname_reject_code)
    return DUNNO


def reject_non_fqdn_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is not None and not is_fqdn(helo):
        return Verdict.REJECT, replies.non_fqdn_helo(helo, ctx.codes.non_fqdn_reject_code)
    return DUNNO


def reject_unauth_pipelining(ctx: Ctx, arg: str | None) -> Outcome:
    if ctx.state.pipelining_violation:
        stage = "recipient" if ctx.stage == "relay" else ctx.stage
        return Verdict.REJECT, replies.unauth_pipelining(stage, _subject(ctx))
    return DUNNO


def _access(ctx: Ctx, table: str | None, key: str | None) -> Outcome:
    if table is None or not key:
        return DUNNO
    value = ctx.facts.lookup(table, key)
    if value is None:
        return DUNNO
    word, _, text = value.strip().partition(" ")
    upper = word.upper()
    if upper in ("OK", "PERMIT") or (word.isdigit() and word.startswith("2")):
        return PERMIT
    if upper == "DUNNO":
        return DUNNO
    if upper == "REJECT":
        code = ctx.codes.access_map_reject_code
        return Verdict.REJECT, _generic(ctx, code, text.strip() or "Access denied")
    if upper == "DEFER":
        return Verdict.DEFER, _generic(ctx, ctx.codes.defer_code, text.strip() or "Access denied")
    if word.isdigit() and len(word) == 3 and word[0] in "45":
        code = int(word)
        verdict = Verdict.REJECT if word[0] == "5" else Verdict.DEFER
        return verdict, _generic(ctx, code, text.strip() or "Access denied")
    return DUNNO


def check_client_access(ctx: Ctx, arg: str | None) -> Outcome:
    return _access(ctx, arg, ctx.state.client_address)


def check_helo_access(ctx: Ctx, arg: str | None) -> Outcome:
    return _access(ctx, arg, ctx.state.helo_name)


def check_sender_access(ctx: Ctx, arg: str | None) -> Outcome:
    return _access(ctx, arg, ctx.state.sender)


def check_recipient_access(ctx: Ctx, arg: str | None) -> Outcome:
    return _access(ctx, arg, ctx.state.recipient)


Restriction = Callable[[Ctx, str | None], Outcome]
_IMPLICIT_SENDER: Restriction = reject_unlisted_sender  # smtpd_reject_unlisted_sender
_IMPLICIT_RECIPIENT: Restriction = reject_unlisted_recipient  # smtpd_reject_unlisted_recipient

#: Every restriction postier knows: name -> (implementation, takes an argument).
RESTRICTIONS: Mapping[str, tuple[Restriction, bool]] = {
    "permit": (permit, False),
    "dunno": (dunno, False),
    "reject": (reject, False),
    "defer": (defer, False),
    "permit_mynetworks": (permit_mynetworks, False),
    "permit_sasl_authenticated": (permit_sasl_authenticated, False),
    "reject_unauth_destination": (reject_unauth_destination, False),
    "defer_unauth_destination": (defer_unauth_destination, False),
    "permit_auth_destination": (permit_auth_destination, False),
    "reject_unlisted_recipient": (reject_unlisted_recipient, False),
    "check_recipient_maps": (reject_unlisted_recipient, False),
    "reject_unlisted_sender": (reject_unlisted_sender, False),
    "reject_unknown_sender_domain": (reject_unknown_sender_domain, False),
    "reject_unknown_recipient_domain": (reject_unknown_recipient_domain, False),
    "reject_non_fqdn_sender": (reject_non_fqdn_sender, False),
    "reject_non_fqdn_recipient": (reject_non_fqdn_recipient, False),
    "reject_invalid_helo_hostname": (reject_invalid_helo_hostname, False),
    "reject_invalid_hostname": (reject_invalid_helo_hostname, False),
    "reject_non_fqdn_helo_hostname": (reject_non_fqdn_helo_hostname, False),
    "reject_non_fqdn_hostname": (reject_non_fqdn_helo_hostname, False),
    "reject_unauth_pipelining": (reject_unauth_pipelining, False),
    "check_client_access": (check_client_access, True),
    "check_helo_access": (check_helo_access, True),
    "check_sender_access": (check_sender_access, True),
    "check_recipient_access": (check_recipient_access, True),
}
#: Not restrictions themselves: they change how the next element is read.
MODIFIERS = {"sleep": True, "warn_if_reject": False}

#: Postfix's fatal check: one of these must guard relaying.
RELAY_GUARDS = frozenset(
    {
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject",
        "defer",
        "defer_if_permit",
        "check_relay_domains",
    }
)


def parse_restrictions(items: Sequence[str], *, stage: str) -> list[RestrictionCall]:
    """Validate a restriction list at configuration time; ValueError names the culprit."""
    calls: list[RestrictionCall] = []
    it = iter(items)
    for item in it:
        name = item.lower()
        if name in MODIFIERS or name in RESTRICTIONS:
            takes_arg = MODIFIERS[name] if name in MODIFIERS else RESTRICTIONS[name][1]
            arg = None
            if takes_arg:
                arg = next(it, None)
                if arg is None:
                    raise ValueError(f"restriction {name} needs an argument")
                if name == "sleep" and not arg.isdigit():
                    raise ValueError(f"restriction sleep: bad number of seconds: {arg}")
            calls.append(RestrictionCall(name, arg))
        else:
            raise ValueError(f"unknown smtpd restriction: {item!r} (in the {stage} restrictions)")
    return calls


def check_relay_protection(
    relay: Sequence[RestrictionCall], recipient: Sequence[RestrictionCall]
) -> None:
    """Postfix refuses to run as an open relay by configuration mistake; so do we."""
    if not any(call.name in RELAY_GUARDS for call in (*relay, *recipient)):
        raise ValueError(
            "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at "
            "least one working instance of: reject_unauth_destination, "
            "defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains"
        )


def evaluate(
    calls: Sequence[RestrictionCall],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    stage: str,
) -> Decision:
    ctx = Ctx(state, facts, codes, stage)
    decision = Decision("dunno")
    warn_next = False
    for call in calls:
        if call.name == "sleep":
            decision.sleeps.append(float(call.arg or 0))
            continue
        if call.name == "warn_if_reject":
            warn_next = True
            continue
        impl, _ = RESTRICTIONS[call.name]
        verdict, reply = impl(ctx, call.arg)
        if warn_next and verdict in (Verdict.REJECT, Verdict.DEFER):
            decision.warnings.append(f"reject_warning: {reply}")
            warn_next = False
            continue
        warn_next = False
        if verdict is not Verdict.DUNNO:
            decision.action = verdict.value
            decision.reply = reply
            return decision
    return decision


def evaluate_stage(
    lists: Mapping[str, Sequence[RestrictionCall]],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool,
    reject_unlisted_sender: bool,
) -> Decision:
    """Every list at RCPT time (smtpd_delay_reject = yes), then the implicit checks."""
    sleeps: list[float] = []
    warnings: list[str] = []
    ran = {call.name for calls in lists.values() for call in calls}
    for stage in STAGES:
        d = evaluate(lists.get(stage, ()), state, facts, codes, stage=stage)
        sleeps += d.sleeps
        warnings += d.warnings
        if d.action in ("reject", "defer"):
            return Decision(d.action, d.reply, sleeps, warnings)
    ctx = Ctx(state, facts, codes, "recipient")
    implicit: list[Restriction] = []
    if reject_unlisted_sender and "reject_unlisted_sender" not in ran:
        implicit.append(_IMPLICIT_SENDER)
    if reject_unlisted_recipient and "reject_unlisted_recipient" not in ran:
        implicit.append(_IMPLICIT_RECIPIENT)
    for impl in implicit:
        verdict, reply = impl(ctx, None)
        if verdict in (Verdict.REJECT, Verdict.DEFER):
            return Decision(verdict.value, reply, sleeps, warnings)
    return Decision("dunno", None, sleeps, warnings)


def dns_domains_needed(
    calls: Sequence[RestrictionCall],
    state: SmtpdState,
    facts: Facts,
) -> set[str]:
    """The domains whose DNS the list may ask about, for the shell to resolve first."""
    wanted: set[str] = set()
    names = {call.name for call in calls}
    for name, address in (
        ("reject_unknown_sender_domain", state.sender),
        ("reject_unknown_recipient_domain", state.recipient),
    ):
        domain = _domain(address)
        if name in names and domain and facts.address_class(domain) is AddressClass.DEFAULT:
            wanted.add(domain.lower())
    return wanted
