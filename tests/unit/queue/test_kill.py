"""kill -9 of a writer at an arbitrary moment: acknowledged messages are all there, whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from postier.queue import dirs
from postier.queue.file import QueueFile

WRITER = r"""
import sys
from postier.queue.file import Envelope, QueueWriter, Recipient
qdir = sys.argv[1]
n = 0
while True:
    n += 1
    w = QueueWriter.create(qdir)
    for i in range(n % 7):
        w.write(bytes([65 + n % 26]) * (n * 997 % 90000))
    qid = w.commit(Envelope(f"s{n}@x", [Recipient(f"r{n}@y")], float(n), {"n": str(n)}))
    sys.stdout.write(qid + "\n")
    sys.stdout.flush()
"""


def expected_content(n: int) -> bytes:
    return (bytes([65 + n % 26]) * (n * 997 % 90000)) * (n % 7)


def test_kill_9_while_writing(tmp_path: Path) -> None:
    qdir = str(tmp_path)
    dirs.ensure(qdir, None, None)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, qdir], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    acked = [proc.stdout.readline().decode().strip() for _ in range(40)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    visible = dict(dirs.scan(qdir, "incoming"))
    assert set(acked) <= set(visible)
    for qid, path in visible.items():
        with QueueFile.open(path) as qf:
            n = int(qf.envelope.attrs["n"])
            assert qf.envelope.sender == f"s{n}@x"
            assert [r.address for r in qf.envelope.recipients] == [f"r{n}@y"]
            assert b"".join(qf.iter_content()) == expected_content(n), qid
    # Whatever the kill interrupted is at most one temp file, never listed.
    temps = [f for f in os.listdir(os.path.join(qdir, "incoming")) if f.startswith(".")]
    assert len(temps) <= 1
