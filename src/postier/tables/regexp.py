"""The ``regexp`` and ``pcre`` tables: ordered patterns, first match wins, ``$1`` substitution.

Follows regexp_table(5) and pcre_table(5): ``/pattern/flags result``, ``!/pattern/flags
result`` (matches when the pattern does not; no ``$n`` then), ``if /pattern/flags`` …
``endif`` (and ``if !/pattern/``), ``#`` comments and blank lines ignored, a line that
starts with whitespace continues the previous one; any non-blank character may serve
as delimiter. ``$1``…``$9`` and ``${1}`` are replaced by the captures (an unmatched
group by nothing), ``$$`` by ``$``. The whole key is matched, as given (not folded).

Both types use Python's ``re``; the differences are postier's, documented here and
refused at start rather than silently changed:

- ``regexp`` (POSIX extended regular expressions): flags ``i`` (toggle case folding,
  on by default), ``m`` (multi-line), ``x`` (toggle extended syntax: POSIX basic
  syntax is not supported, so ``x`` is refused). POSIX bracket classes
  (``[[:alpha:]]``…) are translated (for ``pcre`` too). POSIX picks the
  leftmost-longest match, ``re`` the leftmost-first: with alternations whose
  branches overlap, ``$n`` may differ.
- ``pcre``: flags ``i`` (toggle caseless, on by default), ``m``, ``s``, ``x``, ``A``
  (anchored at the start), ``E`` (``$`` only at the very end: keys hold no newline,
  so it changes nothing), ``X`` (accepted; Python's ``re`` is always strict);
  ``U`` (ungreedy) has no equivalent and is refused. PCRE-only syntax that ``re``
  lacks (possessive quantifiers before Python 3.11, ``\\Q…\\E``, recursion, callouts)
  is refused with the ``re`` error message.
- A replacement index beyond the pattern's groups is a start error, as in Postfix.
- Inline form (Postfix 3.7): ``regexp:{ {/pattern/ result}, … }``, each element one line.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from postier.config.braces import UnclosedBrace, split_braced, unbrace
from postier.tables.base import TableOpenError
from postier.tables.source import logical_lines
from postier.tables.texthash import read_text

_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": r" \t\n\r\f\v", "blank": r" \t", "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f", "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_POSIX_RE = re.compile(r"\[:([a-z]+):\]")
_SUBST_RE = re.compile(r"\$(?:\{(\d+)\}|(\d)|(\$))")


@dataclass
class Rule:
    """One pattern line, or an ``if`` block (``rules`` inside, ``result`` None)."""

    regex: re.Pattern[str]
    negated: bool
    anchored: bool
    result: str | None
    line: int
    rules: list[Rule] = field(default_factory=list)

    def matches(self, key: str) -> re.Match[str] | bool:
        m = self.regex.match(key) if self.anchored else self.regex.search(key)
        if self.negated:
            return m is None
        return m if m is not None else False


def _translate_posix(pattern: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in _POSIX_CLASSES:
            raise ValueError(f"unknown character class [:{name}:]")
        return _POSIX_CLASSES[name]
    return _POSIX_RE.sub(repl, pattern)


def _parse_pattern(text: str, kind: str, file: str, line: int) -> tuple[Rule, str]:
    """A ``[!]/re/flags`` at the start of ``text``: the rule (result unset) and the rest."""
    negated = text.startswith("!")
    body = text[1:].lstrip() if negated else text
    if not body or body[0].isspace():
        raise TableOpenError("missing regular expression", file=file, line=line, word=text)
    delim = body[0]
    i = 1
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            i += 2
            continue
        if body[i] == delim:
            break
        i += 1
    else:
        raise TableOpenError(f"no closing regexp delimiter: {delim}", file=file, line=line,
                             word=text)
    pattern = body[1:i]
    rest = body[i + 1:]
    flag_end = 0
    while flag_end < len(rest) and not rest[flag_end].isspace():
        flag_end += 1
    flags_text, rest = rest[:flag_end], rest[flag_end:].strip()
    allowed = "imx" if kind == "regexp" else "imsxAEUX"
    case_fold, extended = True, True
    re_flags = 0
    anchored = False
    for ch in flags_text:
        if ch not in allowed:
            raise TableOpenError(f"unknown regexp option \"{ch}\"", file=file, line=line,
                                 word=flags_text)
        if ch == "i":
            case_fold = not case_fold
        elif ch == "m":
            re_flags |= re.MULTILINE
        elif ch == "s":
            re_flags |= re.DOTALL
        elif ch == "x":
            if kind == "regexp":
                extended = not extended
            else:
                re_flags |= re.VERBOSE
        elif ch == "A":
            anchored = True
        elif ch == "U":
            raise TableOpenError('pcre flag "U" (ungreedy) is not supported by postier',
                                 file=file, line=line, word=flags_text)
    if not extended:
        raise TableOpenError('regexp flag "x" (POSIX basic syntax) is not supported by '
                             "postier", file=file, line=line, word=flags_text)
    if case_fold:
        re_flags |= re.IGNORECASE
    try:
        pattern = _translate_posix(pattern)  # PCRE has the POSIX classes too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re's FutureWarnings about later syntax
            regex = re.compile(pattern, re_flags)
    except (re.error, ValueError) as exc:
        raise TableOpenError(f"bad regular expression {delim}{body[1:i]}{delim}: {exc}",
                             file=file, line=line, word=body[1:i]) from None
    return Rule(regex, negated, anchored, None, line), rest


def _check_result(rule: Rule, result: str, file: str) -> None:
    for m in _SUBST_RE.finditer(result):
        if m.group(3):
            continue
        index = int(m.group(1) or m.group(2))
        if rule.negated:
            raise TableOpenError("$number found in negative match replacement text",
                                 file=file, line=rule.line, word=result)
        if index > rule.regex.groups:
            raise TableOpenError(f"out of range replacement index \"{index}\"",
                                 file=file, line=rule.line, word=result)


def parse_rules(text: str, kind: str, file: str) -> list[Rule]:
    """The rules of a regexp or pcre table; TableOpenError names file, line and word."""
    top: list[Rule] = []
    stack: list[list[Rule]] = [top]
    opened: list[Rule] = []
    for lineno, line in logical_lines(text, file):
        word = line.split(None, 1)[0]
        if word.lower() == "endif":
            if len(stack) == 1:
                raise TableOpenError("ignoring ENDIF without matching IF", file=file,
                                     line=lineno, word=word)
            stack.pop()
            opened.pop()
            continue
        if word.lower() == "if" and len(line) > 2:
            rule, rest = _parse_pattern(line[2:].strip(), kind, file, lineno)
            if rest:
                raise TableOpenError("text after IF pattern", file=file, line=lineno, word=rest)
            stack[-1].append(rule)
            stack.append(rule.rules)
            opened.append(rule)
            continue
        rule, result = _parse_pattern(line, kind, file, lineno)
        if not result:
            raise TableOpenError("no replacement text", file=file, line=lineno, word=line)
        _check_result(rule, result, file)
        rule.result = result
        stack[-1].append(rule)
    if opened:
        raise TableOpenError("IF has no matching ENDIF", file=file, line=opened[-1].line,
                             word="if")
    return top


def substitute(result: str, m: re.Match[str] | bool) -> str:
    """``result`` with ``$n``/``${n}`` replaced by ``m``'s groups and ``$$`` by ``$``."""
    def repl(s: re.Match[str]) -> str:
        if s.group(3):
            return "$"
        if not isinstance(m, re.Match):
            return ""
        return m.group(int(s.group(1) or s.group(2))) or ""
    return _SUBST_RE.sub(repl, result)


def _search(rules: list[Rule], key: str) -> str | None:
    for rule in rules:
        m = rule.matches(key)
        if m is False:
            continue
        if rule.result is None:
            found = _search(rule.rules, key)
            if found is not None:
                return found
            continue
        return substitute(rule.result, m)
    return None


def inline_rules(spec: str, body: str) -> str:
    """The rule lines of an inline ``regexp:{ {/pattern/ result}, … }`` body, one a line."""
    body = body.strip()
    if not body.endswith("}"):
        raise TableOpenError(f'{spec}: an inline table needs "{{ {{rule}}, … }}"', word=spec)
    try:
        tokens = split_braced(unbrace(body), ",")
    except UnclosedBrace as exc:
        raise TableOpenError(f"{spec}: {exc}", word=spec) from None
    return "".join(unbrace(token).strip() + "\n" for token in tokens)


class RegexpTable:
    """``regexp:/path`` or ``pcre:/path`` (read once when opened, as Postfix does)."""

    pattern = True
    blocking = False

    def __init__(self, kind: str, path: str, *, text: str | None = None) -> None:
        """``path``: a file, or (Postfix 3.7) an inline body ``{ {rule}, {rule} … }``
        whose elements are the lines of a file. Raises ``TableOpenError``."""
        self.spec = f"{kind}:{path}"
        if text is None:
            text = inline_rules(self.spec, path) if path.startswith("{") else read_text(path)
        self.rules = parse_rules(text, kind, path)

    def lookup(self, key: str) -> str | None:
        return _search(self.rules, key)
