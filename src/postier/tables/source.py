"""The postmap(1) source format: ``key value`` lines, comments, continuation lines.

Follows postmap(1) "INPUT FILE FORMAT": a line ``key whitespace value``; empty lines and
lines whose first non-blank character is ``#`` are ignored; a line that starts with
whitespace continues the previous one. Keys are folded to lower case (postmap without
``-f``). Also the aliases(5) form (``name: value``) for postalias(1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from postier.tables.base import TableOpenError, fold


@dataclass(frozen=True)
class Entry:
    """One logical line: ``key`` (folded), ``value``, the ``line`` number it starts on."""

    key: str
    value: str
    line: int


def logical_lines(text: str, file: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of each logical line: comments and blank lines dropped,
    continuation lines joined with one space. TableOpenError for a continuation first."""
    current: tuple[int, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if current is None:
                raise TableOpenError("continuation line without a preceding line", file=file,
                                     line=lineno, word=stripped)
            current = (current[0], current[1] + " " + stripped)
            continue
        if current is not None:
            yield current
        current = (lineno, stripped)
    if current is not None:
        yield current


def parse_postmap(text: str, file: str, *, fold_keys: bool = True) -> Iterator[Entry]:
    """Entries of a postmap(1) source; a line with a key and no value is an error
    naming file and line (postmap: "expected format: key whitespace value")."""
    for lineno, line in logical_lines(text, file):
        if line.startswith('"'):
            close = line.find('"', 1)
            key, rest = (line[1:close], line[close + 1:]) if close > 0 else (line, "")
        else:
            key, _, rest = line.partition(" ")
            if "\t" in key:
                key, _, more = key.partition("\t")
                rest = more + " " + rest
        value = rest.strip()
        if not value:
            raise TableOpenError("expected format: key whitespace value", file=file,
                                 line=lineno, word=line)
        yield Entry(fold(key) if fold_keys else key, value, lineno)


def parse_aliases_entries(text: str, file: str) -> Iterator[Entry]:
    """Entries of an aliases(5) source: ``name: value, value``; the name folded and
    unquoted, the value kept as written (``tables.aliases.split_values`` splits it)."""
    for lineno, line in logical_lines(text, file):
        if line.startswith('"'):
            close = line.find('"', 1)
            if close < 0:
                raise TableOpenError("missing closing quote", file=file, line=lineno, word=line)
            name, rest = line[1:close], line[close + 1:].lstrip()
            if not rest.startswith(":"):
                raise TableOpenError('need "name: value"', file=file, line=lineno, word=line)
            value = rest[1:]
        else:
            name, sep, value = line.partition(":")
            if not sep:
                raise TableOpenError('need "name: value"', file=file, line=lineno, word=line)
        name = name.strip()
        if not name:
            raise TableOpenError('need "name: value"', file=file, line=lineno, word=line)
        yield Entry(fold(name), value.strip(), lineno)
