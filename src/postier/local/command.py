"""Deliver one message to an external command (mailbox_command), as the recipient.

Follows Postfix local(8) "EXTERNAL COMMAND DELIVERY" and postconf(5)
mailbox_command, command_time_limit, local_command_shell, mailbox_size_limit;
exit statuses follow <sysexits.h>, enhanced status codes RFC 3463.

The command runs as ``/bin/sh -c COMMAND`` (or ``local_command_shell COMMAND``)
with the recipient's uid and primary gid and no secondary groups, in a new
process group, with umask 077 (as every Postfix process: what it creates is
``-rw-------``), in the directory given (local(8): command_execution_directory,
else the queue directory local runs in), with exactly the environment given (see
``postier.local.localpart.command_env``: the shell, not us, expands
``$EXTENSION`` etc.). Its standard input is the message as Postfix gives it to
commands: the ``From SENDER  DATE`` line, ``Return-Path:``, ``X-Original-To:``
(when known), ``Delivered-To:``, then the message unchanged (no ``>From``
quoting, no trailing empty line). Standard output and error are captured, up to
``output_limit`` bytes, for the diagnostic.

Result mapping (as Postfix's pipe_command):

* exit 0: ``2.0.0 delivered to command: COMMAND``;
* non-zero exit whose output starts with an enhanced status code
  (``5.1.1 no such user``): that code and text;
* a <sysexits.h> code: its DSN and text from ``SYSEXITS`` (EX_TEMPFAIL 75 and
  EX_OSERR 71 defer with 4.3.0, the others bounce), plus ``. Command output: ...``;
* another exit status: ``5.3.0 Command died with status N: "COMMAND"``;
* killed by a signal: ``4.3.0 Command died with signal N: "COMMAND"``;
* ``command_time_limit`` exceeded: the process group is killed and the
  recipient bounces with ``5.3.0 Command time limit exceeded: "COMMAND"``
  (Postfix's behaviour);
* the command cannot be started (no /bin/sh, a command_execution_directory the
  user cannot enter): 4.3.0, deferred (postconf(5): "Failure to change directory
  causes mail to be deferred").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple

from postier.config.params import COMMAND_TIME_LIMIT
from postier.delivery.status import DeliveryStatus, bounced, deferred, sent
from postier.local import privs
from postier.local.mbox import envelope_headers, from_line

#: Captured command output kept for the diagnostic.
OUTPUT_LIMIT = 2048

#: The file creation mask of commands: Postfix's processes all run with umask 077.
COMMAND_UMASK = 0o077


class SysExit(NamedTuple):
    dsn: str
    text: str


#: <sysexits.h> exit codes and the status Postfix reports for each.
SYSEXITS: dict[int, SysExit] = {
    64: SysExit("5.3.0", "command line usage error"),  # EX_USAGE
    65: SysExit("5.6.0", "data format error"),  # EX_DATAERR
    66: SysExit("5.3.0", "cannot open input"),  # EX_NOINPUT
    67: SysExit("5.1.1", "user unknown"),  # EX_NOUSER
    68: SysExit("5.1.2", "host name unknown"),  # EX_NOHOST
    69: SysExit("5.3.0", "service unavailable"),  # EX_UNAVAILABLE
    70: SysExit("5.3.0", "internal software error"),  # EX_SOFTWARE
    71: SysExit("4.3.0", "system resource problem"),  # EX_OSERR
    72: SysExit("5.3.0", "critical OS file missing"),  # EX_OSFILE
    73: SysExit("5.2.0", "can't create user output file"),  # EX_CANTCREAT
    74: SysExit("5.3.0", "input/output error"),  # EX_IOERR
    75: SysExit("4.3.0", "temporary failure"),  # EX_TEMPFAIL
    76: SysExit("5.5.0", "remote error in protocol"),  # EX_PROTOCOL
    77: SysExit("5.7.0", "permission denied"),  # EX_NOPERM
    78: SysExit("5.3.5", "local configuration error"),  # EX_CONFIG
}

_DSN_TEXT = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)(.*)", re.DOTALL)


class CommandResult(NamedTuple):
    """What happened to the child: exactly one of the three is set."""

    status: int | None  # exit status
    signal: int | None  # terminating signal
    timed_out: bool
    output: bytes


def command_input(
    content: Iterable[bytes],
    *,
    sender: str,
    recipient: str,
    orig_recipient: str,
    when: float,
    delivered_to: bool = True,
) -> Iterator[bytes]:
    """The bytes a command reads: From_ line, envelope headers, the message as is."""
    yield from_line(sender, when)
    yield envelope_headers(sender, recipient, orig_recipient, delivered_to=delivered_to)
    yield from content


def clean_output(output: bytes) -> str:
    """Command output as one printable line: controls become spaces, runs collapse."""
    text = output.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


def interpret(command: str, result: CommandResult) -> DeliveryStatus:
    """Map a finished command to a DeliveryStatus (see the module docstring). Pure."""
    said = clean_output(result.output)
    tail = f". Command output: {said}" if said else ""
    if result.timed_out:
        return bounced("5.3.0", f'Command time limit exceeded: "{command}"{tail}')
    if result.signal is not None:
        return deferred("4.3.0", f'Command died with signal {result.signal}: "{command}"{tail}')
    code = result.status if result.status is not None else 0
    if code == 0:
        return sent(f"delivered to command: {command}")
    match = _DSN_TEXT.match(result.output)
    if match:
        dsn = ".".join(match.group(i).decode() for i in (1, 2, 3))
        text = clean_output(match.group(4)) or said
        if dsn.startswith("2."):
            # A "success" code with a failing exit: keep the failure class.
            dsn = "5" + dsn[1:]
        return deferred(dsn, text) if dsn.startswith("4.") else bounced(dsn, text)
    if code in SYSEXITS:
        entry = SYSEXITS[code]
        text = f"{entry.text}{tail}"
        return deferred(entry.dsn, text) if entry.dsn.startswith("4.") else bounced(entry.dsn, text)
    return bounced("5.3.0", f'Command died with status {code}: "{command}"{tail}')


def can_enter(directory: str, uid: int | None, gid: int | None) -> bool:
    """May ``uid``/``gid`` (None: this process) change to ``directory``?"""
    with privs.as_user(uid, gid):
        try:
            return os.path.isdir(directory) and os.access(
                directory, os.X_OK, effective_ids=True)
        except OSError:
            return False


def run_command(
    argv: list[str],
    *,
    stdin: Iterable[bytes],
    env: Mapping[str, str],
    cwd: str,
    uid: int | None,
    gid: int | None,
    timeout: float,
    output_limit: int = OUTPUT_LIMIT,
    file_size_limit: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> CommandResult:
    """Run ``argv`` feeding ``stdin``, capture output, enforce ``timeout``.

    Privileges are dropped in the child (setgroups([]), setgid, setuid) when
    running as root and ``uid`` is given. ``file_size_limit`` (bytes, 0 = none)
    becomes the child's RLIMIT_FSIZE, as Postfix applies mailbox_size_limit to
    files written by commands. Raises OSError when the command cannot start.
    """
    drop = privs.running_as_root() and uid is not None
    preexec: Callable[[], None] | None = None
    if file_size_limit > 0:

        def preexec() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        close_fds=True,
        process_group=0,
        user=uid if drop else None,
        group=gid if drop and gid is not None else None,
        extra_groups=[] if drop else None,
        umask=COMMAND_UMASK,
        preexec_fn=preexec,
    )
    assert proc.stdin is not None and proc.stdout is not None
    deadline = clock() + timeout
    output = bytearray()
    timed_out = False
    source = iter(stdin)
    pending = b""
    stdin_fd, stdout_fd = proc.stdin.fileno(), proc.stdout.fileno()
    os.set_blocking(stdin_fd, False)
    sel = selectors.DefaultSelector()
    sel.register(stdin_fd, selectors.EVENT_WRITE)
    sel.register(stdout_fd, selectors.EVENT_READ)
    writing, reading = True, True
    try:
        while writing or reading:
            left = deadline - clock()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(left):
                if key.fd == stdout_fd:
                    data = os.read(stdout_fd, 65536)
                    if not data:
                        sel.unregister(stdout_fd)
                        reading = False
                    elif len(output) < output_limit:
                        output += data[: output_limit - len(output)]
                    continue
                if not pending:
                    pending = next((c for c in source if c), b"")
                if not pending:
                    sel.unregister(stdin_fd)
                    proc.stdin.close()
                    writing = False
                    continue
                try:
                    written = os.write(stdin_fd, pending)
                    pending = pending[written:]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    # EPIPE: the command did not want the rest; its exit status decides.
                    if exc.errno != errno.EPIPE:
                        raise
                    sel.unregister(stdin_fd)
                    proc.stdin.close()
                    writing = False
        if not timed_out:
            try:
                proc.wait(max(0.0, deadline - clock()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        sel.close()
        if timed_out or proc.poll() is None:
            _kill_group(proc)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
    if timed_out:
        return CommandResult(None, None, True, bytes(output))
    rc = proc.returncode
    if rc < 0:
        return CommandResult(None, -rc, False, bytes(output))
    return CommandResult(rc, None, False, bytes(output))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and everything it started (its process group), then reap."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.kill()
    proc.wait()


def deliver_command(
    command: str,
    *,
    content: Iterable[bytes],
    sender: str,
    recipient: str,
    env: Mapping[str, str],
    uid: int | None,
    gid: int | None,
    cwd: str,
    cwd_as_user: bool = False,
    timeout: float = COMMAND_TIME_LIMIT.default_value(),
    prepend: bytes | None = None,
    orig_recipient: str = "",
    arrival: float | None = None,
    delivered_to: bool = True,
    shell: str = "",
    size_limit: int = 0,
    output_limit: int = OUTPUT_LIMIT,
) -> DeliveryStatus:
    """Pipe one message into ``command`` run as the recipient; report the outcome.

    ``content`` is the queued message (first header first, LF line ends).
    ``prepend``, when given, replaces the From_ line and envelope headers that
    are otherwise built from ``sender``, ``recipient``, ``orig_recipient`` and
    ``arrival`` (the From_ time stamp, default now). ``env`` is the full
    environment (``localpart.command_env``). ``uid``/``gid``: the recipient
    (ignored unless running as root). ``cwd`` is the working directory
    (entered as root, as a directory inherited); with ``cwd_as_user`` (a
    command_execution_directory) the user must be able to enter it, else the
    delivery is deferred (4.3.0). ``timeout`` is command_time_limit,
    ``shell`` local_command_shell (e.g. ``/usr/bin/smrsh -c``; default
    ``/bin/sh -c``), ``size_limit`` mailbox_size_limit (RLIMIT_FSIZE, 0 = none).
    """
    argv = [*shlex.split(shell), command] if shell else ["/bin/sh", "-c", command]
    if prepend is not None:
        stdin: Iterable[bytes] = _chain(prepend, content)
    else:
        stdin = command_input(
            content,
            sender=sender,
            recipient=recipient,
            orig_recipient=orig_recipient,
            when=arrival if arrival is not None else time.time(),
            delivered_to=delivered_to,
        )
    if cwd_as_user and not can_enter(cwd, uid, gid):
        return deferred("4.3.0", f'cannot change directory to "{cwd}" for command "{command}"')
    try:
        result = run_command(
            argv,
            stdin=stdin,
            env=env,
            cwd=cwd,
            uid=uid,
            gid=gid,
            timeout=timeout,
            output_limit=output_limit,
            file_size_limit=size_limit,
        )
    except OSError as exc:
        return deferred("4.3.0", f'cannot execute command "{command}": {exc.strerror or exc}')
    except Exception as exc:  # reading the queued message failed
        return deferred("4.3.0", f"error reading message: {exc}")
    return interpret(command, result)


def _chain(first: bytes, rest: Iterable[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
