"""postier.sasl's asyncio clients against scripted Dovecot and saslauthd servers (UNIX sockets)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from postier.sasl.api import ClientInfo, Status
from postier.sasl.cyrusconf import CyrusConf
from postier.sasl.dovecot import DovecotClient, Endpoint, endpoint
from postier.sasl.saslauthd import SaslauthdClient

pytestmark = pytest.mark.integration

HANDSHAKE = (b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
             b"SPID\t1\nCUID\t1\nCOOKIE\tab\nDONE\n")
INFO = ClientInfo(remote_ip="192.0.2.7", remote_port=4000, local_ip="127.0.0.1", local_port=25)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


async def fake_dovecot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Users: alice/secret; PLAIN and LOGIN; "die" as a password drops the connection."""
    try:
        await _dovecot(reader, writer)
    finally:
        writer.transport.abort()


async def _dovecot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert (await reader.readline()).startswith(b"VERSION\t1\t")
    assert (await reader.readline()).startswith(b"CPID\t")
    writer.write(HANDSHAKE)
    pending: dict[str, list[str]] = {}
    while line := await reader.readline():
        words = line.decode().rstrip("\n").split("\t")
        if words[0] == "AUTH":
            rid, mech = words[1], words[2]
            assert "service=smtp" in words and "rip=192.0.2.7" in words
            resp = [w[5:] for w in words if w.startswith("resp=")]
            if mech == "PLAIN" and resp:
                user, password = _plain(resp[0])
            else:
                pending[rid] = [mech]
                writer.write(f"CONT\t{rid}\t\n".encode())
                continue
        elif words[0] == "CONT":
            rid = words[1]
            if rid not in pending:
                continue
            pending[rid].append(words[2])
            if pending[rid][0] == "PLAIN":
                user, password = _plain(words[2])
            elif len(pending[rid]) == 2:
                writer.write(f"CONT\t{rid}\tUGFzc3dvcmQ6\n".encode())
                continue
            else:
                import base64
                user = base64.b64decode(pending[rid][1]).decode()
                password = base64.b64decode(pending[rid][2]).decode()
        elif words[0] == "CANCEL":
            pending.pop(words[1], None)
            continue
        else:
            continue
        if password == "die":
            writer.transport.abort()
            return
        if password == "slow":
            continue
        if password == "temp":
            writer.write(f"FAIL\t{rid}\tuser={user}\tcode=temp_fail\n".encode())
        elif (user, password) == ("alice", "secret"):
            writer.write(f"OK\t{rid}\tuser={user}\n".encode())
        else:
            writer.write(f"FAIL\t{rid}\tuser={user}\n".encode())
        await writer.drain()


def _plain(b64: str) -> tuple[str, str]:
    import base64
    _, user, password = base64.b64decode(b64).decode().split("\0")
    return user, password


def b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


def test_endpoint() -> None:
    assert endpoint("private/auth", "/var/spool/postfix").path == "/var/spool/postfix/private/auth"
    assert endpoint("/run/dovecot/auth-client", "/q").path == "/run/dovecot/auth-client"
    assert endpoint("inet:127.0.0.1:12345", "/q") == Endpoint(
        "inet:127.0.0.1:12345", host="127.0.0.1", port=12345)
    with pytest.raises(ValueError):
        endpoint("inet:nowhere", "/q")


def test_dovecot_conversations_share_one_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "auth")
    connections = 0

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await fake_dovecot(reader, writer)

    async def main() -> None:
        server = await asyncio.start_unix_server(counted, path)
        log = Log()
        client = DovecotClient(Endpoint("private/auth", path=path), log, timeout=2)
        assert [m.name for m in await client.mechanisms()] == ["PLAIN", "LOGIN"]
        ok = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert (ok.status, ok.username) == (Status.OK, "alice")
        bad = await client.conversation("PLAIN", INFO).start(b64("\0alice\0wrong"))
        assert bad.status is Status.FAIL
        temp = await client.conversation("PLAIN", INFO).start(b64("\0alice\0temp"))
        assert temp.status is Status.TEMP
        login = client.conversation("LOGIN", INFO)
        assert (await login.start(None)).status is Status.MORE
        assert (await login.respond(b64("alice"))).challenge == "UGFzc3dvcmQ6"
        assert (await login.respond(b64("secret"))).status is Status.OK
        # two exchanges at once, answered in any order
        one, two = client.conversation("PLAIN", INFO), client.conversation("PLAIN", INFO)
        assert (await one.start(None)).status is Status.MORE
        assert (await two.start(None)).status is Status.MORE
        r2 = await two.respond(b64("\0alice\0wrong"))
        r1 = await one.respond(b64("\0alice\0secret"))
        assert (r1.status, r2.status) == (Status.OK, Status.FAIL)
        unknown = await client.conversation("CRAM-MD5", INFO).start(None)
        assert unknown.status is Status.FAIL and "mechanism" in unknown.reason
        assert connections == 1
        await client.close()
        server.close()

    run(main())


def test_dovecot_lost_missing_and_slow(tmp_path: Path) -> None:
    path = str(tmp_path / "auth")

    async def main() -> None:
        log = Log()
        client = DovecotClient(Endpoint("private/auth", path=path), log, timeout=0.5)
        missing = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert missing.status is Status.TEMP
        assert log.lines == ["SASL: Connect to Dovecot auth socket 'private/auth' failed: "
                             "No such file or directory"]
        server = await asyncio.start_unix_server(fake_dovecot, path)
        ok = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert ok.status is Status.OK  # connected once it was there
        dying = client.conversation("PLAIN", INFO)
        assert (await dying.start(None)).status is Status.MORE
        assert (await dying.respond(b64("\0alice\0die"))).status is Status.TEMP
        assert (await dying.respond(b64("\0alice\0secret"))).status is Status.TEMP
        again = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert again.status is Status.OK  # reconnected
        slow = await client.conversation("PLAIN", INFO).start(b64("\0alice\0slow"))
        assert slow.status is Status.TEMP and any("timeout" in x for x in log.lines)
        after = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert after.status is Status.OK
        await client.close()
        server.close()

    run(main())


def test_dovecot_garbage_handshake(tmp_path: Path) -> None:
    path = str(tmp_path / "auth")
    finished = asyncio.Event()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HELLO\tWORLD\n")
        await writer.drain()
        await reader.read()
        writer.transport.abort()
        finished.set()

    async def main() -> None:
        server = await asyncio.start_unix_server(garbage, path)
        log = Log()
        client = DovecotClient(Endpoint("private/auth", path=path), log, timeout=1)
        step = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert step.status is Status.TEMP and "expected VERSION" in log.lines[0]
        await client.close()
        await finished.wait()
        server.close()

    run(main())


def test_saslauthd(tmp_path: Path) -> None:
    path = str(tmp_path / "mux")
    seen: list[list[bytes]] = []

    async def saslauthd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fields = []
        for _ in range(4):
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            fields.append(await reader.readexactly(size))
        seen.append(fields)
        answer = b"OK" if fields[:2] == [b"alice", b"secret"] else b"NO authentication failed"
        writer.write(struct.pack("!H", len(answer)) + answer)
        await writer.drain()
        writer.close()

    async def main() -> None:
        conf = CyrusConf(file="smtpd.conf", mech_list=("PLAIN", "LOGIN"), saslauthd_path=path)
        client = SaslauthdClient(conf, realm="example.com", timeout=1)
        missing = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert missing.status is Status.TEMP
        server = await asyncio.start_unix_server(saslauthd, path)
        assert [m.name for m in await client.mechanisms()] == ["PLAIN", "LOGIN"]
        ok = await client.conversation("PLAIN", INFO).start(b64("\0alice\0secret"))
        assert (ok.status, ok.username) == (Status.OK, "alice")
        assert seen[-1] == [b"alice", b"secret", b"smtp", b"example.com"]
        bad = await client.conversation("PLAIN", INFO).start(b64("\0alice\0nope"))
        assert (bad.status, bad.reason) == (Status.FAIL, "authentication failure")
        proxy = await client.conversation("PLAIN", INFO).start(b64("boss\0alice\0secret"))
        assert proxy.status is Status.FAIL
        login = client.conversation("LOGIN", INFO)
        assert (await login.start(None)).challenge == "VXNlcm5hbWU6"
        assert (await login.respond(b64("alice"))).challenge == "UGFzc3dvcmQ6"
        assert (await login.respond(b64("secret"))).status is Status.OK
        plain = client.conversation("PLAIN", INFO)
        assert (await plain.start(None)) .challenge == ""
        assert (await plain.respond("!!")).status is Status.FAIL
        assert (await client.conversation("CRAM-MD5", INFO).start(None)).status is Status.FAIL
        server.close()

    run(main())
