"""SMTPUTF8 (RFC 6531/6532) end to end against a running postier: UTF-8 local parts
through the queue to an alias's file and a user's mailbox, ``Delivered-To:`` in UTF-8,
an access table with a UTF-8 key, the refusals without the SMTPUTF8 parameter, and the
SMTP client's 5.6.7 bounce when the next hop does not offer SMTPUTF8.

Every expected value was read from Postfix 3.7.11 given the same input (``smtputf8_enable
= yes``, ``strict_smtputf8`` yes and no, ``smtputf8_enable = no``).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, postier
from .peers import ScriptedSmtp

pytestmark = pytest.mark.integration

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
mailbox_command =
queue_run_delay = 1s
"""


class Talk:
    """A client that sends one line and reads its (whole) reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith("220 ")

    def reply(self) -> str:
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError(f"closed after {lines}")
            text = raw.decode().rstrip("\r\n")
            lines.append(text)
            if text[3:4] != "-":
                return "\n".join(lines)

    def __call__(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def message(self, text: str) -> str:
        """DATA, TEXT (lines), ``.``: the final reply."""
        assert self("DATA").startswith("354 ")
        self.sock.sendall(text.replace("\n", "\r\n").encode() + b".\r\n")
        return self.reply()

    def close(self) -> None:
        self("QUIT")
        self.file.close()
        self.sock.close()


def started(make_instance, workdir: Path, extra: str = "") -> Instance:  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    aliases = workdir / "aliases"
    aliases.write_text("élise: tintin\njérôme: tintin\n")
    built = postier("postalias", f"hash:{aliases}", check=False)
    assert built.returncode == 0, built.stderr
    access = workdir / "access"
    access.write_text("bloqué@example.com  REJECT blocked utf8\n")
    inst: Instance = make_instance(
        MAIN_CF, f"alias_maps = hash:{aliases}\n"
        f"smtpd_recipient_restrictions = check_recipient_access texthash:{access}\n" + extra)
    done = inst.start()
    assert done.returncode == 0, done.stderr + inst.log()
    return inst


def queued(reply: str) -> str:
    m = re.fullmatch(r"250 2\.0\.0 Ok: queued as ([0-9A-F]+)", reply)
    assert m, reply
    return m.group(1)


@pytest.mark.skipif(not ROOT, reason="needs the user tintin")
def test_utf8_local_parts_delivered_through_aliases_to_a_mailbox(
    make_instance, workdir: Path,
) -> None:
    inst = started(make_instance, workdir)
    smtp = Talk(inst.port)
    assert "\n250-SMTPUTF8\n" in smtp("EHLO milou.example.net")
    assert smtp("MAIL FROM:<ö@b.net> SMTPUTF8") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<jérôme@example.com>") == "250 2.1.5 Ok"
    # an access table key in UTF-8 matches the UTF-8 recipient
    assert smtp("RCPT TO:<bloqué@example.com>") == (
        "554 5.7.1 <bloqué@example.com>: Recipient address rejected: blocked utf8")
    qid = queued(smtp.message("Subject: ü\nFrom: élise@exämple.com\n\nbody ü\n"))
    assert smtp("MAIL FROM:<jérôme@example.net> SMTPUTF8") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<élise@example.com>") == "250 2.1.5 Ok"
    qid2 = queued(smtp.message("Subject: é\n\n"))
    # the alias lookup folds UTF-8 case; Delivered-To: keeps the address as sent
    assert smtp("MAIL FROM:<a@b.net> SMTPUTF8") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<JÉRÔME@example.com>") == "250 2.1.5 Ok"
    qid3 = queued(smtp.message("Subject: case\n\n"))
    smtp.close()
    inst.wait_log(f"{qid}: removed")
    inst.wait_log(f"{qid2}: removed")
    inst.wait_log(f"{qid3}: removed")
    first, second, third = inst.mailbox("tintin").read_text().split("\n\nFrom ")
    first += "\n"
    assert first.startswith("From ö@b.net ")
    for line in ("Return-Path: <ö@b.net>", "X-Original-To: jérôme@example.com",
                 "Delivered-To: jérôme@example.com", "Subject: ü", "From: élise@exämple.com",
                 "body ü"):
        assert f"\n{line}\n" in first, (line, first)
    assert re.search(r"\n\tby tintin\.example\.com \(Postfix\) with UTF8SMTP id " + qid, first)
    assert second.startswith("jérôme@example.net ")
    for line in ("Return-Path: <jérôme@example.net>", "X-Original-To: élise@example.com",
                 "Delivered-To: élise@example.com", "Subject: é"):
        assert f"\n{line}\n" in second, (line, second)
    assert "\nX-Original-To: JÉRÔME@example.com\nDelivered-To: JÉRÔME@example.com\n" in third
    log = inst.log()
    for q, orig in ((qid, "jérôme"), (qid2, "élise"), (qid3, "JÉRÔME")):
        assert re.search(rf"{q}: to=<tintin@example\.com>, orig_to=<{orig}@example\.com>, "
                         r"relay=local, .*status=sent \(delivered to mailbox\)", log), log


def test_utf8_without_the_smtputf8_parameter(make_instance, workdir: Path) -> None:
    inst = started(make_instance, workdir)
    smtp = Talk(inst.port)
    smtp("EHLO milou.example.net")
    # strict_smtputf8 = no (Postfix's default): a UTF-8 local part passes, a UTF-8 domain
    # is bad syntax
    assert smtp("MAIL FROM:<a@exämple.net>") == "501 5.1.7 Bad sender address syntax"
    assert smtp("MAIL FROM:<jérôme@example.net>") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<a@exämple.com>") == "501 5.1.3 Bad recipient address syntax"
    assert smtp("RCPT TO:<bloqué@example.com>") == (
        "554 5.7.1 <bloqué@example.com>: Recipient address rejected: blocked utf8")
    assert smtp("RSET") == "250 2.0.0 Ok"
    assert smtp("MAIL FROM:<a@b.net> SMTPUTF8=x") == "555 5.5.4 Unsupported option: SMTPUTF8=x"
    assert smtp("MAIL FROM:<a@b.net> SMTPUTF8 SMTPUTF8") == "250 2.1.0 Ok"  # as Postfix
    assert smtp("RCPT TO:<a@exämple.com>") == "250 2.1.5 Ok"  # mynetworks: relayed
    smtp.close()


def test_strict_smtputf8_refuses_utf8_addresses_without_the_parameter(
    make_instance, workdir: Path,
) -> None:
    inst = started(make_instance, workdir, "strict_smtputf8 = yes\n")
    smtp = Talk(inst.port)
    smtp("EHLO milou.example.net")
    must = "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
    assert smtp("MAIL FROM:<jérôme@example.net>") == must
    assert smtp("MAIL FROM:<a@exämple.net>") == "501 5.1.7 Bad sender address syntax"
    assert smtp("MAIL FROM:<a@b.net>") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<élise@example.com>") == must
    assert smtp("RCPT TO:<a@exämple.com>") == "501 5.1.3 Bad recipient address syntax"
    assert smtp("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
    assert smtp("RSET") == "250 2.0.0 Ok"
    assert smtp("MAIL FROM:<jérôme@example.net> SMTPUTF8") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<élise@example.com>") == "250 2.1.5 Ok"
    smtp.close()


def test_smtputf8_disabled(make_instance, workdir: Path) -> None:
    inst = started(make_instance, workdir, "smtputf8_enable = no\n")
    smtp = Talk(inst.port)
    assert "SMTPUTF8" not in smtp("EHLO milou.example.net")
    assert smtp("MAIL FROM:<a@exämple.net>") == "501 5.1.7 Bad sender address syntax"
    assert smtp("MAIL FROM:<jérôme@example.net> SMTPUTF8") == (
        "555 5.5.4 Unsupported option: SMTPUTF8")
    assert smtp("MAIL FROM:<jérôme@example.net>") == "250 2.1.0 Ok"
    assert smtp("RCPT TO:<élise@example.com>") == "250 2.1.5 Ok"
    assert smtp("RCPT TO:<a@exämple.com>") == "501 5.1.3 Bad recipient address syntax"
    smtp.close()


@pytest.mark.skipif(not ROOT, reason="remote hosts listen on port 25")
def test_the_smtp_client_needs_smtputf8_from_the_next_hop(make_instance, workdir: Path) -> None:
    with ScriptedSmtp("127.1.0.31") as plain, \
            ScriptedSmtp("127.1.0.32", ehlo_keywords=("PIPELINING", "8BITMIME",
                                                      "SMTPUTF8")) as utf8:
        inst = started(make_instance, workdir,
                       "transport_maps = inline:{ plain.test=smtp:[127.1.0.31], "
                       "utf8.test=smtp:[127.1.0.32] }\n")
        smtp = Talk(inst.port)
        smtp("EHLO milou.example.net")
        sent = []
        for sender, rcpt, params, subject in (
            ("ö@utf8.test", "x@plain.test", " SMTPUTF8", "x"),  # bounced 5.6.7
            ("a@example.com", "y@plain.test", " SMTPUTF8", "ascii"),  # sent: ASCII envelope
            ("a@example.com", "z@plain.test", " SMTPUTF8", "ü"),  # sent: headers don't count
            ("a@example.com", "ü@plain.test", " SMTPUTF8", "x"),  # bounced 5.6.7
            ("ö@example.com", "v@utf8.test", " SMTPUTF8", "ü"),  # sent with SMTPUTF8
            ("a@example.com", "w@utf8.test", "", "x"),  # sent without
        ):
            assert smtp(f"MAIL FROM:<{sender}>{params}") == "250 2.1.0 Ok"
            assert smtp(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok"
            sent.append((queued(smtp.message(f"Subject: {subject}\n\n")), rcpt))
        smtp.close()
        for qid, rcpt in sent:
            inst.wait_log(f"{qid}: to=<{rcpt}>", timeout=30)
        log = inst.log()
        for (qid, rcpt), status in zip(sent, ("bounced", "sent", "sent", "bounced", "sent",
                                              "sent"), strict=True):
            [line] = [x for x in log.splitlines() if f"{qid}: to=<{rcpt}>" in x]
            assert f"status={status}" in line, line
            if status == "bounced":
                assert line.endswith("dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was "
                                     "not offered by host 127.1.0.31[127.1.0.31])"), line
        assert sorted(t.recipients[0] for t in plain.transactions) == ["y@plain.test",
                                                                      "z@plain.test"]
        assert all("SMTPUTF8" not in t.mail_params for t in plain.transactions)
        # the non-delivery notice to ö@utf8.test needs (and gets) SMTPUTF8 too
        notice = utf8.wait(3)
        by_rcpt = {t.recipients[0]: t for t in notice}
        assert by_rcpt["ö@utf8.test"].sender == ""
        assert "SMTPUTF8" in by_rcpt["ö@utf8.test"].mail_params.split()
        assert b"SMTPUTF8 is required, but was not offered" in by_rcpt["ö@utf8.test"].data
        assert "SMTPUTF8" in by_rcpt["v@utf8.test"].mail_params.split()
        assert by_rcpt["v@utf8.test"].sender == "ö@example.com"
        assert "SMTPUTF8" not in by_rcpt["w@utf8.test"].mail_params.split()


@pytest.mark.skipif(not ROOT, reason="remote hosts listen on port 25")
def test_smtputf8_autodetect_classes_smtpd(make_instance, workdir: Path) -> None:
    # Postfix 3.7 with smtputf8_autodetect_classes = smtpd: UTF-8 in a header or the
    # envelope requires SMTPUTF8 of the next hop, with or without SMTPUTF8 on MAIL. The
    # service has its own syslog_name, so it has its own cleanup: the same settings.
    with ScriptedSmtp("127.1.0.33") as plain:
        inst = started(make_instance, workdir,
                       "smtputf8_autodetect_classes = smtpd\n"
                       "transport_maps = inline:{ plain.test=smtp:[127.1.0.33] }\n")
        inst.stop()
        inst.write_master_cf(f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
                             "  -o syslog_name=postfix/submission\n")
        done = inst.start()
        assert done.returncode == 0, done.stderr + inst.log()
        smtp = Talk(inst.port)
        smtp("EHLO milou.example.net")
        sent = []
        for params, rcpt, subject, status in (
            ("", "a@plain.test", "ü", "bounced"),
            (" SMTPUTF8", "b@plain.test", "ü", "bounced"),
            ("", "c@plain.test", "x", "sent"),
            ("", "tintin", "x", "sent"),  # qualified by this service's cleanup
        ):
            assert smtp(f"MAIL FROM:<a@example.com>{params}") == "250 2.1.0 Ok"
            assert smtp(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok"
            qid = queued(smtp.message(f"Subject: {subject}\n\n"))
            if "@" not in rcpt:
                rcpt += "@example.com"
            sent.append((qid, rcpt, status))
        smtp.close()
        for qid, rcpt, status in sent:
            line = inst.wait_log(f"{qid}: to=<{rcpt}>", timeout=30).split(
                f"{qid}: to=<{rcpt}>")[1].splitlines()[0]
            assert f"status={status}" in line, line
            if status == "bounced":
                assert line.endswith("dsn=5.6.7, status=bounced (SMTPUTF8 is required, but was "
                                     "not offered by host 127.1.0.33[127.1.0.33])"), line
        assert [t.recipients for t in plain.transactions] == [["c@plain.test"]]
        assert "postfix/submission/smtpd[" in inst.log()
