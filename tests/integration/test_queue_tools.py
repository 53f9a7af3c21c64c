"""The queue tools against a running postier: postqueue, mailq, postsuper, postcat, flush.

Delivery is made to defer by a local problem that the test then removes: the tutorial's
main.cf with a ``mailbox_command`` that answers EX_TEMPFAIL until a gate file exists.
Retries are an hour away (``minimal_backoff_time``, ``queue_run_delay``), so only a
flush can deliver the mail before the test ends.
"""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from .conftest import Instance, ensure_user, postier

pytestmark = pytest.mark.integration

GATED_DELIVERY = """#!/bin/sh
if [ ! -e {gate} ]; then
    echo "mailbox not ready"
    exit 75
fi
cat >> {mailbox}
"""


def gated_instance(make_instance, tutorial_main_cf: str, workdir: Path) -> tuple[Instance, Path]:
    ensure_user("tintin")
    script = workdir / "deliver.sh"
    gate = workdir / "gate"
    inst_extra = (
        f"mailbox_command = {script}\n"
        "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nqueue_run_delay = 1h\n"
    )
    inst: Instance = make_instance(tutorial_main_cf, inst_extra)
    script.write_text(GATED_DELIVERY.format(gate=gate, mailbox=inst.mail_dir / "tintin.got"))
    script.chmod(0o755)
    started = inst.start()
    assert started.returncode == 0, started.stderr
    return inst, gate


def send(inst: Instance, subject: str) -> str:
    msg = EmailMessage()
    msg["From"] = "tournesol@example.net"
    msg["To"] = "tintin@example.com"
    msg["Subject"] = subject
    msg.set_content(f"body of {subject}\n")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as client:
        client.ehlo("milou.example.net")
        reply = client.send_message(msg)
        assert reply == {}
        code, text = client.noop()
        assert code == 250, text
    return subject


def queue_ids_by_subject(inst: Instance) -> dict[str, str]:
    """subject -> queue ID, from postqueue -j and postcat -h."""
    ids = {}
    for line in tool(inst, "postqueue", "-j").stdout.splitlines():
        qid = json.loads(line)["queue_id"]
        body = tool(inst, "postcat", "-h", "-q", qid).stdout
        subject = re.search(r"^Subject: (.*)$", body, re.M)
        assert subject is not None, body
        ids[subject.group(1)] = qid
    return ids


def tool(inst: Instance, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
    done = postier("-c", str(inst.config_dir), *args, check=False)
    assert done.returncode == status, (args, done.returncode, done.stdout, done.stderr)
    return done


def delivered(inst: Instance) -> str:
    path = inst.mail_dir / "tintin.got"
    return path.read_text() if path.exists() else ""


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_deferred_mail_listed_held_deleted_and_flushed(
    make_instance, tutorial_main_cf: str, workdir: Path
) -> None:
    inst, gate = gated_instance(make_instance, tutorial_main_cf, workdir)
    for subject in ("held one", "flushed one", "deleted one"):
        send(inst, subject)
    log = inst.wait_log("status=deferred", count=3)
    reasons = set(re.findall(r"status=deferred \((.*)\)$", log, re.M))
    assert len(reasons) == 1
    (reason,) = reasons
    assert "mailbox not ready" in reason
    ids = queue_ids_by_subject(inst)
    assert set(ids) == {"held one", "flushed one", "deleted one"}

    # postqueue -p: Postfix's layout, the reason right-aligned at column 76.
    listing = tool(inst, "postqueue", "-p")
    assert listing.stderr == ""  # running: no "mail system is down" warning
    lines = listing.stdout.splitlines()
    assert lines[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
    assert re.fullmatch(r"-- \d+ Kbytes in 3 Requests\.", lines[-1])
    for qid in ids.values():
        (head,) = [ln for ln in lines if ln.startswith(qid)]
        assert re.fullmatch(
            rf"{qid} +\d+ \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d  tournesol@example.net", head)
        at = lines.index(head)
        assert lines[at + 1] == f"{'':>{76 - len(reason)}}({reason})"
        assert lines[at + 2] == " " * 41 + "tintin@example.com"
    assert tool(inst, "mailq").stdout == listing.stdout

    # postqueue -j: the same messages, with their reason.
    for line in tool(inst, "postqueue", "-j").stdout.splitlines():
        entry = json.loads(line)
        assert entry["queue_name"] == "deferred"
        assert entry["sender"] == "tournesol@example.net"
        assert entry["recipients"] == [{"address": "tintin@example.com", "delay_reason": reason}]

    # postcat -q: envelope, header, body.
    cat = tool(inst, "postcat", "-q", ids["held one"]).stdout
    assert re.search(rf"^\*\*\* ENVELOPE RECORDS deferred/\w/{ids['held one']} \*\*\*$", cat,
                     re.M)
    assert "\nsender: tournesol@example.net\n" in cat
    assert "\nrecipient: tintin@example.com\n" in cat
    assert "\nSubject: held one\n" in cat and "\nbody of held one\n" in cat
    assert cat.endswith(f"*** MESSAGE FILE END deferred/{ids['held one'][0]}/"
                        f"{ids['held one']} ***\n")

    # postsuper -h: on hold, "!" in the listing.
    held = tool(inst, "postsuper", "-h", ids["held one"])
    assert held.stderr == (f"postsuper: {ids['held one']}: placed on hold\n"
                           "postsuper: Placed on hold: 1 message\n")
    assert f"\n{ids['held one']}! " in tool(inst, "postqueue", "-p").stdout
    # postsuper -d: gone for good.
    deleted = tool(inst, "postsuper", "-d", ids["deleted one"])
    assert deleted.stderr == (f"postsuper: {ids['deleted one']}: removed\n"
                              "postsuper: Deleted: 1 message\n")
    assert ids["deleted one"] not in tool(inst, "postqueue", "-p").stdout

    # The cause is gone; postqueue -f delivers what is deferred, not what is held.
    gate.touch()
    tool(inst, "postqueue", "-f")
    wait_for(lambda: "Subject: flushed one" in delivered(inst))
    inst.wait_log("status=sent", count=1)
    listing = tool(inst, "postqueue", "-p").stdout
    assert ids["flushed one"] not in listing
    assert f"{ids['held one']}!" in listing

    # postsuper -H, then postqueue -i: the held message is delivered too.
    released = tool(inst, "postsuper", "-H", ids["held one"])
    assert released.stderr == (f"postsuper: {ids['held one']}: released from hold\n"
                               "postsuper: Released from hold: 1 message\n")
    tool(inst, "postqueue", "-i", ids["held one"])
    wait_for(lambda: "Subject: held one" in delivered(inst))
    wait_for(lambda: tool(inst, "postqueue", "-p").stdout == "Mail queue is empty\n")
    mailbox = delivered(inst)
    assert mailbox.count("Subject: held one") == 1
    assert mailbox.count("Subject: flushed one") == 1
    assert "Subject: deleted one" not in mailbox


def test_requeue_while_running_and_the_tools_while_stopped(
    make_instance, tutorial_main_cf: str, workdir: Path
) -> None:
    inst, gate = gated_instance(make_instance, tutorial_main_cf, workdir)
    send(inst, "requeued one")
    inst.wait_log("status=deferred", count=1)
    # postsuper -r: back to incoming, and qmgr (told the ID) tries it again at once.
    requeued = tool(inst, "postsuper", "-r", "ALL")
    assert requeued.stderr == "postsuper: Requeued: 1 message\n"
    inst.wait_log("status=deferred", count=2)

    stopped = inst.stop()
    assert stopped.returncode == 0, stopped.stderr
    listing = tool(inst, "postqueue", "-p")
    assert listing.stderr == (
        "postqueue: warning: Mail system is down -- accessing queue directly\n")
    assert listing.stdout.endswith("in 1 Request.\n")
    assert "(temporary failure. Command output: mailbox not ready)" in listing.stdout
    flushed = tool(inst, "postqueue", "-f", status=69)
    assert flushed.stderr == "postqueue: fatal: Cannot flush mail queue - mail system is down\n"
    tool(inst, "flush", status=69)
    # postsuper works on a stopped system too.
    assert tool(inst, "postsuper", "-h", "ALL").stderr == "postsuper: Placed on hold: 1 message\n"
    assert tool(inst, "postsuper", "-d", "ALL").stderr == "postsuper: Deleted: 1 message\n"
    assert tool(inst, "postqueue", "-p").stdout == "Mail queue is empty\n"
    gate.touch()
    assert delivered(inst) == ""
