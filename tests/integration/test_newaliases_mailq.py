"""newaliases and mailq, sendmail's two administration modes, against a running postier.

newaliases (sendmail -bi) builds the ``alias_database`` tables that local(8) and smtpd's
``local_recipient_maps`` read; a table rebuilt while the mail system runs is used
without a reload, as Postfix's daemons reopen a changed .db file. mailq (sendmail -bp)
prints exactly what ``postqueue -p`` prints, also when called through a link named
``mailq`` with the configuration chosen by ``MAIL_CONFIG`` or ``-C``.
"""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postier.tables.compiled import RECHECK_SECONDS

from .conftest import ROOT, Instance, ensure_user, postier
from .test_queue_tools import gated_instance, send, tool

pytestmark = pytest.mark.integration

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
queue_run_delay = 1s
"""


def linked(workdir: Path, name: str) -> Path:
    """A link named ``name`` to this environment's ``postier`` console script."""
    script = Path(sys.executable).parent / "postier"
    if not script.exists():
        pytest.skip(f"no postier console script beside {sys.executable}")
    link = workdir / "bin" / name
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(script)
    return link


def run(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60,
                          env={**environ, **(env or {})}, check=False)


def rcpt(inst: Instance, address: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as client:
        client.ehlo("milou.example.net")
        client.mail("tournesol@example.net")
        return client.rcpt(address)


def send_to(inst: Instance, address: str, subject: str) -> None:
    msg = f"From: <tournesol@example.net>\nSubject: {subject}\n\n{subject}\n"
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as client:
        client.ehlo("milou.example.net")
        assert client.sendmail("tournesol@example.net", [address], msg) == {}


@pytest.mark.skipif(not ROOT, reason="local delivers as another user")
def test_newaliases_builds_the_table_local_reads_and_a_new_alias_needs_no_reload(
    make_instance, workdir: Path
) -> None:
    ensure_user("tintin")
    aliases = workdir / "aliases"
    aliases.write_text("haddock: tintin\n")
    inst: Instance = make_instance(
        MAIN_CF, f"alias_maps = hash:{aliases}\nalias_database = hash:{aliases}\n")
    built = postier("-c", str(inst.config_dir), "newaliases", check=False)
    assert (built.returncode, built.stdout, built.stderr) == (0, "", "")
    assert (workdir / "aliases.pdb").exists()
    started = inst.start()
    assert started.returncode == 0, (started.stderr, inst.log())

    send_to(inst, "haddock@example.com", "first alias")
    inst.wait_log("to=<tintin@example.com>, orig_to=<haddock@example.com>")
    assert "status=sent (delivered to mailbox)" in inst.wait_log("status=sent")
    assert "first alias" in inst.mailbox("tintin").read_text()

    # not an alias yet: local_recipient_maps (passwd + alias_maps) refuses it
    code, _ = rcpt(inst, "dupont@example.com")
    assert code == 550
    aliases.write_text(aliases.read_text() + "dupont: tintin\n")
    rebuilt = run(linked(workdir, "newaliases"), env={"MAIL_CONFIG": str(inst.config_dir)})
    assert (rebuilt.returncode, rebuilt.stderr) == (0, "")

    # no reload: smtpd and local reopen the rebuilt table (tables.compiled checks its
    # file at most every RECHECK_SECONDS, as Postfix's daemons notice a changed .db)
    deadline = time.monotonic() + 3 * RECHECK_SECONDS + 5
    while (answer := rcpt(inst, "dupont@example.com"))[0] != 250:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    send_to(inst, "dupont@example.com", "second alias")
    inst.wait_log("to=<tintin@example.com>, orig_to=<dupont@example.com>")
    inst.wait_log("status=sent (delivered to mailbox)", count=2)
    assert "second alias" in inst.mailbox("tintin").read_text()
    assert "reload" not in inst.log()


def test_mailq_is_postqueue_p_empty_deferred_and_down(
    make_instance, tutorial_main_cf: str, workdir: Path
) -> None:
    inst, _gate = gated_instance(make_instance, tutorial_main_cf, workdir)
    mailq = linked(workdir, "mailq")
    config = str(inst.config_dir)

    empty = tool(inst, "postqueue", "-p")
    assert empty.stdout == "Mail queue is empty\n"
    for listing in (tool(inst, "mailq"), run(mailq, "-C", config),
                    run(mailq, env={"MAIL_CONFIG": config})):
        assert (listing.returncode, listing.stdout, listing.stderr) == (0, empty.stdout, "")

    send(inst, "deferred one")
    inst.wait_log("status=deferred")
    deferred = tool(inst, "postqueue", "-p")
    assert re.fullmatch(r"-- \d+ Kbytes in 1 Request\.", deferred.stdout.splitlines()[-1])
    for listing in (tool(inst, "mailq"), run(mailq, "-C", f"{config}/main.cf"),
                    run(mailq, env={"MAIL_CONFIG": config})):
        assert (listing.returncode, listing.stdout, listing.stderr) == (0, deferred.stdout, "")

    # mail system down: the same listing after postqueue's warning, still status 0
    stopped = inst.stop()
    assert stopped.returncode == 0, stopped.stderr
    down_p = tool(inst, "postqueue", "-p")
    down_q = run(mailq, env={"MAIL_CONFIG": config})
    assert down_q.returncode == 0
    assert down_q.stdout == down_p.stdout == deferred.stdout
    # sendmail -bp runs postqueue: Postfix 3.7's mailq warns under postqueue's name
    assert down_q.stderr == down_p.stderr == (
        "postqueue: warning: Mail system is down -- accessing queue directly\n")
