"""Next-hop destinations as the SMTP and LMTP clients read them (pure).

Follows Postfix's smtp(8) and lmtp(8) manual pages ("SMTP DESTINATION SYNTAX") and
postconf(5) ``relayhost``: ``domain`` and ``domain:port`` are looked up in DNS as MX
(then A/AAAA), ``[host]`` and ``[host]:port`` are not (the host's own addresses, or an
IP address); a destination may be a list (commas or spaces) tried in order. LMTP
destinations are ``unix:/path``, ``inet:host[:port]`` or ``host[:port]``. The order of
MX hosts is RFC 5321 section 5.1's: lowest preference first, hosts of equal preference
shuffled.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from postier.config.braces import split_list

SMTP_PORT = 25
LMTP_PORT = 24


class Kind(enum.Enum):
    MX = "mx"  # domain[:port]: MX lookup, then the domain's own addresses
    HOST = "host"  # [host][:port]: the host's addresses (or the IP literal), no MX lookup
    UNIX = "unix"  # unix:/path (LMTP)


@dataclass(frozen=True)
class NextHop:
    """One destination: ``host`` (a domain, host name, IP address or socket path) and
    ``port`` (0 for ``UNIX``)."""

    kind: Kind
    host: str
    port: int

    @property
    def label(self) -> str:
        """As written back in logs and diagnostics: ``[host]:port`` or ``domain``."""
        if self.kind is Kind.UNIX:
            return self.host
        return f"[{self.host}]:{self.port}" if self.kind is Kind.HOST else self.host


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port number in next-hop destination {where!r}")
    return int(text)


def parse_nexthop(text: str, *, lmtp: bool = False) -> NextHop:
    """One destination (see the module docstring). Raises ValueError on a bad port, an
    empty host or an unclosed ``[``."""
    item = text.strip()
    default_port = LMTP_PORT if lmtp else SMTP_PORT
    if lmtp:
        if item.startswith("unix:"):
            path = item[5:]
            if not path:
                raise ValueError(f"empty socket path in next-hop destination {text!r}")
            return NextHop(Kind.UNIX, path, 0)
        if item.startswith("inet:"):
            item = item[5:]
    if item.startswith("["):
        close = item.find("]")
        if close < 0:
            raise ValueError(f"missing ']' in next-hop destination {text!r}")
        host, rest = item[1:close], item[close + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"garbage after ']' in next-hop destination {text!r}")
        port = _port(rest[1:], text) if rest else default_port
        kind = Kind.HOST
    else:
        host, sep, port_text = item.rpartition(":") if item.count(":") == 1 else ("", "", item)
        if not sep:
            host = port_text
            port = default_port
        else:
            port = _port(port_text, text)
        # LMTP's host:port names a host, never a domain's MX (lmtp(8)).
        kind = Kind.HOST if lmtp else Kind.MX
    host = host.strip().rstrip(".").lower()
    if not host:
        raise ValueError(f"empty host in next-hop destination {text!r}")
    return NextHop(kind, host, port)


def parse_list(text: str, *, lmtp: bool = False) -> list[NextHop]:
    """A destination list (``relayhost = a, [b]:2526``), in order; raises ValueError."""
    return [parse_nexthop(item, lmtp=lmtp) for item in split_list(text)]


def order_mx(
    records: Iterable[tuple[int, str]],
    shuffle: Callable[[list[str]], None] = random.shuffle,
) -> list[str]:
    """MX host names, lowest preference first, equal preferences in ``shuffle``'d order;
    a host listed twice keeps its best preference."""
    best: dict[str, int] = {}
    for pref, host in records:
        if host not in best or pref < best[host]:
            best[host] = pref
    ordered: list[str] = []
    for pref in sorted(set(best.values())):
        group = [h for h, p in best.items() if p == pref]
        shuffle(group)
        ordered += group
    return ordered


def endpoint(host: str, addr: str, port: int) -> str:
    """``host[addr]:port``, Postfix's ``relay=`` and ``connect to`` form."""
    return f"{host}[{addr}]:{port}"


def dedupe(hops: Sequence[NextHop]) -> list[NextHop]:
    """``hops`` without repeats, first occurrence kept (a fallback relay that is also
    the destination is tried once)."""
    seen: set[NextHop] = set()
    out = []
    for hop in hops:
        if hop not in seen:
            seen.add(hop)
            out.append(hop)
    return out
