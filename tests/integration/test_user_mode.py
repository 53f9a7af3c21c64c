"""An ordinary user's private instance: ``postier start`` with no configuration at all.

README.md promises that an ordinary user who runs ``postier start`` gets a working
instance under ``~/.postier`` on ``127.0.0.1:2525``, running as that user. Run as root
(as CI does), the test plays that user with the ``haddock`` test account and a fresh
home directory; run as an ordinary user, it is that user.

An ordinary user must be able to read the interpreter and the code it runs, and the
test's own interpreter may live where only root can read (``/root/.pyenv``). As root
the test therefore installs a copy of postier and of its dependencies (dnspython,
uvloop) in a directory the user can read, and runs it with the system's python3 of the
same version, as a user who installs postier for themselves would.
"""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, ensure_user, instance_pids, stop_and_check

PORT = 2525  # the port of the default master.cf written for an ordinary user


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])  # the real uid
    except OSError:
        return None
    return None


class User:
    """Runs postier as one ordinary account with its own HOME."""

    def __init__(self, account: pwd.struct_passwd, home: Path, python: str) -> None:
        self.account = account
        self.home = home
        self.python = python
        self.env = dict(os.environ, HOME=str(home), USER=account.pw_name,
                        LOGNAME=account.pw_name)
        self.env.pop("MAIL_CONFIG", None)
        if ROOT:
            self.env["PYTHONPATH"] = str(_install_for_user(home / "lib"))
        resolv = os.environ.get("POSTIER_RESOLV_CONF")
        if resolv:  # the test DNS server's resolv.conf sits in a directory only root reads
            copy = home / "resolv.conf"
            shutil.copyfile(resolv, copy)
            os.chmod(copy, 0o644)
            self.env["POSTIER_RESOLV_CONF"] = str(copy)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        switch = {"user": self.account.pw_uid, "group": self.account.pw_gid,
                  "extra_groups": []} if ROOT else {}
        return subprocess.run(
            [self.python, *args], env=self.env, cwd=self.home, capture_output=True,
            text=True, check=check, timeout=90, **switch,  # type: ignore[arg-type]
        )

    def postier(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "postier.cli.main", *args, check=check)


def _install_for_user(lib: Path) -> Path:
    """Copy postier, dnspython and uvloop where every user can read them."""
    import dns
    import uvloop

    import postier

    for module in (postier, dns, uvloop):
        assert module.__file__ is not None
        src = Path(module.__file__).parent
        shutil.copytree(src, lib / src.name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for path in [lib, *lib.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return lib


def _system_python() -> str:
    """A python3 of this interpreter's version outside root's home, or skip."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"no system {version} for an ordinary user (Debian package python3)")


@pytest.fixture
def user() -> Iterator[User]:
    account = ensure_user("haddock") if ROOT else pwd.getpwuid(os.geteuid())
    python = _system_python() if ROOT else sys.executable
    home = Path(tempfile.mkdtemp(prefix="postier-home-"))
    os.chmod(home, 0o755)
    if ROOT:
        os.chown(home, account.pw_uid, account.pw_gid)
    u = User(account, home, python)
    probe = u.run("-c", "import postier.cli.main, dns.resolver, uvloop", check=False)
    if probe.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"{account.pw_name} cannot run postier with {python}: "
                    f"{probe.stderr.strip()[-300:]}")
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", PORT))
        except OSError:
            shutil.rmtree(home, ignore_errors=True)
            pytest.skip(f"127.0.0.1:{PORT} is taken by another program")
    yield u
    try:
        stop_and_check(home / ".postier" / "etc", lambda: u.postier("stop", check=False))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _wait_for(path: Path, needle: bytes, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in (data := path.read_bytes()):
            return data
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in {path} within {timeout}s")


def test_ordinary_user_gets_a_private_instance_on_port_2525(user: User) -> None:
    name, uid = user.account.pw_name, user.account.pw_uid
    started = user.postier("start", check=False)
    assert started.returncode == 0, started.stderr

    instance = user.home / ".postier"
    main_cf = (instance / "etc" / "main.cf").read_text()
    assert f"mail_owner = {name}" in main_cf
    assert f"mail_spool_directory = {instance}/mail" in main_cf
    assert user.postier("status").returncode == 0

    pids = instance_pids(instance / "etc")
    assert pids, "no postier process runs for the new instance"
    assert {_uid_of(pid) for pid in pids} == {uid}, "every process runs as the user"

    with smtplib.SMTP("127.0.0.1", PORT, timeout=30) as smtp:
        code, _ = smtp.ehlo("client.example.com")
        assert code == 250
        smtp.sendmail(f"{name}@localhost", [f"{name}@localhost"],
                      f"Subject: private instance\r\n\r\nHello from {name}.\r\n")
    # Relaying is never open: a client outside mynetworks (mynetworks_style = host: this
    # host's addresses, 127.0.0.1 but not 127.0.0.2) is refused, as by Postfix's default
    # smtpd_relay_restrictions (defer_unauth_destination).
    with smtplib.SMTP("127.0.0.1", PORT, timeout=30, source_address=("127.0.0.2", 0)) as smtp:
        assert smtp.ehlo("client.example.com")[0] == 250
        assert smtp.mail(f"{name}@localhost")[0] == 250
        code, reply = smtp.rcpt("someone@example.org")
        assert code == 454 and b"Relay access denied" in reply, (code, reply)

    mbox = instance / "mail" / name
    data = _wait_for(mbox, f"Hello from {name}.".encode())
    assert data.startswith(f"From {name}@localhost ".encode())
    assert b"Subject: private instance" in data
    assert mbox.stat().st_uid == uid
    queued = [p for p in (instance / "spool").rglob("*") if p.is_file()
              and p.parent.name in {"incoming", "active", "deferred"}]
    assert all(p.stat().st_uid == uid for p in queued)

    stopped = user.postier("stop", check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert not instance_pids(instance / "etc")
    assert user.postier("status", check=False).returncode != 0
