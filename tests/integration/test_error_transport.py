"""An address that resolves to the error or retry transport is refused at RCPT, not
accepted then bounced (backscatter): smtpd asks trivial-rewrite's resolve step
(``delivery.route``), as Postfix's check_rcpt_maps. Each reply is Postfix 3.7.11's,
tried side by side (default_transport = error:remote delivery disabled in test;
transport_maps entries ``error:…`` and ``retry:…``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ROOT, ensure_user
from .test_restrictions import Client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs real local users"),
]


def test_error_and_retry_routes_are_refused_at_rcpt(
    make_instance, tutorial_main_cf: str, workdir: Path,  # type: ignore[no-untyped-def]
) -> None:
    ensure_user("tintin")
    transport = workdir / "transport"
    transport.write_text("relay-a.test retry:later please\n"
                         "relay-b.test error:5.7.1 go away\n")
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =\n"
                         "default_transport = error:remote delivery disabled in test\n"
                         f"transport_maps = texthash:{transport}\n")
    assert inst.start().returncode == 0, inst.log()
    c = Client(inst.port, source="127.0.0.1")
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<haddock@example.org>") == (
        "550 5.1.1 <haddock@example.org>: Recipient address rejected: "
        "remote delivery disabled in test")
    assert c.cmd("RCPT TO:<x@relay-a.test>") == (
        "450 4.1.1 <x@relay-a.test>: Recipient address rejected: later please")
    assert c.cmd("RCPT TO:<x@relay-b.test>") == (
        "550 5.7.1 <x@relay-b.test>: Recipient address rejected: go away")
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    log = inst.wait_log("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1")
    assert "remote delivery disabled in test; from=<tintin@example.com> " \
           "to=<haddock@example.org>" in log, log
    # from outside mynetworks: the (delayed) sender check, then the relay check, answer
    # before the recipient's route is asked, as Postfix's order; the tutorial's
    # reject_unlisted_sender finds this sender's route is error too (5.1.0)
    c = Client(inst.port)
    try:
        c.cmd("EHLO milou.example.net")
        assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<haddock@example.org>") == (
            "550 5.1.0 <tournesol@example.net>: Sender address rejected: "
            "remote delivery disabled in test")
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<haddock@example.org>") == (
            "454 4.7.1 <haddock@example.org>: Relay access denied")
    finally:
        c.close()
