"""smtpd's per-session decisions: RCPT and VRFY outcomes, the sleep done once, no I/O."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.smtpd.policy import Policy, RcptDecision
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply

sys.path.insert(0, str(Path(__file__).parents[1] / "restrictions"))
from restrictions_helpers import World

TUTORIAL_LISTS = {
    rs.Stage.CLIENT: "permit_mynetworks, permit_sasl_authenticated, sleep 1, "
                     "reject_unauth_pipelining",
    rs.Stage.HELO: "reject_invalid_helo_hostname",
    rs.Stage.SENDER: "reject_unlisted_sender, reject_unknown_sender_domain, permit_mynetworks",
    rs.Stage.RELAY: "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
    rs.Stage.RECIPIENT: "permit_mynetworks, reject_unauth_destination",
}


@dataclasses.dataclass
class Settings:
    reject_unlisted_recipient: bool = True
    reject_unlisted_sender: bool = False
    delay_reject: bool = True
    message_size_limit: int = 10240000
    myorigin: str = "example.com"
    disable_vrfy: bool = False
    strict_smtputf8: bool = False
    codes: rs.RejectCodes = dataclasses.field(default_factory=rs.RejectCodes)
    classes: Mapping[str, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=dict)
    lists: Mapping[rs.Stage, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=lambda: {stage: rs.parse_restrictions([text], stage=stage)
                                 for stage, text in TUTORIAL_LISTS.items()})


OUTSIDE = rs.SmtpdState(client_address="203.0.113.5", helo_name="mail.example.net",
                        sender="someone@example.net")


def rcpt(policy: Policy, address: str, state: rs.SmtpdState = OUTSIDE,
         params: Mapping[str, str | None] | None = None) -> RcptDecision:
    return lk.run(policy.check_rcpt(state, address, params or {}), World())


def vrfy(policy: Policy, argument: str, state: rs.SmtpdState = OUTSIDE) -> Reply:
    return lk.run(policy.vrfy(state, argument), World()).reply


UNKNOWN = ("550 5.1.1 <nobody@example.com>: Recipient address rejected: "
           "User unknown in local recipient table")


def test_unknown_local_user_is_rejected_with_smtpd_reject_unlisted_recipient_yes() -> None:
    decision = rcpt(Policy(Settings(reject_unlisted_recipient=True)), "nobody@example.com")
    assert str(decision.reply) == UNKNOWN
    inside = dataclasses.replace(OUTSIDE, client_address="127.0.0.1")
    decision = rcpt(Policy(Settings(reject_unlisted_recipient=True)), "nobody@example.com",
                    inside)
    assert str(decision.reply) == UNKNOWN  # permit_mynetworks does not skip it


def test_unknown_local_user_is_accepted_with_smtpd_reject_unlisted_recipient_no() -> None:
    policy = Policy(Settings(reject_unlisted_recipient=False))
    assert rcpt(policy, "nobody@example.com").reply is None
    assert rcpt(policy, "nobody").reply is None  # unqualified: the local class
    assert rcpt(policy, "alice@example.com").reply is None


def test_known_user_accepted_and_the_sleep_is_done_once_per_session() -> None:
    policy = Policy(Settings())
    first = rcpt(policy, "alice@example.com")
    assert first == RcptDecision(None, 1.0)
    assert rcpt(policy, "bob@example.com") == RcptDecision(None, 0.0)
    assert rcpt(Policy(Settings()), "nobody@example.com").sleep == 1.0  # a reject sleeps too


def test_relay_control_is_the_restriction_lists_job_mynetworks_relays() -> None:
    inside = dataclasses.replace(OUTSIDE, client_address="127.0.0.1")
    decision = rcpt(Policy(Settings()), "x@example.org", inside)
    assert decision.reply is None  # permit_mynetworks: relayed by the SMTP client
    outside = rcpt(Policy(Settings()), "x@example.org")
    assert str(outside.reply) == "454 4.7.1 <x@example.org>: Relay access denied"


@pytest.mark.parametrize(("params", "reply"), [
    ({"XFOO": "1"}, replies.unsupported_option("XFOO=1")),
    ({"NOTIFY": None}, replies.unsupported_option("NOTIFY")),
    ({"NOTIFY": "NEVER,SUCCESS"}, replies.BAD_NOTIFY_SYNTAX),
])
def test_rcpt_parameters_are_refused_before_any_restriction(
    params: dict[str, str | None], reply: Reply,
) -> None:
    # NOTIFY is a known parameter now (RFC 3461); unknown and malformed ones are refused.
    steps = Policy(Settings()).check_rcpt(OUTSIDE, "alice@example.com", params)
    with pytest.raises(StopIteration) as stop:
        next(steps)  # no lookup asked
    assert stop.value.value == RcptDecision(reply)


def test_warn_if_reject_is_returned_for_the_log() -> None:
    settings = Settings()
    settings.lists = {**settings.lists, rs.Stage.HELO: rs.parse_restrictions(
        ["warn_if_reject reject_non_fqdn_helo_hostname"], stage=rs.Stage.HELO)}
    state = dataclasses.replace(OUTSIDE, helo_name="milou")
    decision = rcpt(Policy(settings), "alice@example.com", state)
    assert decision.reply is None
    assert [str(w) for w in decision.warnings] == [
        "504 5.5.2 <milou>: Helo command rejected: need fully-qualified hostname"]


def test_vrfy() -> None:
    # Postfix 3.7.11 side by side: VRFY runs the recipient restrictions on the address
    # as sent and echoes the argument as sent (brackets kept) in the 252.
    policy = Policy(Settings())
    assert vrfy(policy, "alice") == replies.vrfy_ok("alice")
    assert str(vrfy(policy, "<alice@example.com>")) == "252 2.0.0 <alice@example.com>"
    assert str(vrfy(policy, "<nobody@example.com>")) == UNKNOWN
    assert str(vrfy(policy, "nobody")) == (
        "550 5.1.1 <nobody>: Recipient address rejected: User unknown in local recipient table")
    assert str(vrfy(policy, "x@example.org")) == "454 4.7.1 <x@example.org>: Relay access denied"
    assert vrfy(policy, "") == replies.VRFY_SYNTAX
    for bad in ("<>", "a b"):
        assert str(vrfy(policy, bad)) == "501 5.1.3 Bad recipient address syntax"
    assert str(vrfy(policy, "postmaster")) == "252 2.0.0 postmaster"
    assert vrfy(Policy(Settings(disable_vrfy=True)), "alice") == replies.VRFY_DISABLED


def test_vrfy_reject_non_fqdn_recipient() -> None:
    settings = Settings()
    settings.lists = {**settings.lists, rs.Stage.RECIPIENT: rs.parse_restrictions(
        ["reject_non_fqdn_recipient, permit_mynetworks, reject_unauth_destination"],
        stage=rs.Stage.RECIPIENT)}
    assert str(vrfy(Policy(settings), "alice")) == (
        "504 5.5.2 <alice>: Recipient address rejected: need fully-qualified address")


def test_mail_parameters() -> None:
    policy = Policy(Settings(message_size_limit=1000))
    assert policy.check_mail("a@b", {"SIZE": "999", "BODY": "8BITMIME"}) is None
    assert policy.check_mail("a@b", {"SIZE": "1001"}) == replies.SIZE_EXCEEDS_LIMIT
    assert policy.check_mail("a@b", {"SIZE": "x"}) == replies.BAD_SIZE_SYNTAX
    # RET is known now (RFC 3461): a keyword without its value is still unsupported.
    assert policy.check_mail("a@b", {"RET": None}) == replies.unsupported_option("RET")
    assert policy.check_mail("a@b", {"RET": "FULL"}) is None
    # Postfix 3.7.11: "MAIL FROM:<x> FOO=bar" -> "555 5.5.4 Unsupported option: FOO=bar".
    assert str(policy.check_mail("a@b", {"FOO": "bar"})) == "555 5.5.4 Unsupported option: FOO=bar"
    assert str(policy.check_mail("a@b", {"FOO": None})) == "555 5.5.4 Unsupported option: FOO"


# --- issue 7 (a) and (c), replies as Postfix 3.7 gave them side by side -------------------

NON_FQDN_LISTS = dict(TUTORIAL_LISTS)
NON_FQDN_LISTS[rs.Stage.SENDER] = "reject_non_fqdn_sender"
NON_FQDN_LISTS[rs.Stage.RECIPIENT] = "reject_non_fqdn_recipient, permit_mynetworks, " \
                                     "reject_unauth_destination"


def non_fqdn_settings() -> Settings:
    return Settings(lists={stage: rs.parse_restrictions([text], stage=stage)
                           for stage, text in NON_FQDN_LISTS.items()})


def test_restrictions_see_the_recipient_as_sent() -> None:
    decision = rcpt(Policy(non_fqdn_settings()), "alice")
    assert str(decision.reply) == (
        "504 5.5.2 <alice>: Recipient address rejected: need fully-qualified address")
    assert rcpt(Policy(non_fqdn_settings()), "alice@example.com").reply is None


@pytest.mark.parametrize("address", ["postmaster", "POSTMASTER", "Postmaster", '"postmaster"'])
def test_bare_postmaster_is_exempt_from_every_restriction(address: str) -> None:
    bad_sender = dataclasses.replace(OUTSIDE, sender="a", pipelining_violation=True)
    policy = Policy(non_fqdn_settings())
    assert str(rcpt(policy, "alice@example.com", bad_sender).reply) == (
        "503 5.5.0 <unknown[203.0.113.5]>: Client host rejected: "
        "Improper use of SMTP command pipelining")
    assert rcpt(policy, address, bad_sender) == RcptDecision(None)
    # other recipients of the same session stay rejected
    assert rcpt(policy, "alice@example.com", bad_sender).reply is not None


@pytest.mark.parametrize("address", ["postmaster@example.com", "postmaster@tintin.example.com",
                                     "postmaster+x", "postmaster@example.org"])
def test_postmaster_at_a_domain_is_not_exempt(address: str) -> None:
    bad_sender = dataclasses.replace(OUTSIDE, sender="a")
    assert str(rcpt(Policy(non_fqdn_settings()), address, bad_sender).reply) == (
        "504 5.5.2 <a>: Sender address rejected: need fully-qualified address")


def test_local_header_rewrite_clients() -> None:
    from postier.smtpd.policy import rewrite_headers_for

    def decide(rules: list[str], **facts: bool) -> bool:
        kw = {"inet_interface": False, "mynetworks": False, "sasl_authenticated": False, **facts}
        return rewrite_headers_for(rules, address_map=lambda spec: {"t": "OK"}.get(spec), **kw)

    default = ["permit_inet_interfaces"]  # Postfix's default
    assert decide(default, inet_interface=True)
    assert not decide(default, mynetworks=True, sasl_authenticated=True)
    assert decide(["permit_mynetworks"], mynetworks=True)
    assert decide(["permit_sasl_authenticated"], sasl_authenticated=True)
    assert decide(["static:all"])
    assert decide(["check_address_map", "t"])
    assert not decide(["check_address_map", "other"])
    assert not decide([])
