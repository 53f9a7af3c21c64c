"""``Maps``: a list of tables searched in order, the first that finds a key wins.

Follows Postfix's maps(3) (``maps_find``: a table that fails ends the search with an
error, it is never skipped) as used for every ``*_maps`` parameter and for a
restriction's ``type:table`` argument. ``lookup`` is synchronous (local's code,
tools); ``lookup_async`` is for an event loop: memory- and mmap-backed tables answer
at once, a ``blocking`` table (a database) is asked in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple

from postier.tables.base import Table, TableError


class Key(NamedTuple):
    """One key of a search order: ``text`` and whether it is a ``partial`` key (a parent
    domain, ``user@``, an address prefix), which pattern tables are not asked."""

    text: str
    partial: bool = False


class Maps:
    """``param``'s tables, in order. Empty ``tables``: every lookup finds nothing."""

    def __init__(self, param: str, tables: Sequence[Table]) -> None:
        self.param = param
        self.tables = tuple(tables)

    @property
    def blocking(self) -> bool:
        """Does a lookup possibly wait (a database table is in the list)?"""
        return any(t.blocking for t in self.tables)

    def __bool__(self) -> bool:
        return bool(self.tables)

    def _ask(self, table: Table, key: str) -> str | None:
        try:
            return table.lookup(key)
        except TableError as exc:
            raise TableError(f"{self.param}: {exc}") from None

    def lookup(self, key: str, *, partial: bool = False) -> str | None:
        """The first table's value for ``key`` (pattern tables skipped when ``partial``),
        or None; TableError when a table fails before one finds it."""
        for table in self.tables:
            if partial and table.pattern:
                continue
            value = self._ask(table, key)
            if value is not None:
                return value
        return None

    def search(self, keys: Sequence[Key]) -> str | None:
        """The value for the first of ``keys`` found (a search order from
        ``tables.search``), or None; TableError as ``lookup``."""
        for key in keys:
            value = self.lookup(key.text, partial=key.partial)
            if value is not None:
                return value
        return None

    async def lookup_async(self, key: str, *, partial: bool = False) -> str | None:
        """``lookup`` for an event loop: blocking tables are asked in a thread."""
        for table in self.tables:
            if partial and table.pattern:
                continue
            if table.blocking:
                value = await asyncio.to_thread(self._ask, table, key)
            else:
                value = self._ask(table, key)
            if value is not None:
                return value
        return None

    async def search_async(self, keys: Sequence[Key]) -> str | None:
        """``search`` for an event loop."""
        for key in keys:
            value = await self.lookup_async(key.text, partial=key.partial)
            if value is not None:
                return value
        return None
