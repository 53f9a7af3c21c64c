from __future__ import annotations

from postier.delivery.protocol import DeliverAnswer, DeliverRequest, RcptRequest, RcptResult
from postier.delivery.status import Kind, deferred, sent


def test_request_and_answer_round_trip_as_single_lines() -> None:
    req = DeliverRequest(7, "22D2A8871", "/q/active/22D2A8871", "", 1.5,
                         [RcptRequest(0, "tintin@example.com", "tintin+x@example.com")],
                         {"client_address": "127.0.0.1"})
    line = req.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert DeliverRequest.decode(line) == req
    ans = DeliverAnswer(7, [RcptResult(0, sent("delivered to mailbox")),
                            RcptResult(1, deferred("4.2.0", "unable to lock\nfor access"))])
    line = ans.encode()
    assert line.count(b"\n") == 1
    back = DeliverAnswer.decode(line)
    assert back == ans
    assert [r.status.kind for r in back.results] == [Kind.SENT, Kind.DEFERRED]
