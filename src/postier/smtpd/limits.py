"""smtpd's client rate and concurrency limits: what it asks anvil, and what it answers.

Follows Postfix 3.7's smtpd(8) with anvil(8) (postconf(5): ``smtpd_client_*_limit``,
``smtpd_client_event_limit_exceptions``), whose replies and log lines were checked
side by side: at connect, before the greeting, ``421 4.7.0 HOST Error: too many
connections from ADDR`` (``warning: Connection concurrency limit exceeded: N from
NAME[ADDR] for service SERVICE``, or ``Connection rate limit exceeded``); at MAIL
``450 4.7.1 Error: too much mail from ADDR`` (``Message delivery request rate limit
exceeded``); at RCPT ``450 4.7.1 Error: too many recipients from ADDR`` (``Recipient
address rate limit exceeded``); at AUTH, before any other AUTH check, ``450 4.7.1
Error: too many AUTH commands from ADDR`` (``AUTH command rate limit exceeded``); a
STARTTLS once the new-TLS-session rate is exceeded ``454 4.7.0 Error: too many new TLS
sessions from NAME[ADDR]`` (``Refusing STARTTLS request from NAME[ADDR] for service
SERVICE``), and the session that exceeds it ``421 4.7.0 HOST Error: too many new TLS
sessions from NAME[ADDR]`` (``New TLS session rate limit exceeded``). Every event
counts, refused ones included. A client in ``smtpd_client_event_limit_exceptions``
(default ``$mynetworks``) is neither counted nor limited; nor is a client in
``smtpd_authorized_xclient_hosts`` (checked side by side: Postfix's smtpd reports
nothing about it to anvil, its connection included, while a client only in
``smtpd_authorized_xforward_hosts`` is limited as any other). After XCLIENT the session
is the new client's: its events are counted under its address unless it is itself
authorized or excepted (the connection, counted or not at connect, stays as it was).
When no limit is set, anvil is never asked; when anvil is unavailable, nothing is
limited.

``ClientLimits`` is one service's settings (built at start), ``SessionLimits`` one
session's questions; the decisions themselves are the pure ``verdict``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postier.anvilclient.client import AnvilClient
from postier.anvilclient.protocol import Request, ident
from postier.config.params import (
    SMTPD_CLIENT_AUTH_RATE_LIMIT,
    SMTPD_CLIENT_CONNECTION_COUNT_LIMIT,
    SMTPD_CLIENT_CONNECTION_RATE_LIMIT,
    SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
    SMTPD_CLIENT_MESSAGE_RATE_LIMIT,
    SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT,
    SMTPD_CLIENT_RECIPIENT_RATE_LIMIT,
)
from postier.config.settings import Config
from postier.rewrite.mynetworks import MyNetworks, looks_like_network, parse_network
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply
from postier.tables import TableOpenError
from postier.tables.base import Table, TableError

Warn = Callable[[str], None]


class ClientList:
    """A host list as Postfix's namadr lists: addresses, ``net/mask``, ``/file``,
    ``type:table`` (matched with the client's name, then its address) and host names
    (``.domain`` matches its subdomains); ``!`` negates; the first match wins."""

    def __init__(self, words: list[str], open_table: Callable[[str], Table],
                 read_file: Callable[[str], str],
                 param: str = SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name) -> None:
        """``param``: the list's parameter, named in its entries' errors."""
        self.entries: list[tuple[bool, MyNetworks | Table | str]] = []
        for word in words:  # already split as a list parameter ({ … } kept whole)
            text = word.lstrip("!")
            negated = (len(word) - len(text)) % 2 == 1  # each "!" in turn, as Postfix
            if not text:
                continue
            if _is_table(text):
                try:
                    self.entries.append((negated, open_table(text)))
                except (TableOpenError, ValueError):
                    self.entries.append((negated, MyNetworks.parse(
                        [text], open_table=open_table, strict=False,
                        param=param)))  # a bad entry
            elif _is_host_name(text):
                self.entries.append((negated, text.lower()))
            else:
                self.entries.append((negated, MyNetworks.parse(
                    [text], read_file=read_file, open_table=open_table, strict=False,
                    param=param)))

    def match(self, name: str, addr: str) -> bool:
        """Is the client NAME[ADDR] listed? A failing table or a bad entry: no."""
        name = name.lower()
        for negated, entry in self.entries:
            if isinstance(entry, str):
                found = (name == entry or (entry.startswith(".") and name.endswith(entry))) \
                    and name != "unknown"
            elif isinstance(entry, MyNetworks):
                found = entry.lookup(addr) is True
            else:
                try:
                    found = any(entry.lookup(key) is not None
                                for key in (name, addr) if key != "unknown")
                except TableError:
                    found = False
            if found:
                return not negated
        return False


def _is_table(text: str) -> bool:
    kind, colon, _ = text.partition(":")
    return bool(colon) and kind[:1].isalpha() and kind.replace("_", "").isalnum() \
        and not text.startswith("[")


def _is_host_name(text: str) -> bool:
    """A word that is neither an address, a network, a file nor a table."""
    if text.startswith(("/", "[")) or ":" in text or looks_like_network(text):
        return False
    try:
        parse_network(text)
    except ValueError:
        return True
    return False


@dataclass(frozen=True)
class Limits:
    """The limits of one service (0: none)."""

    connection_count: int = 0
    connection_rate: int = 0
    message_rate: int = 0
    recipient_rate: int = 0
    new_tls_session_rate: int = 0
    auth_rate: int = 0

    @classmethod
    def from_config(cls, cfg: Config) -> Limits:
        return cls(cfg[SMTPD_CLIENT_CONNECTION_COUNT_LIMIT],
                   cfg[SMTPD_CLIENT_CONNECTION_RATE_LIMIT],
                   cfg[SMTPD_CLIENT_MESSAGE_RATE_LIMIT],
                   cfg[SMTPD_CLIENT_RECIPIENT_RATE_LIMIT],
                   cfg[SMTPD_CLIENT_NEW_TLS_SESSION_RATE_LIMIT],
                   cfg[SMTPD_CLIENT_AUTH_RATE_LIMIT])

    @property
    def any(self) -> bool:
        """Is anvil asked at all (Postfix's smtpd creates its anvil client only then)?"""
        return any(v > 0 for v in (self.connection_count, self.connection_rate,
                                   self.message_rate, self.recipient_rate,
                                   self.new_tls_session_rate, self.auth_rate))


@dataclass(frozen=True)
class Verdict:
    """What to do about one event: the reply (None: go on) and the warning to log."""

    reply: Reply | None = None
    warning: str | None = None


def verdict(limits: Limits, request: Request, count: int, rate: int, *, hostname: str,
            addr: str, namaddr: str, service: str) -> Verdict:
    """The decision for anvil's answer (``count``, ``rate``) to ``request``, pure.

    ``request`` is CONNECT, MESSAGE, RECIPIENT, AUTH, NEWTLS_STATUS (before STARTTLS)
    or NEWTLS (after a handshake). For NEWTLS_STATUS the warning names no count, as
    Postfix's ``Refusing STARTTLS request``.
    """
    where = f"from {namaddr} for service {service}"
    if request is Request.CONNECT:
        if 0 < limits.connection_count < count:
            return Verdict(replies.client_too_many_connections(hostname, addr),
                           f"Connection concurrency limit exceeded: {count} {where}")
        if 0 < limits.connection_rate < rate:
            return Verdict(replies.client_too_many_connections(hostname, addr),
                           f"Connection rate limit exceeded: {rate} {where}")
        return Verdict()
    if request is Request.MESSAGE and 0 < limits.message_rate < rate:
        return Verdict(replies.client_too_much_mail(addr),
                       f"Message delivery request rate limit exceeded: {rate} {where}")
    if request is Request.RECIPIENT and 0 < limits.recipient_rate < rate:
        return Verdict(replies.client_too_many_recipients(addr),
                       f"Recipient address rate limit exceeded: {rate} {where}")
    if request is Request.AUTH and 0 < limits.auth_rate < rate:
        return Verdict(replies.client_too_many_auth(addr),
                       f"AUTH command rate limit exceeded: {rate} {where}")
    if request is Request.NEWTLS_STATUS and 0 < limits.new_tls_session_rate < rate:
        return Verdict(replies.client_too_many_tls_refused(namaddr),
                       f"Refusing STARTTLS request {where}")
    if request is Request.NEWTLS and 0 < limits.new_tls_session_rate < rate:
        return Verdict(replies.client_too_many_tls_sessions(hostname, namaddr),
                       f"New TLS session rate limit exceeded: {rate} {where}")
    return Verdict()


# Which limit makes an event worth reporting to anvil (CONNECT is always reported
# once anvil is used: the rates of a client are kept while it is connected).
_LIMIT_OF = {
    Request.MESSAGE: "message_rate",
    Request.RECIPIENT: "recipient_rate",
    Request.AUTH: "auth_rate",
    Request.NEWTLS: "new_tls_session_rate",
    Request.NEWTLS_STATUS: "new_tls_session_rate",
}


class ClientLimits:
    """One service's limits, exceptions and the process's anvil client."""

    def __init__(self, service: str, cfg: Config, anvil: AnvilClient, hostname: str,
                 mynetworks: MyNetworks, open_table: Callable[[str], Table],
                 read_file: Callable[[str], str]) -> None:
        """``mynetworks``: the service's, as computed (``mynetworks_style`` when the
        parameter is empty), which the default exceptions stand for."""
        self.service = service
        self.limits = Limits.from_config(cfg)
        self.anvil = anvil
        self.hostname = hostname
        self.exceptions: ClientList | MyNetworks
        if any(cfg.is_set(name) for name in (SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name,
                                             "smtpd_client_connection_limit_exceptions")):
            self.exceptions = ClientList(cfg[SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS],
                                         open_table, read_file)
        else:  # the default, $mynetworks: Postfix's computed value when mynetworks is empty
            self.exceptions = mynetworks

    def exempt(self, name: str, addr: str) -> bool:
        """Is NAME[ADDR] in smtpd_client_event_limit_exceptions?"""
        if isinstance(self.exceptions, MyNetworks):
            return self.exceptions.match(addr)
        return self.exceptions.match(name, addr)

    def session(self, name: str, addr: str, warn: Warn, *,
                xclient_authorized: bool = False) -> SessionLimits:
        """The questions of a session of NAME[ADDR]; ``xclient_authorized``: the client is
        in smtpd_authorized_xclient_hosts (then nothing is reported)."""
        return SessionLimits(self, name, addr, warn, xclient_authorized=xclient_authorized)


class SessionLimits:
    """One session's questions to anvil; each returns the reply to send instead of
    going on (None: go on), having logged Postfix's warning."""

    def __init__(self, limits: ClientLimits, name: str, addr: str, warn: Warn, *,
                 xclient_authorized: bool = False) -> None:
        self.of = limits
        self.name = name
        self.addr = addr
        self.warn = warn
        self.key = ident(limits.service, addr)
        self.active = (limits.limits.any and addr != "unknown" and not xclient_authorized
                       and not limits.exempt(name, addr))
        self.connected: str | None = None  # anvil counted a connect under this key

    def after_xclient(self, name: str, addr: str, *,
                      xclient_authorized: bool) -> SessionLimits:
        """The questions of the client XCLIENT made NAME[ADDR] (``xclient_authorized``:
        the new client is itself in smtpd_authorized_xclient_hosts); the connect
        counted at the start, if any, is still to be undone at the end."""
        moved = SessionLimits(self.of, name, addr, self.warn,
                              xclient_authorized=xclient_authorized)
        moved.connected = self.connected
        return moved

    async def ask(self, request: Request) -> Reply | None:
        """Report ``request`` (CONNECT, MESSAGE, RECIPIENT, AUTH, NEWTLS) or ask
        NEWTLS_STATUS; the reply that refuses it, or None."""
        if not self.active:
            return None
        field = _LIMIT_OF.get(request)
        if field is not None and getattr(self.of.limits, field) <= 0:
            return None
        answer = await self.of.anvil.ask(request, self.key)
        if answer is None or not answer.ok:
            return None
        if request is Request.CONNECT:
            self.connected = self.key
        decided = verdict(self.of.limits, request, answer.count, answer.rate,
                          hostname=self.of.hostname, addr=self.addr,
                          namaddr=f"{self.name}[{self.addr}]", service=self.of.service)
        if decided.warning is not None:
            self.warn(decided.warning)
        return decided.reply

    async def wrapper_allowed(self) -> bool:
        """smtps: may this client start one more TLS session (asked before the
        handshake)? When not, Postfix's ``Refusing TLS service request from NAME[ADDR]
        for service SERVICE`` is logged and the connection is to be dropped."""
        if not self.active or self.of.limits.new_tls_session_rate <= 0:
            return True
        answer = await self.of.anvil.ask(Request.NEWTLS_STATUS, self.key)
        if answer is None or not answer.ok \
                or answer.rate <= self.of.limits.new_tls_session_rate:
            return True
        self.warn(f"Refusing TLS service request from {self.name}[{self.addr}] "
                  f"for service {self.of.service}")
        return False

    async def disconnect(self) -> None:
        """The session ended: anvil's count goes down (only if it went up)."""
        if self.connected is not None:
            key, self.connected = self.connected, None
            await self.of.anvil.ask(Request.DISCONNECT, key)
