"""One SMTP session: the asyncio shell around the sans-IO server core.

Follows Postfix's smtpd(8): reads bytes, feeds ``smtpproto.server.ServerConnection``,
answers each event (restrictions through ``smtpd.policy``, whose decisions it drives
with the service's ``smtpd.facts`` and then carries out; the message through
``cleanup.cleanup``, the one way into the queue), and writes the replies, flushing once
no more pipelined input is waiting. The message is opened at the first accepted
recipient (that is when the queue ID is logged with ``client=``); the ``250 … queued
as`` reply is sent only after the file and its directory entry are on disk.

TLS (RFC 3207, Postfix's smtpd(8) and TLS_README): STARTTLS answered 220 upgrades the
transport in place; every byte the client sent before the handshake is discarded (the
core's buffer and the stream's), so that no plaintext command pipelined behind
STARTTLS runs inside TLS (CVE-2011-0411, CVE-2024-34083 class); HELO and the
transaction are forgotten. In wrapper mode (smtps) the handshake comes before the
greeting. A handshake that fails is one line (``SSL_accept error from …``), one that
stalls ends after ``smtpd_starttls_timeout``.

AUTH follows RFC 4954 and Postfix's smtpd_sasl_proto.c/smtpd_sasl_glue.c: the exchange
is carried by the service's SASL back end (``postier.sasl``), each 334 challenge and
client line in turn; failures are logged as Postfix logs them (``warning: NAME[ADDR]:
SASL PLAIN authentication failed: …``, what fail2ban reads), never with the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

from postier import metrics, stream
from postier.anvilclient.protocol import Request
from postier.cleanup.cleanup import CleanupMessage, Received
from postier.queue import control as qmgr_control
from postier.queue.file import ATTR_SMTPUTF8, SMTPUTF8_REQUESTED, Envelope, Recipient
from postier.queue.flush import FlushTableError, make_site_due
from postier.restrictions import evaluate as rs
from postier.rewrite.virtual import ExpansionError
from postier.sasl import api as sasl
from postier.sasl.mechanisms import Mechanism, offered, usable
from postier.smtpd.limits import SessionLimits
from postier.smtpd.policy import Policy, dsn_mail_attrs, dsn_rcpt_fields
from postier.smtpd.service import Service
from postier.smtpproto import events as ev
from postier.smtpproto import replies
from postier.smtpproto.readers import escape_input
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection
from postier.smtpproto.xclient import (
    TEMPUNAVAIL,
    UNAVAILABLE,
    Command,
    address_value,
    etrn_site,
    parse_attributes,
)
from postier.tables import TableError, TableOpenError
from postier.tls import verify
from postier.tls.policy import TlsInfo

READ_SIZE = 65536
DRAIN_ABOVE = 65536  # unsent reply bytes past which a session waits for the client to read
PIPELINING_LOG_BYTES = 100  # of the unexpected input, in "improper command pipelining" lines


class Session:
    def __init__(
        self,
        service: Service,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter | None,
        *,
        wrapped: socket.socket | None = None,
    ) -> None:
        """``writer`` is None for an smtps connection (``wrapped``: the accepted socket,
        before its TLS handshake, which ``run`` does first)."""
        self.svc = service
        self.log = service.log
        self.reader = reader
        self._writer = writer
        self.wrapped = wrapped
        if writer is not None:
            peer = writer.get_extra_info("peername") or ("unknown", 0)
        else:
            assert wrapped is not None
            try:
                peer = wrapped.getpeername()
            except OSError:
                peer = ("unknown", 0)
        self.client_addr: str = str(peer[0])
        if self.client_addr.startswith("::ffff:"):
            self.client_addr = self.client_addr[7:]
        self.client_port = int(peer[1]) if len(peer) > 1 else 0
        self.client_name = "unknown"
        self.conn = ServerConnection(
            max_line_length=service.line_length_limit,
            message_size_limit=service.message_size_limit,
            helo_required=service.helo_required,
            tls_required=service.tls.required,
            forbidden_commands=service.forbidden_commands.matches,
            resolve=service.worker.resolve_routing,
        )
        self.policy = Policy(service)
        self.helo: str | None = None
        self.esmtp = False
        self.sender: str | None = None
        self.recipients: list[Recipient] = []
        self.dsn_attrs: dict[str, str] = {}  # MAIL's RET and ENVID (RFC 3461)
        self.smtputf8 = False  # MAIL had SMTPUTF8 (RFC 6531)
        self.message: CleanupMessage | None = None  # from the first accepted RCPT
        self.counts: Counter[str] = Counter()
        self.errors = 0
        self.last_command = "CONNECT"
        self.closing = False
        self.pipelining_violation = False
        self.rcpt_notes: tuple[tuple[str, str], ...] = ()  # the last RCPT's access actions
        self.rcpt_restriction: str | None = None  # the last RCPT's refusing restriction
        self.rcpt_whatsup: tuple[tuple[str, str], ...] = ()  # its access actions, as logged
        self.out = bytearray()  # replies not yet written
        # --- TLS (this region: the STARTTLS engineer's) ---
        # The session's TLS, once a handshake completed (None: plaintext). Read it, never
        # set it: smtpd_tls_auth_only and SASL's "secured" ask `session.tls is not None`.
        self.tls: TlsInfo | None = None
        self.tls_pending = False  # STARTTLS answered 220: handshake after the flush

        # --- SASL ---
        self.sasl_username: str | None = None  # after a 235
        self.sasl_method: str | None = None
        self.sasl_sender: str | None = None  # MAIL FROM's AUTH=, when authenticated
        self.auth: sasl.Conversation | None = None  # an exchange waiting for a client line
        self.auth_method = ""
        # --- client rate and concurrency limits (smtpd.limits), once the name is known ---
        self.limits: SessionLimits | None = None

        # --- smtpd_delay_reject = no, XCLIENT, XFORWARD ---
        self.access_denied = False  # the client restrictions refused the connection
        self.reverse_client_name: str | None = None  # XCLIENT REVERSE_NAME (None: NAME)
        self.server_override: tuple[str, str] | None = None  # XCLIENT DESTADDR, DESTPORT
        self.xforward: dict[str, str] = {}  # this transaction's XFORWARD attributes

    @property
    def writer(self) -> asyncio.StreamWriter:
        if self._writer is None:
            raise RuntimeError("no stream yet: the smtps handshake has not completed")
        return self._writer

    @property
    def client(self) -> str:
        return f"{self.client_name}[{self.client_addr}]"

    @property
    def protocol(self) -> str:
        """``ESMTP`` or ``SMTP``, as the logs' ``proto=`` says (Received: adds S and A)."""
        return "ESMTP" if self.esmtp else "SMTP"

    @property
    def received_protocol(self) -> str:
        """The Received: header's ``with``: RFC 3848 (``ESMTPA``, ``ESMTPSA``, …), RFC 6531
        4.3 ``UTF8SMTP`` (+ ``S``, ``A``) for a transaction with SMTPUTF8."""
        return (("UTF8SMTP" if self.smtputf8 else self.protocol)
                + ("S" if self.tls is not None else "")
                + ("A" if self.sasl_username else ""))

    @property
    def client_line(self) -> str:
        """What ``QUEUE_ID: client=`` says: the client and, once authenticated, the SASL
        method and login (Postfix: ``, sasl_method=PLAIN, sasl_username=USER``)."""
        text = self.client
        if self.sasl_username is not None:
            text += f", sasl_method={self.sasl_method}, sasl_username={self.sasl_username}"
            if self.sasl_sender is not None:
                text += f", sasl_sender={self.sasl_sender}"
        return text + self.xforward_log()

    # --- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection to its end; never raises (except ``CancelledError``).

        This is the session's error boundary, where the three kinds part: the peer
        gone (``stream.PeerGone``, ``stream.PeerTimeout``) is one line, as Postfix's
        ``lost connection after CMD from NAME[ADDR]``; the environment (any other
        ``OSError``: a disk, a queue file) is a warning without traceback; anything
        else is our bug, logged with its traceback. Whichever it was, the connection
        is closed and ``disconnect from NAME[ADDR] …`` is logged, with the counts.
        """
        try:
            if self.client_addr != "unknown":  # the peer left before we could ask
                self.client_name = await self.svc.worker.reverse_name(self.client_addr)
            self.log.info(f"connect from {self.client}")
            metrics.RECORDER.connection(self.svc.name)
            self.limits = self.svc.limits.session(
                self.client_name, self.client_addr, self.log.warning,
                xclient_authorized=self.svc.xclient_allowed(self.client_addr))
            if self.wrapped is not None and (
                    not await self.limits.wrapper_allowed()
                    or not await self.wrapper_handshake(self.wrapped) or self.closing):
                return
            await self.converse()
        except stream.PeerGone:
            self.log.info(f"lost connection after {self.last_command} from {self.client}")
        except stream.PeerTimeout:
            self.log.info(f"timeout after {self.last_command} from {self.client}")
        except OSError as exc:
            self.log.warning(f"{exc} after {self.last_command} from {self.client}")
        except Exception:
            self.log.error(
                f"after {self.last_command} from {self.client}: "
                f"{traceback.format_exc().strip()}"
            )
        finally:
            await self.end()

    async def converse(self) -> None:
        """Greet, then read, answer and flush until QUIT, an error limit or the end."""
        early = await self.early_input()
        if early:
            # An early talker (Postfix's "improper command pipelining after CONNECT").
            self.log.info(f"improper command pipelining after CONNECT from {self.client}: "
                          f"{escape_input(early[:PIPELINING_LOG_BYTES])}")
            if self.svc.forbid_unauth_pipelining:
                self.send(replies.PROTOCOL_SYNCHRONIZATION)
                self.closing = True
                return
            self.pipelining_violation = True
        refused = await self.limit(Request.CONNECT)
        if refused is not None:  # 421 instead of the greeting
            self.send(refused)
            self.closing = True
            return
        refusal = await self.connect_refusal()
        self.send(refusal or replies.greeting(self.svc.banner))
        await self.flush()
        if early:
            self.conn.receive_data(early)
            await self.process_events()
            await self.flush()
        while not self.closing:
            try:
                data = await stream.read(
                    self.reader, self.writer.transport, READ_SIZE, self.svc.timeout
                )
            except stream.PeerTimeout:
                self.log.info(f"timeout after {self.last_command} from {self.client}")
                self.send(replies.timeout(self.svc.hostname))
                return
            if not data:
                if self.last_command != "QUIT":
                    self.log.info(f"lost connection after {self.last_command} from {self.client}")
                return
            self.conn.receive_data(data)
            await self.process_events()
            await self.flush()

    async def early_input(self) -> bytes:
        """What the client sent before our greeting (b"": nothing yet), without waiting.

        The reverse lookup before the greeting gives a zombie time to talk; a read that
        finds nothing buffered is cancelled at once (no data is lost by that).
        """
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(0):
                return await stream.read(self.reader, self.writer.transport, READ_SIZE,
                                         self.svc.timeout)
        except TimeoutError:
            return b""

    def pipelining_violation_after(self, event: object) -> str | None:
        """The command after which the client sent input it should have held back, or
        None (Postfix 3.7.6+ smtpd; RFC 2920 3.1): a client that did not say EHLO may
        not pipeline at all, an ESMTP client only after MAIL, RCPT or RSET. Refused
        commands, the end of DATA and QUIT are not checked, as in Postfix."""
        if not self.conn.input_pending():
            return None
        match event:
            case ev.Helo(extended=extended):
                return "EHLO" if extended else "HELO"
            case ev.Mail() | ev.Rcpt() | ev.Rset() if self.esmtp:
                return None
            case ev.Mail() | ev.Rcpt() | ev.Rset() | ev.Data() | ev.Noop() | ev.Vrfy() \
                    | ev.StartTls() | ev.Auth():
                return type(event).__name__.upper()
        return None

    async def end(self) -> None:
        """Forget an unfinished message, send what is left, close, log the disconnect.

        Never raises (except ``CancelledError``): the ``disconnect from`` line is always
        written, once.
        """
        if self.auth is not None:
            self.auth.cancel()
            self.auth = None
        try:
            self.abort_transaction()
        except Exception:  # an unfinished queue file that cannot be removed: say so
            self.log.error(f"{self.client}: {traceback.format_exc().strip()}")
        if self._writer is None:  # smtps: no TLS stream was ever made
            if self.wrapped is not None:
                self.wrapped.close()
        else:
            try:
                # Replies still buffered (421 timeout, too many errors) leave if they can.
                with contextlib.suppress(stream.PeerGone, stream.PeerTimeout):
                    await self.flush()
                await stream.close(self.writer, self.svc.timeout)
            except Exception:
                self.writer.transport.abort()
                self.log.error(f"{self.client}: {traceback.format_exc().strip()}")
        if self.limits is not None:
            await self.limits.disconnect()
        self.log.info(f"disconnect from {self.client} {self.summary()}")

    def summary(self) -> str:
        order = [
            "ehlo",
            "helo",
            "xclient",
            "xforward",
            "starttls",
            "auth",
            "mail",
            "rcpt",
            "data",
            "bdat",
            "rset",
            "noop",
            "vrfy",
            "etrn",
            "quit",
            "unknown",
        ]
        parts = []
        total_ok = total = 0
        for name in order:
            ok, seen = self.counts[name + "_ok"], self.counts[name]
            if seen:
                parts.append(f"{name}={ok}" if ok == seen else f"{name}={ok}/{seen}")
                total_ok += ok
                total += seen
        # As Postfix: "0/0" when no command came (any N/M marks an abnormal session).
        parts.append(
            f"commands={total_ok}" if total_ok == total and total
            else f"commands={total_ok}/{total}"
        )
        return " ".join(parts)

    def send(self, reply: Reply) -> None:
        """Queue a reply; replies to pipelined commands leave in one write (``flush``)."""
        self.out += self.conn.send(reply)

    async def flush(self) -> None:
        """Write the queued replies; wait for the client to read them only past
        ``DRAIN_ABOVE`` unsent bytes (at most ``smtpd_timeout``).

        Raises ``stream.PeerGone`` (also when the connection is already closed: nothing
        is ever written to a closed transport) and ``stream.PeerTimeout``.
        """
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            stream.write(self.writer, data)
        if self.writer.transport.get_write_buffer_size() < DRAIN_ABOVE:
            return  # the kernel took everything: nothing to wait for
        # A client that sends without reading would otherwise hold us here forever.
        await stream.drain(self.writer, self.svc.timeout)

    def count(self, name: str, reply: Reply) -> None:
        self.counts[name] += 1
        if reply.code < 400:
            self.counts[name + "_ok"] += 1

    async def process_events(self) -> None:
        while not self.closing:
            event = self.conn.next_event()
            if event is ev.NEED_DATA:
                return
            if self.conn.truncated_line is not None:  # as Postfix's smtpd_chat
                head = escape_input(self.conn.truncated_line[:30])
                self.log.warning(f"{self.client}: request longer than "
                                 f"{self.conn.max_line_length}: {head}...")
            after = self.pipelining_violation_after(event)
            if after is not None:
                self.log.info(f"improper command pipelining after {after} from {self.client}: "
                              f"{escape_input(self.conn.peek_input(PIPELINING_LOG_BYTES))}")
                self.pipelining_violation = True
                if self.svc.forbid_unauth_pipelining:
                    self.last_command = after
                    self.counts[after.lower()] += 1  # refused: counted, never "ok"
                    self.send(replies.PROTOCOL_SYNCHRONIZATION)
                    self.closing = True
                    return
            reply = await self.handle(event)
            if reply is None:
                continue
            self.send(reply)
            if self.tls_pending:
                await self.start_tls()
                continue
            if reply.code >= 400 and not isinstance(event, ev.DataChunk):
                self.errors += 1
                if self.errors >= self.svc.hard_error_limit:
                    self.log.info(f"too many errors after {self.last_command} from {self.client}")
                    self.send(replies.too_many_errors(self.svc.hostname))
                    self.closing = True
                elif self.errors > self.svc.soft_error_limit:
                    await self.flush()
                    await asyncio.sleep(self.svc.error_sleep_time)
            if reply.code in (221, 421):
                self.closing = True

    async def handle(self, event: object) -> Reply | None:
        if self.access_denied:
            denied = self.denied_reply(event)
            if denied is not None:
                return denied
        match event:
            case ev.Etrn(site=site):
                return await self.on_etrn(site)
            case ev.Xclient(arguments=words):
                return await self.on_xclient(words)
            case ev.Xforward(arguments=words):
                return self.on_xforward(words)
            case ev.DataChunk(data=data):
                if self.message is not None:  # a write error is kept: read on, refuse at the end
                    if not self.message.begun:  # BDAT: its first accepted chunk
                        self.begin_content()
                    self.message.write(data)
                return None
            case ev.DataEnd():
                return await self.on_data_end(event)
            case ev.ChunkEnd():
                return await self.on_chunk_end(event)
            case ev.Helo():
                return await self.on_helo(event)
            case ev.Mail():
                return await self.on_mail(event)
            case ev.Rcpt():
                return await self.on_rcpt(event)
            case ev.Data():
                return await self.on_data()
            case ev.Rset():
                self.last_command = "RSET"
                self.abort_transaction()
                reply = replies.OK
                self.count("rset", reply)
                return reply
            case ev.Noop():
                self.last_command = "NOOP"
                self.count("noop", replies.OK)
                return replies.OK
            case ev.Quit():
                self.last_command = "QUIT"
                self.count("quit", replies.BYE)
                self.closing = True
                return replies.BYE
            case ev.Vrfy(argument=arg):
                self.last_command = "VRFY"
                reply = await self.on_vrfy(arg)
                self.count("vrfy", reply)
                return reply
            case ev.Closed():
                self.closing = True
                return None
            case ev.StartTls():
                if self.svc.tls.offered and self.svc.tls.context is not None:
                    self.last_command = "STARTTLS"
                    refused = await self.limit(Request.NEWTLS_STATUS, "starttls")
                    if refused is not None:
                        return refused
                return self.on_starttls()
            case ev.Auth():
                self.last_command = "AUTH"
                return await self.limit(Request.AUTH, "auth") or await self.on_auth(event)
            case ev.AuthLine(line=line):
                return await self.on_auth_line(line)
            case ev.ProtocolError(reply=reply, command=command, non_smtp=line):
                if line is not None:
                    self.log.warning(f"non-SMTP command from {self.client}: {line[:100]}")
                if self.auth is not None:  # a line too long in the middle of AUTH
                    self.auth.cancel()
                    self.auth = None
                    self.count("auth", reply)
                # As Postfix's smtpd: a line that is no command is "UNKNOWN" in the logs
                # ("lost connection after UNKNOWN from …") and in the counts.
                self.last_command = command or "UNKNOWN"
                if line is not None:  # Postfix counts the hang-up as failed: unknown=0/1
                    self.counts["unknown"] += 1
                else:
                    self.count(command.lower() if command else "unknown", reply)
                return reply
            case _:
                self.last_command = "UNKNOWN"
                reply = replies.UNRECOGNIZED
                self.count("unknown", reply)
                return reply

    # --- commands -----------------------------------------------------------------------

    async def on_helo(self, event: ev.Helo) -> Reply:
        self.last_command = "EHLO" if event.extended else "HELO"
        self.abort_transaction()
        # Non-printable characters never reach logs or the Received: header (as Postfix).
        self.helo = "".join(c if c.isprintable() else "?" for c in event.name)
        # smtpd_delay_reject = no: the HELO list first; a refused name is not kept, and
        # the protocol stays SMTP there (Postfix logs "proto=SMTP" for a refused EHLO).
        self.esmtp = False
        refusal = await self.stage_refusal(rs.Stage.HELO, self.last_command)
        if refusal is not None:
            self.helo = None
            self.count("ehlo" if event.extended else "helo", refusal)
            return refusal
        self.esmtp = event.extended
        if event.extended:
            keywords = self.svc.ehlo_keywords_for(
                tls_active=self.tls is not None, auth_lines=await self.auth_keywords(),
                x_lines=self.svc.x_keywords(self.client_addr))
            reply = replies.ehlo(self.svc.hostname, keywords)
        else:
            reply = replies.helo(self.svc.hostname)
        self.count("ehlo" if event.extended else "helo", reply)
        return reply

    async def on_mail(self, event: ev.Mail) -> Reply:
        self.last_command = "MAIL"
        refused = await self.limit(Request.MESSAGE, "mail")
        if refused is not None:
            return refused
        params = event.params
        auth_param = None
        if self.svc.sasl is not None and "AUTH" in params:  # RFC 4954 5
            params = {k: v for k, v in params.items() if k != "AUTH"}
            auth_param = event.params["AUTH"]
        # RFC 6531 3.4: SMTPUTF8 takes no value (Postfix: "Unsupported option: SMTPUTF8=x").
        smtputf8 = (self.svc.smtputf8_enable and "SMTPUTF8" in params
                    and params["SMTPUTF8"] is None)
        if smtputf8:
            params = {k: v for k, v in params.items() if k != "SMTPUTF8"}
        reply = self.policy.check_mail(event.address, params, smtputf8=smtputf8)
        if reply is None:
            self.sender = event.address  # smtpd_delay_reject = no: the sender list now
            reply = await self.stage_refusal(rs.Stage.SENDER, "MAIL")
            self.sender = None
        if reply is None:
            self.smtputf8 = smtputf8
            self.sender = event.address
            self.dsn_attrs = dsn_mail_attrs(event.params)  # RET, ENVID (RFC 3461)
            if self.sasl_username is not None and auth_param and auth_param != "<>":
                self.sasl_sender = _printable(auth_param)
            reply = replies.MAIL_OK
        self.count("mail", reply)
        return reply

    async def on_rcpt(self, event: ev.Rcpt) -> Reply:
        self.last_command = "RCPT"
        refused = await self.limit(Request.RECIPIENT, "rcpt")
        if refused is not None:
            return refused
        assert self.sender is not None
        reply = await self.rcpt_policy(event)
        if reply is None:
            if len(self.recipients) >= self.svc.recipient_limit:
                reply = replies.TOO_MANY_RECIPIENTS
            else:
                if self.message is None:
                    try:  # logs QUEUE_ID: client=…
                        self.message = self.svc.cleanup.open(client=self.client_line)
                    except OSError as exc:
                        self.log.warning(f"cannot create a queue file: {exc}")
                        self.count("rcpt", replies.QUEUE_WRITE_ERROR)
                        return replies.QUEUE_WRITE_ERROR
                if self.rcpt_notes:  # access(5) actions: logged, then done by cleanup
                    self.log_actions("RCPT", self.rcpt_whatsup, event.address)
                    self.message.actions.add_all(self.rcpt_notes)
                # Every accepted RCPT goes to cleanup, which drops duplicates as cleanup(8).
                notify, orcpt = dsn_rcpt_fields(event.params)  # RFC 3461
                self.recipients.append(Recipient(
                    event.address, event.address, dsn_notify=notify, dsn_orcpt=orcpt))
                reply = replies.RCPT_OK
        else:
            self.log_reject("RCPT", reply, event.address, restriction=self.rcpt_restriction)
        self.count("rcpt", reply)
        return reply

    def restriction_state(self) -> rs.SmtpdState:
        """What the session knows so far, as the restrictions see it."""
        return rs.SmtpdState(
            client_address=self.client_addr,
            client_name=self.client_name,
            reverse_client_name=self.reverse_client_name or self.client_name,
            helo_name=self.helo,
            sender=self.sender,
            sasl_username=self.sasl_username,
            esmtp=self.esmtp,
            pipelining_violation=self.pipelining_violation,
            **self.restriction_extras(),
        )

    def restriction_extras(self) -> dict[str, Any]:
        """The rest of what restrictions and policy services see (``rs.SmtpdState``)."""
        sock = self.server_override or self.writer.get_extra_info("sockname")
        return dict(
            server_address=str(sock[0]).removeprefix("::ffff:") if sock else "",
            server_port=str(sock[1]) if sock and len(sock) > 1 else "",
            client_port=str(self.client_port),
            encrypted=self.tls is not None,
            **self.tls_extras(),
            recipient_count=len(self.recipients),
            queue_id=self.message.queue_id if self.message else "",
            instance=f"{id(self):x}.{self.counts['mail']}",
            sasl_method=self.sasl_method or "",
            sasl_sender=self.sasl_sender or "",
            size=self.message.size if self.message else 0,
        )

    def tls_extras(self) -> dict[str, Any]:
        """The TLS facts restrictions and policy services see (none in plaintext)."""
        t = self.tls
        if t is None:
            return {}
        return dict(
            ccert_subject=t.peer_cn, ccert_issuer=t.issuer_cn,
            ccert_fingerprint=t.peer_fingerprint,
            ccert_pubkey_fingerprint=t.peer_pkey_fingerprint,
            ccert_trusted=t.peer_verified, encryption_protocol=t.protocol,
            encryption_cipher=t.cipher, encryption_keysize=t.bits,
        )

    def log_actions(self, stage: str, whatsup: Sequence[tuple[str, str]],
                    recipient: str | None) -> None:
        """Log the access(5) actions that fired (as smtpd's ``hold:``, ``warn:`` … lines):
        ``whatsup`` is ``Decision.whatsup``, (ACTION, ``<subject>: Recipient address …``)."""
        qid = self.message.queue_id if self.message else "NOQUEUE"
        to = f" to=<{recipient}>" if recipient is not None else ""
        for action, what in whatsup:
            self.log.info(
                f"{qid}: {action.lower()}: {stage} from {self.client}: {what}; "
                f"from=<{self.sender}>{to} proto={self.protocol} helo=<{self.helo or ''}>")

    async def stage_restrictions(self, stage: rs.Stage) -> rs.Decision:
        """smtpd_data_restrictions or smtpd_end_of_data_restrictions, evaluated now."""
        state = replace(self.restriction_state(), stage=stage)
        return await self.svc.facts.run(rs.evaluate_steps(
            self.svc.lists.get(stage, []), state, self.svc.codes, stage=stage,
            classes=self.svc.classes))

    async def rcpt_policy(self, event: ev.Rcpt) -> Reply | None:
        """Carry out the policy's decision on a recipient: log, flush and sleep, then the
        refusal to send (None: accepted)."""
        decision = await self.svc.facts.run(
            self.policy.check_rcpt(self.restriction_state(), event.address, event.params,
                                   smtputf8=self.smtputf8)
        )
        for alert in decision.alerts:
            self.log.warning(alert)
        for warning in decision.warnings:
            self.log_reject("RCPT", warning, event.address, action="reject_warning")
        self.rcpt_notes = decision.notes if decision.reply is None else ()
        self.rcpt_restriction = decision.restriction
        self.rcpt_whatsup = decision.whatsup if decision.reply is None else ()
        if decision.sleep:
            await self.flush()
            await asyncio.sleep(decision.sleep)
        return decision.reply

    async def on_vrfy(self, argument: str) -> Reply:
        """VRFY: the recipient restrictions, logged and paused as for RCPT (Postfix)."""
        decision = await self.svc.facts.run(
            self.policy.vrfy(self.restriction_state(), argument))
        if decision.bad_syntax:
            self.log.warning(f"Illegal address syntax from {self.client} in VRFY command: "
                             f"{argument.strip()}")
        if decision.rcpt is not None:
            for warning in decision.rcpt.warnings:
                self.log_reject("VRFY", warning, decision.address, action="reject_warning")
            if decision.rcpt.sleep:
                await self.flush()
                await asyncio.sleep(decision.rcpt.sleep)
            if decision.rcpt.reply is not None:
                self.log_reject("VRFY", decision.rcpt.reply, decision.address,
                                restriction=decision.rcpt.restriction)
        return decision.reply

    def log_reject(
        self, stage: str, reply: Reply, recipient: str | None, action: str = "reject",
        restriction: str | None = None,
    ) -> None:
        """Postfix's ``reject:`` (or ``reject_warning:``) line; a reject is counted by
        ``restriction``, the restriction that decided (None: no restriction did)."""
        if action == "reject":
            metrics.RECORDER.reject(self.svc.name, stage, restriction, reply.code)
        qid = self.message.queue_id if self.message else "NOQUEUE"
        to = f" to=<{recipient}>" if recipient is not None else ""
        sender = f" from=<{self.sender}>" if self.sender is not None else ""
        self.log.info(
            f"{qid}: {action}: {stage} from {self.client}: {reply};{sender}{to} "
            f"proto={self.protocol} helo=<{self.helo or ''}>"
        )

    async def on_data(self) -> Reply:
        self.last_command = "DATA"
        if not self.recipients or self.message is None:
            reply = replies.NO_VALID_RECIPIENTS
            self.count("data", reply)
            return reply
        if self.svc.lists.get(rs.Stage.DATA):
            decision = await self.stage_restrictions(rs.Stage.DATA)
            for alert in decision.alerts:
                self.log.warning(alert)
            for warning in decision.warnings:
                self.log_reject("DATA", warning, None, action="reject_warning")
            if not decision.accepted and decision.reply is not None:
                self.log_reject("DATA", decision.reply, None, restriction=decision.restriction)
                self.count("data", decision.reply)
                return decision.reply
            self.log_actions("DATA", decision.whatsup, None)
            self.message.actions.add_all(decision.notes)
        self.begin_content()
        return replies.DATA_GO

    def begin_content(self) -> None:
        """Start the message's content: cleanup adds the missing headers when the client
        qualifies (local_header_rewrite_clients), then Received: goes on top."""
        assert self.message is not None
        local = self.svc.local_header_rewrite(self.client_addr, self.sasl_username is not None)
        if local or self.svc.always_add_missing_headers:
            self.message.add_missing_headers(self.sender or "", self.svc.hostname)
        if local:  # canonical maps apply to the headers of local clients only
            self.message.rewrite_headers()
        self.message.begin_content(self.received())

    def received(self) -> Received:
        """The Received: header smtpd puts on top of the message it is receiving."""
        return Received(
            helo=self.helo or self.client_name,
            client_name=self.client_name,
            client_addr=self.client_addr,
            protocol=self.received_protocol,
            by_host=self.svc.hostname,
            mail_name=self.svc.mail_name,
            recipient=self.recipients[0].address if len(self.recipients) == 1 else None,
            when=datetime.now(UTC).astimezone(),
            tls=(self.tls.received_clause()
                 if self.tls is not None and self.svc.tls.policy.received_header else None),
            tls_peer=(self.tls.received_peer_clause()
                      if self.tls is not None and self.svc.tls.policy.received_header
                      else None),
            authenticated_sender=(
                self.sasl_username if self.svc.sasl_authenticated_header else None),
        )

    async def on_chunk_end(self, event: ev.ChunkEnd) -> Reply:
        """The reply to one BDAT chunk (RFC 3030); LAST commits the message."""
        self.last_command = "BDAT"
        qid = self.message.queue_id if self.message is not None else "NOQUEUE"
        if event.refusal is not None:
            reply = event.refusal
            if reply is replies.CHUNK_TOO_BIG:
                self.log.warning(f"{qid}: BDAT request from {self.client} exceeds message "
                                 "size limit")
            elif reply is replies.NULL_BDAT:
                self.log.warning(f"{qid}: null BDAT request from {self.client}")
            if event.last:  # the transaction ends with its LAST chunk
                self.abort_transaction()
            self.count("bdat", reply)
            return reply
        if self.message is not None and not self.message.begun:  # BDAT 0 LAST alone
            self.begin_content()
        if not event.last:
            reply = replies.bdat_ok(event.size)
            self.count("bdat", reply)
            return reply
        total = event.total
        return await self.finish_message(
            "bdat", lambda queue_id: replies.bdat_queued(total, queue_id))

    async def on_data_end(self, event: ev.DataEnd) -> Reply:
        if event.too_big:
            message = self.message
            assert message is not None
            message.end_content()
            reply = replies.MESSAGE_TOO_BIG
            if message.error is None and not message.too_many_hops:
                self.log_reject("END-OF-MESSAGE", reply, None)
                self.abort_transaction()
                self.count("data", reply)
                return reply
        return await self.finish_message("data", replies.queued)

    async def finish_message(self, counter: str, queued: Callable[[str], Reply]) -> Reply:
        """End the content, refuse it (write error, hop count) or commit it; the reply.
        ``counter``: "data" or "bdat"; ``queued(queue_id)``: the reply once on disk."""
        message = self.message
        assert message is not None
        message.end_content()
        if message.error is not None:
            self.log.warning(f"{message.queue_id}: queue file write error: {message.error}")
            self.abort_transaction()
            self.count(counter, replies.QUEUE_WRITE_ERROR)
            return replies.QUEUE_WRITE_ERROR
        if message.too_many_hops:  # hopcount_limit: a mail loop dies at the door
            self.log.warning(f"{message.queue_id}: message rejected: hopcount exceeded")
            self.abort_transaction()
            self.count(counter, replies.TOO_MANY_HOPS)
            return replies.TOO_MANY_HOPS
        if self.svc.lists.get(rs.Stage.END_OF_DATA):
            decision = await self.stage_restrictions(rs.Stage.END_OF_DATA)
            for alert in decision.alerts:
                self.log.warning(alert)
            for warning in decision.warnings:
                self.log_reject("END-OF-MESSAGE", warning, None, action="reject_warning")
            if not decision.accepted and decision.reply is not None:
                self.log_reject("END-OF-MESSAGE", decision.reply, None,
                                restriction=decision.restriction)
                self.abort_transaction()
                self.count(counter, decision.reply)
                return decision.reply
            self.log_actions("END-OF-MESSAGE", decision.whatsup, None)
            message.actions.add_all(note for note in decision.notes if note[0] != "PREPEND")
        envelope = Envelope(
            sender=self.sender or "",
            recipients=self.recipients,
            arrival=time.time(),
            attrs={
                "client_name": self.client_name,
                "client_address": self.client_addr,
                "client_port": str(self.client_port),
                "helo_name": self.helo or "",
                "protocol": self.protocol,
                "service": self.svc.name,
                **self.sasl_attrs(),
                **self.dsn_attrs,
                # the SMTP client passes it on (RFC 6531)
                **({ATTR_SMTPUTF8: SMTPUTF8_REQUESTED} if self.smtputf8 else {}),
                **self.xforward_attrs(),
            },
        )
        loop = asyncio.get_running_loop()
        # fsync of the file and of incoming/, then message-id= and the qmgr trigger.
        commit = loop.run_in_executor(None, message.commit, envelope)
        try:
            # Shielded: a session cancelled meanwhile (stop) must not abort a file that
            # the commit thread is still writing; it becomes an unacknowledged message.
            queue_id = await asyncio.shield(commit)
        except asyncio.CancelledError:
            self.message = None
            raise
        except (OSError, TableError) as exc:  # the commit removed the file
            self.log.warning(f"{message.queue_id}: queue file write error: {exc}")
            self.abort_transaction()
            reply = replies.QUEUE_WRITE_ERROR
            self.count(counter, reply)
            return reply
        except ExpansionError:  # virtual alias loop: cleanup logged Postfix's warning
            self.abort_transaction()
            reply = replies.ALIAS_EXPANSION_ERROR
            self.count(counter, reply)
            return reply
        if message.discarded:  # DISCARD: acknowledged, never delivered
            self.log.info(f"{queue_id}: discarded: {message.actions.discard or 'DISCARD action'}")
        elif message.actions.filter:
            self.log.warning(f"{queue_id}: FILTER {message.actions.filter}: recorded in the "
                             "queue file; content filters are not routed by postier yet")
        self.message = None
        self.reset_transaction()
        reply = queued(queue_id)
        metrics.RECORDER.message_received(self.svc.name)
        self.count(counter, reply)
        return reply

    # --- transaction state --------------------------------------------------------------

    def reset_transaction(self) -> None:
        self.sender = None
        self.sasl_sender = None
        self.recipients = []
        self.dsn_attrs = {}
        self.smtputf8 = False
        self.xforward = {}  # XFORWARD attributes hold for one transaction

    # --- AUTH (RFC 4954) ----------------------------------------------------------------

    async def auth_mechanisms(self) -> list[Mechanism] | None:
        """The back end's mechanisms, None when it cannot be reached (it logs why)."""
        assert self.svc.sasl is not None
        try:
            return list(await self.svc.sasl.mechanisms())
        except sasl.Unavailable:
            return None

    async def auth_keywords(self) -> list[str]:
        """The EHLO AUTH lines for this session now (none when AUTH is not allowed)."""
        tls = self.tls is not None
        if not self.svc.auth_allowed(tls):
            return []
        mechanisms = await self.auth_mechanisms()
        names = offered(mechanisms or [], self.svc.sasl_options(tls))
        return replies.auth_keywords(names, broken_clients=self.svc.broken_sasl_auth_clients)

    async def on_auth(self, event: ev.Auth) -> Reply:
        self.last_command = "AUTH"
        tls = self.tls is not None
        if not self.svc.auth_allowed(tls):
            return self.auth_done(replies.AUTH_NOT_ENABLED)
        assert self.svc.sasl is not None
        self.auth_method = _printable(event.mechanism)
        initial = event.initial
        if initial is not None and initial != "=" and not sasl.is_valid_base64(initial):
            return self.auth_result(sasl.Step(sasl.Status.FAIL,
                                              reason=replies.SASL_BAD_INITIAL_BASE64))
        mechanisms = await self.auth_mechanisms()
        if mechanisms is None:
            return self.auth_result(sasl.Step(sasl.Status.TEMP))
        if not usable(mechanisms, self.svc.sasl_options(tls), event.mechanism):
            return self.auth_result(sasl.Step(sasl.Status.FAIL,
                                              reason=replies.SASL_INVALID_MECHANISM))
        sockname = self.writer.get_extra_info("sockname") or ("", 0)
        conversation = self.svc.sasl.conversation(event.mechanism, sasl.ClientInfo(
            remote_ip=self.client_addr if self.client_addr != "unknown" else "",
            remote_port=self.client_port,
            local_ip=str(sockname[0]).removeprefix("::ffff:") if sockname else "",
            local_port=int(sockname[1]) if len(sockname) > 1 else 0,
            secured=tls,
            service=self.svc.sasl_service,
        ))
        self.auth = conversation
        return self.auth_result(await conversation.start(initial))

    async def on_auth_line(self, line: str) -> Reply:
        conversation = self.auth
        assert conversation is not None, "a SASL line without an exchange"
        if line == "*":
            conversation.cancel()
            self.auth = None
            self.log.warning(f"{self.client}: SASL {self.auth_method} authentication aborted")
            return self.auth_done(replies.AUTH_ABORTED)
        if not sasl.is_valid_base64(line):
            conversation.cancel()
            return self.auth_result(sasl.Step(sasl.Status.FAIL,
                                              reason=replies.SASL_BAD_CONTINUED_BASE64))
        return self.auth_result(await conversation.respond(line))

    def auth_result(self, step: sasl.Step) -> Reply:
        """The reply to one step of the exchange; logs a failure as Postfix does."""
        if step.status is sasl.Status.MORE:
            return replies.auth_challenge(step.challenge)
        self.auth = None
        if step.status is sasl.Status.OK and step.username:
            self.sasl_username = _printable(step.username)
            self.sasl_method = self.auth_method
            return self.auth_done(replies.AUTH_OK)
        reason = _printable(step.reason or replies.SASL_NO_REASON)
        user = _printable(step.username or "(unavailable)")
        self.log.warning(f"{self.client}: SASL {self.auth_method} authentication failed: "
                         f"{reason}, sasl_username={user}")
        if step.status is sasl.Status.TEMP:
            return self.auth_done(replies.auth_temporary_failure(step.reason))
        return self.auth_done(replies.auth_failed(step.reason))

    def auth_done(self, reply: Reply) -> Reply:
        """An AUTH command's final reply, counted once (``auth=1/2`` in the disconnect line)."""
        self.count("auth", reply)
        return reply

    async def limit(self, request: Request, counter: str = "") -> Reply | None:
        """Report ``request`` to anvil (``smtpd.limits``): the reply of the client limit
        that refuses it (counted under ``counter`` unless empty), or None."""
        if self.limits is None:
            return None
        reply = await self.limits.ask(request)
        if reply is not None and counter:
            self.count(counter, reply)
        return reply

    def abort_transaction(self) -> None:
        if self.message is not None:
            self.message.abort()
            self.message = None
        self.reset_transaction()

    # --- smtpd_delay_reject = no, ETRN, XCLIENT, XFORWARD ----------------------------

    async def stage_refusal(self, stage: rs.Stage, command: str) -> Reply | None:
        """``smtpd_delay_reject = no``: the ``stage`` list now (HELO/EHLO, MAIL), logged as
        Postfix does; the refusal, or None (also when delay_reject is on)."""
        if self.svc.delay_reject or not self.svc.lists.get(stage):
            return None
        decision = await self.svc.facts.run(
            self.policy.check_stage(self.restriction_state(), stage))
        for warning in decision.warnings:
            self.log_reject(command, warning, None, action="reject_warning")
        if decision.sleep:
            await self.flush()
            await asyncio.sleep(decision.sleep)
        if decision.reply is not None:
            self.log_reject(command, decision.reply, None)
        return decision.reply

    async def connect_refusal(self, command: str = "CONNECT") -> Reply | None:
        """``smtpd_delay_reject = no``: smtpd_client_restrictions at connect (``command``
        CONNECT) or for the client an XCLIENT names (XCLIENT). A refusal replaces the
        greeting, and every later command but QUIT is answered
        ``503 5.7.0 Error: access denied for NAME[ADDR]`` (Postfix 3.7)."""
        if self.svc.delay_reject or not self.svc.lists.get(rs.Stage.CLIENT):
            return None
        decision = await self.svc.facts.run(
            self.policy.check_stage(self.restriction_state(), rs.Stage.CLIENT))
        for warning in decision.warnings:
            self.log.info(f"NOQUEUE: reject_warning: {command} from {self.client}: "
                          f"{warning}; proto={self.protocol}")
        if decision.sleep:
            await asyncio.sleep(decision.sleep)
        if decision.reply is None:
            return None
        self.log.info(f"NOQUEUE: reject: {command} from {self.client}: {decision.reply}; "
                      f"proto={self.protocol}")
        self.access_denied = True
        return decision.reply

    def denied_reply(self, event: object) -> Reply | None:
        """After a refusal at connect: the 503 for a command (counted as failed), None for
        QUIT, the end, content and the core's closing replies."""
        match event:
            case ev.Quit() | ev.Closed() | ev.DataChunk():
                return None
            case ev.ProtocolError(reply=reply) if reply.code in (221, 421, 521):
                return None
        names = {ev.Helo: "helo", ev.Mail: "mail", ev.Rcpt: "rcpt", ev.Data: "data",
                 ev.Rset: "rset", ev.Noop: "noop", ev.Vrfy: "vrfy", ev.StartTls: "starttls",
                 ev.Auth: "auth", ev.ChunkEnd: "bdat", ev.Etrn: "etrn",
                 ev.Xclient: "xclient", ev.Xforward: "xforward"}
        name = names.get(type(event), "unknown")
        if isinstance(event, ev.Helo) and event.extended:
            name = "ehlo"
        elif isinstance(event, ev.ProtocolError) and event.command:
            name = event.command.lower()
        self.last_command = name.upper()
        reply = replies.client_access_denied(self.client)
        self.count(name, reply)
        return reply

    async def on_etrn(self, argument: str) -> Reply:
        """ETRN (RFC 1985) as Postfix's smtpd: the site's syntax, smtpd_etrn_restrictions,
        fast_flush_domains (459; 458 when its table fails), then its deferred mail made
        due and qmgr told (250)."""
        self.last_command = "ETRN"
        reply = await self.etrn_reply(argument)
        self.count("etrn", reply)
        return reply

    async def etrn_reply(self, argument: str) -> Reply:
        site = etrn_site(argument)
        if site is None:
            return replies.ETRN_BAD_PARAMETER
        if self.svc.lists.get(rs.Stage.ETRN):
            decision = await self.svc.facts.run(
                self.policy.check_etrn(self.restriction_state(), site))
            for warning in decision.warnings:
                self.log_reject("ETRN", warning, None, action="reject_warning")
            if decision.reply is not None:
                self.log_reject("ETRN", decision.reply, None)
                return decision.reply
        loop = asyncio.get_running_loop()
        try:  # its tables may be databases: asked off the loop
            allowed = await loop.run_in_executor(None, self.svc.flush_allowed, site)
        except (FlushTableError, TableOpenError) as exc:  # Postfix: flush gives up, 458
            self.log.warning(str(exc))
            self.log.warning("unable to talk to fast flush service")
            return replies.ETRN_UNABLE
        if not allowed:
            self.log.warning(f"reject: ETRN {site[:100]}... from {self.client}")
            return replies.etrn_unavailable(site)
        queue_dir = self.svc.worker.queue_dir
        try:
            count = await loop.run_in_executor(None, make_site_due, queue_dir, site)
            qmgr_control.send(queue_dir, qmgr_control.encode(
                qmgr_control.Request.SCAN_DEFERRED))
        except (OSError, qmgr_control.QmgrDown) as exc:
            self.log.warning(f"unable to talk to fast flush service: {exc}")
            return replies.ETRN_UNABLE
        self.log.info(f"ETRN {site} from {self.client}: {count} deferred message(s) due now")
        return replies.ETRN_OK

    async def on_xclient(self, words: Sequence[str]) -> Reply:
        """XCLIENT (XCLIENT_README): for an authorized client, the attributes given replace
        the session's (the others keep theirs), which starts over with the greeting.
        Counted as Postfix 3.7 counts it: ``xclient=0/1`` even when it succeeded."""
        self.last_command = "XCLIENT"
        self.counts["xclient"] += 1
        if not self.svc.xclient_allowed(self.client_addr):
            return replies.INSUFFICIENT_AUTHORIZATION
        attrs = parse_attributes(Command.XCLIENT, words, self.svc.inet_families)
        if isinstance(attrs, Reply):
            return attrs
        self.apply_xclient(attrs)
        # smtpd_delay_reject = no: the new client's restrictions, as at a connect
        return await self.connect_refusal("XCLIENT") or replies.greeting(self.svc.banner)

    def apply_xclient(self, attrs: dict[str, str]) -> None:
        """Take the client attributes of a valid XCLIENT; the transaction and the HELO
        are forgotten (the core forgets its own at the 220), HELO= and PROTO= preset."""
        self.abort_transaction()
        for key, value in attrs.items():
            if key == "NAME":
                self.client_name = "unknown" if value in (UNAVAILABLE, TEMPUNAVAIL) else value
            elif key == "REVERSE_NAME":
                self.reverse_client_name = ("unknown" if value in (UNAVAILABLE, TEMPUNAVAIL)
                                            else value)
            elif key == "ADDR":
                self.client_addr = address_value(value)
            elif key == "PORT":
                self.client_port = 0 if value == UNAVAILABLE else int(value)
            elif key == "LOGIN":
                login = None if value == UNAVAILABLE else _printable(value)
                self.sasl_username, self.sasl_method = login, ("XCLIENT" if login else None)
                self.conn.authenticated = login is not None
        dest = self.server_override or self.writer.get_extra_info("sockname") or ("", 0)
        if "DESTADDR" in attrs or "DESTPORT" in attrs:
            self.server_override = (
                address_value(attrs["DESTADDR"]) if "DESTADDR" in attrs else str(dest[0]),
                attrs.get("DESTPORT", str(dest[1] if len(dest) > 1 else "")))
        helo = attrs.get("HELO")
        self.helo = None if helo in (None, UNAVAILABLE, TEMPUNAVAIL) else _printable(helo or "")
        self.esmtp = attrs.get("PROTO") == "ESMTP"
        self.conn.xclient_helo = (self.helo, self.esmtp)
        if self.limits is not None:  # anvil now hears about the new client, if anything
            self.limits = self.limits.after_xclient(
                self.client_name, self.client_addr,
                xclient_authorized=self.svc.xclient_allowed(self.client_addr))

    def on_xforward(self, words: Sequence[str]) -> Reply:
        """XFORWARD (XFORWARD_README): for an authorized client, attributes of the
        original client for this transaction: stored with the message (``log_*``
        envelope attributes) and logged with ``client=``; Received: is not changed."""
        self.last_command = "XFORWARD"
        reply = self.xforward_reply(words)
        self.count("xforward", reply)
        return reply

    def xforward_reply(self, words: Sequence[str]) -> Reply:
        if not self.svc.xforward_allowed(self.client_addr):
            return replies.INSUFFICIENT_AUTHORIZATION
        attrs = parse_attributes(Command.XFORWARD, words, self.svc.inet_families)
        if isinstance(attrs, Reply):
            return attrs
        self.xforward.update({k: _printable(v) for k, v in attrs.items()})
        return replies.OK

    def sasl_attrs(self) -> dict[str, str]:
        """The queue file's SASL attributes, as Postfix's smtpd stores them
        (``sasl_method``, ``sasl_username``, ``sasl_sender``): only once authenticated,
        ``sasl_sender`` only with MAIL FROM's AUTH=."""
        if self.sasl_username is None:
            return {}
        return {"sasl_method": self.sasl_method or "", "sasl_username": self.sasl_username,
                **({"sasl_sender": self.sasl_sender} if self.sasl_sender is not None else {})}

    def xforward_attrs(self) -> dict[str, str]:
        """The queue file's forwarded-client attributes (Postfix's ``log_client_name``,
        ``log_client_address``, ``log_client_port``, ``log_helo_name``,
        ``log_protocol_name``, ``log_message_origin``, ``log_ident``): the XFORWARD value
        when given, else this session's own."""
        x = self.xforward
        if not x:
            return {}
        addr = x.get("ADDR")
        return {
            "log_client_name": x.get("NAME", self.client_name),
            "log_client_address": address_value(addr) if addr else self.client_addr,
            "log_client_port": x.get("PORT", str(self.client_port)),
            "log_helo_name": x.get("HELO", self.helo or ""),
            "log_protocol_name": x.get("PROTO", self.protocol),
            "log_message_origin": (x["SOURCE"] if x.get("SOURCE", UNAVAILABLE) != UNAVAILABLE
                                   else "REMOTE"),
            **({"log_ident": x["IDENT"]} if "IDENT" in x else {}),
        }

    def xforward_log(self) -> str:
        """What ``client=`` adds after XFORWARD: ``, orig_queue_id=ID, orig_client=N[A]``."""
        attrs = self.xforward_attrs()
        if not attrs:
            return ""
        ident = f", orig_queue_id={attrs['log_ident']}" if "log_ident" in attrs else ""
        return (f"{ident}, orig_client={attrs['log_client_name']}"
                f"[{attrs['log_client_address']}]")

    # --- TLS (this region: the STARTTLS engineer's) ------------------------------------

    def on_starttls(self) -> Reply:
        """STARTTLS the core let through (no argument, no TLS yet, no transaction)."""
        self.last_command = "STARTTLS"
        if not self.svc.tls.offered:
            reply = replies.STARTTLS_NOT_OFFERED
        elif self.svc.tls.context is None:
            reply = replies.TLS_NOT_AVAILABLE
        else:
            reply = replies.STARTTLS_GO
            self.tls_pending = True
        self.count("starttls", reply)
        return reply

    async def start_tls(self) -> None:
        """After ``220 2.0.0 Ready to start TLS``: flush it, drop what the client sent
        before its handshake, shake hands, forget HELO and the transaction (RFC 3207 4.2).

        Raises ``stream.PeerGone`` (failed handshake, logged) or ``stream.PeerTimeout``.
        """
        self.tls_pending = False
        # Nothing more is read as plaintext: what follows the 220 is the ClientHello,
        # left in the kernel for the TLS layer.
        cast(asyncio.Transport, self.writer.transport).pause_reading()
        await self.flush()
        discard_buffered(self.reader)  # the core dropped its own buffer at the 220
        context = self.svc.tls.context
        assert context is not None
        writer = self.writer
        await self.handshake(lambda t: writer.start_tls(context, ssl_handshake_timeout=t))
        if not self.client_certificate_ok():
            return
        self.abort_transaction()
        self.helo = None
        self.esmtp = False

    async def wrapper_handshake(self, sock: socket.socket) -> bool:
        """smtps: TLS on the accepted socket before the greeting, the TLS layer reading
        from the first byte; False when the service has no usable certificate."""
        context = self.svc.tls.context
        if context is None:  # refused at start; kept for a file gone since
            self.log.warning(
                f"Wrapper-mode request dropped from {self.client} for service "
                f"{self.svc.name}. TLS context initialization failed.")
            return False
        loop = asyncio.get_running_loop()
        protocol = asyncio.StreamReaderProtocol(self.reader)

        async def accept(t: float) -> None:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, sock, ssl=context, ssl_handshake_timeout=t)
            self._writer = asyncio.StreamWriter(transport, protocol, self.reader, loop)

        await self.handshake(accept)
        self.wrapped = None  # the transport owns the socket now
        self.conn.tls_active = True
        return self.client_certificate_ok()

    def client_certificate_ok(self) -> bool:
        """smtpd_tls_req_ccert (at level encrypt): after the handshake, a client without a
        trusted certificate is logged ``NOQUEUE: abort: TLS from CLIENT: …`` and told
        ``421 4.7.1`` (Postfix 3.7's smtpd); the session then ends. True to go on."""
        assert self.tls is not None
        why = self.tls.missing_ccert
        if not self.svc.tls.policy.req_ccert or why is None:
            return True
        self.log.info(f"NOQUEUE: abort: TLS from {self.client}: {why}")
        self.send(replies.ccert_required(self.svc.hostname, why))
        self.closing = True
        return False

    async def handshake(self, shake: Callable[[float], Awaitable[None]]) -> None:
        """Run ``shake(ssl_handshake_timeout)`` within smtpd_starttls_timeout; one log
        line when it fails (``SSL_accept error from …``); ``self.tls`` set when done."""
        timeout = self.svc.tls.policy.handshake_timeout
        try:
            async with asyncio.timeout(timeout):  # ours first: asyncio's is a fallback
                await shake(timeout + 5)
        except TimeoutError:
            raise stream.PeerTimeout() from None
        except (ssl.SSLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else str(exc)
            self.log.info(f"SSL_accept error from {self.client}: {reason or 'lost connection'}")
            raise stream.PeerGone(reason) from None
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:  # the transport closed under the handshake
            raise stream.PeerGone("lost connection")
        policy = self.svc.tls.policy
        sni = self.svc.tls.sni.outcome(ssl_object) if self.svc.tls.sni is not None else None
        if sni is not None and not sni.matched:
            if sni.problem:
                self.log.warning(f"TLS SNI {sni.name} from {self.client}: {sni.problem}")
            self.log.info(f"TLS SNI {sni.name} from {self.client} not matched, "
                          f"using default chain")
        self.tls = TlsInfo.from_ssl_object(
            ssl_object, digest=policy.fingerprint_digest,
            verify_error=verify.verify_error(ssl_object),
            sni=sni.name if sni is not None and sni.matched else "",
            ccert_asked=policy.ask_ccert)
        if self.tls.verify_error and policy.req_ccert:
            # Postfix 3.7 names the failure only where a trusted certificate is required.
            self.log.info(f"certificate verification failed for {self.client}: "
                          f"{self.tls.verify_error}")
        if policy.loglevel >= 1:
            self.log.info(self.tls.established(self.client))
        refused = None if ssl_object.session_reused else await self.limit(Request.NEWTLS)
        if refused is not None:
            self.send(refused)  # said inside TLS; then the session ends
            self.closing = True
            if self.counts["starttls_ok"]:
                self.counts["starttls_ok"] -= 1  # Postfix's starttls=0/1


def discard_buffered(reader: asyncio.StreamReader) -> int:
    """Drop the bytes ``reader`` holds that nobody has read; returns how many.

    Bytes that arrive before a TLS handshake are plaintext, whoever sent them: after
    STARTTLS they must never be read as if they came inside TLS. asyncio's StreamReader
    has no public way to empty itself, so its buffer (a bytearray) is cleared here; a
    test (``test_tls.py``, injection) checks that it still works.
    """
    buffered = getattr(reader, "_buffer", None)
    if not isinstance(buffered, bytearray):
        raise TypeError("asyncio.StreamReader without its _buffer: cannot discard plaintext")
    count = len(buffered)
    buffered.clear()
    return count

def _printable(text: str) -> str:
    """``text`` with what is not printable replaced by ``?`` (Postfix's printable())."""
    return "".join(c if c.isprintable() else "?" for c in text)
