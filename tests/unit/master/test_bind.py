"""The master's listening sockets: inet_interfaces, inet_protocols, and a host without IPv6."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.config import mastercf
from postier.config.maincf import parse
from postier.config.settings import Config
from postier.instance import StartError
from postier.log import Log
from postier.master import bind


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    yield Log("master", target=str(tmp_path / "maillog"))


def _bind(main_cf: str, service: str, log: Log) -> list[socket.socket]:
    cfg = Config(parse(main_cf, "main.cf"), hostname="mx.example.net")
    (svc,) = mastercf.parse(f"{service} inet n - n - - smtpd\n", "master.cf")
    return bind.bind_service(svc, cfg, log)


def test_explicit_host_port_binds_only_that(log: Log) -> None:
    port = free_port()
    socks = _bind("", f"127.0.0.1:{port}", log)
    try:
        assert [s.getsockname() for s in socks] == [("127.0.0.1", port)]
    finally:
        for s in socks:
            s.close()


def test_loopback_only_ipv4(log: Log) -> None:
    port = free_port()
    socks = _bind("inet_interfaces = loopback-only\ninet_protocols = ipv4\n", str(port), log)
    try:
        assert [s.getsockname() for s in socks] == [("127.0.0.1", port)]
    finally:
        for s in socks:
            s.close()


def test_host_without_ipv6_skips_it_with_a_warning(
    log: Log, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def no_v6(host: str, *args: object, **kwargs: object) -> object:
        if ":" in host:
            raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family not supported")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bind.socket, "getaddrinfo", no_v6)
    port = free_port()
    socks = _bind("inet_interfaces = loopback-only\n", str(port), log)
    try:
        assert [s.getsockname() for s in socks] == [("127.0.0.1", port)]
    finally:
        for s in socks:
            s.close()
    assert "IPv6 skipped" in (tmp_path / "maillog").read_text()


def test_port_in_use_names_file_line_and_service(log: Log) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        expected = rf"master.cf, line 1: service 127.0.0.1:{port}: bind"
        with pytest.raises(StartError, match=expected):
            _bind("", f"127.0.0.1:{port}", log)
