"""The local delivery agent process: delivers to users of this machine, as each user.

Follows Postfix's local(8) and aliases(5): aliases (``alias_maps``), the user's
``.forward`` (``forward_path``), ``:include:`` files, their ``|command``, ``/file`` and
address targets (``allow_mail_to_commands``/``allow_mail_to_files``; non-local
addresses, and every address of a ``.forward`` or ``:include:`` file, forwarded: the
message resubmitted through cleanup with its sender, ``Delivered-To:`` on top, the
``Delivered-To:`` loop check), ``recipient_delimiter``, ``mailbox_command`` (run as the
recipient), else mbox delivery into ``mail_spool_directory/USER`` with the recipient's
privileges. Runs as root (switching
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
import stat
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import cast

from postier import daemon
from postier.cleanup.cleanup import Cleanup, QmgrTrigger
from postier.cleanup.headers import local_received_header
from postier.config.params import (
    ALIAS_MAPS,
    ALLOW_MAIL_TO_COMMANDS,
    ALLOW_MAIL_TO_FILES,
    COMMAND_EXECUTION_DIRECTORY,
    COMMAND_EXPANSION_FILTER,
    COMMAND_TIME_LIMIT,
    CONFIG_DIRECTORY,
    DEFAULT_PRIVS,
    DELIVER_LOCK_ATTEMPTS,
    DELIVER_LOCK_DELAY,
    ENABLE_LONG_QUEUE_IDS,
    EXECUTION_DIRECTORY_EXPANSION_FILTER,
    EXPORT_ENVIRONMENT,
    FORWARD_EXPANSION_FILTER,
    FORWARD_PATH,
    HOME_MAILBOX,
    HOPCOUNT_LIMIT,
    IMPORT_ENVIRONMENT,
    MAIL_NAME,
    MAIL_OWNER,
    MAIL_SPOOL_DIRECTORY,
    MAILBOX_COMMAND,
    MAILBOX_DELIVERY_LOCK,
    MAILBOX_SIZE_LIMIT,
    MAILBOX_TRANSPORT,
    MYHOSTNAME,
    MYORIGIN,
    QUEUE_DIRECTORY,
    RECIPIENT_DELIMITER,
    STALE_LOCK_TIME,
)
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.protocol import DeliverAnswer, DeliverRequest, RcptRequest, RcptResult
from postier.delivery.status import DeliveryStatus, Kind, status_log_line
from postier.dns.resolver import local_addresses
from postier.local import command, file, forward, mbox, privs
from postier.local.forward import Item, ItemKind, Origin
from postier.local.handoff import MailboxTransport
from postier.local.localpart import (
    ExpansionError,
    client_attributes,
    command_env,
    imported_environment,
    local_expand,
)
from postier.log import Log
from postier.log import for_config as log_for_config
from postier.queue.file import ATTR_SMTPUTF8, Envelope, QueueFile, Recipient
from postier.rewrite.address import parse_address
from postier.rewrite.extension import split_extension
from postier.rewrite.resolve import AddressClass, Classifier
from postier.tables import TableError, Tables
from postier.tables.aliases import AliasMaps
from postier.tables.domainlist import domain_lists
from postier.tables.passwd import local_recipient_check

MAX_ALIAS_DEPTH = 10


@dataclass
class Target:
    """One final local delivery: a user's mailbox, a command, a file, a forwarded address,
    or a refusal found while expanding (``failed``).

    ``user``: the mailbox's owner, or whose rights a command or file delivery takes.
    """

    user: str
    command: str | None = None
    # The address an alias expansion reached this mailbox as (qualified with myorigin,
    # as Postfix's cleanup does), logged as to=<…> with orig_to; "" for the recipient
    # itself and for commands (logged under the alias).
    address: str = ""
    file: str | None = None  # an absolute path (alias, .forward or :include: file)
    forward: str | None = None  # a non-local address: the message is resubmitted to it
    failed: DeliveryStatus | None = None
    # a command found in an alias (or a :include: file an alias named): the alias's
    # name, its USER and LOGNAME (Postfix 3.7's)
    alias: str = ""
    # its HOME and SHELL are those of ``user``; False when ``user`` is default_privs
    # standing in for root (a root-owned alias database or :include: file): then it has
    # neither, as under Postfix 3.7
    user_env: bool = True

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two targets the same delivery (duplicate elimination)."""
        if self.forward is not None:
            return ("forward", "", self.forward.lower())
        if self.file is not None:
            return ("file", self.user, self.file)
        if self.command is not None:
            return ("command", self.user, self.command)
        if self.failed is not None:
            return ("failed", self.user, self.failed.text)
        return ("mailbox", self.user, "")


@dataclass(frozen=True)
class Source:
    """Where the items being expanded come from: their class (allow_mail_to_*), whose
    rights their commands and files take, and the user whose .forward it is, if any."""

    origin: Origin
    rights: str
    forward_user: str = ""
    alias: str = ""  # the alias being expanded, when not a user's .forward
    user_env: bool = True  # False: ``rights`` is default_privs standing in for root


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
        # what commands may inherit: the daemon environment Postfix's master imports
        self.daemon_env = imported_environment(
            cfg[IMPORT_ENVIRONMENT], os.environ, cfg[CONFIG_DIRECTORY])
        self.root = os.geteuid() == 0
        self.default_privs = cfg[DEFAULT_PRIVS]
        self.allow_commands = cfg[ALLOW_MAIL_TO_COMMANDS]
        self.allow_files = cfg[ALLOW_MAIL_TO_FILES]
        self.forward_path = cfg[FORWARD_PATH]
        self.forward_filter = cfg[FORWARD_EXPANSION_FILTER]
        self.classify = Classifier.from_config(cfg, local_addresses(),
                                               lists=domain_lists(cfg, self.tables))
        # "is this a local recipient?": the same answer smtpd gives at RCPT time
        self.local_recipients = local_recipient_check(self.aliases, self.delimiter)
        # mailboxes appended to and not yet fsynced: (dev, inode) -> (path, descriptor)
        self._unsynced: dict[tuple[int, int], tuple[str, int]] = {}
        self._paths: set[str] = set()  # the mailboxes of the recipient being delivered
        # what each final target of the recipient being delivered got, so that aliases
        # reaching one user twice deliver once (Postfix's duplicate elimination, within
        # one recipient's expansion)
        self._targets: dict[tuple[str, str, str], DeliveryStatus] = {}
        # the password entries read for the message being delivered: its expansion and
        # its delivery ask for the same user (getpwnam reads /etc/passwd each time)
        self._passwd: dict[str, pwd.struct_passwd | None] = {}
        self._cleanup: Cleanup | None = None  # made at the first forwarded message
        # the message's Delivered-To: addresses (lower case), read once per message
        self._delivered: set[str] | None = None
        self._rlines: list[DeliveryStatus] = []  # the recipient's targets' fresh statuses
        self._lines: dict[tuple[int, int], list[DeliveryStatus]] = {}

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
        """Aliases first (full local part, then without extension), then the passwd file
        and the user's .forward file (forward_path), else the user's mailbox."""
        base, ext = split_extension(localpart, self.delimiter)
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
            owner = self.alias_owner()
            source = Source(Origin.ALIAS, owner, alias=key,
                            user_env=owner != self.default_privs)
            return self.expand_items(key, forward.parse_values(values), source, depth)
        pw = self.getpwnam(base)
        if pw is None:
            return status.bounced("5.1.1", f'unknown user: "{base.lower()}"')
        if depth < MAX_ALIAS_DEPTH:
            found = self.dot_forward(pw, localpart, ext, depth)
            if found is not None:
                return found
        return [Target(base)]

    def expand_items(
        self, key: str, items: list[Item], source: Source, depth: int
    ) -> list[Target] | DeliveryStatus:
        """The targets of one alias value, .forward or :include: file (``key``: the
        name being expanded); a sub-expansion's failure fails the whole."""
        targets: list[Target] = []
        for item in items:
            if item.kind is ItemKind.COMMAND:
                if not forward.allowed(self.allow_commands, source.origin):
                    targets.append(Target(source.rights, failed=status.bounced(
                        "5.7.1", "mail to command is restricted")))
                else:
                    targets.append(Target(source.rights, item.value, alias=source.alias,
                                          user_env=source.user_env))
                continue
            if item.kind is ItemKind.FILE:
                if not forward.allowed(self.allow_files, source.origin):
                    targets.append(Target(source.rights, failed=status.bounced(
                        "5.7.1", "mail to file is restricted")))
                else:
                    targets.append(Target(source.rights, file=item.value))
                continue
            if item.kind is ItemKind.INCLUDE:
                sub = self.include(item.value, source, depth)
                if isinstance(sub, DeliveryStatus):
                    return sub
                targets.extend(sub)
                continue
            value = item.value
            name, at, domain = value.rpartition("@") if "@" in value else (value, "", "")
            name = name.strip('"')
            if at and not self._is_local_domain(domain):
                targets.append(Target(source.rights, forward=value.strip('"')))
                continue
            final = value.strip('"') if at else f"{name}@{self.myorigin}"
            if (item.kind is ItemKind.MAILBOX or name.lower() == key
                    or name.lower() == source.forward_user):
                targets.append(Target(name, address=final))
                continue
            if source.origin is not Origin.ALIAS:
                # local(8): an address from a .forward or :include: file is not expanded
                # with that file's rights: the message is resubmitted to it, as to a
                # remote one (aliases expand local addresses in place) — unless the
                # message was already delivered to it (Delivered-To:), a loop
                if final.lower() in (self._delivered or ()):
                    targets.append(Target(source.rights, address=final, failed=status.bounced(
                        "5.4.6", f"mail forwarding loop for {final}")))
                else:
                    targets.append(Target(source.rights, forward=final))
                continue
            sub = self.expand(name, depth + 1)
            if isinstance(sub, DeliveryStatus):
                return sub if sub.final_recipient else replace(sub, final_recipient=final)
            targets.extend(t if t.address or t.command or t.file or t.forward
                           else replace(t, address=final) for t in sub)
        return targets

    def include(self, path: str, source: Source, depth: int) -> list[Target] | DeliveryStatus:
        """The targets of ``:include:path``, read with the rights of ``source``; its
        commands and files take the rights of the file's owner (default_privs for
        root) unless a user's .forward included it."""
        if not os.path.isabs(path):
            return status.bounced("5.3.5", f":include:{path} uses a relative path")
        if depth >= MAX_ALIAS_DEPTH:
            return status.bounced("5.4.6", f"mail forwarding loop for :include:{path}")
        pw = pwd.getpwnam(source.rights)
        try:
            with privs.as_user(pw.pw_uid if self.root else None, pw.pw_gid):
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            return status.deferred("4.3.0", f"cannot open include file {path}: {exc.strerror}")
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                return status.bounced("5.3.5", f":include: file {path} is not a regular file")
            if info.st_mode & stat.S_IWOTH:
                return status.bounced("5.3.5", f":include: file {path} is world writable")
            text = f.read().decode("utf-8", "surrogateescape")
        rights, user_env = source.rights, source.user_env
        if source.origin is not Origin.FORWARD:
            rights = self._owner_rights(info.st_uid)
            user_env = rights != self.default_privs
        sub = Source(Origin.INCLUDE, rights, source.forward_user, source.alias, user_env)
        return self.expand_items(f":include:{path}", forward.parse_file(text), sub, depth + 1)

    def dot_forward(
        self, pw: pwd.struct_passwd, localpart: str, ext: str | None, depth: int
    ) -> list[Target] | DeliveryStatus | None:
        """The targets of the user's first forward_path file that exists, read as the
        user (a symbolic link is followed with the user's rights, as local(8) opens it);
        None when there is none (or none usable: a warning says why)."""
        attrs: dict[str, str | None] = {
            "user": pw.pw_name, "home": pw.pw_dir, "shell": pw.pw_shell,
            "recipient": f"{localpart}@{self.myorigin}", "extension": ext,
            "domain": self.myorigin, "local": localpart,
            "recipient_delimiter": self.delimiter if ext is not None else None,
        }
        try:
            paths = forward.forward_paths(self.forward_path, attrs, self.forward_filter)
        except ExpansionError as exc:
            return status.deferred("4.3.5", f"mail system configuration error: {exc}")
        uid = pw.pw_uid if self.root else None
        for path in paths:
            try:
                with privs.as_user(uid, pw.pw_gid):
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue  # absent or unreadable: the next one
            with os.fdopen(fd, "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    self.log.warning(f"file {path} is not a regular file")
                    continue
                if info.st_uid not in (0, pw.pw_uid):
                    self.log.warning(f"file {path} has bad owner uid {info.st_uid}")
                    continue
                if info.st_mode & stat.S_IWOTH:
                    self.log.warning(f"file {path} is world writable")
                    continue
                text = f.read().decode("utf-8", "surrogateescape")
            items = forward.parse_file(text)
            if not items:
                continue
            source = Source(Origin.FORWARD, pw.pw_name, pw.pw_name.lower())
            return self.expand_items(pw.pw_name.lower(), items, source, depth + 1)
        return None

    def alias_owner(self) -> str:
        """Whose rights alias commands and files take: the owner of the first alias
        database file found (default_privs when root owns it, or none is found)."""
        for spec in self.cfg[ALIAS_MAPS]:
            _kind, _, path = spec.partition(":")
            for candidate in (path + ".pdb", path + ".db", path):
                try:
                    return self._owner_rights(os.stat(candidate).st_uid)
                except OSError:
                    continue
        return self.default_privs

    def _owner_rights(self, uid: int) -> str:
        if uid == 0:
            return self.default_privs
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return self.default_privs

    def _is_local_domain(self, domain: str) -> bool:
        return self.classify(domain) is AddressClass.LOCAL

    # --- delivery -----------------------------------------------------------------------

    def deliver_batch(self, batch: list[DeliverRequest]) -> list[DeliverAnswer]:
        """Deliver every request, fsync each mailbox touched once, then log and answer."""
        self._unsynced = {}
        self._logged: set[tuple[int, int]] = set()  # (request, index) handed off whole
        # (request, index) -> one status per final target, when a recipient has several
        # (an alias list, a .forward): local(8) logs a line for each
        self._lines = {}
        done: list[tuple[DeliverRequest, list[tuple[RcptResult, set[str]]]]] = []
        for req in batch:
            done.append((req, self.deliver(req)))
        failed = self.sync_mailboxes()
        answers = []
        for req, results in done:
            final: list[RcptResult] = []
            for (res, paths), rcpt in zip(results, req.recipients, strict=True):
                st = res.status
                bad = paths & failed
                if bad and st.kind is Kind.SENT:
                    st = status.deferred("4.3.0", f"cannot update mailbox {min(bad)}: fsync failed")
                lines = self._lines.get((req.id, res.index))
                if lines is not None:
                    for line in lines:
                        if bad and line.kind is Kind.SENT and line.text == "delivered to mailbox":
                            line = replace(st, final_recipient=line.final_recipient)
                        self.log_status(req, rcpt.address, rcpt.orig, line)
                elif (req.id, res.index) not in self._logged:
                    self.log_status(req, rcpt.address, rcpt.orig, st)
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

    def deliver(self, req: DeliverRequest) -> list[tuple[RcptResult, set[str]]]:
        """Each recipient's result, with the mailboxes its delivery left to fsync."""
        results: list[tuple[RcptResult, set[str]]] = []
        try:
            qf = QueueFile.open(req.path)
        except Exception as exc:  # the queue file vanished or is corrupt: defer, qmgr decides
            st = status.deferred("4.3.0", f"cannot open queue file: {exc}")
            return [(RcptResult(r.index, st), set()) for r in req.recipients]
        self._delivered = None
        self._passwd = {}
        with qf:
            for rcpt in req.recipients:
                # Duplicate elimination is per original recipient: Postfix's local(8)
                # takes one recipient per delivery request (local_destination_recipient
                # _limit = 1), so each gets its own copy, and its log line says so.
                self._targets = {}
                self._paths = set()
                self._index = rcpt.index
                self._handed_off = False
                self._rlines = []
                try:
                    st = self.deliver_one(qf, req, rcpt.address, rcpt.orig)
                except Exception:
                    self.log.error(f"{req.queue_id}: {traceback.format_exc().strip()}")
                    st = status.deferred("4.3.0", "local delivery agent internal error")
                results.append((RcptResult(rcpt.index, st), self._paths))
                if len(self._rlines) > 1:
                    self._lines[(req.id, rcpt.index)] = self._rlines
                if self._handed_off:
                    self._logged.add((req.id, rcpt.index))
        return results

    def deliver_one(
        self, qf: QueueFile, req: DeliverRequest, address: str, orig: str
    ) -> DeliveryStatus:
        # RFC 5321 semantics: "user"@domain is user@domain; the local part is looked up
        # unquoted (internal form), split at the last unquoted "@".
        parsed = parse_address(address)
        localpart, domain = parsed.localpart, parsed.domain or ""
        if self._delivered is None:
            self._delivered = forward.delivered_to(_content(qf))
        if address.lower() in self._delivered:  # local(8): the Delivered-To: loop check
            return status.bounced("5.4.6", f"mail forwarding loop for {address}")
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
            t.key[0] == "mailbox" for t in expanded)
        # Non-local addresses: one new message, resubmitted through cleanup, for all
        # of this recipient's (local(8): one queue file per sender and Delivered-To).
        forwards = [t for t in expanded
                    if t.forward is not None and t.key not in self._targets]
        if forwards:
            st = self.forward(qf, req, address, orig or address,
                              list(dict.fromkeys(t.forward or "" for t in forwards)))
            for t in forwards:
                self._targets[t.key] = st
        for target in expanded:
            key = target.key
            done = self._targets.get(key)
            if done is not None:  # the same mailbox or command twice in one message
                st = done
            else:
                st = self.deliver_target(
                    qf, req, target, address, orig or address, localpart, domain
                )
                if target.address:
                    st = replace(st, final_recipient=target.address)
                self._targets[key] = st
                if not (self.mailbox_transport is not None and key[0] == "mailbox"):
                    self._rlines.append(st)
            if worst is None or _severity(st) > _severity(worst):
                worst = st
        if forwards:  # logged last, as local(8) forwards at the end of a delivery
            self._rlines.append(self._targets[forwards[0].key])
            fst = self._targets[forwards[0].key]
            if worst is None or _severity(fst) > _severity(worst):
                worst = fst
        if worst is None:  # nothing to deliver to (an empty :include: file)
            return status.sent("delivered to nobody")
        return worst

    def forward(self, qf: QueueFile, req: DeliverRequest, delivered: str, orig: str,
                addresses: list[str]) -> DeliveryStatus:
        """Resubmit the message to ``addresses`` with its envelope sender, through
        cleanup, a ``Delivered-To: delivered`` header on top; ``2.0.0 forwarded as
        QUEUE_ID``, or 4.3.0 deferred when the queue file cannot be written."""
        if self._cleanup is None:
            queue_dir = self.cfg[QUEUE_DIRECTORY]
            self._cleanup = Cleanup(
                queue_dir, log=self.log, trigger=QmgrTrigger(queue_dir, self.log),
                long_queue_ids=self.cfg[ENABLE_LONG_QUEUE_IDS],
                hopcount_limit=self.cfg[HOPCOUNT_LIMIT])
        now = time.time()
        # DSN requests go with the copy: the original recipient's NOTIFY and ORCPT (or
        # rfc822;ORIG), the message's RET and ENVID; and its SMTPUTF8 mark
        parent = qf.envelope.recipients[self._index]
        orcpt = parent.dsn_orcpt or f"rfc822;{orig}"
        attrs = {k: v for k, v in qf.envelope.attrs.items()
                 if k in ("dsn_ret", "dsn_envid", ATTR_SMTPUTF8)}
        envelope = Envelope(req.sender, [
            Recipient(a, orig=orig, dsn_notify=parent.dsn_notify, dsn_orcpt=orcpt)
            for a in addresses], now, attrs)
        header = f"Delivered-To: {mbox.quote_822_local(delivered)}\n".encode()

        def content(queue_id: str) -> Iterator[bytes]:
            # cleanup's Received: line for locally submitted mail, then local's header
            yield local_received_header(by_host=self.cfg[MYHOSTNAME],
                                        mail_name=self.cfg[MAIL_NAME], queue_id=queue_id,
                                        when=datetime.fromtimestamp(now).astimezone())
            yield header
            yield from _content(qf)

        owner = pwd.getpwnam(self.cfg[MAIL_OWNER]) if self.root else None
        try:
            with privs.as_user(owner.pw_uid if owner else None,
                               owner.pw_gid if owner else None):
                queue_id = self._cleanup.enqueue(envelope, content)
        except OSError as exc:
            self.log.warning(f"{req.queue_id}: cannot forward: {exc}")
            return status.deferred("4.3.0", f"cannot forward mail: {exc.strerror or exc}")
        return status.sent(f"forwarded as {queue_id}")

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
        if target.failed is not None:
            return target.failed
        pw = self.getpwnam(target.user)
        if pw is None:
            return status.bounced("5.1.1", f'unknown user: "{target.user}"')
        uid: int | None = pw.pw_uid if self.root else None
        gid: int | None = pw.pw_gid if self.root else None
        if target.file is not None:
            if self.root and pw.pw_uid == 0:
                dp = pwd.getpwnam(self.default_privs)
                uid, gid = dp.pw_uid, dp.pw_gid
            return file.deliver_file(
                target.file, sender=req.sender, recipient=address, orig_recipient=orig,
                content=_content(qf), arrival=time.time(), size_limit=self.size_limit,
                locks=self.locks, uid=uid, gid=gid, lock_attempts=self.lock_attempts,
                lock_delay=self.lock_delay, stale_lock_time=self.stale_lock_time)
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
            try:
                cwd = self.execution_directory(pw, target, address, localpart, ext, domain)
            except ExpansionError as exc:
                return status.deferred("4.3.5", f"mail system configuration error: {exc}")
            if self.root and pw.pw_uid == 0:
                dp = pwd.getpwnam(self.default_privs)
                uid, gid = dp.pw_uid, dp.pw_gid
            env = command_env(
                user=target.alias or pw.pw_name,
                home=pw.pw_dir if target.user_env else None,
                shell=pw.pw_shell if target.user_env else None,
                # Postfix's internal form: "a b"@example.com is RECIPIENT a b@example.com
                recipient=_internal(address),
                sender=req.sender,
                extension=ext,
                domain=domain,
                local=localpart,
                original_recipient=_internal(orig) if orig else orig,
                attrs=client_attributes(req.attrs),
                export_environment=self.cfg[EXPORT_ENVIRONMENT],
                parent_env=self.daemon_env,
                expansion_filter=self.cfg[COMMAND_EXPANSION_FILTER],
            )
            return command.deliver_command(
                cmd,
                content=_content(qf),
                sender=req.sender,
                recipient=address,
                env=env,
                uid=uid,
                gid=gid,
                cwd=cwd or self.cfg[QUEUE_DIRECTORY],
                cwd_as_user=bool(cwd),
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

    def execution_directory(self, pw: pwd.struct_passwd, target: Target, address: str,
                            localpart: str, ext: str | None, domain: str) -> str:
        """command_execution_directory expanded for one command (local(8) attributes,
        censored with execution_directory_expansion_filter); "" when it is not set (the
        command then runs in the queue directory, as Postfix's inherit local's). Raises
        ``ExpansionError`` for bad ``$`` syntax."""
        template = self.cfg[COMMAND_EXECUTION_DIRECTORY]
        if not template:
            return ""
        attrs: dict[str, str | None] = {
            "user": target.alias or pw.pw_name,
            "home": pw.pw_dir if target.user_env else None,
            "shell": pw.pw_shell if target.user_env else None,
            "recipient": address, "extension": ext, "domain": domain, "local": localpart,
            "recipient_delimiter": self.delimiter if ext is not None else None,
        }
        return local_expand(template, attrs, self.cfg[EXECUTION_DIRECTORY_EXPANSION_FILTER])

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


def _internal(address: str) -> str:
    """``address`` (as queued, RFC 5321 quoting) in Postfix's internal, unquoted form."""
    return parse_address(address).internal()


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
