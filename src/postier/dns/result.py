"""What a DNS question answered, in the terms restrictions and the SMTP client use (pure).

``DnsResult`` is the restrictions' view (does a domain exist for mail?); ``Lookup``,
``MxAnswer`` and ``AddressAnswer`` are the SMTP client's (RFC 5321 section 5.1 MX
resolution, RFC 7505 null MX), each carrying Postfix's words for a failure
(``Name service error for name=X type=MX: Host not found, try again``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DnsResult(enum.Enum):
    """``domain_dns``'s answer: an MX, A or AAAA record exists, none does, or no answer."""

    HAS_ADDRESS = "has_address"
    NOT_FOUND = "not_found"
    TEMP_FAIL = "temp_fail"


class Lookup(enum.Enum):
    """How one DNS question ended."""

    FOUND = "found"
    NO_DATA = "no data"  # the name exists, without a record of that type (NoAnswer)
    NOT_FOUND = "not found"  # NXDOMAIN
    TEMP_FAIL = "temporary failure"  # timeout, SERVFAIL, no server


#: Postfix's dns_strerror() words for each failure.
_WORDS = {
    Lookup.NO_DATA: "Host found but no data record of requested type",
    Lookup.NOT_FOUND: "Host not found",
    Lookup.TEMP_FAIL: "Host not found, try again",
}


def name_service_error(name: str, rdtype: str, lookup: Lookup) -> str:
    """``Name service error for name=NAME type=TYPE: Host not found`` (Postfix's words)."""
    return f"Name service error for name={name} type={rdtype}: {_WORDS[lookup]}"


@dataclass(frozen=True)
class MxAnswer:
    """The MX records of a domain: ``records`` as (preference, host) when ``FOUND``.

    ``null`` is RFC 7505's null MX (one record, preference 0, host ``.``): the domain
    accepts no mail. ``error`` is Postfix's text for a lookup that did not find.
    """

    lookup: Lookup
    records: tuple[tuple[int, str], ...] = ()
    error: str = ""

    @property
    def null(self) -> bool:
        return self.lookup is Lookup.FOUND and any(host in ("", ".") for _, host in self.records)


@dataclass(frozen=True)
class AddressAnswer:
    """The addresses of a host name (A then AAAA, as the protocols allow), or why none."""

    lookup: Lookup
    addresses: tuple[str, ...] = ()
    error: str = ""
