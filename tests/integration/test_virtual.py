"""virtual_alias_maps, virtual_alias_domains and the canonical maps against a running
postier, with the expected values of Postfix 3.7.11 run side by side.

The virtual alias domain ``virt.example`` is declared Postfix's way: a key of the
``hash:`` table (``virtual_alias_domains = $virtual_alias_maps``, the default). Remote
addresses go by ``transport_maps`` to a ``peers.ScriptedSmtp`` on 127.11.7.x.
"""

from __future__ import annotations

import email
import re
import smtplib
import time
from email import policy as email_policy
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, free_port, postier
from .peers import ScriptedSmtp
from .test_relay import MAIN_CF, QID, queue_empty

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="postier starts as root")]

SINK = "127.11.7.3"
UNKNOWN = ("5.1.1 <nobody@virt.example>: Recipient address rejected: "
           "User unknown in virtual alias table")


def postmap(source: Path) -> None:
    built = postier("postmap", f"hash:{source}", check=False)
    assert built.returncode == 0, built.stderr


def start(make_instance, workdir: Path, sink_port: int, extra: str = "") -> Instance:
    ensure_user("tintin")
    ensure_user("haddock")
    virtual = workdir / "virtual"
    virtual.write_text(
        "virt.example          virtual alias domain\n"
        "tintin@virt.example   tintin\n"
        "both@virt.example     tintin, haddock\n"
        "remote@virt.example   far@far.test\n"
        "loop1@virt.example    loop2@virt.example\n"
        "loop2@virt.example    loop1@virt.example\n"
        "self@virt.example     self@virt.example, haddock\n"
        "catch.example         virtual alias domain\n"
        "@catch.example        haddock\n")
    postmap(virtual)
    regexp = workdir / "virtual.re"
    regexp.write_text("/^re-(.*)@virt\\.example$/   $1@example.com\n")
    scanon = workdir / "sender_canonical"
    scanon.write_text("tintin@example.com   tintin.reporter@example.com\n")
    postmap(scanon)
    rcanon = workdir / "recipient_canonical"
    rcanon.write_text("dave@far.test   dave.jones@far.test\n")
    postmap(rcanon)
    inst: Instance = make_instance(
        MAIN_CF,
        f"virtual_alias_maps = hash:{virtual}, regexp:{regexp}\n"
        "virtual_alias_recursion_limit = 5\n"
        f"sender_canonical_maps = hash:{scanon}\n"
        f"recipient_canonical_maps = hash:{rcanon}\n"
        f"transport_maps = inline:{{ far.test=smtp:[{SINK}]:{sink_port} }}\n" + extra)
    result = inst.start()
    assert result.returncode == 0, (result.stderr, inst.log())
    return inst


def status_lines(inst: Instance, qid: str, count: int, timeout: float = 30.0) -> list[str]:
    """The ``QID: to=<…>`` status lines, once ``count`` are logged."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [ln for ln in inst.log().splitlines() if f"{qid}: to=<" in ln]
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"{len(lines)} of {count} status lines:\n{inst.log()}")


def to_and_orig(lines: list[str]) -> list[tuple[str, str | None, str]]:
    out = []
    for line in lines:
        m = re.search(r"to=<([^>]*)>, (?:orig_to=<([^>]*)>, )?.*status=(\w+)", line)
        assert m, line
        out.append((m.group(1), m.group(2), m.group(3)))
    return sorted(out, key=lambda t: (t[0], t[1] or ""))


def test_virtual_alias_domain_with_hash_and_regexp_tables(make_instance, workdir) -> None:
    port = free_port()
    with ScriptedSmtp(SINK, port, name="far.test") as far:
        inst = start(make_instance, workdir, port)
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
            smtp.ehlo("client.example.net")
            assert smtp.mail("tintin@virt.example")[0] == 250
            code, text = smtp.rcpt("nobody@virt.example")
            assert (code, text.decode()) == (550, UNKNOWN)
            for rcpt in ("tintin@virt.example", "both@virt.example", "remote@virt.example",
                         "re-haddock@virt.example", "anyone@catch.example",
                         "self@virt.example"):
                code, text = smtp.rcpt(rcpt)
                assert code == 250, (rcpt, text)
            code, text = smtp.data(b"Subject: virtual\r\n\r\nhello\r\n")
            assert code == 250, text
        qid = re.search(rf"queued as ({QID})", text.decode()).group(1)  # type: ignore[union-attr]
        [tx] = far.wait(1)
        assert tx.recipients == ["far@far.test"]
        lines = status_lines(inst, qid, 8)
        assert to_and_orig(lines) == [
            ("far@far.test", "remote@virt.example", "sent"),
            ("haddock@example.com", "anyone@catch.example", "sent"),
            ("haddock@example.com", "both@virt.example", "sent"),
            ("haddock@example.com", "re-haddock@virt.example", "sent"),
            ("haddock@example.com", "self@virt.example", "sent"),
            # expanded into itself: kept, then bounced by error(8), as Postfix 3.7
            ("self@virt.example", None, "bounced"),
            ("tintin@example.com", "both@virt.example", "sent"),
            ("tintin@example.com", "tintin@virt.example", "sent"),
        ]
        [bounced] = [ln for ln in lines if ": to=<self@virt.example>" in ln]
        assert "relay=none" in bounced and "dsn=5.1.1" in bounced
        assert bounced.endswith("status=bounced (User unknown in virtual alias table)")
        # the notice to the sender goes through virtual_alias_maps too, as Postfix's
        m = re.search(rf"{qid}: sender non-delivery notification: ({QID})",
                      inst.wait_log("sender non-delivery notification"))
        assert m, inst.log()
        assert to_and_orig(status_lines(inst, m.group(1), 1)) == [
            ("tintin@example.com", "tintin@virt.example", "sent")]
        log = inst.log()
        assert ("reject: RCPT from localhost[127.0.0.1]: 550 " + UNKNOWN) in log
        assert "Subject: virtual" in (inst.mailbox("haddock")).read_text()
        queue_empty(inst)


def test_a_virtual_alias_loop_is_refused_for_now(make_instance, workdir) -> None:
    inst = start(make_instance, workdir, free_port())
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        assert smtp.mail("tintin@example.com")[0] == 250
        assert smtp.rcpt("loop1@virt.example")[0] == 250  # listed: accepted at RCPT
        code, text = smtp.data(b"Subject: loop\r\n\r\nhello\r\n")
        assert (code, text.decode()) == (451, "4.6.0 Alias expansion error")
        assert smtp.rset()[0] == 250  # the session goes on
    log = inst.wait_log("map nesting")
    assert re.search(rf"postfix/cleanup\[\d+\]: warning: {QID}: unreasonable "
                     r"virtual_alias_maps map nesting for loop1@virt\.example -- message "
                     r"not accepted, try again later", log), log
    assert not [p for p in (inst.queue_dir / "incoming").rglob("*") if p.is_file()]


def test_canonical_maps_rewrite_envelope_and_local_clients_headers(
        make_instance, workdir) -> None:
    port = free_port()
    headers = (b"From: Tintin <tintin@example.com>\r\nTo: dave@far.test\r\n"
               b"Subject: canonical\r\n\r\nhello\r\n")
    with ScriptedSmtp(SINK, port, name="far.test") as far:
        inst = start(make_instance, workdir, port)
        queued = []
        for source in ("127.0.0.1", "127.0.0.2"):  # an interface address, then not
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=30,
                              source_address=(source, 0)) as smtp:
                smtp.ehlo("client.example.net")
                assert smtp.mail("tintin@example.com")[0] == 250
                assert smtp.rcpt("dave@far.test")[0] == 250
                code, text = smtp.data(headers)
                assert code == 250, text
            queued.append(re.search(rf"queued as ({QID})", text.decode()).group(1))  # type: ignore[union-attr]
        local, remote = far.wait(2)
        for tx in (local, remote):
            assert tx.sender == "tintin.reporter@example.com"
            assert tx.recipients == ["dave.jones@far.test"]
        msg = email.message_from_bytes(local.data, policy=email_policy.default)
        assert msg["From"] == "Tintin <tintin.reporter@example.com>"
        assert msg["To"] == "dave.jones@far.test"
        # Postfix rewrites no header of a remote client (remote_header_rewrite_domain empty)
        msg = email.message_from_bytes(remote.data, policy=email_policy.default)
        assert msg["From"] == "Tintin <tintin@example.com>"
        assert msg["To"] == "dave@far.test"
        for qid in queued:
            assert to_and_orig(status_lines(inst, qid, 1)) == [
                ("dave.jones@far.test", "dave@far.test", "sent")]
            line = inst.wait_log(f"{qid}: from=<")
            assert f"{qid}: from=<tintin.reporter@example.com>" in line
        queue_empty(inst)


def test_postcat_shows_the_original_recipients_as_postfix(make_instance, workdir) -> None:
    """A held message (HOLD by smtpd_data_restrictions): postier postcat's envelope
    records, as Postfix 3.7's postcat -q shows them for the same input."""
    inst = start(make_instance, workdir, free_port(),
                 "smtpd_data_restrictions = check_client_access static:HOLD\n")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        assert smtp.mail("tintin@example.com")[0] == 250
        for rcpt in ("both@virt.example", "dave@far.test", "tintin"):
            assert smtp.rcpt(rcpt)[0] == 250
        code, text = smtp.data(b"Subject: held\r\n\r\nhello\r\n")
        assert code == 250, text
    qid = re.search(rf"queued as ({QID})", text.decode()).group(1)  # type: ignore[union-attr]
    shown = postier("-c", str(inst.config_dir), "postcat", "-q", qid, check=False)
    assert shown.returncode == 0, shown.stderr
    records = [ln for ln in shown.stdout.splitlines()
               if ln.startswith(("sender:", "original_recipient:", "recipient:",
                                 "named_attribute: dsn_orig_rcpt"))]
    assert records == [
        "sender: tintin.reporter@example.com",
        "named_attribute: dsn_orig_rcpt=rfc822;both@virt.example",
        "original_recipient: both@virt.example",
        "recipient: tintin@example.com",
        "named_attribute: dsn_orig_rcpt=rfc822;both@virt.example",
        "original_recipient: both@virt.example",
        "recipient: haddock@example.com",
        "named_attribute: dsn_orig_rcpt=rfc822;dave@far.test",
        "original_recipient: dave@far.test",
        "recipient: dave.jones@far.test",
        "original_recipient: tintin",
        "recipient: tintin@example.com",
    ]
