"""access(5) actions as smtpd logs them (Decision.whatsup): smtpd_check's log_whatsup text,
``<subject>: Recipient address triggers HOLD action``, which pflogsumm groups by."""

from __future__ import annotations

from test_restrictions_golden import Script

from postier.restrictions import evaluate as rs

TABLE = "hash:/etc/postfix/access"


def decide(lists: dict[rs.Stage, str], table: dict[str, str], rcpt: str,
           sender: str = "x@example.org") -> rs.Decision:
    sc = Script()
    sc.lists.update(lists)
    sc.world.tables[TABLE] = table
    sc.state = rs.SmtpdState(client_address="203.0.113.5", sender=sender)
    return sc.decide(rcpt)


def test_recipient_actions_name_the_recipient_and_the_reply_class() -> None:
    table = {
        "held@example.com": "HOLD",
        "kept@example.com": "HOLD to be reviewed",
        "dropped@example.com": "DISCARD",
        "moved@example.com": "REDIRECT other@example.com",
        "copied@example.com": "BCC audit@example.com",
        "noted@example.com": "WARN looks odd",
        "tagged@example.com": "PREPEND X-Tag: yes",
    }
    lists = {rs.Stage.RECIPIENT: f"check_recipient_access {TABLE}"}
    want = {
        "held@example.com": [("HOLD", "<held@example.com>: Recipient address triggers "
                               "HOLD action")],
        "kept@example.com": [("HOLD", "<kept@example.com>: Recipient address to be "
                              "reviewed")],
        "dropped@example.com": [("DISCARD", "<dropped@example.com>: Recipient address "
                                 "triggers DISCARD action")],
        "moved@example.com": [("REDIRECT", "<moved@example.com>: Recipient address "
                               "triggers REDIRECT other@example.com")],
        "copied@example.com": [("BCC", "<copied@example.com>: Recipient address triggers "
                                "BCC audit@example.com")],
        "noted@example.com": [("WARN", "<noted@example.com>: Recipient address looks odd")],
        "tagged@example.com": [],  # PREPEND is done, not logged
    }
    for rcpt, lines in want.items():
        d = decide(lists, table, rcpt)
        assert d.whatsup == lines, rcpt
        assert [a for a, _ in d.notes] == [table[rcpt].split()[0]]  # the action is done


def test_sender_action_names_the_sender() -> None:
    d = decide({rs.Stage.SENDER: f"check_sender_access {TABLE}"},
               {"held.example.net": "HOLD"}, "alice@example.com", sender="x@held.example.net")
    assert d.whatsup == [("HOLD", "<x@held.example.net>: Sender address triggers HOLD action")]
    assert d.notes == [("HOLD", "")]
