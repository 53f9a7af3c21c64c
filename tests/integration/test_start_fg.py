"""``postier start-fg``: the calling process becomes the master, logs to stderr, stops on a signal.

The command line executes the master program in place (``python -m postier.master.master
--foreground``), so the PID that ``start-fg`` was given is the master's, the one in
``pid/master.pid``.
"""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import Instance, instance_pids, postier

pytestmark = pytest.mark.integration

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
mydestination = example.com, localhost
mynetworks = 127.0.0.0/8
"""


def _start_fg(inst: Instance) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "postier.cli.main", "-c", str(inst.config_dir), "start-fg"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_serving(proc: subprocess.Popen[bytes], inst: Instance) -> None:
    pid_file = Path(inst.queue_dir) / "pid" / "master.pid"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with smtplib.SMTP("127.0.0.1", inst.port, timeout=5) as smtp:
                code, _ = smtp.noop()
            assert code == 250
            assert pid_file.read_text().strip() == str(proc.pid)
            return
        except (ConnectionRefusedError, FileNotFoundError, smtplib.SMTPServerDisconnected):
            time.sleep(0.1)
    raise AssertionError("start-fg did not serve within 60 s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_start_fg_serves_in_the_foreground_and_stops_on_a_signal(
    make_instance, signum: signal.Signals
) -> None:
    inst = make_instance(MAIN_CF)
    proc = _start_fg(inst)
    try:
        _wait_serving(proc, inst)
        status = postier("-c", str(inst.config_dir), "status", check=False)
        assert status.returncode == 0
        assert f"is running: PID: {proc.pid}" in status.stderr
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    text = err.decode()
    assert f"postfix/master[{proc.pid}]: daemon started" in text
    assert "postfix/smtpd[" in text and "[127.0.0.1]" in text
    assert f"postfix/master[{proc.pid}]: terminating on signal 15" in text
    assert not inst.log_file.exists()  # maillog_file is not used under start-fg
    assert not instance_pids(inst.config_dir)


def test_start_fg_with_a_broken_configuration_exits_1(make_instance) -> None:
    inst = make_instance(MAIN_CF + "this line has no equals sign\n")
    proc = _start_fg(inst)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out == b""
    assert err.decode().startswith(f"postier: fatal: {inst.config_dir / 'main.cf'}, line ")
    assert not instance_pids(inst.config_dir)

