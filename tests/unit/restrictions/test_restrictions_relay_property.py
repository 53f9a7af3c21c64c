"""Property: an outside client never relays unless permit_mynetworks,
permit_sasl_authenticated (with a login) or an access(5) OK entry that matched let it.

Random restriction lists drawn from the tutorial's vocabulary, the access tables
(check_client/helo/sender/recipient_access with random entries, restriction classes
among the results), the server-access tables, DNS block and allow lists (every
client listed), for random outside clients, senders and foreign recipients.
"""

from __future__ import annotations

import dataclasses

from hypothesis import example, given, settings
from hypothesis import strategies as st
from restrictions_helpers import World

from postier.restrictions import evaluate as rs

TUTORIAL = [
    "permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_pipelining",
    "reject_invalid_helo_hostname", "reject_non_fqdn_helo_hostname", "reject_unlisted_sender",
    "reject_unknown_sender_domain", "reject_non_fqdn_sender", "reject_unlisted_recipient",
    "reject_unknown_recipient_domain", "reject_non_fqdn_recipient", "reject_unauth_destination",
    "defer_unauth_destination", "warn_if_reject reject", "sleep 1",
    "permit_dnswl_client list.example",
    "permit_rhswl_client list.example", "reject_rbl_client list.example",
    "reject_multi_recipient_bounce", "permit_auth_destination", "dunno",
    "check_client_access inline:t", "check_helo_access inline:t", "check_sender_access inline:t",
    "check_recipient_access inline:t", "check_reverse_client_hostname_access inline:t",
    "check_sender_mx_access inline:t", "check_client_a_access inline:t", "strict", "open",
]
ACTIONS = ["OK", "REJECT", "DUNNO", "HOLD", "permit_auth_destination", "open", "strict",
           "reject_unauth_destination", "PREPEND X-Test: 1", "DEFER_IF_REJECT", "200"]
KEYS = ["203.0.113.5", "203.0.113", "client.example", "mail.example.net", "evil.test",
        "a@evil.test", "x@example.org", "example.org", "x@", "198.51.100.1", "mx.example"]

LIST = st.lists(st.sampled_from(TUTORIAL), max_size=5).map(", ".join)
# The relay lists end with a guard half the time, as the tutorial's do: what comes
# before it must not let a stranger past it.
GUARDED = st.tuples(LIST, st.sampled_from(["", ", reject_unauth_destination"])).map("".join)


class RecordingWorld(World):
    """Notes the table lookups that found an OK-like value (what may permit relaying)."""

    ok_found: bool = False

    def lookup(self, table: str, key: str) -> str | None:
        value = super().lookup(table, key)
        if value is not None and value.split()[0].upper() in ("OK", "PERMIT", "200", "OPEN"):
            self.ok_found = True
        if value == "open":  # a class that permits
            self.ok_found = True
        return value


def _only(stage: rs.Stage, text: str) -> dict[rs.Stage, str]:
    return {s: (text if s is stage else "") for s in rs.DELAYED_STAGES}


# The allow lists stop at reject_unauth_destination (postconf(5) permit_dnswl_client).
@example(lists=_only(rs.Stage.RELAY, "permit_dnswl_client list.example, "
                                     "reject_unauth_destination"),
         table={}, rcpt="x@example.org", helo=None, sender="", client=("203.0.113.5", "unknown"),
         sasl=None, hack=(True, True))
@example(lists=_only(rs.Stage.RECIPIENT, "permit_rhswl_client list.example, "
                                         "reject_unauth_destination"),
         table={}, rcpt="x@example.org", helo=None, sender="",
         client=("203.0.113.5", "client.example"), sasl=None,
         hack=(True, True))
# The percent hack and the bang path in a local domain: resolved, the destination is
# somebody else's (Postfix: 454 4.7.1 Relay access denied from outside).
@example(lists=_only(rs.Stage.RELAY, "reject_unlisted_recipient, permit_auth_destination"),
         table={}, rcpt="victim%example.org@example.com", helo=None, sender="",
         client=("203.0.113.5", "unknown"), sasl=None, hack=(True, True))
@example(lists=_only(rs.Stage.RECIPIENT, "permit_auth_destination"),
         table={}, rcpt="example.org!victim@example.com", helo=None, sender="",
         client=("203.0.113.5", "unknown"), sasl=None, hack=(False, False))
@settings(max_examples=500, deadline=None)
@given(
    lists=st.fixed_dictionaries({rs.Stage.CLIENT: LIST, rs.Stage.HELO: LIST,
                                 rs.Stage.SENDER: LIST, rs.Stage.RELAY: GUARDED,
                                 rs.Stage.RECIPIENT: GUARDED}),
    table=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(ACTIONS), max_size=5),
    rcpt=st.sampled_from(["x@example.org", "X@Foreign.Example", "alice@example.org@example.com",
                          "u@[198.51.100.7]", "@example.com:u@evil.test",
                          # sender-specified routing in a local domain (percent hack,
                          # bang path, quoted "@", several hops, a literal of ours)
                          "victim%example.org@example.com", "example.org!victim@example.com",
                          "victim%example.org%tintin.example.com@example.com",
                          "example.org!victim%tintin.example.com@example.com",
                          "victim%example.org@[127.0.0.1]", "victim%example.org",
                          "example.org!victim", "a%b%example.org@localhost",
                          "victim@example.org@tintin.example.com"]),
    helo=st.sampled_from([None, "mail.example.net", "bad..name", "[203.0.113.5]"]),
    sender=st.sampled_from(["", "a@example.net", "a@evil.test"]),
    client=st.sampled_from([("203.0.113.5", "client.example"), ("198.51.100.1", "unknown"),
                            ("2001:db8::1", "unknown")]),
    sasl=st.sampled_from([None, "tintin"]),
    hack=st.tuples(st.booleans(), st.booleans()),
)
def test_never_relays_without_a_permit_that_allows_it(
    lists: dict[rs.Stage, str], table: dict[str, str], rcpt: str, helo: str | None,
    sender: str, client: tuple[str, str], sasl: str | None,
    hack: tuple[bool, bool],
) -> None:
    world = RecordingWorld()
    world.tables = {"inline:t": dict(table)}
    classes_text = {"open": "permit", "strict": "reject_unauth_destination"}
    names = list(classes_text)
    classes = {n: rs.parse_restrictions([t], stage=rs.Stage.RECIPIENT, classes=names)
               for n, t in classes_text.items()}
    parsed = {stage: rs.parse_restrictions([text], stage=stage, classes=names)
              for stage, text in lists.items()}
    state = rs.SmtpdState(client_address=client[0], client_name=client[1],
                          reverse_client_name=client[1], helo_name=helo, sender=sender,
                          recipient=rcpt, sasl_username=sasl, stage=rs.Stage.RECIPIENT)
    codes = rs.RejectCodes(allow_percent_hack=hack[0], swap_bangpath=hack[1])
    d = rs.evaluate_stage(parsed, state, world, codes, classes=classes)
    if not d.accepted:
        return
    everything = " ".join(lists.values())
    allowed = (
        world.ok_found
        or "open" in everything  # the class that permits, named in a list
        or (sasl is not None and "permit_sasl_authenticated" in everything)
        # without a relay guard in the lists, smtpd adds permit_mynetworks,
        # permit_sasl_authenticated, reject_unauth_destination
        or (sasl is not None and not rs.has_relay_protection(
            parsed[rs.Stage.RELAY], parsed[rs.Stage.RECIPIENT]))
    )
    assert allowed, (dataclasses.asdict(d), lists, table)
