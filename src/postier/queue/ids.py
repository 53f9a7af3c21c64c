"""Queue IDs in Postfix's forms: short (hex) and long (enable_long_queue_ids).

Follows postconf(5) ``enable_long_queue_ids`` and cleanup(8). A short ID is the
microseconds of the queue file's creation time (five hex digits) followed by the file's
inode number in hex, upper case, e.g. ``22D2A8871``. Two files that exist at the same
time on one file system never share an inode, so the IDs of live messages are unique
across every process without any coordination (the caller renames the file to its ID
while it still holds the inode).

A long ID (``4dGFCm10qGzP0fh``) encodes the time in seconds (six digits) and the
microseconds (four digits) in base 52, then ``z``, then the inode number in base 51,
with an alphabet of digits and consonants (no vowels: no words by accident; ``z`` is
left out of the inode digits). Long IDs sort by time and do not repeat when inode
numbers are reused later. ``usec_of`` gives back the microseconds of either form, which
``queue.dirs`` uses to hash queue directories evenly.
"""

from __future__ import annotations

import re

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"  # 52 characters
_INODE_ALPHABET = _ALPHABET[:-1]  # 51: no "z", the separator
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_SEC_DIGITS = 6
_USEC_DIGITS = 4

_SHORT = re.compile(r"[0-9A-F]{6,20}")
_LONG = re.compile(
    rf"[{_ALPHABET}]{{{_SEC_DIGITS + _USEC_DIGITS}}}z[{_INODE_ALPHABET}]{{1,20}}"
)


def new_queue_id(inode: int, now_us: int) -> str:
    """``now_us`` is the time in microseconds; only its sub-second part is used."""
    return f"{now_us % 1_000_000:05X}{inode:X}"


def _encode(value: int, alphabet: str, width: int) -> str:
    base = len(alphabet)
    out: list[str] = []
    while value or len(out) < width:
        value, digit = divmod(value, base)
        out.append(alphabet[digit])
    return "".join(reversed(out))


def new_long_queue_id(inode: int, now_us: int) -> str:
    """The long form of the ID; see the module docstring."""
    seconds, usec = divmod(now_us, 1_000_000)
    return (
        _encode(seconds % len(_ALPHABET) ** _SEC_DIGITS, _ALPHABET, _SEC_DIGITS)
        + _encode(usec, _ALPHABET, _USEC_DIGITS)
        + "z"
        + _encode(inode, _INODE_ALPHABET, 1)
    )


def is_long_queue_id(text: str) -> bool:
    return _LONG.fullmatch(text) is not None


def is_queue_id(text: str) -> bool:
    """True for a short or a long queue ID."""
    return _SHORT.fullmatch(text) is not None or _LONG.fullmatch(text) is not None


def usec_of(queue_id: str) -> int | None:
    """The microseconds encoded in a queue ID (either form); None if not an ID."""
    if _SHORT.fullmatch(queue_id):
        return int(queue_id[:5], 16)
    if _LONG.fullmatch(queue_id):
        value = 0
        for c in queue_id[_SEC_DIGITS:_SEC_DIGITS + _USEC_DIGITS]:
            value = value * len(_ALPHABET) + _VALUE[c]
        return value
    return None
