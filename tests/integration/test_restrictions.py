"""The tutorial's four restriction lists, against a client outside mynetworks."""

from __future__ import annotations

import socket
import time

import pytest

from .conftest import OPEN_SOCKETS, ROOT, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs real local users"),
]

OUTSIDE = "127.0.0.2"  # a loopback address that the test's mynetworks leaves out


class Client:
    def __init__(self, port: int, source: str = OUTSIDE) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30,
                                             source_address=(source, 0))
        OPEN_SOCKETS.append(self.sock)
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
        if self.sock in OPEN_SOCKETS:
            OPEN_SOCKETS.remove(self.sock)


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


def test_unauthorized_pipelining_is_rejected(make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    # Postfix < 3.9's default: the violation is remembered, reject_unauth_pipelining
    # refuses at RCPT.
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =\n"
                         "smtpd_forbid_unauth_pipelining = no")
    assert inst.start().returncode == 0, inst.log()
    c = Client(inst.port)
    c.sock.sendall(b"HELO milou.example.net\r\nMAIL FROM:<tournesol@example.net>\r\n"
                   b"RCPT TO:<tintin@example.com>\r\n")
    assert c.reply() == "250 tintin.example.com"
    assert c.reply() == "250 2.1.0 Ok"
    rcpt = c.reply()
    assert rcpt.startswith("503 5.5.0 ") and "Improper use of SMTP command pipelining" in rcpt
    c.close()
    inst.wait_log("improper command pipelining after HELO from unknown[127.0.0.2]: "
                  "MAIL FROM:<tournesol@example.net>\\r\\nRCPT TO:<tintin@example.com>\\r\\n")


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


# --- issue 7, item 8: each reply below is Postfix 3.7's, tried side by side ---------------

SYNC = "554 5.5.0 Error: SMTP protocol synchronization"
PIPELINING = ("503 5.5.0 <unknown[127.0.0.2]>: Client host rejected: "
              "Improper use of SMTP command pipelining")


def read_all(c: Client) -> bytes:
    out = b""
    while chunk := c.sock.recv(65536):
        out += chunk
    return out


def test_addresses_as_sent_postmaster_and_quoted_local_parts(server) -> None:  # type: ignore[no-untyped-def]
    # (a) the restrictions see <tintin> unqualified.
    c = Client(server.port)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<tintin>") == (
        "504 5.5.2 <tintin>: Recipient address rejected: need fully-qualified address")
    c.close()
    # (c) the bare postmaster is exempt from the sender restrictions, nobody else is.
    c = Client(server.port)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tournesol>") == "250 2.1.0 Ok"
    # reject_unlisted_sender comes first in the tutorial's list (as Postfix answers it)
    refused = ("550 5.1.0 <tournesol>: Sender address rejected: "
               "User unknown in local recipient table")
    assert c.cmd("RCPT TO:<tintin@example.com>") == refused
    assert c.cmd("RCPT TO:<postmaster>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<Postmaster>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<postmaster@example.com>") == refused
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    # qualification happens in cleanup: an inside client's <tintin> and
    # <"tintin"@example.com> (b) both reach tintin, from <tintin> qualified with myorigin.
    for rcpt in ("tintin", '"tintin"@example.com'):
        c = Client(server.port, source="127.0.0.1")
        c.cmd("EHLO milou.example.net")
        assert c.cmd("MAIL FROM:<tintin>") == "250 2.1.0 Ok"
        assert c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        assert c.cmd(f"Subject: for {rcpt}\r\n\r\nhi\r\n.").startswith("250 2.0.0 Ok: queued")
        c.close()
    log = server.wait_log("status=sent", count=2)
    assert "from=<tintin@example.com>" in log
    assert "to=<tintin@example.com>, orig_to=<tintin>" in log
    assert "unknown user" not in log
    mbox = server.mailbox("tintin").read_text()
    assert "Subject: for tintin" in mbox and 'Subject: for "tintin"@example.com' in mbox


def test_helo_forms(server) -> None:  # type: ignore[no-untyped-def]
    cases = [
        ("192.0.2.1", "250 2.1.5 Ok"),  # (d) a bare IPv4 address is a valid name
        ("[192.0.2.1]", "250 2.1.5 Ok"),
        ("[IPv6:2001:db8::1]", "250 2.1.5 Ok"),
        ("[300.1.1.1]", "501 5.5.2 <[300.1.1.1]>: Helo command rejected: invalid ip address"),
        ("[IPv6:2001:db8::g]",
         "501 5.5.2 <[IPv6:2001:db8::g]>: Helo command rejected: invalid ip address"),
        ("[::1]", "501 5.5.2 <[::1]>: Helo command rejected: invalid ip address"),
        ("host..example.net", "501 5.5.2 <host..example.net>: Helo command rejected: "
         "Invalid name"),
        ("milou.example.net.", "250 2.1.5 Ok"),
    ]
    for helo, expected in cases:
        c = Client(server.port)
        assert c.cmd(f"EHLO {helo}").startswith("250-")
        assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<tintin@example.com>") == expected, helo
        c.close()


def test_ipv4_client_outside_ipv6_mynetworks(make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    # (e) Debian's default shape; 127.0.0.5 is outside: relaying is refused with the
    # outside client's 454 (smtpd_relay_restrictions' defer_unauth_destination).
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32 [::1]/128 "
                         "[::ffff:127.0.0.0]/104\nmailbox_command =")
    assert inst.start().returncode == 0, inst.log()
    c = Client(inst.port, source="127.0.0.5")
    c.cmd("EHLO milou.example.net")
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<haddock@example.org>") == (
        "454 4.7.1 <haddock@example.org>: Relay access denied")
    c.close()


def test_early_talker(make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    # (h) smtpd_forbid_unauth_pipelining = no: flagged, refused at RCPT.
    inst = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =\n"
                         "smtpd_forbid_unauth_pipelining = no")
    assert inst.start().returncode == 0, inst.log()
    sock = socket.create_connection(("127.0.0.1", inst.port), timeout=30,
                                    source_address=(OUTSIDE, 0))
    sock.sendall(b"EHLO milou.example.net\r\n")  # before the 220
    c = Client.__new__(Client)
    c.sock, c.file = sock, sock.makefile("rb")
    assert c.reply().startswith("220 ")
    assert c.reply().startswith("250-tintin.example.com")
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<tintin@example.com>") == PIPELINING
    assert c.cmd("RCPT TO:<postmaster>") == "250 2.1.5 Ok"  # (c) exempt even from this
    c.close()
    inst.wait_log("improper command pipelining after CONNECT from unknown[127.0.0.2]: "
                  "EHLO milou.example.net\\r\\n")
    # (i) the default, smtpd_forbid_unauth_pipelining = yes: 554 instead of the greeting.
    strict = make_instance(tutorial_main_cf, "mynetworks = 127.0.0.1/32\nmailbox_command =")
    assert strict.start().returncode == 0, strict.log()
    sock = socket.create_connection(("127.0.0.1", strict.port), timeout=30,
                                    source_address=(OUTSIDE, 0))
    sock.sendall(b"EHLO milou.example.net\r\n")
    c = Client.__new__(Client)
    c.sock, c.file = sock, sock.makefile("rb")
    assert read_all(c) == SYNC.encode() + b"\r\n"
    c.close()
    strict.wait_log("improper command pipelining after CONNECT from unknown[127.0.0.2]")


def test_forbid_unauth_pipelining(server) -> None:  # type: ignore[no-untyped-def]
    # (i) Postfix >= 3.9's default: a client that sends without waiting where SMTP
    # requires it is answered 554 5.5.0 and disconnected; inside clients too.
    for source in (OUTSIDE, "127.0.0.1"):
        c = Client(server.port, source=source)
        c.sock.sendall(b"HELO milou.example.net\r\nMAIL FROM:<tournesol@example.net>\r\n")
        assert read_all(c) == SYNC.encode() + b"\r\n"
        c.close()
    server.wait_log("improper command pipelining after HELO from")
    assert "helo=0/1 commands=0/1" in server.log()
    # content sent with DATA, before the 354
    c = Client(server.port, source="127.0.0.1")
    assert c.cmd("EHLO milou.example.net").startswith("250-")
    c.sock.sendall(b"MAIL FROM:<tournesol@example.net>\r\nRCPT TO:<tintin@example.com>\r\n"
                   b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    assert read_all(c) == (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n" + SYNC.encode() + b"\r\n")
    c.close()
    server.wait_log("improper command pipelining after DATA from localhost[127.0.0.1]: "
                    "Subject: x\\r\\n\\r\\nhi\\r\\n.\\r\\n")
    # allowed: MAIL, RCPT, RSET may be followed; the end of DATA and QUIT too
    c = Client(server.port, source="127.0.0.1")
    assert c.cmd("EHLO milou.example.net").startswith("250-")
    c.sock.sendall(b"RSET\r\nMAIL FROM:<tournesol@example.net>\r\n"
                   b"RCPT TO:<tintin@example.com>\r\nDATA\r\n")
    assert [c.reply() for _ in range(4)][3].startswith("354 ")
    c.sock.sendall(b"Subject: fine\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert c.reply().startswith("250 2.0.0 Ok: queued as ")
    assert c.reply() == "221 2.0.0 Bye"
    c.close()


def test_too_many_hops(server) -> None:  # type: ignore[no-untyped-def]
    # (j) hopcount_limit = 50, our own Received: header included.
    for hops, expected in ((48, "250 2.0.0 Ok: queued as "), (49, "554 5.4.0 Error: too many hops"),
                           (60, "554 5.4.0 Error: too many hops")):
        c = Client(server.port, source="127.0.0.1")
        c.cmd("EHLO milou.example.net")
        assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        headers = "".join(f"Received: from h{i} by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                          for i in range(hops))
        assert c.cmd(f"{headers}Subject: loop\r\n\r\nbody\r\n.").startswith(expected), hops
        assert c.cmd("QUIT") == "221 2.0.0 Bye"  # the session goes on
        c.close()
    log = server.wait_log("message rejected: hopcount exceeded", count=2)
    assert "warning: " in log


def test_overlong_command_lines(server) -> None:  # type: ignore[no-untyped-def]
    # (k) line_length_limit = 2048: the command is read up to it, the rest skipped.
    c = Client(server.port, source="127.0.0.1")
    c.cmd("EHLO milou.example.net")
    a = "a" * 3000
    assert c.cmd(f"MAIL FROM:<{a}@example.com>") == "501 5.1.7 Bad sender address syntax"
    assert c.cmd("MAIL FROM:<tournesol@example.net>") == "250 2.1.0 Ok"
    assert c.cmd(f"RCPT TO:<{a}@example.com>") == "501 5.1.3 Bad recipient address syntax"
    assert c.cmd(f"NOOP {a}") == "250 2.0.0 Ok"
    assert c.cmd(f"FOO {a}") == "500 5.5.2 Error: command not recognized"
    assert c.cmd(f"RSET {a}") == "501 5.5.4 Syntax: RSET"
    assert c.cmd(f"HELO {a}") == "250 tintin.example.com"
    assert c.cmd(f"QUIT {a}") == "221 2.0.0 Bye"
    c.close()
    server.wait_log("request longer than 2048: MAIL FROM:<aaaaaaaaaaaaaaaaaaa...")
