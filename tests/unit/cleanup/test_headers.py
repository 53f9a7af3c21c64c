"""cleanup.headers: Received: text, dates, the streaming header processor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.cleanup.headers import (
    HeaderProcessor,
    message_id_for,
    received_header,
    rfc5322_date,
)

WHEN = datetime(2026, 11, 25, 20, 48, 52, tzinfo=UTC)


def received(**kw: object) -> str:
    args: dict[str, object] = dict(
        helo="milou.example.net", client_name="localhost", client_addr="127.0.0.1",
        protocol="ESMTP", by_host="tintin.example.com", mail_name="Postfix",
        queue_id="22D2A8871", recipient="tintin@example.com", when=WHEN,
    )
    args.update(kw)
    return received_header(**args).decode()  # type: ignore[arg-type]


def test_received_tutorial_case() -> None:
    assert received() == (
        "Received: from milou.example.net (localhost [127.0.0.1])\n"
        "\tby tintin.example.com (Postfix) with ESMTP id 22D2A8871\n"
        "\tfor <tintin@example.com>; Wed, 25 Nov 2026 20:48:52 +0000 (UTC)\n"
    )


def test_received_several_recipients_date_on_own_line() -> None:
    assert received(recipient=None) == (
        "Received: from milou.example.net (localhost [127.0.0.1])\n"
        "\tby tintin.example.com (Postfix) with ESMTP id 22D2A8871;\n"
        "\tWed, 25 Nov 2026 20:48:52 +0000 (UTC)\n"
    )


def test_received_ipv6_and_tls() -> None:
    text = received(client_addr="2001:db8::1", client_name="unknown", protocol="ESMTPS",
                    tls="using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
    assert text.splitlines()[:3] == [
        "Received: from milou.example.net (unknown [IPv6:2001:db8::1])",
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))",
        "\tby tintin.example.com (Postfix) with ESMTPS id 22D2A8871",
    ]


def test_rfc5322_date_forms() -> None:
    assert rfc5322_date(WHEN) == "Wed, 25 Nov 2026 20:48:52 +0000 (UTC)"
    cet = timezone(timedelta(hours=1), "CET")
    assert rfc5322_date(datetime(2026, 1, 5, 9, 3, 4, tzinfo=cet)) == \
        "Mon,  5 Jan 2026 09:03:04 +0100 (CET)"
    nst = timezone(timedelta(hours=-3, minutes=-30), "NST")
    assert rfc5322_date(datetime(2026, 7, 4, 0, 0, 0, tzinfo=nst)) == \
        "Sat,  4 Jul 2026 00:00:00 -0330 (NST)"
    assert rfc5322_date(datetime(2026, 7, 4)) == "Sat,  4 Jul 2026 00:00:00 +0000 (UTC)"


def test_message_id_form() -> None:
    cet = timezone(timedelta(hours=1), "CET")
    assert message_id_for("22D2A8871", "tintin.example.com", WHEN.astimezone(cet)) == \
        "<20261125204852.22D2A8871@tintin.example.com>"


def run(
    data: bytes, chunks: list[int] | None = None, /, **kw: Any,
) -> tuple[bytes, HeaderProcessor]:
    hp = HeaderProcessor(**kw)
    out = bytearray()
    pos = 0
    for n in chunks or []:
        out += hp.feed(data[pos:pos + n])
        pos += n
    out += hp.feed(data[pos:])
    out += hp.end()
    return bytes(out), hp


def test_pass_through_and_message_id() -> None:
    msg = b"From: a@x\nMessage-ID:\n  <abc@x>\nSubject: hi\n\nbody\nFrom: not a header\n"
    out, hp = run(msg)
    assert out == msg
    assert hp.message_id == "<abc@x>"
    assert not hp.missing_separator


def test_drops_bcc_and_friends_but_not_in_body() -> None:
    msg = (b"To: a@x\nBcc: secret@x,\n\tother@x\nRESENT-BCC: y\nReturn-Path: <z>\n"
           b"Content-Length: 3\nSubject: s\n\nBcc: body@x\n")
    out, hp = run(msg)
    assert out == b"To: a@x\nSubject: s\n\nBcc: body@x\n"
    assert hp.dropped == ["bcc", "resent-bcc", "return-path", "content-length"]
    out, _ = run(msg, drop_headers=())
    assert out == msg


def test_adds_missing_headers_when_asked() -> None:
    kw: dict[str, Any] = dict(add_missing=True, sender="wietse@example.com", queue_id="22D2A8871",
              myhostname="tintin.example.com", when=WHEN)
    out, hp = run(b"Subject: s\n\nbody\n", **kw)
    # Postfix 3.7.11 side by side (local_header_rewrite_clients matched): Message-Id,
    # Date, then "From: sender" without angle brackets, after the client's headers.
    assert out == (b"Subject: s\n"
                   b"Message-Id: <20261125204852.22D2A8871@tintin.example.com>\n"
                   b"Date: Wed, 25 Nov 2026 20:48:52 +0000 (UTC)\n"
                   b"From: wietse@example.com\n\nbody\n")
    assert hp.message_id == "<20261125204852.22D2A8871@tintin.example.com>"
    out, _ = run(b"FROM: x\ndate: y\nMessage-Id: <m@x>\n\nbody\n", **kw)
    assert out == b"FROM: x\ndate: y\nMessage-Id: <m@x>\n\nbody\n"
    out, _ = run(b"", **{**kw, "sender": ""})
    assert out.startswith(b"Message-Id: <20261125204852.22D2A8871@tintin.example.com>\nDate: ")
    assert out.endswith(b"\nFrom: MAILER-DAEMON@tintin.example.com\n")
    out, _ = run(b"Subject: s\n\nbody\n")
    assert out == b"Subject: s\n\nbody\n"


def test_body_without_separator_gets_one() -> None:
    out, hp = run(b"Subject: s\nthis is body\nmore: looks like header\n")
    assert out == b"Subject: s\n\nthis is body\nmore: looks like header\n"
    assert hp.missing_separator
    out, _ = run(b"no headers at all\n\nsecond paragraph\n")
    assert out == b"\nno headers at all\n\nsecond paragraph\n"
    out, _ = run(b"  indented first line\n")
    assert out == b"\n  indented first line\n"
    out, _ = run(b"From someone Tue Nov 25\nSubject: x\n\n")
    assert out == b"\nFrom someone Tue Nov 25\nSubject: x\n\n"


def test_headers_only_message_and_no_final_newline() -> None:
    assert run(b"Subject: s\n")[0] == b"Subject: s\n"
    assert run(b"Subject: s")[0] == b"Subject: s\n"
    assert run(b"Subject: s\n\nbody no newline")[0] == b"Subject: s\n\nbody no newline"
    assert run(b"Subject: s\nbody no newline")[0] == b"Subject: s\n\nbody no newline"
    assert run(b"")[0] == b""


def test_header_size_limit_truncates_excess() -> None:
    long_value = b"x" * 500
    msg = b"Subject: " + long_value + b"\n\tmore " + long_value + b"\nTo: a@x\n\nbody\n"
    out, hp = run(msg, header_size_limit=100)
    assert out == b"Subject: " + long_value[:91] + b"\nTo: a@x\n\nbody\n"
    assert hp.truncated_headers == 1
    # Long body lines are never truncated.
    body = b"y" * 1000 + b"\n"
    assert run(b"To: a@x\n\n" + body, header_size_limit=100)[0] == b"To: a@x\n\n" + body
    assert run(body, header_size_limit=100)[0] == b"\n" + body


def test_hops_counted() -> None:
    _, hp = run(b"Received: a\nReceived: b\n\tc\nX-Received: d\n\nReceived: e\n")
    assert hp.hops == 2


def test_body_not_buffered() -> None:
    hp = HeaderProcessor()
    assert hp.feed(b"Subject: s\n\n") == b"Subject: s\n\n"
    chunk = b"z" * 100_000
    assert hp.feed(chunk) is chunk
    assert hp.end() == b""


header_line = st.one_of(
    st.builds(lambda n, v: n + b": " + v + b"\n",
              st.sampled_from([b"Subject", b"From", b"To", b"Bcc", b"Message-ID", b"X-A",
                               b"Received", b"date"]),
              st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))),
    st.binary(max_size=30).map(lambda b: b"\t" + b.replace(b"\n", b"") + b"\n"),
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    st.just(b"\n"),
)
message = st.builds(lambda hs, tail: b"".join(hs) + tail, st.lists(header_line, max_size=12),
                    st.binary(max_size=200))


@settings(max_examples=300)
@given(message, st.lists(st.integers(0, 60), max_size=20), st.booleans(),
       st.integers(5, 200))
def test_chunk_boundaries_do_not_matter(
    msg: bytes, cuts: list[int], add_missing: bool, limit: int,
) -> None:
    kw: dict[str, Any] = dict(add_missing=add_missing, sender="s@x", queue_id="ABC", myhostname="h",
              when=WHEN, header_size_limit=limit)
    whole, hp1 = run(msg, **kw)
    pieces, hp2 = run(msg, cuts, **kw)
    assert pieces == whole
    assert (hp1.message_id, hp1.hops, hp1.dropped, hp1.truncated_headers) == \
        (hp2.message_id, hp2.hops, hp2.dropped, hp2.truncated_headers)
    bytewise, _ = run(msg, [1] * len(msg), **kw)
    assert bytewise == whole


@given(st.lists(st.binary(min_size=1, max_size=50).filter(lambda b: b"\n" not in b),
                min_size=1, max_size=10),
       st.binary(max_size=300))
def test_body_preserved_verbatim(values: list[bytes], body: bytes) -> None:
    headers = b"".join(b"X-H" + str(i).encode() + b": " + v + b"\n" for i, v in enumerate(values))
    out, _ = run(headers + b"\n" + body, drop_headers=())
    assert out == headers + b"\n" + body
