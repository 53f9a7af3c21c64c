"""A peer that resets the connection is one log line, never a traceback.

Clients send junk, then reset the connection (SO_LINGER on, linger 0, close: the kernel
sends RST) while smtpd sleeps after errors (``smtpd_error_sleep_time``) or while it
writes replies the client does not read. As Postfix's smtpd(8), each session then
logs ``lost connection after CMD from NAME[ADDR]`` and its ``disconnect from`` line,
and the server carries on.
"""

from __future__ import annotations

import re
import smtplib
import socket
import struct
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

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
"""

CLIENTS = 200  # connections, all of which reset
GROUP = 20  # at once
JUNK = b"junk\r\n"
UNRECOGNIZED = b"502 5.5.2"


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
    try:
        sock.sendall(JUNK * 50_000)  # blocks once smtpd stops reading to wait for us
    except TimeoutError:
        pass
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
        entry.strip().splitlines()[-1].strip() for entry in entries if "Traceback" in entry
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


def test_peers_resetting_while_smtpd_sleeps_or_writes(make_instance) -> None:
    inst = make_instance(BASE_MAIN_CF)
    writer_port = free_port()
    # A second service that never sleeps and never gives up on errors: it only writes.
    inst.write_master_cf(
        f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
        f"127.0.0.1:{writer_port} inet n - n - - smtpd"
        " -o smtpd_soft_error_limit=1000000 -o smtpd_hard_error_limit=1000000\n"
    )
    assert inst.start().returncode == 0, inst.log()

    kinds = [
        (reset_while_sleeping, inst.port),
        (reset_while_writing, writer_port),
        (reset_at_once, inst.port),
    ]
    jobs = [kinds[i % len(kinds)] for i in range(CLIENTS)]
    with ThreadPoolExecutor(GROUP) as pool:
        for start in range(0, CLIENTS, GROUP):
            group = [pool.submit(fn, port) for fn, port in jobs[start : start + GROUP]]
            for future in group:
                future.result()

    log = wait_for_disconnects(inst, CLIENTS)
    assert "Traceback" not in log, summary(log)
    assert count_lines(log, r" connect from ") == CLIENTS, summary(log)
    assert count_lines(log, r" disconnect from ") == CLIENTS, summary(log)
    # Each session that had started to talk ends with Postfix's line, without details.
    lost = re.findall(r" lost connection after (\S+) from (\S+)$", log, flags=re.MULTILINE)
    assert len(lost) >= CLIENTS * 2 // 3, summary(log)
    assert all(re.fullmatch(r"\S+\[127\.0\.0\.1\]", client) for _, client in lost), lost[:5]
    # The sessions that slept say so, with their command counts.
    assert re.search(r" disconnect from \S+ ehlo=1 unknown=0/\d+ commands=1/\d+$", log, re.M), (
        summary(log)
    )

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
    assert "Traceback" not in log, summary(log)
