"""What the master derives from the configuration: users, paths, listening sockets.

Kept apart from the process loop so that ``postier check`` and the command-line
``start`` can run the same checks before anything is started (postfix(1) ``check``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import stat
from dataclasses import dataclass

import postier
from postier.config import mastercf
from postier.config.errors import ConfigError
from postier.config.mastercf import MasterService
from postier.config.params import unimplemented_settings
from postier.config.settings import Config
from postier.log import Log
from postier.queue import dirs


class StartError(Exception):
    """The environment does not allow postier to start (not a configuration syntax error)."""


def load(config_dir: str) -> tuple[Config, list[MasterService]]:
    """Read and validate main.cf and master.cf; raise ConfigError naming file and line."""
    cfg, services, _ = load_with_warnings(config_dir)
    return cfg, services


def load_with_warnings(config_dir: str) -> tuple[Config, list[MasterService], list[str]]:
    """As ``load``, plus the warnings Postfix would log (unused or unimplemented settings)."""
    main_cf = os.path.join(config_dir, "main.cf")
    master_cf = os.path.join(config_dir, "master.cf")
    if not os.path.exists(main_cf):
        raise ConfigError(f"open {main_cf}: No such file or directory")
    cfg = Config.from_dir(config_dir)
    warnings = list(cfg.validate())
    services = mastercf.load(master_cf)
    changed = {n for n, s in cfg.main.values.items() if s.value != cfg.default(n)}
    for name in unimplemented_settings(changed):  # a setting equal to the default is moot
        file, line = cfg.location(name)
        warnings.append(
            f"{file}, line {line}: parameter {name} is not implemented by postier yet; "
            f"its setting ({cfg.get_raw(name)}) has no effect"
        )
    for svc in services:
        if svc.command == "smtpd":
            where = f"{svc.file}, line {svc.line}"
            scfg = cfg.with_overrides(svc.overrides, source=where)
            warnings += [w for w in scfg.validate() if w not in warnings]
            check_smtpd_settings(scfg, where)
            for name in unimplemented_settings(set(svc.overrides)):
                warnings.append(
                    f"{where}: service {svc.name}: -o {name} is not implemented by postier "
                    "yet; it has no effect"
                )
    return cfg, services, warnings


def check_smtpd_settings(cfg: Config, where: str) -> None:
    """Reject, at start, restriction lists that smtpd could not evaluate."""
    from postier.restrictions.lists import check_restriction_lists

    check_restriction_lists(cfg, where)


@dataclass(frozen=True)
class Runtime:
    queue_dir: str
    uid: int | None  # mail_owner's uid when running as root, else None (run as ourselves)
    gid: int | None
    owner_name: str
    smtpd_workers: int
    version: str

    @classmethod
    def from_config(cls, cfg: Config) -> Runtime:
        owner = cfg.get("mail_owner")
        uid: int | None = None
        gid: int | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(owner)
            except KeyError:
                raise StartError(
                    f'mail_owner: user "{owner}" does not exist; create it with: '
                    f"groupadd --system {owner} && useradd --system --gid {owner} "
                    f"--home-dir {cfg.get('queue_directory')} --shell /usr/sbin/nologin {owner} "
                    "(or set mail_owner in main.cf)"
                ) from None
            if pw.pw_uid == 0:
                raise StartError(f"mail_owner: user {owner} must not be root (uid 0)")
            uid, gid = pw.pw_uid, pw.pw_gid
        else:
            owner = pwd.getpwuid(os.geteuid()).pw_name
        workers = max(1, os.cpu_count() or 1)
        return cls(
            queue_dir=cfg.get("queue_directory"),
            uid=uid,
            gid=gid,
            owner_name=owner,
            smtpd_workers=workers,
            version=postier.__version__,
        )

    def prepare_queue(self) -> None:
        dirs.ensure(self.queue_dir, self.uid, self.gid)


def pid_file(queue_dir: str) -> str:
    return os.path.join(queue_dir, "pid", "master.pid")


def _interface_hosts(cfg: Config) -> list[str]:
    protocols = {p.lower() for p in cfg.get_list("inet_protocols")}
    v4 = "all" in protocols or "ipv4" in protocols
    v6 = "all" in protocols or "ipv6" in protocols
    wanted = [i.lower() for i in cfg.get_list("inet_interfaces")]
    hosts: list[str] = []
    for item in wanted:
        if item == "all":
            hosts += (["0.0.0.0"] if v4 else []) + (["::"] if v6 else [])
        elif item in ("loopback-only", "localhost"):
            hosts += (["127.0.0.1"] if v4 else []) + (["::1"] if v6 else [])
        else:
            hosts.append(item.strip("[]"))
    return hosts


def bind_service(svc: MasterService, cfg: Config, log: Log) -> list[socket.socket]:
    """Bind the listening sockets of one ``inet`` service of master.cf."""
    host, port = mastercf.inet_endpoint(svc.name)
    hosts = [host] if host else _interface_hosts(cfg)
    socks: list[socket.socket] = []
    for h in hosts:
        # inet_interfaces = all/loopback-only names IPv6 too; a host without IPv6
        # skips it with a warning, as Postfix does, instead of refusing to start.
        optional_v6 = host is None and len(hosts) > 1 and ":" in h
        try:
            infos = socket.getaddrinfo(h, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            if optional_v6:
                log.warning(f"service {svc.name}: no IPv6 address [{h}]: {exc}; IPv6 skipped")
                continue
            raise StartError(
                f"{svc.file}, line {svc.line}: service {svc.name}: {h}: {exc}"
            ) from None
        family, _, _, _, addr = infos[0]
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            if optional_v6:
                log.warning(f"service {svc.name}: no IPv6 socket: {exc.strerror}; IPv6 skipped")
                continue
            raise StartError(
                f"{svc.file}, line {svc.line}: service {svc.name}: socket: {exc.strerror}"
            ) from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            if optional_v6:
                log.warning(
                    f"service {svc.name}: cannot bind [{h}]:{port}: {exc.strerror}; IPv6 skipped"
                )
                continue
            raise StartError(
                f"{svc.file}, line {svc.line}: service {svc.name}: "
                f"bind {h} port {port}: {exc.strerror}"
            ) from None
        sock.listen(1024)
        socks.append(sock)
    return socks


def bind_local_socket(rt: Runtime) -> socket.socket:
    """The unix socket on which the local delivery agent takes requests from qmgr."""
    path = os.path.join(rt.queue_dir, "private", "local")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if rt.uid is not None and rt.gid is not None:
        # private/ belongs to mail_owner: never follow a link planted there.
        os.chown(path, rt.uid, rt.gid, follow_symlinks=False)
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            sock.close()
            raise StartError(f"{path}: not the socket just created")
    sock.listen(64)
    return sock
