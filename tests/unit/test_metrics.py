"""postier.metrics: the recorders, install, postier_metrics_listen, queue sizes, and
prometheus-client's multiprocess mode adding up several processes' files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from postier import metrics
from postier.config.errors import ConfigError
from postier.config.settings import Config


def config(tmp_path: Path, text: str = "") -> Config:
    (tmp_path / "main.cf").write_text(text)
    (tmp_path / "master.cf").write_text("")
    return Config.from_dir(str(tmp_path))


@pytest.fixture
def restore_recorder() -> Iterator[None]:
    saved = metrics.RECORDER
    yield
    metrics.RECORDER = saved


def test_off_imports_nothing() -> None:
    """With metrics off, neither the programs nor the library import prometheus-client."""
    code = (
        "import sys\n"
        "import postier.metrics, postier.smtpd.session, postier.smtpd.worker\n"
        "import postier.qmgr.qmgr, postier.master.master\n"
        "assert isinstance(postier.metrics.RECORDER, postier.metrics.NoopRecorder)\n"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "[]"


def test_noop_recorder_accepts_every_call() -> None:
    rec = metrics.NoopRecorder()
    rec.connection("smtp")
    rec.message_received("smtp")
    rec.reject("smtp", "RCPT", None, 554)
    rec.delivery("local", "sent", 1.0)


def test_prometheus_recorder_counts_by_label() -> None:
    reg = CollectorRegistry()
    rec = metrics.PrometheusRecorder(reg)
    rec.connection("smtp")
    rec.connection("smtp")
    rec.connection("submission")
    rec.message_received("smtp")
    rec.reject("smtp", "RCPT", "reject_unauth_destination", 554)
    rec.reject("smtp", "RCPT", "reject_unauth_destination", 554)
    rec.reject("smtp", "DATA", None, 550)
    rec.delivery("local", "sent", 0.3)
    rec.delivery("local", "sent", 7.0)
    rec.delivery("smtp", "deferred", 100.0)
    rec.delivery("smtp", "bounced", 2.0)
    value = reg.get_sample_value
    assert value("postier_smtpd_connections_total", {"service": "smtp"}) == 2
    assert value("postier_smtpd_connections_total", {"service": "submission"}) == 1
    assert value("postier_smtpd_messages_received_total", {"service": "smtp"}) == 1
    assert value("postier_smtpd_rejects_total", {
        "service": "smtp", "stage": "RCPT", "restriction": "reject_unauth_destination",
        "code": "554"}) == 2
    assert value("postier_smtpd_rejects_total", {
        "service": "smtp", "stage": "DATA", "restriction": metrics.NO_RESTRICTION,
        "code": "550"}) == 1
    assert value("postier_qmgr_delivered_total", {"transport": "local"}) == 2
    assert value("postier_qmgr_delivered_total", {"transport": "smtp"}) is None
    assert value("postier_qmgr_deferred_total", {"transport": "smtp"}) == 1
    assert value("postier_qmgr_bounced_total", {"transport": "smtp"}) == 1
    # Only deliveries (status=sent) are observed by the delay histogram.
    assert value("postier_qmgr_delivery_delay_seconds_count", {"transport": "local"}) == 2
    assert value("postier_qmgr_delivery_delay_seconds_sum", {"transport": "local"}) == 7.3
    assert value("postier_qmgr_delivery_delay_seconds_bucket",
                 {"transport": "local", "le": "0.5"}) == 1
    assert value("postier_qmgr_delivery_delay_seconds_bucket",
                 {"transport": "local", "le": "10.0"}) == 2
    assert value("postier_qmgr_delivery_delay_seconds_count", {"transport": "smtp"}) is None


def test_negative_delay_is_clamped() -> None:
    """A clock step backwards must not record a negative delay."""
    reg = CollectorRegistry()
    metrics.PrometheusRecorder(reg).delivery("local", "sent", -5.0)
    assert reg.get_sample_value("postier_qmgr_delivery_delay_seconds_sum",
                                {"transport": "local"}) == 0


def test_unknown_status_is_our_bug() -> None:
    with pytest.raises(ValueError, match="expired"):
        metrics.PrometheusRecorder(CollectorRegistry()).delivery("local", "expired", 1.0)


def test_install_stays_noop_when_off(tmp_path: Path, restore_recorder: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics.RECORDER = metrics.NoopRecorder()
    assert isinstance(metrics.install(config(tmp_path)), metrics.NoopRecorder)
    assert isinstance(metrics.RECORDER, metrics.NoopRecorder)


def test_install_needs_the_masters_directory(tmp_path: Path, restore_recorder: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Set by a reload while the master runs without metrics: no directory, no recorder."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    metrics.RECORDER = metrics.NoopRecorder()
    cfg = config(tmp_path, "postier_metrics_listen = 127.0.0.1:9154\n")
    assert isinstance(metrics.install(cfg), metrics.NoopRecorder)


def test_install_when_on(tmp_path: Path, restore_recorder: None,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    metrics.RECORDER = metrics.NoopRecorder()
    created: list[object] = []

    class Fake:  # a recorder of its own (not the no-op one)
        def __init__(self) -> None:
            created.append(self)

    monkeypatch.setattr(metrics, "PrometheusRecorder", Fake)
    cfg = config(tmp_path, "postier_metrics_listen = 127.0.0.1:9154\n")
    rec = metrics.install(cfg)
    assert created == [rec]
    assert metrics.RECORDER is rec
    assert metrics.install(cfg) is rec  # once per process


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9154", ("127.0.0.1", 9154)),
    (":9154", ("", 9154)),
    ("[::1]:9154", ("::1", 9154)),
    (" 0.0.0.0:1 ", ("0.0.0.0", 1)),
])
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_listen(value) == expected


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:", "127.0.0.1:0",
                                   "127.0.0.1:65536", "127.0.0.1:http"])
def test_parse_listen_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        metrics.parse_listen(value)


def test_check_names_file_and_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "myhostname = a.example\npostier_metrics_listen = nowhere\n")
    with pytest.raises(ConfigError) as info:
        metrics.check(cfg)
    assert str(info.value) == (
        f"{tmp_path}/main.cf, line 2: parameter postier_metrics_listen: "
        "expected host:port, not 'nowhere'")
    metrics.check(config(tmp_path, "postier_metrics_listen = 127.0.0.1:9154\n"))
    metrics.check(config(tmp_path))


def test_implemented_parameter_draws_no_warning() -> None:
    from postier.config.params import POSTIER_METRICS_LISTEN, unimplemented_settings

    assert POSTIER_METRICS_LISTEN.implemented
    assert POSTIER_METRICS_LISTEN.default == ""
    assert unimplemented_settings({"postier_metrics_listen"}) == []


def test_directory_under_data_directory(tmp_path: Path) -> None:
    cfg = config(tmp_path, f"data_directory = {tmp_path}/data\n")
    assert metrics.directory(cfg) == f"{tmp_path}/data/postier-metrics"


def test_queue_sizes_count_queue_files(tmp_path: Path) -> None:
    queue = tmp_path / "spool"
    for state in metrics.QUEUES:
        (queue / state).mkdir(parents=True)
    (queue / "incoming" / "4A1B2C3D4E").write_text("")
    (queue / "incoming" / ".tmp-12-1").write_text("")  # a writer's: not a message yet
    (queue / "deferred" / "A").mkdir()
    (queue / "deferred" / "A" / "A1B2C3D4E5").write_text("")
    (queue / "deferred" / "B").mkdir()
    (queue / "deferred" / "B" / "B1B2C3D4E5").write_text("")
    (queue / "hold" / "C1B2C3D4E5").write_text("")
    cfg = config(tmp_path, f"queue_directory = {queue}\n")
    assert dict(metrics.queue_sizes(cfg)) == {
        "incoming": 1, "active": 0, "deferred": 2, "hold": 1, "corrupt": 0}


RECORD = """
import sys
from postier import metrics
rec = metrics.PrometheusRecorder()
for _ in range(int(sys.argv[1])):
    rec.connection("smtp")
rec.delivery("local", "sent", float(sys.argv[1]))
"""


def test_multiprocess_mode_adds_up_processes(tmp_path: Path) -> None:
    """Two processes record with PROMETHEUS_MULTIPROC_DIR set (as the master sets it for
    its children); the endpoint's collector reads both, after they exited."""
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for n in ("2", "3"):
        subprocess.run([sys.executable, "-c", RECORD, n], check=True, env=env)
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one file per process and type
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(tmp_path))  # type: ignore[no-untyped-call]
    assert reg.get_sample_value("postier_smtpd_connections_total", {"service": "smtp"}) == 5
    assert reg.get_sample_value("postier_qmgr_delivery_delay_seconds_count",
                                {"transport": "local"}) == 2
    assert reg.get_sample_value("postier_qmgr_delivery_delay_seconds_sum",
                                {"transport": "local"}) == 5


def test_postier_check_reports_a_bad_listen_address(tmp_path: Path) -> None:
    from postier.cli import check

    config(tmp_path, "postier_metrics_listen = 127.0.0.1\n")
    unsupported, _, _ = check.report(str(tmp_path))
    assert unsupported == [f"{tmp_path}/main.cf, line 1: parameter postier_metrics_listen: "
                           "expected host:port, not '127.0.0.1'"]
    config(tmp_path, "postier_metrics_listen = 127.0.0.1:9154\n")
    assert check.report(str(tmp_path))[0] == []


def test_a_port_in_use_names_main_cf_line(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")
    cfg = config(tmp_path, f"data_directory = {tmp_path}\n"
                 f"postier_metrics_listen = 127.0.0.1:{port}\n")
    try:
        with pytest.raises(ConfigError) as info:
            metrics.Endpoint.open(cfg, None, None)
    finally:
        busy.close()
    assert str(info.value) == (
        f"{tmp_path}/main.cf, line 2: parameter postier_metrics_listen: "
        f"bind 127.0.0.1 port {port}: Address already in use")


def test_master_says_os_errors_as_postfix() -> None:
    from postier.master.master import _os_error_text
    assert _os_error_text(FileNotFoundError(2, "No such file or directory", "/q/x")) == \
        "/q/x: No such file or directory"
    assert _os_error_text(OSError(98, "Address already in use")) == "Address already in use"
    assert _os_error_text(OSError("plain")) == "plain"
