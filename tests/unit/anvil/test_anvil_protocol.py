"""The anvil attribute protocol: framing, requests and answers (Postfix's names)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.anvilclient.protocol import (
    MAX_LINE,
    STAT_FAIL,
    STAT_OK,
    Answer,
    ProtocolError,
    Reader,
    Request,
    decode_request,
    encode,
    encode_request,
    ident,
)


def test_a_request_is_postfix_plain_attributes() -> None:
    assert encode_request(Request.CONNECT, ident("smtp", "192.0.2.1")) == \
        b"request=connect\nident=smtp:192.0.2.1\n\n"
    assert [r.value for r in Request] == [
        "connect", "disconnect", "message", "recipient", "newtls", "newtls_status",
        "auth", "lookup"]


def test_the_reader_takes_whole_split_and_pipelined_input() -> None:
    data = encode_request(Request.MESSAGE, "smtp:::1") + encode_request(Request.AUTH, "s:a")
    whole = Reader().feed(data)
    assert [decode_request(a) for a in whole] == [(Request.MESSAGE, "smtp:::1"),
                                                 (Request.AUTH, "s:a")]
    reader = Reader()
    one_by_one = [attrs for i in range(len(data)) for attrs in reader.feed(data[i:i + 1])]
    assert one_by_one == whole
    partial = Reader()
    assert partial.feed(data[:-1]) == whole[:1]  # the second is not ended yet
    assert partial.feed(b"\n") == whole[1:]


@given(st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)),
               min_size=1, max_size=200))
def test_any_ident_survives_the_round_trip(key: str) -> None:
    assert decode_request(Reader().feed(encode_request(Request.RECIPIENT, key))[0]) == \
        (Request.RECIPIENT, key)


def test_answers_carry_what_postfix_sends_for_each_request() -> None:
    answer = Answer(STAT_OK, count=3, rate=4, mail=5, rcpt=6, newtls=7, auth=8)
    assert answer.encode(Request.CONNECT) == b"status=0\ncount=3\nrate=4\n\n"
    assert answer.encode(Request.MESSAGE) == b"status=0\nrate=4\n\n"
    assert answer.encode(Request.DISCONNECT) == b"status=0\n\n"
    assert Answer.decode(Reader().feed(answer.encode(Request.LOOKUP))[0]) == answer
    assert Answer.decode({"status": "-1"}) == Answer(STAT_FAIL)
    assert not Answer(STAT_FAIL).ok and answer.ok


@pytest.mark.parametrize("attrs", [{"request": "bogus", "ident": "x"},
                                   {"request": "connect"}, {"ident": "x"}])
def test_bad_requests_are_protocol_errors(attrs: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        decode_request(attrs)


def test_bad_answers_and_bad_framing_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        Answer.decode({"status": "x"})
    with pytest.raises(ProtocolError):
        Answer.decode({"count": "1"})
    with pytest.raises(ProtocolError):
        Reader().feed(b"no equals sign\n")
    with pytest.raises(ProtocolError):
        Reader().feed(b"a=" + b"x" * (MAX_LINE + 1))
    with pytest.raises(ProtocolError):
        Reader().feed(b"".join(f"a{i}=1\n".encode() for i in range(40)))
    with pytest.raises(ProtocolError):
        encode({"ident": "two\nlines"})
