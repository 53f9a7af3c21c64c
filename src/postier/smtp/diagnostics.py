"""The SMTP client's statuses: DSN codes and Postfix smtp(8)'s words for each outcome (pure).

Follows Postfix smtp(8) (its log texts: ``connect to H[A]:25: Connection refused``,
``conversation with H[A] timed out while sending MAIL FROM``, ``message size N exceeds
size limit M of server H[A]``, ``SMTPUTF8 is required, but was not offered by host
H[A]``, ``Domain D does not accept mail (nullMX)``), RFC 3463
(status codes: 4.4.1 no answer from host, 4.4.2 bad connection, 4.4.3 directory server
failure, 5.4.4 unable to route, 5.3.4 message too big, 5.6.7 SMTPUTF8 required, 5.1.10
null MX), RFC 6531 and RFC 7505.
The server's own replies are quoted by ``smtpproto.events``' ``diagnostic``.
"""

from __future__ import annotations

from postier.delivery import status
from postier.delivery.status import DeliveryStatus
from postier.smtpproto.events import PHASES, wire_text
from postier.smtpproto.replies import Reply

NO_RELAY = "none"


def reply_dsn(reply: Reply) -> str:
    """The reply's enhanced status code, else ``X.0.0`` from its class (as Postfix)."""
    if reply.enhanced:
        return reply.enhanced
    return f"{reply.code // 100}.0.0"


def from_reply(reply: Reply, text: str, relay: str) -> DeliveryStatus:
    """A recipient's status from a server reply: 2xx sent, 4xx deferred, 5xx bounced."""
    return DeliveryStatus(reply_dsn(reply), text, relay)


def sent(reply: Reply, relay: str) -> DeliveryStatus:
    """``status=sent (250 2.0.0 Ok: queued as X)``: the reply as the server wrote it."""
    return DeliveryStatus(reply_dsn(reply), wire_text(reply), relay)


def connect_failed(endpoint: str, reason: str) -> DeliveryStatus:
    """``connect to H[A]:25: Connection refused`` (4.4.1, nothing reached)."""
    return status.deferred("4.4.1", f"connect to {endpoint}: {reason}", NO_RELAY)


def timed_out(host: str, command: str, relay: str) -> DeliveryStatus:
    """``conversation with H[A] timed out while sending MAIL FROM`` (4.4.2)."""
    stage = PHASES.get(command, ("talking to the server", ""))[0]
    return status.deferred("4.4.2", f"conversation with {host} timed out while {stage}", relay)


def lost(text: str, relay: str) -> DeliveryStatus:
    """A connection lost, or a server that broke the protocol (4.4.2; ``text`` from
    ``RemoteError.diagnostic``)."""
    return status.deferred("4.4.2", text, relay)


def size_exceeded(size: int, limit: int, host: str, relay: str) -> DeliveryStatus:
    """The peer's SIZE is smaller than the message: bounced before MAIL (5.3.4)."""
    return status.bounced(
        "5.3.4", f"message size {size} exceeds size limit {limit} of server {host}", relay)


def smtputf8_required(host: str, relay: str) -> DeliveryStatus:
    """RFC 6531 3.2: the message needs SMTPUTF8 (it was received with it and an envelope
    address is UTF-8) and the server did not offer it: bounced before MAIL (5.6.7), as
    Postfix 3.7: ``SMTPUTF8 is required, but was not offered by host H[A]``."""
    return status.bounced(
        "5.6.7", f"SMTPUTF8 is required, but was not offered by host {host}", relay)


def null_mx(domain: str) -> DeliveryStatus:
    """RFC 7505: the domain publishes a null MX (5.1.10)."""
    return status.bounced("5.1.10", f"Domain {domain} does not accept mail (nullMX)", NO_RELAY)


def host_not_found(error: str, permanent: bool) -> DeliveryStatus:
    """``Host or domain name not found. Name service error …``: 5.4.4, or 4.4.3 when
    the name service failed temporarily."""
    text = f"Host or domain name not found. {error}"
    if permanent:
        return status.bounced("5.4.4", text, NO_RELAY)
    return status.deferred("4.4.3", text, NO_RELAY)


def bad_destination(text: str) -> DeliveryStatus:
    """A next hop that cannot be parsed (a configuration error): deferred (4.3.5)."""
    return status.deferred("4.3.5", f"bad next-hop destination: {text}", NO_RELAY)


def no_valid_recipients(host: str, relay: str) -> DeliveryStatus:
    """The server accepted DATA without any accepted recipient: nothing to send."""
    return status.deferred("4.5.0", f"host {host} accepted no recipients", relay)
