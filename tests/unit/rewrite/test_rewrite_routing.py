"""rewrite.address.routing_step / resolve_routing and rewrite.resolve.routing_resolver:
trivial-rewrite(8)'s resolve step for sender-specified routing in a local domain
(postconf(5) allow_percent_hack, swap_bangpath), with Postfix 3.7's results."""

from __future__ import annotations

import pytest

from postier.config.maincf import parse
from postier.config.params import ALLOW_PERCENT_HACK, SWAP_BANGPATH
from postier.config.settings import Config
from postier.rewrite.address import literal_address, resolve_routing, routing_step
from postier.rewrite.resolve import AddressClass, Classifier, routing_resolver

LOCAL = {"example.com", "tintin.example.com", "[127.0.0.1]"}


def is_local(domain: str) -> bool:
    return domain.lower() in LOCAL


@pytest.mark.parametrize(("address", "resolved"), [
    # Postfix 3.7: RCPT <victim%example.org@example.com> queued for victim@example.org
    ("victim%example.org@example.com", "victim@example.org"),
    # Postfix 3.7: RCPT <example.org!victim3@example.com> queued for victim3@example.org
    ("example.org!victim3@example.com", "victim3@example.org"),
    ("victim@example.org@example.com", "victim@example.org"),
    ('"victim@example.org"@example.com', "victim@example.org"),
    # the last "%" first; the next domain is local again: the loop goes on
    ("a%b%tintin.example.com@example.com", "a@b"),
    ("a%example.org%tintin.example.com@EXAMPLE.COM", "a@example.org"),
    # the first "!": site!rest
    ("one!two!user@example.com", "two!user@one"),
    # "!" before "%" (trivial-rewrite swaps the bang path first)
    ("site!user%other@example.com", "user%other@site"),
    ("victim%example.org@[127.0.0.1]", "victim@example.org"),
    # unqualified: local
    ("victim%example.org", "victim@example.org"),
    ("example.org!victim", "victim@example.org"),
    # not a local domain: never rewritten
    ("victim%example.org@example.net", "victim%example.org@example.net"),
    ("example.org!victim@example.net", "example.org!victim@example.net"),
    # nothing to route: the address as given
    ("tintin@example.com", "tintin@example.com"),
    ('"a b"@example.com', '"a b"@example.com'),
    # empty parts stay empty (Postfix 3.7: <%x@example.com> 454 Relay access denied,
    # <victim%@example.com> 501 5.1.3: the resolved domain is empty)
    ("%example.org@example.com", "@example.org"),
    ("victim%@example.com", "victim@"),
    ("x@@example.com", "x@"),
    ("", ""),
])
def test_resolve_routing_both_on(address: str, resolved: str) -> None:
    assert resolve_routing(address, is_local) == resolved


def test_percent_hack_off_keeps_percent() -> None:
    assert resolve_routing("victim%example.org@example.com", is_local,
                           percent_hack=False) == "victim%example.org@example.com"
    assert resolve_routing("example.org!victim@example.com", is_local,
                           percent_hack=False) == "victim@example.org"


def test_swap_bangpath_off_keeps_bang() -> None:
    assert resolve_routing("example.org!victim@example.com", is_local,
                           swap_bangpath=False) == "example.org!victim@example.com"
    assert resolve_routing("victim%example.org@example.com", is_local,
                           swap_bangpath=False) == "victim@example.org"


def test_routing_step_quotes_a_new_localpart() -> None:
    assert routing_step("a b%example.org", percent_hack=True,
                        swap_bangpath=True) == '"a b"@example.org'
    assert routing_step("plain", percent_hack=True, swap_bangpath=True) is None
    assert routing_step("victim%", percent_hack=True, swap_bangpath=True) == "victim@"


def test_routing_resolver_reads_the_parameters() -> None:
    cfg = Config(parse("mydestination = example.com\n", "main.cf"), hostname="h.example.com")
    resolve = routing_resolver(cfg, ["127.0.0.1"])
    assert resolve("victim%example.org@example.com") == "victim@example.org"
    assert resolve("victim%example.org@[127.0.0.1]") == "victim@example.org"
    assert resolve("victim%example.org@example.net") == "victim%example.org@example.net"
    text = (f"mydestination = example.com\n{ALLOW_PERCENT_HACK.name} = no\n"
            f"{SWAP_BANGPATH.name} = no\n")
    off = routing_resolver(Config(parse(text, "main.cf"), hostname="h.example.com"), [])
    assert off("victim%example.org@example.com") == "victim%example.org@example.com"
    assert off("example.org!victim@example.com") == "example.org!victim@example.com"


def test_address_literal_with_leading_zeros_is_ours() -> None:
    """Postfix 3.7: RCPT <tintin@[127.000.000.001]> is 250 (the literal is local)."""
    assert literal_address("[127.000.000.001]") == "127.0.0.1"
    assert literal_address("[127.0.0.256]") is None
    classify = Classifier.from_lists(["example.com"], ["127.0.0.1"], [])
    assert classify("[127.000.000.001]") is AddressClass.LOCAL
    assert classify("[127.000.000.002]") is AddressClass.DEFAULT
