"""start, stop, reload, restart, abort, status, check and start-fg: postfix(1)'s verbs.

Follows postfix(1) and postfix-script. ``start`` launches the master in its own session
and returns only once every child reported that it serves (so the SMTP port answers with
a greeting), or prints why it could not start and exits non-zero. ``stop`` sends SIGTERM
and waits until the master's pid file lock is released. The running master is found
through ``pid/master.pid`` under ``queue_directory``, locked for the master's lifetime,
so a stale file left by ``kill -9`` is recognised as stale. ``reload`` checks the
configuration first (a bad one is refused here with file and line, nothing is
signalled), then sends SIGHUP and waits for the master's verdict
(``instance.read_reload_status``); ``abort`` is Postfix's fast stop (SIGQUIT). The master is another
program: it is started as ``python -m postier.master.master``, never imported here; what
both need (the configuration checks, the pid file's place) is the library
``postier.instance``. Every verb prints Postfix's lines on stderr and returns the exit
status (0 or 1).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import time
from typing import NoReturn

from postier import instance
from postier.config import paths
from postier.config.errors import ConfigError
from postier.config.params import QUEUE_DIRECTORY
from postier.config.settings import Config

MASTER_MODULE = "postier.master.master"

START_TIMEOUT = 60.0
#: How long a master that said fatal has to exit (its children are stopped already).
FAILED_START_EXIT_SECONDS = 10.0
STOP_TIMEOUT = 30.0
RELOAD_TIMEOUT = 60.0


def ensure_default_config(config_dir: str) -> bool:
    """Write a working default main.cf/master.cf into an empty config directory."""
    main_cf = os.path.join(config_dir, "main.cf")
    if os.path.exists(main_cf):
        return False
    root = os.geteuid() == 0
    instance_dir = os.path.dirname(os.path.abspath(config_dir))
    os.makedirs(config_dir, exist_ok=True)
    with open(main_cf, "w") as f:
        f.write(paths.default_main_cf(root, instance_dir))
    master_cf = os.path.join(config_dir, "master.cf")
    if not os.path.exists(master_cf):
        with open(master_cf, "w") as f:
            f.write(paths.default_master_cf(root))
    if not root:
        for sub in ("spool", "mail"):
            os.makedirs(os.path.join(instance_dir, sub), exist_ok=True)
    return True


def running_pid(config_dir: str) -> int | None:
    """The PID of the running master of this configuration, or None."""
    cfg = Config.from_dir(config_dir)
    path = instance.pid_file(cfg[QUEUE_DIRECTORY])
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            for _ in range(50):  # the master locks the file, then writes its pid
                text = os.pread(fd, 64, 0).decode().strip()
                if text.isdigit():
                    return int(text)
                time.sleep(0.01)
            return 0  # running, its pid not yet written
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds the lock: a stale file
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return not fields or fields[0] != b"Z"


def start(config_dir: str) -> int:
    """Check the configuration, start the master and wait (60 s) for its ``ok``: 0, else 1."""
    if ensure_default_config(config_dir):
        print(f"postier: created a default configuration in {config_dir}", file=sys.stderr)
    try:
        _, _, warnings = instance.load_with_warnings(config_dir)
    except ConfigError as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"postier: warning: {warning}", file=sys.stderr)
    pid = running_pid(config_dir)
    if pid is not None:
        print(
            f"postier: fatal: the Postfix mail system is already running (pid {pid})",
            file=sys.stderr,
        )
        return 1
    ready_r, ready_w = os.pipe()
    argv = master_argv(config_dir, "--ready-fd", str(ready_w))
    with open(os.devnull, "rb") as devnull_in, open(os.devnull, "wb") as devnull_out:
        proc = subprocess.Popen(
            argv,
            pass_fds=[ready_w],
            stdin=devnull_in,
            stdout=devnull_out,
            stderr=devnull_out,
            start_new_session=True,
            close_fds=True,
        )
    os.close(ready_w)
    answer = b""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        r, _, _ = select.select([ready_r], [], [], 0.5)
        if r:
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            answer += chunk
            if answer.endswith(b"\n"):
                break
        elif proc.poll() is not None:
            break
    os.close(ready_r)
    text = answer.decode(errors="replace").strip()
    if text == "ok":
        print("postier/postfix-script: starting the Postfix mail system", file=sys.stderr)
        return 0
    print(f"postier: {text or 'fatal: the master process did not start'}", file=sys.stderr)
    # The master has stopped its children before saying fatal: wait for it to be gone,
    # so that a failed start leaves no process behind.
    try:
        proc.wait(timeout=0 if not text else FAILED_START_EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=FAILED_START_EXIT_SECONDS)
    return 1


def master_argv(config_dir: str, *options: str) -> list[str]:
    """The command that runs the master program: this interpreter, ``-m postier.master.master
    --config-dir DIR`` and ``options``."""
    return [sys.executable, "-m", MASTER_MODULE, "--config-dir", config_dir, *options]


def start_fg(config_dir: str) -> NoReturn:
    """Become the master, in the foreground: this process (same PID, same terminal) executes
    the master program with ``--foreground``, every process logging to stderr; it stops on
    SIGINT/SIGTERM and its exit status is the master's. Raises OSError if it cannot exec."""
    if ensure_default_config(config_dir):
        print(f"postier: created a default configuration in {config_dir}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = master_argv(config_dir, "--foreground")
    os.execv(argv[0], argv)


def _master_pid(config_dir: str) -> int | None:
    """``running_pid``; a configuration error is reported and ends the command."""
    try:
        return running_pid(config_dir)
    except ConfigError as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _signalable_master(config_dir: str) -> int | None:
    """The running master's pid, ready for a signal; None once the reason it is not (not
    running, still starting) has been printed."""
    pid = _master_pid(config_dir)
    if pid is None:
        print("postier: fatal: the Postfix mail system is not running", file=sys.stderr)
        return None
    if pid <= 0:
        print("postier: fatal: the master is still starting; try again", file=sys.stderr)
        return None
    return pid


def stop(config_dir: str) -> int:
    """SIGTERM to the master, then wait (30 s) until it is gone: 0, else 1. A message
    being received is answered (acknowledged on disk, or 421) before its worker exits."""
    return _stop(config_dir, signal.SIGTERM)


def abort(config_dir: str) -> int:
    """Postfix's ``abort`` (``stop fast``): SIGQUIT, every child gets one second; what
    was acknowledged is on disk, a message being received is not acknowledged."""
    return _stop(config_dir, signal.SIGQUIT)


def _stop(config_dir: str, signum: int) -> int:
    pid = _signalable_master(config_dir)
    if pid is None:
        return 1
    print("postier/postfix-script: stopping the Postfix mail system", file=sys.stderr)
    os.kill(pid, signum)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if running_pid(config_dir) is None and not _alive(pid):
            return 0
        time.sleep(0.05)
    print(
        f"postier: warning: master pid {pid} still running after {STOP_TIMEOUT:.0f}s",
        file=sys.stderr,
    )
    return 1


def reload(config_dir: str) -> int:
    """Check the configuration, SIGHUP the master and wait (60 s) for its verdict: 0 when
    the new configuration is in force, else 1 with the reason (file and line)."""
    try:
        _, _, warnings = instance.load_with_warnings(config_dir)
    except ConfigError as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        print("postier: fatal: the configuration was not reloaded; "
              "the running configuration stays in force", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"postier: warning: {warning}", file=sys.stderr)
    pid = _signalable_master(config_dir)
    if pid is None:
        return 1
    queue_dir = Config.from_dir(config_dir)[QUEUE_DIRECTORY]
    before = instance.read_reload_status(queue_dir)
    print("postier/postfix-script: refreshing the Postfix mail system", file=sys.stderr)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        now = instance.read_reload_status(queue_dir)
        if now is not None and (before is None or now.generation > before.generation):
            if now.ok:
                return 0
            print(f"postier: fatal: reload refused: {now.text}; "
                  "the running configuration stays in force", file=sys.stderr)
            return 1
        if not _alive(pid):
            print("postier: fatal: the master exited", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"postier: warning: master pid {pid} did not answer the reload within "
          f"{RELOAD_TIMEOUT:.0f}s", file=sys.stderr)
    return 1


def restart(config_dir: str) -> int:
    """``stop`` (when running), then ``start``: 0 when it runs again, else 1."""
    if _master_pid(config_dir) is not None:
        code = stop(config_dir)
        if code:
            return code
    return start(config_dir)


def status(config_dir: str) -> int:
    """0 when the master of ``config_dir`` runs, else 1."""
    pid = _master_pid(config_dir)
    if pid is None:
        print("postier/postfix-script: the Postfix mail system is not running", file=sys.stderr)
        return 1
    print(
        f"postier/postfix-script: the Postfix mail system is running: PID: {pid}", file=sys.stderr
    )
    return 0


def check(config_dir: str) -> int:
    """Load and validate the configuration, check mail_owner: 0, else 1 (printed why)."""
    try:
        cfg, _, warnings = instance.load_with_warnings(config_dir)
        for warning in warnings:
            print(f"postier: warning: {warning}", file=sys.stderr)
        instance.Runtime.from_config(cfg)
    except (ConfigError, instance.StartError) as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        return 1
    return 0
