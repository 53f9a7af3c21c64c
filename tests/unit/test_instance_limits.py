"""instance: process limits as session limits, and the reload status line."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier import instance
from postier.config import mastercf
from postier.config.settings import Config


def services(tmp_path: Path, text: str) -> list[mastercf.MasterService]:
    path = tmp_path / "master.cf"
    path.write_text(text)
    return mastercf.load(str(path))


def config(tmp_path: Path, main_cf: str) -> Config:
    (tmp_path / "main.cf").write_text(main_cf)
    return Config.from_dir(str(tmp_path))


def test_process_limit_from_maxproc_else_default(tmp_path: Path) -> None:
    svcs = services(tmp_path, "smtp inet n - n - - smtpd\n2525 inet n - n - 7 smtpd\n")
    assert instance.process_limit(svcs[0], config(tmp_path, "")) == 100
    assert instance.process_limit(svcs[0], config(tmp_path, "default_process_limit = 33\n")) == 33
    assert instance.process_limit(svcs[1], config(tmp_path, "default_process_limit = 33\n")) == 7


@pytest.mark.parametrize(
    ("limit", "workers", "share"),
    [(100, 1, 100), (100, 2, 50), (100, 3, 34), (7, 8, 1), (0, 4, 0), (5, 0, 5)],
)
def test_session_share_never_sums_below_the_limit(limit: int, workers: int, share: int) -> None:
    got = instance.session_share(limit, workers)
    assert got == share
    if limit:
        assert got * max(1, workers) >= limit


def test_reload_status_round_trip_and_torn_lines(tmp_path: Path) -> None:
    for status in (instance.ReloadStatus(3, True, ""),
                   instance.ReloadStatus(4, False, "/etc/main.cf, line 9: bad")):
        assert instance.ReloadStatus.parse(status.line()) == status
    assert instance.ReloadStatus.parse("3 ok") is None  # no newline: torn
    assert instance.ReloadStatus.parse("x ok\n") is None
    assert instance.ReloadStatus.parse("3 maybe\n") is None
    (tmp_path / "pid").mkdir()
    assert instance.read_reload_status(str(tmp_path)) is None
    instance.write_reload_status(str(tmp_path), instance.ReloadStatus(1, False, "why"))
    assert instance.read_reload_status(str(tmp_path)) == instance.ReloadStatus(1, False, "why")
