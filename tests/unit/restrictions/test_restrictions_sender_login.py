"""reject_*sender_login_mismatch with smtpd_sender_login_maps (Postfix's smtpd_check rules)."""

from __future__ import annotations

import pytest
from restrictions_helpers import World

from postier.restrictions import evaluate as rs

MAPS = {"alice@example.com": ("alice", "Boss"), "shared@example.com": ("bob",)}
NOT_OWNED = "553 5.7.1 <{s}>: Sender address rejected: not owned by user {u}"
NOT_LOGGED_IN = "553 5.7.1 <{s}>: Sender address rejected: not logged in"


def verdict(restriction: str, sender: str, login: str | None,
            maps: dict[str, tuple[str, ...]] | None = MAPS) -> str:
    state = rs.SmtpdState(client_address="203.0.113.5", sender=sender, sasl_username=login,
                          recipient="x@example.com", stage=rs.Stage.SENDER)
    d = rs.evaluate([restriction], state, World(sender_login_maps=maps), rs.RejectCodes(),
                    stage=rs.Stage.SENDER)
    return "OK" if d.accepted else str(d.reply)


@pytest.mark.parametrize(("restriction", "sender", "login", "expected"), [
    # owned senders: the owner (any case) passes, another login does not
    ("reject_sender_login_mismatch", "alice@example.com", "alice", "OK"),
    ("reject_sender_login_mismatch", "alice@example.com", "boss", "OK"),
    ("reject_sender_login_mismatch", "alice@example.com", "bob", NOT_OWNED),
    ("reject_sender_login_mismatch", "alice@example.com", None, NOT_LOGGED_IN),
    # a sender in no map: refused to a login, unless "known" only
    ("reject_sender_login_mismatch", "other@example.com", "alice", NOT_OWNED),
    ("reject_known_sender_login_mismatch", "other@example.com", "alice", "OK"),
    ("reject_known_sender_login_mismatch", "alice@example.com", "bob", NOT_OWNED),
    ("reject_known_sender_login_mismatch", "alice@example.com", None, NOT_LOGGED_IN),
    ("reject_sender_login_mismatch", "other@example.com", None, "OK"),
    # the authenticated/unauthenticated halves alone
    ("reject_authenticated_sender_login_mismatch", "alice@example.com", None, "OK"),
    ("reject_authenticated_sender_login_mismatch", "shared@example.com", "alice", NOT_OWNED),
    ("reject_unauthenticated_sender_login_mismatch", "alice@example.com", "bob", "OK"),
    ("reject_unauthenticated_sender_login_mismatch", "alice@example.com", None, NOT_LOGGED_IN),
    # the null sender is never checked
    ("reject_sender_login_mismatch", "", "bob", "OK"),
])
def test_sender_login_mismatch(restriction: str, sender: str, login: str | None,
                               expected: str) -> None:
    assert verdict(restriction, sender, login) == expected.format(s=sender, u=login)


def test_without_maps_nothing_is_refused() -> None:
    for row in ("reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch",
                "reject_unauthenticated_sender_login_mismatch"):
        assert verdict(row, "alice@example.com", "bob", maps=None) == "OK"
        assert verdict(row, "alice@example.com", None, maps=None) == "OK"
