"""Writing to files without losing bytes (library): every byte of a buffer, or an error.

write(2) and pwrite(2) may write fewer bytes than asked (a signal, a full disk reached
in the middle); POSIX leaves the rest to the caller. This is the one loop that does
so, used by the queue file writer (``queue.file``) and the mailbox appender
(``local.mbox``). EINTR is retried by Python itself (PEP 475).
"""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    """Write all of ``data`` to ``fd``: at its file offset, or at ``offset`` (bytes) with pwrite.

    Raises ``OSError`` from the first failing call; bytes written before it stay written
    (the caller truncates if it must). ``data`` may be a bytearray that the caller
    resizes afterwards: no view of it survives the call.
    """
    done = 0
    with memoryview(data) as whole, whole.cast("B") as view:
        size = len(view)
        while done < size:
            if offset is None:
                done += os.write(fd, view[done:])
            else:
                done += os.pwrite(fd, view[done:], offset + done)
