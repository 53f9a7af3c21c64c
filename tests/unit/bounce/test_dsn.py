from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import Message

from postier.bounce.dsn import Failed, build_bounce
from postier.delivery.status import bounced


def test_bounce_is_a_parsable_delivery_status_report() -> None:
    when = datetime(2026, 11, 25, 20, 48, 52, tzinfo=UTC)
    original = [b"Subject: hello\nFrom: a@example.net\n\nbody line\n"]
    raw = build_bounce(
        myhostname="tintin.example.com",
        queue_id="22D2A8871",
        new_queue_id="33E3B9982",
        sender="a@example.net",
        arrival=when,
        now=when,
        failed=[
            Failed(
                "tintin@example.com",
                "tintin+x@example.com",
                bounced("5.2.2", "cannot update mailbox: File too large"),
            )
        ],
        original=original,
    )
    msg = email.message_from_bytes(raw)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["To"] == "a@example.net"
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    # Postfix's wording: the original recipient named, the line folded at 79 columns.
    assert (
        "<tintin@example.com> (expanded from <tintin+x@example.com>): cannot update\n"
        "    mailbox: File too large\n"
    ) in str(parts[0].get_payload())
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    fields: list[Message] = status.get_payload()
    assert fields[0]["X-Postfix-Queue-ID"] == "22D2A8871"
    assert fields[1]["Status"] == "5.2.2"
    assert fields[1]["Action"] == "failed"
    assert fields[1]["Original-Recipient"] == "rfc822;tintin+x@example.com"
    returned = parts[2].get_payload()[0]
    assert returned["Subject"] == "hello"
