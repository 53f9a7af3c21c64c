"""anvil's counting core: connections, windows, owners, expiry and its statistics lines
(the formats read from Postfix 3.7's anvil)."""

from __future__ import annotations

import time

from postier.anvil.counts import Anvil
from postier.anvilclient.protocol import STAT_OK, Answer, Request

T0 = 1_000_000.0
KEY = "smtp:192.0.2.1"


def test_connect_counts_simultaneous_connections_and_the_rate() -> None:
    anvil = Anvil(60)
    assert anvil.connect("w1", KEY, T0) == (1, 1)
    assert anvil.connect("w2", KEY, T0 + 1) == (2, 2)
    anvil.disconnect("w1", KEY, T0 + 2)
    assert anvil.connect("w1", KEY, T0 + 3) == (2, 3)  # the rate keeps counting
    assert anvil.connect("w1", "smtp:192.0.2.2", T0 + 3) == (1, 1)  # another client
    assert anvil.connect("w1", "submission:192.0.2.1", T0 + 3) == (1, 1)  # another service


def test_the_window_is_reset_not_slid() -> None:
    anvil = Anvil(60)
    for i in range(3):
        anvil.event("w", Request.MESSAGE, KEY, T0 + i)
    assert anvil.event("w", Request.MESSAGE, KEY, T0 + 60) == 4  # still the same window
    assert anvil.event("w", Request.MESSAGE, KEY, T0 + 61) == 1  # a new one from here
    assert anvil.event("w", Request.RECIPIENT, KEY, T0 + 62) == 1
    assert anvil.newtls_status(KEY, T0 + 200) == 0  # a past window reads as 0
    assert anvil.lookup(KEY, T0 + 200) is not None


def test_each_event_has_its_own_rate() -> None:
    anvil = Anvil(60)
    anvil.connect("w", KEY, T0)
    assert [anvil.event("w", r, KEY, T0) for r in
            (Request.MESSAGE, Request.RECIPIENT, Request.RECIPIENT, Request.AUTH,
             Request.NEWTLS, Request.NEWTLS)] == [1, 1, 2, 1, 1, 2]
    assert anvil.newtls_status(KEY, T0) == 2
    assert anvil.newtls_status("smtp:unknown-to-anvil", T0) == 0
    assert anvil.handle("w", Request.LOOKUP, KEY, T0) == \
        Answer(STAT_OK, count=1, rate=1, mail=1, rcpt=2, newtls=2, auth=1)


def test_an_event_for_an_unknown_client_enters_it_as_a_connection() -> None:
    anvil = Anvil(60)  # as after a restart of anvil between connect and MAIL
    assert anvil.event("w", Request.MESSAGE, KEY, T0) == 1
    remote = anvil.lookup(KEY, T0)
    assert remote is not None and remote.count == 1
    anvil.drop_owner("w", T0)
    assert remote.count == 0


def test_a_worker_that_goes_away_drops_its_connections_only() -> None:
    anvil = Anvil(60)
    anvil.connect("w1", KEY, T0)
    anvil.connect("w1", KEY, T0)
    anvil.connect("w2", KEY, T0)
    anvil.drop_owner("w1", T0 + 1)
    assert anvil.connect("w2", KEY, T0 + 2) == (2, 4)
    # a disconnect for a connection this stream never made changes nothing
    anvil.disconnect("w1", KEY, T0 + 3)
    anvil.disconnect("w3", KEY, T0 + 3)
    assert anvil.handle("w2", Request.LOOKUP, KEY, T0 + 3).count == 2
    assert anvil.handle("w2", Request.DISCONNECT, KEY, T0 + 3) == Answer(STAT_OK)
    assert anvil.handle("w2", Request.LOOKUP, KEY, T0 + 3).count == 1


def test_idle_clients_are_forgotten_one_time_unit_later() -> None:
    anvil = Anvil(60)
    anvil.connect("w", KEY, T0)
    anvil.connect("w", "smtp:192.0.2.9", T0)
    anvil.disconnect("w", KEY, T0 + 10)
    assert anvil.expire(T0 + 69) == 0
    assert anvil.expire(T0 + 70) == 1
    assert anvil.lookup(KEY, T0 + 70) is None
    assert anvil.lookup("smtp:192.0.2.9", T0 + 70) is not None  # still connected
    assert anvil.handle("w", Request.LOOKUP, KEY, T0 + 70) == Answer(STAT_OK)


def test_statistics_lines_are_postfix_s_and_report_each_peak_once() -> None:
    anvil = Anvil(60)
    when = time.mktime((2026, 11, 30, 1, 57, 55, 0, 0, -1))
    for _ in range(3):
        anvil.connect("w", "smtp:127.0.0.1", when)
    anvil.connect("w", "other:127.0.0.1", when)
    for _ in range(4):
        anvil.event("w", Request.MESSAGE, "smtp:127.0.0.1", when)
    anvil.event("w", Request.AUTH, "other:127.0.0.1", when)
    assert anvil.statistics() == [
        "statistics: max connection rate 3/60s for (smtp:127.0.0.1) at Nov 30 01:57:55",
        "statistics: max connection count 3 for (smtp:127.0.0.1) at Nov 30 01:57:55",
        "statistics: max message rate 4/60s for (smtp:127.0.0.1) at Nov 30 01:57:55",
        "statistics: max auth rate 1/60s for (other:127.0.0.1) at Nov 30 01:57:55",
        "statistics: max cache size 2 at Nov 30 01:57:55",
    ]
    assert anvil.statistics() == []
    anvil.event("w", Request.RECIPIENT, "smtp:127.0.0.1", when + 86400 * 3)
    assert anvil.statistics() == [
        "statistics: max recipient rate 1/60s for (smtp:127.0.0.1) at Dec  3 01:57:55"]
