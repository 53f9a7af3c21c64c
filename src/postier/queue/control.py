"""The queue manager's trigger channel: what a datagram to ``public/qmgr`` asks for.

Follows Postfix's qmgr(8) trigger requests (``D`` scan the deferred queue, ``A`` scan
it ignoring the files' time stamps) and postqueue(1)'s ``-f``, ``-i``, ``-s``, which
Postfix routes through flush(8) to the same requests.

One datagram to the unix datagram socket ``QUEUE_DIR/public/qmgr`` (bound by qmgr,
mode 0622) is one of:

* a queue ID (``queue.ids.is_queue_id``: six or more characters): new mail in
  ``incoming/``; smtpd (through cleanup) and ``postsuper -r`` send these;
* one or more request letters (at most five bytes, so never a queue ID):

  - ``D`` (``SCAN_DEFERRED``): scan ``deferred/`` now and take the messages that are
    due (mtime reached). ``postqueue -i ID`` and ``-s SITE`` first set the chosen
    files' mtime to now, then send it;
  - ``A`` (``SCAN_ALL``): take every message in ``deferred/`` now, whatever its next
    attempt time (``postqueue -f``, ``postier flush``).

Anything else is ignored (``parse`` returns None): the sender may be anyone who can
write to the socket, so a bad datagram is never an error. Lost datagrams are harmless:
qmgr scans ``incoming/`` every second and ``deferred/`` every ``queue_run_delay``.

``parse`` and ``encode`` are pure; ``send`` is the tools' one-line adapter.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass

from postier.queue import dirs
from postier.queue.ids import is_queue_id

#: A request is at most this long; a queue ID is longer (six characters at least).
MAX_REQUEST = 5


class Request(enum.Enum):
    """A request letter of the trigger protocol (Postfix's qmgr(8) letters)."""

    SCAN_DEFERRED = "D"
    SCAN_ALL = "A"


@dataclass(frozen=True)
class Trigger:
    """One datagram, understood: a new message's queue ID, or requests (never both)."""

    queue_id: str | None = None
    requests: frozenset[Request] = frozenset()


_LETTERS = {r.value: r for r in Request}


def parse(data: bytes) -> Trigger | None:
    """What ``data`` (one datagram) asks for; None when it is neither an ID nor requests."""
    text = data.decode("ascii", "replace").strip()
    if is_queue_id(text):
        return Trigger(queue_id=text)
    if 0 < len(text) <= MAX_REQUEST and all(c in _LETTERS for c in text):
        return Trigger(requests=frozenset(_LETTERS[c] for c in text))
    return None


def encode(*requests: Request) -> bytes:
    """The datagram carrying ``requests`` (at least one)."""
    if not requests:
        raise ValueError("no request")
    return "".join(sorted({r.value for r in requests})).encode("ascii")


class QmgrDown(Exception):
    """Nobody serves ``public/qmgr``: the mail system is down. ``str()`` is the reason."""


def send(queue_dir: str, data: bytes) -> None:
    """Send one datagram to qmgr; raises ``QmgrDown`` when no qmgr listens (no socket,
    or refused), ``OSError`` for anything else (e.g. permission denied)."""
    path = dirs.public_path(queue_dir, "qmgr")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(data, path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise QmgrDown(f"connect to public/qmgr: {exc.strerror}") from None
