"""safeio.write_all: every byte written despite short writes; errors come through."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from postier.safeio import write_all


def _short(real: object, limit: int, calls: list[int]) -> object:
    def write(fd: int, data: memoryview, *offset: int) -> int:
        calls.append(len(data))
        return real(fd, data[:limit], *offset)  # type: ignore[operator]
    return write


@pytest.mark.parametrize("data", [b"", b"a", bytes(range(256)) * 40, bytearray(b"xyz" * 1000)])
def test_short_writes_are_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "write", _short(os.write, 7, calls))
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(data)
    assert len(calls) == -(-len(data) // 7)


def test_pwrite_at_an_offset_with_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    calls: list[int] = []
    monkeypatch.setattr(os, "pwrite", _short(os.pwrite, 2, calls))
    fd = os.open(path, os.O_WRONLY)
    try:
        write_all(fd, b"abcde", 3)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"012abcde89"
    assert len(calls) == 3


def test_bytearray_can_be_resized_afterwards(tmp_path: Path) -> None:
    buf = bytearray(b"hello")
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        write_all(fd, buf)
        buf.clear()  # BufferError if a view of it were still alive
        buf += b" world"
        write_all(fd, buf)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"hello world"


def test_error_after_a_partial_write_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    calls = 0

    def write(fd: int, data: memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data[:3])

    monkeypatch.setattr(os, "write", write)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as info:
            write_all(fd, b"abcdef")
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
    assert (tmp_path / "f").read_bytes() == b"abc"
