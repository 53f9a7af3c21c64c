"""GroupSync: one directory fsync covers every rename made before it began."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from postier.queue import file as qfile
from postier.queue.file import GroupSync


def test_alone_each_sync_is_one_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(qfile, "_fsync", lambda fd: calls.append(fd))
    sync = GroupSync(str(tmp_path))
    sync.sync()
    sync.sync()
    assert len(calls) == 2


def test_concurrent_syncs_share_fsyncs_and_each_waits_for_a_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[float] = []
    finished: list[float] = []

    def slow_fsync(fd: int) -> None:
        started.append(time.monotonic())
        time.sleep(0.05)
        finished.append(time.monotonic())

    monkeypatch.setattr(qfile, "_fsync", slow_fsync)
    sync = GroupSync(str(tmp_path))
    called: list[float] = []
    returned: list[tuple[float, float]] = []

    def worker() -> None:
        t = time.monotonic()
        called.append(t)
        sync.sync()
        returned.append((t, time.monotonic()))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for th in threads:
        th.start()
        time.sleep(0.002)
    for th in threads:
        th.join()
    assert len(returned) == 20
    assert len(started) < 20  # shared
    # Every caller returned only after an fsync that began after it called.
    for t_call, t_ret in returned:
        assert any(s >= t_call and f <= t_ret for s, f in zip(started, finished, strict=True))


def test_a_failed_fsync_fails_the_callers_it_covered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(qfile, "_fsync", failing)
    with pytest.raises(OSError):
        GroupSync(str(tmp_path)).sync()
