"""pickup.Pickup: maildrop files into the queue through cleanup, the bad ones to corrupt/."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.cleanup.headers import display_name
from postier.config.settings import Config
from postier.log import Log
from postier.pickup import pickup
from postier.pickup.pickup import Pickup, envelope_of, open_fifo, open_socket, serve
from postier.queue import dirs, postdrop
from postier.queue.file import QueueFile


class MemoryLog(Log):
    def __init__(self, program: str = "pickup", shared: MemoryLog | None = None) -> None:
        super().__init__(program)
        self.lines: list[str] = shared.lines if shared is not None else []

    def _emit(self, severity: str, text: str) -> None:
        self.lines.append(text if severity == "info" else f"{severity}: {text}")

    def for_program(self, program: str) -> Log:
        return MemoryLog(program, shared=self)


def rec(rtype: str, data: str) -> bytes:
    raw, n, length = data.encode(), len(data.encode()), bytearray()
    while True:
        length.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return rtype.encode() + bytes(length) + raw


def drop_file(sender: str = "root", recipients: tuple[str, ...] = ("tintin",), name: str = "Root",
              body: tuple[str, ...] = ("Subject: hello", "", "body")) -> bytes:
    # noon UTC: Mon, 30 Nov 2026 in every time zone of the Date: header
    return (rec("T", "1796040000 356567") + rec("A", "rewrite_context=local") + rec("F", name)
            + rec("S", sender) + b"".join(rec("R", r) for r in recipients) + rec("M", "")
            + b"".join(rec("N", line) for line in body) + rec("X", "") + rec("E", ""))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Pickup, MemoryLog, Path]]:
    queue = tmp_path / "queue"
    dirs.ensure(str(queue), None, None)
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "main.cf").write_text(
        f"queue_directory = {queue}\nmyhostname = mail.example.com\n"
        "mydomain = example.com\nmyorigin = $mydomain\n")
    log = MemoryLog()
    p = Pickup(Config.from_dir(str(conf)), log, fsync=False)
    yield p, log, queue
    p.close()


def put(queue: Path, name: str, data: bytes, mode: int = 0o744) -> Path:
    path = queue / "maildrop" / name
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_a_complete_file_is_queued_qualified_with_a_received_header_then_removed(
        setup: tuple[Pickup, MemoryLog, Path]) -> None:
    p, log, queue = setup
    path = put(queue, "5717B220482", drop_file())
    outcome = p.take("5717B220482")
    assert outcome.state == "queued"
    assert not path.exists()
    with QueueFile.open(dirs.path(str(queue), "incoming", outcome.queue_id)) as qf:
        env = qf.envelope
        content = b"".join(qf.iter_content())
    assert env.sender == "root@example.com"
    assert [r.address for r in env.recipients] == ["tintin@example.com"]
    assert env.arrival == 1796040000.0
    assert env.attrs["origin"] == "sendmail"
    uid = os.getuid()
    assert content.startswith(
        f"Received: by mail.example.com (Postfix, from userid {uid})\n"
        f"\tid {outcome.queue_id}; Mon, 30 Nov 2026 ".encode())
    assert b"\nSubject: hello\n" in content and content.endswith(b"\n\nbody\n")
    assert b"\nMessage-Id: <" in content  # cleanup adds the missing headers
    assert b"\nFrom: Root <root@example.com>\n" in content  # the F record: full name
    assert b"\nDate: Mon, 30 Nov 2026 " in content  # the T record, not now
    assert f"{outcome.queue_id}: uid={uid} from=<root>" in log.lines


def test_the_dsn_requests_and_null_sender_go_into_the_envelope() -> None:
    data = (rec("T", "5 0") + rec("A", "ret_flags=1") + rec("A", "envelope_id=E1")
            + rec("S", "") + rec("A", "notify_flags=4") + rec("R", "a@b.c") + rec("M", "")
            + rec("X", "") + rec("E", ""))
    env = envelope_of(postdrop.parse(data), mtime=9.0)
    assert (env.sender, env.arrival) == ("", 5.0)
    assert env.attrs["dsn_ret"] == "FULL" and env.attrs["dsn_envid"] == "E1"
    assert env.recipients[0].dsn_notify == "FAILURE"
    no_time = data.removeprefix(rec("T", "5 0"))
    assert envelope_of(postdrop.parse(no_time), mtime=9.0).arrival == 9.0


def test_a_file_still_being_written_is_left_alone(
        setup: tuple[Pickup, MemoryLog, Path]) -> None:
    p, _log, queue = setup
    path = put(queue, "AAAA1", drop_file()[:-5], mode=0o644)  # no owner x bit yet
    assert p.take("AAAA1").state == "skipped"
    assert path.exists()
    assert list(dirs.scan(str(queue), "incoming")) == []


def test_an_unparsable_file_goes_to_corrupt_with_a_warning(
        setup: tuple[Pickup, MemoryLog, Path]) -> None:
    p, log, queue = setup
    put(queue, "BBBB1", b"not a postdrop file at all")
    put(queue, "BBBB2", drop_file(recipients=()))
    assert [o.state for o in p.scan()] == ["corrupt", "corrupt"]
    assert sorted(os.listdir(queue / "corrupt")) == ["BBBB1", "BBBB2"]
    assert os.listdir(queue / "maildrop") == []
    assert any(line.startswith("warning: maildrop/BBBB1: ") and "corrupt" in line
               for line in log.lines)
    assert "warning: maildrop/BBBB2: no recipients: moving to the corrupt queue" in log.lines


def test_a_queue_write_failure_leaves_the_file_for_the_next_scan(
        setup: tuple[Pickup, MemoryLog, Path]) -> None:
    p, log, queue = setup
    path = put(queue, "CCCC1", drop_file())
    os.rmdir(queue / "incoming")  # the environment fails: nothing can be queued
    assert p.take("CCCC1").state == "deferred"
    assert path.exists()
    assert any(line.startswith("warning: maildrop/CCCC1: cannot") for line in log.lines)
    os.mkdir(queue / "incoming")
    assert p.take("CCCC1").state == "queued"
    assert not path.exists()


def test_the_received_header_names_the_user() -> None:
    from datetime import UTC, datetime
    header = pickup.received_header(by_host="h.example", mail_name="Postfix", uid=1000,
                                    queue_id="ABC", when=datetime(2026, 1, 6, 8, 9, 10,
                                                                  tzinfo=UTC))
    assert header == (b"Received: by h.example (Postfix, from userid 1000)\n"
                      b"\tid ABC; Tue,  6 Jan 2026 08:09:10 +0000 (UTC)\n")


def test_open_fifo_makes_public_pickup_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    target = tmp_path / "public" / "pickup"
    target.write_text("a stale plain file")
    fd = open_fifo(str(tmp_path), None)
    try:
        st = os.lstat(target)
        assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o622
        with open(target, "wb", buffering=0) as w:  # postdrop's wake-up byte
            w.write(b"W")
        assert os.read(fd, 16) == b"W"
    finally:
        os.close(fd)
    fd = open_fifo(str(tmp_path), None)  # kept when it is one already
    os.close(fd)


@pytest.mark.parametrize(("full_name", "display"), [
    ("Tin Tin", "Tin Tin"),
    ("  Tin   Tin ", "Tin Tin"),
    ('Tin, "T" \\Tin', '"Tin, \\"T\\" \\\\Tin"'),  # as Postfix 3.7 quotes it
    ("Dupond (X)", '"Dupond (X)"'),
])
def test_the_full_name_becomes_the_from_display_name(
        setup: tuple[Pickup, MemoryLog, Path], full_name: str, display: str) -> None:
    assert display_name(full_name) == display
    p, _log, queue = setup
    put(queue, "DDDD1", drop_file(name=full_name))
    outcome = p.take("DDDD1")
    with QueueFile.open(dirs.path(str(queue), "incoming", outcome.queue_id)) as qf:
        content = b"".join(qf.iter_content())
    assert f"\nFrom: {display} <root@example.com>\n".encode() in content


def test_open_socket_binds_public_pickup_as_postfix_3(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    target = tmp_path / "public" / "pickup"
    os.mkfifo(target)  # an older master.cf's FIFO is replaced
    sock = open_socket(str(tmp_path), None)
    try:
        st = os.lstat(target)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["unix", "fifo"])
def test_serve_scans_when_postdrop_pokes_public_pickup(
        setup: tuple[Pickup, MemoryLog, Path], kind: str) -> None:
    p, log, queue = setup
    target = queue / "public" / "pickup"

    def poke() -> None:  # what postdrop's trigger does: one byte
        if kind == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.connect(str(target))
                c.sendall(b"W")
        else:
            fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"W")
            os.close(fd)

    async def scenario() -> list[str]:
        endpoint = open_socket(str(queue), None) if kind == "unix" else open_fifo(
            str(queue), None)
        life_r, life_w = os.pipe()
        task = asyncio.ensure_future(serve(p, endpoint, -1, life_r, wakeup=3600))
        await asyncio.sleep(0.3)  # the start scan found nothing
        put(queue, "EEEE1", drop_file())
        await asyncio.get_running_loop().run_in_executor(None, poke)
        for _ in range(100):
            if not os.listdir(queue / "maildrop"):
                break
            await asyncio.sleep(0.05)
        left = os.listdir(queue / "maildrop")
        os.close(life_w)  # the master is gone: serve ends
        await asyncio.wait_for(task, 5)
        os.close(life_r)
        return left

    assert asyncio.run(scenario()) == []
    assert any(": uid=" in line for line in log.lines)
    assert len(list(dirs.scan(str(queue), "incoming"))) == 1
