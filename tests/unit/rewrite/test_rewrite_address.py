"""Envelope address parsing, hostname checks and qualification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.rewrite.address import (
    Address,
    append_domain,
    fold_domain,
    is_fqdn,
    literal_address,
    parse_address,
    quote_localpart,
    valid_hostname,
    valid_hostname_or_literal,
)


@pytest.mark.parametrize(("text", "local", "domain"), [
    ("user@example.com", "user", "example.com"),
    ("<user@example.com>", "user", "example.com"),
    ('"quoted local"@example.com', "quoted local", "example.com"),
    ('"a@b"@example.com', "a@b", "example.com"),
    ('"a\\"b"@example.com', 'a"b', "example.com"),
    ("user@[127.0.0.1]", "user", "[127.0.0.1]"),
    ("user@[IPv6:::1]", "user", "[IPv6:::1]"),
    ("@a,@b:user@c", "user", "c"),
    ("@a:user@c", "user", "c"),
    ("user", "user", None),
    ("User+Ext@Example.COM", "User+Ext", "Example.COM"),
    ("a@b@c", "a@b", "c"),
])
def test_parse_address(text: str, local: str, domain: str | None) -> None:
    assert parse_address(text) == Address(local, domain)


def test_null_address() -> None:
    for text in ("", "<>"):
        a = parse_address(text)
        assert a.is_null and a.internal() == "" and a.external() == ""


def test_external_form_requotes() -> None:
    assert parse_address('"quoted local"@example.com').external() == '"quoted local"@example.com'
    assert parse_address("first.last@example.com").external() == "first.last@example.com"
    assert quote_localpart("a..b") == '"a..b"'
    assert quote_localpart('a"b') == '"a\\"b"'


def test_utf8_local_parts_need_no_quotes() -> None:
    # RFC 6531 3.3: UTF8-non-ascii is atext; Postfix 3.7 logs from=<jérôme@example.net>.
    assert quote_localpart("jérôme") == "jérôme"
    assert quote_localpart("élise.dupré") == "élise.dupré"
    assert parse_address("<ö@b.net>").external() == "ö@b.net"
    # what Dot-string forbids stays quoted, UTF-8 or not
    assert quote_localpart("é..x") == '"é..x"'
    assert quote_localpart("é x") == '"é x"'
    assert quote_localpart(".é") == '".é"'


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x10FFFF,
                                      blacklist_categories=("Cs",)), min_size=1),
       st.from_regex(r"[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True))
def test_external_form_round_trips(local: str, domain: str) -> None:
    addr = Address(local, domain)
    assert parse_address(addr.external()) == addr


@pytest.mark.parametrize("name", [
    "example.com", "mail.example.com", "localhost", "a-b.example", "x_y.example", "123.example",
    "a" * 63 + ".com", ".".join(["abc"] * 63),
])
def test_valid_hostnames(name: str) -> None:
    assert valid_hostname(name)


@pytest.mark.parametrize("name", [
    "", "bad..name", ".example.com", "example.com.", "-a.example", "a-.example", "a b.example",
    "1.2.3.4", "123", "a" * 64 + ".com", ".".join(["abcd"] * 60), "ex@mple.com",
])
def test_invalid_hostnames(name: str) -> None:
    assert not valid_hostname(name)


def test_helo_forms() -> None:
    assert valid_hostname_or_literal("mail.example.com.")
    assert valid_hostname_or_literal("[192.0.2.1]")
    assert valid_hostname_or_literal("[IPv6:2001:db8::1]")
    assert not valid_hostname_or_literal("[192.0.2]")
    assert not valid_hostname_or_literal("[mail.example.com]")
    assert not valid_hostname_or_literal("mail.example.com..")


def test_literal_address() -> None:
    assert literal_address("[192.0.2.1]") == "192.0.2.1"
    assert literal_address("[IPv6:2001:DB8:0::1]") == "2001:db8::1"
    assert literal_address("192.0.2.1") is None


@pytest.mark.parametrize(("domain", "fqdn"), [
    ("example.com", True), ("example.com.", True), ("[192.0.2.1]", True), ("localhost", False),
    ("", False), (None, False), (".com", False), ("a..b", False),
])
def test_is_fqdn(domain: str | None, fqdn: bool) -> None:
    assert is_fqdn(domain) is fqdn


def test_append_domain() -> None:
    assert append_domain("user", "example.com") == "user@example.com"
    assert append_domain("user@host", "example.com") == "user@host"
    assert append_domain("user@host", "example.com", append_dot_mydomain=True,
                         mydomain="example.com") == "user@host.example.com"
    assert append_domain("user@[192.0.2.1]", "x", append_dot_mydomain=True,
                         mydomain="example.com") == "user@[192.0.2.1]"
    assert append_domain("", "example.com") == ""
    assert append_domain('"a b"', "example.com") == '"a b"@example.com'


def test_fold_domain() -> None:
    assert fold_domain("Example.COM.") == "example.com"


@pytest.mark.parametrize("local", ["\x85", "a\u00a0b", "a\n", "x\u2028y"])
def test_controls_and_separators_are_quoted_even_when_not_ascii(local: str) -> None:
    """RFC 6531 lets UTF-8 letters stand unquoted, not a C1 control, a no-break space or
    a line separator (which Python's str.split would take for blanks)."""
    assert quote_localpart(local) == f'"{local}"'
    assert parse_address(Address(local, "a.example").external()) == Address(local, "a.example")
