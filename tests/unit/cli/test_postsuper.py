"""postsuper -d/-h/-H/-r: renames between the queues, and Postfix 3.7's report lines.

The expected lines are those Postfix 3.7's postsuper printed on a throwaway instance
(``postsuper: ID: placed on hold`` for a named message, only the count for ``ALL``,
``Placed on hold: 0 messages`` for an unknown ID, ``warning: invalid mail queue id``,
``fatal: invalid directory name``).
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_queue_helpers import instance, place

from postier.cli import main as cli_main
from postier.cli import postsuper
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, Recipient

ENV = Envelope("a@example.org", [Recipient("b@remote.example")], 1795996666.0)


@pytest.fixture(autouse=True)
def _forget_fds() -> Iterator[None]:
    yield
    qfile.forget_dir_fds()


def where(queue_dir: str) -> dict[str, str]:
    """queue ID -> state of every message."""
    return {qid: state for state in dirs.STATES for qid, _ in dirs.scan(queue_dir, state)}


def setup_queue(tmp_path: Path) -> tuple[str, str]:
    config_dir, queue_dir = instance(tmp_path)
    place(queue_dir, "deferred", "AAAAA0001", ENV, b"x\n")
    place(queue_dir, "deferred", "AAAAA0002", ENV, b"x\n")
    place(queue_dir, "incoming", "AAAAA0003", ENV, b"x\n")
    place(queue_dir, "active", "AAAAA0004", ENV, b"x\n")
    place(queue_dir, "hold", "AAAAA0005", ENV, b"x\n")
    return config_dir, queue_dir


def test_hold_one_then_release_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-h", "AAAAA0001"]) == 0
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0001: placed on hold\npostsuper: Placed on hold: 1 message\n")
    assert where(queue_dir)["AAAAA0001"] == "hold"
    before = time.time()
    assert postsuper.main(["-c", config_dir, "-H", "AAAAA0001"]) == 0
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0001: released from hold\npostsuper: Released from hold: 1 message\n")
    assert where(queue_dir)["AAAAA0001"] == "deferred"
    # due at the next deferred queue scan
    assert os.stat(dirs.path(queue_dir, "deferred", "AAAAA0001")).st_mtime >= before - 1


def test_hold_all_takes_incoming_active_and_deferred(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-h", "ALL"]) == 0
    assert capsys.readouterr().err == "postsuper: Placed on hold: 4 messages\n"
    assert set(where(queue_dir).values()) == {"hold"}
    assert postsuper.main(["-c", config_dir, "-H", "ALL"]) == 0
    assert capsys.readouterr().err == "postsuper: Released from hold: 5 messages\n"
    assert set(where(queue_dir).values()) == {"deferred"}


def test_named_queues_replace_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-h", "ALL", "deferred"]) == 0
    assert capsys.readouterr().err == "postsuper: Placed on hold: 2 messages\n"
    assert where(queue_dir) == {"AAAAA0001": "hold", "AAAAA0002": "hold",
                                "AAAAA0003": "incoming", "AAAAA0004": "active",
                                "AAAAA0005": "hold"}


def test_delete_named_all_and_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-d", "AAAAA0004"]) == 0  # active too
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0004: removed\npostsuper: Deleted: 1 message\n")
    stdin = io.StringIO("AAAAA0001\n\nAAAAA0005 extra words\nbad/id\nAAAAA0999\n")
    assert postsuper.main(["-c", config_dir, "-d", "-"], stdin=stdin) == 0
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0001: removed\n"
        "postsuper: AAAAA0005: removed\n"
        "postsuper: warning: invalid mail queue id: bad/id\n"
        "postsuper: Deleted: 2 messages\n")
    assert where(queue_dir) == {"AAAAA0002": "deferred", "AAAAA0003": "incoming"}
    assert postsuper.main(["-c", config_dir, "-d", "ALL"]) == 0
    assert capsys.readouterr().err == "postsuper: Deleted: 2 messages\n"
    assert where(queue_dir) == {}


def test_unknown_id_counts_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, _ = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-h", "12345ABC"]) == 0
    assert capsys.readouterr().err == "postsuper: Placed on hold: 0 messages\n"


def test_requeue_moves_to_incoming_and_tells_qmgr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(dirs.public_path(queue_dir, "qmgr"))
    sock.settimeout(2)
    try:
        assert postsuper.main(["-c", config_dir, "-r", "AAAAA0005"]) == 0
        assert sock.recv(64) == b"AAAAA0005"
    finally:
        sock.close()
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0005: requeued\npostsuper: Requeued: 1 message\n")
    assert where(queue_dir)["AAAAA0005"] == "incoming"
    # without a qmgr (stopped): still requeued, quietly
    assert postsuper.main(["-c", config_dir, "-r", "ALL"]) == 0
    assert capsys.readouterr().err == "postsuper: Requeued: 3 messages\n"
    assert set(where(queue_dir).values()) == {"incoming"}


def test_several_operations_report_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert cli_main.main(["-c", config_dir, "postsuper", "-H", "AAAAA0005",
                          "-d", "AAAAA0001", "-h", "AAAAA0002"]) == 0
    assert capsys.readouterr().err == (
        "postsuper: AAAAA0001: removed\npostsuper: Deleted: 1 message\n"
        "postsuper: AAAAA0002: placed on hold\npostsuper: Placed on hold: 1 message\n"
        "postsuper: AAAAA0005: released from hold\npostsuper: Released from hold: 1 message\n")
    assert where(queue_dir)["AAAAA0002"] == "hold"
    assert where(queue_dir)["AAAAA0005"] == "deferred"


def test_postsuper_logs_to_the_mail_log(tmp_path: Path) -> None:
    config_dir, _queue_dir = setup_queue(tmp_path)
    maillog = tmp_path / "maillog"  # instance()'s maillog_file
    assert postsuper.main(["-c", config_dir, "-h", "AAAAA0001"]) == 0
    logged = maillog.read_text().splitlines()
    assert logged[0].endswith("AAAAA0001: placed on hold")
    assert "postfix/postsuper[" in logged[0]
    assert logged[1].endswith("Placed on hold: 1 message")


def test_invalid_queue_name_is_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    assert postsuper.main(["-c", config_dir, "-d", "ALL", "bogusq"]) == 1
    assert capsys.readouterr().err == "postsuper: fatal: invalid directory name: bogusq\n"
    assert len(where(queue_dir)) == 5


@pytest.mark.parametrize("argv", [[], ["-x"], ["-d"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        postsuper.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.endswith(f"postsuper: fatal: usage: {postsuper.USAGE}\n")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        postsuper.main(["--help"])
    assert exc.value.code == 0
    assert "-H queue_id" in capsys.readouterr().out


# A file as Postfix's postdrop(1) leaves it in maildrop/ (queue.postdrop's format).
POSTDROP_FILE = (b"T\x041 0S\x04rootR\x05a@b.cM\x00N\x01xX\x00E\x00")


def test_maildrop_is_a_queue_name_for_delete_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, queue_dir = setup_queue(tmp_path)
    for name in ("5717B2204", "5717B2205"):
        Path(queue_dir, "maildrop", name).write_bytes(POSTDROP_FILE)
    # hold and requeue find nothing there (a postdrop file is no queue file), as Postfix's
    assert postsuper.main(["-c", config_dir, "-h", "5717B2204", "-r", "ALL", "maildrop"]) == 0
    assert capsys.readouterr().err == ("postsuper: Placed on hold: 0 messages\n"
                                       "postsuper: Requeued: 0 messages\n")
    assert sorted(os.listdir(Path(queue_dir, "maildrop"))) == ["5717B2204", "5717B2205"]
    # the default queues leave maildrop alone
    assert postsuper.main(["-c", config_dir, "-d", "5717B2204"]) == 0
    assert capsys.readouterr().err == "postsuper: Deleted: 0 messages\n"
    assert postsuper.main(["-c", config_dir, "-d", "5717B2204", "maildrop"]) == 0
    assert capsys.readouterr().err == ("postsuper: 5717B2204: removed\n"
                                       "postsuper: Deleted: 1 message\n")
    assert os.listdir(Path(queue_dir, "maildrop")) == ["5717B2205"]
    assert len(where(queue_dir)) == 5
