"""cleanup.actions: access(5) HOLD, DISCARD, REDIRECT, BCC, PREPEND and FILTER in cleanup."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.cleanup.actions import CONTENT_FILTER_ATTR, AccessActions
from postier.cleanup.cleanup import Cleanup
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient


class Triggers:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def notify(self, queue_id: str) -> None:
        self.sent.append(queue_id)


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


def envelope(*rcpts: str) -> Envelope:
    return Envelope("s@example.net", [Recipient(r, r) for r in rcpts], 1764103732.5, {})


def queue(qdir: str, notes: list[tuple[str, str]], trig: Triggers) -> tuple[str, Cleanup]:
    cleanup = Cleanup(qdir, log=None, trigger=trig, fsync=False)
    msg = cleanup.open()
    msg.actions.add_all(notes)
    msg.write(b"Subject: x\n\nbody\n")
    return msg.commit(envelope("a@example.com", "b@example.com")), cleanup


def read(qdir: str, state: str, qid: str) -> tuple[Envelope, bytes]:
    with QueueFile.open(dirs.path(qdir, state, qid)) as qf:
        return qf.envelope, b"".join(qf.iter_content())


def test_hold_puts_the_message_in_hold_and_tells_nobody(qdir: str) -> None:
    trig = Triggers()
    qid, _ = queue(qdir, [("HOLD", "look at it")], trig)
    assert os.listdir(os.path.join(qdir, "hold")) == [qid]
    assert os.listdir(os.path.join(qdir, "incoming")) == []
    assert trig.sent == []


def test_discard_acknowledges_and_queues_nothing(qdir: str) -> None:
    trig = Triggers()
    qid, _ = queue(qdir, [("DISCARD", "")], trig)
    assert qid
    for state in ("incoming", "hold"):
        assert os.listdir(os.path.join(qdir, state)) == []
    assert trig.sent == []


def test_redirect_bcc_prepend_and_filter(qdir: str) -> None:
    trig = Triggers()
    notes = [("REDIRECT", "first@example.org"), ("REDIRECT", "spam@example.org"),
             ("BCC", "copy@example.org"), ("PREPEND", "X-Seen: one"),
             ("PREPEND", "X-Seen: two"), ("FILTER", "smtp:[127.0.0.1]:10025"),
             ("WARN", "only logged")]
    qid, _ = queue(qdir, notes, trig)
    env, content = read(qdir, "incoming", qid)
    assert [r.address for r in env.recipients] == ["spam@example.org", "copy@example.org"]
    assert env.attrs[CONTENT_FILTER_ATTR] == "smtp:[127.0.0.1]:10025"
    assert content.startswith(b"X-Seen: one\nX-Seen: two\nSubject: x\n")
    assert trig.sent == [qid]


def test_no_action_no_change() -> None:
    actions = AccessActions()
    actions.add_all([("WARN", "x"), ("INFO", "y")])
    assert not actions.any
    env = envelope("a@example.com")
    assert actions.envelope(env) == env
