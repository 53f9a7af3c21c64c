"""What a DNS question about a domain answered, in the terms restrictions use (pure)."""

from __future__ import annotations

import enum


class DnsResult(enum.Enum):
    """``domain_dns``'s answer: an MX, A or AAAA record exists, none does, or no answer."""

    HAS_ADDRESS = "has_address"
    NOT_FOUND = "not_found"
    TEMP_FAIL = "temp_fail"
