"""What smtpd's access(5) actions do to a message in cleanup (pure: notes in, effects out).

Follows access(5) (``HOLD``, ``DISCARD``, ``REDIRECT``, ``BCC``, ``PREPEND``, ``FILTER``,
``WARN``, ``INFO``) and cleanup(8): HOLD puts the message in the hold queue, DISCARD
accepts it and delivers nothing, REDIRECT replaces every recipient (the last one wins),
BCC adds a recipient, PREPEND adds a header on top (before smtpd's Received:), FILTER
records ``transport:destination`` as the message's content filter (the last one wins).
WARN and INFO only log; smtpd logs them when they fire.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from postier.queue.file import Envelope, Recipient

#: The actions that change the message (the others only log).
MESSAGE_ACTIONS = frozenset({"HOLD", "DISCARD", "REDIRECT", "BCC", "PREPEND", "FILTER"})

#: The queue file attribute FILTER sets (Postfix's name).
CONTENT_FILTER_ATTR = "content_filter"


@dataclass
class AccessActions:
    """The effects collected over one transaction; each ``reason`` is the action's text."""

    hold: str | None = None
    discard: str | None = None
    redirect: str | None = None
    bcc: list[str] = field(default_factory=list)
    prepend: list[str] = field(default_factory=list)
    filter: str | None = None

    def add(self, action: str, text: str) -> None:
        """One (ACTION, text) note of a restriction decision; other actions are ignored."""
        match action:
            case "HOLD":
                self.hold = self.hold if self.hold is not None else text
            case "DISCARD":
                self.discard = self.discard if self.discard is not None else text
            case "REDIRECT" if text:
                self.redirect = text
            case "BCC" if text and text not in self.bcc:
                self.bcc.append(text)
            case "PREPEND" if text:
                self.prepend.append(text)
            case "FILTER" if text:
                self.filter = text

    def add_all(self, notes: Iterable[tuple[str, str]]) -> None:
        for action, text in notes:
            self.add(action, text)

    @property
    def any(self) -> bool:
        return bool(self.hold is not None or self.discard is not None or self.redirect
                    or self.bcc or self.prepend or self.filter)

    def header_lines(self) -> bytes:
        """The PREPEND headers, in the order they fired, LF-ended."""
        return b"".join(line.encode("utf-8", "surrogateescape") + b"\n"
                        for line in self.prepend)

    def envelope(self, envelope: Envelope) -> Envelope:
        """``envelope`` with REDIRECT, BCC and FILTER applied."""
        recipients = list(envelope.recipients)
        if self.redirect:
            recipients = [Recipient(self.redirect, self.redirect)]
        known = {r.address for r in recipients}
        recipients += [Recipient(addr, addr) for addr in self.bcc if addr not in known]
        attrs = dict(envelope.attrs)
        if self.filter:
            attrs[CONTENT_FILTER_ATTR] = self.filter
        return Envelope(envelope.sender, recipients, envelope.arrival, attrs)
