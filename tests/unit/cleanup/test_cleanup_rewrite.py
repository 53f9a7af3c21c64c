"""cleanup's address qualification (issue 7 a) and hopcount_limit (issue 7 j)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postier.cleanup.cleanup import Cleanup, Qualify, Received
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient

WHEN = datetime(2026, 11, 25, 20, 48, 52, tzinfo=UTC)


class Recorder:
    """A LogSink: ``lines`` and, beside each, the program that logged it."""

    def __init__(self, program: str = "smtpd", shared: Recorder | None = None) -> None:
        self.program = program
        self.lines: list[str] = shared.lines if shared is not None else []
        self.programs: list[str] = shared.programs if shared is not None else []

    def info(self, text: str) -> None:
        self.lines.append(text)
        self.programs.append(self.program)

    def warning(self, text: str) -> None:
        self.lines.append(f"warning: {text}")
        self.programs.append(self.program)

    def for_program(self, program: str) -> Recorder:
        return Recorder(program, shared=self)

QUALIFY = Qualify("tintin.example.com")


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path)
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


@pytest.mark.parametrize(("sent", "queued"), [
    ("user", "user@tintin.example.com"),
    ("User", "User@tintin.example.com"),
    ("postmaster", "postmaster@tintin.example.com"),
    ('"a b"', '"a b"@tintin.example.com'),
    ("user@example.com", "user@example.com"),
    ("user@host", "user@host"),
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ("", ""),
])
def test_qualify_with_myorigin(sent: str, queued: str) -> None:
    assert QUALIFY.address(sent) == queued


def test_append_at_myorigin_no_and_append_dot_mydomain() -> None:
    off = Qualify("tintin.example.com", append_at_myorigin=False)
    assert off.address("user") == "user"
    dot = Qualify("tintin.example.com", append_dot_mydomain=True, mydomain="example.com")
    assert dot.address("user@host") == "user@host.example.com"
    assert dot.address("user@host.example.net") == "user@host.example.net"
    assert dot.address("user") == "user@tintin.example.com"


def test_committed_envelope_is_qualified_orig_kept_duplicates_dropped(qdir: str) -> None:
    # cleanup(8): a duplicate has the same address, original recipient, NOTIFY and
    # ORCPT; "tintin" and "tintin@tintin.example.com" are two original recipients of
    # one address, both kept (Postfix 3.7 delivers and logs each with its orig_to).
    cleanup = Cleanup(qdir, log=None, trigger=None, fsync=False, qualify=QUALIFY)
    env = Envelope("tournesol", [Recipient("tintin", "tintin"),
                                 Recipient("tintin@tintin.example.com",
                                           "tintin@tintin.example.com"),
                                 Recipient("TINTIN", "TINTIN"),
                                 Recipient("postmaster", "postmaster"),
                                 Recipient("tintin", "tintin")], 1.0)
    qid = cleanup.enqueue(env, [b"Subject: x\n\nbody\n"])
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        got = qf.envelope
    assert got.sender == "tournesol@tintin.example.com"
    assert [(r.address, r.orig) for r in got.recipients] == [
        ("tintin@tintin.example.com", "tintin"),
        ("tintin@tintin.example.com", "tintin@tintin.example.com"),
        ("postmaster@tintin.example.com", "postmaster"),
    ]


def test_same_address_with_another_notify_is_another_recipient(qdir: str) -> None:
    # Postfix 3.7: RCPT TO:<fz3b@example.com> then the same with NOTIFY=SUCCESS is
    # nrcpt=2 and a success DSN; the same RCPT twice (also with NOTIFY, ORCPT) is one.
    cleanup = Cleanup(qdir, log=None, trigger=None, fsync=False, qualify=QUALIFY)
    a = "fz3b@example.com"
    env = Envelope("s@example.com", [
        Recipient(a, a), Recipient(a, a, dsn_notify="SUCCESS"),
        Recipient(a, a, dsn_notify="SUCCESS"),
        Recipient(a, a, dsn_orcpt="rfc822;x@example.net"),
        Recipient(a, a, dsn_orcpt="rfc822;x@example.net"),
        Recipient(a, a)], 1.0)
    qid = cleanup.enqueue(env, [b"Subject: x\n\nbody\n"])
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        got = qf.envelope
    assert [(r.address, r.dsn_notify, r.dsn_orcpt) for r in got.recipients] == [
        (a, "", ""), (a, "SUCCESS", ""), (a, "", "rfc822;x@example.net"),
    ]


def test_without_qualify_addresses_are_written_as_given(qdir: str) -> None:
    cleanup = Cleanup(qdir, log=None, trigger=None, fsync=False)
    qid = cleanup.enqueue(Envelope("", [Recipient("tintin", "")], 1.0), [b"\n"])
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        assert qf.envelope.recipients[0].address == "tintin"


def hops_message(qdir: str, received_headers: int, *, ours: bool = True,
                 limit: int = 50, name: str = "Received") -> bool:
    cleanup = Cleanup(qdir, log=Recorder(), trigger=None, fsync=False, hopcount_limit=limit)
    msg = cleanup.open()
    msg.begin_content(Received(helo="h", client_name="c", client_addr="192.0.2.1",
                               protocol="ESMTP", by_host="t", mail_name="Postfix",
                               recipient=None, when=WHEN) if ours else None)
    for i in range(received_headers):
        msg.write(f"{name}: from h{i} by x; Mon, 1 Jan 2024 00:00:00 +0000\n".encode())
    msg.write(b"Subject: x\n\n")
    msg.write(b"Received: in the body, not a hop\n" * 60)
    msg.end_content()
    refused = msg.too_many_hops
    msg.abort()
    return refused


@pytest.mark.parametrize(("count", "refused"), [(0, False), (48, False), (49, True),
                                                (50, True), (60, True)])
def test_hopcount_counts_our_received_header_too(qdir: str, count: int, refused: bool) -> None:
    # Postfix 3.7 side by side: 48 Received: headers from the client pass (ours makes 49),
    # 49 are refused with 554 5.4.0 Error: too many hops.
    assert hops_message(qdir, count) is refused


def test_hopcount_is_case_insensitive_and_ignores_other_headers(qdir: str) -> None:
    assert hops_message(qdir, 60, name="received") is True
    assert hops_message(qdir, 60, name="Delivered-To") is False
    assert hops_message(qdir, 50, ours=False) is True
    assert hops_message(qdir, 49, ours=False) is False
    assert hops_message(qdir, 3, limit=3) is True
    assert hops_message(qdir, 100, limit=0) is False
