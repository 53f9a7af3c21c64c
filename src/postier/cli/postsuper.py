"""postsuper: delete, hold, release and requeue queued messages, as Postfix's postsuper(1).

Follows postsuper(1): ``-d ID`` deletes (default queues: hold, incoming, active,
deferred), ``-h ID`` puts on hold (from incoming, active, deferred), ``-H ID`` releases
from hold (into deferred, due at the next deferred queue scan), ``-r ID`` requeues
(from hold, incoming, active, deferred into incoming, where qmgr routes it anew; qmgr
is told the ID when it runs). ``ID`` may be ``ALL``, or ``-`` to read IDs from the
standard input, one per line; each option may be repeated; queue names after the
options replace the default queues; ``maildrop`` (files Postfix's postdrop(1) wrote,
not yet taken by pickup) is accepted for ``-d`` only, as Postfix's. Each message named
by its ID is reported (``postsuper: ID: removed`` / ``placed on hold`` / ``released from hold`` /
``requeued``); every operation asked for ends with its count, Postfix's words
(``postsuper: Deleted: 3 messages``). An invalid ID draws ``warning: invalid mail queue
id``; an unknown queue name is fatal (``invalid directory name``). The lines go to the
standard error stream and, as Postfix's, to the mail log.

Every change is one rename (or unlink) of the queue file, atomic, so it is safe while
postier runs, even against a message qmgr holds in ``active/``: qmgr works through its
open descriptor and, when it finds the file moved or gone at the end of its attempt,
leaves it alone (``qmgr.Qmgr._settle``) — a deleted message is not queued again, a
held or requeued one keeps the delivered recipients marked done. It works the same
while postier is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TextIO

from postier.config import paths
from postier.config.errors import ConfigError
from postier.config.params import QUEUE_DIRECTORY
from postier.config.settings import Config
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.queue import control as qmgr_control
from postier.queue import dirs
from postier.queue.ids import is_queue_id

#: The queue names postsuper accepts (Postfix's, saved aside). ``maildrop`` holds
#: postdrop(1) files that pickup has not taken: they can only be deleted (``-d``), as
#: with Postfix (``-h``/``-H``/``-r`` find nothing there).
QUEUES = ("incoming", "active", "deferred", "hold", "corrupt", "maildrop")
MAILDROP_OPERATIONS = frozenset({"d"})


class Operation(enum.Enum):
    """One postsuper operation: its option, default queues, destination and words."""

    DELETE = ("d", ("hold", "incoming", "active", "deferred"), None, "removed", "Deleted")
    HOLD = ("h", ("incoming", "active", "deferred"), "hold", "placed on hold", "Placed on hold")
    RELEASE = ("H", ("hold",), "deferred", "released from hold", "Released from hold")
    REQUEUE = ("r", ("hold", "incoming", "active", "deferred"), "incoming", "requeued",
               "Requeued")

    def __init__(self, option: str, queues: tuple[str, ...], destination: str | None,
                 done: str, summary: str) -> None:
        self.option = option
        self.default_queues = queues
        self.destination = destination
        self.done = done  # per message: "postsuper: ID: requeued"
        self.summary = summary  # at the end: "postsuper: Requeued: 2 messages"


@dataclass
class Outcome:
    """What one run did: lines to report (in order) and IDs to announce to qmgr."""

    lines: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)


def count_line(op: Operation, n: int) -> str:
    """``Deleted: 1 message`` / ``Requeued: 3 messages``."""
    return f"{op.summary}: {n} message{'' if n == 1 else 's'}"


def _act(queue_dir: str, op: Operation, state: str, queue_id: str, now: float) -> bool:
    """Do ``op`` to ``queue_id`` in ``state``; False when it is not there (or gone meanwhile)."""
    if op.destination == state or (state == "maildrop" and
                                    op.option not in MAILDROP_OPERATIONS):
        return False
    try:
        if op.destination is None:
            os.unlink(dirs.path(queue_dir, state, queue_id))
            return True
        new_path = dirs.move(queue_dir, queue_id, state, op.destination)
    except FileNotFoundError:
        return False
    if op is Operation.RELEASE:
        # The deferred file's mtime is its next attempt time: due at the next scan.
        with contextlib.suppress(FileNotFoundError):
            os.utime(new_path, (now, now))
    return True


def run(
    queue_dir: str, requests: Sequence[tuple[Operation, Sequence[str]]],
    queues: Sequence[str] | None = None, *, now: float | None = None,
) -> Outcome:
    """Do every ``(operation, IDs)`` request, in Postfix's order of operations.

    ``IDs`` are queue IDs or ``ALL``; ``queues`` replaces each operation's default
    queues. Blocking (renames and unlinks); raises ``OSError`` for anything but a
    message that is not (or no longer) there.
    """
    when = time.time() if now is None else now
    out = Outcome()
    for op in Operation:
        if not any(o is op for o, _ in requests):
            continue
        ids = [i for o, group in requests if o is op for i in group]
        states = tuple(queues) if queues else op.default_queues
        done = 0
        for queue_id in ids:
            if queue_id == "ALL":
                for state in states:
                    for qid, _path in list(dirs.scan(queue_dir, state)):
                        if _act(queue_dir, op, state, qid, when):
                            done += 1
                            if op is Operation.REQUEUE:
                                out.requeued.append(qid)
                continue
            if not is_queue_id(queue_id):
                out.lines.append(f"warning: invalid mail queue id: {queue_id}")
                continue
            for state in states:
                if _act(queue_dir, op, state, queue_id, when):
                    done += 1
                    out.lines.append(f"{queue_id}: {op.done}")
                    if op is Operation.REQUEUE:
                        out.requeued.append(queue_id)
                    break
        out.lines.append(count_line(op, done))
    return out


def read_ids(stream: TextIO) -> list[str]:
    """The queue IDs of ``-d -`` and the like: the first word of each non-empty line."""
    return [line.split()[0] for line in stream if line.strip()]


# --- the command ----------------------------------------------------------------------------

USAGE = ("postsuper [-c config_dir] [-d queue_id (delete)] [-h queue_id (hold)] "
         "[-H queue_id (un-hold)] [-r queue_id (requeue)] [-v (verbose)] [queue...]")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"postsuper: {message}\npostsuper: fatal: usage: {USAGE}\n")


def _tagged(op: Operation) -> Callable[[str], tuple[Operation, str]]:
    """argparse's ``type`` for an operation's option: the value, tagged with ``op``."""
    return lambda value: (op, value)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="postsuper", usage=USAGE, add_help=False,
                description="Delete, hold, release or requeue queued messages.")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("-c", dest="config_dir", metavar="config_dir")
    for op, text in ((Operation.DELETE, "delete"), (Operation.HOLD, "put on hold"),
                     (Operation.RELEASE, "release from hold"),
                     (Operation.REQUEUE, "requeue for new routing")):
        p.add_argument(f"-{op.option}", dest="requests", action="append", default=[],
                       type=_tagged(op), metavar="queue_id",
                       help=f"{text} (ALL: every message; -: IDs from standard input)")
    p.add_argument("-v", action="count", default=0, help="verbose (no effect)")
    p.add_argument("queues", nargs="*", metavar="queue")
    return p


def _logger(cfg: Config) -> Log | None:
    """The mail log, when it is a file or syslog (not the terminal the lines go to anyway)."""
    try:
        log = log_for_config("postsuper", cfg)
    except OSError:
        return None
    return None if log.target == "stderr" else log


def main(argv: list[str] | None = None, *, stdin: TextIO | None = None) -> int:
    """``postsuper``; returns the exit status (0, 1 on a fatal error, 2 on a usage error)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.requests:
        _parser().error("no operation requested")
    for q in args.queues:
        if q not in QUEUES:
            print(f"postsuper: fatal: invalid directory name: {q}", file=sys.stderr)
            return 1
    stdin_ids: list[str] | None = None
    requests: list[tuple[Operation, list[str]]] = []
    for op, value in args.requests:
        if value == "-":
            if stdin_ids is None:
                stdin_ids = read_ids(stdin or sys.stdin)
            requests.append((op, stdin_ids))
        else:
            requests.append((op, [value]))
    config_dir = os.path.abspath(paths.config_dir(args.config_dir))
    try:
        cfg = Config.from_dir(config_dir)
    except ConfigError as exc:
        print(f"postsuper: fatal: {exc}", file=sys.stderr)
        return 1
    queue_dir = cfg[QUEUE_DIRECTORY]
    try:
        outcome = run(queue_dir, requests, args.queues or None)
    except OSError as exc:
        print(f"postsuper: fatal: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    log = _logger(cfg)
    try:
        _report(outcome.lines, log)
    finally:
        if log is not None:
            log.close()
    if outcome.requeued:
        _announce(queue_dir, outcome.requeued)
    return 0


def _report(lines: Iterable[str], log: Log | None) -> None:
    for line in lines:
        print(f"postsuper: {line}", file=sys.stderr)
        if log is not None:
            emit: Callable[[str], None] = log.info
            if line.startswith("warning: "):
                emit, line = log.warning, line.removeprefix("warning: ")
            emit(line)


def _announce(queue_dir: str, queue_ids: Iterable[str]) -> None:
    """Tell a running qmgr about requeued messages (it finds them within a second anyway)."""
    for queue_id in queue_ids:
        try:
            qmgr_control.send(queue_dir, queue_id.encode("ascii"))
        except (qmgr_control.QmgrDown, OSError):
            return  # qmgr down (QmgrDown) or unreachable: its scan of incoming/ will do
