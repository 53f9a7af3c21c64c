"""The pickup process: takes each file Postfix's postdrop(1) left in ``maildrop/`` into the queue.

Follows Postfix's pickup(8): a file is taken once complete (postdrop sets its owner's
execute bit last: mode ``0744``), parsed (``queue.postdrop``), logged as
``QUEUE_ID: uid=UID from=<SENDER>`` and queued through cleanup (``cleanup.Cleanup``,
the one way into the queue) with a ``Received: by HOST (MAIL_NAME, from userid UID)``
header on top (dated with the file's arrival time); the envelope is qualified with
``myorigin`` there, missing Message-Id:/Date:/From: headers are added (``From: FULL
NAME <sender>`` with ``sendmail -F``'s or the user's full name, Date: the arrival) and
header addresses rewritten, as cleanup(8) does for local submissions. The maildrop
file is removed only once the queue file is durable (``CleanupMessage.commit`` fsyncs
it and ``incoming/``). A file that cannot be parsed goes to ``corrupt/`` with a
warning; a queue write failure (the environment) leaves the file for the next scan.

Wake-up as Postfix's: ``public/pickup`` is a FIFO (mode 0622, owned by
``mail_owner``) on which postdrop writes one byte after each file; ``maildrop/`` is
also scanned at start and every ``WAKEUP_SECONDS`` (master.cf's ``60``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from postier import daemon
from postier.bounce import notify
from postier.cleanup.cleanup import Cleanup, QmgrTrigger, Qualify
from postier.cleanup.headers import rfc5322_date
from postier.cleanup.rewrite import rewriting_from_config
from postier.config.params import (
    APPEND_AT_MYORIGIN,
    APPEND_DOT_MYDOMAIN,
    ENABLE_LONG_QUEUE_IDS,
    HOPCOUNT_LIMIT,
    MAIL_NAME,
    MYDOMAIN,
    MYHOSTNAME,
    MYORIGIN,
    QUEUE_DIRECTORY,
    SMTPUTF8_AUTODETECT_CLASSES,
)
from postier.config.settings import Config
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.queue import dirs, postdrop
from postier.queue.file import Envelope
from postier.rewrite.virtual import ExpansionError
from postier.tables import TableError, Tables

WAKEUP_SECONDS = 60.0
#: postdrop's mode of a complete file: the owner's read, write and execute bits.
READY_MODE = stat.S_IRWXU
FIFO_MODE = 0o622
#: The smtputf8_autodetect_classes class of mail submitted with sendmail(1).
ORIGIN = "sendmail"


def received_header(*, by_host: str, mail_name: str, uid: int, queue_id: str,
                    when: datetime) -> bytes:
    """The Received: header of mail picked up from maildrop, as Postfix's cleanup
    writes it: ``Received: by HOST (MAIL_NAME, from userid UID)`` / ``\\tid QID; DATE``."""
    return (f"Received: by {by_host} ({mail_name}, from userid {uid})\n"
            f"\tid {queue_id}; {rfc5322_date(when)}\n").encode()


def envelope_of(drop: postdrop.DropFile, mtime: float) -> Envelope:
    """The queue envelope of a postdrop message (pure): its DSN RET/ENVID as the
    ``bounce.notify`` attributes, the ``origin`` class ``sendmail``; the arrival is the
    file's ``T`` record, else its modification time (seconds)."""
    attrs = {"origin": ORIGIN}
    if drop.ret:
        attrs[notify.ATTR_RET] = drop.ret
    if drop.envid:
        attrs[notify.ATTR_ENVID] = drop.envid
    return Envelope(drop.sender or "", list(drop.recipients), drop.arrival or mtime, attrs)


@dataclass(frozen=True)
class Outcome:
    """What became of one maildrop file: ``queue_id`` when queued (``""`` otherwise),
    ``state`` one of ``queued``, ``corrupt``, ``skipped`` (not complete or not a file),
    ``deferred`` (left for the next scan)."""

    state: str
    queue_id: str = ""


class Pickup:
    """One pickup process's state: the configuration, cleanup, the log."""

    def __init__(self, cfg: Config, log: Log, *, fsync: bool = True) -> None:
        self.cfg = cfg
        self.log = log
        self.queue_dir = cfg[QUEUE_DIRECTORY]
        self.maildrop = os.path.join(self.queue_dir, "maildrop")
        qualify = Qualify(cfg[MYORIGIN], cfg[APPEND_AT_MYORIGIN], cfg[APPEND_DOT_MYDOMAIN],
                          cfg[MYDOMAIN])
        self.tables = Tables(warn=log.warning)
        self.trigger = QmgrTrigger(self.queue_dir, log)
        self.cleanup = Cleanup(
            self.queue_dir, log=log, trigger=self.trigger, fsync=fsync,
            long_queue_ids=cfg[ENABLE_LONG_QUEUE_IDS], qualify=qualify,
            hopcount_limit=cfg[HOPCOUNT_LIMIT],
            smtputf8_autodetect=cfg[SMTPUTF8_AUTODETECT_CLASSES],
            rewriting=rewriting_from_config(cfg, self.tables, qualify.address))

    def close(self) -> None:
        """Close the qmgr trigger socket."""
        self.trigger.close()

    def scan(self) -> list[Outcome]:
        """Take every complete file of ``maildrop/`` (blocking); one outcome per file."""
        try:
            names = sorted(e.name for e in os.scandir(self.maildrop)
                           if not e.name.startswith("."))
        except FileNotFoundError:
            return []
        return [self.take(name) for name in names]

    def take(self, name: str) -> Outcome:
        """Queue the maildrop file ``name`` and remove it (blocking); see the module
        docstring. Raises nothing for a bad file or a failed queue write (logged)."""
        path = os.path.join(self.maildrop, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return Outcome("skipped")
        except OSError as exc:
            self.log.warning(f"open maildrop/{name}: {exc.strerror}")
            return Outcome("skipped")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_mode & stat.S_IRWXU != READY_MODE:
                return Outcome("skipped")  # postdrop still writing, or not a queue file
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        finally:
            os.close(fd)
        try:
            drop = postdrop.parse(data)
            if not drop.recipients:
                raise postdrop.CorruptDropFile("no recipients")
        except postdrop.CorruptDropFile as exc:
            return self._corrupt(name, str(exc))
        return self._queue(name, path, drop, st)

    def _corrupt(self, name: str, why: str) -> Outcome:
        self.log.warning(f"maildrop/{name}: {why}: moving to the corrupt queue")
        try:
            os.rename(os.path.join(self.maildrop, name),
                      os.path.join(self.queue_dir, "corrupt", name))
        except OSError as exc:
            self.log.warning(f"maildrop/{name}: cannot move to corrupt/: {exc.strerror}")
            return Outcome("deferred")
        return Outcome("corrupt")

    def _queue(self, name: str, path: str, drop: postdrop.DropFile,
               st: os.stat_result) -> Outcome:
        cfg = self.cfg
        envelope = envelope_of(drop, st.st_mtime)
        try:
            msg = self.cleanup.open()
        except OSError as exc:
            self.log.warning(f"maildrop/{name}: cannot create a queue file: {exc.strerror}")
            return Outcome("deferred")
        try:
            self.log.info(f"{msg.queue_id}: uid={st.st_uid} from=<{envelope.sender}>")
            arrival = datetime.fromtimestamp(envelope.arrival).astimezone()
            msg.add_missing_headers(envelope.sender, cfg[MYHOSTNAME])
            msg.headers.full_name = drop.full_name  # From: Full Name <sender>
            msg.headers.arrival = arrival
            msg.rewrite_headers()
            msg.begin_content()
            msg.write(received_header(by_host=cfg[MYHOSTNAME], mail_name=cfg[MAIL_NAME],
                                      uid=st.st_uid, queue_id=msg.queue_id, when=arrival))
            msg.write(drop.content)
            msg.end_content()
            if msg.too_many_hops:
                msg.abort()
                return self._corrupt(name, "hopcount exceeded")
            queue_id = msg.commit(envelope)  # durable: file and incoming/ fsynced
        except (OSError, TableError, ExpansionError) as exc:
            msg.abort()
            self.log.warning(f"maildrop/{name}: cannot queue the message, will try again: "
                             f"{exc}")
            return Outcome("deferred")
        except Exception:
            msg.abort()
            raise
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # queued twice later is better than lost
            self.log.warning(f"maildrop/{name}: cannot remove after queueing as "
                             f"{queue_id}: {exc.strerror}")
        return Outcome("queued", queue_id)


def open_fifo(queue_dir: str, uid: int | None) -> int:
    """Create ``public/pickup`` as Postfix's master does (a FIFO, 0622, owned by
    ``mail_owner`` when ``uid`` is given) unless it is one already, and open it for
    reading without blocking (read-write, so that it never reads end-of-file).
    Returns the descriptor. Raises OSError."""
    path = dirs.public_path(queue_dir, "pickup")
    try:
        st = os.lstat(path)
        if not stat.S_ISFIFO(st.st_mode):
            os.unlink(path)
            raise FileNotFoundError(path)
    except FileNotFoundError:
        os.mkfifo(path, FIFO_MODE)
    os.chmod(path, FIFO_MODE)
    if uid is not None:
        os.chown(path, uid, -1)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


async def serve(pickup: Pickup, fifo: int, ready_fd: int, lifeline_fd: int,
                wakeup: float = WAKEUP_SECONDS) -> None:
    """Scan at start, on every byte on the FIFO and every ``wakeup`` seconds, until
    SIGTERM or the master's lifeline ends. The scans run in a thread (blocking I/O)."""
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    wake = asyncio.Event()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(fifo, 512)
        wake.set()

    loop.add_reader(fifo, readable)
    daemon.report_ready(ready_fd)
    try:
        while not stop.is_set():
            wake.clear()
            await loop.run_in_executor(None, pickup.scan)
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wakeup, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
    finally:
        loop.remove_reader(fifo)
        os.close(fifo)
        pickup.close()


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("pickup")
    parser.add_argument("--wakeup", type=float, default=WAKEUP_SECONDS)
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("pickup", cfg, foreground=args.foreground)

    def setup() -> Coroutine[Any, Any, None]:
        pickup = Pickup(cfg, log)
        uid = int(args.user.partition(":")[0]) if args.user else None
        fifo = open_fifo(pickup.queue_dir, uid)
        return serve(pickup, fifo, args.ready_fd, args.lifeline_fd, args.wakeup)

    return daemon.run(log, args.user, setup)


if __name__ == "__main__":
    sys.exit(main())
