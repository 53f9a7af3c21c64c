"""Next-hop syntax and MX ordering (postier.smtp.nexthop), and the client's statuses."""

from __future__ import annotations

import pytest

from postier.delivery.status import format_delay, status_log_line
from postier.delivery.status import sent as sent_status
from postier.dns.result import Lookup, MxAnswer, name_service_error
from postier.smtp import diagnostics
from postier.smtp.nexthop import Kind, NextHop, dedupe, order_mx, parse_list, parse_nexthop
from postier.smtp.settings import Timeouts
from postier.smtpproto.replies import Reply


@pytest.mark.parametrize("text,expected", [
    ("example.net", NextHop(Kind.MX, "example.net", 25)),
    ("Example.NET.", NextHop(Kind.MX, "example.net", 25)),
    ("example.net:2525", NextHop(Kind.MX, "example.net", 2525)),
    ("[mail.example.net]", NextHop(Kind.HOST, "mail.example.net", 25)),
    ("[127.1.0.7]:2526", NextHop(Kind.HOST, "127.1.0.7", 2526)),
    ("[2001:db8::1]:26", NextHop(Kind.HOST, "2001:db8::1", 26)),
    (" smtp.fai.com ", NextHop(Kind.MX, "smtp.fai.com", 25)),
])
def test_smtp_destinations(text: str, expected: NextHop) -> None:
    assert parse_nexthop(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("unix:/run/dovecot/lmtp", NextHop(Kind.UNIX, "/run/dovecot/lmtp", 0)),
    ("inet:localhost:24", NextHop(Kind.HOST, "localhost", 24)),
    ("inet:[127.0.0.1]", NextHop(Kind.HOST, "127.0.0.1", 24)),
    ("mail.example.net", NextHop(Kind.HOST, "mail.example.net", 24)),
])
def test_lmtp_destinations(text: str, expected: NextHop) -> None:
    assert parse_nexthop(text, lmtp=True) == expected


@pytest.mark.parametrize("bad", ["[host", "[host]x", "host:0", "host:99999", "host:abc",
                                 "[]", ":25", ""])
def test_bad_destinations_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_nexthop(bad)


def test_lists_keep_their_order_and_repeats_go() -> None:
    hops = parse_list("[a.example]:2526, b.example  c.example")
    assert [h.label for h in hops] == ["[a.example]:2526", "b.example", "c.example"]
    assert dedupe(hops + hops[:1]) == hops


def test_mx_order_lowest_preference_first_equal_ones_shuffled() -> None:
    records = [(20, "c"), (10, "b"), (10, "a"), (30, "a"), (20, "d")]
    shuffled: list[list[str]] = []

    def shuffle(group: list[str]) -> None:
        shuffled.append(sorted(group))
        group.reverse()

    order = order_mx(records, shuffle)
    assert shuffled == [["a", "b"], ["c", "d"]]  # each preference shuffled on its own
    assert order[:2] in (["a", "b"], ["b", "a"]) and set(order[2:]) == {"c", "d"}
    assert len(order) == 4  # "a" once, at its best preference


def test_null_mx() -> None:
    assert MxAnswer(Lookup.FOUND, ((0, "."),)).null
    assert not MxAnswer(Lookup.FOUND, ((0, "mx.example"),)).null
    assert not MxAnswer(Lookup.NOT_FOUND).null


def test_statuses_in_postfix_words() -> None:
    assert diagnostics.connect_failed("h[1.2.3.4]:25", "Connection refused") == \
        diagnostics.status.deferred("4.4.1", "connect to h[1.2.3.4]:25: Connection refused",
                                    "none")
    st = diagnostics.timed_out("h[1.2.3.4]", "MAIL", "h[1.2.3.4]:25")
    assert (st.dsn, st.text) == ("4.4.2", "conversation with h[1.2.3.4] timed out while "
                                 "sending MAIL FROM")
    assert diagnostics.null_mx("x.test").dsn == "5.1.10"
    err = name_service_error("x.test", "MX", Lookup.TEMP_FAIL)
    assert diagnostics.host_not_found(err, permanent=False).text == (
        "Host or domain name not found. Name service error for name=x.test type=MX: "
        "Host not found, try again")
    assert diagnostics.host_not_found(err, permanent=True).dsn == "5.4.4"
    assert diagnostics.size_exceeded(2000, 1000, "h[a]", "h[a]:25").text == (
        "message size 2000 exceeds size limit 1000 of server h[a]")
    assert diagnostics.reply_dsn(Reply(550, None, "no")) == "5.0.0"
    assert diagnostics.reply_dsn(Reply(450, "4.2.0", "later")) == "4.2.0"
    ok = diagnostics.sent(Reply(250, "2.0.0", "Ok: queued as ABC"), "h[a]:25")
    assert (ok.dsn, ok.text, ok.relay) == ("2.0.0", "250 2.0.0 Ok: queued as ABC", "h[a]:25")


def test_timeouts_by_command() -> None:
    t = Timeouts(connect=1, helo=2, mail=3, rcpt=4, data_init=5, data_xfer=6, data_done=7,
                 quit=8)
    assert [t.for_command(c) for c in ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", "CONTENT",
                                       "DATAEND", "QUIT")] == [2, 2, 3, 4, 5, 6, 7, 8]


def test_delays_as_postfix_logs_them() -> None:
    assert [format_delay(x) for x in (0, 0.003, 0.036, 0.5, 1.234, 2, 12.3, 123.4)] == [
        "0", "0", "0.04", "0.5", "1.2", "2", "12", "123"]
    line = status_log_line(
        "ABC", "a@x.test", "A@x.test", 100.0, sent_status("250 ok", "h[1.2.3.4]:25"), 101.5,
        (1.0, 0.0, 0.2, 0.3))
    assert line == (
        "ABC: to=<a@x.test>, orig_to=<A@x.test>, relay=h[1.2.3.4]:25, delay=1.5, "
        "delays=1/0/0.2/0.3, dsn=2.0.0, status=sent (250 ok)")
