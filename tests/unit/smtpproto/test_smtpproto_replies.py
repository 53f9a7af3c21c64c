"""Reply formatting and Postfix's reply texts."""

from __future__ import annotations

import pytest

from postier.smtpproto import replies as r
from postier.smtpproto.replies import Reply


def test_single_line_with_enhanced_code() -> None:
    assert r.OK.to_bytes() == b"250 2.0.0 Ok\r\n"
    assert r.MAIL_OK.to_bytes() == b"250 2.1.0 Ok\r\n"
    assert r.RCPT_OK.to_bytes() == b"250 2.1.5 Ok\r\n"
    assert r.queued("3F1A2B4C5D").to_bytes() == b"250 2.0.0 Ok: queued as 3F1A2B4C5D\r\n"
    assert r.BYE.to_bytes() == b"221 2.0.0 Bye\r\n"
    assert r.DATA_GO.to_bytes() == b"354 End data with <CR><LF>.<CR><LF>\r\n"


def test_ehlo_lines_carry_no_enhanced_code() -> None:
    reply = r.ehlo("tintin.example.com", ["PIPELINING", "SIZE 10240000", "8BITMIME"])
    assert reply.to_bytes() == (
        b"250-tintin.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"
    )
    assert r.helo("tintin.example.com").to_bytes() == b"250 tintin.example.com\r\n"
    assert r.greeting("tintin.example.com ESMTP Postfix").to_bytes() == (
        b"220 tintin.example.com ESMTP Postfix\r\n"
    )


def test_multi_line_repeats_enhanced_code() -> None:
    reply = Reply(550, "5.7.1", ("first", "second"))
    assert reply.to_bytes() == b"550-5.7.1 first\r\n550 5.7.1 second\r\n"
    assert str(reply) == "550 5.7.1 first 550 5.7.1 second"


def test_client_text_cannot_inject_reply_lines() -> None:
    reply = r.user_unknown("a\r\n250 2.0.0 Ok@example.com", 550)
    wire = reply.to_bytes()
    assert wire.count(b"\r\n") == 1 and wire.endswith(b"\r\n")
    assert wire.startswith(b"550 5.1.1 <a??250 2.0.0 Ok@example.com>")


def test_restriction_texts() -> None:
    rc = r.ReplyClass
    assert str(r.user_unknown("tintin@example.com", 550)) == (
        "550 5.1.1 <tintin@example.com>: Recipient address rejected: "
        "User unknown in local recipient table"
    )
    assert str(r.user_unknown("nobody@example.com", 550, rc.SENDER)) == (
        "550 5.1.0 <nobody@example.com>: Sender address rejected: "
        "User unknown in local recipient table"
    )
    assert str(r.relay_denied("x@example.org", 554)) == (
        "554 5.7.1 <x@example.org>: Relay access denied"
    )
    assert str(r.relay_denied("x@example.org", 454)) == (
        "454 4.7.1 <x@example.org>: Relay access denied"
    )
    assert str(r.rejected(504, "5.5.2", rc.HELO, "bad host", "Invalid name")) == (
        "504 5.5.2 <bad host>: Helo command rejected: Invalid name"
    )
    assert str(r.invalid_helo("bad..name", 501)) == (
        "501 5.5.2 <bad..name>: Helo command rejected: Invalid name"
    )
    assert str(r.non_fqdn_helo("tintin", 504)) == (
        "504 5.5.2 <tintin>: Helo command rejected: need fully-qualified hostname"
    )
    assert str(r.unknown_helo_hostname("nx.example", 450)) == (
        "450 4.7.1 <nx.example>: Helo command rejected: Host not found"
    )
    assert str(r.access_denied(554, rc.CLIENT, "bad.example[192.0.2.1]")) == (
        "554 5.7.1 <bad.example[192.0.2.1]>: Client host rejected: Access denied"
    )
    assert str(r.unknown_client("192.0.2.1", 450)) == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]"
    )
    assert str(r.unknown_client("192.0.2.1", 550, reverse=True)) == (
        "550 5.7.25 Client host rejected: cannot find your reverse hostname, [192.0.2.1]"
    )
    assert str(r.rejected(553, "5.7.1", rc.SENDER, "a@b", "not owned")) == (
        "553 5.7.1 <a@b>: Sender address rejected: not owned"
    )
    assert str(r.unknown_domain("a@nx", 450, rc.RECIPIENT)) == (
        "450 4.1.2 <a@nx>: Recipient address rejected: Domain not found"
    )
    assert str(r.unknown_domain("a@nx", 450, rc.SENDER)) == (
        "450 4.1.8 <a@nx>: Sender address rejected: Domain not found"
    )
    assert str(r.non_fqdn_address("bob", 504, rc.SENDER)) == (
        "504 5.5.2 <bob>: Sender address rejected: need fully-qualified address"
    )
    assert str(r.try_again_later(450, rc.DATA, "DATA")) == (
        "450 4.3.2 <DATA>: Data command rejected: Try again later"
    )
    assert str(r.defer_requested(450, rc.END_OF_DATA, "END-OF-MESSAGE", "defer_if_permit")) == (
        "450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: defer_if_permit requested"
    )
    assert str(r.temporary_lookup_failure("a@b")) == "451 4.3.0 <a@b>: Temporary lookup failure"
    assert str(Reply(550, "5.7.1", "go away")) == "550 5.7.1 go away"
    assert str(r.timeout("mx.example")) == "421 4.4.2 mx.example Error: timeout exceeded"
    assert str(r.too_many_errors("mx.example")) == "421 4.7.0 mx.example Error: too many errors"
    assert str(r.unsupported_option("FOO=1")) == "555 5.5.4 Unsupported option: FOO=1"
    assert str(r.unauth_pipelining(rc.CLIENT, "unknown[192.0.2.1]")) == (
        "503 5.5.0 <unknown[192.0.2.1]>: Client host rejected: "
        "Improper use of SMTP command pipelining"
    )


@pytest.mark.parametrize(("text", "expected"), [
    ("", "554 5.7.1 <a@b>: Recipient address rejected: "),
    ("go away", "554 5.7.1 <a@b>: Recipient address rejected: go away"),
    ("5.7.0 go away", "554 5.7.0 <a@b>: Recipient address rejected: go away"),
    ("4.7.0 go away", "554 5.7.1 <a@b>: Recipient address rejected: 4.7.0 go away"),
    ("5.7.0", "554 5.7.1 <a@b>: Recipient address rejected: 5.7.0"),
])
def test_access_text_may_carry_its_own_enhanced_code(text: str, expected: str) -> None:
    assert str(r.access_text(554, r.ReplyClass.RECIPIENT, "a@b", text)) == expected


@pytest.mark.parametrize(
    ("code", "enhanced"), [(199, None), (600, None), (550, "4.7.1"), (250, "2.0"), (250, "x.0.0")]
)
def test_bad_replies_are_refused(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        Reply(code, enhanced, "text")
