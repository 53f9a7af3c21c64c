"""CHUNKING/BDAT (RFC 3030) against a running postier, delivered to an mbox: two and ten
chunks pipelined, a chunk past message_size_limit, BDAT then DATA in one transaction;
replies as Postfix 3.7 gives them."""

from __future__ import annotations

import re
import socket

import pytest

from .conftest import ROOT, Instance, ensure_user

pytestmark = pytest.mark.integration


class Pipe:
    """A client that writes raw bytes and reads N replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")

    def replies(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            lines = []
            while True:
                raw = self.file.readline()
                if not raw:
                    raise ConnectionError(f"closed after {out + lines}")
                text = raw.decode().rstrip("\r\n")
                lines.append(text)
                if text[3:4] != "-":
                    break
            out.append("\n".join(lines))
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def bdat(chunks: list[bytes]) -> bytes:
    return b"".join(b"BDAT %d%s\r\n%s" % (len(c), b" LAST" if i == len(chunks) - 1 else b"", c)
                    for i, c in enumerate(chunks))


def started(make_instance, tutorial_main_cf: str, extra: str = "") -> tuple[Instance, Pipe]:
    ensure_user("tintin")
    inst: Instance = make_instance(tutorial_main_cf, "mailbox_command =\n" + extra)
    done = inst.start()
    assert done.returncode == 0, done.stderr + inst.log()
    client = Pipe(inst.port)
    assert client.replies(1)[0].startswith("220 ")
    client.send(b"EHLO milou.example.net\r\n")
    ehlo = client.replies(1)[0]
    assert "250-CHUNKING" in ehlo or "250 CHUNKING" in ehlo
    return inst, client


ENVELOPE = b"MAIL FROM:<tournesol@example.net>\r\nRCPT TO:<tintin@example.com>\r\n"


@pytest.mark.skipif(not ROOT, reason="delivers to user tintin, which only root can create")
@pytest.mark.parametrize("n", [2, 10])
def test_pipelined_chunks_delivered_as_sent(make_instance, tutorial_main_cf: str, n: int) -> None:
    inst, client = started(make_instance, tutorial_main_cf)
    body = [b"Subject: chunks %d\r\n\r\n" % n] + [b"part %d.\r\n..dots stay\r\n" % i
                                                   for i in range(n - 1)]
    client.send(ENVELOPE + bdat(body) + b"QUIT\r\n")
    got = client.replies(n + 3)
    client.close()
    assert got[:2] == ["250 2.1.0 Ok", "250 2.1.5 Ok"]
    assert got[2:n + 1] == [f"250 2.0.0 Ok: {len(c)} bytes" for c in body[:-1]]
    m = re.fullmatch(r"250 2\.0\.0 Ok: (\d+) bytes queued as ([0-9A-F]+)", got[n + 1])
    assert m and int(m.group(1)) == sum(map(len, body)), got
    assert got[-1].startswith("221 ")
    inst.wait_log(f"{m.group(2)}: removed")
    raw = inst.mailbox("tintin").read_bytes()
    assert b"Subject: chunks %d\n" % n in raw
    assert b"".join(body[1:]).replace(b"\r\n", b"\n") in raw  # no dot handling
    assert b"\r\n" not in raw
    assert re.search(rb"by tintin\.example\.com \(Postfix\) with ESMTP id " + m.group(2).encode(),
                     raw)
    assert f"bdat={n}" in inst.wait_log("disconnect from")


@pytest.mark.skipif(not ROOT, reason="needs the user tintin")
def test_chunk_past_message_size_limit(make_instance, tutorial_main_cf: str) -> None:
    inst, client = started(make_instance, tutorial_main_cf, "message_size_limit = 2000\n")
    client.send(ENVELOPE + bdat([b"a" * 1499 + b"\n", b"b" * 1500, b"c" * 10]) + b"NOOP\r\n")
    got = client.replies(6)
    client.close()
    assert got[2:] == ["250 2.0.0 Ok: 1500 bytes", "552 5.3.4 Chunk exceeds message size limit",
                       "551 5.0.0 Discarded 10 bytes after earlier error", "250 2.0.0 Ok"]
    log = inst.wait_log("disconnect from")
    assert re.search(r"[0-9A-F]+: BDAT request from localhost\[127\.0\.0\.1\] exceeds message "
                     r"size limit", log)
    assert "queued as" not in log and ": removed" not in log


@pytest.mark.skipif(not ROOT, reason="needs the user tintin")
def test_bdat_then_data(make_instance, tutorial_main_cf: str) -> None:
    inst, client = started(make_instance, tutorial_main_cf)
    client.send(ENVELOPE + b"BDAT 5\r\nhelloDATA\r\nBDAT 0 LAST\r\n")
    got = client.replies(5)
    client.close()
    assert got[2:4] == ["250 2.0.0 Ok: 5 bytes", "503 5.5.1 Error: DATA after BDAT"]
    m = re.fullmatch(r"250 2\.0\.0 Ok: 7 bytes queued as ([0-9A-F]+)", got[4])
    assert m, got
    inst.wait_log(f"{m.group(1)}: removed")
    assert b"\nhello\n" in inst.mailbox("tintin").read_bytes()


@pytest.mark.skipif(not ROOT, reason="needs the user tintin")
def test_smtputf8_advertised_and_accepted_on_mail(make_instance, tutorial_main_cf: str) -> None:
    inst, client = started(make_instance, tutorial_main_cf)
    client.send("MAIL FROM:<jérôme@example.net> SMTPUTF8\r\n".encode()
                + b"RCPT TO:<tintin@example.com>\r\n" + bdat([b"Subject: utf8\r\n"]))
    got = client.replies(3)
    client.close()
    assert got[0] == "250 2.1.0 Ok"
    m = re.fullmatch(r"250 2\.0\.0 Ok: \d+ bytes queued as ([0-9A-F]+)", got[2])
    assert m, got
    inst.wait_log(f"{m.group(1)}: removed")
    raw = inst.mailbox("tintin").read_bytes()
    assert b"Subject: utf8\n" in raw
    assert "jérôme".encode() in raw.split(b"\n", 1)[0]


@pytest.mark.skipif(not ROOT, reason="needs the user tintin")
def test_smtputf8_local_part_kept_unquoted(make_instance, tutorial_main_cf: str) -> None:
    inst, client = started(make_instance, tutorial_main_cf)
    client.send("MAIL FROM:<jérôme@example.net> SMTPUTF8\r\n".encode()
                + b"RCPT TO:<tintin@example.com>\r\n" + bdat([b"Subject: utf8\r\n"]))
    got = client.replies(3)
    client.close()
    inst.wait_log(f"{got[2].rsplit(' ', 1)[1]}: removed")
    assert "Return-Path: <jérôme@example.net>".encode() in inst.mailbox("tintin").read_bytes()
