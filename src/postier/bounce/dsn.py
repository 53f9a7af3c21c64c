"""Builds non-delivery notifications: a multipart/report per RFC 3464, worded as Postfix's.

Pure: takes the original envelope facts, the failed recipients and the original
message's bytes, returns the notification's bytes (LF line endings, as in the queue).
Postfix's bounce(8) is the behavioural reference (``Undelivered Mail Returned to
Sender``, the ``X-Postfix-Queue-ID`` and ``X-Postfix-Sender`` fields).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from postier.delivery.status import DeliveryStatus


@dataclass(frozen=True)
class Failed:
    recipient: str
    orig: str
    status: DeliveryStatus


def build_bounce(
    *, myhostname: str, queue_id: str, new_queue_id: str, sender: str, arrival: datetime,
    now: datetime, failed: Iterable[Failed], original: Iterable[bytes], headers_only: bool = False,
) -> bytes:
    boundary = f"{new_queue_id}.{int(now.timestamp())}/{myhostname}"
    failed = list(failed)
    lines = [
        f"Date: {format_datetime(now)}",
        f"From: MAILER-DAEMON@{myhostname} (Mail Delivery System)",
        "Subject: Undelivered Mail Returned to Sender",
        f"To: {sender}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
        f"Message-Id: <{now.strftime('%Y%m%d%H%M%S')}.{new_queue_id}@{myhostname}>",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {myhostname}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
        "",
    ]
    for f in failed:
        lines.append(f"<{f.recipient}>: {f.status.text}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {myhostname}",
        f"X-Postfix-Queue-ID: {queue_id}",
        f"X-Postfix-Sender: rfc822; {sender}",
        f"Arrival-Date: {format_datetime(arrival)}",
    ]
    for f in failed:
        lines += ["", f"Final-Recipient: rfc822; {f.recipient}"]
        if f.orig and f.orig != f.recipient:
            lines.append(f"Original-Recipient: rfc822;{f.orig}")
        lines += [
            "Action: failed",
            f"Status: {f.status.dsn}",
            f"Diagnostic-Code: X-Postfix; {f.status.text}",
        ]
    part = "text/rfc822-headers" if headers_only else "message/rfc822"
    lines += [
        "",
        f"--{boundary}",
        "Content-Description: Undelivered Message" + (" Headers" if headers_only else ""),
        f"Content-Type: {part}",
        "Content-Transfer-Encoding: 8bit",
        "",
        "",
    ]
    out = bytearray("\n".join(lines).encode("utf-8", "surrogateescape"))
    ended_with_newline = True
    for chunk in original:
        if headers_only:
            end = chunk.find(b"\n\n")
            if end >= 0:
                out += chunk[: end + 1]
                ended_with_newline = True
                break
        out += chunk
        ended_with_newline = chunk.endswith(b"\n")
    if not ended_with_newline:
        out += b"\n"
    out += f"\n--{boundary}--\n".encode()
    return bytes(out)
