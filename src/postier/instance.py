"""What every start checks first: main.cf and master.cf validated, mail_owner, the pid file.

A library: main.cf and master.cf loaded and validated with the warnings Postfix would log,
the restriction lists smtpd could not evaluate refused, ``mail_owner`` resolved, the queue
directories made, and the place of the master's pid file.

Follows postfix(1) ``check`` and Postfix's mail_params (``mail_owner`` must exist and must
not be root). Both the master program and the ``postier`` command (``start``, ``check``,
``stop``, ``status``) use it, so the same checks run before anything is started and the
running master is found in the same place; neither program imports the other.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
from dataclasses import dataclass

import postier
from postier import log, metrics
from postier.cleanup.rewrite import rewriting_from_config
from postier.config import mastercf
from postier.config.errors import ConfigError
from postier.config.mastercf import MasterService
from postier.config.params import (
    DATA_DIRECTORY,
    DEFAULT_PROCESS_LIMIT,
    MAIL_OWNER,
    MAILBOX_SIZE_LIMIT,
    MESSAGE_SIZE_LIMIT,
    QUEUE_DIRECTORY,
    SETGID_GROUP,
    SMTP_SASL_SECURITY_OPTIONS,
    SMTP_SASL_TLS_SECURITY_OPTIONS,
    SMTPD_SASL_AUTH_ENABLE,
    SMTPD_SASL_SECURITY_OPTIONS,
    SMTPD_SASL_TLS_SECURITY_OPTIONS,
    SMTPD_SASL_TYPE,
    unimplemented_settings,
)
from postier.config.settings import Config
from postier.queue import dirs
from postier.restrictions.lists import check_restriction_lists
from postier.sasl.mechanisms import parse_security_options
from postier.smtp.settings import SmtpSettings
from postier.tables.check import check_tables
from postier.tables.registry import Tables
from postier.tls.client import ClientTlsLevel, client_context
from postier.tls.context import load_server_tls
from postier.tls.policy import ServerTlsPolicy, ignored_legacy


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
    warnings = [*cfg.main.override_warnings(), *cfg.validate()]
    log_errors, log_notice = log.check(cfg)
    if log_errors:
        raise ConfigError(log_errors[0])
    if log_notice is not None:
        warnings.append(log_notice)
    services = mastercf.load(master_cf)
    changed = {n for n, s in cfg.main.values.items() if s.value != cfg.default(n)}
    for name in unimplemented_settings(changed):  # a setting equal to the default is moot
        file, line = cfg.location(name)
        warnings.append(
            f"{file}, line {line}: parameter {name} is not implemented by postier yet; "
            f"its setting ({cfg.get_raw(name)}) has no effect"
        )
    tables = Tables(warn=warnings.append)  # every table named is opened once, here
    check_tables(cfg, tables, smtpd=False)
    check_size_limits(cfg)
    metrics.check(cfg)  # postier_metrics_listen is host:port
    rewriting_from_config(cfg, tables, str)  # the *canonical_classes words (ConfigError)
    check_smtp_settings(cfg, services)
    for svc in services:
        if svc.command == "smtpd":
            where = f"{svc.file}, line {svc.line}"
            scfg = cfg.with_overrides(svc.overrides, source=where)
            warnings += [w for w in scfg.validate() if w not in warnings]
            check_smtpd_settings(scfg, where)
            check_tables(scfg, tables)
            warnings += [w for w in check_smtpd_tls(scfg, svc) if w not in warnings]
            for name in unimplemented_settings(set(svc.overrides)):
                warnings.append(
                    f"{where}: service {svc.name}: -o {name} is not implemented by postier "
                    "yet; it has no effect"
                )
    return cfg, services, warnings


def check_size_limits(cfg: Config) -> None:
    """Refuse ``mailbox_size_limit`` (non-zero) below ``message_size_limit``: Postfix's
    local(8) stops with ``fatal: configuration error: mailbox_size_limit is smaller than
    message_size_limit`` and the mail stays queued. Raises ConfigError."""
    mailbox, message = cfg[MAILBOX_SIZE_LIMIT], cfg[MESSAGE_SIZE_LIMIT]
    if mailbox and mailbox < message:
        file, line = cfg.location(MAILBOX_SIZE_LIMIT.name)
        raise ConfigError(
            f"configuration error: mailbox_size_limit ({mailbox}) is smaller than "
            f"message_size_limit ({message}); set mailbox_size_limit to 0 (no limit) or "
            "at least message_size_limit", file=file, line=line,
            param=MAILBOX_SIZE_LIMIT.name)


def located(cfg: Config, exc: ConfigError, where: str) -> ConfigError:
    """``exc`` placed where its parameter is set: main.cf's line, or the master.cf
    service line of a ``-o`` override (``cfg.location``); ``where`` (``FILE, line N`` of
    the service) when the parameter is unknown or left at its default. An error that
    already names its file is returned as is."""
    if exc.file is not None:
        return exc
    file, line = cfg.location(exc.param) if exc.param is not None else (None, None)
    if file is None:
        file, line = where, None
    return ConfigError(exc.message, file=file, line=line, param=exc.param)


#: smtpd_sasl_type values smtpd can use (smtpd.process's authenticator).
SMTPD_SASL_TYPES = ("cyrus", "dovecot")


def check_smtp_settings(cfg: Config, services: list[MasterService]) -> None:
    """Read the SMTP/LMTP client settings qmgr reads at start (``smtp_tls_security_level``,
    ``smtp_sasl_security_options``, the trusted CA files, …), of main.cf and of each
    ``smtp``/``lmtp`` service with its ``-o`` overrides; raises ConfigError at the
    parameter's line (``located``)."""
    targets: list[tuple[Config, str, bool]] = [(cfg, cfg.main.file, False)]
    for svc in services:
        if svc.command in ("smtp", "lmtp"):
            where = f"{svc.file}, line {svc.line}"
            targets.append((cfg.with_overrides(svc.overrides, source=where), where,
                            svc.command == "lmtp"))
    for scfg, where, lmtp in targets:
        try:
            settings = SmtpSettings.from_config(scfg, lmtp=lmtp)
            if settings.tls.level is not ClientTlsLevel.NONE:
                client_context(settings.tls)  # smtp_tls_CAfile/CApath, read as qmgr will
            if lmtp:
                continue
            for param in (SMTP_SASL_SECURITY_OPTIONS, SMTP_SASL_TLS_SECURITY_OPTIONS):
                try:
                    parse_security_options(scfg[param])
                except ValueError as exc:
                    raise ConfigError(str(exc), param=param.name) from None
        except ConfigError as exc:
            raise located(scfg, exc, where) from None


def check_smtpd_settings(cfg: Config, where: str) -> None:
    """Reject, at start, restriction lists that smtpd could not evaluate, SASL security
    options and an ``smtpd_sasl_type`` it does not know; raises ConfigError at the parameter's line
    (``located``; ``where``: the service's ``FILE, line N``)."""
    try:
        check_restriction_lists(cfg, where)
        for param in (SMTPD_SASL_SECURITY_OPTIONS, SMTPD_SASL_TLS_SECURITY_OPTIONS):
            try:
                parse_security_options(cfg[param])
            except ValueError as exc:
                raise ConfigError(str(exc), param=param.name) from None
        kind = cfg[SMTPD_SASL_TYPE].strip().lower()
        if cfg[SMTPD_SASL_AUTH_ENABLE] and kind not in SMTPD_SASL_TYPES:
            raise ConfigError(f"unsupported SASL server implementation: {kind} (specify "
                              f"{' or '.join(SMTPD_SASL_TYPES)})", param=SMTPD_SASL_TYPE.name)
    except ConfigError as exc:
        raise located(cfg, exc, where) from None


def check_smtpd_tls(cfg: Config, svc: MasterService) -> list[str]:
    """Read one smtpd service's certificates and keys as smtpd will (raises ConfigError
    naming the parameter when the service requires TLS and they fail; returns warnings
    otherwise: TLS unavailable at level may, obsolete settings the level overrides)."""
    where = f"{svc.file}, line {svc.line}"
    try:
        policy = ServerTlsPolicy.from_config(cfg)
    except ConfigError as exc:
        if exc.file is not None:
            raise
        raise located(cfg, ConfigError(f"service {svc.name}: {exc.message}",
                                       param=exc.param), where) from None
    warnings = [
        f"{where}: service {svc.name}: {name} = yes is ignored: smtpd_tls_security_level "
        f"is set ({cfg.get_raw('smtpd_tls_security_level')})"
        for name in ignored_legacy(cfg)
    ]
    tls = load_server_tls(policy)
    if tls.error is not None:
        error = located(cfg, ConfigError(f"service {svc.name}: {tls.error.message}",
                                         param=tls.error.param), where)
        if policy.required:
            raise error
        warnings.append(f"{error}; TLS is not available (STARTTLS is answered 454 4.7.0)")
    return warnings


@dataclass(frozen=True)
class Runtime:
    queue_dir: str
    uid: int | None  # mail_owner's uid when running as root, else None (run as ourselves)
    gid: int | None
    owner_name: str
    smtpd_workers: int
    version: str
    setgid_gid: int | None = None  # setgid_group's gid when running as root, else None
    data_dir: str = ""  # data_directory, where a Postfix master holds master.lock

    @classmethod
    def from_config(cls, cfg: Config) -> Runtime:
        owner = cfg[MAIL_OWNER]
        uid: int | None = None
        gid: int | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(owner)
            except KeyError:
                raise StartError(
                    f'mail_owner: user "{owner}" does not exist; create it with: '
                    f"groupadd --system {owner} && useradd --system --gid {owner} "
                    f"--home-dir {cfg[QUEUE_DIRECTORY]} --shell /usr/sbin/nologin {owner} "
                    "(or set mail_owner in main.cf)"
                ) from None
            if pw.pw_uid == 0:
                raise StartError(f"mail_owner: user {owner} must not be root (uid 0)")
            uid, gid = pw.pw_uid, pw.pw_gid
            try:
                setgid_gid: int | None = grp.getgrnam(cfg[SETGID_GROUP]).gr_gid
            except KeyError:
                raise StartError(
                    f'setgid_group: group "{cfg[SETGID_GROUP]}" does not exist; create it '
                    f"with: groupadd --system {cfg[SETGID_GROUP]} (or set setgid_group in "
                    "main.cf)"
                ) from None
        else:
            setgid_gid = None
            owner = pwd.getpwuid(os.geteuid()).pw_name
        workers = max(1, os.cpu_count() or 1)
        return cls(
            queue_dir=cfg[QUEUE_DIRECTORY],
            uid=uid,
            gid=gid,
            owner_name=owner,
            smtpd_workers=workers,
            version=postier.__version__,
            setgid_gid=setgid_gid,
            data_dir=cfg[DATA_DIRECTORY],
        )

    def prepare_queue(self) -> list[str]:
        """Refuse (StartError) while a Postfix master runs on this queue, then create what
        is missing of the queue layout, keeping an existing (Postfix) layout's owners and
        modes; returns the changes made to existing directories (``dirs.ensure``)."""
        holder = postfix_master(self.queue_dir, self.data_dir)
        if holder is not None:
            raise StartError(holder)
        return dirs.ensure(self.queue_dir, self.uid, self.setgid_gid)


def process_limit(svc: MasterService, cfg: Config) -> int:
    """A service's process limit: master.cf ``maxproc``, else ``default_process_limit``
    (0: no limit). postier counts it in sessions, the service's total over its smtpd
    workers, since one Postfix smtpd process serves one session at a time."""
    return svc.maxproc if svc.maxproc is not None else cfg[DEFAULT_PROCESS_LIMIT]


def session_share(limit: int, workers: int) -> int:
    """One smtpd worker's share of a service's session ``limit`` (0: no limit): the
    limit divided among ``workers``, rounded up, so that their sum is never below it."""
    if limit <= 0:
        return 0
    return -(-limit // max(1, workers))


def pid_file(queue_dir: str) -> str:
    """The master's pid file, locked (flock) for the master's lifetime: QUEUE_DIR/pid/master.pid."""
    return os.path.join(queue_dir, "pid", "master.pid")



def _locked(path: str) -> bool:
    """Whether another process holds a flock(2) lock on ``path`` (False if absent)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _is_postier(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"postier" in f.read()
    except OSError:
        return False


def postfix_master(queue_dir: str, data_dir: str) -> str | None:
    """Why a running Postfix (not postier) forbids starting on ``queue_dir``, or None.

    Postfix's master(8) holds flock(2) locks on ``QUEUE_DIR/pid/master.pid`` and on
    ``DATA_DIR/master.lock`` for its lifetime; a held ``master.pid`` whose process is not
    postier, or a held ``master.lock`` beside it, is a running Postfix. (The reverse needs
    no code: ``postfix start`` tests the same ``master.pid`` lock, which postier's master
    holds, and says "the Postfix mail system is already running".)
    """
    pid_path = pid_file(queue_dir)
    if not _locked(pid_path):
        return None
    pid = 0
    with contextlib.suppress(OSError, ValueError), open(pid_path) as f:
        pid = int(f.read().strip() or 0)
    if pid and _is_postier(pid) and not _locked(os.path.join(data_dir, "master.lock")):
        return None
    return (f"a Postfix master (pid {pid}) is running on queue_directory {queue_dir}: "
            f"stop it first (postfix stop)")


def reload_status_file(queue_dir: str) -> str:
    """Where the master says how its last reload went: QUEUE_DIR/pid/master.reload,
    one line ``GENERATION ok`` or ``GENERATION error: WHY`` (``reload_status``)."""
    return os.path.join(queue_dir, "pid", "master.reload")


@dataclass(frozen=True)
class ReloadStatus:
    generation: int  # how many reloads the running master has attempted (0: none)
    ok: bool
    text: str  # "" when ok, else why the reload was refused (file and line when known)

    def line(self) -> str:
        return f"{self.generation} ok\n" if self.ok else f"{self.generation} error: {self.text}\n"

    @classmethod
    def parse(cls, text: str) -> ReloadStatus | None:
        """The status written by ``line``; None for anything else (no file yet, torn)."""
        head, _, rest = text.partition(" ")
        if not head.isdigit() or not text.endswith("\n"):
            return None
        rest = rest.rstrip("\n")
        if rest == "ok":
            return cls(int(head), True, "")
        if rest.startswith("error: "):
            return cls(int(head), False, rest[len("error: "):])
        return None


def read_reload_status(queue_dir: str) -> ReloadStatus | None:
    try:
        with open(reload_status_file(queue_dir)) as f:
            return ReloadStatus.parse(f.read())
    except FileNotFoundError:
        return None


def write_reload_status(queue_dir: str, status: ReloadStatus) -> None:
    """Replace the status file at once (temporary file, rename)."""
    path = reload_status_file(queue_dir)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(status.line())
    os.replace(tmp, path)
