"""Log lines in Postfix's format, so that pflogsumm, fail2ban filters and grep keep working.

Follows Postfix's msg_syslog(3), postlogd(8) and postlog(1). A line reads ``Nov 25
20:48:52 tintin postfix/smtpd[1234]: connect from …``. The program name is
``$syslog_name/PROGRAM``; ``syslog_name`` defaults to ``postfix``, as in Postfix,
precisely so that existing log tools recognise the lines. Lines go to ``maillog_file``
when it is set (each process appends whole lines with O_APPEND, so lines from several
processes never interleave; the file is created with ``maillog_file_permissions``, owned
by whoever starts postier — root, as postlogd's file), else to syslog through
``/dev/log`` with ``syslog_facility`` when a syslog daemon listens there, else — rather
than dropping them — to the fallback file ``$queue_directory/maillog``
(``FALLBACK_NAME``), which ``instance`` announces at start. ``start-fg`` sends them to
standard error.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from postier.config.params import (
    MAILLOG_FILE,
    MAILLOG_FILE_PERMISSIONS,
    MAILLOG_FILE_PREFIXES,
    MYHOSTNAME,
    QUEUE_DIRECTORY,
    SYSLOG_FACILITY,
    SYSLOG_NAME,
    ParamSource,
)

#: The file under ``queue_directory`` that receives the lines when neither syslog
#: (``/dev/log``) nor ``maillog_file`` is available.
FALLBACK_NAME = "maillog"
SYSLOG_SOCKET = "/dev/log"
#: maillog_file_permissions' allowed values, as postlogd(8).
FILE_MODES = {"0600": 0o600, "0640": 0o640, "0644": 0o644}

_SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
_SEVERITY = {"info": 6, "warning": 4, "error": 3, "fatal": 2, "panic": 0}
SEVERITIES = tuple(_SEVERITY)


_stamp: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """syslog's ``Nov 25 20:48:52`` for now, local time; formatted once a second."""
    global _stamp
    now = int(time.time())
    if now != _stamp[0]:
        _stamp = (now, time.strftime("%b %e %H:%M:%S", time.localtime(now)))
    return _stamp[1]


def facility_code(name: str) -> int | None:
    """syslog(3)'s code of facility ``name`` (``mail`` -> 2), None when unknown."""
    return _SYSLOG_FACILITIES.get(name.lower())


class Log:
    """A logger for one process. ``target`` is a file path, ``"syslog"`` or ``"stderr"``."""

    def __init__(
        self, program: str, *, syslog_name: str = "postfix", target: str = "stderr",
        facility: str = SYSLOG_FACILITY.default_value(), mode: int = 0o600,
        ident: str | None = None, host: str | None = None,
    ) -> None:
        """``mode``: permissions of a log file this call creates (umask aside);
        ``ident``: the whole tag instead of ``syslog_name/program`` (postlog -t);
        ``host``: the host field of file and stderr lines (Postfix's maillog_file
        writes ``myhostname``'s first label; default: this machine's name)."""
        self.ident = ident if ident is not None else f"{syslog_name}/{program}"
        self.syslog_name = syslog_name
        self.host = (host or socket.gethostname()).split(".")[0]
        self.pid = os.getpid()
        self.target = target
        self.facility = facility
        self._facility = _SYSLOG_FACILITIES.get(facility, 2)
        self._mode = mode
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        if target not in ("stderr", "syslog"):
            self._fd = open_log_file(target, mode)
        elif target == "syslog":
            self._sock = _syslog_socket()
            if self._sock is None:
                self.target = "stderr"

    def for_program(self, program: str) -> Log:
        """The same output (file, syslog socket or stderr, shared: nothing is reopened)
        under another program name: ``postfix/cleanup`` beside ``postfix/smtpd``."""
        other = Log.__new__(Log)
        other.__dict__.update(self.__dict__)
        other.ident = f"{self.syslog_name}/{program}"
        return other

    def _emit(self, severity: str, text: str) -> None:
        if severity != "info":
            text = f"{severity}: {text}"
        body = f"{self.ident}[{self.pid}]: {text}"
        if self._sock is not None:
            prio = self._facility * 8 + _SEVERITY[severity]
            try:
                self._sock.send(f"<{prio}>{timestamp()} {body}".encode())
                return
            except OSError:
                pass
        line = f"{timestamp()} {self.host} {body}\n".encode(
            "utf-8", "backslashreplace"
        )
        if self._fd is not None:
            os.write(self._fd, line)
        else:
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()

    def close(self) -> None:
        """Release the log file descriptor or the syslog socket (short-lived tools)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.target = "stderr"

    def log(self, severity: str, text: str) -> None:
        """A line at ``severity`` (one of ``SEVERITIES``; KeyError otherwise)."""
        if severity not in _SEVERITY:
            raise KeyError(severity)
        self._emit(severity, text)

    def sibling(self, program: str, *, syslog_name: str, facility: str) -> Log:
        """A log for another program name in this process (same target, same pid):
        qmgr logs its folded-in delivery agents as ``postfix/smtp``, ``postfix/bounce``."""
        return Log(program, syslog_name=syslog_name, target=self.target, facility=facility,
                   host=self.host)

    def info(self, text: str) -> None:
        self._emit("info", text)

    def warning(self, text: str) -> None:
        self._emit("warning", text)

    def error(self, text: str) -> None:
        self._emit("error", text)

    def fatal(self, text: str) -> None:
        self._emit("fatal", text)


def open_log_file(path: str, mode: int) -> int:
    """An O_APPEND descriptor on ``path``, created with ``mode`` (exactly, whatever the
    umask) when missing. Raises OSError."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return os.open(path, flags)
    os.fchmod(fd, mode)
    return fd


def _syslog_socket(path: str = SYSLOG_SOCKET) -> socket.socket | None:
    """A datagram socket connected to the syslog daemon, None when none listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def syslog_available(path: str = SYSLOG_SOCKET) -> bool:
    """Whether a syslog daemon listens on ``path`` (connect, then close)."""
    sock = _syslog_socket(path)
    if sock is None:
        return False
    sock.close()
    return True


def fallback_file(cfg: ParamSource) -> str:
    """Where lines go when neither syslog nor maillog_file is available."""
    return os.path.join(cfg[QUEUE_DIRECTORY], FALLBACK_NAME)


def log_target(cfg: ParamSource, *, foreground: bool = False,
               syslog_socket: str = SYSLOG_SOCKET) -> str:
    """Where a process logs: stderr under ``start-fg``, else ``maillog_file``, else
    ``"syslog"`` when a syslog daemon listens, else ``fallback_file``."""
    if foreground:
        return "stderr"
    if cfg[MAILLOG_FILE]:
        return cfg[MAILLOG_FILE]
    if syslog_available(syslog_socket):
        return "syslog"
    return fallback_file(cfg)


def file_mode(cfg: ParamSource) -> int:
    """maillog_file_permissions as a mode; ValueError names the allowed values."""
    text = cfg[MAILLOG_FILE_PERMISSIONS].strip()
    if text not in FILE_MODES:
        raise ValueError(f"maillog_file_permissions = {text}: specify one of "
                         + ", ".join(FILE_MODES))
    return FILE_MODES[text]


def check(cfg: ParamSource, *, syslog_socket: str = SYSLOG_SOCKET) -> tuple[list[str], str | None]:
    """Start-time checks of the logging settings: (errors, notice).

    Errors (each one line): maillog_file outside ``maillog_file_prefixes``, an invalid
    ``maillog_file_permissions`` or ``syslog_facility``. The notice, when neither syslog
    nor maillog_file is available, says where the lines go instead.
    """
    errors: list[str] = []
    path = cfg[MAILLOG_FILE]
    if path:
        prefixes = cfg[MAILLOG_FILE_PREFIXES]
        if not any(path.startswith(p) for p in prefixes):
            errors.append(f'maillog_file: file "{path}" does not match '
                          f'maillog_file_prefixes ({", ".join(prefixes)})')
    try:
        file_mode(cfg)
    except ValueError as exc:
        errors.append(str(exc))
    if facility_code(cfg[SYSLOG_FACILITY]) is None:
        errors.append(f"syslog_facility = {cfg[SYSLOG_FACILITY]}: unknown syslog facility")
    notice = None
    if not path and not syslog_available(syslog_socket):
        notice = (f"no syslog daemon listens on {syslog_socket} and maillog_file is not "
                  f"set: logging to {fallback_file(cfg)}")
    return errors, notice


def for_config(program: str, cfg: ParamSource, *, foreground: bool = False) -> Log:
    """The logger of one process, as main.cf says (syslog_name, syslog_facility,
    maillog_file and its permissions; the fallback file when neither syslog nor
    maillog_file is available)."""
    try:
        mode = file_mode(cfg)
    except ValueError:
        mode = 0o600
    target = log_target(cfg, foreground=foreground)
    try:
        return Log(program, syslog_name=cfg[SYSLOG_NAME], target=target,
                   facility=cfg[SYSLOG_FACILITY], mode=mode, host=cfg[MYHOSTNAME])
    except OSError:
        if target != fallback_file(cfg):
            raise  # maillog_file cannot be opened: the environment, said loudly
        # a first start: the queue directory is not made yet (root-owned 0755, as
        # Postfix's; the queue set-up completes it)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        return Log(program, syslog_name=cfg[SYSLOG_NAME], target=target,
                   facility=cfg[SYSLOG_FACILITY], mode=mode, host=cfg[MYHOSTNAME])
