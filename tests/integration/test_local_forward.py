"""local(8)'s alias and .forward targets end to end: remote addresses, files, :include:.

Each expected log text is Postfix 3.7's local(8): ``forwarded as QUEUEID``, ``delivered
to file: PATH``, ``delivered to command: CMD``, ``mail to file is restricted``. The
remote host is a ``peers.ScriptedSmtp`` on 127.1.170.1 (relayhost), this file's own.
"""

from __future__ import annotations

import os
import pwd
import re
import smtplib
import time
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, postier
from .peers import ScriptedSmtp

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="local delivers as other users")]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
queue_run_delay = 1s
relayhost = [127.1.170.1]:2525
"""

QID = r"[0-9A-F]{6,}"
SINK = "127.1.170.1"
ALICE = "tournesolfw"
BOB = "lampionfw"


def send(inst: Instance, sender: str, recipients: list[str]) -> str:
    msg = f"From: <{sender}>\nSubject: forward test\nMessage-Id: <fw@example.net>\n\nBonjour.\n"
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        smtp.sendmail(sender, recipients, msg)
    for _ in range(200):
        m = re.search(rf"({QID}): from=<{re.escape(sender)}>", inst.log())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError(inst.log())


def status_line(inst: Instance, queue_id: str, rcpt: str, status: str,
                timeout: float = 30.0) -> str:
    needle = f"{queue_id}: to=<{rcpt}>"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in inst.log().splitlines():
            if needle in line and f"status={status}" in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no status={status} line for {rcpt}:\n{inst.log()}")


def started(make_instance, workdir: Path, aliases: str, extra: str = "") -> Instance:
    alias_file = workdir / "aliases"
    alias_file.write_text(aliases)
    inst: Instance = make_instance(MAIN_CF, f"alias_maps = texthash:{alias_file}\n{extra}")
    result = inst.start()
    assert result.returncode == 0, (result.stderr, inst.log())
    return inst


def home_of(user: str) -> Path:
    pw = ensure_user(user)
    home = Path(pw.pw_dir)
    for name in os.listdir(home):
        if name.startswith(".forward") or name.startswith("fw-"):
            (home / name).unlink()
    return home


def write_as(user: str, path: Path, text: str, mode: int = 0o644) -> None:
    pw = pwd.getpwnam(user)
    path.write_text(text)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)


def test_alias_to_a_remote_address_is_resubmitted_with_the_sender_and_delivered_to(
        make_instance, workdir: Path) -> None:
    with ScriptedSmtp(SINK, 2525, name="sink.test") as sink:
        inst = started(make_instance, workdir, "root: admin@example.org\n")
        qid = send(inst, "haddock@example.net", ["root@example.com"])
        line = status_line(inst, qid, "root@example.com", "sent")
        m = re.search(rf"relay=local, .*dsn=2\.0\.0, status=sent \(forwarded as ({QID})\)$",
                      line)
        assert m, line
        new = m.group(1)
        assert new != qid
        [tx] = sink.wait(1)
        assert tx.sender == "haddock@example.net"
        assert tx.recipients == ["admin@example.org"]
        # cleanup's Received: line of the new message, then local's Delivered-To:
        assert re.match(rb"Received: by tintin\.example\.com \(Postfix\)\r\n\tid "
                        + new.encode() + rb"; [^\r]+\r\nDelivered-To: root@example\.com\r\n",
                        tx.data), tx.data[:300]
        assert b"Subject: forward test" in tx.data
        # the new message: its own from= line, the original recipient kept as orig_to
        assert f"{new}: from=<haddock@example.net>" in inst.log()
        out = status_line(inst, new, "admin@example.org", "sent")
        assert "orig_to=<root@example.com>" in out


def test_alias_to_a_file_appends_in_mbox_format(make_instance, workdir: Path) -> None:
    archive_dir = workdir / "archive"
    archive_dir.mkdir()
    os.chmod(archive_dir, 0o1777)
    archive = archive_dir / "mail-archive"
    inst = started(make_instance, workdir, f"log: {archive}\n")
    qid = send(inst, "haddock@example.net", ["log@example.com"])
    line = status_line(inst, qid, "log@example.com", "sent")
    assert line.endswith(f"dsn=2.0.0, status=sent (delivered to file: {archive})"), line
    data = archive.read_bytes()
    assert data.startswith(b"From haddock@example.net  ")
    assert b"\nReturn-Path: <haddock@example.net>\n" in data
    assert b"\nX-Original-To: log@example.com\nDelivered-To: log@example.com\n" in data
    assert archive.stat().st_mode & 0o777 == 0o600  # as Postfix 3.7 creates it
    assert data.endswith(b"Bonjour.\n\n")
    # the alias database is root's: the file is written with default_privs (nobody)
    assert archive.stat().st_uid == pwd.getpwnam("nobody").pw_uid


def forwarded_as(inst: Instance, qid: str, rcpt: str) -> str:
    """The new queue ID of ``rcpt``'s forwarded copy (Postfix 3.7's log line)."""
    line = status_line(inst, qid, rcpt, "sent (forwarded as")
    m = re.search(rf"to=<{re.escape(rcpt)}>, (?:orig_to=<[^>]*>, )?relay=local, .*dsn=2\.0\.0, "
                  rf"status=sent \(forwarded as ({QID})\)$", line)
    assert m, line
    return m.group(1)


def test_include_list_is_resubmitted_to_its_members(make_instance, workdir: Path) -> None:
    home_of(ALICE)  # no .forward left by another test
    home_of(BOB)
    members = workdir / "staff.list"
    members.write_text(f"# the staff\n{ALICE}\n{BOB}, {ALICE}\n")
    inst = started(make_instance, workdir, f"staff: :include:{members}\n")
    qid = send(inst, "haddock@example.net", ["staff@example.com"])
    # as Postfix's local(8): the addresses of a :include: file are forwarded, one new
    # message for all of them (a member listed twice is one recipient)
    new = forwarded_as(inst, qid, "staff@example.com")
    inst.wait_log(f"{new}: from=<haddock@example.net>, size=")
    assert re.search(rf"{new}: from=<haddock@example\.net>, size=\d+, nrcpt=2 ", inst.log())
    for user in (ALICE, BOB):
        line = status_line(inst, new, f"{user}@example.com", "sent")
        assert "orig_to=<staff@example.com>" in line
        assert "status=sent (delivered to mailbox)" in line
    box = inst.mailbox(ALICE).read_bytes()
    assert box.count(b"Subject: forward test") == 1
    assert b"\nDelivered-To: staff@example.com\n" in box  # the forwarded copy's header
    assert b"Subject: forward test" in inst.mailbox(BOB).read_bytes()


def test_dot_forward_to_another_user_and_to_a_command(make_instance, workdir: Path) -> None:
    home = home_of(ALICE)
    home_of(BOB)
    out = home / "fw-command-out"
    write_as(ALICE, home / ".forward", f"# mine\n{BOB}, \"|/bin/cat > {out}\"\n")
    inst = started(make_instance, workdir, "")
    qid = send(inst, "haddock@example.net", [f"{ALICE}@example.com"])
    cmd = status_line(inst, qid, f"{ALICE}@example.com", "sent (delivered to command")
    assert cmd.endswith(f"status=sent (delivered to command: /bin/cat > {out})"), cmd
    new = forwarded_as(inst, qid, f"{ALICE}@example.com")
    line = status_line(inst, new, f"{BOB}@example.com", "sent")
    assert f"orig_to=<{ALICE}@example.com>" in line
    assert "status=sent (delivered to mailbox)" in line
    assert b"Subject: forward test" in inst.mailbox(BOB).read_bytes()
    assert not inst.mailbox(ALICE).exists()  # the .forward replaces the mailbox
    # the command ran as the user, who owns what it wrote
    assert out.stat().st_uid == pwd.getpwnam(ALICE).pw_uid
    assert b"Subject: forward test" in out.read_bytes()


def test_allow_mail_to_files_alias_refuses_a_dot_forward_file(
        make_instance, workdir: Path) -> None:
    home = home_of(ALICE)
    write_as(ALICE, home / ".forward", f"{home}/fw-saved\n")
    inst = started(make_instance, workdir, "", "allow_mail_to_files = alias\n")
    qid = send(inst, "haddock@example.net", [f"{ALICE}@example.com"])
    line = status_line(inst, qid, f"{ALICE}@example.com", "bounced")
    assert line.endswith("dsn=5.7.1, status=bounced (mail to file is restricted)"), line
    assert not (home / "fw-saved").exists()


def test_dot_forward_loop_is_broken_by_delivered_to(make_instance, workdir: Path) -> None:
    a, b = home_of(ALICE), home_of(BOB)
    write_as(ALICE, a / ".forward", f"{BOB}\n")
    write_as(BOB, b / ".forward", f"{ALICE}\n")
    try:
        inst = started(make_instance, workdir, "")
        qid = send(inst, "haddock@example.net", [f"{ALICE}@example.com"])
        first = forwarded_as(inst, qid, f"{ALICE}@example.com")
        # as Postfix 3.7: BOB's .forward names ALICE, whom the copy was delivered to
        line = status_line(inst, first, f"{ALICE}@example.com", "bounced")
        assert re.search(rf"{first}: to=<{ALICE}@example\.com>, relay=local, .*"
                         rf"dsn=5\.4\.6, status=bounced \(mail forwarding loop for "
                         rf"{ALICE}@example\.com\)$", line), line
        inst.wait_log(f"{first}: removed")
        assert "(forwarded as" not in inst.log().split(f"{first}: to=")[1]
    finally:
        (a / ".forward").unlink()
        (b / ".forward").unlink()


def test_forwarded_copy_keeps_notify_orcpt_and_envid(make_instance, workdir: Path) -> None:
    with ScriptedSmtp(SINK, 2525, name="sink.test") as sink:
        sink.rcpt = lambda addr: "450 4.2.0 try later"  # the copy stays in the queue
        inst = started(make_instance, workdir, "root: admin@example.org\n")
        msg = "From: <haddock@example.net>\nSubject: dsn\n\nBonjour.\n"
        with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
            smtp.ehlo("client.example.net")
            smtp.sendmail("haddock@example.net", ["root@example.com"], msg,
                          mail_options=["ENVID=env42", "RET=HDRS"],
                          rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
        m = re.search(rf"({QID}): to=<root@example\.com>, .*forwarded as ({QID})\)",
                      inst.wait_log("(forwarded as "))
        assert m, inst.log()
        new = m.group(2)
        status_line(inst, new, "admin@example.org", "deferred")
        done = postier_tool(inst, "postcat", "-e", "-q", new)
        for record in ("named_attribute: dsn_ret=HDRS", "named_attribute: dsn_envid=env42",
                       # SUCCESS (2) | FAILURE (4), Postfix's bit mask
                       "named_attribute: notify_flags=6",
                       "named_attribute: dsn_orig_rcpt=rfc822;root@example.com",
                       "original_recipient: root@example.com", "recipient: admin@example.org"):
            assert f"\n{record}\n" in done, (record, done)


def postier_tool(inst: Instance, *args: str) -> str:
    done = postier("-c", str(inst.config_dir), *args, check=False)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout
