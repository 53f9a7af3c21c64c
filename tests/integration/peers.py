"""Remote mail hosts for the relaying tests: small scripted SMTP servers in a thread.

Each ``ScriptedSmtp`` listens on one loopback address (127.1.x.x, port 25 unless told),
records every connection and transaction (EHLO name, envelope, content) and answers as
its attributes say; the attributes may be changed while it runs (a remote that
recovers). ``mode`` makes it misbehave: ``drop_mid_data`` (closes after some content),
``garbage`` (greets with a line that is no reply), ``long_line`` (greets with a 10 MB
line), ``silent`` (never greets).
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Transaction:
    helo: str = ""
    sender: str = ""
    mail_params: str = ""
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        peer = self.server.peer
        with peer.lock:
            peer.connections += 1
        mode = peer.mode
        if mode == "silent":
            time.sleep(peer.silent_for)
            return
        if mode == "garbage":
            self.wfile.write(b"this is no smtp server\r\n")
            self.wfile.flush()
            time.sleep(1)
            return
        if mode == "long_line":
            self.wfile.write(b"220-" + b"x" * (10 * 1024 * 1024) + b"\r\n220 ok\r\n")
            self.wfile.flush()
            time.sleep(1)
            return
        self.reply(peer.greeting)
        helo = ""
        tx: Transaction | None = None
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb == "EHLO":
                helo = line[5:]
                keywords = peer.ehlo_keywords
                lines = [f"250-{peer.name}"] + [f"250-{k}" for k in keywords[:-1]]
                lines.append(f"250 {keywords[-1]}" if keywords else f"250 {peer.name}")
                if not keywords:
                    lines = [f"250 {peer.name}"]
                self.wfile.write("".join(x + "\r\n" for x in lines).encode())
                self.wfile.flush()
            elif verb == "HELO":
                helo = line[5:]
                self.reply(f"250 {peer.name}")
            elif verb == "MAIL":
                rest = line[10:]
                addr, _, params = rest.partition(">")
                tx = Transaction(helo=helo, sender=addr.lstrip("<"), mail_params=params.strip())
                self.reply(peer.mail_reply)
                if not peer.mail_reply.startswith("2"):
                    tx = None
            elif verb == "RCPT":
                addr = line[8:].split(">")[0].lstrip("<")
                answer = peer.rcpt(addr)
                if tx is not None and answer.startswith("2"):
                    tx.recipients.append(addr)
                self.reply(answer)
            elif verb == "DATA":
                if tx is None or not tx.recipients:
                    self.reply("554 5.5.1 Error: no valid recipients")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                lines_read = 0
                while True:
                    raw = self.rfile.readline(1 << 24)
                    if not raw:
                        return
                    if raw == b".\r\n":
                        break
                    lines_read += 1
                    if mode == "drop_mid_data" and lines_read >= 3:
                        return  # the connection drops in the middle of the content
                    data += raw[1:] if raw.startswith(b"..") else raw
                tx.data = bytes(data)
                answer = peer.data_end(tx)
                if answer.startswith("2"):
                    with peer.lock:
                        peer.transactions.append(tx)
                else:
                    with peer.lock:
                        peer.refused.append(tx)
                tx = None
                self.reply(answer)
            elif verb == "RSET":
                tx = None
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Error: command not recognized")


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    peer: ScriptedSmtp


class ScriptedSmtp:
    """A remote mail host on ``address:port``: ``start()``, ``stop()``, what it saw."""

    def __init__(self, address: str, port: int = 25, *, name: str = "sink.test",
                 ehlo_keywords: tuple[str, ...] = ("PIPELINING", "SIZE 10240000", "8BITMIME",
                                                   "ENHANCEDSTATUSCODES"),
                 mode: str = "") -> None:
        self.address = address
        self.port = port
        self.name = name
        self.ehlo_keywords = list(ehlo_keywords)
        self.mode = mode
        self.silent_for = 30.0
        self.greeting = f"220 {name} ESMTP"
        self.mail_reply = "250 2.1.0 Ok"
        self.rcpt: Callable[[str], str] = lambda addr: "250 2.1.5 Ok"
        self.data_end: Callable[[Transaction], str] = lambda tx: "250 2.0.0 Ok: queued as SINK1"
        self.transactions: list[Transaction] = []
        self.refused: list[Transaction] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._server: _Server | None = None

    def start(self) -> ScriptedSmtp:
        server = _Server((self.address, self.port), _Handler)
        server.peer = self
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ScriptedSmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, count: int = 1, timeout: float = 30.0) -> list[Transaction]:
        """Wait until ``count`` transactions were accepted; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.transactions) >= count:
                    return list(self.transactions)
            time.sleep(0.05)
        raise AssertionError(f"{self.address}: {len(self.transactions)} transaction(s), "
                             f"{count} awaited")


def refused_port(address: str, port: int = 25) -> None:
    """Assert that nothing listens on ``address:port`` (a remote host that is down)."""
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex((address, port)) != 0, f"{address}:{port} is listening"
