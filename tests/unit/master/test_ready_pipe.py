"""The ready pipe: a child that cannot start tells the master its fatal line."""

from __future__ import annotations

import os
import sys

import pytest

from postier import daemon
from postier.config.errors import ConfigError
from postier.log import Log
from postier.master.master import Child, Master


def child_with_pipe() -> tuple[Child, int]:
    r, w = os.pipe()
    return Child("qmgr", "postier.qmgr.qmgr", False, [], [], ready_read=r), w


def test_ready_byte_is_readiness() -> None:
    child, w = child_with_pipe()
    daemon.report_ready(w)
    assert Master.take_ready(child) is None
    assert child.ready and child.ready_read == -1


def test_a_start_failure_gives_its_last_line(monkeypatch: pytest.MonkeyPatch) -> None:
    child, w = child_with_pipe()
    monkeypatch.setattr(sys, "argv", ["x", "--ready-fd", str(w)])
    messages: list[str] = []
    log = Log("postfix/qmgr")
    monkeypatch.setattr(log, "fatal", messages.append)

    def setup() -> object:
        raise ConfigError("no such table", file="/etc/main.cf", line=4, param="relay_domains")

    assert daemon.run(log, "", setup) == 1  # type: ignore[arg-type]
    said = Master.take_ready(child)
    assert said == "/etc/main.cf, line 4: parameter relay_domains: no such table"
    assert not child.ready
    assert Master._reason(said) == f": {said} (see the mail log)"


def test_a_traceback_gives_its_last_line(monkeypatch: pytest.MonkeyPatch) -> None:
    child, w = child_with_pipe()
    monkeypatch.setattr(sys, "argv", ["x", "--ready-fd", str(w)])
    log = Log("postfix/qmgr")
    monkeypatch.setattr(log, "fatal", lambda text: None)

    def setup() -> object:
        raise RuntimeError("our bug here")

    assert daemon.run(log, "", setup) == 1  # type: ignore[arg-type]
    assert Master.take_ready(child) == "RuntimeError: our bug here"


def test_end_of_file_is_neither() -> None:
    child, w = child_with_pipe()
    os.close(w)
    assert Master.take_ready(child) is None
    assert not child.ready
    assert Master._reason(None) == "; see the mail log"


def test_no_failure_line_after_readiness() -> None:
    r, w = os.pipe()
    daemon._unreported.add(w)
    daemon.report_ready(w)
    daemon.report_start_failure(w, "late")  # fd closed and forgotten: nothing written
    assert os.read(r, 100) == b"R"
    os.close(r)
