"""The bounded receive buffer both SMTP directions read lines and content from.

Follows RFC 5321 section 4.5.3.1.4 (command lines: at most 512 octets; replies: at most
512 octets per line, raised here to Postfix's ``line_length_limit``, 2048) and Postfix's
treatment of over-long lines (smtpd(8): "500 5.5.2 Error: line too long"; the rest of
the line up to its newline is skipped). Lines end in CRLF or, tolerated, a bare LF.

Usage::

    buf = LineBuffer(max_line_length=2048)
    buf.feed(data)
    line = buf.next_line()   # bytes without its line end, None (need more), or TOO_LONG
"""

from __future__ import annotations

import enum

from postier.config.params import LINE_LENGTH_LIMIT

# Postfix's line_length_limit default (postconf(5)); the one home of this number for
# the protocol cores (smtpd and smtp read the parameter and pass it in).
DEFAULT_LINE_LENGTH_LIMIT = LINE_LENGTH_LIMIT.default_value()


class Overflow(enum.Enum):
    """``next_line()``: the line was longer than ``max_line_length`` and was dropped."""

    TOO_LONG = "TOO_LONG"


TOO_LONG = Overflow.TOO_LONG


class LineBuffer:
    """Bytes received and not yet consumed; lines are bounded, content is not.

    ``max_line_length`` counts the octets of a line without its CRLF (or LF). An
    over-long line is reported once as ``TOO_LONG`` and skipped through its newline,
    even if that newline arrives in later ``feed`` calls; nothing of it is kept, so the
    buffer never holds more than ``max_line_length + 2`` bytes of one line.
    """

    def __init__(self, max_line_length: int = DEFAULT_LINE_LENGTH_LIMIT) -> None:
        if max_line_length < 1:
            raise ValueError(f"max_line_length must be positive, not {max_line_length}")
        self.max_line_length = max_line_length
        self._data = bytearray()
        self._skipping = False  # dropping the rest of an over-long line
        # The first max_line_length bytes of the last line reported TOO_LONG: Postfix's
        # smtpd reads a command up to line_length_limit and acts on that much.
        self.overflow_head = b""

    def feed(self, data: bytes) -> None:
        self._data += data

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __bytes__(self) -> bytes:
        return bytes(self._data)

    def clear(self) -> None:
        """Forget every buffered byte (STARTTLS, close)."""
        self._data.clear()

    # --- lines ----------------------------------------------------------------------

    def next_line(self) -> bytes | Overflow | None:
        """The next line without its CRLF (or bare LF; a CR before the LF is removed),
        ``TOO_LONG`` for an over-long line (its bytes are dropped), or None when no
        complete line is buffered yet."""
        buf = self._data
        limit = self.max_line_length
        if self._skipping:
            end = buf.find(b"\n")
            if end < 0:
                buf.clear()
                return None
            del buf[: end + 1]
            self._skipping = False
        end = buf.find(b"\n", 0, limit + 2)
        if end < 0:
            if len(buf) > limit + 1:
                self.overflow_head = bytes(buf[:limit])
                end = buf.find(b"\n", limit + 2)
                if end < 0:
                    buf.clear()
                    self._skipping = True
                else:
                    del buf[: end + 1]
                return TOO_LONG
            return None
        line = bytes(buf[:end])
        del buf[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > limit:
            self.overflow_head = line[:limit]
            return TOO_LONG
        return line

    # --- raw access, for content (DATA) readers ---------------------------------------

    def peek(self, n: int) -> bytes:
        """The first ``n`` buffered bytes (fewer if fewer are buffered), not consumed."""
        return bytes(self._data[:n])

    def find(self, sub: bytes, start: int = 0) -> int:
        return self._data.find(sub, start)

    def rfind(self, sub: bytes) -> int:
        return self._data.rfind(sub)

    def endswith(self, suffix: bytes) -> bool:
        return self._data.endswith(suffix)

    def take(self, n: int) -> bytes:
        """Remove and return the first ``n`` bytes."""
        out = bytes(self._data[:n])
        del self._data[:n]
        return out

    def skip(self, n: int) -> None:
        """Remove the first ``n`` bytes."""
        del self._data[:n]
