"""postcat: show a queue file's envelope, headers and body, as Postfix's postcat(1).

Follows postcat(1): ``postcat -q ID`` finds the message in the incoming, active,
deferred and hold queues (the label names it ``deferred/A/ID``, relative to the queue
directory), ``postcat FILE`` reads a file by name; ``-e`` the envelope records, ``-h``
the header, ``-b`` the body (from the empty line that ends the header), any
combination; none of them means all three. The section lines (``*** ENVELOPE RECORDS
LABEL ***``, ``*** MESSAGE CONTENTS …``, ``*** HEADER EXTRACTED …``, ``*** MESSAGE FILE
END …``) are printed when the envelope is, as Postfix does.

postier's queue file holds fewer records than Postfix's (see docs/decisions.md): the
envelope shows ``message_size`` (size with CRLF line ends, content offset, recipient count),
``message_arrival_time``, ``sender``, each ``named_attribute``, and per recipient
``named_attribute: notify_flags=N`` (Postfix's bit mask) and ``dsn_orig_rcpt``,
``original_recipient`` and ``recipient`` (``done_recipient`` once settled). The
"extracted" section holds what was appended after the completion mark: each recorded
delivery status, as ``delivery_status: ADDRESS: DSN REASON`` (a postier record).

``envelope_lines`` and ``split_content`` are pure; ``main`` reads the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NoReturn

from postier.config import paths
from postier.config.errors import ConfigError
from postier.config.params import QUEUE_DIRECTORY
from postier.config.settings import Config
from postier.queue import showq
from postier.queue.file import CorruptQueueFile, QueueFile

#: postcat -q looks in these queues, in this order.
QUEUES = ("incoming", "active", "deferred", "hold")

#: RFC 3461 NOTIFY keywords as Postfix's bit mask (dsn_mask.h).
NOTIFY_BITS = {"NEVER": 1, "SUCCESS": 2, "FAILURE": 4, "DELAY": 8}


def notify_flags(notify: str) -> int:
    """``"SUCCESS,DELAY"`` → 10, Postfix's ``notify_flags`` value; unknown words count 0."""
    return sum(NOTIFY_BITS.get(word.strip().upper(), 0) for word in notify.split(","))


def arrival_text(seconds: float) -> str:
    return time.asctime(time.localtime(seconds))


def envelope_lines(qf: QueueFile, when: Callable[[float], str] = arrival_text) -> list[str]:
    """The ENVELOPE RECORDS section's lines (no newlines) of an open queue file."""
    env = qf.envelope
    lines = [
        f"message_size: {showq.message_size(qf):>15} {qf.content_offset:>15} "
        f"{len(env.recipients):>15}",
        f"message_arrival_time: {when(env.arrival)}",
        f"sender: {env.sender}",
    ]
    lines += [f"named_attribute: {name}={value}" for name, value in env.attrs.items()]
    for r in env.recipients:
        if r.dsn_notify:
            lines.append(f"named_attribute: notify_flags={notify_flags(r.dsn_notify)}")
        if r.dsn_orcpt:
            lines.append(f"named_attribute: dsn_orig_rcpt={r.dsn_orcpt}")
        lines.append(f"original_recipient: {r.orig or r.address}")
        lines.append(f"{'done_recipient' if r.done else 'recipient'}: {r.address}")
    return lines


def extracted_lines(qf: QueueFile) -> list[str]:
    """The HEADER EXTRACTED section's lines: the statuses recorded after delivery attempts."""
    rcpts = qf.envelope.recipients
    return [
        f"delivery_status: {rcpts[index].address}: {status} {reason}".rstrip()
        for index, status, reason in qf.status_records
    ]


def split_content(chunks: Iterable[bytes]) -> tuple[bytes, bytes]:
    """(header, body) of a message: the body starts at the empty line that ends the header
    (which it keeps); a message without one is all header."""
    content = b"".join(chunks)
    if content.startswith(b"\n"):
        return b"", content
    cut = content.find(b"\n\n")
    if cut < 0:
        return content, b""
    return content[:cut + 1], content[cut + 1:]


def _text(lines: Iterable[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape")


def render(qf: QueueFile, label: str, *, envelope: bool, header: bool, body: bool,
           when: Callable[[float], str] = arrival_text) -> Iterator[bytes]:
    """postcat's output for one open queue file, in pieces of bytes."""
    head, rest = split_content(qf.iter_content()) if header or body else (b"", b"")
    if envelope:
        yield _text([f"*** ENVELOPE RECORDS {label} ***", *envelope_lines(qf, when)])
        yield _text([f"*** MESSAGE CONTENTS {label} ***"])
    shown = (head if header else b"") + (rest if body else b"")
    if shown:
        yield shown if shown.endswith(b"\n") else shown + b"\n"
    if envelope:
        yield _text([f"*** HEADER EXTRACTED {label} ***", *extracted_lines(qf),
                     f"*** MESSAGE FILE END {label} ***"])


# --- the command ----------------------------------------------------------------------------

USAGE = ("postcat [-b (body text)] [-c config_dir] [-e (envelope records)] "
         "[-h (header text)] [-q (access queue)] [-v] [file(s)...]")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"postcat: {message}\npostcat: fatal: usage: {USAGE}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="postcat", usage=USAGE, add_help=False,
                description="Show queue files: envelope, header, body.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-b", action="store_true", help="show the body")
    p.add_argument("-c", dest="config_dir", metavar="config_dir")
    p.add_argument("-e", action="store_true", help="show the envelope records")
    p.add_argument("-h", action="store_true", help="show the header")
    p.add_argument("-q", action="store_true", help="the arguments are queue IDs")
    p.add_argument("-v", action="count", default=0, help="verbose (no effect)")
    p.add_argument("files", nargs="*", metavar="file")
    return p


def _locate(queue_dir: str, queue_id: str) -> tuple[str, str] | None:
    """(path, label) of message ``queue_id``; None when it is in no queue."""
    if "/" in queue_id or queue_id.startswith("."):
        return None
    found = showq.find(queue_dir, queue_id, QUEUES)
    if found is None:
        return None
    _state, path = found
    return path, os.path.relpath(path, queue_dir)


def main(argv: list[str] | None = None, *, out: BinaryIO | None = None) -> int:
    """``postcat``; returns the exit status (0; 1 when a file cannot be shown; 2 usage)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.files:
        _parser().error("no queue file given (reading standard input is not supported)")
    sink = out if out is not None else sys.stdout.buffer
    envelope, header, body = args.e, args.h, args.b
    if not (envelope or header or body):
        envelope = header = body = True
    targets: list[tuple[str, str]] = []
    if args.q:
        config_dir = os.path.abspath(paths.config_dir(args.config_dir))
        try:
            queue_dir = Config.from_dir(config_dir)[QUEUE_DIRECTORY]
        except ConfigError as exc:
            print(f"postcat: fatal: {exc}", file=sys.stderr)
            return 1
        for queue_id in args.files:
            where = _locate(queue_dir, queue_id)
            if where is None:
                print(f"postcat: fatal: open queue file {queue_id}: No such file or directory",
                      file=sys.stderr)
                return 1
            targets.append(where)
    else:
        targets = [(name, name) for name in args.files]
    for path, label in targets:
        try:
            with QueueFile.open(path, readonly=True) as qf:
                for piece in render(qf, label, envelope=envelope, header=header, body=body):
                    sink.write(piece)
        except OSError as exc:
            sink.flush()
            print(f"postcat: fatal: open {label}: {exc.strerror}", file=sys.stderr)
            return 1
        except CorruptQueueFile as exc:
            sink.flush()
            print(f"postcat: fatal: {label}: not a postier queue file ({exc})", file=sys.stderr)
            return 1
    sink.flush()
    return 0
