"""The queue's directories, which are the states of a message, and moves between them.

Follows Postfix's layout under ``queue_directory`` (qmgr(8), postconf(5)
``hash_queue_names``/``hash_queue_depth``): incoming, active, deferred, hold, corrupt
and the per-message logs bounce/defer; private/ and public/ hold the sockets, pid/ the
master's pid file. A message changes state only by ``rename``. At start, what a crash
left in active/ goes back to incoming/ (``recover``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from postier.queue.file import TMP_PREFIX

STATES = ("incoming", "active", "deferred", "hold", "corrupt")
LOG_DIRS = ("bounce", "defer", "trace", "flush", "saved")
HASHED = frozenset({"deferred", "defer"})  # Postfix's default hash_queue_names
HASH_DEPTH = 1
STALE_TMP_SECONDS = 3600.0


def path(queue_dir: str, state: str, queue_id: str) -> str:
    if state in HASHED:
        return os.path.join(queue_dir, state, *queue_id[:HASH_DEPTH], queue_id)
    return os.path.join(queue_dir, state, queue_id)


def ensure(queue_dir: str, uid: int | None, gid: int | None) -> None:
    """Create every queue directory with Postfix's modes; owned by mail_owner when root."""
    os.makedirs(queue_dir, mode=0o755, exist_ok=True)
    wanted = [(d, 0o700) for d in (*STATES, *LOG_DIRS, "private")]
    wanted += [("public", 0o755), ("pid", 0o755)]
    for name, mode in wanted:
        full = os.path.join(queue_dir, name)
        try:
            os.mkdir(full, mode)
        except FileExistsError:
            pass
        os.chmod(full, mode)
        if uid is not None and gid is not None and name != "pid" and os.geteuid() == 0:
            st = os.stat(full)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(full, uid, gid)


def move(queue_dir: str, queue_id: str, src_state: str, dst_state: str) -> str:
    """Rename a message into another state; returns its new path."""
    src = path(queue_dir, src_state, queue_id)
    dst = path(queue_dir, dst_state, queue_id)
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        if not os.path.exists(src):
            raise
        os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
        os.rename(src, dst)
    return dst


def scan(queue_dir: str, state: str) -> Iterator[tuple[str, str]]:
    """(queue_id, path) of every complete message in a state (temp files are skipped)."""
    top = os.path.join(queue_dir, state)
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if state in HASHED and entry.is_dir(follow_symlinks=False):
            try:
                subs = list(os.scandir(entry.path))
            except FileNotFoundError:
                continue
            for sub in subs:
                if not sub.name.startswith("."):
                    yield sub.name, sub.path
        elif entry.is_file(follow_symlinks=False):
            yield entry.name, entry.path


def recover(queue_dir: str) -> int:
    """Move what a crash left in active/ back to incoming/; drop stale temp files."""
    moved = 0
    for queue_id, _ in list(scan(queue_dir, "active")):
        try:
            move(queue_dir, queue_id, "active", "incoming")
            moved += 1
        except FileNotFoundError:
            continue
    incoming = os.path.join(queue_dir, "incoming")
    now = time.time()
    try:
        entries = list(os.scandir(incoming))
    except FileNotFoundError:
        return moved
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX):
            try:
                if now - entry.stat().st_mtime > STALE_TMP_SECONDS:
                    os.unlink(entry.path)
            except FileNotFoundError:
                continue
    return moved
