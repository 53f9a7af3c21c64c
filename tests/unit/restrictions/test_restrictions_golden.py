"""Runs restrictions_cases.txt: scripted sessions against the evaluator, line by line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from restrictions_helpers import World, result_line

from postier.dns.result import DnsResult
from postier.restrictions import evaluate as rs

CASES = Path(__file__).with_name("restrictions_cases.txt")
LISTS = {f"{s.value}_restrictions": s for s in rs.DELAYED_STAGES}
DEFAULT_RELAY = "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination"


@dataclasses.dataclass
class Script:
    world: World = dataclasses.field(default_factory=World)
    lists: dict[rs.Stage, str] = dataclasses.field(
        default_factory=lambda: {rs.Stage.RELAY: DEFAULT_RELAY})
    state: rs.SmtpdState = dataclasses.field(
        default_factory=lambda: rs.SmtpdState(client_address="203.0.113.5"))
    soft_bounce: bool = False
    unlisted_recipient: bool = True
    unlisted_sender: bool = False
    classes: dict[str, str] = dataclasses.field(default_factory=dict)
    rbl_reply_maps: tuple[str, ...] = ()

    def decide(self, rcpt: str) -> rs.Decision:
        state = dataclasses.replace(self.state, recipient=rcpt, stage=rs.Stage.RECIPIENT)
        parsed = {stage: rs.parse_restrictions([text], stage=stage, classes=self.classes)
                  for stage, text in self.lists.items()}
        classes = {name: rs.parse_restrictions([text], stage=rs.Stage.RECIPIENT,
                                               classes=self.classes)
                   for name, text in self.classes.items()}
        codes = rs.RejectCodes(soft_bounce=self.soft_bounce, rbl_reply_maps=self.rbl_reply_maps)
        return rs.evaluate_stage(
            parsed, state, self.world, codes,
            reject_unlisted_recipient=self.unlisted_recipient,
            reject_unlisted_sender=self.unlisted_sender, classes=classes,
        )


def _yes(value: str) -> bool:
    return value == "yes"


def load_cases() -> list[tuple[int, str, str]]:
    """(line number, rcpt line, expected) for every evaluation, with the script run so far."""
    out = []
    lines = CASES.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if line.startswith("rcpt "):
            expect = lines[number] if number < len(lines) else ""
            assert expect.startswith("> "), f"line {number + 1}: expected '> RESULT'"
            out.append((number, line, expect[2:]))
    return out


def run_script() -> dict[int, str]:
    """Play the whole file; the result line of each rcpt, by line number."""
    sc = Script()
    results: dict[int, str] = {}
    for number, raw in enumerate(CASES.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ">")):
            continue
        verb, _, rest = line.partition(" ")
        args = rest.split()
        if verb == "reset":
            sc = Script()
        elif verb == "set":
            name, _, value = rest.partition(" ")
            value = "" if value == "-" else value
            if name in LISTS:
                sc.lists[LISTS[name]] = value
            elif name == "relay_domains":
                sc.world.relay_domains = value.split()
            elif name == "relay_recipients":
                sc.world.relay_recipients = set(value.split()) if value else None
            elif name == "relay_recipients_fail":
                sc.world.relay_recipients_fail = _yes(value)
            elif name == "virtual_alias_domains":
                sc.world.virtual_alias_domains = value.split()
            elif name == "virtual_aliases":
                sc.world.virtual_aliases = set(value.split())
            elif name == "users":
                sc.world.users = set(value.split())
            elif name == "users_fail":
                sc.world.users_fail = _yes(value)
            elif name == "soft_bounce":
                sc.soft_bounce = _yes(value)
            elif name == "reject_unlisted_recipient":
                sc.unlisted_recipient = _yes(value)
            elif name == "reject_unlisted_sender":
                sc.unlisted_sender = _yes(value)
            elif name == "rbl_reply_maps":
                sc.rbl_reply_maps = tuple(value.split())
            else:
                raise AssertionError(f"line {number}: unknown setting {name}")
        elif verb == "map":
            table, key, value = rest.split(" ", 2)
            sc.world.tables.setdefault(table, {})[key] = value
        elif verb == "dns":
            sc.world.dns[args[0]] = {"has": DnsResult.HAS_ADDRESS,
                                     "none": DnsResult.NOT_FOUND,
                                     "tempfail": DnsResult.TEMP_FAIL}[args[1]]
        elif verb == "client":
            name = args[1] if len(args) > 1 else "unknown"
            sc.state = dataclasses.replace(sc.state, client_address=args[0], client_name=name,
                                           reverse_client_name=name)
        elif verb == "helo":
            sc.state = dataclasses.replace(sc.state, helo_name=rest)
        elif verb == "mail":
            sc.state = dataclasses.replace(sc.state, sender="" if rest == "<>" else rest)
        elif verb == "sasl":
            sc.state = dataclasses.replace(sc.state, sasl_username=None if rest == "-" else rest)
        elif verb == "pipelining":
            sc.state = dataclasses.replace(sc.state, pipelining_violation=_yes(rest))
        elif verb == "record":  # record NAME TYPE a,b | nodata | tempfail
            name, rdtype, value = args
            sc.world.records[(name, rdtype)] = (
                () if value == "nodata" else value if value == "tempfail"
                else tuple(value.split(",")))
        elif verb == "policy":  # the next answers of the policy service ("fail": none)
            sc.world.policy_actions.append(rest)
        elif verb == "class":
            name, _, text = rest.partition(" ")
            sc.classes[name] = text
        elif verb == "tls":
            sc.state = dataclasses.replace(sc.state, encrypted=_yes(rest))
        elif verb == "count":  # recipients accepted so far in this transaction
            sc.state = dataclasses.replace(sc.state, recipient_count=int(rest))
        elif verb == "rcpt":
            results[number] = result_line(sc.decide(rest))
        else:
            raise AssertionError(f"line {number}: unknown directive {verb}")
    return results


RESULTS = run_script()


@pytest.mark.parametrize(("number", "rcpt", "expected"), load_cases(),
                         ids=lambda v: str(v) if isinstance(v, int) else "")
def test_golden(number: int, rcpt: str, expected: str) -> None:
    assert RESULTS[number] == expected, f"restrictions_cases.txt line {number}: {rcpt}"
