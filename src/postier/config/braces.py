"""The one brace-aware tokenizer: main.cf list values and master.cf fields split into tokens.

Follows Postfix's postconf(5) ("{ ... }" groups a list element that contains commas
or whitespace, Postfix 3.0) and master(5) (``-o { name = value }`` and ``{ ... }``
arguments, Postfix 3.0), which both split with the same quoting rule: a ``{`` anywhere
in a token opens a group (groups nest) and separators inside a group do not split; a
``}`` with no open group is an ordinary character. The outer braces of a token that is
one whole group are removed with ``unbrace``, as Postfix's extpar() does.
"""

from __future__ import annotations

#: Separators of a main.cf list value besides whitespace (postconf(5) "list").
LIST_SEPARATORS = ","


class UnclosedBrace(ValueError):
    """A ``{`` without its ``}`` in ``text``; ``str()``: ``missing '}' in: TEXT``."""

    def __init__(self, text: str) -> None:
        super().__init__(f"missing '}}' in: {text.strip()}")
        self.text = text


def split_braced(text: str, separators: str = "", *, strict: bool = True) -> list[str]:
    """Split ``text`` on whitespace and the characters of ``separators``, braces kept.

    ``"a {b c}, d"`` with separators ``","`` -> ``["a", "{b c}", "d"]``. Empty tokens
    are dropped. An unclosed ``{`` raises UnclosedBrace when ``strict``; otherwise the
    rest of the text is the last token.
    """
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        elif not depth and (ch.isspace() or ch in separators):
            if current:
                tokens.append("".join(current))
                current = []
            continue
        current.append(ch)
    if depth and strict:
        raise UnclosedBrace(text)
    if current:
        tokens.append("".join(current))
    return tokens


def unbrace(token: str) -> str:
    """``"{ a b }"`` -> ``"a b"`` (outer braces and the space inside them removed); else as is."""
    if token.startswith("{") and token.endswith("}"):
        return token[1:-1].strip()
    return token


def split_list(value: str) -> list[str]:
    """A main.cf list value as its elements: commas and whitespace separate them.

    A ``{ ... }`` element is one element without its braces (``"{ a, b }"`` -> ``"a, b"``);
    an empty ``{ }`` is no element. An unclosed ``{`` makes the rest one element.
    """
    elements = (unbrace(token) for token in split_braced(value, LIST_SEPARATORS, strict=False))
    return [element for element in elements if element]
