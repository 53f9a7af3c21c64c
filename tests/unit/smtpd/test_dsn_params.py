"""MAIL/RCPT's RFC 3461 parameters: golden replies taken from Postfix 3.7 side by side.

Each row is a command's parameter text and the reply Postfix 3.7's smtpd gave for it
(``None``: accepted), then what is stored for an accepted one.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.smtpd.policy import Policy, RcptDecision, dsn_mail_attrs, dsn_rcpt_fields
from postier.smtpproto.readers import Params, parse_params
from postier.smtpproto.replies import Reply

sys.path.insert(0, str(Path(__file__).parents[1] / "restrictions"))
from restrictions_helpers import World


@dataclasses.dataclass
class Settings:
    reject_unlisted_recipient: bool = False
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
        default_factory=lambda: {rs.Stage.RELAY: rs.parse_restrictions(
            ["permit_mynetworks, reject_unauth_destination"], stage=rs.Stage.RELAY)})


INSIDE = rs.SmtpdState(client_address="127.0.0.1", helo_name="mail.example.net",
                       sender="someone@example.net")

# (MAIL parameters, Postfix's reply) -- from a Postfix 3.7 session, as typed.
MAIL_GOLDEN = [
    ("RET=FULL RET=HDRS", "501 5.5.4 Bad RET parameter syntax"),
    ("RET=XX", "501 5.5.4 Bad RET parameter syntax"),
    ("RET", "555 5.5.4 Unsupported option: RET"),
    ("RET=hdrs", None),
    ("ENVID=a+2Bb ENVID=c", "501 5.5.4 Bad ENVID parameter syntax"),
    ("ENVID=a+ZZ", "501 5.5.4 Bad ENVID parameter syntax"),
    ("ENVID=a+01b", "501 5.5.4 Bad ENVID parameter syntax"),
    ("ENVID", "555 5.5.4 Unsupported option: ENVID"),
    ("ENVID=a+2b", None),
    ("ENVID=a+20b", None),
    ("ENVID=" + "x" * 101, None),
    ("SIZE=10 SIZE=20", None),
    ("RET=hdrs ENVID=q+2B", None),
]

# (RCPT parameters, Postfix's reply)
RCPT_GOLDEN = [
    ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
    ("NOTIFY=SUCCESS NOTIFY=DELAY", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
    ("NOTIFY=FOO", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
    ("NOTIFY", "555 5.5.4 Unsupported option: NOTIFY"),
    ("ORCPT=rfc822;x@y ORCPT=rfc822;z@y", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
    ("ORCPT=x@y", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
    ("ORCPT=foo;x@y", None),
    ("ORCPT=rfc822;x+ZZ", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
    ("ORCPT=rfc822;a+2", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
    ("ORCPT=;x", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
    ("ORCPT=rfc822;", None),
    ("ORCPT=RFC822;x+40y", None),
    ("ORCPT=utf-8;a\\x{40}b", None),
    ("notify=success,failure,delay", None),
    ("NOTIFY=never", None),
    ("NOTIFY=NEVER,NEVER", None),
    ("NOTIFY=SUCCESS,", None),
    ("NOTIFY=,SUCCESS", None),
    ("NOTIFY=SUCCESS,SUCCESS", None),
]


def params(text: str) -> Params:
    parsed = parse_params(text)
    assert isinstance(parsed, Params)
    return parsed


@pytest.mark.parametrize(("text", "expected"), MAIL_GOLDEN)
def test_mail_parameters_get_postfix_replies(text: str, expected: str | None) -> None:
    reply = Policy(Settings()).check_mail("a@b", params(text))
    assert (None if reply is None else str(reply)) == expected


@pytest.mark.parametrize(("text", "expected"), RCPT_GOLDEN)
def test_rcpt_parameters_get_postfix_replies(text: str, expected: str | None) -> None:
    decision: RcptDecision = lk.run(
        Policy(Settings()).check_rcpt(INSIDE, "alice@example.com", params(text)), World())
    reply: Reply | None = decision.reply
    assert (None if reply is None else str(reply)) == expected


@pytest.mark.parametrize(("text", "attrs"), [
    ("RET=hdrs ENVID=q+2B", {"dsn_ret": "HDRS", "dsn_envid": "q+"}),
    ("RET=FULL", {"dsn_ret": "FULL"}),
    ("ENVID=env+2B1", {"dsn_envid": "env+1"}),
    ("SIZE=10", {}),
])
def test_accepted_mail_parameters_become_envelope_attributes(
    text: str, attrs: dict[str, str],
) -> None:
    assert dsn_mail_attrs(params(text)) == attrs


@pytest.mark.parametrize(("text", "fields"), [
    ("NOTIFY=delay,success", ("SUCCESS,DELAY", "")),
    ("NOTIFY=never", ("NEVER", "")),
    ("NOTIFY=SUCCESS,SUCCESS,", ("SUCCESS", "")),
    ("ORCPT=rfc822;orig+40x.test", ("", "rfc822;orig@x.test")),
    ("ORCPT=utf-8;a\\x{E9}b@x", ("", "utf-8;a\u00e9b@x")),
    ("", ("", "")),
])
def test_accepted_rcpt_parameters_become_the_recipient_record(
    text: str, fields: tuple[str, str],
) -> None:
    assert dsn_rcpt_fields(params(text)) == fields


def test_a_repeated_keyword_is_known_to_the_policy_and_the_last_value_kept() -> None:
    parsed = params("SIZE=10 RET=FULL SIZE=20")
    assert dict(parsed) == {"SIZE": "20", "RET": "FULL"}
    assert parsed.repeated == frozenset({"SIZE"})


@pytest.mark.parametrize("text", ["ENVID=", "NOTIFY="])
def test_an_empty_value_is_refused_by_the_parameter_syntax(text: str) -> None:
    # Postfix answers 501 Bad ... parameter syntax; our SMTP core refuses "KEY=" (no
    # esmtp-value, RFC 5321 4.1.2) before the policy sees it: refused all the same.
    assert str(parse_params(text)) == f"555 5.5.4 Unsupported option: {text}"
