"""The restriction engine against a running postier: DNS lists and server access tables
against the tests' own dnsmasq (conftest's RESTRICTION_RECORDS), a real policy server
speaking Postfix's policy delegation protocol (tests/integration/policy_server.py), and
restrictions postier does not build refusing the start with file, line, parameter, word."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, free_port, postier
from .test_restrictions import Client

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="starts postier as root")]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
mydestination = $myhostname, localhost, $mydomain
local_recipient_maps =
mynetworks = 127.0.0.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
"""
POLICY_SERVER = Path(__file__).with_name("policy_server.py")

MakeInstance = Callable[..., Instance]


def started(make_instance: MakeInstance, extra: str) -> Instance:
    inst = make_instance(MAIN_CF, extra)
    done = inst.start()
    assert done.returncode == 0, done.stderr + inst.log()
    return inst


def rcpt_reply(port: int, source: str, sender: str, rcpt: str = "postmaster@example.com"
               ) -> str:
    c = Client(port, source)
    try:
        assert c.cmd("EHLO milou.example.net").startswith("250")
        assert c.cmd(f"MAIL FROM:<{sender}>").startswith("250")
        return c.cmd(f"RCPT TO:<{rcpt}>")
    finally:
        c.close()


def test_dns_lists_and_mx_access_change_the_reply(make_instance: MakeInstance,
                                                  workdir: Path) -> None:
    mx_table = workdir / "mx_access"
    mx_table.write_text("mx.dark.test  REJECT dark MX host\n")
    inst = started(make_instance, (
        "smtpd_client_restrictions = reject_rbl_client bl.test=127.0.0.2\n"
        "smtpd_sender_restrictions = reject_rhsbl_sender rhs.test, "
        f"check_sender_mx_access texthash:{mx_table}\n"))
    # Listed, with the TXT record as the reason (default_rbl_reply).
    assert rcpt_reply(inst.port, "127.0.0.2", "a@example.net") == (
        "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using bl.test; "
        "listed by the tests")
    # Listed with 127.0.0.4, which the =127.0.0.2 filter does not match; not listed.
    assert rcpt_reply(inst.port, "127.0.0.3", "a@example.net").startswith("250")
    assert rcpt_reply(inst.port, "127.0.0.5", "a@example.net").startswith("250")
    assert rcpt_reply(inst.port, "127.0.0.5", "a@spammer.test") == (
        "554 5.7.1 Service unavailable; Sender address [spammer.test] blocked using rhs.test")
    assert rcpt_reply(inst.port, "127.0.0.5", "a@mxbad.test") == (
        "554 5.7.1 <a@mxbad.test>: Sender address rejected: dark MX host")
    # rbl_reply_maps replaces the template for one list.
    replies = workdir / "rbl_replies"
    replies.write_text("bl.test  $rbl_code go away, $rbl_what ($rbl_reason)\n")
    inst2 = started(make_instance, (
        "smtpd_client_restrictions = reject_rbl_client bl.test\n"
        f"rbl_reply_maps = texthash:{replies}\n"))
    assert rcpt_reply(inst2.port, "127.0.0.2", "a@example.net") == (
        "554 5.7.1 go away, 127.0.0.2 (listed by the tests)")


@pytest.fixture
def policy_server(workdir: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    log = workdir / "policy.log"
    proc = subprocess.Popen([sys.executable, str(POLICY_SERVER), str(port), str(log)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield port, log
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_policy_service_answers_and_its_timeout(make_instance: MakeInstance,
                                                policy_server: tuple[int, Path]) -> None:
    port, log = policy_server
    inst = started(make_instance, (
        f"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{port}\n"
        "smtpd_policy_service_timeout = 1s\n"
        "smtpd_policy_service_try_limit = 1\n"))
    out = "127.0.0.5"
    assert rcpt_reply(inst.port, out, "a@example.net", "dunno@example.com").startswith("250")
    assert rcpt_reply(inst.port, out, "a@example.net", "reject@example.com") == (
        "554 5.7.1 <reject@example.com>: Recipient address rejected: go away")
    assert rcpt_reply(inst.port, out, "a@example.net", "defer@example.com") == (
        "450 4.7.1 <defer@example.com>: Recipient address rejected: not now")
    # No answer within smtpd_policy_service_timeout: smtpd_policy_service_default_action.
    began = time.monotonic()
    assert rcpt_reply(inst.port, out, "a@example.net", "slow@example.com") == (
        "451 4.3.5 <slow@example.com>: Recipient address rejected: "
        "Server configuration problem")
    assert time.monotonic() - began < 10
    requests = [dict(field.split("=", 1) for field in line.split("\t"))
                for line in log.read_text().splitlines()]
    first = next(r for r in requests if r["recipient"] == "reject@example.com")
    assert first["request"] == "smtpd_access_policy"
    assert first["protocol_state"] == "RCPT" and first["protocol_name"] == "ESMTP"
    assert first["client_address"] == out and first["sender"] == "a@example.net"
    assert first["helo_name"] == "milou.example.net"
    assert first["server_port"] == str(inst.port)


def test_hold_action_puts_the_message_in_hold(make_instance: MakeInstance,
                                              policy_server: tuple[int, Path]) -> None:
    port, _ = policy_server
    inst = started(make_instance, (
        f"smtpd_recipient_restrictions = check_policy_service inet:127.0.0.1:{port}\n"))
    c = Client(inst.port, "127.0.0.5")
    try:
        assert c.cmd("EHLO milou.example.net").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.net>").startswith("250")
        assert c.cmd("RCPT TO:<hold@example.com>").startswith("250")
        assert c.cmd("DATA").startswith("354")
        reply = c.cmd("Subject: held\r\n\r\nbody\r\n.")
        assert reply.startswith("250 2.0.0 Ok: queued as ")
    finally:
        c.close()
    queue_id = reply.rsplit(" ", 1)[1]
    assert (inst.queue_dir / "hold" / queue_id).exists()
    inst.wait_log(f"{queue_id}: hold: RCPT from ")


@pytest.mark.parametrize(("param", "word", "why"), [
    ("smtpd_data_restrictions", "reject_unverified_sender", "address verification"),
    ("smtpd_end_of_data_restrictions", "reject_frobnicated_client", "unknown smtpd restriction"),
    ("smtpd_client_restrictions", "reject_unverified_recipient", "address verification"),
    ("smtpd_sender_restrictions", "reject_rbl_client", "needs a domain"),
])
def test_a_restriction_postier_does_not_build_refuses_the_start(
        make_instance: MakeInstance, param: str, word: str, why: str) -> None:
    inst = make_instance(MAIN_CF, f"{param} = permit_mynetworks, {word}\n")
    checked = postier("-c", str(inst.config_dir), "check", check=False)
    assert checked.returncode != 0
    text = checked.stdout + checked.stderr
    assert "main.cf" in text and param in text and word in text and why in text, text
    line = next(n for n, x in enumerate(
        (inst.config_dir / "main.cf").read_text().splitlines(), 1) if x.startswith(param))
    assert f"main.cf:{line}" in text or f"line {line}" in text, text
    assert "Traceback" not in text
    done = inst.start()
    assert done.returncode != 0 and word in done.stdout + done.stderr
