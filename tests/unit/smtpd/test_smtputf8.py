"""SMTPUTF8 (RFC 6531) decisions at MAIL, RCPT and VRFY: golden replies read from Postfix
3.7.11 (smtputf8_enable = yes, strict_smtputf8 no and yes), and the UTF-8 domain check."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.smtpd.policy import Policy, utf8_address_refusal
from postier.smtpproto import replies
from postier.smtpproto.readers import utf8_domain_syntax_ok

sys.path.insert(0, str(Path(__file__).parents[1] / "restrictions"))
from restrictions_helpers import World

MUST = "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
BAD_SENDER = "501 5.1.7 Bad sender address syntax"
BAD_RCPT = "501 5.1.3 Bad recipient address syntax"


@dataclasses.dataclass
class Settings:
    strict_smtputf8: bool = False
    delay_reject: bool = True
    reject_unlisted_recipient: bool = True
    reject_unlisted_sender: bool = False
    message_size_limit: int = 10240000
    myorigin: str = "example.com"
    disable_vrfy: bool = False
    codes: rs.RejectCodes = dataclasses.field(default_factory=rs.RejectCodes)
    classes: Mapping[str, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=dict)
    lists: Mapping[rs.Stage, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=lambda: {
            rs.Stage.RELAY: rs.parse_restrictions(
                ["permit_mynetworks, reject_unauth_destination"], stage=rs.Stage.RELAY),
            rs.Stage.RECIPIENT: rs.parse_restrictions(
                ["check_recipient_access inline:t"], stage=rs.Stage.RECIPIENT),
        })


INSIDE = rs.SmtpdState(client_address="127.0.0.1", helo_name="x", sender="a@b.net")


def world() -> World:
    w = World()
    w.tables = {"inline:t": {"bloqué@example.org": "REJECT blocked utf8"}}
    return w


def wire(reply: replies.Reply | None) -> str | None:
    return None if reply is None else f"{reply.code} {reply.enhanced} {reply.text}"


# (strict_smtputf8, MAIL had SMTPUTF8, address, Postfix's reply to MAIL, to RCPT); None: 250
GOLDEN = [
    (False, False, "jérôme@example.org", None, None),
    (False, False, "a@exämple.org", BAD_SENDER, BAD_RCPT),
    (False, True, "a@exämple.org", None, None),
    (False, True, "jérôme@exämple.org", None, None),
    (True, False, "jérôme@example.org", MUST, MUST),
    (True, False, "a@exämple.org", BAD_SENDER, BAD_RCPT),
    (True, False, "jé@exämple.org", BAD_SENDER, BAD_RCPT),
    (True, False, "a@example.org", None, None),
    (True, True, "jérôme@example.org", None, None),
    (True, True, "a@exämple.org", None, None),
    # UTF-8 domains Postfix refuses even with SMTPUTF8, and some it takes
    (False, True, "a@ä-.org", BAD_SENDER, BAD_RCPT),
    (False, True, "a@ä..org", BAD_SENDER, BAD_RCPT),
    (False, True, "a@[ä]", BAD_SENDER, BAD_RCPT),
    (False, True, "a@ex_ä.org", None, None),
    (False, True, "a@1.ä", None, None),
    (False, True, "a@ÄÖ.org", None, None),
]


@pytest.mark.parametrize(("strict", "smtputf8", "address", "mail", "rcpt"), GOLDEN)
def test_mail_and_rcpt_replies_as_postfix(
    strict: bool, smtputf8: bool, address: str, mail: str | None, rcpt: str | None,
) -> None:
    policy = Policy(Settings(strict_smtputf8=strict))
    assert wire(policy.check_mail(address, {}, smtputf8=smtputf8)) == mail
    decision = lk.run(policy.check_rcpt(INSIDE, address, {}, smtputf8=smtputf8), world())
    assert wire(decision.reply) == rcpt


def test_the_restrictions_see_the_utf8_address() -> None:
    # check_recipient_access with a UTF-8 key (Postfix: 554 5.7.1 <bloqué@…>: … blocked utf8)
    for strict in (False, True):
        policy = Policy(Settings(strict_smtputf8=strict))
        decision = lk.run(policy.check_rcpt(INSIDE, "bloqué@example.org", {}, smtputf8=True),
                          world())
        assert wire(decision.reply) == (
            "554 5.7.1 <bloqué@example.org>: Recipient address rejected: blocked utf8")


def test_the_address_is_checked_before_the_parameters() -> None:
    # Postfix: "<jé@x> FOO" strict -> 553; "<a@exämple> SMTPUTF8 FOO" -> 555 FOO
    policy = Policy(Settings(strict_smtputf8=True))
    assert wire(policy.check_mail("jé@example.org", {"FOO": None})) == MUST
    assert wire(policy.check_mail("a@exämple.org", {"FOO": None}, smtputf8=True)) == (
        "555 5.5.4 Unsupported option: FOO")
    # smtputf8_enable = no: SMTPUTF8 stays a parameter, the address comes first
    assert wire(Policy(Settings()).check_mail("a@exämple.org", {"SMTPUTF8": None})) == BAD_SENDER
    assert wire(Policy(Settings()).check_mail("jé@example.org", {"SMTPUTF8": None})) == (
        "555 5.5.4 Unsupported option: SMTPUTF8")


def test_vrfy_has_no_smtputf8() -> None:
    # Postfix: VRFY jé@exämple.com -> 501 5.1.3; strict: VRFY jé@example.com -> 553 5.6.7
    state = INSIDE
    got = lk.run(Policy(Settings()).vrfy(state, "jé@exämple.org"), world()).reply
    assert wire(got) == BAD_RCPT
    got = lk.run(Policy(Settings(strict_smtputf8=True)).vrfy(state, "jé@example.org"),
                 world()).reply
    assert wire(got) == MUST


def test_ascii_addresses_are_never_refused_here() -> None:
    for strict in (False, True):
        for smtputf8 in (False, True):
            assert utf8_address_refusal("a@b..c", smtputf8=smtputf8, strict=strict,
                                        bad_syntax=replies.BAD_SENDER_SYNTAX) is None


@pytest.mark.parametrize(("domain", "ok"), [
    ("exämple.net", True), ("exämple.net.", True), ("ÄÖ.net", True), ("1.ä", True),
    ("ex_ä.net", True), ("ä-.net", False), ("-ä.net", False), ("ä..net", False),
    (".ä.net", False), ("[ä]", False), ("ä" * 64 + ".net", False), ("", False),
    ("ä.-x.net", False),
])
def test_utf8_domain_syntax(domain: str, ok: bool) -> None:
    assert utf8_domain_syntax_ok(domain) is ok
