"""smtpd_delay_reject = no and smtpd_etrn_restrictions as smtpd decides them (pure).

Expected replies are Postfix 3.7's for the same lists and commands (side by side)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.smtpd.policy import Policy

sys.path.insert(0, str(Path(__file__).parents[1] / "restrictions"))
from restrictions_helpers import World

LISTS = {
    rs.Stage.CLIENT: "check_client_access hash:client",
    rs.Stage.HELO: "check_helo_access hash:helo",
    rs.Stage.SENDER: "check_sender_access hash:sender",
    rs.Stage.RELAY: "permit_mynetworks, reject_unauth_destination",
    rs.Stage.RECIPIENT: "",
    rs.Stage.ETRN: "check_client_access hash:etrn, reject",
}
TABLES = {
    "hash:client": {"203.0.113.5": "REJECT go away"},
    "hash:helo": {"bad.example": "REJECT no helo", "tmp.example": "DEFER later"},
    "hash:sender": {"bad@b.example": "REJECT no sender"},
    "hash:etrn": {"192.0.2.9": "OK"},
}


def world() -> World:
    return World(tables=TABLES)


@dataclasses.dataclass
class Settings:
    delay_reject: bool
    strict_smtputf8: bool = False
    reject_unlisted_recipient: bool = False
    reject_unlisted_sender: bool = False
    message_size_limit: int = 10240000
    myorigin: str = "example.com"
    disable_vrfy: bool = False
    codes: rs.RejectCodes = dataclasses.field(default_factory=rs.RejectCodes)
    classes: Mapping[str, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=dict)
    lists: Mapping[rs.Stage, Sequence[rs.RestrictionCall]] = dataclasses.field(
        default_factory=lambda: {
            stage: rs.parse_restrictions([text], stage=stage, delay_reject=False)
            for stage, text in LISTS.items()})


OTHER = rs.SmtpdState(client_address="192.0.2.9", client_name="other.example")
ZOMBIE = rs.SmtpdState(client_address="203.0.113.5", client_name="localhost")


def stage(policy: Policy, state: rs.SmtpdState, at: rs.Stage) -> str | None:
    decision = lk.run(policy.check_stage(state, at), world())
    return None if decision.reply is None else str(decision.reply)


def test_each_list_at_its_own_command() -> None:
    policy = Policy(Settings(delay_reject=False))
    assert stage(policy, ZOMBIE, rs.Stage.CLIENT) == (
        "554 5.7.1 <localhost[203.0.113.5]>: Client host rejected: go away")
    assert stage(policy, OTHER, rs.Stage.CLIENT) is None
    assert stage(policy, dataclasses.replace(OTHER, helo_name="bad.example"),
                 rs.Stage.HELO) == "554 5.7.1 <bad.example>: Helo command rejected: no helo"
    assert stage(policy, dataclasses.replace(OTHER, helo_name="tmp.example"),
                 rs.Stage.HELO) == "450 4.7.1 <tmp.example>: Helo command rejected: later"
    # the HELO list alone: the client list is not run again there
    assert stage(policy, dataclasses.replace(ZOMBIE, helo_name="ok.example"),
                 rs.Stage.HELO) is None
    assert stage(policy, dataclasses.replace(OTHER, sender="bad@b.example"),
                 rs.Stage.SENDER) == (
        "554 5.7.1 <bad@b.example>: Sender address rejected: no sender")


def test_rcpt_runs_only_relay_and_recipient_lists_when_not_delayed() -> None:
    state = dataclasses.replace(ZOMBIE, helo_name="bad.example", sender="bad@b.example")
    late = lk.run(Policy(Settings(delay_reject=False)).check_rcpt(
        state, "someone@elsewhere.example", {}), world())
    assert str(late.reply) == (
        "554 5.7.1 <someone@elsewhere.example>: Relay access denied")
    # with smtpd_delay_reject = yes the client list decides first, at RCPT
    delayed = lk.run(Policy(Settings(delay_reject=True)).check_rcpt(
        state, "someone@elsewhere.example", {}), world())
    assert str(delayed.reply) == (
        "554 5.7.1 <localhost[203.0.113.5]>: Client host rejected: go away")


def test_etrn_restrictions_name_the_site() -> None:
    # Postfix 3.7, smtpd_etrn_restrictions = reject: "554 5.7.1 <relay.example>: Etrn …"
    policy = Policy(Settings(delay_reject=True))
    refused = lk.run(policy.check_etrn(
        rs.SmtpdState(client_address="198.51.100.1", client_name="x.example"),
        "relay.example"), world())
    assert str(refused.reply) == (
        "554 5.7.1 <relay.example>: Etrn command rejected: Access denied")
    allowed = lk.run(policy.check_etrn(OTHER, "relay.example"), world())
    assert allowed.reply is None


def test_policy_service_is_told_the_etrn_domain() -> None:
    state = rs.SmtpdState(client_address="192.0.2.1", stage=rs.Stage.ETRN,
                          etrn_domain="relay.example")
    assert ("etrn_domain", "relay.example") in rs.policy_attributes(state)
    assert ("protocol_state", "ETRN") in rs.policy_attributes(state)
