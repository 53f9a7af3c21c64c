"""ETRN, XCLIENT and XFORWARD in the server core and their attribute syntax: each expected
reply is what Postfix 3.7's smtpd answered to the same line (side by side, this issue)."""

from __future__ import annotations

import pytest
from smtpproto_helpers import HOST, positive, run

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection, State
from postier.smtpproto.xclient import (
    BOTH,
    Command,
    address_value,
    ehlo_keyword,
    etrn_site,
    inet_families,
    parse_attributes,
    xtext_decode,
)


def shell(event: ev.Event) -> Reply | None:
    """Accepts everything; XCLIENT is answered with the greeting, as smtpd does."""
    match event:
        case ev.Etrn():
            return r.ETRN_OK
        case ev.Xclient():
            return r.greeting(f"{HOST} ESMTP Postfix")
        case ev.Xforward():
            return r.OK
    return positive(event)


def transcript(*lines: str, **kwargs: object) -> tuple[list[ev.Event], str]:
    events, out = run([("".join(line + "\r\n" for line in lines)).encode()], shell, **kwargs)
    return events, out.decode()


def test_etrn_replies_as_postfix() -> None:
    events, out = transcript("ETRN", "ETRN a b", "ETRN relay.example", "MAIL FROM:<a@b.example>",
                             "ETRN relay.example", "RSET", "ETRN @relay.example")
    assert out.split("\r\n")[:-1] == [
        "500 Syntax: ETRN domain",
        "500 Syntax: ETRN domain",
        "250 Queuing started",
        "250 2.1.0 Ok",
        "503 Error: MAIL transaction in progress",
        "250 2.0.0 Ok",
        "250 Queuing started",
    ]
    assert [e.site for e in events if isinstance(e, ev.Etrn)] == ["relay.example",
                                                                  "@relay.example"]


def test_etrn_needs_helo_when_required() -> None:
    _, out = transcript("ETRN relay.example", "EHLO a.example", "ETRN relay.example",
                        helo_required=True)
    lines = out.split("\r\n")
    assert lines[0] == "503 Error: send HELO/EHLO first"
    assert lines[-2] == "250 Queuing started"
    _, out = transcript("ETRN relay.example")  # not required: the shell decides
    assert out == "250 Queuing started\r\n"


@pytest.mark.parametrize("command, syntax", [("XCLIENT", r.XCLIENT_SYNTAX),
                                             ("XFORWARD", r.XFORWARD_SYNTAX)])
def test_x_commands_refused_in_a_transaction_then_without_arguments(
        command: str, syntax: Reply) -> None:
    _, out = transcript(command, "MAIL FROM:<a@b.example>", command, f"{command} ADDR=1.2.3.4")
    assert out.split("\r\n")[:-1] == [
        str(syntax),
        "250 2.1.0 Ok",
        "503 5.5.1 Error: MAIL transaction in progress",
        "503 5.5.1 Error: MAIL transaction in progress",
    ]
    assert syntax.to_bytes() == f"501 5.5.4 Syntax: {command} attribute=value...\r\n".encode()


def test_xclient_220_starts_over_without_helo() -> None:
    conn = ServerConnection(helo_required=True)
    events, out = run([b"EHLO a.example\r\nMAIL FROM:<a@b.example>\r\nRSET\r\n"
                       b"XCLIENT ADDR=192.0.2.7\r\nMAIL FROM:<a@b.example>\r\n"], shell, conn)
    assert out.decode().split("\r\n")[-3:-1] == [f"220 {HOST} ESMTP Postfix",
                                                 "503 5.5.1 Error: send HELO/EHLO first"]
    assert conn.helo_name is None and conn.state is State.IDLE
    assert ev.Xclient(("ADDR=192.0.2.7",)) in events


def test_xclient_presets_the_helo_the_shell_gives() -> None:
    conn = ServerConnection(helo_required=True)

    def presetting(event: ev.Event) -> Reply | None:
        if isinstance(event, ev.Xclient):
            conn.xclient_helo = ("xh.example", True)
        return shell(event)

    _, out = run([b"XCLIENT HELO=xh.example PROTO=ESMTP\r\nMAIL FROM:<a@b.example>\r\n"],
                 presetting, conn)
    assert out.decode().split("\r\n")[-2] == "250 2.1.0 Ok"
    assert conn.helo_name == "xh.example" and conn.esmtp


def test_xclient_holds_parsing_until_answered() -> None:
    conn = ServerConnection()
    conn.receive_data(b"XCLIENT ADDR=1.2.3.4\r\nMAIL FROM:<a@b.example>\r\n")
    assert isinstance(conn.next_event(), ev.Xclient)
    assert conn.next_event() is ev.NEED_DATA


# --- attributes (Postfix 3.7's answers to the same XCLIENT/XFORWARD lines) -------------

@pytest.mark.parametrize("words, reply", [
    (["FOO=bar"], "501 5.5.4 Bad XCLIENT attribute name: FOO"),
    (["ADDR=bad"], "501 5.5.4 Bad ADDR syntax: bad"),
    (["PROTO=FOO"], "501 5.5.4 Bad PROTO syntax: FOO"),
    (["NAME=-bad"], "501 5.5.4 Bad NAME syntax: -bad"),
    (["NAME=a+ZZb"], "501 5.5.4 Bad NAME syntax: a+ZZb"),
    (["NAME=a+2"], "501 5.5.4 Bad NAME syntax: a+2"),
    (["ADDR=::1"], "501 5.5.4 Bad ADDR syntax: ::1"),
    (["ADDR=[TEMPUNAVAIL]"], "501 5.5.4 Bad ADDR syntax: [TEMPUNAVAIL]"),
    (["DESTPORT=x"], "501 5.5.4 Bad DESTPORT syntax: x"),
    (["DESTADDR=bad"], "501 5.5.4 Bad DESTADDR syntax: bad"),
    (["PORT=x"], "501 5.5.4 Bad PORT syntax: x"),
    (["PORT="], "501 5.5.4 Error: attribute=value expected"),
    (["ADDR"], "501 5.5.4 Error: attribute=value expected"),
    (["LOGIN="], "501 5.5.4 Error: attribute=value expected"),
])
def test_xclient_bad_attributes(words: list[str], reply: str) -> None:
    refusal = parse_attributes(Command.XCLIENT, words)
    assert isinstance(refusal, Reply) and str(refusal) == reply


@pytest.mark.parametrize("words, reply", [
    (["FOO=1"], "501 5.5.4 Bad XFORWARD attribute name: FOO"),
    (["ADDR=bad"], "501 5.5.4 Bad ADDR syntax: bad"),
    (["SOURCE=OTHER"], "501 5.5.4 Bad SOURCE syntax: OTHER"),
    (["PORT=abc"], "501 5.5.4 Bad PORT syntax: abc"),
    (["ADDR"], "501 5.5.4 Error: attribute=value expected"),
])
def test_xforward_bad_attributes(words: list[str], reply: str) -> None:
    refusal = parse_attributes(Command.XFORWARD, words)
    assert isinstance(refusal, Reply) and str(refusal) == reply


def test_attributes_postfix_accepts() -> None:
    assert parse_attributes(Command.XCLIENT, [
        "addr=1.2.3.4", "name=h.example", "PORT=99999", "PROTO=esmtp", "HELO=a+20b",
        "NAME=[UNAVAILABLE]", "REVERSE_NAME=a_b.example", "LOGIN=joe", "DESTADDR=10.0.0.1",
        "DESTPORT=25"]) == {
        "ADDR": "1.2.3.4", "NAME": "[UNAVAILABLE]", "PORT": "99999", "PROTO": "ESMTP",
        "HELO": "a b", "REVERSE_NAME": "a_b.example", "LOGIN": "joe",
        "DESTADDR": "10.0.0.1", "DESTPORT": "25"}
    assert parse_attributes(Command.XFORWARD, [
        "NAME=x.example", "ADDR=1.2.3.6", "PORT=25", "PROTO=bad/x", "HELO=h.example",
        "IDENT=abc", "SOURCE=remote"]) == {
        "NAME": "x.example", "ADDR": "1.2.3.6", "PORT": "25", "PROTO": "BAD/X",
        "HELO": "h.example", "IDENT": "abc", "SOURCE": "REMOTE"}
    assert parse_attributes(Command.XCLIENT, ["ADDR=IPV6:2001:db8::1"]) == {
        "ADDR": "IPV6:2001:db8::1"}
    assert address_value("IPV6:2001:db8::1") == "2001:db8::1"
    assert address_value("[UNAVAILABLE]") == "unknown"


def test_ehlo_keywords_as_postfix() -> None:
    assert ehlo_keyword(Command.XCLIENT) == (
        "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT")
    assert ehlo_keyword(Command.XFORWARD) == "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT"


def test_xtext() -> None:
    assert xtext_decode("a+2Eb+2B") == "a.b+"
    assert xtext_decode("a+2eb") is None  # hex digits are upper-case
    assert xtext_decode("a+") is None
    assert xtext_decode("a b") is None


@pytest.mark.parametrize("argument, site", [
    ("relay.example", "relay.example"), ("@relay.example", "relay.example"),
    ("#relay.example", "relay.example"), ("[1.2.3.4]", "[1.2.3.4]"), ("x", "x"),
    ("-bad", None), ("[300.1.1.1]", None), ("a..b", None),
])
def test_etrn_site(argument: str, site: str | None) -> None:
    assert etrn_site(argument) == site


def test_etrn_replies_texts() -> None:
    assert str(r.etrn_unavailable("other.example")) == "459 <other.example>: service unavailable"
    assert str(r.ETRN_BAD_PARAMETER) == "501 Error: invalid parameter syntax"
    assert str(r.client_access_denied("localhost[127.0.0.1]")) == (
        "503 5.7.0 Error: access denied for localhost[127.0.0.1]")
    assert str(r.INSUFFICIENT_AUTHORIZATION) == "550 5.7.0 Error: insufficient authorization"


# --- Postfix 3.7.11 side by side: every line below is its answer (or the address its
# ``disconnect from unknown[ADDR]`` line showed), for inet_protocols ipv4, ipv6, all.

V4, V6 = frozenset({4}), frozenset({6})


@pytest.mark.parametrize("families, word, reply", [
    (V4, "ADDR=IPV6:2001:db8::1", "501 5.5.4 Bad ADDR syntax: IPV6:2001:db8::1"),
    (V4, "ADDR=ipv6:2001:db8::1", "501 5.5.4 Bad ADDR syntax: ipv6:2001:db8::1"),
    (V4, "DESTADDR=IPV6:2001:db8::1", "501 5.5.4 Bad DESTADDR syntax: IPV6:2001:db8::1"),
    (V4, "ADDR=2001:db8::1", "501 5.5.4 Bad ADDR syntax: 2001:db8::1"),
    (V4, "ADDR=10.0.0.256", "501 5.5.4 Bad ADDR syntax: 10.0.0.256"),
    (V4, "ADDR=IPV6:10.0.0.1", "501 5.5.4 Bad ADDR syntax: IPV6:10.0.0.1"),
    (V4, "ADDR=[TEMPUNAVAIL]", "501 5.5.4 Bad ADDR syntax: [TEMPUNAVAIL]"),
    (V6, "ADDR=10.0.0.1", "501 5.5.4 Bad ADDR syntax: 10.0.0.1"),
    (V6, "DESTADDR=10.0.0.1", "501 5.5.4 Bad DESTADDR syntax: 10.0.0.1"),
    (BOTH, "ADDR=0.1.2.3", "501 5.5.4 Bad ADDR syntax: 0.1.2.3"),
    (BOTH, "ADDR=08.0.0.1", "501 5.5.4 Bad ADDR syntax: 08.0.0.1"),
    (BOTH, "ADDR=1.2.3", "501 5.5.4 Bad ADDR syntax: 1.2.3"),
    (BOTH, "ADDR=IPV6:fe80::1%lo", "501 5.5.4 Bad ADDR syntax: IPV6:fe80::1%lo"),
    (BOTH, "ADDR=IPV6:[::1]", "501 5.5.4 Bad ADDR syntax: IPV6:[::1]"),
    (BOTH, "ADDR=IPV6:1::2::3", "501 5.5.4 Bad ADDR syntax: IPV6:1::2::3"),
    (BOTH, "PORT=[TEMPUNAVAIL]", "501 5.5.4 Bad PORT syntax: [TEMPUNAVAIL]"),
    (BOTH, "PORT=100000", "501 5.5.4 Bad PORT syntax: 100000"),
    (BOTH, "PROTO=[UNAVAILABLE]", "501 5.5.4 Bad PROTO syntax: [UNAVAILABLE]"),
    (BOTH, "PROTO=LMTP", "501 5.5.4 Bad PROTO syntax: LMTP"),
    (BOTH, "NAME=1.2.3.4", "501 5.5.4 Bad NAME syntax: 1.2.3.4"),
    (BOTH, "NAME=a..b", "501 5.5.4 Bad NAME syntax: a..b"),
])
def test_xclient_refusals_as_postfix(families: frozenset[int], word: str, reply: str) -> None:
    refusal = parse_attributes(Command.XCLIENT, [word], families)
    assert isinstance(refusal, Reply) and str(refusal) == reply


@pytest.mark.parametrize("families, word, value", [
    (V4, "ADDR=010.0.0.1", "8.0.0.1"),
    (BOTH, "ADDR=0010.0.0.1", "8.0.0.1"),
    (V4, "ADDR=IPV6:::ffff:1.2.3.4", "1.2.3.4"),
    (BOTH, "ADDR=IPV6:::ffff:1.2.3.4", "1.2.3.4"),
    (V6, "ADDR=IPV6:::ffff:1.2.3.4", "::ffff:1.2.3.4"),
    (V6, "ADDR=IPV6:2001:DB8:0::1", "2001:db8::1"),
    (BOTH, "ADDR=IPv6:::1.2.3.4", "::1.2.3.4"),
    (BOTH, "ADDR=IPV6:::", "::"),
    (BOTH, "ADDR=IPV6:1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
    (BOTH, "ADDR=10.0.0.+31", "10.0.0.1"),
    (BOTH, "ADDR=224.0.0.1", "224.0.0.1"),
    (BOTH, "ADDR=255.255.255.255", "255.255.255.255"),
    (V4, "ADDR=[UNAVAILABLE]", "unknown"),
])
def test_xclient_addresses_as_postfix(families: frozenset[int], word: str, value: str) -> None:
    attrs = parse_attributes(Command.XCLIENT, [word], families)
    assert isinstance(attrs, dict) and address_value(attrs["ADDR"]) == value


@pytest.mark.parametrize("word, key, value", [
    ("HELO=a+2", "HELO", "a+2"),           # not xtext: taken as sent
    ("HELO=a+2Bb+zz", "HELO", "a+2Bb+zz"),
    ("HELO=a+2bc", "HELO", "a+c"),         # lower-case hex digits are read
    ("LOGIN=x+zz", "LOGIN", "x+zz"),
    ("NAME=[TEMPUNAVAIL]", "NAME", "[TEMPUNAVAIL]"),
    ("PORT=00025", "PORT", "00025"),
    ("DESTPORT=65536", "DESTPORT", "65536"),
    ("PROTO=smtp", "PROTO", "SMTP"),
])
def test_xclient_values_postfix_accepts(word: str, key: str, value: str) -> None:
    assert parse_attributes(Command.XCLIENT, [word]) == {key: value}


@pytest.mark.parametrize("families, word, reply", [
    (V4, "ADDR=IPV6:2001:db8::1", "501 5.5.4 Bad ADDR syntax: IPV6:2001:db8::1"),
    (V4, "ADDR=2001:db8::1", "501 5.5.4 Bad ADDR syntax: 2001:db8::1"),
    (V4, "ADDR=10.0.0.300", "501 5.5.4 Bad ADDR syntax: 10.0.0.300"),
    (V4, "ADDR=[TEMPUNAVAIL]", "501 5.5.4 Bad ADDR syntax: [TEMPUNAVAIL]"),
    (V6, "ADDR=10.0.0.1", "501 5.5.4 Bad ADDR syntax: 10.0.0.1"),
    (BOTH, "NAME=[TEMPUNAVAIL]", "501 5.5.4 Bad NAME syntax: [TEMPUNAVAIL]"),
    (BOTH, "NAME=1.2.3.4", "501 5.5.4 Bad NAME syntax: 1.2.3.4"),
    (BOTH, "PORT=[TEMPUNAVAIL]", "501 5.5.4 Bad PORT syntax: [TEMPUNAVAIL]"),
    (BOTH, "PROTO=" + "a" * 65, "501 5.5.4 Bad PROTO syntax: " + "a" * 65),
    (BOTH, "SOURCE=bogus", "501 5.5.4 Bad SOURCE syntax: bogus"),
    (BOTH, "DESTADDR=1.2.3.4", "501 5.5.4 Bad XFORWARD attribute name: DESTADDR"),
])
def test_xforward_refusals_as_postfix(families: frozenset[int], word: str, reply: str) -> None:
    refusal = parse_attributes(Command.XFORWARD, [word], families)
    assert isinstance(refusal, Reply) and str(refusal) == reply


@pytest.mark.parametrize("families, word, key, value", [
    (V4, "ADDR=010.0.0.1", "ADDR", "8.0.0.1"),
    (V4, "ADDR=IPV6:::ffff:1.2.3.4", "ADDR", "1.2.3.4"),
    (BOTH, "SOURCE=[UNAVAILABLE]", "SOURCE", "[UNAVAILABLE]"),
    (BOTH, "PROTO=[TEMPUNAVAIL]", "PROTO", "[TEMPUNAVAIL]"),
    (BOTH, "NAME=[UNAVAILABLE]", "NAME", "[UNAVAILABLE]"),
    (BOTH, "PORT=[UNAVAILABLE]", "PORT", "[UNAVAILABLE]"),
    (BOTH, "IDENT=a+2", "IDENT", "a+2"),
    (BOTH, "HELO=+41", "HELO", "A"),
])
def test_xforward_values_postfix_accepts(families: frozenset[int], word: str, key: str,
                                         value: str) -> None:
    assert parse_attributes(Command.XFORWARD, [word], families) == {key: value}


def test_inet_families() -> None:
    assert inet_families(["ipv4"]) == V4 and inet_families(["IPv6"]) == V6
    assert inet_families(["all"]) == BOTH and inet_families(["ipv4", "ipv6"]) == BOTH
