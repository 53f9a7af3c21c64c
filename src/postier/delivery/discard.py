"""The ``discard`` transport: says every recipient was delivered, and delivers nothing.

Follows Postfix's discard(8): the request's next-hop field is the reason logged for
discarding, which may begin with an RFC 3463 detail code; the status is sent (2.0.0
unless the code says otherwise, forced to class 2), ``relay=none``, and the text is
the reason, or ``discarded`` when the next hop is empty. Runs inside the queue manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postier.delivery.status import DeliveryStatus, dsn_split
from postier.delivery.transport import (
    DeliveryRequest,
    RcptResult,
    StatusLog,
    same_status_for_all,
)

DEFAULT_DSN = "2.0.0"
DEFAULT_TEXT = "discarded"


class DiscardTransport:
    """``deliver(request)`` marks each recipient sent and logs its status line."""

    def __init__(self, log: StatusLog, clock: Callable[[], float] = time.time) -> None:
        self.log = log
        self.clock = clock

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        dsn, text = dsn_split(request.nexthop, DEFAULT_DSN)
        st = DeliveryStatus("2" + dsn[1:], text or DEFAULT_TEXT, relay="none")
        return same_status_for_all(request, st, self.log, self.clock())
