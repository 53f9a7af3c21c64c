"""local(8) side by side with Postfix 3.7.11: command environment, duplicate elimination
scope, and the alias/.forward inputs a fresh administrator tried.

Every expected value was read from Postfix 3.7.11 on this machine, fed the same input:
an alias command runs with umask 077, in the queue directory (command_execution_directory
empty), USER and LOGNAME the alias's name, no HOME nor SHELL; a file it creates is
``-rw-------``; one message to three recipients that all end at one user is three
copies, each with its own ``X-Original-To:`` (local_destination_recipient_limit = 1:
duplicates are eliminated within one recipient's expansion only).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import smtplib
import stat
import time
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user
from .test_sasl import PASSWORD, Dovecot

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="local delivers as other users")]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
myorigin = $mydomain
mydestination = example.com, tintin.example.com, localhost
mynetworks = 127.0.0.0/8
queue_run_delay = 1s
relayhost = [127.1.172.1]:2525
"""

QID = r"[0-9A-F]{6,}"
USER = "castafiorelp"
OTHER = "nestorlp"


def send(inst: Instance, recipients: list[str], sender: str = "haddock@example.net") -> str:
    msg = f"From: <{sender}>\nSubject: parity test\nMessage-Id: <lp@example.net>\n\nBonjour.\n"
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        smtp.sendmail(sender, recipients, msg)
    for _ in range(200):
        m = re.search(rf"({QID}): from=<{re.escape(sender)}>", inst.log())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError(inst.log())


def local_lines(inst: Instance, queue_id: str, count: int, timeout: float = 30.0) -> list[str]:
    """The ``count`` status lines local logged for ``queue_id`` (waits for them)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [line for line in inst.log().splitlines()
                 if f"{queue_id}: to=<" in line and "relay=local" in line]
        if len(lines) >= count:
            time.sleep(0.3)  # none more
            return [line for line in inst.log().splitlines()
                    if f"{queue_id}: to=<" in line and "relay=local" in line]
        time.sleep(0.05)
    raise AssertionError(f"{len(lines)} local lines for {queue_id}, not {count}:\n{inst.log()}")


def started(make_instance, workdir: Path, aliases: str, extra: str = "") -> Instance:
    alias_file = workdir / "aliases"
    alias_file.write_text(aliases)
    inst: Instance = make_instance(MAIN_CF, f"alias_maps = texthash:{alias_file}\n{extra}")
    result = inst.start()
    assert result.returncode == 0, (result.stderr, inst.log())
    return inst


def fresh_home(user: str) -> Path:
    home = Path(ensure_user(user).pw_dir)
    for name in os.listdir(home):
        if name.startswith(".forward"):
            (home / name).unlink()
    return home


def outdir(workdir: Path) -> Path:
    out = workdir / "out"
    out.mkdir()
    os.chmod(out, 0o1777)
    return out


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, _, v in pairs}


PROBE = "env > {out}; echo umask=$(umask) >> {out}; echo cwd=$(pwd) >> {out}; touch {made}"


def test_alias_command_environment_umask_and_directory(make_instance, workdir: Path) -> None:
    out = outdir(workdir)
    probe = PROBE.format(out=out / "env", made=out / "made")
    inst = started(make_instance, workdir, f'envcmd: "|{probe}"\n')
    qid = send(inst, ["envcmd@example.com"])
    [line] = local_lines(inst, qid, 1)
    assert "status=sent (delivered to command: " in line, line
    env = read_env(out / "env")
    assert env["umask"] == "0077"
    assert env["cwd"] == str(inst.queue_dir)  # command_execution_directory is empty
    assert "HOME" not in env and "SHELL" not in env
    assert env["USER"] == env["LOGNAME"] == "envcmd"
    made = (out / "made").stat()
    assert stat.S_IMODE(made.st_mode) == 0o600
    assert made.st_uid == pwd.getpwnam("nobody").pw_uid  # default_privs


def test_dot_forward_command_takes_the_user_environment(make_instance, workdir: Path) -> None:
    out = outdir(workdir)
    home = fresh_home(USER)
    pw = pwd.getpwnam(USER)
    forward = home / ".forward"
    forward.write_text('"|' + PROBE.format(out=out / "env", made=out / "made") + '"\n')
    os.chown(forward, pw.pw_uid, pw.pw_gid)
    inst = started(make_instance, workdir, "")
    qid = send(inst, [f"{USER}@example.com"])
    local_lines(inst, qid, 1)
    env = read_env(out / "env")
    assert env["umask"] == "0077"
    assert env["cwd"] == str(inst.queue_dir)
    assert env["HOME"] == str(home)
    assert env["USER"] == env["LOGNAME"] == USER
    made = (out / "made").stat()
    assert stat.S_IMODE(made.st_mode) == 0o600
    assert made.st_uid == pw.pw_uid


def test_command_execution_directory_is_entered(make_instance, workdir: Path) -> None:
    out = outdir(workdir)
    probe = PROBE.format(out=out / "env", made=out / "made")
    inst = started(make_instance, workdir, f'envcmd: "|{probe}"\n',
                   f"command_execution_directory = {out}\n")
    qid = send(inst, ["envcmd@example.com"])
    local_lines(inst, qid, 1)
    assert read_env(out / "env")["cwd"] == str(out)


def test_one_copy_per_original_recipient(make_instance, workdir: Path) -> None:
    fresh_home(USER)
    virtual = workdir / "virtual"
    virtual.write_text(f"info@virt.test {USER}\nsales@virt.test {USER}\n")
    inst = started(make_instance, workdir, f"team: {USER}, root\ntwice: {USER}, {USER}\n",
                   f"virtual_alias_domains = virt.test\nvirtual_alias_maps = texthash:{virtual}\n")
    qid = send(inst, ["info@virt.test", "sales@virt.test", "team@localhost"])
    lines = local_lines(inst, qid, 4)
    mine = [line for line in lines if f"to=<{USER}@example.com>" in line]
    # one line per original recipient, each a copy really written
    assert sorted(re.search(r"orig_to=<([^>]*)>", line).group(1) for line in mine) == [  # type: ignore[union-attr]
        "info@virt.test", "sales@virt.test", "team@localhost"]
    assert all("status=sent (delivered to mailbox)" in line for line in mine)
    assert len([line for line in lines if "to=<root@example.com>, orig_to=<team@localhost>"
                in line]) == 1
    box = inst.mailbox(USER).read_bytes()
    assert box.count(b"Subject: parity test") == 3
    for orig in (b"info@virt.test", b"sales@virt.test", b"team@localhost"):
        assert box.count(b"\nX-Original-To: " + orig + b"\n") == 1
    # Postfix 3.7: the alias's copy says Delivered-To: the alias, the others the user
    assert box.count(f"\nDelivered-To: {USER}@example.com\n".encode()) == 2
    assert box.count(b"\nX-Original-To: team@localhost\nDelivered-To: team@localhost\n") == 1
    # within one recipient's expansion a user listed twice is one copy, one line
    qid2 = send(inst, ["twice@example.com"], sender="tintin@example.net")
    [line] = local_lines(inst, qid2, 1)
    assert f"to=<{USER}@example.com>, orig_to=<twice@example.com>" in line, line
    deadline = time.monotonic() + 5
    while inst.mailbox(USER).read_bytes().count(b"Subject: parity test") < 4:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert inst.mailbox(USER).read_bytes().count(b"Subject: parity test") == 4


def test_the_fresh_administrators_aliases(make_instance, workdir: Path) -> None:
    out = outdir(workdir)
    home = fresh_home(USER)
    fresh_home(OTHER)
    pw = pwd.getpwnam(USER)
    inc = workdir / "inc.list"
    inc.write_text(f"{OTHER}\n{out / 'inc.out'}\n")
    forward = home / ".forward"
    forward.write_text(f'\\{USER}, "|/bin/sh -c \\"cat > {out / "fwd.out"}\\""\n')
    os.chown(forward, pw.pw_uid, pw.pw_gid)
    inst = started(make_instance, workdir,
                   f"cmd: \"|/bin/sh -c 'cat > {out / 'cmd.out'}'\"\n"
                   f"file: {out / 'x.out'}\n"
                   f"inc: :include:{inc}\n"
                   "remote: someone@remote.invalid\n",
                   # as the administrator's main.cf (Postfix's default leaves out include)
                   "allow_mail_to_commands = alias, forward, include\n"
                   "allow_mail_to_files = alias, forward, include\n")
    qid = send(inst, ["cmd@example.com", "file@example.com", "inc@example.com",
                      "remote@example.com", f"{USER}@example.com"])
    lines = local_lines(inst, qid, 7)
    text = "\n".join(lines)
    assert ("to=<cmd@example.com>, relay=local, " in text
            and f"status=sent (delivered to command: /bin/sh -c 'cat > {out / 'cmd.out'}')"
            in text), text
    assert f"status=sent (delivered to file: {out / 'x.out'})" in text
    assert f"status=sent (delivered to file: {out / 'inc.out'})" in text
    assert re.search(rf"to=<inc@example\.com>, .*status=sent \(forwarded as {QID}\)", text)
    assert re.search(rf"to=<remote@example\.com>, .*status=sent \(forwarded as {QID}\)", text)
    assert re.search(rf"to=<{USER}@example\.com>, .*status=sent \(delivered to mailbox\)",
                     text), text
    assert re.search(rf"to=<{USER}@example\.com>, .*status=sent \(delivered to command: "
                     rf"/bin/sh -c \"cat > {re.escape(str(out / 'fwd.out'))}\"\)", text), text
    for name in ("cmd.out", "x.out", "inc.out", "fwd.out"):
        data = (out / name).read_bytes()
        assert b"Subject: parity test" in data, name
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert b"Subject: parity test" in inst.mailbox(USER).read_bytes()


def test_include_commands_take_the_file_owners_environment(make_instance, workdir: Path) -> None:
    # Postfix 3.7: a root-owned :include: file's command runs as default_privs with
    # USER=LOGNAME=the alias (without its extension) and no HOME; a user-owned one's as
    # that user, with the user's HOME and SHELL, USER still the alias
    out = outdir(workdir)
    pw = ensure_user(USER)
    by_root = workdir / "root.list"
    by_root.write_text('"|' + PROBE.format(out=out / "env-root", made=out / "made-root") + '"\n')
    by_user = workdir / "user.list"
    by_user.write_text('"|' + PROBE.format(out=out / "env-user", made=out / "made-user") + '"\n')
    os.chown(by_user, pw.pw_uid, pw.pw_gid)
    inst = started(make_instance, workdir,
                   f"incenv: :include:{by_root}\nincenv2: :include:{by_user}\n",
                   "allow_mail_to_commands = alias, forward, include\n"
                   "recipient_delimiter = +\n")
    qid = send(inst, ["incenv+ext@example.com", "incenv2@example.com"])
    lines = local_lines(inst, qid, 2)
    assert all("status=sent (delivered to command: env > " in line for line in lines), lines
    root_env = read_env(out / "env-root")
    assert root_env["USER"] == root_env["LOGNAME"] == "incenv"
    assert root_env["EXTENSION"] == "ext"
    assert "HOME" not in root_env and "SHELL" not in root_env
    assert root_env["umask"] == "0077" and root_env["cwd"] == str(inst.queue_dir)
    assert (out / "made-root").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    user_env = read_env(out / "env-user")
    assert user_env["USER"] == user_env["LOGNAME"] == "incenv2"
    assert user_env["HOME"] == pw.pw_dir and user_env["SHELL"] == pw.pw_shell
    assert user_env["umask"] == "0077" and user_env["cwd"] == str(inst.queue_dir)
    assert (out / "made-user").stat().st_uid == pw.pw_uid


def test_command_environment_is_postfixs(make_instance, workdir: Path) -> None:
    """Postfix 3.7.11's ``env | sort`` for an alias command reached as
    ``"envcmd+a b"@example.com`` from 127.0.0.1 (EHLO client.example.net): the client
    attributes, LANG=C and MAIL_CONFIG (import_environment then export_environment), and
    RECIPIENT/LOCAL/ORIGINAL_RECIPIENT in internal form (no quotes), the space censored."""
    out = outdir(workdir)
    inst = started(make_instance, workdir, f'envcmd: "|env | sort > {out / "env"}"\n',
                   "recipient_delimiter = +\n")
    qid = send(inst, ['"envcmd+a b"@example.com'])
    [line] = local_lines(inst, qid, 1)
    assert "status=sent (delivered to command: " in line, inst.log()
    env = read_env(out / "env")
    env.pop("PWD", None)
    env.pop("TZ", None)  # exported when the server's environment has it
    hostname = env.get("CLIENT_HOSTNAME")
    assert hostname in ("localhost", "unknown") or (hostname or "").startswith("localhost")
    del env["CLIENT_HOSTNAME"]
    assert env == {
        "CLIENT_ADDRESS": "127.0.0.1", "CLIENT_HELO": "client.example.net",
        "CLIENT_PROTOCOL": "ESMTP", "DOMAIN": "example.com", "EXTENSION": "a_b",
        "LANG": "C", "LOCAL": "envcmd+a_b", "LOGNAME": "envcmd",
        "MAIL_CONFIG": str(inst.config_dir), "ORIGINAL_RECIPIENT": "envcmd+a_b@example.com",
        "PATH": "/usr/bin:/bin", "RECIPIENT": "envcmd+a_b@example.com",
        "SENDER": "haddock@example.net", "USER": "envcmd"}


def test_alias_to_a_file_in_a_directory_nobody_can_write(make_instance, workdir: Path) -> None:
    """Postfix 3.7.11 delivers to a 0666 file in a root-owned 0755 directory (the dotlock
    may fail for files; fcntl still locks); it used to defer "unable to create lock file"."""
    sinkdir = workdir / "sinkdir"
    sinkdir.mkdir()
    os.chmod(sinkdir, 0o755)
    sink = sinkdir / "sink.mbox"
    sink.touch()
    os.chmod(sink, 0o666)
    inst = started(make_instance, workdir, f"sink: {sink}\n")
    for n in range(3):
        qid = send(inst, ["sink@example.com"], sender=f"s{n}@example.net")
        [line] = local_lines(inst, qid, 1)
        assert f"status=sent (delivered to file: {sink})" in line, line
    assert sink.read_bytes().count(b"Subject: parity test") == 3
    assert not Path(f"{sink}.lock").exists()


@pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot-core is not installed")
def test_command_environment_after_sasl_authentication(make_instance, workdir: Path) -> None:
    """local(8): SASL_METHOD, SASL_USERNAME (and SASL_SENDER with MAIL FROM's AUTH=) for a
    message an authenticated client sent; smtpd stores them in the queue file."""
    out = outdir(workdir)
    inst = started(make_instance, workdir, f'envcmd: "|env | sort > {out / "env"}"\n',
                   "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = dovecot\n"
                   "smtpd_sasl_path = private/auth\n")
    dovecot = Dovecot(inst.base, inst.queue_dir)
    dovecot.start()
    try:
        with smtplib.SMTP("127.0.0.1", inst.port, local_hostname="milou.example.net",
                          timeout=30) as smtp:
            smtp.login("alice", PASSWORD)
            smtp.sendmail("alice@example.net", ["envcmd@example.com"],
                          b"Subject: parity test\r\n\r\nbody\r\n")
    finally:
        dovecot.stop()
    m = re.search(rf"({QID}): from=<alice@example\.net>", inst.wait_log("relay=local"))
    assert m, inst.log()
    [line] = local_lines(inst, m.group(1), 1)
    assert "status=sent (delivered to command: " in line, inst.log()
    env = read_env(out / "env")
    assert (env["SASL_METHOD"], env["SASL_USERNAME"]) == ("PLAIN", "alice"), env
    # the protocol as smtpd stores it (Postfix: ESMTP; the S/A of "with ESMTPSA" are
    # added to the Received: header only)
    assert env["CLIENT_PROTOCOL"] == "ESMTP" and env["CLIENT_HELO"] == "milou.example.net"
    assert "SASL_SENDER" not in env  # smtplib sends no AUTH= on MAIL FROM
