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
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, free_port, postier
from .peers import ScriptedSmtp, refused_port
from .test_sasl import Dovecot, children

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
HARD_ERROR_LIMIT = 5  # smtpd_hard_error_limit: a session of unknown commands hits it

MAIN_CF = f"""\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.1/32
smtpd_recipient_restrictions = check_recipient_access texthash:$config_directory/access,
    permit_mynetworks, reject_unauth_destination, reject_rbl_client bl.test
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtp_connect_timeout = 5s
smtpd_hard_error_limit = {HARD_ERROR_LIMIT}
"""

ALIASES = "team: tintin, haddock\nghost: nosuchuser\nheld: tintin\ndropped: tintin\n"
ACCESS = "held@example.com HOLD\ndropped@example.com DISCARD\n"
TRANSPORT = (f"sink.test smtp:[{SINK}]:{RELAY_PORT}\n"
             f"down.test smtp:[{DOWN}]:{RELAY_PORT}\n")


@dataclass(frozen=True)
class Mail:
    """One SMTP transaction of the mix and what it must become.

    ``outcome``: ``delivered`` (each of ``finals`` gets a status=sent line), ``bounced``
    (one status=bounced line, and the non-delivery notice is delivered to the local
    sender), ``deferred`` (one status=deferred line), ``held`` or ``discarded`` (an
    access(5) HOLD or DISCARD at RCPT: received, never delivered) or ``rejected`` (the
    RCPT is refused: nothing is received)."""

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
    Mail(INSIDE, "erin@example.net", "held@example.com", "held"),
    Mail(INSIDE, "erin@example.net", "dropped@example.com", "discarded"),
    Mail(OUTSIDE, "dave@example.net", "x@elsewhere.test", "rejected"),  # relay denied
    Mail(INSIDE, "dave@example.net", "nosuch@example.com", "rejected"),  # unknown user
    Mail(LISTED, "dave@example.net", "tintin@example.com", "rejected"),  # DNSBL
]
SASL_FAILURES = 2  # wrong passwords, in one session from OUTSIDE
RAW_SESSIONS = 3  # run_mix's sessions besides MIX: SASL, errors, lost connection


def expected_summary(mix: list[Mail]) -> dict[str, object]:
    """What pflogsumm must report for ``mix``: its Grand Totals and top senders and
    recipients (address: messages)."""
    sent = [m for m in mix for _ in range(m.copies)]
    received = [m for m in sent if m.outcome != "rejected"]
    recipients: Counter[str] = Counter()
    for m in received:
        recipients.update(m.finals)
        if m.outcome == "bounced":
            recipients[m.sender] += 1  # the non-delivery notice, delivered locally
    queued = [m for m in received if m.outcome in ("delivered", "bounced", "deferred")]
    return {
        "received": len(received),
        "delivered": sum(recipients.values()),
        "forwarded": 0,
        "deferred": sum(m.outcome == "deferred" for m in received),
        "bounced": sum(m.outcome == "bounced" for m in received),
        "rejected": sum(m.outcome == "rejected" for m in sent),
        "held": sum(m.outcome == "held" for m in sent),
        "discarded": sum(m.outcome == "discarded" for m in sent),
        # the sender is counted at qmgr's from=<…> line: never for held or discarded mail
        "senders": dict(Counter(m.sender for m in queued)),
        "recipients": dict(recipients),
    }


def run_mix(port: int, mix: list[Mail]) -> None:
    """Send ``mix``, then the three raw sessions (SASL failures, too many errors, lost
    connection) to the server on 127.0.0.1:``port``."""
    for m in mix:
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
    with Raw(port) as c:  # SASL failures; the disconnect line says auth=0/N
        assert c.cmd("EHLO client.example.net").startswith("250")
        for _ in range(SASL_FAILURES):
            wrong = base64.b64encode(b"\0alice\0wrong").decode()
            assert c.cmd(f"AUTH PLAIN {wrong}").startswith("535 ")
        assert c.cmd("QUIT").startswith("221")
    with Raw(port) as c:  # smtpd_hard_error_limit: "too many errors after UNKNOWN"
        for _ in range(HARD_ERROR_LIMIT):
            assert c.cmd("XYZZY").startswith("500 ")
        assert c.cmd("").startswith("421 ")  # at once, before any further command
    with Raw(port) as c:  # gone without QUIT: "lost connection after EHLO"
        assert c.cmd("EHLO client.example.net").startswith("250")


class Raw:
    """A raw SMTP session from OUTSIDE: ``cmd(line)`` sends a line, returns the last
    line of the reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((INSIDE, port), timeout=30,
                                             source_address=(OUTSIDE, 0))
        self.file = self.sock.makefile("rb")
        assert self.cmd("").startswith("220")

    def cmd(self, line: str) -> str:
        if line:
            self.sock.sendall(line.encode() + b"\r\n")
        while True:
            reply = self.file.readline().decode()
            if reply[3:4] != "-":
                return reply

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.sock.close()


def pflogsumm(log: Path) -> dict[str, object]:
    """pflogsumm's Grand Totals and its "by message count" senders and recipients."""
    out = subprocess.run(["pflogsumm", str(log)], capture_output=True, text=True,
                         check=True).stdout
    found: dict[str, object] = {"output": out}
    for key in ("received", "delivered", "forwarded", "deferred", "bounced", "rejected",
                "held", "discarded"):
        m = re.search(rf"^\s+(\d+)\s+{key}\b", out, re.M)
        assert m, out
        found[key] = int(m.group(1))
    for key, title in (("senders", "Senders by message count"),
                       ("recipients", "Recipients by message count")):
        section = out.split(title, 1)[1].split("\n\n", 1)[0]
        rows = [line.split() for line in section.splitlines()
                if line.strip() and not line.startswith("-")]
        assert all(len(row) == 2 for row in rows), out
        found[key] = {addr: int(n) for n, addr in rows}
    return found


def check_action_lines(log: str, pflogsumm_output: str, mix: list[Mail]) -> None:
    """HOLD and DISCARD logged as smtpd_check's log_whatsup, and grouped so by pflogsumm."""
    for m in mix:
        if m.outcome not in ("held", "discarded"):
            continue
        action = "HOLD" if m.outcome == "held" else "DISCARD"
        assert re.search(
            rf": \w+: {action.lower()}: RCPT from [^ ]+\[{re.escape(m.client)}\]: "
            rf"<{re.escape(m.rcpt)}>: Recipient address triggers {action} action; "
            rf"from=<{re.escape(m.sender)}> to=<{re.escape(m.rcpt)}> proto=ESMTP "
            r"helo=<client\.example\.net>$", log, re.M), log
        assert f"  Recipient address triggers {action} action (total: 1)\n" in (
            pflogsumm_output), pflogsumm_output


def fail2ban_matches(log: Path, filter_spec: str) -> list[str]:
    """The lines fail2ban-regex matches with FILTER_SPEC (``postfix[mode=more]``)."""
    out = subprocess.run(
        ["fail2ban-regex", "--print-all-matched", "--print-no-missed", str(log), filter_spec],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched, \d+ missed", out, re.M)
    assert m, out
    block = out.split("|- Matched line(s):\n", 1)[1].split("`-", 1)[0] if int(m[1]) else ""
    matched = [line[3:] for line in block.splitlines() if line.startswith("|  ")]
    assert len(matched) == int(m.group(1)), out
    return matched


def scripted_sink() -> ScriptedSmtp:
    """sink.test's relay: accepts everyone but nobody@ (550 at RCPT)."""
    refused_port(DOWN, RELAY_PORT)
    sink = ScriptedSmtp(SINK, RELAY_PORT, name="sink.test")
    sink.rcpt = lambda addr: ("550 5.1.1 <nobody@sink.test>: Recipient address rejected: "
                              "User unknown" if addr.startswith("nobody@") else "250 2.1.5 Ok")
    return sink


def send_and_wait(port: int, queue_dir: Path, base: Path, mix: list[Mail],
                  log: Callable[[], str]) -> str:
    """With Dovecot on ``queue_dir``'s private/auth: run ``mix`` and return the log once
    every status line and every disconnect line is in."""
    dovecot = Dovecot(base, queue_dir)
    try:
        dovecot.start()
        run_mix(port, mix)
        want = expected_summary(mix)
        statuses = Counter({"sent": want["delivered"], "bounced": want["bounced"],
                            "deferred": want["deferred"]})
        sessions = sum(m.copies for m in mix) + RAW_SESSIONS
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log()
            got = Counter(re.findall(r"\bstatus=(sent|bounced|deferred) ", text))
            if all(got[k] >= n for k, n in statuses.items()) and text.count(
                    "disconnect from ") >= sessions:
                return text
            time.sleep(0.1)
        raise AssertionError(f"status lines {statuses}, {sessions} sessions awaited:\n"
                             f"{log()}")
    finally:
        if not dovecot.pids:  # start() gave up waiting: stop what it started anyway
            pid_file = dovecot.dir / "run" / "master.pid"
            if pid_file.exists():
                master = int(pid_file.read_text())
                dovecot.pids = [master, *children(master)]
        dovecot.stop()


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
    (inst.config_dir / "access").write_text(ACCESS)
    with scripted_sink():
        started = inst.start()
        assert started.returncode == 0, started.stderr + inst.log()
        log = send_and_wait(inst.port, inst.queue_dir, inst.base, MIX, inst.log)
    return inst, log


def test_pflogsumm_counts_the_mix(mixed_log: tuple[Instance, str]) -> None:
    inst, log = mixed_log
    # one line per alias target, as Postfix's local(8): to=<target>, orig_to=<alias>
    for target in ("tintin", "haddock"):
        assert re.search(rf"postfix/local\[\d+\]: \w+: to=<{target}@example\.com>, "
                         r"orig_to=<team@example\.com>, relay=local, .*status=sent "
                         r"\(delivered to mailbox\)", log), log
    summary = pflogsumm(inst.log_file)
    output = str(summary.pop("output"))
    assert summary == expected_summary(MIX), f"{output}\n{log}"
    check_action_lines(log, output, MIX)
    # pflogsumm keeps what follows a master line's last ": ": each message it lists is
    # a whole line of the master's (none cut short)
    section = output.split("Master daemon messages\n", 1)[1].split("\n\n", 1)[0]
    listed = [line.split(None, 1)[1] for line in section.splitlines()[1:] if line.strip()]
    whole = re.findall(r"postfix/master\[\d+\]: (.*)$", log, re.M)
    assert "daemon started -- version " in section and all(m in whole for m in listed), (
        section, whole)


ERRORS = 1  # too many errors after UNKNOWN from …
DDOS = 2  # lost connection after EHLO from …; disconnect from … auth=0/2 …


def expected_matches(mix: list[Mail]) -> dict[str, Counter[str]]:
    """fail2ban's stock filter, per mode: the kinds of line it must match in the log of
    ``mix`` and how many of each (``kind_of``)."""
    rejects = sum(m.copies for m in mix if m.outcome == "rejected")  # NOQUEUE: reject: RCPT
    rbl = sum(m.copies for m in mix if m.client == LISTED)  # … blocked using bl.test
    normal = Counter(reject=rejects, errors=ERRORS)
    return {
        "postfix": normal,  # mode=more, the default: normal and rbl
        "postfix[mode=normal]": normal,
        "postfix[mode=more]": normal,
        "postfix[mode=rbl]": Counter(reject=rbl),
        "postfix[mode=errors]": Counter(errors=ERRORS),
        "postfix[mode=ddos]": Counter(ddos=DDOS),
        "postfix[mode=extra]": normal + Counter(sasl=SASL_FAILURES),
        "postfix[mode=aggressive]": normal + Counter(sasl=SASL_FAILURES, ddos=DDOS),
        "postfix[mode=auth]": Counter(sasl=SASL_FAILURES),  # jail.conf's [postfix-sasl]
    }


def kind_of(line: str) -> str:
    """What a line fail2ban matched is: sasl, reject, errors, ddos, else the line."""
    if ": SASL PLAIN authentication failed: " in line and f"[{OUTSIDE}]" in line:
        return "sasl"
    if ": NOQUEUE: reject: RCPT from " in line:
        return "reject"
    if f": too many errors after UNKNOWN from unknown[{OUTSIDE}]" in line:
        return "errors"
    if re.search(rf": (lost connection after EHLO|disconnect) from unknown\[{OUTSIDE}\]",
                 line):
        return "ddos"
    return line


def check_fail2ban(log_file: Path, mix: list[Mail]) -> None:
    for spec, kinds in expected_matches(mix).items():
        matched = fail2ban_matches(log_file, spec)
        assert Counter(map(kind_of, matched)) == kinds, (spec, matched)
        clients = {re.search(r"RCPT from [^[]*\[([\d.]+)\]", line)[1]  # type: ignore[index]
                   for line in matched if ": reject: " in line}
        if "rbl" in spec:
            assert clients == ({LISTED} if kinds["reject"] else set()), matched
        elif kinds["reject"]:
            assert clients == {m.client for m in mix if m.outcome == "rejected"}, matched


def test_fail2ban_stock_postfix_filter_matches_exactly(
        mixed_log: tuple[Instance, str]) -> None:
    inst, _ = mixed_log
    check_fail2ban(inst.log_file, MIX)


POSTFIX = "/usr/sbin/postfix"
MASTER_CF_DIST = Path("/usr/share/postfix/master.cf.dist")


@pytest.mark.skipif(not (Path(POSTFIX).exists() and MASTER_CF_DIST.exists()),
                    reason="Debian's postfix package is not installed")
def test_postfix_reads_the_same_counts_from_the_same_mix(workdir: Path) -> None:
    """The reference: the same mix through a throwaway Postfix 3.7 (no DNSBL line: its
    resolver is the system's) gives the counts and matches the tests expect of postier."""
    for user in ("tintin", "haddock"):
        ensure_user(user)
    mix = [m for m in MIX if m.client != LISTED]
    base = workdir / "postfix"
    etc, queue, data, mail = (base / d for d in ("etc", "queue", "data", "mail"))
    for d in (etc, queue, data, mail):
        d.mkdir(parents=True)
    os.chmod(mail, 0o1777)
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    (base / "aliases").write_text(ALIASES)
    (base / "transport").write_text(TRANSPORT)
    (etc / "access").write_text(ACCESS)
    port = free_port()
    (etc / "main.cf").write_text(MAIN_CF + f"""
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_spool_directory = {mail}
maillog_file_prefixes = {base}
maillog_file = {base}/maillog
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
alias_maps = hash:{base}/aliases
alias_database = hash:{base}/aliases
transport_maps = texthash:{base}/transport
""")
    services = []
    for line in MASTER_CF_DIST.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
            if fields[1] == "inet":
                fields[0] = f"127.0.0.1:{port}"
            fields[4] = "n"  # no chroot
            line = " ".join(fields)
        services.append(line)
    (etc / "master.cf").write_text("\n".join(services) + "\n")
    subprocess.run(["postalias", "-c", str(etc), str(base / "aliases")], check=True)
    log_file = base / "maillog"

    def log() -> str:
        return log_file.read_text() if log_file.exists() else ""

    with scripted_sink():
        # postfix start returns once the master serves (master -w); no probe connection,
        # which would log a "lost connection after CONNECT" that aggressive mode matches
        subprocess.run([POSTFIX, "-c", str(etc), "start"], check=True, capture_output=True)
        try:
            text = send_and_wait(port, queue, base, mix, log)
        finally:
            subprocess.run([POSTFIX, "-c", str(etc), "stop"], capture_output=True)
    summary = pflogsumm(log_file)
    output = str(summary.pop("output"))
    assert summary == expected_summary(mix), f"{output}\n{text}"
    check_action_lines(text, output, mix)
    check_fail2ban(log_file, mix)


@pytest.mark.parametrize("argv", [["stop", "fast"], ["postfix", "stop", "fast"]])
def test_stop_fast_stops_at_once(make_instance, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    """postier's spelling of the fast stop (Postfix 3.7 documents only ``abort``)."""
    inst: Instance = make_instance(MAIN_CF)
    (inst.config_dir / "access").write_text(ACCESS)
    started = inst.start()
    assert started.returncode == 0, started.stderr + inst.log()
    assert inst.pids()
    done = postier("-c", str(inst.config_dir), *argv, check=False)
    assert done.returncode == 0, done.stderr
    assert "stopping the Postfix mail system" in done.stderr
    assert inst.pids() == []
    inst.wait_log("terminating on signal 3")  # SIGQUIT: abort's signal, not stop's 15
