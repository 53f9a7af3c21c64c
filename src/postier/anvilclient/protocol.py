"""The anvil request protocol: requests and answers as attribute lists, pure (no I/O).

Follows anvil(8) and Postfix's ``attr_print_plain``/``attr_scan_plain`` (the "plain"
attribute encoding): a request or an answer is one or more ``name=value`` lines ended
by an empty line. A request names what happened (``request=connect``) and to whom
(``ident=SERVICE:ADDRESS``); the answer carries ``status=0`` (ANVIL_STAT_OK) or ``-1``
(ANVIL_STAT_FAIL) and the counts the request asks for. Requests and answers are
Postfix's own names: ``connect`` (answer ``count``, ``rate``), ``disconnect``,
``message``, ``recipient``, ``newtls``, ``newtls_status``, ``auth`` (answer ``rate``),
``lookup`` (answer ``count``, ``rate``, ``mail``, ``rcpt``, ``newtls``, ``auth``).
A client sends requests one after the other on one stream and reads the answers in
the same order (pipelined).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The longest attribute line accepted; a longer one is a protocol error.
MAX_LINE = 4096
#: The most attributes in one list.
MAX_ATTRS = 32

STAT_OK = 0
STAT_FAIL = -1


class Request(enum.Enum):
    """The events smtpd reports (anvil(8) "PROTOCOL")."""

    CONNECT = "connect"
    DISCONNECT = "disconnect"
    MESSAGE = "message"
    RECIPIENT = "recipient"
    NEWTLS = "newtls"
    NEWTLS_STATUS = "newtls_status"
    AUTH = "auth"
    LOOKUP = "lookup"


class ProtocolError(ValueError):
    """Bytes that are not an attribute list, or a request that is not one of ours."""


def ident(service: str, address: str) -> str:
    """The key anvil counts under: ``SERVICE:ADDRESS`` (``smtp:192.0.2.1``), as Postfix."""
    return f"{service}:{address}"


def encode(attrs: dict[str, str | int]) -> bytes:
    """An attribute list as bytes: ``name=value`` lines and the empty line.

    Raises ProtocolError for a name or value that would break the framing.
    """
    out = []
    for name, value in attrs.items():
        text = str(value)
        if not name or "=" in name or "\n" in name or "\n" in text:
            raise ProtocolError(f"attribute {name!r} cannot be encoded")
        out.append(f"{name}={text}\n")
    out.append("\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def encode_request(request: Request, key: str) -> bytes:
    """``request=NAME``, ``ident=KEY``."""
    return encode({"request": request.value, "ident": key})


class Reader:
    """Splits a byte stream into attribute lists; ``feed(data) -> [dict, ...]``.

    Raises ProtocolError on a line longer than MAX_LINE, a line without ``=``, or a
    list of more than MAX_ATTRS attributes (the stream is then unusable).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._attrs: dict[str, str] = {}

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buffer += data
        done: list[dict[str, str]] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
                return done
            line = bytes(self._buffer[:end]).decode("utf-8", "surrogateescape")
            del self._buffer[:end + 1]
            if end > MAX_LINE:
                raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
            if not line:
                done.append(self._attrs)
                self._attrs = {}
                continue
            name, sep, value = line.partition("=")
            if not sep or not name:
                raise ProtocolError(f"not an attribute: {line[:100]!r}")
            if len(self._attrs) >= MAX_ATTRS:
                raise ProtocolError(f"more than {MAX_ATTRS} attributes")
            self._attrs[name] = value


def decode_request(attrs: dict[str, str]) -> tuple[Request, str]:
    """(request, ident) from a request's attributes. Raises ProtocolError."""
    name = attrs.get("request", "")
    try:
        request = Request(name)
    except ValueError:
        raise ProtocolError(f'unrecognized request: "{name}"') from None
    key = attrs.get("ident")
    if not key:
        raise ProtocolError(f"request {name} without ident")
    return request, key


@dataclass(frozen=True)
class Answer:
    """anvil's answer: ``status`` (STAT_OK or STAT_FAIL) and the counts it carried
    (0 when absent): ``count`` simultaneous connections, the rates per time unit."""

    status: int
    count: int = 0
    rate: int = 0
    mail: int = 0
    rcpt: int = 0
    newtls: int = 0
    auth: int = 0

    @property
    def ok(self) -> bool:
        return self.status == STAT_OK

    @classmethod
    def decode(cls, attrs: dict[str, str]) -> Answer:
        """Raises ProtocolError when a value is not an integer or status is missing."""
        try:
            values = {name: int(attrs[name]) for name in
                      ("status", "count", "rate", "mail", "rcpt", "newtls", "auth")
                      if name in attrs}
        except ValueError:
            raise ProtocolError(f"bad number in answer {attrs!r}") from None
        if "status" not in values:
            raise ProtocolError("answer without status")
        return cls(**values)

    def encode(self, request: Request) -> bytes:
        """The attributes Postfix's anvil sends for ``request``."""
        attrs: dict[str, str | int] = {"status": self.status}
        if self.status == STAT_OK:
            if request is Request.CONNECT:
                attrs |= {"count": self.count, "rate": self.rate}
            elif request is Request.LOOKUP:
                attrs |= {"count": self.count, "rate": self.rate, "mail": self.mail,
                          "rcpt": self.rcpt, "newtls": self.newtls, "auth": self.auth}
            elif request is not Request.DISCONNECT:
                attrs["rate"] = self.rate
        return encode(attrs)
