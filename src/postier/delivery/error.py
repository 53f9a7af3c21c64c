"""The ``error`` and ``retry`` transports: every recipient fails with the next hop as the reason.

Follows Postfix's error(8): the request's next-hop field is the reason text, which may
begin with an RFC 3463 detail code (``error:5.1.1 mailbox unavailable``); without one
the status is 5.0.0. Every recipient is bounced (a code of another class is made a
5.X.Y code), with ``relay=none``; as the ``retry`` service (``retry: 4.3.0 …``, also
what qmgr uses when the address resolver fails), deferred with a 4.X.Y code instead.
Runs inside the queue manager: no file is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postier.delivery import status
from postier.delivery.status import dsn_split
from postier.delivery.transport import (
    DeliveryRequest,
    RcptResult,
    StatusLog,
    same_status_for_all,
)

DEFAULT_DSN = "5.0.0"


class ErrorTransport:
    """``deliver(request)`` bounces each recipient and logs its status line."""

    def __init__(self, log: StatusLog, clock: Callable[[], float] = time.time,
                 *, retry: bool = False) -> None:
        """``retry``: defer (4.X.Y) instead of bouncing."""
        self.log = log
        self.clock = clock
        self.retry = retry

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        dsn, text = dsn_split(request.nexthop, DEFAULT_DSN)
        if self.retry:
            st = status.deferred("4" + dsn[1:], text, relay="none")
        else:
            st = status.bounced("5" + dsn[1:], text, relay="none")
        return same_status_for_all(request, st, self.log, self.clock())
