"""smtpd's side of the client limits: the decisions (replies and warnings read from
Postfix 3.7, side by side) and the exception list."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from postier.anvilclient.client import AnvilClient
from postier.anvilclient.protocol import Request
from postier.config.maincf import parse
from postier.config.settings import Config
from postier.rewrite.mynetworks import MyNetworks
from postier.smtpd.limits import ClientLimits, ClientList, Limits, Verdict, verdict
from postier.smtpproto.replies import Reply
from postier.tables.inline import InlineTable

WHO = {"hostname": "mx.example.com", "addr": "127.0.0.1", "namaddr": "localhost[127.0.0.1]",
       "service": "smtp"}
WHERE = "from localhost[127.0.0.1] for service smtp"


def test_connection_count_then_rate() -> None:
    limits = Limits(connection_count=2, connection_rate=5)
    refused = Reply(421, "4.7.0", "mx.example.com Error: too many connections from 127.0.0.1")
    assert verdict(limits, Request.CONNECT, 2, 5, **WHO) == Verdict()
    assert verdict(limits, Request.CONNECT, 3, 6, **WHO) == Verdict(
        refused, f"Connection concurrency limit exceeded: 3 {WHERE}")
    assert verdict(limits, Request.CONNECT, 1, 6, **WHO) == Verdict(
        refused, f"Connection rate limit exceeded: 6 {WHERE}")
    assert str(refused) == \
        "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1"


@pytest.mark.parametrize(("request_", "limits", "reply", "warning"), [
    (Request.MESSAGE, Limits(message_rate=2), "450 4.7.1 Error: too much mail from 127.0.0.1",
     f"Message delivery request rate limit exceeded: 3 {WHERE}"),
    (Request.RECIPIENT, Limits(recipient_rate=2),
     "450 4.7.1 Error: too many recipients from 127.0.0.1",
     f"Recipient address rate limit exceeded: 3 {WHERE}"),
    (Request.AUTH, Limits(auth_rate=2),
     "450 4.7.1 Error: too many AUTH commands from 127.0.0.1",
     f"AUTH command rate limit exceeded: 3 {WHERE}"),
    (Request.NEWTLS_STATUS, Limits(new_tls_session_rate=2),
     "454 4.7.0 Error: too many new TLS sessions from localhost[127.0.0.1]",
     f"Refusing STARTTLS request {WHERE}"),
    (Request.NEWTLS, Limits(new_tls_session_rate=2),
     "421 4.7.0 mx.example.com Error: too many new TLS sessions from localhost[127.0.0.1]",
     f"New TLS session rate limit exceeded: 3 {WHERE}"),
])
def test_event_rates(request_: Request, limits: Limits, reply: str, warning: str) -> None:
    assert verdict(limits, request_, 0, 2, **WHO) == Verdict()  # at the limit: fine
    over = verdict(limits, request_, 0, 3, **WHO)
    assert str(over.reply) == reply and over.warning == warning
    assert verdict(Limits(), request_, 0, 1000, **WHO) == Verdict()  # 0: no limit


def test_only_a_set_limit_makes_anvil_worth_asking() -> None:
    assert not Limits().any
    assert Limits(auth_rate=1).any and Limits(connection_count=50).any


def test_the_exception_list_is_a_postfix_host_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    listed = tmp_path / "clients"
    listed.write_text("# trusted\n192.0.2.0/24\n")
    tables = {"inline:{ 198.51.100.7=yes }": InlineTable("{ 198.51.100.7=yes }")}
    clients = ClientList(
        ["!192.0.2.66", str(listed), "[2001:db8::]/32", "inline:{ 198.51.100.7=yes }",
         "trusted.example", ".friends.example"],
        tables.__getitem__, lambda path: Path(path).read_text())
    assert clients.match("unknown", "192.0.2.5")
    assert not clients.match("unknown", "192.0.2.66")  # negated before the file
    assert clients.match("unknown", "2001:db8::1")
    assert clients.match("unknown", "198.51.100.7")
    assert clients.match("TRUSTED.example", "203.0.113.1")
    assert clients.match("a.friends.example", "203.0.113.1")
    assert not clients.match("friends.example", "203.0.113.1")
    assert not clients.match("unknown", "203.0.113.1")
    assert not ClientList([], tables.__getitem__, str).match("x", "192.0.2.5")


def limits_for(main_cf: str) -> ClientLimits:
    cfg = Config(parse(main_cf, "main.cf"), hostname="mx.example.com")
    mynetworks = MyNetworks.parse(["127.0.0.0/8"])  # as the service computed it
    return ClientLimits("smtp", cfg, cast(AnvilClient, None), "mx.example.com", mynetworks,
                        lambda spec: InlineTable(spec.removeprefix("inline:")), str)


def test_postfix_defaults_and_exceptions_from_main_cf() -> None:
    limits = limits_for("")
    assert limits.limits == Limits(connection_count=50)
    # the default ($mynetworks) is the service's mynetworks, computed when it is empty
    assert limits.exempt("localhost", "127.0.0.1") and not limits.exempt("x", "192.0.2.1")
    limits = limits_for("smtpd_client_event_limit_exceptions =\n"
                        "smtpd_client_message_rate_limit = 7\n")
    assert not limits.exempt("localhost", "127.0.0.1")
    assert limits.limits.message_rate == 7
    limits = limits_for("smtpd_client_event_limit_exceptions = 192.0.2.0/24, .example.org\n")
    assert limits.exempt("unknown", "192.0.2.1") and limits.exempt("a.example.org", "::1")
    assert not limits.exempt("localhost", "127.0.0.1")
    session = limits.session("localhost", "192.0.2.9", lambda _: None)
    assert not session.active  # exempt: anvil is never asked
    assert limits_for("smtpd_client_connection_count_limit = 0\n").session(
        "x", "198.51.100.1", lambda _: None).active is False  # no limit: never asked


def test_an_xclient_authorized_client_is_never_reported() -> None:
    # Postfix 3.7 side by side: smtpd tells anvil nothing about a client in
    # smtpd_authorized_xclient_hosts; after XCLIENT, the new client is asked about.
    limits = limits_for("smtpd_client_event_limit_exceptions =\n")
    assert limits.session("x", "198.51.100.1", lambda _: None).active
    session = limits.session("x", "198.51.100.1", lambda _: None, xclient_authorized=True)
    assert not session.active
    moved = session.after_xclient("unknown", "10.0.0.5", xclient_authorized=False)
    assert moved.active and moved.addr == "10.0.0.5" and moved.key.endswith("10.0.0.5")
    assert moved.connected is None  # nothing was counted at connect: nothing to undo
    session.connected = session.key
    assert session.after_xclient("y", "10.0.0.6", xclient_authorized=True).connected \
        == session.key


def test_exception_list_reads_net_mask_words_as_networks() -> None:
    # Postfix 3.7: "smtpd_client_event_limit_exceptions: bad mask length in
    # "999.1.1.1/33"" (a network, even a bad one, is never a host name); "!!" is no
    # negation.
    limits = limits_for("smtpd_client_event_limit_exceptions = 999.1.1.1/33, "
                        "!!192.0.2.0/24\n")
    assert not limits.exempt("999.1.1.1/33", "198.51.100.1")
    assert limits.exempt("unknown", "192.0.2.7")
