"""The local delivery agent process: delivers to users of this machine, as each user.

Follows Postfix's local(8): aliases (``alias_maps``), ``recipient_delimiter``,
``mailbox_command`` (run as the recipient), else mbox delivery into
``mail_spool_directory/USER`` with the recipient's privileges. Runs as root (switching
to the recipient per delivery) and takes requests from the queue manager on the
``private/local`` socket (``postier.delivery.protocol``). Deliveries are made one at a
time because privileges are switched process-wide.

Group commit: the requests that have arrived while earlier ones were being delivered
are delivered as one batch; mbox appends in a batch are written without fsync, then
every mailbox the batch touched is fsynced once, and only then are the results logged
and answered. A message is never reported delivered before it is on disk, but a busy
mailbox costs one fsync per batch instead of one per message. Postfix's local(8)
cannot do this, as each delivery is a separate request to a separate process.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import cast

from postier import daemon
from postier.config.params import (
    ALIAS_MAPS,
    COMMAND_TIME_LIMIT,
    DEFAULT_PRIVS,
    DELIVER_LOCK_ATTEMPTS,
    DELIVER_LOCK_DELAY,
    HOME_MAILBOX,
    MAIL_SPOOL_DIRECTORY,
    MAILBOX_COMMAND,
    MAILBOX_DELIVERY_LOCK,
    MAILBOX_SIZE_LIMIT,
    MAILBOX_TRANSPORT,
    MYORIGIN,
    RECIPIENT_DELIMITER,
    STALE_LOCK_TIME,
)
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.protocol import DeliverAnswer, DeliverRequest, RcptRequest, RcptResult
from postier.delivery.status import DeliveryStatus, Kind, status_log_line
from postier.dns.resolver import local_addresses
from postier.local import command, mbox
from postier.local.handoff import MailboxTransport
from postier.local.localpart import command_env
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.queue.file import QueueFile
from postier.rewrite.address import parse_address
from postier.rewrite.extension import split_extension
from postier.rewrite.resolve import AddressClass, Classifier
from postier.tables import TableError, Tables
from postier.tables.aliases import AliasMaps
from postier.tables.passwd import local_recipient_check

MAX_ALIAS_DEPTH = 10


@dataclass
class Target:
    """One final local delivery: a user's mailbox, or a command from an alias."""

    user: str
    command: str | None = None
    # The address an alias expansion reached this mailbox as (qualified with myorigin,
    # as Postfix's cleanup does), logged as to=<…> with orig_to; "" for the recipient
    # itself and for commands (logged under the alias).
    address: str = ""


@dataclass
class Delivered:
    """One delivery of a recipient (to one alias target): its status, logged as its own
    line, and the mailboxes it appended to without fsync."""

    status: DeliveryStatus
    paths: set[str]


class LocalAgent:
    def __init__(self, cfg: Config, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.tables = Tables(warn=log.warning)
        self.aliases = AliasMaps(self.tables.for_param(cfg, ALIAS_MAPS, aliases=True))
        self.delimiter = cfg[RECIPIENT_DELIMITER]
        self.myorigin = cfg[MYORIGIN]
        self.spool = cfg[MAIL_SPOOL_DIRECTORY]
        self.home_mailbox = cfg[HOME_MAILBOX]
        self.mailbox_command = cfg[MAILBOX_COMMAND]
        # local(8): mailbox_transport takes precedence over mailbox_command and the mbox
        self.mailbox_transport = (MailboxTransport(cfg, cfg[MAILBOX_TRANSPORT], log)
                                  if cfg[MAILBOX_TRANSPORT] else None)
        self._index = 0  # the queue-file index of the recipient being delivered
        self._handed_off = False  # its status line was logged by mailbox_transport
        self.size_limit = cfg[MAILBOX_SIZE_LIMIT]
        self.locks = cfg[MAILBOX_DELIVERY_LOCK]
        self.lock_attempts = cfg[DELIVER_LOCK_ATTEMPTS]
        self.lock_delay = cfg[DELIVER_LOCK_DELAY]
        self.stale_lock_time = cfg[STALE_LOCK_TIME]
        self.root = os.geteuid() == 0
        self.default_privs = cfg[DEFAULT_PRIVS]
        self.classify = Classifier.from_config(cfg, local_addresses())
        # "is this a local recipient?": the same answer smtpd gives at RCPT time
        self.local_recipients = local_recipient_check(self.aliases, self.delimiter)
        # mailboxes appended to and not yet fsynced: (dev, inode) -> (path, descriptor)
        self._unsynced: dict[tuple[int, int], tuple[str, int]] = {}
        self._paths: set[str] = set()  # the mailboxes of the recipient being delivered
        # what each final target of the message being delivered got, so that aliases
        # reaching one user twice deliver once (Postfix's duplicate elimination)
        self._targets: dict[tuple[str, str | None], DeliveryStatus] = {}
        # the password entries read for the message being delivered: its expansion and
        # its delivery ask for the same user (getpwnam reads /etc/passwd each time)
        self._passwd: dict[str, pwd.struct_passwd | None] = {}

    def getpwnam(self, name: str) -> pwd.struct_passwd | None:
        """``pwd.getpwnam(name)``, None when there is no such user; read once per
        queue file delivered."""
        if name not in self._passwd:
            try:
                self._passwd[name] = pwd.getpwnam(name)
            except KeyError:
                self._passwd[name] = None
        return self._passwd[name]

    # --- resolution ---------------------------------------------------------------------

    def expand(self, localpart: str, depth: int = 0) -> list[Target] | DeliveryStatus:
        """Aliases first (full local part, then without extension), then the passwd file."""
        base, _ext = split_extension(localpart, self.delimiter)
        if depth == 0:
            known = self.local_recipients.check_localpart(localpart)
            if known is False:
                return status.bounced("5.1.1", f'unknown user: "{base.lower()}"')
            if known is None:
                return status.deferred("4.3.0", f"{localpart}: local recipient lookup failed")
        for key in (localpart, base) if base != localpart else (localpart,):
            values = self.aliases.lookup(key)
            if values is None:
                continue
            if depth >= MAX_ALIAS_DEPTH:
                return status.bounced("5.4.6", f"mail forwarding loop for {localpart}")
            targets: list[Target] = []
            for value in values:
                if value.startswith("|"):
                    targets.append(Target(self.default_privs, value[1:].strip().strip('"')))
                    continue
                name = value.split("@", 1)[0].strip('"')
                if "@" in value and not self._is_local_domain(value.split("@", 1)[1]):
                    return status.deferred(
                        "4.3.0", f"alias {key}: forwarding to {value} is not supported yet"
                    )
                final = value.strip('"') if "@" in value else f"{name}@{self.myorigin}"
                if name.lower() == key:
                    targets.append(Target(name, address=final))
                    continue
                sub = self.expand(name, depth + 1)
                if isinstance(sub, DeliveryStatus):
                    return sub if sub.final_recipient else replace(sub, final_recipient=final)
                targets.extend(t if t.address or t.command else replace(t, address=final)
                               for t in sub)
            return targets
        if self.getpwnam(base) is None:
            return status.bounced("5.1.1", f'unknown user: "{base.lower()}"')
        return [Target(base)]

    def _is_local_domain(self, domain: str) -> bool:
        return self.classify(domain) is AddressClass.LOCAL

    # --- delivery -----------------------------------------------------------------------

    def deliver_batch(self, batch: list[DeliverRequest]) -> list[DeliverAnswer]:
        """Deliver every request, fsync each mailbox touched once, then log and answer.

        Each recipient is answered with the worst status of its deliveries; each of
        its deliveries (one per alias target, as local(8)) gets its own status line."""
        self._unsynced = {}
        self._logged: set[tuple[int, int]] = set()  # (request, index) handed off whole
        done: list[tuple[DeliverRequest, list[tuple[RcptResult, list[Delivered]]]]] = []
        for req in batch:
            done.append((req, self.deliver(req)))
        failed = self.sync_mailboxes()
        answers = []
        for req, results in done:
            final: list[RcptResult] = []
            for (res, lines), rcpt in zip(results, req.recipients, strict=True):
                st = res.status
                if st.kind is Kind.SENT and any(d.paths & failed for d in lines):
                    bad = min(set().union(*(d.paths & failed for d in lines)))
                    st = status.deferred("4.3.0", f"cannot update mailbox {bad}: fsync failed")
                if (req.id, res.index) not in self._logged:
                    for d in lines or [Delivered(st, set())]:
                        line_st = st if not lines else d.status
                        bad_paths = d.paths & failed
                        if bad_paths and line_st.kind is Kind.SENT:
                            line_st = replace(status.deferred(
                                "4.3.0", f"cannot update mailbox {min(bad_paths)}: "
                                "fsync failed"), final_recipient=line_st.final_recipient)
                        self.log_status(req, rcpt.address, rcpt.orig, line_st)
                final.append(RcptResult(res.index, st))
            answers.append(DeliverAnswer(req.id, final))
        return answers

    def sync_mailboxes(self) -> set[str]:
        """fsync every mailbox appended to without fsync; the paths that failed."""
        failed: set[str] = set()
        for path, fd in self._unsynced.values():
            try:
                os.fsync(fd)  # the very file written (a descriptor kept), never a path
            except OSError as exc:
                self.log.warning(f"fsync {path}: {exc.strerror}")
                failed.add(path)
            finally:
                os.close(fd)
        self._unsynced = {}
        return failed

    def deliver(self, req: DeliverRequest) -> list[tuple[RcptResult, list[Delivered]]]:
        """Each recipient's result, with its deliveries (status and the mailboxes each
        left to fsync); no deliveries when it failed before any (expansion, queue file)."""
        results: list[tuple[RcptResult, list[Delivered]]] = []
        try:
            qf = QueueFile.open(req.path)
        except Exception as exc:  # the queue file vanished or is corrupt: defer, qmgr decides
            st = status.deferred("4.3.0", f"cannot open queue file: {exc}")
            return [(RcptResult(r.index, st), []) for r in req.recipients]
        self._targets = {}
        self._passwd = {}
        with qf:
            for rcpt in req.recipients:
                self._paths = set()
                self._lines: list[Delivered] = []
                self._index = rcpt.index
                self._handed_off = False
                try:
                    st = self.deliver_one(qf, req, rcpt.address, rcpt.orig)
                except Exception:
                    self.log.error(f"{req.queue_id}: {traceback.format_exc().strip()}")
                    st = status.deferred("4.3.0", "local delivery agent internal error")
                    self._lines = []
                results.append((RcptResult(rcpt.index, st), self._lines))
                if self._handed_off:
                    self._logged.add((req.id, rcpt.index))
        return results

    def deliver_one(
        self, qf: QueueFile, req: DeliverRequest, address: str, orig: str
    ) -> DeliveryStatus:
        """The worst status of the recipient's deliveries; each delivery (one per alias
        target, a target repeated in the expansion once) is noted in ``self._lines``."""
        # RFC 5321 semantics: "user"@domain is user@domain; the local part is looked up
        # unquoted (internal form), split at the last unquoted "@".
        parsed = parse_address(address)
        localpart, domain = parsed.localpart, parsed.domain or ""
        try:
            expanded = self.expand(localpart.lower())  # as smtpd checked it, and Postfix folds
        except TableError as exc:  # the environment: defer, as local(8) does
            self.log.warning(str(exc))
            expanded = status.deferred("4.3.0", "alias database unavailable")
        if isinstance(expanded, DeliveryStatus):
            return expanded
        worst: DeliveryStatus | None = None
        # Every target went to mailbox_transport, whose line was logged: no line of ours.
        self._handed_off = self.mailbox_transport is not None and all(
            t.command is None for t in expanded)
        seen: set[tuple[str, str | None]] = set()
        for target in expanded:
            key = (target.user, target.command)
            done = self._targets.get(key)
            before = set(self._paths)
            if done is not None:  # the same mailbox or command twice in one message
                st = done
            else:
                st = self.deliver_target(
                    qf, req, target, address, orig or address, localpart, domain
                )
                if target.address:
                    st = replace(st, final_recipient=target.address)
                self._targets[key] = st
            if key not in seen:
                seen.add(key)
                self._lines.append(Delivered(st, self._paths - before))
            if worst is None or _severity(st) > _severity(worst):
                worst = st
        assert worst is not None
        return worst

    def deliver_target(
        self,
        qf: QueueFile,
        req: DeliverRequest,
        target: Target,
        address: str,
        orig: str,
        localpart: str,
        domain: str,
    ) -> DeliveryStatus:
        pw = self.getpwnam(target.user)
        if pw is None:
            return status.bounced("5.1.1", f'unknown user: "{target.user}"')
        uid: int | None = pw.pw_uid if self.root else None
        gid: int | None = pw.pw_gid if self.root else None
        _base, ext = split_extension(localpart, self.delimiter)
        if target.command is None and self.mailbox_transport is not None:
            # An alias's target is handed off as user@domain (the recipient's domain).
            same = target.user.lower() == localpart.lower()
            rcpt = address if same else f"{target.user}@{domain}" if domain else target.user
            return self.mailbox_transport.deliver(
                req.queue_id, req.path, req.sender, req.arrival,
                RcptRequest(self._index, rcpt, orig), req.attrs)
        cmd = target.command or self.mailbox_command
        if cmd:
            if self.root and pw.pw_uid == 0:
                dp = pwd.getpwnam(self.default_privs)
                uid, gid = dp.pw_uid, dp.pw_gid
            env = command_env(
                user=pw.pw_name,
                home=pw.pw_dir,
                shell=pw.pw_shell,
                recipient=address,
                sender=req.sender,
                extension=ext,
                domain=domain,
                local=localpart,
                original_recipient=orig,
                attrs=req.attrs,
            )
            return command.deliver_command(
                cmd,
                content=_content(qf),
                sender=req.sender,
                recipient=address,
                env=env,
                uid=uid,
                gid=gid,
                home=pw.pw_dir,
                timeout=self.cfg[COMMAND_TIME_LIMIT],
                orig_recipient=orig,
                arrival=req.arrival,
                size_limit=self.size_limit,
            )
        if self.home_mailbox:
            path = os.path.join(pw.pw_dir, self.home_mailbox)
        else:
            path = os.path.join(self.spool, pw.pw_name)
        written: list[int] = []
        st = mbox.deliver_mbox(
            path,
            sender=req.sender,
            recipient=address,
            orig_recipient=orig,
            content=_content(qf),
            arrival=time.time(),  # the From_ line carries the delivery time, as Postfix's
            size_limit=self.size_limit,
            locks=self.locks,
            uid=uid,
            gid=gid,
            fsync=False,  # sync_mailboxes() does it once per batch, before anything is said
            sync_later=written,
            privileged_ok=not self.home_mailbox,
            lock_attempts=self.lock_attempts,
            lock_delay=self.lock_delay,
            stale_lock_time=self.stale_lock_time,  # never root's rights in a user's home
        )
        for fd in written:
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino)
            if key in self._unsynced:
                os.close(fd)  # one descriptor per file is enough
            else:
                self._unsynced[key] = (path, fd)
            self._paths.add(path)
        return st

    def log_status(self, req: DeliverRequest, address: str, orig: str, st: DeliveryStatus) -> None:
        self.log.info(status_log_line(req.queue_id, address, orig, req.arrival, st, time.time()))


def _severity(st: DeliveryStatus) -> int:
    return {"2": 0, "4": 1, "5": 2}.get(st.dsn[:1], 1)


def _content(qf: QueueFile) -> Iterator[bytes]:
    return qf.iter_content()


async def serve(agent: LocalAgent, listen_fd: int, ready_fd: int, lifeline_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    sock = socket.socket(fileno=listen_fd)

    server = await loop.create_unix_server(lambda: RequestProtocol(agent), sock=sock)
    daemon.report_ready(ready_fd)
    async with server:
        await stop.wait()


class RequestProtocol(asyncio.Protocol):
    """One qmgr connection: requests queue up while a batch is being delivered."""

    def __init__(self, agent: LocalAgent) -> None:
        self.agent = agent
        self.buffer = b""
        self.queue: list[DeliverRequest] = []
        self.transport: asyncio.WriteTransport | None = None
        self.scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        self.queue += [DeliverRequest.decode(line) for line in lines if line]
        if self.queue and not self.scheduled:
            # Deliver on the next loop turn, so that every request already readable
            # joins this batch.
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.run_batch)

    def run_batch(self) -> None:
        self.scheduled = False
        batch, self.queue = self.queue, []
        if not batch or self.transport is None or self.transport.is_closing():
            return
        answers = self.agent.deliver_batch(batch)
        self.transport.write(b"".join(a.encode() for a in answers))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("local")
    parser.add_argument("--listen-fd", type=int, required=True)
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("local", cfg, foreground=args.foreground)
    # The local agent keeps root's privileges: it takes each recipient's per delivery.
    return daemon.run(
        log,
        "",
        lambda: serve(LocalAgent(cfg, log), args.listen_fd, args.ready_fd, args.lifeline_fd),
    )


if __name__ == "__main__":
    sys.exit(main())
