"""A peer that resets the connection is one log line, never a traceback.

Clients send junk, then reset the connection (SO_LINGER on, linger 0, close: the kernel
sends RST) while smtpd sleeps after errors (``smtpd_error_sleep_time``) or while it
writes replies the client does not read. As Postfix's smtpd(8), each session then
logs ``lost connection after CMD from NAME[ADDR]`` and its ``disconnect from`` line,
and the server carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import smtplib
import socket
import struct
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvloop

from postier.config.settings import Config
from postier.log import for_config as log_for_config
from postier.smtpd.process import Worker
from postier.smtpd.service import Service
from postier.smtpd.worker import Listener, serve

from .conftest import Instance, free_port

pytestmark = pytest.mark.integration

BASE_MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
smtpd_soft_error_limit = 1
smtpd_error_sleep_time = 1s
smtpd_hard_error_limit = 1000
# The junk is pipelined after EHLO on purpose: these sessions must live until the reset.
smtpd_forbid_unauth_pipelining = no
"""

CLIENTS = 200  # connections, all of which reset
GROUP = 20  # at once
JUNK = b"junk\r\n"
UNRECOGNIZED = b"500 5.5.2"
NO_ERROR_LIMITS = ("smtpd_soft_error_limit=1000000", "smtpd_hard_error_limit=1000000")


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER on and a zero timeout: the kernel sends RST, not FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until(sock: socket.socket, needle: bytes, count: int) -> None:
    seen = b""
    while seen.count(needle) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"server closed early: {seen[-200:]!r}")
        seen += chunk


def reset_while_sleeping(port: int) -> None:
    """Pipelined junk; reset once smtpd has answered the error that makes it sleep."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    read_until(sock, b"220 ", 1)
    sock.sendall(b"EHLO client.example.net\r\n" + JUNK * 8)
    # The second error passes smtpd_soft_error_limit (1): smtpd flushes, then sleeps.
    read_until(sock, UNRECOGNIZED, 2)
    reset(sock)


def reset_while_writing(port: int) -> None:
    """Junk as fast as it goes without reading a reply, then reset: smtpd is writing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    read_until(sock, b"220 ", 1)
    sock.settimeout(0.3)
    with contextlib.suppress(TimeoutError):
        sock.sendall(JUNK * 50_000)  # blocks once smtpd stops reading to wait for us
    reset(sock)


def reset_at_once(port: int) -> None:
    """Junk then reset without reading anything: smtpd may be anywhere in the session."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(b"EHLO client.example.net\r\n" + JUNK * 4)
    reset(sock)


def count_lines(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text, flags=re.MULTILINE))


def wait_for_disconnects(inst: Instance, expected: int, timeout: float = 60.0) -> str:
    """The log once ``expected`` sessions have ended (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = inst.log()
        if count_lines(text, r" disconnect from ") >= expected:
            time.sleep(0.5)  # a session that logs its line twice would do so by now
            return inst.log()
        if "Traceback" in text and count_lines(text, r" connect from ") >= expected:
            time.sleep(3)  # sessions that lost their line will never write it
            return inst.log()
        time.sleep(0.1)
    return inst.log()


def summary(log: str) -> str:
    """Counts of the lines that matter, and each kind of traceback with its count."""
    entries = re.split(r"\n(?=\w{3} [ \d]\d \d\d:\d\d:\d\d )", log)
    kinds = Counter(
        re.sub(r"0x[0-9a-f]+", "0x...", entry.strip().splitlines()[-1].strip())
        for entry in entries
        if "Traceback" in entry
    )
    first = next((entry for entry in entries if "Traceback" in entry), "")
    return (
        f"connect: {count_lines(log, r' connect from ')}, "
        f"disconnect: {count_lines(log, r' disconnect from ')}, "
        f"lost connection: {count_lines(log, r' lost connection after ')}, "
        f"tracebacks: {sum(kinds.values())}\n"
        + "".join(f"  {n} x {kind}\n" for kind, n in kinds.most_common())
        + first[:3000]
    )


def run_clients(sleep_port: int, write_port: int, clients: int) -> None:
    """``clients`` connections, ``GROUP`` at a time, of the three kinds in turn."""
    kinds = [
        (reset_while_sleeping, sleep_port),
        (reset_while_writing, write_port),
        (reset_at_once, sleep_port),
    ]
    jobs = [kinds[i % len(kinds)] for i in range(clients)]
    with ThreadPoolExecutor(GROUP) as pool:
        for start in range(0, clients, GROUP):
            group = [pool.submit(fn, port) for fn, port in jobs[start : start + GROUP]]
            for future in group:
                future.result()


def check_log(log: str, clients: int) -> None:
    """One ``connect``, one ``lost connection`` and one ``disconnect`` line per client."""
    assert "Traceback" not in log, summary(log)
    assert count_lines(log, r" connect from ") == clients, summary(log)
    assert count_lines(log, r" disconnect from ") == clients, summary(log)
    # Each session ends with Postfix's line, without the system's details.
    lost = re.findall(r" lost connection after ([A-Z]+) from (\S+)$", log, flags=re.MULTILINE)
    assert len(lost) == clients, summary(log)
    # Junk is "UNKNOWN", as in Postfix; a reset can come before smtpd read any junk.
    commands = Counter(command for command, _ in lost)
    assert set(commands) <= {"CONNECT", "EHLO", "UNKNOWN"}, commands
    assert commands["UNKNOWN"] >= clients // 2, commands
    # A peer gone before smtpd could ask its address is unknown[unknown], as in Postfix.
    names = {name for _, name in lost}
    assert all(re.fullmatch(r"\S+\[127\.0\.0\.1\]|unknown\[unknown\]", n) for n in names), names
    # The sessions that slept end with their command counts.
    assert re.search(r" disconnect from \S+ ehlo=1 unknown=0/\d+ commands=1/\d+$", log, re.M), (
        summary(log)
    )


def test_peers_resetting_while_smtpd_sleeps_or_writes(make_instance) -> None:
    """A real postier (its event loop is uvloop: ``daemon.new_event_loop``)."""
    inst = make_instance(BASE_MAIN_CF)
    writer_port = free_port()
    # A second service that never sleeps and never gives up on errors: it only writes.
    inst.write_master_cf(
        f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
        f"127.0.0.1:{writer_port} inet n - n - - smtpd"
        f" -o {NO_ERROR_LIMITS[0]} -o {NO_ERROR_LIMITS[1]}\n"
    )
    assert inst.start().returncode == 0, inst.log()

    run_clients(inst.port, writer_port, CLIENTS)
    check_log(wait_for_disconnects(inst, CLIENTS), CLIENTS)

    # The server carries on: a normal session still works, on both services.
    for port in (inst.port, writer_port):
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
            assert smtp.ehlo("client.example.net")[0] == 250
            assert smtp.mail("tournesol@example.net")[0] == 250
            assert smtp.rcpt("postmaster@example.com")[0] == 250
            code, _ = smtp.data(b"Subject: after the resets\r\n\r\nstill here\r\n")
            assert code == 250
    log = wait_for_disconnects(inst, CLIENTS + 2)
    assert count_lines(log, r" disconnect from ") == CLIENTS + 2, summary(log)
    assert count_lines(log, r" disconnect from .* quit=1 commands=5$") == 2, summary(log)
    assert "Traceback" not in log, summary(log)


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_peers_resetting_under_either_event_loop(make_instance, loop_name: str) -> None:
    """smtpd's worker and sessions in this process, on asyncio's default loop or uvloop."""
    inst = make_instance(BASE_MAIN_CF)  # never started: its configuration and directories
    cfg = Config.from_dir(str(inst.config_dir))
    worker = Worker(cfg, log_for_config("smtpd", cfg))
    sleeper = Service("sleeper", cfg, worker)
    writer = Service(
        "writer", cfg.with_overrides(dict(o.split("=") for o in NO_ERROR_LIMITS)), worker
    )
    listeners = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        listeners.append(sock)
    ports = [int(sock.getsockname()[1]) for sock in listeners]
    ready_r, ready_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    clients = 60

    async def main() -> None:
        for sock in listeners:
            sock.setblocking(False)
        listen = [Listener(sock, svc, share=0, process_limit=0, endpoint=str(port))
                  for sock, svc, port in zip(listeners, (sleeper, writer), ports, strict=True)]
        serving = asyncio.ensure_future(serve(worker, listen, ready_w, lifeline_r))
        assert await asyncio.to_thread(os.read, ready_r, 1) == b"R"
        await asyncio.to_thread(run_clients, ports[0], ports[1], clients)
        await asyncio.to_thread(wait_for_disconnects, inst, clients)
        os.close(lifeline_w)  # as when the master goes: the worker stops
        await serving

    loop = uvloop.new_event_loop() if loop_name == "uvloop" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        worker.trigger.close()
        os.close(ready_r)
        os.close(lifeline_r)
    check_log(inst.log(), clients)
