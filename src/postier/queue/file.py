"""One queue file per message: the content, then the envelope, then a completion mark.

Follows Postfix's queue file idea (cleanup(8), qmgr(8)): a file counts only once it is
complete, a delivered recipient is marked in place, every state change is a rename.

Format (all offsets in bytes)::

    PQ1\\n                         magic and version (4 bytes)
    E<16 hex digits>\\n            offset of the envelope segment; zeros until commit
    <content>                     the message as written by ``write()`` (LF line ends)
    T <arrival time>\\n            envelope segment, written by ``commit()``
    S <sender as JSON string>\\n
    A <[name, value] as JSON>\\n            (any number)
    R<s> <[address, orig] as JSON>\\n        (one per recipient; s is R pending, D done)
    X\\n                           completion mark

The offset is written as 16 lower-case hex digits; all zeros means "not committed".
Text after ``T``/``S``/``A``/``R`` is JSON (``ensure_ascii``), so any address or value
(including lone surrogates from undecodable bytes) round-trips and no record can
contain a newline. The content is opaque bytes (8-bit, ``From `` lines, anything).

A writer creates ``incoming/.tmp-PID-N`` (a name ``dirs.scan`` never lists), streams the
content (64 KiB buffer), then at commit appends the envelope and the completion mark,
fills in the offset (in the buffer when nothing was flushed yet, else with pwrite),
fsyncs the file, renames it to ``incoming/QUEUE_ID`` and fsyncs the directory: only
then is the message durable and visible, and only then may smtpd answer 250. A small
message costs open, fstat, write, fsync, close, rename, fsync(dir): two fsyncs. The
directory descriptors are opened once per process and kept.

A crash at any step leaves either a temp file (never listed; removed by
``dirs.recover`` when stale) or a complete queue file. A file without the mark, or with
a zero offset, is refused by ``QueueFile.open`` with ``CorruptQueueFile``. When the
directory fsync fails after the rename, the file is unlinked again so that a message
the client was told failed is not delivered as well.

``mark_done`` overwrites one status byte (``R`` → ``D``) and fsyncs. The fsync and
rename calls go through the module-level ``_fsync`` and ``_rename`` so that tests can
inject crashes between the steps.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

from postier.queue.ids import new_long_queue_id, new_queue_id

MAGIC = b"PQ1\n"
HEADER_SIZE = len(MAGIC) + 18  # "E" + 16 hex digits + "\n"
TMP_PREFIX = ".tmp-"
_BUFSIZE = 1 << 16

_fsync: Callable[[int], None] = os.fsync
_rename: Callable[[str, str], None] = os.rename
_counter = itertools.count()
_dir_fds: dict[str, int] = {}
_dir_lock = threading.Lock()
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()
    # The cached directory descriptors stay valid in the child (same open directories).


os.register_at_fork(after_in_child=_after_fork)


class CorruptQueueFile(Exception):
    """An incomplete (crash while writing) or garbled queue file."""


@dataclass
class Recipient:
    address: str
    orig: str = ""
    done: bool = False


@dataclass
class Envelope:
    sender: str
    recipients: list[Recipient]
    arrival: float
    attrs: dict[str, str] = field(default_factory=dict)


def fsync_dir(path: str) -> None:
    """fsync a directory (a rename in it is durable after this); fds are cached."""
    fd = _dir_fds.get(path)
    if fd is None:
        with _dir_lock:
            fd = _dir_fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                _dir_fds[path] = fd
    _fsync(fd)


class GroupSync:
    """Group commit of a directory: one fsync covers every rename made before it began.

    Threads that committed queue files call ``sync()``; when an fsync of the directory
    is already running (and so may have begun before their rename), they wait for it and
    then for one more, which the first of them starts for all. Under load, many messages
    share one directory fsync; alone, a message costs exactly one, as without it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._started = 0  # generation of the last fsync begun
        self._done = 0  # generation of the last fsync finished
        self._running = False
        self._failed: dict[int, OSError] = {}

    def sync(self) -> None:
        with self._cond:
            need = self._started + 1  # an fsync that begins after our rename
            while self._done < need:
                if not self._running:
                    self._running = True
                    self._started += 1
                    gen = self._started
                    break
                self._cond.wait()
            else:
                self._raise_if_failed(need)
                return
        error: OSError | None = None
        try:
            fsync_dir(self.path)
        except OSError as exc:
            error = exc
        with self._cond:
            self._running = False
            self._done = gen
            if error is not None:
                self._failed[gen] = error
            self._cond.notify_all()
            self._raise_if_failed(gen)

    def _raise_if_failed(self, gen: int) -> None:
        # Generations run one at a time, so the fsync numbered ``need`` is the one
        # that covered a waiter.
        exc = self._failed.get(gen)
        for old in [g for g in self._failed if g < self._done - 1000]:
            del self._failed[old]  # long past: no caller can still be waiting for these
        if exc is not None:
            raise exc


def forget_dir_fds() -> None:
    """Close the cached directory descriptors (tests, or after the queue moved)."""
    with _dir_lock:
        for fd in _dir_fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        _dir_fds.clear()


class QueueWriter:
    """Writes one new message into ``incoming/``; see the module docstring."""

    def __init__(self, queue_dir: str, fd: int, tmp_path: str, queue_id: str, fsync: bool) -> None:
        self.queue_dir = queue_dir
        self.queue_id = queue_id
        self._fd = fd
        self._tmp_path = tmp_path
        self._fsync = fsync
        self._buf = bytearray()
        self._size = 0
        self._flushed = False
        self._closed = False

    @classmethod
    def create(
        cls, queue_dir: str, *, fsync: bool = True, long_queue_ids: bool = False,
    ) -> QueueWriter:
        """A new temp file in incoming/; ``queue_id`` is assigned now (enable_long_queue_ids
        selects the long form)."""
        incoming = os.path.join(queue_dir, "incoming")
        while True:
            tmp = os.path.join(incoming, f"{TMP_PREFIX}{_pid}-{next(_counter)}")
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:
                continue
        make_id = new_long_queue_id if long_queue_ids else new_queue_id
        queue_id = make_id(os.fstat(fd).st_ino, time.time_ns() // 1000)
        writer = cls(queue_dir, fd, tmp, queue_id, fsync)
        writer._buf += MAGIC + b"E" + b"0" * 16 + b"\n"
        return writer

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        """Append content; buffered, large pieces go straight to the file."""
        if not data:
            return
        self._size += len(data)
        if len(self._buf) + len(data) < _BUFSIZE:
            self._buf += data
            return
        self._flush()
        if len(data) >= _BUFSIZE:
            _write_all(self._fd, data)
        else:
            self._buf += data

    def _flush(self) -> None:
        if self._buf:
            _write_all(self._fd, self._buf)
            self._buf.clear()
        self._flushed = True

    def commit(self, envelope: Envelope, dir_sync: GroupSync | None = None) -> str:
        """Make the message durable and visible in incoming/; returns the queue ID.

        ``dir_sync`` shares the fsync of incoming/ with concurrent commits (smtpd
        passes one per process); without it the directory is fsynced for this message.
        """
        if self._closed:
            raise ValueError("queue file already committed or aborted")
        env_offset = HEADER_SIZE + self._size
        offset_record = f"E{env_offset:016x}\n".encode()
        self._buf += encode_envelope(envelope)
        if not self._flushed:
            self._buf[len(MAGIC):HEADER_SIZE] = offset_record
            self._flush()
        else:
            self._flush()
            os.pwrite(self._fd, offset_record, len(MAGIC))
        if self._fsync:
            _fsync(self._fd)
        self._closed = True
        os.close(self._fd)
        incoming = os.path.join(self.queue_dir, "incoming")
        final = os.path.join(incoming, self.queue_id)
        # The ID holds our inode: no other live file can have this name.
        _rename(self._tmp_path, final)
        self._tmp_path = final
        if self._fsync:
            try:
                if dir_sync is not None:
                    dir_sync.sync()
                else:
                    fsync_dir(incoming)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(final)
                raise
        self._tmp_path = ""
        return self.queue_id

    def abort(self) -> None:
        """Forget the message: close and remove the file unless committed. Idempotent."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)
        if self._tmp_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp_path)
            self._tmp_path = ""


def _write_all(fd: int, data: bytes | bytearray) -> None:
    done = 0
    with memoryview(data) as view:  # released before the caller resizes ``data``
        while done < len(view):
            done += os.write(fd, view[done:])


def encode_envelope(env: Envelope) -> bytes:
    lines = [f"T {env.arrival:.6f}", f"S {json.dumps(env.sender)}"]
    lines += [f"A {json.dumps([k, v])}" for k, v in env.attrs.items()]
    for r in env.recipients:
        lines.append(f"R{'D' if r.done else 'R'} {json.dumps([r.address, r.orig])}")
    lines.append("X")
    return ("\n".join(lines) + "\n").encode()


def _json_str(raw: bytes) -> str:
    value = json.loads(raw)
    if not isinstance(value, str):
        raise ValueError("string expected")
    return value


def _json_pair(raw: bytes) -> tuple[str, str]:
    value = json.loads(raw)
    if not (isinstance(value, list) and len(value) == 2
            and isinstance(value[0], str) and isinstance(value[1], str)):
        raise ValueError("pair of strings expected")
    return value[0], value[1]


class QueueFile:
    """An existing, complete queue file, open for delivery."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.queue_id = os.path.basename(path)
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            raise

    @classmethod
    def open(cls, path: str) -> QueueFile:
        return cls(path)

    def _parse(self) -> None:
        head = os.pread(self._fd, HEADER_SIZE, 0)
        if len(head) != HEADER_SIZE or not head.startswith(MAGIC) or head[4:5] != b"E":
            raise CorruptQueueFile(f"{self.path}: bad header")
        try:
            env_offset = int(head[5:21], 16)
        except ValueError:
            raise CorruptQueueFile(f"{self.path}: bad envelope offset") from None
        if env_offset < HEADER_SIZE:
            raise CorruptQueueFile(f"{self.path}: incomplete queue file")
        size = os.fstat(self._fd).st_size
        if env_offset + 2 > size:
            raise CorruptQueueFile(f"{self.path}: truncated queue file")
        segment = os.pread(self._fd, size - env_offset, env_offset)
        if not segment.endswith(b"\nX\n"):
            raise CorruptQueueFile(f"{self.path}: no completion mark")
        self.content_offset = HEADER_SIZE
        self.content_size = env_offset - HEADER_SIZE
        self._status_offsets: list[int] = []
        sender: str | None = None
        arrival = 0.0
        attrs: dict[str, str] = {}
        rcpts: list[Recipient] = []
        pos = env_offset
        try:
            for line in segment.split(b"\n")[:-2]:
                kind = line[:1]
                if kind == b"T" and line[1:2] == b" ":
                    arrival = float(line[2:])
                elif kind == b"S" and line[1:2] == b" ":
                    sender = _json_str(line[2:])
                elif kind == b"A" and line[1:2] == b" ":
                    key, value = _json_pair(line[2:])
                    attrs[key] = value
                elif kind == b"R" and line[1:2] in (b"R", b"D") and line[2:3] == b" ":
                    address, orig = _json_pair(line[3:])
                    rcpts.append(Recipient(address, orig, line[1:2] == b"D"))
                    self._status_offsets.append(pos + 1)
                else:
                    raise ValueError(f"unknown record {line[:10]!r}")
                pos += len(line) + 1
        except (ValueError, TypeError) as exc:
            raise CorruptQueueFile(f"{self.path}: {exc}") from None
        if sender is None:
            raise CorruptQueueFile(f"{self.path}: no sender record")
        self.envelope = Envelope(sender, rcpts, arrival, attrs)

    def iter_content(self, chunk_size: int = 65536) -> Iterator[bytes]:
        pos = self.content_offset
        end = self.content_offset + self.content_size
        while pos < end:
            data = os.pread(self._fd, min(chunk_size, end - pos), pos)
            if not data:
                raise CorruptQueueFile(f"{self.path}: truncated content")
            pos += len(data)
            yield data

    def mark_done(self, index: int) -> None:
        """Record durably that recipient ``index`` needs no more delivery attempts."""
        if self.envelope.recipients[index].done:
            return
        os.pwrite(self._fd, b"D", self._status_offsets[index])
        _fsync(self._fd)
        self.envelope.recipients[index].done = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> QueueFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
