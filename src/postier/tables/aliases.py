"""The aliases(5) table: ``name: value, value`` with continuation lines.

Used for ``alias_maps`` (local delivery) and by smtpd's local recipient check. Until
``postmap``/``newaliases`` exist, a ``hash:`` or ``texthash:`` alias map is read from
its source text file directly (``hash:/etc/aliases`` reads ``/etc/aliases``), as
Postfix's ``texthash`` does; other table types are reported as unsupported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass


class TableError(Exception):
    pass


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
    entries: dict[str, list[str]] = {}
    logical: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t":
            if not logical:
                raise TableError(f"{file}, line {lineno}: continuation line without a name")
            first, prev = logical[-1]
            logical[-1] = (first, prev + " " + raw.strip())
        else:
            logical.append((lineno, raw.strip()))
    for lineno, line in logical:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise TableError(f'{file}, line {lineno}: need "name: value"')
        entries[name.strip().strip('"').lower()] = split_values(value)
    return entries


@dataclass
class AliasMaps:
    tables: list[dict[str, list[str]]]

    def lookup(self, name: str) -> list[str] | None:
        key = name.lower()
        for table in self.tables:
            if key in table:
                return table[key]
        return None


def open_alias_maps(specs: Iterable[str], warn: list[str] | None = None) -> AliasMaps:
    tables = []
    for spec in specs:
        kind, sep, path = spec.partition(":")
        if not sep:
            kind, path = "hash", spec
        if kind in ("hash", "btree", "texthash", "lmdb", "cdb", "dbm"):
            if not os.path.exists(path):
                if warn is not None:
                    warn.append(f"{spec}: {path}: No such file or directory")
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                tables.append(parse_aliases(f.read(), path))
        elif warn is not None:
            warn.append(f"{spec}: table type {kind} is not supported yet; ignored")
    return AliasMaps(tables)
