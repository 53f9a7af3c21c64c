"""The interface every SASL back end gives smtpd: conversations that end OK, FAIL or TEMP.

Follows Postfix's xsasl(3) (``xsasl_server_first``/``_next``: AUTH_DONE, AUTH_MORE,
AUTH_FAIL, AUTH_TEMP) and RFC 4954 (base64 challenges and responses).
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from postier.sasl.mechanisms import Mechanism


class Status(enum.Enum):
    """Where a conversation stands after a step."""

    MORE = "more"  # send ``challenge`` in a 334, then step again with the client's line
    OK = "ok"  # authenticated as ``username``
    FAIL = "fail"  # bad credentials or bad input: 535
    TEMP = "temp"  # the server could not decide (unreachable, timeout, temp_fail): 454


@dataclass(frozen=True)
class Step:
    """One answer of the back end. ``challenge``: base64 text (MORE). ``username``: the
    login (OK; on FAIL when known). ``reason``: text for the reply and the log, ``""``
    when the back end gave none (Postfix then says ``(reason unavailable)``)."""

    status: Status
    challenge: str = ""
    username: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class ClientInfo:
    """What the back end is told about the SMTP client (Dovecot's lip/rip/lport/rport,
    ``secured`` under TLS)."""

    remote_ip: str
    remote_port: int = 0
    local_ip: str = ""
    local_port: int = 0
    secured: bool = False
    service: str = "smtp"


class Unavailable(Exception):
    """The authentication server cannot be reached or answered nonsense (environment)."""


class Conversation(Protocol):
    """One AUTH exchange; ``start`` once, then ``respond`` while the status is MORE."""

    async def start(self, initial: str | None) -> Step:
        """Begin with the AUTH command's initial response (base64, ``=`` for empty) or None."""
        ...

    async def respond(self, response: str) -> Step:
        """The client's base64 line after a 334 (``*`` is handled by the caller)."""
        ...

    def cancel(self) -> None:
        """Abandon the exchange (client aborted, session ended); never raises."""
        ...


class Authenticator(Protocol):
    """A SASL back end shared by the sessions of one process."""

    async def mechanisms(self) -> Sequence[Mechanism]:
        """The mechanisms the server offers (raises ``Unavailable``)."""
        ...

    def conversation(self, mechanism: str, client: ClientInfo) -> Conversation:
        """A new exchange for ``mechanism`` (upper case)."""
        ...

    async def close(self) -> None: ...


# RFC 4648 base64, with its padding; "=" alone is RFC 4954's empty initial response.
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def is_valid_base64(text: str) -> bool:
    """Is ``text`` well-formed base64 (padding required, no white space)?"""
    return bool(_BASE64.fullmatch(text))


def decode_base64(text: str) -> bytes | None:
    """The bytes ``text`` encodes, ``b""`` for ``=``, or None when it is not base64."""
    if text == "=":
        return b""
    if not is_valid_base64(text):
        return None
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:
        return None
