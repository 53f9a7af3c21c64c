"""The smtpd restriction evaluator: restriction lists plus facts in, a decision out (pure).

Follows Postfix's smtpd(8), postconf(5) (each restriction, ``smtpd_*_restrictions``,
``smtpd_delay_reject``, ``smtpd_reject_unlisted_recipient``/``_sender``, the
``*_reject_code`` parameters, ``soft_bounce``), access(5) and SMTPD_ACCESS_README.

A list is read left to right until a restriction permits, rejects or defers;
``sleep N`` and ``warn_if_reject`` modify the walk. ``evaluate_stage`` gives
``smtpd_delay_reject = yes`` semantics: at RCPT time the client, helo, sender,
relay and recipient lists run in that order; a permit ends only its own list, a
reject or defer anywhere ends everything. Every restriction is one entry of the
explicit ``RESTRICTIONS`` table. Facts that need I/O (mynetworks, address
classes, local users, DNS, access tables) come through ``Facts``, plain
synchronous methods; the shell resolves DNS beforehand (``dns_domains_needed``).

Reply texts are Postfix's: ``<subject>: Client host|Helo command|Sender address|
Recipient address rejected: reason``. Texts for temporary failures whose exact
Postfix wording could not be checked are marked "unsure" below.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from postier.dns.result import DnsResult
from postier.rewrite.address import (
    fold_domain,
    has_sender_routing,
    is_fqdn,
    parse_address,
    valid_hostname_or_literal,
)
from postier.rewrite.resolve import AddressClass
from postier.smtpproto.replies import Reply

#: The lists smtpd evaluates, in smtpd_delay_reject order, then the later ones.
DELAYED_STAGES = ("client", "helo", "sender", "relay", "recipient")
STAGES = (*DELAYED_STAGES, "data", "end_of_data", "etrn")
_RANK = {"client": 0, "helo": 1, "sender": 2, "relay": 3, "recipient": 3,
         "data": 4, "end_of_data": 4, "etrn": 1}

#: What a reject says after the subject, per list (the "reply class").
_CLASS = {
    "client": "Client host", "helo": "Helo command", "sender": "Sender address",
    "recipient": "Recipient address", "relay": "Recipient address",
    "data": "Data command", "end_of_data": "End-of-data", "etrn": "Etrn command",
}

NULL_ACCESS_KEY = "<>"  # smtpd_null_access_lookup_key default


class Facts(Protocol):
    """What the evaluator asks the shell; every method is synchronous and pure for it."""

    def mynetworks(self, ip: str) -> bool: ...
    def address_class(self, domain: str) -> AddressClass: ...
    def is_local_recipient(self, address: str) -> bool | None: ...  # None: table failed
    def domain_dns(self, domain: str) -> DnsResult: ...  # domain folded (lower, no dot)
    def lookup(self, table: str, key: str) -> str | None: ...


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
    stage: str = "recipient"


class _IntConfig(Protocol):
    def get_int(self, name: str) -> int: ...
    def get_bool(self, name: str) -> bool: ...


@dataclass(frozen=True)
class RejectCodes:
    """The ``*_reject_code`` parameters (main.cf names) and ``soft_bounce``."""

    unknown_local_recipient_reject_code: int = 550
    unknown_address_reject_code: int = 450
    relay_domains_reject_code: int = 554
    non_fqdn_reject_code: int = 504
    invalid_hostname_reject_code: int = 501
    reject_code: int = 554
    defer_code: int = 450
    access_map_reject_code: int = 554
    access_map_defer_code: int = 450
    unknown_client_reject_code: int = 450
    unknown_hostname_reject_code: int = 450
    soft_bounce: bool = False

    @classmethod
    def from_config(cls, cfg: _IntConfig) -> RejectCodes:
        values: dict[str, int] = {
            name: cfg.get_int(name) for name in cls.__dataclass_fields__ if name != "soft_bounce"
        }
        return cls(**values, soft_bounce=cfg.get_bool("soft_bounce"))


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
    stage: str | None = None

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
    facts: Facts
    codes: RejectCodes
    stage: str  # the list being evaluated
    run: _Run
    depth: int = 0  # > 0 inside an access(5) action naming a restriction


# --- reply helpers ---------------------------------------------------------------------


def _enh(code: int, detail: str) -> str:
    """``X.detail`` with X the class of ``code``."""
    return f"{code // 100}.{detail}"


def _client_subject(state: SmtpdState) -> str:
    return f"{state.client_name or 'unknown'}[{state.client_address}]"


def _subject(ctx: Ctx, kind: str) -> str:
    s = ctx.state
    if kind == "client":
        return _client_subject(s)
    if kind == "helo":
        return s.helo_name or ""
    if kind == "sender":
        return s.sender or ""
    if kind in ("recipient", "relay"):
        return s.recipient or ""
    if kind == "data":
        return "DATA"
    if kind == "end_of_data":
        return "END-OF-MESSAGE"
    return "ETRN"


def _rejected(code: int, enhanced: str, kind: str, subject: str, reason: str) -> Reply:
    return Reply(code, enhanced, f"<{subject}>: {_CLASS[kind]} rejected: {reason}")


def _list_reply(ctx: Ctx, code: int, detail: str, reason: str) -> Reply:
    """A reply about whatever the current list is about (reject, defer, pipelining...)."""
    return _rejected(code, _enh(code, detail), ctx.stage, _subject(ctx, ctx.stage), reason)


def _negative(code: int) -> Verdict:
    return Verdict.REJECT if code >= 500 else Verdict.DEFER


# --- facts derived from the state -----------------------------------------------------


def _domain_class(ctx: Ctx, address: str) -> tuple[str, str | None, AddressClass]:
    parsed = parse_address(address)
    return parsed.localpart, parsed.domain, ctx.facts.address_class(parsed.domain or "")


def _authorized_destination(ctx: Ctx, recipient: str) -> bool:
    """reject_unauth_destination's test: our domain (any class but default), no routing."""
    localpart, _domain, cls = _domain_class(ctx, recipient)
    return cls is not AddressClass.DEFAULT and not has_sender_routing(localpart)


# --- the restrictions ------------------------------------------------------------------


def r_permit(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT


def r_dunno(ctx: Ctx, arg: str | None) -> Outcome:
    return DUNNO


def r_reject(ctx: Ctx, arg: str | None) -> Outcome:
    code = ctx.codes.reject_code
    return Outcome(_negative(code), _list_reply(ctx, code, "7.1", "Access denied"))


def r_defer(ctx: Ctx, arg: str | None) -> Outcome:
    code = ctx.codes.defer_code  # "Try again later": unsure
    return Outcome(Verdict.DEFER, _list_reply(ctx, code, "3.2", "Try again later"))


def r_defer_if_permit(ctx: Ctx, arg: str | None) -> Outcome:
    reply = _list_reply(ctx, ctx.codes.defer_code, "7.1", "defer_if_permit requested")
    return Outcome(Verdict.DEFER_IF_PERMIT, reply)


def r_defer_if_reject(ctx: Ctx, arg: str | None) -> Outcome:
    reply = _list_reply(ctx, ctx.codes.defer_code, "7.1", "defer_if_reject requested")
    return Outcome(Verdict.DEFER_IF_REJECT, reply)


def r_permit_mynetworks(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT if ctx.facts.mynetworks(ctx.state.client_address) else DUNNO


def r_permit_sasl_authenticated(ctx: Ctx, arg: str | None) -> Outcome:
    return PERMIT if ctx.state.sasl_username else DUNNO


def r_permit_auth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    return PERMIT if rcpt and _authorized_destination(ctx, rcpt) else DUNNO


def r_reject_unauth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if rcpt is None or _authorized_destination(ctx, rcpt):
        return DUNNO
    code = ctx.codes.relay_domains_reject_code
    reply = Reply(code, _enh(code, "7.1"), f"<{rcpt}>: Relay access denied")
    return Outcome(_negative(code), reply)


def r_defer_unauth_destination(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if rcpt is None or _authorized_destination(ctx, rcpt):
        return DUNNO
    return Outcome(Verdict.DEFER, Reply(454, "4.7.1", f"<{rcpt}>: Relay access denied"))


def _unlisted(ctx: Ctx, address: str | None, kind: str, detail: str) -> Outcome:
    if not address:
        return DUNNO
    _local, _domain, cls = _domain_class(ctx, address)
    if cls is not AddressClass.LOCAL:
        return DUNNO  # virtual and relay recipient tables: not supported yet
    known = ctx.facts.is_local_recipient(address)
    if known:
        return DUNNO
    if known is None:
        return Outcome(Verdict.DEFER, Reply(451, "4.3.0", f"<{address}>: Temporary lookup failure"))
    code = ctx.codes.unknown_local_recipient_reject_code
    reply = _rejected(code, _enh(code, detail), kind, address,
                      "User unknown in local recipient table")
    return Outcome(_negative(code), reply)


def r_reject_unlisted_recipient(ctx: Ctx, arg: str | None) -> Outcome:
    return _unlisted(ctx, ctx.state.recipient, "recipient", "1.1")


def r_reject_unlisted_sender(ctx: Ctx, arg: str | None) -> Outcome:
    return _unlisted(ctx, ctx.state.sender, "sender", "1.0")


def _unknown_domain(ctx: Ctx, address: str | None, kind: str, detail: str) -> Outcome:
    if not address:
        return DUNNO
    parsed = parse_address(address)
    if not parsed.domain or parsed.is_literal:
        return DUNNO
    if ctx.facts.address_class(parsed.domain).is_final:
        return DUNNO
    result = ctx.facts.domain_dns(fold_domain(parsed.domain))
    if result is DnsResult.HAS_ADDRESS:
        return DUNNO
    if result is DnsResult.TEMP_FAIL:  # unknown_address_tempfail_action = defer_if_permit
        code = ctx.codes.defer_code
        return Outcome(Verdict.DEFER_IF_PERMIT,
                       _rejected(code, _enh(code, detail), kind, address, "Domain not found"))
    code = ctx.codes.unknown_address_reject_code
    return Outcome(_negative(code),
                   _rejected(code, _enh(code, detail), kind, address, "Domain not found"))


def r_reject_unknown_sender_domain(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_domain(ctx, ctx.state.sender, "sender", "1.8")


def r_reject_unknown_recipient_domain(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_domain(ctx, ctx.state.recipient, "recipient", "1.2")


def _non_fqdn(ctx: Ctx, address: str | None, kind: str) -> Outcome:
    if not address or is_fqdn(parse_address(address).domain):
        return DUNNO
    code = ctx.codes.non_fqdn_reject_code
    return Outcome(_negative(code), _rejected(code, _enh(code, "5.2"), kind, address,
                                              "need fully-qualified address"))


def r_reject_non_fqdn_sender(ctx: Ctx, arg: str | None) -> Outcome:
    return _non_fqdn(ctx, ctx.state.sender, "sender")


def r_reject_non_fqdn_recipient(ctx: Ctx, arg: str | None) -> Outcome:
    return _non_fqdn(ctx, ctx.state.recipient, "recipient")


def r_reject_non_fqdn_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None or is_fqdn(helo):
        return DUNNO
    code = ctx.codes.non_fqdn_reject_code
    return Outcome(_negative(code), _rejected(code, _enh(code, "5.2"), "helo", helo,
                                              "need fully-qualified hostname"))


def r_reject_invalid_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None or valid_hostname_or_literal(helo):
        return DUNNO
    code = ctx.codes.invalid_hostname_reject_code
    return Outcome(_negative(code), _rejected(code, _enh(code, "5.2"), "helo", helo,
                                              "Invalid name"))


def r_reject_unknown_helo_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None or helo.startswith("["):
        return DUNNO
    result = ctx.facts.domain_dns(fold_domain(helo))
    if result is DnsResult.HAS_ADDRESS:
        return DUNNO
    if result is DnsResult.TEMP_FAIL:
        code = ctx.codes.defer_code
        return Outcome(Verdict.DEFER_IF_PERMIT,
                       _rejected(code, _enh(code, "7.1"), "helo", helo, "Host not found"))
    code = ctx.codes.unknown_hostname_reject_code
    return Outcome(_negative(code),
                   _rejected(code, _enh(code, "7.1"), "helo", helo, "Host not found"))


def _unknown_client(ctx: Ctx, name: str, what: str) -> Outcome:
    if name and name != "unknown":
        return DUNNO
    code = ctx.codes.unknown_client_reject_code
    reply = Reply(code, _enh(code, "7.25"),
                  f"Client host rejected: cannot find your {what}, [{ctx.state.client_address}]")
    return Outcome(_negative(code), reply)


def r_reject_unknown_client_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_client(ctx, ctx.state.client_name, "hostname")


def r_reject_unknown_reverse_client_hostname(ctx: Ctx, arg: str | None) -> Outcome:
    return _unknown_client(ctx, ctx.state.reverse_client_name, "reverse hostname")


def r_reject_unauth_pipelining(ctx: Ctx, arg: str | None) -> Outcome:
    if not ctx.state.pipelining_violation:
        return DUNNO
    return Outcome(Verdict.REJECT, _list_reply(ctx, 503, "5.0",
                                               "Improper use of SMTP command pipelining"))


# --- access(5) tables ------------------------------------------------------------------


def domain_keys(domain: str) -> list[str]:
    """``a.b.example.com``, ``b.example.com``, ``example.com``, ``com`` (smtpd_access_maps
    is in parent_domain_matches_subdomains by default); a literal only as itself."""
    d = fold_domain(domain)
    if not d:
        return []
    if d.startswith("["):
        return [d]
    labels = d.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def address_keys(address: str) -> list[str]:
    """access(5) keys of an envelope address: ``user@domain``, the domain and its
    parents, ``user@``; the null sender is ``<>``."""
    if not address:
        return [NULL_ACCESS_KEY]
    parsed = parse_address(address)
    local = parsed.localpart.lower()
    if parsed.domain is None:
        return [local, f"{local}@"]
    return [f"{local}@{fold_domain(parsed.domain)}", *domain_keys(parsed.domain), f"{local}@"]


def client_address_keys(ip: str) -> list[str]:
    """The address, then shorter prefixes: ``1.2.3.4``, ``1.2.3``, ``1.2``, ``1``."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return [ip] if ip else []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    text = str(addr)
    sep = "." if addr.version == 4 else ":"
    parts = text.split(sep)
    keys = [text]
    for i in range(len(parts) - 1, 0, -1):
        key = sep.join(parts[:i])
        if key and not key.endswith(sep):
            keys.append(key)
    return keys


_ACCESS_NOTES = frozenset({"HOLD", "WARN", "INFO", "FILTER", "REDIRECT", "PREPEND", "BCC"})


def _access_action(ctx: Ctx, value: str, kind: str, subject: str) -> Outcome:
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
        return Outcome(verdict, _text_reply(code, text or "Access denied", kind, subject))
    if len(word) == 3 and word.isdigit() and word[0] in "45":
        code = int(word)
        return Outcome(_negative(code), _text_reply(code, text or "Access denied", kind, subject))
    if upper == "DISCARD":
        ctx.run.notes.append((upper, text))
        return PERMIT
    if upper in _ACCESS_NOTES:
        ctx.run.notes.append((upper, text))
        return DUNNO
    name = word.lower()
    entry = RESTRICTIONS.get(name)
    if entry is not None and not entry[1] and not text and ctx.depth == 0:
        ctx.depth += 1
        try:
            return entry[0](ctx, None)
        finally:
            ctx.depth -= 1
    # Postfix answers an access table it cannot understand with a configuration error.
    return Outcome(Verdict.DEFER, Reply(451, "4.3.5", "Server configuration error"))


def _text_reply(code: int, text: str, kind: str, subject: str) -> Reply:
    """Access-table text may start with its own enhanced code (``5.7.0 go away``)."""
    enhanced = _enh(code, "7.1")
    first, _, rest = text.partition(" ")
    parts = first.split(".")
    if (len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] == str(code)[0]
            and rest.strip()):
        enhanced, text = first, rest.strip()
    return _rejected(code, enhanced, kind, subject, text)


def _access(ctx: Ctx, table: str | None, keys: Sequence[str], kind: str,
            subject: str) -> Outcome:
    if not table:
        return DUNNO
    for key in keys:
        value = ctx.facts.lookup(table, key)
        if value is not None:
            return _access_action(ctx, value, kind, subject)
    return DUNNO


def r_check_client_access(ctx: Ctx, arg: str | None) -> Outcome:
    s = ctx.state
    keys: list[str] = []
    if s.client_name and s.client_name != "unknown":
        keys += domain_keys(s.client_name)
    keys += client_address_keys(s.client_address)
    return _access(ctx, arg, keys, "client", _client_subject(s))


def r_check_reverse_client_hostname_access(ctx: Ctx, arg: str | None) -> Outcome:
    s = ctx.state
    name = s.reverse_client_name
    keys = domain_keys(name) if name and name != "unknown" else []
    return _access(ctx, arg, keys, "client", _client_subject(s))


def r_check_helo_access(ctx: Ctx, arg: str | None) -> Outcome:
    helo = ctx.state.helo_name
    if helo is None:
        return DUNNO
    return _access(ctx, arg, domain_keys(helo), "helo", helo)


def r_check_sender_access(ctx: Ctx, arg: str | None) -> Outcome:
    sender = ctx.state.sender
    if sender is None:
        return DUNNO
    return _access(ctx, arg, address_keys(sender), "sender", sender)


def r_check_recipient_access(ctx: Ctx, arg: str | None) -> Outcome:
    rcpt = ctx.state.recipient
    if rcpt is None:
        return DUNNO
    return _access(ctx, arg, address_keys(rcpt), "recipient", rcpt)


# --- the table -------------------------------------------------------------------------

Restriction = Callable[[Ctx, str | None], Outcome]

#: Every restriction postier knows: name -> (implementation, takes a type:table argument).
RESTRICTIONS: Mapping[str, tuple[Restriction, bool]] = {
    "permit": (r_permit, False),
    "dunno": (r_dunno, False),
    "reject": (r_reject, False),
    "defer": (r_defer, False),
    "defer_if_permit": (r_defer_if_permit, False),
    "defer_if_reject": (r_defer_if_reject, False),
    "permit_mynetworks": (r_permit_mynetworks, False),
    "permit_sasl_authenticated": (r_permit_sasl_authenticated, False),
    "permit_auth_destination": (r_permit_auth_destination, False),
    "reject_unauth_destination": (r_reject_unauth_destination, False),
    "defer_unauth_destination": (r_defer_unauth_destination, False),
    "reject_unlisted_recipient": (r_reject_unlisted_recipient, False),
    "check_recipient_maps": (r_reject_unlisted_recipient, False),
    "reject_unlisted_sender": (r_reject_unlisted_sender, False),
    "reject_unknown_sender_domain": (r_reject_unknown_sender_domain, False),
    "reject_unknown_recipient_domain": (r_reject_unknown_recipient_domain, False),
    "reject_non_fqdn_sender": (r_reject_non_fqdn_sender, False),
    "reject_non_fqdn_recipient": (r_reject_non_fqdn_recipient, False),
    "reject_non_fqdn_helo_hostname": (r_reject_non_fqdn_helo_hostname, False),
    "reject_non_fqdn_hostname": (r_reject_non_fqdn_helo_hostname, False),
    "reject_invalid_helo_hostname": (r_reject_invalid_helo_hostname, False),
    "reject_invalid_hostname": (r_reject_invalid_helo_hostname, False),
    "reject_unknown_helo_hostname": (r_reject_unknown_helo_hostname, False),
    "reject_unknown_hostname": (r_reject_unknown_helo_hostname, False),
    "reject_unknown_client_hostname": (r_reject_unknown_client_hostname, False),
    "reject_unknown_client": (r_reject_unknown_client_hostname, False),
    "reject_unknown_reverse_client_hostname": (r_reject_unknown_reverse_client_hostname, False),
    "reject_unauth_pipelining": (r_reject_unauth_pipelining, False),
    "check_client_access": (r_check_client_access, True),
    "check_reverse_client_hostname_access": (r_check_reverse_client_hostname_access, True),
    "check_helo_access": (r_check_helo_access, True),
    "check_sender_access": (r_check_sender_access, True),
    "check_recipient_access": (r_check_recipient_access, True),
}

#: Not restrictions: ``sleep`` takes the next element (seconds); ``warn_if_reject``
#: changes the next restriction.
MODIFIERS = ("sleep", "warn_if_reject")

#: The first list stage at which a restriction has its data (for smtpd_delay_reject = no).
_NEEDS: Mapping[str, str] = {
    **{n: "helo" for n in ("reject_non_fqdn_helo_hostname", "reject_non_fqdn_hostname",
                           "reject_invalid_helo_hostname", "reject_invalid_hostname",
                           "reject_unknown_helo_hostname", "reject_unknown_hostname",
                           "check_helo_access")},
    **{n: "sender" for n in ("reject_unlisted_sender", "reject_unknown_sender_domain",
                             "reject_non_fqdn_sender", "check_sender_access")},
    **{n: "recipient" for n in ("permit_auth_destination", "reject_unauth_destination",
                                "defer_unauth_destination", "reject_unlisted_recipient",
                                "check_recipient_maps", "reject_unknown_recipient_domain",
                                "reject_non_fqdn_recipient", "check_recipient_access")},
}

#: Postfix's start-up check: one of these (not under warn_if_reject) must guard relaying.
RELAY_GUARDS = frozenset({
    "reject_unauth_destination", "defer_unauth_destination", "reject", "defer",
    "defer_if_permit",
})
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
    items: Sequence[str], *, stage: str, delay_reject: bool = True
) -> list[RestrictionCall]:
    """Validate a restriction list at configuration time.

    ``items`` are the list's elements (``Config.get_list``); an element holding
    whitespace (``"sleep 1"``) is split. A ValueError names the culprit: an
    unknown restriction, a missing or bad argument, ``warn_if_reject`` with
    nothing to modify, an unknown stage, or (with ``smtpd_delay_reject = no``)
    a restriction whose data is not known yet at that stage.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown restriction list stage: {stage}")
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
        entry = RESTRICTIONS.get(name)
        if entry is None:
            raise ValueError(f'unknown smtpd restriction: "{word}"')
        arg = None
        if entry[1]:
            if i >= len(words) or not _valid_table(words[i]):
                got = words[i] if i < len(words) else "nothing"
                raise ValueError(f'restriction "{name}" needs a type:table argument, not {got}')
            arg = words[i]
            i += 1
        need = _NEEDS.get(name)
        if need is not None and _RANK[need] > _RANK[stage] and (
            not delay_reject or stage == "etrn"
        ):
            raise ValueError(
                f'restriction "{name}" needs the {need} and cannot be used in the {stage} '
                "restrictions" + ("" if stage == "etrn" else " with smtpd_delay_reject = no")
            )
        calls.append(RestrictionCall(name, arg))
    return calls


def _as_calls(
    items: Sequence[RestrictionCall] | Sequence[str], stage: str
) -> list[RestrictionCall]:
    if all(isinstance(x, RestrictionCall) for x in items):
        return [x for x in items if isinstance(x, RestrictionCall)]
    return parse_restrictions([str(x) for x in items], stage=stage)


def has_relay_protection(*lists: Sequence[RestrictionCall]) -> bool:
    """Does one of the lists hold a working relay guard (not modified by warn_if_reject)?"""
    for calls in lists:
        warned = False
        for call in calls:
            if call.name in RELAY_GUARDS and not warned:
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


def _run_list(calls: Sequence[RestrictionCall], ctx: Ctx) -> Outcome:
    """One list: PERMIT, REJECT, DEFER or DUNNO (fell off the end)."""
    warn_next = False
    for call in calls:
        if call.name == "sleep":
            ctx.run.sleeps.append(float(call.arg or 0))
            continue
        if call.name == "warn_if_reject":
            warn_next = True
            continue
        impl, _ = RESTRICTIONS[call.name]
        out = impl(ctx, call.arg)
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


def _finish(out: Outcome, run: _Run, codes: RejectCodes, stage: str | None) -> Decision:
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


def evaluate(
    restrictions: Sequence[RestrictionCall] | Sequence[str],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    stage: str | None = None,
) -> Decision:
    """Evaluate one restriction list (``stage`` defaults to ``state.stage``).

    A pending ``defer_if_permit`` turns a permit or dunno at the end into a defer.
    """
    list_stage = stage or state.stage
    calls = _as_calls(restrictions, list_stage)
    run = _Run()
    out = _run_list(calls, Ctx(state, facts, codes, list_stage, run))
    return _finish(out, run, codes, list_stage)


def evaluate_stage(
    lists: Mapping[str, Sequence[RestrictionCall]] | Mapping[str, Sequence[str]],
    state: SmtpdState,
    facts: Facts,
    codes: RejectCodes,
    *,
    reject_unlisted_recipient: bool = True,
    reject_unlisted_sender: bool = False,
) -> Decision:
    """Every list up to ``state.stage`` with ``smtpd_delay_reject = yes`` semantics.

    At ``recipient``: client, helo, sender, [implicit reject_unlisted_sender],
    relay, [implicit relay guard when neither relay nor recipient list has a
    working one], recipient, [implicit reject_unlisted_recipient]. A permit ends
    only its own list; a reject or defer ends everything; a pending
    ``defer_if_permit`` defers whatever would have been accepted. Stages
    ``data``/``end_of_data``/``etrn`` evaluate just their own list.
    """
    run = _Run()
    parsed = {name: _as_calls(calls, name) for name, calls in lists.items()}
    target = state.stage
    if target in DELAYED_STAGES:
        order = [s for s in DELAYED_STAGES if _RANK[s] <= _RANK[target]]
    else:
        order = [target]
    last = DUNNO
    implicit: list[tuple[str, Sequence[RestrictionCall]]] = []
    for stage in order:
        implicit.append((stage, parsed.get(stage, [])))
        if stage == "sender" and reject_unlisted_sender:
            implicit.append(("sender", [RestrictionCall("reject_unlisted_sender")]))
        if stage == "relay" and not has_relay_protection(
            parsed.get("relay", []), parsed.get("recipient", [])
        ):
            implicit.append(("relay", _IMPLICIT_RELAY_GUARD))
        if stage == "recipient" and reject_unlisted_recipient:
            implicit.append(("recipient", [RestrictionCall("reject_unlisted_recipient")]))
    for stage, calls in implicit:
        out = _run_list(calls, Ctx(state, facts, codes, stage, run))
        if out.verdict in (Verdict.REJECT, Verdict.DEFER):
            return _finish(out, run, codes, stage)
        if calls:
            last = out
    return _finish(last, run, codes, order[-1] if order else None)


def dns_domains_needed(
    restrictions: Sequence[RestrictionCall] | Sequence[str],
    state: SmtpdState,
    facts: Facts | None = None,
) -> set[str]:
    """The domains (folded) the list may ask ``Facts.domain_dns`` about, for the shell
    to resolve first. With ``facts``, domains we are final destination for are left
    out. Restriction names reached through access(5) actions are not followed: their
    domains read as TEMP_FAIL unless the shell resolved them (a safe defer_if_permit).
    """
    calls = _as_calls(restrictions, state.stage if state.stage in STAGES else "recipient")
    names = {call.name for call in calls}
    wanted: set[str] = set()
    for restriction, address in (("reject_unknown_sender_domain", state.sender),
                                 ("reject_unknown_recipient_domain", state.recipient)):
        if restriction not in names or not address:
            continue
        parsed = parse_address(address)
        if not parsed.domain or parsed.is_literal:
            continue
        if facts is not None and facts.address_class(parsed.domain).is_final:
            continue
        wanted.add(fold_domain(parsed.domain))
    helo = state.helo_name
    if helo and not helo.startswith("[") and names & {"reject_unknown_helo_hostname",
                                                      "reject_unknown_hostname"}:
        wanted.add(fold_domain(helo))
    return wanted


def with_stage(state: SmtpdState, stage: str) -> SmtpdState:
    """A copy of ``state`` for another stage."""
    return replace(state, stage=stage)
