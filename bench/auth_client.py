#!/usr/bin/env python3
"""Load generator: N SMTP sessions of STARTTLS + AUTH PLAIN + one message, S at a time.

Follows RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 4954 (AUTH) and RFC 4616 (PLAIN).
smtp-source(1) cannot authenticate, so the "tls" scenario of bench/run.py uses this
client: each session connects, reads the banner, EHLO, STARTTLS, handshakes (no
certificate check: the benchmark's certificate is self-signed), EHLO again, AUTH PLAIN
with an initial response, MAIL, RCPT, DATA with one message of SIZE bytes, QUIT.

Usage: ``python3 bench/auth_client.py --port PORT --user U --password P [-m 500] [-s 10]
[-l 1024] [--timeout 60]``. Prints one JSON object (``completed``, ``failed``,
``seconds``, ``conn_per_s``, ``first_error``) on stdout; exits 1 if any session failed.
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass


class SmtpError(Exception):
    """The server answered with an unexpected reply code (or closed the connection)."""


def auth_plain_response(user: str, password: str) -> str:
    """RFC 4616 initial response, base64: ``\\0user\\0password``."""
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")


def message_body(size: int, sender: str, recipient: str, number: int) -> bytes:
    """A message of about SIZE bytes (headers included), CRLF lines, dot-stuffing-free.

    The body lines are made of ``x`` (never a leading dot), 78 characters each.
    """
    head = (f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: bench {number}\r\n"
            f"Message-ID: <bench-{number}@bench.example.com>\r\n\r\n").encode()
    remaining = max(size - len(head), 0)
    lines: list[bytes] = []
    while remaining > 0:
        n = min(78, max(remaining - 2, 1))
        lines.append(b"x" * n + b"\r\n")
        remaining -= n + 2
    return head + b"".join(lines)


def reply_complete(line: bytes) -> bool:
    """Whether LINE is the last line of a reply (``250 x``, not ``250-x``)."""
    return len(line) < 4 or line[3:4] != b"-"


@dataclass
class Outcome:
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    conn_per_s: float = 0.0
    first_error: str = ""


async def _reply(reader: asyncio.StreamReader, expect: str) -> str:
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError(f"connection closed (expecting {expect})")
        lines.append(line)
        if reply_complete(line):
            break
    text = b"".join(lines).decode("ascii", "replace").rstrip()
    if not text.startswith(expect):
        raise SmtpError(f"expected {expect}, got: {text[:200]}")
    return text


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str,
                   expect: str) -> str:
    writer.write(line.encode("ascii") + b"\r\n")
    return await _reply(reader, expect)


async def session(host: str, port: int, ctx: ssl.SSLContext, user: str, password: str,
                  sender: str, recipient: str, body: bytes) -> None:
    """One connection: STARTTLS, AUTH PLAIN, one message, QUIT. Raises SmtpError/OSError."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _reply(reader, "220")
        await _command(reader, writer, "EHLO client.bench.example.com", "250")
        await _command(reader, writer, "STARTTLS", "220")
        await writer.start_tls(ctx, server_hostname="bench.example.com")
        await _command(reader, writer, "EHLO client.bench.example.com", "250")
        await _command(reader, writer, "AUTH PLAIN " + auth_plain_response(user, password),
                       "235")
        await _command(reader, writer, f"MAIL FROM:<{sender}>", "250")
        await _command(reader, writer, f"RCPT TO:<{recipient}>", "250")
        await _command(reader, writer, "DATA", "354")
        writer.write(body + b".\r\n")
        await _reply(reader, "250")
        await _command(reader, writer, "QUIT", "221")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def run_load(args: argparse.Namespace) -> Outcome:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    outcome = Outcome()
    next_number = 0
    deadline = time.monotonic() + args.timeout

    async def worker() -> None:
        nonlocal next_number
        while next_number < args.messages and time.monotonic() < deadline:
            number = next_number
            next_number += 1
            body = message_body(args.size, args.sender, args.recipient, number)
            try:
                await asyncio.wait_for(
                    session(args.host, args.port, ctx, args.user, args.password,
                            args.sender, args.recipient, body),
                    max(deadline - time.monotonic(), 0.1))
                outcome.completed += 1
            except (SmtpError, OSError, ssl.SSLError, TimeoutError) as exc:
                outcome.failed += 1
                if not outcome.first_error:
                    outcome.first_error = f"session {number}: {type(exc).__name__}: {exc}"

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(min(args.sessions, args.messages))))
    outcome.seconds = time.monotonic() - t0
    outcome.conn_per_s = outcome.completed / outcome.seconds if outcome.seconds else 0.0
    if outcome.completed + outcome.failed < args.messages and not outcome.first_error:
        outcome.first_error = f"time limit of {args.timeout:g}s reached"
    return outcome


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--sender", default="sender@example.com")
    p.add_argument("--recipient", default="benchuser@example.com")
    p.add_argument("--messages", "-m", type=int, default=500, help="sessions in all")
    p.add_argument("--sessions", "-s", type=int, default=10, help="sessions in parallel")
    p.add_argument("--size", "-l", type=int, default=1024, help="message size in bytes")
    p.add_argument("--timeout", type=float, default=120.0, help="time limit for the whole run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    outcome = asyncio.run(run_load(args))
    print(json.dumps(asdict(outcome)))
    return 0 if outcome.failed == 0 and outcome.completed == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
