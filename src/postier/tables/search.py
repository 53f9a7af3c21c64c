"""Postfix's search orders, in one place: which keys each use of a table tries, in order.

Follows access(5) ("EMAIL ADDRESS PATTERNS", "EMAIL ADDRESS EXTENSION", "HOST
NAME/ADDRESS PATTERNS", "REGULAR EXPRESSION TABLES"), transport(5) ("TABLE SEARCH
ORDER"), aliases(5)/local(8) (the local part, then without its extension) and
postconf(5) ``parent_domain_matches_subdomains``/``smtpd_null_access_lookup_key``.
Each order is a list of ``Key(text, partial)``: ``Maps.search`` asks them in turn
and skips partial keys on pattern tables (regexp, pcre, cidr see whole strings only).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from postier.rewrite.address import fold_domain, parse_address
from postier.rewrite.addrmap import Found
from postier.rewrite.extension import find_extension, split_extension
from postier.tables.maps import Key, Maps

#: postconf(5) default of ``parent_domain_matches_subdomains`` (Postfix 3.7).
PARENT_DOMAIN_DEFAULT = (
    "debug_peer_list", "fast_flush_domains", "mynetworks", "permit_mx_backup_networks",
    "qmqpd_authorized_clients", "relay_domains", "smtpd_access_maps",
)


@dataclass(frozen=True)
class SearchSettings:
    """What an order depends on: ``recipient_delimiter``; ``parent_style`` (True: a
    domain matches its subdomains, as when the use is listed in
    ``parent_domain_matches_subdomains``; False: ``.domain`` keys); ``null_key`` for
    the null sender (``smtpd_null_access_lookup_key``)."""

    recipient_delimiter: str = ""
    parent_style: bool = True
    null_key: str = "<>"


def parent_style(parent_domain_matches_subdomains: Sequence[str], use: str) -> bool:
    """Is ``use`` (``smtpd_access_maps``, ``transport_maps``) in the parameter's list?"""
    return use in parent_domain_matches_subdomains


class Subject(enum.Enum):
    """What is looked up in an access(5) table."""

    HOSTNAME = "hostname"  # a host or HELO name: the name, then parent domains
    CLIENT_ADDRESS = "client address"  # an IP address, then shorter prefixes
    ADDRESS = "address"  # an envelope address: user@domain, domain…, user@
    WHOLE = "whole"  # the string alone


def domain_keys(domain: str, *, parent: bool = True, first_partial: bool = False) -> list[Key]:
    """``a.b.c``, then ``b.c``, ``c`` (``parent``) or ``.b.c``, ``.c``; an address literal
    only as itself."""
    d = fold_domain(domain)
    if not d:
        return []
    keys = [Key(d, first_partial)]
    if d.startswith("["):
        return keys
    labels = d.split(".")
    for i in range(1, len(labels)):
        rest = ".".join(labels[i:])
        keys.append(Key(rest if parent else "." + rest, True))
    return keys


def client_address_keys(ip: str) -> list[Key]:
    """``1.2.3.4``, ``1.2.3``, ``1.2``, ``1`` (IPv6: whole, then ``:``-shortened); an
    IPv4-mapped IPv6 address as IPv4."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return [Key(ip)] if ip else []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    text = str(addr)
    sep = "." if addr.version == 4 else ":"
    parts = text.split(sep)
    keys = [Key(text)]
    for i in range(len(parts) - 1, 0, -1):
        key = sep.join(parts[:i])
        if key and not key.endswith(sep):
            keys.append(Key(key, True))
    return keys


def address_keys(address: str, settings: SearchSettings = SearchSettings()) -> list[Key]:
    """access(5) keys of an envelope address: ``user+ext@domain``, ``user@domain``, the
    domain and its parents, ``user+ext@``, ``user@`` (all folded); the null address
    is ``settings.null_key``."""
    if not address:
        return [Key(settings.null_key)]
    parsed = parse_address(address)
    local = parsed.localpart.lower()
    base, ext = split_extension(local, settings.recipient_delimiter)
    stripped = ext is not None and base != local
    if parsed.domain is None:
        keys = [Key(local)]
        if stripped:
            keys.append(Key(base, True))
        keys.append(Key(f"{local}@", True))
        if stripped:
            keys.append(Key(f"{base}@", True))
        return keys
    domain = fold_domain(parsed.domain)
    keys = [Key(f"{local}@{domain}")]
    if stripped:
        keys.append(Key(f"{base}@{domain}", True))
    keys += domain_keys(domain, parent=settings.parent_style, first_partial=True)
    keys.append(Key(f"{local}@", True))
    if stripped:
        keys.append(Key(f"{base}@", True))
    return keys


def access_keys(subject: Subject, text: str,
                settings: SearchSettings = SearchSettings()) -> list[Key]:
    """The keys an access(5) table is asked for ``text`` of kind ``subject``."""
    if subject is Subject.HOSTNAME:
        return domain_keys(text, parent=settings.parent_style) if text else []
    if subject is Subject.CLIENT_ADDRESS:
        return client_address_keys(text)
    if subject is Subject.ADDRESS:
        return address_keys(text, settings)
    return [Key(text)]


def transport_keys(address: str, settings: SearchSettings) -> list[Key]:
    """transport(5): ``user+ext@domain``, ``user@domain``, ``domain``, its parents
    (``.domain`` unless ``transport_maps`` is in ``parent_domain_matches_subdomains``),
    then ``*``. ``address`` is fully qualified (the null recipient is the caller's
    ``$empty_address_recipient@$myhostname``)."""
    parsed = parse_address(address)
    local = parsed.localpart.lower()
    base, ext = split_extension(local, settings.recipient_delimiter)
    domain = fold_domain(parsed.domain or "")
    keys = [Key(f"{local}@{domain}")]
    if ext is not None and base != local:
        keys.append(Key(f"{base}@{domain}", True))
    keys += domain_keys(domain, parent=settings.parent_style, first_partial=True)
    keys.append(Key("*", True))
    return keys


def mail_addr_keys(address: str, settings: SearchSettings, *, local: bool = False) -> list[Key]:
    """Postfix's mail_addr_find(3) order (``relay_recipient_maps``,
    ``smtpd_sender_login_maps``, ``virtual_alias_maps``): ``user+ext@domain``,
    ``user@domain``, then — only when the domain is local (``local``) — ``user+ext``
    and ``user``, then ``@domain``. Parent domains are never searched."""
    parsed = parse_address(address)
    local_part = parsed.localpart.lower()
    base, ext = split_extension(local_part, settings.recipient_delimiter)
    stripped = ext is not None and base != local_part
    if parsed.domain is None:
        keys = [Key(local_part)]
        return [*keys, Key(base, True)] if stripped else keys
    domain = fold_domain(parsed.domain)
    keys = [Key(f"{local_part}@{domain}")]
    if stripped:
        keys.append(Key(f"{base}@{domain}", True))
    if local:
        keys.append(Key(local_part, True))
        if stripped:
            keys.append(Key(base, True))
    keys.append(Key(f"@{domain}", True))
    return keys


def mail_addr_find(maps: Maps, address: str, settings: SearchSettings, *,
                   local: bool = False) -> Found | None:
    """Search ``maps`` for ``address`` in mail_addr_find(3) order (``mail_addr_keys``):
    what was found, with the extension (``"+foo"``) when the key that matched had it
    stripped (``user@domain`` or ``user`` for ``user+foo@domain``), for
    propagate_unmatched_extensions; an ``@domain`` match propagates nothing. None when
    not found; raises ``TableError`` when a table fails (canonical(5), virtual(5))."""
    parsed = parse_address(address)
    split = find_extension(parsed.localpart, settings.recipient_delimiter)
    stripped: set[str] = set()
    if split.extension is not None:
        base = split.base.lower()
        stripped.add(base)
        if parsed.domain is not None:
            stripped.add(f"{base}@{fold_domain(parsed.domain)}")
    for key in mail_addr_keys(address, settings, local=local):
        value = maps.lookup(key.text, partial=key.partial)
        if value is not None:
            extension = (split.delimiter + (split.extension or "")
                         if key.text in stripped else None)
            return Found(value, extension)
    return None


def alias_keys(localpart: str, recipient_delimiter: str) -> list[Key]:
    """aliases(5) as local(8) searches them: the local part, then without extension."""
    local = localpart.lower()
    base, ext = split_extension(local, recipient_delimiter)
    keys = [Key(local)]
    if ext is not None and base != local:
        keys.append(Key(base, True))
    return keys
