"""SMTP replies: the one home of every reply code and text postier sends.

Follows RFC 5321 section 4.2 (reply lines), RFC 3463/2034 (enhanced status codes)
and Postfix smtpd(8)'s texts, so that clients and log parsers see what Postfix says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """One SMTP reply. ``text`` as a tuple makes a multi-line reply."""

    code: int
    enhanced: str | None
    text: str | tuple[str, ...]

    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    def to_bytes(self) -> bytes:
        lines = self.lines()
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            body = f"{self.enhanced} {line}" if self.enhanced else line
            out.append(f"{self.code}{sep}{body}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return " ".join(
            f"{self.code} {self.enhanced} {line}" if self.enhanced else f"{self.code} {line}"
            for line in self.lines()
        )
