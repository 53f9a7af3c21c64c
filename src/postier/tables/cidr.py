"""The ``cidr`` table: client addresses matched against network blocks, in file order.

Follows cidr_table(5): ``network/prefix result``, ``address result`` (a host),
``!pattern result`` (matches addresses outside the block), ``if pattern`` … ``endif``
(and ``if !pattern``), IPv6 with or without ``[…]``, ``#`` comments, continuation
lines. The key is a whole address (IPv4 patterns never match IPv6 keys and the
reverse); a key that is no address matches nothing. A pattern with host bits set
below its prefix is a start error here (Postfix skips that line with a warning):
never silently ignored.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from postier.tables.base import TableOpenError
from postier.tables.source import logical_lines
from postier.tables.texthash import read_text

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class CidrRule:
    network: Network
    negated: bool
    result: str | None
    line: int
    rules: list[CidrRule] = field(default_factory=list)


def parse_network(text: str, file: str, line: int) -> tuple[Network, bool]:
    """``[!]address[/prefix]`` (IPv6 optionally in brackets) as (network, negated)."""
    negated = text.startswith("!")
    body = text[1:] if negated else text
    addr_text, slash, prefix = body.partition("/")
    if addr_text.startswith("[") and addr_text.endswith("]"):
        addr_text = addr_text[1:-1]
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise TableOpenError(f'bad address pattern: "{body}"', file=file, line=line,
                             word=body) from None
    if not slash:
        return ipaddress.ip_network(addr), negated
    if not prefix.isdigit() or int(prefix) > addr.max_prefixlen:
        raise TableOpenError(f'bad net/mask pattern: "{body}"', file=file, line=line, word=body)
    try:
        return ipaddress.ip_network(f"{addr}/{prefix}", strict=True), negated
    except ValueError:
        net = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
        raise TableOpenError(f'non-null host address bits in "{body}", perhaps you should '
                             f'use "{net}" instead', file=file, line=line, word=body) from None


def parse_cidr(text: str, file: str) -> list[CidrRule]:
    """The rules of a cidr table; TableOpenError names file, line and word."""
    top: list[CidrRule] = []
    stack: list[list[CidrRule]] = [top]
    opened: list[CidrRule] = []
    for lineno, line in logical_lines(text, file):
        words = line.split(None, 1)
        first = words[0]
        if first.lower() == "endif":
            if len(stack) == 1:
                raise TableOpenError("ignoring ENDIF without matching IF", file=file,
                                     line=lineno, word=first)
            stack.pop()
            opened.pop()
            continue
        if first.lower() == "if":
            if len(words) < 2 or len(words[1].split()) != 1:
                raise TableOpenError("IF needs exactly one address pattern", file=file,
                                     line=lineno, word=line)
            net, neg = parse_network(words[1].strip(), file, lineno)
            rule = CidrRule(net, neg, None, lineno)
            stack[-1].append(rule)
            stack.append(rule.rules)
            opened.append(rule)
            continue
        if len(words) < 2:
            raise TableOpenError("no lookup result", file=file, line=lineno, word=line)
        net, neg = parse_network(first, file, lineno)
        stack[-1].append(CidrRule(net, neg, words[1].strip(), lineno))
    if opened:
        raise TableOpenError("IF has no matching ENDIF", file=file, line=opened[-1].line,
                             word="if")
    return top


def _search(rules: list[CidrRule], addr: ipaddress.IPv4Address | ipaddress.IPv6Address
            ) -> str | None:
    for rule in rules:
        inside = addr.version == rule.network.version and addr in rule.network
        if inside == rule.negated:
            continue
        if rule.result is None:
            found = _search(rule.rules, addr)
            if found is not None:
                return found
            continue
        return rule.result
    return None


class CidrTable:
    """``cidr:/path`` (read once when opened)."""

    pattern = True
    blocking = False

    def __init__(self, path: str, *, text: str | None = None) -> None:
        self.spec = f"cidr:{path}"
        self.rules = parse_cidr(read_text(path) if text is None else text, path)

    def lookup(self, key: str) -> str | None:
        text = key.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
        try:
            addr = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return None
        return _search(self.rules, addr)
