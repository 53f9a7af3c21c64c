"""Delivery status notifications end to end: DSN on the wire (RFC 3461), notices in mboxes.

A real postier with local delivery: messages to unknown local users bounce, and the
sender's mbox receives an RFC 3464 report, read back with Python's ``email`` package;
NOTIFY=SUCCESS gives a success notice, NOTIFY=NEVER none, RET=HDRS only the headers,
and a bounce that cannot be delivered goes to the 2bounce_notice_recipient.
"""

from __future__ import annotations

import mailbox
import smtplib
import time
from email.message import Message
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="delivers to real local users"),
]

ORIGINAL = (
    b"From: Tintin <tintin@example.com>\r\n"
    b"Subject: %s\r\n"
    b"\r\n"
    b"Le corps du message.\r\n"
)


def start(make_instance, tutorial_main_cf: str, extra: str = "") -> Instance:
    ensure_user("tintin")
    ensure_user("haddock")
    inst: Instance = make_instance(
        tutorial_main_cf,
        # Unknown users are accepted by smtpd, so that local bounces them.
        "mailbox_command =\nsmtpd_reject_unlisted_recipient = no\n"
        "smtpd_sender_restrictions =\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
        + extra)
    assert inst.start().returncode == 0, inst.log()
    return inst


def messages(path: Path) -> list[mailbox.mboxMessage]:
    if not path.exists():
        return []
    box = mailbox.mbox(str(path), create=False)
    try:
        return list(box)
    finally:
        box.close()


def envelope_sender(msg: mailbox.mboxMessage) -> str:
    """The address on the mbox ``From `` line (Postfix's local writes the sender there)."""
    return msg.get_from().split()[0]


def wait_messages(
    inst: Instance, user: str, count: int, timeout: float = 20.0,
) -> list[mailbox.mboxMessage]:
    path = inst.mailbox(user)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = messages(path)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(
        f"{path}: {len(messages(path))} message(s), expected {count}\n{inst.log()}")


def report(msg: Message) -> tuple[list[Message], list[Message]]:
    """The parts of a multipart/report and the field groups of its delivery-status."""
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    assert parts[1].get_content_type() == "message/delivery-status"
    fields = parts[1].get_payload()
    assert isinstance(fields, list)
    return parts, fields


def send(inst: Instance, sender: str, rcpts: list[tuple[str, list[str]]], subject: bytes,
         mail_options: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        code, ehlo = smtp.ehlo("milou.example.net")
        assert code == 250 and "DSN" in ehlo.decode().splitlines()
        assert smtp.mail(sender, mail_options or [])[0] == 250
        for rcpt, options in rcpts:
            code, text = smtp.rcpt(rcpt, options)
            assert code == 250, text
        code, text = smtp.data(ORIGINAL % subject)
        assert code == 250, text


def test_unknown_local_user_bounces_with_an_rfc3464_report(
    make_instance, tutorial_main_cf: str,
) -> None:
    inst = start(make_instance, tutorial_main_cf)
    send(inst, "tintin@example.com", [("personne@example.com", [])], b"one")
    [bounce] = wait_messages(inst, "tintin", 1)
    assert envelope_sender(bounce) == "MAILER-DAEMON"
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    # Postfix 3.7.11 with myorigin = $mydomain: MAILER-DAEMON@$myorigin (side by side)
    assert bounce["From"] == "Mail Delivery System <MAILER-DAEMON@example.com>"
    parts, fields = report(bounce)
    assert "<personne@example.com>: unknown user" in str(parts[0].get_payload())
    assert fields[0]["Reporting-MTA"] == "dns; tintin.example.com"
    assert fields[0]["X-Postfix-Sender"] == "rfc822; tintin@example.com"
    assert fields[1]["Final-Recipient"] == "rfc822; personne@example.com"
    assert fields[1]["Action"] == "failed"
    assert fields[1]["Status"] == "5.1.1"
    assert fields[1]["Diagnostic-Code"].startswith("X-Postfix; unknown user")
    assert parts[2].get_content_type() == "message/rfc822"  # RET absent: the whole message
    returned = parts[2].get_payload()[0]
    assert returned["Subject"] == "one" and "Le corps du message." in returned.get_payload()
    log = inst.wait_log("sender non-delivery notification:")
    assert "status=bounced" in log


def test_notify_success_never_ret_hdrs_envid_and_orcpt(
    make_instance, tutorial_main_cf: str,
) -> None:
    inst = start(make_instance, tutorial_main_cf)
    send(inst, "tintin@example.com", [
        ("haddock@example.com", ["NOTIFY=SUCCESS"]),
        ("personne@example.com", ["NOTIFY=NEVER"]),
    ], b"two")
    inst.wait_log("removed", count=2)  # the message, then the success notice
    send(inst, "tintin@example.com",
         [("inconnu@example.com", ["NOTIFY=FAILURE", "ORCPT=rfc822;alias+40example.org"])],
         b"three", ["RET=HDRS", "ENVID=QQ+2B42"])
    found = wait_messages(inst, "tintin", 2)
    time.sleep(1.0)  # nothing else arrives (no notice for NOTIFY=NEVER)
    found = messages(inst.mailbox("tintin"))
    assert [m["Subject"] for m in found] == [
        "Successful Mail Delivery Report", "Undelivered Mail Returned to Sender"]
    success, failure = found
    parts, fields = report(success)
    assert "<haddock@example.com>: delivery via local: delivered to mailbox" in str(
        parts[0].get_payload())
    assert [f["Final-Recipient"] for f in fields[1:]] == ["rfc822; haddock@example.com"]
    assert (fields[1]["Action"], fields[1]["Status"]) == ("delivered", "2.0.0")
    assert b"personne" not in success.as_bytes()

    parts, fields = report(failure)
    assert fields[0]["Original-Envelope-Id"] == "QQ+42"  # xtext decoded, as Postfix shows it
    assert fields[1]["Original-Recipient"] == "rfc822;alias@example.org"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert parts[2]["Content-Description"] == "Undelivered Message Headers"
    assert "Subject: three" in str(parts[2].get_payload())
    assert b"Le corps du message." not in failure.as_bytes()
    assert [m["Subject"] for m in messages(inst.mailbox("haddock"))] == ["two"]


def test_a_bounce_that_cannot_be_delivered_goes_to_the_postmaster(
    make_instance, tutorial_main_cf: str,
) -> None:
    inst = start(make_instance, tutorial_main_cf,
                 "notify_classes = 2bounce\n2bounce_notice_recipient = haddock\n")
    send(inst, "fantome@example.com", [("personne@example.com", [])], b"four")
    [notice] = wait_messages(inst, "haddock", 1)
    assert envelope_sender(notice) == "double-bounce@example.com"
    assert notice["Subject"] == "Postmaster Copy: Undelivered Mail"
    assert notice["To"] == "haddock@example.com"
    parts, fields = report(notice)
    assert fields[1]["Final-Recipient"] == "rfc822; fantome@example.com"
    assert fields[1]["Status"] == "5.1.1"
    bounce = parts[2].get_payload()[0]  # the undeliverable bounce, whole
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    log = inst.wait_log("postmaster non-delivery notification:")
    assert "undeliverable" not in log
    assert not inst.mailbox("fantome").exists()


def test_a_bounce_that_cannot_be_delivered_is_dropped_silently_by_default(
    make_instance, tutorial_main_cf: str,
) -> None:
    """Postfix 3.7's bounce(8): without the bounce or 2bounce class, a failed bounce gets
    no notice and no warning; its status=bounced line and removed are all there is."""
    inst = start(make_instance, tutorial_main_cf)
    send(inst, "fantome@example.com", [("personne@example.com", [])], b"five")
    log = inst.wait_log(": removed", count=2)
    bounced = [line for line in log.splitlines() if "status=bounced" in line]
    assert len(bounced) == 2
    assert "to=<fantome@example.com>" in bounced[1]
    queue_lines = [line for line in log.splitlines()
                   if "postfix/qmgr[" in line or "postfix/bounce[" in line]
    assert queue_lines and not [line for line in queue_lines if "warning" in line]
    assert "undeliverable" not in log
    assert not inst.mailbox("fantome").exists()


def test_a_postmaster_notice_that_cannot_be_delivered_is_discarded_with_postfix_s_warning(
    make_instance, tutorial_main_cf: str,
) -> None:
    """A failed double bounce is never answered: bounce(8)'s one warning line."""
    inst = start(make_instance, tutorial_main_cf,
                 "notify_classes = 2bounce\n2bounce_notice_recipient = personne\n")
    send(inst, "fantome@example.com", [("personne@example.com", [])], b"six")
    log = inst.wait_log(": removed", count=3)
    warnings = [line for line in log.splitlines() if "warning" in line
                and ("postfix/qmgr[" in line or "postfix/bounce[" in line)]
    assert len(warnings) == 1, log
    assert warnings[0].endswith(": undeliverable postmaster notification discarded")
    assert "/bounce[" in warnings[0]


def test_same_address_with_another_notify_or_original_is_another_recipient(
    make_instance, tutorial_main_cf: str,
) -> None:
    """cleanup(8) drops a recipient only when its address, original recipient, NOTIFY
    and ORCPT equal an earlier one's. Postfix 3.7.11 side by side: <fz3b@example.com>
    then the same with NOTIFY=SUCCESS is nrcpt=2, two deliveries and a success notice
    (a third, identical to the second, is dropped); two original recipients that
    resolve to one address are both delivered, each logged with its orig_to."""
    inst = start(make_instance, tutorial_main_cf)
    send(inst, "tintin@example.com", [
        ("haddock@example.com", []),
        ("haddock@example.com", ["NOTIFY=SUCCESS"]),
        ("haddock@example.com", ["NOTIFY=SUCCESS"]),
    ], b"notify")
    log = inst.wait_log("sender delivery status notification:")
    assert "nrcpt=2 (queue active)" in log, log
    [notice] = wait_messages(inst, "tintin", 1)
    assert notice["Subject"] == "Successful Mail Delivery Report"
    _, fields = report(notice)
    assert [f["Final-Recipient"] for f in fields[1:]] == ["rfc822; haddock@example.com"]
    assert [m["Subject"] for m in wait_messages(inst, "haddock", 2)] == ["notify", "notify"]

    send(inst, "tintin@example.com", [
        ("haddock%example.com@example.com", []),
        ("example.com!haddock@example.com", []),
    ], b"origs")
    inst.wait_log("status=sent", count=4)
    log = inst.log()
    assert log.count("nrcpt=2 (queue active)") == 2, log
    for orig in ("haddock%example.com@example.com", "example.com!haddock@example.com"):
        assert f"to=<haddock@example.com>, orig_to=<{orig}>" in log, log
    found = wait_messages(inst, "haddock", 4)
    assert [m["Subject"] for m in found] == ["notify", "notify", "origs", "origs"]
