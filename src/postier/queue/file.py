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

A writer creates ``incoming/.tmp-…`` (a name nobody scans), streams the content,
then at commit appends the envelope, fills in the offset, fsyncs the file, renames it
to ``incoming/QUEUE_ID`` and fsyncs the directory: only then is the message durable
and visible. ``mark_done`` overwrites one status byte and fsyncs. The fsync calls go
through ``_fsync`` so that tests can inject crashes between the steps.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

from postier.queue.ids import new_queue_id

MAGIC = b"PQ1\n"
HEADER_SIZE = len(MAGIC) + 18  # "E" + 16 hex digits + "\n"
TMP_PREFIX = ".tmp-"

_fsync: Callable[[int], None] = os.fsync
_counter = itertools.count()


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
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


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
        self._closed = False

    @classmethod
    def create(cls, queue_dir: str, *, fsync: bool = True) -> QueueWriter:
        incoming = os.path.join(queue_dir, "incoming")
        while True:
            tmp = os.path.join(incoming, f"{TMP_PREFIX}{os.getpid()}-{next(_counter)}")
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileExistsError:
                continue
        queue_id = new_queue_id(os.fstat(fd).st_ino, time.time_ns() // 1000)
        writer = cls(queue_dir, fd, tmp, queue_id, fsync)
        writer._buf += MAGIC + b"E" + b"0" * 16 + b"\n"
        return writer

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        self._buf += data
        if len(self._buf) >= 1 << 16:
            self._flush()

    def _flush(self) -> None:
        view = memoryview(self._buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._buf.clear()

    def commit(self, envelope: Envelope) -> str:
        """Make the message durable and visible in incoming/; returns the queue ID."""
        env_offset = HEADER_SIZE + self._size
        self._buf += encode_envelope(envelope)
        self._flush()
        os.pwrite(self._fd, f"E{env_offset:016x}\n".encode(), len(MAGIC))
        if self._fsync:
            _fsync(self._fd)
        os.close(self._fd)
        self._closed = True
        incoming = os.path.join(self.queue_dir, "incoming")
        final = os.path.join(incoming, self.queue_id)
        if os.path.lexists(final):  # never overwrite a live message
            raise FileExistsError(final)
        os.rename(self._tmp_path, final)
        if self._fsync:
            fsync_dir(incoming)
        return self.queue_id

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)
        try:
            os.unlink(self._tmp_path)
        except FileNotFoundError:
            pass


def encode_envelope(env: Envelope) -> bytes:
    lines = [f"T {env.arrival:.6f}", f"S {json.dumps(env.sender)}"]
    lines += [f"A {json.dumps([k, v])}" for k, v in env.attrs.items()]
    for r in env.recipients:
        lines.append(f"R{'D' if r.done else 'R'} {json.dumps([r.address, r.orig])}")
    lines.append("X")
    return ("\n".join(lines) + "\n").encode()


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
                if kind == b"T":
                    arrival = float(line[2:])
                elif kind == b"S":
                    sender = json.loads(line[2:])
                elif kind == b"A":
                    key, value = json.loads(line[2:])
                    attrs[str(key)] = str(value)
                elif kind == b"R":
                    address, orig = json.loads(line[3:])
                    rcpts.append(Recipient(address, orig, line[1:2] == b"D"))
                    self._status_offsets.append(pos + 1)
                else:
                    raise ValueError(f"unknown record {line[:10]!r}")
                pos += len(line) + 1
        except ValueError as exc:
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
