"""Reading the queue for a listing: one summary per queued message, as showq(8) reports it.

Follows Postfix's showq(8) (what ``postqueue -p``, ``-j`` and ``mailq`` list): the
queues are read in the order maildrop, incoming, active, deferred, hold; a message's summary
holds its queue name and ID, arrival time, content size, sender (``<>`` shown as
``empty_address_recipient``, MAILER-DAEMON) and the recipients still to be delivered,
each with the reason of its last deferral. Postfix keeps those reasons in ``defer/``
logs; postier keeps them in the queue file's recipient records (``queue.file``:
``Recipient.status``/``reason``, ``QueueFile.record_status``). As in showq(8), the
recipients with a reason come first, then those without.

A ``maildrop`` entry is a file Postfix's postdrop(1) wrote and pickup has not taken
yet (``queue.postdrop``): as showq(8) lists it, its size is the file's size, its
sender and recipients are as the file gives them (not yet qualified), and a file still
being written (or unparsable) is not listed.

``summarize`` is pure; ``read_message`` and ``scan`` read files (read-only: the queue
manager may be working on them) and skip what vanished or cannot be parsed, since a
listing races with the mail system by nature.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postier.queue import dirs, postdrop
from postier.queue.file import CorruptQueueFile, Envelope, QueueFile
from postier.rewrite.address import quote_localpart

#: The queue of files postdrop(1) wrote, not yet taken by pickup.
MAILDROP = "maildrop"
#: The queues a listing shows, in showq(8)'s order.
SHOWQ_STATES = (MAILDROP, "incoming", "active", "deferred", "hold")
#: The queues holding postier queue files (``find``'s default).
QUEUE_STATES = ("incoming", "active", "deferred", "hold")

#: How showq(8) names the null sender (postconf(5) ``empty_address_recipient``' default).
MAILER_DAEMON = "MAILER-DAEMON"


@dataclass(frozen=True)
class ListedRecipient:
    """A recipient still to be delivered, and why its last attempt was deferred ("" if none)."""

    address: str
    delay_reason: str = ""


@dataclass(frozen=True)
class QueuedMessage:
    """One message as a listing shows it (the fields of ``postqueue -j``).

    ``arrival_time`` in whole seconds since the epoch; ``message_size`` in bytes (headers
    and body, line ends counted as CRLF: ``message_size``); addresses in external form.
    """

    queue_name: str
    queue_id: str
    arrival_time: int
    message_size: int
    sender: str
    recipients: tuple[ListedRecipient, ...]
    forced_expire: bool = False


def external(address: str) -> str:
    """An internal-form address as showq(8) prints it: the local part quoted when needed."""
    local, at, domain = address.rpartition("@")
    if not at:
        return quote_localpart(address) if address else address
    return f"{quote_localpart(local)}@{domain}" if local else address


def summarize(
    queue_name: str, queue_id: str, envelope: Envelope, message_size: int,
    *, empty_sender: str = MAILER_DAEMON,
) -> QueuedMessage:
    """The listing entry of one message (pure): pending recipients, reasons first."""
    pending = [r for r in envelope.recipients if not r.done]
    ordered = [r for r in pending if r.reason] + [r for r in pending if not r.reason]
    return QueuedMessage(
        queue_name=queue_name,
        queue_id=queue_id,
        arrival_time=int(envelope.arrival),
        message_size=message_size,
        sender=external(envelope.sender) if envelope.sender else empty_sender,
        recipients=tuple(ListedRecipient(external(r.address), r.reason) for r in ordered),
    )


def message_size(qf: QueueFile) -> int:
    """The message's size as Postfix counts it (its ``message_size`` record): every line
    with a CRLF ending, as on the wire (a last line without one gets it too). postier
    stores LF line ends, so this reads the content once (bytes)."""
    size = qf.content_size
    last = b"\n"
    for chunk in qf.iter_content():
        size += chunk.count(b"\n")
        last = chunk[-1:]
    return size if last == b"\n" else size + 2


def read_message(
    queue_name: str, path: str, *, empty_sender: str = MAILER_DAEMON,
) -> QueuedMessage | None:
    """The entry of the queue file at ``path``; None when it vanished or is unreadable.

    Raises ``PermissionError`` (the caller may not read the queue) and other ``OSError``.
    """
    if queue_name == MAILDROP:
        return read_maildrop(path, empty_sender=empty_sender)
    try:
        with QueueFile.open(path, readonly=True) as qf:
            return summarize(
                queue_name, qf.queue_id, qf.envelope, message_size(qf),
                empty_sender=empty_sender,
            )
    except (FileNotFoundError, CorruptQueueFile):
        return None


def read_maildrop(path: str, *, empty_sender: str = MAILER_DAEMON) -> QueuedMessage | None:
    """The entry of the postdrop file at ``path`` (queue name ``maildrop``); None when
    it vanished, is incomplete or cannot be parsed. Raises ``PermissionError`` and other
    ``OSError``."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            drop = postdrop.parse(f.read())
    except (FileNotFoundError, postdrop.CorruptDropFile):
        return None
    envelope = Envelope(drop.sender or "", drop.recipients, drop.arrival)
    return summarize(MAILDROP, os.path.basename(path), envelope, size,
                     empty_sender=empty_sender)


def scan(
    queue_dir: str, states: Iterable[str] = SHOWQ_STATES, *,
    empty_sender: str = MAILER_DAEMON,
) -> Iterator[QueuedMessage]:
    """Every readable message of ``states``, queue by queue, in directory order.

    Raises ``PermissionError`` when a queue directory or file cannot be read.
    """
    for state in states:
        for _queue_id, path in dirs.scan(queue_dir, state):
            message = read_message(state, path, empty_sender=empty_sender)
            if message is not None:
                yield message


def find(queue_dir: str, queue_id: str, states: Iterable[str] = QUEUE_STATES) -> (
        tuple[str, str] | None):
    """Where message ``queue_id`` is: (state, path) of the first of ``states`` holding it."""
    for state in states:
        path = dirs.path(queue_dir, state, queue_id)
        if os.path.isfile(path):
            return state, path
    return None
