"""SASL end to end: a real Dovecot (and a real saslauthd) behind a running postier.

The tutorial's main.cf with its SASL lines verbatim (``smtpd_sasl_type = dovecot``,
``smtpd_sasl_path = private/auth``, ``smtpd_sasl_authenticated_header = yes``) and
Dovecot's listener exactly as the tutorial writes it (``unix_listener
QUEUE/private/auth { mode = 0660 group = postfix }``): smtpd, running as ``postfix``,
reaches it only through the group.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="Dovecot and saslauthd are started as root"),
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot-core is not installed"),
]

PASSWORD = "s3cret-Pass"
# fail2ban's postfix-sasl filter (filter.d/postfix.conf, mode "auth"), its essential part.
FAIL2BAN = re.compile(r"warning: [-._\w]+\[(?P<host>[^\]]+)\]: SASL ((?i:LOGIN|PLAIN|"
                      r"(?:CRAM|DIGEST)-MD5)) authentication failed:")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Dovecot:
    """A Dovecot with its own configuration: passwd-file users, auth listener only."""

    def __init__(self, base: Path, queue_dir: Path) -> None:
        self.dir = base / "dovecot"
        self.dir.mkdir(exist_ok=True)
        (self.dir / "users").write_text(
            f"alice:{{PLAIN}}{PASSWORD}\n"
            "locked:{PLAIN}x::::::nologin\n"
        )
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols =
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  # Postfix smtp-auth
  unix_listener {queue_dir}/private/auth {{
    mode = 0660
    group = postfix
  }}
}}
""")
        self.socket = queue_dir / "private" / "auth"
        self.pids: list[int] = []

    def start(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.conf)], check=True)
        pid_file = self.dir / "run" / "master.pid"
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and pid_file.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.socket.exists(), (self.dir / "dovecot.log").read_text()
        master = int(pid_file.read_text())
        self.pids = [master, *children(master)]

    def stop(self) -> None:
        """Kill our Dovecot processes, by the PIDs we noted (and their children)."""
        kill_dovecot(self.pids)
        self.pids = []
        self.socket.unlink(missing_ok=True)
        (self.dir / "run" / "master.pid").unlink(missing_ok=True)


def kill_dovecot(noted: list[int]) -> None:
    """SIGKILL the Dovecot processes ``noted`` at start and their children, then wait
    until they are gone, not just signalled: a dying auth or anvil process still holds
    its listener, and a new Dovecot would refuse it ("Socket already exists")."""
    pids = list(noted)
    for pid in list(pids):
        pids += children(pid)
    for pid in set(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in set(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Is ``pid`` a running process (a zombie, or no process, is not)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.fixture
def sasl_instance(make_instance, tutorial_main_cf: str) -> Iterator[tuple[Instance, Dovecot]]:
    """The tutorial's main.cf as it is (SASL lines included), seen from outside
    mynetworks, with the procmail line off (the mailbox is read directly)."""
    ensure_user("tintin")
    inst: Instance = make_instance(tutorial_main_cf,
                                   "mynetworks = 192.0.2.0/24\nmailbox_command =")
    result = inst.start()
    assert result.returncode == 0, result.stderr
    dovecot = Dovecot(inst.base, inst.queue_dir)
    dovecot.start()
    yield inst, dovecot
    dovecot.stop()


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

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

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_ehlo_offers_auth_and_passwords_are_checked_by_dovecot(sasl_instance) -> None:
    inst, _ = sasl_instance
    c = Client(inst.port)
    ehlo = c.cmd("EHLO milou.example.net")
    assert "250-AUTH PLAIN LOGIN" in ehlo.splitlines()
    assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")) == (
        "535 5.7.8 Error: authentication failed: (reason unavailable)")
    assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
        "235 2.7.0 Authentication successful")
    assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
        "503 5.5.1 Error: already authenticated")
    c.cmd("QUIT")
    c.close()
    # LOGIN, step by step; a nologin account's OK is refused.
    c = Client(inst.port)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert c.cmd(b64("alice")) == "334 UGFzc3dvcmQ6"
    assert c.cmd(b64("nope")).startswith("535 5.7.8 Error: authentication failed")
    assert c.cmd("AUTH PLAIN " + b64("\0locked\0x")).startswith("535 5.7.8 ")
    c.close()
    log = inst.wait_log("disconnect from", count=2)
    failures = [m for m in (FAIL2BAN.search(line) for line in log.splitlines()) if m]
    assert len(failures) == 3 and all(m["host"] == "127.0.0.1" for m in failures), log
    assert "SASL PLAIN authentication failed: (reason unavailable), sasl_username=alice" in log
    assert "SASL LOGIN authentication failed" in log
    assert PASSWORD not in log and "nope" not in log
    assert "ehlo=1 auth=1/3" in log and "ehlo=1 auth=0/2" in log


def test_authenticated_client_from_outside_mynetworks(sasl_instance) -> None:
    """swaks --auth, then smtplib: the message carries (Authenticated sender: alice)."""
    inst, _ = sasl_instance
    if shutil.which("swaks") is None:
        pytest.skip("swaks is not installed")
    done = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{inst.port}", "--helo", "milou.example.net",
         "--from", "alice@example.net", "--to", "tintin@example.com",
         "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", PASSWORD,
         "--header", "Subject: via swaks"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "235 2.7.0 Authentication successful" in done.stdout
    with smtplib.SMTP("127.0.0.1", inst.port, local_hostname="milou.example.net",
                      timeout=30) as smtp:
        smtp.login("alice", PASSWORD)
        refused = smtp.sendmail("alice@example.net", ["tintin@example.com"],
                                b"Subject: via smtplib\r\n\r\nbody\r\n")
        assert refused == {}
    log = inst.wait_log("status=sent", count=2)
    assert re.search(r"[0-9A-F]+: client=localhost\[127\.0\.0\.1\], sasl_method=LOGIN, "
                     r"sasl_username=alice", log), log
    assert re.search(r"client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, "
                     r"sasl_username=alice", log), log
    mbox = inst.mailbox("tintin").read_text()
    assert mbox.count("\t(Authenticated sender: alice)\n") == 2, mbox
    assert mbox.count(" with ESMTPA id ") == 2, mbox


def test_submission_refuses_until_authenticated(make_instance, tutorial_main_cf) -> None:
    """master.cf's -o smtpd_client_restrictions=permit_sasl_authenticated,reject."""
    ensure_user("tintin")
    inst: Instance = make_instance(tutorial_main_cf, "mynetworks = 192.0.2.0/24")
    inst.write_master_cf(
        f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
        "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n")
    assert inst.start().returncode == 0
    dovecot = Dovecot(inst.base, inst.queue_dir)
    dovecot.start()
    try:
        c = Client(inst.port)
        c.cmd("EHLO milou.example.net")
        assert c.cmd("MAIL FROM:<alice@example.net>").startswith("250")
        assert c.cmd("RCPT TO:<tintin@example.com>") == (
            "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied")
        assert c.cmd("RSET").startswith("250")
        assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")).startswith("235 2.7.0")
        assert c.cmd("MAIL FROM:<alice@example.net> AUTH=alice@example.net").startswith("250")
        assert c.cmd("RCPT TO:<tintin@example.com>") == "250 2.1.5 Ok"
        c.close()
    finally:
        dovecot.stop()


def test_tls_auth_only_hides_auth_without_tls(make_instance, tutorial_main_cf) -> None:
    inst: Instance = make_instance(tutorial_main_cf, "smtpd_tls_auth_only = yes")
    assert inst.start().returncode == 0
    dovecot = Dovecot(inst.base, inst.queue_dir)
    dovecot.start()
    try:
        c = Client(inst.port)
        assert "AUTH" not in c.cmd("EHLO milou.example.net")
        assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
            "503 5.5.1 Error: authentication not enabled")
        c.close()
    finally:
        dovecot.stop()


def test_bad_input_is_refused_and_never_accepted(sasl_instance) -> None:
    inst, _ = sasl_instance
    c = Client(inst.port)
    c.cmd("EHLO milou.example.net")
    # An over-long line is cut at line_length_limit, as Postfix's smtpd does, and what is
    # left is answered: never accepted.
    assert c.cmd("AUTH PLAIN " + "A" * 100_000) == (
        "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response")
    assert c.cmd("AUTH PLAIN !!!!") == (
        "535 5.7.8 Error: authentication failed: Invalid base64 data in initial response")
    assert c.cmd("AUTH PLAIN") == "334 "
    assert c.cmd("!!!") == (
        "535 5.7.8 Error: authentication failed: Invalid base64 data in continued response")
    assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert c.cmd("*") == "501 5.7.0 Authentication aborted"
    assert c.cmd("AUTH CRAM-MD5") == (
        "535 5.7.8 Error: authentication failed: Invalid authentication mechanism")
    assert c.cmd("AUTH PLAIN") == "334 "
    assert c.cmd("A" * 100_000).startswith("535 5.7.8 Error: authentication failed")
    assert c.cmd("NOOP") == "250 2.0.0 Ok"
    # After all that, the real password still works: no state was left behind.
    assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")).startswith("235 ")
    c.close()
    log = inst.wait_log("disconnect from")
    assert "SASL LOGIN authentication aborted" in log
    assert "error:" not in log and "Traceback" not in log


def test_dovecot_missing_then_back_then_dying(sasl_instance) -> None:
    inst, dovecot = sasl_instance
    dovecot.stop()
    c = Client(inst.port)
    c.cmd("EHLO milou.example.net")
    assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")) == (
        "454 4.7.0 Temporary authentication failure: (reason unavailable)")
    dovecot.start()  # reconnected at the next request
    assert c.cmd("AUTH PLAIN") == "334 "
    dovecot.stop()  # dies in the middle of the exchange
    assert c.cmd(b64(f"\0alice\0{PASSWORD}")).startswith("454 4.7.0 Temporary authentication")
    dovecot.start()
    assert c.cmd("AUTH PLAIN " + b64(f"\0alice\0{PASSWORD}")).startswith("235 ")
    c.close()
    log = inst.wait_log("disconnect from")
    assert "warning: SASL: Connect to Dovecot auth socket 'private/auth' failed" in log
    assert "error:" not in log and "Traceback" not in log


@pytest.mark.skipif(shutil.which("saslauthd") is None, reason="sasl2-bin is not installed")
def test_cyrus_through_saslauthd(make_instance, tutorial_main_cf, workdir: Path) -> None:
    """smtpd_sasl_type = cyrus: PLAIN and LOGIN checked by a real saslauthd (-a shadow)."""
    user = ensure_user("saslcyrus")
    subprocess.run(["chpasswd"], input=f"{user.pw_name}:{PASSWORD}\n", text=True, check=True)
    run = workdir / "saslauthd"
    run.mkdir(mode=0o755)
    conf_dir = workdir / "cyrus"
    conf_dir.mkdir(mode=0o755)
    (conf_dir / "smtpd.conf").write_text(
        f"pwcheck_method: saslauthd\nmech_list: PLAIN LOGIN\nsaslauthd_path: {run}/mux\n")
    # Its own session: saslauthd signals its whole process group when it exits.
    daemon = subprocess.Popen(["saslauthd", "-a", "shadow", "-m", str(run), "-n", "1", "-d"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (run / "mux").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        inst: Instance = make_instance(
            tutorial_main_cf,
            f"smtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\n"
            f"cyrus_sasl_config_path = {conf_dir}\nmynetworks = 192.0.2.0/24")
        assert inst.start().returncode == 0
        c = Client(inst.port)
        assert "250-AUTH PLAIN LOGIN" in c.cmd("EHLO milou.example.net").splitlines()
        assert c.cmd("AUTH PLAIN " + b64("\0saslcyrus\0wrong")) == (
            "535 5.7.8 Error: authentication failed: authentication failure")
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd(b64("saslcyrus")) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64(PASSWORD)) == "235 2.7.0 Authentication successful"
        c.close()
        with smtplib.SMTP("127.0.0.1", inst.port, local_hostname="milou.example.net",
                          timeout=30) as smtp:
            smtp.login("saslcyrus", PASSWORD)
        log = inst.wait_log("disconnect from", count=2)
        assert FAIL2BAN.search(log) and PASSWORD not in log
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
