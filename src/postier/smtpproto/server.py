"""The sans-IO SMTP server protocol core: bytes in, events out, replies in, bytes out.

Follows RFC 5321 (commands, sequencing, DATA transparency: section 4.5.2), RFC 2920
(PIPELINING), RFC 1870 (SIZE), RFC 3207 (STARTTLS), RFC 4954 (AUTH) and Postfix
smtpd(8) (reply texts, tolerance: strict_rfc821_envelopes = no, smtpd_helo_required,
line_length_limit, smtpd_forbidden_commands, smtpd_forbid_bare_newline = normalize).

Usage, modelled on h11::

    conn = ServerConnection(message_size_limit=10240000)
    out = conn.send(replies.greeting(banner))
    conn.receive_data(data)              # b"" means the client closed
    while (event := conn.next_event()) is not NEED_DATA:
        ... out += conn.send(reply)      # one reply per event (DataChunk excepted)

Every event that expects a reply is queued; ``send`` pops the oldest and the reply
code decides the next state (``_TRANSITIONS``: the one place that owns them). A
command whose outcome changes the state (HELO, MAIL, RCPT, DATA, …) holds further
parsing until it is answered, so pipelined input after DATA is neither parsed as
commands nor as content before the shell answered the DATA.

End of DATA is ONLY ``<CR><LF>.<CR><LF>`` (SMTP smuggling, CVE-2023-51764):
the "." line must start right after a CRLF (or be the first content line) and end
in CRLF. A bare LF ends a *content* line (it becomes "\\n", like Postfix's
"normalize") but a line that follows a bare LF is never a candidate for the end of
data and is not dot-unstuffed either: "\\n.\\r\\n" is the content line "." kept
verbatim. A bare CR is ordinary content. Command lines may end in CRLF or bare LF.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Iterable

from postier.smtpproto import events as ev
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply


class State(enum.Enum):
    IDLE = "IDLE"  # no mail transaction
    MAIL = "MAIL"  # MAIL accepted, no recipient accepted yet
    RCPT = "RCPT"  # at least one recipient accepted
    DATA = "DATA"  # receiving message content
    AUTH = "AUTH"  # a 334 challenge was sent: the next line is a SASL response
    CLOSED = "CLOSED"


ANY = 0  # any reply class, in _TRANSITIONS

# (state or None for "any state", command, reply class 2/3/4/5 or ANY) -> next state.
# Looked up most specific first; no entry: the state does not change. A 221 or 421
# reply to anything closes the connection (checked before the table).
_TRANSITIONS: dict[tuple[State | None, str, int], State] = {
    (None, "HELO", 2): State.IDLE,  # HELO/EHLO resets any transaction
    (None, "RSET", 2): State.IDLE,
    (None, "QUIT", ANY): State.CLOSED,
    (State.IDLE, "MAIL", 2): State.MAIL,
    (State.MAIL, "RCPT", 2): State.RCPT,
    (State.RCPT, "RCPT", 2): State.RCPT,
    (State.RCPT, "DATA", 3): State.DATA,
    (State.DATA, "DATAEND", ANY): State.IDLE,
    (State.IDLE, "STARTTLS", 2): State.IDLE,
    (State.IDLE, "AUTH", 3): State.AUTH,
    (State.AUTH, "AUTHLINE", 3): State.AUTH,
    (State.AUTH, "AUTHLINE", ANY): State.IDLE,
    (State.AUTH, "ERROR", ANY): State.IDLE,
}

# Commands whose reply may change the state: nothing after them is parsed until
# they are answered. NOOP, VRFY and core-refused commands do not hold parsing.
_HOLDING = frozenset({"HELO", "MAIL", "RCPT", "DATA", "DATAEND", "RSET", "QUIT", "STARTTLS",
                      "AUTH", "AUTHLINE"})

# RFC 5321 4.1.1.2:  mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
# (Postfix also takes "MAIL FROM: <a>", "mail from:a@b" and other case/space variants)
_MAIL_FROM = re.compile(r"FROM:\s*(.*)", re.IGNORECASE | re.DOTALL)
# RFC 5321 4.1.1.3:  rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
#                           Forward-path ) [SP Rcpt-parameters] CRLF
_RCPT_TO = re.compile(r"TO:\s*(.*)", re.IGNORECASE | re.DOTALL)
# RFC 5321 4.1.2:  Path = "<" [ A-d-l ":" ] Mailbox ">"
#                  Quoted-string = DQUOTE *QcontentSMTP DQUOTE
#                  quoted-pairSMTP = %d92 %d32-126
# Postfix (strict_rfc821_envelopes = no) also takes a path without "<>"; either way
# "<", ">" and white space may appear only inside a quoted local part.
_ADDR_CHARS = r'(?:"(?:[^"\\\r\n]|\\.)*"|[^<>"\s])'
_BRACKETED = re.compile(rf"<({_ADDR_CHARS}*)>")
_BARE = re.compile(rf"({_ADDR_CHARS}+)")
# RFC 5321 4.1.2:  A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain
_SOURCE_ROUTE = re.compile(r"@[^,:\s]+(?:,@[^,:\s]+)*:")
# RFC 5321 4.1.2:  esmtp-param = esmtp-keyword ["=" esmtp-value]
#                  esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
#                  esmtp-value = 1*(%d33-60 / %d62-126)   (RFC 6531: also UTF-8)
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([^=\s\x00-\x1f\x7f]+))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

DEFAULT_FORBIDDEN_COMMANDS = ("CONNECT", "GET", "POST")


class ServerConnection:
    """One SMTP server session's protocol state; no I/O, no clock."""

    def __init__(
        self,
        *,
        max_line_length: int = 2048,
        message_size_limit: int = 10240000,
        helo_required: bool = False,
        forbidden_commands: Iterable[str] = DEFAULT_FORBIDDEN_COMMANDS,
        data_partial_limit: int = 8192,
    ) -> None:
        """``max_line_length``: Postfix line_length_limit for command lines.
        ``message_size_limit``: content bytes (0: no limit). ``data_partial_limit``: how
        much of an unfinished content line is held before it is passed on as a chunk."""
        self.max_line_length = max_line_length
        self.message_size_limit = message_size_limit
        self.helo_required = helo_required
        self.forbidden_commands = frozenset(c.upper() for c in forbidden_commands)
        self._partial_limit = max(data_partial_limit, 16)
        self._buf = bytearray()
        self._eof = False
        self._state = State.IDLE
        self._pending: deque[str] = deque()
        self._discarding = False  # skipping the rest of a too-long command line
        self.helo_name: str | None = None
        self.esmtp = False
        self.tls_active = False
        self.authenticated = False
        self.rcpt_count = 0
        self._last_helo: tuple[str, bool] = ("", False)  # the HELO/EHLO awaiting its reply
        # content state
        self._line_start = True  # the next content byte starts a line after a CRLF
        self._size = 0
        self._too_big = False
        self._data_done = False
        self._commands: dict[str, Callable[[str], ev.Event]] = {
            "HELO": self._helo, "EHLO": self._ehlo, "MAIL": self._mail, "RCPT": self._rcpt,
            "DATA": self._data, "RSET": self._rset, "NOOP": self._noop, "QUIT": self._quit,
            "VRFY": self._vrfy, "STARTTLS": self._starttls, "AUTH": self._auth,
        }

    # --- public API ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def helo_seen(self) -> bool:
        return self.helo_name is not None

    @property
    def pending(self) -> int:
        """How many events are waiting for their reply."""
        return len(self._pending)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the client; ``b""`` means the client closed its side."""
        if not data:
            self._eof = True
        elif self._state is not State.CLOSED:
            self._buf += data

    def input_pending(self) -> bool:
        """True when the client sent bytes beyond the commands taken so far (pipelining)."""
        return bool(self._buf)

    def next_event(self) -> ev.Event | ev.NeedData:
        if self._state is State.CLOSED:
            return ev.Closed()
        if any(cmd in _HOLDING for cmd in self._pending):
            return ev.NEED_DATA
        if self._state is State.DATA:
            return self._next_content_event()
        return self._next_line_event()

    def send(self, reply: Reply) -> bytes:
        """The bytes for ``reply``, which answers the oldest unanswered event (or is
        unsolicited: the greeting, a 421); the reply code drives the state."""
        command = self._pending.popleft() if self._pending else ""
        self._transition(command, reply)
        return reply.to_bytes()

    # --- state transitions --------------------------------------------------------

    def _transition(self, command: str, reply: Reply) -> None:
        code, cls = reply.code, reply.code // 100
        before = self._state
        if code in (221, 421):
            after = State.CLOSED
        else:
            after = before
            for key in ((before, command, cls), (before, command, ANY),
                        (None, command, cls), (None, command, ANY)):
                if key in _TRANSITIONS:
                    after = _TRANSITIONS[key]
                    break
        self._state = after
        # side effects of an accepted command
        if cls == 2:
            if command == "HELO":
                self.helo_name = self._last_helo[0]
                self.esmtp = self._last_helo[1]
            elif command == "STARTTLS" and after is State.IDLE:
                # RFC 3207 4.2: forget everything learnt before TLS, and never run
                # commands the client sent before the handshake (they were plaintext).
                self._buf.clear()
                self.tls_active = True
                self.helo_name = None
                self.esmtp = False
            elif command in ("AUTH", "AUTHLINE"):
                self.authenticated = True
        if after in (State.IDLE, State.MAIL):
            self.rcpt_count = 0
        if command == "RCPT" and cls == 2 and after is State.RCPT:
            self.rcpt_count += 1
        if after is State.DATA and before is not State.DATA:
            self._line_start = True
            self._size = 0
            self._too_big = False
            self._data_done = False
        if after is State.CLOSED:
            self._buf.clear()
            self._pending.clear()

    def _queue(self, command: str, event: ev.Event) -> ev.Event:
        self._pending.append(command)
        return event

    def _error(self, reply: Reply, command: str = "") -> ev.Event:
        return self._queue("ERROR" if reply.code not in (221, 421) else "QUIT",
                           ev.ProtocolError(reply, command))

    # --- command lines ------------------------------------------------------------

    def _next_line_event(self) -> ev.Event | ev.NeedData:
        buf = self._buf
        if self._discarding:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return self._at_eof()
            del buf[: end + 1]
            self._discarding = False
        end = buf.find(b"\n", 0, self.max_line_length + 2)
        if end < 0:
            if len(buf) > self.max_line_length + 1:
                end = buf.find(b"\n", self.max_line_length + 2)
                if end < 0:
                    buf.clear()
                    self._discarding = True
                else:
                    del buf[: end + 1]
                return self._error(replies.LINE_TOO_LONG)
            return self._at_eof()
        line = bytes(buf[:end])
        del buf[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line_length:
            return self._error(replies.LINE_TOO_LONG)
        if self._state is State.AUTH:
            return self._queue("AUTHLINE",
                               ev.AuthLine(line.decode("utf-8", "surrogateescape").strip()))
        return self._command(line)

    def _at_eof(self) -> ev.Event | ev.NeedData:
        if self._eof:
            self._buf.clear()
            self._state = State.CLOSED
            return ev.Closed()
        return ev.NEED_DATA

    def _command(self, raw: bytes) -> ev.Event:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(replies.BAD_UTF8)
        line = line.strip(" \t")
        if not line:
            return self._error(replies.BAD_SYNTAX)
        verb, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip(" ")
        if not verb.isascii():
            return self._error(replies.UNRECOGNIZED)
        verb = verb.upper()
        if verb in self.forbidden_commands:
            return self._error(replies.FORBIDDEN_COMMAND, verb)
        handler = self._commands.get(verb)
        if handler is None:
            return self._error(replies.UNRECOGNIZED)
        return handler(rest)

    def _helo(self, rest: str) -> ev.Event:
        return self._hello(rest, extended=False)

    def _ehlo(self, rest: str) -> ev.Event:
        return self._hello(rest, extended=True)

    def _hello(self, rest: str, *, extended: bool) -> ev.Event:
        # RFC 5321 4.1.1.1:  ehlo = "EHLO" SP ( Domain / address-literal ) CRLF
        #                    helo = "HELO" SP Domain CRLF
        # Postfix takes the whole rest of the line (white space collapsed).
        verb = "EHLO" if extended else "HELO"
        name = " ".join(rest.split())
        if not name:
            return self._error(replies.EHLO_SYNTAX if extended else replies.HELO_SYNTAX, verb)
        self._last_helo = (name, extended)
        return self._queue("HELO", ev.Helo(name, extended))

    def _mail(self, rest: str) -> ev.Event:
        if self.helo_required and self.helo_name is None:
            return self._error(replies.HELO_FIRST, "MAIL")
        if self._state in (State.MAIL, State.RCPT):
            return self._error(replies.NESTED_MAIL, "MAIL")
        m = _MAIL_FROM.fullmatch(rest)
        if m is None or not m.group(1):
            return self._error(replies.MAIL_SYNTAX, "MAIL")
        parsed = _parse_path(m.group(1))
        if parsed is None:
            return self._error(replies.BAD_SENDER_SYNTAX, "MAIL")
        address, params_text = parsed
        params = _parse_params(params_text)
        if isinstance(params, Reply):
            return self._error(params, "MAIL")
        return self._queue("MAIL", ev.Mail(address, params))

    def _rcpt(self, rest: str) -> ev.Event:
        if self._state not in (State.MAIL, State.RCPT):
            return self._error(replies.NEED_MAIL, "RCPT")
        m = _RCPT_TO.fullmatch(rest)
        if m is None or not m.group(1):
            return self._error(replies.RCPT_SYNTAX, "RCPT")
        parsed = _parse_path(m.group(1))
        if parsed is None or not parsed[0]:
            return self._error(replies.BAD_RECIPIENT_SYNTAX, "RCPT")
        address, params_text = parsed
        params = _parse_params(params_text)
        if isinstance(params, Reply):
            return self._error(params, "RCPT")
        return self._queue("RCPT", ev.Rcpt(address, params))

    def _data(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.4:  data = "DATA" CRLF
        if self._state is State.IDLE:
            return self._error(replies.NEED_RCPT, "DATA")
        if self._state is State.MAIL:
            return self._error(replies.NO_VALID_RECIPIENTS, "DATA")
        if rest:
            return self._error(replies.DATA_SYNTAX, "DATA")
        return self._queue("DATA", ev.Data())

    def _rset(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.5:  rset = "RSET" CRLF
        if rest:
            return self._error(replies.RSET_SYNTAX, "RSET")
        return self._queue("RSET", ev.Rset())

    def _noop(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.9:  noop = "NOOP" [ SP String ] CRLF
        return self._queue("NOOP", ev.Noop())

    def _quit(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.10:  quit = "QUIT" CRLF  (Postfix ignores an argument)
        return self._queue("QUIT", ev.Quit())

    def _vrfy(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.6:  vrfy = "VRFY" SP String CRLF  (the shell checks the syntax,
        # after disable_vrfy_command, as Postfix does)
        return self._queue("VRFY", ev.Vrfy(rest))

    def _starttls(self, rest: str) -> ev.Event:
        # RFC 3207 4:  STARTTLS takes no parameters
        if rest:
            return self._error(replies.STARTTLS_SYNTAX, "STARTTLS")
        if self.tls_active:
            return self._error(replies.TLS_ALREADY_ACTIVE, "STARTTLS")
        if self._state is not State.IDLE:
            return self._error(replies.TRANSACTION_IN_PROGRESS, "STARTTLS")
        return self._queue("STARTTLS", ev.StartTls())

    def _auth(self, rest: str) -> ev.Event:
        # RFC 4954 4:  "AUTH" SP sasl-mech [SP initial-response] CRLF
        args = rest.split()
        if not args or len(args) > 2:
            return self._error(replies.AUTH_SYNTAX, "AUTH")
        if self.authenticated:
            return self._error(replies.ALREADY_AUTHENTICATED, "AUTH")
        if self._state is not State.IDLE:
            return self._error(replies.TRANSACTION_IN_PROGRESS, "AUTH")
        initial = args[1] if len(args) == 2 else None
        return self._queue("AUTH", ev.Auth(args[0].upper(), initial))

    # --- message content ----------------------------------------------------------

    def _next_content_event(self) -> ev.Event | ev.NeedData:
        while True:
            if self._data_done:
                return self._queue("DATAEND", ev.DataEnd(self._too_big, self._size))
            chunk = self._take_content()
            if chunk is None:
                if self._eof:
                    return self._at_eof()
                return ev.NEED_DATA
            if not chunk:
                continue
            self._size += len(chunk)
            if self.message_size_limit and self._size > self.message_size_limit:
                self._too_big = True
            if not self._too_big:
                return ev.DataChunk(chunk)

    def _take_content(self) -> bytes | None:
        """The next run of content (converted), b"" when only state changed, None for
        "need more bytes". Sets ``_data_done`` on the end-of-data line."""
        buf = self._buf
        if self._line_start and buf[:1] == b".":
            # the first byte of a line that follows a CRLF (or starts the content)
            if len(buf) < 3 and bytes(buf[:2]) in (b".", b".\r"):
                return None
            if buf[:3] == b".\r\n":
                del buf[:3]
                self._data_done = True
                return b""
            del buf[:1]  # RFC 5321 4.5.2: drop the stuffed dot
            self._line_start = False
            return b""
        last = buf.rfind(b"\n")
        if last < 0:
            if len(buf) <= self._partial_limit:
                return None
            # a long line: pass most of it on, keeping a final CR (it may start a CRLF)
            n = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            chunk = bytes(buf[:n])
            del buf[:n]
            self._line_start = False
            return chunk
        region = bytes(buf[: last + 1])
        end = region.find(b"\r\n.\r\n")
        if end >= 0:
            region = region[: end + 2]
            del buf[: end + 5]
            self._data_done = True
        else:
            del buf[: last + 1]
        self._line_start = region.endswith(b"\r\n")
        # lines after a CRLF lose their leading dot; then CRLF -> LF (bare LF stays LF)
        return region.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")


def _parse_path(text: str) -> tuple[str, str] | None:
    """``(address, parameters text)`` from what follows "FROM:"/"TO:", or None if bad."""
    m = _BRACKETED.match(text) if text.startswith("<") else _BARE.match(text)
    if m is None:
        return None
    rest = text[m.end():]
    if rest and not rest[0].isspace():
        return None
    address = m.group(1)
    if _CONTROL.search(address):
        return None
    route = _SOURCE_ROUTE.match(address)
    if route is not None:  # RFC 5321 4.1.2: source routes are accepted and ignored
        address = address[route.end():]
    return address, rest.strip()


def _parse_params(text: str) -> dict[str, str | None] | Reply:
    params: dict[str, str | None] = {}
    for token in text.split():
        m = _PARAM.fullmatch(token)
        if m is None:
            return replies.unsupported_option(token)
        params[m.group(1).upper()] = m.group(2)
    return params
