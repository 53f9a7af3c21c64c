"""mailbox_command delivery: input format, exit statuses, time limit, privileges, procmail."""

from __future__ import annotations

import mailbox
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.delivery.status import DeliveryStatus, Kind
from postier.local.command import CommandResult, deliver_command, interpret
from postier.local.localpart import command_env

WHEN = time.mktime((2026, 11, 25, 20, 48, 52, 0, 0, -1))
MSG = b"Subject: hi\n\nFrom here\nbye\n"


def run(command: str, tmp: Path, **kw: object) -> DeliveryStatus:
    env = command_env(
        user="joe",
        home=str(tmp),
        shell="/bin/sh",
        recipient="joe+list@example.com",
        sender="ann@example.org",
        orig_recipient="joe@example.com",
        extension="list",
        parent_env={},
    )
    args: dict[str, object] = {
        "content": [MSG],
        "sender": "ann@example.org",
        "recipient": "joe+list@example.com",
        "env": env,
        "uid": None,
        "gid": None,
        "cwd": str(tmp),
        "timeout": 30.0,
        "orig_recipient": "joe@example.com",
        "arrival": WHEN,
    }
    args.update(kw)
    return deliver_command(command, **args)  # type: ignore[arg-type]


def test_success_and_exact_input(tmp_path: Path) -> None:
    out = tmp_path / "got"
    st = run(f"cat > {out}", tmp_path)
    assert st.kind is Kind.SENT
    assert st.text == f"delivered to command: cat > {out}"
    assert out.read_bytes() == (
        b"From ann@example.org  Wed Nov 25 20:48:52 2026\n"
        b"Return-Path: <ann@example.org>\n"
        b"X-Original-To: joe@example.com\n"
        b"Delivered-To: joe+list@example.com\n"
        b"Subject: hi\n\nFrom here\nbye\n"
    )


def test_environment_and_working_directory(tmp_path: Path) -> None:
    out = tmp_path / "env"
    st = run(f'echo "$EXTENSION|$USER|$PATH|$(pwd)" > {out}; cat >/dev/null', tmp_path)
    assert st.kind is Kind.SENT
    assert out.read_text() == f"list|joe|/usr/bin:/bin|{tmp_path}\n"


def test_execution_directory_the_user_cannot_enter_defers(tmp_path: Path) -> None:
    # postconf(5) command_execution_directory: "Failure to change directory causes mail
    # to be deferred"; nothing runs
    out = tmp_path / "ran"
    st = run(f"touch {out}", tmp_path, cwd=str(tmp_path / "nope"), cwd_as_user=True)
    assert st.kind is Kind.DEFERRED and st.dsn == "4.3.0"
    assert st.text == f'cannot change directory to "{tmp_path / "nope"}" for command "touch {out}"'
    assert not out.exists()


def test_commands_run_with_umask_077(tmp_path: Path) -> None:
    # Postfix 3.7's local(8): an alias command printed umask 0077; its file -rw-------
    out = tmp_path / "umask"
    made = tmp_path / "made"
    st = run(f"umask > {out}; echo x > {made}", tmp_path)
    assert st.kind is Kind.SENT
    assert out.read_text() == "0077\n"
    assert made.stat().st_mode & 0o777 == 0o600


def test_tempfail_defers_with_output(tmp_path: Path) -> None:
    st = run("echo 'disk is busy'; exit 75", tmp_path)
    assert st.kind is Kind.DEFERRED and st.dsn == "4.3.0"
    assert st.text == "temporary failure. Command output: disk is busy"


@pytest.mark.parametrize(
    ("code", "dsn", "text"),
    [
        (67, "5.1.1", "user unknown"),
        (77, "5.7.0", "permission denied"),
        (73, "5.2.0", "can't create user output file"),
        (71, "4.3.0", "system resource problem"),
        (78, "5.3.5", "local configuration error"),
    ],
)
def test_sysexits(tmp_path: Path, code: int, dsn: str, text: str) -> None:
    st = run(f"cat >/dev/null; exit {code}", tmp_path)
    assert (st.dsn, st.text) == (dsn, text)


def test_other_exit_status_bounces(tmp_path: Path) -> None:
    st = run("cat >/dev/null; echo oops >&2; exit 3", tmp_path)
    assert st.kind is Kind.BOUNCED and st.dsn == "5.3.0"
    assert st.text == (
        'Command died with status 3: "cat >/dev/null; echo oops >&2; exit 3". Command output: oops'
    )


def test_enhanced_status_in_output_wins(tmp_path: Path) -> None:
    st = run("echo '4.2.2 mailbox over quota'; exit 1", tmp_path)
    assert (st.dsn, st.text) == ("4.2.2", "mailbox over quota")
    st = run("echo '5.1.1 no such user here'; exit 67", tmp_path)
    assert (st.dsn, st.text) == ("5.1.1", "no such user here")


def test_signal_defers(tmp_path: Path) -> None:
    st = run("kill -TERM $$", tmp_path)
    assert st.kind is Kind.DEFERRED and st.dsn == "4.3.0"
    assert st.text.startswith("Command died with signal 15:")


def test_time_limit_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    started = time.monotonic()
    st = run(f"(sleep 5; touch {marker}) & sleep 5", tmp_path, timeout=0.5)
    assert time.monotonic() - started < 4
    assert st.kind is Kind.BOUNCED and st.dsn == "5.3.0"
    assert st.text.startswith("Command time limit exceeded:")
    assert not marker.exists()


def test_command_that_ignores_input_still_succeeds(tmp_path: Path) -> None:
    big = [b"x" * 1000 + b"\n"] * 2000  # more than a pipe buffer
    assert run("exit 0", tmp_path, content=big).kind is Kind.SENT


def test_output_is_bounded(tmp_path: Path) -> None:
    st = run("cat >/dev/null; yes failure | head -c 100000; exit 1", tmp_path, output_limit=100)
    assert st.kind is Kind.BOUNCED
    assert len(st.text) < 250


def test_unreadable_message_defers(tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"Subject: x\n"
        raise ValueError("corrupt queue file")

    st = run("cat >/dev/null", tmp_path, content=broken())
    assert st.kind is Kind.DEFERRED
    assert "corrupt queue file" in st.text


def test_interpret_is_pure() -> None:
    assert interpret("c", CommandResult(0, None, False, b"")).dsn == "2.0.0"
    assert interpret("c", CommandResult(None, 9, False, b"")).dsn == "4.3.0"
    assert interpret("c", CommandResult(None, None, True, b"")).dsn == "5.3.0"
    assert interpret("c", CommandResult(75, None, False, b"")).text == "temporary failure"


def test_prepend_replaces_envelope(tmp_path: Path) -> None:
    out = tmp_path / "got"
    st = run(f"cat > {out}", tmp_path, prepend=b"X-Test: 1\n")
    assert st.kind is Kind.SENT
    assert out.read_bytes() == b"X-Test: 1\n" + MSG


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory that the unprivileged user may enter and write (tmp_path cannot be)."""
    path = Path(tempfile.mkdtemp(prefix="postier-cmd-", dir="/tmp"))
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path)


@needs_root
def test_runs_as_the_recipient(open_tmp: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    out = open_tmp / "id"
    st = run(
        f"id -u > {out}; id -g >> {out}; id -G >> {out}",
        open_tmp,
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
    )
    assert st.kind is Kind.SENT
    assert out.read_text().split() == [str(nobody.pw_gid)] * 0 + [
        str(nobody.pw_uid),
        str(nobody.pw_gid),
        str(nobody.pw_gid),
    ]
    assert out.stat().st_uid == nobody.pw_uid
    assert os.geteuid() == 0


@needs_root
def test_file_size_limit_applies_to_command(open_tmp: Path) -> None:
    out = open_tmp / "big"
    st = run(f"head -c 100000 /dev/zero > {out}", open_tmp, size_limit=1000)
    assert st.kind is not Kind.SENT
    assert out.stat().st_size <= 1000


def _remove_empty_spool(spool: Path, existed: bool) -> None:
    """Debian's setgid procmail creates an empty /var/mail/USER; undo that."""
    if not existed and spool.exists() and spool.stat().st_size == 0:
        spool.unlink()


PROCMAIL = shutil.which("procmail") or "/usr/bin/procmail"


@pytest.mark.skipif(not os.path.exists(PROCMAIL), reason="procmail is not installed")
def test_real_procmail_delivers_to_mbox(open_tmp: Path, request: pytest.FixtureRequest) -> None:
    home = open_tmp
    box = home / "Mail" / "inbox"
    (home / "Mail").mkdir()
    rc = home / ".procmailrc"
    rc.write_text(
        f"MAILDIR={home}/Mail\n"
        f"DEFAULT={box}\n"
        f"LOGFILE={home}/procmail.log\n"
        # procmail clears its environment: the extension arrives as "-a" argument $1.
        "EXT=$1\n"
        ":0\n"
        "* EXT ?? ^list$\n"
        f"{home}/Mail/list\n"
    )
    uid = gid = None
    spool = Path("/var/mail/nobody")
    spool_existed = spool.exists()
    request.addfinalizer(lambda: _remove_empty_spool(spool, spool_existed))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        for path in (home, home / "Mail", rc):
            os.chown(path, uid, gid)
    # procmail ignores an rcfile in a group- or world-writable home directory.
    os.chmod(home, 0o755)
    os.chmod(rc, 0o644)
    env = command_env(
        user="nobody",
        home=str(home),
        shell="/bin/sh",
        recipient="nobody+list@example.com",
        sender="ann@example.org",
        extension="list",
        parent_env={},
    )
    st = deliver_command(
        # procmail finds ~/.procmailrc through the passwd entry, not $HOME, so the
        # rcfile is named; ORGMAIL keeps a fallback delivery out of /var/mail.
        f'{PROCMAIL} -a "$EXTENSION" ORGMAIL={home}/Mail/orgmail {rc}',
        content=[b"Subject: via procmail\n\nFrom the body\n"],
        sender="ann@example.org",
        recipient="nobody+list@example.com",
        env=env,
        uid=uid,
        gid=gid,
        cwd=str(home),
        timeout=30.0,
        arrival=WHEN,
    )
    assert st.kind is Kind.SENT, st
    assert "Folder:" in (home / "procmail.log").read_text()  # procmail used our rcfile
    assert not box.exists()  # the recipe on $EXTENSION ("list") took it
    assert not (home / "Mail" / "orgmail").exists()
    mb = mailbox.mbox(str(home / "Mail" / "list"), create=False)
    try:
        msgs = list(mb)
    finally:
        mb.close()
    assert len(msgs) == 1
    assert msgs[0]["Subject"] == "via procmail"
    assert msgs[0]["Delivered-To"] == "nobody+list@example.com"
    assert msgs[0]["Return-Path"] == "<ann@example.org>"
    if uid is not None:
        assert (home / "Mail" / "list").stat().st_uid == uid
