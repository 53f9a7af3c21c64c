"""A small policy server speaking Postfix's policy delegation protocol, for the tests.

Follows SMTPD_POLICY_README: it reads ``name=value`` lines up to an empty line and answers
``action=…`` and an empty line, on one connection as long as the client keeps it. The
action depends on the recipient's local part: ``reject…`` -> ``REJECT go away``,
``defer…`` -> ``DEFER_IF_PERMIT not now``, ``hold…`` -> ``HOLD``, ``slow…`` -> no answer
(the client's timeout), anything else -> ``DUNNO``. Each request is appended, as one
line of ``name=value`` joined by tabs, to the file named by the second argument.
Usage: ``python3 policy_server.py PORT LOGFILE`` (listens on 127.0.0.1:PORT).
"""

from __future__ import annotations

import asyncio
import sys


def action_for(request: dict[str, str]) -> str | None:
    """The answer to one request (None: never answer)."""
    local = request.get("recipient", "").partition("@")[0].lower()
    if local.startswith("reject"):
        return "REJECT go away"
    if local.startswith("defer"):
        return "DEFER_IF_PERMIT not now"
    if local.startswith("hold"):
        return "HOLD"
    if local.startswith("slow"):
        return None
    return "DUNNO"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: str) -> None:
    request: dict[str, str] = {}
    while line := await reader.readline():
        text = line.decode().rstrip("\r\n")
        if text:
            name, _, value = text.partition("=")
            request[name] = value
            continue
        with open(log, "a") as f:
            f.write("\t".join(f"{k}={v}" for k, v in request.items()) + "\n")
        action = action_for(request)
        request = {}
        if action is None:
            await asyncio.sleep(3600)
            return
        writer.write(f"action={action}\n\n".encode())
        await writer.drain()
    writer.close()


async def main(port: int, log: str) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, log), "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
