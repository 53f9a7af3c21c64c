"""The tutorial's four restriction lists, against a client outside mynetworks."""

from __future__ import annotations

import socket
import time

import pytest

from .conftest import ROOT, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs real local users"),
]

OUTSIDE = "127.0.0.2"  # a loopback address that the test's mynetworks leaves out


class Client:
    def __init__(self, port: int, source: str = OUTSIDE) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                             source_address=(source, 0))
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def server(make_instance, tutorial_main_cf: str):  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =")
    assert inst.start().returncode == 0, inst.log()
    return inst


def test_outside_client_cannot_relay_but_can_deliver_locally(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port)
    assert c.cmd("EHLO milou.example.net").startswith("250-tintin.example.com")
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    started = time.monotonic()
    # Postfix >= 2.10 checks smtpd_relay_restrictions (default: permit_mynetworks,
    # permit_sasl_authenticated, defer_unauth_destination) before the tutorial's
    # smtpd_recipient_restrictions, hence the temporary 454.
    assert c.cmd("RCPT TO:<haddock@example.org>") == (
        "454 4.7.1 <haddock@example.org>: Relay access denied")
    assert time.monotonic() - started >= 0.9  # "sleep 1" of smtpd_client_restrictions
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<personne@example.com>") == (
        "550 5.1.1 <personne@example.com>: Recipient address rejected: "
        "User unknown in local recipient table")
    assert c.cmd("RCPT TO:<tintin@localhost.localdomain>") == "250 2.1.5 Ok"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    log = server.log()
    assert "connect from unknown[127.0.0.2]" in log
    assert "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <haddock@example.org>" in log


def test_sender_and_helo_restrictions(server) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("milou.example.net", "x@nowhere.invalid",
         "450 4.1.8 <x@nowhere.invalid>: Sender address rejected: Domain not found"),
        ("milou.example.net", "tintin",
         "504 5.5.2 <tintin>: Sender address rejected: need fully-qualified address"),
        ("milou.example.net", "personne@example.com",
         "550 5.1.0 <personne@example.com>: Sender address rejected: "
         "User unknown in local recipient table"),
        ("bad..name", "tournesol@example.net",
         "501 5.5.2 <bad..name>: Helo command rejected: Invalid name"),
    ]
    for helo, sender, expected in cases:
        c = Client(server.port)
        c.cmd(f"HELO {helo}")
        assert c.cmd(f"MAIL FROM:<{sender}>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<tintin@example.com>") == expected, (helo, sender)
        c.close()


def test_unauthorized_pipelining_is_rejected(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port)
    c.sock.sendall(b"HELO milou.example.net\r\nMAIL FROM:<tournesol@example.net>\r\n"
                   b"RCPT TO:<tintin@example.com>\r\n")
    assert c.reply() == "250 tintin.example.com"
    assert c.reply() == "250 2.1.0 Ok"
    rcpt = c.reply()
    assert rcpt.startswith("503 5.5.0 ") and "Improper use of SMTP command pipelining" in rcpt
    c.close()


def test_inside_client_may_relay(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, source="127.0.0.1")
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<tintin@nowhere.invalid>") == (
        "450 4.1.2 <tintin@nowhere.invalid>: Recipient address rejected: Domain not found")
    # permit_mynetworks allows relaying (the SMTP client delivers it); an outside client
    # is refused (test_outside_* above and test_relay.py).
    assert c.cmd("RCPT TO:<haddock@example.org>") == "250 2.1.5 Ok"
    assert c.cmd("RSET") == "250 2.0.0 Ok"
    c.close()


def test_unlisted_recipient_accepted_when_smtpd_reject_unlisted_recipient_is_no(
    make_instance, tutorial_main_cf: str  # type: ignore[no-untyped-def]
) -> None:
    ensure_user("tintin")
    # The tutorial's smtpd_recipient_restrictions name reject_unlisted_recipient; without
    # it, only smtpd_reject_unlisted_recipient decides.
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =\n"
                         "smtpd_recipient_restrictions = permit_mynetworks, "
                         "reject_unauth_destination\n"
                         "smtpd_reject_unlisted_recipient = no")
    assert inst.start().returncode == 0, inst.log()
    c = Client(inst.port)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<personne@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<haddock@example.org>") == (
        "454 4.7.1 <haddock@example.org>: Relay access denied")
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    assert "reject: RCPT from unknown[127.0.0.2]: 550" not in inst.log()
