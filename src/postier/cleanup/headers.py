"""Header processing on the way into the queue: the Received: header and the header block.

Follows Postfix's smtpd(8)/cleanup(8): the ``Received:`` header has Postfix's layout
(RFC 5321 section 4.4 trace fields, RFC 5322 date), and ``HeaderProcessor`` watches
the message's header block as it streams by (it never holds the body) to note the
Message-ID that cleanup logs.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)[ \t]*$", re.IGNORECASE)


def rfc5322_date(when: datetime) -> str:
    """``Tue, 25 Nov 2026 20:48:52 +0000 (UTC)``: numeric zone plus its name, as Postfix."""
    text = format_datetime(when)
    zone = when.tzname()
    return f"{text} ({zone})" if zone else text


def received_header(
    *, helo: str, client_name: str, client_addr: str, protocol: str, by_host: str,
    mail_name: str, queue_id: str, recipient: str | None, when: datetime,
    tls: str | None = None,
) -> bytes:
    addr = f"IPv6:{client_addr}" if ":" in client_addr else client_addr
    lines = [
        f"Received: from {helo} ({client_name} [{addr}])",
    ]
    if tls:
        lines.append(f"\t({tls})")
    lines.append(f"\tby {by_host} ({mail_name}) with {protocol} id {queue_id}")
    date = rfc5322_date(when)
    if recipient is not None:
        lines.append(f"\tfor <{recipient}>; {date}")
    else:
        lines[-1] += f";\n\t{date}"
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")


class HeaderProcessor:
    """Passes the content through, noting header facts while in the header block."""

    def __init__(self) -> None:
        self.in_headers = True
        self.message_id: str | None = None
        self._partial = b""

    def feed(self, data: bytes) -> bytes:
        if self.in_headers:
            self._scan(data)
        return data

    def _scan(self, data: bytes) -> None:
        text = self._partial + data
        lines = text.split(b"\n")
        self._partial = lines.pop()[:1000]
        for line in lines:
            if line in (b"", b"\r"):
                self.in_headers = False
                return
            if self.message_id is None:
                m = _MESSAGE_ID.match(line)
                if m:
                    self.message_id = m.group(1).decode("utf-8", "replace")
            if not line[:1].isspace() and b":" not in line:
                self.in_headers = False  # the body began without a separating empty line
                return

    def end(self) -> bytes:
        return b""
