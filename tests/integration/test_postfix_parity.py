"""Faults found side by side with Postfix 3.7.11, each checked against what Postfix did.

Missing headers for local clients, alias expansion in logs and bounces, the notices'
Received:/From:, non-SMTP commands, VRFY through the recipient restrictions, a
Postfix-made aliases.db, program names in the log.
"""

from __future__ import annotations

import re
import socket

import pytest

from .conftest import ROOT, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs real local users"),
]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.1/32
smtpd_recipient_restrictions = reject_non_fqdn_recipient, permit_mynetworks,
    reject_unauth_destination
mailbox_command =
"""


class Client:
    def __init__(self, port: int, source: str) -> None:
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
def server(make_instance, workdir):  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    aliases = workdir / "aliases"
    aliases.write_text("ghost: nosuchuser\n")
    # a Berkeley DB file as Postfix's newaliases leaves it, without postier's .pdb
    (workdir / "aliases.db").write_bytes(b"\0" * 12 + b"\x61\x15\x06\x00" + b"\0" * 100)
    inst = make_instance(MAIN_CF, f"alias_maps = hash:{aliases}\n")
    started = inst.start()
    assert started.returncode == 0, started.stderr + inst.log()
    return inst


def test_local_client_alias_bounce_and_notice_as_postfix(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, "127.0.0.1")  # one of this host's addresses
    c.cmd("EHLO client.example.net")
    assert c.cmd("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<ghost@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354 ")
    queued = c.cmd("Subject: hi\r\n\r\nbody\r\n.")
    qid = queued.rsplit(" ", 1)[1]
    c.cmd("QUIT")
    c.close()
    log = server.wait_log("status=sent", count=2)
    # the alias: logged and bounced for the final recipient, as Postfix 3.7.11
    assert re.search(rf"postfix/local\[\d+\]: {qid}: to=<nosuchuser@example\.com>, "
                     r"orig_to=<ghost@example\.com>, relay=local, .*dsn=5\.1\.1, "
                     r'status=bounced \(unknown user: "nosuchuser"\)', log), log
    assert re.search(rf"postfix/bounce\[\d+\]: {qid}: sender non-delivery notification: ",
                     log), log
    assert re.search(rf"postfix/qmgr\[\d+\]: {qid}: removed", log), log
    # the Postfix-made aliases.db: read from the source, with a warning
    assert "reading the source file" in log and "postier postalias" in log
    mbox = server.mailbox("tintin").read_text()
    original, notice = mbox.split("\nFrom MAILER-DAEMON", 1)
    # missing headers added for a client on this host (permit_inet_interfaces)
    headers = original.split("\n\n", 1)[0]
    assert re.search(rf"\nSubject: hi\nMessage-Id: <\d{{14}}\.{qid}@tintin\.example\.com>\n"
                     r"Date: .+\nFrom: tintin@example\.com$", headers), headers
    assert "\nTo:" not in headers
    # the notice: Postfix's local Received:, MAILER-DAEMON@$myorigin, the expansion
    assert re.search(r"\nReceived: by tintin\.example\.com \(Postfix\)\n\tid \w+; ", notice)
    assert "\nFrom: Mail Delivery System <MAILER-DAEMON@example.com>\n" in notice
    assert ("<nosuchuser@example.com> (expanded from <ghost@example.com>): unknown user:\n"
            '    "nosuchuser"') in notice
    assert "Final-Recipient: rfc822; nosuchuser@example.com\n" in notice
    assert "Original-Recipient: rfc822;ghost@example.com\n" in notice


def test_non_smtp_command_vrfy_and_options_as_postfix(server) -> None:  # type: ignore[no-untyped-def]
    c = Client(server.port, "127.0.0.2")  # outside mynetworks
    c.cmd("EHLO client.example.net")
    assert c.cmd("VRFY tintin") == (
        "504 5.5.2 <tintin>: Recipient address rejected: need fully-qualified address")
    assert c.cmd("VRFY <tintin@example.com>") == "252 2.0.0 <tintin@example.com>"
    assert c.cmd("VRFY nosuch@example.com") == (
        "550 5.1.1 <nosuch@example.com>: Recipient address rejected: "
        "User unknown in local recipient table")
    assert c.cmd("MAIL FROM:<x@example.net> FOO=bar") == "555 5.5.4 Unsupported option: FOO=bar"
    assert c.cmd("From: foo@bar") == "221 2.7.0 Error: I can break rules, too. Goodbye."
    assert c.file.readline() == b""  # the session is closed
    c.close()
    server.wait_log("non-SMTP command")
    log = server.wait_log("disconnect from")
    assert re.search(r"postfix/smtpd\[\d+\]: warning: non-SMTP command from "
                     r"\S+\[127\.0\.0\.2\]: From: foo@bar\n", log), log
    assert re.search(r"NOQUEUE: reject: VRFY from \S+\[127\.0\.0\.2\]: 504 5\.5\.2 <tintin>: "
                     r"Recipient address rejected: need fully-qualified address; to=<tintin> "
                     r"proto=ESMTP helo=<client\.example\.net>", log), log
    assert re.search(r"disconnect from \S+\[127\.0\.0\.2\] ehlo=1 .*unknown=0/1", log), log
