"""What the restriction evaluator asks its shell: lookups, their answers, a sync driver (pure).

Follows the facts Postfix's smtpd_check consults (smtpd(8), postconf(5)
``mynetworks``, ``local_recipient_maps``, ``reject_unknown_*``, access(5)). The
evaluator is a generator (``Steps``): it yields one ``Lookup`` and is resumed with
its answer, so a shell can answer from memory, from the DNS or later from a table or
policy service without a second pass over the lists. ``run(steps, facts)`` drives it
with a synchronous ``Facts`` (tests, and shells whose answers are all at hand); an
asynchronous shell writes the same loop around ``await`` (see ``smtpd.facts``).
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from postier.delivery.route import Route
from postier.dns.result import DnsResult
from postier.rewrite.resolve import AddressClass
from postier.tables.base import TableError
from postier.tables.search import Subject, access_keys

T = TypeVar("T")


class Ask(enum.Enum):
    """The kinds of fact a restriction may ask for (what a restriction row declares)."""

    MYNETWORKS = "mynetworks"
    ADDRESS_CLASS = "address class"
    LOCAL_RECIPIENT = "local recipient"
    DNS = "dns"
    TABLE = "table"
    SENDER_LOGINS = "sender logins"
    RELAY_RECIPIENT = "relay recipient"
    DNS_RECORDS = "dns records"
    INTERFACE = "inet interface"
    POLICY = "policy service"
    ROUTE = "route"


@dataclass(frozen=True)
class InMyNetworks:
    """Is the client address ``ip`` in ``mynetworks``? Answer: bool, or ``TableFailed``
    (a bad entry or a failed table was reached before a match)."""

    ip: str
    ask: ClassVar[Ask] = Ask.MYNETWORKS


@dataclass(frozen=True)
class AddressClassOf:
    """The address class of ``domain`` ("" for an unqualified address). Answer:
    AddressClass, or ``TableFailed`` (a ``mydestination``/``relay_domains`` table)."""

    domain: str
    ask: ClassVar[Ask] = Ask.ADDRESS_CLASS


@dataclass(frozen=True)
class LocalRecipient:
    """Is ``address`` in ``local_recipient_maps``? Answer: bool, or None (table failed)."""

    address: str
    ask: ClassVar[Ask] = Ask.LOCAL_RECIPIENT


@dataclass(frozen=True)
class RecipientRoute:
    """Where trivial-rewrite(8) sends ``address`` (``delivery.route.Route``: transport
    and next hop), for an address cleanup will not rewrite. Answer: a Route; None when
    the canonical or virtual alias maps list the address (cleanup rewrites it first, so
    Postfix's check_rcpt_maps asks no more); TableFailed (a table failed, logged)."""

    address: str
    ask: ClassVar[Ask] = Ask.ROUTE


@dataclass(frozen=True)
class RelayRecipient:
    """Is ``address`` (of the relay class) in ``relay_recipient_maps``? Answer: bool
    (True when no maps are configured: every recipient is valid), or None (table
    failed)."""

    address: str
    ask: ClassVar[Ask] = Ask.RELAY_RECIPIENT


@dataclass(frozen=True)
class DomainDns:
    """Has ``domain`` (folded: lower case, no trailing dot) an MX, A or AAAA record?
    Answer: DnsResult."""

    domain: str
    ask: ClassVar[Ask] = Ask.DNS


@dataclass(frozen=True)
class TableLookup:
    """``key`` in the ``type:name`` table, searched as access(5) searches a ``subject``
    (``tables.search``: a hostname and its parents, a client address and its prefixes,
    an envelope address, or the whole string). Answer: the value of the first key
    found, None (not found), or ``TableFailed``."""

    table: str
    key: str
    subject: Subject = Subject.WHOLE
    ask: ClassVar[Ask] = Ask.TABLE


@dataclass(frozen=True)
class TableFailed:
    """A table (or a ``mynetworks`` entry) could not answer: the restriction tempfails
    with 451 4.3.0, never accepts. ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True)
class SenderLogins:
    """The SASL logins that own ``sender`` in ``smtpd_sender_login_maps``. Answer: a
    tuple of logins (``()``: the sender is in no map), None (no maps configured), or
    ``TableFailed``."""

    sender: str
    ask: ClassVar[Ask] = Ask.SENDER_LOGINS


@dataclass(frozen=True)
class DnsRecords:
    """The ``rdtype`` records (``A``, ``AAAA``, ``MX``, ``NS``, ``TXT``) of ``name``, as
    text (MX: the exchange host only, no preference; TXT: the strings joined). Answer: a
    tuple (``()``: the name exists without such records), None (no such name), or
    ``TableFailed`` (no definitive answer: timeout, SERVFAIL)."""

    name: str
    rdtype: str
    ask: ClassVar[Ask] = Ask.DNS_RECORDS


@dataclass(frozen=True)
class InetInterface:
    """Is ``ip`` one of this server's own addresses (``inet_interfaces``)? Answer: bool."""

    ip: str
    ask: ClassVar[Ask] = Ask.INTERFACE


@dataclass(frozen=True)
class PolicyQuery:
    """One request to the policy service ``service`` (``unix:/path`` or
    ``inet:host:port``): ``attributes`` as (name, value) pairs, in order (SMTPD_POLICY_README).
    Answer: the ``action=`` value the server gave, or ``TableFailed`` (no usable answer:
    the restriction applies ``smtpd_policy_service_default_action``)."""

    service: str
    attributes: tuple[tuple[str, str], ...]
    ask: ClassVar[Ask] = Ask.POLICY


Lookup = (InMyNetworks | AddressClassOf | LocalRecipient | DomainDns | TableLookup
          | SenderLogins | RelayRecipient | DnsRecords | InetInterface | PolicyQuery
          | RecipientRoute)
Answer = bool | AddressClass | DnsResult | str | tuple[str, ...] | None | TableFailed | Route

#: An evaluation in progress: yields lookups, is sent their answers, returns a ``T``.
Steps = Generator[Lookup, Answer, T]


class Facts(Protocol):
    """A synchronous answerer of every lookup (one method per ``Lookup`` type)."""

    def mynetworks(self, ip: str) -> bool: ...
    def address_class(self, domain: str) -> AddressClass | TableFailed: ...
    def is_local_recipient(self, address: str) -> bool | None: ...
    def domain_dns(self, domain: str) -> DnsResult: ...
    def lookup(self, table: str, key: str) -> str | None:
        """One key of a table (the search order is applied by ``answer``); may raise
        ``tables.TableError``."""
        ...
    def sender_logins(self, sender: str) -> tuple[str, ...] | None: ...
    def is_relay_recipient(self, address: str) -> bool | None: ...
    def recipient_route(self, address: str) -> Route | TableFailed | None: ...
    def dns_records(self, name: str, rdtype: str) -> tuple[str, ...] | TableFailed | None: ...
    def inet_interface(self, ip: str) -> bool: ...
    def policy(self, service: str, attributes: tuple[tuple[str, str], ...]
               ) -> str | TableFailed: ...


def answer(facts: Facts, lookup: Lookup) -> Answer:
    """The answer ``facts`` gives to one lookup."""
    match lookup:
        case InMyNetworks(ip=ip):
            return facts.mynetworks(ip)
        case AddressClassOf(domain=domain):
            return facts.address_class(domain)
        case LocalRecipient(address=address):
            return facts.is_local_recipient(address)
        case DomainDns(domain=domain):
            return facts.domain_dns(domain)
        case TableLookup(table=table, key=key, subject=subject):
            try:
                for k in access_keys(subject, key):
                    value = facts.lookup(table, k.text)
                    if value is not None:
                        return value
            except TableError as exc:
                return TableFailed(str(exc))
            return None
        case SenderLogins(sender=sender):
            return facts.sender_logins(sender)
        case RelayRecipient(address=address):
            return facts.is_relay_recipient(address)
        case RecipientRoute(address=address):
            return facts.recipient_route(address)
        case DnsRecords(name=name, rdtype=rdtype):
            return facts.dns_records(name, rdtype)
        case InetInterface(ip=ip):
            return facts.inet_interface(ip)
        case PolicyQuery(service=service, attributes=attributes):
            return facts.policy(service, attributes)


def run(steps: Steps[T], facts: Facts) -> T:
    """Drive an evaluation to its end, answering every lookup from ``facts``."""
    reply: Answer = None
    while True:
        try:
            lookup = steps.send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result
        reply = answer(facts, lookup)


# --- typed asks, for the restrictions (``x = yield from ask_…(…)``) ----------------------


def ask_mynetworks(ip: str) -> Steps[bool | TableFailed]:
    got = yield InMyNetworks(ip)
    assert isinstance(got, bool | TableFailed), got
    return got


def ask_address_class(domain: str) -> Steps[AddressClass | TableFailed]:
    got = yield AddressClassOf(domain)
    assert isinstance(got, AddressClass | TableFailed), got
    return got


def ask_local_recipient(address: str) -> Steps[bool | None]:
    got = yield LocalRecipient(address)
    assert got is None or isinstance(got, bool), got
    return got


def ask_domain_dns(domain: str) -> Steps[DnsResult]:
    got = yield DomainDns(domain)
    assert isinstance(got, DnsResult), got
    return got


def ask_table(table: str, key: str, subject: Subject = Subject.WHOLE
              ) -> Steps[str | TableFailed | None]:
    got = yield TableLookup(table, key, subject)
    assert got is None or isinstance(got, str | TableFailed), got
    return got


def ask_sender_logins(sender: str) -> Steps[tuple[str, ...] | TableFailed | None]:
    got = yield SenderLogins(sender)
    assert got is None or isinstance(got, tuple | TableFailed), got
    return got


def ask_relay_recipient(address: str) -> Steps[bool | None]:
    got = yield RelayRecipient(address)
    assert got is None or isinstance(got, bool), got
    return got


def ask_route(address: str) -> Steps[Route | TableFailed | None]:
    got = yield RecipientRoute(address)
    assert got is None or isinstance(got, Route | TableFailed), got
    return got


def ask_dns_records(name: str, rdtype: str) -> Steps[tuple[str, ...] | TableFailed | None]:
    got = yield DnsRecords(name, rdtype)
    assert got is None or isinstance(got, tuple | TableFailed), got
    return got


def ask_inet_interface(ip: str) -> Steps[bool]:
    got = yield InetInterface(ip)
    assert isinstance(got, bool), got
    return got


def ask_policy(service: str, attributes: tuple[tuple[str, str], ...]
               ) -> Steps[str | TableFailed]:
    got = yield PolicyQuery(service, attributes)
    assert isinstance(got, str | TableFailed), got
    return got
