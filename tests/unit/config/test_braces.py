"""The one brace-aware tokenizer, as main.cf lists and master.cf fields use it."""

from __future__ import annotations

import pytest

from postier.config import mastercf
from postier.config.braces import UnclosedBrace, split_braced, split_list, unbrace
from postier.config.errors import ConfigError
from postier.config.maincf import parse
from postier.config.settings import Config


@pytest.mark.parametrize(
    ("text", "separators", "tokens"),
    [
        ("a b\t c\n", "", ["a", "b", "c"]),
        ("a,b, c", "", ["a,b,", "c"]),
        ("a,b, c", ",", ["a", "b", "c"]),
        ("{ a b } c", "", ["{ a b }", "c"]),
        ("{a, b},c", ",", ["{a, b}", "c"]),
        ("x { a { b c } d } y", "", ["x", "{ a { b c } d }", "y"]),  # nested
        ("pre{ a b }post z", "", ["pre{ a b }post", "z"]),  # a brace inside a token
        ("${stress?{10}:{300}}s x", "", ["${stress?{10}:{300}}s", "x"]),
        ("a } b", "", ["a", "}", "b"]),  # a lone '}' is a character
        ("a}b {c d}", "", ["a}b", "{c d}"]),
        ("", ",", []),
        (" , ,, ", ",", []),
    ],
)
def test_split_braced(text: str, separators: str, tokens: list[str]) -> None:
    assert split_braced(text, separators) == tokens


def test_split_braced_unclosed() -> None:
    with pytest.raises(UnclosedBrace) as info:
        split_braced("a { b { c } d")
    assert str(info.value) == "missing '}' in: a { b { c } d"
    assert split_braced("a { b, c", ",", strict=False) == ["a", "{ b, c"]


@pytest.mark.parametrize(
    ("token", "inner"),
    [("{ a b }", "a b"), ("{a}", "a"), ("{ }", ""), ("{}", ""), ("a", "a"),
     ("{a} b", "{a} b"), ("x{a}", "x{a}"), ("{ {a} }", "{a}")],
)
def test_unbrace(token: str, inner: str) -> None:
    assert unbrace(token) == inner


def test_split_list_braces() -> None:
    assert split_list("check_policy_service { inet:127.0.0.1:9998, timeout=10s }, permit") == [
        "check_policy_service", "inet:127.0.0.1:9998, timeout=10s", "permit"]
    assert split_list("a, { }, {b}, { c { d } }") == ["a", "b", "c { d }"]
    assert split_list("a, {b, c") == ["a", "{b, c"]  # unclosed: the rest is one element


def test_master_cf_and_main_cf_split_alike() -> None:
    value = "check_policy_service { inet:127.0.0.1:9998, timeout=10s }, permit"
    text = f"smtp inet n - n - - smtpd -o {{ smtpd_client_restrictions = {value} }}\n"
    (svc,) = mastercf.parse(text, "master.cf")
    assert svc.overrides == {"smtpd_client_restrictions": value}
    main = Config(parse(f"smtpd_client_restrictions = {value}\n", "main.cf"), hostname="h.x")
    over = Config(parse("", "main.cf"), hostname="h.x").with_overrides(svc.overrides)
    assert over.get_list("smtpd_client_restrictions") == main.get_list(
        "smtpd_client_restrictions") == split_list(value)


def test_master_cf_brace_inside_a_token() -> None:
    (svc,) = mastercf.parse(
        "smtp inet n - n - - smtpd -o{ smtpd_banner = $myhostname ESMTP } x{ y z }\n", "m")
    assert svc.overrides == {"smtpd_banner": "$myhostname ESMTP"}
    assert svc.args == ["x{ y z }"]


def test_master_cf_unclosed_brace() -> None:
    with pytest.raises(ConfigError) as info:
        mastercf.parse("smtp inet n - n - - smtpd -o { a = b\n", "/etc/postfix/master.cf")
    assert str(info.value) == (
        "/etc/postfix/master.cf, line 1: missing '}' in: "
        "smtp inet n - n - - smtpd -o { a = b")
