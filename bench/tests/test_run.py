"""Tests of the benchmark harness's pure helpers and its mbox counter (no servers started)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "run.py"
    spec = importlib.util.spec_from_file_location("bench_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    return module


run = _load()


def stat_line(pid: int, comm: str, ppid: int, session: int, ticks: tuple[int, int, int, int],
              state: str = "S") -> str:
    u, s, cu, cs = ticks
    # fields 3..17 of proc(5): state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime, then a few more.
    return (f"{pid} ({comm}) {state} {ppid} {session} {session} 0 -1 4194560 10 0 0 0 "
            f"{u} {s} {cu} {cs} 20 0 1 0 100 1000 10")


def test_parse_stat_handles_spaces_and_parentheses_in_comm() -> None:
    st = run.parse_stat(stat_line(42, "smtpd (x) y", 7, 7, (1, 2, 3, 4)))
    assert (st.pid, st.comm, st.state, st.ppid, st.session) == (42, "smtpd (x) y", "S", 7, 7)
    assert (st.utime, st.stime, st.cutime, st.cstime) == (1, 2, 3, 4)
    assert st.ticks == 10


def test_parse_stat_reads_this_process() -> None:
    st = run.parse_stat(Path("/proc/self/stat").read_text())
    # The session may be 0 inside a container (inherited from outside its
    # PID namespace), so compare with what the kernel says rather than > 0.
    assert (st.pid, st.ppid, st.session) == (os.getpid(), os.getppid(), os.getsid(0))


def test_tree_members_takes_session_and_descendants_only() -> None:
    stats = [run.parse_stat(line) for line in (
        stat_line(1, "init", 0, 1, (100, 100, 0, 0)),
        stat_line(10, "master", 1, 10, (5, 5, 7, 3)),
        stat_line(11, "qmgr", 10, 10, (1, 1, 0, 0)),
        stat_line(12, "smtpd", 10, 10, (2, 2, 0, 0)),
        stat_line(13, "setsid child", 12, 13, (4, 0, 0, 0)),  # left the session, still ours
        stat_line(14, "grandchild", 13, 13, (1, 0, 0, 0)),
        stat_line(20, "other", 1, 20, (50, 50, 0, 0)),
    )]
    members = run.tree_members(stats, 10)
    assert [s.pid for s in members] == [10, 11, 12, 13, 14]
    assert run.tree_ticks(stats, 10) == 20 + 2 + 4 + 4 + 1
    assert run.tree_members(stats, 99) == []


def test_count_separators_counts_only_line_starts() -> None:
    data = b"From a  Mon\nbody From x\n\nFrom b  Tue\n>From c\n"
    assert run.count_separators(data, True) == (2, True)
    assert run.count_separators(b"rom z\nFrom y\nFrom", False) == (1, False)


def test_mbox_counter_reads_incrementally_and_waits_for_whole_lines(tmp_path: Path) -> None:
    mbox = tmp_path / "benchuser"
    counter = run.MboxCounter(str(mbox))
    assert counter.poll() == 0  # no file yet
    with mbox.open("ab") as f:
        f.write(b"From s@example.com  Wed Nov 25 21:09:17 2026\nSubject: x\n\nbody\n\nFro")
    assert counter.poll() == 1
    with mbox.open("ab") as f:
        f.write(b"m t@example.com  Wed Nov 25 21:09:18 2026\nFrom: <t@example.com>\n\n")
    assert counter.poll() == 2
    assert counter.poll() == 2  # nothing new: no double count
    assert counter.mtime() > 0


DEBIAN_LIKE = """\
# comment
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission
pickup    unix  n       -       y       60      1       pickup
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
10587     inet  n       -       y       -       -       smtpd
  -o smtpd_tls_wrappermode=yes
local     unix  -       n       n       -       -       local
"""


def test_rewrite_master_cf_moves_smtp_to_loopback_and_disables_chroot() -> None:
    out = run.rewrite_master_cf(DEBIAN_LIKE, "127.0.0.1:2525").splitlines()
    active = [line.split() for line in out if line and line[0] not in "# \t"]
    assert ["127.0.0.1:2525", "inet", "n", "-", "n", "-", "-", "smtpd"] in active
    assert all(fields[4] == "n" for fields in active)
    assert not any(fields[0] == "10587" for fields in active)
    assert "#10587     inet  n       -       y       -       -       smtpd" in out
    assert "#  -o smtpd_tls_wrappermode=yes" in out  # its continuation goes with it
    assert "        -o syslog_name=postfix/$service_name" in out  # others' stay
    assert out[-1] == "postlog unix-dgram n - n - 1 postlogd"


def test_rewrite_master_cf_keeps_existing_postlog() -> None:
    text = DEBIAN_LIKE + "postlog   unix-dgram n  -       n       -       1       postlogd\n"
    out = run.rewrite_master_cf(text, "127.0.0.1:2525")
    assert out.count("postlogd") == 1


def test_render_main_cf_later_sections_override() -> None:
    text = run.render_main_cf({"a": "1", "relayhost": ""}, {"a": "2", "b": "$a"})
    lines = text.splitlines()
    assert "a = 2" in lines and "a = 1" not in lines
    assert "b = $a" in lines and "relayhost =" in lines


def test_main_cf_is_the_same_for_both_but_the_paths() -> None:
    a = run.instance_main_cf("/tmp/x/postfix")
    b = run.instance_main_cf("/tmp/x/postier")
    assert a.keys() == b.keys()
    assert a["mail_spool_directory"] == "/tmp/x/postfix/spool"
    assert not set(a) & set(run.common_main_cf())


def rr(server: str, ok: bool, rate: float, cpu: float, round: int = 1) -> object:
    r = run.RoundResult(server, round, 100)
    r.ok, r.msgs_per_s, r.cpu_ms_per_msg, r.inject_msgs_per_s = ok, rate, cpu, rate * 2
    return r


def test_summarize_medians_over_good_rounds_and_ratios() -> None:
    results = [
        rr("postfix", True, 200.0, 4.0), rr("postfix", True, 300.0, 6.0),
        rr("postfix", True, 250.0, 5.0), rr("postier", True, 500.0, 2.0),
        rr("postier", False, 1.0, 99.0), rr("postier", True, 700.0, 3.0),
    ]
    summary = run.summarize(results)
    assert summary["servers"]["postfix"]["msgs_per_s"] == 250.0
    assert summary["servers"]["postier"]["msgs_per_s"] == 600.0
    assert summary["servers"]["postier"]["rounds_ok"] == 2
    assert summary["ratio_throughput"] == pytest.approx(2.4)
    assert summary["ratio_cpu_per_msg"] == pytest.approx(0.5)
    table = run.format_table(summary)
    assert "x2.40" in table and "x0.50" in table


def test_paired_ratios_compare_rounds_run_back_to_back() -> None:
    results = [
        rr("postfix", True, 200.0, 4.0, 1), rr("postier", True, 300.0, 3.0, 1),
        rr("postier", True, 400.0, 2.0, 2), rr("postfix", True, 400.0, 4.0, 2),
        rr("postfix", True, 100.0, 1.0, 3), rr("postier", False, 1.0, 9.0, 3),  # no pair
    ]
    paired = run.summarize(results)["paired"]
    assert paired["pairs"] == 2
    assert paired["throughput"] == {"median": 1.25, "min": 1.0, "max": 1.5}
    assert paired["cpu_per_msg"] == {"median": 0.625, "min": 0.5, "max": 0.75}
    table = run.format_table(run.summarize(results))
    assert "round by round (2 pairs): throughput x1.00..x1.50 (median x1.25)" in table


def test_summarize_one_server_has_no_ratio() -> None:
    summary = run.summarize([rr("postfix", False, 1.0, 1.0)])
    assert "ratio_throughput" not in summary
    assert summary["servers"]["postfix"]["msgs_per_s"] is None
    assert "-" in run.format_table(summary)


def test_parse_proc_stat_cpu_excludes_idle_and_iowait() -> None:
    text = "cpu  10 1 5 1000 7 2 3 4 0 0\ncpu0 5 0 2 500 3 1 1 2 0 0\n"
    assert run.parse_proc_stat_cpu(text) == 10 + 1 + 5 + 2 + 3 + 4
    with pytest.raises(ValueError):
        run.parse_proc_stat_cpu("intr 1 2 3\n")
