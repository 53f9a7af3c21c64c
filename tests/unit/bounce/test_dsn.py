from __future__ import annotations

import email
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest

from postier.bounce.dsn import (
    Failed,
    Notice,
    NoticeKind,
    build_bounce,
    build_notice,
    line_wrap,
)
from postier.delivery.status import DeliveryStatus, bounced, deferred, sent


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


# --- byte layout against Postfix 3.7 ----------------------------------------------------
# golden/postfix-3.7-*.txt are notices the real Postfix 3.7 wrote for one message
# (RET=HDRS, ENVID=env+2B1; nosuchuser with ORCPT=rfc822;orig+40x.test, bob6b with
# NOTIFY=SUCCESS, r@remote.test deferred with delay_warning_time = 1s), as they reached
# the mailbox, less the Received: header Postfix's cleanup adds to every message.

GOLDEN = Path(__file__).parent / "golden"
PF_ARRIVAL = datetime(2026, 11, 29, 23, 58, 31, tzinfo=UTC)
PF_ORIGINAL = (
    b"Received: from client.test (localhost [127.0.0.1])\n"
    b"\tby pf.example.com (Postfix) with ESMTP id BF7C8216044;\n"
    b"\tSun, 29 Nov 2026 23:58:31 +0000 (UTC)\n"
    b"From: Bob <bob6b@pf.example.com>\n"
    b"To: nobody@pf.example.com\n"
    b"Subject: test one\n"
    b"Message-ID: <m1@x>\n"
    b"Date: Sun, 29 Nov 2026 23:58:31 +0000 (UTC)\n"
    b"\n"
    b"body line\n"
)


def pf_notice(kind: NoticeKind, new_id: str, rcpt: Failed, chunk: int = 7) -> bytes:
    original = [PF_ORIGINAL[i:i + chunk] for i in range(0, len(PF_ORIGINAL), chunk)]
    return build_notice(
        Notice(kind, to="bob6b@pf.example.com", headers_only=True, envid="env+1",
               delay_warning_time=1.0, maximal_queue_lifetime=5 * 86400.0),
        myhostname="pf.example.com", queue_id="BF7C8216044", new_queue_id=new_id,
        sender="bob6b@pf.example.com", arrival=PF_ARRIVAL, now=PF_ARRIVAL,
        recipients=[rcpt], original=original,
    )


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_failure_notice_is_byte_for_byte_postfix(chunk: int) -> None:
    rcpt = Failed("nosuchuser@pf.example.com", "nosuchuser@pf.example.com",
                  bounced("5.1.1", 'unknown user: "nosuchuser"'), orcpt="rfc822;orig@x.test")
    got = pf_notice(NoticeKind.FAILURE, "C814D2160E4", rcpt, chunk)
    assert got.decode() == (GOLDEN / "postfix-3.7-failure.txt").read_text()


def test_success_notice_is_byte_for_byte_postfix() -> None:
    rcpt = Failed("bob6b@pf.example.com", "bob6b@pf.example.com",
                  sent("delivered to mailbox"))
    got = pf_notice(NoticeKind.SUCCESS, "C884A216113", rcpt)
    assert got.decode() == (GOLDEN / "postfix-3.7-success.txt").read_text()


def test_delay_notice_is_byte_for_byte_postfix() -> None:
    rcpt = Failed("r@remote.test", "r@remote.test", deferred(
        "4.4.1", "connect to 127.0.0.1[127.0.0.1]:9: Connection refused", relay="none"))
    got = pf_notice(NoticeKind.DELAY, "C8EA12160C6", rcpt)
    assert got.decode() == (GOLDEN / "postfix-3.7-delay.txt").read_text()


def parse(raw: bytes) -> tuple[Message, list[Message], list[Message]]:
    msg = email.message_from_bytes(raw)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    fields = parts[1].get_payload()
    assert isinstance(fields, list)
    return msg, parts, fields


def test_a_remote_mta_reply_gives_remote_mta_and_an_smtp_diagnostic_code() -> None:
    st = DeliveryStatus(
        "5.1.1", "host mx.far.example[192.0.2.7] said: 550 5.1.1 <x@far.example>: "
        "Recipient address rejected: User unknown (in reply to RCPT TO command)",
        relay="mx.far.example[192.0.2.7]:25", remote_mta="mx.far.example",
        remote_reply="550 5.1.1 <x@far.example>: Recipient address rejected: User unknown")
    raw = build_bounce(myhostname="h.example", queue_id="1A", new_queue_id="2B",
                       sender="s@h.example", arrival=PF_ARRIVAL, now=PF_ARRIVAL,
                       failed=[Failed("x@far.example", "", st)], original=[b"S: x\n\nb\n"])
    _, parts, fields = parse(raw)
    assert fields[1]["Remote-MTA"] == "dns; mx.far.example"
    assert " ".join(fields[1]["Diagnostic-Code"].split()) == (  # folded at 79 columns
        "smtp; 550 5.1.1 <x@far.example>: Recipient address rejected: User unknown")
    assert fields[1]["Original-Recipient"] is None  # no ORCPT, no original recipient
    text = str(parts[0].get_payload())
    assert "<x@far.example>: host mx.far.example[192.0.2.7] said: 550 5.1.1\n    <x@far" in text
    assert raw.count(b"\nRemote-MTA:") == 1 and b"Diagnostic-Code: X-Postfix" not in raw


@pytest.mark.parametrize(("action", "expected"), [
    ("", "failed"), ("relayed", "relayed"), ("expanded", "expanded")])
def test_action_comes_from_the_status(action: str, expected: str) -> None:
    st = DeliveryStatus("5.0.0", "x", action=action)
    _, _, fields = parse(build_bounce(
        myhostname="h", queue_id="Q", new_queue_id="N", sender="s@h", arrival=PF_ARRIVAL,
        now=PF_ARRIVAL, failed=[Failed("a@h", "", st)], original=[b"\n"]))
    assert fields[1]["Action"] == expected


def test_full_return_without_ret_and_headers_only_with_ret_hdrs() -> None:
    original = [b"Subject: s\n\nthe body\n"]
    kw = dict(myhostname="h", queue_id="Q", new_queue_id="N", sender="s@h",
              arrival=PF_ARRIVAL, now=PF_ARRIVAL,
              failed=[Failed("a@h", "", bounced("5.1.1", "unknown user"))])
    full = build_bounce(**kw, original=original)  # type: ignore[arg-type]
    hdrs = build_bounce(**kw, original=original, headers_only=True)  # type: ignore[arg-type]
    _, parts, _ = parse(full)
    assert parts[2].get_content_type() == "message/rfc822"
    assert parts[2]["Content-Description"] == "Undelivered Message"
    assert b"the body" in full
    _, parts, _ = parse(hdrs)
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert parts[2]["Content-Description"] == "Undelivered Message Headers"
    assert b"the body" not in hdrs and b"Subject: s\n" in hdrs


def test_postmaster_copy_has_no_template_text_and_is_auto_generated() -> None:
    raw = build_notice(
        Notice(NoticeKind.FAILURE, to="postmaster@h", postmaster=True, headers_only=True),
        myhostname="h", queue_id="Q", new_queue_id="N", sender="s@h", arrival=PF_ARRIVAL,
        now=PF_ARRIVAL, recipients=[Failed("a@h", "", bounced("5.1.1", "unknown user"))],
        original=[b"Subject: s\n\nbody\n"])
    msg, parts, fields = parse(raw)
    assert msg["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["To"] == "postmaster@h"
    assert parts[0].get_payload() == "\n<a@h>: unknown user\n"
    assert fields[0]["X-Postfix-Sender"] == "rfc822; s@h"


def test_delay_postmaster_subject_and_will_retry_until() -> None:
    raw = build_notice(
        Notice(NoticeKind.DELAY, to="postmaster@h", postmaster=True, headers_only=True,
               delay_warning_time=4 * 3600.0, maximal_queue_lifetime=86400.0),
        myhostname="h", queue_id="Q", new_queue_id="N", sender="s@h", arrival=PF_ARRIVAL,
        now=PF_ARRIVAL, recipients=[Failed("a@far", "", deferred("4.4.1", "refused"))],
        original=[b"Subject: s\n\nbody\n"])
    msg, _, fields = parse(raw)
    assert msg["Subject"] == "Postmaster Warning: Delayed Mail"
    assert fields[1]["Action"] == "delayed"
    assert fields[1]["Will-Retry-Until"] == "Mon, 30 Nov 2026 23:58:31 +0000 (UTC)"


def test_a_control_character_never_makes_a_new_header_line() -> None:
    raw = build_notice(
        Notice(NoticeKind.FAILURE, to="s@h", envid="a\nInjected: yes"),
        myhostname="h", queue_id="Q", new_queue_id="N", sender="s@h", arrival=PF_ARRIVAL,
        now=PF_ARRIVAL, original=[b"\n"], recipients=[
            Failed("a@h", "", bounced("5.0.0", "x"), orcpt="rfc822;a\nX-Evil: 1")])
    assert b"\nInjected:" not in raw and b"\nX-Evil:" not in raw
    assert b"Original-Recipient: rfc822;a?X-Evil: 1\n" in raw


@pytest.mark.parametrize(("text", "lines"), [
    ("short", ["short"]),
    ("a " * 40 + "end", ["a " * 39 + "a", "    end"]),
    ("x" * 100 + " y", ["x" * 100, "    y"]),
])
def test_line_wrap_folds_as_postfix(text: str, lines: list[str]) -> None:
    assert line_wrap(text) == lines
    assert all(len(ln) <= 79 or " " not in ln.strip() for ln in line_wrap(text))


def test_alias_expansion_reports_the_final_recipient() -> None:
    # Postfix 3.7.11, alias "ghost: nosuchuser", RCPT TO:<ghost@example.com>.
    from dataclasses import replace

    from postier.bounce.dsn import recipient_fields, recipient_line

    st = replace(bounced("5.1.1", 'unknown user: "nosuchuser"'),
                 final_recipient="nosuchuser@example.com")
    r = Failed.of("ghost@example.com", "", st)
    assert recipient_line(NoticeKind.FAILURE, r) == [
        "<nosuchuser@example.com> (expanded from <ghost@example.com>): unknown user:",
        '    "nosuchuser"']
    fields = recipient_fields(NoticeKind.FAILURE, r)
    assert fields[:2] == ["Final-Recipient: rfc822; nosuchuser@example.com",
                          "Original-Recipient: rfc822;ghost@example.com"]
    plain = Failed.of("tintin@example.com", "", bounced("5.1.1", "x"))
    assert (plain.recipient, plain.orig) == ("tintin@example.com", "")
