"""The master's listening sockets: the inet services of master.cf and the local agent's socket.

Follows Postfix's master(8) and inet_interfaces/inet_protocols (postconf(5)): the master
binds every socket itself, as root, and the children inherit them. A host without IPv6
skips the IPv6 half of ``inet_interfaces = all`` with a warning, as Postfix does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from postier.config import mastercf
from postier.config.mastercf import MasterService
from postier.config.params import INET_INTERFACES, INET_PROTOCOLS
from postier.config.settings import Config
from postier.instance import Runtime, StartError
from postier.log import Log


def _interface_hosts(cfg: Config) -> list[str]:
    protocols = {p.lower() for p in cfg[INET_PROTOCOLS]}
    v4 = "all" in protocols or "ipv4" in protocols
    v6 = "all" in protocols or "ipv6" in protocols
    wanted = [i.lower() for i in cfg[INET_INTERFACES]]
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
    """Bind the listening sockets of one ``inet`` service of master.cf (listening, backlog
    1024); raises StartError naming the master.cf line when one cannot be bound."""
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


def bind_local_socket(rt: Runtime, name: str = "local") -> socket.socket:
    """The unix socket QUEUE_DIR/private/NAME on which a child takes requests: ``local``
    (the local delivery agent, from qmgr) or ``anvil`` (from the smtpd workers); mode
    0600, owned by mail_owner. Raises StartError if it is not the socket."""
    path = os.path.join(rt.queue_dir, "private", name)
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
