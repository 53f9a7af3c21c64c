"""censor with several expansion filters in turn: each call uses its own filter."""

from __future__ import annotations

from postier.local.localpart import DEFAULT_EXPANSION_FILTER, censor


def test_each_filter_is_its_own() -> None:
    assert censor("a-b", "ab") == "a_b"
    assert censor("a-b", "ab-") == "a-b"
    assert censor("a-b", "ab") == "a_b"
    assert censor("user+ext", DEFAULT_EXPANSION_FILTER) == "user+ext"
    assert censor("a;b`c", DEFAULT_EXPANSION_FILTER) == "a_b_c"
    assert censor("", "") == ""
    assert censor("x", "") == "_"
