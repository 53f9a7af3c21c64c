"""Header processing on the way into the queue: the Received: header and the header block.

Follows Postfix's smtpd(8) and cleanup(8) with postconf(5) ``message_drop_headers``,
``header_size_limit``, ``always_add_missing_headers``/``local_header_rewrite_clients``;
RFC 5321 section 4.4 (trace fields) and RFC 5322 (header syntax, dates). Pure: data in,
data out.

``received_header`` gives Postfix's layout::

    Received: from HELO (CLIENT_NAME [CLIENT_ADDR])
    \t(TLS TEXT)                                         only with TLS
    \tby MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUE_ID
    \tfor <RCPT>; DATE                                    exactly one recipient
    \tby MYHOSTNAME (MAIL_NAME) with PROTOCOL id QUEUE_ID;   otherwise
    \tDATE

IPv6 client addresses are written ``[IPv6:2001:db8::1]``.

``HeaderProcessor`` streams the content (LF line ends) through. It holds at most one
logical header (bounded by ``header_size_limit``) and never the body. In the header
block it:

* drops the headers named in ``drop_headers`` (Postfix's ``message_drop_headers``
  default: Bcc, Content-Length, Resent-Bcc, Return-Path);
* truncates a logical header (with its continuation lines) longer than
  ``header_size_limit`` bytes: the excess is discarded, as Postfix does; the truncated
  header still ends with a newline (``truncated_headers`` counts them);
* notes the first Message-ID (``message_id``, logged by cleanup as
  ``message-id=<...>``) and counts Received: headers (``hops``, for hopcount_limit);
* when ``add_missing`` is set, appends at the end of the header block the missing
  ``Message-Id: <YYYYMMDDhhmmss.QUEUEID@myhostname>`` (UTC time), ``Date:`` and
  ``From:`` (``sender``, or ``MAILER-DAEMON@myhostname`` for the null sender) headers,
  in Postfix's order.
  Resent- headers are not synthesized.

The header block ends at the first empty line, or at the first line that is not a
header (no ``name:``, or a continuation line with no header to continue): the body then
began without the empty separator line, and one is inserted so that the headers we
add (and the Received: header before them) cannot absorb the body's first line. A
line of more than ``header_size_limit`` bytes without a colon is body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from postier.config.params import HEADER_SIZE_LIMIT

DEFAULT_DROP_HEADERS = ("bcc", "content-length", "resent-bcc", "return-path")
DEFAULT_HEADER_SIZE_LIMIT = HEADER_SIZE_LIMIT.default_value()

# RFC 5322 field name: printable US-ASCII except colon; Postfix allows blanks before ':'.
_HEADER_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_NAME_CHARS = re.compile(rb"[\x21-\x39\x3b-\x7e]*[ \t]*")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(when: datetime) -> str:
    """``Tue, 25 Nov 2026 20:48:52 +0000 (UTC)``: Postfix's date form.

    The day of the month is space-padded (``Mon,  6 Jan``) as Postfix writes it; the
    numeric zone is followed by the zone name in parentheses. A naive datetime is UTC.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    text = (
        f"{_DAYS[when.weekday()]}, {when.day:2d} {_MONTHS[when.month - 1]} {when.year:04d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {sign}{hh:02d}{mm:02d}"
    )
    zone = when.tzname()
    return f"{text} ({zone})" if zone else text


def received_header(
    *, helo: str, client_name: str, client_addr: str, protocol: str, by_host: str,
    mail_name: str, queue_id: str, recipient: str | None, when: datetime,
    tls: str | None = None, authenticated_sender: str | None = None,
    tls_peer: str | None = None,
) -> bytes:
    """The Received: header smtpd puts on top of a message (LF line ends); ``tls`` and
    ``tls_peer`` (the client certificate: ``Client CN "c", Issuer "ca" (verified OK)``)
    are lines in parentheses; ``authenticated_sender`` adds Postfix's
    ``(Authenticated sender: USER)`` line."""
    addr = f"IPv6:{client_addr}" if ":" in client_addr and not client_addr.startswith("IPv6:") \
        else client_addr
    lines = [f"Received: from {helo or client_name} ({client_name} [{addr}])"]
    if tls:
        lines.append(f"\t({tls})")
        if tls_peer:
            lines.append(f"\t({tls_peer})")
    if authenticated_sender:
        lines.append(f"\t(Authenticated sender: {authenticated_sender})")
    by = f"\tby {by_host} ({mail_name}) with {protocol} id {queue_id}"
    date = rfc5322_date(when)
    if recipient is not None:
        lines += [by, f"\tfor <{recipient}>; {date}"]
    else:
        lines += [by + ";", f"\t{date}"]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


def local_received_header(*, by_host: str, mail_name: str, queue_id: str,
                          when: datetime) -> bytes:
    """The Received: header of locally generated mail (bounces, notices), as Postfix's
    cleanup writes it: ``Received: by HOST (Postfix)`` / ``\tid QID; DATE``."""
    return (f"Received: by {by_host} ({mail_name})\n"
            f"\tid {queue_id}; {rfc5322_date(when)}\n").encode()


_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")


def display_name(full_name: str) -> str:
    """A full name as a From: header's display name (RFC 5322 phrase): as is when it is
    atoms and spaces, else a quoted-string (``"`` and ``\\`` escaped)."""
    name = " ".join(full_name.split())
    if _ATEXT_PHRASE.fullmatch(name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def message_id_for(queue_id: str, myhostname: str, when: datetime) -> str:
    """``<20261125204852.22D2A8871@tintin.example.com>`` (time in UTC)."""
    utc = when.astimezone(UTC) if when.tzinfo else when
    return f"<{utc:%Y%m%d%H%M%S}.{queue_id}@{myhostname}>"


class HeaderProcessor:
    """Streams content through, editing the header block; see the module docstring.

    ``feed(chunk)`` returns the bytes to write now; ``end()`` returns the last ones.
    """

    def __init__(
        self, *, add_missing: bool = False, sender: str = "", queue_id: str = "",
        myhostname: str = "localhost", when: datetime | None = None,
        drop_headers: Iterable[str] = DEFAULT_DROP_HEADERS,
        header_size_limit: int = DEFAULT_HEADER_SIZE_LIMIT,
    ) -> None:
        self.add_missing = add_missing
        self.sender = sender
        self.queue_id = queue_id
        self.myhostname = myhostname
        self.when = when
        #: the message's arrival, for a missing Date: (pickup's: the maildrop file's
        #: time, as Postfix's cleanup); None: ``when``
        self.arrival: datetime | None = None
        #: the sender's full name (``sendmail -F``) for a missing From:; "": none
        self.full_name = ""
        self.drop = frozenset(h.lower() for h in drop_headers)
        self.limit = max(1, header_size_limit)
        self.in_headers = True
        self.message_id: str | None = None
        self.hops = 0
        #: a header of the primary block holds non-ASCII (RFC 6532 UTF-8 headers)
        self.utf8 = False
        self.truncated_headers = 0
        self.dropped: list[str] = []
        self.seen: set[str] = set()
        self.missing_separator = False
        self._cur = bytearray()   # the logical header being collected (kept <= limit)
        self._cur_over = False    # bytes of it were discarded
        self._partial = bytearray()  # an incomplete physical line, header mode only
        self._partial_over = False
        #: rewrites one logical header (name in lower case, the header's bytes) before
        #: it is written: cleanup's canonical mapping of header addresses; None: none
        self.rewrite: Callable[[str, bytes], bytes] | None = None

    # --- streaming ------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        if not self.in_headers:
            return data
        out = bytearray()
        pos = 0
        n = len(data)
        while pos < n and self.in_headers:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._add_partial(data[pos:], out)
                pos = n
                break
            self._add_partial(data[pos:nl + 1], out)
            pos = nl + 1
            if self.in_headers:
                line = bytes(self._partial)
                over = self._partial_over
                self._partial.clear()
                self._partial_over = False
                self._line(line, over, out)
        if pos < n:
            out += data[pos:]
        return bytes(out)

    def end(self) -> bytes:
        """Call once after the last chunk: flushes the header block if still open."""
        out = bytearray()
        if self.in_headers:
            if self._partial:
                line = bytes(self._partial)
                over = self._partial_over
                self._partial.clear()
                kind = self._classify(line, final=True)
                if kind == "body":
                    self._begin_body(out, separator=True)
                    out += line
                    return bytes(out)
                if not line.endswith(b"\n"):
                    line += b"\n"
                self._line(line, over, out)
            if self.in_headers:
                self._flush(out)
                self._append_missing(out)
                self.in_headers = False
        return bytes(out)

    # --- internals ------------------------------------------------------------------

    def _add_partial(self, piece: bytes, out: bytearray) -> None:
        """Collect a physical line; decide early when it cannot be a header.

        When it turns out to be body, it goes to ``out`` whole and the body begins.
        """
        room = max(0, self.limit + 1 - len(self._partial))
        self._partial += piece[:room]
        rest = piece[room:]
        if rest:
            self._partial_over = True
        if self._partial.endswith(b"\n"):
            return
        if self._classify(bytes(self._partial), final=False) == "body":
            line = bytes(self._partial)
            self._partial.clear()
            self._partial_over = False
            self._begin_body(out, separator=True)
            out += line
            out += rest

    def _classify(self, line: bytes, *, final: bool) -> str:
        """'header', 'cont', 'empty', 'body', or 'unknown' (need more bytes)."""
        if line in (b"\n", b"\r\n") or (final and line in (b"", b"\r")):
            return "empty"
        if line in (b"", b"\r"):
            return "unknown"
        if line[:1] in (b" ", b"\t"):
            return "cont" if self._cur else "body"
        if _HEADER_START.match(line):
            return "header"
        m = _NAME_CHARS.match(line)
        assert m is not None
        if m.end() < len(line) or final or line.endswith(b"\n") or len(line) > self.limit:
            return "body"  # not a field name before a colon, or far too long for one
        return "unknown"

    def _line(self, line: bytes, over: bool, out: bytearray) -> None:
        kind = self._classify(line, final=True)
        if kind == "empty":
            self._flush(out)
            self._append_missing(out)
            out += line
            self.in_headers = False
        elif kind == "cont":
            self._append_cur(line, over)
        elif kind == "header":
            self._flush(out)
            self._append_cur(line, over)
        else:
            self._begin_body(out, separator=True)
            out += line

    def _append_cur(self, line: bytes, over: bool) -> None:
        if not self.utf8 and not line.isascii():
            self.utf8 = True
        room = self.limit - len(self._cur)
        if len(line) > room or over:
            self._cur += line[:max(0, room)]
            self._cur_over = True
        else:
            self._cur += line

    def _begin_body(self, out: bytearray, *, separator: bool) -> None:
        self._flush(out)
        self._append_missing(out)
        if separator:
            out += b"\n"
            self.missing_separator = True
        self.in_headers = False

    def _flush(self, out: bytearray) -> None:
        if not self._cur:
            return
        header = bytes(self._cur)
        if self._cur_over:
            self.truncated_headers += 1
            if not header.endswith(b"\n"):
                header += b"\n"
        self._cur.clear()
        self._cur_over = False
        colon = header.find(b":")
        name = header[:colon].rstrip(b" \t").decode("ascii", "replace").lower()
        self.seen.add(name)
        if name == "received":
            self.hops += 1
        elif name == "message-id" and self.message_id is None:
            value = b" ".join(header[colon + 1:].split())
            self.message_id = value.decode("utf-8", "replace")
        if name in self.drop:
            self.dropped.append(name)
            return
        if self.rewrite is not None:
            header = self.rewrite(name, header)
        out += header

    def _append_missing(self, out: bytearray) -> None:
        if not self.add_missing:
            return
        when = self.when or datetime.now(UTC)
        # Postfix 3.7.11's order and forms, side by side: Message-Id, Date, then
        # "From: user@domain" (the envelope sender, no angle brackets).
        if "message-id" not in self.seen:
            mid = message_id_for(self.queue_id, self.myhostname, when)
            out += f"Message-Id: {mid}\n".encode()
            self.message_id = mid
        if "date" not in self.seen:
            out += f"Date: {rfc5322_date(self.arrival or when)}\n".encode()
        if "from" not in self.seen:
            sender = self.sender or f"MAILER-DAEMON@{self.myhostname}"
            if self.full_name:  # hfrom_format = standard: "From: Full Name <user@domain>"
                sender = f"{display_name(self.full_name)} <{sender}>"
            out += f"From: {sender}\n".encode("utf-8", "surrogateescape")
        self.seen.update(("from", "date", "message-id"))
