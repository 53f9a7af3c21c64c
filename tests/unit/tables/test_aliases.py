from __future__ import annotations

from pathlib import Path

import pytest

from postier.tables.aliases import TableError, open_alias_maps, parse_aliases, split_values


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
    with pytest.raises(TableError, match=r"aliases, line 2: need"):
        parse_aliases("a: b\nnocolon here\n", "aliases")
    with pytest.raises(TableError, match=r"line 1: continuation"):
        parse_aliases("  orphan\n", "aliases")


def test_split_values_ignores_empty_items() -> None:
    assert split_values(" a , ,b,") == ["a", "b"]


def test_open_alias_maps_reads_hash_source_and_warns(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("Root: tintin\n")
    warnings: list[str] = []
    maps = open_alias_maps(
        [f"hash:{src}", f"hash:{tmp_path}/missing", "nis:mail.aliases"], warnings
    )
    assert maps.lookup("root") == ["tintin"]
    assert maps.lookup("ROOT") == ["tintin"]
    assert maps.lookup("nobody") is None
    assert len(warnings) == 2
