"""Delivery of one message to an external file named in an alias, .forward or :include:.

Follows Postfix local(8) "EXTERNAL FILE DELIVERY": the message is appended in UNIX mbox
format (``From`` line, ``Return-Path:``, ``X-Original-To:``, ``Delivered-To:``, ``>From``
quoting, an empty line after), the file locked as mailboxes are
(``mailbox_delivery_lock``) except that the dotlock may fail, as Postfix's: a
``PATH.lock`` that cannot be created (a directory the user cannot write) is skipped and
the fcntl/flock locks alone guard the file; a lock held by another still defers.
The file is truncated back on failure, with the rights given by the
caller (the user, the :include: file's owner, the alias database's owner, or
``default_privs``), never root's. ``/dev/null`` takes the message and keeps nothing.
Outcomes: ``2.0.0 delivered to file: PATH``; failures as ``mbox.deliver_mbox``'s, their
text ``cannot append message to file PATH: …``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from postier.delivery.status import DeliveryStatus, sent
from postier.local import mbox

#: A file whose writes are discarded: nothing to lock, append or truncate.
DEV_NULL = "/dev/null"


def deliver_file(
    path: str,
    *,
    sender: str,
    recipient: str,
    orig_recipient: str,
    content: Iterable[bytes],
    arrival: float,
    size_limit: int,
    locks: Sequence[str],
    uid: int | None,
    gid: int | None,
    lock_attempts: int,
    lock_delay: float,
    stale_lock_time: float,
) -> DeliveryStatus:
    """Append the message to ``path`` (absolute) as ``uid``/``gid`` (``None``: this
    process's own rights); fsynced before it returns. ``size_limit`` in bytes (0: none)
    bounds the file; ``arrival`` (seconds since the epoch) stamps the From line."""
    if path == DEV_NULL:
        for _chunk in content:  # read it through, as a write to /dev/null would
            pass
        return sent(f"delivered to file: {path}")
    st = mbox.deliver_mbox(
        path, sender=sender, recipient=recipient, orig_recipient=orig_recipient,
        content=content, arrival=arrival, size_limit=size_limit, locks=locks,
        uid=uid, gid=gid, fsync=True, lock_attempts=lock_attempts, lock_delay=lock_delay,
        stale_lock_time=stale_lock_time, strict_ownership=False, privileged_ok=False,
        dotlock_may_fail=True)
    if st.dsn.startswith("2."):
        return sent(f"delivered to file: {path}")
    prefix = "cannot update mailbox "
    text = st.text
    if text.startswith(prefix):
        _, _, rest = text.partition(". ")
        text = f"cannot append message to file {path}: {rest}"
    return replace(st, text=text)
