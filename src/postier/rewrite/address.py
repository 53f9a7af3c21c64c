"""Envelope addresses: split into local part and domain, and the checks restrictions need.

Follows RFC 5321 section 4.1.2 (Mailbox, address literals) and Postfix's
valid_hostname() rules for HELO names (labels of letters, digits and hyphens, at most
63 characters each and 255 in all; an address literal ``[1.2.3.4]`` is valid).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


@dataclass(frozen=True)
class Address:
    localpart: str
    domain: str | None  # None for an address without "@"


def parse_address(address: str) -> Address:
    """``local@domain`` (the last unquoted "@" splits); source routes are already gone."""
    if address.startswith('"'):
        end = address.find('"@', 1)
        if end > 0:
            return Address(address[: end + 1], address[end + 2 :])
    local, sep, domain = address.rpartition("@")
    if not sep:
        return Address(address, None)
    return Address(local, domain)


def valid_address_literal(text: str) -> bool:
    inner = text[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        ipaddress.ip_address(inner)
    except ValueError:
        return False
    return True


def valid_hostname(name: str) -> bool:
    """Postfix's valid_hostname(), plus address literals as accepted in HELO."""
    if name.startswith("[") and name.endswith("]"):
        return valid_address_literal(name)
    name = name.rstrip(".") if name.endswith(".") and not name.endswith("..") else name
    if not name or len(name) > 255:
        return False
    labels = name.split(".")
    if not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return not all(label.isdigit() for label in labels)  # a bare number is no hostname


def is_fqdn(domain: str | None) -> bool:
    """A domain with at least one dot that is a valid hostname (or an address literal)."""
    if not domain:
        return False
    if domain.startswith("["):
        return valid_address_literal(domain)
    return "." in domain.strip(".") and valid_hostname(domain)
