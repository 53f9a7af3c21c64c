"""The tutorial's first mail, end to end: telnet transcript, delivery, a mail reader."""

from __future__ import annotations

import re
import shutil
import smtplib
import socket
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user

pytestmark = pytest.mark.integration

# The tutorial's telnet transcript, line by line: (what the client types, what the server answers).
TRANSCRIPT = [
    (None, r"220 tintin\.example\.com ESMTP Postfix"),
    ("HELO milou.example.net", r"250 tintin\.example\.com"),
    ("MAIL FROM: <tournesol@example.net>", r"250 2\.1\.0 Ok"),
    ("RCPT TO: <tintin@example.com>", r"250 2\.1\.5 Ok"),
    ("DATA", r"354 End data with <CR><LF>\.<CR><LF>"),
    ("Le contenu du message, y compris les en-têtes.", None),
    (".", r"250 2\.0\.0 Ok: queued as [0-9A-F]{6,}"),
    ("QUIT", r"221 2\.0\.0 Bye"),
]


class LineClient:
    """A telnet-like client: one line at a time, reads one reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def reply(self) -> str:
        lines = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("closed")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def tutorial_instance(make_instance, tutorial_main_cf: str, extra: str = "") -> Instance:
    # The tutorial's main.cf verbatim, then only what a test instance must change (paths, port).
    return make_instance(tutorial_main_cf, extra)


def read_with_snail(mbox: Path) -> str:
    """Print message 1 of an mbox the way a user would, with s-nail (mail)."""
    snail = shutil.which("s-nail") or shutil.which("mail")
    if snail is None:
        pytest.skip("s-nail is not installed")
    result = subprocess.run(
        [
            snail,
            "-n",
            "-N",
            "-R",
            "-S",
            "expandaddr",
            "-S",
            "headline=%>%a%m %-18f %s",
            "-f",
            str(mbox),
        ],
        input="print 1\nquit\n",
        capture_output=True,
        text=True,
        timeout=30,
        env={"HOME": str(mbox.parent), "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(not ROOT, reason="delivers to user tintin, which only root can create")
def test_tutorial_transcript_and_mbox(make_instance, tutorial_main_cf: str) -> None:
    ensure_user("tintin")
    # mailbox_command is the tutorial's procmail line; this test checks postier's own mbox
    # writer, so it is switched off here (test_procmail covers the tutorial's command).
    inst = tutorial_instance(make_instance, tutorial_main_cf, "mailbox_command =")
    started = inst.start()
    assert started.returncode == 0, started.stderr + inst.log()
    client = LineClient(inst.port)
    queue_id = None
    for line, expected in TRANSCRIPT:
        if line is not None:
            client.send(line)
        if expected is None:
            continue
        got = client.reply()
        assert re.fullmatch(expected, got), (line, got)
        if got.startswith("250 2.0.0 Ok: queued as "):
            queue_id = got.rsplit(" ", 1)[1]
    client.close()
    assert queue_id
    log = inst.wait_log(f"{queue_id}: removed")
    assert f"{queue_id}: client=localhost[127.0.0.1]" in log
    assert re.search(
        rf"{queue_id}: from=<tournesol@example\.net>, size=\d+, nrcpt=1 \(queue active\)", log
    )
    assert re.search(
        rf"{queue_id}: to=<tintin@example\.com>, relay=local, delay=[\d.e-]+, delays=\S+, "
        r"dsn=2\.0\.0, status=sent \(delivered to mailbox\)",
        log,
    )
    assert "connect from localhost[127.0.0.1]" in log
    mbox = inst.mailbox("tintin")
    raw = mbox.read_bytes()
    assert raw.startswith(b"From tournesol@example.net ")
    assert b"Return-Path: <tournesol@example.net>\n" in raw
    assert b"Delivered-To: tintin@example.com\n" in raw
    assert re.search(
        rb"Received: from milou\.example\.net \(localhost \[127\.0\.0\.1\]\)\n"
        rb"\tby tintin\.example\.com \(Postfix\) with SMTP id " + queue_id.encode(),
        raw,
    )
    shown = read_with_snail(mbox)
    assert "Le contenu du message, y compris les en-têtes." in shown
    assert "tournesol@example.net" in shown
    assert inst.stop().returncode == 0


@pytest.mark.skipif(not ROOT, reason="needs a real local user")
def test_smtplib_message_headers_and_body_intact(make_instance, tutorial_main_cf: str) -> None:
    ensure_user("tintin")
    inst = tutorial_instance(make_instance, tutorial_main_cf, "mailbox_command =")
    assert inst.start().returncode == 0, inst.log()
    body = (
        "From: Tournesol <tournesol@example.net>\r\n"
        "To: Tintin <tintin@example.com>\r\n"
        "Subject: Essai\r\n"
        "\r\n"
        "Bonjour,\r\n"
        "From the moon.\r\n"
        ".leading dot\r\n"
        "Fin.\r\n"
    )
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        code, ehlo = smtp.ehlo("milou.example.net")
        assert code == 250
        features = ehlo.decode().splitlines()
        assert features[0] == "tintin.example.com"
        assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"} <= set(features)
        assert any(f.startswith("SIZE ") for f in features)
        refused = smtp.sendmail("tournesol@example.net", ["tintin+lune@example.com"], body.encode())
        assert refused == {}
    inst.wait_log("removed")
    raw = inst.mailbox("tintin").read_bytes()
    assert b"\n>From the moon.\n" in raw
    assert b"\n.leading dot\n" in raw
    assert b"Delivered-To: tintin+lune@example.com\n" in raw
    shown = read_with_snail(inst.mailbox("tintin"))
    assert "Subject: Essai" in shown
    assert "Bonjour," in shown and "Fin." in shown


@pytest.mark.skipif(not ROOT, reason="needs a real local user")
def test_unknown_user_and_relay_refused(make_instance, tutorial_main_cf: str) -> None:
    ensure_user("tintin")
    inst = tutorial_instance(make_instance, tutorial_main_cf)
    assert inst.start().returncode == 0, inst.log()
    # From mynetworks (127.0.0.0/8), mail to another domain is relayed (permit_mynetworks).
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.helo("milou.example.net")
        assert smtp.mail("tournesol@example.net")[0] == 250
        assert smtp.rcpt("haddock@example.org")[0] == 250
        smtp.rset()
    inst.stop()
    # From outside mynetworks (127.0.0.2 once mynetworks is 127.0.0.1/32): refused.
    with (inst.config_dir / "main.cf").open("a") as f:
        f.write("mynetworks = 127.0.0.1/32\n")
    assert inst.start().returncode == 0, inst.log()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30,
                      source_address=("127.0.0.2", 0)) as smtp:
        smtp.helo("milou.example.net")
        assert smtp.mail("tournesol@example.net")[0] == 250
        code, text = smtp.rcpt("personne-ici@example.com")
        assert (code, text.decode()) == (
            550,
            "5.1.1 <personne-ici@example.com>: Recipient address rejected: "
            "User unknown in local recipient table",
        )
        code, text = smtp.rcpt("haddock@example.org")
        # smtpd_relay_restrictions' default ends in defer_unauth_destination, as Postfix
        assert code == 454 and text.decode() == "4.7.1 <haddock@example.org>: Relay access denied"
        code, text = smtp.docmd("DATA")
        assert code == 554
    log = inst.log()
    assert (
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <haddock@example.org>: "
        "Relay access denied; from=<tournesol@example.net> to=<haddock@example.org> proto=SMTP "
        "helo=<milou.example.net>" in log
    )


@pytest.mark.skipif(not ROOT, reason="delivers to /var/mail/tintin as user tintin")
def test_tutorial_mailbox_command_procmail_delivers_to_var_mail(
    make_instance, tutorial_main_cf: str
) -> None:
    """The tutorial's main.cf as it is: procmail -a "$EXTENSION" delivers to /var/mail/tintin."""
    if shutil.which("procmail") is None:
        pytest.skip("procmail is not installed")
    user = ensure_user("tintin")
    if user.pw_gecos.split(",")[0] != "postier test user":
        pytest.skip("user tintin exists and is not ours: its /var/mail box is not touched")
    spool = Path("/var/mail/tintin")
    spool.unlink(missing_ok=True)
    inst = tutorial_instance(make_instance, tutorial_main_cf)
    assert inst.start().returncode == 0, inst.log()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.helo("milou.example.net")
        smtp.sendmail(
            "tournesol@example.net",
            ["tintin+lune@example.com"],
            b"Subject: par procmail\r\n\r\nVia procmail.\r\n",
        )
    log = inst.wait_log("removed")
    assert 'status=sent (delivered to command: procmail -a "$EXTENSION")' in log, log
    text = spool.read_text()
    assert text.startswith("From tournesol@example.net ")
    assert "Subject: par procmail" in text and "Via procmail." in text
    assert spool.stat().st_uid == user.pw_uid
    shown = read_with_snail(spool)
    assert "Via procmail." in shown
    spool.unlink()
