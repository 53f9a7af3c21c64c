"""The ``texthash`` table: a postmap(1) source file read into memory when opened.

Follows postconf(5)/DATABASE_README ``texthash``: the source format of postmap(1),
read at open time, no compiled file; a change to the file is seen when it is
reopened (we reread it when its modification time changes, as Postfix's daemons
restart when a table changes).
"""

from __future__ import annotations

import os

from postier.tables.base import TableError, TableOpenError, fold
from postier.tables.source import parse_aliases_entries, parse_postmap


def read_text(path: str) -> str:
    """A table file's text; TableOpenError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise TableOpenError(f"open {path}: {exc.strerror}", file=None, word=path) from None


class TextHashTable:
    """``texthash:/path`` (``aliases=True``: the aliases(5) form, for ``alias_maps``)."""

    pattern = False
    blocking = False

    def __init__(self, path: str, *, aliases: bool = False, type_name: str = "texthash") -> None:
        self.path = path
        self.aliases = aliases
        self.spec = f"{type_name}:{path}"
        self._entries: dict[str, str] = {}
        self._stamp: tuple[int, int] = (0, 0)
        self._load()

    def _load(self) -> None:
        text = read_text(self.path)
        st = os.stat(self.path)
        parse = parse_aliases_entries if self.aliases else parse_postmap
        entries: dict[str, str] = {}
        for entry in parse(text, self.path):
            entries.setdefault(entry.key, entry.value)  # postmap: the first one wins
        self._entries = entries
        self._stamp = (st.st_ino, st.st_mtime_ns)

    def lookup(self, key: str) -> str | None:
        try:
            st = os.stat(self.path)
            if (st.st_ino, st.st_mtime_ns) != self._stamp:
                self._load()
        except (OSError, TableOpenError) as exc:
            raise TableError(f"{self.spec}: {exc}") from None
        return self._entries.get(fold(key))

    def items(self) -> list[tuple[str, str]]:
        """Every (key, value), in file order."""
        return list(self._entries.items())
