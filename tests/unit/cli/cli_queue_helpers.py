"""Queue files placed by hand for the queue tools' tests: any ID, any state, any status."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from postier.queue import dirs
from postier.queue.file import Envelope, QueueFile, QueueWriter

DATA = Path(__file__).parent / "data"


def instance(tmp_path: Path) -> tuple[str, str]:
    """A configuration directory whose main.cf points at a fresh queue: (config, queue)."""
    config_dir = tmp_path / "etc"
    queue_dir = tmp_path / "queue"
    config_dir.mkdir()
    (config_dir / "main.cf").write_text(
        f"queue_directory = {queue_dir}\nmaillog_file = {tmp_path / 'maillog'}\n")
    dirs.ensure(str(queue_dir), None, None)
    return str(config_dir), str(queue_dir)


def place(
    queue_dir: str, state: str, queue_id: str, envelope: Envelope, content: bytes,
    statuses: Mapping[int, tuple[str, str]] | None = None,
) -> str:
    """Write a complete queue file as ``state``/``queue_id`` (written by ``QueueWriter``,
    statuses recorded by ``record_status``); returns its path."""
    writer = QueueWriter.create(queue_dir, fsync=False)
    writer.write(content)
    tmp_id = writer.commit(envelope)
    dst = dirs.path(queue_dir, state, queue_id)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.rename(dirs.path(queue_dir, "incoming", tmp_id), dst)
    if statuses:
        with QueueFile.open(dst) as qf:
            qf.record_status(statuses)
    return dst
