"""transport_maps, relay_recipient_maps and smtpd_sender_login_maps against a running postier.

The remote hosts are ``peers.ScriptedSmtp`` servers on 127.11.0.x; next hops are
written ``[address]:port`` so that no DNS record is needed.
"""

from __future__ import annotations

import smtplib

import pytest

from .conftest import ROOT
from .peers import ScriptedSmtp
from .test_relay import queue_empty, send, started, status_line

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="postier starts as root")]


def test_transport_maps_routes_by_address_domain_and_parent(make_instance, workdir) -> None:
    table = workdir / "transport"
    table.write_text(
        "vip@far.test       smtp:[127.11.0.2]:2526\n"
        "far.test           smtp:[127.11.0.3]:2526\n"
        ".sub.far.test      :[127.11.0.3]:2526\n"
        "gone.test          error:5.1.2 this domain is gone\n"
        "quiet.test         discard:\n")
    with ScriptedSmtp("127.11.0.2", 2526, name="vip.test") as vip, \
            ScriptedSmtp("127.11.0.3", 2526, name="far.test") as far:
        # smtpd_reject_unlisted_recipient = no: c@gone.test is accepted, then bounced by
        # error(8), as Postfix (with yes, smtpd refuses it at RCPT: test_error_transport)
        inst = started(make_instance, f"transport_maps = texthash:{table}\n"
                       "smtpd_reject_unlisted_recipient = no\n")
        qid = send(inst, "tintin@example.com",
                   ["vip@far.test", "ann@far.test", "bob@x.sub.far.test", "c@gone.test",
                    "d@quiet.test"])
        [tx] = vip.wait(1)
        assert tx.recipients == ["vip@far.test"]
        [tx] = far.wait(1)
        assert sorted(tx.recipients) == ["ann@far.test", "bob@x.sub.far.test"]
        line = status_line(inst, qid, "c@gone.test", "bounced")
        assert "dsn=5.1.2" in line and "(this domain is gone)" in line
        assert "relay=none" in status_line(inst, qid, "d@quiet.test", "sent")
        queue_empty(inst)


def test_relay_recipient_maps_rejects_unknown_recipients_of_relay_domains(
        make_instance, workdir) -> None:
    table = workdir / "relay_recipients"
    table.write_text("known@relayed.test x\n@open.test x\n")
    with ScriptedSmtp("127.11.0.4", 2526, name="relayed.test") as mx:
        inst = started(make_instance,
                       "relay_domains = relayed.test, open.test\n"
                       f"relay_recipient_maps = texthash:{table}\n"
                       "relayhost = [127.11.0.4]:2526\n"
                       "mynetworks = 10.9.9.0/24\n")
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
            smtp.ehlo("client.example.net")
            assert smtp.mail("someone@example.net")[0] == 250
            code, text = smtp.rcpt("stranger@relayed.test")
            assert (code, text.decode()) == (
                550, "5.1.1 <stranger@relayed.test>: Recipient address rejected: "
                     "User unknown in relay recipient table")
            assert smtp.rcpt("known@relayed.test")[0] == 250
            assert smtp.rcpt("anyone@open.test")[0] == 250
            code, text = smtp.rcpt("x@elsewhere.test")
            assert code == 454 and b"Relay access denied" in text  # defer_unauth_destination
            code, _ = smtp.data(b"Subject: t\r\n\r\nhello\r\n")
            assert code == 250
        [tx] = mx.wait(1)
        assert sorted(tx.recipients) == ["anyone@open.test", "known@relayed.test"]


def test_smtpd_sender_login_maps_with_reject_sender_login_mismatch(
        make_instance, workdir) -> None:
    logins = workdir / "sender_logins"
    logins.write_text("tintin@example.com tintin\n")
    inst = started(make_instance,
                   f"smtpd_sender_login_maps = texthash:{logins}\n"
                   "smtpd_sender_restrictions = reject_sender_login_mismatch\n")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        code, text = smtp.mail("tintin@example.com")
        # MAIL is accepted (smtpd_delay_reject): the verdict comes at RCPT.
        code, text = smtp.rcpt("tintin@example.com")
        assert (code, text.decode()) == (
            553, "5.7.1 <tintin@example.com>: Sender address rejected: not logged in")
        smtp.rset()
        smtp.mail("milou@example.com")
        assert smtp.rcpt("tintin@example.com")[0] == 250
    assert "smtpd_sender_login_maps" not in inst.log()  # no "not implemented" warning
