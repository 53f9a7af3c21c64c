"""Commands, sequencing and pipelining of the sans-IO SMTP server core."""

from __future__ import annotations

import pytest
from smtpproto_helpers import HOST, drain, positive, run, splits

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection, State
from postier.tables import Tables

TRANSCRIPT = (
    b"HELO milou.example.net\r\n"
    b"MAIL FROM: <tournesol@example.net>\r\n"
    b"RCPT TO: <tintin@example.com>\r\n"
    b"DATA\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b"Hello Tintin.\r\n"
    b".\r\n"
    b"QUIT\r\n"
)
EXPECTED_EVENTS = [
    ev.Helo("milou.example.net", False),
    ev.Mail("tournesol@example.net", {}),
    ev.Rcpt("tintin@example.com", {}),
    ev.Data(),
    ev.DataChunk(b"Subject: test\n\nHello Tintin.\n"),
    ev.DataEnd(too_big=False, size=29),
    ev.Quit(),
    ev.Closed(),
]
EXPECTED_WIRE = (
    b"220 tintin.example.com ESMTP Postfix\r\n"
    b"250 tintin.example.com\r\n"
    b"250 2.1.0 Ok\r\n"
    b"250 2.1.5 Ok\r\n"
    b"354 End data with <CR><LF>.<CR><LF>\r\n"
    b"250 2.0.0 Ok: queued as 3F1A2B4C5D\r\n"
    b"221 2.0.0 Bye\r\n"
)


@pytest.mark.parametrize("pieces", splits(TRANSCRIPT))
def test_tutorial_transcript(pieces: list[bytes]) -> None:
    conn = ServerConnection(message_size_limit=10240000)
    greeting = conn.send(r.greeting(f"{HOST} ESMTP Postfix"))
    events, out = run(pieces, conn=conn)
    assert events == EXPECTED_EVENTS
    assert greeting + out == EXPECTED_WIRE
    assert conn.state is State.CLOSED


def test_trailing_data_after_quit_is_ignored() -> None:
    events, _ = run([TRANSCRIPT + b"MAIL FROM:<x@y>\r\n", b"RCPT TO:<z@w>\r\n"])
    assert events == [*EXPECTED_EVENTS, ev.Closed()]


def one(conn: ServerConnection, line: bytes) -> ev.Event:
    conn.receive_data(line)
    e = conn.next_event()
    assert not isinstance(e, ev.NeedData)
    return e


def answered(conn: ServerConnection, line: bytes) -> ev.Event:
    e = one(conn, line)
    reply = positive(e)
    assert reply is not None
    conn.send(reply)
    return e


@pytest.mark.parametrize(
    ("line", "address", "params"),
    [
        (b"MAIL FROM:<a@b.example>\r\n", "a@b.example", {}),
        (b"MAIL FROM: <a@b.example>\r\n", "a@b.example", {}),
        (b"mail from:a@b.example\r\n", "a@b.example", {}),
        (b"MAIL FROM: a@b.example SIZE=10\r\n", "a@b.example", {"SIZE": "10"}),
        (b"MAIL FROM:<>\r\n", "", {}),
        (b"MAIL FROM:<a@b> size=100 BODY=8BITMIME SMTPUTF8\r\n", "a@b",
         {"SIZE": "100", "BODY": "8BITMIME", "SMTPUTF8": None}),
        (b"MAIL FROM:<@relay.example,@r2.example:a@b>\r\n", "a@b", {}),
        (b'MAIL FROM:<"a b>c"@d.example>\r\n', '"a b>c"@d.example', {}),
        (b"MAIL FROM:<a@b>\n", "a@b", {}),
        ("MAIL FROM:<ñ@exämple.org> SMTPUTF8\r\n".encode(), "ñ@exämple.org", {"SMTPUTF8": None}),
    ],
)
def test_mail_forms(line: bytes, address: str, params: dict[str, str | None]) -> None:
    assert one(ServerConnection(), line) == ev.Mail(address, params)


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:\r\n", r.MAIL_SYNTAX),
        (b"MAIL\r\n", r.MAIL_SYNTAX),
        (b"MAIL TO:<a@b>\r\n", r.MAIL_SYNTAX),
        (b"MAIL FROM:<a@b\r\n", r.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a@b>SIZE=1\r\n", r.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<<a@b>>\r\n", r.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a\x01@b>\r\n", r.BAD_SENDER_SYNTAX),
        (b"MAIL FROM:<a@b> =x\r\n", r.unsupported_option("=x")),
        (b"MAIL FROM:<a@b> SIZE=\r\n", r.unsupported_option("SIZE=")),
    ],
)
def test_mail_syntax_errors(line: bytes, reply: Reply) -> None:
    conn = ServerConnection()
    assert one(conn, line) == ev.ProtocolError(reply, "MAIL")
    assert conn.send(reply) == reply.to_bytes()
    assert conn.state is State.IDLE


def test_sequencing() -> None:
    conn = ServerConnection()
    assert one(conn, b"RCPT TO:<a@b>\r\n") == ev.ProtocolError(r.NEED_MAIL, "RCPT")
    conn.send(r.NEED_MAIL)
    assert one(conn, b"DATA\r\n") == ev.ProtocolError(r.NEED_RCPT, "DATA")
    conn.send(r.NEED_RCPT)
    answered(conn, b"MAIL FROM:<a@b>\r\n")
    assert conn.state is State.MAIL
    assert one(conn, b"MAIL FROM:<c@d>\r\n") == ev.ProtocolError(r.NESTED_MAIL, "MAIL")
    conn.send(r.NESTED_MAIL)
    assert one(conn, b"DATA\r\n") == ev.ProtocolError(r.NO_VALID_RECIPIENTS, "DATA")
    conn.send(r.NO_VALID_RECIPIENTS)
    # a rejected recipient does not count
    assert one(conn, b"RCPT TO:<x@y>\r\n") == ev.Rcpt("x@y", {})
    conn.send(r.user_unknown("x@y", 550))
    assert conn.rcpt_count == 0 and conn.state is State.MAIL
    assert one(conn, b"RCPT TO:<>\r\n") == ev.ProtocolError(r.BAD_RECIPIENT_SYNTAX, "RCPT")
    conn.send(r.BAD_RECIPIENT_SYNTAX)
    assert one(conn, b"RCPT FROM:<a@b>\r\n") == ev.ProtocolError(r.RCPT_SYNTAX, "RCPT")
    conn.send(r.RCPT_SYNTAX)
    answered(conn, b"RCPT TO:<Postmaster>\r\n")
    answered(conn, b"RCPT TO:<e@f>\r\n")
    assert conn.rcpt_count == 2 and conn.state is State.RCPT
    assert one(conn, b"DATA now\r\n") == ev.ProtocolError(r.DATA_SYNTAX, "DATA")
    conn.send(r.DATA_SYNTAX)
    assert one(conn, b"RSET x\r\n") == ev.ProtocolError(r.RSET_SYNTAX, "RSET")
    conn.send(r.RSET_SYNTAX)
    assert conn.state is State.RCPT
    answered(conn, b"RSET\r\n")
    assert conn.state is State.IDLE and conn.rcpt_count == 0
    assert one(conn, b"RCPT TO:<a@b>\r\n") == ev.ProtocolError(r.NEED_MAIL, "RCPT")


def test_rejected_mail_keeps_no_transaction() -> None:
    conn = ServerConnection()
    one(conn, b"MAIL FROM:<a@b> SIZE=999999999\r\n")
    conn.send(r.SIZE_EXCEEDS_LIMIT)
    assert conn.state is State.IDLE
    assert one(conn, b"RCPT TO:<a@b>\r\n") == ev.ProtocolError(r.NEED_MAIL, "RCPT")


def test_helo_resets_transaction_and_sets_esmtp() -> None:
    conn = ServerConnection()
    assert not conn.esmtp and conn.helo_name is None
    assert answered(conn, b"EHLO  milou.example.net \r\n") == ev.Helo("milou.example.net", True)
    assert conn.esmtp and conn.helo_name == "milou.example.net"
    answered(conn, b"MAIL FROM:<a@b>\r\n")
    answered(conn, b"RCPT TO:<c@d>\r\n")
    assert answered(conn, b"HELO milou\r\n") == ev.Helo("milou", False)
    assert conn.state is State.IDLE and not conn.esmtp and conn.rcpt_count == 0
    assert one(conn, b"HELO\r\n") == ev.ProtocolError(r.HELO_SYNTAX, "HELO")
    conn.send(r.HELO_SYNTAX)
    assert one(conn, b"EHLO \r\n") == ev.ProtocolError(r.EHLO_SYNTAX, "EHLO")


def test_helo_required() -> None:
    conn = ServerConnection(helo_required=True)
    assert one(conn, b"MAIL FROM:<a@b>\r\n") == ev.ProtocolError(r.HELO_FIRST, "MAIL")
    conn.send(r.HELO_FIRST)
    answered(conn, b"HELO milou.example.net\r\n")
    assert one(conn, b"MAIL FROM:<a@b>\r\n") == ev.Mail("a@b", {})
    # without the flag (Postfix's default) MAIL needs no HELO
    assert one(ServerConnection(), b"MAIL FROM:<a@b>\r\n") == ev.Mail("a@b", {})


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"NOOP\r\n", ev.Noop()),
        (b"noop hello\r\n", ev.Noop()),
        (b"VRFY tintin\r\n", ev.Vrfy("tintin")),
        (b"VRFY\r\n", ev.Vrfy("")),
        (b"QUIT\r\n", ev.Quit()),
        (b"STARTTLS\r\n", ev.StartTls()),
        (b"AUTH plain dGVzdAB0ZXN0AHRlc3Q=\r\n", ev.Auth("PLAIN", "dGVzdAB0ZXN0AHRlc3Q=")),
        (b"AUTH LOGIN\r\n", ev.Auth("LOGIN", None)),
        (b"\r\n", ev.ProtocolError(r.BAD_SYNTAX)),
        (b"   \r\n", ev.ProtocolError(r.BAD_SYNTAX)),
        (b"EXPN staff\r\n", ev.ProtocolError(r.UNRECOGNIZED)),
        (b"HELLO there\r\n", ev.ProtocolError(r.UNRECOGNIZED)),
        (b"\xc3\xa9HLO x\r\n", ev.ProtocolError(r.UNRECOGNIZED)),
        (b"\xff\xfe\x00\r\n", ev.ProtocolError(r.BAD_UTF8)),
        (b"AUTH\r\n", ev.ProtocolError(r.AUTH_SYNTAX, "AUTH")),
        (b"STARTTLS now\r\n", ev.ProtocolError(r.STARTTLS_SYNTAX, "STARTTLS")),
        # Postfix counts a non-SMTP command as "unknown=0/1" (its verb is no command).
        (b"GET / HTTP/1.0\r\n", ev.ProtocolError(r.FORBIDDEN_COMMAND,
                                                  non_smtp="GET / HTTP/1.0")),
    ],
)
def test_single_commands(line: bytes, event: ev.Event) -> None:
    assert one(ServerConnection(), line) == event


def test_forbidden_command_closes() -> None:
    events, out = run([b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"])
    assert events == [ev.ProtocolError(r.FORBIDDEN_COMMAND,
                                       non_smtp="CONNECT example.com:443 HTTP/1.1"),
                      ev.Closed()]
    assert out == b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"


BOGUS = Tables().table("regexp:{{/^[^A-Z]/ Bogus}}")


def _postfix_default(word: str) -> bool:
    """Postfix 3.7.11's default: CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}."""
    return word.upper() in ("CONNECT", "GET", "POST") or BOGUS.lookup(word) is not None


# Checked against Postfix 3.7.11 (smtpd_forbidden_commands at its default): these lines
# get "221 2.7.0 Error: I can break rules, too. Goodbye."; "XYZ abc" and "Subject : x"
# get "500 5.5.2 Error: command not recognized".
@pytest.mark.parametrize("line", ["From: foo@bar", ".", "connect x", "FOO: bar", "1abc",
                                  "X-Foo:bar", "GET / HTTP/1.0"])
def test_non_smtp_command_closes(line: str) -> None:
    conn = ServerConnection(forbidden_commands=_postfix_default)
    conn.receive_data(line.encode() + b"\r\n")
    event = conn.next_event()
    assert event == ev.ProtocolError(r.FORBIDDEN_COMMAND, non_smtp=line)
    out = conn.send(r.FORBIDDEN_COMMAND)
    assert out == b"221 2.7.0 Error: I can break rules, too. Goodbye.\r\n"
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("line", ["XYZ abc", "Subject : x"])
def test_unknown_command_not_forbidden(line: str) -> None:
    conn = ServerConnection(forbidden_commands=_postfix_default)
    conn.receive_data(line.encode() + b"\r\n")
    assert conn.next_event() == ev.ProtocolError(r.UNRECOGNIZED)


def test_forbidden_applies_to_unknown_commands_only() -> None:
    # Postfix looks smtpd_forbidden_commands up only for a verb it does not know.
    conn = ServerConnection(forbidden_commands=["NOOP", "XYZ"])
    conn.receive_data(b"NOOP\r\nxyz\r\n")
    assert conn.next_event() == ev.Noop()
    conn.send(r.OK)
    assert conn.next_event() == ev.ProtocolError(r.FORBIDDEN_COMMAND, non_smtp="xyz")


def test_dot_after_refused_data_closes() -> None:
    conn = ServerConnection(forbidden_commands=_postfix_default)
    conn.receive_data(b"HELO c\r\nMAIL FROM:<a@b.example>\r\n")
    assert isinstance(conn.next_event(), ev.Helo)
    conn.send(r.helo(HOST))
    assert isinstance(conn.next_event(), ev.Mail)
    conn.send(r.MAIL_OK)
    conn.receive_data(b"DATA\r\n.\r\n")
    event = conn.next_event()
    assert isinstance(event, ev.ProtocolError)  # no valid recipients
    conn.send(event.reply)
    assert conn.next_event() == ev.ProtocolError(r.FORBIDDEN_COMMAND, non_smtp=".")


def test_421_closes() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP\r\n")
    conn.send(r.timeout(HOST))
    assert conn.state is State.CLOSED
    assert conn.next_event() == ev.Closed()


def test_eof() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP\r\nQUI")
    conn.receive_data(b"")
    assert conn.next_event() == ev.Noop()
    conn.send(r.OK)
    assert conn.next_event() == ev.Closed()
    assert conn.next_event() == ev.Closed()


def test_command_line_too_long_is_truncated_and_its_rest_skipped() -> None:
    # Postfix 3.7 (line_length_limit = 2048): the first 2048 bytes are the command, the
    # rest of the line is skipped, the session goes on.
    long = b"MAIL FROM:<" + b"a" * 3000 + b"@b>\r\n"
    for pieces in splits(long + b"NOOP\r\n")[::2]:  # whole and 7-byte pieces
        conn = ServerConnection()
        events, out = run(pieces, conn=conn)
        assert events == [ev.ProtocolError(r.BAD_SENDER_SYNTAX, "MAIL"), ev.Noop()]
        assert out == r.BAD_SENDER_SYNTAX.to_bytes() + r.OK.to_bytes()


# Every command's over-long form (3,000 bytes, line_length_limit 2048) as Postfix 3.7
# answered it side by side: (line, the event the core gives; its reply if the core's).
_X = "x" * 3000
OVERLONG = [
    (f"MAIL FROM:<{_X}@example.com>", ev.ProtocolError(r.BAD_SENDER_SYNTAX, "MAIL")),
    # the shell's policy answers 555 5.5.4 Unsupported option: XXX… for the parameter
    (f"MAIL FROM:<a@example.com> {_X}",
     ev.Mail("a@example.com", {"X" * (2048 - len("MAIL FROM:<a@example.com> ")): None})),
    (f"HELO {_X}", ev.Helo("x" * 2043, False)),
    (f"EHLO {_X}", ev.Helo("x" * 2043, True)),
    (f"VRFY {_X}", ev.Vrfy("x" * 2043)),
    (f"NOOP {_X}", ev.Noop()),
    (f"FOO {_X}", ev.ProtocolError(r.UNRECOGNIZED)),
    (_X, ev.ProtocolError(r.UNRECOGNIZED)),
    (f"RSET {_X}", ev.ProtocolError(r.RSET_SYNTAX, "RSET")),
    (f"DATA {_X}", ev.ProtocolError(r.NEED_RCPT, "DATA")),
    (f"QUIT {_X}", ev.Quit()),
]


@pytest.mark.parametrize(("line", "event"), OVERLONG)
def test_every_overlong_command_is_acted_on_truncated(line: str, event: ev.Event) -> None:
    conn = ServerConnection()
    conn.receive_data(line.encode() + b"\r\n")
    assert conn.next_event() == event
    assert conn.truncated_line == line.encode()[:2048]
    conn.send(positive(event) or r.OK)
    conn.receive_data(b"NOOP\r\n")
    if conn.state is not State.CLOSED:
        assert conn.next_event() == ev.Noop()
        assert conn.truncated_line is None


def test_overlong_rcpt_after_mail() -> None:
    conn = ServerConnection()
    assert one(conn, b"MAIL FROM:<a@b>\r\n") == ev.Mail("a@b", {})
    conn.send(r.MAIL_OK)
    conn.receive_data(f"RCPT TO:<{_X}@example.com>\r\n".encode())
    assert conn.next_event() == ev.ProtocolError(r.BAD_RECIPIENT_SYNTAX, "RCPT")
    conn.send(r.BAD_RECIPIENT_SYNTAX)
    conn.receive_data(f"RCPT TO:<postmaster> {_X}\r\n".encode())
    assert conn.next_event() == ev.Rcpt(
        "postmaster", {"X" * (2048 - len("RCPT TO:<postmaster> ")): None})


def test_line_at_the_limit_is_taken() -> None:
    conn = ServerConnection(max_line_length=20)
    assert one(conn, b"VRFY " + b"x" * 15 + b"\r\n") == ev.Vrfy("x" * 15)
    assert conn.truncated_line is None
    conn.send(r.OK)
    assert one(conn, b"VRFY " + b"x" * 16 + b"\r\n") == ev.Vrfy("x" * 15)
    assert conn.truncated_line == b"VRFY " + b"x" * 15


def test_endless_command_line_keeps_buffer_bounded() -> None:
    conn = ServerConnection(max_line_length=100)
    errors = 0
    for _ in range(1000):
        conn.receive_data(b"x" * 1000)
        events, _ = drain(conn)
        errors += len(events)
        assert len(conn._buf) <= 101
    assert errors == 1  # the first 100 bytes, as one (unknown) command
    conn.receive_data(b"yyy\r\nNOOP\r\n")
    assert drain(conn)[0] == [ev.Noop()]


def test_pipelined_commands_wait_for_replies() -> None:
    conn = ServerConnection()
    conn.receive_data(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    assert conn.next_event() == ev.Mail("a@b", {})
    assert conn.input_pending()
    assert conn.next_event() is ev.NEED_DATA  # MAIL not answered yet
    conn.send(r.MAIL_OK)
    assert conn.next_event() == ev.Rcpt("c@d", {})
    conn.send(r.RCPT_OK)
    assert conn.next_event() == ev.Data()
    # the content is neither commands nor data until DATA is answered
    assert conn.next_event() is ev.NEED_DATA
    assert conn.next_event() is ev.NEED_DATA
    conn.send(r.DATA_GO)
    assert conn.next_event() == ev.DataChunk(b"Subject: x\n\nhi\n")
    assert conn.next_event() == ev.DataEnd(False, 15)
    assert not conn.input_pending()


def test_refused_data_makes_the_following_lines_commands() -> None:
    def refuse_data(e: ev.Event) -> Reply | None:
        return r.NO_VALID_RECIPIENTS if isinstance(e, ev.Data) else positive(e)

    events, _ = run(
        [b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nRSET\r\nMAIL FROM:<e@f>\r\n"],
        refuse_data,
    )
    assert events == [ev.Mail("a@b", {}), ev.Rcpt("c@d", {}), ev.Data(), ev.Rset(),
                      ev.Mail("e@f", {})]


def test_noop_and_vrfy_do_not_hold_parsing() -> None:
    conn = ServerConnection()
    conn.receive_data(b"NOOP\r\nVRFY x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    assert conn.next_event() == ev.Noop()
    assert conn.next_event() == ev.Vrfy("x")
    assert conn.next_event() == ev.Mail("a@b", {})
    assert conn.next_event() is ev.NEED_DATA
    assert conn.pending == 3
    assert conn.send(r.OK) == b"250 2.0.0 Ok\r\n"
    conn.send(r.vrfy_ok("x"))
    assert conn.state is State.IDLE
    conn.send(r.MAIL_OK)  # the third reply answers MAIL
    assert conn.state is State.MAIL
    assert conn.next_event() == ev.Rcpt("c@d", {})


def test_input_pending_for_unauth_pipelining() -> None:
    conn = ServerConnection()
    conn.receive_data(b"HELO x\r\n")
    conn.next_event()
    assert not conn.input_pending()
    conn.send(r.helo(HOST))
    conn.receive_data(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n")
    conn.next_event()
    assert conn.input_pending()


def test_starttls_drops_plaintext_sent_ahead() -> None:
    conn = ServerConnection()
    answered(conn, b"EHLO milou\r\n")
    conn.receive_data(b"STARTTLS\r\nMAIL FROM:<injected@evil>\r\n")
    assert conn.next_event() == ev.StartTls()
    conn.send(r.STARTTLS_GO)
    assert not conn.input_pending()
    assert conn.next_event() is ev.NEED_DATA
    assert conn.tls_active and conn.helo_name is None and not conn.esmtp
    assert one(conn, b"STARTTLS\r\n") == ev.ProtocolError(r.TLS_ALREADY_ACTIVE, "STARTTLS")


def test_starttls_refused_keeps_input() -> None:
    conn = ServerConnection()
    conn.receive_data(b"STARTTLS\r\nNOOP\r\n")
    assert conn.next_event() == ev.StartTls()
    conn.send(r.STARTTLS_NOT_OFFERED)
    assert conn.next_event() == ev.Noop()
    assert not conn.tls_active


def test_auth_exchange() -> None:
    conn = ServerConnection()
    conn.receive_data(b"AUTH LOGIN\r\ndGludGlu\r\nc2VjcmV0\r\nMAIL FROM:<a@b>\r\n")
    assert conn.next_event() == ev.Auth("LOGIN", None)
    conn.send(r.auth_challenge("VXNlcm5hbWU6"))
    assert conn.state is State.AUTH
    assert conn.next_event() == ev.AuthLine("dGludGlu")
    conn.send(r.auth_challenge("UGFzc3dvcmQ6"))
    assert conn.next_event() == ev.AuthLine("c2VjcmV0")
    conn.send(r.AUTH_OK)
    assert conn.authenticated and conn.state is State.IDLE
    assert conn.next_event() == ev.Mail("a@b", {})
    conn.send(r.MAIL_OK)
    assert one(conn, b"AUTH PLAIN\r\n") == ev.ProtocolError(r.ALREADY_AUTHENTICATED, "AUTH")


def test_auth_failure_and_in_transaction() -> None:
    conn = ServerConnection()
    conn.receive_data(b"AUTH PLAIN\r\n*\r\nNOOP\r\n")
    assert conn.next_event() == ev.Auth("PLAIN", None)
    conn.send(r.auth_challenge(""))
    assert conn.next_event() == ev.AuthLine("*")
    conn.send(r.AUTH_ABORTED)
    assert conn.state is State.IDLE and not conn.authenticated
    assert conn.next_event() == ev.Noop()
    conn.send(r.OK)
    answered(conn, b"MAIL FROM:<a@b>\r\n")
    assert one(conn, b"AUTH PLAIN\r\n") == ev.ProtocolError(r.TRANSACTION_IN_PROGRESS, "AUTH")


# RCPT/MAIL domains as Postfix 3.7's smtpd checked them side by side: a bad domain is
# "501 5.1.3 Bad recipient address syntax" (MAIL: 5.1.7) before any restriction.
@pytest.mark.parametrize(("address", "good"), [
    ("a@1.2.3.4", False), ("a@host..example", False), ("a@-x.com", False),
    ("a@[junk]", False), ("a@x.com..", False), ("a@300.1.1.1", False), ("a@.x.com", False),
    ("a@host.", True), ("a@host.example.", True), ("a@[1.2.3.4]", True), ("a@x.com.", True),
    ("a@x_y.com", True), ("a@[IPv6:::1]", True), ("a@host.123", True), ("user", True),
    ('"user"', True), ("@x.com:user", True), ("a%b.com", True),
])
def test_address_domain_syntax(address: str, good: bool) -> None:
    conn = ServerConnection()
    event = one(conn, f"MAIL FROM:<{address}>\r\n".encode())
    assert isinstance(event, ev.Mail) is good, event
    if not good:
        assert event == ev.ProtocolError(r.BAD_SENDER_SYNTAX, "MAIL")
    conn.send(r.MAIL_OK if good else r.BAD_SENDER_SYNTAX)
    if not good:
        assert one(conn, b"MAIL FROM:<a@example.com>\r\n") == ev.Mail("a@example.com", {})
        conn.send(r.MAIL_OK)
    event = one(conn, f"RCPT TO:<{address}>\r\n".encode())
    assert isinstance(event, ev.Rcpt) is good, event
    if not good:
        assert event == ev.ProtocolError(r.BAD_RECIPIENT_SYNTAX, "RCPT")
