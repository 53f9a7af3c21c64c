"""postcat: sections, header and body as Postfix 3.7's postcat showed the same message.

``data/postfix37_postcat*.txt`` are Postfix 3.7's ``postcat -q``, ``-h`` and ``-b`` of a
message it queued (the client/log ``named_attribute`` lines left out). postier's queue
file holds the same content and recipients; the records postier has no counterpart for
(``create_time``, the six ``message_size`` fields) are compared apart.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_queue_helpers import DATA, instance, place

from postier.cli import main as cli_main
from postier.cli import postcat
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient

HEADER = (DATA / "postfix37_postcat_h.txt").read_bytes()
BODY = (DATA / "postfix37_postcat_b.txt").read_bytes()
ENV = Envelope(
    "alice@example.org",
    [Recipient("bob@remote.example", "bob@remote.example", dsn_orcpt="rfc822;bob@remote.example"),
     Recipient("carol@other.example", "carol@other.example",
               dsn_orcpt="rfc822;carol@other.example")],
    1795996820.0,  # Mon Nov 30 00:00:20 2026 UTC
)


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
    qfile.forget_dir_fds()


def run(argv: list[str]) -> tuple[int, bytes]:
    out = io.BytesIO()
    status = postcat.main(argv, out=out)
    return status, out.getvalue()


def test_postcat_q_matches_postfix_but_for_the_records_we_lack(tmp_path: Path) -> None:
    config_dir, queue_dir = instance(tmp_path)
    place(queue_dir, "deferred", "A9BA4216251", ENV, HEADER + BODY)
    status, out = run(["-c", config_dir, "-q", "A9BA4216251"])
    assert status == 0
    ours = out.decode().splitlines()
    theirs = (DATA / "postfix37_postcat.txt").read_text().splitlines()
    assert [ln for ln in ours if not ln.startswith("message_size:")] == [
        ln for ln in theirs if not ln.startswith(("message_size:", "create_time:"))]
    (size_line,) = [ln for ln in ours if ln.startswith("message_size:")]
    assert size_line.split()[1:] == ["303", str(qfile.HEADER_SIZE), "2"]
    # Postfix's size (CRLF line ends, as on the wire) in Postfix's %15ld column
    assert size_line[:29] == "message_size:             303"


def test_header_and_body_selections_match_postfix(tmp_path: Path) -> None:
    config_dir, queue_dir = instance(tmp_path)
    place(queue_dir, "deferred", "A9BA4216251", ENV, HEADER + BODY)
    assert run(["-c", config_dir, "-h", "-q", "A9BA4216251"]) == (0, HEADER)
    assert run(["-c", config_dir, "-b", "-q", "A9BA4216251"]) == (0, BODY)
    assert run(["-c", config_dir, "-hb", "-q", "A9BA4216251"]) == (0, HEADER + BODY)
    status, out = run(["-c", config_dir, "-e", "-q", "A9BA4216251"])
    text = out.decode()
    assert status == 0 and "Subject:" not in text and "hello" not in text
    assert text.endswith("*** MESSAGE CONTENTS deferred/A/A9BA4216251 ***\n"
                         "*** HEADER EXTRACTED deferred/A/A9BA4216251 ***\n"
                         "*** MESSAGE FILE END deferred/A/A9BA4216251 ***\n")


def test_a_file_by_name_is_labelled_with_its_name(tmp_path: Path) -> None:
    _, queue_dir = instance(tmp_path)
    path = place(queue_dir, "hold", "ABCDE1234", ENV, b"Subject: x\n\nbody")
    status, out = run([path])
    assert status == 0
    assert out.decode().startswith(f"*** ENVELOPE RECORDS {path} ***\n")
    assert b"\nbody\n*** HEADER EXTRACTED" in out  # a last line without LF gets one


def test_done_recipients_notify_flags_attributes_and_recorded_statuses(tmp_path: Path) -> None:
    config_dir, queue_dir = instance(tmp_path)
    env = Envelope("", [Recipient("x@a.example", done=True),
                        Recipient("y@b.example", "Y@b.example", dsn_notify="SUCCESS,DELAY")],
                   1795996820.0, {"origin": "bounce"})
    place(queue_dir, "incoming", "ABCDE1234", env, b"Subject: x\n\nbody\n",
          {1: ("4.4.1", "connect to b.example[192.0.2.1]:25: Connection refused")})
    status, out = run(["-c", config_dir, "-e", "-q", "ABCDE1234"])
    assert status == 0
    assert out.decode().splitlines()[2:] == [
        "message_arrival_time: Mon Nov 30 00:00:20 2026",
        "sender: ",
        "named_attribute: origin=bounce",
        "original_recipient: x@a.example",
        "done_recipient: x@a.example",
        "named_attribute: notify_flags=10",
        "original_recipient: Y@b.example",
        "recipient: y@b.example",
        "*** MESSAGE CONTENTS incoming/ABCDE1234 ***",
        "*** HEADER EXTRACTED incoming/ABCDE1234 ***",
        "delivery_status: y@b.example: 4.4.1 connect to b.example[192.0.2.1]:25: "
        "Connection refused",
        "*** MESSAGE FILE END incoming/ABCDE1234 ***",
    ]


def test_missing_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, _ = instance(tmp_path)
    assert run(["-c", config_dir, "-q", "ABCDEF123"]) == (1, b"")
    assert capsys.readouterr().err == (
        "postcat: fatal: open queue file ABCDEF123: No such file or directory\n")


def test_notify_flags_are_postfixs_bit_mask() -> None:
    assert postcat.notify_flags("NEVER") == 1
    assert postcat.notify_flags("SUCCESS,FAILURE,DELAY") == 14
    assert postcat.notify_flags("") == 0


def test_split_content() -> None:
    assert postcat.split_content([b"A: 1\nB: 2\n", b"\nbody\n"]) == (b"A: 1\nB: 2\n", b"\nbody\n")
    assert postcat.split_content([b"\nbody only\n"]) == (b"", b"\nbody only\n")
    assert postcat.split_content([b"A: 1\n"]) == (b"A: 1\n", b"")


def test_invoked_through_postier(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes],
                                 ) -> None:
    config_dir, queue_dir = instance(tmp_path)
    place(queue_dir, "deferred", "A9BA4216251", ENV, HEADER + BODY)
    assert cli_main.main(["-c", config_dir, "postcat", "-b", "-q", "A9BA4216251"]) == 0
    assert capsysbinary.readouterr().out == BODY
    with QueueFile.open(f"{queue_dir}/deferred/A/A9BA4216251", readonly=True) as qf:
        assert qf.content_size == len(HEADER + BODY)


@pytest.mark.parametrize("argv", [[], ["-x", "f"], ["-q"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        postcat.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.endswith(f"postcat: fatal: usage: {postcat.USAGE}\n")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        postcat.main(["--help"])
    assert exc.value.code == 0
    assert "-q" in capsys.readouterr().out
