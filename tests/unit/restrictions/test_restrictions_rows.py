"""Every restriction row's declared stages and needs, checked against what its check does."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from restrictions_helpers import World, example_words

from postier.dns.result import DnsResult
from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.rewrite.address import fold_domain, parse_address

FIELDS = {f.name for f in dataclasses.fields(rs.SmtpdState)} - {"stage"}


class RecordingState(rs.SmtpdState):
    """A state that notes which of its fields a check reads."""

    def __getattribute__(self, name: str) -> Any:
        if name in FIELDS:
            object.__getattribute__(self, "__dict__").setdefault("_reads", set()).add(name)
        return object.__getattribute__(self, name)

    @property
    def reads(self) -> set[str]:
        found: set[str] = object.__getattribute__(self, "__dict__").get("_reads", set())
        return found


def recording(**fields: Any) -> RecordingState:
    return RecordingState(**fields)


@dataclasses.dataclass
class RecordingFacts:
    """Answers every lookup as a stranger would be answered, and notes what was asked."""

    # The FULL sessions' other domains are relay_domains (relay_recipient_maps is asked).
    world: World = dataclasses.field(default_factory=lambda: World(
        relay_domains=["sender.example", "rcpt.example"], relay_recipients=set()))
    asked: list[lk.Lookup] = dataclasses.field(default_factory=list)

    def answer(self, lookup: lk.Lookup) -> lk.Answer:
        self.asked.append(lookup)
        match lookup:
            case lk.InMyNetworks():
                return False
            case lk.LocalRecipient():
                return False
            case lk.DomainDns():
                return DnsResult.NOT_FOUND
            case lk.TableLookup():
                return None
            case lk.DnsRecords(name=name, rdtype=rdtype):
                # every DNS list lists everyone; every name has one host with one address
                if name.endswith(".list.example"):
                    return ("127.0.0.2",) if rdtype == "A" else ("listed",)
                return {"A": ("192.0.2.9",), "AAAA": (), "MX": ("mx.example",),
                        "NS": ("ns.example",), "TXT": ()}[rdtype]
        return lk.answer(self.world, lookup)


def play(row: rs.Restriction, state: rs.SmtpdState, stage: rs.Stage,
         facts: RecordingFacts) -> rs.Outcome:
    ctx = rs.Ctx(state, rs.RejectCodes(), stage, rs._Run())
    words = example_words(row)
    result = row.check(ctx, words[1] if len(words) > 1 else None)
    if isinstance(result, rs.Outcome):
        return result
    reply: lk.Answer = None
    while True:
        try:
            lookup = result.send(reply)
        except StopIteration as stop:
            out: rs.Outcome = stop.value
            return out
        reply = facts.answer(lookup)


# Two sessions that between them make every row ask everything it may ask.
FULL = [
    dict(client_address="203.0.113.5", client_name="unknown", reverse_client_name="unknown",
         helo_name="Mail.Example.NET", sender="a@Sender.Example", recipient="nobody@example.com",
         sasl_username="tintin", pipelining_violation=True, encrypted=True,
         ccert_subject="client", ccert_issuer="CA", ccert_fingerprint="AB:CD",
         ccert_pubkey_fingerprint="EF:01", ccert_trusted=True),
    dict(client_address="203.0.113.6", client_name="mx.client.example",
         reverse_client_name="mx.client.example", helo_name="bad..name",
         sender="nobody@example.com", recipient="b@Rcpt.Example"),
]


def _available(stage: rs.Stage) -> set[str]:
    """The state fields known in a list of ``stage`` (plus SASL, checked apart)."""
    known = {"sasl_username"}
    for part, fields in rs.STATE_FIELDS.items():
        if part.rank <= stage.rank:
            known |= fields
    return known


def _trimmed(fields: dict[str, Any], stage: rs.Stage) -> dict[str, Any]:
    """``fields`` with what ``stage`` cannot know yet left out."""
    known = _available(stage)
    return {k: v for k, v in fields.items() if k in known or k == "client_address"}


ROWS = list(rs.RESTRICTIONS.values())


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_row_asks_exactly_what_it_declares(row: rs.Restriction) -> None:
    asked: set[lk.Ask] = set()
    for fields, stage in itertools.product(FULL, {row.needs.state, rs.Stage.RECIPIENT}):
        facts = RecordingFacts()
        play(row, recording(**fields), stage, facts)
        asked |= {lookup.ask for lookup in facts.asked}
        for lookup in facts.asked:
            if isinstance(lookup, lk.DomainDns):
                assert row.needs.dns is not None, row.name
                about = {rs.Stage.HELO: fields["helo_name"], rs.Stage.SENDER: fields["sender"],
                         rs.Stage.RECIPIENT: fields["recipient"]}[row.needs.dns]
                domain = about if row.needs.dns is rs.Stage.HELO else parse_address(about).domain
                assert lookup.domain == fold_domain(domain or ""), row.name
    assert asked == set(row.needs.asks), row.name
    assert (row.needs.dns is not None) == (lk.Ask.DNS in row.needs.asks), row.name
    assert row.needs.table == (lk.Ask.TABLE in row.needs.asks), row.name


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_a_row_reads_only_the_state_of_the_stages_it_may_run_in(row: rs.Restriction) -> None:
    reads: set[str] = set()
    for stage in row.stages:
        for fields in FULL:
            state = recording(**_trimmed(fields, stage))
            play(row, state, stage, RecordingFacts())
            if not row.needs.whole_state:  # a policy service is sent what is known
                assert state.reads <= _available(stage), (row.name, stage, state.reads)
            reads |= state.reads
    assert ("sasl_username" in reads) == row.needs.sasl, row.name
    if row.needs.state is not rs.Stage.CLIENT:  # it does read the data it declares
        assert reads & rs.STATE_FIELDS[row.needs.state], row.name


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_parse_allows_a_row_exactly_in_its_stages(row: rs.Restriction) -> None:
    words = example_words(row)
    for stage in rs.Stage:
        if stage in row.stages:
            assert rs.parse_restrictions(words, stage=stage, delay_reject=False)
        else:
            with pytest.raises(ValueError, match=row.needs.state.value):
                rs.parse_restrictions(words, stage=stage, delay_reject=False)
        if stage in rs.DELAYED_STAGES:  # smtpd_delay_reject = yes: all of them at RCPT
            assert rs.parse_restrictions(words, stage=stage)


def test_relay_guards_refuse_a_stranger_relaying() -> None:
    guards = [row for row in ROWS if row.relay_guard]
    assert {row.name for row in guards} == {
        "reject_unauth_destination", "defer_unauth_destination", "reject", "defer",
        "defer_if_permit"}
    stranger = rs.SmtpdState(client_address="203.0.113.5", recipient="x@example.org")
    for row in guards:
        d = rs.evaluate([row.name], stranger, World(), rs.RejectCodes())
        assert not d.accepted and d.reply is not None and d.reply.code >= 400, row.name
    for row in ROWS:  # a list of one guard is enough for Postfix's start-up check
        assert rs.has_relay_protection([rs.RestrictionCall(row.name)]) == row.relay_guard
