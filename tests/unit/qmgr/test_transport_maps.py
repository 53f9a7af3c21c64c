"""transport_maps in qmgr's routing (transport(5) search order and update rules)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from test_qmgr import MemoryLog, enqueue, run

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery import status
from postier.delivery.error import ErrorTransport
from postier.delivery.transport import DeliveryRequest, RcptResult, Transport
from postier.qmgr import qmgr as qmgr_mod
from postier.qmgr.qmgr import RESOLVER_FAILURE, Qmgr
from postier.qmgr.scheduler import Route
from postier.queue import dirs
from postier.tables import TableError, transport_keys
from postier.tables.maps import Maps


@pytest.fixture(autouse=True)
def _no_interface_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qmgr_mod, "local_addresses", lambda: ["127.0.0.1"])


class Recorder:
    def __init__(self) -> None:
        self.requests: list[DeliveryRequest] = []

    async def deliver(self, request: DeliveryRequest) -> list[RcptResult]:
        self.requests.append(request)
        return [RcptResult(r.index, status.sent("250 ok", relay="x")) for r in request.recipients]


def make(tmp_path: Path, table: str, extra: str = "",
         transports: dict[str, Transport] | None = None) -> Qmgr:
    queue_dir = tmp_path / "queue"
    dirs.ensure(str(queue_dir), None, None)
    (tmp_path / "transport").write_text(table)
    cfg = Config(parse(
        f"queue_directory = {queue_dir}\nmydestination = example.com\n"
        f"myhostname = mx.example.com\nrecipient_delimiter = +\n"
        f"transport_maps = texthash:{tmp_path}/transport\n{extra}", "main.cf"),
        hostname="mx.example.com")
    return Qmgr(cfg, MemoryLog(), transports or {})


TABLE = """\
joe@far.net        smtp:[joe-host]:2525
far.net            relay:[far-gw]
.sub.far.net       :[sub-gw]
bounce.example     error:5.1.1 we do not deliver there
quiet.example      discard:
user@example.com   lmtp:unix:private/dovecot-lmtp
"""


def routes(q: Qmgr, *addresses: str) -> dict[str, Route]:
    return asyncio.run(q.resolve(addresses))


def test_the_search_order_is_address_then_domain_then_dot_parent(tmp_path: Path) -> None:
    q = make(tmp_path, TABLE, "relayhost = [isp.example]:587\n")
    got = routes(q, "joe@far.net", "joe+list@far.net", "ann@far.net", "ann@a.sub.far.net",
                 "ann@sub.far.net", "x@elsewhere.net")
    assert got["joe@far.net"] == Route("smtp", "[joe-host]:2525")
    assert got["joe+list@far.net"] == Route("smtp", "[joe-host]:2525")  # without extension
    assert got["ann@far.net"] == Route("relay", "[far-gw]")
    assert got["ann@a.sub.far.net"] == Route("smtp", "[sub-gw]")  # .parent, class transport
    # sub.far.net itself: not ".sub.far.net", not "far.net" (parent_domain_matches_subdomains
    # does not list transport_maps), so relayhost as without a table.
    assert got["ann@sub.far.net"] == Route("smtp", "[isp.example]:587")
    assert got["x@elsewhere.net"] == Route("smtp", "[isp.example]:587")


def test_error_discard_and_local_class_entries(tmp_path: Path) -> None:
    q = make(tmp_path, TABLE)
    got = routes(q, "a@bounce.example", "a@quiet.example", "user@example.com", "bob@example.com")
    assert got["a@bounce.example"] == Route("error", "5.1.1 we do not deliver there")
    assert got["a@quiet.example"] == Route("discard", "quiet.example")
    assert got["user@example.com"] == Route("lmtp", "unix:private/dovecot-lmtp")
    assert got["bob@example.com"] == Route("local", "mx.example.com")


def test_parent_style_when_listed_and_the_wildcard(tmp_path: Path) -> None:
    q = make(tmp_path, "far.net relay:[far-gw]\n* smtp:[smarthost]\n",
             "parent_domain_matches_subdomains = transport_maps\n")
    got = routes(q, "a@deep.far.net", "a@other.org")
    assert got["a@deep.far.net"] == Route("relay", "[far-gw]")
    assert got["a@other.org"] == Route("smtp", "[smarthost]")
    assert [k.text for k in transport_keys("a+b@x.far.net", q.transport_search)] == [
        "a+b@x.far.net", "a@x.far.net", "x.far.net", "far.net", "net", "*"]


def test_a_failing_table_defers_through_the_retry_transport(tmp_path: Path) -> None:
    q = make(tmp_path, TABLE)

    class Broken(Maps):
        def __bool__(self) -> bool:
            return True

        async def search_async(self, keys: object) -> str | None:
            raise TableError("transport_maps: pgsql:x: connection refused")

    q.transport_maps = Broken("transport_maps", [])
    got = routes(q, "a@far.net")
    assert got["a@far.net"] == Route("retry", RESOLVER_FAILURE)
    assert any("transport_maps lookup error" in line for line in q.log.lines)  # type: ignore[attr-defined]


def test_mail_goes_where_the_table_says(tmp_path: Path) -> None:
    smtp, relay = Recorder(), Recorder()
    log = MemoryLog()
    q = make(tmp_path, TABLE, transports={
        "smtp": smtp, "relay": relay, "error": ErrorTransport(log), "local": Recorder()})
    qid = enqueue(q, "s@example.com", ["joe@far.net", "ann@far.net", "x@bounce.example"])
    run(q, qid)
    assert [(r.nexthop, [x.address for x in r.recipients]) for r in smtp.requests] == [
        ("[joe-host]:2525", ["joe@far.net"])]
    assert [(r.nexthop, [x.address for x in r.recipients]) for r in relay.requests] == [
        ("[far-gw]", ["ann@far.net"])]
    assert any("to=<x@bounce.example>" in line and "dsn=5.1.1, status=bounced (we do not "
               "deliver there)" in line for line in log.lines)


def test_the_retry_transport_defers() -> None:
    from postier.delivery.protocol import RcptRequest
    req = DeliveryRequest("4F2A1C0B3D", "/nonexistent", "s@x", 0.0,
                          (RcptRequest(0, "a@b", None),), RESOLVER_FAILURE, {})
    got = asyncio.run(ErrorTransport(MemoryLog(), retry=True).deliver(req))
    assert got == [RcptResult(0, status.deferred("4.3.0", "address resolver failure",
                                                 relay="none"))]


def test_relay_domains_table_routes_and_its_failure_defers(tmp_path: Path) -> None:
    """relay_domains = a table: a listed domain is RELAY (the relay transport); a table
    that cannot answer is an address resolver failure (retry), never the default route."""
    db = tmp_path / "relay.sqlite"
    cf = tmp_path / "relay.cf"
    cf.write_text(f"dbname = {db}\nquery = SELECT 'OK' FROM domains WHERE d = '%s'\n")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE domains (d TEXT)")
        conn.execute("INSERT INTO domains VALUES ('backup.example')")
    conn.close()
    q = make(tmp_path, "", f"relay_domains = sqlite:{cf}\n")
    got = routes(q, "a@backup.example", "b@sub.backup.example", "c@other.org")
    assert got["a@backup.example"].transport == "relay"
    assert got["b@sub.backup.example"].transport == "relay"
    assert got["c@other.org"].transport == "smtp"
    db.unlink()  # the database is gone: lookups fail
    q = make(tmp_path, "", f"relay_domains = sqlite:{cf}\n")
    got = routes(q, "c@other.org", "d@example.com")
    assert got["c@other.org"] == Route("retry", RESOLVER_FAILURE)
    assert got["d@example.com"].transport == "local"  # mydestination's names answer first
    assert any("relay_domains: sqlite:" in line for line in q.log.lines)  # type: ignore[attr-defined]
