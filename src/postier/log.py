"""Log lines in Postfix's format, so that pflogsumm, fail2ban filters and grep keep working.

A line reads ``Nov 25 20:48:52 tintin postfix/smtpd[1234]: connect from …``. The
program name is ``$syslog_name/PROGRAM``; ``syslog_name`` defaults to ``postfix``, as in
Postfix, precisely so that existing log tools recognise the lines. Lines go to
``maillog_file`` when it is set (each process appends whole lines with O_APPEND, so
lines from several processes never interleave), else to syslog through ``/dev/log``
when it exists, else to standard error. ``start-fg`` sends them to standard error.
"""

from __future__ import annotations

import os
import socket
import sys
import time

from postier.config.params import MAILLOG_FILE, SYSLOG_FACILITY, SYSLOG_NAME, ParamSource

_SYSLOG_FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
_SEVERITY = {"info": 6, "warning": 4, "error": 3, "fatal": 2, "panic": 0}


class Log:
    """A logger for one process. ``target`` is a file path, ``"syslog"`` or ``"stderr"``."""

    def __init__(
        self, program: str, *, syslog_name: str = "postfix", target: str = "stderr",
        facility: str = SYSLOG_FACILITY.default_value(),
    ) -> None:
        self.ident = f"{syslog_name}/{program}"
        self.host = socket.gethostname().split(".")[0]
        self.pid = os.getpid()
        self.target = target
        self._facility = _SYSLOG_FACILITIES.get(facility, 2)
        self._fd: int | None = None
        self._sock: socket.socket | None = None
        if target not in ("stderr", "syslog"):
            self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        elif target == "syslog":
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.connect("/dev/log")
            except OSError:
                self._sock = None
                self.target = "stderr"

    def _emit(self, severity: str, text: str) -> None:
        if severity != "info":
            text = f"{severity}: {text}"
        body = f"{self.ident}[{self.pid}]: {text}"
        if self._sock is not None:
            prio = self._facility * 8 + _SEVERITY[severity]
            try:
                self._sock.send(f"<{prio}>{time.strftime('%b %e %H:%M:%S')} {body}".encode())
                return
            except OSError:
                pass
        line = f"{time.strftime('%b %e %H:%M:%S')} {self.host} {body}\n".encode(
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

    def sibling(self, program: str, *, syslog_name: str, facility: str) -> Log:
        """A log for another program name in this process (same target, same pid):
        qmgr logs its folded-in delivery agents as ``postfix/smtp``, ``postfix/bounce``."""
        return Log(program, syslog_name=syslog_name, target=self.target, facility=facility)

    def info(self, text: str) -> None:
        self._emit("info", text)

    def warning(self, text: str) -> None:
        self._emit("warning", text)

    def error(self, text: str) -> None:
        self._emit("error", text)

    def fatal(self, text: str) -> None:
        self._emit("fatal", text)


def log_target(maillog_file: str, *, foreground: bool = False) -> str:
    """Where a process logs: stderr under ``start-fg``, else ``maillog_file``, else syslog."""
    if foreground:
        return "stderr"
    return maillog_file or "syslog"


def for_config(program: str, cfg: ParamSource, *, foreground: bool = False) -> Log:
    """The logger of one process, as main.cf says (syslog_name, maillog_file, facility)."""
    return Log(
        program,
        syslog_name=cfg[SYSLOG_NAME],
        target=log_target(cfg[MAILLOG_FILE], foreground=foreground),
        facility=cfg[SYSLOG_FACILITY],
    )
