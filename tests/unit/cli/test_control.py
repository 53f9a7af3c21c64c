"""``postier start-fg``: the command line becomes the master program, without importing it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from postier.cli import control


class Execed(Exception):
    """Raised by the stand-in for ``os.execv``: the process would have become ``argv``."""

    def __init__(self, path: str, argv: list[str]) -> None:
        super().__init__(path)
        self.path = path
        self.argv = argv


@pytest.fixture
def execv(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(path: str, argv: list[str]) -> None:
        raise Execed(path, list(argv))

    monkeypatch.setattr(control.os, "execv", fake)


def test_master_argv_runs_the_master_module_with_this_interpreter() -> None:
    assert control.master_argv("/etc/postier", "--ready-fd", "7") == [
        sys.executable, "-m", "postier.master.master", "--config-dir", "/etc/postier",
        "--ready-fd", "7",
    ]


@pytest.mark.usefixtures("execv")
def test_start_fg_execs_the_master_in_the_foreground(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "main.cf").write_text("myhostname = mx.example.com\n")
    with pytest.raises(Execed) as done:
        control.start_fg(str(tmp_path))
    assert done.value.path == sys.executable
    assert done.value.argv == [
        sys.executable, "-m", "postier.master.master", "--config-dir", str(tmp_path),
        "--foreground",
    ]
    assert capsys.readouterr().err == ""
    assert (tmp_path / "main.cf").read_text() == "myhostname = mx.example.com\n"


@pytest.mark.usefixtures("execv")
def test_start_fg_writes_a_default_configuration_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = tmp_path / "instance" / "etc"
    with pytest.raises(Execed) as done:
        control.start_fg(str(config_dir))
    assert done.value.argv[-3:] == ["--config-dir", str(config_dir), "--foreground"]
    assert capsys.readouterr().err == (
        f"postier: created a default configuration in {config_dir}\n"
    )
    assert (config_dir / "main.cf").stat().st_size > 0
    assert (config_dir / "master.cf").stat().st_size > 0
