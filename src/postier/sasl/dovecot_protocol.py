"""Dovecot's authentication client protocol, version 1.2: lines in, requests out (pure).

Follows Dovecot's "Authentication Protocol" (doc/auth-protocol.txt: VERSION, CPID,
MECH, SPID, CUID, COOKIE, DONE; AUTH, CONT, CANCEL; OK, CONT, FAIL) and Postfix's
xsasl_dovecot_server.c behaviour (``service=smtp``, ``nologin``, ``lip``/``rip``,
``secured``; ``FAIL … temp`` or ``code=temp_fail`` is a temporary failure; an ``OK``
that carries ``nologin`` or ``proxy`` does not let the client in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from postier.sasl.api import ClientInfo, Status, Step
from postier.sasl.mechanisms import Mechanism

MAJOR_VERSION = 1
MINOR_VERSION = 2


class ProtocolError(ValueError):
    """The server said something this client does not understand."""


def escape(value: str) -> str:
    """Dovecot's tab-escaping: ``\\x01`` ``\\t`` ``\\r`` ``\\n`` become ``\\x01`` + 1/t/r/n."""
    return (value.replace("\x01", "\x011").replace("\t", "\x01t")
            .replace("\r", "\x01r").replace("\n", "\x01n"))


def unescape(value: str) -> str:
    """The inverse of ``escape``; an unknown escape keeps its character."""
    if "\x01" not in value:
        return value
    out, it = [], iter(value)
    table = {"1": "\x01", "t": "\t", "r": "\r", "n": "\n"}
    for ch in it:
        if ch == "\x01":
            nxt = next(it, "")
            out.append(table.get(nxt, nxt))
        else:
            out.append(ch)
    return "".join(out)


def hello(pid: int) -> bytes:
    """What the client sends first: ``VERSION\\t1\\t2`` and ``CPID\\tPID``."""
    return f"VERSION\t{MAJOR_VERSION}\t{MINOR_VERSION}\nCPID\t{pid}\n".encode()


@dataclass
class Handshake:
    """The server's handshake, fed line by line until ``done``."""

    mechanisms: list[Mechanism] = field(default_factory=list)
    version_seen: bool = False
    done: bool = False

    def feed(self, line: str) -> None:
        """One handshake line (without its LF). Raises ProtocolError on a major version
        other than 1 or a line before VERSION."""
        words = line.split("\t")
        kind = words[0]
        if kind == "VERSION":
            if len(words) < 2 or words[1] != str(MAJOR_VERSION):
                raise ProtocolError(f"unsupported authentication protocol version: {line!r}")
            self.version_seen = True
        elif not self.version_seen:
            raise ProtocolError(f"authentication protocol: expected VERSION, got {line[:80]!r}")
        elif kind == "MECH" and len(words) >= 2:
            self.mechanisms.append(Mechanism(unescape(words[1]).upper(),
                                             frozenset(w.lower() for w in words[2:])))
        elif kind == "DONE":
            self.done = True
        # SPID, CUID, COOKIE and anything newer: not needed by an SMTP server.


def auth_request(request_id: int, mechanism: str, client: ClientInfo,
                 initial: str | None) -> bytes:
    """An ``AUTH`` line; ``initial`` is base64 (``=`` means empty) or None."""
    parts = ["AUTH", str(request_id), escape(mechanism), f"service={escape(client.service)}",
             "nologin"]
    if client.local_ip:
        parts.append(f"lip={escape(client.local_ip)}")
    if client.remote_ip:
        parts.append(f"rip={escape(client.remote_ip)}")
    if client.local_port:
        parts.append(f"lport={client.local_port}")
    if client.remote_port:
        parts.append(f"rport={client.remote_port}")
    if client.secured:
        parts.append("secured")
    if initial is not None:
        parts.append(f"resp={escape('' if initial == '=' else initial)}")
    return ("\t".join(parts) + "\n").encode("utf-8", "surrogateescape")


def cont_request(request_id: int, response: str) -> bytes:
    return f"CONT\t{request_id}\t{escape(response)}\n".encode("utf-8", "surrogateescape")


def cancel_request(request_id: int) -> bytes:
    return f"CANCEL\t{request_id}\n".encode()


def _params(words: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in words:
        key, eq, value = word.partition("=")
        out[key] = unescape(value) if eq else ""
    return out


def parse_reply(line: str) -> tuple[int, Step]:
    """``OK``/``CONT``/``FAIL`` for request ID -> (ID, Step). Raises ProtocolError."""
    words = line.split("\t")
    if len(words) < 2 or not words[1].isdigit():
        raise ProtocolError(f"authentication reply without an ID: {line[:80]!r}")
    kind, request_id = words[0], int(words[1])
    if kind == "CONT":
        return request_id, Step(Status.MORE, challenge=unescape(words[2]) if len(words) > 2 else "")
    params = _params(words[2:])
    user = params.get("user")
    reason = params.get("reason", "")
    if kind == "OK":
        if "nologin" in params or "proxy" in params:
            return request_id, Step(Status.FAIL, username=user, reason=reason)
        if not user:
            raise ProtocolError("authentication OK without a user name")
        return request_id, Step(Status.OK, username=user)
    if kind == "FAIL":
        temp = "temp" in params or params.get("code") == "temp_fail"
        return request_id, Step(Status.TEMP if temp else Status.FAIL, username=user, reason=reason)
    raise ProtocolError(f"unknown authentication reply: {line[:80]!r}")
