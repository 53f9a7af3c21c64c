"""postqueue -p/-j/-f/-i/-s and mailq: Postfix 3.7's layouts byte for byte, flush requests.

The golden files in ``data/`` are Postfix 3.7's own output (``postqueue -p`` and ``-j``
of a throwaway instance whose relayhost refused connections, one message then put on
hold with ``postsuper -h``); the same messages are written here as postier queue files
and listed by postier.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_queue_helpers import DATA, instance, place

from postier.cli import main as cli_main
from postier.cli import postqueue
from postier.queue import control, dirs, showq
from postier.queue import file as qfile
from postier.queue.file import Envelope, Recipient
from postier.queue.showq import ListedRecipient, QueuedMessage

REASON = "connect to 127.3.0.9[127.3.0.9]:2599: Connection refused"
LONG_SENDER = "averyveryveryverylongsenderaddress.with.many.parts@subdomain.example.org"

# (state, queue ID, arrival, content size, sender, recipients) of Postfix's listing.
GOLDEN = [
    ("deferred", "E2A1C217C18", 1795996666.25, 3383, LONG_SENDER, ["dave@remote.example"]),
    ("deferred", "E0C56217C19", 1795996666.5, 303, "alice@example.org",
     ["carol@other.example", "bob@remote.example"]),
    ("deferred", "01B73217C13", 1795996667.75, 70425, "frank@example.org", ["g@remote.example"]),
    ("hold", "E593C217C17", 1795996666.0, 332, "", ["eve@remote.example"]),
]


def utc(seconds: float) -> str:
    return time.asctime(time.gmtime(seconds))


@pytest.fixture(autouse=True)
def _forget_fds() -> Iterator[None]:
    yield
    qfile.forget_dir_fds()


@pytest.fixture
def utc_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def content_of_size(size: int) -> bytes:
    """Lines (LF) whose size on the wire (CRLF), Postfix's message_size, is ``size``."""
    rest = size % 100
    assert rest >= 2
    return (b"y" * 98 + b"\n") * (size // 100) + b"x" * (rest - 2) + b"\n"


def place_golden(queue_dir: str) -> dict[str, str]:
    """Postfix's four messages as postier queue files; queue ID -> path."""
    paths = {}
    for state, qid, arrival, size, sender, rcpts in GOLDEN:
        env = Envelope(sender, [Recipient(r) for r in rcpts], arrival)
        statuses = {i: ("4.4.1", REASON) for i in range(len(rcpts))}
        paths[qid] = place(queue_dir, state, qid, env, content_of_size(size), statuses)
    return paths


def test_mailq_layout_is_postfix_37s_byte_for_byte(tmp_path: Path) -> None:
    _, queue_dir = instance(tmp_path)
    paths = place_golden(queue_dir)
    messages = []
    for state, qid, *_ in GOLDEN:
        m = showq.read_message(state, paths[qid])
        assert m is not None
        messages.append(m)
    text = "".join(postqueue.mailq_lines(messages, when=utc))
    assert text == (DATA / "postfix37_mailq.txt").read_text()


def test_json_lines_are_postfix_37s_byte_for_byte(tmp_path: Path) -> None:
    _, queue_dir = instance(tmp_path)
    order = ["E593C217C17", "E2A1C217C18", "E0C56217C19", "01B73217C13"]
    paths = place_golden(queue_dir)
    lines = []
    for qid in order:
        m = showq.read_message("deferred", paths[qid])  # as listed before the hold
        assert m is not None
        lines.append(postqueue.json_line(m))
    assert "".join(lines) == (DATA / "postfix37_postqueue_j.txt").read_text()


def blocks(text: str) -> tuple[str, set[str], str]:
    """(heading, message blocks, trailer) of a listing: blocks compare in any order."""
    heading, _, rest = text.partition("\n")
    body, _, trailer = rest.rpartition("\n\n")
    return heading, set(body.split("\n\n")), trailer


@pytest.mark.usefixtures("utc_zone")
def test_postqueue_p_lists_the_queue_directory_like_postfix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = instance(tmp_path)
    place_golden(queue_dir)
    assert postqueue.main(["-c", config_dir, "-p"]) == 0
    out, err = capsys.readouterr()
    assert blocks(out) == blocks((DATA / "postfix37_mailq.txt").read_text())
    # postier is not running: Postfix's warning, then the listing read from the queue.
    assert err == "postqueue: warning: Mail system is down -- accessing queue directly\n"
    assert cli_main.main(["-c", config_dir, "mailq"]) == 0
    assert blocks(capsys.readouterr().out) == blocks(out)


@pytest.mark.usefixtures("utc_zone")
def test_postqueue_j_lists_every_message_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, queue_dir = instance(tmp_path)
    place_golden(queue_dir)
    assert cli_main.main(["-c", config_dir, "postqueue", "-j"]) == 0
    out = capsys.readouterr().out.splitlines(keepends=True)
    golden = (DATA / "postfix37_postqueue_j.txt").read_text().splitlines(keepends=True)
    held = next(line for line in golden if "E593C217C17" in line)
    expected = {line for line in golden if line is not held}
    expected.add(held.replace('"deferred"', '"hold"'))
    assert set(out) == expected and len(out) == 4


def test_empty_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_dir, _ = instance(tmp_path)
    assert "".join(postqueue.mailq_lines([])) == "Mail queue is empty\n"
    assert postqueue.main(["-c", config_dir, "-p"]) == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"
    assert postqueue.main(["-c", config_dir, "-j"]) == 0
    assert capsys.readouterr().out == ""


def message(queue_name: str, *rcpts: tuple[str, str], size: int = 500,
            sender: str = "a@example.org", queue_id: str = "1A2B3C4D5") -> QueuedMessage:
    return QueuedMessage(queue_name, queue_id, 1795996666, size, sender,
                         tuple(ListedRecipient(a, r) for a, r in rcpts))


def test_active_star_reason_changes_and_reason_unavailable() -> None:
    m = message("active", ("x@a.example", "one"), ("y@a.example", "one"),
                ("z@b.example", "two"), ("w@c.example", ""))
    lines = list(postqueue.mailq_lines([m], when=utc))
    pad = " " * 41
    assert lines[1] == "1A2B3C4D5*      500 Sun Nov 29 23:57:46  a@example.org\n"
    assert lines[2:] == [
        " " * 73 + "(one)\n", pad + "x@a.example\n", pad + "y@a.example\n",
        " " * 73 + "(two)\n", pad + "z@b.example\n",
        " " * 58 + "(reason unavailable)\n", pad + "w@c.example\n",
        "\n", "-- 0 Kbytes in 1 Request.\n",
    ]


def test_reason_longer_than_the_line_starts_at_the_margin() -> None:
    reason = "r" * 90
    lines = list(postqueue.mailq_lines([message("deferred", ("x@a.example", reason))]))
    assert lines[2] == f"({reason})\n"


def test_no_reason_line_when_no_recipient_has_one() -> None:
    lines = list(postqueue.mailq_lines([message("incoming", ("x@a.example", ""))], when=utc))
    assert lines[1].startswith("1A2B3C4D5       500 ")
    assert lines[2] == " " * 41 + "x@a.example\n"


def test_long_queue_id_layout() -> None:
    m = message("hold", ("x@a.example", ""), queue_id="4dGFCm10qGzP0fh")
    lines = list(postqueue.mailq_lines([m], long_ids=True, when=utc))
    assert lines[0] == ("----Queue ID----- --Size-- ---Arrival Time---- "
                        "--Sender/Recipient------\n")
    assert lines[1] == "4dGFCm10qGzP0fh!       500 Sun Nov 29 23:57:46 a@example.org\n"
    assert lines[2] == " " * 47 + "x@a.example\n"


def test_kbytes_total_is_the_sum_of_sizes_rounded_down() -> None:
    ms = [message("deferred", ("x@a.example", ""), size=s) for s in (1000, 1000, 47)]
    assert list(postqueue.mailq_lines(ms))[-1] == "-- 1 Kbytes in 3 Requests.\n"
    ms = [message("deferred", ("x@a.example", ""), size=s) for s in (1000, 1000, 48)]
    assert list(postqueue.mailq_lines(ms))[-1] == "-- 2 Kbytes in 3 Requests.\n"
    ms = [message("deferred", ("x@a.example", ""), size=s) for s in (1024, 1024, 1024)]
    assert list(postqueue.mailq_lines(ms))[-1] == "-- 3 Kbytes in 3 Requests.\n"


def test_undecodable_bytes_and_controls_are_question_marks() -> None:
    m = message("deferred", ("b\udcffd@x.example", "bad\tline"), sender="a\x01b@y.example")
    lines = list(postqueue.mailq_lines([m], when=utc))
    assert lines[1].endswith("  a?b@y.example\n")
    assert lines[2].endswith("(bad?line)\n")
    assert lines[3] == " " * 41 + "b?d@x.example\n"
    "".join(lines).encode("ascii")  # nothing left that a terminal cannot take


def test_json_quote_follows_postfix() -> None:
    assert postqueue.json_quote('a"b\\c') == 'a\\"b\\\\c'
    assert postqueue.json_quote("\b\f\n\r\t") == "\\b\\f\\n\\r\\t"
    assert postqueue.json_quote("\x01\x1f\x7f") == "\\u0001\\u001F\\u007F"
    assert postqueue.json_quote("élan/ü") == "élan/ü"
    assert postqueue.json_quote("bad\udcffbyte") == "bad?byte"


def test_json_omits_an_empty_delay_reason() -> None:
    line = postqueue.json_line(message("incoming", ("x@a.example", "")))
    assert line.endswith('"recipients": [{"address": "x@a.example"}]}\n')


# --- flush requests -------------------------------------------------------------------------


@pytest.fixture
def qmgr_socket(tmp_path: Path) -> Iterator[tuple[str, str, socket.socket]]:
    """A stand-in qmgr: the datagram socket public/qmgr, bound."""
    config_dir, queue_dir = instance(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(dirs.public_path(queue_dir, "qmgr"))
    sock.settimeout(2)
    yield config_dir, queue_dir, sock
    sock.close()


def test_flush_tells_qmgr_to_take_every_deferred_message(
    qmgr_socket: tuple[str, str, socket.socket],
) -> None:
    config_dir, _, sock = qmgr_socket
    assert postqueue.main(["-c", config_dir, "-f"]) == 0
    assert control.parse(sock.recv(64)) == control.Trigger(
        requests=frozenset({control.Request.SCAN_ALL}))
    assert cli_main.main(["-c", config_dir, "flush"]) == 0
    assert sock.recv(64) == b"A"


def test_flush_one_message_makes_it_due_and_asks_for_a_scan(
    qmgr_socket: tuple[str, str, socket.socket],
) -> None:
    config_dir, queue_dir, sock = qmgr_socket
    env = Envelope("a@example.org", [Recipient("b@remote.example")], 1795996666.0)
    later = time.time() + 3600
    path = place(queue_dir, "deferred", "ABCDE1234", env, b"x\n")
    other = place(queue_dir, "deferred", "ABCDE9999", env, b"x\n")
    for p in (path, other):
        os.utime(p, (later, later))
    assert postqueue.main(["-c", config_dir, "-i", "ABCDE1234"]) == 0
    assert os.stat(path).st_mtime <= time.time()
    assert os.stat(other).st_mtime == later
    assert sock.recv(64) == b"D"


def test_flush_site_takes_the_messages_with_a_pending_recipient_there(
    qmgr_socket: tuple[str, str, socket.socket],
) -> None:
    _config_dir, queue_dir, sock = qmgr_socket
    later = time.time() + 3600
    to_site = place(queue_dir, "deferred", "ABCDE0001", Envelope(
        "a@example.org", [Recipient("b@other.example"), Recipient("c@Remote.Example")],
        1.0), b"x\n")
    done_there = place(queue_dir, "deferred", "ABCDE0002", Envelope(
        "a@example.org", [Recipient("d@remote.example", done=True),
                          Recipient("e@other.example")], 1.0), b"x\n")
    elsewhere = place(queue_dir, "deferred", "ABCDE0003", Envelope(
        "a@example.org", [Recipient("f@sub.remote.example")], 1.0), b"x\n")
    for p in (to_site, done_there, elsewhere):
        os.utime(p, (later, later))
    assert postqueue.flush_site(queue_dir, "remote.example") == 1
    assert os.stat(to_site).st_mtime <= time.time()
    assert os.stat(done_there).st_mtime == later
    assert os.stat(elsewhere).st_mtime == later
    assert sock.recv(64) == b"D"


def test_postqueue_s_flushes_only_fast_flush_domains(
    qmgr_socket: tuple[str, str, socket.socket], capsys: pytest.CaptureFixture[str],
) -> None:
    # Postfix 3.7, fast_flush_domains = $relay_domains (empty): exit 69 and
    # 'postqueue: fatal: Flush service is not configured for destination "remote.example"'
    config_dir, queue_dir, sock = qmgr_socket
    later = time.time() + 3600
    there = place(queue_dir, "deferred", "ABCDE0001", Envelope(
        "a@example.org", [Recipient("c@remote.example")], 1.0), b"x\n")
    os.utime(there, (later, later))
    assert postqueue.main(["-c", config_dir, "-s", "remote.example"]) == 69
    assert capsys.readouterr().err == (
        'postqueue: fatal: Flush service is not configured for destination "remote.example"\n')
    assert os.stat(there).st_mtime == later
    assert sock.recv(64) == b"D"  # the probe: a scan of what is due anyway
    main_cf = Path(config_dir) / "main.cf"
    main_cf.write_text(main_cf.read_text() + "relay_domains = example.net\n"
                       "fast_flush_domains = $relay_domains, remote.example\n")
    assert postqueue.main(["-c", config_dir, "-s", "remote.example"]) == 0
    assert os.stat(there).st_mtime <= time.time()
    assert sock.recv(64) == b"D"


@pytest.mark.parametrize("argv", [["-f"], ["-i", "ABCDE1234"], ["-s", "example.com"]])
def test_flush_when_the_mail_system_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    config_dir, _ = instance(tmp_path)
    assert postqueue.main(["-c", config_dir, *argv]) == 69
    assert capsys.readouterr().err == (
        "postqueue: fatal: Cannot flush mail queue - mail system is down\n")


@pytest.mark.parametrize("argv", [[], ["-x"], ["-p", "-f"], ["-i"]])
def test_usage_errors_exit_2_with_postfixs_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        postqueue.main(argv)
    assert exc.value.code == 2
    assert capsys.readouterr().err.endswith(f"postqueue: fatal: usage: {postqueue.USAGE}\n")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for prog in ("postqueue", "mailq"):
        with pytest.raises(SystemExit) as exc:
            postqueue.main(["--help"], prog=prog)
        assert exc.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_invoked_as_mailq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, _ = instance(tmp_path)
    monkeypatch.setattr("sys.argv", ["/usr/bin/mailq", "-C", config_dir])
    assert cli_main.main() == 0
    assert capsys.readouterr().out == "Mail queue is empty\n"


def test_mailq_C_names_main_cf_or_its_directory_and_warns_as_postqueue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir, _ = instance(tmp_path)
    for arg in (config_dir, f"{config_dir}/main.cf"):
        assert postqueue.main(["-C", arg], prog="mailq") == 0
        out, err = capsys.readouterr()
        assert out == "Mail queue is empty\n"
        # the mail system is down here: sendmail -bp's postqueue says so under its name
        assert err == f"postqueue: warning: {postqueue.DOWN_WARNING}\n"


def test_postqueue_s_with_a_fast_flush_domains_table(
    qmgr_socket: tuple[str, str, socket.socket], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # Postfix 3.7.11, fast_flush_domains = hash:/tmp/nonexist: exit 69 and
    # 'postqueue: fatal: open database /tmp/nonexist.db: No such file or directory'
    config_dir, queue_dir, sock = qmgr_socket
    later = time.time() + 3600
    there = place(queue_dir, "deferred", "ABCDE0001", Envelope(
        "a@example.org", [Recipient("c@sub.remote.example")], 1.0), b"x\n")
    os.utime(there, (later, later))
    main_cf = Path(config_dir) / "main.cf"
    base = main_cf.read_text()
    main_cf.write_text(base + f"fast_flush_domains = hash:{tmp_path}/nonexist\n")
    assert postqueue.main(["-c", config_dir, "-s", "sub.remote.example"]) == 69
    assert capsys.readouterr().err.startswith(
        f"postqueue: fatal: open database {tmp_path}/nonexist.pdb: No such file or directory")
    assert os.stat(there).st_mtime == later
    # a table that answers: the site, then its parent domains, are looked up
    (tmp_path / "flush").write_text("remote.example OK\n")
    main_cf.write_text(base + f"fast_flush_domains = texthash:{tmp_path}/flush\n")
    assert postqueue.main(["-c", config_dir, "-s", "sub.remote.example"]) == 0
    assert os.stat(there).st_mtime <= time.time()
    assert sock.recv(64) == b"D"
