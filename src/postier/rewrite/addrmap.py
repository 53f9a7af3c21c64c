"""One address through address tables to its results: Postfix's mail_addr_map(3) (pure).

Follows canonical(5) and virtual(5) ("TABLE FORMAT", "ADDRESS EXTENSION", the
``@domain`` result of canonical(5)) and postconf(5) ``propagate_unmatched_extensions``.
The tables themselves are behind a ``Finder`` (the caller searches them in Postfix's
order, ``tables.search.mail_addr_find``); this module turns what was found into
addresses:

- a value is a list of addresses separated by commas or blanks (quoted local parts
  kept whole);
- a result ``@domain`` keeps the looked-up address's local part: ``user@domain``;
- with propagation, an extension that the matching key did not contain (``user+foo``
  found as ``user``) is appended to each result's local part (``alias+foo@domain``);
- each result is completed by ``qualify`` (``user`` -> ``user@$myorigin``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from postier.rewrite.address import Address, parse_address


@dataclass(frozen=True)
class Found:
    """What a search found: the table's ``value``, and ``extension`` — the delimiter and
    extension (``"+foo"``) that the matching key had stripped, or None when the key
    matched with the extension or by ``@domain`` (nothing to propagate then)."""

    value: str
    extension: str | None = None


class Finder(Protocol):
    """Searches one parameter's tables for an address (external form,
    ``user+ext@domain``) in mail_addr_find(3) order: a ``Found`` or None. May raise the
    tables' error (``tables.TableError``): a lookup that could not be answered."""

    def __call__(self, address: str, /) -> Found | None: ...


def split_values(value: str) -> list[str]:
    """``"a@x, b@y c"`` -> ``["a@x", "b@y", "c"]``: separated by commas and blanks outside
    double quotes; empty items dropped."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for c in value:
        if escaped:
            current.append(c)
            escaped = False
        elif c == "\\":
            current.append(c)
            escaped = True
        elif c == '"':
            current.append(c)
            quoted = not quoted
        elif not quoted and (c == "," or c.isspace()):
            if current:
                items.append("".join(current))
                current = []
        else:
            current.append(c)
    if current:
        items.append("".join(current))
    return items


def with_extension(address: str, extension: str) -> str:
    """``alias@domain`` + ``"+foo"`` -> ``alias+foo@domain`` (external form kept)."""
    parsed = parse_address(address)
    return Address(parsed.localpart + extension, parsed.domain).external()


def map_address(
    address: str, find: Finder, *, propagate: bool, qualify: Callable[[str], str],
) -> list[str] | None:
    """The results of ``address`` in the tables behind ``find``, or None when not found.

    ``propagate``: the table's use is in ``propagate_unmatched_extensions``;
    ``qualify``: completes a result (``user`` -> ``user@$myorigin``). Raises what
    ``find`` raises.
    """
    found = find(address)
    if found is None:
        return None
    results: list[str] = []
    local = parse_address(address).localpart
    for item in split_values(found.value):
        if item.startswith("@"):  # canonical(5): "@domain" keeps the user part
            result = Address(local, item[1:]).external()
        elif propagate and found.extension is not None:
            result = with_extension(item, found.extension)
        else:
            result = item
        results.append(qualify(result))
    return results
