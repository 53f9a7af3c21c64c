"""The table of delivery transports by name: the only place a transport is registered.

Follows Postfix's master.cf, where a transport name (the first column) names the
delivery agent that qmgr(8) hands requests to: ``local`` -> local(8), ``error`` ->
error(8), ``discard`` -> discard(8). ``smtp`` and ``lmtp`` join this table when they
exist; the scheduler treats a name missing here as a transport without an agent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postier.delivery.discard import DiscardTransport
from postier.delivery.error import ErrorTransport
from postier.delivery.local_client import LocalTransport
from postier.delivery.transport import StatusLog, Transport


@dataclass(frozen=True)
class TransportSetup:
    """What a transport may need to be built: the queue directory and the log."""

    queue_dir: str
    log: StatusLog


TransportFactory = Callable[[TransportSetup], Transport]

#: Transport name -> how to build it.
TRANSPORTS: Mapping[str, TransportFactory] = {
    "local": lambda s: LocalTransport(os.path.join(s.queue_dir, "private", "local")),
    "error": lambda s: ErrorTransport(s.log),
    "discard": lambda s: DiscardTransport(s.log),
}


#: Transports whose default concurrency limit is not default_destination_concurrency_limit
#: (0: none). ``local`` requests are a pipeline into one process that delivers them in
#: group-committed batches: limiting them only shrinks the batches (more fsyncs), so,
#: unless local_destination_concurrency_limit is set, they are not limited.
CONCURRENCY_DEFAULTS: Mapping[str, int] = {"local": 0}


def build_transports(setup: TransportSetup) -> dict[str, Transport]:
    """Every registered transport, built: name -> transport."""
    return {name: factory(setup) for name, factory in TRANSPORTS.items()}
