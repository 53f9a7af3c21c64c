"""Address forms side by side with Postfix 3.7: the percent hack and the bang path in a
local domain (allow_percent_hack, swap_bangpath: relayed from inside mynetworks, "Relay
access denied" from outside), and RCPT/MAIL paths with blanks, comments, escapes, quoted
parts, source routes, several addresses and empty parts. Every expected reply is the
one Postfix 3.7 gave to the same command."""

from __future__ import annotations

import pytest

from .conftest import ROOT, ensure_user
from .test_restrictions import Client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs real local users"),
]

OUTSIDE = "127.0.0.195"  # left out of the test's mynetworks


@pytest.fixture
def server(make_instance, tutorial_main_cf: str):  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =")
    assert inst.start().returncode == 0, inst.log()
    return inst


def test_percent_hack_and_bang_path_from_outside_are_relay_attempts(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, source=OUTSIDE)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<x@example.org>") == "250 2.1.0 Ok"
    for rcpt in ("victim%example.org@example.com", "example.org!victim3@example.com",
                 "victim%example.org@tintin.example.com"):
        assert c.cmd(f"RCPT TO:<{rcpt}>") == f"454 4.7.1 <{rcpt}>: Relay access denied"
    # a local user stays local
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    c.close()


def test_percent_hack_and_bang_path_from_inside_are_relayed(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, source="127.0.0.1")
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<victim%example.org@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<example.org!victim3@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: routed\r\n\r\nbody\r\n.").startswith("250 2.0.0 Ok: queued as ")
    c.cmd("QUIT")
    c.close()
    # queued for the resolved addresses, the addresses as sent kept as orig_to
    log = server.wait_log("to=<victim3@example.org>, orig_to=<example.org!victim3@example.com>")
    assert "to=<victim@example.org>, orig_to=<victim%example.org@example.com>" in log


def test_percent_hack_off_is_still_routing(make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =\n"
                         "allow_percent_hack = no\nswap_bangpath = no")
    assert inst.start().returncode == 0, inst.log()
    c = Client(inst.port, source=OUTSIDE)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<x@example.org>") == "250 2.1.0 Ok"
    # not rewritten, the address still holds sender-specified routing: never an
    # authorized destination (Postfix 3.7 with both parameters "no": the same 454)
    for rcpt in ("victim%example.org@example.com", "example.org!victim3@example.com"):
        assert c.cmd(f"RCPT TO:<{rcpt}>") == f"454 4.7.1 <{rcpt}>: Relay access denied"
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    c.close()


# (RCPT path, Postfix 3.7's reply from outside mynetworks after MAIL FROM:<x@example.org>)
RCPT_FORMS = [
    ("<victim@example.org >", "454 4.7.1 <victim@example.org>: Relay access denied"),
    ("< victim@example.org>", "454 4.7.1 <victim@example.org>: Relay access denied"),
    ("<victim@example.org(comment)>", "454 4.7.1 <victim@example.org>: Relay access denied"),
    ("<victim@example.org\\@example.com>",
     "454 4.7.1 <victim@example.org@example.com>: Relay access denied"),
    ('<"victim@example.org"@example.com>',
     "454 4.7.1 <victim@example.org@example.com>: Relay access denied"),
    ("<@:victim@example.org>", "454 4.7.1 <victim@example.org>: Relay access denied"),
    ("<tintin@@example.com>", "501 5.1.3 Bad recipient address syntax"),
    ("<victim%@example.com>", "501 5.1.3 Bad recipient address syntax"),
    ("<%x@example.com>", "454 4.7.1 <%x@example.com>: Relay access denied"),
    ("<a b@example.com>", "501 5.1.3 Bad recipient address syntax"),
    ("<x@>", "501 5.1.3 Bad recipient address syntax"),
    ("<a@[1.2.3.4>", "454 4.7.1 <a@[1.2.3.4]>: Relay access denied"),
    ("<victim(x)@example.com>",
     "550 5.1.1 <victim@example.com>: Recipient address rejected: "
     "User unknown in local recipient table"),
    ('<"victim"@example.com>',
     "550 5.1.1 <victim@example.com>: Recipient address rejected: "
     "User unknown in local recipient table"),
    ("<a@example.org,tintin@example.com>", "501 5.1.3 Bad recipient address syntax"),
    ("<a@example.org;tintin@example.com>", "501 5.1.3 Bad recipient address syntax"),
    ("<tintin@[127.000.000.001]>", "250 2.1.5 Ok"),
]


def test_rcpt_address_forms_as_postfix(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, source=OUTSIDE)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<x@example.org>") == "250 2.1.0 Ok"
    got = [(path, c.cmd(f"RCPT TO:{path}")) for path, _ in RCPT_FORMS]
    assert got == RCPT_FORMS
    c.close()


def test_mail_address_forms_as_postfix(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, source=OUTSIDE)
    c.cmd("EHLO milou.example.net")
    for path, expected in [("<x@example.org >", "250 2.1.0 Ok"),
                           ("<x(comment)@example.org>", "250 2.1.0 Ok"),
                           # not a local domain: nothing to resolve, example.org is fine
                           ("<x@@example.org>", "250 2.1.0 Ok"),
                           ("<victim%@example.com>", "501 5.1.7 Bad sender address syntax"),
                           ("<x@>", "501 5.1.7 Bad sender address syntax"),
                           ("<x@example.org,y@example.org>",
                            "501 5.1.7 Bad sender address syntax")]:
        assert c.cmd(f"MAIL FROM:{path}") == expected, path
        if expected.startswith("250"):
            assert c.cmd("RSET") == "250 2.0.0 Ok"
    c.close()
