"""The request/answer lines between the queue manager and a delivery agent.

One JSON object a line over a unix stream socket (``private/local``). A request names a
queue file and the recipients to deliver from it; the answer carries one
``DeliveryStatus`` per recipient. Requests may be pipelined; answers carry the
request's ``id``. This plays the role of Postfix's deliver_request(3) attribute lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from postier.delivery.status import DeliveryStatus


@dataclass
class RcptRequest:
    index: int
    address: str
    orig: str = ""


@dataclass
class DeliverRequest:
    id: int
    queue_id: str
    path: str
    sender: str
    arrival: float
    recipients: list[RcptRequest]
    attrs: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        # The same object dataclasses.asdict() gives, built directly (asdict deep-copies
        # through every field by reflection: a tenth of qmgr's CPU per message).
        obj = {
            "id": self.id, "queue_id": self.queue_id, "path": self.path,
            "sender": self.sender, "arrival": self.arrival,
            "recipients": [{"index": r.index, "address": r.address, "orig": r.orig}
                           for r in self.recipients],
            "attrs": self.attrs,
        }
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> DeliverRequest:
        obj = json.loads(line)
        obj["recipients"] = [RcptRequest(**r) for r in obj["recipients"]]
        return cls(**obj)


@dataclass
class RcptResult:
    index: int
    status: DeliveryStatus


@dataclass
class DeliverAnswer:
    id: int
    results: list[RcptResult]

    def encode(self) -> bytes:
        obj = {
            "id": self.id,
            "results": [
                {"index": r.index, "dsn": r.status.dsn, "text": r.status.text,
                 "relay": r.status.relay, "final": r.status.final_recipient}
                for r in self.results
            ],
        }
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> DeliverAnswer:
        obj = json.loads(line)
        return cls(
            id=obj["id"],
            results=[
                RcptResult(r["index"], DeliveryStatus(r["dsn"], r["text"], r["relay"],
                                                      final_recipient=r.get("final", "")))
                for r in obj["results"]
            ],
        )
