"""local(8)'s hand-off of a mailbox delivery to ``mailbox_transport`` (an LMTP/SMTP client).

Follows Postfix local(8) ("mailbox_transport … takes precedence over mailbox_command
and the mbox"): after aliases (and the recipient's resolution) the mailbox delivery of
a local user goes to the named transport, as local's deliver_pass(): the request (the
queue file, the sender, this one recipient) is handed to that transport, which talks to
its next hop (``lmtp:unix:private/dovecot-lmtp``, relative paths under
``queue_directory``; ``lmtp:inet:host:port``) and logs the recipient's status line; its
status is the local delivery's. Only master.cf's ``smtp``/``lmtp`` services (and the
built-in ``smtp``, ``relay``, ``lmtp``) can be named; another transport defers 4.3.0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading

from postier.config.params import QUEUE_DIRECTORY
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.registry import client_services
from postier.delivery.status import DeliveryStatus
from postier.delivery.transport import DeliveryRequest, RcptRequest, StatusLog
from postier.dns.resolver import Resolver
from postier.smtp.settings import SmtpSettings
from postier.smtp.transport import SmtpTransport


def split_transport(value: str, queue_dir: str) -> tuple[str, str]:
    """``lmtp:unix:private/x`` -> (``lmtp``, ``unix:QUEUE_DIR/private/x``);
    ``lmtp:inet:host:port`` -> (``lmtp``, ``inet:host:port``); no next hop: ""."""
    name, _, nexthop = value.strip().partition(":")
    if nexthop.startswith("unix:") and not nexthop[5:].startswith("/"):
        nexthop = "unix:" + os.path.join(queue_dir, nexthop[5:])
    return name, nexthop


class MailboxTransport:
    """``mailbox_transport``'s client, built once per local process; ``deliver`` is
    blocking (the client runs on an event loop of its own in a worker thread, since
    local delivers synchronously)."""

    def __init__(self, cfg: Config, value: str, log: StatusLog) -> None:
        self.name, self.nexthop = split_transport(value, cfg[QUEUE_DIRECTORY])
        found = client_services(cfg, None).get(self.name)
        self.client: SmtpTransport | None = None
        if found is not None:
            command, tcfg = found
            settings = SmtpSettings.from_config(tcfg, lmtp=command == "lmtp")
            # one event loop per delivery: no connection outlives it
            settings = dataclasses.replace(settings, cache_on_demand=False)
            self.client = SmtpTransport(settings, log, Resolver())

    def deliver(self, queue_id: str, path: str, sender: str, arrival: float,
                rcpt: RcptRequest, attrs: dict[str, str]) -> DeliveryStatus:
        """The status of ``rcpt``'s delivery through the transport (logged by it);
        ``rcpt.index``: its place in the queue file (for its DSN fields)."""
        if self.client is None:
            return status.deferred(
                "4.3.0", f"mail transport unavailable: no {self.name} delivery agent")
        if not self.nexthop:
            return status.deferred("4.3.5", f"mailbox_transport {self.name}: no next hop")
        request = DeliveryRequest(queue_id, path, sender, arrival,
                                  (rcpt,), self.nexthop, attrs)
        client = self.client
        box: list[DeliveryStatus | BaseException] = []

        def run() -> None:
            try:
                [result] = asyncio.run(client.deliver(request))
                box.append(result.status)
            except BaseException as exc:
                box.append(exc)

        worker = threading.Thread(target=run, name="mailbox_transport")
        worker.start()
        worker.join()
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
