"""RFC 3461 parameter values and what NOTIFY asks for (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.bounce import notify


@pytest.mark.parametrize(("text", "decoded"), [
    ("abc", "abc"), ("a+2Bb", "a+b"), ("a+2bb", "a+b"), ("+20", " "), ("", ""),
    ("a+ZZ", None), ("a+2", None), ("a=b", None), ("a b", None), ("caf\u00e9", None),
])
def test_xtext_decode(text: str, decoded: str | None) -> None:
    assert notify.xtext_decode(text) == decoded


@given(st.text())
def test_xtext_encode_round_trips_ascii_and_is_xtext(text: str) -> None:
    encoded = notify.xtext_encode(text)
    decoded = notify.xtext_decode(encoded)
    assert decoded is not None
    if text.isascii():
        assert decoded == text


@pytest.mark.parametrize(("value", "stored"), [
    ("NEVER", "NEVER"), ("never", "NEVER"), ("NEVER,NEVER", "NEVER"),
    ("delay,success", "SUCCESS,DELAY"), ("FAILURE,,", "FAILURE"),
    ("SUCCESS,FAILURE,DELAY", "SUCCESS,FAILURE,DELAY"),
    ("NEVER,SUCCESS", None), ("", None), (",", None), ("FOO", None), ("SUCCESS,FOO", None),
])
def test_parse_notify(value: str, stored: str | None) -> None:
    assert notify.parse_notify(value) == stored


@pytest.mark.parametrize(("value", "stored"), [
    ("FULL", "FULL"), ("hdrs", "HDRS"), ("", None), ("HEADERS", None)])
def test_parse_ret(value: str, stored: str | None) -> None:
    assert notify.parse_ret(value) == stored


@pytest.mark.parametrize(("value", "stored"), [
    ("abc+2B1", "abc+1"), ("a+20b", "a b"), ("a+01b", None), ("", None), ("a+7F", None)])
def test_parse_envid(value: str, stored: str | None) -> None:
    assert notify.parse_envid(value) == stored


@pytest.mark.parametrize(("value", "stored"), [
    ("rfc822;a+40b", "rfc822;a@b"), ("rfc822;", "rfc822;"), ("x-type;abc", "x-type;abc"),
    ("utf-8;a\\x{E9}b", "utf-8;a\u00e9b"), ("utf-8;a\\b", None),
    (";a", None), ("a@b", None), ("rfc822;a+Z0", None),
])
def test_parse_orcpt(value: str, stored: str | None) -> None:
    assert notify.parse_orcpt(value) == stored


@pytest.mark.parametrize(("stored", "failure", "success", "delay"), [
    ("", True, False, True),  # no NOTIFY: failure, and delay (if delay_warning_time)
    ("NEVER", False, False, False),
    ("SUCCESS", False, True, False),
    ("FAILURE", True, False, False),
    ("DELAY", False, False, True),
    ("SUCCESS,FAILURE,DELAY", True, True, True),
])
def test_what_notify_asks_for(stored: str, failure: bool, success: bool, delay: bool) -> None:
    assert (notify.wants_failure(stored), notify.wants_success(stored),
            notify.wants_delay(stored)) == (failure, success, delay)
