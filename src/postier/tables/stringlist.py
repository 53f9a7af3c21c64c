"""A list of words and ``type:table`` lookups that a string matches or not.

Follows Postfix's string_list(3) and match_list(3) as postconf(5) uses them for
``smtpd_forbidden_commands``: elements separated by whitespace or commas; a word
matches the string case-insensitively; a ``type:table`` element matches when the
lookup of the string finds anything (its value is not used); ``!element`` stops the
search with "no match" when ``element`` matches; the first matching element decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postier.tables.base import Table, fold


@dataclass(frozen=True)
class StringList:
    """The parsed list: ``(negated, word or None, table or None)`` in order."""

    elements: tuple[tuple[bool, str | None, Table | None], ...]

    @classmethod
    def parse(cls, items: Sequence[str], open_table: Callable[[str], Table]) -> StringList:
        """``items``: the parameter's list; ``open_table(spec)`` opens a ``type:name``
        element (raises ``TableOpenError``, left to the caller)."""
        out: list[tuple[bool, str | None, Table | None]] = []
        for item in items:
            negated = item.startswith("!")
            body = item[1:] if negated else item
            if ":" in body and not body.startswith(("[", "{")):
                out.append((negated, None, open_table(body)))
            else:
                out.append((negated, fold(body), None))
        return cls(tuple(out))

    def matches(self, text: str) -> bool:
        """Does ``text`` match? A table lookup failure (``TableError``) propagates."""
        for negated, word, table in self.elements:
            if (table.lookup(text) is not None) if table is not None else word == fold(text):
                return not negated
        return False
