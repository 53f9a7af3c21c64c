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

This is an adapter (file system only). Queue files whose name starts with ``.``
(writers' temporary files, see ``queue.file``) are never listed by ``scan``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator

from postier.config import params
from postier.queue.file import TMP_PREFIX, fsync_dir
from postier.queue.ids import is_long_queue_id, usec_of

#: Directories holding queue files (a message's state).
STATES = ("incoming", "active", "deferred", "hold", "corrupt")
#: Per-message logs (bounce/defer/trace), flush, saved, and the IPC/pid directories.
OTHER = ("bounce", "defer", "trace", "flush", "saved", "private", "public", "pid")
ALL = STATES + OTHER

HASH_QUEUE_NAMES: tuple[str, ...] = tuple(params.HASH_QUEUE_NAMES.default_value())
HASH_QUEUE_DEPTH = params.HASH_QUEUE_DEPTH.default_value()

#: Temporary files older than this (seconds) are debris of a crashed writer.
STALE_TMP_AGE = 3600.0

_MODES = {"public": 0o755, "pid": 0o755}


def ensure(queue_dir: str, uid: int | None, gid: int | None) -> None:
    """Create queue_dir and every subdirectory; as root, give them to uid/gid.

    State directories and ``private`` are 0700, ``public`` and ``pid`` 0755; ``pid``
    stays owned by root (as Postfix). Existing directories get their mode fixed.
    """
    os.makedirs(queue_dir, mode=0o755, exist_ok=True)
    root = os.geteuid() == 0
    for name in ALL:
        p = os.path.join(queue_dir, name)
        mode = _MODES.get(name, 0o700)
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, mode)
        st = os.stat(p)
        if st.st_mode & 0o7777 != mode:
            os.chmod(p, mode)
        if root and name != "pid" and (uid is not None or gid is not None):
            want_uid = st.st_uid if uid is None else uid
            want_gid = st.st_gid if gid is None else gid
            if (st.st_uid, st.st_gid) != (want_uid, want_gid):
                os.chown(p, want_uid, want_gid)


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
