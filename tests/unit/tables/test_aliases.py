from __future__ import annotations

from pathlib import Path

import pytest

from postier.cli import postmap
from postier.tables import TableOpenError, Tables
from postier.tables.aliases import AliasMaps, parse_aliases, split_values


def test_parse_aliases_with_continuations_comments_and_quotes() -> None:
    text = (
        "# comment\n"
        "postmaster: root\n"
        "Team: alice, bob,\n"
        "  carol\n"
        '"quoted": "|/usr/bin/vacation, -a x", dave\n'
        "\n"
    )
    table = parse_aliases(text)
    assert table["postmaster"] == ["root"]
    assert table["team"] == ["alice", "bob", "carol"]
    assert table["quoted"] == ['"|/usr/bin/vacation, -a x"', "dave"]


def test_bad_lines_name_file_and_line() -> None:
    with pytest.raises(TableOpenError, match=r"aliases, line 2: need"):
        parse_aliases("a: b\nnocolon here\n", "aliases")
    with pytest.raises(TableOpenError, match=r"line 1: continuation"):
        parse_aliases("  orphan\n", "aliases")


def test_split_values_ignores_empty_items() -> None:
    assert split_values(" a , ,b,") == ["a", "b"]


def test_alias_maps_read_the_compiled_table_and_refuse_what_is_missing(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("Root: tintin\nstaff: alice,\n  bob\n")
    assert postmap.main([str(src)], prog="postalias") == 0
    tables = Tables()
    maps = AliasMaps(tables.maps("alias_maps", [f"hash:{src}"], aliases=True))
    assert maps.lookup("root") == ["tintin"]
    assert maps.lookup("ROOT") == ["tintin"]
    assert maps.lookup("staff") == ["alice", "bob"]
    assert maps.lookup("nobody") is None
    with pytest.raises(TableOpenError, match=r"alias_maps: hash:.*missing.*postier postalias"):
        tables.maps("alias_maps", [f"hash:{tmp_path}/missing"], aliases=True)
    with pytest.raises(TableOpenError, match=r'"nis" is not supported'):
        tables.maps("alias_maps", ["nis:mail.aliases"])


def test_texthash_alias_source_is_read_directly(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("postmaster: root\n")
    maps = AliasMaps(Tables().maps("alias_maps", [f"texthash:{src}"], aliases=True))
    assert maps.lookup("Postmaster") == ["root"]
