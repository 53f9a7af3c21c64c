"""mbox delivery: exact format, appends, size limit, symlinks, dotlocks, fcntl locks, owners."""

from __future__ import annotations

import fcntl
import mailbox
import multiprocessing
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.delivery.status import Kind
from postier.local.mbox import (
    DotLock,
    MailboxError,
    deliver_mbox,
    format_message,
    from_line,
    mbox_dsn,
    quote_822_local,
)

WHEN = time.mktime((2026, 11, 25, 20, 48, 52, 0, 0, -1))
MSG = (
    b"Subject: hello\n"
    b"From: ann@example.org\n"
    b"\n"
    b"first line\n"
    b"From the start of a line\n"
    b">From already quoted\n"
    b" From not at start\n"
    b"last line\n"
)


def no_sleep(_: float) -> None:
    """Lock retries in tests never sleep."""


def deliver(path: Path, content: list[bytes] | None = None, **kw: object) -> object:
    args: dict[str, object] = {
        "sender": "ann@example.org",
        "recipient": "joe@example.com",
        "orig_recipient": "Joe@example.com",
        "content": content if content is not None else [MSG],
        "arrival": WHEN,
        "size_limit": 0,
        "locks": ["fcntl", "dotlock"],
        "uid": None,
        "gid": None,
        "sleep": no_sleep,
    }
    args.update(kw)
    return deliver_mbox(str(path), **args)  # type: ignore[arg-type]


EXPECTED = (
    b"From ann@example.org  Wed Nov 25 20:48:52 2026\n"
    b"Return-Path: <ann@example.org>\n"
    b"X-Original-To: Joe@example.com\n"
    b"Delivered-To: joe@example.com\n"
    b"Subject: hello\n"
    b"From: ann@example.org\n"
    b"\n"
    b"first line\n"
    b">From the start of a line\n"
    b">From already quoted\n"
    b" From not at start\n"
    b"last line\n"
    b"\n"
)


def test_exact_format(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    st = deliver(box)
    assert st.kind is Kind.SENT and st.dsn == "2.0.0"  # type: ignore[attr-defined]
    assert st.text == "delivered to mailbox"  # type: ignore[attr-defined]
    assert box.read_bytes() == EXPECTED
    assert stat.S_IMODE(box.stat().st_mode) == 0o600
    assert not (tmp_path / "joe.lock").exists()


def test_two_deliveries_append_and_parse(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    deliver(box)
    deliver(box, content=[b"Subject: second\n\nbody two"], sender="")
    data = box.read_bytes()
    assert data.startswith(EXPECTED)
    assert data[len(EXPECTED) :] == (
        b"From MAILER-DAEMON  Wed Nov 25 20:48:52 2026\n"
        b"Return-Path: <>\n"
        b"X-Original-To: Joe@example.com\n"
        b"Delivered-To: joe@example.com\n"
        b"Subject: second\n\nbody two\n\n"
    )
    mb = mailbox.mbox(str(box), create=False)
    try:
        msgs = list(mb)
    finally:
        mb.close()
    assert [m["Subject"] for m in msgs] == ["hello", "second"]
    assert msgs[0]["Return-Path"] == "<ann@example.org>"
    assert msgs[0]["Delivered-To"] == "joe@example.com"
    assert msgs[0].get_from() == "ann@example.org  Wed Nov 25 20:48:52 2026"
    body = msgs[0].get_payload()
    assert isinstance(body, str)
    assert ">From the start of a line\n" in body
    assert msgs[1].get_payload() == "body two\n"


def test_chunks_split_anywhere_give_the_same_bytes() -> None:
    whole = b"".join(
        format_message(sender="a@b", recipient="c@d", orig_recipient="", content=[MSG], when=WHEN)
    )
    pieces = [MSG[i : i + 1] for i in range(len(MSG))]
    split = b"".join(
        format_message(sender="a@b", recipient="c@d", orig_recipient="", content=pieces, when=WHEN)
    )
    assert split == whole
    assert b"X-Original-To" not in whole  # empty orig_recipient: header left out


def test_from_line_and_quoting() -> None:
    assert from_line("", WHEN) == b"From MAILER-DAEMON  Wed Nov 25 20:48:52 2026\n"
    assert quote_822_local("john doe@example.com") == '"john doe"@example.com'
    assert quote_822_local("john.doe@example.com") == "john.doe@example.com"


def test_mbox_dsn_table() -> None:
    import errno

    assert mbox_dsn(errno.EAGAIN, "5.2.0") == "4.2.0"
    assert mbox_dsn(errno.ENOSPC, "5.2.0") == "4.3.0"
    assert mbox_dsn(errno.EDQUOT, "4.2.0") == "5.2.2"
    assert mbox_dsn(errno.EFBIG, "4.2.0") == "5.2.2"
    assert mbox_dsn(errno.EACCES, "5.2.0") == "5.2.0"


def test_size_limit_bounces_and_leaves_file_unchanged(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    deliver(box)
    before = box.read_bytes()
    st = deliver(box, size_limit=len(before) + 100, content=[MSG * 3])
    assert st.dsn == "5.2.2"  # type: ignore[attr-defined]
    assert st.kind is Kind.BOUNCED  # type: ignore[attr-defined]
    assert st.text == (  # type: ignore[attr-defined]
        f"cannot update mailbox {box} for user joe. error writing message: File too large"
    )
    assert box.read_bytes() == before
    assert deliver(box, size_limit=len(before) * 3).kind is Kind.SENT  # type: ignore[attr-defined]


def test_large_message_truncated_back_on_limit(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    box.write_bytes(b"")
    big = [b"x" * 1000 + b"\n"] * 500  # crosses several write chunks before failing
    st = deliver(box, content=big, size_limit=300_000)
    assert st.dsn == "5.2.2"  # type: ignore[attr-defined]
    assert box.stat().st_size == 0


def test_reading_error_keeps_mailbox_intact(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    deliver(box)
    before = box.read_bytes()

    def broken() -> Iterator[bytes]:
        yield b"x" * 100_000 + b"\n"
        raise ValueError("queue file is corrupt")

    st = deliver(box, content=broken())
    assert st.kind is Kind.DEFERRED  # type: ignore[attr-defined]
    assert "error reading message" in st.text  # type: ignore[attr-defined]
    assert box.read_bytes() == before


def test_symlinked_mailbox_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    box = tmp_path / "joe"
    box.symlink_to(target)
    st = deliver(box, locks=["fcntl"])
    assert st.kind is not Kind.SENT  # type: ignore[attr-defined]
    assert "symbolic link" in st.text  # type: ignore[attr-defined]
    assert target.read_bytes() == b""


def test_hard_linked_mailbox_is_refused(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    box.write_bytes(b"")
    os.link(box, tmp_path / "other")
    st = deliver(box)
    assert st.dsn == "5.2.0" and "2 hard links" in st.text  # type: ignore[attr-defined]
    assert box.read_bytes() == b""


def test_directory_mailbox_is_refused(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    box.mkdir()
    st = deliver(box, locks=["fcntl"])
    assert st.kind is Kind.BOUNCED  # type: ignore[attr-defined]


def test_stale_dotlock_is_removed(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    lock = tmp_path / "joe.lock"
    lock.write_bytes(b"")
    old = time.time() - 600
    os.utime(lock, (old, old))
    st = deliver(box, locks=["dotlock"], lock_attempts=2)
    assert st.kind is Kind.SENT  # type: ignore[attr-defined]
    assert not lock.exists()
    assert box.read_bytes() == EXPECTED


def test_fresh_dotlock_makes_delivery_wait_then_defer(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    lock = tmp_path / "joe.lock"
    lock.write_bytes(b"")
    waits: list[float] = []
    st = deliver(box, locks=["dotlock"], lock_attempts=3, lock_delay=0.25, sleep=waits.append)
    assert waits == [0.25, 0.25]
    assert st.kind is Kind.DEFERRED and st.dsn == "4.2.0"  # type: ignore[attr-defined]
    assert st.text == (  # type: ignore[attr-defined]
        f"cannot update mailbox {box} for user joe. "
        f"unable to create lock file {box}.lock: File exists"
    )
    assert lock.exists()  # someone else's lock is left alone
    assert not box.exists() or box.read_bytes() == b""


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _pid_ns() -> str:
    return os.readlink("/proc/self/ns/pid")


def test_dotlock_says_which_postier_process_holds_it(tmp_path: Path) -> None:
    dot = DotLock(str(tmp_path / "joe"), attempts=1, delay=1, stale_lock_time=500)
    dot.acquire()
    assert (tmp_path / "joe.lock").read_text() == f"{os.getpid()} postier {_pid_ns()}\n"
    dot.release()


def test_dotlock_of_a_dead_postier_process_is_removed_at_once(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    lock = tmp_path / "joe.lock"
    lock.write_text(f"{_dead_pid()} postier {_pid_ns()}\n")
    waits: list[float] = []
    st = deliver(box, locks=["dotlock"], lock_attempts=3, sleep=waits.append)
    assert st.kind is Kind.SENT  # type: ignore[attr-defined]
    assert waits == [] and not lock.exists()
    assert box.read_bytes() == EXPECTED


@pytest.mark.parametrize("content", [
    "{live} postier {ns}\n",  # its holder still runs
    "{dead} postier pid:[1]\n",  # made in another PID namespace: PIDs unknown here
    "{dead}\n",  # another program's (liblockfile's) format: only age makes it stale
    "",
])
def test_other_fresh_dotlocks_are_left_alone(tmp_path: Path, content: str) -> None:
    box = tmp_path / "joe"
    lock = tmp_path / "joe.lock"
    lock.write_text(content.format(live=os.getpid(), dead=_dead_pid(), ns=_pid_ns()))
    waits: list[float] = []
    st = deliver(box, locks=["dotlock"], lock_attempts=2, lock_delay=0.5, sleep=waits.append)
    assert st.kind is Kind.DEFERRED and st.dsn == "4.2.0"  # type: ignore[attr-defined]
    assert waits == [0.5] and lock.exists()


def test_dotlock_released_after_the_lock_holder_goes(tmp_path: Path) -> None:
    path = str(tmp_path / "joe")
    clock = [1000.0]
    dot = DotLock(path, attempts=2, delay=1, stale_lock_time=500, clock=lambda: clock[0])
    dot.acquire()
    other = DotLock(path, attempts=2, delay=1, stale_lock_time=500, sleep=no_sleep)
    with pytest.raises(MailboxError):
        other.acquire()
    dot.release()
    other.acquire()
    other.release()
    assert not os.path.exists(path + ".lock")


def _hold_fcntl_lock(path: str, ready: object, done: object) -> None:
    fd = os.open(path, os.O_WRONLY)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    ready.set()  # type: ignore[attr-defined]
    done.wait(30)  # type: ignore[attr-defined]
    os.close(fd)


def test_fcntl_lock_held_by_another_process_defers(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    box.write_bytes(b"")
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_fcntl_lock, args=(str(box), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        st = deliver(box, locks=["fcntl", "dotlock"], lock_attempts=3)
        assert st.kind is Kind.DEFERRED and st.dsn == "4.2.0"  # type: ignore[attr-defined]
        assert "unable to lock for exclusive access" in st.text  # type: ignore[attr-defined]
        assert box.read_bytes() == b""
        assert not (tmp_path / "joe.lock").exists()  # our dotlock was released
    finally:
        done.set()
        holder.join(30)
    assert deliver(box, locks=["fcntl"]).kind is Kind.SENT  # type: ignore[attr-defined]


def test_unknown_lock_method_defers(tmp_path: Path) -> None:
    st = deliver(tmp_path / "joe", locks=["bogus"])
    assert st.dsn == "4.3.5"  # type: ignore[attr-defined]


def test_flock_lock(tmp_path: Path) -> None:
    box = tmp_path / "joe"
    box.write_bytes(b"")
    fd = os.open(box, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = deliver(box, locks=["flock"], lock_attempts=2)
        assert st.dsn == "4.2.0"  # type: ignore[attr-defined]
    finally:
        os.close(fd)
    assert deliver(box, locks=["flock"]).kind is Kind.SENT  # type: ignore[attr-defined]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")


def _nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory that an unprivileged user can traverse (tmp_path cannot be)."""
    path = Path(tempfile.mkdtemp(prefix="postier-agents-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


@needs_root
def test_delivery_as_unprivileged_user_creates_owned_file(open_tmp: Path) -> None:
    tmp_path = open_tmp
    nobody = _nobody()
    spool = tmp_path / "home"
    spool.mkdir()
    os.chown(spool, nobody.pw_uid, nobody.pw_gid)
    box = spool / "mbox"
    st = deliver(box, uid=nobody.pw_uid, gid=nobody.pw_gid, user="nobody")
    assert st.kind is Kind.SENT, st  # type: ignore[attr-defined]
    info = box.stat()
    assert (info.st_uid, info.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert os.geteuid() == 0 and os.getegid() == 0  # privileges are back


@needs_root
def test_root_owned_spool_gets_root_dotlock_and_user_mailbox(open_tmp: Path) -> None:
    tmp_path = open_tmp
    nobody = _nobody()
    spool = tmp_path / "mail"
    spool.mkdir()
    os.chmod(spool, 0o2775)  # like Debian's /var/mail, root-owned, not writable by nobody
    box = spool / "nobody"
    st = deliver(box, uid=nobody.pw_uid, gid=nobody.pw_gid, user="nobody")
    assert st.kind is Kind.SENT, st  # type: ignore[attr-defined]
    assert box.stat().st_uid == nobody.pw_uid
    assert not (spool / "nobody.lock").exists()
    assert box.read_bytes() == EXPECTED


@needs_root
def test_mailbox_owned_by_someone_else_is_deferred(open_tmp: Path) -> None:
    tmp_path = open_tmp
    nobody = _nobody()
    box = tmp_path / "nobody"
    box.write_bytes(b"")  # owned by root
    st = deliver(box, uid=nobody.pw_uid, gid=nobody.pw_gid, user="nobody")
    assert st.kind is Kind.DEFERRED  # type: ignore[attr-defined]
    assert box.read_bytes() == b""


@needs_root
def test_user_cannot_write_through_to_unreadable_file(open_tmp: Path) -> None:
    tmp_path = open_tmp
    nobody = _nobody()
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    box = home / "mbox"
    box.write_bytes(b"")
    os.chmod(box, 0o600)  # root-owned, user-writable directory: user may not open it
    st = deliver(box, uid=nobody.pw_uid, gid=nobody.pw_gid, strict_ownership=False)
    assert st.kind is Kind.DEFERRED  # type: ignore[attr-defined]
    assert "Permission denied" in st.text  # type: ignore[attr-defined]
