"""Answers kept for a while: one process's memory of lookups, bounded in time and size.

Follows Postfix's habit of keeping tables open in a long-lived process (proxymap(8))
and its negative caching of DNS answers in smtpd(8): an answer is reused for ``ttl``
seconds, after which it is asked again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Expiring(Generic[V]):
    """Answers kept for ``ttl`` seconds (at most ``limit`` of them; when full, all are
    forgotten at once). ``clock`` gives seconds (``time.monotonic``)."""

    def __init__(self, ttl: float, limit: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        """The answer kept for ``key``, or None when there is none or it is too old."""
        item = self._items.get(key)
        if item is None or self.clock() - item[0] >= self.ttl:
            return None
        return item[1]

    def put(self, key: str, value: V) -> V:
        """Keep ``value`` for ``key``; returns it."""
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = (self.clock(), value)
        return value
