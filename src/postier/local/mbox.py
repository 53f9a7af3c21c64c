"""Append one message to a UNIX mbox file, locked, all-or-nothing, as Postfix local(8) does.

Follows Postfix local(8) "MAILBOX DELIVERY" and postconf(5) mailbox_delivery_lock,
mailbox_size_limit, deliver_lock_attempts, deliver_lock_delay, stale_lock_time,
strict_mailbox_ownership, enable_original_recipient; the mbox format is the
traditional one read by mail(1), s-nail, mutt and Python's ``mailbox.mbox``
(RFC 4155), with RFC 5322 headers prepended.

What is written, in order:

* ``From SENDER  DATE`` (two spaces, as Postfix writes it; ``MAILER-DAEMON`` for
  the null sender; DATE in asctime(3) form, local time);
* ``Return-Path: <sender>``, ``X-Original-To: orig_recipient`` (only when
  ``orig_recipient`` is non-empty: Postfix reads an empty one as "original
  recipient processing disabled"), ``Delivered-To: recipient`` (unless
  ``delivered_to=False``, prepend_delivered_header without ``file``);
* the message, every line starting with ``From `` quoted as ``>From ``, a final
  newline supplied when missing, then one empty line.

The pure part (``format_message`` and friends) produces those bytes; the adapter
part (``deliver_mbox``) opens, locks, checks, appends, fsyncs and, on any error,
truncates the file back to its original length so that the mailbox never holds
half a message.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, suppress

from postier.config.capabilities import LOCK_METHODS
from postier.config.params import DELIVER_LOCK_ATTEMPTS, DELIVER_LOCK_DELAY, STALE_LOCK_TIME
from postier.delivery.status import DeliveryStatus, bounced, deferred, sent
from postier.local import privs
from postier.safeio import write_all

MAIL_DAEMON = "MAILER-DAEMON"
_CHUNK = 65536

# ---------------------------------------------------------------------------
# Pure formatting
# ---------------------------------------------------------------------------

_ATEXT_SPECIALS = set('()<>[]:;@\\,"') | {" ", "\t"}
#: A character that keeps a localpart from being a dot-atom: one of ``_ATEXT_SPECIALS``,
#: a control character or DEL (one regex search instead of a Python step per character).
_NEEDS_QUOTES = re.compile(
    "[\x00-\x1f\x7f" + "".join(re.escape(c) for c in sorted(_ATEXT_SPECIALS)) + "]")


def quote_822_local(address: str) -> str:
    """Quote the localpart of ``address`` when RFC 5322 requires it.

    ``john doe@example.com`` becomes ``"john doe"@example.com``; an address whose
    localpart is a dot-atom is returned unchanged.
    """
    at = address.rfind("@")
    local, rest = (address, "") if at < 0 else (address[:at], address[at:])
    needs = (
        not local
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or _NEEDS_QUOTES.search(local) is not None
    )
    if not needs or (local.startswith('"') and local.endswith('"') and len(local) > 1):
        return address
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"{rest}'


def from_line(sender: str, when: float) -> bytes:
    """The mbox separator line: ``From SENDER  Tue Nov 25 20:48:52 2026\\n``."""
    who = quote_822_local(sender) if sender else MAIL_DAEMON
    stamp = time.asctime(time.localtime(when))
    return f"From {who}  {stamp}\n".encode("utf-8", "surrogateescape")


def envelope_headers(
    sender: str, recipient: str, orig_recipient: str, *, delivered_to: bool = True
) -> bytes:
    """Return-Path:, X-Original-To: (when known) and Delivered-To: lines."""
    lines = [f"Return-Path: <{quote_822_local(sender) if sender else ''}>\n"]
    if orig_recipient:
        lines.append(f"X-Original-To: {quote_822_local(orig_recipient)}\n")
    if delivered_to:
        lines.append(f"Delivered-To: {quote_822_local(recipient)}\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def message_lines(content: Iterable[bytes], *, quote_from: bool) -> Iterator[bytes]:
    """Re-cut ``content`` (arbitrary chunks, LF line ends) into runs of whole lines.

    Every piece yielded ends with ``\\n`` and holds whole lines (one ``\\n`` is added to
    a last partial line); with ``quote_from`` a line starting with ``From `` gets a
    ``>`` prepended. Pieces rather than single lines: one ``bytes.replace`` per chunk
    instead of Python work per line.
    """
    pending = b""
    for chunk in content:
        if not chunk:
            continue
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if not cut:
            continue
        block, pending = pending[:cut], pending[cut:]
        yield _quote_from(block) if quote_from else block
    if pending:
        block = pending + b"\n"
        yield _quote_from(block) if quote_from else block


def _quote_from(block: bytes) -> bytes:
    """``>`` before every line of ``block`` (whole lines) that starts with ``From ``."""
    block = block.replace(b"\nFrom ", b"\n>From ")
    return b">" + block if block.startswith(b"From ") else block


def format_message(
    *,
    sender: str,
    recipient: str,
    orig_recipient: str,
    content: Iterable[bytes],
    when: float,
    delivered_to: bool = True,
) -> Iterator[bytes]:
    """Every byte of one mbox entry, streamed: From_ line, headers, quoted body, blank line."""
    yield from_line(sender, when)
    yield envelope_headers(sender, recipient, orig_recipient, delivered_to=delivered_to)
    yield from message_lines(content, quote_from=True)
    yield b"\n"


def mbox_dsn(err: int, default: str) -> str:
    """The enhanced status for a mailbox errno.

    EAGAIN/ESTALE → 4.2.0 (mailbox busy), ENOSPC/EIO → 4.3.0 (mail system full
    or sick: we defer, a safer default than Postfix's bounce for EIO),
    EDQUOT/EFBIG → 5.2.2 (mailbox full), anything else → ``default``.
    """
    if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ESTALE):
        return "4.2.0"
    if err in (errno.ENOSPC, errno.EIO):
        return "4.3.0"
    if err in (errno.EDQUOT, errno.EFBIG):
        return "5.2.2"
    return default


# ---------------------------------------------------------------------------
# Locking
# ---------------------------------------------------------------------------


class MailboxError(Exception):
    """A delivery problem with its enhanced status code and diagnostic text."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text


def _strerror(err: int) -> str:
    return os.strerror(err)


@functools.cache
def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "-"


def _lock_owner() -> str:
    """What a dotlock made by this process says: ``PID postier PIDNS``."""
    return f"{os.getpid()} postier {_pid_namespace()}\n"


class DotLock:
    """``PATH.lock`` created with O_CREAT|O_EXCL; stale ones are removed.

    A lock file older than ``stale_lock_time`` seconds is considered left over
    by a dead process and removed, as by Postfix. Safer than Postfix, a lock that
    postier made says who holds it (``PID postier PIDNS``): when that process no
    longer exists in our PID namespace, the lock is removed at once, so a delivery
    agent killed with SIGKILL does not block the mailbox for ``stale_lock_time``.
    Locks made by other programs (mutt, procmail…) only ever go stale by age.
    ``acquire`` tries ``attempts`` times, ``delay`` seconds apart, then raises
    MailboxError 4.2.0. With ``may_fail`` (Postfix's "dotlock may fail", used for
    external files), a lock file that cannot be created for any reason other than
    an existing lock (EACCES in a directory the user cannot write, EROFS…) is
    skipped: ``acquire`` returns with ``held`` False and the kernel locks alone
    protect the file.
    """

    def __init__(
        self,
        path: str,
        *,
        attempts: int,
        delay: float,
        stale_lock_time: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        may_fail: bool = False,
    ) -> None:
        self.lock_path = path + ".lock"
        self.attempts = max(1, attempts)
        self.delay = delay
        self.stale_lock_time = stale_lock_time
        self.clock = clock
        self.sleep = sleep
        self.may_fail = may_fail
        self.held = False

    def acquire(self) -> None:
        last = errno.EEXIST
        wait = False
        for _ in range(self.attempts):
            if wait:
                self.sleep(self.delay)
            try:
                fd = os.open(
                    self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
                )
            except FileExistsError:
                last = errno.EEXIST
                wait = not self._remove_if_stale()  # a stale lock gone: try again at once
                continue
            except OSError as exc:
                if self.may_fail:
                    return  # not a lock held by another: deliver under the kernel locks
                raise MailboxError(
                    mbox_dsn(exc.errno or 0, "4.2.0"),
                    f"unable to create lock file {self.lock_path}: {_strerror(exc.errno or 0)}",
                ) from exc
            try:
                os.write(fd, _lock_owner().encode())
            except OSError:
                pass  # an empty lock still locks; it only goes stale by age
            finally:
                os.close(fd)
            self.held = True
            return
        raise MailboxError(
            "4.2.0", f"unable to create lock file {self.lock_path}: {_strerror(last)}"
        )

    def _remove_if_stale(self) -> bool:
        """Remove the lock file if stale; True if it is gone (removed, or released)."""
        try:
            st = os.lstat(self.lock_path)
        except FileNotFoundError:
            return True
        if self.clock() - st.st_mtime > self.stale_lock_time or self._holder_gone(st):
            with suppress(FileNotFoundError):
                os.unlink(self.lock_path)
            return True
        return False

    def _holder_gone(self, st: os.stat_result) -> bool:
        """True when the lock is one of ours and the process that made it has exited."""
        if not stat.S_ISREG(st.st_mode) or st.st_size > 128:
            return False
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            if os.fstat(fd).st_ino != st.st_ino:
                return False  # replaced meanwhile: a new holder
            fields = os.read(fd, 128).decode("ascii", "replace").split()
        except OSError:
            return False
        finally:
            os.close(fd)
        if len(fields) != 3 or fields[1] != "postier" or not fields[0].isdigit():
            return False
        if fields[2] != _pid_namespace():
            return False  # another PID namespace (a container): its PIDs mean nothing here
        try:
            os.kill(int(fields[0]), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False  # EPERM: it exists
        return False

    def release(self) -> None:
        if self.held:
            self.held = False
            with suppress(FileNotFoundError):
                os.unlink(self.lock_path)


def kernel_lock(
    fd: int,
    method: str,
    *,
    attempts: int,
    delay: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take an exclusive ``fcntl`` (POSIX record) or ``flock`` lock on ``fd``.

    Non-blocking attempts, ``delay`` apart; after ``attempts`` failures raise
    MailboxError 4.2.0 "unable to lock for exclusive access: ...".
    """
    last = errno.EAGAIN
    for attempt in range(max(1, attempts)):
        if attempt:
            sleep(delay)
        try:
            if method == "fcntl":
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            last = exc.errno or errno.EAGAIN
            if last not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                break
    raise MailboxError(
        mbox_dsn(last, "4.2.0") if last != errno.EACCES else "4.2.0",
        f"unable to lock for exclusive access: {_strerror(last)}",
    )


# ---------------------------------------------------------------------------
# Delivery
# ---------------------------------------------------------------------------


def _dir_writable_by(directory: str, uid: int, gid: int, groups: Sequence[int]) -> bool:
    """Whether ``uid`` (with ``gid``/``groups``) may create files in ``directory``."""
    try:
        st = os.lstat(directory)  # a symlinked directory is never trusted as root's
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return True  # so delivery runs with the user's privileges, never root's
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR and st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid or st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IWOTH and st.st_mode & stat.S_IXOTH)


def _open_mailbox(path: str, uid: int | None, gid: int | None, chown: bool) -> int:
    """Open ``path`` for appending, creating it 0600 when missing; refuse symlinks.

    When ``chown`` is true (we created the file as root on the user's behalf)
    the new file is given to ``uid``/``gid``.
    """
    # O_NONBLOCK: a FIFO planted at the path fails (ENXIO) instead of blocking the agent;
    # _check_opened then refuses anything but a regular file.
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK
    for _ in range(3):
        try:
            fd = os.open(path, flags)
            os.set_blocking(fd, True)
            return fd
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MailboxError("5.2.0", "cannot open file: file is a symbolic link") from exc
            if exc.errno == errno.ENXIO:
                raise MailboxError("5.2.0", "cannot open file: file is not a regular file") from exc
            raise
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            os.set_blocking(fd, True)
        except FileExistsError:
            continue  # someone created it meanwhile: open it as an existing file
        if chown and uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
        return fd
    raise MailboxError("4.2.0", "cannot open file: file status changed unexpectedly")


def _check_opened(path: str, fd: int, uid: int | None, strict_ownership: bool) -> None:
    """The open file must be the regular, singly linked file at ``path``, owned by ``uid``."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise MailboxError("5.2.0", "cannot open file: file is not a regular file")
    if st.st_nlink != 1:
        raise MailboxError("5.2.0", f"cannot open file: file has {st.st_nlink} hard links")
    try:
        now = os.lstat(path)
    except OSError as exc:
        raise MailboxError("4.2.0", "target file status changed unexpectedly") from exc
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        raise MailboxError("4.2.0", "target file status changed unexpectedly")
    if strict_ownership and uid is not None and privs.running_as_root() and st.st_uid != uid:
        raise MailboxError(
            "4.2.0", f"file {path} should be owned by uid {uid}, not by uid {st.st_uid}"
        )


def _append(
    fd: int, entry: Iterable[bytes], orig_size: int, size_limit: int, do_fsync: bool
) -> None:
    """Write ``entry`` at the end of ``fd``; on any error truncate back to ``orig_size``."""
    total = orig_size
    buffer = bytearray()
    try:
        for piece in entry:
            buffer += piece
            if len(buffer) >= _CHUNK:
                total += len(buffer)
                if size_limit and total > size_limit:
                    raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
                write_all(fd, buffer)
                buffer.clear()
        total += len(buffer)
        if size_limit and total > size_limit:
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        write_all(fd, buffer)
        if do_fsync:
            os.fsync(fd)
    except OSError as exc:
        _truncate(fd, orig_size)
        raise MailboxError(
            mbox_dsn(exc.errno or 0, "5.2.0"),
            f"error writing message: {_strerror(exc.errno or 0)}",
        ) from exc
    except MailboxError:
        _truncate(fd, orig_size)
        raise
    except Exception as exc:
        # Reading the message failed (queue file trouble): keep the mailbox intact.
        _truncate(fd, orig_size)
        raise MailboxError("4.3.0", f"error reading message: {exc}") from exc


def _truncate(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass


def deliver_mbox(
    path: str,
    *,
    sender: str,
    recipient: str,
    orig_recipient: str,
    content: Iterable[bytes],
    arrival: float,
    size_limit: int,
    locks: Sequence[str],
    uid: int | None,
    gid: int | None,
    fsync: bool = True,
    user: str = "",
    groups: Sequence[int] | None = None,
    delivered_to: bool = True,
    lock_attempts: int = DELIVER_LOCK_ATTEMPTS.default_value(),
    lock_delay: float = DELIVER_LOCK_DELAY.default_value(),
    stale_lock_time: float = STALE_LOCK_TIME.default_value(),
    strict_ownership: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    sync_later: list[int] | None = None,
    privileged_ok: bool = True,
    dotlock_may_fail: bool = False,
) -> DeliveryStatus:
    """Append one message to the mbox file ``path`` and say how it went.

    With ``fsync=False`` and a ``sync_later`` list, a duplicate of the descriptor written
    to is appended to that list: the caller fsyncs and closes it (group commit) before it
    says the message was delivered. ``privileged_ok=False`` (mailboxes under a user's
    home directory) never uses root's privileges, whatever the directory's mode.

    ``content`` is the message as queued (first header first, LF line ends).
    ``arrival`` is the From_ line time stamp (Postfix stamps the delivery time,
    so the local agent passes ``time.time()``). ``size_limit`` is
    mailbox_size_limit (0 = none): the file may not grow beyond it.
    ``locks`` is mailbox_delivery_lock, any of ``fcntl``, ``flock``, ``dotlock``;
    the dotlock is taken first, then the kernel locks, each retried
    ``lock_attempts`` times ``lock_delay`` seconds apart (deliver_lock_attempts,
    deliver_lock_delay); a ``PATH.lock`` older than ``stale_lock_time`` is removed.
    ``dotlock_may_fail`` (external files): a dotlock that cannot be created for a
    reason other than another's lock is skipped, as Postfix's MBOX_DOT_LOCK_MAY_FAIL.

    When running as root with ``uid`` given, the file is opened and created with
    the recipient's effective IDs (``gid``, and ``groups`` — default just
    ``gid``); when the parent directory is not writable by the recipient (a
    system spool such as ``/var/mail``, root:mail 2775) the dotlock and the
    mailbox are created with root privileges instead, and a new mailbox is
    given to ``uid``/``gid``. A new mailbox has mode 0600. A symbolic link, a
    non-regular file, a file with several hard links, or (strict_ownership,
    as root) a file not owned by ``uid`` is refused.

    Outcomes (diagnostic prefixed "cannot update mailbox PATH for user USER. "):
    ``2.0.0 delivered to mailbox``; 4.2.0 lock or race trouble; 4.3.0 disk full,
    I/O error or unreadable message; 5.2.2 "error writing message: File too
    large" when the size limit would be passed; 5.2.0 unusable mailbox file.
    On every failure the file is truncated back to its original size.
    """
    who = user or recipient.rpartition("@")[0] or recipient
    prefix = f"cannot update mailbox {path} for user {who}. "
    unknown = [m for m in locks if m not in LOCK_METHODS]
    if unknown:
        return deferred(
            "4.3.5",
            f"mail system configuration error: unknown lock method "
            f"{unknown[0]!r} in mailbox_delivery_lock",
        )
    root = privs.running_as_root() and uid is not None
    the_groups = list(groups) if groups is not None else ([gid] if gid is not None else [])
    privileged = bool(
        root
        and privileged_ok
        and uid is not None
        and not _dir_writable_by(
            os.path.dirname(os.path.abspath(path)),
            uid,
            gid if gid is not None else -1,
            the_groups,
        )
    )

    def identity() -> AbstractContextManager[None]:
        if privileged or not root:
            return privs.as_user(None, None)
        return privs.as_user(uid, gid, the_groups)

    try:
        with ExitStack() as stack:
            # One switch of identity covers the dotlock and the open: each switch is
            # six set*id system calls (about 17 us), and nothing runs in between.
            with identity():
                if "dotlock" in locks:
                    dot = DotLock(
                        path,
                        attempts=lock_attempts,
                        delay=lock_delay,
                        stale_lock_time=stale_lock_time,
                        sleep=sleep,
                        may_fail=dotlock_may_fail,
                    )
                    dot.acquire()

                    def release_dot() -> None:
                        with identity():
                            dot.release()

                    stack.callback(release_dot)
                fd = _open_mailbox(path, uid, gid, chown=privileged)
            stack.callback(os.close, fd)
            _check_opened(path, fd, uid if root else None, strict_ownership)
            for method in ("fcntl", "flock"):
                if method in locks:
                    kernel_lock(fd, method, attempts=lock_attempts, delay=lock_delay, sleep=sleep)
            orig_size = os.lseek(fd, 0, os.SEEK_END)
            entry = format_message(
                sender=sender,
                recipient=recipient,
                orig_recipient=orig_recipient,
                content=content,
                when=arrival,
                delivered_to=delivered_to,
            )
            _append(fd, entry, orig_size, size_limit, fsync)
            if not fsync and sync_later is not None:
                sync_later.append(os.dup(fd))  # the caller fsyncs this very file
    except MailboxError as exc:
        return _failure(exc.dsn, prefix + exc.text)
    except OSError as exc:
        # Open/stat trouble: permissions and the like are fixable by the
        # administrator, so defer (safer than Postfix's 5.2.0); a directory bounces.
        err = exc.errno or 0
        dsn = "5.2.0" if err == errno.EISDIR else mbox_dsn(err, "4.2.0")
        return _failure(dsn, prefix + f"cannot open file: {_strerror(err)}")
    return sent("delivered to mailbox")


def _failure(dsn: str, text: str) -> DeliveryStatus:
    if dsn.startswith("5."):
        return bounced(dsn, text)
    return deferred(dsn if dsn.startswith("4.") else "4.3.0", text)
