"""Answers the restriction evaluator's lookups for one smtpd service, on the event loop.

Follows Postfix's smtpd_check fact sources (postconf(5) ``mynetworks``,
``mydestination``/``relay_domains`` address classes, ``local_recipient_maps``,
``reject_unknown_*`` DNS lookups, access(5) tables, ``relay_recipient_maps``,
``smtpd_sender_login_maps``). ``ServiceFacts.run(steps)``
drives one evaluation (``restrictions.lookups.Steps``): what the configuration
knows is answered at once, the DNS is awaited (each domain asked once per run), an
access table is searched in the order ``tables.search`` gives (database tables off
the event loop); a table that fails, or a bad ``mynetworks`` entry, is answered
``TableFailed`` (logged as a warning; the restriction tempfails with 451 4.3.0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from postier.config.errors import ConfigError
from postier.config.params import (
    PARENT_DOMAIN_MATCHES_SUBDOMAINS,
    RBL_REPLY_MAPS,
    RECIPIENT_DELIMITER,
    RELAY_CLIENTCERTS,
    SMTPD_NULL_ACCESS_LOOKUP_KEY,
    SMTPD_POLICY_SERVICE_MAX_IDLE,
    SMTPD_POLICY_SERVICE_MAX_TTL,
    SMTPD_POLICY_SERVICE_REQUEST_LIMIT,
    SMTPD_POLICY_SERVICE_RETRY_DELAY,
    SMTPD_POLICY_SERVICE_TIMEOUT,
    SMTPD_POLICY_SERVICE_TRY_LIMIT,
)
from postier.config.settings import Config
from postier.delivery.route import ResolveError, Resolver, Route
from postier.dns.result import DnsResult
from postier.dns.result import Lookup as DnsLookup
from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.restrictions.lists import table_arguments
from postier.rewrite.address import parse_address
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import AddressClass, Classifier, LocalRecipientCheck
from postier.smtpd.policy_client import PolicyClient, PolicyServiceSettings, PolicyUnavailable
from postier.tables import (
    Maps,
    SearchSettings,
    TableError,
    TableOpenError,
    Tables,
    access_keys,
    mail_addr_keys,
)

T = TypeVar("T")


class ServiceFacts:
    """The facts one service's restrictions see; ``domain_dns(folded) -> DnsResult``.

    ``tables``: the process's opened tables (restriction arguments are opened at
    start with ``open_access_tables``); ``search``: the access(5) search settings;
    ``warn``: where lookup failures are logged.
    """

    def __init__(
        self,
        mynetworks: MyNetworks,
        classify: Classifier,
        local_recipients: LocalRecipientCheck,
        domain_dns: Callable[[str], Awaitable[DnsResult]],
        *,
        tables: Tables | None = None,
        search: SearchSettings | None = None,
        warn: Callable[[str], None] = lambda message: None,
        sender_login_maps: Maps | None = None,
        relay_recipient_maps: Maps | None = None,
        dns_records: Callable[[str, str], Awaitable[tuple[DnsLookup, list[str]]]]
        | None = None,
        interfaces: Sequence[str] = (),
        policy: PolicyServiceSettings | None = None,
        queue_directory: str = "/",
        rewrite_listed: Callable[[str], bool | None] | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        """``sender_login_maps``: ``smtpd_sender_login_maps`` (None or empty: no maps);
        ``relay_recipient_maps`` (None or empty: every relay recipient is valid);
        ``resolver``: trivial-rewrite's resolve step (None: no address is refused for
        its route)."""
        self.resolver = resolver
        self.sender_login_maps = sender_login_maps
        #: is a recipient a key of the canonical or virtual alias maps (None: failed)?
        self.rewrite_listed = rewrite_listed
        self.relay_recipient_maps = relay_recipient_maps
        self.mynetworks = mynetworks
        self.classify = classify
        self.local_recipients = local_recipients
        self.domain_dns = domain_dns
        self.tables = tables if tables is not None else Tables()
        self.search = search or SearchSettings()
        self.warn = warn
        self._maps: dict[str, Maps] = {}
        self.extra = DnsAndPolicyFacts(dns_records, interfaces, policy or PolicyServiceSettings(),
                                       queue_directory, warn)
        for reason in mynetworks.errors:
            warn(reason)

    def access_maps(self, spec: str) -> Maps:
        """The table a restriction names, opened once (TableOpenError when it cannot be)."""
        maps = self._maps.get(spec)
        if maps is None:
            maps = self._maps[spec] = Maps(spec, [self.tables.table(spec)])
        return maps

    async def table_lookup(self, lookup: lk.TableLookup) -> lk.Answer:
        """Search one access table for ``lookup``: the value, None, or TableFailed."""
        try:
            maps = self.access_maps(lookup.table)
            return await maps.search_async(access_keys(lookup.subject, lookup.key, self.search))
        except (TableError, TableOpenError) as exc:
            self.warn(f"{lookup.table} lookup error for \"{lookup.key}\": {exc}")
            return lk.TableFailed(str(exc))

    def answer_now(self, lookup: lk.Lookup) -> lk.Answer:
        """The answer to a lookup the configuration holds (all but DNS)."""
        match lookup:
            case lk.InMyNetworks(ip=ip):
                inside = self.mynetworks.lookup(ip)
                if inside is None:
                    self.warn(f"mynetworks: cannot decide for {ip}: a bad entry or a failed "
                              "table comes first")
                    return lk.TableFailed("mynetworks")
                return inside
            case lk.AddressClassOf(domain=domain):
                return self.address_class(domain)
            case lk.LocalRecipient(address=address):
                return self.known_recipient(address)
            case lk.InetInterface(ip=ip):
                return self.extra.is_interface(ip)
            case (lk.TableLookup() | lk.DomainDns() | lk.SenderLogins() | lk.RelayRecipient()
                  | lk.DnsRecords() | lk.PolicyQuery() | lk.RecipientRoute()):
                raise AssertionError("tables, DNS and policy services are answered by run()")

    def address_class(self, domain: str) -> AddressClass | lk.TableFailed:
        """The class of ``domain``, or TableFailed (logged) when a ``mydestination`` or
        ``relay_domains`` table cannot answer (Postfix: 451 4.3.0)."""
        try:
            return self.classify(domain)
        except TableError as exc:
            self.warn(f"{exc}: lookup error for \"{domain}\"")
            return lk.TableFailed(str(exc))

    def known_recipient(self, address: str) -> bool | None:
        """Postfix's check_rcpt_maps for the local and virtual alias classes: a recipient
        listed in the canonical or virtual alias maps is known; else, in a virtual alias
        domain, unknown; else ``local_recipient_maps`` decides. None: a table failed."""
        if self.rewrite_listed is not None:
            listed = self.rewrite_listed(address)
            if listed is None:
                self.warn(f"recipient lookup of {address} in the canonical or virtual "
                          "alias maps failed")
                return None
            if listed:
                return True
        cls = self.address_class(parse_address(address).domain or "")
        if isinstance(cls, lk.TableFailed):
            return None
        if cls is AddressClass.VIRTUAL_ALIAS:
            return False
        return self.local_recipients(address)

    async def sender_logins(self, sender: str) -> tuple[str, ...] | lk.TableFailed | None:
        """The logins that own ``sender`` in smtpd_sender_login_maps, searched in
        mail_addr_find(3) order (the value: logins separated by commas or spaces);
        ``()`` when in no map, None when there are no maps, TableFailed (logged)."""
        maps = self.sender_login_maps
        if not maps:
            return None
        domain = parse_address(sender).domain or ""
        cls = self.address_class(domain)
        if isinstance(cls, lk.TableFailed):
            return cls
        local = cls is AddressClass.LOCAL
        try:
            value = await maps.search_async(mail_addr_keys(sender, self.search, local=local))
        except TableError as exc:
            self.warn(f"lookup error for \"{sender}\": {exc}")
            return lk.TableFailed(str(exc))
        if value is None:
            return ()
        return tuple(v for v in value.replace(",", " ").split() if v)

    async def is_relay_recipient(self, address: str) -> bool | None:
        """Is ``address`` in relay_recipient_maps (True without maps; None when a table
        failed, logged)? Searched in mail_addr_find(3) order, any value counts."""
        maps = self.relay_recipient_maps
        if not maps:
            return True
        try:
            return await maps.search_async(mail_addr_keys(address, self.search)) is not None
        except TableError as exc:
            self.warn(f"lookup error for \"{address}\": {exc}")
            return None

    async def recipient_route(self, address: str) -> Route | lk.TableFailed | None:
        """The route of ``address`` as qmgr will find it (``delivery.route.Resolver``);
        None when there is no resolver or cleanup will rewrite the address (listed in
        the canonical or virtual alias maps); TableFailed (logged) when a table fails."""
        if self.resolver is None:
            return None
        if self.rewrite_listed is not None:
            listed = self.rewrite_listed(address)
            if listed is None:
                self.warn(f"recipient lookup of {address} in the canonical or virtual "
                          "alias maps failed")
                return lk.TableFailed(address)
            if listed:
                return None
        try:
            return await self.resolver.resolve(address)
        except ResolveError as exc:
            self.warn(f"{exc.source} lookup error for \"{address}\": {exc.error}")
            return lk.TableFailed(str(exc))

    async def run(self, steps: lk.Steps[T]) -> T:
        """Drive ``steps`` to its result, answering each lookup as it comes."""
        dns: dict[str, DnsResult] = {}
        reply: lk.Answer = None
        while True:
            try:
                lookup = steps.send(reply)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(lookup, lk.DomainDns):
                known = dns.get(lookup.domain)
                if known is None:
                    known = dns[lookup.domain] = await self.domain_dns(lookup.domain)
                reply = known
            elif isinstance(lookup, lk.TableLookup):
                reply = await self.table_lookup(lookup)
            elif isinstance(lookup, lk.SenderLogins):
                reply = await self.sender_logins(lookup.sender)
            elif isinstance(lookup, lk.RelayRecipient):
                reply = await self.is_relay_recipient(lookup.address)
            elif isinstance(lookup, lk.RecipientRoute):
                reply = await self.recipient_route(lookup.address)
            elif isinstance(lookup, lk.DnsRecords | lk.PolicyQuery):
                reply = await self.extra.answer(lookup)
            else:
                reply = self.answer_now(lookup)


class DnsAndPolicyFacts:
    """The answers that need the network: DNS records (check_*_{a,mx,ns}_access, the
    DNS lists) and policy services (one ``PolicyClient`` per service, its connection reused)."""

    def __init__(self, dns_records: Callable[[str, str], Awaitable[tuple[DnsLookup, list[str]]]]
                 | None, interfaces: Sequence[str], policy: PolicyServiceSettings,
                 queue_directory: str, warn: Callable[[str], None]) -> None:
        self.dns_records = dns_records
        self.interfaces = frozenset(interfaces)
        self.policy = policy
        self.queue_directory = queue_directory
        self.warn = warn
        self.clients: dict[str, PolicyClient] = {}

    def is_interface(self, ip: str) -> bool:
        """Is ``ip`` one of this host's addresses (permit_inet_interfaces)?"""
        return ip in self.interfaces or ip.removeprefix("::ffff:") in self.interfaces

    async def records(self, name: str, rdtype: str) -> tuple[str, ...] | lk.TableFailed | None:
        """``DnsRecords``' answer: the records, () (no such records), None (no such name),
        TableFailed (no definitive answer)."""
        if self.dns_records is None:
            return lk.TableFailed("no resolver")
        lookup, texts = await self.dns_records(name, rdtype)
        if lookup is DnsLookup.FOUND:
            return tuple(texts)
        if lookup is DnsLookup.NO_DATA:
            return ()
        if lookup is DnsLookup.NOT_FOUND:
            return None
        self.warn(f"{name}: {rdtype} lookup error: no definitive answer")
        return lk.TableFailed(f"{name}/{rdtype}")

    async def ask_policy(self, service: str, attributes: tuple[tuple[str, str], ...]
                         ) -> str | lk.TableFailed:
        client = self.clients.get(service)
        if client is None:
            client = self.clients[service] = PolicyClient(service, self.policy,
                                                          self.queue_directory)
        try:
            return await client.ask(attributes)
        except PolicyUnavailable as exc:
            self.warn(str(exc))
            return lk.TableFailed(str(exc))

    async def answer(self, lookup: lk.DnsRecords | lk.PolicyQuery) -> lk.Answer:
        if isinstance(lookup, lk.DnsRecords):
            return await self.records(lookup.name, lookup.rdtype)
        return await self.ask_policy(lookup.service, lookup.attributes)


def policy_settings(cfg: Config) -> PolicyServiceSettings:
    """The ``smtpd_policy_service_*`` parameters of a service."""
    return PolicyServiceSettings(
        timeout=cfg[SMTPD_POLICY_SERVICE_TIMEOUT],
        max_idle=cfg[SMTPD_POLICY_SERVICE_MAX_IDLE],
        max_ttl=cfg[SMTPD_POLICY_SERVICE_MAX_TTL],
        try_limit=cfg[SMTPD_POLICY_SERVICE_TRY_LIMIT],
        retry_delay=cfg[SMTPD_POLICY_SERVICE_RETRY_DELAY],
        request_limit=cfg[SMTPD_POLICY_SERVICE_REQUEST_LIMIT],
    )


def access_search(cfg: Config) -> SearchSettings:
    """The access(5) search settings of a service (``recipient_delimiter``,
    ``parent_domain_matches_subdomains`` for ``smtpd_access_maps``,
    ``smtpd_null_access_lookup_key``)."""
    return SearchSettings(
        recipient_delimiter=cfg[RECIPIENT_DELIMITER],
        parent_style="smtpd_access_maps" in cfg[PARENT_DOMAIN_MATCHES_SUBDOMAINS],
        null_key=cfg[SMTPD_NULL_ACCESS_LOOKUP_KEY],
    )


def read_text_file(path: str) -> str:
    """A ``/file/name`` of a list parameter (mynetworks); OSError when unreadable."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def open_access_tables(cfg: Config, lists: Mapping[rs.Stage, Sequence[rs.RestrictionCall]],
                       facts: ServiceFacts,
                       classes: Mapping[str, Sequence[rs.RestrictionCall]] | None = None
                       ) -> None:
    """Open every table the restriction lists, the restriction classes,
    ``rbl_reply_maps`` and ``relay_clientcerts`` name, now (a ConfigError naming main.cf's
    line and the parameter when one cannot be: never a silent "not found" later)."""
    for param, call in table_arguments(lists, classes or {}):
        assert call.arg is not None
        try:
            facts.access_maps(call.arg)
        except TableOpenError as exc:
            file, line = cfg.location(param)
            raise ConfigError(f"{call.name} {call.arg}: {exc}", file=file, line=line,
                              param=param) from None
    for maps_param in (RBL_REPLY_MAPS, RELAY_CLIENTCERTS):
        for spec in cfg[maps_param]:
            try:
                facts.access_maps(spec)
            except TableOpenError as exc:
                file, line = cfg.location(maps_param.name)
                raise ConfigError(f"{spec}: {exc}", file=file, line=line,
                                  param=maps_param.name) from None
