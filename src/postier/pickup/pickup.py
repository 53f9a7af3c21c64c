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

Wake-up as Postfix's: postdrop pokes ``public/pickup`` after each file (its
mail_trigger: a byte written to a FIFO, or to a connection to a UNIX-domain socket,
whichever is there). Of master.cf's pickup line, the type says which the pickup
process makes (owned by ``mail_owner``): ``unix`` (Postfix 3's and Debian's line) a
listening stream socket, mode 0666, as Postfix's master binds it; ``fifo`` (older
master.cf files) a FIFO, mode 0622. ``maildrop/`` is also scanned at start and every
wakeup seconds (the line's wakeup field; ``WAKEUP_SECONDS`` when ``-``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import sys
from collections.abc import Callable, Coroutine
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
SOCKET_MODE = 0o666
SOCKET_BACKLOG = 100
#: How long a wake-up connection may stay open (postdrop writes a byte and closes).
SOCKET_TIMEOUT = 10.0
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
        except OSError as exc:  # the environment (EIO…): the next scan tries again
            self.log.warning(f"read maildrop/{name}: {exc.strerror}")
            return Outcome("deferred")
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


def _clear(path: str, keep: Callable[[int], bool]) -> bool:
    """Remove what is at ``path`` unless ``keep(its mode)``; True when something is kept."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if keep(st.st_mode):
        return True
    os.unlink(path)
    return False


def open_fifo(queue_dir: str, uid: int | None) -> int:
    """Create ``public/pickup`` as a FIFO (master.cf type ``fifo``: 0622, owned by
    ``mail_owner`` when ``uid`` is given) unless it is one already, and open it for
    reading without blocking (read-write, so that it never reads end-of-file).
    Returns the descriptor. Raises OSError."""
    path = dirs.public_path(queue_dir, "pickup")
    if not _clear(path, stat.S_ISFIFO):
        os.mkfifo(path, FIFO_MODE)
    os.chmod(path, FIFO_MODE)
    if uid is not None:
        os.chown(path, uid, -1)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def open_socket(queue_dir: str, uid: int | None) -> socket.socket:
    """Bind ``public/pickup`` as a listening UNIX-domain stream socket (master.cf type
    ``unix``, Postfix 3's: 0666, owned by ``mail_owner`` when ``uid`` is given), in
    place of whatever was there; non-blocking. Raises OSError."""
    path = dirs.public_path(queue_dir, "pickup")
    _clear(path, lambda _mode: False)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, SOCKET_MODE)
        if uid is not None:
            os.chown(path, uid, -1)
        sock.listen(SOCKET_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Wakeup:
    """``public/pickup``, FIFO or socket, as an event: set when postdrop pokes it.

    On the FIFO every readable moment is a wake-up; on the socket every connection is,
    read until the client closes it (postdrop writes one byte) or ``SOCKET_TIMEOUT``.
    """

    def __init__(self, endpoint: int | socket.socket) -> None:
        self.endpoint = endpoint
        self.event = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(self.endpoint, socket.socket):
            self._spawn(self._accept(loop, self.endpoint))
        else:
            loop.add_reader(self.endpoint, self._fifo_readable)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fifo_readable(self) -> None:
        assert isinstance(self.endpoint, int)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self.endpoint, 512)
        self.event.set()

    async def _accept(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError:  # EMFILE, ECONNABORTED…: the periodic scan still runs
                await asyncio.sleep(1.0)
                continue
            self.event.set()
            self._spawn(self._drain(loop, conn))

    @staticmethod
    async def _drain(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT):
                while await loop.sock_recv(conn, 512):
                    pass
        except (TimeoutError, OSError):
            pass
        finally:
            conn.close()

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        for task in list(self._tasks):
            task.cancel()
        if isinstance(self.endpoint, socket.socket):
            self.endpoint.close()
        else:
            loop.remove_reader(self.endpoint)
            os.close(self.endpoint)


async def serve(pickup: Pickup, endpoint: int | socket.socket, ready_fd: int,
                lifeline_fd: int, wakeup: float = WAKEUP_SECONDS) -> None:
    """Scan at start, whenever ``public/pickup`` (``endpoint``: FIFO descriptor or
    listening socket) is poked and every ``wakeup`` seconds, until SIGTERM or the
    master's lifeline ends. The scans run in a thread (blocking I/O)."""
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    wake = Wakeup(endpoint)
    wake.start(loop)
    daemon.report_ready(ready_fd)
    try:
        while not stop.is_set():
            wake.event.clear()
            await loop.run_in_executor(None, pickup.scan)
            waiters = [asyncio.ensure_future(wake.event.wait()),
                       asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=wakeup, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
    finally:
        wake.close(loop)
        pickup.close()


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("pickup")
    parser.add_argument("--wakeup", type=float, default=WAKEUP_SECONDS)
    parser.add_argument("--service-type", choices=("unix", "fifo"), default="unix",
                        help="master.cf's type of the pickup service: public/pickup's kind")
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("pickup", cfg, foreground=args.foreground)

    def setup() -> Coroutine[Any, Any, None]:
        pickup = Pickup(cfg, log)
        uid = int(args.user.partition(":")[0]) if args.user else None
        endpoint: int | socket.socket = (
            open_fifo(pickup.queue_dir, uid) if args.service_type == "fifo"
            else open_socket(pickup.queue_dir, uid))
        return serve(pickup, endpoint, args.ready_fd, args.lifeline_fd, args.wakeup)

    return daemon.run(log, args.user, setup)


if __name__ == "__main__":
    sys.exit(main())
