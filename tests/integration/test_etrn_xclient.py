"""ETRN, XCLIENT, XFORWARD and smtpd_delay_reject = no against a running postier.

Expected replies are Postfix 3.7's to the same commands (side by side, issue 7). The
remote host of the ETRN test is a ``peers.ScriptedSmtp`` on 127.61.0.2, reached through
``transport_maps`` (no DNS record needed), down when the message is first tried.
"""

from __future__ import annotations

import re
import smtplib
import socket
import time

import pytest

from .conftest import ROOT, Instance
from .peers import ScriptedSmtp, refused_port
from .test_relay import send, started, status_line

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="postier starts as root")]

QID = r"[0-9A-F]{6,}"


class Chat:
    """A raw SMTP client: what smtplib hides (a refused greeting, a 220 to XCLIENT)."""

    def __init__(self, inst: Instance) -> None:
        self.sock = socket.create_connection(("127.0.0.1", inst.port), timeout=30)
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> str:
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError("closed: " + " | ".join(lines))
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return "\n".join(lines)

    def __call__(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.sock.close()


def in_deferred(inst: Instance, queue_id: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((inst.queue_dir / "deferred").rglob(queue_id)):
            return True
        time.sleep(0.05)
    return False


def test_etrn_flushes_the_deferred_mail_of_a_site_whose_relay_is_back(
        make_instance, workdir) -> None:
    table = workdir / "transport"
    table.write_text("etrn.test smtp:[127.61.0.2]:2526\n")
    refused_port("127.61.0.2", 2526)
    # Long backoff and scan delay: only ETRN can make the message be tried again soon.
    inst = started(make_instance, f"transport_maps = texthash:{table}\n"
                                  "relay_domains = etrn.test\n"
                                  "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\n"
                                  "queue_run_delay = 1h\n")
    qid = send(inst, "tintin@example.com", ["haddock@etrn.test"])
    status_line(inst, qid, "haddock@etrn.test", "deferred")
    assert in_deferred(inst, qid), inst.log()
    with ScriptedSmtp("127.61.0.2", 2526, name="etrn.test") as mx:
        chat = Chat(inst)
        ehlo = chat("EHLO client.example.net").split("\n")
        assert ehlo[ehlo.index("250-VRFY") + 1] == "250-ETRN"  # after VRFY, as Postfix
        assert not any("XCLIENT" in line or "XFORWARD" in line for line in ehlo)
        assert chat("ETRN") == "500 Syntax: ETRN domain"
        assert chat("ETRN -bad") == "501 Error: invalid parameter syntax"
        assert chat("ETRN other.test") == "459 <other.test>: service unavailable"
        assert chat("MAIL FROM:<tintin@example.com>") == "250 2.1.0 Ok"
        assert chat("ETRN etrn.test") == "503 Error: MAIL transaction in progress"
        assert chat("RSET") == "250 2.0.0 Ok"
        time.sleep(1)
        assert not mx.transactions  # nothing retries by itself
        assert chat("ETRN @etrn.test") == "250 Queuing started"
        [tx] = mx.wait(1, timeout=30)
        assert tx.recipients == ["haddock@etrn.test"]
        assert chat("QUIT").startswith("221")
        chat.close()
        status_line(inst, qid, "haddock@etrn.test", "sent")
    assert "warning: reject: ETRN other.test... from " in inst.log()
    assert re.search(r"disconnect from \S+ ehlo=1 mail=1 rset=1 etrn=1/5 quit=1", inst.log())


def test_etrn_restrictions_and_helo_required(make_instance) -> None:
    inst = started(make_instance, "relay_domains = etrn.test\nsmtpd_helo_required = yes\n"
                                  "smtpd_etrn_restrictions = reject\n")
    chat = Chat(inst)
    assert chat("ETRN etrn.test") == "503 Error: send HELO/EHLO first"
    chat("EHLO client.example.net")
    assert chat("ETRN etrn.test") == (
        "554 5.7.1 <etrn.test>: Etrn command rejected: Access denied")
    chat.close()
    inst.wait_log("reject: ETRN from ")


def test_xclient_and_xforward_are_refused_by_default(make_instance) -> None:
    inst = started(make_instance)
    chat = Chat(inst)
    ehlo = chat("EHLO client.example.net")
    assert "XCLIENT" not in ehlo and "XFORWARD" not in ehlo
    assert chat("XCLIENT ADDR=192.0.2.66") == "550 5.7.0 Error: insufficient authorization"
    assert chat("XFORWARD ADDR=192.0.2.66") == "550 5.7.0 Error: insufficient authorization"
    assert chat("XCLIENT") == "501 5.5.4 Syntax: XCLIENT attribute=value..."
    chat.close()


def test_xclient_changes_what_check_client_access_and_received_see(
        make_instance, workdir) -> None:
    table = workdir / "clients"
    table.write_text("192.0.2.66 REJECT xclient saw me\n")
    inst = started(make_instance, "smtpd_authorized_xclient_hosts = 127.0.0.1\n"
                                  f"smtpd_client_restrictions = check_client_access "
                                  f"texthash:{table}\n")
    chat = Chat(inst)
    ehlo = chat("EHLO client.example.net").split("\n")
    assert ("250-XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"
            in ehlo)
    assert not any("XFORWARD" in line for line in ehlo)
    assert chat("XCLIENT FOO=bar") == "501 5.5.4 Bad XCLIENT attribute name: FOO"
    assert chat("XCLIENT ADDR=bad") == "501 5.5.4 Bad ADDR syntax: bad"
    # inet_protocols = ipv4 (Postfix 3.7 side by side): an IPv6 client is refused
    assert chat("XCLIENT ADDR=IPV6:2001:db8::1") == (
        "501 5.5.4 Bad ADDR syntax: IPV6:2001:db8::1")
    assert chat("XCLIENT DESTADDR=IPV6:2001:db8::1") == (
        "501 5.5.4 Bad DESTADDR syntax: IPV6:2001:db8::1")
    assert chat("XCLIENT ADDR=192.0.2.66 NAME=spam.example") == inst_greeting(chat)
    # the new client is not authorized: no second XCLIENT
    assert chat("XCLIENT ADDR=127.0.0.1") == "550 5.7.0 Error: insufficient authorization"
    chat("EHLO spam.example")
    assert chat("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok"
    assert chat("RCPT TO:<tintin@example.com>") == (
        "554 5.7.1 <spam.example[192.0.2.66]>: Client host rejected: xclient saw me")
    chat.close()
    inst.wait_log("NOQUEUE: reject: RCPT from spam.example[192.0.2.66]: 554 5.7.1")

    chat = Chat(inst)
    assert chat("XCLIENT ADDR=192.0.2.7 NAME=h.example HELO=xh.example LOGIN=joe") == (
        inst_greeting(chat))
    chat("EHLO real.example")
    assert chat("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok"
    assert chat("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert chat("DATA").startswith("354")
    assert re.match(rf"250 2\.0\.0 Ok: queued as {QID}$",
                    chat("Subject: xclient\r\n\r\nBonjour.\r\n."))
    chat("QUIT")
    chat.close()
    log = inst.wait_log("status=sent")
    assert re.search(rf"{QID}: client=h\.example\[192\.0\.2\.7\], sasl_method=XCLIENT, "
                     "sasl_username=joe", log), log
    text = _wait_mailbox(inst, "tintin")
    assert re.search(r"Received: from real\.example \(h\.example \[192\.0\.2\.7\]\)\n"
                     r"\tby tintin\.example\.com \(Postfix\) with ESMTPA id ", text), text


def inst_greeting(chat: Chat) -> str:
    return chat.greeting  # XCLIENT is answered with the session's greeting


def _wait_mailbox(inst: Instance, user: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if inst.mailbox(user).exists() and inst.mailbox(user).read_text():
            return inst.mailbox(user).read_text()
        time.sleep(0.05)
    raise AssertionError(f"no mail for {user}:\n{inst.log()}")


def test_xforward_attributes_go_with_the_message_not_into_received(make_instance) -> None:
    inst = started(make_instance, "smtpd_authorized_xforward_hosts = 127.0.0.0/8\n")
    chat = Chat(inst)
    ehlo = chat("EHLO client.example.net")
    assert "250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT" in ehlo.split("\n")
    assert chat("XFORWARD SOURCE=OTHER") == "501 5.5.4 Bad SOURCE syntax: OTHER"
    assert chat("XFORWARD NAME=fw.example ADDR=198.51.100.9 PORT=2525 PROTO=ESMTP "
                "HELO=fwhelo.example IDENT=abc123 SOURCE=REMOTE") == "250 2.0.0 Ok"
    assert chat("MAIL FROM:<someone@example.net>") == "250 2.1.0 Ok"
    assert chat("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert chat("DATA").startswith("354")
    assert chat("Subject: xforward\r\n\r\nBonjour.\r\n.").startswith("250 2.0.0 Ok: queued")
    chat("QUIT")
    chat.close()
    log = inst.wait_log("status=sent")
    assert re.search(rf"{QID}: client=\S+\[127\.0\.0\.1\], orig_queue_id=abc123, "
                     r"orig_client=fw\.example\[198\.51\.100\.9\]", log), log
    assert re.search(r"disconnect from \S+ ehlo=1 xforward=1/2 mail=1 rcpt=1 data=1 quit=1",
                     log), log
    text = _wait_mailbox(inst, "tintin")
    assert re.search(r"Received: from client\.example\.net \(\S+ \[127\.0\.0\.1\]\)", text)
    assert "198.51.100.9" not in text


def test_delay_reject_no_refuses_at_connect_helo_and_mail(make_instance, workdir) -> None:
    clients, helos, senders = (workdir / n for n in ("clients", "helos", "senders"))
    clients.write_text("127.0.0.9 REJECT go away\n")
    helos.write_text("bad.example REJECT no helo\ntmp.example DEFER later\n")
    senders.write_text("bad@b.example REJECT no sender\n")
    inst = started(make_instance, "smtpd_delay_reject = no\n"
                                  f"smtpd_client_restrictions = check_client_access "
                                  f"texthash:{clients}\n"
                                  f"smtpd_helo_restrictions = check_helo_access "
                                  f"texthash:{helos}\n"
                                  f"smtpd_sender_restrictions = check_sender_access "
                                  f"texthash:{senders}\n")
    assert "smtpd_delay_reject" not in inst.log()  # implemented: no warning
    chat = Chat(inst)
    assert chat.greeting.startswith("220 ")
    assert chat("EHLO bad.example") == "554 5.7.1 <bad.example>: Helo command rejected: no helo"
    assert chat("HELO tmp.example") == "450 4.7.1 <tmp.example>: Helo command rejected: later"
    assert chat("HELO ok.example").startswith("250 ")
    assert chat("MAIL FROM:<bad@b.example>") == (
        "554 5.7.1 <bad@b.example>: Sender address rejected: no sender")
    assert chat("RCPT TO:<tintin@example.com>") == "503 5.5.1 Error: need MAIL command"
    assert chat("MAIL FROM:<a@b.example>") == "250 2.1.0 Ok"
    assert chat("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    chat("QUIT")
    chat.close()
    log = inst.wait_log("NOQUEUE: reject: MAIL from ")
    assert re.search(r"NOQUEUE: reject: EHLO from \S+: 554 5\.7\.1 <bad\.example>: Helo command "
                     r"rejected: no helo; proto=SMTP helo=<bad\.example>", log), log
    assert re.search(r"NOQUEUE: reject: MAIL from \S+: 554 5\.7\.1 <bad@b\.example>: Sender "
                     r"address rejected: no sender; from=<bad@b\.example> proto=SMTP "
                     r"helo=<ok\.example>", log), log


def test_delay_reject_no_client_refused_at_connect(make_instance, workdir) -> None:
    clients = workdir / "clients"
    clients.write_text("127.0.0.1 REJECT go away\n")
    inst = started(make_instance, "smtpd_delay_reject = no\n"
                                  f"smtpd_client_restrictions = check_client_access "
                                  f"texthash:{clients}\n")
    chat = Chat(inst)
    client = re.match(r"554 5\.7\.1 <(\S+\[127\.0\.0\.1\])>: Client host rejected: go away$",
                      chat.greeting)
    assert client, chat.greeting
    denied = f"503 5.7.0 Error: access denied for {client.group(1)}"
    for line in ("EHLO a.example", "NOOP", "MAIL FROM:<a@b.example>",
                 "RCPT TO:<tintin@example.com>", "ETRN x.example", "XCLIENT ADDR=1.2.3.4"):
        assert chat(line) == denied, line
    assert chat("QUIT") == "221 2.0.0 Bye"
    chat.close()
    log = inst.wait_log("disconnect from")
    assert f"NOQUEUE: reject: CONNECT from {client.group(1)}: 554 5.7.1 " in log
    with pytest.raises(smtplib.SMTPConnectError):
        smtplib.SMTP("127.0.0.1", inst.port, timeout=30)


def test_delay_reject_no_checks_the_client_an_xclient_names(make_instance, workdir) -> None:
    clients = workdir / "clients"
    clients.write_text("192.0.2.66 REJECT go away\n")
    inst = started(make_instance, "smtpd_delay_reject = no\n"
                                  "smtpd_authorized_xclient_hosts = 127.0.0.1\n"
                                  f"smtpd_client_restrictions = check_client_access "
                                  f"texthash:{clients}\n")
    chat = Chat(inst)
    assert chat.greeting.startswith("220 ")
    # Postfix 3.7: the rejection replaces the 220, then "access denied" for the new client
    assert chat("XCLIENT ADDR=192.0.2.66 NAME=spam.example") == (
        "554 5.7.1 <spam.example[192.0.2.66]>: Client host rejected: go away")
    assert chat("EHLO x") == "503 5.7.0 Error: access denied for spam.example[192.0.2.66]"
    assert chat("QUIT") == "221 2.0.0 Bye"
    chat.close()
    log = inst.wait_log("disconnect from")
    assert ("NOQUEUE: reject: XCLIENT from spam.example[192.0.2.66]: 554 5.7.1 "
            "<spam.example[192.0.2.66]>: Client host rejected: go away; proto=SMTP") in log
    assert "disconnect from spam.example[192.0.2.66] ehlo=0/1 xclient=0/1 quit=1 " in log


def test_etrn_when_a_fast_flush_domains_table_fails(make_instance, workdir) -> None:
    # Postfix 3.7.11 (fast_flush_domains = hash:/tmp/nonexist, a table that cannot
    # answer): "458 Unable to queue messages", with "warning: fast_flush_domains:
    # hash:/tmp/nonexist: table lookup problem" and "warning: unable to talk to fast
    # flush service". postier refuses a missing table at start, so the table here
    # opens but its query fails at run time.
    db, cf = workdir / "flush.sqlite", workdir / "flush.cf"
    db.write_bytes(b"")
    db.chmod(0o644)
    cf.write_text(f"dbname = {db}\nquery = SELECT 'x' FROM nosuch WHERE d = '%s'\n")
    cf.chmod(0o644)
    inst = started(make_instance, f"fast_flush_domains = example.net, sqlite:{cf}\n")
    chat = Chat(inst)
    chat("EHLO client.example.net")
    assert chat("ETRN example.net").startswith("250 ")  # listed before the table
    assert chat("ETRN flush.test") == "458 Unable to queue messages", inst.log()
    chat("QUIT")
    chat.close()
    log = inst.wait_log("disconnect from")
    assert f"warning: fast_flush_domains: sqlite:{cf}: table lookup problem\n" in log
    assert re.search(r"table lookup problem\n.*warning: unable to talk to fast flush "
                     r"service\n", log), log
    assert re.search(r"disconnect from .* etrn=1/2 ", log), log
