"""qmgr's scheduling core: routes, grouping, limits, concurrency, backoff, expiry."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.status import Kind
from postier.qmgr import scheduler
from postier.qmgr.scheduler import Concurrency, Destination, Limits, Policy, Route
from postier.rewrite.resolve import AddressClass

HOUR = 3600.0
DAY = 86400.0


@dataclass
class Rcpt:
    address: str
    orig: str = ""
    done: bool = False
    dsn_notify: str = ""
    status: str = ""


def policy(**kw: object) -> Policy:
    base: dict[str, object] = dict(
        minimal_backoff_time=300.0, maximal_backoff_time=4000.0, queue_run_delay=300.0,
        maximal_queue_lifetime=5 * DAY, bounce_queue_lifetime=2 * DAY,
    )
    base.update(kw)
    return Policy(**base)  # type: ignore[arg-type]


def by_domain(address: str) -> Route:
    domain = address.rpartition("@")[2]
    if domain == "example.com":
        return Route("local", "mx.example.com")
    if domain.startswith("error."):
        return Route("error", "5.1.1 no mail here")
    return Route("smtp", domain)


# --- routes ---------------------------------------------------------------------------


def routing(main_cf: str = "") -> scheduler.Routing:
    cfg = Config(parse(main_cf, "main.cf"), hostname="mx.example.com")
    return scheduler.Routing.from_config(cfg)


def test_local_class_goes_to_local_at_myhostname_and_the_rest_to_smtp_by_domain() -> None:
    r = routing()
    assert scheduler.route("tintin@example.com", AddressClass.LOCAL, r) == Route(
        "local", "mx.example.com")
    assert scheduler.route("a@Far.Example.NET", AddressClass.DEFAULT, r) == Route(
        "smtp", "far.example.net")
    # relay_domains go to relay_transport (master.cf's relay service is smtp(8))
    assert scheduler.route("a@Far.Example.NET.", AddressClass.RELAY, r) == Route(
        "relay", "far.example.net")


def test_relayhost_is_the_next_hop_of_default_and_relay_transports_not_local() -> None:
    r = routing("relayhost = [127.1.0.5]:2526, backup.example.net\n")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r) == Route(
        "smtp", "[127.1.0.5]:2526, backup.example.net")
    assert scheduler.route("a@far.net", AddressClass.RELAY, r).nexthop == (
        "[127.1.0.5]:2526, backup.example.net")
    assert scheduler.route("t@example.com", AddressClass.LOCAL, r) == Route(
        "local", "mx.example.com")


def test_a_transport_setting_with_its_own_next_hop_wins_over_relayhost() -> None:
    r = routing("relayhost = [gw.example]\ndefault_transport = error:5.7.1 no relaying\n"
                "relay_transport = smtp:[relay.example]:587\nlocal_transport = lmtp:unix:/x\n")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r) == Route(
        "error", "5.7.1 no relaying")
    assert scheduler.route("a@far.net", AddressClass.RELAY, r) == Route(
        "smtp", "[relay.example]:587")
    assert scheduler.route("a@example.com", AddressClass.LOCAL, r) == Route("lmtp", "unix:/x")


def test_a_table_entry_plugs_in_before_the_class_and_its_empty_parts_fall_back() -> None:
    # transport(5) as trivial-rewrite applies it: a new transport without a next hop
    # resets the next hop to the recipient's domain (relayhost no longer applies).
    r = routing("relayhost = [gw.example]\n")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, "discard:") == Route(
        "discard", "far.net")
    assert scheduler.route("a@Far.NET", AddressClass.DEFAULT, r, "smtp") == Route(
        "smtp", "far.net")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, ":") == Route(
        "smtp", "[gw.example]")
    assert scheduler.route("a@far.net", AddressClass.RELAY, r, ":") == Route(
        "relay", "[gw.example]")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, "error:") == Route(
        "error", "Address is undeliverable")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, "error:5.1.1 gone") == Route(
        "error", "5.1.1 gone")
    assert scheduler.route("a@example.com", AddressClass.LOCAL, r, "smtp:[in.example]:2525") \
        == Route("smtp", "[in.example]:2525")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, ":[other]:26") == Route(
        "smtp", "[other]:26")
    assert scheduler.route("a@far.net", AddressClass.DEFAULT, r, "relay:x.example") == Route(
        "relay", "x.example")
    assert scheduler.parse_transport("local:$x") == ("local", "$x")
    assert scheduler.parse_transport("smtp") == ("smtp", "")


# --- grouping -------------------------------------------------------------------------


def test_recipients_are_grouped_per_route_in_queue_file_order_and_done_ones_skipped() -> None:
    rcpts = [Rcpt("a@example.com"), Rcpt("x@far.net", "X@far.net"), Rcpt("b@example.com"),
             Rcpt("c@example.com", done=True), Rcpt("y@far.net")]
    plan = scheduler.plan(rcpts, by_domain, policy(), {"local", "smtp"})
    assert plan.decided == {}
    assert [(b.route, [r.index for r in b.recipients]) for b in plan.batches] == [
        (Route("local", "mx.example.com"), [0, 2]),
        (Route("smtp", "far.net"), [1, 4]),
    ]
    assert plan.batches[1].recipients[0].orig == "X@far.net"
    assert plan.batches[0].destination == Destination("local", "mx.example.com")


def test_a_route_is_cut_into_requests_of_at_most_the_recipient_limit() -> None:
    rcpts = [Rcpt(f"u{i}@far.net") for i in range(7)] + [Rcpt("a@example.com")]
    pol = policy(default_limits=Limits(3, 20, 5),
                 transport_limits={"local": Limits(0, 20, 5)})
    plan = scheduler.plan(rcpts, by_domain, pol, {"local", "smtp"})
    assert [[r.index for r in b.recipients] for b in plan.batches] == [
        [0, 1, 2], [3, 4, 5], [6], [7]]
    assert {b.destination for b in plan.batches[:3]} == {Destination("smtp", "far.net")}


def test_recipient_limit_of_one_makes_each_recipient_its_own_destination() -> None:
    rcpts = [Rcpt("Tintin@example.com"), Rcpt("haddock@example.com")]
    pol = policy(transport_limits={"local": Limits(1, 2, 5)})
    plan = scheduler.plan(rcpts, by_domain, pol, {"local"})
    assert [b.destination for b in plan.batches] == [
        Destination("local", "tintin@example.com"), Destination("local", "haddock@example.com")]
    assert all(b.route == Route("local", "mx.example.com") for b in plan.batches)


def test_deferred_and_unavailable_transports_are_decided_by_qmgr() -> None:
    rcpts = [Rcpt("a@example.com"), Rcpt("x@far.net"), Rcpt("e@error.example")]
    plan = scheduler.plan(rcpts, by_domain, policy(defer_transports=frozenset({"local"})),
                          {"local", "error"})
    assert [b.route.transport for b in plan.batches] == ["error"]
    assert plan.decided[0] == status.deferred("4.3.2", "deferred transport", relay="none")
    assert plan.decided[1] == status.deferred(
        "4.3.0", "mail transport unavailable: no smtp delivery agent yet", relay="none")
    assert plan.batches[0].route.nexthop == "5.1.1 no mail here"


def test_limits_come_from_the_transport_parameter_else_the_default() -> None:
    cfg = Config(parse(
        "default_destination_recipient_limit = 10\n"
        "local_destination_recipient_limit = 1\n"
        "smtp_destination_concurrency_limit = 4\n"
        "initial_destination_concurrency = 2\n"
        "queue_run_delay = 1m\nminimal_backoff_time = 2m\nmaximal_backoff_time = 1h\n"
        "maximal_queue_lifetime = 3\nbounce_queue_lifetime = 1d\n"
        "defer_transports = smtp\n", "main.cf"), hostname="mx.example.com")
    pol = Policy.from_config(cfg, ["local", "smtp", "error"])
    assert pol.limits("local") == Limits(1, 20, 2)
    assert pol.limits("smtp") == Limits(10, 4, 2)
    assert pol.limits("error") == Limits(10, 20, 2) == pol.default_limits
    assert (pol.queue_run_delay, pol.minimal_backoff_time, pol.maximal_backoff_time) == (
        60.0, 120.0, HOUR)
    assert (pol.maximal_queue_lifetime, pol.bounce_queue_lifetime) == (3 * DAY, DAY)
    assert pol.defer_transports == {"smtp"}


def test_postfix_defaults() -> None:
    pol = Policy.from_config(Config(parse("", "main.cf"), hostname="mx.example.com"), ["local"])
    assert pol.default_limits == Limits(50, 20, 5)
    assert (pol.minimal_backoff_time, pol.maximal_backoff_time, pol.queue_run_delay) == (
        300.0, 4000.0, 300.0)
    assert pol.maximal_queue_lifetime == pol.bounce_queue_lifetime == 5 * DAY


# --- concurrency ----------------------------------------------------------------------


def test_concurrency_starts_at_the_initial_window_and_opens_up_to_the_limit() -> None:
    c = Concurrency(policy(default_limits=Limits(50, 4, 2)))
    d = Destination("smtp", "far.net")
    other = Destination("smtp", "near.net")
    assert [c.try_start(d) for _ in range(3)] == [True, True, False]
    assert c.free(d) == 0
    assert c.try_start(other)  # counted per destination
    c.finish(d, ok=True)  # window 3, one in flight
    assert c.free(d) == 2
    assert c.try_start(d) and c.try_start(d) and not c.try_start(d)
    for _ in range(3):
        c.finish(d, ok=True)
    assert c.window(d) == 4  # never past the limit
    assert [c.try_start(d) for _ in range(5)] == [True, True, True, True, False]


def test_a_transport_that_could_not_try_closes_the_window_to_the_initial_one() -> None:
    c = Concurrency(policy(default_limits=Limits(50, 10, 3)))
    d = Destination("local", "mx")
    for _ in range(3):
        assert c.try_start(d)
        c.finish(d, ok=True)
    assert c.window(d) == 6
    assert c.try_start(d)
    c.finish(d, ok=False)
    assert c.window(d) == 3


def test_per_transport_concurrency_limit_and_no_limit() -> None:
    c = Concurrency(policy(transport_limits={"local": Limits(1, 1, 5),
                                             "discard": Limits(50, 0, 5)}))
    d = Destination("local", "tintin@example.com")
    assert c.try_start(d) and not c.try_start(d)  # initial window capped by the limit
    c.finish(d, ok=True)
    assert c.window(d) == 1
    free = Destination("discard", "x")
    assert all(c.try_start(free) for _ in range(100))
    assert c.free(free) is None


def test_finishing_what_was_not_started_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        Concurrency(policy()).finish(Destination("smtp", "x"), ok=True)


# --- backoff --------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "delay"), [
    (0.0, 300.0), (10.0, 300.0), (300.0, 300.0), (1000.0, 1000.0), (3999.0, 3999.0),
    (4000.0, 4000.0), (5 * HOUR, 4000.0),
])
def test_backoff_is_the_message_age_clamped_to_the_backoff_times(age: float, delay: float) -> None:
    assert scheduler.backoff_delay(age, policy()) == delay


def test_next_attempt_counts_from_now_and_grows_with_age() -> None:
    pol = policy()
    arrival = 1_000_000.0
    times = [arrival + 60, arrival + 900, arrival + 2 * HOUR]
    attempts = [scheduler.next_attempt(arrival, now, pol) for now in times]
    assert attempts == [arrival + 60 + 300, arrival + 900 + 900, arrival + 2 * HOUR + 4000]
    # a clock behind the arrival time never gives less than the minimal backoff
    assert scheduler.next_attempt(arrival, arrival - 50, pol) == arrival - 50 + 300


def test_a_deferred_message_is_taken_when_due_by_a_scan_every_queue_run_delay() -> None:
    pol = policy(queue_run_delay=60.0)
    assert scheduler.is_due(100.0, 100.0) and not scheduler.is_due(100.5, 100.0)
    assert scheduler.deferred_scan_due(None, 5.0, pol)  # at start
    assert not scheduler.deferred_scan_due(5.0, 64.9, pol)
    assert scheduler.deferred_scan_due(5.0, 65.0, pol)


# --- expiry and settlement ------------------------------------------------------------


def test_lifetime_is_the_bounce_lifetime_for_the_null_sender() -> None:
    pol = policy()
    assert scheduler.lifetime("", pol) == 2 * DAY
    assert scheduler.lifetime("tournesol@example.net", pol) == 5 * DAY
    assert not scheduler.is_expired("a@b", 0.0, 5 * DAY, pol)
    assert scheduler.is_expired("a@b", 0.0, 5 * DAY + 1, pol)
    assert scheduler.is_expired("", 0.0, 2 * DAY + 1, pol)


def test_all_sent_is_removed_without_marks() -> None:
    rcpts = [Rcpt("a@example.com"), Rcpt("b@example.com")]
    results = {0: status.sent("delivered"), 1: status.sent("delivered")}
    s = scheduler.settle(rcpts, results, "s@x", 0.0, 10.0, policy())
    assert (s.keep, s.mark_sent, s.bounced, s.mark_bounced, s.expired) == (
        False, (), (), (), False)


def test_partly_deferred_marks_the_sent_and_bounced_and_stays() -> None:
    rcpts = [Rcpt("a@x"), Rcpt("b@x"), Rcpt("c@x"), Rcpt("d@x", done=True)]
    results = {0: status.sent("ok"), 1: status.deferred("4.2.0", "busy"),
               2: status.bounced("5.1.1", "unknown user")}
    s = scheduler.settle(rcpts, results, "s@x", 0.0, 10.0, policy())
    assert s.keep and s.mark_sent == (0,) and s.bounced == (2,) and s.mark_bounced == (2,)


def test_a_recipient_without_a_result_counts_as_deferred() -> None:
    s = scheduler.settle([Rcpt("a@x"), Rcpt("b@x")], {0: status.sent("ok")}, "s@x", 0.0, 1.0,
                         policy())
    assert s.keep and s.mark_sent == (0,)


def test_bounced_without_pending_marks_the_sent_and_is_removed() -> None:
    results = {0: status.sent("ok"), 1: status.bounced("5.1.1", "unknown user")}
    s = scheduler.settle([Rcpt("a@x"), Rcpt("b@x")], results, "s@x", 0.0, 1.0, policy())
    assert not s.keep and s.mark_sent == (0,) and s.bounced == (1,) and s.mark_bounced == ()


def test_past_its_lifetime_a_deferred_recipient_bounces_with_5_4_7() -> None:
    results = {0: status.deferred("4.3.0", "mail transport unavailable", relay="none"),
               1: status.sent("ok")}
    rcpts = [Rcpt("a@far.net"), Rcpt("b@example.com")]
    young = scheduler.settle(rcpts, results, "s@x", 0.0, 5 * DAY, policy())
    assert young.keep and not young.expired and young.results[0].kind is Kind.DEFERRED
    old = scheduler.settle(rcpts, results, "s@x", 0.0, 5 * DAY + 1, policy())
    assert old.expired and not old.keep and old.bounced == (0,)
    assert old.results[0] == status.bounced(
        "5.4.7", "delivery temporarily suspended: mail transport unavailable", relay="none")
    assert results[0].kind is Kind.DEFERRED  # the caller's mapping is left alone
    bounce = scheduler.settle(rcpts, results, "", 0.0, 2 * DAY + 1, policy())
    assert bounce.expired and bounce.bounced == (0,)


def test_a_transport_may_have_its_own_default_concurrency_unless_its_parameter_is_set() -> None:
    cfg = Config(parse("", "main.cf"), hostname="mx.example.com")
    pol = Policy.from_config(cfg, ["local", "smtp"], {"local": 0})
    assert pol.limits("local") == Limits(50, 0, 5)
    assert pol.limits("smtp") == Limits(50, 20, 5)
    set_cfg = Config(parse("local_destination_concurrency_limit = 2\n", "main.cf"),
                     hostname="mx.example.com")
    assert Policy.from_config(set_cfg, ["local"], {"local": 0}).limits("local") == Limits(
        50, 2, 5)


# --- notifications --------------------------------------------------------------------

MIXED = [Rcpt("ok@x"), Rcpt("gone@x"), Rcpt("slow@x"), Rcpt("ok2@x", dsn_notify="SUCCESS"),
         Rcpt("gone2@x", dsn_notify="NEVER"), Rcpt("slow2@x", dsn_notify="FAILURE")]
MIXED_RESULTS = {
    0: status.sent("delivered to mailbox"), 1: status.bounced("5.1.1", "unknown user"),
    2: status.deferred("4.4.1", "connection refused"), 3: status.sent("delivered to mailbox"),
    4: status.bounced("5.1.1", "unknown user"), 5: status.deferred("4.4.1", "refused"),
}


def notices_at(now: float, pol: Policy, sender: str = "s@x", **kw: bool) -> scheduler.Notices:
    done = scheduler.settle(MIXED, MIXED_RESULTS, sender, 0.0, now, pol)
    return scheduler.notices(MIXED, done, sender, 0.0, now, pol, **kw)


def test_notify_chooses_each_recipients_notices_to_the_sender() -> None:
    n = notices_at(10.0, policy())
    assert n.failure == (1,)  # default NOTIFY: failure; NEVER: none
    assert n.success == (3,)  # only NOTIFY=SUCCESS
    assert n.delay == () and not n.delay_warned  # delay_warning_time = 0: never
    assert (n.postmaster_failure, n.double_bounce, n.discarded) == ((), (), ())


def test_a_delay_notice_once_the_message_is_older_than_delay_warning_time() -> None:
    pol = policy(delay_warning_time=4 * HOUR)
    assert notices_at(4 * HOUR - 1, pol).delay == ()
    due = notices_at(4 * HOUR, pol)
    assert due.delay_warned and due.delay == (2,)  # slow2 asked for FAILURE only
    again = notices_at(5 * HOUR, pol, delay_warned=True)
    assert not again.delay_warned and again.delay == ()


def test_no_delay_notice_for_a_message_that_is_not_kept() -> None:
    rcpts = [Rcpt("a@x")]
    pol = policy(delay_warning_time=HOUR)
    done = scheduler.settle(rcpts, {0: status.sent("ok")}, "s@x", 0.0, 2 * HOUR, pol)
    assert scheduler.notices(rcpts, done, "s@x", 0.0, 2 * HOUR, pol) == scheduler.Notices()


@pytest.mark.parametrize(("classes", "pm_failure", "pm_delay"), [
    ({"resource", "software"}, (), ()),
    ({"bounce"}, (1, 4), ()),
    ({"delay"}, (), (2, 5)),
    ({"bounce", "delay", "2bounce"}, (1, 4), (2, 5)),
])
def test_postmaster_copies_follow_notify_classes_whatever_notify_says(
    classes: set[str], pm_failure: tuple[int, ...], pm_delay: tuple[int, ...],
) -> None:
    n = notices_at(HOUR, policy(delay_warning_time=HOUR, notify_classes=frozenset(classes)))
    assert (n.postmaster_failure, n.postmaster_delay) == (pm_failure, pm_delay)


@pytest.mark.parametrize(("classes", "to_postmaster"), [
    ({"resource", "software"}, False), ({"2bounce"}, True), ({"bounce"}, True)])
def test_failures_of_mail_from_null_are_a_double_bounce_or_discarded(
    classes: set[str], to_postmaster: bool,
) -> None:
    n = notices_at(HOUR, policy(delay_warning_time=1.0, notify_classes=frozenset(classes)),
                   sender="")
    bounced = (1, 4)
    assert (n.double_bounce, n.discarded) == ((bounced, ()) if to_postmaster else ((), bounced))
    assert (n.failure, n.success, n.delay, n.postmaster_failure) == ((), (), (), ())


def test_a_failed_postmaster_notice_is_never_answered() -> None:
    n = notices_at(HOUR, policy(notify_classes=frozenset({"2bounce", "bounce"})),
                   sender="double-bounce@x", double_bounce_sender=True)
    assert n == scheduler.Notices(discarded=(1, 4))


def test_notify_classes_and_delay_warning_time_come_from_the_configuration() -> None:
    cfg = Config(parse("notify_classes = bounce, Delay\ndelay_warning_time = 2\n", "main.cf"),
                 hostname="h.example")
    pol = Policy.from_config(cfg, ["local"])
    assert pol.notify_classes == frozenset({"bounce", "delay"})
    assert pol.delay_warning_time == 2 * HOUR  # the default unit is hours
    assert Policy.from_config(Config(parse("", "main.cf"), hostname="h"), []).notify_classes \
        == frozenset({"resource", "software"})


def test_an_address_left_in_a_virtual_alias_domain_goes_to_error() -> None:
    """trivial-rewrite(8): what virtual_alias_maps did not expand bounces with error(8)'s
    ``User unknown in virtual alias table`` (5.1.1), as Postfix 3.7 logs it."""
    r = routing("relayhost = [127.1.0.5]:2526\n")
    assert scheduler.route("self@virt.example", AddressClass.VIRTUAL_ALIAS, r) == Route(
        "error", "5.1.1 User unknown in virtual alias table")
    assert scheduler.route("self@virt.example", AddressClass.VIRTUAL_ALIAS, r,
                           "smtp:[127.1.0.6]") == Route("smtp", "[127.1.0.6]")
