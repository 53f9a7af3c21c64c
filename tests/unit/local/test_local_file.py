"""Delivery to an external file: mbox format, the texts local(8) logs, /dev/null."""

from __future__ import annotations

from pathlib import Path

from postier.delivery.status import Kind
from postier.local.file import deliver_file

MSG = [b"Subject: hi\n\nFrom here\nbye\n"]


def _deliver(path: str, size_limit: int = 0):
    return deliver_file(path, sender="ann@example.org", recipient="log@example.com",
                        orig_recipient="log@example.com", content=iter(MSG), arrival=0.0,
                        size_limit=size_limit, locks=["fcntl", "dotlock"], uid=None, gid=None,
                        lock_attempts=2, lock_delay=0.01, stale_lock_time=500)


def test_appends_in_mbox_format_twice(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    for _ in range(2):
        st = _deliver(str(path))
        assert (st.kind, st.dsn, st.text) == (Kind.SENT, "2.0.0", f"delivered to file: {path}")
    data = path.read_bytes()
    assert data.count(b"From ann@example.org  ") == 2
    assert b"\nDelivered-To: log@example.com\n" in data
    assert b"\n>From here\n" in data
    assert not (tmp_path / "archive.lock").exists()


def test_failure_text_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    st = _deliver(str(path), size_limit=10)
    assert st.kind is Kind.BOUNCED
    assert st.text.startswith(f"cannot append message to file {path}: "), st.text
    assert path.read_bytes() == b""  # truncated back


def test_a_directory_is_refused(tmp_path: Path) -> None:
    st = _deliver(str(tmp_path))
    assert st.kind is not Kind.SENT
    assert st.text.startswith(f"cannot append message to file {tmp_path}: ")


def test_dev_null_takes_the_message() -> None:
    st = _deliver("/dev/null")
    assert (st.kind, st.text) == (Kind.SENT, "delivered to file: /dev/null")
