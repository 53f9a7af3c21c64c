"""Canonical address mapping: one address to one address, as cleanup(8) does it (pure).

Follows canonical(5), cleanup(8) and postconf(5) ``canonical_maps``,
``sender_canonical_maps``, ``recipient_canonical_maps``, ``canonical_classes``,
``sender_canonical_classes``, ``recipient_canonical_classes`` and
``propagate_unmatched_extensions``. A sender goes through ``sender_canonical_maps`` then
``canonical_maps``; a recipient through ``recipient_canonical_maps`` then
``canonical_maps``; each map only for the classes listed for it (``envelope_sender``,
``envelope_recipient``, ``header_sender``, ``header_recipient``).

One map is applied as Postfix's cleanup_map11: the first result replaces the address
(a multi-valued entry draws a warning), and the result is looked up again until it maps
to itself or is not found, at most ``MAX_RECURSION`` times (then a warning; the last
result stays). Lookup errors (``tables.TableError``) propagate to the caller, which
refuses the message for now (451 4.3.0), as cleanup(8) does.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from postier.rewrite.addrmap import Finder, map_address

#: Where warnings go (a text without the queue ID).
Warn = Callable[[str], None]


def _ignore(text: str) -> None:
    """The default ``Warn``: warnings are dropped."""


#: cleanup_map11's bound on lookups of one address in one map.
MAX_RECURSION = 10


class CanonicalClass(enum.Enum):
    """The address classes of ``*canonical_classes`` (Postfix's names)."""

    ENVELOPE_SENDER = "envelope_sender"
    ENVELOPE_RECIPIENT = "envelope_recipient"
    HEADER_SENDER = "header_sender"
    HEADER_RECIPIENT = "header_recipient"


ALL_CLASSES = frozenset(CanonicalClass)


def parse_classes(words: Iterable[str], param: str) -> frozenset[CanonicalClass]:
    """``["envelope_sender", "header_sender"]`` -> the classes; ValueError naming
    ``param`` and the word for a name Postfix does not know."""
    classes: set[CanonicalClass] = set()
    for word in words:
        if not word:
            continue
        try:
            classes.add(CanonicalClass(word.lower()))
        except ValueError:
            raise ValueError(f'unknown {param} value "{word}"') from None
    return frozenset(classes)


@dataclass(frozen=True)
class CanonicalMap:
    """One ``*canonical_maps`` parameter: its ``title`` (the parameter name, for
    warnings), its tables behind ``find``, the ``classes`` it applies to."""

    title: str
    find: Finder
    classes: frozenset[CanonicalClass] = ALL_CLASSES


@dataclass
class Canonical:
    """The canonical maps of one configuration.

    ``propagate``: ``canonical`` is in ``propagate_unmatched_extensions``; ``qualify``
    completes results (``user`` -> ``user@$myorigin``). Each method takes ``warn``,
    called with the text of a warning (without the queue ID) for the caller to log.
    """

    sender: CanonicalMap | None = None
    recipient: CanonicalMap | None = None
    common: CanonicalMap | None = None
    propagate: bool = True
    qualify: Callable[[str], str] = lambda address: address

    def __bool__(self) -> bool:
        return any(m is not None for m in (self.sender, self.recipient, self.common))

    def map11(self, address: str, cmap: CanonicalMap, warn: Warn = _ignore) -> str:
        """``address`` through one map (cleanup_map11); TableError propagates."""
        for _ in range(MAX_RECURSION):
            results = map_address(address, cmap.find, propagate=self.propagate,
                                  qualify=self.qualify)
            if results is None or not results:
                return address
            if len(results) > 1:
                warn(f"multi-valued {cmap.title} entry for {address}")
            previous, address = address, results[0]
            if previous.lower() == address.lower():
                return address
        warn(f"unreasonable {cmap.title} map nesting for {address}")
        return address

    def _apply(self, address: str, specific: CanonicalMap | None,
               cls: CanonicalClass, warn: Warn) -> str:
        if not address:
            return address  # the null sender is never mapped
        for cmap in (specific, self.common):
            if cmap is not None and cls in cmap.classes:
                address = self.map11(address, cmap, warn)
        return address

    def envelope_sender(self, address: str, warn: Warn = _ignore) -> str:
        return self._apply(address, self.sender, CanonicalClass.ENVELOPE_SENDER, warn)

    def envelope_recipient(self, address: str, warn: Warn = _ignore) -> str:
        return self._apply(address, self.recipient, CanonicalClass.ENVELOPE_RECIPIENT, warn)

    def header_sender(self, address: str, warn: Warn = _ignore) -> str:
        return self._apply(address, self.sender, CanonicalClass.HEADER_SENDER, warn)

    def header_recipient(self, address: str, warn: Warn = _ignore) -> str:
        return self._apply(address, self.recipient, CanonicalClass.HEADER_RECIPIENT, warn)
