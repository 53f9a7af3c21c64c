"""``mailbox_transport = lmtp:unix:private/dovecot-lmtp`` into a real Dovecot LMTP server.

Debian's dovecot-core + dovecot-lmtpd, started by the test with its own configuration
in a temp dir: a passwd-file userdb (tintin only), maildirs in the temp dir, the LMTP
listener at QUEUE_DIR/private/dovecot-lmtp. One message to tintin (a Dovecot user) and
haddock (a local user Dovecot does not know): tintin's copy lands in his maildir, and
haddock's is refused by Dovecot and bounced to the sender — whose mailbox is Dovecot's
too, so the DSN is read back from the same maildir.
"""

from __future__ import annotations

import email
import shutil
import subprocess
import time
from email import policy as email_policy
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user
from .test_relay import MAIN_CF, send, status_line
from .test_sasl import children, kill_dovecot

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs root (real users, Dovecot)"),
    pytest.mark.skipif(shutil.which("dovecot") is None
                       or not Path("/usr/lib/dovecot/lmtp").exists(),
                       reason="needs dovecot-core and dovecot-lmtpd"),
]


class DovecotLmtp:
    def __init__(self, base: Path, queue_dir: Path) -> None:
        self.dir = base / "dovecot-lmtp"
        self.dir.mkdir()
        self.mail = self.dir / "mail"
        self.mail.mkdir()
        self.mail.chmod(0o777)
        tintin = ensure_user("tintin")
        (self.dir / "users").write_text(
            f"tintin:{{PLAIN}}x:{tintin.pw_uid}:{tintin.pw_gid}::{self.mail}/tintin\n")
        self.socket = queue_dir / "private" / "dovecot-lmtp"
        self.conf = self.dir / "dovecot.conf"
        self.conf.write_text(f"""
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = lmtp
ssl = no
auth_username_format = %Ln
mail_location = maildir:{self.mail}/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.dir}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dir}/users
}}
service lmtp {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
}}
""")
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

    def messages(self, user: str, count: int, timeout: float = 30.0) -> list[bytes]:
        new = self.mail / user / "new"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = sorted(new.glob("*")) if new.exists() else []
            if len(files) >= count:
                return [f.read_bytes() for f in files]
            time.sleep(0.1)
        raise AssertionError(f"{count} message(s) awaited in {new}")


def test_lmtp_into_dovecot_one_delivered_one_bounced(make_instance) -> None:
    ensure_user("tintin")
    ensure_user("haddock")
    inst: Instance = make_instance(
        MAIN_CF, "mailbox_transport = lmtp:unix:private/dovecot-lmtp\n")
    (inst.queue_dir / "private").mkdir(parents=True, exist_ok=True)
    dovecot = DovecotLmtp(inst.base, inst.queue_dir)
    dovecot.start()
    try:
        result = inst.start()
        assert result.returncode == 0, (result.stderr, inst.log())
        qid = send(inst, "tintin@example.com", ["tintin@example.com", "haddock@example.com"],
                   body="Mille sabords.\n")
        sent = status_line(inst, qid, "tintin@example.com", "sent")
        assert "relay=" in sent and "dovecot-lmtp" in sent, sent
        bounced = status_line(inst, qid, "haddock@example.com", "bounced")
        assert "dsn=5.1.1" in bounced, bounced
        msgs = [email.message_from_bytes(m, policy=email_policy.default)
                for m in dovecot.messages("tintin", 2)]
        original = [m for m in msgs if m["Subject"] == "relay test"]
        assert len(original) == 1
        assert "Mille sabords." in original[0].get_content()
        [dsn] = [m for m in msgs if m.get_content_type() == "multipart/report"]
        assert dsn.get_param("report-type") == "delivery-status"
        report = dsn.as_string()
        assert "Final-Recipient: rfc822; haddock@example.com" in report
        assert "Status: 5.1.1" in report
        assert not (inst.mailbox("haddock").exists() and inst.mailbox("haddock").stat().st_size)
    finally:
        dovecot.stop()
