#!/usr/bin/env python3
"""Benchmark harness: end-to-end local-delivery throughput and CPU of postier vs Postfix.

Follows Postfix's smtp-source(1) (the load generator), postfix(1) (``-c DIR start|stop``),
MULTI_INSTANCE_README (a throwaway second instance with its own queue_directory and
data_directory) and postlogd(8)/``maillog_file`` for logging. SMTP is RFC 5321, the mailbox
format is the mbox "From " separator convention used by local(8).

Usage: ``python3 bench/run.py [--messages N] [--sessions 20] [--size 1024]
[--rounds 3] [--only postfix|postier]``. Standard library only; run as root.

For each round and each server (alternating the order between rounds) the harness starts
the server from its own throwaway config directory, sends N messages with
``smtp-source -s SESSIONS -m N -l SIZE`` to its loopback port, polls the recipient's mbox
until N "From " lines are there, waits for the queue to drain, reads the CPU time of the
server's process tree from /proc, and stops the server. Postfix is only the reference:
nothing in postier depends on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pwd
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

POSTFIX = "/usr/sbin/postfix"
SMTP_SOURCE_CANDIDATES = ("/usr/sbin/smtp-source", "/usr/bin/smtp-source")
MASTER_CF_CANDIDATES = ("/usr/share/postfix/master.cf.dist", "/etc/postfix/master.cf")
BENCH_USER = "benchuser"
SENDER = "sender@example.com"
RECIPIENT = f"{BENCH_USER}@example.com"
HOSTNAME = "bench.example.com"

SCENARIOS = ("local", "relay", "tls")
# relay: the next hop, an smtp-sink(1) on a loopback address of its own.
SINK_ADDRESS = "127.12.0.1"
RELAY_RECIPIENT = f"{BENCH_USER}@relay.example.net"
# tls: the SASL user both servers authenticate through Dovecot's passwd-file.
AUTH_USER = "benchauth"
AUTH_PASSWORD = "bench-Pass-1"

# Goal of the project (not binding yet): twice Postfix's throughput at half its CPU/msg.
TARGET_THROUGHPUT_RATIO = 2.0
TARGET_CPU_RATIO = 0.5

# Queue subdirectories that hold messages (Postfix and postier share these names).
QUEUE_MESSAGE_DIRS = (
    "maildrop", "incoming", "active", "deferred", "defer", "bounce", "trace", "hold",
    "corrupt", "flush", "saved",
)
DRAIN_DIRS = ("maildrop", "incoming", "active", "deferred")


# --------------------------------------------------------------------------------------
# Pure helpers (data in, data out)
# --------------------------------------------------------------------------------------

def common_main_cf() -> dict[str, str]:
    """The main.cf body both servers get, parameter for parameter."""
    return {
        "compatibility_level": "3.6",
        "myhostname": HOSTNAME,
        "mydomain": "example.com",
        "myorigin": "$myhostname",
        "mydestination": "$myhostname, localhost, example.com",
        "mynetworks": "127.0.0.0/8",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "relayhost": "",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "mailbox_size_limit": "0",
        "message_size_limit": "10240000",
        "recipient_delimiter": "+",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        "readme_directory": "no",
    }


def instance_main_cf(root: str) -> dict[str, str]:
    """The per-instance paths (same parameter names for both servers)."""
    return {
        "queue_directory": f"{root}/queue",
        "data_directory": f"{root}/data",
        "mail_spool_directory": f"{root}/spool",
        "maillog_file": f"{root}/maillog",
        "maillog_file_prefixes": root,
    }


def scenario_main_cf(scenario: str, sink_port: int | None = None,
                     tls_dir: str | None = None) -> dict[str, str]:
    """What SCENARIO adds to common_main_cf(), the same for both servers.

    ``relay``: every non-local recipient goes to ``relayhost = [SINK_ADDRESS]:SINK_PORT``
    (``mynetworks = 127.0.0.0/8`` lets smtp-source relay). ``tls``: the server's
    certificate and key under TLS_DIR, ``smtpd_tls_security_level = may`` on port 25 and
    Dovecot SASL at ``private/auth`` (relative to queue_directory); the submission-like
    service's own ``-o`` settings are in submission_options(). Raises ValueError for an
    unknown scenario or a missing argument.
    """
    if scenario == "local":
        return {}
    if scenario == "relay":
        if sink_port is None:
            raise ValueError("relay needs the sink's port")
        return {"relayhost": f"[{SINK_ADDRESS}]:{sink_port}"}
    if scenario == "tls":
        if tls_dir is None:
            raise ValueError("tls needs the certificate directory")
        return {
            "smtpd_tls_cert_file": f"{tls_dir}/cert.pem",
            "smtpd_tls_key_file": f"{tls_dir}/key.pem",
            "smtpd_tls_security_level": "may",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": "private/auth",
            "smtpd_sasl_authenticated_header": "yes",
        }
    raise ValueError(f"unknown scenario {scenario!r}")


def submission_options() -> list[tuple[str, str]]:
    """The ``-o`` overrides of the submission-like service (the tutorial's and Debian's)."""
    return [
        ("syslog_name", "postfix/submission"),
        ("smtpd_tls_security_level", "encrypt"),
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_tls_auth_only", "yes"),
        ("smtpd_client_restrictions", "permit_sasl_authenticated,reject"),
    ]


def render_main_cf(*sections: dict[str, str]) -> str:
    """main.cf text: ``name = value`` lines, later sections override earlier ones."""
    merged: dict[str, str] = {}
    for section in sections:
        merged.update(section)
    lines = ["# generated by postier bench/run.py; throwaway instance"]
    lines += [f"{name} = {value}".rstrip() for name, value in merged.items()]
    return "\n".join(lines) + "\n"


def rewrite_master_cf(text: str, listen: str,
                      options: Sequence[tuple[str, str]] = ()) -> str:
    """Postfix's packaged master.cf with ``smtp inet`` on LISTEN and chroot off.

    OPTIONS become ``-o name=value`` lines of the LISTEN service (replacing any it had).

    Every other active ``inet`` service is commented out (it would bind a real port). The
    chroot column is set to ``n``: a throwaway queue directory is not a prepared jail.
    A ``postlog`` service is appended when missing so ``maillog_file`` works.
    """
    out: list[str] = []
    disabled = False
    seen_postlog = False
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and line.strip():
            out.append(("#" + line) if disabled else line)
            continue
        disabled = False
        fields = line.split()
        if not fields or line.startswith("#") or len(fields) < 8:
            out.append(line)
            continue
        name, kind = fields[0], fields[1]
        if name == "postlog":
            seen_postlog = True
        if kind == "inet":
            if name not in ("smtp", "25") or any(o.startswith(listen) for o in out):
                out.append("#" + line)
                disabled = True
                continue
            fields[0] = listen
            if options:
                fields[4] = "n"
                out.append(" ".join(fields[:8]))
                out += [f"  -o {name}={value}" for name, value in options]
                disabled = True  # the packaged service's own continuation lines go
                continue
        fields[4] = "n"
        out.append(" ".join(fields[:8]) + ("" if len(fields) == 8 else " " + " ".join(fields[8:])))
    if not seen_postlog:
        out.append("postlog unix-dgram n - n - 1 postlogd")
    return "\n".join(out) + "\n"


def minimal_master_cf(listen: str, options: Sequence[tuple[str, str]] = ()) -> str:
    """The smallest master.cf that receives by SMTP, delivers locally and relays."""
    return (
        f"{listen} inet n - n - - smtpd\n"
        + "".join(f"  -o {name}={value}\n" for name, value in options)
        + "local unix - n n - - local\n"
        "smtp unix - - n - - smtp\n"
    )


def parse_sink_counters(text: str) -> dict[str, int]:
    """The last complete counter record of ``smtp-sink -c``'s output.

    smtp-sink(1) rewrites one line, ``sess=N quit=N mesg=N``, ending each version with a
    carriage return; a record not yet ended by ``\\r`` or ``\\n`` is ignored. Returns
    ``{}`` when there is none; ValueError if a complete record is malformed.
    """
    records = text.replace("\n", "\r").split("\r")[:-1]
    for record in reversed(records):
        if record.strip():
            counters: dict[str, int] = {}
            for item in record.split():
                name, eq, value = item.partition("=")
                if not eq or not value.isdigit():
                    raise ValueError(f"bad smtp-sink counter record: {record!r}")
                counters[name] = int(value)
            return counters
    return {}


def passwd_file(user: str, password: str) -> str:
    """Dovecot passwd-file(5) line for USER with a ``{PLAIN}`` password."""
    return f"{user}:{{PLAIN}}{password}::::::\n"


def dovecot_conf(run_dir: str, users_file: str, sockets: Sequence[str]) -> str:
    """A Dovecot configuration serving only auth: one passwd-file, one listener per path.

    Each SOCKETS path gets the tutorial's ``unix_listener { mode = 0660, group = postfix }``,
    so each server's smtpd (running as ``postfix``) reaches ``private/auth`` in its own
    queue directory, and both are answered by the same auth process.
    """
    listeners = "".join(
        f"  unix_listener {path} {{\n    mode = 0660\n    group = postfix\n  }}\n"
        for path in sockets)
    return (
        f"base_dir = {run_dir}/run\n"
        f"state_dir = {run_dir}/state\n"
        f"log_path = {run_dir}/dovecot.log\n"
        "protocols =\n"
        "listen = 127.0.0.1\n"
        "ssl = no\n"
        "disable_plaintext_auth = no\n"
        "auth_mechanisms = plain login\n"
        "auth_failure_delay = 0\n"
        "passdb {\n  driver = passwd-file\n"
        f"  args = scheme=PLAIN username_format=%u {users_file}\n}}\n"
        "userdb {\n  driver = static\n"
        "  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
        f"service auth {{\n{listeners}}}\n"
    )


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat this harness needs."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """Own CPU plus that of every reaped descendant, in clock ticks."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/PID/stat line (comm may contain spaces and parentheses)."""
    head, _, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    f = tail.split()
    # f[0] is field 3 (state); field n of proc(5) is f[n - 3].
    return ProcStat(
        pid=int(pid_text), comm=comm, state=f[0], ppid=int(f[1]), pgrp=int(f[2]),
        session=int(f[3]), utime=int(f[11]), stime=int(f[12]), cutime=int(f[13]),
        cstime=int(f[14]),
    )


def tree_members(stats: Iterable[ProcStat], master: int) -> list[ProcStat]:
    """The master, every process in its session, and every descendant by parent link."""
    table = {s.pid: s for s in stats}
    if master not in table:
        return []
    session = table[master].session
    members = {pid for pid, s in table.items() if session > 1 and s.session == session}
    members.add(master)
    changed = True
    while changed:
        changed = False
        for pid, s in table.items():
            if pid not in members and s.ppid in members:
                members.add(pid)
                changed = True
    return [table[pid] for pid in sorted(members)]


def tree_ticks(stats: Iterable[ProcStat], master: int) -> int:
    """CPU ticks of a server's process tree (live processes plus what they reaped)."""
    return sum(s.ticks for s in tree_members(stats, master))


def count_separators(data: bytes, at_line_start: bool) -> tuple[int, bool]:
    """Count mbox "From " separator lines in DATA.

    AT_LINE_START says whether DATA begins a line; the second result says whether the
    next chunk will. Only complete "From " prefixes are counted, so callers pass whole
    lines (see MboxCounter).
    """
    count = 0
    if at_line_start and data.startswith(b"From "):
        count += 1
    count += data.count(b"\nFrom ")
    return count, data.endswith(b"\n") if data else at_line_start


def parse_client_report(text: str) -> dict[str, Any]:
    """The JSON object bench/auth_client.py prints last (its other output comes before).

    Raises ValueError when there is none or ``seconds`` is not positive.
    """
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            report = json.loads(line)
            if not isinstance(report, dict) or not report.get("seconds", 0) > 0:
                raise ValueError(f"bad client report: {line[:200]}")
            return report
    raise ValueError(f"no client report in: {text.strip()[:200]}")


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass
class RoundResult:
    server: str
    round: int
    messages: int
    delivered: int = 0
    ok: bool = False
    error: str = ""
    seconds: float | None = None
    msgs_per_s: float | None = None
    inject_seconds: float | None = None
    inject_msgs_per_s: float | None = None
    cpu_seconds: float | None = None
    cpu_ms_per_msg: float | None = None
    processes_seen: int = 0
    smtp_source_cpu_seconds: float | None = None
    machine_cpu_seconds: float | None = None
    harness_cpu_seconds: float | None = None
    master_cf: str = ""
    # relay: smtp-sink's CPU; tls: Dovecot's (auth), per message; not the server's.
    helper_cpu_ms_per_msg: float | None = None
    scenario: str = "local"


def summarize(results: Sequence[RoundResult]) -> dict[str, Any]:
    """Medians per server over successful rounds, and postier/postfix ratios."""
    servers: dict[str, dict[str, Any]] = {}
    for name in sorted({r.server for r in results}):
        good = [r for r in results if r.server == name and r.ok]
        servers[name] = {
            "rounds_ok": len(good),
            "rounds": len([r for r in results if r.server == name]),
            "msgs_per_s": median([r.msgs_per_s for r in good if r.msgs_per_s is not None]),
            "cpu_ms_per_msg": median(
                [r.cpu_ms_per_msg for r in good if r.cpu_ms_per_msg is not None]),
            "inject_msgs_per_s": median(
                [r.inject_msgs_per_s for r in good if r.inject_msgs_per_s is not None]),
        }
    summary: dict[str, Any] = {"servers": servers}
    if "postier" in servers and "postfix" in servers:
        px, pf = servers["postier"], servers["postfix"]
        summary["ratio_throughput"] = ratio(px["msgs_per_s"], pf["msgs_per_s"])
        summary["ratio_cpu_per_msg"] = ratio(px["cpu_ms_per_msg"], pf["cpu_ms_per_msg"])
        summary["ratio_inject"] = ratio(px["inject_msgs_per_s"], pf["inject_msgs_per_s"])
        summary["target_throughput_ratio"] = TARGET_THROUGHPUT_RATIO
        summary["target_cpu_ratio"] = TARGET_CPU_RATIO
        summary["paired"] = paired_ratios(results)
    return summary


def paired_ratios(results: Sequence[RoundResult]) -> dict[str, Any]:
    """postier/postfix ratios of the two rounds run back to back (same round number).

    On a shared, noisy machine both servers of a pair meet about the same load, so
    the spread of these ratios says how far a run's median ratio can be trusted.
    """
    by_round: dict[int, dict[str, RoundResult]] = {}
    for r in results:
        if r.ok:
            by_round.setdefault(r.round, {})[r.server] = r
    pairs = [(d["postier"], d["postfix"]) for _, d in sorted(by_round.items())
             if "postier" in d and "postfix" in d]
    out: dict[str, Any] = {"pairs": len(pairs)}
    for key, attr in (("throughput", "msgs_per_s"), ("cpu_per_msg", "cpu_ms_per_msg"),
                      ("inject", "inject_msgs_per_s")):
        values = [v for v in (ratio(getattr(px, attr), getattr(pf, attr)) for px, pf in pairs)
                  if v is not None]
        out[key] = {"median": median(values), "min": min(values, default=None),
                    "max": max(values, default=None)}
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(summary: dict[str, Any], scenario: str = "local") -> str:
    """The human summary printed at the end of a run.

    In the tls scenario the client's connections per second (each one STARTTLS + AUTH +
    one message) are the headline; elsewhere the end-to-end messages per second.
    """
    inject = "conn/s" if scenario == "tls" else "inject/s"
    rows = [f"{'server':<8} {'rounds ok':>9} {'msgs/s':>9} {'CPU ms/msg':>11} {inject:>9}"]
    for name, s in summary["servers"].items():
        rows.append(
            f"{name:<8} {str(s['rounds_ok']) + '/' + str(s['rounds']):>9} "
            f"{_fmt(s['msgs_per_s'], '.1f'):>9} {_fmt(s['cpu_ms_per_msg'], '.2f'):>11} "
            f"{_fmt(s['inject_msgs_per_s'], '.1f'):>9}"
        )
    if "ratio_throughput" in summary:
        rows.append(
            f"postier/postfix: throughput x{_fmt(summary['ratio_throughput'], '.2f')} "
            f"(target >= {TARGET_THROUGHPUT_RATIO:g}), CPU/msg "
            f"x{_fmt(summary['ratio_cpu_per_msg'], '.2f')} (target <= {TARGET_CPU_RATIO:g})"
        )
    paired = summary.get("paired")
    if paired and paired["pairs"]:
        t, c = paired["throughput"], paired["cpu_per_msg"]
        rows.append(
            f"round by round ({paired['pairs']} pairs): throughput "
            f"x{_fmt(t['min'], '.2f')}..x{_fmt(t['max'], '.2f')} "
            f"(median x{_fmt(t['median'], '.2f')}), CPU/msg "
            f"x{_fmt(c['min'], '.2f')}..x{_fmt(c['max'], '.2f')} "
            f"(median x{_fmt(c['median'], '.2f')})"
        )
    if scenario == "tls" and "ratio_inject" in summary:
        rows.append(f"postier/postfix: connections/s (STARTTLS + AUTH + 1 message) "
                    f"x{_fmt(summary['ratio_inject'], '.2f')}")
        if paired and paired["pairs"]:
            i = paired["inject"]
            rows.append(f"round by round: connections/s x{_fmt(i['min'], '.2f')}.."
                        f"x{_fmt(i['max'], '.2f')} (median x{_fmt(i['median'], '.2f')})")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# Adapters: /proc, files, processes
# --------------------------------------------------------------------------------------

def read_all_stats() -> list[ProcStat]:
    stats: list[ProcStat] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stats.append(parse_stat(f.read()))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return stats


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def parse_proc_stat_cpu(text: str) -> int:
    """Busy clock ticks of the whole machine from /proc/stat (all but idle and iowait)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:9]]  # user..steal; guest is inside user
            return sum(values) - values[3] - values[4]
    raise ValueError("no cpu line in /proc/stat")


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        return parse_proc_stat_cpu(f.read())


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class MboxCounter:
    """Counts "From " separators in a growing mbox file, reading only what is new."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.count = 0
        self.at_line_start = True

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.count
        end = data.rfind(b"\n") + 1  # only whole lines; the rest is read next time
        if end:
            n, self.at_line_start = count_separators(data[:end], self.at_line_start)
            self.count += n
            self.offset += end
        return self.count

    def mtime(self) -> float:
        return os.stat(self.path).st_mtime_ns / 1e9

    def end_time(self) -> float:
        """When the last counted message arrived: the mbox's last append."""
        return self.mtime()


class SinkCounter:
    """Counts messages an ``smtp-sink -c`` received since this counter was made.

    smtp-sink also rewrites its counters when a session ends, which may be long after the
    last message (a relaying client keeps cached connections open), so the end time is
    when poll() first saw the latest count (poll interval granularity), not the file's
    mtime.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.pending = ""  # an unfinished record, completed by the next read
        self.last = 0
        self.base = self._read()
        self.count = 0
        self.changed_at = time.time()

    def _read(self) -> int:
        """The sink's total message count; reads only what was appended since last time."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return self.last
        self.offset += len(data)
        text = self.pending + data.decode("ascii", "replace")
        cut = max(text.rfind("\r"), text.rfind("\n")) + 1
        self.pending = text[cut:]
        counters = parse_sink_counters(text[:cut])
        if "mesg" in counters:
            self.last = counters["mesg"]
        return self.last

    def poll(self) -> int:
        n = self._read() - self.base
        if n != self.count:
            self.count, self.changed_at = n, time.time()
        return self.count

    def end_time(self) -> float:
        return self.changed_at


def queue_files(queue_dir: str, subdirs: Iterable[str]) -> list[str]:
    found: list[str] = []
    for sub in subdirs:
        for dirpath, _dirs, files in os.walk(os.path.join(queue_dir, sub)):
            found += [os.path.join(dirpath, name) for name in files]
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, address: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), 1):
            return True
        time.sleep(0.05)
    return False


def tail(text: str, limit: int = 600) -> str:
    """The end of a command's output (tracebacks end with the useful line)."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str], timeout: float = 120.0, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw)


def find_smtp_source() -> str | None:
    for path in SMTP_SOURCE_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("smtp-source")


def ensure_postfix() -> str:
    """Postfix's binaries (the reference and smtp-source); apt-get installs them if root."""
    smtp_source = find_smtp_source()
    if os.access(POSTFIX, os.X_OK) and smtp_source:
        return smtp_source
    if os.geteuid() != 0:
        sys.exit("bench: Postfix (Debian package 'postfix') is missing and we are not root")
    log("installing the Debian package postfix (reference only)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "postfix"]
    if run(install, timeout=900, env=env).returncode != 0:
        run(["apt-get", "update", "-q"], timeout=900, env=env)
        done = run(install, timeout=900, env=env)
        if done.returncode != 0:
            sys.exit(f"bench: apt-get install postfix failed:\n{done.stdout}{done.stderr}")
    smtp_source = find_smtp_source()
    if not (os.access(POSTFIX, os.X_OK) and smtp_source):
        sys.exit("bench: postfix installed but /usr/sbin/postfix or smtp-source is missing")
    return smtp_source


def ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(BENCH_USER)
    except KeyError:
        pass
    if os.geteuid() != 0:
        sys.exit(f"bench: user {BENCH_USER} is missing and we are not root to create it")
    log(f"creating user {BENCH_USER}")
    made = run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", BENCH_USER])
    if made.returncode != 0:
        sys.exit(f"bench: useradd failed: {made.stderr.strip()}")
    return pwd.getpwnam(BENCH_USER)


def find_postier(explicit: str | None) -> list[str] | None:
    if explicit:
        return shlex.split(explicit)
    env = os.environ.get("POSTIER")
    if env:
        return shlex.split(env)
    for candidate in (shutil.which("postier"), str(REPO_DIR / ".venv" / "bin" / "postier")):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    return None


def find_program(name: str) -> str | None:
    for directory in ("/usr/sbin", "/usr/bin"):
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    return shutil.which(name)


def process_ticks(pid: int) -> int:
    """CPU ticks of one process (its own and its reaped children's); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read()).ticks
    except (OSError, ValueError, IndexError):
        return 0


@dataclass
class Helpers:
    """What a scenario runs beside the two servers: the relay's sink, the tls scenario's
    certificate and Dovecot. One of each for the whole run, shared by both servers."""

    scenario: str
    base: str
    sink_port: int | None = None
    sink_pid: int | None = None
    sink_output: str = ""
    sink_direct_msgs_per_s: float | None = None
    sink_direct_cpu_ms_per_msg: float | None = None
    tls_dir: str | None = None
    dovecot_pid: int | None = None
    dovecot_pids: set[int] = field(default_factory=set)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def main_cf(self) -> dict[str, str]:
        return scenario_main_cf(self.scenario, self.sink_port, self.tls_dir)

    def start_sink(self) -> None:
        """``smtp-sink -c -u postfix SINK_ADDRESS:PORT 256``, counters to a file."""
        sink = find_program("smtp-sink")
        if sink is None:
            sys.exit("bench: smtp-sink (Debian package postfix) is missing")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((SINK_ADDRESS, 0))
            self.sink_port = int(probe.getsockname()[1])
        self.sink_output = f"{self.base}/sink.out"
        with open(self.sink_output, "wb") as out:
            proc = subprocess.Popen(
                [sink, "-c", "-u", "postfix", f"{SINK_ADDRESS}:{self.sink_port}", "256"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        self.sink_pid = proc.pid
        if not wait_port(self.sink_port, 10, SINK_ADDRESS):
            raise RuntimeError(f"smtp-sink does not answer on {SINK_ADDRESS}:{self.sink_port}")

    def calibrate_sink(self, smtp_source: str, args: argparse.Namespace) -> None:
        """smtp-source straight into the sink: the sink's own ceiling, to show it is not
        the bottleneck of the relay figures."""
        assert self.sink_pid is not None
        counter = SinkCounter(self.sink_output)
        ticks0 = process_ticks(self.sink_pid)
        t0 = time.time()
        done = run([smtp_source, "-s", str(args.sessions), "-m", str(args.messages),
                    "-l", str(args.size), "-f", SENDER, "-t", RELAY_RECIPIENT,
                    f"{SINK_ADDRESS}:{self.sink_port}"], timeout=args.stall_timeout)
        deadline = time.monotonic() + args.stall_timeout
        while counter.poll() < args.messages and time.monotonic() < deadline:
            time.sleep(args.poll_interval)
        if done.returncode != 0 or counter.count < args.messages:
            raise RuntimeError(f"sink calibration failed ({counter.count}/{args.messages}): "
                               f"{tail(done.stdout + done.stderr)}")
        self.sink_direct_msgs_per_s = args.messages / max(counter.end_time() - t0, 1e-6)
        self.sink_direct_cpu_ms_per_msg = (1000 * (process_ticks(self.sink_pid) - ticks0)
                                           / clock_ticks() / args.messages)

    def make_certificate(self) -> None:
        """A self-signed RSA 2048 certificate for HOSTNAME; the key is root-only (0600)."""
        self.tls_dir = f"{self.base}/tls"
        os.makedirs(self.tls_dir, mode=0o755)
        done = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={HOSTNAME}", "-keyout", f"{self.tls_dir}/key.pem",
                    "-out", f"{self.tls_dir}/cert.pem"])
        if done.returncode != 0:
            sys.exit(f"bench: openssl req failed: {tail(done.stderr)}")
        os.chmod(f"{self.tls_dir}/key.pem", 0o600)
        os.chmod(f"{self.tls_dir}/cert.pem", 0o644)

    def start_dovecot(self, queue_dirs: Sequence[str]) -> None:
        """One Dovecot (auth only, passwd-file) listening at each QUEUE_DIR/private/auth."""
        dovecot = find_program("dovecot")
        if dovecot is None:
            sys.exit("bench: dovecot (Debian package dovecot-core) is missing")
        run_dir = f"{self.base}/dovecot"
        os.makedirs(run_dir, mode=0o755)
        users = f"{run_dir}/users"
        Path(users).write_text(passwd_file(AUTH_USER, AUTH_PASSWORD))
        sockets = [f"{q}/private/auth" for q in queue_dirs]
        conf = f"{run_dir}/dovecot.conf"
        Path(conf).write_text(dovecot_conf(run_dir, users, sockets))
        # Output to a file: the daemon keeps inherited descriptors, a pipe would never end.
        with open(f"{run_dir}/start.out", "w+") as out:
            code = subprocess.run([dovecot, "-c", conf], stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=60, check=False).returncode
            out.seek(0)
            if code != 0:
                sys.exit(f"bench: dovecot failed to start: {tail(out.read())}")
        deadline = time.monotonic() + 10
        pid_file = Path(f"{run_dir}/run/master.pid")
        while time.monotonic() < deadline and not (
                pid_file.exists() and all(os.path.exists(p) for p in sockets)):
            time.sleep(0.05)
        if not pid_file.exists():
            sys.exit(f"bench: dovecot wrote no pid file; see {run_dir}/dovecot.log")
        self.dovecot_pid = int(pid_file.read_text().strip())
        self.dovecot_ticks()

    def dovecot_ticks(self) -> int:
        """CPU ticks of Dovecot's process tree (auth included); its PIDs are remembered."""
        if self.dovecot_pid is None:
            return 0
        members = tree_members(read_all_stats(), self.dovecot_pid)
        self.dovecot_pids.update(s.pid for s in members)
        return sum(s.ticks for s in members)

    def side_ticks(self) -> int:
        """CPU ticks of the helper that works for the server under test (sink or Dovecot)."""
        if self.scenario == "relay" and self.sink_pid is not None:
            return process_ticks(self.sink_pid)
        if self.scenario == "tls":
            return self.dovecot_ticks()
        return 0

    def stop(self) -> None:
        """Stop what we started, by PID."""
        if self.dovecot_pid is not None:
            self.dovecot_ticks()
            for pid in sorted(self.dovecot_pids):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM if pid == self.dovecot_pid else signal.SIGKILL)
            self.dovecot_pid = None
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def load_command(scenario: str, args: argparse.Namespace, smtp_source: str,
                 port: int) -> list[str]:
    """The load generator's argv for one round against 127.0.0.1:PORT."""
    if scenario == "tls":
        return [sys.executable, str(BENCH_DIR / "auth_client.py"), "--port", str(port),
                "--user", AUTH_USER, "--password", AUTH_PASSWORD, "-m", str(args.messages),
                "-s", str(args.sessions), "-l", str(args.size), "--sender", SENDER,
                "--recipient", RECIPIENT, "--timeout", str(args.stall_timeout * 5)]
    recipient = RELAY_RECIPIENT if scenario == "relay" else RECIPIENT
    return [smtp_source, "-s", str(args.sessions), "-m", str(args.messages),
            "-l", str(args.size), "-f", SENDER, "-t", recipient, f"127.0.0.1:{port}"]


@dataclass
class Instance:
    """One throwaway server instance under the bench's temp directory."""

    name: str
    root: str
    port: int
    command: list[str]  # the control command, before "-c DIR VERB"
    master_cf: str
    master_cf_kind: str = "same"
    fallback_master_cf: str | None = None  # tried when the server rejects master_cf
    extra_main_cf: dict[str, str] = field(default_factory=dict)  # the scenario's part
    started: bool = False
    master_pid: int | None = None
    session_id: int | None = None
    session_pids: set[int] = field(default_factory=set)

    @property
    def config_dir(self) -> str:
        return f"{self.root}/etc"

    @property
    def queue_dir(self) -> str:
        return f"{self.root}/queue"

    @property
    def spool_dir(self) -> str:
        return f"{self.root}/spool"

    @property
    def mbox(self) -> str:
        return f"{self.spool_dir}/{BENCH_USER}"

    def create(self) -> None:
        os.makedirs(self.config_dir, mode=0o755)
        os.makedirs(self.queue_dir, mode=0o755)
        os.makedirs(f"{self.root}/data", mode=0o700)
        os.makedirs(self.spool_dir)
        os.chmod(self.spool_dir, 0o1777)
        with contextlib.suppress(KeyError):
            owner = pwd.getpwnam("postfix")  # Postfix's and postier's default mail_owner
            os.chown(f"{self.root}/data", owner.pw_uid, owner.pw_gid)
        if "smtpd_sasl_path" in self.extra_main_cf:
            # Dovecot's listener goes into private/ before either server ever started.
            os.makedirs(f"{self.queue_dir}/private", mode=0o700)
            with contextlib.suppress(KeyError):
                owner = pwd.getpwnam("postfix")
                os.chown(f"{self.queue_dir}/private", owner.pw_uid, -1)
        with open(f"{self.config_dir}/main.cf", "w") as f:
            f.write(render_main_cf(common_main_cf(), self.extra_main_cf,
                                   instance_main_cf(self.root)))
        with open(f"{self.config_dir}/master.cf", "w") as f:
            f.write(self.master_cf)

    def reset(self) -> None:
        """With the server stopped: empty mailbox and no messages left in the queue."""
        for path in (self.mbox, self.mbox + ".lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        for path in queue_files(self.queue_dir, QUEUE_MESSAGE_DIRS):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def control(self, verb: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``CMD -c DIR VERB``; output goes to a file, not a pipe, so a daemon that
        keeps the inherited descriptors open cannot make us wait for EOF."""
        argv = [*self.command, "-c", self.config_dir, verb]
        with open(os.devnull, "rb") as devnull, tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(argv, stdin=devnull, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False, text=True)
            out.seek(0)
            return subprocess.CompletedProcess(argv, proc.returncode, out.read(), "")

    def read_master_pid(self) -> int | None:
        try:
            with open(f"{self.queue_dir}/pid/master.pid") as f:
                text = f.read().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def check_and_start(self) -> None:
        done = self.control("check")
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} check failed: {tail(done.stdout + done.stderr)}")
        self.started = True
        done = self.control("start")
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} start failed: {tail(done.stdout + done.stderr)}")

    def start(self) -> None:
        try:
            self.check_and_start()
        except RuntimeError as exc:
            if self.fallback_master_cf is None:
                raise
            self.stop()
            log(f"warning: {exc}")
            log(f"warning: {self.name} failed with Postfix's master.cf; retrying a minimal one")
            self.master_cf, self.fallback_master_cf = self.fallback_master_cf, None
            self.master_cf_kind = "minimal"
            with open(f"{self.config_dir}/master.cf", "w") as f:
                f.write(self.master_cf)
            self.check_and_start()
        self.master_pid = self.read_master_pid()
        if self.master_pid is None:
            raise RuntimeError(f"{self.name} started but wrote no {self.queue_dir}/pid/master.pid")
        for s in self.remember_processes():
            if s.pid == self.master_pid and s.session > 1:
                self.session_id = s.session
        if not wait_port(self.port, 30):
            raise RuntimeError(f"{self.name} does not answer on 127.0.0.1:{self.port}")

    def remember_processes(self) -> list[ProcStat]:
        """The server's processes now; their PIDs are kept for the final clean-up."""
        if self.master_pid is None:
            return []
        members = tree_members(read_all_stats(), self.master_pid)
        self.session_pids.update(s.pid for s in members)
        return members

    def cpu_ticks(self) -> tuple[int, int]:
        members = self.remember_processes()
        return sum(s.ticks for s in members), len(members)

    def stop(self) -> None:
        """Stop through the server's own command, then make sure every process we saw is gone."""
        if not self.started:
            return
        if self.master_pid is None:
            self.master_pid = self.read_master_pid()
            if self.master_pid is not None:
                self.remember_processes()
        try:
            self.control("stop", timeout=60)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: stop command timed out")
        self.reap(timeout=30)
        self.master_pid = None
        self.started = False

    def reap(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive = self.alive_pids()
            if not alive:
                return
            time.sleep(0.1)
        for pid in self.alive_pids():
            log(f"{self.name}: killing leftover process {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def alive_pids(self) -> list[int]:
        """Processes of this server still running: those we saw, and any in its session."""
        own_session = os.getsid(0)
        alive: list[int] = []
        for s in read_all_stats():
            if s.state == "Z":
                continue
            in_session = (self.session_id is not None and s.session == self.session_id
                          and s.session != own_session)
            if in_session or (s.pid in self.session_pids and s.pid == self.master_pid):
                alive.append(s.pid)
        return alive


def make_instances(base: str, only: str | None, postier_cmd: list[str] | None,
                   postier_master_cf: str, extra_main_cf: dict[str, str] | None = None,
                   options: Sequence[tuple[str, str]] = ()) -> list[Instance]:
    """The two instances (or the one of --only), created on disk with the same main.cf
    (common + EXTRA_MAIN_CF) and master.cf (the listen service gets OPTIONS)."""
    extra = dict(extra_main_cf or {})
    master_template = ""
    for path in MASTER_CF_CANDIDATES:
        if os.path.exists(path):
            master_template = Path(path).read_text()
            break
    instances: list[Instance] = []
    if only in (None, "postfix"):
        port = free_port()
        instances.append(Instance(
            "postfix", f"{base}/postfix", port, [POSTFIX],
            rewrite_master_cf(master_template, f"127.0.0.1:{port}", options),
            extra_main_cf=extra))
    if only in (None, "postier"):
        if postier_cmd is None:
            log("postier command not found (use --postier CMD); skipping postier")
        else:
            port = free_port()
            listen = f"127.0.0.1:{port}"
            minimal = minimal_master_cf(listen, options)
            if postier_master_cf == "minimal" or not master_template:
                inst = Instance("postier", f"{base}/postier", port, postier_cmd, minimal,
                                master_cf_kind="minimal", extra_main_cf=extra)
            else:
                inst = Instance("postier", f"{base}/postier", port, postier_cmd,
                                rewrite_master_cf(master_template, listen, options),
                                fallback_master_cf=(minimal if postier_master_cf == "auto"
                                                    else None),
                                extra_main_cf=extra)
            instances.append(inst)
    for inst in instances:
        inst.create()
    return instances


def measure(inst: Instance, round_no: int, args: argparse.Namespace,
            smtp_source: str, helpers: Helpers | None = None) -> RoundResult:
    """One round for one server: start, send, wait for delivery, read CPU, stop.

    Delivery is counted in the mbox (local, tls) or at the sink (relay, HELPERS's).
    """
    scenario = helpers.scenario if helpers is not None else "local"
    result = RoundResult(inst.name, round_no, args.messages, scenario=scenario)
    inst.reset()
    src: subprocess.Popen[str] | None = None
    counter: MboxCounter | SinkCounter | None = None
    stack = contextlib.ExitStack()
    try:
        inst.start()
        if scenario == "relay" and helpers is not None:
            counter = SinkCounter(helpers.sink_output)
        else:
            counter = MboxCounter(inst.mbox)
        ticks0, _ = inst.cpu_ticks()
        side0 = helpers.side_ticks() if helpers is not None else 0
        cmd = load_command(scenario, args, smtp_source, inst.port)
        src_out = stack.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115
        children0, machine0 = children_cpu(), machine_busy_ticks()
        self0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        t0 = time.time()
        src = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=src_out, stderr=subprocess.STDOUT, text=True)
        last_progress = time.monotonic()
        seen = 0
        src_done: float | None = None
        while True:
            if src_done is None and src.poll() is not None:
                src_done = time.time()
                if src.returncode != 0:
                    src_out.seek(0)
                    raise RuntimeError(
                        f"{Path(cmd[1] if scenario == 'tls' else cmd[0]).name} exited "
                        f"{src.returncode}: {src_out.read().strip()[:500]}")
            n = counter.poll()
            if n != seen:
                seen, last_progress = n, time.monotonic()
            if n >= args.messages:
                break
            if time.monotonic() - last_progress > args.stall_timeout:
                raise RuntimeError(
                    f"no delivery progress for {args.stall_timeout:g}s ({n}/{args.messages})")
            time.sleep(args.poll_interval)
        t_end = counter.end_time()
        if src_done is None:
            src.wait(timeout=args.stall_timeout)
            src_done = time.time()
        result.delivered = seen
        # Let the server finish its bookkeeping (queue file removal, logging) for CPU.
        drain_deadline = time.monotonic() + 10
        while queue_files(inst.queue_dir, DRAIN_DIRS) and time.monotonic() < drain_deadline:
            time.sleep(args.poll_interval)
        ticks1, nproc = inst.cpu_ticks()
        side1 = helpers.side_ticks() if helpers is not None else 0
        machine1 = machine_busy_ticks()
        if helpers is not None and scenario != "local":
            result.helper_cpu_ms_per_msg = (
                1000 * (side1 - side0) / clock_ticks() / args.messages)
        result.harness_cpu_seconds = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - self0
        result.smtp_source_cpu_seconds = children_cpu() - children0
        result.machine_cpu_seconds = (machine1 - machine0) / clock_ticks()
        result.seconds = max(t_end - t0, 1e-6)
        result.msgs_per_s = args.messages / result.seconds
        result.inject_seconds = max(src_done - t0, 1e-6)
        if scenario == "tls":
            # The client's own clock: first connect to last QUIT, interpreter start excluded.
            src_out.seek(0)
            result.inject_seconds = parse_client_report(src_out.read())["seconds"]
        result.inject_msgs_per_s = args.messages / result.inject_seconds
        result.cpu_seconds = (ticks1 - ticks0) / clock_ticks()
        result.cpu_ms_per_msg = 1000 * result.cpu_seconds / args.messages
        result.processes_seen = nproc
        result.ok = seen == args.messages
        if seen > args.messages:
            result.error = f"{seen} deliveries for {args.messages} messages"
            result.ok = False
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        result.error = str(exc)
        with contextlib.suppress(Exception):
            result.delivered = (counter.poll() if counter is not None
                                else MboxCounter(inst.mbox).poll())
    finally:
        with contextlib.suppress(Exception):
            if src is not None and src.poll() is None:
                src.kill()
                src.wait()
        stack.close()
        result.master_cf = inst.master_cf_kind
        inst.stop()
    return result


def describe(r: RoundResult) -> str:
    if not r.ok:
        return f"{r.server} round {r.round}: FAILED ({r.delivered}/{r.messages}) {r.error}"
    return (f"{r.server} round {r.round}: {r.msgs_per_s:.1f} msgs/s end-to-end "
            f"({r.seconds:.2f}s), {r.cpu_ms_per_msg:.2f} ms CPU/msg, "
            + (f"{r.inject_msgs_per_s:.1f} connections/s (STARTTLS + AUTH + 1 message)"
               if r.scenario == "tls" else f"injection {r.inject_msgs_per_s:.1f} msgs/s")
            + f", {r.processes_seen} processes"
            + ("" if r.helper_cpu_ms_per_msg is None else
               f", {'sink' if r.scenario == 'relay' else 'dovecot'} "
               f"{r.helper_cpu_ms_per_msg:.2f} ms CPU/msg"))


def environment(postier_cmd: list[str] | None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "hostname": platform.node(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "postier_cmd": postier_cmd,
    }
    with contextlib.suppress(Exception):
        env["postfix_version"] = run(["postconf", "-d", "-h", "mail_version"]).stdout.strip()
    with contextlib.suppress(Exception):
        env["git_head"] = run(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]).stdout.strip()
    return env


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--messages", "-n", type=int, default=1000, help="messages per round")
    p.add_argument("--sessions", "-s", type=int, default=20, help="parallel SMTP sessions")
    p.add_argument("--size", "-l", type=int, default=1024, help="message size in bytes")
    p.add_argument("--rounds", "-r", type=int, default=3, help="rounds (medians reported)")
    p.add_argument("--only", choices=("postfix", "postier"), help="benchmark one server only")
    p.add_argument("--scenario", choices=SCENARIOS, default="local",
                   help="local: deliver to an mbox (default); relay: relayhost to an "
                        "smtp-sink; tls: STARTTLS + AUTH PLAIN (Dovecot) + one message "
                        "per connection on a submission-like service")
    p.add_argument("--postier", metavar="CMD",
                   help="postier control command (default: $POSTIER, postier on PATH, "
                        "/work/venv/bin/postier)")
    p.add_argument("--postier-master-cf", choices=("auto", "same", "minimal"), default="auto",
                   help="postier gets Postfix's master.cf (same), only smtpd+local (minimal), "
                        "or the same one with minimal as fallback (auto, default)")
    p.add_argument("--stall-timeout", type=float, default=60.0,
                   help="give up a round after this many seconds without a delivery")
    p.add_argument("--poll-interval", type=float, default=0.01)
    p.add_argument("--keep", action="store_true", help="keep the temp directory")
    p.add_argument("--results", default=str(RESULTS_DIR), help="directory for the JSON")
    return p.parse_args(argv)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def bench_dir(keep: bool) -> Iterator[str]:
    base = tempfile.mkdtemp(prefix="postier-bench-", dir="/tmp")
    os.chmod(base, 0o755)  # local(8) runs as the recipient: it must reach the spool
    try:
        yield base
    finally:
        if keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def run_rounds(instances: Sequence[Instance], args: argparse.Namespace, smtp_source: str,
               helpers: Helpers) -> list[RoundResult]:
    """Every round, each server once, the order alternating; a server that cannot start
    is skipped from then on. Every server is stopped at the end, whatever happens."""
    results: list[RoundResult] = []
    broken: set[str] = set()
    try:
        for round_no in range(1, args.rounds + 1):
            order = instances if round_no % 2 else list(reversed(instances))
            for inst in order:
                if inst.name in broken:
                    continue
                r = measure(inst, round_no, args, smtp_source, helpers)
                log(describe(r))
                results.append(r)
                if not r.ok and any(w in r.error for w in ("start failed", "check failed")):
                    broken.add(inst.name)
    finally:
        for inst in instances:
            with contextlib.suppress(Exception):
                inst.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.messages < 1 or args.sessions < 1 or args.rounds < 1:
        sys.exit("bench: --messages, --sessions and --rounds must be positive")
    if os.geteuid() != 0:
        log("warning: not root; local delivery to another user will not work")
    signal.signal(signal.SIGTERM, _terminate)
    smtp_source = ensure_postfix()
    ensure_user()
    postier_cmd = find_postier(args.postier) if args.only != "postfix" else None
    env = environment(postier_cmd)
    results: list[RoundResult] = []
    options = submission_options() if args.scenario == "tls" else []
    with bench_dir(args.keep) as base:
        helpers = Helpers(args.scenario, base)
        try:
            if args.scenario == "relay":
                helpers.start_sink()
                helpers.calibrate_sink(smtp_source, args)
                log(f"smtp-source straight into smtp-sink: "
                    f"{helpers.sink_direct_msgs_per_s:.0f} msgs/s, sink CPU "
                    f"{helpers.sink_direct_cpu_ms_per_msg:.3f} ms/msg")
            if args.scenario == "tls":
                helpers.make_certificate()
            instances = make_instances(base, args.only, postier_cmd, args.postier_master_cf,
                                       helpers.main_cf(), options)
            if not instances:
                sys.exit("bench: nothing to benchmark")
            if args.scenario == "tls":
                helpers.start_dovecot([inst.queue_dir for inst in instances])
            results = run_rounds(instances, args, smtp_source, helpers)
        finally:
            helpers.stop()
    summary = summarize(results)
    report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario": args.scenario,
        "parameters": {k: v for k, v in vars(args).items() if k not in ("results",)},
        "environment": env,
        "main_cf": {**common_main_cf(), **helpers.main_cf()},
        "master_cf_service_options": dict(options),
        "sink_direct": {"msgs_per_s": helpers.sink_direct_msgs_per_s,
                        "cpu_ms_per_msg": helpers.sink_direct_cpu_ms_per_msg},
        "rounds": [asdict(r) for r in results],
        "summary": summary,
    }
    os.makedirs(args.results, exist_ok=True)
    out = Path(args.results) / f"bench-{args.scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    unit = "connections" if args.scenario == "tls" else "messages"
    print(f"scenario {args.scenario}: {args.messages} {unit} x {args.rounds} rounds, "
          f"{args.sessions} sessions, {args.size} bytes (medians)")
    print(format_table(summary, args.scenario))
    print(f"results: {out}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
