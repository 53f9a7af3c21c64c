"""Configuration errors: what went wrong, in which file, on which line, for which parameter.

Follows the message layout of Postfix's postconf(1) and master(8) diagnostics
("/etc/postfix/main.cf, line 12: ..."), with the parameter name added when known.
"""

from __future__ import annotations

#: Warnings are plain strings, e.g. "/etc/postfix/main.cf, line 3: unused parameter: foo=bar".
ConfigWarning = str


class ConfigError(Exception):
    """A configuration postier refuses; ``str()``: ``FILE, line N: parameter NAME: MESSAGE``."""

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.param = param

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file if self.line is None else f"{self.file}, line {self.line}")
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.param is not None:
            parts.append(f"parameter {self.param}")
        parts.append(self.message)
        return ": ".join(parts)
