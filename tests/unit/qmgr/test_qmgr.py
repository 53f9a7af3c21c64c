"""qmgr's shell around the scheduler, with fake transports and a queue in a temp directory."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.transport import (
    DeliveryRequest,
    RcptResult,
    Transport,
    TransportUnavailable,
)
from postier.log import Log
from postier.qmgr import qmgr as qmgr_mod
from postier.qmgr.qmgr import Qmgr
from postier.queue import dirs
from postier.queue.file import Envelope, QueueFile, QueueWriter, Recipient

CONTENT = b"Subject: test\r\n\r\nbody\r\n"

Deliver = Callable[[DeliveryRequest], list[RcptResult]]


class MemoryLog(Log):
    def __init__(self, program: str = "qmgr", shared: MemoryLog | None = None) -> None:
        super().__init__(program)
        # every program's lines in one list, in order; ``programs``: each line's ident
        self.lines: list[str] = shared.lines if shared is not None else []
        self.programs: list[str] = shared.programs if shared is not None else []

    def _emit(self, severity: str, text: str) -> None:
        self.lines.append(text if severity == "info" else f"{severity}: {text}")
        self.programs.append(self.ident)

    def sibling(self, program: str, *, syslog_name: str, facility: str) -> Log:
        log = MemoryLog(program, shared=self)
        log.ident = f"{syslog_name}/{program}"
        return log


class FakeTransport:
    """Answers with ``answer(request)``; remembers requests and the most in flight at once."""

    def __init__(self, answer: Deliver, pause: float = 0.0) -> None:
        self.answer = answer
        self.pause = pause
        self.requests: list[DeliveryRequest] = []
        self.in_flight = 0
        self.most = 0

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        self.requests.append(request)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.pause)
            return self.answer(request)
        finally:
            self.in_flight -= 1


def all_sent(req: DeliveryRequest) -> list[RcptResult]:
    return [RcptResult(r.index, status.sent("delivered to mailbox")) for r in req.recipients]


@pytest.fixture(autouse=True)
def _no_interface_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qmgr_mod, "local_addresses", lambda: ["127.0.0.1"])


def make_qmgr(tmp_path: Path, transports: dict[str, Transport], extra: str = "") -> Qmgr:
    queue_dir = tmp_path / "queue"
    dirs.ensure(str(queue_dir), None, None)
    cfg = Config(parse(
        f"queue_directory = {queue_dir}\nmydestination = example.com\n"
        f"myhostname = mx.example.com\n{extra}", "main.cf"), hostname="mx.example.com")
    return Qmgr(cfg, MemoryLog(), transports)


def enqueue(q: Qmgr, sender: str, rcpts: list[str], arrival: float = 0.0) -> str:
    writer = QueueWriter.create(q.queue_dir, fsync=False)
    writer.write(CONTENT)
    return writer.commit(Envelope(sender, [Recipient(r) for r in rcpts],
                                  arrival or time.time()))


async def settle(q: Qmgr) -> None:
    while q.tasks:
        await asyncio.gather(*list(q.tasks))


def run(q: Qmgr, *queue_ids: str) -> None:
    async def main() -> None:
        for queue_id in queue_ids:
            q.schedule(queue_id, "incoming")
        await settle(q)
    asyncio.run(main())


def lines(q: Qmgr) -> list[str]:
    assert isinstance(q.log, MemoryLog)
    return q.log.lines


def test_delivered_message_is_removed_with_todays_log_lines(tmp_path: Path) -> None:
    local = FakeTransport(all_sent)
    q = make_qmgr(tmp_path, {"local": local})
    qid = enqueue(q, "tournesol@example.net", ["tintin@example.com", "haddock@example.com"])
    run(q, qid)
    assert lines(q) == [
        f"{qid}: from=<tournesol@example.net>, size={len(CONTENT)}, nrcpt=2 (queue active)",
        f"{qid}: removed",
    ]
    (req,) = local.requests
    assert (req.queue_id, req.sender, req.nexthop) == (qid, "tournesol@example.net",
                                                       "mx.example.com")
    assert req.path == dirs.path(q.queue_dir, "active", qid)
    assert [(r.index, r.address) for r in req.recipients] == [
        (0, "tintin@example.com"), (1, "haddock@example.com")]
    assert not list(dirs.scan(q.queue_dir, "active"))
    assert not list(dirs.scan(q.queue_dir, "incoming"))


def test_other_recipients_are_deferred_with_todays_reason_and_the_rest_marked(
    tmp_path: Path,
) -> None:
    q = make_qmgr(tmp_path, {"local": FakeTransport(all_sent)})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com", "castafiore@far.example"])
    run(q, qid)
    (deferred_line,) = [ln for ln in lines(q) if "status=deferred" in ln]
    assert deferred_line.startswith(f"{qid}: to=<castafiore@far.example>, relay=none, ")
    assert deferred_line.endswith(
        "dsn=4.3.0, status=deferred (mail transport unavailable: no smtp delivery agent yet)")
    assert f"{qid}: removed" not in lines(q)
    path = dirs.path(q.queue_dir, "deferred", qid)
    with QueueFile.open(path) as qf:
        assert [r.done for r in qf.envelope.recipients] == [True, False]
    # the next attempt is at least minimal_backoff_time away
    assert os.stat(path).st_mtime >= time.time() + 299


def test_unreachable_transport_defers_and_qmgr_logs_the_reason(tmp_path: Path) -> None:
    def down(req: DeliveryRequest) -> list[RcptResult]:
        raise TransportUnavailable("local delivery agent unavailable: [Errno 111] refused")

    q = make_qmgr(tmp_path, {"local": FakeTransport(down)})
    qid = enqueue(q, "tournesol@example.net", ["tintin@example.com"])
    run(q, qid)
    assert lines(q)[1].endswith(
        "dsn=4.3.0, status=deferred (local delivery agent unavailable: [Errno 111] refused)")
    assert list(dirs.scan(q.queue_dir, "deferred")) == [
        (qid, dirs.path(q.queue_dir, "deferred", qid))]


def test_bounced_recipient_gets_a_notification_that_is_delivered_in_turn(tmp_path: Path) -> None:
    def unknown(req: DeliveryRequest) -> list[RcptResult]:
        return [RcptResult(r.index, status.bounced("5.1.1", "unknown user")
                           if r.address.startswith("nobody") else status.sent("ok"))
                for r in req.recipients]

    local = FakeTransport(unknown)
    q = make_qmgr(tmp_path, {"local": local})
    qid = enqueue(q, "tintin@example.com", ["nobody@example.com"])
    run(q, qid)
    notice = [ln for ln in lines(q) if "sender non-delivery notification" in ln]
    assert len(notice) == 1 and notice[0].startswith(f"{qid}: ")
    # Postfix 3.7.11: "postfix/bounce[PID]: QID: sender non-delivery notification: NEWID"
    log = q.log
    assert isinstance(log, MemoryLog)
    assert log.programs[log.lines.index(notice[0])] == "postfix/bounce"
    assert log.programs[log.lines.index(f"{qid}: removed")] == "postfix/qmgr"
    bounce_id = notice[0].rsplit(" ", 1)[1]
    assert lines(q).index(notice[0]) < lines(q).index(f"{qid}: removed")
    assert f"{bounce_id}: from=<>, size=" in "\n".join(lines(q))
    assert f"{bounce_id}: removed" in lines(q)
    assert [r.recipients[0].address for r in local.requests] == [
        "nobody@example.com", "tintin@example.com"]


def test_an_expired_message_is_returned_and_a_bounce_from_null_is_discarded(
    tmp_path: Path,
) -> None:
    q = make_qmgr(tmp_path, {}, "maximal_queue_lifetime = 1d\nbounce_queue_lifetime = 1d\n")
    qid = enqueue(q, "", ["castafiore@far.example"], arrival=1000.0)
    run(q, qid)
    # Postfix 3.7's bounce(8) drops a failed bounce silently (no bounce/2bounce class):
    # no notice is queued and nothing but the expiry and the removal is logged.
    assert lines(q)[2:] == [
        f"{qid}: from=<>, status=expired, returned to sender",
        f"{qid}: removed",
    ]
    assert "status=deferred" in lines(q)[1]  # logged as it happened, then expired
    assert not os.listdir(os.path.join(q.queue_dir, "incoming"))


def test_a_failed_postmaster_notice_is_discarded_with_bounce_s_warning(
    tmp_path: Path,
) -> None:
    q = make_qmgr(tmp_path, {}, "maximal_queue_lifetime = 1d\nbounce_queue_lifetime = 1d\n"
                  "notify_classes = bounce, 2bounce\n")
    qid = enqueue(q, "double-bounce@mx.example.com", ["postmaster@far.example"],
                  arrival=1000.0)
    run(q, qid)
    assert lines(q)[2:] == [
        f"{qid}: from=<double-bounce@mx.example.com>, status=expired, returned to sender",
        f"warning: {qid}: undeliverable postmaster notification discarded",
        f"{qid}: removed",
    ]
    assert not os.listdir(os.path.join(q.queue_dir, "incoming"))


def test_queue_files_are_never_touched_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_threads: list[str] = []

    def watch(obj: object, name: str) -> None:
        real = getattr(obj, name)

        def spy(*args: object, **kw: object) -> object:
            if threading.current_thread() is threading.main_thread():
                loop_threads.append(name)
            return real(*args, **kw)

        monkeypatch.setattr(obj, name, spy)

    def bounce_one(req: DeliveryRequest) -> list[RcptResult]:
        return [RcptResult(r.index, status.bounced("5.1.1", "unknown user")
                           if r.address.startswith("nobody") else status.deferred("4.2.0", "busy"))
                for r in req.recipients]

    q = make_qmgr(tmp_path, {"local": FakeTransport(bounce_one)})
    enqueue(q, "tintin@example.com", ["nobody@example.com", "haddock@example.com"])
    for name in ("move", "scan"):
        watch(dirs, name)
    for name in ("open", "mark_done", "close", "iter_content"):
        watch(QueueFile, name)
    watch(QueueWriter, "create")
    watch(qmgr_mod.os, "unlink")
    watch(qmgr_mod.os, "utime")

    async def main() -> None:
        await q.scan_incoming()
        await settle(q)
        await q.scan_deferred()
        await settle(q)

    asyncio.run(main())
    assert any("sender non-delivery notification" in ln for ln in lines(q))
    assert loop_threads == []


def test_per_destination_concurrency_is_enforced_across_messages(tmp_path: Path) -> None:
    local = FakeTransport(all_sent, pause=0.01)
    q = make_qmgr(tmp_path, {"local": local},
                  "local_destination_concurrency_limit = 3\ninitial_destination_concurrency = 2\n")
    ids = [enqueue(q, "s@far.example", [f"u{i}@example.com"]) for i in range(12)]
    run(q, *ids)
    assert local.most == 3
    assert sum(f"{qid}: removed" in lines(q) for qid in ids) == 12


def test_recipient_limit_splits_a_message_into_requests(tmp_path: Path) -> None:
    local = FakeTransport(all_sent)
    q = make_qmgr(tmp_path, {"local": local}, "local_destination_recipient_limit = 2\n")
    qid = enqueue(q, "s@far.example", [f"u{i}@example.com" for i in range(5)])
    run(q, qid)
    assert sorted(len(r.recipients) for r in local.requests) == [1, 2, 2]
    assert f"{qid}: removed" in lines(q)


# --- notifications (RFC 3461 NOTIFY, notify_classes) ----------------------------------

def enqueue_rcpts(q: Qmgr, sender: str, rcpts: list[Recipient],
                  attrs: dict[str, str] | None = None, arrival: float = 0.0) -> str:
    writer = QueueWriter.create(q.queue_dir, fsync=False)
    writer.write(b"Subject: test\n\nthe body\n")
    return writer.commit(Envelope(sender, rcpts, arrival or time.time(), attrs or {}))


def by_local_part(req: DeliveryRequest) -> list[RcptResult]:
    """nobody*: unknown; slow*: deferred; anyone else delivered; notices are recorded."""
    out = []
    for r in req.recipients:
        if r.address.startswith("nobody"):
            st = status.bounced("5.1.1", f'unknown user: "{r.address.split("@")[0]}"')
        elif r.address.startswith("slow"):
            st = status.deferred("4.2.0", "mailbox busy")
        else:
            st = status.sent("delivered to mailbox")
        out.append(RcptResult(r.index, st))
    return out


@pytest.fixture
def keep_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Notices are read by tests after delivery: keep a copy instead of unlinking."""
    real_unlink = os.unlink

    def unlink(path: str | os.PathLike[str]) -> None:
        p = os.fspath(path)
        os.link(p, p + ".kept")
        real_unlink(p)

    monkeypatch.setattr(qmgr_mod.os, "unlink", unlink)


def delivered_notice(q: Qmgr, local: FakeTransport, word: str) -> list[tuple[str, str, bytes]]:
    """(sender, recipient, queue file) of each notice delivered whose log line has ``word``."""
    ids = [ln.rsplit(" ", 1)[1] for ln in lines(q) if f"{word} notification:" in ln]
    out = []
    for req in local.requests:
        if req.queue_id in ids:
            with open(req.path + ".kept", "rb") as f:
                out.append((req.sender, req.recipients[0].address, f.read()))
    return out


@pytest.mark.usefixtures("keep_files")
def test_notify_success_sends_a_success_notice_and_never_sends_nothing(tmp_path: Path) -> None:
    local = FakeTransport(by_local_part)
    q = make_qmgr(tmp_path, {"local": local})
    qid = enqueue_rcpts(q, "tintin@example.com", [
        Recipient("haddock@example.com", "haddock@example.com", dsn_notify="SUCCESS"),
        Recipient("nobody@example.com", dsn_notify="NEVER"),
        Recipient("milou@example.com"),
    ], {"dsn_envid": "ENV-42"})
    run(q, qid)
    assert [ln for ln in lines(q) if "notification:" in ln and ln.startswith(qid)] == [
        ln for ln in lines(q) if f"{qid}: sender delivery status notification:" in ln]
    [(sender, rcpt, data)] = delivered_notice(q, local, "sender delivery status")
    assert (sender, rcpt) == ("", "tintin@example.com")
    assert b"Subject: Successful Mail Delivery Report\n" in data
    assert b"<haddock@example.com>: delivery via local: delivered to mailbox\n" in data
    assert b"Final-Recipient: rfc822; haddock@example.com\nOriginal-Recipient: " \
           b"rfc822;haddock@example.com\nAction: delivered\nStatus: 2.0.0\n" in data
    assert b"Original-Envelope-Id: ENV-42\n" in data
    assert b"milou" not in data and b"nobody" not in data
    assert b"the body" not in data  # a success notice returns the headers only


@pytest.mark.usefixtures("keep_files")
def test_ret_hdrs_returns_only_the_headers_in_the_bounce(tmp_path: Path) -> None:
    local = FakeTransport(by_local_part)
    q = make_qmgr(tmp_path, {"local": local})
    hdrs = enqueue_rcpts(q, "tintin@example.com", [Recipient("nobody@example.com")],
                         {"dsn_ret": "HDRS"})
    full = enqueue_rcpts(q, "tintin@example.com", [Recipient("nobody2@example.com")])
    run(q, hdrs, full)
    bounces = {rcpt_data[2].count(b"the body"): rcpt_data[2]
               for rcpt_data in delivered_notice(q, local, "sender non-delivery")}
    assert sorted(bounces) == [0, 1]
    assert b"Content-Type: text/rfc822-headers\n" in bounces[0]
    assert b"Content-Type: message/rfc822\n" in bounces[1]


@pytest.mark.usefixtures("keep_files")
def test_a_delay_notice_is_sent_once_when_delay_warning_time_has_passed(tmp_path: Path) -> None:
    local = FakeTransport(by_local_part)
    q = make_qmgr(tmp_path, {"local": local},
                  "delay_warning_time = 1h\nnotify_classes = delay\n"
                  "delay_notice_recipient = haddock@example.com\n")
    qid = enqueue_rcpts(q, "tintin@example.com", [
        Recipient("slow@example.com"), Recipient("slow2@example.com", dsn_notify="FAILURE")],
        arrival=time.time() - 7200)
    run(q, qid)
    [(sender, rcpt, data)] = delivered_notice(q, local, "sender delay")
    assert (sender, rcpt) == ("", "tintin@example.com")
    assert b"Action: delayed\nStatus: 4.2.0\n" in data and b"slow2" not in data
    assert b"more than 1 hour(s)" in data
    [(pm_sender, pm_rcpt, pm_data)] = delivered_notice(q, local, "postmaster delay")
    assert (pm_sender, pm_rcpt) == ("double-bounce@mx.example.com", "haddock@example.com")
    assert b"Subject: Postmaster Warning: Delayed Mail\n" in pm_data and b"slow2" in pm_data
    # The next attempt, still deferred: no second warning (the W record says so).
    path = dirs.path(q.queue_dir, "deferred", qid)
    with QueueFile.open(path) as qf:
        assert qf.delay_warned
        assert [r.status for r in qf.envelope.recipients] == ["4.2.0", "4.2.0"]

    async def again() -> None:
        q.schedule(qid, "deferred")
        await settle(q)
    asyncio.run(again())
    assert sum("delay notification:" in ln for ln in lines(q)) == 2  # sender + postmaster


@pytest.mark.usefixtures("keep_files")
def test_an_undeliverable_bounce_goes_to_the_2bounce_recipient_with_2bounce(
    tmp_path: Path,
) -> None:
    local = FakeTransport(by_local_part)
    q = make_qmgr(tmp_path, {"local": local},
                  "notify_classes = 2bounce\n2bounce_notice_recipient = haddock@example.com\n")
    qid = enqueue_rcpts(q, "nobody-sender@example.com", [Recipient("nobody@example.com")])
    run(q, qid)
    [(sender, rcpt, data)] = delivered_notice(q, local, "postmaster non-delivery")
    assert (sender, rcpt) == ("double-bounce@mx.example.com", "haddock@example.com")
    assert b"Subject: Postmaster Copy: Undelivered Mail\n" in data
    assert b"X-Postfix-Sender: rfc822; MAILER-DAEMON@mx.example.com\n" in data
    # the whole undeliverable bounce is attached, with the original inside it
    assert b"Content-Type: message/rfc822\n" in data and b"the body" in data
    assert not any("undeliverable" in ln for ln in lines(q))


def test_hold_queue_is_never_scheduled(tmp_path: Path) -> None:
    local = FakeTransport(all_sent)
    q = make_qmgr(tmp_path, {"local": local})
    qid = enqueue(q, "tintin@example.com", ["haddock@example.com"])
    held = dirs.move(q.queue_dir, qid, "incoming", "hold")
    os.utime(held, (0, 0))  # "due" for any scan of deferred/

    async def main() -> None:
        q.schedule(qid, "incoming")  # a trigger naming it
        await q.scan_incoming()
        await q.scan_deferred()
        await settle(q)
    asyncio.run(main())
    assert local.requests == [] and os.path.exists(held)
    assert lines(q) == []
