"""The sans-IO SMTP/LMTP client protocol core: commands in, bytes out; bytes in, replies out.

Follows RFC 5321 (sections 3.1, 4.1, 4.2 replies, 4.3.2 sequencing, 4.5.2 transparency),
RFC 2920 (PIPELINING), RFC 2033 (LMTP: LHLO, one reply per accepted recipient after
the end of data), RFC 3030 (BDAT), RFC 3207 (STARTTLS), RFC 4954 (AUTH), RFC 2034 /
RFC 3463 (enhanced status codes) and Postfix smtp(8) (its diagnostics).

Usage, modelled on h11::

    conn = ClientConnection(lmtp=False)
    conn.receive_data(data)                       # b"" means the server closed
    while (event := conn.next_event()) is not NEED_DATA:
        ...                                       # Greeting, HeloReply, CommandReply, …
    sock.send(conn.send(Helo("client.example", extended=True)))

Each command sent waits for one reply, matched in order (``pending``); several may be
in flight when the server offers PIPELINING (always for LMTP), but never after a
command that must end a group (RFC 2920 3.1: EHLO/HELO/LHLO, DATA, NOOP, QUIT,
STARTTLS, AUTH): MAIL + RCPT* + DATA go in one write. The state advances on ``send``
as if each command succeeds, and replies correct it (``_ON_REPLY``): a refused MAIL
ends the transaction, a 354 opens the content, a 421 closes everything. A command
that is not legal in the current state raises ``LocalProtocolError`` and changes
nothing. A server that breaks the protocol (no code, a code that changes inside a
multi-line reply, an over-long line, bytes that are not text, closing mid-reply)
gives one ``RemoteError`` event and the core is closed after it.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

from postier.smtpproto import events as ev
from postier.smtpproto.buffer import DEFAULT_LINE_LENGTH_LIMIT, LineBuffer
from postier.smtpproto.readers import MalformedReply, ReplyReader, parse_ehlo
from postier.smtpproto.replies import Reply
from postier.smtpproto.writers import DotStuffer, command_line


class LocalProtocolError(Exception):
    """Our bug: a command sent where the protocol does not allow it."""


class ClientState(enum.Enum):
    GREETING = "GREETING"  # waiting for the server's greeting
    HELLO = "HELLO"  # greeting received (or STARTTLS done): EHLO/HELO/LHLO next
    READY = "READY"  # HELO accepted, no mail transaction
    TRANSACTION = "TRANSACTION"  # MAIL sent and not refused
    CONTENT = "CONTENT"  # DATA answered 354: content, then DataEnd
    BDAT = "BDAT"  # BDAT chunks sent, not the LAST one yet
    AUTH = "AUTH"  # AUTH answered 334: a SASL response (AuthLine) next
    CLOSED = "CLOSED"  # QUIT answered, a 421, the server closed, or a RemoteError


S = ClientState
_SESSION = frozenset({S.HELLO, S.READY, S.TRANSACTION})

# command -> the states it may be sent in.
_ALLOWED: dict[str, frozenset[ClientState]] = {
    "EHLO": _SESSION, "HELO": _SESSION, "LHLO": _SESSION,
    "MAIL": frozenset({S.READY}),
    "RCPT": frozenset({S.TRANSACTION}),
    "DATA": frozenset({S.TRANSACTION}),
    "CONTENT": frozenset({S.CONTENT}),
    "DATAEND": frozenset({S.CONTENT}),
    "BDAT": frozenset({S.TRANSACTION, S.BDAT}),
    "RSET": _SESSION | {S.BDAT},
    "NOOP": _SESSION,
    "QUIT": _SESSION | {S.BDAT},
    "STARTTLS": frozenset({S.READY}),
    "AUTH": frozenset({S.READY}),
    "AUTHLINE": frozenset({S.AUTH}),
}

# command -> the service extension (EHLO keyword) it needs.
_EXTENSION: dict[str, str] = {"STARTTLS": "STARTTLS", "AUTH": "AUTH", "BDAT": "CHUNKING"}

# command -> the state once it is sent, as if it succeeds ("RSET": see _after_rset).
_ON_SEND: dict[str, ClientState] = {
    "MAIL": S.TRANSACTION,
    "DATAEND": S.READY,
    "BDAT": S.BDAT,
    "BDATLAST": S.READY,
}

ANY = 0  # any reply class
# (command, reply class 2/3/4/5 or ANY) -> the state once the reply arrives; most
# specific first; no entry: no change. A 421 to anything closes (checked first).
_ON_REPLY: dict[tuple[str, int], ClientState] = {
    ("GREETING", ANY): S.HELLO,
    ("EHLO", 2): S.READY,
    ("HELO", 2): S.READY,
    ("LHLO", 2): S.READY,
    ("MAIL", 4): S.READY,
    ("MAIL", 5): S.READY,
    ("DATA", 3): S.CONTENT,
    ("STARTTLS", 2): S.HELLO,
    ("AUTH", 3): S.AUTH,
    ("AUTH", ANY): S.READY,
    ("AUTHLINE", 3): S.AUTH,
    ("AUTHLINE", ANY): S.READY,
    ("QUIT", ANY): S.CLOSED,
}

# RFC 2920 3.1: these end a group; nothing is sent until their reply arrives.
_GROUP_END = frozenset({"GREETING", "EHLO", "HELO", "LHLO", "DATA", "NOOP", "QUIT",
                        "STARTTLS", "AUTH", "AUTHLINE"})

# RFC 5321 4.1.2:  esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


@dataclass
class _Pending:
    """A command waiting for its reply; ``recipients``: for the end of data, the
    recipients still owed a reply (LMTP), filled when the first one arrives."""

    command: str
    argument: str = ""
    recipients: list[str | None] | None = None


class ClientConnection:
    """One SMTP (or LMTP) client session's protocol state; no I/O, no clock."""

    def __init__(self, *, lmtp: bool = False,
                 max_line_length: int = DEFAULT_LINE_LENGTH_LIMIT) -> None:
        """``lmtp``: speak LMTP (LHLO; one end-of-data reply per accepted recipient).
        ``max_line_length``: the longest reply line accepted, without its CRLF (Postfix
        line_length_limit); longer is a ``RemoteError``."""
        self.lmtp = lmtp
        self._buf = LineBuffer(max_line_length)
        self._reader = ReplyReader()
        self._eof = False
        self._state = S.GREETING
        self._pending: deque[_Pending] = deque([_Pending("GREETING")])
        self._helo_done = False
        self._rcpts_sent = 0
        self._accepted: list[str] = []
        self._stuffer: DotStuffer | None = None
        self.extensions: dict[str, str] = {}
        self.tls_active = False
        self.authenticated = False

    # --- public API ---------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def pending(self) -> int:
        """How many replies are awaited (the greeting counts as one)."""
        return len(self._pending)

    @property
    def pipelining(self) -> bool:
        """Commands may be sent before the replies to earlier ones (RFC 2920; LMTP always)."""
        return self.lmtp or "PIPELINING" in self.extensions

    @property
    def accepted_recipients(self) -> tuple[str, ...]:
        """The recipients of the current transaction that RCPT accepted, in order."""
        return tuple(self._accepted)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the server; ``b""`` means the server closed its side."""
        if not data:
            self._eof = True
        elif self._state is not S.CLOSED:
            self._buf.feed(data)

    def next_event(self) -> ev.ClientEvent | ev.NeedData:
        """The next reply event, ``NEED_DATA``, or ``Closed()`` once closed (for ever)."""
        if self._state is S.CLOSED:
            return ev.Closed()
        result = self._reader.read(self._buf)
        if result is None:
            return self._at_eof() if self._eof else ev.NEED_DATA
        if isinstance(result, MalformedReply):
            return self._fail(ev.RemoteProblem.MALFORMED_REPLY, result.text,
                              result.problem.value)
        return self._on_reply(result)

    def send(self, command: ev.Command) -> bytes:
        """The bytes for ``command``. Raises ``LocalProtocolError`` (nothing changes)
        when the command is not legal now or cannot be written (a CR or LF inside)."""
        name = self._name(command)
        self._check(name, command)
        try:
            wire = self._write(command)
        except ValueError as e:
            raise LocalProtocolError(str(e)) from e
        self._sent(name, command)
        return wire

    # --- sending --------------------------------------------------------------------

    def _name(self, command: ev.Command) -> str:
        match command:
            case ev.Helo(extended=True):
                return "LHLO" if self.lmtp else "EHLO"
            case ev.Helo():
                if self.lmtp:
                    raise LocalProtocolError("LMTP has no HELO: send Helo(name, extended=True)")
                return "HELO"
            case ev.Mail():
                return "MAIL"
            case ev.Rcpt():
                return "RCPT"
            case ev.Data():
                return "DATA"
            case ev.DataChunk():
                return "CONTENT"
            case ev.DataEnd():
                return "DATAEND"
            case ev.Bdat():
                return "BDAT"
            case ev.Rset():
                return "RSET"
            case ev.Noop():
                return "NOOP"
            case ev.Quit():
                return "QUIT"
            case ev.StartTls():
                return "STARTTLS"
            case ev.Auth():
                return "AUTH"
            case ev.AuthLine():
                return "AUTHLINE"
        raise LocalProtocolError(f"not a command: {command!r}")

    def _check(self, name: str, command: ev.Command) -> None:
        if self._state not in _ALLOWED[name]:
            raise LocalProtocolError(f"{name} not allowed in state {self._state.value}")
        needed = _EXTENSION.get(name)
        if needed is not None and needed not in self.extensions:
            raise LocalProtocolError(f"{name} needs {needed}, which the server did not offer")
        if name in ("DATA", "BDAT") and not self._rcpts_sent:
            raise LocalProtocolError(f"{name} before any RCPT")
        if name == "STARTTLS" and self.tls_active:
            raise LocalProtocolError("STARTTLS with TLS already active")
        if name == "AUTH" and self.authenticated:
            raise LocalProtocolError("AUTH when already authenticated")
        if self._pending:
            waiting = self._pending[-1].command
            if waiting in _GROUP_END or any(p.command in _GROUP_END for p in self._pending):
                raise LocalProtocolError(f"{name} before the reply to {waiting} (RFC 2920 3.1)")
            if not self.pipelining:
                raise LocalProtocolError(
                    f"{name} before the reply to {waiting}: the server did not offer PIPELINING")
        if isinstance(command, ev.Mail | ev.Rcpt):
            for keyword in command.params:
                if not _KEYWORD.fullmatch(keyword):
                    raise LocalProtocolError(f"bad {name} parameter keyword {keyword!r}")

    def _write(self, command: ev.Command) -> bytes:
        match command:
            case ev.Helo(name=helo_name):
                verb = "LHLO" if self.lmtp else ("EHLO" if command.extended else "HELO")
                return command_line(f"{verb} {helo_name}")
            case ev.Mail(address=address, params=params):
                return command_line(f"MAIL FROM:<{address}>{_params(params)}")
            case ev.Rcpt(address=address, params=params):
                return command_line(f"RCPT TO:<{address}>{_params(params)}")
            case ev.Data():
                return command_line("DATA")
            case ev.DataChunk(data=data):
                assert self._stuffer is not None
                return self._stuffer.write(data)
            case ev.DataEnd():
                assert self._stuffer is not None
                return self._stuffer.end()
            case ev.Bdat(data=data, last=last):
                return command_line(f"BDAT {len(data)}{' LAST' if last else ''}") + data
            case ev.Rset():
                return command_line("RSET")
            case ev.Noop():
                return command_line("NOOP")
            case ev.Quit():
                return command_line("QUIT")
            case ev.StartTls():
                return command_line("STARTTLS")
            case ev.Auth(mechanism=mechanism, initial=initial):
                # RFC 4954 4: an empty initial response is sent as "="
                tail = "" if initial is None else f" {initial or '='}"
                return command_line(f"AUTH {mechanism}{tail}")
            case ev.AuthLine(line=line):
                return command_line(line)
        raise LocalProtocolError(f"not a command: {command!r}")

    def _sent(self, name: str, command: ev.Command) -> None:
        if name == "CONTENT":
            return  # content expects no reply
        if name == "BDAT" and isinstance(command, ev.Bdat) and command.last:
            name = "BDATLAST"
        argument = command.address if isinstance(command, ev.Mail | ev.Rcpt) else ""
        self._pending.append(_Pending(name, argument))
        if name == "MAIL":
            self._rcpts_sent = 0
            self._accepted = []
        elif name == "RCPT":
            self._rcpts_sent += 1
        elif name in ("DATAEND", "BDATLAST"):
            self._stuffer = None
        if name == "RSET":
            self._state = S.READY if self._helo_done else S.HELLO
        elif name in _ON_SEND:
            self._state = _ON_SEND[name]

    # --- receiving ------------------------------------------------------------------

    def _on_reply(self, reply: Reply) -> ev.ClientEvent:
        if not self._pending:
            if reply.code == 421:
                self._close()
                return ev.CommandReply("", reply)
            return self._fail(ev.RemoteProblem.UNEXPECTED_REPLY, ev.wire_text(reply))
        pending = self._pending[0]
        name = pending.command
        event: ev.ClientEvent
        if name in ("DATAEND", "BDATLAST"):
            if pending.recipients is None:
                owed: list[str | None] = list(self._accepted) if self.lmtp else []
                pending.recipients = owed or [None]
            recipient = pending.recipients.pop(0)
            if not pending.recipients:
                self._pending.popleft()
            event = ev.DataEndReply(reply, recipient, name)
        else:
            self._pending.popleft()
            if name == "GREETING":
                event = ev.Greeting(reply)
            elif name in ("EHLO", "HELO", "LHLO"):
                extensions = parse_ehlo(reply) if reply.code // 100 == 2 and name != "HELO" \
                    else {}
                if reply.code // 100 == 2:
                    self.extensions = extensions
                    self._helo_done = True
                event = ev.HeloReply(name, reply, extensions)
            else:
                event = ev.CommandReply(name, reply, pending.argument)
        self._after_reply(name, pending, reply)
        return event

    def _after_reply(self, name: str, pending: _Pending, reply: Reply) -> None:
        cls = reply.code // 100
        if reply.code == 421:
            self._close()
            return
        if name == "RCPT" and cls == 2:
            self._accepted.append(pending.argument)
        elif name == "STARTTLS" and cls == 2:
            # RFC 3207 4.2: forget what was learnt before TLS; bytes the server sent
            # after its 220 came before the handshake and are not to be trusted.
            self._buf.clear()
            self.tls_active = True
            self.extensions = {}
            self._helo_done = False
        elif name in ("AUTH", "AUTHLINE") and cls == 2:
            self.authenticated = True
        after = _ON_REPLY.get((name, cls), _ON_REPLY.get((name, ANY)))
        if after is S.CLOSED:
            self._close()
        elif after is not None and not (name == "MAIL" and self._state is not S.TRANSACTION):
            self._state = after
        if after is S.CONTENT:
            self._stuffer = DotStuffer()

    def _at_eof(self) -> ev.ClientEvent:
        if self._pending:
            return self._fail(ev.RemoteProblem.LOST_CONNECTION, "", "",
                              self._pending[0].command)
        if self._state in (S.CONTENT, S.BDAT) or self._reader.partial:
            return self._fail(ev.RemoteProblem.LOST_CONNECTION, "", "", "CONTENT")
        self._close()
        return ev.Closed()

    def _fail(self, problem: ev.RemoteProblem, text: str, reason: str = "",
              command: str | None = None) -> ev.RemoteError:
        if command is None:
            command = self._pending[0].command if self._pending else ""
        self._close()
        return ev.RemoteError(problem, command, text, reason)

    def _close(self) -> None:
        self._state = S.CLOSED
        self._pending.clear()
        self._buf.clear()


def _params(params: dict[str, str | None]) -> str:
    return "".join(f" {k}" if v is None else f" {k}={v}" for k, v in params.items())
