"""Virtual alias expansion: one recipient to its final recipients, as cleanup(8) does it
(pure).

Follows virtual(5) ("TABLE FORMAT", "ADDRESS EXTENSION"), cleanup(8) and postconf(5)
``virtual_alias_maps``, ``virtual_alias_recursion_limit``,
``virtual_alias_expansion_limit`` and ``propagate_unmatched_extensions`` (Postfix's
cleanup_map1n). Each address is looked up; the first result replaces it and is looked up
again, the others join the list and are expanded in their turn. An address that expands
into itself (``user@dom -> user@dom, other``) is kept and not expanded again. Expanding
one address more than ``recursion_limit`` times in a row (a loop), or a list growing
beyond ``expansion_limit`` addresses, refuses the message for now: ``ExpansionError``,
whose text is Postfix's warning without the queue ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postier.config.params import VIRTUAL_ALIAS_EXPANSION_LIMIT, VIRTUAL_ALIAS_RECURSION_LIMIT
from postier.rewrite.addrmap import Finder, map_address

TITLE = "virtual_alias_maps"
_NOT_ACCEPTED = "-- message not accepted, try again later"


class ExpansionError(Exception):
    """The message must be refused for now (cleanup's CLEANUP_STAT_DEFER, answered
    ``451 4.6.0 Alias expansion error``); ``str()`` is the warning to log after the
    queue ID."""


@dataclass(frozen=True)
class VirtualAlias:
    """``virtual_alias_maps`` behind ``find``, with its limits; ``propagate``:
    ``virtual`` is in ``propagate_unmatched_extensions``; ``qualify`` completes results
    (``user`` -> ``user@$myorigin``)."""

    find: Finder
    recursion_limit: int = VIRTUAL_ALIAS_RECURSION_LIMIT.default_value()
    expansion_limit: int = VIRTUAL_ALIAS_EXPANSION_LIMIT.default_value()
    propagate: bool = True
    qualify: Callable[[str], str] = lambda address: address

    def expand(self, address: str) -> list[str]:
        """The final recipients of ``address``, in Postfix's order, without duplicates
        (compared without case); ``[address]`` when it is in no table. Raises
        ``ExpansionError`` (a loop, too many results) and what ``find`` raises (a table
        that could not be read)."""
        addresses = [address]
        expanded_to_self: set[str] = set()
        arg = 0
        while arg < len(addresses):
            if len(addresses) > self.expansion_limit:
                raise ExpansionError(f"unreasonable {TITLE} map expansion size for "
                                     f"{address} {_NOT_ACCEPTED}")
            count = 0
            while addresses[arg].lower() not in expanded_to_self:
                if count >= self.recursion_limit:
                    raise ExpansionError(f"unreasonable {TITLE} map nesting for "
                                         f"{address} {_NOT_ACCEPTED}")
                current = addresses[arg]
                results = map_address(current, self.find, propagate=self.propagate,
                                      qualify=self.qualify)
                if not results:
                    break
                addresses[arg] = results[0]
                addresses.extend(results[1:])
                if any(r.lower() == current.lower() for r in results):
                    expanded_to_self.add(current.lower())
                count += 1
            arg += 1
        unique: list[str] = []
        seen: set[str] = set()
        for a in addresses:
            if a.lower() not in seen:
                seen.add(a.lower())
                unique.append(a)
        return unique
