"""A bounce goes into the queue through cleanup's one-call form, byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.bounce.dsn import Failed, build_bounce
from postier.cleanup.cleanup import Cleanup
from postier.delivery import status
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient

ARRIVAL = datetime(2026, 11, 25, 20, 48, 52, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)
ORIGINAL = [b"From: s@example.net\nBcc: b@example.net\nSubject: hi\n\n", b"body\n"]


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def test_bounce_is_queued_unchanged_and_names_its_queue_id(qdir: str) -> None:
    failed = [Failed("u@example.com", "U@example.com",
                     status.bounced("5.1.1", "unknown user: \"u\""))]
    built: dict[str, bytes] = {}

    def bounce(new_queue_id: str) -> list[bytes]:
        built[new_queue_id] = build_bounce(
            myhostname="tintin.example.com", queue_id="22D2A8871", new_queue_id=new_queue_id,
            sender="s@example.net", arrival=ARRIVAL, now=NOW, failed=failed,
            original=iter(ORIGINAL),
        )
        return [built[new_queue_id]]

    env = Envelope("", [Recipient("s@example.net")], 1.0, {"origin": "bounce"})
    new_id = Cleanup(qdir, log=None, trigger=None).enqueue(env, bounce)
    assert list(built) == [new_id]
    with QueueFile.open(dirs.path(qdir, "incoming", new_id)) as qf:
        assert qf.envelope == env
        content = b"".join(qf.iter_content())
    # Header processing leaves a bounce as built (the returned message's Bcc: is body).
    assert content == built[new_id]
    assert f"Message-Id: <20261130090000.{new_id}@tintin.example.com>".encode() in content
    assert b"Bcc: b@example.net\n" in content
