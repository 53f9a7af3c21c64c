"""Address classes: is a domain ours (local), relayed for, or somebody else's?

Follows Postfix's ADDRESS_CLASS_README: ``mydestination`` (and address literals of our
own interfaces) make the local class; ``relay_domains`` (parent domains matching
subdomains, as ``parent_domain_matches_subdomains`` says by default) the relay class;
everything else the default class.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class AddressClass(enum.Enum):
    LOCAL = "local"
    VIRTUAL_ALIAS = "virtual_alias"
    VIRTUAL_MAILBOX = "virtual_mailbox"
    RELAY = "relay"
    DEFAULT = "default"


def _domain_matches(domain: str, patterns: Sequence[str], *, subdomains: bool) -> bool:
    for pattern in patterns:
        p = pattern.lower().rstrip(".")
        if domain == p:
            return True
        if subdomains and (domain.endswith("." + p.lstrip(".")) if p else False):
            return True
    return False


def classify(
    domain: str, *, mydestination: Sequence[str], inet_interface_addrs: Sequence[str],
    proxy_interfaces: Sequence[str], relay_domains: Sequence[str],
    virtual_alias_domains: Sequence[str] = (), virtual_mailbox_domains: Sequence[str] = (),
) -> AddressClass:
    d = domain.lower().rstrip(".")
    if not d:
        return AddressClass.LOCAL  # an address without domain gets $myorigin
    if d.startswith("[") and d.endswith("]"):
        literal = d[1:-1]
        literal = literal[5:] if literal.startswith("ipv6:") else literal
        if literal in inet_interface_addrs or literal in proxy_interfaces:
            return AddressClass.LOCAL
        return AddressClass.DEFAULT
    if _domain_matches(d, mydestination, subdomains=False):
        return AddressClass.LOCAL
    if _domain_matches(d, virtual_alias_domains, subdomains=False):
        return AddressClass.VIRTUAL_ALIAS
    if _domain_matches(d, virtual_mailbox_domains, subdomains=False):
        return AddressClass.VIRTUAL_MAILBOX
    if _domain_matches(d, relay_domains, subdomains=True):
        return AddressClass.RELAY
    return AddressClass.DEFAULT
