"""The queue on disk: state directories under queue_directory, moves by rename.

Follows Postfix's qmgr(8) and postconf(5) (``queue_directory``, ``hash_queue_names``,
``hash_queue_depth``): a message's state is the directory its queue file is in
(incoming, active, deferred, hold, corrupt); a message changes state by rename(2),
which is atomic, so a crash leaves it in exactly one state. At start, messages in
``active/`` go back to ``incoming/`` (the queue manager lost its in-memory state).

Hashed queues (``deferred`` and ``defer`` by default) spread files over one-character
subdirectories named after the first characters of the queue ID: with depth 1,
``deferred/2/22D2A8871``; with depth 2, ``deferred/2/2/22D2A8871``. A long queue ID is
hashed on its microseconds written in hex, so both forms spread the same way.

Owners and modes are Postfix's (postfix-files, with Debian's ``maildrop`` 1730 and
``public`` 2710 ``postfix:postdrop``): ``ensure`` creates what is missing that way and
never changes an existing layout's modes; ``set_permissions`` repairs them, as
``postfix set-permissions`` does.

This is an adapter (file system only). Queue files whose name starts with ``.``
(writers' temporary files, see ``queue.file``) are never listed by ``scan``.
"""

from __future__ import annotations

import contextlib
import enum
import os
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postier.config import params
from postier.queue.file import TMP_PREFIX, fsync_dir
from postier.queue.ids import is_long_queue_id, usec_of

#: Directories holding queue files (a message's state).
STATES = ("incoming", "active", "deferred", "hold", "corrupt")
#: Per-message logs (bounce/defer/trace), flush, saved, maildrop, and the IPC/pid directories.
OTHER = ("bounce", "defer", "trace", "flush", "saved", "maildrop", "private", "public", "pid")
ALL = STATES + OTHER

HASH_QUEUE_NAMES: tuple[str, ...] = tuple(params.HASH_QUEUE_NAMES.default_value())
HASH_QUEUE_DEPTH = params.HASH_QUEUE_DEPTH.default_value()

#: Temporary files older than this (seconds) are debris of a crashed writer.
STALE_TMP_AGE = 3600.0


class Owner(enum.Enum):
    """Who owns a queue directory in Postfix's postfix-files: root or ``mail_owner``."""

    ROOT = "root"
    MAIL_OWNER = "mail_owner"


@dataclass(frozen=True)
class Perm:
    """One directory's Postfix permissions: owner, whether its group is ``setgid_group``
    (else Postfix leaves the group alone), and its mode as Debian's package sets it."""

    owner: Owner
    setgid_group: bool
    mode: int


_PRIVATE = Perm(Owner.MAIL_OWNER, False, 0o700)
#: Postfix's permissions for every queue directory (postfix-files, plus Debian's postinst:
#: maildrop 1730 and public 2710 ``postfix:postdrop``); ``""`` is queue_directory itself.
PERMS: dict[str, Perm] = {
    "": Perm(Owner.ROOT, False, 0o755),
    **{name: _PRIVATE for name in ALL},
    "maildrop": Perm(Owner.MAIL_OWNER, True, 0o1730),
    "public": Perm(Owner.MAIL_OWNER, True, 0o2710),
    "pid": Perm(Owner.ROOT, False, 0o755),
}


def _wanted(perm: Perm, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
    if uid is None:  # an ordinary user's instance: everything stays ours
        return None, None
    return (0 if perm.owner is Owner.ROOT else uid), (gid if perm.setgid_group else None)


def ensure(queue_dir: str, uid: int | None, setgid_gid: int | None) -> list[str]:
    """Create what is missing of the queue layout with Postfix's owners and modes.

    An existing directory keeps its mode and group (a layout Postfix made stays exactly as
    Postfix wants it, so ``postfix check`` stays clean); only a directory not owned by its
    Postfix owner is given to it, since the daemons could not write there otherwise.
    ``uid`` is ``mail_owner``'s and ``setgid_gid`` is ``setgid_group``'s (as root); None
    for both leaves everything owned by the caller (an ordinary user's instance).
    Returns one line per change made to an existing directory. Raises OSError.
    """
    changes: list[str] = []
    for name, perm in PERMS.items():
        p = os.path.join(queue_dir, name) if name else queue_dir
        want_uid, want_gid = _wanted(perm, uid, setgid_gid)
        try:
            os.mkdir(p, perm.mode & 0o777) if name else os.makedirs(p, 0o755)
        except FileExistsError:
            st = os.stat(p)
            if want_uid is not None and st.st_uid != want_uid:
                os.chown(p, want_uid, -1)
                changes.append(f"{p}: owner {st.st_uid} -> {want_uid}")
            continue
        if want_uid is not None or want_gid is not None:
            os.chown(p, -1 if want_uid is None else want_uid, -1 if want_gid is None else want_gid)
        os.chmod(p, perm.mode)  # after chown, which clears set-gid; mkdir obeys the umask
    return changes


def set_permissions(queue_dir: str, uid: int | None, setgid_gid: int | None) -> list[str]:
    """Repair the layout to Postfix's owners and modes, as ``postfix set-permissions``:
    missing directories are made, every existing one gets its owner, its group where
    Postfix sets one, and its mode. Returns one line per change. Raises OSError."""
    changes = ensure(queue_dir, uid, setgid_gid)
    for name, perm in PERMS.items():
        p = os.path.join(queue_dir, name) if name else queue_dir
        want_uid, want_gid = _wanted(perm, uid, setgid_gid)
        st = os.stat(p)
        new_uid = st.st_uid if want_uid is None else want_uid
        new_gid = st.st_gid if want_gid is None else want_gid
        if (new_uid, new_gid) != (st.st_uid, st.st_gid):
            os.chown(p, new_uid, new_gid)
            changes.append(f"{p}: owner {st.st_uid}:{st.st_gid} -> {new_uid}:{new_gid}")
        mode = stat.S_IMODE(os.stat(p).st_mode)
        if mode != perm.mode:
            os.chmod(p, perm.mode)
            changes.append(f"{p}: mode {mode:04o} -> {perm.mode:04o}")
    return changes


def public_path(queue_dir: str, service: str) -> str:
    """The socket where ``service`` (``qmgr``) takes triggers: ``QUEUE_DIR/public/SERVICE``."""
    return os.path.join(queue_dir, "public", service)


def _hash_parts(state: str, queue_id: str, hash_names: Iterable[str], depth: int) -> list[str]:
    if state not in hash_names or depth <= 0:
        return []
    key = queue_id
    if is_long_queue_id(queue_id):  # hash on the microseconds, as for short IDs
        usec = usec_of(queue_id)
        key = f"{usec:05X}" if usec is not None else queue_id
    return [key[i] for i in range(min(depth, len(key)))]


def path(
    queue_dir: str, state: str, queue_id: str, *,
    hash_names: Iterable[str] = HASH_QUEUE_NAMES, depth: int = HASH_QUEUE_DEPTH,
) -> str:
    """Where queue file ``queue_id`` lives in ``state``."""
    parts = _hash_parts(state, queue_id, hash_names, depth)
    return os.path.join(queue_dir, state, *parts, queue_id)


def move(
    queue_dir: str, queue_id: str, src_state: str, dst_state: str, *,
    hash_names: Iterable[str] = HASH_QUEUE_NAMES, depth: int = HASH_QUEUE_DEPTH,
) -> str:
    """Rename the queue file into ``dst_state``; returns its new path.

    Raises FileNotFoundError when it is not in ``src_state``. The hash subdirectory
    of the destination is created on demand. The directory is not fsynced: a move
    lost in a crash leaves the message in its old state, which is safe.
    """
    hn = tuple(hash_names)
    src = path(queue_dir, src_state, queue_id, hash_names=hn, depth=depth)
    dst = path(queue_dir, dst_state, queue_id, hash_names=hn, depth=depth)
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        if not os.path.lexists(src):
            raise
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
        os.rename(src, dst)
    return dst


def scan(
    queue_dir: str, state: str, *,
    hash_names: Iterable[str] = HASH_QUEUE_NAMES, depth: int = HASH_QUEUE_DEPTH,
) -> Iterator[tuple[str, str]]:
    """Yield (queue_id, path) of the queue files in ``state``; temp files are skipped.

    Hashed states are walked through their subdirectories (any depth up to
    ``depth``), and files left at the top level are listed too.
    """
    levels = depth if state in tuple(hash_names) else 0
    yield from _scan_dir(os.path.join(queue_dir, state), levels)


def _scan_dir(directory: str, levels: int) -> Iterator[tuple[str, str]]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            if levels > 0 and len(entry.name) == 1:
                yield from _scan_dir(entry.path, levels - 1)
        elif entry.is_file(follow_symlinks=False):
            yield entry.name, entry.path


def recover(queue_dir: str, *, now: float | None = None, stale_age: float = STALE_TMP_AGE) -> int:
    """At start: move every file in active/ back to incoming/; returns how many.

    Also removes writers' temporary files in incoming/ older than ``stale_age``
    (a writer that crashed before commit; such a message was never acknowledged).
    """
    moved = 0
    for queue_id, _p in list(scan(queue_dir, "active")):
        with contextlib.suppress(FileNotFoundError):
            os.rename(_p, os.path.join(queue_dir, "incoming", queue_id))
            moved += 1
    incoming = os.path.join(queue_dir, "incoming")
    if moved:
        fsync_dir(incoming)
    limit = (time.time() if now is None else now) - stale_age
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(incoming):
            if entry.name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < limit:
                        os.unlink(entry.path)
    return moved
