"""mynetworks patterns, negation, styles."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.rewrite.mynetworks import MyNetworks, style_networks

TUTORIAL = MyNetworks.parse(["127.0.0.0/8", "[::1]/128"])


@pytest.mark.parametrize(("ip", "inside"), [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("128.0.0.1", False), ("::2", False), ("203.0.113.5", False), ("garbage", False),
    ("[127.0.0.1]", True), ("fe80::1%eth0", False),
])
def test_tutorial_mynetworks(ip: str, inside: bool) -> None:
    assert TUTORIAL.match(ip) is inside


def test_forms_and_negation_first_match_wins() -> None:
    nets = MyNetworks.parse(["!10.0.0.1, 10.0.0.0/8", "192.0.2.7", "[2001:db8::]/32",
                             "[::ffff:127.0.0.0]/104"])
    assert not nets.match("10.0.0.1")
    assert nets.match("10.0.0.2")
    assert nets.match("192.0.2.7") and not nets.match("192.0.2.8")
    assert nets.match("2001:db8:1::5")
    assert not nets.match("127.0.0.3")  # an IPv4 client, an IPv6 network: issue 7 (e)
    later = MyNetworks.parse(["10.0.0.0/8", "!10.0.0.1"])
    assert later.match("10.0.0.1")


# Issue 7 (e), checked against Postfix 3.7: with Debian's default shape an IPv4 client
# (or the same client seen through an IPv6 socket, ::ffff:a.b.c.d) matches only the
# IPv4 entries; "[::ffff:127.0.0.0]/104" widens nothing.
DEBIAN = MyNetworks.parse(["127.0.0.1/32", "[::1]/128", "[::ffff:127.0.0.0]/104"])


@pytest.mark.parametrize(("ip", "inside"), [
    ("127.0.0.1", True), ("::ffff:127.0.0.1", True), ("::1", True),
    ("127.0.0.5", False), ("::ffff:127.0.0.5", False), ("[127.0.0.5]", False),
    ("127.255.255.255", False), ("::ffff:7f00:5", False),
])
def test_ipv4_client_never_matches_an_ipv6_network(ip: str, inside: bool) -> None:
    assert DEBIAN.match(ip) is inside


def test_only_ipv6_entries_admit_no_ipv4_client() -> None:
    v6 = MyNetworks.parse(["[::ffff:0.0.0.0]/96", "[::]/0"])
    assert not v6.match("10.1.2.3") and not v6.match("::ffff:10.1.2.3")
    assert v6.match("2001:db8::1")
    v4 = MyNetworks.parse(["0.0.0.0/0"])
    assert v4.match("::ffff:10.1.2.3") and not v4.match("2001:db8::1")


@pytest.mark.parametrize(("entry", "message"), [
    ("hash:/etc/postfix/networks", "need a table opener"),
    ("cidr:/etc/postfix/networks.cidr", "need a table opener"),
    ("/etc/postfix/networks", "need a file reader"),
    ("127.0.0.0/255.255.255.0", 'bad mask value in "127.0.0.0/255.255.255.0"'),
    ("10.0.0.1/8", "non-null host address bits"),
    ("10.0.0.0/33", 'bad mask length in "10.0.0.0/33"'),
    ("example.com", "bad network pattern"),
    ("[::1", "missing"),
])
def test_bad_entries(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MyNetworks.parse([entry])


def test_ipv6_address_that_looks_like_a_table_type_is_an_address() -> None:
    assert MyNetworks.parse(["dead:beef::/32"]).match("dead:beef::1")


def test_styles() -> None:
    ifaces = ["127.0.0.1/8", "192.0.2.10/24", "172.16.5.4/24", "2001:db8::5/64"]
    host = MyNetworks.from_config([], "host", ifaces)
    assert host.match("192.0.2.10") and not host.match("192.0.2.11")
    subnet = MyNetworks.from_config([], "subnet", ifaces)
    assert subnet.match("192.0.2.11") and not subnet.match("192.0.3.1")
    assert subnet.match("2001:db8::77")
    klass = MyNetworks.from_config([], "class", ifaces)
    assert klass.match("192.0.2.200") and klass.match("172.16.200.1")
    assert not klass.match("172.17.0.1") and klass.match("127.1.2.3")
    assert MyNetworks.from_config(["10.0.0.0/8"], "host", ifaces).match("10.1.1.1")
    assert not MyNetworks.from_config(["10.0.0.0/8"], "host", ifaces).match("192.0.2.10")
    with pytest.raises(ValueError, match="mynetworks_style"):
        style_networks("galaxy", ifaces)


@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_match_agrees_with_ipaddress(net_addr: ipaddress.IPv4Address, prefix: int,
                                     probe: ipaddress.IPv4Address) -> None:
    net = ipaddress.ip_network(f"{net_addr}/{prefix}", strict=False)
    assert MyNetworks.parse([str(net)]).match(str(probe)) is (probe in net)
    assert MyNetworks.parse([f"!{net}", "0.0.0.0/0"]).match(str(probe)) is (probe not in net)


# Postfix 3.7.11's warnings, side by side (smtpd_authorized_xclient_hosts = WORD):
# "smtpd_authorized_xclient_hosts: bad mask length in "999.1.1.1/33"", "... bad mask
# value in "127.0.0.0/255.255.255.0"", "... bad network value in "999.1.1.1/24"",
# "... non-null host address bits in "1.2.3.4/8", perhaps you should use "1.0.0.0/8"
# instead". Every list of this syntax names itself; the word is quoted as written.
@pytest.mark.parametrize(("param", "word", "message"), [
    ("smtpd_authorized_xclient_hosts", "999.1.1.1/33",
     'smtpd_authorized_xclient_hosts: bad mask length in "999.1.1.1/33"'),
    ("smtpd_authorized_xclient_hosts", "127.0.0.0/255.255.255.0",
     'smtpd_authorized_xclient_hosts: bad mask value in "127.0.0.0/255.255.255.0"'),
    ("smtpd_authorized_xforward_hosts", "999.1.1.1/24",
     'smtpd_authorized_xforward_hosts: bad network value in "999.1.1.1/24"'),
    ("smtpd_authorized_xclient_hosts", "1.2.3.4/8",
     'smtpd_authorized_xclient_hosts: non-null host address bits in "1.2.3.4/8", '
     'perhaps you should use "1.0.0.0/8" instead'),
    ("smtpd_authorized_xclient_hosts", "!!bogus/x",
     "smtpd_authorized_xclient_hosts: bad network pattern: !!bogus/x"),
    ("smtpd_client_event_limit_exceptions", "!999.1.1.1/33",
     'smtpd_client_event_limit_exceptions: bad mask length in "!999.1.1.1/33"'),
    ("mynetworks", "!bogus", "mynetworks: bad network pattern: !bogus"),
])
def test_errors_name_the_list_and_the_word_as_written(param: str, word: str,
                                                       message: str) -> None:
    with pytest.raises(ValueError) as exc:
        MyNetworks.parse([word], param=param)
    assert str(exc.value) == message
    bad = MyNetworks.parse([word], param=param, strict=False)
    assert bad.errors == [message] and bad.lookup("192.0.2.1") is None


def test_each_exclamation_mark_negates_in_turn() -> None:
    # Postfix's lists: "!!1.2.3.4" is 1.2.3.4 itself
    assert MyNetworks.parse(["!!192.0.2.1"]).lookup("192.0.2.1") is True
    assert MyNetworks.parse(["!!!192.0.2.1", "0.0.0.0/0"]).lookup("192.0.2.1") is False
