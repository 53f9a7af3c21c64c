"""A scripted world for restriction tests: the tutorial's mynetworks, mydestination, users, DNS."""

from __future__ import annotations

from dataclasses import dataclass, field

from postier.delivery.route import Route, Routing, parse_transport, route
from postier.dns.result import DnsResult
from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import AddressClass, LocalRecipientCheck, classify

TUTORIAL_MYDESTINATION = ["example.com", "tintin.example.com", "localhost", "localhost.localdomain"]
TUTORIAL_MYNETWORKS = ["127.0.0.0/8", "[::1]/128"]


@dataclass
class World:
    """Implements ``rs.Facts`` from plain data."""

    networks: list[str] = field(default_factory=lambda: list(TUTORIAL_MYNETWORKS))
    mydestination: list[str] = field(default_factory=lambda: list(TUTORIAL_MYDESTINATION))
    relay_domains: list[str] = field(default_factory=list)
    interfaces: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1", "192.0.2.1"])
    users: set[str] = field(default_factory=lambda: {"alice", "bob", "root"})
    users_fail: bool = False
    delimiter: str = "+"
    dns: dict[str, DnsResult] = field(default_factory=lambda: {
        "example.net": DnsResult.HAS_ADDRESS,
        "example.org": DnsResult.HAS_ADDRESS,
        "mail.example.net": DnsResult.HAS_ADDRESS,
        "tempfail.test": DnsResult.TEMP_FAIL,
    })
    tables: dict[str, dict[str, str]] = field(default_factory=dict)
    # smtpd_sender_login_maps: sender -> owners; None: no maps configured
    sender_login_maps: dict[str, tuple[str, ...]] | None = None
    # relay_recipient_maps: the listed addresses (user@domain or @domain); None: no maps
    relay_recipients: set[str] | None = None
    relay_recipients_fail: bool = False
    # virtual_alias_domains, and the keys of virtual_alias_maps (user@domain or @domain)
    virtual_alias_domains: list[str] = field(default_factory=list)
    virtual_aliases: set[str] = field(default_factory=set)
    dns_asked: list[str] = field(default_factory=list)
    # domains whose class a mydestination/relay_domains table cannot answer
    class_fail: set[str] = field(default_factory=set)
    # DNS records by (name, type): a tuple, () no such records, or "tempfail"; a name not
    # given does not exist (None) -- but every name under list.example is listed 127.0.0.2
    records: dict[tuple[str, str], tuple[str, ...] | str] = field(default_factory=dict)
    records_asked: list[tuple[str, str]] = field(default_factory=list)
    # the policy service's actions, one per request in turn (then "DUNNO"); "fail": none
    policy_actions: list[str] = field(default_factory=list)
    policy_requests: list[dict[str, str]] = field(default_factory=list)
    # trivial-rewrite: default_transport, and transport_maps entries by domain
    default_transport: str = "smtp"
    transports: dict[str, str] = field(default_factory=dict)

    # --- rs.Facts -------------------------------------------------------------------
    def mynetworks(self, ip: str) -> bool:
        return MyNetworks.from_config(self.networks, "host", self.interfaces).match(ip)

    def address_class(self, domain: str) -> AddressClass | lk.TableFailed:
        if domain.lower() in self.class_fail:
            return lk.TableFailed(f"pgsql lookup of {domain} failed")
        return classify(
            domain, mydestination=self.mydestination, inet_interface_addrs=self.interfaces,
            proxy_interfaces=[], relay_domains=self.relay_domains,
            virtual_alias_domains=self.virtual_alias_domains,
        )

    def is_local_recipient(self, address: str) -> bool | None:
        """As smtpd's facts: listed in virtual_alias_maps, else unknown in a virtual alias
        domain, else local_recipient_maps."""
        domain = address.rpartition("@")[2].lower() if "@" in address else ""
        if address.lower() in self.virtual_aliases or f"@{domain}" in self.virtual_aliases:
            return True
        cls = self.address_class(domain)
        if isinstance(cls, lk.TableFailed):
            return None
        if cls is AddressClass.VIRTUAL_ALIAS:
            return False

        def known(name: str) -> bool | None:
            return None if self.users_fail else name in self.users
        return LocalRecipientCheck(known, self.delimiter)(address)

    def domain_dns(self, domain: str) -> DnsResult:
        self.dns_asked.append(domain)
        return self.dns.get(domain, DnsResult.NOT_FOUND)

    def lookup(self, table: str, key: str) -> str | None:
        return self.tables.get(table, {}).get(key)

    def dns_records(self, name: str, rdtype: str) -> tuple[str, ...] | lk.TableFailed | None:
        self.records_asked.append((name, rdtype))
        got = self.records.get((name, rdtype))
        if got == "tempfail":
            return lk.TableFailed(name)
        if isinstance(got, tuple):
            return got
        if name.endswith(".list.example"):
            return ("127.0.0.2",) if rdtype == "A" else ()
        if any(n == name for n, _ in self.records):
            return ()
        return None

    def inet_interface(self, ip: str) -> bool:
        return ip in self.interfaces

    def policy(self, service: str, attributes: tuple[tuple[str, str], ...]
               ) -> str | lk.TableFailed:
        self.policy_requests.append(dict(attributes))
        action = self.policy_actions.pop(0) if self.policy_actions else "DUNNO"
        return lk.TableFailed(service) if action == "fail" else action

    def sender_logins(self, sender: str) -> tuple[str, ...] | None:
        if self.sender_login_maps is None:
            return None
        return self.sender_login_maps.get(sender, ())

    def is_relay_recipient(self, address: str) -> bool | None:
        if self.relay_recipients is None:
            return True
        if self.relay_recipients_fail:
            return None
        domain = address.rpartition("@")[2]
        return address in self.relay_recipients or f"@{domain}" in self.relay_recipients


    def recipient_route(self, address: str) -> Route | lk.TableFailed | None:
        domain = address.rpartition("@")[2].lower() if "@" in address else ""
        if address.lower() in self.virtual_aliases or f"@{domain}" in self.virtual_aliases:
            return None  # cleanup rewrites it first
        cls = self.address_class(domain)
        if isinstance(cls, lk.TableFailed):
            return cls
        routing = Routing(default=parse_transport(self.default_transport))
        return route(address, cls, routing, self.transports.get(domain))


def result_line(d: rs.Decision) -> str:
    """One line per decision, as the golden file writes it."""
    out = "OK" if d.accepted else str(d.reply)
    if d.sleeps:
        out += " ; sleep=" + ",".join(f"{s:g}" for s in d.sleeps)
    for w in d.warnings:
        out += f" ; reject_warning={w}"
    for action, text in d.notes:
        out += f" ; {action}={text}"
    return out


def example_words(row: rs.Restriction) -> list[str]:
    """The row's name with an argument of the kind it takes."""
    if row.needs.table:
        return [row.name, "hash:/etc/postfix/access"]
    if row.needs.argument == "dnsxl":
        return [row.name, "list.example"]
    if row.needs.argument == "service":
        return [row.name, "inet:127.0.0.1:9998"]
    return [row.name]
