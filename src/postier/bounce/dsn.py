"""Builds delivery status notifications: multipart/report per RFC 3464, worded as Postfix's.

Follows RFC 3464 (``message/delivery-status``), RFC 6522 (``multipart/report``), RFC
3461 (RET, ENVID, ORCPT) and Postfix 3.7's bounce(8) with its default bounce(5)
templates, compared byte for byte with a bounce the real Postfix wrote: the failure
(``Undelivered Mail Returned to Sender``), delay (``Delayed Mail (still being
retried)``) and success (``Successful Mail Delivery Report``) templates, the postmaster
copies (``Postmaster Copy: Undelivered Mail``, ``Postmaster Warning: Delayed Mail``:
no text, the original's headers) and the double bounce (the 2bounce notice: the
postmaster copy wording with the whole undeliverable bounce attached). Per-message
fields: ``Reporting-MTA``, ``Original-Envelope-Id`` (ENVID), ``X-Postfix-Queue-ID``,
``X-Postfix-Sender``, ``Arrival-Date``; per recipient: ``Final-Recipient``,
``Original-Recipient`` (the ORCPT, else the original recipient, as Postfix),
``Action``, ``Status``, ``Remote-MTA`` and ``Diagnostic-Code: smtp; …`` when a remote
MTA said it (else ``Diagnostic-Code: X-Postfix; …``), ``Will-Retry-Until`` in delay
notices. Postfix writes no ``Last-Attempt-Date``, so neither do we. Long lines are
folded as Postfix's line_wrap(3) does (79 columns, continuation indented by 4).

Pure: takes the original envelope facts, the recipients to report and the original
message's bytes; returns the notification's bytes (LF line endings, as in the queue).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from postier.cleanup.headers import rfc5322_date
from postier.delivery.status import DeliveryStatus, Kind

#: Postfix's bounce(8) line width and continuation indent.
LINE_LENGTH = 79
INDENT = 4


class NoticeKind(enum.Enum):
    """Which bounce(5) template a notice uses."""

    FAILURE = "failure"
    DELAY = "delay"
    SUCCESS = "success"


@dataclass(frozen=True)
class Template:
    """One bounce(5) template: subjects (to the sender, to the postmaster) and text."""

    subject: str
    postmaster_subject: str
    text: tuple[str, ...]


_SIGNATURE = ("", "                   The mail system")
_ASSISTANCE = (
    "For further assistance, please send mail to postmaster.",
    "",
    "If you do so, please include this problem report. You can",
    "delete your own text from the attached returned message.",
)

FAILURE_TEMPLATE = Template(
    "Undelivered Mail Returned to Sender",
    "Postmaster Copy: Undelivered Mail",
    (
        "This is the mail system at host {myhostname}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        *_ASSISTANCE,
        *_SIGNATURE,
    ),
)
DELAY_TEMPLATE = Template(
    "Delayed Mail (still being retried)",
    "Postmaster Warning: Delayed Mail",
    (
        "This is the mail system at host {myhostname}.",
        "",
        "####################################################################",
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
        "####################################################################",
        "",
        "Your message could not be delivered for more than {delay_warning_time_hours} hour(s).",
        "It will be retried until it is {maximal_queue_lifetime_days} day(s) old.",
        "",
        *_ASSISTANCE,
        *_SIGNATURE,
    ),
)
SUCCESS_TEMPLATE = Template(
    "Successful Mail Delivery Report",
    "Successful Mail Delivery Report",
    (
        "This is the mail system at host {myhostname}.",
        "",
        "Your message was successfully delivered to the destination(s)",
        "listed below. If the message was delivered to mailbox you will",
        "receive no further notifications. Otherwise you may still receive",
        "notifications of mail delivery errors from other systems.",
        *_SIGNATURE,
    ),
)
TEMPLATES = {
    NoticeKind.FAILURE: FAILURE_TEMPLATE,
    NoticeKind.DELAY: DELAY_TEMPLATE,
    NoticeKind.SUCCESS: SUCCESS_TEMPLATE,
}


@dataclass(frozen=True)
class Failed:
    """One recipient to report: its address, original address, status and ORCPT.

    ``orig`` is the original recipient (``""``: unknown); ``orcpt`` the RFC 3461 ORCPT
    as stored (``rfc822;user@example.com``), which wins over ``orig`` in
    ``Original-Recipient``. The name is historical: any notice reports these.
    """

    recipient: str
    orig: str
    status: DeliveryStatus
    orcpt: str = ""

    @classmethod
    def of(cls, address: str, orig: str, status: DeliveryStatus, orcpt: str = "") -> Failed:
        """The entry for queue recipient ``address`` (original ``orig``): when an alias
        expansion reached another address (``status.final_recipient``), that one is
        reported and ``address`` is what it was expanded from, as Postfix's bounce."""
        if status.final_recipient and status.final_recipient != address:
            return cls(status.final_recipient, orig or address, status, orcpt)
        return cls(address, orig, status, orcpt)


#: Any notice's recipient entries.
Reported = Failed


@dataclass(frozen=True)
class Notice:
    """What one notification says, apart from the recipients and the original message.

    ``to``: the notice's recipient (the original sender, or a postmaster address);
    ``postmaster``: a postmaster copy or double bounce (postmaster subject, no template
    text, ``Auto-Submitted: auto-generated``); ``headers_only``: attach only the
    original's headers (``text/rfc822-headers``), else the whole message
    (``message/rfc822``). ``delay_warning_time`` and ``maximal_queue_lifetime`` are in
    seconds (delay template and ``Will-Retry-Until``).
    """

    kind: NoticeKind
    to: str
    postmaster: bool = False
    headers_only: bool = False
    envid: str = ""
    delay_warning_time: float = 0.0
    maximal_queue_lifetime: float = 5 * 86400.0


def line_wrap(text: str, length: int = LINE_LENGTH, indent: int = INDENT) -> list[str]:
    """``text`` folded at white space as Postfix's line_wrap(3): a line is cut before a
    word that would take it past ``length`` columns; continuation lines are indented by
    ``indent`` and count it. A word longer than a line stays whole."""
    words = text.split(" ")
    lines: list[str] = []
    current = ""
    limit = length
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) > limit:
            lines.append(current.rstrip())
            current = word
            if len(lines) == 1:
                limit = length - indent
        else:
            current = candidate
    lines.append(current.rstrip())
    return [lines[0], *(" " * indent + ln for ln in lines[1:])]


def _printable(text: str) -> str:
    """A value fit for one header line: controls (CR, LF, …) become ``?``."""
    return "".join(c if c >= " " and c != "\x7f" else "?" for c in text)


def action_of(st: DeliveryStatus) -> str:
    """The RFC 3464 Action of a status: its own, else failed/delayed/delivered by kind."""
    if st.action:
        return st.action
    return {Kind.BOUNCED: "failed", Kind.DEFERRED: "delayed", Kind.SENT: "delivered"}[st.kind]


def _reason(kind: NoticeKind, st: DeliveryStatus) -> str:
    """The diagnostic as Postfix words it: a success names the agent that delivered."""
    if kind is NoticeKind.SUCCESS:
        return f"delivery via {st.relay}: {st.text}"
    return st.text


def recipient_line(kind: NoticeKind, r: Failed) -> list[str]:
    """The human-readable report of one recipient, ``<rcpt> (expanded from <orig>): why``."""
    expanded = (
        f" (expanded from <{r.orig}>)"
        if r.orig and r.orig.lower() != r.recipient.lower() else ""
    )
    return line_wrap(_printable(f"<{r.recipient}>{expanded}: {_reason(kind, r.status)}"))


def recipient_fields(kind: NoticeKind, r: Failed, will_retry_until: str = "") -> list[str]:
    """The per-recipient fields of ``message/delivery-status``, folded."""
    fields = [f"Final-Recipient: rfc822; {r.recipient}"]
    if r.orcpt:
        fields.append(f"Original-Recipient: {r.orcpt}")
    elif r.orig:
        fields.append(f"Original-Recipient: rfc822;{r.orig}")
    fields += [f"Action: {action_of(r.status)}", f"Status: {r.status.dsn}"]
    if r.status.remote_mta:
        fields.append(f"Remote-MTA: dns; {r.status.remote_mta}")
    if r.status.remote_reply:
        fields.append(f"Diagnostic-Code: smtp; {r.status.remote_reply}")
    else:
        fields.append(f"Diagnostic-Code: X-Postfix; {_reason(kind, r.status)}")
    if will_retry_until:
        fields.append(f"Will-Retry-Until: {will_retry_until}")
    out: list[str] = []
    for field in fields:
        out += line_wrap(_printable(field))
    return out


def original_part(original: Iterable[bytes], headers_only: bool) -> Iterator[bytes]:
    """The original message, or its header section only (up to the empty line)."""
    if not headers_only:
        yield from original
        return
    after_newline = True  # an empty first line: no header section at all
    for chunk in original:
        if not chunk:
            continue
        if after_newline and chunk.startswith(b"\n"):
            return
        end = chunk.find(b"\n\n")
        if end >= 0:
            yield chunk[:end + 1]
            return
        yield chunk
        after_newline = chunk.endswith(b"\n")


def build_notice(
    notice: Notice, *, myhostname: str, queue_id: str, new_queue_id: str, sender: str,
    arrival: datetime, now: datetime, recipients: Iterable[Failed],
    original: Iterable[bytes], myorigin: str = "",
) -> bytes:
    """The notification's bytes (LF line endings).

    ``From: Mail Delivery System <MAILER-DAEMON@$myorigin>`` (``myorigin`` "": myhostname),
    as Postfix's cleanup qualifies bounce(8)'s bare MAILER-DAEMON.

    ``sender`` is the original message's sender as shown (``MAILER-DAEMON@host`` for
    ``<>``); ``queue_id`` the original's, ``new_queue_id`` the notice's own (its
    Message-Id); ``arrival``/``now`` are aware datetimes (their zone is shown).
    """
    template = TEMPLATES[notice.kind]
    boundary = f"{queue_id}.{int(now.timestamp())}/{myhostname}"
    reported = list(recipients)
    subject = template.postmaster_subject if notice.postmaster else template.subject
    auto = "auto-generated" if notice.postmaster else "auto-replied"
    lines = [
        f"Date: {rfc5322_date(now)}",
        f"From: Mail Delivery System <MAILER-DAEMON@{myorigin or myhostname}>",
        f"Subject: {subject}",
        f"To: {notice.to}",
        f"Auto-Submitted: {auto}",
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
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    if not notice.postmaster:
        values = {
            "myhostname": myhostname,
            "delay_warning_time_hours": str(int(notice.delay_warning_time // 3600)),
            "maximal_queue_lifetime_days": str(int(notice.maximal_queue_lifetime // 86400)),
        }
        lines += [line.format(**values) for line in template.text]
    lines.append("")
    for r in reported:
        lines += recipient_line(notice.kind, r)
    lines += [
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {myhostname}",
    ]
    if notice.envid:
        lines.append(f"Original-Envelope-Id: {_printable(notice.envid)}")
    lines += [
        f"X-Postfix-Queue-ID: {queue_id}",
        f"X-Postfix-Sender: rfc822; {sender}",
        f"Arrival-Date: {rfc5322_date(arrival)}",
    ]
    retry_until = (
        rfc5322_date(arrival + timedelta(seconds=notice.maximal_queue_lifetime))
        if notice.kind is NoticeKind.DELAY else ""
    )
    for r in reported:
        lines += ["", *recipient_fields(notice.kind, r, retry_until)]
    what = "Message" if notice.kind is NoticeKind.SUCCESS else "Undelivered Message"
    lines += [
        "",
        f"--{boundary}",
        f"Content-Description: {what}" + (" Headers" if notice.headers_only else ""),
        "Content-Type: " + ("text/rfc822-headers" if notice.headers_only else "message/rfc822"),
        "Content-Transfer-Encoding: 8bit",
        "",
        f"Return-Path: <{sender}>",
        "",
    ]
    out = bytearray("\n".join(lines).encode("utf-8", "surrogateescape"))
    ended_with_newline = True
    for chunk in original_part(original, notice.headers_only):
        if chunk:
            out += chunk
            ended_with_newline = chunk.endswith(b"\n")
    if not ended_with_newline:
        out += b"\n"
    out += f"\n--{boundary}--\n".encode()
    return bytes(out)


def build_bounce(
    *, myhostname: str, queue_id: str, new_queue_id: str, sender: str, arrival: datetime,
    now: datetime, failed: Iterable[Failed], original: Iterable[bytes], headers_only: bool = False,
    envid: str = "",
) -> bytes:
    """The sender's non-delivery notification of ``failed`` (the failure template)."""
    return build_notice(
        Notice(NoticeKind.FAILURE, to=sender, headers_only=headers_only, envid=envid),
        myhostname=myhostname, queue_id=queue_id, new_queue_id=new_queue_id, sender=sender,
        arrival=arrival, now=now, recipients=failed, original=original,
    )
