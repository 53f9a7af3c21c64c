"""Address extensions: a local part cut at its first ``recipient_delimiter`` (pure).

Follows Postfix local(8) "ADDRESS EXTENSION" and postconf(5) ``recipient_delimiter``
and ``owner_request_special``. Used by smtpd's local recipient check (``rewrite.resolve``)
and by local delivery (``$EXTENSION``, ``.forward+ext``).
"""

from __future__ import annotations

from typing import NamedTuple

from postier.config.params import DOUBLE_BOUNCE_SENDER, OWNER_REQUEST_SPECIAL

_NEVER_SPLIT = ("postmaster", "mailer-daemon")


class Split(NamedTuple):
    """A localpart cut at its first recipient delimiter."""

    base: str
    delimiter: str  # the delimiter character actually found, "" when not split
    extension: str | None


def find_extension(
    localpart: str,
    delimiters: str,
    *,
    owner_request_special: bool = OWNER_REQUEST_SPECIAL.default_value(),
    double_bounce_sender: str = DOUBLE_BOUNCE_SENDER.default_value(),
) -> Split:
    """Split ``localpart`` at the first character that is in ``delimiters``.

    ``delimiters`` is the recipient_delimiter value: a *set* of characters
    (Postfix 2.11+). Not split: an empty delimiter set; ``postmaster``,
    ``mailer-daemon`` and the double-bounce sender (any case); with
    owner_request_special and ``-`` in the set, ``owner-*`` and ``*-request``;
    a localpart without a delimiter; a localpart that starts with one (the base
    would be empty). ``user+`` splits into ``user`` and the empty extension.
    """
    unsplit = Split(localpart, "", None)
    if not delimiters:
        return unsplit
    lowered = localpart.lower()
    if lowered in (*_NEVER_SPLIT, double_bounce_sender.lower()):
        return unsplit
    if (
        owner_request_special
        and "-" in delimiters
        and (lowered.startswith("owner-") or (len(lowered) > 8 and lowered.endswith("-request")))
    ):
        return unsplit
    for index, char in enumerate(localpart):
        if char in delimiters:
            if index == 0:
                return unsplit
            return Split(localpart[:index], char, localpart[index + 1 :])
    return unsplit


def split_extension(localpart: str, delimiter: str) -> tuple[str, str | None]:
    """``("user", "ext")`` for ``"user+ext"``; see ``find_extension`` for the rules."""
    found = find_extension(localpart, delimiter)
    return found.base, found.extension
