"""Address classes: is a domain ours (local, virtual), relayed for, or somebody else's (pure).

Follows Postfix's ADDRESS_CLASS_README and trivial-rewrite(8): the local class is
``mydestination`` plus address literals of ``inet_interfaces``/``proxy_interfaces``;
then the virtual alias class (``virtual_alias_domains``: names, and the domains that
are keys of its ``type:table`` entries, by default those of ``virtual_alias_maps``,
through ``Classifier.virtual_alias_tables``), the virtual mailbox class
(``virtual_mailbox_domains``), the relay class (``relay_domains``, whose entries
also match subdomains while ``parent_domain_matches_subdomains`` lists
relay_domains, Postfix's default), and the default class for everything else.
A pattern ``.example.com`` always matches subdomains. Domains compare
case-insensitively, without a trailing dot. The caller expands ``$myhostname``
etc. before calling. ``classify`` itself matches names only; a ``/file/name`` entry
(patterns, one or more per line, ``#`` comments) and a ``type:table`` entry (a domain
is listed when it, or a parent domain as the list's parent matching says, is a key;
the value is ignored) are matched by ``Classifier`` through ``match_domain_list`` over
the list as ``tables.domainlist.domain_lists`` opened it at start: a table that
cannot answer raises its ``tables.TableError`` to the caller (smtpd: ``451 4.3.0``,
qmgr and local: defer), never "not ours".

``LocalRecipientCheck`` is the one answer to "is this a local recipient?":
``local_recipient_maps`` for the local class (postconf(5)): lookups of the
localpart, then of the localpart without its ``recipient_delimiter`` extension,
case-folded; ``postmaster`` is always a local recipient (RFC 5321 section 4.5.1).
The tables behind it are a ``UserTable``; ``LocalUsers`` is Postfix's default
``proxy:unix:passwd.byname $alias_maps`` over any passwd table and alias map
(``tables.passwd.local_recipient_check`` wires the real ones).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from postier.config.params import (
    ALLOW_PERCENT_HACK,
    MYDESTINATION,
    RELAY_DOMAINS,
    SWAP_BANGPATH,
    VIRTUAL_ALIAS_DOMAINS,
    ParamSource,
)
from postier.rewrite.address import (
    fold_domain,
    literal_address,
    parse_address,
    resolve_routing,
)
from postier.rewrite.extension import split_extension


class AddressClass(enum.Enum):
    LOCAL = "local"
    VIRTUAL_ALIAS = "virtual_alias"
    VIRTUAL_MAILBOX = "virtual_mailbox"
    RELAY = "relay"
    DEFAULT = "default"

    @property
    def is_final(self) -> bool:
        """Postfix is the final destination (local and virtual classes)."""
        return self in (AddressClass.LOCAL, AddressClass.VIRTUAL_ALIAS,
                        AddressClass.VIRTUAL_MAILBOX)

    @property
    def is_authorized(self) -> bool:
        """A destination reject_unauth_destination lets through (all but the default class)."""
        return self is not AddressClass.DEFAULT


def is_table_entry(entry: str) -> bool:
    """Is a domain list's entry a ``type:table`` or a ``/file/name``, not a domain?"""
    kind, colon, _ = entry.partition(":")
    return entry.startswith("/") or (bool(colon) and kind[:1].isalpha() and "." not in kind)


_is_table = is_table_entry


class DomainKeyTable(Protocol):
    """One ``type:table`` entry of a domain list, asked for one folded key: is it a key?
    Raises the table's error (``tables.TableError``) when the table cannot answer."""

    def __call__(self, key: str, /) -> bool: ...


@dataclass(frozen=True)
class TableEntry:
    """A domain list's ``type:table`` entry: its specification, as written, and the
    opened table."""

    spec: str
    contains: DomainKeyTable


#: One entry of an opened domain list: a name pattern, or a table.
DomainEntry = str | TableEntry


def table_keys(domain: str, *, parent_matches: bool) -> list[str]:
    """The keys a domain list's table is asked for ``domain`` (folded), in order: the
    domain, then each parent domain (``sub.example.com``: ``example.com``, ``com``)
    with ``parent_matches``, else each parent with a leading dot (``.example.com``,
    ``.com``), as Postfix's match_hostname."""
    keys = [domain]
    labels = domain.split(".")
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        keys.append(parent if parent_matches else "." + parent)
    return keys


def match_domain_list(domain: str, entries: Sequence[DomainEntry], *,
                      parent_matches: bool) -> bool:
    """Does ``domain`` match the opened domain list ``entries``, scanned in order?

    A name pattern matches as in ``domain_matches``; a ``TableEntry`` when one of
    ``table_keys`` is a key of it. A table that cannot answer raises its error
    (``tables.TableError``): the scan stops there, as Postfix's match_list.
    """
    d = fold_domain(domain)
    if not d:
        return False
    for entry in entries:
        if isinstance(entry, TableEntry):
            if any(entry.contains(key) for key in table_keys(d, parent_matches=parent_matches)):
                return True
        elif domain_matches(d, (entry,), parent_matches=parent_matches):
            return True
    return False


def file_patterns(text: str) -> list[str]:
    """The patterns of a domain list's ``/file/name`` entry: words separated by
    whitespace or commas, one or more per line; ``#`` starts a comment line."""
    words: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        words.extend(w for w in line.replace(",", " ").split() if w)
    return words


def domain_matches(domain: str, patterns: Sequence[str], *, parent_matches: bool) -> bool:
    """Does ``domain`` match one of the domain patterns?

    ``example.com`` matches itself and, with ``parent_matches``, its subdomains;
    ``.example.com`` matches subdomains only. Table entries are skipped.
    """
    d = fold_domain(domain)
    if not d:
        return False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or _is_table(pattern):
            continue
        p = fold_domain(pattern)
        if p.startswith("."):
            if d.endswith(p):
                return True
        elif d == p or (parent_matches and d.endswith("." + p)):
            return True
    return False


def _same_ip(a: str, b: str) -> bool:
    try:
        ia = ipaddress.ip_address(a.strip("[]").split("%", 1)[0])
        ib = ipaddress.ip_address(b.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ia, ipaddress.IPv6Address) and ia.ipv4_mapped is not None:
        ia = ia.ipv4_mapped
    if isinstance(ib, ipaddress.IPv6Address) and ib.ipv4_mapped is not None:
        ib = ib.ipv4_mapped
    return ia == ib


def classify(
    domain: str,
    *,
    mydestination: Sequence[str],
    inet_interface_addrs: Sequence[str],
    proxy_interfaces: Sequence[str],
    relay_domains: Sequence[str],
    virtual_alias_domains: Sequence[str] = (),
    virtual_mailbox_domains: Sequence[str] = (),
    relay_domains_match_subdomains: bool = True,
) -> AddressClass:
    """The address class of a recipient domain (ADDRESS_CLASS_README).

    An empty domain (an unqualified address, which gets ``$myorigin``) is local.
    An address literal is local when it holds one of our interface or proxy
    addresses (or is listed in mydestination), else default.
    """
    d = fold_domain(domain)
    if not d:
        return AddressClass.LOCAL
    if d.startswith("["):
        ip = literal_address(d)
        if ip is None:
            return AddressClass.DEFAULT
        if any(_same_ip(ip, a) for a in (*inet_interface_addrs, *proxy_interfaces)):
            return AddressClass.LOCAL
        if any(e.strip().startswith("[") and _same_ip(ip, e.strip()) for e in mydestination):
            return AddressClass.LOCAL
        return AddressClass.DEFAULT
    if domain_matches(d, mydestination, parent_matches=False):
        return AddressClass.LOCAL
    if domain_matches(d, virtual_alias_domains, parent_matches=False):
        return AddressClass.VIRTUAL_ALIAS
    if domain_matches(d, virtual_mailbox_domains, parent_matches=False):
        return AddressClass.VIRTUAL_MAILBOX
    if domain_matches(d, relay_domains, parent_matches=relay_domains_match_subdomains):
        return AddressClass.RELAY
    return AddressClass.DEFAULT


class DomainTable(Protocol):
    """Tables asked for one folded domain: is it a key of one of them?"""

    def __call__(self, domain: str, /) -> bool: ...


class UserTable(Protocol):
    """A table of local users, asked for one lower-case localpart: True (listed), False
    (not listed), or None (the table could not be read)."""

    def __call__(self, name: str, /) -> bool | None: ...


class AliasLookup(Protocol):
    """An alias map (``tables.aliases.AliasMaps``): a name's values, or None."""

    def lookup(self, name: str) -> list[str] | None: ...


@dataclass(frozen=True)
class LocalUsers:
    """``local_recipient_maps = proxy:unix:passwd.byname $alias_maps`` (Postfix's default):
    a name listed in the aliases or in passwd. Implements ``UserTable``."""

    passwd: UserTable
    aliases: AliasLookup

    def __call__(self, name: str, /) -> bool | None:
        if self.aliases.lookup(name) is not None:
            return True
        return self.passwd(name)


@dataclass(frozen=True)
class LocalRecipientCheck:
    """``local_recipient_maps`` for addresses in the local class.

    ``is_local_user(name)`` answers for one lower-case localpart (usually
    ``LocalUsers``): True, False, or None when a table could not be read (the
    restriction then tempfails). An empty ``local_recipient_maps`` is
    ``is_local_user = lambda name: True``.
    """

    is_local_user: UserTable
    recipient_delimiter: str = ""

    def candidates(self, localpart: str) -> list[str]:
        """The names looked up, in order: ``user+ext`` then ``user`` (lower case)."""
        folded = localpart.lower()
        names = [folded]
        base, ext = split_extension(folded, self.recipient_delimiter)
        if ext is not None and base not in names:
            names.append(base)
        return names

    def check_localpart(self, localpart: str) -> bool | None:
        names = self.candidates(localpart)
        if "postmaster" in names:
            return True
        unknown = False
        for name in names:
            answer = self.is_local_user(name)
            if answer:
                return True
            if answer is None:
                unknown = True
        return None if unknown else False

    def __call__(self, address: str) -> bool | None:
        """Is ``address`` (``user@domain`` or ``user``) a known local recipient?"""
        return self.check_localpart(parse_address(address).localpart)


@dataclass(frozen=True)
class Classifier:
    """``classify`` with one configuration's domain lists, for every process to share.

    Build it with ``Classifier.from_config(cfg, interface_addrs)``; call it with a
    domain to get its ``AddressClass``.
    """

    mydestination: tuple[str, ...]
    inet_interface_addrs: tuple[str, ...]
    relay_domains: tuple[str, ...]
    virtual_alias_domains: tuple[str, ...] = ()
    #: the ``type:table`` entries of ``virtual_alias_domains``: is a domain a key?
    virtual_alias_tables: DomainTable | None = None
    #: ``mydestination`` and ``relay_domains`` as opened (files read, tables opened:
    #: ``tables.domainlist.domain_lists``); None: their names only.
    mydestination_list: tuple[DomainEntry, ...] | None = None
    relay_domains_list: tuple[DomainEntry, ...] | None = None

    @classmethod
    def from_lists(
        cls, mydestination: Sequence[str], interface_addrs: Sequence[str],
        relay_domains: Sequence[str], virtual_alias_domains: Sequence[str] = (),
        virtual_alias_tables: DomainTable | None = None,
    ) -> Classifier:
        def norm(items: Sequence[str]) -> tuple[str, ...]:
            return tuple(d.lower().rstrip(".") for d in items)

        return cls(norm(mydestination), tuple(interface_addrs), norm(relay_domains),
                   norm(virtual_alias_domains), virtual_alias_tables)

    @classmethod
    def from_config(cls, cfg: ParamSource, interface_addrs: Sequence[str], *,
                    virtual_alias_tables: DomainTable | None = None,
                    lists: DomainLists | None = None) -> Classifier:
        """The classifier of one configuration: ``mydestination``, ``relay_domains`` and
        ``virtual_alias_domains`` from ``cfg`` (expanded), ``interface_addrs`` this
        host's addresses (``dns.resolver.local_addresses()``) for address literals;
        ``virtual_alias_tables`` answers for the table entries of
        ``virtual_alias_domains`` (``cleanup.rewrite.virtual_alias_domain_tables``;
        None: those entries are ignored); ``lists``: ``mydestination`` and
        ``relay_domains`` with their file and table entries opened
        (``tables.domainlist.domain_lists``; None: names only)."""
        made = cls.from_lists(cfg[MYDESTINATION], interface_addrs, cfg[RELAY_DOMAINS],
                              cfg[VIRTUAL_ALIAS_DOMAINS], virtual_alias_tables)
        if lists is None:
            return made
        return replace(made, mydestination_list=lists.mydestination,
                       relay_domains_list=lists.relay_domains)

    def __call__(self, domain: str) -> AddressClass:
        """The class of ``domain``; a table of ``mydestination`` or ``relay_domains``
        that cannot answer raises its error (``tables.TableError``)."""
        folded = fold_domain(domain)
        named = bool(folded) and not folded.startswith("[")
        if (named and self.mydestination_list is not None
                and match_domain_list(folded, self.mydestination_list, parent_matches=False)):
            return AddressClass.LOCAL
        found = classify(
            domain, mydestination=self.mydestination,
            inet_interface_addrs=self.inet_interface_addrs, proxy_interfaces=(),
            relay_domains=self.relay_domains, virtual_alias_domains=self.virtual_alias_domains,
        )
        if (found in (AddressClass.RELAY, AddressClass.DEFAULT) and named
                and self.virtual_alias_tables is not None and self.virtual_alias_tables(folded)):
            return AddressClass.VIRTUAL_ALIAS
        if (found is AddressClass.DEFAULT and named and self.relay_domains_list is not None
                and match_domain_list(folded, self.relay_domains_list, parent_matches=True)):
            return AddressClass.RELAY
        return found


@dataclass(frozen=True)
class DomainLists:
    """``mydestination`` and ``relay_domains`` as opened at start: names, the patterns
    of their ``/file/name`` entries, and their ``type:table`` entries, in order."""

    mydestination: tuple[DomainEntry, ...] = ()
    relay_domains: tuple[DomainEntry, ...] = ()


def routing_resolver(
    cfg: ParamSource, interface_addrs: Sequence[str], lists: DomainLists | None = None,
    table_error: type[Exception] = Exception,
) -> Callable[[str], str]:
    """trivial-rewrite(8)'s resolve step for one configuration, address -> address:
    ``rewrite.address.resolve_routing`` with the local class of ``cfg``'s
    ``mydestination`` (its files and tables too when ``lists`` is given) and
    ``interface_addrs`` literals, ``allow_percent_hack`` and ``swap_bangpath``. A domain
    whose table cannot answer is not taken as local (nothing is rewritten; the
    restrictions meet the same failure and answer 451 4.3.0); ``table_error`` is the
    error such a table raises (``tables.TableError``, which this library cannot import)."""
    classify = Classifier.from_config(cfg, interface_addrs, lists=lists)
    percent_hack, swap_bangpath = cfg[ALLOW_PERCENT_HACK], cfg[SWAP_BANGPATH]

    def is_local(domain: str) -> bool:
        try:
            return classify(domain) is AddressClass.LOCAL
        except table_error:
            return False

    def resolve(address: str) -> str:
        return resolve_routing(address, is_local, percent_hack=percent_hack,
                               swap_bangpath=swap_bangpath)

    return resolve
