"""The sans-IO SMTP/LMTP client core: greeting, EHLO, pipelined transactions, LMTP
per-recipient replies, STARTTLS, AUTH, malformed replies and local errors."""

from __future__ import annotations

import pytest
from smtpproto_helpers import drain, splits

from postier.smtpproto import events as ev
from postier.smtpproto import replies as r
from postier.smtpproto.client import ClientConnection, ClientState, LocalProtocolError
from postier.smtpproto.replies import Reply
from postier.smtpproto.server import ServerConnection

HOST = "mx.example.com[192.0.2.1]"
GREETING = b"220 mx.example.com ESMTP Postfix\r\n"
EHLO_REPLY = (b"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
              b"250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-CHUNKING\r\n"
              b"250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n")
EXTENSIONS = {"PIPELINING": "", "SIZE": "10240000", "STARTTLS": "", "AUTH": "PLAIN LOGIN",
              "CHUNKING": "", "ENHANCEDSTATUSCODES": "", "8BITMIME": ""}


def events_of(conn: ClientConnection, pieces: list[bytes]) -> list[ev.ClientEvent]:
    out: list[ev.ClientEvent] = []
    for piece in pieces:
        conn.receive_data(piece)
        while (e := conn.next_event()) is not ev.NEED_DATA:
            assert not isinstance(e, ev.NeedData)
            out.append(e)
            if isinstance(e, ev.Closed | ev.RemoteError):
                return out
    return out


def ready(lmtp: bool = False, ehlo: bytes = EHLO_REPLY) -> ClientConnection:
    conn = ClientConnection(lmtp=lmtp)
    assert events_of(conn, [GREETING]) == [ev.Greeting(Reply(220, None,
                                                              "mx.example.com ESMTP Postfix"))]
    conn.send(ev.Helo("client.example", extended=True))
    [helo] = events_of(conn, [ehlo])
    assert isinstance(helo, ev.HeloReply) and helo.reply.code == 250
    assert conn.state is ClientState.READY
    return conn


@pytest.mark.parametrize("pieces", splits(GREETING + EHLO_REPLY))
def test_greeting_and_ehlo(pieces: list[bytes]) -> None:
    conn = ClientConnection()
    assert conn.state is ClientState.GREETING
    events: list[ev.ClientEvent] = []
    sent = b""
    for piece in pieces:
        conn.receive_data(piece)
        while (e := conn.next_event()) is not ev.NEED_DATA:
            assert not isinstance(e, ev.NeedData)
            events.append(e)
            if isinstance(e, ev.Greeting):
                sent = conn.send(ev.Helo("client.example", extended=True))
    assert sent == b"EHLO client.example\r\n"
    assert [type(e) for e in events] == [ev.Greeting, ev.HeloReply]
    assert isinstance(events[1], ev.HeloReply)
    assert events[1].extensions == EXTENSIONS == conn.extensions
    assert conn.pipelining and conn.state is ClientState.READY


def test_greeting_with_trailing_data_keeps_the_rest() -> None:
    conn = ClientConnection()
    [greeting] = events_of(conn, [GREETING + b"250-mx\r\n250 PIPE"])
    assert isinstance(greeting, ev.Greeting)
    assert conn.send(ev.Helo("c", extended=False)) == b"HELO c\r\n"
    [helo] = events_of(conn, [b"LINING\r\n"])
    # HELO: no extensions, whatever the reply says
    assert helo == ev.HeloReply("HELO", Reply(250, None, ("mx", "PIPELINING")), {})
    assert not conn.pipelining


def test_refused_greeting_and_its_diagnostic() -> None:
    conn = ClientConnection()
    [greeting] = events_of(conn, [b"554 5.7.1 go away\r\n"])
    assert isinstance(greeting, ev.Greeting) and greeting.reply.code == 554
    assert greeting.diagnostic(HOST) == f"host {HOST} refused to talk to me: 554 5.7.1 go away"
    assert conn.send(ev.Quit()) == b"QUIT\r\n"


TRANSACTION_REPLIES = (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                       b"550-5.1.1 <nobody@example.com>: Recipient address rejected:\r\n"
                       b"550 5.1.1 User unknown in local recipient table\r\n"
                       b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")


@pytest.mark.parametrize("pieces", splits(TRANSACTION_REPLIES))
def test_pipelined_mail_rcpt_data(pieces: list[bytes]) -> None:
    conn = ready()
    wire = (conn.send(ev.Mail("a@example.net", {"SIZE": "120", "BODY": "8BITMIME"}))
            + conn.send(ev.Rcpt("b@example.com", {"NOTIFY": "NEVER"}))
            + conn.send(ev.Rcpt("nobody@example.com"))
            + conn.send(ev.Rcpt("c@example.com"))
            + conn.send(ev.Data()))
    assert wire == (b"MAIL FROM:<a@example.net> SIZE=120 BODY=8BITMIME\r\n"
                    b"RCPT TO:<b@example.com> NOTIFY=NEVER\r\n"
                    b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
    assert conn.pending == 5
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Rset())  # nothing after DATA until its reply (RFC 2920 3.1)
    events = events_of(conn, pieces)
    assert [(e.command, e.argument, e.reply.code) for e in events
            if isinstance(e, ev.CommandReply)] == [
        ("MAIL", "a@example.net", 250), ("RCPT", "b@example.com", 250),
        ("RCPT", "nobody@example.com", 550), ("RCPT", "c@example.com", 250),
        ("DATA", "", 354)]
    rejected = events[2]
    assert isinstance(rejected, ev.CommandReply)
    assert rejected.reply == Reply(550, "5.1.1", (
        "<nobody@example.com>: Recipient address rejected:",
        "User unknown in local recipient table"))
    assert rejected.diagnostic(HOST) == (
        f"host {HOST} said: 550-5.1.1 <nobody@example.com>: Recipient address rejected: "
        "550 5.1.1 User unknown in local recipient table (in reply to RCPT TO command)")
    assert conn.accepted_recipients == ("b@example.com", "c@example.com")
    assert conn.state is ClientState.CONTENT
    wire = conn.send(ev.DataChunk(b"Subject: x\n\n.dot\nend")) + conn.send(ev.DataEnd())
    assert wire == b"Subject: x\r\n\r\n..dot\r\nend\r\n.\r\n"
    assert conn.send(ev.Quit()) == b"QUIT\r\n"  # pipelined after the end of data
    events = events_of(conn, [b"250 2.0.0 Ok: queued as 3F1A2B4C5D\r\n221 2.0.0 Bye\r\n"])
    assert events == [ev.DataEndReply(r.queued("3F1A2B4C5D")),
                      ev.CommandReply("QUIT", r.BYE), ev.Closed()]
    assert conn.state is ClientState.CLOSED


def test_without_pipelining_each_command_waits() -> None:
    conn = ready(ehlo=b"250-mx\r\n250 SIZE 1000\r\n")
    conn.send(ev.Mail("a@b"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(ev.Rcpt("c@d"))
    assert conn.pending == 1
    events_of(conn, [b"250 2.1.0 Ok\r\n"])
    conn.send(ev.Rcpt("c@d"))


def test_refused_mail_ends_the_transaction() -> None:
    conn = ready()
    conn.send(ev.Mail("a@b"))
    conn.send(ev.Rcpt("c@d"))
    conn.send(ev.Data())
    events = events_of(conn, [b"553 5.7.1 no\r\n503 5.5.1 Error: need MAIL command\r\n"
                              b"503 5.5.1 Error: need RCPT command\r\n"])
    assert [e.reply.code for e in events if isinstance(e, ev.CommandReply)] == [553, 503, 503]
    assert conn.state is ClientState.READY
    conn.send(ev.Mail("a@b"))  # a new transaction may start


def test_refused_data_keeps_the_transaction_open() -> None:
    conn = ready()
    conn.send(ev.Mail("a@b"))
    conn.send(ev.Rcpt("c@d"))
    conn.send(ev.Data())
    events_of(conn, [b"250 2.1.0 Ok\r\n550 5.1.1 no\r\n554 5.5.1 Error: no valid recipients\r\n"])
    assert conn.state is ClientState.TRANSACTION and conn.accepted_recipients == ()
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Mail("a@b"))  # nested MAIL
    assert conn.send(ev.Rset()) == b"RSET\r\n"
    assert conn.state is ClientState.READY


LMTP_REPLIES = (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 unknown\r\n250 2.1.5 Ok\r\n"
                b"354 go ahead\r\n"
                b"250 2.0.0 <a@example.com> delivered\r\n"
                b"452 4.2.2 <c@example.com> over quota\r\n221 2.0.0 Bye\r\n")


@pytest.mark.parametrize("pieces", splits(LMTP_REPLIES))
def test_lmtp_one_reply_per_accepted_recipient(pieces: list[bytes]) -> None:
    conn = ready(lmtp=True, ehlo=b"250-lmtp.example\r\n250 ENHANCEDSTATUSCODES\r\n")
    assert conn.pipelining  # RFC 2033: LMTP always pipelines
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Helo("x", extended=False))  # LMTP has no HELO
    wire = b"".join(conn.send(c) for c in (
        ev.Mail("s@example.net"), ev.Rcpt("a@example.com"), ev.Rcpt("b@example.com"),
        ev.Rcpt("c@example.com"), ev.Data()))
    assert wire.count(b"\r\n") == 5
    events: list[ev.ClientEvent] = []
    for piece in pieces:  # a shell: content and QUIT go out once the 354 is in
        conn.receive_data(piece)
        while (e := conn.next_event()) is not ev.NEED_DATA:
            assert not isinstance(e, ev.NeedData)
            events.append(e)
            if isinstance(e, ev.CommandReply) and e.command == "DATA":
                wire = (conn.send(ev.DataChunk(b"hi\n")) + conn.send(ev.DataEnd())
                        + conn.send(ev.Quit()))
                assert wire == b"hi\r\n.\r\nQUIT\r\n"
            if isinstance(e, ev.Closed):
                break
    assert events[5:] == [
        ev.DataEndReply(Reply(250, "2.0.0", "<a@example.com> delivered"), "a@example.com"),
        ev.DataEndReply(Reply(452, "4.2.2", "<c@example.com> over quota"), "c@example.com"),
        ev.CommandReply("QUIT", r.BYE),
        ev.Closed(),
    ]
    assert events[6].diagnostic(HOST) == (  # type: ignore[union-attr]
        f"host {HOST} said: 452 4.2.2 <c@example.com> over quota "
        "(in reply to end of DATA command)")


def test_starttls_forgets_extensions_and_drops_injected_bytes() -> None:
    conn = ready()
    assert conn.send(ev.StartTls()) == b"STARTTLS\r\n"
    # a 220 with a forged reply behind it, before the handshake (plaintext injection)
    [go] = events_of(conn, [b"220 2.0.0 Ready to start TLS\r\n250 2.1.0 forged\r\n"])
    assert go == ev.CommandReply("STARTTLS", r.STARTTLS_GO)
    assert conn.state is ClientState.HELLO and conn.tls_active and conn.extensions == {}
    assert conn.next_event() is ev.NEED_DATA
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Mail("a@b"))  # EHLO again first
    conn.send(ev.Helo("client.example", extended=True))
    events_of(conn, [b"250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n"])
    with pytest.raises(LocalProtocolError):
        conn.send(ev.StartTls())  # TLS already active


def test_auth_with_continuations() -> None:
    conn = ready()
    assert conn.send(ev.Auth("LOGIN", None)) == b"AUTH LOGIN\r\n"
    [challenge] = events_of(conn, [b"334 VXNlcm5hbWU6\r\n"])
    assert challenge == ev.CommandReply("AUTH", Reply(334, None, "VXNlcm5hbWU6"))
    assert conn.state is ClientState.AUTH
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Mail("a@b"))
    assert conn.send(ev.AuthLine("dXNlcg==")) == b"dXNlcg==\r\n"
    events_of(conn, [b"334 UGFzc3dvcmQ6\r\n"])
    conn.send(ev.AuthLine("cGFzcw=="))
    [done] = events_of(conn, [b"235 2.7.0 Authentication successful\r\n"])
    assert done == ev.CommandReply("AUTHLINE", r.AUTH_OK)
    assert conn.authenticated and conn.state is ClientState.READY
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Auth("PLAIN", "AGEAYg=="))


def test_auth_initial_response_and_failure() -> None:
    conn = ready()
    assert conn.send(ev.Auth("PLAIN", "")) == b"AUTH PLAIN =\r\n"  # RFC 4954: empty is "="
    [failed] = events_of(conn, [b"535 5.7.8 Error: authentication failed\r\n"])
    assert isinstance(failed, ev.CommandReply) and failed.reply == r.AUTH_FAILED
    assert not conn.authenticated and conn.state is ClientState.READY


def test_bdat_chunks() -> None:
    conn = ready(lmtp=True, ehlo=b"250-lmtp\r\n250 CHUNKING\r\n")
    conn.send(ev.Mail("s@x"))
    conn.send(ev.Rcpt("a@y"))
    conn.send(ev.Rcpt("b@y"))
    assert conn.send(ev.Bdat(b"line\r\n.")) == b"BDAT 7\r\nline\r\n."
    assert conn.send(ev.Bdat(b"\r\n", last=True)) == b"BDAT 2 LAST\r\n\r\n"
    events = events_of(conn, [b"250 Ok\r\n250 Ok\r\n250 Ok\r\n250 2.0.0 7 octets\r\n"
                              b"250 2.0.0 a ok\r\n450 4.2.0 b later\r\n"])
    assert events[3] == ev.CommandReply("BDAT", Reply(250, "2.0.0", "7 octets"))
    assert events[4:] == [ev.DataEndReply(Reply(250, "2.0.0", "a ok"), "a@y", "BDATLAST"),
                          ev.DataEndReply(Reply(450, "4.2.0", "b later"), "b@y", "BDATLAST")]
    assert conn.state is ClientState.READY


@pytest.mark.parametrize(("make", "command"), [
    (lambda c: c.send(ev.Rcpt("a@b")), "RCPT before MAIL"),
    (lambda c: c.send(ev.Data()), "DATA before MAIL"),
    (lambda c: (c.send(ev.Mail("a@b")), c.send(ev.Data())), "DATA before RCPT"),
    (lambda c: c.send(ev.DataChunk(b"x")), "content before 354"),
    (lambda c: c.send(ev.DataEnd()), "end of data before 354"),
    (lambda c: c.send(ev.AuthLine("x")), "SASL response before 334"),
    (lambda c: (c.send(ev.Mail("a@b")), c.send(ev.Mail("a@b"))), "nested MAIL"),
    (lambda c: c.send(ev.Mail("a@b\r\nRSET")), "smuggled line"),
    (lambda c: c.send(ev.Mail("a@b", {"SI ZE": "1"})), "bad keyword"),
    (lambda c: (c.send(ev.Noop()), c.send(ev.Mail("a@b"))), "pipelined after NOOP"),
])
def test_commands_in_the_wrong_state_are_local_errors(make: object, command: str) -> None:
    conn = ready(ehlo=b"250-mx\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError):
        make(conn)  # type: ignore[operator]


def test_commands_before_the_greeting_are_local_errors() -> None:
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(ev.Helo("c", extended=True))
    assert conn.state is ClientState.GREETING and conn.pending == 1


@pytest.mark.parametrize(("wire", "problem", "diagnostic"), [
    (b"", ev.RemoteProblem.LOST_CONNECTION,
     f"lost connection with {HOST} while receiving the initial server greeting"),
    (b"220-mx\r\n", ev.RemoteProblem.LOST_CONNECTION,
     f"lost connection with {HOST} while receiving the initial server greeting"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", ev.RemoteProblem.MALFORMED_REPLY,
     f"host {HOST} refused to talk to me: SSH-2.0-OpenSSH_9.6"),
    (b"220-mx\r\n554 no\r\n", ev.RemoteProblem.MALFORMED_REPLY,
     f"host {HOST} refused to talk to me: 554 no"),
    (b"220 \x80\x81\r\n", ev.RemoteProblem.MALFORMED_REPLY,
     f"host {HOST} refused to talk to me: 220 ??"),
    (b"220 " + b"x" * 3000, ev.RemoteProblem.MALFORMED_REPLY,
     f"host {HOST} refused to talk to me: [reply line too long]"),
])
def test_broken_greetings(wire: bytes, problem: ev.RemoteProblem, diagnostic: str) -> None:
    for pieces in splits(wire):
        conn = ClientConnection()
        events = events_of(conn, [*pieces, b""])
        assert len(events) == 1
        [error] = events
        assert isinstance(error, ev.RemoteError) and error.problem is problem
        assert error.command == "GREETING"
        assert error.diagnostic(HOST) == diagnostic
        assert conn.state is ClientState.CLOSED and conn.next_event() == ev.Closed()


def test_malformed_reply_mid_transaction_names_the_command() -> None:
    conn = ready()
    conn.send(ev.Mail("a@b"))
    conn.send(ev.Rcpt("c@d"))
    events = events_of(conn, [b"250 2.1.0 Ok\r\nwhat?\r\n"])
    assert isinstance(events[1], ev.RemoteError)
    assert events[1].reason == "no reply code"
    assert events[1].diagnostic(HOST) == f"host {HOST} said: what? (in reply to RCPT TO command)"


@pytest.mark.parametrize(("sent", "stage"), [
    ([ev.Mail("a@b")], "sending MAIL FROM"),
    ([ev.Mail("a@b"), ev.Rcpt("c@d")], "sending MAIL FROM"),
    ([ev.Noop()], "sending NOOP"),
])
def test_lost_connection_names_the_oldest_unanswered_command(
    sent: list[ev.Command], stage: str
) -> None:
    conn = ready()
    for c in sent:
        conn.send(c)
    [error] = events_of(conn, [b""])
    assert isinstance(error, ev.RemoteError)
    assert error.diagnostic(HOST) == f"lost connection with {HOST} while {stage}"


def test_lost_connection_during_content_and_after_end_of_data() -> None:
    conn = ready()
    for c in (ev.Mail("a@b"), ev.Rcpt("c@d"), ev.Data()):
        conn.send(c)
    events_of(conn, [b"250 Ok\r\n250 Ok\r\n354 go\r\n"])
    conn.send(ev.DataChunk(b"x\n"))
    assert events_of(conn, []) == []  # content expects no reply
    [error] = events_of(conn, [b""])
    assert isinstance(error, ev.RemoteError)
    assert error.diagnostic(HOST) == f"lost connection with {HOST} while sending message body"

    conn = ready()
    for c in (ev.Mail("a@b"), ev.Rcpt("c@d"), ev.Data()):
        conn.send(c)
    events_of(conn, [b"250 Ok\r\n250 Ok\r\n354 go\r\n"])
    conn.send(ev.DataEnd())
    [error] = events_of(conn, [b"250-partial\r\n", b""])
    assert isinstance(error, ev.RemoteError)
    assert error.diagnostic(HOST) == (f"lost connection with {HOST} while sending end of data"
                                      " -- message may be sent more than once")


def test_close_when_idle_is_not_an_error() -> None:
    conn = ready()
    assert events_of(conn, [b""]) == [ev.Closed()]


def test_unsolicited_421_closes_and_other_unsolicited_replies_are_errors() -> None:
    conn = ready()
    events = events_of(conn, [b"421 4.4.2 mx Error: timeout exceeded\r\n"])
    assert events == [ev.CommandReply("", r.timeout("mx")), ev.Closed()]
    assert conn.state is ClientState.CLOSED
    assert conn.receive_data(b"250 late\r\n") is None and conn.next_event() == ev.Closed()

    conn = ready()
    [error] = events_of(conn, [b"250 2.0.0 surprise\r\n"])
    assert isinstance(error, ev.RemoteError)
    assert error.problem is ev.RemoteProblem.UNEXPECTED_REPLY
    assert error.diagnostic(HOST) == f"host {HOST} said: 250 2.0.0 surprise (unexpected reply)"


def test_421_to_a_pipelined_command_closes() -> None:
    conn = ready()
    conn.send(ev.Mail("a@b"))
    conn.send(ev.Rcpt("c@d"))
    events = events_of(conn, [b"421 4.3.2 shutting down\r\n250 never\r\n"])
    assert events == [ev.CommandReply("MAIL", Reply(421, "4.3.2", "shutting down"), "a@b"),
                      ev.Closed()]
    assert conn.pending == 0 and conn.next_event() == ev.Closed()


def test_client_core_against_server_core() -> None:
    """Both directions of one conversation: what the client writes the server reads."""
    server = ServerConnection()
    client = ClientConnection()
    client.receive_data(server.send(r.greeting("mx ESMTP")))
    received: list[ev.ClientEvent] = []
    script: list[ev.Command] = [ev.Helo("c.example", extended=True)]

    def pump(wire: bytes) -> None:
        if wire:
            server.receive_data(wire)
        _, out = drain(server)
        if out:
            client.receive_data(out)
        while (e := client.next_event()) is not ev.NEED_DATA:
            assert not isinstance(e, ev.NeedData | ev.RemoteError)
            if isinstance(e, ev.Closed):
                return
            received.append(e)

    pump(b"")  # nothing sent yet: only the greeting to read
    pump(client.send(script[0]))
    assert client.pipelining and client.extensions["SIZE"] == "10240000"
    pump(client.send(ev.Mail("a@b")) + client.send(ev.Rcpt("c@d")) + client.send(ev.Data()))
    pump(client.send(ev.DataChunk(b".x\r\ny")) + client.send(ev.DataEnd())
         + client.send(ev.Quit()))
    assert [type(e) for e in received] == [
        ev.Greeting, ev.HeloReply, ev.CommandReply, ev.CommandReply, ev.CommandReply,
        ev.DataEndReply, ev.CommandReply]
    assert received[-2] == ev.DataEndReply(r.queued("3F1A2B4C5D"))
    assert client.state is ClientState.CLOSED
