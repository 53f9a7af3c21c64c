"""Address classes and the local recipient check."""

from __future__ import annotations

from typing import Any

import pytest

from postier.config.params import Param
from postier.rewrite.resolve import (
    AddressClass,
    Classifier,
    LocalRecipientCheck,
    LocalUsers,
    classify,
    unsupported_entries,
)
from postier.tables.aliases import AliasMaps

MYDEST = ["example.com", "tintin.example.com", "localhost", "localhost.localdomain"]


def cls(domain: str, **kw: list[str]) -> AddressClass:
    args: dict[str, list[str]] = {"mydestination": MYDEST, "inet_interface_addrs": ["127.0.0.1",
                                  "192.0.2.1", "::1"], "proxy_interfaces": ["198.51.100.1"],
                                  "relay_domains": []}
    args.update(kw)
    return classify(domain, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("domain", "expected"), [
    ("example.com", AddressClass.LOCAL), ("EXAMPLE.com.", AddressClass.LOCAL),
    ("tintin.example.com", AddressClass.LOCAL), ("sub.example.com", AddressClass.DEFAULT),
    ("localhost", AddressClass.LOCAL), ("", AddressClass.LOCAL),
    ("[127.0.0.1]", AddressClass.LOCAL), ("[192.0.2.1]", AddressClass.LOCAL),
    ("[IPv6:::1]", AddressClass.LOCAL), ("[198.51.100.1]", AddressClass.LOCAL),
    ("[203.0.113.9]", AddressClass.DEFAULT), ("[bogus]", AddressClass.DEFAULT),
    ("example.org", AddressClass.DEFAULT),
])
def test_local_and_default(domain: str, expected: AddressClass) -> None:
    assert cls(domain) is expected


def test_relay_domains_match_subdomains_by_default() -> None:
    assert cls("example.org", relay_domains=["example.org"]) is AddressClass.RELAY
    assert cls("a.b.example.org", relay_domains=["Example.ORG"]) is AddressClass.RELAY
    assert cls("badexample.org", relay_domains=["example.org"]) is AddressClass.DEFAULT
    assert cls("a.example.org", relay_domains=[".example.org"]) is AddressClass.RELAY
    assert cls("example.org", relay_domains=[".example.org"]) is AddressClass.DEFAULT
    strict = classify("a.example.org", mydestination=[], inet_interface_addrs=[],
                      proxy_interfaces=[], relay_domains=["example.org"],
                      relay_domains_match_subdomains=False)
    assert strict is AddressClass.DEFAULT


def test_virtual_classes_and_precedence() -> None:
    assert cls("v.example", virtual_alias_domains=["v.example"]) is AddressClass.VIRTUAL_ALIAS
    assert cls("m.example", virtual_mailbox_domains=["m.example"]) is AddressClass.VIRTUAL_MAILBOX
    assert cls("sub.v.example", virtual_alias_domains=["v.example"]) is AddressClass.DEFAULT
    assert cls("example.com", relay_domains=["example.com"]) is AddressClass.LOCAL
    assert AddressClass.VIRTUAL_ALIAS.is_final and not AddressClass.RELAY.is_final
    assert AddressClass.RELAY.is_authorized and not AddressClass.DEFAULT.is_authorized


def test_table_entries_are_reported_and_ignored() -> None:
    entries = ["example.com", "hash:/etc/postfix/relay", "/etc/postfix/domains"]
    assert unsupported_entries(entries) == ["hash:/etc/postfix/relay", "/etc/postfix/domains"]
    assert cls("hash", relay_domains=entries) is AddressClass.DEFAULT


def test_local_recipient_check() -> None:
    asked: list[str] = []

    def known(name: str) -> bool | None:
        asked.append(name)
        return name in {"alice", "bob"}

    check = LocalRecipientCheck(known, "+-")
    assert check("alice@example.com") and check("ALICE@example.com")
    assert check("alice+lists@example.com") and check("bob-x@example.com")
    assert check("Postmaster@example.com") and check("postmaster")
    assert check("nobody@example.com") is False
    asked.clear()
    check("Alice+Ext@example.com")
    assert asked == ["alice+ext", "alice"]
    assert LocalRecipientCheck(known)("alice+lists@example.com") is False


def test_local_recipient_check_tempfail() -> None:
    check = LocalRecipientCheck(lambda name: None, "+")
    assert check("alice@example.com") is None
    assert check("postmaster@example.com") is True


def test_local_users_are_the_aliases_and_passwd() -> None:
    passwd_asked: list[str] = []

    def passwd(name: str) -> bool | None:
        passwd_asked.append(name)
        return None if name == "broken" else name == "alice"

    users = LocalUsers(passwd, AliasMaps.from_dicts([{"postmaster": ["root"],
                                                      "staff": ["alice", "bob"]}]))
    assert users("staff") is True and passwd_asked == []  # an alias needs no passwd lookup
    assert users("alice") is True and users("nobody") is False
    assert users("broken") is None
    check = LocalRecipientCheck(users, "+")
    assert check("staff+ext@example.com") is True
    assert check("nobody+ext@example.com") is False


class _Cfg:
    def __getitem__(self, param: Param[Any]) -> Any:
        return {"mydestination": ["Example.COM.", "localhost"],
                "relay_domains": ["relay.example"], "virtual_alias_domains": []}[param.name]


def test_classifier_from_config() -> None:
    classify_ = Classifier.from_config(_Cfg(), ["127.0.0.1", "192.0.2.1"])
    assert classify_("example.com") is AddressClass.LOCAL
    assert classify_("[192.0.2.1]") is AddressClass.LOCAL
    assert classify_("[198.51.100.1]") is AddressClass.DEFAULT
    assert classify_("sub.relay.example") is AddressClass.RELAY
    assert classify_("example.org") is AddressClass.DEFAULT
    assert classify_ == Classifier.from_lists(["example.com", "localhost"],
                                              ["127.0.0.1", "192.0.2.1"], ["relay.example"])


class _VirtualCfg:
    def __getitem__(self, param: Param[Any]) -> Any:
        return {"mydestination": ["example.com"], "relay_domains": ["relay.example"],
                "virtual_alias_domains": ["Virt.Example", "hash:/etc/postfix/virtual"],
                }[param.name]


def test_classifier_virtual_alias_domains() -> None:
    """virtual_alias_domains: names, and (through virtual_alias_tables) the domains that
    are keys of its table entries; mydestination wins over both."""
    asked: list[str] = []

    def tables(domain: str) -> bool:
        asked.append(domain)
        return domain in ("table.example", "example.com")

    classify_ = Classifier.from_config(_VirtualCfg(), [], virtual_alias_tables=tables)
    assert classify_("virt.example.") is AddressClass.VIRTUAL_ALIAS
    assert classify_("Table.Example") is AddressClass.VIRTUAL_ALIAS
    assert asked == ["table.example"]
    assert classify_("example.com") is AddressClass.LOCAL
    assert classify_("sub.virt.example") is AddressClass.DEFAULT
    assert classify_("other.example") is AddressClass.DEFAULT
    assert Classifier.from_config(_VirtualCfg(), [])("table.example") is AddressClass.DEFAULT
