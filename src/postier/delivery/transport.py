"""The one interface between the queue manager and every delivery transport.

Follows Postfix's deliver_request(3): qmgr(8) hands a transport a delivery request (a
queue file, its sender, one next hop and some of its recipients) and gets back one
status per recipient. A transport (``local``, ``error``, ``discard``; later ``smtp``,
``lmtp``) is anything with ``async def deliver(request) -> list[RcptResult]``; the
scheduler knows transports only by the names in ``postier.delivery.registry``.

Who logs: a transport logs the status line of every recipient it returns a status for
(as Postfix's delivery agents do); the queue manager logs the statuses it decides itself,
including those of a request whose transport raised ``TransportUnavailable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from postier.delivery.protocol import RcptRequest, RcptResult
from postier.delivery.status import DeliveryStatus, status_log_line

__all__ = [
    "DeliveryRequest", "RcptRequest", "RcptResult", "StatusLog", "Transport",
    "TransportUnavailable",
]


@dataclass(frozen=True)
class DeliveryRequest:
    """One delivery request: recipients of one queue file that share a transport and next hop.

    ``path`` is the queue file in active/; ``arrival`` is in seconds since the epoch;
    ``recipients`` carry their index in the queue file's recipient list, which is
    how results are matched to them; ``nexthop`` is the transport's destination
    (a domain, a host, or for ``error``/``discard`` the reason text).
    """

    queue_id: str
    path: str
    sender: str
    arrival: float
    recipients: tuple[RcptRequest, ...]
    nexthop: str
    attrs: dict[str, str] = field(default_factory=dict)


class TransportUnavailable(Exception):
    """The transport could not attempt the request at all (its agent cannot be reached).

    ``str(exc)`` is the reason: the queue manager defers every recipient of the request
    with status 4.3.0 and this text, logs them itself, and counts it against the
    destination's concurrency (a failed attempt, not a recipient's problem).
    """


class StatusLog(Protocol):
    """Where a transport logs its status lines (``postier.log.Log`` is one)."""

    def info(self, text: str) -> None: ...


class Transport(Protocol):
    """A delivery transport: one result per recipient of the request, in any order.

    ``deliver`` returns a ``RcptResult(index, status)`` for every recipient of the
    request (an index the request did not hold is our bug) and logs their status lines;
    it raises ``TransportUnavailable`` when it could not try at all.
    """

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]: ...


def same_status_for_all(
    request: DeliveryRequest, st: DeliveryStatus, log: StatusLog, now: float
) -> list[RcptResult]:
    """Every recipient of ``request`` gets ``st``, each logged in Postfix's status line
    (the error(8) and discard(8) agents decide once for the whole request)."""
    results = []
    for r in request.recipients:
        log.info(status_log_line(request.queue_id, r.address, r.orig, request.arrival, st, now))
        results.append(RcptResult(r.index, st))
    return results

