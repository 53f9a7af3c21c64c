"""reject_unlisted_recipient/_sender and the error/retry transports (Postfix's
check_rcpt_maps): an address that resolves to ``error`` is refused at RCPT (550) and to
``retry`` deferred (450), the transport's next hop as the reason; the values are Postfix
3.7.11's, side by side (transport_maps ``example.org error:no mail here``,
``example.net retry:later please``, ``err.example.com error:5.7.1 go away``)."""

from __future__ import annotations

import dataclasses

from restrictions_helpers import World

from postier.restrictions import evaluate as rs

INSIDE = rs.SmtpdState(client_address="127.0.0.1", helo_name="x",
                       sender="s@elsewhere.test", recipient="x@example.org")
TRANSPORTS = {"example.org": "error:no mail here", "example.net": "retry:later please",
              "err.example.com": "error:5.7.1 go away"}


def _rcpt(world: World, recipient: str) -> rs.Decision:
    state = dataclasses.replace(INSIDE, recipient=recipient)
    return rs.evaluate(["reject_unlisted_recipient"], state, world, rs.RejectCodes())


def test_an_error_or_retry_route_is_refused_with_its_text() -> None:
    world = World(transports=dict(TRANSPORTS))
    d = _rcpt(world, "x@example.org")
    assert d.action == "reject"
    assert str(d.reply) == "550 5.1.1 <x@example.org>: Recipient address rejected: no mail here"
    d = _rcpt(world, "x@example.net")
    assert d.action == "defer"
    assert str(d.reply) == "450 4.1.1 <x@example.net>: Recipient address rejected: later please"
    assert str(_rcpt(world, "x@err.example.com").reply) == (
        "550 5.7.1 <x@err.example.com>: Recipient address rejected: go away")
    assert _rcpt(world, "x@elsewhere.test").accepted  # smtp: not ours to judge


def test_default_transport_error_refuses_every_remote_recipient() -> None:
    # the administrator's setup: default_transport = error:remote delivery disabled in test
    world = World(default_transport="error:remote delivery disabled in test")
    assert str(_rcpt(world, "x@example.org").reply) == (
        "550 5.1.1 <x@example.org>: Recipient address rejected: "
        "remote delivery disabled in test")
    assert _rcpt(world, "alice@example.com").accepted  # local: local_transport


def test_a_sender_that_resolves_to_error_is_a_sender_reject() -> None:
    world = World(transports=dict(TRANSPORTS))
    state = dataclasses.replace(INSIDE, sender="s@example.org", recipient="alice@example.com")
    d = rs.evaluate(["reject_unlisted_sender"], state, world, rs.RejectCodes())
    assert str(d.reply) == "550 5.1.0 <s@example.org>: Sender address rejected: no mail here"


def test_an_address_the_virtual_alias_maps_rewrite_is_not_refused_for_its_route() -> None:
    world = World(transports=dict(TRANSPORTS), virtual_aliases={"x@example.org"})
    assert _rcpt(world, "x@example.org").accepted
    assert not _rcpt(world, "y@example.org").accepted


def test_a_failed_class_table_tempfails() -> None:
    world = World(transports=dict(TRANSPORTS), class_fail={"example.org"})
    d = _rcpt(world, "x@example.org")
    assert d.action == "defer" and str(d.reply).startswith("451 4.3.0")
