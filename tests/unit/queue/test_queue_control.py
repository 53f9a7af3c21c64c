"""The trigger protocol of public/qmgr: queue IDs and request letters, nothing else."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.queue import control, dirs
from postier.queue.control import Request, Trigger


def test_a_queue_id_is_new_mail() -> None:
    assert control.parse(b"22D2A8871") == Trigger(queue_id="22D2A8871")
    assert control.parse(b"4dGFCm10qGzP0fh\n") == Trigger(queue_id="4dGFCm10qGzP0fh")


def test_request_letters() -> None:
    assert control.parse(b"A") == Trigger(requests=frozenset({Request.SCAN_ALL}))
    assert control.parse(b"D") == Trigger(requests=frozenset({Request.SCAN_DEFERRED}))
    assert control.parse(b"DA") == Trigger(
        requests=frozenset({Request.SCAN_ALL, Request.SCAN_DEFERRED}))


@pytest.mark.parametrize("data", [b"", b"x", b"../etc", b".tmp-1-2", b"Q",
                                  b"A" * 25, b"\xff\xfe"])
def test_anything_else_is_ignored(data: bytes) -> None:
    assert control.parse(data) is None


@given(st.lists(st.sampled_from(list(Request)), min_size=1, max_size=5))
def test_encode_parses_back(requests: list[Request]) -> None:
    assert control.parse(control.encode(*requests)) == Trigger(requests=frozenset(requests))


@given(st.binary(max_size=40))
def test_parse_never_raises_and_never_yields_a_path(data: bytes) -> None:
    t = control.parse(data)
    if t is not None and t.queue_id is not None:
        assert "/" not in t.queue_id and not t.queue_id.startswith(".")


def test_encode_needs_a_request() -> None:
    with pytest.raises(ValueError):
        control.encode()


def test_send_without_qmgr_is_qmgr_down(tmp_path: Path) -> None:
    dirs.ensure(str(tmp_path), None, None)
    with pytest.raises(control.QmgrDown, match="public/qmgr"):
        control.send(str(tmp_path), b"A")
    # a socket file left by a qmgr killed with -9: refused
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(dirs.public_path(str(tmp_path), "qmgr"))
    stale.close()
    with pytest.raises(control.QmgrDown):
        control.send(str(tmp_path), b"A")


def test_send_reaches_qmgr(tmp_path: Path) -> None:
    dirs.ensure(str(tmp_path), None, None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(dirs.public_path(str(tmp_path), "qmgr"))
        control.send(str(tmp_path), b"D")
        assert sock.recv(16) == b"D"
