"""The SMTP client and SMTPUTF8 (RFC 6531 3.2): when a next hop must offer it, and the
5.6.7 status as Postfix 3.7.11 logs it (``status=bounced (SMTPUTF8 is required, but was
not offered by host 127.0.0.1[127.0.0.1])``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from postier.delivery.status import Kind
from postier.smtp import diagnostics
from postier.smtp.session import Message, Recipient
from postier.smtp.transport import needs_smtputf8


async def _nothing() -> AsyncIterator[bytes]:
    yield b""


def message(sender: str, smtputf8: bool, required: bool = False) -> Message:
    return Message(sender=sender, size=10, content=_nothing, smtputf8=smtputf8,
                   smtputf8_required=required)


@pytest.mark.parametrize(("sender", "rcpts", "smtputf8", "needed"), [
    ("ö@b.net", ["x@far.test"], True, True),  # Postfix: bounced
    ("a@b.net", ["ü@far.test", "q@far.test"], True, True),  # bounced, both recipients
    ("a@b.net", ["y@far.test"], True, False),  # ASCII envelope: sent without SMTPUTF8
    ("ö@b.net", ["ü@far.test"], False, False),  # not received with SMTPUTF8
    ("", ["x@far.test"], True, False),
])
def test_needs_smtputf8(sender: str, rcpts: list[str], smtputf8: bool, needed: bool) -> None:
    recipients = [Recipient(i, r) for i, r in enumerate(rcpts)]
    assert needs_smtputf8(message(sender, smtputf8), recipients) is needed


def test_an_autodetected_message_needs_smtputf8_whatever_its_envelope() -> None:
    # Postfix 3.7 with smtputf8_autodetect_classes = smtpd: "Subject: ü" from a@b.net to
    # y@far.test, with or without SMTPUTF8 on MAIL, bounced 5.6.7
    assert needs_smtputf8(message("a@b.net", True, required=True), [Recipient(0, "y@far.test")])


def test_the_status_when_the_server_does_not_offer_smtputf8() -> None:
    st = diagnostics.smtputf8_required("127.0.0.1[127.0.0.1]", "127.0.0.1[127.0.0.1]:2600")
    assert st.kind is Kind.BOUNCED
    assert st.dsn == "5.6.7"
    assert st.text == "SMTPUTF8 is required, but was not offered by host 127.0.0.1[127.0.0.1]"
    assert st.relay == "127.0.0.1[127.0.0.1]:2600"
