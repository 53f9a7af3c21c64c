"""Prometheus metrics: the metric names, the recorder programs call, the endpoint's setup.

A postier extension (``postier_metrics_listen``, docs/decisions.md); Postfix has no
counterpart (its operators parse the log). Follows prometheus-client's multiprocess
mode (https://prometheus.github.io/client_python/multiprocess/): every process writes
its own memory-mapped files under one directory, named by the environment variable
``PROMETHEUS_MULTIPROC_DIR``; the one HTTP endpoint (``postier.metricsd``) adds them up
at each scrape. The master empties that directory at start and sets the variable for
its children before it starts any; it calls ``mark_process_dead`` when a child exits.

Off (the default), nothing here imports prometheus-client: ``RECORDER`` is a
``NoopRecorder`` whose methods do nothing, so a hook costs one attribute lookup and one
empty call. On, a child's ``install(cfg)`` (called during its setup, before the
privilege drop, since prometheus-client must be importable as root) replaces it with a
``PrometheusRecorder``.

Metrics (label values are the service's master.cf name, the transport's name, the
restriction's name as configured, the reply code; ``none`` where no restriction decided):

* ``postier_smtpd_connections_total{service}``: connections accepted by smtpd.
* ``postier_smtpd_messages_received_total{service}``: messages queued (``250 … queued as``).
* ``postier_smtpd_rejects_total{service,stage,restriction,code}``: Postfix's
  ``reject:`` log lines (stage ``RCPT``, ``DATA``, ``END-OF-MESSAGE``, ``VRFY``, …).
* ``postier_qmgr_delivered_total{transport}``, ``postier_qmgr_deferred_total{transport}``,
  ``postier_qmgr_bounced_total{transport}``: recipients by their attempt's status
  (``status=sent|deferred|bounced``).
* ``postier_qmgr_delivery_delay_seconds{transport}``: histogram of the time from a
  message's arrival to a recipient's delivery (``status=sent``), in seconds.
* ``postier_queue_messages{queue}``: queue files in ``incoming``, ``active``,
  ``deferred``, ``hold`` (and ``corrupt``), counted by the endpoint at each scrape.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from postier.config.errors import ConfigError
from postier.config.params import (
    DATA_DIRECTORY,
    HASH_QUEUE_DEPTH,
    HASH_QUEUE_NAMES,
    POSTIER_METRICS_LISTEN,
    QUEUE_DIRECTORY,
)
from postier.queue import dirs

if TYPE_CHECKING:
    from postier.config.settings import Config

#: The environment variable prometheus-client's multiprocess mode reads at import.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The directory under ``data_directory`` that holds every process's metric files.
DIRECTORY_NAME = "postier-metrics"
#: The endpoint's child process, started by the master (never imported by it).
ENDPOINT_MODULE = "postier.metricsd.metricsd"
#: The queues whose sizes the endpoint reports (``postier_queue_messages{queue}``).
QUEUES = ("incoming", "active", "deferred", "hold", "corrupt")
#: Buckets of the delivery delay histogram, seconds: from a local delivery to five days.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                 900.0, 3600.0, 14400.0, 86400.0, 432000.0)
#: The ``restriction`` label of a refusal that no restriction decided (syntax, limits).
NO_RESTRICTION = "none"


class Recorder(Protocol):
    """What programs report; every method returns at once and never raises."""

    def connection(self, service: str) -> None:
        """smtpd accepted a connection on master.cf service ``service``."""

    def message_received(self, service: str) -> None:
        """smtpd queued a message (answered ``250 … queued as``)."""

    def reject(self, service: str, stage: str, restriction: str | None, code: int) -> None:
        """smtpd refused ``stage`` (``RCPT``, ``DATA``, …) with reply ``code``, decided by
        ``restriction`` (its name as configured; None when no restriction decided)."""

    def delivery(self, transport: str, status: str, delay: float) -> None:
        """One recipient's attempt through ``transport`` ended ``status`` (``sent``,
        ``deferred``, ``bounced``), ``delay`` seconds after the message's arrival."""


class NoopRecorder:
    """The recorder while metrics are off: does nothing, imports nothing."""

    def connection(self, service: str) -> None:
        pass

    def message_received(self, service: str) -> None:
        pass

    def reject(self, service: str, stage: str, restriction: str | None, code: int) -> None:
        pass

    def delivery(self, transport: str, status: str, delay: float) -> None:
        pass


class PrometheusRecorder:
    """The recorder while metrics are on: prometheus-client counters and a histogram,
    in multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` was set before the import
    (``registry``: where to register them; None = prometheus-client's default one, as
    multiprocess mode wants — the endpoint reads the files, not the registry)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        reg = REGISTRY if registry is None else registry
        self.connections = Counter(
            "postier_smtpd_connections", "connections accepted by smtpd", ["service"],
            registry=reg)
        self.received = Counter(
            "postier_smtpd_messages_received", "messages queued by smtpd", ["service"],
            registry=reg)
        self.rejects = Counter(
            "postier_smtpd_rejects", "smtpd refusals logged as reject:",
            ["service", "stage", "restriction", "code"], registry=reg)
        self.by_status = {
            status: Counter(f"postier_qmgr_{name}", f"recipients with status={status}",
                            ["transport"], registry=reg)
            for status, name in (("sent", "delivered"), ("deferred", "deferred"),
                                 ("bounced", "bounced"))
        }
        self.delay = Histogram(
            "postier_qmgr_delivery_delay_seconds",
            "time from a message's arrival to a recipient's delivery (status=sent)",
            ["transport"], buckets=DELAY_BUCKETS, registry=reg)
        # (metric, label values) -> the labelled child: labels() costs more than inc()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def connection(self, service: str) -> None:
        self._child(self.connections, service).inc()

    def message_received(self, service: str) -> None:
        self._child(self.received, service).inc()

    def reject(self, service: str, stage: str, restriction: str | None, code: int) -> None:
        self._child(self.rejects, service, stage, restriction or NO_RESTRICTION,
                    str(code)).inc()

    def delivery(self, transport: str, status: str, delay: float) -> None:
        counter = self.by_status.get(status)
        if counter is None:  # a status we do not know is our bug
            raise ValueError(f"unknown delivery status {status!r}")
        self._child(counter, transport).inc()
        if status == "sent":
            self._child(self.delay, transport).observe(max(0.0, delay))


#: The process's recorder; programs call ``metrics.RECORDER.connection(…)`` and so on.
RECORDER: Recorder = NoopRecorder()


def enabled(cfg: Config) -> bool:
    """Is ``postier_metrics_listen`` set?"""
    return bool(cfg[POSTIER_METRICS_LISTEN].strip())


def directory(cfg: Config) -> str:
    """The multiprocess directory: ``data_directory``/postier-metrics."""
    return os.path.join(cfg[DATA_DIRECTORY], DIRECTORY_NAME)


def install(cfg: Config) -> Recorder:
    """Make ``RECORDER`` the Prometheus recorder when metrics are on and the master set
    up the multiprocess directory (``PROMETHEUS_MULTIPROC_DIR`` in the environment);
    else leave the no-op one. A child calls this during its setup (as root, before the
    privilege drop). Returns the recorder in force."""
    global RECORDER
    if enabled(cfg) and os.environ.get(MULTIPROC_ENV) and isinstance(RECORDER, NoopRecorder):
        RECORDER = PrometheusRecorder()
    return RECORDER


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; an empty host means every address) -> (host, port).
    Raises ValueError on bad syntax."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, not {value.strip()!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def check(cfg: Config) -> None:
    """Refuse a ``postier_metrics_listen`` that is not ``host:port`` (ConfigError naming
    the file and line), at start, reload and ``postier check``."""
    if not enabled(cfg):
        return
    try:
        parse_listen(cfg[POSTIER_METRICS_LISTEN])
    except ValueError as exc:
        file, line = cfg.location(POSTIER_METRICS_LISTEN.name)
        raise ConfigError(str(exc), file=file, line=line,
                          param=POSTIER_METRICS_LISTEN.name) from None


@dataclass
class Endpoint:
    """The master's side of metrics: the multiprocess directory and the endpoint's
    listening socket (bound by the master, so a port below 1024 works; served by the
    ``ENDPOINT_MODULE`` child)."""

    directory: str
    sock: socket.socket

    @classmethod
    def open(cls, cfg: Config, uid: int | None, gid: int | None) -> Endpoint | None:
        """None when metrics are off. Else: empty the multiprocess directory (created
        for ``uid``:``gid``, mode 0700; None: ours), set ``PROMETHEUS_MULTIPROC_DIR`` for
        the children to come, bind ``postier_metrics_listen``. Raises ValueError (bad
        value), OSError (directory) or ConfigError naming main.cf's line of
        ``postier_metrics_listen`` (bind: ``bind HOST port PORT: Address already in use``,
        as Postfix's master says of a service)."""
        if not enabled(cfg):
            return None
        host, port = parse_listen(cfg[POSTIER_METRICS_LISTEN])
        path = directory(cfg)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, mode=0o700)
        if uid is not None and gid is not None:
            os.chown(path, uid, gid)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            file, line = cfg.location(POSTIER_METRICS_LISTEN.name)
            raise ConfigError(f"bind {host or '*'} port {port}: {exc.strerror}", file=file,
                              line=line, param=POSTIER_METRICS_LISTEN.name) from None
        os.environ[MULTIPROC_ENV] = path
        return cls(path, sock)

    def child_arguments(self) -> tuple[list[str], list[int]]:
        """The endpoint child's extra arguments and the descriptors it inherits."""
        self.sock.set_inheritable(True)
        return ["--listen-fd", str(self.sock.fileno())], [self.sock.fileno()]

    def process_dead(self, pid: int) -> None:
        """A child exited: prometheus-client's bookkeeping (its live gauges go)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.sock.close()


def queue_sizes(cfg: Config) -> Iterator[tuple[str, int]]:
    """(queue, number of queue files) for each of ``QUEUES``, counted now."""
    queue_dir = cfg[QUEUE_DIRECTORY]
    names, depth = cfg[HASH_QUEUE_NAMES], cfg[HASH_QUEUE_DEPTH]
    for queue in QUEUES:
        yield queue, sum(1 for _ in dirs.scan(queue_dir, queue, hash_names=names, depth=depth))
