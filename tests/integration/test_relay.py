"""Relaying end to end: postier's SMTP client delivers to remote mail hosts found in DNS.

The DNS server is conftest's dnsmasq (``RELAY_RECORDS``); the remote hosts are
``peers.ScriptedSmtp`` servers on 127.1.0.x port 25 (or Postfix's smtp-sink).
"""

from __future__ import annotations

import email
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
from email import policy as email_policy
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, postier
from .peers import ScriptedSmtp, refused_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="remote hosts listen on port 25")]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
smtp_connect_timeout = 5s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 1s
"""

QID = r"[0-9A-F]{6,}"


def send(inst: Instance, sender: str, recipients: list[str], body: str = "Bonjour.\n",
         headers: str = "") -> str:
    """One message over SMTP from 127.0.0.1 (mynetworks); its queue ID."""
    msg = f"From: <{sender}>\nSubject: relay test\n{headers}\n{body}"
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        code, text = smtp.mail(sender)
        assert code == 250, text
        for r in recipients:
            code, text = smtp.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = smtp.data(msg)
        assert code == 250, text
    m = re.search(rf"queued as ({QID})", text.decode())
    assert m, text
    return m.group(1)


def queue_empty(inst: Instance, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for state in ("incoming", "active", "deferred")
                for p in (inst.queue_dir / state).rglob("*") if p.is_file()]
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"queue not empty: {left}\n{inst.log()}")


def status_line(inst: Instance, queue_id: str, rcpt: str, status: str,
                timeout: float = 30.0) -> str:
    needle = f"{queue_id}: to=<{rcpt}>"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in inst.log().splitlines():
            if needle in line and f"status={status}" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no status={status} line for {rcpt}:\n{inst.log()}")


def in_deferred(inst: Instance, queue_id: str, timeout: float = 15.0) -> bool:
    """Is the message in deferred/ (qmgr moves it there just after the status line)?"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list((inst.queue_dir / "deferred").rglob(queue_id)):
            return True
        time.sleep(0.05)
    return False


def started(make_instance, extra: str = "") -> Instance:
    ensure_user("tintin")
    inst: Instance = make_instance(MAIN_CF, extra)
    result = inst.start()
    assert result.returncode == 0, (result.stderr, inst.log())
    return inst


# --- MX resolution -------------------------------------------------------------------


def test_mail_from_mynetworks_reaches_the_mx_with_envelope_ehlo_and_received(
    make_instance,
) -> None:
    with ScriptedSmtp("127.1.0.4", name="mx.relay-b.test") as mx:
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["Haddock@Relay-B.test"])
        [tx] = mx.wait(1)
        assert tx.helo == "tintin.example.com"  # smtp_helo_name = $myhostname
        assert tx.sender == "tintin@example.com"
        assert tx.recipients == ["Haddock@Relay-B.test"]
        assert "SIZE=" in tx.mail_params  # SIZE offered: the size is announced
        msg = email.message_from_bytes(tx.data, policy=email_policy.default)
        received = msg.get_all("Received")
        assert received and f"with ESMTP id {qid}" in received[0]
        assert "by tintin.example.com (Postfix)" in received[0]
        assert msg["Subject"] == "relay test"
        assert tx.data.endswith(b"Bonjour.\r\n")
        line = status_line(inst, qid, "Haddock@Relay-B.test", "sent")
        assert re.search(
            r": to=<Haddock@Relay-B\.test>, relay=mx\.relay-b\.test\[127\.1\.0\.4\]:25, "
            r"delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, "
            r"status=sent \(250 2\.0\.0 Ok: queued as SINK1\)$", line), line
        queue_empty(inst)
        assert f"{qid}: removed" in inst.log()


def test_first_mx_down_the_second_takes_it(make_instance) -> None:
    refused_port("127.1.0.1")
    with ScriptedSmtp("127.1.0.2", name="mx2.relay-a.test") as mx2:
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["haddock@relay-a.test"])
        [tx] = mx2.wait(1)
        assert tx.recipients == ["haddock@relay-a.test"]
        line = status_line(inst, qid, "haddock@relay-a.test", "sent")
        assert "relay=mx2.relay-a.test[127.1.0.2]:25" in line


def test_no_mx_the_domains_address_record(make_instance) -> None:
    with ScriptedSmtp("127.1.0.3", name="noa.test") as host:
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["milou@noa.test"])
        host.wait(1)
        assert "relay=noa.test[127.1.0.3]:25" in status_line(inst, qid, "milou@noa.test", "sent")


def test_null_mx_and_unknown_domain_bounce_to_the_local_sender(make_instance) -> None:
    inst = started(make_instance)
    qid = send(inst, "tintin@example.com", ["a@nullmx.test", "b@no-such-domain.test"])
    null = status_line(inst, qid, "a@nullmx.test", "bounced")
    assert "relay=none" in null and "dsn=5.1.10" in null
    assert "(Domain nullmx.test does not accept mail (nullMX))" in null
    nx = status_line(inst, qid, "b@no-such-domain.test", "bounced")
    assert "dsn=5.4.4" in nx and ("Host or domain name not found. Name service error for "
                                  "name=no-such-domain.test type=MX: Host not found)") in nx
    inst.wait_log("sender non-delivery notification")


# --- replies from the remote ---------------------------------------------------------


def test_4xx_defers_then_the_deferred_scan_delivers_after_recovery(make_instance) -> None:
    with ScriptedSmtp("127.1.0.5", name="mx.relay-c.test") as mx:
        mx.rcpt = lambda addr: f"450 4.2.0 <{addr}>: Recipient address rejected: Greylisted"
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["haddock@relay-c.test"])
        line = status_line(inst, qid, "haddock@relay-c.test", "deferred")
        assert re.search(
            r"relay=mx\.relay-c\.test\[127\.1\.0\.5\]:25, .*dsn=4\.2\.0, status=deferred "
            r"\(host mx\.relay-c\.test\[127\.1\.0\.5\] said: 450 4\.2\.0 "
            r"<haddock@relay-c\.test>: Recipient address rejected: Greylisted "
            r"\(in reply to RCPT TO command\)\)", line), line
        assert in_deferred(inst, qid), inst.log()
        mx.rcpt = lambda addr: "250 2.1.5 Ok"  # the remote recovers
        [tx] = mx.wait(1, timeout=30)
        assert tx.recipients == ["haddock@relay-c.test"]
        status_line(inst, qid, "haddock@relay-c.test", "sent")
        queue_empty(inst)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_5xx_bounces_once_and_the_sender_gets_a_dsn(make_instance, stage: str) -> None:
    with ScriptedSmtp("127.1.0.6", name="mx.relay-d.test") as mx:
        if stage == "rcpt":
            mx.rcpt = lambda addr: (
                f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown")
        else:
            mx.data_end = lambda tx: "554 5.7.1 Message content rejected"
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["nobody@relay-d.test"])
        line = status_line(inst, qid, "nobody@relay-d.test", "bounced")
        if stage == "rcpt":
            assert ("dsn=5.1.1, status=bounced (host mx.relay-d.test[127.1.0.6] said: 550 5.1.1 "
                    "<nobody@relay-d.test>: Recipient address rejected: User unknown (in reply "
                    "to RCPT TO command))") in line, line
        else:
            assert ("dsn=5.7.1, status=bounced (host mx.relay-d.test[127.1.0.6] said: 554 5.7.1 "
                    "Message content rejected (in reply to end of DATA command))") in line, line
        assert "relay=mx.relay-d.test[127.1.0.6]:25" in line
        inst.wait_log("sender non-delivery notification")
        # The DSN reaches the local sender's mailbox.
        box = inst.mailbox("tintin")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (box.exists() and box.stat().st_size):
            time.sleep(0.1)
        dsn = email.message_from_bytes(box.read_bytes().split(b"\n", 1)[1],
                                       policy=email_policy.default)
        assert dsn.get_content_type() == "multipart/report"
        assert dsn.get_param("report-type") == "delivery-status"
        report = next(p for p in dsn.walk()
                      if p.get_content_type() == "message/delivery-status")
        text = report.as_string()
        assert "Final-Recipient: rfc822; nobody@relay-d.test" in text
        assert re.search(r"Status: 5\.\d\.\d", text)
        assert "Diagnostic-Code: smtp;" in text or "Diagnostic-Code:" in text
        queue_empty(inst)
        time.sleep(2.5)  # past minimal_backoff_time: a retry would have come
        assert mx.connections == 1, "the remote saw a second attempt"


def test_relayhost_with_port_takes_everything_non_local(make_instance) -> None:
    with ScriptedSmtp("127.1.0.7", 2526, name="smarthost.test") as relay:
        inst = started(make_instance, "relayhost = [127.1.0.7]:2526\n")
        qid = send(inst, "tintin@example.com", ["x@relay-b.test", "y@elsewhere.test"])
        [tx] = relay.wait(1)
        assert sorted(tx.recipients) == ["x@relay-b.test", "y@elsewhere.test"]
        line = status_line(inst, qid, "y@elsewhere.test", "sent")
        assert "relay=127.1.0.7[127.1.0.7]:2526" in line


def test_local_remote_bcc_and_duplicate_each_copy_once(make_instance) -> None:
    with ScriptedSmtp("127.1.0.8", name="mx.relay-e.test") as mx:
        inst = started(make_instance)
        qid = send(inst, "haddock@example.com",
                   ["tintin@example.com", "milou@relay-e.test", "milou@relay-e.test"],
                   headers="To: <tintin@example.com>\nBcc: <milou@relay-e.test>\n")
        [tx] = mx.wait(1)
        assert tx.recipients == ["milou@relay-e.test"]
        assert b"\nBcc:" not in b"\n" + tx.data and b"milou@relay-e.test" not in tx.data
        status_line(inst, qid, "tintin@example.com", "sent")
        queue_empty(inst)
        time.sleep(1)
        assert len(mx.transactions) == 1 and mx.connections == 1
        box = inst.mailbox("tintin").read_bytes()
        assert box.count(b"\nFrom ") + box.startswith(b"From ") == 1


# --- relay control ------------------------------------------------------------------

# The open-relay tricks of the restriction tests, aimed at relay-f.test's MX.
TRICKS = [
    "victim%relay-f.test@example.com",
    "relay-f.test!victim@example.com",
    "@example.com:victim@relay-f.test",
    '"victim@relay-f.test"@example.com',
    "victim@relay-f.test@example.com",
    "victim@relay-f.test.",
    "victim@[127.1.0.9]",
    "victim@relay-f.test",
    "victim%relay-f.test@tintin.example.com",
    "victim@RELAY-F.TEST",
    '"victim%relay-f.test"@example.com',
    "victim@mx.relay-f.test",
]


def test_an_outside_client_relays_nothing(make_instance) -> None:
    with ScriptedSmtp("127.1.0.9", name="mx.relay-f.test") as mx:
        inst = started(make_instance, "mynetworks = 127.0.0.1/32\n")
        accepted = []
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30,
                          source_address=("127.0.0.2", 0)) as smtp:
            smtp.ehlo("outside.example.net")
            for trick in TRICKS:
                assert smtp.mail("spammer@example.net")[0] == 250
                code, _ = smtp.docmd(f"RCPT TO:<{trick}>")
                if code == 250:
                    accepted.append(trick)
                    smtp.data("Subject: relay?\n\nrelay?\n")
                else:
                    smtp.rset()
            smtp.quit()
        time.sleep(3)
        assert mx.connections == 0, (accepted, inst.log())
        assert "status=sent" not in inst.log() or all(
            "relay=local" in line for line in inst.log().splitlines() if "status=sent" in line)


# --- crashes and bad peers ------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/usr/sbin/smtp-sink"),
                    reason="smtp-sink (Debian package postfix) is the load sink")
def test_sigkill_during_a_burst_loses_no_acknowledged_message(make_instance, workdir) -> None:
    dumps = workdir / "sink"
    dumps.mkdir()
    os.chmod(dumps, 0o1777)
    sink = subprocess.Popen(
        ["/usr/sbin/smtp-sink", "-u", "postfix", "-d", str(dumps / "m%H%M%S."),
         "127.1.0.10:25", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        inst = started(make_instance, "relayhost = [127.1.0.10]\n")
        acked: list[str] = []
        stop = threading.Event()

        def burst() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    with smtplib.SMTP("127.0.0.1", inst.port, timeout=10) as smtp:
                        smtp.sendmail("tintin@example.com", [f"r{n}@relay-sink.test"],
                                      f"Subject: burst {n}\nX-Burst: {n}\n\nmessage {n}\n")
                    acked.append(str(n))
                except (OSError, smtplib.SMTPException):
                    pass

        thread = threading.Thread(target=burst)
        thread.start()
        time.sleep(2.0)
        for pid in inst.pids():
            os.kill(pid, signal.SIGKILL)
        stop.set()
        thread.join(timeout=30)
        assert acked
        assert inst.start().returncode == 0, inst.log()
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while time.monotonic() < deadline:
            seen = set()
            for f in dumps.iterdir():
                for m in re.finditer(rb"X-Burst: (\d+)", f.read_bytes()):
                    seen.add(m.group(1).decode())
            if set(acked) <= seen:
                break
            time.sleep(0.5)
        assert set(acked) <= seen, sorted(set(acked) - seen, key=int)[:20]
    finally:
        sink.terminate()
        sink.wait(timeout=10)


@pytest.mark.parametrize("mode,address,reason", [
    ("down", "127.1.0.11", r"connect to 127\.1\.0\.11\[127\.1\.0\.11\]:25: Connection refused"),
    ("drop_mid_data", "127.1.0.13",
     r"lost connection with 127\.1\.0\.13\[127\.1\.0\.13\] while sending (message body|"
     r"end of data -- message may be sent more than once)"),
    ("garbage", "127.1.0.14",
     r"host 127\.1\.0\.14\[127\.1\.0\.14\] refused to talk to me: this is no smtp server"),
    ("long_line", "127.1.0.15",
     r"host 127\.1\.0\.15\[127\.1\.0\.15\] refused to talk to me: .*"),
])
def test_a_bad_relayhost_defers_with_a_clear_reason(
    make_instance, mode: str, address: str, reason: str,
) -> None:
    peer = None if mode == "down" else ScriptedSmtp(address, mode=mode).start()
    try:
        inst = started(make_instance, f"relayhost = [{address}]\n")
        qid = send(inst, "tintin@example.com", ["x@far.test"], body="line\n" * 20)
        line = status_line(inst, qid, "x@far.test", "deferred")
        assert re.search(r"dsn=4\.\d\.\d, status=deferred \(" + reason + r"\)$", line), line
        assert in_deferred(inst, qid), inst.log()
        assert "fatal" not in inst.log() and "Traceback" not in inst.log()
        # still serving
        send(inst, "tintin@example.com", ["tintin@example.com"])
    finally:
        if peer is not None:
            peer.stop()


def test_a_dns_timeout_defers(make_instance, workdir: Path, monkeypatch) -> None:
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.1.0.12", 53))  # receives queries, never answers
    try:
        resolv = workdir / "resolv-hole.conf"
        resolv.write_text("nameserver 127.1.0.12\noptions timeout:1 attempts:1\n")
        monkeypatch.setenv("POSTIER_RESOLV_CONF", str(resolv))
        inst = started(make_instance)
        qid = send(inst, "tintin@example.com", ["x@relay-b.test"])
        line = status_line(inst, qid, "x@relay-b.test", "deferred", timeout=40)
        assert ("relay=none" in line and "dsn=4.4.3, status=deferred (Host or domain name not "
                "found. Name service error for name=relay-b.test type=MX: Host not found, "
                "try again)") in line, line
        assert in_deferred(inst, qid), inst.log()
    finally:
        hole.close()


def test_postier_stop_leaves_nothing(make_instance) -> None:
    inst = started(make_instance)
    assert postier("-c", str(inst.config_dir), "status", check=False).returncode == 0


def test_a_message_bigger_than_the_peers_size_bounces_before_mail(make_instance) -> None:
    with ScriptedSmtp("127.1.0.16", ehlo_keywords=("PIPELINING", "SIZE 100")) as peer:
        inst = started(make_instance, "relayhost = [127.1.0.16]\n")
        qid = send(inst, "tintin@example.com", ["x@far.test"], body="x" * 500 + "\n")
        line = status_line(inst, qid, "x@far.test", "bounced")
        assert re.search(r"dsn=5\.3\.4, status=bounced \(message size \d+ exceeds size limit 100 "
                         r"of server 127\.1\.0\.16\[127\.1\.0\.16\]\)", line), line
        assert peer.transactions == [] and peer.refused == []


def test_one_connection_carries_messages_that_follow_each_other(make_instance) -> None:
    with ScriptedSmtp("127.1.0.17", ehlo_keywords=("SIZE 0", "8BITMIME")) as peer:  # no PIPELINING
        inst = started(make_instance, "relayhost = [127.1.0.17]\n"
                       "smtp_connection_cache_time_limit = 5s\n")
        first = send(inst, "tintin@example.com", ["a@far.test"])
        peer.wait(1)
        second = send(inst, "tintin@example.com", ["b@far.test", "c@far.test"])
        txs = peer.wait(2)
        assert [t.recipients for t in txs] == [["a@far.test"], ["b@far.test", "c@far.test"]]
        assert all("SIZE=" in t.mail_params for t in txs)  # SIZE 0: announced, no limit
        assert peer.connections == 1
        status_line(inst, first, "a@far.test", "sent")
        status_line(inst, second, "c@far.test", "sent")
