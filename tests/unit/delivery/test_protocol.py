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


def test_final_recipient_crosses_the_wire_and_is_logged_with_orig_to() -> None:
    from dataclasses import replace

    from postier.delivery.status import bounced, status_log_line

    st = replace(bounced("5.1.1", 'unknown user: "nosuchuser"'),
                 final_recipient="nosuchuser@example.com")
    back = DeliverAnswer.decode(DeliverAnswer(1, [RcptResult(0, st)]).encode())
    assert back.results[0].status == st
    # Postfix 3.7.11, alias "ghost: nosuchuser":
    line = status_log_line("365A020C071", "ghost@example.com", "", 0.0, st, 0.14)
    assert line.startswith("365A020C071: to=<nosuchuser@example.com>, "
                           "orig_to=<ghost@example.com>, relay=local, delay=0.14, ")
    assert line.endswith('dsn=5.1.1, status=bounced (unknown user: "nosuchuser")')
