"""The aliases(5) table: ``name: value, value`` sources, and ``alias_maps`` as lists of values.

Follows aliases(5) (the source format postalias(1) compiles: ``name: value, …`` with
continuation lines, ``#`` comments, quoted names and values) and local(8) (an alias
value is a comma-separated list, commas inside double quotes kept). The maps
themselves are opened through the registry (``Tables.maps("alias_maps", …,
aliases=True)``): ``hash:/etc/aliases`` reads the compiled ``/etc/aliases.pdb``
built by ``postier postalias``; ``texthash:`` reads the source itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from postier.tables.base import TableOpenError
from postier.tables.inline import InlineTable
from postier.tables.maps import Maps
from postier.tables.source import parse_aliases_entries

__all__ = ["AliasMaps", "TableOpenError", "parse_aliases", "split_values"]


def split_values(text: str) -> list[str]:
    """Split an alias value on commas outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [v for v in out if v]


def parse_aliases(text: str, file: str = "aliases") -> dict[str, list[str]]:
    """An aliases(5) source as {folded name: values}; TableOpenError names file and line."""
    entries: dict[str, list[str]] = {}
    for entry in parse_aliases_entries(text, file):
        entries[entry.key] = split_values(entry.value)
    return entries


class AliasMaps:
    """``alias_maps``: ``lookup(name)`` -> the values of the first table that has the
    (lower-cased) name, or None; raises ``TableError`` when a table fails."""

    def __init__(self, maps: Maps) -> None:
        self.maps = maps

    @classmethod
    def from_dicts(cls, tables: Iterable[Mapping[str, list[str]]]) -> AliasMaps:
        """Alias maps held in memory (tests, tools): each dict one table."""
        return cls(Maps("alias_maps", [
            InlineTable.from_pairs({k: ", ".join(v) for k, v in t.items()}) for t in tables]))

    def lookup(self, name: str) -> list[str] | None:
        value = self.maps.lookup(name)
        return None if value is None else split_values(value)
