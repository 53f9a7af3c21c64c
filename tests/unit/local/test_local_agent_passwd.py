"""local: the password entry of a recipient is read once per queue file delivered."""

from __future__ import annotations

import os
import pwd
from collections import Counter
from pathlib import Path

import pytest

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery.protocol import DeliverRequest, RcptRequest
from postier.local import local as local_mod
from postier.local.local import LocalAgent
from postier.log import Log
from postier.queue import dirs
from postier.queue.file import Envelope, QueueWriter, Recipient


class MemoryLog(Log):
    def __init__(self) -> None:
        super().__init__("local")
        self.lines: list[str] = []

    def _emit(self, severity: str, text: str) -> None:
        self.lines.append(text)


UNKNOWN = "nosuchuser-postier-test"


def request(queue_dir: Path, rid: int, rcpts: list[str]) -> DeliverRequest:
    writer = QueueWriter.create(str(queue_dir), fsync=False)
    writer.write(b"Subject: x\n\nbody\n")
    queue_id = writer.commit(Envelope("a@example.com", [Recipient(r) for r in rcpts], 1.0))
    path = dirs.path(str(queue_dir), "incoming", queue_id)
    return DeliverRequest(rid, queue_id, path, "a@example.com", 1.0,
                          [RcptRequest(i, r) for i, r in enumerate(rcpts)])


def test_each_user_is_looked_up_once_per_queue_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue_dir, spool = tmp_path / "queue", tmp_path / "spool"
    dirs.ensure(str(queue_dir), None, None)
    spool.mkdir(mode=0o1777)
    spool.chmod(0o1777)
    cfg = Config(parse(
        f"queue_directory = {queue_dir}\nmydestination = example.com\n"
        f"myhostname = mx.example.com\nmail_spool_directory = {spool}\nalias_maps =\n",
        "main.cf"), hostname="mx.example.com")
    asked: Counter[str] = Counter()
    real = pwd.getpwnam

    def counting(name: str) -> pwd.struct_passwd:
        asked[name] += 1
        return real(name)

    monkeypatch.setattr(local_mod.pwd, "getpwnam", counting)
    agent = LocalAgent(cfg, MemoryLog())
    user = pwd.getpwuid(os.getuid()).pw_name
    answers = agent.deliver_batch([
        request(queue_dir, 1, [f"{user}@example.com", f"{UNKNOWN}@example.com"])])
    dsns = [r.status.dsn for r in answers[0].results]
    assert dsns == ["2.0.0", "5.1.1"]
    assert (spool / user).read_bytes().count(b"\nbody\n") == 1
    # once for "is it a local recipient?" (PasswdTable, which keeps answers 10 s), once
    # for expansion and delivery together (they asked once each)
    assert asked[user] == 2
    assert asked[UNKNOWN] == 1  # unknown to the recipient check: never expanded
    # the next queue file asks again: a change in /etc/passwd is seen by the next message
    agent.deliver_batch([request(queue_dir, 2, [f"{user}@example.com"])])
    assert asked[user] == 3
