"""The metrics endpoint process: one HTTP ``/metrics`` adding up every process's metrics.

A postier extension (``postier_metrics_listen``; docs/decisions.md), started by the
master only when that parameter is set, on the listening socket the master bound
(``--listen-fd``). It follows prometheus-client's multiprocess mode
(https://prometheus.github.io/client_python/multiprocess/): a fresh
``CollectorRegistry`` with a ``MultiProcessCollector`` over ``PROMETHEUS_MULTIPROC_DIR``,
plus the queue sizes counted at each scrape (``QueueCollector``). The HTTP side is
prometheus-client's WSGI application (``make_wsgi_app``: text or OpenMetrics format,
gzip) on the standard library's ``wsgiref`` server, one thread per request, in a
thread beside the event loop that watches the stop signals and the master's lifeline.
Runs as ``mail_owner``, like smtpd: the master never parses a byte from the network.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from postier import daemon, metrics
from postier.config.settings import Config
from postier.log import Log
from postier.log import for_config as log_for_config


class QueueCollector:
    """``postier_queue_messages{queue}``: the queue files of each queue, counted when
    scraped (a prometheus-client custom collector, registered on the scrape registry)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "postier_queue_messages", "queue files in each queue, counted at scrape time",
            labels=["queue"])
        for queue, count in metrics.queue_sizes(self.cfg):
            family.add_metric([queue], count)
        yield family


class _Server(ThreadingMixIn, WSGIServer):
    """wsgiref's server on an inherited listening socket, one thread per request."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (scrapes are frequent and uneventful)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def build_server(cfg: Config, listen: socket.socket, directory: str) -> WSGIServer:
    """The HTTP server of ``/metrics`` on the listening socket ``listen``, reading the
    multiprocess files of ``directory``."""
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    registry.register(QueueCollector(cfg))
    server = _Server(listen.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    server.socket.close()
    server.socket = listen
    host, port = listen.getsockname()[:2]
    server.server_name, server.server_port = str(host), int(port)
    server.setup_environ()
    server.set_app(make_wsgi_app(registry))
    return server


async def serve(server: WSGIServer, log: Log, ready_fd: int, lifeline_fd: int) -> None:
    """Serve until SIGTERM or the master's exit."""
    loop = asyncio.get_running_loop()
    stop = daemon.stop_event(loop, lifeline_fd)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="metrics-http", daemon=True)
    thread.start()
    log.info(f"metrics endpoint listening on {server.server_name}:{server.server_port}")
    daemon.report_ready(ready_fd)
    await stop.wait()
    await loop.run_in_executor(None, server.shutdown)
    server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = daemon.child_arguments("metricsd")
    parser.add_argument("--listen-fd", type=int, required=True)
    args = parser.parse_args(argv)
    cfg = Config.from_dir(args.config_dir)
    log = log_for_config("metricsd", cfg, foreground=args.foreground)

    def setup() -> Any:
        listen = socket.socket(fileno=args.listen_fd)
        server = build_server(cfg, listen, metrics.directory(cfg))
        return serve(server, log, args.ready_fd, args.lifeline_fd)

    return daemon.run(log, args.user, setup)


if __name__ == "__main__":
    sys.exit(main())
