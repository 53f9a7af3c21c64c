"""Existing log tools read postier's log unchanged: pflogsumm and fail2ban-regex.

A real postier receives a known traffic mix (``MIX``: local deliveries, a multi-target
alias, relaying to a sink, a 5xx from the sink, an alias to a missing user, an
unreachable relay, RCPT rejections — relay denied, unknown user, a DNSBL — and SASL
failures through a real Dovecot); then Debian's ``pflogsumm`` reads its
``maillog_file`` and must report the counts the mix implies, and ``fail2ban-regex`` with
fail2ban's stock filter ``filter.d/postfix.conf`` (modes normal, more, aggressive, and
``auth``, the ``postfix-sasl`` jail's filter) must match exactly the lines it should.
The expected figures are computed from ``MIX``, never written down. The same mix run
through Postfix 3.7 gives the same pflogsumm counts (docs/logging.md tells how to).
"""

from __future__ import annotations

import base64
import re
import shutil
import smtplib
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, postier
from .peers import ScriptedSmtp, refused_port
from .test_sasl import Dovecot

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="the sink listens as root; Dovecot starts as root"),
    pytest.mark.skipif(shutil.which("pflogsumm") is None or shutil.which("fail2ban-regex")
                       is None, reason="Debian's pflogsumm and fail2ban are not installed"),
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot-core is not installed"),
]

SINK = "127.1.166.1"  # the relay that accepts (sink.test), 550 for nobody@
DOWN = "127.1.166.2"  # the relay that is down (down.test)
RELAY_PORT = 2525
INSIDE = "127.0.0.1"  # mynetworks
OUTSIDE = "127.0.0.9"  # not in mynetworks, listed nowhere
LISTED = "127.0.0.2"  # listed in bl.test (conftest's dnsmasq)

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.1/32
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination,
    reject_rbl_client bl.test
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtp_connect_timeout = 5s
"""

ALIASES = "team: tintin, haddock\nghost: nosuchuser\n"
TRANSPORT = (f"sink.test smtp:[{SINK}]:{RELAY_PORT}\n"
             f"down.test smtp:[{DOWN}]:{RELAY_PORT}\n")


@dataclass(frozen=True)
class Mail:
    """One SMTP transaction of the mix and what it must become.

    ``outcome``: ``delivered`` (each of ``finals`` gets a status=sent line), ``bounced``
    (one status=bounced line, and the non-delivery notice is delivered to the local
    sender), ``deferred`` (one status=deferred line) or ``rejected`` (the RCPT is refused:
    nothing is received)."""

    client: str
    sender: str
    rcpt: str
    outcome: str
    finals: tuple[str, ...] = ()
    copies: int = 1


MIX = [
    Mail(INSIDE, "alice@example.net", "tintin@example.com", "delivered",
         ("tintin@example.com",), copies=3),
    Mail(INSIDE, "bob@example.org", "team@example.com", "delivered",
         ("tintin@example.com", "haddock@example.com")),
    Mail(INSIDE, "alice@example.net", "milou@sink.test", "delivered", ("milou@sink.test",),
         copies=2),
    Mail(INSIDE, "tintin@example.com", "nobody@sink.test", "bounced"),
    Mail(INSIDE, "tintin@example.com", "ghost@example.com", "bounced"),
    Mail(INSIDE, "carol@example.org", "zorglub@down.test", "deferred", copies=2),
    Mail(OUTSIDE, "dave@example.net", "x@elsewhere.test", "rejected"),  # relay denied
    Mail(INSIDE, "dave@example.net", "nosuch@example.com", "rejected"),  # unknown user
    Mail(LISTED, "dave@example.net", "tintin@example.com", "rejected"),  # DNSBL
]
SASL_FAILURES = 2  # wrong passwords, in one session from OUTSIDE


def expected_summary() -> dict[str, object]:
    """What pflogsumm must report for MIX: its Grand Totals and top senders/recipients."""
    sent = [m for m in MIX for _ in range(m.copies)]
    received = [m for m in sent if m.outcome != "rejected"]
    recipients: Counter[str] = Counter()
    for m in received:
        recipients.update(m.finals)
        if m.outcome == "bounced":
            recipients[m.sender] += 1  # the non-delivery notice, delivered locally
    return {
        "received": len(received),
        "delivered": sum(recipients.values()),
        "forwarded": 0,
        "deferred": sum(m.outcome == "deferred" for m in received),
        "bounced": sum(m.outcome == "bounced" for m in received),
        "rejected": sum(m.outcome == "rejected" for m in sent),
        "senders": dict(Counter(m.sender for m in received)),
        "recipients": dict(recipients),
    }


def run_mix(port: int) -> None:
    """Send MIX (and the SASL failures) to the server on 127.0.0.1:``port``."""
    for m in MIX:
        for _ in range(m.copies):
            with smtplib.SMTP(INSIDE, port, timeout=30, source_address=(m.client, 0)) as smtp:
                smtp.ehlo("client.example.net")
                code, text = smtp.mail(m.sender)
                assert code == 250, text
                code, text = smtp.rcpt(m.rcpt)
                if m.outcome == "rejected":
                    assert code >= 400, (m, code, text)
                    continue
                assert code == 250, (m, code, text)
                code, text = smtp.data(f"From: <{m.sender}>\nSubject: mix\n\nBonjour.\n")
                assert code == 250, text
    with socket.create_connection((INSIDE, port), timeout=30,
                                  source_address=(OUTSIDE, 0)) as sock:
        f = sock.makefile("rb")

        def cmd(line: str) -> str:
            if line:
                sock.sendall(line.encode() + b"\r\n")
            while True:
                reply = f.readline().decode()
                if reply[3:4] != "-":
                    return reply

        assert cmd("").startswith("220")
        assert cmd("EHLO client.example.net").startswith("250")
        for _ in range(SASL_FAILURES):
            wrong = base64.b64encode(b"\0alice\0wrong").decode()
            assert cmd(f"AUTH PLAIN {wrong}").startswith("535 ")
        assert cmd("QUIT").startswith("221")


def pflogsumm(log: Path) -> dict[str, object]:
    """pflogsumm's Grand Totals and its "by message count" senders and recipients."""
    out = subprocess.run(["pflogsumm", str(log)], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, object] = {}
    for key in ("received", "delivered", "forwarded", "deferred", "bounced", "rejected"):
        m = re.search(rf"^\s+(\d+)\s+{key}\b", out, re.M)
        assert m, out
        found[key] = int(m.group(1))
    for key, title in (("senders", "Senders by message count"),
                       ("recipients", "Recipients by message count")):
        section = out.split(title, 1)[1].split("\n\n", 2)[1]
        found[key] = {addr: int(n) for n, addr in
                      (line.split() for line in section.splitlines() if line.strip())}
    return found


def fail2ban_matches(log: Path, filter_spec: str) -> list[str]:
    """The lines fail2ban-regex matches with FILTER_SPEC (``postfix[mode=more]``)."""
    out = subprocess.run(
        ["fail2ban-regex", "--print-all-matched", "--print-no-missed", str(log), filter_spec],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched, \d+ missed", out, re.M)
    assert m, out
    matched = [line.strip().lstrip("| ") for line in out.split("|  Matched line(s):", 1)[1]
               .splitlines() if line.startswith("|  ")] if int(m.group(1)) else []
    assert len(matched) == int(m.group(1)), out
    return matched


def wait_statuses(inst: Instance, want: Counter[str], timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = inst.log()
        got = Counter(re.findall(r"\bstatus=(sent|bounced|deferred) ", log))
        if all(got[k] >= n for k, n in want.items()):
            return log
        time.sleep(0.1)
    raise AssertionError(f"status lines {want} awaited:\n{inst.log()}")


@pytest.fixture
def mixed_log(make_instance, workdir: Path) -> tuple[Instance, str]:  # type: ignore[no-untyped-def]
    """A postier that received MIX; its whole log once every status line is in."""
    for user in ("tintin", "haddock"):
        ensure_user(user)
    aliases, transport = workdir / "aliases", workdir / "transport"
    aliases.write_text(ALIASES)
    transport.write_text(TRANSPORT)
    postier("postalias", str(aliases))
    inst: Instance = make_instance(
        MAIN_CF, f"alias_maps = hash:{aliases}\ntransport_maps = texthash:{transport}\n")
    refused_port(DOWN, RELAY_PORT)
    sink = ScriptedSmtp(SINK, RELAY_PORT, name="sink.test")
    sink.rcpt = lambda addr: ("550 5.1.1 <nobody@sink.test>: Recipient address rejected: "
                              "User unknown" if addr.startswith("nobody@") else "250 2.1.5 Ok")
    with sink:
        started = inst.start()
        assert started.returncode == 0, started.stderr + inst.log()
        dovecot = Dovecot(inst.base, inst.queue_dir)
        dovecot.start()
        try:
            run_mix(inst.port)
            want = expected_summary()
            statuses = Counter({"sent": want["delivered"], "bounced": want["bounced"],
                                "deferred": want["deferred"]})
            log = wait_statuses(inst, statuses)
        finally:
            dovecot.stop()
    inst.wait_log("disconnect from", count=sum(m.copies for m in MIX) + 1)
    return inst, log


def test_pflogsumm_counts_the_mix(mixed_log: tuple[Instance, str]) -> None:
    inst, log = mixed_log
    # one line per alias target, as Postfix's local(8): to=<target>, orig_to=<alias>
    for target in ("tintin", "haddock"):
        assert re.search(rf"postfix/local\[\d+\]: \w+: to=<{target}@example\.com>, "
                         r"orig_to=<team@example\.com>, relay=local, .*status=sent "
                         r"\(delivered to mailbox\)", log), log
    assert pflogsumm(inst.log_file) == expected_summary(), log


# fail2ban's stock filter, per mode: which lines of the mix it must match.
REJECTS = sum(m.copies for m in MIX if m.outcome == "rejected")
MODES = {
    "postfix": REJECTS,  # mode=more, the default
    "postfix[mode=normal]": REJECTS,
    "postfix[mode=more]": REJECTS,
    # + each SASL failure, + the disconnect line of the session with auth=0/N
    "postfix[mode=aggressive]": REJECTS + SASL_FAILURES + 1,
    "postfix[mode=auth]": SASL_FAILURES,  # jail.conf's [postfix-sasl] filter
}


def test_fail2ban_stock_postfix_filter_matches_exactly(
        mixed_log: tuple[Instance, str]) -> None:
    inst, log = mixed_log
    for spec, count in MODES.items():
        matched = fail2ban_matches(inst.log_file, spec)
        assert len(matched) == count, (spec, matched, log)
        if spec != "postfix[mode=auth]":
            rejects = [line for line in matched if ": reject: RCPT from " in line]
            assert len(rejects) == REJECTS, (spec, matched)
            assert {re.search(r"\[(127\.[\d.]+)\]", line)[1] for line in rejects} == {  # type: ignore[index]
                m.client for m in MIX if m.outcome == "rejected"}, matched
        if "aggressive" in spec or "auth" in spec:
            sasl = [line for line in matched if "SASL PLAIN authentication failed" in line]
            assert len(sasl) == SASL_FAILURES and all(f"[{OUTSIDE}]" in s for s in sasl)
