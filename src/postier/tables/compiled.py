"""Compiled tables: ``hash``, ``btree`` and ``lmdb``, stored with LMDB, built by postmap.

Follows postmap(1)/postalias(1) and DATABASE_README. Postfix writes ``hash``/``btree``
as Berkeley DB ``NAME.db`` and ``lmdb`` as ``NAME.lmdb``; postier writes its own
compiled format for ``hash`` and ``btree``: an LMDB file ``NAME.pdb`` (one file,
``subdir=False``, keys and values UTF-8, no trailing NUL), and for ``lmdb`` the same
layout in ``NAME.lmdb`` (a Postfix-made ``.lmdb`` is read too: keys with a trailing
NUL are tried). A Berkeley DB ``NAME.db`` left by Postfix, with no ``NAME.pdb``
beside it, is refused with "run postier postmap". The file is mapped read-only
(pages are shared between processes, so opening a large table does not grow each
worker by its size). A table rewritten by postmap (a new file renamed over the old)
is reopened at the next lookup after at most ``RECHECK_SECONDS``. As Postfix, a
database older than its source file is warned about when opened.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import lmdb

from postier.tables.base import TableError, TableOpenError, WarningSink, fold, no_warnings

#: The compiled file's suffix per table type (documented in docs/architecture.md).
SUFFIX = {"hash": ".pdb", "btree": ".pdb", "lmdb": ".lmdb"}
RECHECK_SECONDS = 1.0
_BDB_MAGIC = (b"\x00\x06\x15\x61", b"\x61\x15\x06\x00", b"\x00\x05\x31\x62",
              b"\x62\x31\x05\x00", b"\x00\x04\x22\x53", b"\x53\x22\x04\x00")


class _Shared:
    """The environments open in this process, one per file version (LMDB refuses to
    open one file twice in a process): (path, inode, mtime) -> [env, users]."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.envs: dict[tuple[str, int, int], list[Any]] = {}

    def acquire(self, path: str, st: os.stat_result) -> Any:
        key = (os.path.realpath(path), st.st_ino, st.st_mtime_ns)
        with self.lock:
            item = self.envs.get(key)
            if item is None:
                env = lmdb.open(path, subdir=False, readonly=True, lock=False,
                                max_readers=1024, readahead=False)
                item = self.envs[key] = [env, 0]
            item[1] += 1
            return item[0]

    def release(self, env: Any) -> None:
        with self.lock:
            for key, item in list(self.envs.items()):
                if item[0] is env:
                    item[1] -= 1
                    if item[1] <= 0:
                        del self.envs[key]
                        env.close()
                    return


_SHARED = _Shared()


def db_path(kind: str, name: str) -> str:
    """The compiled file of ``kind:name`` (``hash:/etc/aliases`` -> ``/etc/aliases.pdb``)."""
    return name + SUFFIX[kind]


def is_berkeley_db(path: str) -> bool:
    """Is ``path`` a Berkeley DB file (hash or btree magic at offset 12)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return False
    return len(head) == 16 and head[12:16] in _BDB_MAGIC


class CompiledTable:
    """``hash:NAME``, ``btree:NAME`` or ``lmdb:NAME``, answered from the mapped file."""

    pattern = False
    blocking = False

    def __init__(self, kind: str, name: str, *, warn: WarningSink = no_warnings,
                 clock: Any = time.monotonic, tool: str = "postmap") -> None:
        self.kind = kind
        self.name = name
        self.spec = f"{kind}:{name}"
        self.path = db_path(kind, name)
        self._clock = clock
        self._tool = tool
        self._env: Any = None
        self._stamp: tuple[int, int] = (0, 0)
        self._checked = 0.0
        self._open()
        if os.path.exists(name):
            try:
                if os.stat(name).st_mtime > os.stat(self.path).st_mtime:
                    warn(f"database {self.path} is older than source file {name}")
            except OSError:
                pass

    def _open(self) -> None:
        if not os.path.exists(self.path):
            bdb = name_db = self.name + ".db"
            if self.kind != "lmdb" and is_berkeley_db(name_db):
                raise TableOpenError(
                    f"{bdb} is a Berkeley DB file made by Postfix; postier reads its own "
                    f'compiled file {self.path}: run "postier {self._tool} {self.spec}"',
                    word=self.spec)
            raise TableOpenError(
                f"open database {self.path}: No such file or directory "
                f'(run "postier {self._tool} {self.spec}")', word=self.spec)
        try:
            st = os.stat(self.path)
            env = _SHARED.acquire(self.path, st)
        except (OSError, lmdb.Error) as exc:
            raise TableOpenError(f"open database {self.path}: {exc}", word=self.spec) from None
        if self._env is not None:
            _SHARED.release(self._env)
        self._env = env
        self._stamp = (st.st_ino, st.st_mtime_ns)
        self._checked = self._clock()

    def _fresh(self) -> None:
        now = self._clock()
        if now - self._checked < RECHECK_SECONDS:
            return
        self._checked = now
        st = os.stat(self.path)
        if (st.st_ino, st.st_mtime_ns) != self._stamp:
            self._open()

    def lookup(self, key: str) -> str | None:
        try:
            self._fresh()
            k = fold(key).encode("utf-8", "surrogateescape")
            with self._env.begin(buffers=False) as txn:
                got = txn.get(k)
                if got is None and self.kind == "lmdb":
                    got = txn.get(k + b"\0")
        except (OSError, lmdb.Error, TableOpenError) as exc:
            raise TableError(f"{self.spec}: {exc}") from None
        if got is None:
            return None
        return bytes(got).rstrip(b"\0").decode("utf-8", "surrogateescape")

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value), in key order (postmap -s)."""
        with self._env.begin() as txn:
            for k, v in txn.cursor():
                yield (bytes(k).rstrip(b"\0").decode("utf-8", "surrogateescape"),
                       bytes(v).rstrip(b"\0").decode("utf-8", "surrogateescape"))

    def close(self) -> None:
        if self._env is not None:
            _SHARED.release(self._env)
            self._env = None


# --- building (postmap / postalias) ---------------------------------------------------


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _write(path: str, pairs: Iterable[tuple[str, str]], *, base: str | None = None,
           delete: Iterable[str] = ()) -> None:
    """Write a new compiled file at ``path`` (atomically: a temporary file renamed):
    the table ``base`` (an existing compiled file) if given, plus ``pairs`` (later
    pairs replace earlier ones only when ``base`` is given: postmap -i), minus
    ``delete``."""
    tmp = f"{path}.tmp.{os.getpid()}"
    items = list(pairs)
    gone = [_encode(k) for k in delete]
    size = 1 << 20
    for k, v in items:
        size += 2 * (len(k) + len(v) + 64)
    if base is not None:
        size += 2 * os.path.getsize(base)
    while True:
        for leftover in (tmp, tmp + "-lock"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if base is not None:  # a copy of the current version, changed, renamed over it
            shutil.copyfile(base, tmp)
        env = lmdb.open(tmp, subdir=False, map_size=size, lock=False, sync=False,
                        metasync=False, writemap=False)
        try:
            with env.begin(write=True) as txn:
                for k, v in items:
                    txn.put(_encode(k), _encode(v), overwrite=base is not None)
                for gk in gone:
                    txn.delete(gk)
            env.sync(True)
            env.close()
            break
        except lmdb.MapFullError:
            env.close()
            size *= 2
    if os.path.exists(path):
        st = os.stat(path)
        with contextlib.suppress(OSError):
            os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
    else:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def build(kind: str, name: str, entries: Iterable[tuple[str, str]]) -> str:
    """Compile ``entries`` (folded keys; the first of a duplicate key wins, as postmap
    warns "duplicate entry") into ``kind:name``'s file; returns its path."""
    path = db_path(kind, name)
    seen: dict[str, str] = {}
    for k, v in entries:
        seen.setdefault(k, v)
    _write(path, seen.items())
    return path


def update(kind: str, name: str, add: Iterable[tuple[str, str]] = (),
           delete: Iterable[str] = ()) -> str:
    """postmap -i (add or replace) and -d (delete) on an existing compiled table."""
    path = db_path(kind, name)
    base = path if os.path.exists(path) else None
    _write(path, add, base=base, delete=[fold(k) for k in delete])
    return path


def has_key(kind: str, name: str, key: str) -> bool:
    """Is ``key`` in the compiled table (postmap -d reports a missing one)?"""
    table = CompiledTable(kind, name)
    try:
        return table.lookup(key) is not None
    finally:
        table.close()
