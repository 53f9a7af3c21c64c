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
    R<s> <[address, orig, dsn_notify, dsn_orcpt, status, reason] as JSON>\\n
                                  (one per recipient; s is R pending, D done)
    X\\n                           completion mark
    L <[index, status, reason] as JSON>\\n   (any number, appended after delivery attempts)
    W\\n                           (appended once the delay warning was sent)

The offset is written as 16 lower-case hex digits; all zeros means "not committed".
Text after ``T``/``S``/``A``/``R``/``L`` is JSON (``ensure_ascii``), so any address or
value (including lone surrogates from undecodable bytes) round-trips and no record can
contain a newline. The content is opaque bytes (8-bit, ``From `` lines, anything).

The recipient record (``Recipient``) holds what delivery needs: the address, the
original recipient (``orig``, Postfix's ``orig_rcpt``), the DSN ``NOTIFY`` value as
given in RCPT TO (``dsn_notify``, RFC 3461, e.g. ``"SUCCESS,DELAY"``; ``""`` when not
given), the DSN ``ORCPT`` (``dsn_orcpt``, ``addr-type;address``, ``""`` when not
given), and the last delivery ``status`` (the DSN code, e.g. ``"4.4.1"``) with its
``reason``. Files written before these fields existed have the two-element form
``[address, orig]``; they are read with the other four empty.

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

Two durable updates change a committed file, each ending with an fsync of the file:

* ``mark_done`` overwrites one status byte (``R`` → ``D``) in place: the recipient
  needs no more delivery attempts.
* ``record_status`` appends ``L`` records after the completion mark, one per
  recipient, all in one write: the recipient's last status and reason (the queue
  manager records them when it defers). When a file is read, the last ``L`` record of
  a recipient wins over earlier ones and over the values in its ``R`` record. An
  append torn by a crash leaves at most one incomplete line at the end of the file
  (no newline yet): it is ignored when reading, and overwritten by the next append.
  Appending was chosen over rewriting the envelope (a new file, its fsync, a rename
  and a directory fsync) because it costs one write and one fsync, never moves the
  records that ``mark_done`` overwrites, and keeps the file's name and inode.

The fsync and rename calls go through the module-level ``_fsync`` and ``_rename`` so
that tests can inject crashes between the steps.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from postier.queue.ids import new_long_queue_id, new_queue_id
from postier.safeio import write_all

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
    """One envelope recipient and what delivery needs to know about it.

    ``orig``: the original recipient (before aliases/rewriting), ``""`` when the same.
    ``done``: no more delivery attempts are needed (delivered, or bounced).
    ``dsn_notify``: RFC 3461 NOTIFY as given (``"NEVER"`` or a comma list of
    ``SUCCESS``/``FAILURE``/``DELAY``), ``""`` when not given.
    ``dsn_orcpt``: RFC 3461 ORCPT (``"rfc822;user@example.com"``), ``""`` when not given.
    ``status``/``reason``: the last delivery attempt's DSN code (``"4.4.1"``) and text,
    ``""`` before any attempt.
    """

    address: str
    orig: str = ""
    done: bool = False
    dsn_notify: str = ""
    dsn_orcpt: str = ""
    status: str = ""
    reason: str = ""


#: The envelope attribute that marks a SMTPUTF8 message (RFC 6531), absent otherwise:
#: ``SMTPUTF8_REQUESTED`` when it was received with the SMTPUTF8 parameter (the SMTP
#: client needs a server offering SMTPUTF8 only for a UTF-8 envelope address), or
#: ``SMTPUTF8_REQUIRED`` when cleanup found UTF-8 in its envelope or headers
#: (``smtputf8_autodetect_classes``: it needs such a server whatever the envelope). A
#: notice about such a message carries the same value.
ATTR_SMTPUTF8 = "smtputf8"
SMTPUTF8_REQUESTED = "1"
SMTPUTF8_REQUIRED = "required"


@dataclass
class Envelope:
    """A message's envelope: sender, recipients, arrival (seconds since the epoch) and
    named attributes (strings: ``origin``, ``client_name``, DSN's ``dsn_ret``, …)."""

    sender: str
    recipients: list[Recipient]
    arrival: float
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def smtputf8(self) -> bool:
        """A SMTPUTF8 message, requested or required (``ATTR_SMTPUTF8``)."""
        return self.attrs.get(ATTR_SMTPUTF8, "") in (SMTPUTF8_REQUESTED, SMTPUTF8_REQUIRED)

    @property
    def smtputf8_required(self) -> bool:
        """Cleanup found UTF-8 in the envelope or headers (``SMTPUTF8_REQUIRED``)."""
        return self.attrs.get(ATTR_SMTPUTF8, "") == SMTPUTF8_REQUIRED


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
            write_all(self._fd, data)
        else:
            self._buf += data

    def _flush(self) -> None:
        if self._buf:
            write_all(self._fd, self._buf)
            self._buf.clear()
        self._flushed = True

    def commit(self, envelope: Envelope, dir_sync: GroupSync | None = None,
               state: str = "incoming") -> str:
        """Make the message durable and visible in incoming/ (``state``: another queue
        directory, ``hold`` for access(5) HOLD); returns the queue ID.

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
        incoming = os.path.join(self.queue_dir, state)
        final = os.path.join(incoming, self.queue_id)
        # The ID holds our inode: no other live file can have this name.
        _rename(self._tmp_path, final)
        self._tmp_path = final
        if self._fsync:
            try:
                if dir_sync is not None and state == "incoming":
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


def encode_envelope(env: Envelope) -> bytes:
    lines = [f"T {env.arrival:.6f}", f"S {json.dumps(env.sender)}"]
    lines += [f"A {json.dumps([k, v])}" for k, v in env.attrs.items()]
    for r in env.recipients:
        fields = [r.address, r.orig, r.dsn_notify, r.dsn_orcpt, r.status, r.reason]
        lines.append(f"R{'D' if r.done else 'R'} {json.dumps(fields)}")
    lines.append("X")
    return ("\n".join(lines) + "\n").encode()


def _json_str(raw: bytes) -> str:
    value = json.loads(raw)
    if not isinstance(value, str):
        raise ValueError("string expected")
    return value


def _json_strings(raw: bytes, *counts: int) -> list[str]:
    value = json.loads(raw)
    if not (isinstance(value, list) and len(value) in counts
            and all(isinstance(v, str) for v in value)):
        raise ValueError(f"list of {' or '.join(map(str, counts))} strings expected")
    return value


def _json_pair(raw: bytes) -> tuple[str, str]:
    key, value = _json_strings(raw, 2)
    return key, value


def _recipient(raw: bytes, done: bool) -> Recipient:
    """An ``R`` record: today's six fields, or the two (address, orig) of older files."""
    fields = _json_strings(raw, 6, 2)
    return Recipient(fields[0], fields[1], done, *fields[2:])


def _status_record(raw: bytes, nrcpt: int) -> tuple[int, str, str]:
    value = json.loads(raw)
    if not (isinstance(value, list) and len(value) == 3 and type(value[0]) is int
            and 0 <= value[0] < nrcpt and isinstance(value[1], str)
            and isinstance(value[2], str)):
        raise ValueError("[recipient index, status, reason] expected")
    return value[0], value[1], value[2]


class QueueFile:
    """An existing, complete queue file, open for delivery (or, ``readonly``, for reading:
    the queue tools; ``mark_done``/``record_status`` then raise ``OSError``)."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.queue_id = os.path.basename(path)
        self._fd = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            raise

    @classmethod
    def open(cls, path: str, *, readonly: bool = False) -> QueueFile:
        return cls(path, readonly=readonly)

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
        lines = segment.split(b"\n")
        # The last piece has no newline: "" when the file ends with one, else a torn append.
        torn = lines.pop()
        try:
            mark = lines.index(b"X")
        except ValueError:
            raise CorruptQueueFile(f"{self.path}: no completion mark") from None
        self.content_offset = HEADER_SIZE
        self.content_size = env_offset - HEADER_SIZE
        self._status_offsets: list[int] = []
        #: Where the envelope segment starts; the ``L`` records read, in file order.
        self.envelope_offset = env_offset
        self.status_records: list[tuple[int, str, str]] = []
        self._end = size - len(torn)  # where the next L record goes
        self._file_size = size
        sender: str | None = None
        arrival = 0.0
        attrs: dict[str, str] = {}
        rcpts: list[Recipient] = []
        pos = env_offset
        try:
            for line in lines[:mark]:
                kind = line[:1]
                if kind == b"T" and line[1:2] == b" ":
                    arrival = float(line[2:])
                elif kind == b"S" and line[1:2] == b" ":
                    sender = _json_str(line[2:])
                elif kind == b"A" and line[1:2] == b" ":
                    key, value = _json_pair(line[2:])
                    attrs[key] = value
                elif kind == b"R" and line[1:2] in (b"R", b"D") and line[2:3] == b" ":
                    rcpts.append(_recipient(line[3:], line[1:2] == b"D"))
                    self._status_offsets.append(pos + 1)
                else:
                    raise ValueError(f"unknown record {line[:10]!r}")
                pos += len(line) + 1
            self.delay_warned = False
            for line in lines[mark + 1:]:
                if line == b"W":
                    self.delay_warned = True
                    continue
                if line[:2] != b"L ":
                    raise ValueError(f"unknown record after the mark {line[:10]!r}")
                index, status, reason = _status_record(line[2:], len(rcpts))
                self.status_records.append((index, status, reason))
                rcpts[index].status = status
                rcpts[index].reason = reason
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

    def record_status(self, updates: Mapping[int, tuple[str, str]]) -> None:
        """Record durably each recipient's last status and reason: index → (DSN code, text).

        One ``L`` record per entry, all appended in one write after the completion mark,
        then one fsync. Raises ``IndexError`` for an unknown index (nothing written),
        ``OSError`` when the write or the fsync fails (the append is cut off again as far
        as possible; a remnant is ignored by readers and overwritten by the next call).
        """
        if not updates:
            return
        nrcpt = len(self.envelope.recipients)
        if any(not 0 <= i < nrcpt for i in updates):
            raise IndexError("recipient index out of range")
        data = "".join(
            f"L {json.dumps([i, status, reason])}\n" for i, (status, reason) in updates.items()
        ).encode()
        self._append(data)
        for i, (status, reason) in updates.items():
            self.envelope.recipients[i].status = status
            self.envelope.recipients[i].reason = reason

    def record_delay_warning(self) -> None:
        """Record durably that the delay notice was sent (a ``W`` record; qmgr(8)'s
        warning time): ``delay_warned`` is True from now on. Raises ``OSError``."""
        self._append(b"W\n")
        self.delay_warned = True

    def _append(self, data: bytes) -> None:
        """Append records after the completion mark in one write, then fsync."""
        end = self._end + len(data)
        try:
            write_all(self._fd, data, self._end)
            if self._file_size > end:  # the rest of an append torn earlier
                os.ftruncate(self._fd, end)
            _fsync(self._fd)
        except BaseException:
            self._file_size = max(self._file_size, end)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise
        self._end = self._file_size = end

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
