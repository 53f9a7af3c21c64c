"""One SMTP or LMTP client connection: connect, greeting and EHLO, mail transactions, QUIT.

Follows Postfix smtp(8)/lmtp(8) and RFC 5321 (4.1, 4.3.2 sequencing, 4.5.3.2
timeouts), RFC 2920 (MAIL, every RCPT and DATA in one write when PIPELINING is
offered), RFC 1870 (SIZE: refused before MAIL when the server's limit is smaller),
RFC 6152 (BODY=8BITMIME), RFC 6531 (SMTPUTF8), RFC 3461 (NOTIFY, ORCPT, RET, ENVID passed
on when the server offers DSN) and RFC 2033 (LMTP: one reply per recipient after the
content). The asyncio shell around ``smtpproto.client.ClientConnection``: every read
and write goes through ``postier.stream`` with the timeout of the command awaited
(``smtp_*_timeout``); the peer's failures become statuses, never exceptions out of
``transaction``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from postier import stream
from postier.delivery.status import DeliveryStatus
from postier.smtp import auth, diagnostics
from postier.smtp.settings import SmtpSettings
from postier.smtpproto import events as ev
from postier.smtpproto.client import ClientConnection, ClientState
from postier.tls.client import ClientTlsLevel, ClientTlsPolicy, certificate_matches
from postier.tls.policy import TlsInfo

READ_SIZE = 65536


class SessionError(Exception):
    """The connection cannot be used (any more): ``status`` for every recipient not
    decided yet. ``try_next``: the failure came before any mail transaction, so another
    server of the destination may be tried."""

    def __init__(self, status: DeliveryStatus, *, try_next: bool) -> None:
        super().__init__(status.text)
        self.status = status
        self.try_next = try_next
        #: A TLS handshake failed at level may: try the same server without TLS.
        self.plain_retry = False


@dataclass(frozen=True)
class Recipient:
    """One recipient of a transaction: ``index`` in the queue file, ``address``, and its
    RFC 3461 ``notify``/``orcpt`` ("" when not given)."""

    index: int
    address: str
    notify: str = ""
    orcpt: str = ""


@dataclass(frozen=True)
class Message:
    """What a transaction sends: the envelope sender, the content's ``size`` in bytes,
    ``body`` (``8BITMIME`` or ""), ``smtputf8`` (MAIL says SMTPUTF8 when offered),
    ``smtputf8_required`` (cleanup found UTF-8 in it: ``transport.needs_smtputf8``), RFC
    3461 ``ret``/``envid`` ("" when not given) and ``content()``, a fresh async iterator
    over the content (LF line ends)."""

    sender: str
    size: int
    content: Callable[[], AsyncIterator[bytes]]
    body: str = ""
    smtputf8: bool = False
    smtputf8_required: bool = False
    ret: str = ""
    envid: str = ""


@dataclass
class Outcome:
    """A transaction's result: ``statuses`` by recipient index (every recipient), and
    ``reusable``: the connection is at the start of a new transaction. ``stale``: it
    failed before the server answered MAIL (a cached connection that had gone away:
    the recipients may be tried on a new one)."""

    statuses: dict[int, DeliveryStatus]
    reusable: bool
    stale: bool = False


class Session:
    """An open connection to one server. ``host`` is ``name[addr]``, ``relay``
    ``name[addr]:port`` (``name[path]`` for a unix socket); ``started`` its monotonic
    start (for ``smtp_connection_reuse_time_limit``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 settings: SmtpSettings, host: str, relay: str) -> None:
        self.reader = reader
        self.writer = writer
        self.settings = settings
        self.host = host
        self.relay = relay
        self.conn = ClientConnection(lmtp=settings.lmtp)
        self.started = time.monotonic()
        self.transactions = 0
        self.tls: TlsInfo | None = None
        self.tls_trust = ""  # Verified, Untrusted or Anonymous once TLS is up
        self.warning = ""  # a line to log about the last SessionError raised here

    # --- opening ----------------------------------------------------------------------

    @classmethod
    async def connect(cls, name: str, addr: str, port: int,
                      settings: SmtpSettings) -> Session:
        """Connect within ``smtp_connect_timeout``, from ``smtp_bind_address`` when set;
        ``port`` 0 with ``addr`` a path is a unix socket. Raises ``SessionError``
        (``connect to name[addr]:port: reason``, try_next)."""
        unix = port == 0
        endpoint = f"{name}[{addr}]" if unix else f"{name}[{addr}]:{port}"
        try:
            async with asyncio.timeout(settings.timeouts.connect):
                if unix:
                    reader, writer = await asyncio.open_unix_connection(addr)
                else:
                    bind = settings.bind_address6 if ":" in addr else settings.bind_address
                    reader, writer = await asyncio.open_connection(
                        addr, port, local_addr=(bind, 0) if bind else None)
        except TimeoutError:
            raise SessionError(diagnostics.connect_failed(endpoint, "Connection timed out"),
                               try_next=True) from None
        except OSError as exc:
            raise SessionError(diagnostics.connect_failed(endpoint, stream.reason(exc)),
                               try_next=True) from None
        return cls(reader, writer, settings, f"{name}[{addr}]", endpoint)

    async def handshake(self) -> None:
        """The greeting, then EHLO (LHLO for LMTP), HELO when EHLO is refused. Raises
        ``SessionError`` (try_next) when the server will not talk: a refusal is a
        deferral here, as Postfix's ``smtp_skip_5xx_greeting``, so that the next server
        gets its chance."""
        greeting = await self._event("GREETING")
        if isinstance(greeting, ev.Greeting) and greeting.reply.code // 100 == 2:
            name = self.settings.helo_name
            reply = await self._command(ev.Helo(name, extended=True), "EHLO")
            if isinstance(reply, ev.HeloReply) and reply.reply.code // 100 == 2:
                return
            if (not self.settings.lmtp and isinstance(reply, ev.HeloReply)
                    and reply.reply.code != 421):
                reply = await self._command(ev.Helo(name, extended=False), "HELO")
                if isinstance(reply, ev.HeloReply) and reply.reply.code // 100 == 2:
                    return
            raise SessionError(self._soft(self._status(reply)), try_next=True)
        raise SessionError(self._soft(self._status(greeting)), try_next=True)

    # --- STARTTLS and AUTH (after the handshake) ------------------------------------------

    async def starttls(self, policy: ClientTlsPolicy, context: ssl.SSLContext,
                       nexthop: str) -> None:
        """STARTTLS when ``policy`` asks for it and the server offers it, then EHLO again
        (RFC 3207 4.2). ``nexthop``: the next-hop domain (level secure's names). Raises
        ``SessionError`` (try_next) in smtp(8)'s words: ``TLS is required, but was not
        offered by host H[A]`` (4.7.4), ``… refused to start TLS: <reply>``, ``Cannot
        start TLS: handshake failure`` (4.7.5; ``plain_retry`` at level may, where
        Postfix tries the server again without TLS), ``Server certificate not trusted``
        / ``Server certificate not verified`` (4.7.5, verify and secure)."""
        if policy.level is ClientTlsLevel.NONE or self.conn.tls_active:
            return
        if "STARTTLS" not in self.conn.extensions:
            if policy.required:
                raise SessionError(self._local("4.7.4", "TLS is required, but was not "
                                               f"offered by host {self.host}"), try_next=True)
            return
        reply = await self._command(ev.StartTls(), "STARTTLS")
        if self._code(reply) // 100 != 2:
            if policy.required:
                said = self._status(reply)
                raise SessionError(self._soft(replace(
                    said, text=f"TLS is required, but host {self.host} refused to start "
                    f"TLS: {_reply_text(reply)}")), try_next=True)
            return  # opportunistic: carry on in clear text (the core is READY again)
        name = self.host.partition("[")[0]
        try:
            await self.writer.start_tls(
                context, server_hostname=name or None,
                ssl_handshake_timeout=self.settings.timeouts.helo)
        except ssl.SSLCertVerificationError as exc:
            raise SessionError(self._local(
                "4.7.5", "Server certificate not trusted",
                log=f"certificate verification failed for {self.relay}: "
                    f"{exc.verify_message or exc.reason}"), try_next=True) from None
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            error = SessionError(self._local(
                "4.7.5", "Cannot start TLS: handshake failure",
                log=f"SSL_connect error to {self.relay}: {exc}"), try_next=True)
            error.plain_retry = policy.level is ClientTlsLevel.MAY
            raise error from None
        obj = self.writer.get_extra_info("ssl_object")
        assert obj is not None
        self.tls = TlsInfo.from_ssl_object(obj)
        if policy.verifies:
            names = policy.match_names(name, nexthop)
            if not certificate_matches(obj.getpeercert() or {}, names):
                raise SessionError(self._local(
                    "4.7.5", "Server certificate not verified",
                    log=f"server certificate verification failed for {self.relay}: "
                        f"certificate name does not match {', '.join(names)}"),
                    try_next=True)
            self.tls_trust = "Verified"
        else:
            self.tls_trust = "Untrusted" if self.tls.peer_fingerprint else "Anonymous"
        helo = await self._command(ev.Helo(self.settings.helo_name, extended=True), "EHLO")
        if not (isinstance(helo, ev.HeloReply) and helo.reply.code // 100 == 2):
            raise SessionError(self._soft(self._status(helo)), try_next=True)

    def tls_established(self) -> str:
        """smtp(8)'s line (smtp_tls_loglevel >= 1): ``Untrusted TLS connection established
        to H[A]:25: TLSv1.3 with cipher X (256/256 bits)``; "" without TLS."""
        if self.tls is None:
            return ""
        t = self.tls
        return (f"{self.tls_trust} TLS connection established to {self.relay}: "
                f"{t.protocol} with cipher {t.cipher} ({t.bits}/{t.bits} bits)")

    @property
    def auth_mechanisms(self) -> str:
        """The server's AUTH keyword value (``PLAIN LOGIN``), "" when not offered."""
        return self.conn.extensions.get("AUTH", "")

    async def authenticate(self, creds: auth.Credentials, options: tuple[str, ...], *,
                           soft_bounce: bool = True) -> None:
        """AUTH with the best mechanism ``options`` allow (PLAIN, LOGIN). Raises
        ``SessionError`` (try_next) in smtp(8)'s words: ``SASL authentication failed;
        cannot authenticate to server H[A]: no mechanism available`` (4.7.0) or ``SASL
        authentication failed; server H[A] said: 535 …`` (the reply's code, 5.x.x made
        4.x.x when ``soft_bounce``: smtp_sasl_auth_soft_bounce)."""
        mechanism = auth.choose_mechanism(self.auth_mechanisms, options)
        if mechanism is None:
            raise SessionError(self._local(
                "4.7.0", "SASL authentication failed; cannot authenticate to server "
                f"{self.host}: no mechanism available"), try_next=True)
        reply = await self._command(
            ev.Auth(mechanism, auth.initial_response(mechanism, creds)), "AUTH")
        steps = 0
        while self._code(reply) // 100 == 3 and steps < 10:
            steps += 1
            challenge = _reply_text(reply)[4:]
            reply = await self._command(
                ev.AuthLine(auth.respond(mechanism, challenge, creds)), "AUTHLINE")
        if self._code(reply) // 100 == 2:
            return
        if self._code(reply) // 100 == 3:  # a server that never stops asking
            await self._write(self.conn.send(ev.AuthLine("*")), "AUTHLINE")
            await self._event("AUTHLINE")
            raise SessionError(self._local(
                "4.3.0", "SASL authentication failed; authentication protocol loop with "
                f"server {self.host}"), try_next=True)
        said = self._status(reply)
        dsn = said.dsn
        if soft_bounce and dsn.startswith("5"):
            dsn = "4" + dsn[1:]
        raise SessionError(replace(
            said, dsn=dsn, text=f"SASL authentication failed; server {self.host} said: "
            f"{_reply_text(reply)}"), try_next=True)

    def _local(self, dsn: str, text: str, *, log: str = "") -> DeliveryStatus:
        """A status this client decided on (not a server's reply); ``log``: an extra
        warning line the transport logs before it."""
        st = DeliveryStatus(dsn, text, self.relay)
        self.warning = log
        return st

    def _soft(self, st: DeliveryStatus) -> DeliveryStatus:
        if st.dsn.startswith("5."):
            return replace(st, dsn="4" + st.dsn[1:])
        return st

    # --- a transaction --------------------------------------------------------------------

    @property
    def size_limit(self) -> int:
        """The server's SIZE (RFC 1870), 0 when none or not stated."""
        text = self.conn.extensions.get("SIZE", "").strip()
        return int(text) if text.isdigit() else 0

    @property
    def usable(self) -> bool:
        """Whether a new transaction may start on this connection now."""
        return self.conn.state is ClientState.READY and not self.writer.is_closing()

    async def transaction(self, message: Message,
                          recipients: Sequence[Recipient]) -> Outcome:
        """MAIL, RCPT for each recipient, DATA and the content; a status for every
        recipient. A 4xx/5xx to MAIL or DATA applies to every recipient, to RCPT to that
        one, to the end of data to every accepted one (LMTP: each its own)."""
        self.transactions += 1
        statuses: dict[int, DeliveryStatus] = {}
        accepted: list[Recipient] = []
        try:
            await self._transaction(message, recipients, statuses, accepted)
        except _Stage as failure:
            for r in recipients:
                statuses.setdefault(r.index, failure.status)
            return Outcome(statuses, reusable=False, stale=failure.before_mail)
        return Outcome(statuses, reusable=self.usable)

    async def _transaction(self, message: Message, recipients: Sequence[Recipient],
                           statuses: dict[int, DeliveryStatus], accepted: list[Recipient],
                           ) -> None:
        ext = self.conn.extensions
        params: dict[str, str | None] = {}
        if "SIZE" in ext:
            params["SIZE"] = str(message.size)
        if message.body == "8BITMIME" and "8BITMIME" in ext:
            params["BODY"] = "8BITMIME"
        if message.smtputf8 and "SMTPUTF8" in ext:
            params["SMTPUTF8"] = None
        dsn = "DSN" in ext
        if dsn and message.ret:
            params["RET"] = message.ret
        if dsn and message.envid:
            params["ENVID"] = message.envid
        by_address: dict[str, list[Recipient]] = {}
        commands: list[ev.Command] = [ev.Mail(message.sender, params)]
        for r in recipients:
            rparams: dict[str, str | None] = {}
            if dsn and r.notify:
                rparams["NOTIFY"] = r.notify
            if dsn and r.orcpt:
                rparams["ORCPT"] = r.orcpt
            by_address.setdefault(r.address, []).append(r)
            commands.append(ev.Rcpt(r.address, rparams))
        commands.append(ev.Data())
        if self.conn.pipelining:
            await self._write(b"".join(self.conn.send(c) for c in commands), "MAIL",
                              before_mail=True)
            pending = [self._name(c) for c in commands]
            replies = [await self._event(name, before_mail=i == 0)
                       for i, name in enumerate(pending)]
        else:
            replies = []
            for i, c in enumerate(commands):
                name = self._name(c)
                if name == "DATA" and not any(
                        isinstance(rp, ev.CommandReply) and rp.command == "RCPT"
                        and rp.reply.code // 100 == 2 for rp in replies):
                    break  # no recipient accepted: no DATA
                await self._write(self.conn.send(c), name, before_mail=i == 0)
                reply = await self._event(name, before_mail=i == 0)
                replies.append(reply)
                if name == "MAIL" and self._code(reply) // 100 != 2:
                    break
        mail_reply = replies[0]
        if self._code(mail_reply) // 100 != 2:
            st = self._status(mail_reply)
            for r in recipients:
                statuses[r.index] = st
            await self._reset()
            return
        rcpt_replies = replies[1:1 + len(recipients)]
        for r, reply in zip(recipients, rcpt_replies, strict=False):
            if self._code(reply) // 100 == 2:
                accepted.append(r)
            else:
                statuses[r.index] = self._status(reply)
        data_reply = replies[1 + len(recipients)] if len(replies) > 1 + len(recipients) \
            else None
        if not accepted:
            if data_reply is not None and self._code(data_reply) == 354:
                # RFC 2920 3.1: DATA accepted after every RCPT was refused: end it empty.
                await self._write(self.conn.send(ev.DataEnd()), "DATAEND")
                await self._event("DATAEND")
            else:
                await self._reset()
            return
        assert data_reply is not None
        if self._code(data_reply) != 354:
            st = self._status(data_reply)
            for r in accepted:
                statuses[r.index] = st
            await self._reset()
            return
        await self._send_content(message)
        await self._write(self.conn.send(ev.DataEnd()), "DATAEND")
        owed = len(accepted) if self.settings.lmtp else 1
        for _ in range(owed):
            reply = await self._event("DATAEND")
            if not isinstance(reply, ev.DataEndReply):
                raise _Stage("DATAEND", self._status(reply))
            st = (diagnostics.sent(reply.reply, self.relay) if reply.reply.code // 100 == 2
                  else self._status(reply))
            if reply.recipient is None:
                for r in accepted:
                    statuses[r.index] = st
            else:
                for r in by_address.get(reply.recipient, []):
                    statuses.setdefault(r.index, st)

    async def _send_content(self, message: Message) -> None:
        """The content, one chunk at a time; each write drained within
        ``smtp_data_xfer_timeout``."""
        async for chunk in message.content():
            await self._write(self.conn.send(ev.DataChunk(chunk)), "CONTENT")

    async def _reset(self) -> None:
        """RSET after a transaction that sent nothing, so the connection can be reused."""
        if self.conn.state in (ClientState.READY, ClientState.TRANSACTION):
            await self._write(self.conn.send(ev.Rset()), "RSET")
            await self._event("RSET")

    async def quit(self) -> None:
        """QUIT (within ``smtp_quit_timeout``, its reply not awaited past that), then close;
        never raises for the peer."""
        try:
            if self.conn.state in (ClientState.READY, ClientState.HELLO):
                await self._write(self.conn.send(ev.Quit()), "QUIT")
                await self._event("QUIT")
        except (_Stage, SessionError):
            pass
        await stream.close(self.writer, self.settings.timeouts.quit)

    def abort(self) -> None:
        """Drop the connection at once."""
        self.writer.transport.abort()

    # --- I/O ------------------------------------------------------------------------------

    @staticmethod
    def _name(command: ev.Command) -> str:
        return {ev.Mail: "MAIL", ev.Rcpt: "RCPT", ev.Data: "DATA"}.get(type(command), "")

    @staticmethod
    def _code(event: ev.ClientEvent) -> int:
        if isinstance(event, ev.Greeting | ev.HeloReply | ev.CommandReply | ev.DataEndReply):
            return event.reply.code
        return 0

    def _status(self, event: ev.ClientEvent) -> DeliveryStatus:
        """The status a refusal (or a broken server) gives the recipients concerned."""
        if isinstance(event, ev.Greeting | ev.HeloReply | ev.CommandReply | ev.DataEndReply):
            return diagnostics.from_reply(event.reply, event.diagnostic(self.host), self.relay)
        if isinstance(event, ev.RemoteError):
            return diagnostics.lost(event.diagnostic(self.host), self.relay)
        return diagnostics.lost(f"lost connection with {self.host}", self.relay)

    async def _write(self, data: bytes, command: str, *, before_mail: bool = False) -> None:
        timeout = self.settings.timeouts.for_command(command)
        try:
            stream.write(self.writer, data)
            await stream.drain(self.writer, timeout)
        except stream.PeerGone:
            stage = ev.PHASES.get(command, ("talking to the server", ""))[0]
            st = diagnostics.lost(f"lost connection with {self.host} while {stage}",
                                  self.relay)
        except stream.PeerTimeout:
            st = diagnostics.timed_out(self.host, command, self.relay)
        else:
            return
        if command in _HANDSHAKE:
            raise SessionError(st, try_next=True)
        raise _Stage(command, st, before_mail=before_mail)

    async def _event(self, command: str, *, before_mail: bool = False) -> ev.ClientEvent:
        """The next event; raises ``_Stage`` (a status) when the server is gone, too slow,
        or broke the protocol, and ``SessionError`` for those before any transaction."""
        timeout = self.settings.timeouts.for_command(command)
        while True:
            event = self.conn.next_event()
            if event is not ev.NEED_DATA:
                break
            try:
                data = await stream.read(self.reader, self.writer.transport, READ_SIZE,
                                         timeout)
            except stream.PeerGone:
                data = b""
            except stream.PeerTimeout:
                st = diagnostics.timed_out(self.host, command, self.relay)
                if command in _HANDSHAKE:
                    raise SessionError(st, try_next=True) from None
                raise _Stage(command, st, before_mail=before_mail) from None
            self.conn.receive_data(data)
        assert not isinstance(event, ev.NeedData)
        if isinstance(event, ev.RemoteError | ev.Closed):
            st = self._status(event)
            if command in _HANDSHAKE:
                raise SessionError(st, try_next=True)
            raise _Stage(command, st, before_mail=before_mail)
        return event

    async def _command(self, command: ev.Command, name: str) -> ev.ClientEvent:
        await self._write(self.conn.send(command), name)
        return await self._event(name)


_HANDSHAKE = frozenset({"GREETING", "EHLO", "HELO", "LHLO", "STARTTLS", "AUTH",
                        "AUTHLINE"})


def _reply_text(event: ev.ClientEvent) -> str:
    """A reply as the server wrote it (multi-line replies joined), "" for no reply."""
    if isinstance(event, ev.Greeting | ev.HeloReply | ev.CommandReply | ev.DataEndReply):
        return ev.wire_text(event.reply)
    return ""


class _Stage(Exception):
    """Inside a transaction: the connection failed while ``command`` was under way."""

    def __init__(self, command: str, status: DeliveryStatus, *,
                 before_mail: bool = False) -> None:
        super().__init__(status.text)
        self.command = command
        self.status = status
        self.before_mail = before_mail

