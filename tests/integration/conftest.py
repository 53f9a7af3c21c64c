"""Integration fixtures: a real postier instance on a free loopback port, real users.

Each instance has its own configuration directory, queue directory and mail spool in
a fresh temporary directory; tear-down stops it with ``postier stop`` and checks that
none of its processes is left.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = os.geteuid() == 0
DATA = Path(__file__).resolve().parent.parent / "data"
TEST_USER_GECOS = "postier test user"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_user(name: str) -> pwd.struct_passwd:
    """A local account for deliveries; created (as root) if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        if not ROOT:
            pytest.skip(f"user {name} does not exist and only root can create it")
    subprocess.run(
        ["useradd", "--create-home", "--comment", TEST_USER_GECOS, "--shell", "/bin/sh", name],
        check=True,
    )
    return pwd.getpwnam(name)


def postier(
    *args: str, check: bool = True, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postier.cli.main", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def instance_pids(config_dir: Path, module: str = "postier") -> list[int]:
    """Live processes whose command line names ``config_dir`` and ``module``."""
    found = []
    needle = str(config_dir).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and module.encode() in cmdline:
            found.append(int(entry))
    return found


class Instance:
    """One postier configuration with its own directories and loopback port."""

    def __init__(self, base: Path, main_cf: str, extra: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.config_dir = base / "etc"
        self.queue_dir = base / "spool"
        self.mail_dir = base / "mail"
        self.log_file = base / "maillog"
        for d in (self.config_dir, self.queue_dir, self.mail_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o755)
        os.chmod(self.mail_dir, 0o1777)
        owner = "postfix" if ROOT else pwd.getpwuid(os.geteuid()).pw_name
        # the test instance's settings, appended after the file under test (no comment
        # line: the tests name main.cf's line numbers)
        overrides = f"""
maillog_file_prefixes = {self.log_file.parent}
queue_directory = {self.queue_dir}
data_directory = {self.base}/data
mail_spool_directory = {self.mail_dir}
maillog_file = {self.log_file}
mail_owner = {owner}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
{extra}
"""
        (self.config_dir / "main.cf").write_text(main_cf + overrides)
        self.write_master_cf()

    def write_master_cf(self, services: str | None = None) -> None:
        text = services or f"127.0.0.1:{self.port} inet n - n - - smtpd\n"
        (self.config_dir / "master.cf").write_text(text)

    def start(self) -> subprocess.CompletedProcess[str]:
        return postier("-c", str(self.config_dir), "start", check=False)

    def stop(self) -> subprocess.CompletedProcess[str]:
        return postier("-c", str(self.config_dir), "stop", check=False)

    def pids(self, module: str = "postier") -> list[int]:
        """Every live process of this instance (whose command line names its config dir)."""
        return instance_pids(self.config_dir, module)

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def wait_log(self, needle: str, timeout: float = 20.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if text.count(needle) >= count:
                return text
            time.sleep(0.05)
        raise AssertionError(
            f"{needle!r} not logged {count} time(s) within {timeout}s:\n{self.log()}"
        )

    def mailbox(self, user: str) -> Path:
        return self.mail_dir / user


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parent is mode 0700 and mail_owner must reach the queue.
    path = Path(tempfile.mkdtemp(prefix="postier-it-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_instance(workdir: Path) -> Iterator[object]:
    made: list[Instance] = []

    def make(main_cf: str, extra: str = "", name: str = "i") -> Instance:
        inst = Instance(workdir / f"{name}{len(made)}", main_cf, extra)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        stop_and_check(inst.config_dir, inst.stop)


def stop_and_check(config_dir: Path, stop: Callable[[], object]) -> None:
    """Stop an instance if it runs; fail if any of its processes outlives the stop."""
    if instance_pids(config_dir):
        stop()
    deadline = time.monotonic() + 15
    while instance_pids(config_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = instance_pids(config_dir)
    for pid in left:
        os.kill(pid, 9)
    assert not left, f"processes left behind after stop: {left}"


@pytest.fixture(scope="session")
def tutorial_main_cf() -> str:
    return (DATA / "tutorial" / "main.cf").read_text()


# The relaying tests' remote mail hosts (127.1.0.0/16, port 25): see test_relay.py.
RELAY_RECORDS = [
    # two MX hosts, preferences 10 and 20
    "--mx-host=relay-a.test,mx1.relay-a.test,10",
    "--mx-host=relay-a.test,mx2.relay-a.test,20",
    "--host-record=mx1.relay-a.test,127.1.0.1",
    "--host-record=mx2.relay-a.test,127.1.0.2",
    # no MX: the domain's own A record
    "--host-record=noa.test,127.1.0.3",
    # one MX each, one domain per scenario
    "--mx-host=relay-b.test,mx.relay-b.test,10",
    "--host-record=mx.relay-b.test,127.1.0.4",
    "--mx-host=relay-c.test,mx.relay-c.test,10",
    "--host-record=mx.relay-c.test,127.1.0.5",
    "--mx-host=relay-d.test,mx.relay-d.test,10",
    "--host-record=mx.relay-d.test,127.1.0.6",
    "--mx-host=relay-e.test,mx.relay-e.test,10",
    "--host-record=mx.relay-e.test,127.1.0.8",
    "--mx-host=relay-f.test,mx.relay-f.test,10",
    "--host-record=mx.relay-f.test,127.1.0.9",
    # RFC 7505 null MX
    "--mx-host=nullmx.test,.,0",
]

# ---- The restriction engine's DNS (test_restrictions_dns_policy.py) -------------------
# bl.test: a DNSBL zone listing 127.0.0.2 (as 127.0.0.2 with a TXT reason) and 127.0.0.3
# (as 127.0.0.4); rhs.test: a domain list listing spammer.test; dark.test: the MX host
# mx.dark.test at 127.0.0.66 serves mxbad.test. --address= adds no PTR records.
RESTRICTION_RECORDS = [
    "--address=/2.0.0.127.bl.test/127.0.0.2",
    "--txt-record=2.0.0.127.bl.test,listed by the tests",
    "--address=/3.0.0.127.bl.test/127.0.0.4",
    "--address=/spammer.test.rhs.test/127.0.0.2",
    "--address=/spammer.test/127.0.0.77",
    "--mx-host=mxbad.test,mx.dark.test,10",
    "--address=/mx.dark.test/127.0.0.66",
]

# Another address lets two test runs share a machine (POSTIER_TEST_DNS_ADDRESS=127.0.0.154).
DNS_ADDRESS = os.environ.get("POSTIER_TEST_DNS_ADDRESS", "127.0.0.153")


#: sockets a test opened and has not closed yet (``test_restrictions.Client`` registers
#: its own): a test that fails half-way leaves them, and closing them at its teardown keeps
#: their ResourceWarning from failing whichever later test the collector runs in.
OPEN_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def close_left_sockets() -> Iterator[None]:
    yield
    while OPEN_SOCKETS:
        OPEN_SOCKETS.pop().close()


@pytest.fixture(scope="session", autouse=True)
def dns_server() -> Iterator[str]:
    """A real DNS server (dnsmasq) on loopback that postier uses instead of the system's.

    example.com/net/org resolve (with MX records), and so do ``RELAY_RECORDS``' names;
    every other name is NXDOMAIN, so that no test ever asks a resolver outside this
    machine.
    """
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None or not ROOT:
        pytest.skip("dnsmasq (Debian dnsmasq-base) and root are needed for the DNS server")
    base = Path(tempfile.mkdtemp(prefix="postier-dns-"))
    resolv = base / "resolv.conf"
    resolv.write_text(f"nameserver {DNS_ADDRESS}\n")
    errlog = (base / "dnsmasq.log").open("wb")
    proc = subprocess.Popen(
        [
            dnsmasq,
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            f"--listen-address={DNS_ADDRESS}",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            f"--pid-file={base}/pid",
            "--log-facility=-",
            "--address=/#/",
            "--address=/example.net/127.0.0.10",
            "--mx-host=example.net,mail.example.net,10",
            "--address=/example.org/127.0.0.11",
            "--mx-host=example.org,mail.example.org,10",
            "--address=/example.com/127.0.0.1",
            "--mx-host=example.com,tintin.example.com,10",
            *RELAY_RECORDS,
            *RESTRICTION_RECORDS,
        ],
        stdout=subprocess.DEVNULL,
        stderr=errlog,
    )
    errlog.close()  # dnsmasq has its own copy
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            # A minimal query for example.net/A; any answer means dnsmasq is up.
            query = (
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                b"\x07example\x03net\x00\x00\x01\x00\x01"
            )
            s.settimeout(0.2)
            try:
                s.sendto(query, (DNS_ADDRESS, 53))
                s.recv(512)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"dnsmasq failed: {(base / 'dnsmasq.log').read_text()}"
                    ) from None
    if proc.poll() is not None:
        raise RuntimeError(f"dnsmasq failed: {(base / 'dnsmasq.log').read_text()}")
    os.environ["POSTIER_RESOLV_CONF"] = str(resolv)
    yield DNS_ADDRESS
    os.environ.pop("POSTIER_RESOLV_CONF", None)
    proc.terminate()
    proc.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)
