"""The sans-IO SMTP server protocol core: bytes in, events out, replies in, bytes out.

Follows RFC 5321 (commands, sequencing, DATA transparency: section 4.5.2), RFC 2920
(PIPELINING), RFC 1870 (SIZE), RFC 3030 (CHUNKING, BINARYMIME), RFC 3207 (STARTTLS),
RFC 4954 (AUTH) and Postfix
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

Whether a command may be given at all in the current state (MAIL needs HELO when
helo_required, RCPT needs MAIL, DATA needs RCPT, no nested MAIL, …) is decided by
``_PRECONDITIONS`` and ``_REFUSED``, the tables beside ``_TRANSITIONS``; handlers only
read their command's syntax.

Lines come from ``buffer.LineBuffer`` (bounded); command syntax and content are read by
``readers`` (``read_command``, ``parse_path``, ``parse_params``, ``ContentReader``:
end of DATA is ONLY ``<CR><LF>.<CR><LF>``, see there). Command lines may end in CRLF or
bare LF.

ETRN, XCLIENT and XFORWARD (RFC 1985; Postfix's XCLIENT_README, XFORWARD_README): the
core checks HELO (ETRN under helo_required), that no transaction is under way and that
an argument is there; who may use them and what they do is the shell's. An XCLIENT
answered 220 starts over as a new session (no HELO, no transaction).

BDAT (RFC 3030, as Postfix 3.7's smtpd): ``BDAT size [LAST]`` is read whatever the
state, and its ``size`` octets are always taken off the wire (never parsed as commands),
passed on as ``DataChunk`` events or dropped; a ``ChunkEnd`` then expects the reply.
The first BDAT starts a BDAT sequence that lasts until LAST, RSET, HELO/EHLO or
STARTTLS; inside it MAIL, RCPT and DATA are refused ("… after BDAT"), and once a chunk
was refused (no recipient, ``BDAT 0`` without LAST, message_size_limit) every later
chunk is discarded ("Discarded N bytes after earlier error") up to LAST. A malformed
BDAT line is answered 521 and closes the session: its length is unknown.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Iterable

from postier.config.params import MESSAGE_SIZE_LIMIT
from postier.smtpproto import events as ev
from postier.smtpproto import replies
from postier.smtpproto.buffer import DEFAULT_LINE_LENGTH_LIMIT, TOO_LONG, LineBuffer
from postier.smtpproto.readers import (
    MAIL_FROM,
    RCPT_TO,
    ChunkReader,
    ContentReader,
    domain_syntax_ok,
    parse_params,
    parse_path,
    read_command,
)
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
    (None, "BDATLAST", ANY): State.IDLE,  # a LAST chunk ends the transaction, whatever
    (None, "BDATREFUSEDLAST", ANY): State.IDLE,  # the reply
    (None, "XCLIENT", 2): State.IDLE,  # 220: a new session for the client it names
}

# Commands whose reply may change the state: nothing after them is parsed until
# they are answered. NOOP, VRFY and core-refused commands do not hold parsing.
_HOLDING = frozenset({"HELO", "MAIL", "RCPT", "DATA", "DATAEND", "RSET", "QUIT", "STARTTLS",
                      "AUTH", "AUTHLINE", "BDAT", "BDATLAST", "BDATREFUSED",
                      "BDATREFUSEDLAST", "XCLIENT"})

# Replies that end the session (the client is told goodbye).
_CLOSING = (221, 421, 521)


class _Need(enum.Enum):
    """A fact about the session, beyond its state, that a command may need."""

    HELO = "HELO"  # HELO/EHLO seen, when helo_required (smtpd_helo_required)
    NO_TLS = "NO_TLS"  # TLS not active yet
    TLS = "TLS"  # TLS active, when tls_required (smtpd_tls_security_level = encrypt)
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"


# command -> (what it needs, the reply when it is missing), checked in this order before
# the state (_REFUSED).
# Under tls_required every command but EHLO/HELO, NOOP, QUIT and STARTTLS needs TLS
# (RFC 3207 4; Postfix also lets HELO through).
_PRECONDITIONS: dict[str, tuple[tuple[_Need, Reply], ...]] = {
    "MAIL": ((_Need.HELO, replies.HELO_FIRST), (_Need.TLS, replies.STARTTLS_FIRST)),
    "RCPT": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "DATA": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "BDAT": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "RSET": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "VRFY": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "STARTTLS": ((_Need.NO_TLS, replies.TLS_ALREADY_ACTIVE),),
    "AUTH": ((_Need.TLS, replies.STARTTLS_FIRST),
             (_Need.NOT_AUTHENTICATED, replies.ALREADY_AUTHENTICATED)),
    "ETRN": ((_Need.TLS, replies.STARTTLS_FIRST), (_Need.HELO, replies.ETRN_HELO_FIRST)),
    "XCLIENT": ((_Need.TLS, replies.STARTTLS_FIRST),),
    "XFORWARD": ((_Need.TLS, replies.STARTTLS_FIRST),),
}

# (state, command) -> the reply refusing that command in that state. Commands are only
# read in IDLE, MAIL and RCPT (DATA reads content, AUTH reads SASL responses).
_REFUSED: dict[tuple[State, str], Reply] = {
    (State.MAIL, "MAIL"): replies.NESTED_MAIL,
    (State.RCPT, "MAIL"): replies.NESTED_MAIL,
    (State.IDLE, "RCPT"): replies.NEED_MAIL,
    (State.IDLE, "DATA"): replies.NEED_RCPT,
    (State.MAIL, "DATA"): replies.NO_VALID_RECIPIENTS,
    (State.IDLE, "BDAT"): replies.NEED_RCPT,
    (State.MAIL, "BDAT"): replies.NO_VALID_RECIPIENTS,
    (State.MAIL, "STARTTLS"): replies.TRANSACTION_IN_PROGRESS,
    (State.RCPT, "STARTTLS"): replies.TRANSACTION_IN_PROGRESS,
    (State.MAIL, "AUTH"): replies.TRANSACTION_IN_PROGRESS,
    (State.RCPT, "AUTH"): replies.TRANSACTION_IN_PROGRESS,
    (State.MAIL, "ETRN"): replies.ETRN_IN_TRANSACTION,
    (State.RCPT, "ETRN"): replies.ETRN_IN_TRANSACTION,
    (State.MAIL, "XCLIENT"): replies.TRANSACTION_IN_PROGRESS,
    (State.RCPT, "XCLIENT"): replies.TRANSACTION_IN_PROGRESS,
    (State.MAIL, "XFORWARD"): replies.TRANSACTION_IN_PROGRESS,
    (State.RCPT, "XFORWARD"): replies.TRANSACTION_IN_PROGRESS,
}

# Commands whose syntax is checked before whether they are allowed (Postfix's order for
# STARTTLS; kept for AUTH so that no reply changes). Others: legality first.
# BDAT: its chunk must be read whatever happens, so it needs its size first.
_SYNTAX_FIRST = frozenset({"STARTTLS", "AUTH", "BDAT"})

# Inside a BDAT sequence (RFC 3030 2: no DATA once BDAT was used), after the state's
# own refusals (_REFUSED), as Postfix orders them.
_AFTER_BDAT: dict[str, Reply] = {
    "MAIL": replies.MAIL_AFTER_BDAT,
    "RCPT": replies.RCPT_AFTER_BDAT,
    "DATA": replies.DATA_AFTER_BDAT,
}

# The largest BDAT size Postfix takes (an off_t); more is a syntax error.
MAX_CHUNK_SIZE = 2**63 - 1

DEFAULT_FORBIDDEN_COMMANDS = ("CONNECT", "GET", "POST")

# Postfix's is_header(): a first word that looks like a message header label ("From:",
# "X-Foo:bar") is a non-SMTP command whatever smtpd_forbidden_commands says.
_HEADER_LABEL = re.compile(r"[!-9;-~]+:")


def _is_header(word: str) -> bool:
    return _HEADER_LABEL.match(word) is not None


class ServerConnection:
    """One SMTP server session's protocol state; no I/O, no clock."""

    def __init__(
        self,
        *,
        max_line_length: int = DEFAULT_LINE_LENGTH_LIMIT,
        message_size_limit: int = MESSAGE_SIZE_LIMIT.default_value(),
        helo_required: bool = False,
        tls_required: bool = False,
        forbidden_commands: Iterable[str] | Callable[[str], bool] = DEFAULT_FORBIDDEN_COMMANDS,
        data_partial_limit: int = 8192,
        resolve: Callable[[str], str] | None = None,
    ) -> None:
        """``max_line_length``: Postfix line_length_limit for command lines.
        ``message_size_limit``: content bytes (0: no limit). ``data_partial_limit``: how
        much of an unfinished content line is held before it is passed on as a chunk.
        ``tls_required``: commands other than EHLO/HELO, NOOP, QUIT and STARTTLS are
        refused with 530 until ``tls_active``. ``forbidden_commands`` (Postfix
        smtpd_forbidden_commands): verbs, or a predicate of the first word as sent; an
        unknown command it matches, or whose first word is a header label, is answered
        221 and ends the session (``ProtocolError.non_smtp`` holds the line).
        ``resolve``: trivial-rewrite's resolve step (``rewrite.resolve.routing_resolver``);
        as Postfix's smtpd, an address's domain syntax is checked once it is resolved
        (``x@@local`` and ``x%@local`` resolve to ``x@``: bad syntax)."""
        self.resolve = resolve
        self.message_size_limit = message_size_limit
        self.helo_required = helo_required
        self.tls_required = tls_required
        if callable(forbidden_commands):
            self.forbidden: Callable[[str], bool] = forbidden_commands
        else:
            verbs = frozenset(c.upper() for c in forbidden_commands)
            self.forbidden = lambda word: word.upper() in verbs
        self._partial_limit = data_partial_limit
        self._buf = LineBuffer(max_line_length)
        self._eof = False
        self._state = State.IDLE
        self._pending: deque[str] = deque()
        self.helo_name: str | None = None
        self.esmtp = False
        self.tls_active = False
        self.authenticated = False
        self.rcpt_count = 0
        self._last_helo: tuple[str, bool] = ("", False)  # the HELO/EHLO awaiting its reply
        # What an XCLIENT answered 220 presets (its HELO= name, PROTO=ESMTP): the shell
        # sets it before that reply.
        self.xclient_helo: tuple[str | None, bool] = (None, False)
        # The event next_event() just returned came from a line longer than
        # max_line_length: these are its first max_line_length bytes (Postfix logs
        # "request longer than N"); None otherwise.
        self.truncated_line: bytes | None = None
        # content state
        self._content = ContentReader(data_partial_limit)
        self._size = 0
        self._too_big = False
        # BDAT state: a sequence under way, a chunk of it refused, the message's reader,
        # the chunk being read (size, last, refusal) until its ChunkEnd is returned.
        self.bdat = False
        self._bdat_failed = False
        self._chunks = ChunkReader()
        self._chunk: tuple[int, bool, Reply | None] | None = None
        self._chunk_tail_sent = False
        # BODY=BINARYMIME on the MAIL awaiting its reply / of the transaction
        self._mail_binarymime = False
        self.binarymime = False
        self._commands: dict[str, Callable[[str], ev.Event | ev.NeedData]] = {
            "HELO": self._helo, "EHLO": self._ehlo, "MAIL": self._mail, "RCPT": self._rcpt,
            "DATA": self._data, "RSET": self._rset, "NOOP": self._noop, "QUIT": self._quit,
            "VRFY": self._vrfy, "STARTTLS": self._starttls, "AUTH": self._auth,
            "BDAT": self._bdat, "ETRN": self._etrn, "XCLIENT": self._xclient,
            "XFORWARD": self._xforward,
        }

    # --- public API ---------------------------------------------------------------

    @property
    def max_line_length(self) -> int:
        """Postfix line_length_limit: the longest command line, without its CRLF."""
        return self._buf.max_line_length

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
            self._buf.feed(data)

    def input_pending(self) -> bool:
        """True when the client sent bytes beyond the commands taken so far (pipelining)."""
        return bool(self._buf)

    def peek_input(self, n: int) -> bytes:
        """The first ``n`` bytes the client sent beyond the commands taken so far."""
        return self._buf.peek(n)

    def next_event(self) -> ev.Event | ev.NeedData:
        if self._state is State.CLOSED:
            return ev.Closed()
        if any(cmd in _HOLDING for cmd in self._pending):
            return ev.NEED_DATA
        if self._state is State.DATA:
            return self._next_content_event()
        if self._chunk is not None:
            return self._next_chunk_event()
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
        if code in _CLOSING:
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
            elif command == "MAIL":
                self.binarymime = self._mail_binarymime
            elif command == "XCLIENT":  # as after a new connection, HELO= preset
                self.helo_name, self.esmtp = self.xclient_helo
        if command == "BDAT" and cls != 2:  # the shell refused a chunk: drop the rest
            self._bdat_failed = True
        if command in ("BDATLAST", "BDATREFUSEDLAST") or (
                after is State.IDLE and command in ("HELO", "RSET", "STARTTLS", "XCLIENT")):
            self.bdat = False
            self._bdat_failed = False
        if after in (State.IDLE, State.MAIL):
            self.rcpt_count = 0
        if after is State.IDLE:
            self.binarymime = False
        if command == "RCPT" and cls == 2 and after is State.RCPT:
            self.rcpt_count += 1
        if after is State.DATA and before is not State.DATA:
            self._content = ContentReader(self._partial_limit)
            self._size = 0
            self._too_big = False
        if after is State.CLOSED:
            self._buf.clear()
            self._pending.clear()

    def _queue(self, command: str, event: ev.Event) -> ev.Event:
        self._pending.append(command)
        return event

    def _error(self, reply: Reply, command: str = "") -> ev.Event:
        return self._queue("ERROR" if reply.code not in _CLOSING else "QUIT",
                           ev.ProtocolError(reply, command))

    # --- command lines ------------------------------------------------------------

    def _next_line_event(self) -> ev.Event | ev.NeedData:
        self.truncated_line = None
        line = self._buf.next_line()
        if line is None:
            return self._at_eof()
        if line is TOO_LONG:
            # As Postfix's smtpd: the command is read up to line_length_limit, the rest
            # of the line is skipped, and what was read is acted on as the command.
            line = self.truncated_line = self._buf.overflow_head
        assert isinstance(line, bytes)
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

    def _command(self, raw: bytes) -> ev.Event | ev.NeedData:
        parsed = read_command(raw)
        if isinstance(parsed, Reply):
            return self._error(parsed)
        verb, rest = parsed
        handler = self._commands.get(verb)
        if handler is None:
            line = raw.decode("utf-8").strip(" \t")
            word = line.replace("\t", " ").partition(" ")[0]
            if _is_header(word) or self.forbidden(word):
                return self._queue("QUIT", ev.ProtocolError(replies.FORBIDDEN_COMMAND,
                                                            non_smtp=line))
            return self._error(replies.UNRECOGNIZED)
        if verb not in _SYNTAX_FIRST:
            refusal = self._refusal(verb)
            if refusal is not None:
                return self._error(refusal, verb)
        return handler(rest)

    def _refusal(self, verb: str) -> Reply | None:
        """The reply refusing ``verb`` now (``_PRECONDITIONS``, then ``_REFUSED``), or None."""
        for need, reply in _PRECONDITIONS.get(verb, ()):
            if not self._has(need):
                return reply
        refusal = _REFUSED.get((self._state, verb))
        if refusal is None and self.bdat:
            refusal = _AFTER_BDAT.get(verb)
        if refusal is None and verb == "DATA" and self.binarymime:
            refusal = replies.DATA_WITH_BINARYMIME
        return refusal

    def _has(self, need: _Need) -> bool:
        if need is _Need.HELO:
            return not self.helo_required or self.helo_name is not None
        if need is _Need.NO_TLS:
            return not self.tls_active
        if need is _Need.TLS:
            return not self.tls_required or self.tls_active
        return not self.authenticated

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

    def _resolved(self, address: str) -> str:
        return self.resolve(address) if self.resolve is not None and address else address

    def _mail(self, rest: str) -> ev.Event:
        m = MAIL_FROM.fullmatch(rest)
        if m is None or not m.group(1):
            return self._error(replies.MAIL_SYNTAX, "MAIL")
        parsed = parse_path(m.group(1))
        if parsed is None or not domain_syntax_ok(self._resolved(parsed[0])):
            return self._error(replies.BAD_SENDER_SYNTAX, "MAIL")
        address, params_text = parsed
        params = parse_params(params_text)
        if isinstance(params, Reply):
            return self._error(params, "MAIL")
        self._mail_binarymime = (params.get("BODY") or "").upper() == "BINARYMIME"
        return self._queue("MAIL", ev.Mail(address, params))

    def _rcpt(self, rest: str) -> ev.Event:
        m = RCPT_TO.fullmatch(rest)
        if m is None or not m.group(1):
            return self._error(replies.RCPT_SYNTAX, "RCPT")
        parsed = parse_path(m.group(1))
        if parsed is None or not parsed[0] or not domain_syntax_ok(self._resolved(parsed[0])):
            return self._error(replies.BAD_RECIPIENT_SYNTAX, "RCPT")
        address, params_text = parsed
        params = parse_params(params_text)
        if isinstance(params, Reply):
            return self._error(params, "RCPT")
        return self._queue("RCPT", ev.Rcpt(address, params))

    def _data(self, rest: str) -> ev.Event:
        # RFC 5321 4.1.1.4:  data = "DATA" CRLF
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
        refusal = self._refusal("STARTTLS")
        if refusal is not None:
            return self._error(refusal, "STARTTLS")
        return self._queue("STARTTLS", ev.StartTls())

    def _auth(self, rest: str) -> ev.Event:
        # RFC 4954 4:  "AUTH" SP sasl-mech [SP initial-response] CRLF
        args = rest.split()
        if not args or len(args) > 2:
            return self._error(replies.AUTH_SYNTAX, "AUTH")
        refusal = self._refusal("AUTH")
        if refusal is not None:
            return self._error(refusal, "AUTH")
        initial = args[1] if len(args) == 2 else None
        return self._queue("AUTH", ev.Auth(args[0].upper(), initial))

    def _etrn(self, rest: str) -> ev.Event:
        # RFC 1985 5:  etrn = "ETRN" SP [ "@" / "#" ] node-name  (the shell checks the name)
        args = rest.split()
        if len(args) != 1:
            return self._error(replies.ETRN_SYNTAX, "ETRN")
        return self._queue("ETRN", ev.Etrn(args[0]))

    def _xclient(self, rest: str) -> ev.Event:
        # XCLIENT_README:  "XCLIENT" 1*( SP attribute-name "=" attribute-value )
        if not rest.split():
            return self._error(replies.XCLIENT_SYNTAX, "XCLIENT")
        return self._queue("XCLIENT", ev.Xclient(tuple(rest.split())))

    def _xforward(self, rest: str) -> ev.Event:
        # XFORWARD_README:  "XFORWARD" 1*( SP attribute-name "=" attribute-value )
        if not rest.split():
            return self._error(replies.XFORWARD_SYNTAX, "XFORWARD")
        return self._queue("XFORWARD", ev.Xforward(tuple(rest.split())))

    def _bdat(self, rest: str) -> ev.Event | ev.NeedData:
        # RFC 3030 2:  bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF
        #              chunk-size = 1*DIGIT;  end-marker = "LAST"
        args = rest.split()
        if (not 1 <= len(args) <= 2 or not (args[0].isascii() and args[0].isdigit())
                or int(args[0]) > MAX_CHUNK_SIZE
                or (len(args) == 2 and args[1].upper() != "LAST")):
            return self._error(replies.BDAT_SYNTAX, "BDAT")
        size, last = int(args[0]), len(args) == 2
        if not self.bdat:  # the first chunk of a message
            self.bdat = True
            self._bdat_failed = False
            self._chunks = ChunkReader()
        refusal: Reply | None
        if size == 0 and not last:
            refusal = replies.NULL_BDAT
        elif self._bdat_failed:
            refusal = replies.bdat_discarded(size)
        else:
            refusal = self._refusal("BDAT")
            if (refusal is None and self.message_size_limit
                    and self._chunks.octets + size > self.message_size_limit):
                refusal = replies.CHUNK_TOO_BIG
        if refusal is not None:
            self._bdat_failed = True
        self._chunk = (size, last, refusal)
        self._chunk_tail_sent = False
        self._chunks.start(size)
        return self._next_chunk_event()

    def _next_chunk_event(self) -> ev.Event | ev.NeedData:
        assert self._chunk is not None
        size, last, refusal = self._chunk
        while self._chunks.left:
            piece = self._chunks.read(self._buf, keep=refusal is None)
            if piece is None:
                return self._at_eof() if self._eof else ev.NEED_DATA
            if piece:
                return ev.DataChunk(piece)
        if last and refusal is None and not self._chunk_tail_sent:
            self._chunk_tail_sent = True
            tail = self._chunks.finish()
            if tail:
                return ev.DataChunk(tail)
        self._chunk = None
        command = "BDAT" + ("REFUSED" if refusal is not None else "") + ("LAST" if last else "")
        return self._queue(command, ev.ChunkEnd(size, last, self._chunks.total, refusal))

    # --- message content ----------------------------------------------------------

    def _next_content_event(self) -> ev.Event | ev.NeedData:
        while True:
            if self._content.done:
                return self._queue("DATAEND", ev.DataEnd(self._too_big, self._size))
            chunk = self._content.read(self._buf)
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
