"""The master process: binds the listening sockets, starts, watches and restarts the children.

Follows Postfix's master(8): it reads ``master.cf``, never parses a byte from the
network, restarts a child that dies (throttling one that dies at once), and on SIGTERM
stops every child and leaves no process behind. Children are separate programs started
with ``subprocess`` (see ``postier.daemon`` for their side of the contract);
smtpd workers and the queue manager run as ``mail_owner``, the local delivery agent as
root. Started by an ordinary user, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from postier import instance
from postier.config.errors import ConfigError
from postier.log import for_config as log_for_config
from postier.master import bind

THROTTLE_SECONDS = 1.0  # a child that dies within this time of its start is restarted after it
STOP_GRACE_SECONDS = 10.0
READY_TIMEOUT = 30.0


@dataclass
class Child:
    role: str
    module: str
    run_as_owner: bool
    extra_args: list[str]
    pass_fds: list[int]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    ready_read: int = -1
    ready: bool = False


class Master:
    def __init__(self, config_dir: str, *, foreground: bool) -> None:
        self.config_dir = config_dir
        self.foreground = foreground
        self.cfg, self.services, self.warnings = instance.load_with_warnings(config_dir)
        self._local_sock: socket.socket | None = None
        self.rt = instance.Runtime.from_config(self.cfg)
        self.log = log_for_config("master", self.cfg, foreground=foreground)
        self.sockets: list[tuple[socket.socket, str]] = []
        self.children: list[Child] = []
        self.lifeline_r, self.lifeline_w = os.pipe()
        os.set_inheritable(self.lifeline_r, True)
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._pidfile_fd = -1

    # --- setup ---------------------------------------------------------------------------

    def lock_pidfile(self) -> None:
        path = instance.pid_file(self.rt.queue_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise instance.StartError("the Postfix mail system is already running") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid():>10}\n".encode())
        self._pidfile_fd = fd

    def bind_all(self) -> None:
        for svc in self.services:
            if svc.type != "inet":
                continue
            if svc.command != "smtpd":
                self.log.warning(
                    f"{svc.file}, line {svc.line}: service {svc.name}/inet: "
                    f"command {svc.command} is not supported yet; service not started"
                )
                continue
            # smtps (smtpd_tls_wrappermode = yes) is served like any smtpd service: the
            # worker starts TLS at connect; its certificates were checked at load.
            scfg = self.cfg.with_overrides(svc.overrides, source=f"{svc.file}, line {svc.line}")
            for sock in bind.bind_service(svc, scfg, self.log):
                self.sockets.append((sock, svc.name))
        if not self.sockets:
            raise instance.StartError("no inet smtpd service in master.cf: nothing to listen on")

    def plan_children(self) -> None:
        listen_args: list[str] = []
        fds: list[int] = []
        for sock, name in self.sockets:
            sock.set_inheritable(True)
            fds.append(sock.fileno())
            listen_args += ["--listen", f"{sock.fileno()}:{name}"]
        for i in range(self.rt.smtpd_workers):
            self.children.append(
                Child(f"smtpd#{i + 1}", "postier.smtpd.worker", True, listen_args, fds)
            )
        self.children.append(Child("qmgr", "postier.qmgr.qmgr", True, [], []))
        local_sock = bind.bind_local_socket(self.rt)
        local_sock.set_inheritable(True)
        self._local_sock = local_sock
        self.children.append(
            Child(
                "local",
                "postier.local.local",
                False,
                ["--listen-fd", str(local_sock.fileno())],
                [local_sock.fileno()],
            )
        )

    def spawn(self, child: Child) -> None:
        ready_r, ready_w = os.pipe()
        argv = [
            sys.executable,
            "-m",
            child.module,
            "--config-dir",
            self.config_dir,
            "--ready-fd",
            str(ready_w),
            "--lifeline-fd",
            str(self.lifeline_r),
            *child.extra_args,
        ]
        if self.foreground:
            argv.append("--foreground")
        if child.run_as_owner and self.rt.uid is not None and os.geteuid() == 0:
            argv += ["--user", f"{self.rt.uid}:{self.rt.gid}"]
        child.proc = subprocess.Popen(
            argv,
            pass_fds=[ready_w, self.lifeline_r, *child.pass_fds],
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(ready_w)
        child.ready_read = ready_r
        child.ready = False
        child.started = time.monotonic()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            pending = [c for c in self.children if not c.ready]
            if not pending:
                return
            for c in pending:
                if c.proc is not None and c.proc.poll() is not None:
                    raise instance.StartError(
                        f"{c.role} (module {c.module}) exited with status {c.proc.returncode} "
                        "while starting; see the mail log"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise instance.StartError(
                    "timed out waiting for " + ", ".join(c.role for c in pending)
                )
            readable, _, _ = select.select([c.ready_read for c in pending], [], [], min(left, 0.2))
            for c in pending:
                if c.ready_read in readable and not self.take_ready(c):
                    raise instance.StartError(
                        f"{c.role} (module {c.module}) exited while starting; see the mail log"
                    )

    @staticmethod
    def take_ready(child: Child) -> bool:
        """Read the child's readiness byte; end-of-file (it died first) is not readiness."""
        ready = os.read(child.ready_read, 1) == b"R"
        os.close(child.ready_read)
        child.ready_read = -1
        child.ready = ready
        return ready

    # --- the watch loop ------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def run(self, ready_fd: int = -1) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for warning in self.warnings:
            self.log.warning(warning)
        try:
            self.rt.prepare_queue()
            self.lock_pidfile()
            self.bind_all()
            self.plan_children()
            for child in self.children:
                self.spawn(child)
            self.wait_ready(READY_TIMEOUT)
        except (instance.StartError, ConfigError, OSError) as exc:
            self.log.fatal(str(exc))
            if ready_fd >= 0:
                os.write(ready_fd, f"fatal: {exc}\n".encode())
                os.close(ready_fd)
            self.shutdown()
            return 1
        self.log.info(
            f"daemon started -- version {self.rt.version}, configuration {self.config_dir}"
        )
        if ready_fd >= 0:
            os.write(ready_fd, b"ok\n")
            os.close(ready_fd)
        while not self.stopping:
            readable, _, _ = select.select([self._wake_r], [], [], 1.0)
            if readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 512)
            self.reap_and_restart()
        self.log.info("terminating on signal 15")
        self.shutdown()
        return 0

    def reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                status = proc.returncode
                how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
                self.log.warning(f"process {child.module} pid {proc.pid} {how}")
                if child.ready_read >= 0:
                    os.close(child.ready_read)
                    child.ready_read = -1
                child.proc = None
                if now - child.started < THROTTLE_SECONDS:
                    self.log.warning(f"{child.module}: bad command startup -- throttling")
                    child.restart_at = now + 10 * THROTTLE_SECONDS
                else:
                    child.restart_at = now
            if child.proc is None and not self.stopping and now >= child.restart_at:
                self.spawn(child)
            if child.ready_read >= 0 and select.select([child.ready_read], [], [], 0)[0]:
                self.take_ready(child)

    def shutdown(self) -> None:
        live = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning(f"pid {proc.pid} did not stop; killing it")
                proc.kill()
                proc.wait()
        os.close(self.lifeline_w)
        for sock, _ in self.sockets:
            sock.close()
        if self._local_sock is not None:
            self._local_sock.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.rt.queue_dir, "private", "local"))
        if self._pidfile_fd >= 0:
            try:
                os.unlink(instance.pid_file(self.rt.queue_dir))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            os.close(self._pidfile_fd)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="postier master")
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--ready-fd", type=int, default=-1)
    parser.add_argument("--foreground", action="store_true")
    args = parser.parse_args(argv)
    try:
        master = Master(args.config_dir, foreground=args.foreground)
    except (ConfigError, instance.StartError) as exc:
        if args.ready_fd >= 0:
            os.write(args.ready_fd, f"fatal: {exc}\n".encode())
        print(f"postier: fatal: {exc}", file=sys.stderr)
        return 1
    return master.run(args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
