"""rewrite.addrmap, rewrite.canonical and rewrite.virtual: Postfix's mail_addr_map,
cleanup_map11 and cleanup_map1n over a dictionary standing for the tables."""

from __future__ import annotations

import re

import pytest

from postier.rewrite.addrmap import Found, map_address, split_values, with_extension
from postier.rewrite.canonical import (
    MAX_RECURSION,
    Canonical,
    CanonicalClass,
    CanonicalMap,
    parse_classes,
)
from postier.rewrite.virtual import ExpansionError, VirtualAlias


class DictFinder:
    """A Finder over ``table``: ``user+ext@domain``, ``user@domain``, ``@domain``; the
    extension is reported when the stripped key matched."""

    def __init__(self, table: dict[str, str], delimiter: str = "+") -> None:
        self.table = table
        self.delimiter = delimiter

    def __call__(self, address: str) -> Found | None:
        local, _, domain = address.rpartition("@")
        if address.lower() in self.table:
            return Found(self.table[address.lower()])
        if self.delimiter in local:
            base, _, ext = local.partition(self.delimiter)
            if f"{base}@{domain}".lower() in self.table:
                return Found(self.table[f"{base}@{domain}".lower()], self.delimiter + ext)
        if f"@{domain}".lower() in self.table:
            return Found(self.table[f"@{domain}".lower()])
        return None


finder = DictFinder


def qualify(address: str) -> str:
    return address if "@" in address else f"{address}@tintin.example.com"


def test_split_values_keeps_quoted_local_parts_whole() -> None:
    assert split_values('a@x, b@y  c,,"d e"@z') == ["a@x", "b@y", "c", '"d e"@z']
    assert split_values("") == []


def test_with_extension_goes_before_the_domain() -> None:
    assert with_extension("alias@example.com", "+foo") == "alias+foo@example.com"
    assert with_extension("alias", "-foo") == "alias-foo"


def test_map_address_results_qualified_extension_and_at_domain() -> None:
    find = finder({"dave@example.com": "dave.jones@example.com",
                   "@old.example": "@example.com", "both@x.example": "alice, bob@y.example"})
    assert map_address("dave+bar@example.com", find, propagate=True, qualify=qualify) == [
        "dave.jones+bar@example.com"]
    assert map_address("dave+bar@example.com", find, propagate=False, qualify=qualify) == [
        "dave.jones@example.com"]
    # "@domain" result: the local part, extension included, is kept; nothing appended
    assert map_address("zed+q@old.example", find, propagate=True, qualify=qualify) == [
        "zed+q@example.com"]
    assert map_address("both@x.example", find, propagate=True, qualify=qualify) == [
        "alice@tintin.example.com", "bob@y.example"]
    assert map_address("nobody@x.example", find, propagate=True, qualify=qualify) is None


def test_parse_classes() -> None:
    assert parse_classes(["envelope_sender", "Header_Sender", ""], "p") == frozenset(
        {CanonicalClass.ENVELOPE_SENDER, CanonicalClass.HEADER_SENDER})
    with pytest.raises(ValueError, match='unknown sender_canonical_classes value "bogus"'):
        parse_classes(["bogus"], "sender_canonical_classes")


def test_canonical_sender_then_common_per_class() -> None:
    sender = CanonicalMap("sender_canonical_maps", finder({"carol@example.com": "c@example.com"}),
                          frozenset({CanonicalClass.ENVELOPE_SENDER}))
    common = CanonicalMap("canonical_maps", finder({"c@example.com": "carol.smith@example.com",
                                                    "dave@example.com": "d@example.com"}))
    canon = Canonical(sender=sender, common=common, qualify=qualify)
    assert canon.envelope_sender("carol@example.com") == "carol.smith@example.com"
    # header_sender is not in sender's classes: only canonical_maps applies
    assert canon.header_sender("carol@example.com") == "carol@example.com"
    assert canon.header_sender("c@example.com") == "carol.smith@example.com"
    assert canon.envelope_recipient("dave@example.com") == "d@example.com"
    assert canon.envelope_sender("") == ""
    assert not Canonical() and canon


def test_canonical_recurses_until_self_or_not_found_and_warns() -> None:
    warnings: list[str] = []
    chain = CanonicalMap("canonical_maps", finder({"a@x": "b@x", "b@x": "c@x, d@x",
                                                   "c@x": "c@x"}))
    canon = Canonical(common=chain, qualify=qualify)
    assert canon.envelope_recipient("a@x", warnings.append) == "c@x"
    assert warnings == ["multi-valued canonical_maps entry for b@x"]
    loop = CanonicalMap("canonical_maps", finder({"p@x": "q@x", "q@x": "p@x"}))
    warnings.clear()
    result = Canonical(common=loop).envelope_recipient("p@x", warnings.append)
    assert result == ("p@x" if MAX_RECURSION % 2 == 0 else "q@x")
    assert warnings == [f"unreasonable canonical_maps map nesting for {result}"]


VIRTUAL = {
    "alice@virt.example": "alice",
    "both@virt.example": "alice, bob",
    "remote@virt.example": "far@remote.example",
    "loop1@virt.example": "loop2@virt.example",
    "loop2@virt.example": "loop1@virt.example",
    "self@virt.example": "self@virt.example, bob",
    "list@virt.example": "both@virt.example, carol, alice",
    "@catch.example": "bob",
}


def expand(address: str, recursion_limit: int = 1000, expansion_limit: int = 1000) -> list[str]:
    return VirtualAlias(finder(VIRTUAL), recursion_limit, expansion_limit,
                        qualify=qualify).expand(address)


@pytest.mark.parametrize(("address", "final"), [
    ("alice@virt.example", ["alice@tintin.example.com"]),
    ("both@virt.example", ["alice@tintin.example.com", "bob@tintin.example.com"]),
    ("remote@virt.example", ["far@remote.example"]),
    ("self@virt.example", ["self@virt.example", "bob@tintin.example.com"]),
    ("alice+foo@virt.example", ["alice+foo@tintin.example.com"]),
    ("x+foo@catch.example", ["bob@tintin.example.com"]),
    ("nobody@elsewhere.example", ["nobody@elsewhere.example"]),
    # nested lists, duplicates written once, Postfix's order
    ("list@virt.example", ["alice@tintin.example.com", "carol@tintin.example.com",
                           "bob@tintin.example.com"]),
])
def test_virtual_expansion(address: str, final: list[str]) -> None:
    assert expand(address) == final


def test_virtual_loop_hits_the_recursion_limit() -> None:
    with pytest.raises(ExpansionError) as err:
        expand("loop1@virt.example", recursion_limit=5)
    assert str(err.value) == ("unreasonable virtual_alias_maps map nesting for "
                              "loop1@virt.example -- message not accepted, try again later")


def test_virtual_expansion_limit() -> None:
    assert len(expand("both@virt.example", expansion_limit=2)) == 2
    with pytest.raises(ExpansionError, match=re.escape("map expansion size for list@virt.example")):
        expand("list@virt.example", expansion_limit=2)


def test_recursion_limit_counts_one_chain() -> None:
    """alice@virt.example -> alice: two lookups in a row; a limit of 1 refuses it."""
    assert expand("alice@virt.example", recursion_limit=2) == ["alice@tintin.example.com"]
    with pytest.raises(ExpansionError):
        expand("alice@virt.example", recursion_limit=1)
