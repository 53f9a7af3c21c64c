"""The transport interface: error, discard, and local's request/answer mapping."""

from __future__ import annotations

import asyncio

import pytest

from postier.delivery import status
from postier.delivery.discard import DiscardTransport
from postier.delivery.error import ErrorTransport
from postier.delivery.local_client import LocalTransport
from postier.delivery.protocol import DeliverAnswer, DeliverRequest, RcptRequest, RcptResult
from postier.delivery.registry import TRANSPORTS, TransportSetup, build_transports
from postier.delivery.status import DeliveryStatus, Kind, dsn_split
from postier.delivery.transport import DeliveryRequest, Transport, TransportUnavailable


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)


def request(nexthop: str) -> DeliveryRequest:
    return DeliveryRequest(
        "4F2A1C0B3D", "/q/active/4F2A1C0B3D", "tournesol@example.net", 1000.0,
        (RcptRequest(0, "tintin@example.com"), RcptRequest(3, "milou@example.com",
                                                          "Milou@example.com")),
        nexthop, {"client_address": "127.0.0.1"},
    )


@pytest.mark.parametrize(("text", "dsn", "rest"), [
    ("5.1.1 mailbox unavailable", "5.1.1", "mailbox unavailable"),
    ("4.7.0  try later", "4.7.0", "try later"),
    ("2.0.0", "2.0.0", ""),
    ("no code here", "5.0.0", "no code here"),
    ("5.1.1x not a code", "5.0.0", "5.1.1x not a code"),
    ("6.1.1 bad class", "5.0.0", "6.1.1 bad class"),
    ("", "5.0.0", ""),
])
def test_dsn_split(text: str, dsn: str, rest: str) -> None:
    assert dsn_split(text, "5.0.0") == (dsn, rest)


def test_error_bounces_every_recipient_with_the_nexthop_text_and_logs_it() -> None:
    log = Lines()
    results = asyncio.run(ErrorTransport(log, clock=lambda: 1002.0).deliver(
        request("5.1.1 mailbox unavailable")))
    expected = status.bounced("5.1.1", "mailbox unavailable", relay="none")
    assert results == [RcptResult(0, expected), RcptResult(3, expected)]
    assert log.lines == [
        "4F2A1C0B3D: to=<tintin@example.com>, relay=none, delay=2, delays=2/0/0/0, "
        "dsn=5.1.1, status=bounced (mailbox unavailable)",
        "4F2A1C0B3D: to=<milou@example.com>, orig_to=<Milou@example.com>, relay=none, "
        "delay=2, delays=2/0/0/0, dsn=5.1.1, status=bounced (mailbox unavailable)",
    ]


def test_error_without_a_code_is_5_0_0_and_any_code_becomes_a_bounce() -> None:
    plain = asyncio.run(ErrorTransport(Lines()).deliver(request("no such domain")))
    assert plain[0].status == status.bounced("5.0.0", "no such domain", relay="none")
    soft = asyncio.run(ErrorTransport(Lines()).deliver(request("4.4.1 down")))
    assert soft[0].status.dsn == "5.4.1" and soft[0].status.kind is Kind.BOUNCED


def test_discard_says_sent_with_the_reason_or_discarded() -> None:
    log = Lines()
    results = asyncio.run(DiscardTransport(log, clock=lambda: 1000.5).deliver(request("")))
    assert [r.index for r in results] == [0, 3]
    assert all(r.status == status.sent("discarded", relay="none") for r in results)
    assert log.lines[0].endswith("relay=none, delay=0.5, delays=0.5/0/0/0, dsn=2.0.0, "
                                 "status=sent (discarded)")
    why = asyncio.run(DiscardTransport(Lines()).deliver(request("5.7.1 spam trap")))
    assert why[1].status == DeliveryStatus("2.7.1", "spam trap", "none")
    assert why[1].status.kind is Kind.SENT


def test_local_sends_the_request_as_one_wire_request_and_returns_its_answer() -> None:
    transport = LocalTransport("/nonexistent/private/local")
    seen: list[DeliverRequest] = []
    answer = [RcptResult(0, status.sent("delivered to mailbox")),
              RcptResult(3, status.bounced("5.1.1", 'unknown user: "milou"'))]

    async def deliver(req: DeliverRequest) -> DeliverAnswer:
        seen.append(req)
        return DeliverAnswer(req.id, answer)

    transport.client.deliver = deliver  # type: ignore[method-assign]
    assert asyncio.run(transport.deliver(request("mx.example.com"))) == answer
    (wire,) = seen
    assert (wire.queue_id, wire.path, wire.sender, wire.arrival, wire.attrs) == (
        "4F2A1C0B3D", "/q/active/4F2A1C0B3D", "tournesol@example.net", 1000.0,
        {"client_address": "127.0.0.1"})
    assert [(r.index, r.address, r.orig) for r in wire.recipients] == [
        (0, "tintin@example.com", ""), (3, "milou@example.com", "Milou@example.com")]
    assert DeliverRequest.decode(wire.encode()) == wire


def test_local_agent_unreachable_is_transport_unavailable_with_todays_text() -> None:
    transport = LocalTransport("/q/private/local")

    async def refused(req: DeliverRequest) -> DeliverAnswer:
        raise FileNotFoundError(2, "No such file or directory")

    transport.client.deliver = refused  # type: ignore[method-assign]
    with pytest.raises(TransportUnavailable, match=r"^local delivery agent unavailable: "
                       r"\[Errno 2\] No such file or directory$"):
        asyncio.run(transport.deliver(request("mx.example.com")))

    async def gone(req: DeliverRequest) -> DeliverAnswer:
        raise ConnectionError("local delivery agent went away")

    transport.client.deliver = gone  # type: ignore[method-assign]
    with pytest.raises(TransportUnavailable, match=r"^local delivery agent unavailable: "
                       r"local delivery agent went away$"):
        asyncio.run(transport.deliver(request("mx.example.com")))


def test_registry_names_local_error_and_discard() -> None:
    assert {"local", "error", "discard"} <= set(TRANSPORTS)
    built = build_transports(TransportSetup("/q", Lines()))
    assert set(built) == set(TRANSPORTS)
    assert isinstance(built["local"], LocalTransport)
    assert built["local"].client.path == "/q/private/local"
    assert isinstance(built["error"], ErrorTransport)
    assert isinstance(built["discard"], DiscardTransport)
    t: Transport = built["discard"]  # each is a Transport to mypy
    assert t is built["discard"]


def test_client_transports_log_under_their_program_names() -> None:
    # Postfix: "postfix/smtp[PID]: QID: to=<…>, relay=…" (and postfix/lmtp, postfix/error,
    # postfix/discard), not postfix/qmgr; a service's -o syslog_name is its own.
    from postier.config.maincf import parse
    from postier.config.mastercf import MasterService
    from postier.config.params import SYSLOG_NAME
    from postier.config.settings import Config
    from postier.smtp.transport import SmtpTransport

    cfg = Config(parse("myhostname = mx.example.com\n", "main.cf"), hostname="mx.example.com")
    relay = MasterService(name="relay", type="unix", private=True, unpriv=True, chroot=False,
                          wakeup="-", maxproc=None, command="smtp", args=[],
                          overrides={"syslog_name": "postfix/relay"}, file="master.cf", line=1)
    asked: list[tuple[str, str]] = []

    def program_log(program: str, c: Config | None) -> Lines:
        assert c is not None
        asked.append((program, c[SYSLOG_NAME]))
        return Lines()

    built = build_transports(TransportSetup("/q", Lines(), cfg, services=[relay],
                                            program_log=program_log))
    assert isinstance(built["smtp"], SmtpTransport) and isinstance(built["lmtp"], SmtpTransport)
    assert sorted(asked) == [("discard", "postfix"), ("error", "postfix"), ("lmtp", "postfix"),
                             ("retry", "postfix"), ("smtp", "postfix"),
                             ("smtp", "postfix/relay")]
