"""The events of the sans-IO SMTP cores: commands (what the server core hands its shell,
and what a client shell hands ``ClientConnection.send``) and replies received by the
client core, with their Postfix-style diagnostics.

Follows RFC 5321 sections 4.1 (commands) and 4.2 (replies), RFC 2033 (LMTP), RFC 3030
(BDAT), RFC 4954 (AUTH), RFC 3207 (STARTTLS), Postfix smtpd(8)'s command set and the
diagnostics of Postfix smtp(8) ("host X said: … (in reply to RCPT TO command)", "lost
connection with X while sending MAIL FROM").

Server side: every command event except ``DataChunk`` and ``Closed`` expects exactly
one reply, passed to ``ServerConnection.send``; ``ProtocolError`` carries the reply the
core itself chose (the shell just sends it). Client side, as in h11, the same command
classes go the other way: ``ClientConnection.send(Mail(...))`` gives the bytes the
server core reads back as ``Mail(...)``; ``DataChunk`` takes any line ends there, and
``DataEnd()``'s fields are not used.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from postier.smtpproto.replies import Reply


class NeedData(enum.Enum):
    """``next_event()`` has nothing to give until more bytes arrive (or a reply is sent)."""

    NEED_DATA = "NEED_DATA"


NEED_DATA = NeedData.NEED_DATA


@dataclass(frozen=True)
class Helo:
    """HELO (``extended`` False) or EHLO (True); ``name`` is the rest of the line."""

    name: str
    extended: bool


@dataclass(frozen=True)
class Mail:
    """MAIL FROM; ``address`` is "" for the null sender ``<>``. Param keys upper-cased."""

    address: str
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Rcpt:
    """RCPT TO; param keys upper-cased."""

    address: str
    params: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    """DATA: answer 354 (``replies.DATA_GO``) to receive the content, anything else to refuse."""


@dataclass(frozen=True)
class DataChunk:
    """Message content: lines end in LF, dot-stuffing removed. Expects no reply."""

    data: bytes


@dataclass(frozen=True)
class DataEnd:
    """The end-of-data ``<CR><LF>.<CR><LF>``; ``size`` counts the content bytes seen.

    ``too_big``: size exceeded message_size_limit; chunks past the limit were dropped.
    (Sent by a client, the fields are ignored: ``DataEnd()``.)
    """

    too_big: bool = False
    size: int = 0


@dataclass(frozen=True)
class ChunkEnd:
    """The end of one ``BDAT size [LAST]`` chunk (RFC 3030), server side; expects a reply.

    The chunk's octets came before it as ``DataChunk`` events (CRLF -> LF, nothing
    else changed; none when the chunk was discarded). ``size``: the chunk's octets as
    sent; ``last``: it was ``BDAT … LAST``; ``total``: the message so far as CRLF lines
    (Postfix's ``Ok: N bytes queued``; a final line end is added after LAST when
    missing). ``refusal``: the core refused the chunk (read and dropped) — send it; a
    refused LAST ends the transaction, the shell forgets its message. Otherwise answer
    ``replies.bdat_ok(size)``, or for LAST the outcome of the message."""

    size: int
    last: bool
    total: int = 0
    refusal: Reply | None = None


@dataclass(frozen=True)
class Rset:
    pass


@dataclass(frozen=True)
class Noop:
    pass


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class Vrfy:
    """VRFY; ``argument`` is the rest of the line, possibly empty (the shell answers syntax)."""

    argument: str


@dataclass(frozen=True)
class StartTls:
    """STARTTLS: answer 220 and start the handshake. The core drops any input buffered
    after the command (CVE-2011-0411 style injection) and forgets HELO/EHLO."""


@dataclass(frozen=True)
class Auth:
    """AUTH MECHANISM [initial-response]; answer 334 to receive ``AuthLine`` events."""

    mechanism: str
    initial: str | None


@dataclass(frozen=True)
class AuthLine:
    """A SASL response line sent after a 334 challenge (``*`` means the client aborts)."""

    line: str


@dataclass(frozen=True)
class Etrn:
    """ETRN (RFC 1985): ``site`` is the one argument as sent (``@``/``#`` prefix kept)."""

    site: str


@dataclass(frozen=True)
class Xclient:
    """XCLIENT (Postfix's XCLIENT_README): the ``NAME=value`` words as sent."""

    arguments: tuple[str, ...]


@dataclass(frozen=True)
class Xforward:
    """XFORWARD (Postfix's XFORWARD_README): the ``NAME=value`` words as sent."""

    arguments: tuple[str, ...]


@dataclass(frozen=True)
class ProtocolError:
    """Something the core refused by itself; send ``reply``. ``command`` is the verb
    (upper case, e.g. "MAIL") or "" when none was recognised, for logs and counters.
    ``non_smtp``: the line, when it was a non-SMTP command (smtpd_forbidden_commands)."""

    reply: Reply
    command: str = ""
    non_smtp: str | None = None


@dataclass(frozen=True)
class Closed:
    """The client closed the connection, or QUIT/421 ended the session."""


Event = (
    Helo | Mail | Rcpt | Data | DataChunk | DataEnd | ChunkEnd | Rset | Noop | Quit | Vrfy
    | StartTls | Auth | AuthLine | ProtocolError | Closed | Etrn | Xclient | Xforward
)


# --- client side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bdat:
    """BDAT (RFC 3030), sent by a client: ``BDAT <len(data)> [LAST]`` then ``data`` as
    is (no dot-stuffing, no line-end conversion)."""

    data: bytes
    last: bool = False


# What a client shell may pass to ClientConnection.send.
Command = (
    Helo | Mail | Rcpt | Data | DataChunk | DataEnd | Bdat | Rset | Noop | Quit | StartTls
    | Auth | AuthLine
)

# command name (as in ClientConnection: "MAIL", "DATAEND", …) -> (what the client was
# doing while it waited for the reply, the request named in "in reply to …"): the words
# of Postfix smtp(8)'s xfer_states and xfer_request.
PHASES: dict[str, tuple[str, str]] = {
    "GREETING": ("receiving the initial server greeting", "initial server greeting"),
    "EHLO": ("performing the EHLO handshake", "EHLO command"),
    "HELO": ("performing the HELO handshake", "HELO command"),
    "LHLO": ("performing the LHLO handshake", "LHLO command"),
    "STARTTLS": ("receiving the STARTTLS response", "STARTTLS command"),
    # unsure: Postfix's words while it waits for an AUTH reply
    "AUTH": ("performing SASL authentication", "AUTH command"),
    "AUTHLINE": ("performing SASL authentication", "AUTH command"),
    "MAIL": ("sending MAIL FROM", "MAIL FROM command"),
    "RCPT": ("sending RCPT TO", "RCPT TO command"),
    "DATA": ("sending DATA command", "DATA command"),
    "CONTENT": ("sending message body", "message body"),
    "BDAT": ("sending message body", "BDAT command"),
    "DATAEND": ("sending end of data -- message may be sent more than once",
                "end of DATA command"),
    "BDATLAST": ("sending end of data -- message may be sent more than once",
                 "BDAT LAST command"),
    "RSET": ("sending RSET", "RSET command"),
    "NOOP": ("sending NOOP", "NOOP command"),
    "QUIT": ("sending QUIT", "QUIT command"),
}


def wire_text(reply: Reply) -> str:
    """A reply as it was on the wire, lines joined by a space, as Postfix smtp(8) logs
    it: ``550-5.7.26 first line 550 5.7.26 last line``."""
    return reply.to_bytes().decode("utf-8", "replace").replace("\r\n", " ").strip()


@dataclass(frozen=True)
class Greeting:
    """The server's greeting: 220 to go on, anything else (554, 421) refuses."""

    reply: Reply

    def diagnostic(self, host: str) -> str:
        """``host X refused to talk to me: 554 …`` (meaningful when not 2xx)."""
        return f"host {host} refused to talk to me: {wire_text(self.reply)}"


@dataclass(frozen=True)
class HeloReply:
    """The reply to EHLO, HELO or LHLO (``command``). ``extensions``: the service
    extensions of a 2xx EHLO/LHLO reply, ``{KEYWORD: parameters}`` (``readers.parse_ehlo``);
    empty for HELO or a refusal."""

    command: str
    reply: Reply
    extensions: dict[str, str] = field(default_factory=dict)

    def diagnostic(self, host: str) -> str:
        return _said(host, self.reply, self.command)


@dataclass(frozen=True)
class CommandReply:
    """The reply to MAIL, RCPT, DATA, BDAT (not LAST), RSET, NOOP, QUIT, STARTTLS, AUTH
    or an AUTH response ("AUTHLINE"). ``argument``: the address of MAIL and RCPT, else "".
    ``command`` is "" for an unsolicited 421 (the server is closing)."""

    command: str
    reply: Reply
    argument: str = ""

    def diagnostic(self, host: str) -> str:
        return _said(host, self.reply, self.command)


@dataclass(frozen=True)
class DataEndReply:
    """The reply to the end of data (or BDAT LAST). LMTP (RFC 2033 4.2): one per
    recipient accepted at RCPT, in RCPT order, ``recipient`` naming it; SMTP: one,
    ``recipient`` None."""

    reply: Reply
    recipient: str | None = None
    command: str = "DATAEND"  # or "BDATLAST"

    def diagnostic(self, host: str) -> str:
        return _said(host, self.reply, self.command)


class RemoteProblem(enum.Enum):
    LOST_CONNECTION = "lost connection"
    MALFORMED_REPLY = "malformed reply"
    UNEXPECTED_REPLY = "unexpected reply"  # a reply nothing was waiting for


@dataclass(frozen=True)
class RemoteError:
    """The server broke the protocol; the client core is closed after it.

    ``command``: what the client was waiting for (a ``PHASES`` key, "" when nothing).
    ``text``: the offending line, printable ("" for a lost connection). ``reason``: why
    a reply is malformed ("no reply code", ``readers.ReplyProblem``'s words)."""

    problem: RemoteProblem
    command: str
    text: str = ""
    reason: str = ""

    def diagnostic(self, host: str) -> str:
        """Postfix smtp(8)'s words: ``lost connection with X while sending RCPT TO``,
        ``host X said: garbage (in reply to MAIL FROM command)``."""
        stage, request = PHASES.get(self.command, ("talking to the server", ""))
        if self.problem is RemoteProblem.LOST_CONNECTION:
            return f"lost connection with {host} while {stage}"
        text = self.text or f"[{self.reason}]"
        if self.command == "GREETING":
            return f"host {host} refused to talk to me: {text}"
        if not request:
            return f"host {host} said: {text} (unexpected reply)"
        return f"host {host} said: {text} (in reply to {request})"


ClientEvent = Greeting | HeloReply | CommandReply | DataEndReply | RemoteError | Closed


def _said(host: str, reply: Reply, command: str) -> str:
    request = PHASES.get(command, ("", "unsolicited reply"))[1]
    return f"host {host} said: {wire_text(reply)} (in reply to {request})"
