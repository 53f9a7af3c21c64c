"""qmgr's metrics hook: each recipient's attempt reaches the recorder with its transport,
its status and the delay since the message's arrival (fake transport, temp queue)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from postier import metrics
from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.transport import DeliveryRequest, RcptResult
from postier.log import Log
from postier.qmgr import qmgr as qmgr_mod
from postier.qmgr.qmgr import Qmgr
from postier.queue import dirs
from postier.queue.file import Envelope, QueueWriter, Recipient


class QuietLog(Log):
    def _emit(self, severity: str, text: str) -> None:
        pass

    def sibling(self, program: str, *, syslog_name: str, facility: str) -> Log:
        return QuietLog(program)


class Spy:
    """A recorder that remembers every delivery it is told about."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str, float]] = []

    def connection(self, service: str) -> None:
        raise AssertionError("qmgr reports no connection")

    def message_received(self, service: str) -> None:
        raise AssertionError("qmgr reports no received message")

    def reject(self, service: str, stage: str, restriction: str | None, code: int) -> None:
        raise AssertionError("qmgr reports no reject")

    def delivery(self, transport: str, status: str, delay: float) -> None:
        self.deliveries.append((transport, status, delay))


class Local:
    """The local transport: tintin is delivered, nobody bounces."""

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        return [
            RcptResult(r.index, status.sent("delivered to mailbox")
                       if r.address.startswith("tintin@")
                       else status.bounced("5.1.1", "unknown user"))
            for r in request.recipients
        ]


def test_each_attempt_is_recorded_by_transport(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qmgr_mod, "local_addresses", lambda: ["127.0.0.1"])
    spy = Spy()
    monkeypatch.setattr(metrics, "RECORDER", spy)
    queue_dir = tmp_path / "queue"
    dirs.ensure(str(queue_dir), None, None)
    cfg = Config(parse(f"queue_directory = {queue_dir}\nmydestination = example.com\n"
                       "myhostname = mx.example.com\n", "main.cf"), hostname="mx.example.com")
    q = Qmgr(cfg, QuietLog("qmgr"), {"local": Local()})
    writer = QueueWriter.create(q.queue_dir, fsync=False)
    writer.write(b"Subject: test\r\n\r\nbody\r\n")
    arrival = time.time() - 100
    qid = writer.commit(Envelope("", [Recipient("tintin@example.com"),
                                      Recipient("nobody@example.com"),
                                      Recipient("castafiore@far.example")], arrival))

    async def main() -> None:
        q.schedule(qid, "incoming")
        while q.tasks:
            await asyncio.gather(*list(q.tasks))

    asyncio.run(main())
    # far.example has no transport here: qmgr defers it itself, still by its transport.
    assert sorted((t, s) for t, s, _ in spy.deliveries) == [
        ("local", "bounced"), ("local", "sent"), ("smtp", "deferred")]
    (sent_delay,) = [d for _, s, d in spy.deliveries if s == "sent"]
    assert 100 <= sent_delay < 130
