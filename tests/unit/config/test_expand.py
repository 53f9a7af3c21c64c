"""$name expansion, every form of postconf(5), loops and undefined names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.config.errors import ConfigError
from postier.config.expand import expand, references

VALUES = {
    "full": "x",
    "empty": "",
    "chain": "$full-$empty-${full}",
    "three": "3",
    "loop_a": "$loop_b",
    "loop_b": "${loop_a}",
    "self": "a $self",
}


def lookup(name: str) -> str | None:
    return VALUES.get(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$full", "x"),
        ("${full}", "x"),
        ("$(full)", "x"),
        ("[$full]", "[x]"),
        ("$full.example", "x.example"),
        ("${full}y", "xy"),
        ("$chain", "x--x"),
        ("${full?yes}", "yes"),
        ("${empty?yes}", ""),
        ("${full:no}", ""),
        ("${empty:no}", "no"),
        ("$(empty:no)", "no"),
        ("${full?$three}", "3"),
        ("${undefined:default}", "default"),
        ("${full?{a, b}}", "a, b"),
        ("${empty:{a b}}", "a b"),
        ("${full?{one}:{two}}", "one"),
        ("${empty?{one}:{two}}", "two"),
        ("${{$full} == {x} ? {eq} : {ne}}", "eq"),
        ("${{$full} != {x} ? {ne} : {eq}}", "eq"),
        ("${{$three} < {10} ? {less} : {more}}", "less"),
        ("${{$three} >= {10} ? {more} : {less}}", "less"),
        ("${{1} <= {1} ? {yes}}", "yes"),
        ("price: 5 $", "price: 5 $"),
        ("$undefined", ""),
    ],
)
def test_forms(text: str, expected: str) -> None:
    assert expand(text, lookup) == expected


@pytest.mark.parametrize("text", ["$loop_a", "${loop_b}", "$self", "x ${full?$self}"])
def test_recursive_expansion_is_an_error(text: str) -> None:
    with pytest.raises(ConfigError, match="recursive expansion"):
        expand(text, lookup)


@pytest.mark.parametrize(
    "text", ["${full", "${full!x}", "${{a} =~ {b} ? {c}}", "${{a} < {3} ? {c}}"]
)
def test_malformed_expressions(text: str) -> None:
    with pytest.raises(ConfigError):
        expand(text, lookup)


def test_undefined_names_are_reported() -> None:
    seen: list[str] = []
    assert expand("$a ${b} $full", lookup, on_undefined=seen.append) == "  x"
    assert seen == ["a", "b"]


def test_references() -> None:
    assert references("$a ${b?$c} $(d) plain ${e:{$f}}") == {"a", "b", "c", "d", "e", "f"}


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert expand(text, lambda name: "never") == text


@given(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True), st.text(max_size=20))
def test_all_reference_forms_agree(name: str, value: str) -> None:
    def one(n: str) -> str | None:
        return value.replace("$", "") if n == name else None

    plain = expand(f"${name}", one)
    assert expand(f"${{{name}}}", one) == plain == expand(f"$({name})", one)
