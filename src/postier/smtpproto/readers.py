"""Readers of the SMTP wire: command lines and message content (for the server core),
reply lines and EHLO keywords (for the client core).

Follows RFC 5321 sections 4.1 (command syntax), 4.2 (reply lines), 4.5.2 (transparency)
and 4.1.1.1 (EHLO keywords), RFC 3463 / RFC 2034 (enhanced status codes), RFC 1869
(service extensions), and Postfix smtpd(8) / smtp(8) tolerance
(strict_rfc821_envelopes = no, smtpd_forbid_bare_newline = normalize).

Every reader takes a ``buffer.LineBuffer`` (or one line) and returns data: no I/O.
"""

from __future__ import annotations

import encodings.idna
import encodings.punycode  # loaded here: the running smtpd cannot import a codec late
import enum
import re
from dataclasses import dataclass

from postier.rewrite.address import invalid_hostname_problem, parse_address, valid_hostname
from postier.smtpproto import replies
from postier.smtpproto.buffer import TOO_LONG, LineBuffer
from postier.smtpproto.replies import Reply

# --- command lines (server) -----------------------------------------------------------

# RFC 5321 4.1.1.2:  mail = "MAIL FROM:" Reverse-path [SP Mail-parameters] CRLF
# (Postfix also takes "MAIL FROM: <a>", "mail from:a@b" and other case/space variants)
MAIL_FROM = re.compile(r"FROM:\s*(.*)", re.IGNORECASE | re.DOTALL)
# RFC 5321 4.1.1.3:  rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" /
#                           Forward-path ) [SP Rcpt-parameters] CRLF
RCPT_TO = re.compile(r"TO:\s*(.*)", re.IGNORECASE | re.DOTALL)
# RFC 5321 4.1.2:  Path = "<" [ A-d-l ":" ] Mailbox ">"
#                  A-d-l = At-domain *( "," At-domain ); At-domain = "@" Domain
#                  Quoted-string = DQUOTE *QcontentSMTP DQUOTE
# Postfix (strict_rfc821_envelopes = no) reads the path with its RFC 822 tokenizer
# (tok822): white space and (comments) outside quotes are dropped, a backslash escapes
# one character, a "quoted string" and a [domain literal] are one token each; more
# than one address (a "," or ";" outside the source route) is bad syntax.
_SPECIALS = frozenset('@.,;:<>"[]()\\')
# A quoted part whose text needs no quotes once the domain is split at the last "@"
# (Postfix's internal form): ``"victim@example.org"@example.com`` is echoed unquoted.
_NEEDS_NO_QUOTES = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+")
# RFC 5321 4.1.2:  esmtp-param = esmtp-keyword ["=" esmtp-value]
#                  esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
#                  esmtp-value = 1*(%d33-60 / %d62-126)   (RFC 6531: also UTF-8)
_PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([^=\s\x00-\x1f\x7f]+))?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def read_command(raw: bytes) -> tuple[str, str] | Reply:
    """``(VERB, rest)`` from one command line (without its line end): the verb upper
    case, ``rest`` with surrounding spaces removed; or the reply refusing the line
    (bad UTF-8, empty line, a verb that is not ASCII)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return replies.BAD_UTF8
    line = line.strip(" \t")
    if not line:
        return replies.BAD_SYNTAX
    verb, _, rest = line.replace("\t", " ").partition(" ")
    if not verb.isascii():
        return replies.UNRECOGNIZED
    return verb.upper(), rest.strip(" ")


class _Tok(enum.Enum):
    ATOM = "atom"  # letters and escaped characters, as the address keeps them
    QUOTED = "quoted"  # the text of a "quoted string", escapes resolved
    LITERAL = "literal"  # a [domain literal], brackets included
    SPECIAL = "special"  # one of @ . , ; : < >


def _split_path(text: str) -> tuple[str, str] | None:
    """The address text of a path (inside ``<…>``, or up to the first white space for
    a path without brackets) and what follows it; None when a ``<``, a quote, a
    comment or a literal is left open. Quotes, comments, literals and backslashes
    hide ``>`` and white space."""
    bracketed = text.startswith("<")
    i = 1 if bracketed else 0
    start = i
    quoted = False
    comment = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if quoted:
            quoted = c != '"'
        elif comment:
            comment += {"(": 1, ")": -1}.get(c, 0)
        elif c == '"':
            quoted = True
        elif c == "(":
            comment = 1
        elif bracketed and c == "<":
            return None
        elif bracketed and c == ">":
            return text[start:i], text[i + 1:]
        elif not bracketed and c.isspace():
            break
        i += 1
    if bracketed or quoted or comment:
        return None
    return text[start:i], text[i:]


def _tokenize(text: str) -> list[tuple[_Tok, str]] | None:
    """tok822's tokens of an address text, white space and comments dropped; None for
    a backslash at the very end."""
    tokens: list[tuple[_Tok, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif c == '"':
            out: list[str] = []
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                    if i >= n:
                        return None
                out.append(text[i])
                i += 1
            tokens.append((_Tok.QUOTED, "".join(out)))
            i += 1
        elif c == "[":
            end = text.find("]", i)
            if end < 0:  # tok822 closes a literal left open: <a@[1.2.3.4> is a@[1.2.3.4]
                end = n
                text += "]"
            tokens.append((_Tok.LITERAL, text[i:end + 1]))
            i = end + 1
        elif c in "@.,;:<>":
            tokens.append((_Tok.SPECIAL, c))
            i += 1
        else:
            atom: list[str] = []
            while i < n and (text[i] == "\\" or (text[i] not in _SPECIALS
                                                   and not text[i].isspace())):
                if text[i] == "\\":
                    i += 1
                    if i >= n:
                        return None
                atom.append(text[i])
                i += 1
            if atom:
                tokens.append((_Tok.ATOM, "".join(atom)))
            else:  # a lone "]" or ")"
                tokens.append((_Tok.SPECIAL, c))
                i += 1
    return tokens


def _address_of(tokens: list[tuple[_Tok, str]]) -> str | None:
    """The address the tokens spell, or None when they are not one address: a source
    route (``@a,@b:``) is dropped (RFC 5321 4.1.2: accepted and ignored), then no
    ``,`` ``;`` ``<`` ``>`` or stray special may remain (a ``:`` may: ``a:b@c`` is one
    address to Postfix), nor two words side by side (``a b@c``). A quoted part keeps
    its quotes only when it needs them. Empty parts (``a@@b``) are the resolve step's
    business (``ServerConnection.resolve``)."""
    if tokens and tokens[0] == (_Tok.SPECIAL, "@"):
        colon = next((k for k, t in enumerate(tokens) if t == (_Tok.SPECIAL, ":")), -1)
        if colon >= 0:
            tokens = tokens[colon + 1:]
    out: list[str] = []
    word = False  # the previous token was a word (atom, quoted string, literal)
    for kind, value in tokens:
        if kind is not _Tok.SPECIAL:
            if word:  # two words side by side: two addresses (<a b@c>, <"a""b"@c>)
                return None
            word = True
        else:
            word = False
        if kind is _Tok.SPECIAL:
            if value not in "@.:":
                return None
            out.append(value)
        elif kind is _Tok.QUOTED:
            if _NEEDS_NO_QUOTES.fullmatch(value):
                out.append(value)
            else:
                out.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:  # an atom or a [literal], as sent
            out.append(value)
    return "".join(out)


def parse_path(text: str) -> tuple[str, str] | None:
    """``(address, parameters text)`` from what follows "FROM:"/"TO:", or None if bad.

    The address is "" for ``<>``. As Postfix's smtpd (extract_addr with tok822): white
    space and RFC 822 comments are dropped (``< a@b (c) >`` is ``a@b``), a backslash
    escapes one character (``a\\@b@c`` is ``a@b@c``), a quoted part that needs no
    quotes loses them (``"a@b"@c`` is ``a@b@c``), a source route is dropped
    (``<@:a@b>`` is ``a@b``), a literal left open is closed (``<a@[1.2.3.4>``); more
    than one address (``<a@b,c@d>``, ``;``), a stray ``<``/``>`` or a control
    character is bad; ``a@@b`` is read as is (the server's domain check, after the
    resolve step, refuses it in a local domain)."""
    split = _split_path(text)
    if split is None:
        return None
    inside, rest = split
    if _CONTROL.search(inside):
        return None
    if rest and not rest[0].isspace():
        return None
    tokens = _tokenize(inside)
    if tokens is None:
        return None
    if not text.startswith("<") and not tokens:
        return None
    address = _address_of(tokens)
    if address is None:
        return None
    return address, rest.strip()


def domain_syntax_ok(address: str) -> bool:
    """Postfix smtpd's address check (smtpd_check_addr): the domain after the last
    unquoted ``@``, if any, is a valid address literal (``[1.2.3.4]``, ``[IPv6:…]``) or,
    one final dot dropped, a valid hostname (not all numeric: ``a@1.2.3.4`` is bad).
    Non-ASCII domains are left to SMTPUTF8 handling. ``""`` (``<>``) is fine."""
    parsed = parse_address(address)
    domain = parsed.domain
    if domain is None or not domain.isascii():
        return True
    if domain.startswith("["):
        return invalid_hostname_problem(domain) is None
    return valid_hostname(domain[:-1] if domain.endswith(".") else domain)


def utf8_domain_syntax_ok(domain: str) -> bool:
    """Is ``domain`` (UTF-8, RFC 6531 3.3 U-labels) a valid domain for a SMTPUTF8
    transaction? As Postfix's smtpd with ``smtputf8_enable = yes``: every label non-empty
    and without a leading or trailing ``-`` (UTS #46 CheckHyphens), convertible to an
    A-label (IDNA 2003, Python's ``encodings.idna``), and the ASCII form a valid hostname. An
    address literal (``[…]``) holding non-ASCII is never valid."""
    name = domain[:-1] if domain.endswith(".") else domain
    if not name or name.startswith("["):
        return False
    labels = name.split(".")
    if any(not label or label[0] == "-" or label[-1] == "-" for label in labels):
        return False
    try:
        ascii_name = ".".join(encodings.idna.ToASCII(label).decode("ascii") for label in labels)
    except UnicodeError:
        return False
    return valid_hostname(ascii_name)


class Params(dict[str, str | None]):
    """MAIL/RCPT parameters by keyword; ``repeated`` holds the keywords given more than
    once (the last value is kept), for the checks that refuse a repetition (RFC 3461)."""

    repeated: frozenset[str] = frozenset()


def parse_params(text: str) -> Params | Reply:
    """MAIL/RCPT parameters ``{KEYWORD: value or None}`` (keywords upper case), or the
    ``555 Unsupported option`` reply for the first malformed one."""
    params = Params()
    repeated: set[str] = set()
    for token in text.split():
        m = _PARAM.fullmatch(token)
        if m is None:
            return replies.unsupported_option(token)
        key = m.group(1).upper()
        if key in params:
            repeated.add(key)
        params[key] = m.group(2)
    params.repeated = frozenset(repeated)
    return params


# --- message content (server) -----------------------------------------------------------


class ContentReader:
    """Turns DATA content on the wire into message bytes: CRLF -> LF, dots unstuffed,
    up to the end-of-data line; one reader per DATA command.

    End of data is ONLY ``<CR><LF>.<CR><LF>`` (SMTP smuggling, CVE-2023-51764): the "."
    line must start right after a CRLF (or be the first content line) and end in CRLF.
    A bare LF ends a *content* line (it becomes "\\n", like Postfix's "normalize") but a
    line that follows a bare LF is never a candidate for the end of data and is not
    dot-unstuffed either: "\\n.\\r\\n" is the content line "." kept verbatim. A bare CR
    is ordinary content. An unfinished line longer than ``partial_limit`` bytes is
    passed on in pieces.
    """

    def __init__(self, partial_limit: int = 8192) -> None:
        self._partial_limit = max(partial_limit, 16)
        self._line_start = True  # the next byte starts a line after a CRLF
        self.done = False  # the end-of-data line was consumed

    def read(self, buf: LineBuffer) -> bytes | None:
        """The next run of content (converted), ``b""`` when only the reader's state
        changed (call again), None for "need more bytes". Sets ``done`` on the
        end-of-data line; after that, returns None and leaves ``buf`` alone."""
        if self.done:
            return None
        if self._line_start and buf.peek(1) == b".":
            # the first byte of a line that follows a CRLF (or starts the content)
            head = buf.peek(3)
            if head in (b".", b".\r"):
                return None
            if head == b".\r\n":
                buf.skip(3)
                self.done = True
                return b""
            buf.skip(1)  # RFC 5321 4.5.2: drop the stuffed dot
            self._line_start = False
            return b""
        last = buf.rfind(b"\n")
        if last < 0:
            if len(buf) <= self._partial_limit:
                return None
            # a long line: pass most of it on, keeping a final CR (it may start a CRLF)
            n = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
            self._line_start = False
            return buf.take(n)
        region = buf.peek(last + 1)
        end = region.find(b"\r\n.\r\n")
        if end >= 0:
            region = region[: end + 2]
            buf.skip(end + 5)
            self.done = True
        else:
            buf.skip(last + 1)
        self._line_start = region.endswith(b"\r\n")
        # lines after a CRLF lose their leading dot; then CRLF -> LF (bare LF stays LF)
        return region.replace(b"\r\n.", b"\r\n").replace(b"\r\n", b"\n")


class ChunkReader:
    """Turns the chunks of one BDAT message (RFC 3030 2) into message bytes: octets
    taken as sent — no dot handling, no end-of-data marker — with CRLF -> LF, the line
    end the queue file keeps (a CR that ends one piece waits for the next, which may
    be in the next chunk). One reader per message; ``start(size)`` per chunk.

    ``octets``: the octets of the accepted chunks so far (message_size_limit counts
    these); ``left``: what remains of the current chunk."""

    def __init__(self) -> None:
        self.octets = 0
        self.left = 0
        self._cr = False  # a CR held back: it may start a CRLF
        self._last = b""  # the last content byte passed on (or held)

    def start(self, size: int) -> None:
        self.left = size

    def read(self, buf: LineBuffer, *, keep: bool = True) -> bytes | None:
        """The next piece of the current chunk, converted; ``b""`` when only state
        changed or ``keep`` is False (a discarded chunk: the octets are dropped and
        not counted); None when the chunk is complete or no byte is buffered."""
        n = min(len(buf), self.left)
        if n == 0:
            return None
        piece = buf.take(n)
        self.left -= n
        if not keep:
            return b""
        self.octets += n
        self._last = piece[-1:]
        data = b"\r" + piece if self._cr else piece
        self._cr = data.endswith(b"\r")
        if self._cr:
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def finish(self) -> bytes:
        """After LAST: a held CR, and a final LF when the content does not end in a
        line end (Postfix ends the last line)."""
        tail = b"\r" if self._cr else b""
        self._cr = False
        if self._last and self._last != b"\n":
            tail += b"\n"
        return tail

    @property
    def total(self) -> int:
        """The message's size as Postfix's ``Ok: N bytes queued`` counts it: the
        octets, plus the CRLF that ends an unterminated last line."""
        return self.octets + (2 if self._last and self._last != b"\n" else 0)


# --- replies (client) -------------------------------------------------------------------

# RFC 5321 4.2:  Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#                             Reply-code [ SP textstring ] CRLF
#                Reply-code = %x32-35 %x30-35 %x30-39
#                textstring = 1*(%d09 / %d32-126)   (RFC 6531: UTF-8 text is tolerated)
# The second digit is taken as any digit, as Postfix does.
_REPLY_LINE = re.compile(r"([2-5][0-9][0-9])(?:([ -])(.*))?", re.DOTALL)
# RFC 3463 2:  status-code = class "." subject "." detail; subject, detail 1*3digit
# RFC 2034 4:  status-code SP text, only with a 2xx, 4xx or 5xx reply of the same class
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)")
# Postfix smtp(8) censors non-printable characters in replies ("printable(…, '?')").
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Enough for any real EHLO reply; a server that sends more is broken or hostile.
MAX_REPLY_LINES = 100


class ReplyProblem(enum.Enum):
    """Why a reply could not be read (``MalformedReply.problem``)."""

    NO_CODE = "no reply code"
    CODE_CHANGED = "reply code changed inside a multi-line reply"
    LINE_TOO_LONG = "reply line too long"
    TOO_MANY_LINES = "too many reply lines"
    NOT_TEXT = "reply is not text"


@dataclass(frozen=True)
class MalformedReply:
    """A reply that breaks RFC 5321 4.2; ``text`` the offending line, printable."""

    problem: ReplyProblem
    text: str


class ReplyReader:
    """Reads one (possibly multi-line) reply at a time from a ``LineBuffer``.

    ``read(buf)`` returns a ``Reply`` once its last line has arrived, None while more
    lines are needed, or a ``MalformedReply`` (the reader keeps no state after it: the
    connection is not usable any more). The enhanced status code (RFC 3463) is taken
    from the first line when it is valid for the reply code, and removed from every
    line that repeats it; otherwise it stays in the text (``enhanced`` None).
    """

    def __init__(self) -> None:
        self._code = ""
        self._lines: list[str] = []

    @property
    def partial(self) -> bool:
        """True while lines of an unfinished multi-line reply are held."""
        return bool(self._lines)

    def read(self, buf: LineBuffer) -> Reply | MalformedReply | None:
        while True:
            raw = buf.next_line()
            if raw is None:
                return None
            if raw is TOO_LONG:
                return self._fail(ReplyProblem.LINE_TOO_LONG, "")
            assert isinstance(raw, bytes)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                return self._fail(ReplyProblem.NOT_TEXT, _printable(raw))
            m = _REPLY_LINE.fullmatch(line)
            if m is None:
                return self._fail(ReplyProblem.NO_CODE, _printable(raw))
            code, sep, text = m.group(1), m.group(2), m.group(3) or ""
            if self._lines and code != self._code:
                return self._fail(ReplyProblem.CODE_CHANGED, _printable(raw))
            if len(self._lines) >= MAX_REPLY_LINES:
                return self._fail(ReplyProblem.TOO_MANY_LINES, _printable(raw))
            self._code = code
            self._lines.append(_UNPRINTABLE.sub("?", text))
            if sep != "-":
                lines, self._lines = self._lines, []
                return _make_reply(int(code), lines)

    def _fail(self, problem: ReplyProblem, text: str) -> MalformedReply:
        self._lines = []
        return MalformedReply(problem, text)


def _printable(raw: bytes) -> str:
    return _UNPRINTABLE.sub("?", raw.decode("ascii", "replace").replace("\ufffd", "?"))


def _make_reply(code: int, lines: list[str]) -> Reply:
    enhanced: str | None = None
    m = _ENHANCED.match(lines[0])
    if m is not None and m.group(1) == str(code)[0]:
        enhanced = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        lines = [_strip_enhanced(line, enhanced) for line in lines]
    text: str | tuple[str, ...] = lines[0] if len(lines) == 1 else tuple(lines)
    return Reply(code, enhanced, text)


def _strip_enhanced(line: str, enhanced: str) -> str:
    m = _ENHANCED.match(line)
    if m is not None and f"{m.group(1)}.{m.group(2)}.{m.group(3)}" == enhanced:
        return line[m.end():]
    return line


# --- EHLO keywords (client) ---------------------------------------------------------------

# RFC 5321 4.1.1.1:  ehlo-line = ehlo-keyword *( SP ehlo-param )
#                    ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
# Old servers announce "AUTH=LOGIN PLAIN" (before RFC 2554 was final); Postfix reads
# it as AUTH, and so do we.
_EHLO_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?")


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """The service extensions of a 250 EHLO/LHLO reply: ``{KEYWORD: parameters}``,
    keywords upper case, parameters as sent with runs of white space collapsed ("" when
    none): ``{"SIZE": "10240000", "PIPELINING": "", "AUTH": "PLAIN LOGIN"}``. The first
    line (the server's name) is not a keyword; lines that are not keywords are ignored.
    The parameters of a repeated keyword are merged (``AUTH`` and ``AUTH=`` lines)."""
    out: dict[str, str] = {}
    for line in reply.lines()[1:]:
        m = _EHLO_LINE.fullmatch(line.strip())
        if m is None:
            continue
        keyword = m.group(1).upper()
        words = out.get(keyword, "").split()
        words += [w for w in (m.group(2) or "").split() if w not in words]
        out[keyword] = " ".join(words)
    return out


# --- client input in logs ---------------------------------------------------------------

_C_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f",
              0x0D: "\\r", 0x5C: "\\\\"}


def escape_input(raw: bytes) -> str:
    r"""Client bytes as Postfix's smtpd logs them (``improper command pipelining after
    CMD from …: TEXT``): printable ASCII as is, ``\r \n \t \a \b \v \f \\`` escaped as
    in C, any other byte as three octal digits (``\001``, ``\351``)."""
    out: list[str] = []
    for byte in raw:
        if byte in _C_ESCAPES:
            out.append(_C_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)
