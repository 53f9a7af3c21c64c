"""unix:passwd.byname with its short memory, and the local recipient check wired to it."""

from __future__ import annotations

import pwd

from postier.tables.aliases import AliasMaps
from postier.tables.passwd import PasswdTable, local_recipient_check


def test_answers_are_kept_for_a_while() -> None:
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name == "alice"

    table = PasswdTable(ttl=60.0, exists=exists)
    assert table("alice") and table("alice")
    assert table("nobody") is False and table("nobody") is False
    assert asked == ["alice", "nobody"]
    fresh = PasswdTable(ttl=0.0, exists=exists)
    fresh("alice")
    fresh("alice")
    assert asked[2:] == ["alice", "alice"]


def test_the_real_passwd_database() -> None:
    root = pwd.getpwuid(0).pw_name
    table = PasswdTable()
    assert table(root) is True
    assert table("no-such-user-postier-test") is False


def test_local_recipient_check_reads_aliases_then_passwd() -> None:
    root = pwd.getpwuid(0).pw_name
    check = local_recipient_check(AliasMaps.from_dicts([{"staff": [root]}]), "+")
    assert check(f"{root}+x@example.com") is True
    assert check("staff@example.com") is True
    assert check("no-such-user-postier-test@example.com") is False
    assert check.check_localpart("postmaster") is True
