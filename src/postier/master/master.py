"""The master process: binds the listening sockets, starts, watches and restarts the children.

Follows Postfix's master(8): it reads ``master.cf``, never parses a byte from the
network, restarts a child that dies (throttling one that dies at once), and on SIGTERM
stops every child and leaves no process behind. Children are separate programs started
with ``subprocess`` (see ``postier.daemon`` for their side of the contract);
smtpd workers and the queue manager run as ``mail_owner``, the local delivery agent as
root. Started by an ordinary user, everything runs as that user.

SIGHUP reloads, as Postfix's master does: the configuration is loaded and validated
again (a bad one is refused, the old one keeps serving), services added to master.cf
are bound and removed ones closed, a new generation of smtpd workers starts on the
(kept) listening sockets, and once it serves the old workers are told to drain
(``daemon.DRAIN_SIGNAL``: stop accepting, finish their sessions, exit); then qmgr
(which finishes its deliveries in progress) and local are restarted one after the
other, and pickup restarted (a pickup line added to or removed from master.cf takes a
restart of postier). SIGTERM stops everything gracefully, SIGQUIT at once (``postier abort``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from postier import daemon, instance, metrics
from postier.config.errors import ConfigError
from postier.config.mastercf import MasterService
from postier.config.params import INET_INTERFACES, INET_PROTOCOLS
from postier.config.settings import Config
from postier.log import for_config as log_for_config
from postier.master import bind

THROTTLE_SECONDS = 1.0  # a child that dies within this time of its start is restarted after it
STOP_GRACE_SECONDS = 12.0  # smtpd: 5 s for messages being received, then 421; qmgr: 5 s
LOCAL_STOP_GRACE_SECONDS = 5.0  # local stops last, once nobody can ask it anything
FAST_STOP_GRACE_SECONDS = 1.0
READY_TIMEOUT = 30.0
SMTPD_MODULE = "postier.smtpd.worker"
ANVIL_MODULE = "postier.anvil.anvil"
PICKUP_MODULE = "postier.pickup.pickup"

# The listening sockets of one inet service, as bound: kept across a reload while the
# service's name and its inet_interfaces/inet_protocols stay the same.
SocketKey = tuple[str, tuple[str, ...], tuple[str, ...]]


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
    restarting: bool = False  # told to stop by a reload: start it again, no warning
    hold: bool = False  # not to be started again yet (qmgr waits for local's restart)


class Master:
    def __init__(self, config_dir: str, *, foreground: bool) -> None:
        self.config_dir = config_dir
        self.foreground = foreground
        self.cfg, self.services, self.warnings = instance.load_with_warnings(config_dir)
        self._local_sock: socket.socket | None = None
        self._anvil_sock: socket.socket | None = None
        self.rt = instance.Runtime.from_config(self.cfg)
        self.log = log_for_config("master", self.cfg, foreground=foreground)
        self.sockets: dict[SocketKey, list[socket.socket]] = {}
        self.children: list[Child] = []
        self.draining: list[Child] = []  # smtpd workers of an older configuration
        self.generation = 0
        self.reload_requested = False
        self.fast = False
        self.lifeline_r, self.lifeline_w = os.pipe()
        os.set_inheritable(self.lifeline_r, True)
        self.stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._pidfile_fd = -1
        self.metrics: metrics.Endpoint | None = None  # postier_metrics_listen

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

    def bind_sockets(
        self, cfg: Config, services: list[MasterService]
    ) -> tuple[dict[SocketKey, list[socket.socket]], list[socket.socket]]:
        """The listening sockets ``services`` need: those already bound are kept, the
        others bound now. Returns (every socket by key, the ones bound now); raises
        StartError (after closing what it bound) when one cannot be bound."""
        wanted: dict[SocketKey, list[socket.socket]] = {}
        opened: list[socket.socket] = []
        try:
            for svc in services:
                if svc.type != "inet":
                    continue
                if svc.command != "smtpd":
                    self.log.warning(
                        f"{svc.file}, line {svc.line}: service {svc.name}/inet: "
                        f"command {svc.command} is not supported yet; service not started"
                    )
                    continue
                # smtps (smtpd_tls_wrappermode = yes) is served like any smtpd service:
                # the worker starts TLS at connect; its certificates were checked at load.
                scfg = cfg.with_overrides(svc.overrides, source=f"{svc.file}, line {svc.line}")
                key: SocketKey = (
                    svc.name, tuple(scfg[INET_INTERFACES]), tuple(scfg[INET_PROTOCOLS]))
                if key in self.sockets:
                    wanted[key] = self.sockets[key]
                else:
                    socks = bind.bind_service(svc, scfg, self.log)
                    opened += socks
                    wanted[key] = socks
        except BaseException:
            for sock in opened:
                sock.close()
            raise
        if not wanted:
            raise instance.StartError("no inet smtpd service in master.cf: nothing to listen on")
        return wanted, opened

    def smtpd_children(self, rt: instance.Runtime) -> list[Child]:
        """One generation of smtpd workers, serving every socket of ``self.sockets``."""
        listen_args: list[str] = ["--workers", str(rt.smtpd_workers)]
        fds: list[int] = []
        for (name, _, _), socks in self.sockets.items():
            for sock in socks:
                sock.set_inheritable(True)
                fds.append(sock.fileno())
                listen_args += ["--listen", f"{sock.fileno()}:{name}"]
        return [
            Child(f"smtpd#{i + 1}", SMTPD_MODULE, True, listen_args, fds)
            for i in range(rt.smtpd_workers)
        ]

    def plan_children(self) -> None:
        self.children += self.smtpd_children(self.rt)
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
        self.metrics = metrics.Endpoint.open(self.cfg, self.rt.uid, self.rt.gid)
        if self.metrics is not None:
            self.children.append(Child("metrics", metrics.ENDPOINT_MODULE, True,
                                       *self.metrics.child_arguments()))

        pickup = next((s for s in self.services if s.command == "pickup"), None)
        if pickup is not None:
            # As master.cf "pickup unix n - y 60 1 pickup": one process, as mail_owner,
            # that makes public/pickup (postdrop's wake-up: a socket for type unix, a
            # FIFO for type fifo) and scans maildrop/ every wakeup seconds (60 for "-").
            wakeup = pickup.wakeup.rstrip("?")
            self.children.append(Child("pickup", PICKUP_MODULE, True, [
                "--wakeup", wakeup if wakeup.isdigit() and int(wakeup) > 0 else "60",
                "--service-type", "fifo" if pickup.type == "fifo" else "unix"], []))

        anvil = next((s for s in self.services if s.type == "unix" and s.command == "anvil"),
                     None)
        if anvil is not None:
            # As Postfix's master.cf "anvil unix - - y - 1 anvil": one process, started
            # here (not on demand), its socket bound by the master so that smtpd finds it
            # from the start and across a restart of anvil.
            anvil_sock = bind.bind_local_socket(self.rt, "anvil")
            anvil_sock.set_inheritable(True)
            self._anvil_sock = anvil_sock
            self.children.append(Child("anvil", ANVIL_MODULE, True,
                                       ["--listen-fd", str(anvil_sock.fileno())],
                                       [anvil_sock.fileno()]))

    def raise_file_limit(self) -> None:
        """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it) and log
        what it is: every SMTP session holds a descriptor, often two."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = hard
        if hard == resource.RLIM_INFINITY:
            try:
                with open("/proc/sys/fs/nr_open") as f:
                    target = int(f.read())
            except (OSError, ValueError):
                target = 1 << 20
        if soft != resource.RLIM_INFINITY and soft < target:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (OSError, ValueError) as exc:
                self.log.warning(f"cannot raise the open file limit from {soft} to {target}: "
                                 f"{exc}")
        got = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        # no ": " in a master line: pflogsumm keeps what follows the last one
        self.log.info(f"open file limit (RLIMIT_NOFILE) {got}"
                      + (f", raised from {soft}" if got != soft else ""))

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

    def wait_ready(self, timeout: float, children: list[Child] | None = None) -> None:
        """Wait until every one of ``children`` (all by default) said it serves; raises
        StartError if one exits first or the time runs out."""
        deadline = time.monotonic() + timeout
        group = self.children if children is None else children
        while True:
            pending = [c for c in group if not c.ready]
            if not pending:
                return
            for c in pending:
                if c.proc is not None and c.proc.poll() is not None:
                    said = self.take_ready(c) if c.ready_read >= 0 else None
                    raise instance.StartError(
                        f"{c.role} (module {c.module}) exited with status {c.proc.returncode} "
                        f"while starting{self._reason(said)}"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise instance.StartError(
                    "timed out waiting for " + ", ".join(c.role for c in pending)
                )
            readable, _, _ = select.select([c.ready_read for c in pending], [], [], min(left, 0.2))
            for c in pending:
                if c.ready_read in readable:
                    said = self.take_ready(c)
                    if not c.ready:
                        raise instance.StartError(
                            f"{c.role} (module {c.module}) exited while starting"
                            + self._reason(said))

    @staticmethod
    def _reason(said: str | None) -> str:
        """``: LINE (see the mail log)`` with the child's fatal line, else the pointer alone."""
        return f": {said} (see the mail log)" if said else "; see the mail log"

    @staticmethod
    def take_ready(child: Child) -> str | None:
        """Read the child's ready pipe: ``R`` is readiness (``child.ready``); ``F`` and a
        line is why it could not start (returned); end-of-file (it died first) is neither."""
        chunks = []
        while True:  # the child writes once and closes: read to end-of-file
            chunk = os.read(child.ready_read, 4096)
            if not chunk:
                break
            chunks.append(chunk)
            if chunks[0][:1] == b"R":
                break
        data = b"".join(chunks)
        os.close(child.ready_read)
        child.ready_read = -1
        child.ready = data[:1] == b"R"
        if data[:1] == b"F":
            return data[1:].decode("utf-8", "replace").strip() or None
        return None

    # --- the watch loop ------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            self.stopping = True
            self.fast = self.fast or signum == signal.SIGQUIT
        elif signum == signal.SIGHUP:
            self.reload_requested = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def run(self, ready_fd: int = -1) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD,
                    signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for warning in self.warnings:
            self.log.warning(warning)
        try:
            self.rt.prepare_queue()
            self.lock_pidfile()
            self.raise_file_limit()
            self.sockets, _ = self.bind_sockets(self.cfg, self.services)
            self.plan_children()
            for child in self.children:
                self.spawn(child)
            self.wait_ready(READY_TIMEOUT)
        except (instance.StartError, ConfigError, OSError) as exc:
            said = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
            self.log.fatal(said)
            self.shutdown()  # first: `postier start` returns with no process left
            if ready_fd >= 0:
                os.write(ready_fd, f"fatal: {said}\n".encode())
                os.close(ready_fd)
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
            if self.reload_requested and not self.stopping:
                self.reload_requested = False
                self.reload()
            self.reap_and_restart()
        # Postfix's master says 15 for a stop; SIGQUIT is the fast stop.
        self.log.info(f"terminating on signal {3 if self.fast else 15}")
        self.shutdown()
        return 0

    # --- reload --------------------------------------------------------------------------

    def reload(self) -> None:
        """Reload on SIGHUP (see the module docstring); the outcome is logged and written
        for ``postier reload`` (``instance.write_reload_status``)."""
        self.generation += 1
        try:
            self._reload()
        except (ConfigError, instance.StartError, OSError) as exc:
            self.log.error(f"reload refused, the running configuration stays in force: {exc}")
            self._reload_status(False, str(exc))
            return
        self.log.info(f"reload -- version {self.rt.version}, configuration {self.config_dir}")
        self._reload_status(True, "")

    def _reload_status(self, ok: bool, text: str) -> None:
        try:
            instance.write_reload_status(
                self.rt.queue_dir, instance.ReloadStatus(self.generation, ok, text))
        except OSError as exc:
            self.log.warning(f"cannot write the reload status: {exc}")

    def _reload(self) -> None:
        cfg, services, warnings = instance.load_with_warnings(self.config_dir)
        rt = instance.Runtime.from_config(cfg)
        if rt.queue_dir != self.rt.queue_dir or rt.uid != self.rt.uid:
            raise instance.StartError(
                "queue_directory or mail_owner changed: a reload cannot move the queue "
                "or change owners; use postier stop and postier start")
        log = log_for_config("master", cfg, foreground=self.foreground)
        for warning in warnings:
            log.warning(warning)
        old_sockets = self.sockets
        self.sockets, opened = self.bind_sockets(cfg, services)
        fresh = self.smtpd_children(rt)
        try:
            for child in fresh:
                self.spawn(child)
            self.wait_ready(READY_TIMEOUT, fresh)
        except BaseException:
            for child in fresh:
                self._close_ready(child)
                if child.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.kill()
                    child.proc.wait()
            self.sockets = old_sockets
            for sock in opened:
                sock.close()
            raise
        # The new generation serves: the old one stops accepting and drains.
        for child in self.children:
            if child.module != SMTPD_MODULE:
                continue
            self._close_ready(child)
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(daemon.DRAIN_SIGNAL)
                self.draining.append(child)
        kept = {id(sock) for socks in self.sockets.values() for sock in socks}
        for socks in old_sockets.values():
            for sock in socks:
                if id(sock) not in kept:
                    sock.close()  # a service gone from master.cf: closed once drained
        self.children = fresh + [c for c in self.children if c.module != SMTPD_MODULE]
        self.cfg, self.services, self.warnings, self.rt, self.log = (
            cfg, services, warnings, rt, log)
        self.restart_queue_manager()
        self.restart_pickup()

    def restart_pickup(self) -> None:
        """Stop pickup so that it starts again with the new configuration (it finishes
        the file in progress: a message is queued or left in maildrop/, never both)."""
        pickup = next((c for c in self.children if c.role == "pickup"), None)
        if pickup is not None and pickup.proc is not None and pickup.proc.poll() is None:
            pickup.restarting = True
            pickup.proc.terminate()

    def restart_queue_manager(self) -> None:
        """Restart qmgr, then local: qmgr is told to stop (it finishes its deliveries in
        progress, whose local requests the running local still answers); once it is gone,
        local stops and both start again with the new configuration."""
        qmgr = self._child("qmgr")
        if qmgr.proc is not None and qmgr.proc.poll() is None:
            qmgr.restarting = True
            qmgr.proc.terminate()
        else:
            self._restart_local(qmgr)

    def _restart_local(self, qmgr: Child) -> None:
        local = self._child("local")
        qmgr.hold = True
        if local.proc is not None and local.proc.poll() is None:
            local.restarting = True
            local.proc.terminate()
        else:
            qmgr.hold = False

    def _child(self, role: str) -> Child:
        return next(c for c in self.children if c.role == role)

    @staticmethod
    def _close_ready(child: Child) -> None:
        if child.ready_read >= 0:
            os.close(child.ready_read)
            child.ready_read = -1

    # --- watching ------------------------------------------------------------------------

    def reap_and_restart(self) -> None:
        now = time.monotonic()
        for child in list(self.draining):
            if child.proc is None or child.proc.poll() is not None:
                self.draining.remove(child)
                if self.metrics is not None and child.proc is not None:
                    self.metrics.process_dead(child.proc.pid)
        for child in self.children:
            proc = child.proc
            if proc is not None and proc.poll() is not None:
                self._close_ready(child)
                if self.metrics is not None:
                    self.metrics.process_dead(proc.pid)
                child.proc = None
                if child.restarting:  # stopped by a reload
                    child.restarting = False
                    child.restart_at = now
                    if child.role == "qmgr":
                        self._restart_local(child)
                    elif child.role == "local":
                        self._child("qmgr").hold = False
                else:
                    status = proc.returncode
                    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
                    self.log.warning(f"process {child.module} pid {proc.pid} {how}")
                    if now - child.started < THROTTLE_SECONDS:
                        self.log.warning(f"{child.module}: bad command startup -- throttling")
                        child.restart_at = now + 10 * THROTTLE_SECONDS
                    else:
                        child.restart_at = now
        for child in self.children:
            if child.proc is None and not child.hold and not self.stopping \
                    and now >= child.restart_at:
                self.spawn(child)
            if child.ready_read >= 0 and select.select([child.ready_read], [], [], 0)[0]:
                self.take_ready(child)

    # --- stopping ------------------------------------------------------------------------

    def _stop(self, procs: list[subprocess.Popen[bytes]], grace: float) -> None:
        live = [p for p in procs if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log.warning(f"pid {proc.pid} did not stop; killing it")
                proc.kill()
                proc.wait()

    def shutdown(self) -> None:
        """Stop every child: smtpd workers (a message being received finishes or gets
        421) and qmgr (its deliveries in progress finish) first, then local, which may
        still be answering qmgr; SIGQUIT (fast) gives them all a second."""
        everyone = [*self.children, *self.draining]
        procs = [c.proc for c in everyone if c.proc is not None]
        # anvil stops last too: smtpd workers tell it of each session's end.
        local = [c.proc for c in everyone if c.role in ("local", "anvil") and c.proc is not None]
        if self.fast:
            self._stop(procs, FAST_STOP_GRACE_SECONDS)
        else:
            self._stop([p for p in procs if p not in local], STOP_GRACE_SECONDS)
            self._stop(local, LOCAL_STOP_GRACE_SECONDS)
        os.close(self.lifeline_w)
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        if self.metrics is not None:
            self.metrics.close()
        if self._local_sock is not None:
            self._local_sock.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.rt.queue_dir, "private", "local"))
        if self._anvil_sock is not None:
            self._anvil_sock.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.rt.queue_dir, "private", "anvil"))
        if self._pidfile_fd >= 0:
            try:
                os.unlink(instance.pid_file(self.rt.queue_dir))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            with contextlib.suppress(OSError):
                os.unlink(instance.reload_status_file(self.rt.queue_dir))
            os.close(self._pidfile_fd)


def _os_error_text(exc: OSError) -> str:
    """``FILE: STRERROR`` (Postfix's form), not Python's ``[Errno N] …``."""
    if exc.strerror is None:
        return str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    return ": ".join([*(str(n) for n in names), exc.strerror])


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
