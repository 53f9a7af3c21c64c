"""What smtpd decides for one session at MAIL, RCPT and VRFY (pure: decisions out, no I/O).

Follows Postfix's smtpd(8) and SMTPD_ACCESS_README: with ``smtpd_delay_reject = yes``
(the default) client, HELO and sender restrictions are evaluated at RCPT time, by the
restriction evaluator (``restrictions.evaluate``); with ``no`` each list is evaluated
at its own command (``check_stage``: connect, HELO/EHLO, MAIL) and RCPT runs only the
relay and recipient lists. ETRN's smtpd_etrn_restrictions: ``check_etrn``.
Decisions that need facts are ``restrictions.lookups.Steps``: the session shell drives them with
``smtpd.facts.ServiceFacts.run`` and then does what they say (flush, sleep, log,
reply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from postier.bounce import notify as dsn
from postier.restrictions import evaluate as rs
from postier.restrictions.lookups import Steps
from postier.rewrite.address import parse_address
from postier.smtpproto import replies
from postier.smtpproto.readers import Params, parse_path, utf8_domain_syntax_ok
from postier.smtpproto.replies import Reply


@dataclass(frozen=True)
class RcptDecision:
    """What to do with one RCPT.

    ``reply``: the refusal to send, or None to accept the recipient. ``sleep``: seconds
    to pause first, replies already queued flushed before (0: none). ``warnings``:
    ``warn_if_reject`` replies, to log as ``reject_warning``. ``notes``: access(5)
    actions with side effects, (ACTION, text). ``restriction``: the restriction that
    refused (its name as configured; None: refused before the restrictions, or accepted).
    ``alerts``: configuration warnings for the log (``rs.Decision.alerts``).
    ``whatsup``: the notes as logged (``rs.Decision.whatsup``).
    """

    reply: Reply | None
    sleep: float = 0.0
    warnings: tuple[Reply, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()
    restriction: str | None = None
    alerts: tuple[str, ...] = ()
    whatsup: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VrfyDecision:
    """What to answer one VRFY: ``reply``; ``address``, the address the restrictions
    saw (None: refused before them); ``rcpt``, their decision (its ``reply`` None when
    they accepted); ``bad_syntax``: the argument is not one address (Postfix warns)."""

    reply: Reply
    address: str | None = None
    rcpt: RcptDecision | None = None
    bad_syntax: bool = False


class PolicySettings(Protocol):
    """The service settings decisions read (``smtpd.service.Service`` has them)."""

    @property
    def message_size_limit(self) -> int: ...
    @property
    def myorigin(self) -> str: ...
    @property
    def disable_vrfy(self) -> bool: ...
    @property
    def lists(self) -> Mapping[rs.Stage, Sequence[rs.RestrictionCall]]: ...
    @property
    def codes(self) -> rs.RejectCodes: ...
    @property
    def reject_unlisted_recipient(self) -> bool: ...
    @property
    def reject_unlisted_sender(self) -> bool: ...
    @property
    def classes(self) -> Mapping[str, Sequence[rs.RestrictionCall]]: ...
    @property
    def strict_smtputf8(self) -> bool: ...
    @property
    def delay_reject(self) -> bool: ...


def _repeated(params: Mapping[str, str | None]) -> frozenset[str]:
    return params.repeated if isinstance(params, Params) else frozenset()


def _dsn_param(
    key: str, value: str | None, repeated: frozenset[str], parse: Callable[[str], str | None],
    bad: Reply,
) -> Reply | None:
    """Postfix's checks of one RFC 3461 parameter: a keyword alone is an unsupported
    option; a value given twice or one that does not parse is ``bad``."""
    if value is None:
        return replies.unsupported_option(key)
    if key in repeated or parse(value) is None:
        return bad
    return None


def _option(key: str, value: str | None) -> str:
    """A parameter as Postfix names it in ``555 5.5.4 Unsupported option: FOO=bar``."""
    return key if value is None else f"{key}={value}"


#: MAIL's RFC 3461 parameters: keyword -> (parser, refusal).
_MAIL_DSN: Mapping[str, tuple[Callable[[str], str | None], Reply]] = {
    "RET": (dsn.parse_ret, replies.BAD_RET_SYNTAX),
    "ENVID": (dsn.parse_envid, replies.BAD_ENVID_SYNTAX),
}
#: RCPT's RFC 3461 parameters: keyword -> (parser, refusal).
_RCPT_DSN: Mapping[str, tuple[Callable[[str], str | None], Reply]] = {
    "NOTIFY": (dsn.parse_notify, replies.BAD_NOTIFY_SYNTAX),
    "ORCPT": (dsn.parse_orcpt, replies.BAD_ORCPT_SYNTAX),
}


def dsn_mail_attrs(params: Mapping[str, str | None]) -> dict[str, str]:
    """The envelope attributes of an accepted MAIL's RET and ENVID (decoded), by name
    (``notify.ATTR_RET``, ``notify.ATTR_ENVID``); absent ones are left out."""
    attrs: dict[str, str] = {}
    for key, name, parse in (("RET", dsn.ATTR_RET, dsn.parse_ret),
                             ("ENVID", dsn.ATTR_ENVID, dsn.parse_envid)):
        value = params.get(key)
        parsed = parse(value) if value is not None else None
        if parsed is not None:
            attrs[name] = parsed
    return attrs


def dsn_rcpt_fields(params: Mapping[str, str | None]) -> tuple[str, str]:
    """``(dsn_notify, dsn_orcpt)`` of an accepted RCPT as the queue file stores them
    (``""`` when not given)."""
    notify = params.get("NOTIFY")
    orcpt = params.get("ORCPT")
    return (
        (dsn.parse_notify(notify) or "") if notify is not None else "",
        (dsn.parse_orcpt(orcpt) or "") if orcpt is not None else "",
    )


def utf8_address_refusal(
    address: str, *, smtputf8: bool, strict: bool, bad_syntax: Reply
) -> Reply | None:
    """The refusal of a non-ASCII envelope address, or None (RFC 6531, as Postfix 3.7).

    ``smtputf8``: the transaction declared SMTPUTF8 (and ``smtputf8_enable`` is on).
    A non-ASCII domain is ``bad_syntax`` (``501 5.1.7``/``501 5.1.3``) without SMTPUTF8,
    or when it is no valid internationalized name; then, with ``strict`` (Postfix's
    ``strict_smtputf8``), any non-ASCII address without SMTPUTF8 gets ``553 5.6.7 Must
    declare SMTPUTF8 to send unicode address``. A UTF-8 local part alone is accepted
    when not ``strict``."""
    if address.isascii():
        return None
    domain = parse_address(address).domain
    if (domain is not None and not domain.isascii()
            and not (smtputf8 and utf8_domain_syntax_ok(domain))):
        return bad_syntax
    if strict and not smtputf8:
        return replies.SMTPUTF8_REQUIRED
    return None


def is_bare_postmaster(address: str) -> bool:
    """``postmaster`` without a domain, in any case, quoted or not (``"postmaster"``)."""
    # Unquoting only drops quotes and escaping backslashes: without "postmaster" in what
    # remains, the localpart cannot be it (skips parsing nearly every recipient).
    if "postmaster" not in address.replace('"', "").replace("\\", "").lower():
        return False
    parsed = parse_address(address)
    return parsed.domain is None and parsed.localpart.lower() == "postmaster"


class Policy:
    """MAIL, RCPT and VRFY decisions for one session."""

    def __init__(self, svc: PolicySettings) -> None:
        self.svc = svc
        self.slept = False

    def check_mail(
        self, address: str, params: Mapping[str, str | None], *, smtputf8: bool = False
    ) -> Reply | None:
        """The refusal of a MAIL command for its address and parameters, or None.

        A non-ASCII address first (``utf8_address_refusal``; ``smtputf8``: MAIL has the
        SMTPUTF8 parameter, already taken out of ``params``); then SIZE (RFC 1870), BODY,
        and the RFC 3461 RET and ENVID, checked as Postfix does.
        """
        refusal = utf8_address_refusal(address, smtputf8=smtputf8,
                                       strict=self.svc.strict_smtputf8,
                                       bad_syntax=replies.BAD_SENDER_SYNTAX)
        if refusal is not None:
            return refusal
        size = params.get("SIZE")
        if size is not None:
            if not (size.isascii() and size.isdigit()):
                return replies.BAD_SIZE_SYNTAX
            if self.svc.message_size_limit and int(size) > self.svc.message_size_limit:
                return replies.SIZE_EXCEEDS_LIMIT
        repeated = _repeated(params)
        for key, value in params.items():
            if key in _MAIL_DSN:
                refusal = _dsn_param(key, value, repeated, *_MAIL_DSN[key])
                if refusal is not None:
                    return refusal
            elif key not in ("SIZE", "BODY"):
                return replies.unsupported_option(_option(key, value))
        return None

    def check_rcpt(
        self, session: rs.SmtpdState, address: str, params: Mapping[str, str | None],
        *, smtputf8: bool = False,
    ) -> Steps[RcptDecision]:
        """A non-ASCII address (``utf8_address_refusal``; ``smtputf8``: the transaction's
        MAIL had SMTPUTF8), the parameters, then every restriction list for one
        recipient; ``session`` is the state so far (its ``recipient`` is ignored). The
        restrictions see UTF-8 addresses as sent."""
        refusal = utf8_address_refusal(address, smtputf8=smtputf8,
                                       strict=self.svc.strict_smtputf8,
                                       bad_syntax=replies.BAD_RECIPIENT_SYNTAX)
        if refusal is not None:
            return RcptDecision(refusal)
        repeated = _repeated(params)
        for key, value in params.items():
            if key not in _RCPT_DSN:
                return RcptDecision(replies.unsupported_option(_option(key, value)))
            refusal = _dsn_param(key, value, repeated, *_RCPT_DSN[key])
            if refusal is not None:
                return RcptDecision(refusal)
        if is_bare_postmaster(address):
            # RFC 5321 4.5.1, as Postfix's smtpd_check_rcpt(): the bare "postmaster" (any
            # case, quoted or not) is accepted whatever the restrictions; postmaster@domain
            # is not exempt.
            return RcptDecision(None)
        # The restrictions see the address as sent (issue 7 a): "user" stays unqualified,
        # so reject_non_fqdn_recipient refuses it; cleanup qualifies it (Qualify).
        state = replace(session, recipient=address, stage=rs.Stage.RECIPIENT)
        decision = yield from rs.evaluate_stage_steps(
            self.svc.lists,
            state,
            self.svc.codes,
            reject_unlisted_recipient=self.svc.reject_unlisted_recipient,
            reject_unlisted_sender=self.svc.reject_unlisted_sender,
            classes=self.svc.classes,
            delay_reject=self.svc.delay_reject,
        )
        return self._decided(decision)

    def _decided(self, decision: rs.Decision) -> RcptDecision:
        """The evaluator's decision as smtpd carries it out (sleep once per session)."""
        # Every list runs again at each RCPT (smtpd_delay_reject); a "sleep" there is meant
        # to make a zombie give up before it talks, so it pauses a session only once.
        sleep = 0.0
        if decision.sleeps and not self.slept:
            self.slept = True
            sleep = sum(decision.sleeps)
        reply = None if decision.accepted else decision.reply
        return RcptDecision(reply, sleep, tuple(decision.warnings), tuple(decision.notes),
                            None if reply is None else decision.restriction,
                            tuple(decision.alerts), tuple(decision.whatsup))

    def check_stage(self, session: rs.SmtpdState, stage: rs.Stage) -> Steps[RcptDecision]:
        """``smtpd_delay_reject = no``: the list of ``stage`` (CLIENT at connect, HELO at
        HELO/EHLO, SENDER at MAIL, with its implicit reject_unlisted_sender) alone, now.
        ``session`` holds what that command brings (the HELO name, the sender)."""
        decision = yield from rs.evaluate_stage_steps(
            self.svc.lists,
            replace(session, stage=stage),
            self.svc.codes,
            reject_unlisted_recipient=self.svc.reject_unlisted_recipient,
            reject_unlisted_sender=self.svc.reject_unlisted_sender,
            classes=self.svc.classes,
            delay_reject=False,
        )
        return self._decided(decision)

    def check_etrn(self, session: rs.SmtpdState, site: str) -> Steps[RcptDecision]:
        """smtpd_etrn_restrictions for ``ETRN site`` (rejects say ``<site>: Etrn command
        rejected: …``)."""
        state = replace(session, stage=rs.Stage.ETRN, etrn_domain=site)
        decision = yield from rs.evaluate_steps(
            self.svc.lists.get(rs.Stage.ETRN, []), state, self.svc.codes,
            stage=rs.Stage.ETRN, classes=self.svc.classes)
        return self._decided(decision)

    def vrfy(self, session: rs.SmtpdState, argument: str) -> Steps[VrfyDecision]:
        """The reply to ``VRFY argument``, as Postfix's smtpd: disabled (502), no
        argument (501 5.5.4), not one address (501 5.1.3), then every restriction list
        for the address as sent (``check_rcpt`` without SMTPUTF8, as Postfix: a UTF-8
        domain is bad syntax; unqualified stays unqualified), and
        ``252 2.0.0 ARGUMENT`` (the argument as sent, brackets kept) when they accept."""
        if self.svc.disable_vrfy:
            return VrfyDecision(replies.VRFY_DISABLED)
        argument = argument.strip()
        if not argument:
            return VrfyDecision(replies.VRFY_SYNTAX)
        parsed = parse_path(argument)
        if parsed is None or parsed[1].strip() or not parsed[0]:
            return VrfyDecision(replies.BAD_RECIPIENT_SYNTAX, bad_syntax=True)
        address = parsed[0]
        decision = yield from self.check_rcpt(session, address, {})
        return VrfyDecision(decision.reply or replies.vrfy_ok(argument), address, decision)


#: local_header_rewrite_clients elements that need no table (postconf(5)).
HEADER_REWRITE_CLIENT_RULES = frozenset({
    "permit_inet_interfaces", "permit_mynetworks", "permit_sasl_authenticated", "static:all",
})


def rewrite_headers_for(
    rules: Sequence[str], *, inet_interface: bool, mynetworks: bool, sasl_authenticated: bool,
    address_map: Callable[[str], str | None],
) -> bool:
    """Does cleanup add missing headers (Message-Id:, Date:, From:) for this client?
    Postfix's ``local_header_rewrite_clients``: the first element that matches says yes
    (``permit_inet_interfaces``: the client is one of this host's addresses,
    ``permit_mynetworks``, ``permit_sasl_authenticated``, ``static:all``,
    ``check_address_map TABLE``: ``address_map(TABLE)`` finds OK for the client address).
    ``always_add_missing_headers`` is the caller's to add."""
    words = iter(rules)
    for word in words:
        w = word.lower()
        if ((w == "permit_inet_interfaces" and inet_interface)
                or (w == "permit_mynetworks" and mynetworks)
                or (w == "permit_sasl_authenticated" and sasl_authenticated)
                or w == "static:all"):
            return True
        if w == "check_address_map":
            found = address_map(next(words, ""))
            if found is not None and found.split()[:1] in (["OK"], ["ok"]):
                return True
    return False
