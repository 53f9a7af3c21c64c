"""The child side of the master's contract: readiness, the lifeline, privileges.

Every child process is started by the master as ``python -m MODULE --config-dir DIR
--ready-fd N --lifeline-fd N [...]``. It writes one byte on the ready pipe once it
serves (or, when it cannot start, ``F`` and its fatal line, which the master prints on
the terminal), and exits when the lifeline pipe reaches end-of-file (the master is gone),
so that a ``kill -9`` of the master never leaves orphans serving mail. This plays the
role of the status and lifeline pipes of Postfix's master(8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from postier.config.errors import ConfigError

if TYPE_CHECKING:
    from postier.log import Log


# The master's reload tells an smtpd worker of the old configuration to stop accepting,
# finish its sessions and exit (smtpd only; qmgr and local restart through SIGTERM).
DRAIN_SIGNAL = signal.SIGUSR1


def child_arguments(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--lifeline-fd", type=int, default=-1)
    parser.add_argument("--foreground", action="store_true")
    parser.add_argument("--user", default="", help="UID:GID to switch to once set up")
    return parser


def drop_privileges(spec: str) -> None:
    """Become ``UID:GID`` for good (no supplementary groups), as Postfix's daemons do.

    A child starts as root and drops privileges itself, after its imports and setup, so
    that its interpreter and modules need not be readable by ``mail_owner``; modules a
    child imports lazily must therefore be imported before this call.
    """
    if not spec:
        return
    uid_text, _, gid_text = spec.partition(":")
    uid, gid = int(uid_text), int(gid_text)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise RuntimeError(f"cannot drop privileges to uid {uid}")


#: The ready pipe not yet written to (``--ready-fd``): where a start failure is told.
_unreported: set[int] = set()


def _ready_fd_of(argv: list[str]) -> int:
    """The ``--ready-fd N`` of a child's command line (-1 when absent or malformed)."""
    for i, word in enumerate(argv[:-1]):
        if word == "--ready-fd" and argv[i + 1].isdigit():
            return int(argv[i + 1])
    return -1


def report_ready(fd: int) -> None:
    """Tell the master this child serves: one byte ``R`` on the ready pipe, closed."""
    if fd < 0:
        return
    _unreported.discard(fd)
    try:
        os.write(fd, b"R")
    finally:
        os.close(fd)


def report_start_failure(fd: int, message: str) -> None:
    """Tell the master why this child cannot start: ``F`` and the last line of
    ``message`` (UTF-8, at most 2000 bytes) on the ready pipe, closed. Does nothing once
    readiness was reported or without a pipe."""
    if fd < 0 or fd not in _unreported:
        return
    _unreported.discard(fd)
    lines = [line for line in message.splitlines() if line.strip()]
    text = (lines[-1].strip() if lines else "exited").encode("utf-8", "replace")[:2000]
    try:
        os.write(fd, b"F" + text)
    except OSError:
        pass
    finally:
        os.close(fd)


def watch_lifeline(loop: asyncio.AbstractEventLoop, fd: int, on_lost: Callable[[], None]) -> None:
    """Call ``on_lost`` once the master's end of the lifeline pipe is closed."""
    if fd < 0:
        return

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)
            on_lost()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def install_stop_signals(loop: asyncio.AbstractEventLoop, on_stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop)
    # The master owns reload; a child ignores a stray SIGHUP instead of dying.
    loop.add_signal_handler(signal.SIGHUP, lambda: None)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def stop_event(loop: asyncio.AbstractEventLoop, lifeline_fd: int) -> asyncio.Event:
    """Set on SIGTERM/SIGINT or when the master goes away: the child should finish."""
    stop = asyncio.Event()
    install_stop_signals(loop, stop.set)
    watch_lifeline(loop, lifeline_fd, stop.set)
    return stop


def run(log: Log, user: str, setup: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """A child's life: ``setup()`` (imports done, still root) builds the main coroutine,
    privileges drop to ``user``, the coroutine runs; a crash is logged, exit status 1
    (before readiness, its last line is also sent to the master on the ready pipe)."""
    ready_fd = _ready_fd_of(sys.argv)
    if ready_fd >= 0:
        _unreported.add(ready_fd)
    try:
        loop = new_event_loop()
        main = setup()
        drop_privileges(user)
        loop.run_until_complete(main)
    except ConfigError as exc:  # the configuration, not our bug: one line, no traceback
        log.fatal(str(exc))
        report_start_failure(ready_fd, str(exc))
        return 1
    except Exception:
        log.fatal(traceback.format_exc().strip())
        report_start_failure(ready_fd, traceback.format_exc())
        return 1
    return 0
