"""Queue IDs in Postfix's short form: upper-case hex, microseconds then inode number.

Postfix's cleanup(8) names a queue file after the microseconds of its creation time
(five hex digits) followed by the file's inode number in hex, e.g. ``22D2A8871``. Two
files that exist at the same time on one file system never share an inode, so the IDs
of live messages are unique across every process without any coordination.
"""

from __future__ import annotations

import re

_QUEUE_ID = re.compile(r"[0-9A-F]{6,20}")


def new_queue_id(inode: int, now_us: int) -> str:
    """``now_us`` is the time in microseconds; only its sub-second part is used."""
    return f"{now_us % 1_000_000:05X}{inode:X}"


def is_queue_id(text: str) -> bool:
    return _QUEUE_ID.fullmatch(text) is not None
