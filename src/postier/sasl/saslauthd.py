"""Cyrus back end: PLAIN and LOGIN checked by ``saslauthd`` over its UNIX socket (asyncio).

Follows Cyrus SASL's saslauthd protocol (saslauthd(8): four counted strings — login,
password, service, realm — each a 2-byte big-endian length then the bytes; one counted
answer, ``OK…`` or ``NO…``; one request per connection), RFC 4616 (PLAIN: authzid NUL
authcid NUL passwd) and the LOGIN mechanism as Cyrus and Postfix speak it
(``Username:`` then ``Password:`` challenges). Reasons are Cyrus's
``sasl_errstring`` texts, as Postfix shows them.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Sequence

from postier.sasl.api import ClientInfo, Status, Step, decode_base64
from postier.sasl.cyrusconf import CyrusConf
from postier.sasl.mechanisms import KNOWN_FLAGS, Mechanism

DEFAULT_TIMEOUT = 30.0
MAX_FIELD = 65535
BADAUTH = "authentication failure"  # Cyrus SASL_BADAUTH
NOAUTHZ = "authorization failure"  # Cyrus SASL_NOAUTHZ
BADPROT = "bad protocol / cancel"  # Cyrus SASL_BADPROT
USERNAME_PROMPT = base64.b64encode(b"Username:").decode()
PASSWORD_PROMPT = base64.b64encode(b"Password:").decode()


def request(login: bytes, password: bytes, service: bytes, realm: bytes) -> bytes:
    """The request bytes. Raises ValueError when a field is longer than 65535 bytes."""
    out = bytearray()
    for value in (login, password, service, realm):
        if len(value) > MAX_FIELD:
            raise ValueError("saslauthd request field too long")
        out += struct.pack("!H", len(value)) + value
    return bytes(out)


def parse_plain(data: bytes) -> tuple[str, str, bytes] | None:
    """RFC 4616 ``authzid NUL authcid NUL passwd`` -> (authzid, authcid, password), or None."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        return None
    return (parts[0].decode("utf-8", "surrogateescape"),
            parts[1].decode("utf-8", "surrogateescape"), parts[2])


class SaslauthdClient:
    """``Authenticator`` for smtpd_sasl_type = cyrus with ``pwcheck_method: saslauthd``."""

    def __init__(self, conf: CyrusConf, *, realm: str = "",
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.conf = conf
        self.realm = realm
        self.timeout = timeout

    async def mechanisms(self) -> Sequence[Mechanism]:
        if not self.conf.usable:
            return []
        return [Mechanism(name, KNOWN_FLAGS.get(name, frozenset()))
                for name in self.conf.mechanisms()]

    def conversation(self, mechanism: str, client: ClientInfo) -> SaslauthdConversation:
        return SaslauthdConversation(self, mechanism, client)

    async def close(self) -> None:
        """Nothing stays open: saslauthd takes one request per connection."""

    async def verify(self, login: str, password: bytes, service: str) -> Step:
        """Ask saslauthd; OK, FAIL (``NO``), or TEMP (unreachable, timeout, nonsense)."""
        user = login.encode("utf-8", "surrogateescape")
        try:
            data = request(user, password, service.encode(), self.realm.encode())
        except ValueError:
            return Step(Status.FAIL, username=login, reason=BADAUTH)
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_unix_connection(self.conf.saslauthd_path)
                try:
                    writer.write(data)
                    await writer.drain()
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    answer = await reader.readexactly(size)
                finally:
                    writer.transport.abort()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return Step(Status.TEMP, username=login)
        if answer.startswith(b"OK"):
            return Step(Status.OK, username=login)
        return Step(Status.FAIL, username=login, reason=BADAUTH)


class SaslauthdConversation:
    """PLAIN or LOGIN, the password checked by saslauthd."""

    def __init__(self, client: SaslauthdClient, mechanism: str, info: ClientInfo) -> None:
        self.client = client
        self.mechanism = mechanism
        self.info = info
        self.username: str | None = None
        self.done = False

    async def start(self, initial: str | None) -> Step:
        if self.mechanism not in self.client.conf.mechanisms() or not self.client.conf.usable:
            self.done = True
            return Step(Status.FAIL, reason="Invalid authentication mechanism")
        if initial is None:
            if self.mechanism == "PLAIN":
                return Step(Status.MORE, challenge="")
            return Step(Status.MORE, challenge=USERNAME_PROMPT)
        return await self.respond(initial)

    async def respond(self, response: str) -> Step:
        if self.done:
            return Step(Status.FAIL, reason=BADPROT)
        data = decode_base64(response)
        if data is None:
            self.done = True
            return Step(Status.FAIL, reason=BADPROT)
        if self.mechanism == "PLAIN":
            self.done = True
            parsed = parse_plain(data)
            if parsed is None:
                return Step(Status.FAIL, reason=BADPROT)
            authzid, authcid, password = parsed
            if authzid and authzid != authcid:
                return Step(Status.FAIL, username=authcid, reason=NOAUTHZ)
            return await self.client.verify(authcid, password, self.info.service)
        if self.username is None:  # LOGIN, first answer: the user name
            if not data or b"\0" in data:
                self.done = True
                return Step(Status.FAIL, reason=BADPROT)
            self.username = data.decode("utf-8", "surrogateescape")
            return Step(Status.MORE, challenge=PASSWORD_PROMPT)
        self.done = True
        if not data:
            return Step(Status.FAIL, username=self.username, reason=BADAUTH)
        return await self.client.verify(self.username, data, self.info.service)

    def cancel(self) -> None:
        self.done = True
