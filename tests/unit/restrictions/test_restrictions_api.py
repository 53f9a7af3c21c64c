"""Restriction evaluator: configuration checks, single lists, DNS needs, and never an open relay."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from restrictions_helpers import World, example_words

from postier.config.params import Param, ParamType
from postier.dns.result import DnsResult
from postier.restrictions import evaluate as rs
from postier.restrictions.lookups import AddressClassOf, DomainDns
from postier.rewrite.resolve import AddressClass

OUTSIDE = rs.SmtpdState(client_address="203.0.113.5", helo_name="mail.example.net",
                        sender="someone@example.net", recipient="x@example.org")


# --- parse_restrictions --------------------------------------------------------------------


def test_parse_splits_arguments_and_elements() -> None:
    calls = rs.parse_restrictions(
        ["permit_mynetworks", "sleep 1", "check_sender_access", "hash:/etc/postfix/access",
         "warn_if_reject", "reject_unauth_destination"], stage=rs.Stage.RECIPIENT)
    assert calls == [
        rs.RestrictionCall("permit_mynetworks"), rs.RestrictionCall("sleep", "1"),
        rs.RestrictionCall("check_sender_access", "hash:/etc/postfix/access"),
        rs.RestrictionCall("warn_if_reject"), rs.RestrictionCall("reject_unauth_destination"),
    ]


def test_parse_is_case_insensitive_and_accepts_aliases() -> None:
    calls = rs.parse_restrictions(["Permit_MyNetworks, check_recipient_maps"],
                                  stage=rs.Stage.RECIPIENT)
    assert [c.name for c in calls] == ["permit_mynetworks", "check_recipient_maps"]


@pytest.mark.parametrize(("items", "stage", "fragment"), [
    (["reject_bogus"], "client", '"reject_bogus"'),
    (["sleep"], "client", "sleep"),
    (["sleep", "soon"], "client", "soon"),
    (["check_client_access"], "client", "check_client_access"),
    (["check_client_access", "nocolon"], "client", "nocolon"),
    (["warn_if_reject"], "client", "warn_if_reject"),
    (["permit"], "nowhere", "nowhere"),
    (["reject_unlisted_recipient"], "etrn", "reject_unlisted_recipient"),
])
def test_parse_errors_name_the_culprit(items: list[str], stage: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        rs.parse_restrictions(items, stage=rs.Stage(stage))  # an unknown stage name fails here


def test_delay_reject_no_refuses_restrictions_without_their_data() -> None:
    client, helo, sender = rs.Stage.CLIENT, rs.Stage.HELO, rs.Stage.SENDER
    assert rs.parse_restrictions(["reject_unauth_destination"], stage=client)
    with pytest.raises(ValueError, match="smtpd_delay_reject = no"):
        rs.parse_restrictions(["reject_unauth_destination"], stage=client, delay_reject=False)
    with pytest.raises(ValueError, match="sender"):
        rs.parse_restrictions(["reject_non_fqdn_sender"], stage=helo, delay_reject=False)
    assert rs.parse_restrictions(["reject_non_fqdn_sender"], stage=sender, delay_reject=False)


def test_dispatch_table_is_explicit_and_complete() -> None:
    required = {
        "permit", "reject", "defer", "defer_if_permit", "dunno", "permit_mynetworks",
        "permit_sasl_authenticated", "reject_unauth_destination", "defer_unauth_destination",
        "permit_auth_destination", "reject_unlisted_recipient", "check_recipient_maps",
        "reject_unlisted_sender", "reject_unknown_sender_domain",
        "reject_unknown_recipient_domain", "reject_non_fqdn_sender", "reject_non_fqdn_recipient",
        "reject_non_fqdn_helo_hostname", "reject_invalid_helo_hostname",
        "reject_unknown_helo_hostname", "reject_unauth_pipelining", "check_client_access",
        "check_helo_access", "check_sender_access", "check_recipient_access",
    }
    assert required <= set(rs.RESTRICTIONS)
    assert all(callable(row.check) and row.name == name for name, row in rs.RESTRICTIONS.items())


# --- relay protection ----------------------------------------------------------------------


def _p(text: str, stage: rs.Stage = rs.Stage.RECIPIENT) -> list[rs.RestrictionCall]:
    return rs.parse_restrictions([text], stage=stage)


def test_relay_protection_default_and_tutorial_pass() -> None:
    rs.check_relay_protection(
        _p("permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
           rs.Stage.RELAY), [])
    rs.check_relay_protection([], _p("permit_mynetworks, reject_unauth_destination"))


@pytest.mark.parametrize(("relay", "recipient"), [
    ("", ""),
    ("permit_mynetworks, permit", ""),
    ("", "permit_mynetworks, reject_unlisted_recipient"),
    ("warn_if_reject reject_unauth_destination", ""),
])
def test_relay_protection_refuses_open_relays(relay: str, recipient: str) -> None:
    with pytest.raises(ValueError, match="specify at least one working instance of"):
        rs.check_relay_protection(_p(relay, rs.Stage.RELAY), _p(recipient))


# --- evaluate one list ---------------------------------------------------------------------


def test_evaluate_accepts_strings_and_reports_permit_and_dunno() -> None:
    world = World()
    codes = rs.RejectCodes()
    local = dataclasses.replace(OUTSIDE, client_address="127.0.0.1")
    d = rs.evaluate(["permit_mynetworks", "reject"], local, world, codes, stage=rs.Stage.CLIENT)
    assert (d.action, d.reply, d.restriction) == ("permit", None, "permit_mynetworks")
    d = rs.evaluate(["dunno"], OUTSIDE, world, codes, stage=rs.Stage.CLIENT)
    assert d.action == "dunno" and d.accepted
    d = rs.evaluate(["sleep 3", "reject"], OUTSIDE, world, codes, stage=rs.Stage.CLIENT)
    assert d.action == "reject" and d.sleeps == [3.0]
    assert str(d.reply) == "554 5.7.1 <unknown[203.0.113.5]>: Client host rejected: Access denied"


@pytest.mark.parametrize("names", [
    "reject_unauth_destination", "permit_auth_destination", "defer_unauth_destination",
    "reject_unlisted_recipient", "reject_unknown_recipient_domain",
    "permit_mynetworks, reject_unauth_destination",
])
def test_a_failed_domain_list_table_tempfails_never_accepts(names: str) -> None:
    """A mydestination/relay_domains table that cannot answer: 451 4.3.0 (Postfix's
    reject_dict_retry), whatever reject code is configured, never accept, never 5xx."""
    world = World(class_fail={"example.org"})
    codes = rs.RejectCodes(relay_domains_reject_code=554)
    d = rs.evaluate(_p(names), OUTSIDE, world, codes)
    assert d.action == "defer" and not d.accepted
    assert str(d.reply) == "451 4.3.0 <x@example.org>: Temporary lookup failure"
    ok = rs.evaluate(_p(names), OUTSIDE, World(), codes)
    assert str(ok.reply) != "451 4.3.0 <x@example.org>: Temporary lookup failure"


def test_reject_codes_come_from_the_caller() -> None:
    codes = rs.RejectCodes(relay_domains_reject_code=550, unknown_local_recipient_reject_code=450)
    world = World()
    d = rs.evaluate(["reject_unauth_destination"], OUTSIDE, world, codes)
    assert str(d.reply) == "550 5.7.1 <x@example.org>: Relay access denied"
    state = dataclasses.replace(OUTSIDE, recipient="nobody@example.com")
    d = rs.evaluate(["reject_unlisted_recipient"], state, world, codes)
    assert d.action == "defer"
    assert str(d.reply) == ("450 4.1.1 <nobody@example.com>: Recipient address rejected: "
                            "User unknown in local recipient table")


class _Cfg:
    """Every *_reject_code 451 but reject_code 550; soft_bounce on."""

    def __getitem__(self, param: Param[Any]) -> Any:
        if param.type is ParamType.BOOL:
            return param.name == "soft_bounce"
        if param.type is not ParamType.INT:  # the reply templates and tables
            return param.default_value()
        return {"reject_code": 550}.get(param.name, 451)


def test_reject_codes_from_config() -> None:
    codes = rs.RejectCodes.from_config(_Cfg())
    assert codes.reject_code == 550 and codes.defer_code == 451 and codes.soft_bounce


def test_restrictions_without_their_data_do_nothing() -> None:
    bare = rs.SmtpdState(client_address="203.0.113.5", stage=rs.Stage.CLIENT)
    names = [n for n, row in rs.RESTRICTIONS.items()
             if n not in ("reject", "defer", "defer_if_permit", "defer_if_reject")
             and "unknown_client" not in n and "unknown_reverse_client" not in n
             and n != "reject_plaintext_session"  # a plaintext session is its data
             and not row.needs.table and row.needs.argument is None]
    world = World()
    for name in names:
        d = rs.evaluate([name], bare, world, rs.RejectCodes())
        assert d.accepted, name


# --- DNS: asked as the lists are read, never a second pass ----------------------------------


def test_dns_is_asked_only_for_what_the_restrictions_reach() -> None:
    world = World()
    state = rs.SmtpdState(client_address="203.0.113.5", helo_name="Mail.Example.NET.",
                          sender="a@Sender.Example", recipient="b@example.com")
    calls = _p("reject_unknown_sender_domain, reject_unknown_recipient_domain, "
               "reject_unknown_helo_hostname")
    d = rs.evaluate(calls, state, world, rs.RejectCodes())
    # Folded domains; example.com is ours (final destination), so it is not asked.
    assert world.dns_asked == ["sender.example"]
    assert str(d.reply) == "450 4.1.8 <a@Sender.Example>: Sender address rejected: Domain not found"
    world = World(dns={"sender.example": DnsResult.HAS_ADDRESS})
    rs.evaluate(calls, state, world, rs.RejectCodes())
    assert world.dns_asked == ["sender.example", "mail.example.net"]
    world = World()
    rs.evaluate(_p("reject_non_fqdn_sender"), state, world, rs.RejectCodes())
    assert world.dns_asked == []
    null = dataclasses.replace(state, sender="", helo_name="[192.0.2.1]")
    rs.evaluate(calls, null, world, rs.RejectCodes())
    assert world.dns_asked == []
    # A list that permits first asks nothing further.
    inside = dataclasses.replace(state, client_address="127.0.0.1")
    rs.evaluate(_p("permit_mynetworks, reject_unknown_sender_domain"), inside, world,
                rs.RejectCodes())
    assert world.dns_asked == []


def test_the_evaluation_waits_for_each_answer() -> None:
    state = rs.SmtpdState(client_address="203.0.113.5", sender="a@sender.example",
                          recipient="b@example.com")
    steps = rs.evaluate_steps(_p("reject_unknown_sender_domain"), state, rs.RejectCodes())
    assert next(steps) == AddressClassOf("sender.example")
    assert steps.send(AddressClass.DEFAULT) == DomainDns("sender.example")
    with pytest.raises(StopIteration) as stop:
        steps.send(DnsResult.TEMP_FAIL)
    decision: rs.Decision = stop.value.value
    assert decision.action == "defer"
    assert str(decision.reply) == (
        "450 4.1.8 <a@sender.example>: Sender address rejected: Domain not found")


# --- never an open relay -------------------------------------------------------------------

SAFE_NAMES = [n for n in rs.RESTRICTIONS
              if n not in ("permit", "permit_auth_destination", "check_policy_service")
              and not rs.RESTRICTIONS[n].needs.table]
ELEMENT = st.one_of(
    st.sampled_from(SAFE_NAMES).map(lambda n: example_words(rs.RESTRICTIONS[n])),
    st.integers(0, 3).map(lambda n: ["sleep", str(n)]),
    st.sampled_from(SAFE_NAMES).map(
        lambda n: ["warn_if_reject", *example_words(rs.RESTRICTIONS[n])]),
)
LIST = st.lists(ELEMENT, max_size=6).map(lambda parts: [w for p in parts for w in p])
DNS = st.sampled_from(list(DnsResult))


@settings(max_examples=400, deadline=None)
@given(
    lists=st.fixed_dictionaries({s: LIST for s in rs.DELAYED_STAGES}),
    rcpt=st.sampled_from(["x@example.org", "X@Foreign.Example", "alice@example.com@evil.test",
                          "alice@example.org@example.com", "alice%evil.test@example.com",
                          "u@[198.51.100.7]", "@example.com:u@evil.test"]),
    helo=st.sampled_from([None, "mail.example.net", "bad..name", "[203.0.113.5]"]),
    sender=st.sampled_from([None, "", "a@example.net", "nobody@example.com", "a@evil.test"]),
    client=st.sampled_from(["203.0.113.5", "198.51.100.1", "2001:db8::1", "::ffff:192.0.2.99"]),
    dns=DNS, users_fail=st.booleans(), pipelining=st.booleans(),
    unlisted=st.booleans(), soft=st.booleans(),
)
def test_an_outside_unauthenticated_client_never_relays(
    lists: dict[rs.Stage, list[str]], rcpt: str, helo: str | None, sender: str | None, client: str,
    dns: DnsResult, users_fail: bool, pipelining: bool, unlisted: bool, soft: bool,
) -> None:
    world = World(users_fail=users_fail)
    world.dns = {"example.org": dns, "foreign.example": dns, "evil.test": dns,
                 "example.net": dns, "mail.example.net": dns}
    state = rs.SmtpdState(client_address=client, helo_name=helo, sender=sender, recipient=rcpt,
                          pipelining_violation=pipelining, stage=rs.Stage.RECIPIENT)
    parsed = {stage: rs.parse_restrictions(words, stage=stage) for stage, words in lists.items()}
    d = rs.evaluate_stage(parsed, state, world, rs.RejectCodes(soft_bounce=soft),
                          reject_unlisted_recipient=unlisted, reject_unlisted_sender=unlisted)
    assert not d.accepted
    assert d.reply is not None and d.reply.code >= 400
