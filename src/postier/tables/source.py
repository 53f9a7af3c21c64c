"""The postmap(1) source format: ``key value`` lines, comments, continuation lines.

Follows postmap(1) "INPUT FILE FORMAT": a line ``key whitespace value``; empty lines and
lines whose first non-blank character is ``#`` are ignored; a line that starts with
whitespace continues the previous one. Keys are folded to lower case (postmap without
``-f``). Also the aliases(5) form (``name: value``) for postalias(1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from postier.tables.base import TableOpenError, WarningSink, fold


@dataclass(frozen=True)
class Entry:
    """One logical line: ``key`` (folded), ``value``, the ``line`` number it starts on."""

    key: str
    value: str
    line: int


def _fault(warn: WarningSink | None, message: str, file: str, line: int | None,
           word: str) -> None:
    """A malformed line: raised as TableOpenError, or, when ``warn`` is given (postmap(1),
    postalias(1)), reported as ``FILE, line N: MESSAGE`` and skipped."""
    error = TableOpenError(message, file=file, line=line, word=word)
    if warn is None:
        raise error
    warn(str(error))


def logical_lines(text: str, file: str,
                  warn: WarningSink | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each logical line: comments and blank lines dropped,
    continuation lines joined with one space. A continuation first is a TableOpenError,
    or with ``warn`` Postfix's warning ``FILE: logical line must not start with
    whitespace: "TEXT"`` and the line skipped."""
    current: tuple[int, str] | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if current is None:
                if warn is None:
                    raise TableOpenError("continuation line without a preceding line",
                                         file=file, line=lineno, word=stripped)
                warn(f'{file}: logical line must not start with whitespace: "{raw}"')
                continue
            current = (current[0], current[1] + " " + stripped)
            continue
        if current is not None:
            yield current
        current = (lineno, stripped)
    if current is not None:
        yield current


def parse_postmap(text: str, file: str, *, fold_keys: bool = True,
                  warn: WarningSink | None = None) -> Iterator[Entry]:
    """Entries of a postmap(1) source; a line with a key and no value is an error
    naming file and line (postmap: "expected format: key whitespace value"), or with
    ``warn`` a warning and the line skipped (postmap(1) builds the rest)."""
    for lineno, line in logical_lines(text, file, warn):
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
            _fault(warn, "expected format: key whitespace value", file, lineno, line)
            continue
        yield Entry(fold(key) if fold_keys else key, value, lineno)


NEED_PAIR = "need name:value pair"
"""postalias(1)'s text for an aliases(5) line that is not ``name: value``."""


def parse_aliases_entries(text: str, file: str,
                          warn: WarningSink | None = None) -> Iterator[Entry]:
    """Entries of an aliases(5) source: ``name: value, value``; the name folded and
    unquoted, the value kept as written (``tables.aliases.split_values`` splits it).
    A line that is not ``name: value`` (no colon, no name, an unclosed quote) is a
    TableOpenError ``FILE, line N: need name:value pair``, or with ``warn`` a warning
    and the line skipped (postalias(1) builds the rest)."""
    for lineno, line in logical_lines(text, file, warn):
        name = value = ""
        if line.startswith('"'):
            close = line.find('"', 1)
            if close > 0:
                name, rest = line[1:close], line[close + 1:].lstrip()
                if rest.startswith(":"):
                    value = rest[1:]
                else:
                    name = ""
        else:
            name, sep, value = line.partition(":")
            if not sep:
                name = ""
        name = name.strip()
        if not name:
            _fault(warn, NEED_PAIR, file, lineno, line)
            continue
        yield Entry(fold(name), value.strip(), lineno)
