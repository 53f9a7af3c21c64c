"""mydestination and relay_domains with ``/file`` and ``type:table`` entries, against a
running postier: a hash table built by ``postier postmap`` relays its domains (and
their subdomains) and only those, a file's domains are delivered locally, a table that
fails answers 451 4.3.0 (never accept, never 5xx), a missing one refuses the start.

The relay host is a ``peers.ScriptedSmtp`` on 127.11.179.x, written ``[address]:port``
so that no DNS record is needed.
"""

from __future__ import annotations

import smtplib
import sqlite3
from pathlib import Path

import pytest

from .conftest import ROOT, postier
from .peers import ScriptedSmtp
from .test_relay import queue_empty, send, started, status_line

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="postier starts as root")]

OUTSIDE_ONLY = ("mynetworks = 10.9.9.0/24\n"  # 127.0.0.1 is an outside client
                "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n")


def test_relay_domains_hash_table_relays_listed_domains_only(make_instance,
                                                            workdir: Path) -> None:
    table = workdir / "relay_domains"
    table.write_text("# the domains we are a backup MX for\nRelayed.test  OK\n")
    postier("postmap", str(table))
    with ScriptedSmtp("127.11.179.2", 2526, name="relayed.test") as mx:
        inst = started(make_instance, f"relay_domains = hash:{table}\n"
                       "relayhost = [127.11.179.2]:2526\n" + OUTSIDE_ONLY)
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
            smtp.ehlo("client.example.net")
            assert smtp.mail("someone@example.net")[0] == 250
            assert smtp.rcpt("ann@relayed.test")[0] == 250
            assert smtp.rcpt("bob@sub.relayed.test")[0] == 250  # parent domain matches
            code, text = smtp.rcpt("x@elsewhere.test")
            assert (code, text.decode()) == (
                554, "5.7.1 <x@elsewhere.test>: Relay access denied")
            code, _ = smtp.data(b"Subject: t\r\n\r\nhello\r\n")
            assert code == 250
        [tx] = mx.wait(1)
        assert sorted(tx.recipients) == ["ann@relayed.test", "bob@sub.relayed.test"]
        queue_empty(inst)
    assert "Traceback" not in inst.log()


def test_mydestination_file_delivers_locally(make_instance, workdir: Path) -> None:
    domains = workdir / "local_domains"
    domains.write_text("# our other names\nother.example  Local-File.test\n")
    inst = started(make_instance, "mydestination = example.com, tintin.example.com, "
                                  f"localhost, {domains}\nmailbox_command =\n")
    qid = send(inst, "someone@example.net", ["tintin@local-file.test"])
    line = status_line(inst, qid, "tintin@local-file.test", "sent")
    assert "relay=local" in line and "delivered to mailbox" in line
    assert b"Subject: relay test" in inst.mailbox("tintin").read_bytes()
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        assert smtp.mail("someone@example.net")[0] == 250
        # local recipient checks apply: the domain is ours
        code, text = smtp.rcpt("nosuchuser@other.example")
        assert code == 550 and b"User unknown in local recipient table" in text


def test_a_failing_relay_domains_table_tempfails(make_instance, workdir: Path) -> None:
    db = workdir / "domains.sqlite"
    sqlite3.connect(db).close()  # an empty database: the query's table does not exist
    cf = workdir / "relay-sqlite.cf"
    cf.write_text(f"dbname = {db}\nquery = SELECT 'OK' FROM nosuchtable WHERE d = '%s'\n")
    inst = started(make_instance, f"relay_domains = sqlite:{cf}\n" + OUTSIDE_ONLY)
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        assert smtp.mail("someone@example.net")[0] == 250
        code, text = smtp.rcpt("x@elsewhere.test")
        assert (code, text.decode()) == (
            451, "4.3.0 <x@elsewhere.test>: Temporary lookup failure")
        assert smtp.rcpt("tintin@example.com")[0] == 250  # mydestination's names first
    log = inst.log()
    assert f"warning: relay_domains: sqlite:{cf}: table lookup problem" in log
    assert "Traceback" not in log


@pytest.mark.parametrize(("extra", "needle"), [
    ("mydestination = localhost, /nonexistent/local_domains\n",
     "parameter mydestination: /nonexistent/local_domains: No such file or directory"),
    ("fast_flush_domains =\nrelay_domains = hash:/nonexistent/relay_domains\n",
     "parameter relay_domains: hash:/nonexistent/relay_domains: open database "
     "/nonexistent/relay_domains.pdb"),
])
def test_a_missing_domain_list_file_or_table_refuses_start_and_check(
        make_instance, extra: str, needle: str) -> None:
    inst = make_instance("myhostname = tintin.example.com\n", extra)
    check = postier("-c", str(inst.config_dir), "check", check=False)
    assert check.returncode != 0 and needle in check.stderr + check.stdout
    assert "main.cf, line" in check.stderr + check.stdout and "Traceback" not in check.stderr
    begun = inst.start()
    assert begun.returncode != 0 and needle in begun.stderr + begun.stdout
    assert not inst.pids()
