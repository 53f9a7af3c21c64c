"""Which clients are in ``mynetworks``: a list of networks, or the ``mynetworks_style`` default.

Follows postconf(5) ``mynetworks`` (``net/mask``, ``[ipv6]/mask``, ``!`` negation, first
match wins) and ``mynetworks_style`` (host: this host's addresses; subnet and class are
treated as host here, the safe choice, and said so in the log by the caller).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(entry: str) -> Network:
    text = entry.replace("[", "").replace("]", "")
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True)
class MyNetworks:
    entries: tuple[tuple[bool, Network], ...]  # (negated, network)

    @classmethod
    def parse(cls, items: Sequence[str]) -> MyNetworks:
        entries = []
        for item in items:
            negated = item.startswith("!")
            text = item[1:] if negated else item
            if text.count(":") == 1 and not text.startswith("[") and text.split(":")[0].isalpha():
                raise ValueError(f"mynetworks: table lookups ({text}) are not supported yet")
            try:
                entries.append((negated, _parse(text)))
            except ValueError:
                raise ValueError(f"mynetworks: bad network/mask: {item}") from None
        return cls(tuple(entries))

    @classmethod
    def from_config(cls, items: Sequence[str], style: str, local_addrs: Sequence[str]) -> MyNetworks:
        if items:
            return cls.parse(items)
        hosts = ["127.0.0.0/8", "[::1]/128", *(f"[{a}]" if ":" in a else a for a in local_addrs)]
        return cls.parse(hosts)

    def match(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for negated, net in self.entries:
            if addr.version == net.version and addr in net:
                return not negated
        return False
