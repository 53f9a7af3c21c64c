"""Mail submitted with Postfix's own sendmail(1) and postdrop(1) reaches postier's queue.

An administrator who runs postier on a Debian queue keeps Postfix's /usr/sbin/sendmail
and postdrop (cron, mail(1), s-nail use them): postdrop writes the message to
``maildrop/`` and pokes ``public/pickup``. postier's pickup takes it from there
(master.cf's ``pickup unix n - y 60 1 pickup`` line starts it). The files are made by
the real programs (``sendmail -C DIR``, DIR's main.cf naming the instance's queue).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Instance, ensure_user, postier

pytestmark = pytest.mark.integration

SENDMAIL = "/usr/sbin/sendmail"
POSTQUEUE = "/usr/sbin/postqueue"
MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       y       60      1       pickup
"""

if not (os.path.exists("/usr/sbin/postdrop") and os.path.exists(SENDMAIL)):
    pytest.skip("Postfix's sendmail and postdrop are needed", allow_module_level=True)


def postfix_config(inst: Instance) -> Path:
    """A Postfix configuration directory for sendmail -C: the instance's queue."""
    conf = inst.base / "postfix-etc"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(
        f"queue_directory = {inst.queue_dir}\ndata_directory = {inst.base}/postfix-data\n"
        "myhostname = tintin.example.com\nmydomain = example.com\n"
        "compatibility_level = 3.6\nmail_owner = postfix\nsetgid_group = postdrop\n")
    return conf


def sendmail(conf: Path, message: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SENDMAIL, "-C", str(conf), *args], input=message,
                          capture_output=True, text=True, timeout=30, check=False)


def make(make_instance, tutorial_main_cf: str) -> tuple[Instance, Path]:  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst: Instance = make_instance(tutorial_main_cf, "mailbox_command =")
    inst.write_master_cf(MASTER_CF.format(port=inst.port))
    return inst, postfix_config(inst)


def maildrop(inst: Instance) -> list[str]:
    return sorted(os.listdir(inst.queue_dir / "maildrop"))


def test_sendmail_t_through_postdrop_is_picked_up_and_delivered(
        make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    inst, conf = make(make_instance, tutorial_main_cf)
    started = inst.start()
    assert started.returncode == 0, started.stderr
    trigger = inst.queue_dir / "public" / "pickup"  # master.cf type unix: a socket
    deadline = time.monotonic() + 20
    while not trigger.is_socket() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trigger.is_socket()
    sent = sendmail(conf, "To: tintin@example.com\nSubject: through postdrop\n\nhello\n",
                    "-t", "-f", "tournesol@example.net")
    assert sent.returncode == 0, sent.stderr
    assert "public/pickup" not in sent.stderr  # postdrop found the socket and poked it
    log = inst.wait_log("status=sent", timeout=30)
    assert "/pickup[" in log and "uid=0 from=<tournesol@example.net>" in log
    mbox = inst.mailbox("tintin").read_text()
    assert "Received: by tintin.example.com (Postfix, from userid 0)\n\tid " in mbox
    assert "Subject: through postdrop" in mbox and "\nhello\n" in mbox
    assert "Message-Id: <" in mbox  # cleanup added the missing headers
    assert "\nFrom: root <tournesol@example.net>\n" in mbox  # root's full name: root
    assert maildrop(inst) == []
    # a bare login name as sender (no -f) and recipient is qualified with myorigin
    sent = sendmail(conf, "Subject: second\n\nagain\n", "tintin")
    assert sent.returncode == 0, sent.stderr
    log = inst.wait_log("status=sent", timeout=30, count=2)
    assert "to=<tintin@example.com>" in log and "from=<root@example.com>" in log
    assert maildrop(inst) == []


def test_maildrop_listed_deleted_and_picked_up_at_start(
        make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    inst, conf = make(make_instance, tutorial_main_cf)
    # the queue exists (as Postfix's would) but postier is stopped: the file stays
    started = inst.start()
    assert started.returncode == 0, started.stderr
    stopped = inst.stop()
    assert stopped.returncode == 0, stopped.stderr
    for subject in ("first", "second"):
        sent = sendmail(conf, f"Subject: {subject}\n\nbody\n", "-f", "tournesol@example.net",
                        "tintin@example.com")
        assert sent.returncode == 0, sent.stderr
    ids = maildrop(inst)
    assert len(ids) == 2
    ours = postier("-c", str(inst.config_dir), "postqueue", "-p")
    for qid in ids:
        assert f"\n{qid} " in ours.stdout
    # byte for byte what Postfix's own postqueue shows of the same maildrop
    theirs = subprocess.run([POSTQUEUE, "-c", str(conf), "-p"], capture_output=True,
                            text=True, timeout=30, check=False)
    listing = theirs.stdout.split("\n-- ")[0]
    assert listing and ours.stdout.startswith(listing), (ours.stdout, theirs.stdout)
    deleted = postier("-c", str(inst.config_dir), "postsuper", "-d", ids[0], "maildrop")
    assert deleted.stderr == f"postsuper: {ids[0]}: removed\npostsuper: Deleted: 1 message\n"
    assert maildrop(inst) == ids[1:]
    started = inst.start()
    assert started.returncode == 0, started.stderr
    inst.wait_log("status=sent", timeout=30)
    assert maildrop(inst) == []
    mbox = inst.mailbox("tintin").read_text()
    assert "Subject: second" in mbox and "Subject: first" not in mbox


def test_a_corrupt_maildrop_file_goes_to_corrupt(
        make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    inst, conf = make(make_instance, tutorial_main_cf)
    started = inst.start()
    assert started.returncode == 0, started.stderr
    bad = inst.queue_dir / "maildrop" / "ABCDE12345"
    bad.write_bytes(b"this is no postdrop file\n")
    bad.chmod(0o744)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as poke:
        poke.connect(str(inst.queue_dir / "public" / "pickup"))
        poke.sendall(b"W")
    inst.wait_log("maildrop/ABCDE12345: ", timeout=20)
    deadline = time.monotonic() + 10
    while not (inst.queue_dir / "corrupt" / "ABCDE12345").exists() \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (inst.queue_dir / "corrupt" / "ABCDE12345").read_bytes().startswith(b"this is")
    assert maildrop(inst) == []
    assert "warning: maildrop/ABCDE12345: " in inst.log()
    # mail that follows it still goes through
    sent = sendmail(conf, "Subject: after\n\nbody\n", "tintin@example.com")
    assert sent.returncode == 0, sent.stderr
    inst.wait_log("status=sent", timeout=30)
    assert "Subject: after" in inst.mailbox("tintin").read_text()


def test_an_older_master_cf_fifo_pickup_line_works_too(
        make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    """``pickup fifo n - n 60 1 pickup`` (Postfix 2's line): public/pickup is a FIFO,
    which postdrop writes its byte to."""
    inst, conf = make(make_instance, tutorial_main_cf)
    inst.write_master_cf(MASTER_CF.format(port=inst.port).replace("pickup    unix",
                                                                  "pickup    fifo"))
    started = inst.start()
    assert started.returncode == 0, started.stderr
    assert (inst.queue_dir / "public" / "pickup").is_fifo()
    sent = sendmail(conf, "Subject: by fifo\n\nbody\n", "tintin@example.com")
    assert sent.returncode == 0, sent.stderr
    assert "public/pickup" not in sent.stderr
    inst.wait_log("status=sent", timeout=30)
    assert "Subject: by fifo" in inst.mailbox("tintin").read_text()


def test_a_reload_restarts_pickup_with_the_new_configuration(
        make_instance, tutorial_main_cf: str) -> None:  # type: ignore[no-untyped-def]
    inst, conf = make(make_instance, tutorial_main_cf)
    started = inst.start()
    assert started.returncode == 0, started.stderr
    sent = sendmail(conf, "Subject: before\n\nbody\n", "-f", "haddock", "tintin@example.com")
    assert sent.returncode == 0, sent.stderr
    inst.wait_log("status=sent", timeout=30)
    assert "from=<haddock@example.com>" in inst.log()
    old = inst.pids("postier.pickup")
    assert len(old) == 1
    main_cf = inst.config_dir / "main.cf"
    main_cf.write_text(main_cf.read_text() + "myorigin = tintin.example.com\n")
    reloaded = postier("-c", str(inst.config_dir), "reload", check=False)
    assert reloaded.returncode == 0, reloaded.stderr
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = inst.pids("postier.pickup")
        if len(now) == 1 and now != old and (inst.queue_dir / "public" / "pickup").is_socket():
            break
        time.sleep(0.1)
    assert len(now) == 1 and now != old
    time.sleep(0.5)  # the new pickup listens once its ready byte is written
    sent = sendmail(conf, "Subject: after\n\nbody\n", "-f", "haddock", "tintin@example.com")
    assert sent.returncode == 0, sent.stderr
    log = inst.wait_log("status=sent", timeout=30, count=2)
    assert "from=<haddock@tintin.example.com>" in log
    assert maildrop(inst) == []
