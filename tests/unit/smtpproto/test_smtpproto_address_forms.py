"""RCPT/MAIL path parsing (readers.parse_path through the server core): the address
forms Postfix 3.7's smtpd reads with its RFC 822 tokenizer (blanks, comments, quoted
parts, escapes, source routes, several addresses, empty parts), each with the address
Postfix 3.7 echoed side by side, or its 501 5.1.3 / 5.1.7."""

from __future__ import annotations

import pytest

from postier.rewrite.address import resolve_routing
from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.readers import parse_path
from postier.smtpproto.server import ServerConnection

# (path as sent, the address Postfix 3.7 echoed in its reply; None: 501 5.1.3 / 5.1.7)
FORMS: list[tuple[str, str | None]] = [
    ("<victim@example.org >", "victim@example.org"),
    ("< victim@example.org>", "victim@example.org"),
    ("<victim@example.org(comment)>", "victim@example.org"),
    ("<victim(x)@example.com>", "victim@example.com"),
    ("<victim@example.org\\@example.com>", "victim@example.org@example.com"),
    ('<"victim@example.org"@example.com>', "victim@example.org@example.com"),
    ("<@:victim@example.org>", "victim@example.org"),
    ("<tintin@[127.000.000.001]>", "tintin@[127.000.000.001]"),
    ("<a@example.org,tintin@example.com>", None),
    ("<a,@example.com>", None),
    ("<a<b@example.com>", None),
    ('<a"@example.com>', None),
    ('<"a""b"@example.com>', None),
    ("<a b@example.com>", None),
    ("<x@>", None),
    ("<@>", None),
    ('<"victim"@example.com>', "victim@example.com"),
    ("<a:b@example.com>", "a:b@example.com"),
    ("<a(b>c)@example.com>", "a@example.com"),
    ("< a @ example . com >", "a@example.com"),
    ("<a@[1.2.3.4>", "a@[1.2.3.4]"),
    ("victim(x)@example.org", "victim@example.org"),
    ("<@a,@b:victim@example.org>", "victim@example.org"),
    ("<%x@example.com>", "%x@example.com"),
    ("<a@example.org;tintin@example.com>", None),
]


# (path, Postfix 3.7's verdict for RCPT and for MAIL) where only the resolve step in a
# local domain (example.com) decides: the domain left after it is checked
RESOLVED: list[tuple[str, bool, bool]] = [
    ("<tintin@@example.com>", False, False),
    ("<x@@example.org>", True, True),  # not a local domain: nothing resolved
    ("<victim%@example.com>", False, False),
]


def local_resolve(address: str) -> str:
    return resolve_routing(address, lambda domain: domain.lower() == "example.com")


@pytest.mark.parametrize(("path", "rcpt_ok", "mail_ok"), RESOLVED)
def test_domain_checked_after_the_resolve_step(path: str, rcpt_ok: bool, mail_ok: bool) -> None:
    conn = ServerConnection(resolve=local_resolve)
    event = one(conn, f"MAIL FROM:{path}\r\n".encode())
    assert isinstance(event, ev.Mail) is mail_ok, event
    if not mail_ok:
        assert event == ev.ProtocolError(r.BAD_SENDER_SYNTAX, "MAIL")
        conn.send(r.BAD_SENDER_SYNTAX)
        assert one(conn, b"MAIL FROM:<x@example.org>\r\n") == ev.Mail("x@example.org", {})
    conn.send(r.MAIL_OK)
    event = one(conn, f"RCPT TO:{path}\r\n".encode())
    assert isinstance(event, ev.Rcpt) is rcpt_ok, event
    if not rcpt_ok:
        assert event == ev.ProtocolError(r.BAD_RECIPIENT_SYNTAX, "RCPT")


def one(conn: ServerConnection, line: bytes) -> ev.Event:
    conn.receive_data(line)
    event = conn.next_event()
    assert not isinstance(event, ev.NeedData)
    return event


@pytest.mark.parametrize(("path", "address"), FORMS)
def test_rcpt_forms_as_postfix(path: str, address: str | None) -> None:
    conn = ServerConnection()
    assert one(conn, b"MAIL FROM:<x@example.org>\r\n") == ev.Mail("x@example.org", {})
    conn.send(r.MAIL_OK)
    event = one(conn, f"RCPT TO:{path}\r\n".encode())
    if address is None:
        assert event == ev.ProtocolError(r.BAD_RECIPIENT_SYNTAX, "RCPT")
    else:
        assert event == ev.Rcpt(address, {})


@pytest.mark.parametrize(("path", "address"), FORMS)
def test_mail_forms_as_postfix(path: str, address: str | None) -> None:
    conn = ServerConnection()
    event = one(conn, f"MAIL FROM:{path}\r\n".encode())
    if address is None:
        assert event == ev.ProtocolError(r.BAD_SENDER_SYNTAX, "MAIL")
    else:
        assert event == ev.Mail(address, {})


@pytest.mark.parametrize(("text", "parsed"), [
    ("<a@b> SIZE=10", ("a@b", "SIZE=10")),
    ("a@b SIZE=10", ("a@b", "SIZE=10")),
    ("<>", ("", "")),
    ("<@a,@b:u@c>", ("u@c", "")),
    ('<"a b"@example.com>', ('"a b"@example.com', "")),  # still needs its quotes
    ('<"a\\"b"@example.com>', ('"a\\"b"@example.com', "")),
    ("<a(b>c)@d>", ("a@d", "")),  # a ">" in a comment does not end the path
    ('<"a>b"@d>', ('"a>b"@d', "")),
    ("<a@[IPv6:::1]>", ("a@[IPv6:::1]", "")),
    ("< a @ example . com >", ("a@example.com", "")),
    ("<<a@b>>", None), ("<a@b", None), ("<a@b>x", None), ("<a\\>", None),
    ("<a(b@c>", None), ('<"a@c>', None), ("<a@[1.2.3.4>", ("a@[1.2.3.4]", "")),
    ("<a:b@c>", ("a:b@c", "")), ("<a>b@c>", None), ("<a@@b>", ("a@@b", "")),
    ("<a\x01@b>", None), ("", None),
])
def test_parse_path(text: str, parsed: tuple[str, str] | None) -> None:
    assert parse_path(text) == parsed
