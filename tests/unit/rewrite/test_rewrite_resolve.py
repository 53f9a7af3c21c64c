"""Address classes and the local recipient check."""

from __future__ import annotations

from typing import Any

import pytest

from postier.config.params import Param
from postier.rewrite.resolve import (
    AddressClass,
    Classifier,
    DomainLists,
    LocalRecipientCheck,
    LocalUsers,
    TableEntry,
    classify,
    file_patterns,
    is_table_entry,
    match_domain_list,
    table_keys,
)
from postier.tables import TableError
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


def test_table_entries_are_left_to_the_classifier() -> None:
    """The pure ``classify`` matches names only: table and file entries are told apart
    (``is_table_entry``) and matched by ``Classifier`` over the opened list."""
    entries = ["example.com", "hash:/etc/postfix/relay", "/etc/postfix/domains", "[::1]"]
    assert [e for e in entries if is_table_entry(e)] == ["hash:/etc/postfix/relay",
                                                          "/etc/postfix/domains"]
    assert cls("hash", relay_domains=entries) is AddressClass.DEFAULT


def _keys(*present: str, asked: list[str] | None = None) -> TableEntry:
    def contains(key: str) -> bool:
        if asked is not None:
            asked.append(key)
        return key in present
    return TableEntry("hash:/t", contains)


def _failing(key: str) -> bool:
    raise TableError("pgsql:/etc/postfix/pg.cf: connection refused")


def test_table_keys_follow_parent_matching() -> None:
    assert table_keys("a.b.example", parent_matches=True) == [
        "a.b.example", "b.example", "example"]
    assert table_keys("a.b.example", parent_matches=False) == [
        "a.b.example", ".b.example", ".example"]


def test_match_domain_list_tables_in_order() -> None:
    asked: list[str] = []
    listed = ["first.example", _keys("relay.example", ".dot.example", asked=asked)]
    assert match_domain_list("First.Example.", listed, parent_matches=True)
    assert asked == []  # a name before the table matched: the table was not asked
    assert match_domain_list("relay.example", listed, parent_matches=True)
    assert match_domain_list("sub.relay.example", listed, parent_matches=True)
    assert not match_domain_list("sub.relay.example", listed, parent_matches=False)
    assert match_domain_list("x.dot.example", listed, parent_matches=False)
    assert not match_domain_list("other.example", listed, parent_matches=True)
    assert not match_domain_list("", listed, parent_matches=True)
    failing = ["ok.example", TableEntry("pgsql:/pg.cf", _failing), "late.example"]
    assert match_domain_list("ok.example", failing, parent_matches=True)
    with pytest.raises(TableError):  # the scan stops at the table that cannot answer
        match_domain_list("late.example", failing, parent_matches=True)


def test_file_patterns() -> None:
    text = "# local domains\none.example two.example,three.example\n\n  # x\nfour.example\n"
    assert file_patterns(text) == ["one.example", "two.example", "three.example",
                                   "four.example"]


def test_classifier_with_opened_lists() -> None:
    """mydestination and relay_domains as opened: their tables and files' names decide
    the class; a table that fails raises (never "not ours")."""
    lists = DomainLists(mydestination=("example.com", "file.example", _keys("mine.example")),
                        relay_domains=("relay.example", _keys("backup.example")))
    classify_ = Classifier.from_config(_VirtualCfg(), ["127.0.0.1"], lists=lists)
    assert classify_("mine.example") is AddressClass.LOCAL
    assert classify_("FILE.example") is AddressClass.LOCAL
    assert classify_("sub.mine.example") is AddressClass.DEFAULT
    assert classify_("backup.example") is AddressClass.RELAY
    assert classify_("sub.backup.example") is AddressClass.RELAY
    assert classify_("virt.example") is AddressClass.VIRTUAL_ALIAS
    assert classify_("[127.0.0.1]") is AddressClass.LOCAL
    assert classify_("elsewhere.example") is AddressClass.DEFAULT
    failing = Classifier.from_config(_VirtualCfg(), [], lists=DomainLists(
        relay_domains=("relay.example", TableEntry("pgsql:/pg.cf", _failing))))
    assert failing("relay.example") is AddressClass.RELAY
    assert failing("example.com") is AddressClass.LOCAL
    with pytest.raises(TableError):
        failing("elsewhere.example")
    down = Classifier.from_config(_VirtualCfg(), [], lists=DomainLists(
        mydestination=(TableEntry("pgsql:/pg.cf", _failing),)))
    with pytest.raises(TableError):
        down("relay.example")


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
