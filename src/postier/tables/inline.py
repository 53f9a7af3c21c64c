"""The ``inline:{…}`` and ``static:`` tables: contents written in main.cf itself.

Follows DATABASE_README and postconf(5): ``inline:{ key=value, { key = text } }``
(Postfix 3.0: elements separated by commas or whitespace; an element with spaces in
braces; a fixed table, keys folded) and ``static:value`` / ``static:{ text }`` (every
key finds ``value``).
"""

from __future__ import annotations

from postier.config.braces import UnclosedBrace, split_braced, unbrace
from postier.tables.base import TableOpenError, fold


def parse_inline(spec: str) -> dict[str, str]:
    """The pairs of an ``inline:{…}`` body (``spec`` is the text after ``inline:``)."""
    body = spec.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise TableOpenError(f'inline table needs braces: "inline:{{ key=value, … }}", '
                             f"not inline:{spec}", word=f"inline:{spec}")
    try:
        tokens = split_braced(unbrace(body), ",")
    except UnclosedBrace as exc:
        raise TableOpenError(str(exc), word=f"inline:{spec}") from None
    pairs: dict[str, str] = {}
    for token in tokens:
        element = unbrace(token)
        key, eq, value = element.partition("=")
        if not eq or not key.strip():
            raise TableOpenError(f'inline table element "{element}" is not "key=value"',
                                 word=element)
        pairs.setdefault(fold(key.strip()), value.strip())
    return pairs


class InlineTable:
    """``inline:{ key=value, … }``."""

    pattern = False
    blocking = False

    def __init__(self, body: str) -> None:
        self.spec = f"inline:{body}"
        self.pairs = parse_inline(body)

    @classmethod
    def from_pairs(cls, pairs: dict[str, str]) -> InlineTable:
        """A table held in memory from ``pairs`` (keys folded)."""
        table = cls("{ }")
        table.pairs = {fold(k): v for k, v in pairs.items()}
        table.spec = "inline:{ " + ", ".join(f"{{ {k} = {v} }}" for k, v in pairs.items()) + " }"
        return table

    def lookup(self, key: str) -> str | None:
        return self.pairs.get(fold(key))

    def items(self) -> list[tuple[str, str]]:
        """Every (key, value), keys folded: a table that can be listed."""
        return list(self.pairs.items())


class StaticTable:
    """``static:value``: every key finds ``value``."""

    pattern = False
    blocking = False

    def __init__(self, value: str) -> None:
        self.spec = f"static:{value}"
        self.value = unbrace(value.strip())
        if not self.value:
            raise TableOpenError("static table needs a value: static:value", word=self.spec)

    def lookup(self, key: str) -> str | None:
        return self.value
