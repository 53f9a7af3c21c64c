"""is_bare_postmaster: every spelling whose unquoted localpart is "postmaster" with no
domain, and nothing else (its quick refusal must not miss an escaped spelling)."""

from __future__ import annotations

import pytest

from postier.smtpd.policy import is_bare_postmaster


@pytest.mark.parametrize("address", [
    "postmaster", "<postmaster>", "PostMaster", '"postmaster"', '"post"master',
    '"post\\master"', "p\\ostmaster", '<"POST\\MASTER">',
])
def test_bare_postmaster_spellings(address: str) -> None:
    assert is_bare_postmaster(address)


@pytest.mark.parametrize("address", [
    "postmaster@example.com", '"postmaster"@example.com', "user@example.com", "post master",
    "postmaster+x", '"post\\\\master"', "", "postmasters",
])
def test_not_bare_postmaster(address: str) -> None:
    assert not is_bare_postmaster(address)
