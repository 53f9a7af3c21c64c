#!/usr/bin/env python3
"""Benchmark scenario: memory of N open, idle SMTP sessions, postier vs Postfix.

Follows proc(5) (``/proc/PID/smaps_rollup``: ``Pss`` and ``Rss`` in kB), Postfix's
master(5) (``default_process_limit``, master.cf ``maxproc``; postier maps a process limit
to a session limit, docs/decisions.md) and RFC 5321 (greeting, EHLO, 421). Shares
bench/run.py's setup (instances, main.cf, master.cf, start and stop): nothing is set up
twice.

Usage: ``python3 bench/sessions.py [--sessions 2000] [--rounds 3] [--only postier]
[--postier CMD]``. For each round and server (the order alternating) the harness starts
the server with ``default_process_limit = N`` (both servers; the packaged master.cf's
``smtp inet`` has ``maxproc -``, so that is the service's limit), measures its idle
process tree, runs bench/sessions_client.py (one asyncio process holding N sockets from
127.12.x.y, outside the server's tree) until every session is greeted and answered EHLO
(or refused with 421, or failed), waits ``--settle`` seconds, measures the tree again
(sum of PSS and RSS per process kind), then lets the client QUIT and stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import run as bench  # noqa: E402  (bench/run.py: the shared setup)

# The project's target (DEVELOPERS guide): 10,000 open sessions in 500 MB.
TARGET_SESSIONS = 10_000
TARGET_MB = 500.0


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------

def process_limit_for(sessions: int, workers: int) -> int:
    """``default_process_limit`` for SESSIONS open sessions: SESSIONS x WORKERS.

    postier splits a service's limit evenly among its WORKERS smtpd workers, each
    enforcing its share alone, and the kernel does not hand connections out evenly among
    processes accepting on one socket: a worker past its share keeps accepting and
    answers 421 while another has free slots. Measured with 2 workers: a limit of exactly
    N refused 1 of 200 sessions, N + 10 % refused 42 of 2,000. Only SESSIONS x WORKERS
    (every worker's share is SESSIONS) guarantees that no session is refused whatever the
    distribution. Postfix gets the same value: its master forks only the smtpd processes
    in use, so the headroom costs it nothing.
    """
    return sessions * max(1, workers)


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The ``Name: N kB`` fields of /proc/PID/smaps_rollup, in kB (``Rss``, ``Pss``...).

    The first line (the address range header) and lines without a kB value are skipped;
    ValueError if there is no ``Pss`` or ``Rss`` field.
    """
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        parts = rest.split()
        if colon and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    if "Pss" not in fields or "Rss" not in fields:
        raise ValueError(f"no Pss/Rss in smaps_rollup: {text[:200]!r}")
    return fields


def process_kind(argv: Sequence[str], comm: str) -> str:
    """What a server process is, from its command line: ``master``, ``smtpd``, ``qmgr``...

    Postfix's daemons are named by argv[0] (``/usr/lib/postfix/sbin/master``, ``smtpd``);
    postier's children run ``python -m postier.KIND.module`` (``postier.smtpd.worker`` is
    ``smtpd``). A process whose command line is gone (a zombie) falls back to its comm.
    """
    args = list(argv)
    if "-m" in args[:-1]:
        module = args[args.index("-m") + 1]
        parts = module.split(".")
        if parts[0] == "postier" and len(parts) > 1:
            return parts[1]
        return module
    if args:
        name = os.path.basename(args[0])
        if name == "postier" or name.startswith("python"):
            # `postier start-fg` or an interpreter running a script: the master
            return "master" if name == "postier" else name
        return name
    return comm or "?"


@dataclass(frozen=True)
class ProcMemory:
    """One process's memory, kB (from smaps_rollup)."""

    pid: int
    kind: str
    pss_kb: int
    rss_kb: int


@dataclass
class KindMemory:
    processes: int = 0
    pss_kb: int = 0
    rss_kb: int = 0


def memory_by_kind(procs: Iterable[ProcMemory]) -> dict[str, KindMemory]:
    """Sum of PSS and RSS and the number of processes, per kind (sorted by name)."""
    out: dict[str, KindMemory] = {}
    for p in procs:
        k = out.setdefault(p.kind, KindMemory())
        k.processes += 1
        k.pss_kb += p.pss_kb
        k.rss_kb += p.rss_kb
    return dict(sorted(out.items()))


def totals(kinds: Mapping[str, KindMemory]) -> tuple[int, int, int]:
    """(processes, PSS kB, RSS kB) over every kind."""
    return (sum(k.processes for k in kinds.values()), sum(k.pss_kb for k in kinds.values()),
            sum(k.rss_kb for k in kinds.values()))


def parse_client_ready(text: str) -> dict[str, Any]:
    """The JSON line bench/sessions_client.py prints once every session has settled.

    ValueError when TEXT is not such an object (``open``, ``refused``, ``failed``).
    """
    report = json.loads(text)
    if not isinstance(report, dict) or not all(
            isinstance(report.get(k), int) for k in ("open", "refused", "failed")):
        raise ValueError(f"bad client report: {text[:200]}")
    return report


def mb(kb: float | None) -> float | None:
    """kB to MB (1 MB = 1024 kB, as /proc counts)."""
    return None if kb is None else kb / 1024


@dataclass
class SessionsRound:
    server: str
    round: int
    sessions: int
    ok: bool = False
    error: str = ""
    open: int = 0
    refused: int = 0
    failed: int = 0
    first_error: str = ""
    still_open: int = 0  # open sessions the server had not ended when memory was read
    setup_seconds: float | None = None
    setup_cpu_seconds: float | None = None  # the server tree's CPU while sessions opened
    client_cpu_seconds: float | None = None  # the client's, for the same span
    latency: dict[str, float] = field(default_factory=dict)  # the client's, seconds
    idle_pss_kb: int = 0
    idle_rss_kb: int = 0
    pss_kb: int = 0
    rss_kb: int = 0
    processes: int = 0
    kinds: dict[str, KindMemory] = field(default_factory=dict)
    idle_kinds: dict[str, KindMemory] = field(default_factory=dict)
    master_cf: str = ""

    @property
    def pss_kb_per_session(self) -> float | None:
        """What one open session adds to the tree's PSS, kB."""
        return (self.pss_kb - self.idle_pss_kb) / self.open if self.open else None


def summarize(results: Sequence[SessionsRound]) -> dict[str, Any]:
    """Medians per server over successful rounds; postier/postfix PSS ratios, round by
    round (the two servers of a round run back to back)."""
    servers: dict[str, dict[str, Any]] = {}
    for name in sorted({r.server for r in results}):
        good = [r for r in results if r.server == name and r.ok]
        per_session = [v for v in (r.pss_kb_per_session for r in good) if v is not None]
        servers[name] = {
            "rounds_ok": len(good),
            "rounds": len([r for r in results if r.server == name]),
            "open": bench.median([float(r.open) for r in good]),
            "pss_mb": mb(bench.median([float(r.pss_kb) for r in good])),
            "rss_mb": mb(bench.median([float(r.rss_kb) for r in good])),
            "idle_pss_mb": mb(bench.median([float(r.idle_pss_kb) for r in good])),
            "pss_kb_per_session": bench.median(per_session),
            "processes": bench.median([float(r.processes) for r in good]),
        }
    summary: dict[str, Any] = {"servers": servers}
    if "postier" in servers and "postfix" in servers:
        summary["ratio_pss"] = bench.ratio(servers["postier"]["pss_mb"],
                                           servers["postfix"]["pss_mb"])
        summary["ratio_rss"] = bench.ratio(servers["postier"]["rss_mb"],
                                           servers["postfix"]["rss_mb"])
        by_round: dict[int, dict[str, SessionsRound]] = {}
        for r in results:
            if r.ok:
                by_round.setdefault(r.round, {})[r.server] = r
        pairs = [d for _, d in sorted(by_round.items()) if len(d) == 2]
        ratios = [v for v in (bench.ratio(d["postier"].pss_kb, d["postfix"].pss_kb)
                              for d in pairs) if v is not None]
        summary["paired_pss"] = {"pairs": len(pairs), "median": bench.median(ratios),
                                 "min": min(ratios, default=None),
                                 "max": max(ratios, default=None)}
    return summary


def format_table(summary: dict[str, Any], sessions: int) -> str:
    f = bench._fmt
    rows = [f"{'server':<8} {'rounds ok':>9} {'open':>7} {'PSS MB':>8} {'RSS MB':>8} "
            f"{'idle PSS':>8} {'kB/sess':>8} {'procs':>6}"]
    for name, s in summary["servers"].items():
        rows.append(
            f"{name:<8} {str(s['rounds_ok']) + '/' + str(s['rounds']):>9} "
            f"{f(s['open'], '.0f'):>7} {f(s['pss_mb'], '.1f'):>8} {f(s['rss_mb'], '.1f'):>8} "
            f"{f(s['idle_pss_mb'], '.1f'):>8} {f(s['pss_kb_per_session'], '.1f'):>8} "
            f"{f(s['processes'], '.0f'):>6}")
    if "ratio_pss" in summary:
        p = summary["paired_pss"]
        rows.append(f"postier/postfix: PSS x{f(summary['ratio_pss'], '.3f')} "
                    f"(round by round x{f(p['min'], '.3f')}..x{f(p['max'], '.3f')}), "
                    f"RSS x{f(summary['ratio_rss'], '.3f')}")
    px = summary["servers"].get("postier")
    if px and px["pss_mb"] is not None and sessions == TARGET_SESSIONS:
        verdict = "met" if px["pss_mb"] <= TARGET_MB else "MISSED"
        rows.append(f"target {TARGET_SESSIONS} sessions in {TARGET_MB:g} MB: {verdict}")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# Adapters: /proc, the client process
# --------------------------------------------------------------------------------------

def read_memory(pids: Iterable[int]) -> list[ProcMemory]:
    """Memory of each live process of PIDS (those gone meanwhile are skipped)."""
    out: list[ProcMemory] = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = parse_smaps_rollup(f.read())
            with open(f"/proc/{pid}/cmdline", "rb") as fb:
                argv = [a.decode(errors="replace") for a in fb.read().split(b"\0") if a]
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except (OSError, ValueError):
            continue  # exited, or a zombie (no mappings)
        out.append(ProcMemory(pid, process_kind(argv, comm), fields["Pss"], fields["Rss"]))
    return out


def tree_memory(inst: bench.Instance) -> dict[str, KindMemory]:
    """The server's whole process tree (master, its session, descendants), per kind."""
    return memory_by_kind(read_memory(s.pid for s in inst.remember_processes()))


def measure(inst: bench.Instance, round_no: int, args: argparse.Namespace) -> SessionsRound:
    """One round for one server: start, idle memory, N sessions, memory, QUIT, stop."""
    result = SessionsRound(inst.name, round_no, args.sessions)
    client: subprocess.Popen[str] | None = None
    try:
        inst.start()
        time.sleep(args.settle)
        result.idle_kinds = tree_memory(inst)
        _, result.idle_pss_kb, result.idle_rss_kb = totals(result.idle_kinds)
        ticks0, _ = inst.cpu_ticks()
        client = subprocess.Popen(
            [*args.client_python, str(BENCH_DIR / "sessions_client.py"),
             "--port", str(inst.port), "-n", str(args.sessions),
             "--connecting", str(args.connecting), "--timeout", str(args.timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout is not None and client.stdin is not None
        line = client.stdout.readline()
        ticks1, _ = inst.cpu_ticks()
        result.setup_cpu_seconds = (ticks1 - ticks0) / bench.clock_ticks()
        result.client_cpu_seconds = bench.process_ticks(client.pid) / bench.clock_ticks()
        if not line:
            raise RuntimeError(f"sessions client exited {client.wait()} without a report")
        report = parse_client_ready(line)
        result.open, result.refused = report["open"], report["refused"]
        result.failed, result.first_error = report["failed"], report.get("first_error", "")
        result.setup_seconds = report.get("seconds")
        result.latency = {k: report[k] for k in ("connect_median", "connect_max",
                                                 "greeting_median", "greeting_max")
                          if k in report}
        time.sleep(args.settle)
        result.kinds = tree_memory(inst)
        result.processes, result.pss_kb, result.rss_kb = totals(result.kinds)
        client.stdin.write("close\n")
        client.stdin.flush()
        after = client.stdout.readline()
        result.still_open = json.loads(after)["still_open"] if after else 0
        client.wait(timeout=60)
        result.ok = result.open == args.sessions and result.still_open == result.open
        if not result.ok:
            result.error = (f"{result.open}/{args.sessions} open, {result.refused} refused "
                            f"(421), {result.failed} failed, {result.still_open} still open "
                            f"after the reading: {result.first_error}")
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        result.error = str(exc)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        result.master_cf = inst.master_cf_kind
        inst.stop()
    return result


def describe(r: SessionsRound) -> str:
    kinds = ", ".join(f"{k} {v.processes}p {v.pss_kb / 1024:.1f}MB"
                      for k, v in r.kinds.items())
    head = (f"{r.server} round {r.round}: {r.open}/{r.sessions} open, {r.refused} refused, "
            f"{r.failed} failed; PSS {r.pss_kb / 1024:.1f} MB (idle "
            f"{r.idle_pss_kb / 1024:.1f}), RSS {r.rss_kb / 1024:.1f} MB, "
            f"{r.processes} processes; set up in {r.setup_seconds or 0:.1f}s (server CPU "
            f"{r.setup_cpu_seconds or 0:.1f}s, client {r.client_cpu_seconds or 0:.1f}s; "
            + ", ".join(f"{k} {v:.2f}s" for k, v in r.latency.items()) + "); "
            f"{kinds}")
    return head if r.ok else f"{head}; FAILED: {r.error}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sessions", "-s", type=int, default=2000, help="open sessions")
    p.add_argument("--rounds", "-r", type=int, default=3)
    p.add_argument("--only", choices=("postfix", "postier"))
    p.add_argument("--postier", metavar="CMD", help="postier control command")
    p.add_argument("--postier-master-cf", choices=("auto", "same", "minimal"), default="auto")
    p.add_argument("--process-limit", type=int,
                   help="default_process_limit of both servers (default: sessions x CPUs, "
                        "see process_limit_for())")
    p.add_argument("--connecting", type=int, default=500,
                   help="sessions the client sets up at once")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one session may take to be greeted and answer EHLO")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds to wait before each memory reading")
    p.add_argument("--client-python", default=sys.executable,
                   help="interpreter for the client (uvloop is used if it has it)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--results", default=str(bench.RESULTS_DIR))
    args = p.parse_args(argv)
    args.client_python = shlex.split(args.client_python)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sessions < 1 or args.rounds < 1:
        sys.exit("bench: --sessions and --rounds must be positive")
    signal.signal(signal.SIGTERM, bench._terminate)
    bench.ensure_postfix()
    postier_cmd = bench.find_postier(args.postier) if args.only != "postfix" else None
    env = bench.environment(postier_cmd)
    # postier runs one smtpd worker per CPU (instance.Runtime.from_config)
    limit = args.process_limit or process_limit_for(args.sessions, os.cpu_count() or 1)
    extra = {"default_process_limit": str(limit)}
    results: list[SessionsRound] = []
    with bench.bench_dir(args.keep) as base:
        instances = bench.make_instances(base, args.only, postier_cmd,
                                         args.postier_master_cf, extra)
        if not instances:
            sys.exit("bench: nothing to benchmark")
        try:
            for round_no in range(1, args.rounds + 1):
                order = instances if round_no % 2 else list(reversed(instances))
                for inst in order:
                    r = measure(inst, round_no, args)
                    bench.log(describe(r))
                    results.append(r)
        finally:
            for inst in instances:
                with contextlib.suppress(Exception):
                    inst.stop()
    summary = summarize(results)
    report = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario": "sessions",
        "parameters": {k: v for k, v in vars(args).items() if k != "results"},
        "environment": env,
        "main_cf": {**bench.common_main_cf(), **extra},
        "rounds": [dict(asdict(r), pss_kb_per_session=r.pss_kb_per_session)
                   for r in results],
        "summary": summary,
    }
    os.makedirs(args.results, exist_ok=True)
    out = Path(args.results) / f"bench-sessions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"scenario sessions: {args.sessions} open sessions x {args.rounds} rounds "
          f"(medians; MB = 1024 kB)")
    print(format_table(summary, args.sessions))
    print(f"results: {out}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
