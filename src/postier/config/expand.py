"""Expand ``$name`` references in main.cf values, lazily and recursively, with loop detection.

Follows postconf(5) "DESCRIPTION" (parameter expansion): ``$name``, ``${name}``,
``$(name)``; ``${name?value}`` (value when $name is non-empty), ``${name:value}``
(value when $name is empty); the Postfix 3.0 forms ``${name?{value}}``,
``${name:{value}}``, ``${name?{value1}:{value2}}``; and the Postfix 3.5 comparisons
``${{text1} OP {text2} ? {value1} : {value2}}`` with OP one of ``==  !=  <  <=  >  >=``
(the last four compare integers). An undefined ``$name`` expands to the empty string,
as in Postfix; the caller may be told through ``on_undefined``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

from postier.config.errors import ConfigError

Lookup = Callable[[str], "str | None"]

NAME_RE = re.compile(r"[A-Za-z0-9_]+")
_CLOSE = {"{": "}", "(": ")"}
_OPS = ("==", "!=", "<=", ">=", "<", ">")


def expand(
    text: str,
    lookup: Callable[[str], str | None],
    *,
    on_undefined: Callable[[str], None] | None = None,
) -> str:
    """``text`` with every parameter reference replaced by its (recursively expanded) value.

    ``lookup(name)`` returns the unexpanded value of a parameter, or None when it is
    not defined. Raises ConfigError("recursive expansion") on a reference loop and
    ConfigError for a malformed ``${...}`` expression.
    """
    return _Expander(lookup, on_undefined).run(text, ())


def references(text: str) -> set[str]:
    """The parameter names that ``text`` refers to, without looking anything up."""
    found: set[str] = set()

    def note(name: str) -> str | None:
        found.add(name)
        return None

    with contextlib.suppress(ConfigError):
        _Expander(note, None, every_branch=True).run(text, ())
    return found


class _Expander:
    def __init__(
        self,
        lookup: Callable[[str], str | None],
        on_undefined: Callable[[str], None] | None,
        *,
        every_branch: bool = False,
    ) -> None:
        self.lookup = lookup
        self.on_undefined = on_undefined
        self.every_branch = every_branch  # visit both branches of conditionals (references())

    def value_of(self, name: str, stack: tuple[str, ...]) -> str:
        if name in stack:
            raise ConfigError("recursive expansion", param=stack[0] if stack else name)
        raw = self.lookup(name)
        if raw is None:
            if self.on_undefined is not None:
                self.on_undefined(name)
            return ""
        return self.run(raw, (*stack, name))

    def run(self, text: str, stack: tuple[str, ...]) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            k = j + 1
            if k < n and text[k] in _CLOSE:
                close = _matching(text, k)
                if close < 0:
                    raise ConfigError(f"missing '{_CLOSE[text[k]]}' in parameter expression: "
                                      f"{text[j:]}")
                out.append(self.expression(text[k + 1:close], stack))
                i = close + 1
                continue
            m = NAME_RE.match(text, k)
            if m is None:
                out.append("$")
                i = k
                continue
            out.append(self.value_of(m.group(), stack))
            i = m.end()
        return "".join(out)

    def expression(self, body: str, stack: tuple[str, ...]) -> str:
        stripped = body.strip()
        if stripped.startswith("{"):
            return self.comparison(stripped, stack)
        m = NAME_RE.match(body)
        if m is None:
            raise ConfigError(f"bad parameter expression: ${{{body}}}")
        name, rest = m.group(), body[m.end():]
        if rest == "":
            return self.value_of(name, stack)
        op, arg = rest[0], rest[1:]
        if op not in "?:":
            raise ConfigError(f"bad parameter expression: ${{{body}}}")
        non_empty = self.value_of(name, stack) != ""
        if arg.lstrip().startswith("{"):
            first, after = _brace_group(arg.lstrip(), body)
            second: str | None = None
            after = after.strip()
            if after:
                if op != "?" or not after.startswith(":"):
                    raise ConfigError(f"bad parameter expression: ${{{body}}}")
                second, tail = _brace_group(after[1:].lstrip(), body)
                if tail.strip():
                    raise ConfigError(f"bad parameter expression: ${{{body}}}")
            if self.every_branch:
                self.run(first, stack)
                self.run(second or "", stack)
            if op == "?":
                chosen = first if non_empty else (second or "")
            else:
                chosen = "" if non_empty else first
            return self.run(chosen, stack)
        if (op == "?") == non_empty or self.every_branch:
            return self.run(arg, stack)
        return ""

    def comparison(self, body: str, stack: tuple[str, ...]) -> str:
        left, rest = _brace_group(body, body)
        rest = rest.lstrip()
        op = next((o for o in _OPS if rest.startswith(o)), None)
        if op is None:
            raise ConfigError(f"bad comparison operator in: ${{{body}}}")
        right, rest = _brace_group(rest[len(op):].lstrip(), body)
        rest = rest.lstrip()
        if not rest.startswith("?"):
            raise ConfigError(f"missing '?' in: ${{{body}}}")
        if_true, rest = _brace_group(rest[1:].lstrip(), body)
        rest = rest.strip()
        if_false = ""
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad parameter expression: ${{{body}}}")
            if_false, rest = _brace_group(rest[1:].lstrip(), body)
            if rest.strip():
                raise ConfigError(f"bad parameter expression: ${{{body}}}")
        a, b = self.run(left, stack).strip(), self.run(right, stack).strip()
        if self.every_branch:
            self.run(if_true, stack)
            self.run(if_false, stack)
            return ""
        if op in ("==", "!="):
            result = (a == b) == (op == "==")
        else:
            try:
                x, y = int(a), int(b)
            except ValueError:
                raise ConfigError(
                    f"non-numeric operand in comparison: ${{{body}}}"
                ) from None
            result = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        return self.run(if_true if result else if_false, stack)


def _matching(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``, or -1."""
    opener, closer = text[start], _CLOSE[text[start]]
    depth = 0
    for idx in range(start, len(text)):
        ch = text[idx]
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return idx
    return -1


def _brace_group(text: str, whole: str) -> tuple[str, str]:
    """Split ``{inner}rest`` into (inner, rest)."""
    if not text.startswith("{"):
        raise ConfigError(f"expected '{{' in parameter expression: ${{{whole}}}")
    end = _matching(text, 0)
    if end < 0:
        raise ConfigError(f"missing '}}' in parameter expression: ${{{whole}}}")
    return text[1:end], text[end + 1:]
