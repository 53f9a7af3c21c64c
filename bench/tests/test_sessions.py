"""Tests of the sessions scenario's pure parts: smaps_rollup parsing, process kinds, the
per-kind sums, the process limit, the client's report and source addresses, and the
summary (no servers started)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load(name: str, file: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / file
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sessions = _load("bench_sessions", "sessions.py")
client = _load("bench_sessions_client", "sessions_client.py")

ROLLUP = """55bb57186000-7ffd256c6000 ---p 00000000 00:00 0                          [rollup]
Rss:                1736 kB
Pss:                 173 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Shared_Clean:       1588 kB
Private_Dirty:       112 kB
Swap:                  0 kB
"""


def test_parse_smaps_rollup_reads_every_kb_field_and_skips_the_header() -> None:
    fields = sessions.parse_smaps_rollup(ROLLUP)
    assert fields["Rss"] == 1736
    assert fields["Pss"] == 173
    assert fields["Shared_Clean"] == 1588
    assert fields["Swap"] == 0
    assert len(fields) == 7  # the [rollup] header line is not a field


def test_parse_smaps_rollup_rejects_text_without_pss_or_rss() -> None:
    with pytest.raises(ValueError):
        sessions.parse_smaps_rollup("")  # a zombie's smaps_rollup is empty
    with pytest.raises(ValueError):
        sessions.parse_smaps_rollup("Rss: 10 kB\n")


@pytest.mark.parametrize(("argv", "comm", "kind"), [
    (["/usr/lib/postfix/sbin/master", "-w"], "master", "master"),
    (["smtpd", "-n", "127.0.0.1:2525", "-t", "inet", "-u"], "smtpd", "smtpd"),
    (["qmgr", "-l", "-t", "unix", "-u"], "qmgr", "qmgr"),
    (["/venv/bin/python3", "-m", "postier.smtpd.worker", "--config-dir", "/x"], "python3",
     "smtpd"),
    (["/venv/bin/python3", "-m", "postier.qmgr.qmgr", "--config-dir", "/x"], "python3",
     "qmgr"),
    (["/venv/bin/python3", "-m", "postier.master.master", "--config-dir", "/x"], "python3",
     "master"),
    (["/venv/bin/python3", "-m", "other.tool"], "python3", "other.tool"),
    ([], "smtpd", "smtpd"),
    ([], "", "?"),
])
def test_process_kind(argv: list[str], comm: str, kind: str) -> None:
    assert sessions.process_kind(argv, comm) == kind


def test_memory_by_kind_sums_per_kind_and_totals_sum_everything() -> None:
    procs = [sessions.ProcMemory(1, "master", 700, 3000),
             sessions.ProcMemory(2, "smtpd", 1200, 9000),
             sessions.ProcMemory(3, "smtpd", 1300, 9100),
             sessions.ProcMemory(4, "qmgr", 650, 2900)]
    kinds = sessions.memory_by_kind(procs)
    assert list(kinds) == ["master", "qmgr", "smtpd"]
    assert (kinds["smtpd"].processes, kinds["smtpd"].pss_kb, kinds["smtpd"].rss_kb) == (
        2, 2500, 18100)
    assert sessions.totals(kinds) == (4, 3850, 24000)
    assert sessions.totals({}) == (0, 0, 0)


@pytest.mark.parametrize(("n", "workers", "limit"), [
    (1, 1, 1), (200, 2, 400), (2000, 2, 4000), (10000, 2, 20000), (10, 0, 10)])
def test_process_limit_for_gives_every_worker_a_share_of_all_sessions(
        n: int, workers: int, limit: int) -> None:
    assert sessions.process_limit_for(n, workers) == limit
    # each worker's share (instance.session_share: the limit split, rounded up) is n
    assert -(-limit // max(1, workers)) == n


def test_parse_client_ready() -> None:
    line = json.dumps({"open": 5, "refused": 1, "failed": 0, "seconds": 1.5})
    assert sessions.parse_client_ready(line)["open"] == 5
    for bad in ('{"open": 5}', "[1, 2]", '{"open": "5", "refused": 0, "failed": 0}'):
        with pytest.raises(ValueError):
            sessions.parse_client_ready(bad)
    with pytest.raises(ValueError):
        sessions.parse_client_ready("not json")


def _round(server: str, no: int, pss_mb: float, ok: bool = True,
           open_: int = 100) -> object:
    return sessions.SessionsRound(server, no, 100, ok=ok, open=open_, still_open=open_,
                                  pss_kb=int(pss_mb * 1024), rss_kb=int(pss_mb * 2048),
                                  idle_pss_kb=1024, processes=5)


def test_summarize_medians_and_round_by_round_ratios() -> None:
    results = [_round("postfix", 1, 100), _round("postier", 1, 20),
               _round("postfix", 2, 110), _round("postier", 2, 33),
               _round("postfix", 3, 90), _round("postier", 3, 18),
               _round("postier", 4, 999, ok=False)]
    s = sessions.summarize(results)
    assert s["servers"]["postfix"]["pss_mb"] == pytest.approx(100)
    assert s["servers"]["postier"]["pss_mb"] == pytest.approx(20)
    assert s["servers"]["postier"]["rounds"] == 4
    assert s["servers"]["postier"]["rounds_ok"] == 3
    # (20 MB - 1 MB idle) / 100 sessions
    assert s["servers"]["postier"]["pss_kb_per_session"] == pytest.approx(19 * 1024 / 100)
    assert s["ratio_pss"] == pytest.approx(0.2)
    assert s["paired_pss"]["pairs"] == 3
    assert s["paired_pss"]["min"] == pytest.approx(0.2, abs=1e-3)
    assert s["paired_pss"]["max"] == pytest.approx(0.3, abs=1e-3)
    table = sessions.format_table(s, 100)
    assert "postier/postfix: PSS x0.200" in table


def test_format_table_states_the_target_only_for_ten_thousand_sessions() -> None:
    s = sessions.summarize([_round("postier", 1, 400, open_=10000)])
    assert "target 10000 sessions in 500 MB: met" in sessions.format_table(s, 10000)
    assert "target" not in sessions.format_table(s, 2000)
    s = sessions.summarize([_round("postier", 1, 600, open_=10000)])
    assert "MISSED" in sessions.format_table(s, 10000)


def test_source_address_spreads_over_127_12_and_avoids_the_sink() -> None:
    addrs = [client.source_address(i) for i in range(10000)]
    assert len(set(addrs)) == 10000
    assert all(a.startswith("127.12.") for a in addrs)
    assert "127.12.0.1" not in addrs
    assert client.source_address(0) == "127.12.1.1"
    assert client.source_address(250) == "127.12.2.1"
    with pytest.raises(ValueError):
        client.source_address(254 * 250 + 250)


def test_client_reply_helpers() -> None:
    assert client.reply_complete(b"250 ok\r\n")
    assert not client.reply_complete(b"250-PIPELINING\r\n")
    assert client.reply_code(b"421 4.7.0 too many connections\r\n") == 421
    with pytest.raises(ValueError):
        client.reply_code(b"hello\r\n")


def test_client_counts_open_refused_and_failed_sessions_against_a_loopback_server() -> None:
    """A scripted server: the first 3 clients are greeted and answer EHLO, the 4th gets
    421, the 5th a 554 greeting; later the server closes one open session."""
    import asyncio

    async def scenario() -> tuple[object, int]:
        seen: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer)
            n = len(seen)
            if n == 4:
                writer.write(b"421 4.7.0 bench.example.com Error: too many connections\r\n")
                writer.close()
                return
            if n == 5:
                writer.write(b"554 5.7.1 no\r\n")
                writer.close()
                return
            writer.write(b"220 bench.example.com ESMTP\r\n")
            await reader.readline()
            writer.write(b"250-bench.example.com\r\n250 PIPELINING\r\n")

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        s = client.Sessions(port, "127.0.0.1", timeout=10)
        gate = asyncio.Semaphore(1)  # one at a time: the order above is the clients' order
        await asyncio.gather(*(s.one(i, gate) for i in range(5)))
        seen[0].close()  # the server ends an open session
        for _ in range(100):
            if s.dropped:
                break
            await asyncio.sleep(0.01)
        still_open = s.report.open - s.dropped
        await s.close_all()
        for writer in seen:
            writer.close()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return s.report, still_open

    report, still_open = asyncio.run(scenario())
    assert (report.open, report.refused, report.failed) == (3, 1, 1)  # type: ignore[attr-defined]
    assert "554" in report.first_error  # type: ignore[attr-defined]
    assert still_open == 2
    assert report.greeting_median == 0.0  # type: ignore[attr-defined]  (set by run() only)
