"""smtpd.policy_client: Postfix's policy delegation protocol against a real local server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from postier.smtpd.policy_client import (
    PolicyClient,
    PolicyServiceSettings,
    PolicyUnavailable,
    encode_request,
    parse_answer,
)


def test_request_and_answer_format() -> None:
    assert encode_request([("request", "smtpd_access_policy"), ("sender", "a\nb")]) == (
        b"request=smtpd_access_policy\nsender=a b\n\n")
    assert parse_answer(["foo=bar", "action=REJECT go away"]) == "REJECT go away"
    with pytest.raises(PolicyUnavailable):
        parse_answer(["foo=bar"])


Handler = Callable[[dict[str, str], int], str | None]


class Served:
    """The test server: its port, connections so far, and ``stop()``."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.sleep(0.01)


async def serve(handler: Handler) -> tuple[Served, int, list[int]]:
    """A server answering handler(request, connection number); None: never answer."""
    connections: list[int] = []
    served = Served()

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.writers.append(writer)
        current = asyncio.current_task()
        assert current is not None
        served.tasks.append(current)  # type: ignore[arg-type]
        connections.append(len(connections))
        number = connections[-1]
        request: dict[str, str] = {}
        while line := await reader.readline():
            text = line.decode().rstrip("\n")
            if text:
                name, _, value = text.partition("=")
                request[name] = value
                continue
            action = handler(request, number)
            request = {}
            if action is None:
                await asyncio.sleep(30)
                return
            await asyncio.sleep(0)
            writer.write(f"action={action}\n\n".encode())
            await writer.drain()
        writer.close()

    served.server = await asyncio.start_server(one, "127.0.0.1", 0)
    port = served.server.sockets[0].getsockname()[1]
    return served, port, connections


def test_connection_is_reused_up_to_request_limit() -> None:
    async def go() -> None:
        server, port, conns = await serve(lambda req, n: f"DUNNO {req['n']} on {n}")
        client = PolicyClient(f"inet:127.0.0.1:{port}", PolicyServiceSettings(request_limit=2))
        got = [await client.ask([("n", str(i))]) for i in range(3)]
        assert got == ["DUNNO 0 on 0", "DUNNO 1 on 0", "DUNNO 2 on 1"]
        assert len(conns) == 2
        client.close()
        await server.stop()
    asyncio.run(go())


def test_max_idle_opens_a_new_connection() -> None:
    async def go() -> None:
        server, port, conns = await serve(lambda req, n: f"OK {n}")
        now = [0.0]
        client = PolicyClient(f"inet:127.0.0.1:{port}", PolicyServiceSettings(max_idle=10),
                              clock=lambda: now[0])
        assert await client.ask([]) == "OK 0"
        now[0] = 5
        assert await client.ask([]) == "OK 0"
        now[0] = 20
        assert await client.ask([]) == "OK 1"
        assert len(conns) == 2
        client.close()
        await server.stop()
    asyncio.run(go())


def test_timeout_then_retry_then_unavailable() -> None:
    async def go() -> None:
        # The first connection never answers; the retry (a new connection) does.
        server, port, conns = await serve(lambda req, n: None if n == 0 else "DUNNO")
        settings = PolicyServiceSettings(timeout=0.2, try_limit=2, retry_delay=0.01)
        client = PolicyClient(f"inet:127.0.0.1:{port}", settings)
        assert await client.ask([]) == "DUNNO"
        assert len(conns) == 2
        client.close()
        await server.stop()
        # Nobody listening: every try fails, the caller gets PolicyUnavailable.
        lone = PolicyClient(f"inet:127.0.0.1:{port}", settings)
        with pytest.raises(PolicyUnavailable, match="problem talking to server"):
            await lone.ask([])
    asyncio.run(go())


def test_unix_socket_relative_to_the_queue_directory(tmp_path: object) -> None:
    async def go() -> None:
        import pathlib
        base = pathlib.Path(str(tmp_path))
        (base / "private").mkdir()

        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while (await reader.readline()).strip():
                pass
            writer.write(b"action=REJECT unix\n\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(one, str(base / "private" / "policy"))
        client = PolicyClient("unix:private/policy", PolicyServiceSettings(), str(base))
        assert await client.ask([("request", "smtpd_access_policy")]) == "REJECT unix"
        client.close()
        server.close()
        await server.wait_closed()
    asyncio.run(go())
