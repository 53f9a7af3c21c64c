"""qmgr and the queue tools: defer reasons recorded, trigger requests, postsuper meanwhile."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from test_qmgr import FakeTransport, all_sent, enqueue, lines, make_qmgr, run, settle

from postier.delivery import status
from postier.delivery.transport import DeliveryRequest, RcptResult
from postier.qmgr import qmgr as qmgr_mod
from postier.qmgr.qmgr import Qmgr
from postier.queue import control, dirs, showq
from postier.queue.file import QueueFile


@pytest.fixture(autouse=True)
def _no_interface_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qmgr_mod, "local_addresses", lambda: ["127.0.0.1"])


def refused(req: DeliveryRequest) -> list[RcptResult]:
    return [RcptResult(r.index, status.deferred("4.4.1", "connect to mx[192.0.2.1]:25: "
                                                "Connection refused", relay="none"))
            for r in req.recipients]


def test_deferred_recipients_keep_their_reason_for_postqueue(tmp_path: Path) -> None:
    q = make_qmgr(tmp_path, {"local": FakeTransport(refused)})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com", "nestor@example.com"])
    run(q, qid)
    path = dirs.path(q.queue_dir, "deferred", qid)
    with QueueFile.open(path) as qf:
        assert [(r.status, r.reason) for r in qf.envelope.recipients] == [
            ("4.4.1", "connect to mx[192.0.2.1]:25: Connection refused")] * 2
    listed = showq.read_message("deferred", path)
    assert listed is not None
    assert [r.delay_reason for r in listed.recipients] == [
        "connect to mx[192.0.2.1]:25: Connection refused"] * 2


def test_a_delivered_recipient_gets_no_reason(tmp_path: Path) -> None:
    def half(req: DeliveryRequest) -> list[RcptResult]:
        return [all_sent(req)[0], *refused(req)[1:]]

    q = make_qmgr(tmp_path, {"local": FakeTransport(half)})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com", "nestor@example.com"])
    run(q, qid)
    listed = showq.read_message("deferred", dirs.path(q.queue_dir, "deferred", qid))
    assert listed is not None
    assert [r.address for r in listed.recipients] == ["nestor@example.com"]


def park_in_future(q: Qmgr, qid: str) -> None:
    later = time.time() + 3600
    os.utime(dirs.path(q.queue_dir, "deferred", qid), (later, later))


def test_flush_request_takes_deferred_mail_that_is_not_due(tmp_path: Path) -> None:
    transport = FakeTransport(refused)
    q = make_qmgr(tmp_path, {"local": transport})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])
    run(q, qid)
    park_in_future(q, qid)

    async def main(data: bytes) -> None:
        q.trigger(data)
        await asyncio.sleep(0)
        await settle(q)

    asyncio.run(main(control.encode(control.Request.SCAN_DEFERRED)))
    assert len(transport.requests) == 1  # not due: a plain scan leaves it
    asyncio.run(main(control.encode(control.Request.SCAN_ALL)))
    assert len(transport.requests) == 2
    asyncio.run(main(b"garbage/../x"))
    assert len(transport.requests) == 2


def test_scan_request_takes_a_message_made_due(tmp_path: Path) -> None:
    transport = FakeTransport(refused)
    q = make_qmgr(tmp_path, {"local": transport})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])
    run(q, qid)
    now = time.time()
    os.utime(dirs.path(q.queue_dir, "deferred", qid), (now, now))  # what postqueue -i does

    async def main() -> None:
        q.trigger(b"D")
        await asyncio.sleep(0)
        await settle(q)

    asyncio.run(main())
    assert len(transport.requests) == 2


def test_queue_id_datagram_schedules_incoming_mail(tmp_path: Path) -> None:
    transport = FakeTransport(all_sent)
    q = make_qmgr(tmp_path, {"local": transport})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])

    async def main() -> None:
        q.trigger(qid.encode())
        await settle(q)

    asyncio.run(main())
    assert f"{qid}: removed" in lines(q)


def test_message_deleted_while_active_is_not_queued_again(tmp_path: Path) -> None:
    def delete_then_defer(req: DeliveryRequest) -> list[RcptResult]:
        os.unlink(req.path)  # postsuper -d while the message is in active/
        return refused(req)

    q = make_qmgr(tmp_path, {"local": FakeTransport(delete_then_defer)})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])
    run(q, qid)
    for state in ("incoming", "active", "deferred", "hold"):
        assert not list(dirs.scan(q.queue_dir, state)), state
    assert not [ln for ln in lines(q) if ln.startswith("error:")]


def test_message_held_while_active_stays_held_with_deliveries_marked(tmp_path: Path) -> None:
    def hold_then_deliver_one(req: DeliveryRequest) -> list[RcptResult]:
        dirs.move(os.path.dirname(os.path.dirname(req.path)), req.queue_id, "active", "hold")
        return [all_sent(req)[0], *refused(req)[1:]]

    q = make_qmgr(tmp_path, {"local": FakeTransport(hold_then_deliver_one)})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com", "nestor@example.com"])
    run(q, qid)
    assert [i for i, _ in dirs.scan(q.queue_dir, "hold")] == [qid]
    assert not list(dirs.scan(q.queue_dir, "deferred"))
    with QueueFile.open(dirs.path(q.queue_dir, "hold", qid)) as qf:
        assert [r.done for r in qf.envelope.recipients] == [True, False]
        assert qf.envelope.recipients[1].status == "4.4.1"
    assert not [ln for ln in lines(q) if ln.startswith("error:")]


def test_message_requeued_while_active_is_never_delivered_twice(tmp_path: Path) -> None:
    transport = FakeTransport(all_sent)

    def requeue_then_deliver(req: DeliveryRequest) -> list[RcptResult]:
        if len(transport.requests) == 1:
            dirs.move(os.path.dirname(os.path.dirname(req.path)), req.queue_id,
                      "active", "incoming")  # postsuper -r
        return all_sent(req)

    transport.answer = requeue_then_deliver
    q = make_qmgr(tmp_path, {"local": transport})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])
    run(q, qid)
    with QueueFile.open(dirs.path(q.queue_dir, "incoming", qid)) as qf:
        assert [r.done for r in qf.envelope.recipients] == [True]
    run(q, qid)  # qmgr finds it in incoming/: nothing left to send
    assert len(transport.requests) == 1
    assert not list(dirs.scan(q.queue_dir, "incoming"))
