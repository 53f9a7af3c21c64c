"""trivial-rewrite(8)'s resolve step: the transport and next hop of an address.

Follows Postfix's trivial-rewrite(8) and transport(5): an address's class
(``rewrite.resolve.AddressClass``) picks ``local_transport``, ``relay_transport`` or
``default_transport`` (``relayhost`` as the next hop of the relay and default classes),
and a ``transport_maps`` entry overrides them. ``route`` is the pure core; ``Resolver``
adds the table lookups, for qmgr(8) (where a recipient goes) and smtpd(8) (an address
that resolves to the ``error`` transport is rejected at RCPT, as smtpd_check's
check_rcpt_maps does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from postier.config.params import (
    DEFAULT_TRANSPORT,
    LOCAL_TRANSPORT,
    PARENT_DOMAIN_MATCHES_SUBDOMAINS,
    RECIPIENT_DELIMITER,
    RELAY_TRANSPORT,
    RELAYHOST,
    TRANSPORT_MAPS,
    ParamSource,
)
from postier.config.settings import Config
from postier.rewrite.resolve import AddressClass
from postier.tables.base import TableError
from postier.tables.maps import Maps
from postier.tables.registry import Tables
from postier.tables.search import SearchSettings, parent_style, transport_keys


@dataclass(frozen=True, order=True)
class Route:
    """Where a recipient goes: a transport name and its next hop (domain, host or text)."""

    transport: str
    nexthop: str


def parse_transport(value: str) -> tuple[str, str]:
    """``transport:nexthop`` as transport(5) and ``*_transport`` write it: ``("smtp", "")``
    for ``smtp``, ``("", "[h]:25")`` for ``:[h]:25``, ``("error", "5.1.1 text")``."""
    transport, _, nexthop = value.strip().partition(":")
    return transport.strip(), nexthop.strip()


@dataclass(frozen=True)
class Routing:
    """trivial-rewrite(8)'s routing settings: each address class's transport and next
    hop (``""``: the recipient's domain), and ``relayhost`` (the next hop of the default
    and relay classes when their transport names none)."""

    local: tuple[str, str] = ("local", "")
    default: tuple[str, str] = ("smtp", "")
    relay: tuple[str, str] = ("relay", "")
    relayhost: str = ""

    @classmethod
    def from_config(cls, cfg: ParamSource) -> Routing:
        """From ``local_transport``, ``default_transport``, ``relay_transport``,
        ``relayhost`` (ConfigError on a bad value)."""
        return cls(
            local=parse_transport(cfg[LOCAL_TRANSPORT]),
            default=parse_transport(cfg[DEFAULT_TRANSPORT]),
            relay=parse_transport(cfg[RELAY_TRANSPORT]),
            relayhost=cfg[RELAYHOST].strip(),
        )


def route(
    address: str, address_class: AddressClass, routing: Routing,
    table_entry: str | None = None,
) -> Route:
    """The route of ``address``, as trivial-rewrite(8) resolves it.

    The VIRTUAL_ALIAS class (an address no ``virtual_alias_maps`` entry expanded)
    goes to ``error`` with ``5.1.1 User unknown in virtual alias table``; the LOCAL class
    goes to ``local_transport``; RELAY (``relay_domains``) to
    ``relay_transport``; every other class to ``default_transport``. A transport's own
    next hop wins; else, for the relay and default classes, ``relayhost``; else the
    recipient's domain (lower case). ``table_entry`` is where ``transport_maps`` plugs
    in: the caller's lookup result, as transport(5) and trivial-rewrite(8) apply it:
    ``:nexthop`` keeps the class's transport with that next hop (``:`` alone changes
    nothing); ``transport:nexthop`` replaces both; ``transport`` or ``transport:``
    replaces the transport and resets the next hop to the recipient's domain
    (``relayhost`` no longer applies), or, for ``error``/``retry``, to the text
    ``Address is undeliverable``.
    """
    domain = address.rpartition("@")[2].lower().rstrip(".")
    if address_class is AddressClass.VIRTUAL_ALIAS and table_entry is None:
        # left in a virtual alias domain after cleanup's expansion (trivial-rewrite(8))
        return Route("error", VIRTUAL_ALIAS_UNKNOWN)
    if address_class is AddressClass.LOCAL:
        transport, nexthop = routing.local
        fallback = domain
    else:
        transport, nexthop = routing.relay if address_class is AddressClass.RELAY \
            else routing.default
        fallback = routing.relayhost or domain
    if table_entry is not None:
        t, n = parse_transport(table_entry)
        if not t:
            nexthop = n or nexthop
        else:
            transport = t
            if n:
                nexthop = n
            elif t in ERROR_TRANSPORTS:
                nexthop = UNDELIVERABLE
            else:
                nexthop, fallback = "", domain
    return Route(transport, nexthop or fallback)


#: Transports whose next hop is a reason text (error(8) bounces, ``retry`` defers).
ERROR_TRANSPORTS = frozenset({"error", "retry"})
#: trivial-rewrite(8)'s reason when a transport_maps entry names one without text.
UNDELIVERABLE = "Address is undeliverable"
#: error(8)'s reason for an address of a virtual alias domain that no entry expanded.
VIRTUAL_ALIAS_UNKNOWN = "5.1.1 User unknown in virtual alias table"




class ResolveError(Exception):
    """A table the resolve step needs could not answer; ``source`` names it
    (``"transport_maps"`` or ``"address class"``), ``error`` is the table's error."""

    def __init__(self, source: str, error: Exception) -> None:
        super().__init__(f"{source} lookup error: {error}")
        self.source = source
        self.error = error


@dataclass(frozen=True)
class Resolver:
    """``route`` with its lookups: ``classify(domain) -> AddressClass`` (TableError when
    a ``mydestination``/``relay_domains`` table fails), ``transport_maps`` (None or
    empty: none), searched in transport(5) order with ``search``."""

    classify: Callable[[str], AddressClass]
    routing: Routing
    transport_maps: Maps | None = None
    search: SearchSettings = field(default_factory=SearchSettings)

    @classmethod
    def from_config(cls, cfg: Config, tables: Tables,
                    classify: Callable[[str], AddressClass]) -> Resolver:
        """The resolver main.cf describes: ``Routing.from_config``, ``transport_maps``
        opened in ``tables`` and searched with ``recipient_delimiter`` and
        ``parent_domain_matches_subdomains`` (ConfigError on a bad value)."""
        return cls(classify, Routing.from_config(cfg), tables.for_param(cfg, TRANSPORT_MAPS),
                   SearchSettings(recipient_delimiter=cfg[RECIPIENT_DELIMITER],
                                  parent_style=parent_style(
                                      cfg[PARENT_DOMAIN_MATCHES_SUBDOMAINS],
                                      "transport_maps")))

    async def resolve(self, address: str) -> Route:
        """The route of ``address`` (``user@domain``, internal form). Raises
        ResolveError when a table cannot answer (database tables off the event loop)."""
        entry = None
        if self.transport_maps:
            try:
                entry = await self.transport_maps.search_async(
                    transport_keys(address, self.search))
            except TableError as exc:
                raise ResolveError("transport_maps", exc) from exc
        try:
            return route(address, self.classify(address.rpartition("@")[2]), self.routing,
                         entry)
        except TableError as exc:
            raise ResolveError("address class", exc) from exc
