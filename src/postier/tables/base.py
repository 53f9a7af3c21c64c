"""The one table interface: ``Table``, its two errors, and the helpers every type shares.

Follows Postfix's dict(3) interface (``dict_open``/``dict_get``: a key in, a value or
"not found" or an error out) and the DICT_FLAG_FOLD_FIX/DICT_FLAG_PATTERN split of
postconf(5) and access(5): *fixed* tables (hash, lmdb, texthash, inline, SQL…) are
searched with the key folded to lower case and with partial keys (parent domains,
``user@``); *pattern* tables (regexp, pcre, cidr) see only whole strings, unchanged.
"""

from __future__ import annotations

from typing import Protocol


class TableError(Exception):
    """A lookup failed at run time (database down, file unreadable): never "not found".

    smtpd answers ``451 4.3.0``; local and qmgr defer. ``str()`` names the table.
    """


class TableOpenError(ValueError):
    """A table cannot be used at all (unknown type, missing file, bad line): a start error.

    ``str()``: ``FILE, line N: MESSAGE`` when the fault is inside a table file, else
    ``MESSAGE``; ``word`` is the offending text.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 word: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.word = word

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        where = self.file if self.line is None else f"{self.file}, line {self.line}"
        return f"{where}: {self.message}"


class Table(Protocol):
    """One opened ``type:name`` table.

    ``spec``: its ``type:name`` as configured (``proxy:`` removed). ``pattern``: a
    pattern table (regexp, pcre, cidr): asked only whole strings, key not folded.
    ``blocking``: a lookup may wait on the network or a database; an event loop calls
    it off-loop (``Maps.lookup_async``). ``lookup(key)``: the value (``str``), or
    None when the key is not there; raises ``TableError`` when it cannot tell.
    """

    @property
    def spec(self) -> str: ...
    @property
    def pattern(self) -> bool: ...
    @property
    def blocking(self) -> bool: ...
    def lookup(self, key: str) -> str | None: ...


def fold(key: str) -> str:
    """A fixed table's key as it is stored and looked up (lower case, as postmap -f off)."""
    return key.lower()


class WarningSink(Protocol):
    """Where a table reports what Postfix logs as a warning (e.g. an out-of-date database)."""

    def __call__(self, message: str, /) -> None: ...


def no_warnings(message: str, /) -> None:
    """A ``WarningSink`` that drops warnings (tests, one-shot tools that print none)."""
