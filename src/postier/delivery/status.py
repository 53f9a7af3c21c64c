"""The outcome of one delivery attempt: a DSN status code and a diagnostic (RFC 3463).

Every delivery agent returns one of these per recipient; the queue manager reads
only ``kind`` to decide whether to remove, defer or bounce the recipient.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.Enum):
    """What the queue manager does with a recipient after an attempt."""

    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"


@dataclass(frozen=True)
class DeliveryStatus:
    """``dsn`` is an RFC 3463 status such as ``2.0.0``; ``text`` is the diagnostic
    that Postfix puts in parentheses after ``status=...`` in its log.

    For delivery status notifications (RFC 3464, ``postier.bounce.dsn``): ``remote_mta``
    is the host name of a remote MTA that gave this status (``Remote-MTA: dns; NAME``),
    ``remote_reply`` the SMTP/LMTP reply it sent (``Diagnostic-Code: smtp; 550 5.1.1
    ...``), both ``""`` when the status is our own; ``action`` is the DSN action when it
    is not the one implied by ``kind`` (``"relayed"`` to a peer without DSN,
    ``"expanded"`` by an alias), ``""`` otherwise. ``final_recipient``: the address
    the mail finally went to when an alias expansion changed it (local(8): logged as
    ``to=<final>, orig_to=<recipient>``, reported as ``Final-Recipient``), ``""`` when it
    is the recipient itself.
    """

    dsn: str
    text: str
    relay: str = "local"
    remote_mta: str = ""
    remote_reply: str = ""
    action: str = ""
    final_recipient: str = ""

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


def format_delay(seconds: float) -> str:
    """A delay as Postfix logs it (format_tv with 2 significant digits, at most 2
    decimals, trailing zeros dropped): ``0``, ``0.04``, ``0.5``, ``1.2``, ``12``, ``123``."""
    seconds = max(0.0, seconds)
    whole = len(str(int(seconds))) if seconds >= 1 else 0
    decimals = max(0, 2 - whole)  # below 1 s: at most 2 decimals
    text = f"{seconds:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def status_log_line(
    queue_id: str, address: str, orig: str, arrival: float, st: DeliveryStatus, now: float,
    delays: tuple[float, float, float, float] | None = None,
) -> str:
    """Postfix's delivery status log line: ``QID: to=<…>, relay=…, delay=…, delays=a/b/c/d,
    dsn=…, status=…``. ``delays`` (seconds: before the queue manager, in it, connection
    setup, transmission) defaults to everything before the queue manager."""
    total = max(0.0, now - arrival)
    delay = format_delay(total)
    parts = delays if delays is not None else (total, 0.0, 0.0, 0.0)
    final = st.final_recipient or address
    original = orig or address
    orig_part = f", orig_to=<{original}>" if original != final else ""
    return (
        f"{queue_id}: to=<{final}>{orig_part}, relay={st.relay}, delay={delay}, "
        f"delays={'/'.join(format_delay(d) for d in parts)}, dsn={st.dsn}, "
        f"status={st.kind.value} ({st.text})"
    )


_DSN_RE = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def dsn_split(text: str, default_dsn: str) -> tuple[str, str]:
    """Split ``"5.1.1 no such user"`` into ``("5.1.1", "no such user")``, as dsn_split(3).

    Text without a leading RFC 3463 code gets ``default_dsn`` and stays whole. The
    class of the code is kept as written; callers that need one class force it.
    """
    m = _DSN_RE.match(text)
    if m is None:
        return default_dsn, text
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end():]
