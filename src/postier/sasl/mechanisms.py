"""SASL mechanisms and their security properties; which ones smtpd may offer (pure).

Follows Postfix's ``smtpd_sasl_security_options`` / ``smtpd_sasl_tls_security_options``
(postconf(5): noanonymous, noplaintext, nodictionary, noactive, mutual_auth,
forward_secrecy) and Dovecot's auth protocol ``MECH`` flags (anonymous, plaintext,
dictionary, active, forward-secrecy, mutual-auth, private).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Postfix security option -> the mechanism property it excludes (no... options) or
#: requires (the others).
_EXCLUDES = {
    "noanonymous": "anonymous",
    "noplaintext": "plaintext",
    "nodictionary": "dictionary",
    "noactive": "active",
}
_REQUIRES = {"mutual_auth": "mutual-auth", "forward_secrecy": "forward-secrecy"}
SECURITY_OPTIONS = frozenset(_EXCLUDES) | frozenset(_REQUIRES)

#: What Cyrus's own mechanisms are (for smtpd_sasl_type = cyrus).
KNOWN_FLAGS: dict[str, frozenset[str]] = {
    "PLAIN": frozenset({"plaintext"}),
    "LOGIN": frozenset({"plaintext"}),
    "ANONYMOUS": frozenset({"anonymous"}),
    "CRAM-MD5": frozenset({"dictionary"}),
    "DIGEST-MD5": frozenset({"dictionary", "mutual-auth"}),
}


@dataclass(frozen=True)
class Mechanism:
    """A mechanism name (upper case) and its properties (Dovecot's flag words)."""

    name: str
    flags: frozenset[str] = frozenset()

    @property
    def private(self) -> bool:
        """Dovecot's ``private``: usable but never advertised."""
        return "private" in self.flags


def parse_security_options(items: Iterable[str]) -> frozenset[str]:
    """The options of a ``smtpd_sasl_security_options`` list, lower case.

    Raises ValueError naming an unknown option (Postfix: ``unknown SASL security option``).
    """
    out = set()
    for item in items:
        word = item.strip().lower()
        if not word:
            continue
        if word not in SECURITY_OPTIONS:
            raise ValueError(f"unknown SASL security option: {item.strip()}")
        out.add(word)
    return frozenset(out)


def allowed(mechanism: Mechanism, options: frozenset[str]) -> bool:
    """May ``mechanism`` be used under ``options``?"""
    for option, flag in _EXCLUDES.items():
        if option in options and flag in mechanism.flags:
            return False
    return all(flag in mechanism.flags for option, flag in _REQUIRES.items() if option in options)


def offered(mechanisms: Sequence[Mechanism], options: frozenset[str]) -> list[str]:
    """The names to advertise in EHLO: allowed, not private, in the server's order."""
    return [m.name for m in mechanisms if not m.private and allowed(m, options)]


def usable(mechanisms: Sequence[Mechanism], options: frozenset[str], name: str) -> bool:
    """May the client use ``name`` (private mechanisms included)?"""
    return any(m.name == name.upper() and allowed(m, options) for m in mechanisms)
