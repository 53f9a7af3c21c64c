"""Writers of the SMTP wire for the client core: command lines and dot-stuffed content.

Follows RFC 5321 sections 2.3.8 (lines end in CRLF; a bare CR or LF is not a line
end, so content is normalised: CRLF, bare LF and bare CR each become CRLF), 4.1.1
(command syntax) and 4.5.2 (transparency: a line that starts with "." gets one more;
end of data is ``<CR><LF>.<CR><LF>``), RFC 3030 (BDAT: the chunk is sent as is).
"""

from __future__ import annotations

_LINE_BREAKS = ("\r", "\n")


def command_line(text: str) -> bytes:
    """``text`` + CRLF, UTF-8 (RFC 6531). Raises ValueError when ``text`` holds a CR or
    LF: it would smuggle a second command."""
    if any(c in text for c in _LINE_BREAKS):
        raise ValueError(f"line break inside an SMTP command: {text!r}")
    return text.encode("utf-8") + b"\r\n"


class DotStuffer:
    """Streams message content to DATA wire bytes; one per message.

    ``write(chunk)`` returns the wire bytes for the content so far (a CR at the end of a
    chunk is held until the next byte says whether it starts a CRLF); ``end()`` returns
    the rest: a CRLF if the content did not end with a line end, then ``.<CR><LF>``.
    Nothing may be written after ``end()`` (ValueError).
    """

    def __init__(self) -> None:
        self._line_start = True  # the next content byte starts a line
        self._held_cr = False
        self._ended = False

    def write(self, chunk: bytes) -> bytes:
        if self._ended:
            raise ValueError("content written after its end")
        data = b"\r" + chunk if self._held_cr else chunk
        self._held_cr = data.endswith(b"\r")
        if self._held_cr:
            data = data[:-1]
        if not data:
            return b""
        # every line end to LF, stuff the dots, then every LF to CRLF
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        stuffed = data.replace(b"\n.", b"\n..")
        if self._line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        self._line_start = data.endswith(b"\n")
        return stuffed.replace(b"\n", b"\r\n")

    def end(self) -> bytes:
        if self._ended:
            raise ValueError("content ended twice")
        self._ended = True
        if self._held_cr or not self._line_start:
            return b"\r\n.\r\n"
        return b".\r\n"


def dot_stuff(content: bytes) -> bytes:
    """The whole wire form of ``content``, end-of-data line included."""
    stuffer = DotStuffer()
    return stuffer.write(content) + stuffer.end()
