"""The outcome of one delivery attempt: a DSN status code and a diagnostic (RFC 3463).

Every delivery agent returns one of these per recipient; the queue manager reads
only ``kind`` to decide whether to remove, defer or bounce the recipient.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """What the queue manager does with a recipient after an attempt."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


@dataclass(frozen=True)
class DeliveryStatus:
    """``dsn`` is an RFC 3463 status such as ``2.0.0``; ``text`` is the diagnostic
    that Postfix puts in parentheses after ``status=...`` in its log."""

    dsn: str
    text: str
    relay: str = "local"

    @property
    def kind(self) -> Kind:
        if self.dsn.startswith("2."):
            return Kind.SENT
        if self.dsn.startswith("5."):
            return Kind.BOUNCED
        return Kind.DEFERRED


def sent(text: str, relay: str = "local") -> DeliveryStatus:
    return DeliveryStatus("2.0.0", text, relay)


def deferred(dsn: str, text: str, relay: str = "local") -> DeliveryStatus:
    assert dsn.startswith("4."), dsn
    return DeliveryStatus(dsn, text, relay)


def bounced(dsn: str, text: str, relay: str = "local") -> DeliveryStatus:
    assert dsn.startswith("5."), dsn
    return DeliveryStatus(dsn, text, relay)
