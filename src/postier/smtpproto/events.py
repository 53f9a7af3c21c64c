"""The events the sans-IO SMTP server core hands to its shell.

Follows RFC 5321 section 4.1 (commands), RFC 4954 (AUTH), RFC 3207 (STARTTLS) and
Postfix smtpd(8)'s command set. Every event except ``DataChunk`` and ``Closed``
expects exactly one reply, passed to ``ServerConnection.send``; ``ProtocolError``
carries the reply the core itself chose (the shell just sends it).
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
    """

    too_big: bool
    size: int


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
class ProtocolError:
    """Something the core refused by itself; send ``reply``. ``command`` is the verb
    (upper case, e.g. "MAIL") or "" when none was recognised, for logs and counters."""

    reply: Reply
    command: str = ""


@dataclass(frozen=True)
class Closed:
    """The client closed the connection, or QUIT/421 ended the session."""


Event = (
    Helo | Mail | Rcpt | Data | DataChunk | DataEnd | Rset | Noop | Quit | Vrfy | StartTls
    | Auth | AuthLine | ProtocolError | Closed
)
