"""Name lookups as the C library makes them: ``/etc/hosts`` first, then DNS (dnspython).

smtpd needs the client's name (PTR, forward-confirmed, as Postfix's smtpd(8) does for
``client=name[addr]``) and whether a domain has MX/A/AAAA records
(``reject_unknown_*_domain``); the SMTP client (``postier.smtp``) needs a domain's MX
records and a host's addresses (RFC 5321 section 5.1, RFC 7505), from DNS only, as
Postfix's ``smtp_host_lookup = dns``. Doing both through dnspython on the event loop, instead
of the blocking resolver of the C library in a thread, keeps every query under our
control: the servers come from ``/etc/resolv.conf`` or, for tests that run their own
DNS server on loopback, from the file named by ``POSTIER_RESOLV_CONF``.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401
import ipaddress
import os
import socket

# dnspython loads these lazily; smtpd drops privileges before its first query, when the
# interpreter's files may no longer be readable, so they are loaded now.
import dns._asyncio_backend
import dns.asyncresolver
import dns.exception
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver
import dns.reversename

from postier.dns.result import AddressAnswer, DnsResult, Lookup, MxAnswer, name_service_error
from postier.rewrite.address import valid_hostname

HOSTS_FILE = "/etc/hosts"
DNS_ERRORS = (dns.exception.Timeout, dns.resolver.NoNameservers, dns.exception.DNSException)


def parse_hosts(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """hosts(5): address to its first name, and each name (lower case) to its addresses."""
    by_addr: dict[str, str] = {}
    by_name: dict[str, set[str]] = {}
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            addr = str(ipaddress.ip_address(fields[0]))
        except ValueError:
            continue
        by_addr.setdefault(addr, fields[1])
        for name in fields[1:]:
            by_name.setdefault(name.lower().rstrip("."), set()).add(addr)
    return by_addr, by_name


class Resolver:
    def __init__(self, resolv_conf: str | None = None, hosts_file: str = HOSTS_FILE) -> None:
        conf = resolv_conf or os.environ.get("POSTIER_RESOLV_CONF") or "/etc/resolv.conf"
        try:
            self.dns = dns.asyncresolver.Resolver(filename=conf)
        except dns.resolver.NoResolverConfiguration:
            # No usable resolv.conf: every DNS lookup fails temporarily (names are
            # "unknown", reject_unknown_*_domain defers) rather than smtpd failing to start.
            self.dns = dns.asyncresolver.Resolver(configure=False)
            self.dns.nameservers = []
        self.dns.lifetime = 10.0
        try:
            with open(hosts_file, encoding="utf-8", errors="replace") as f:
                self.hosts_by_addr, self.hosts_by_name = parse_hosts(f.read())
        except OSError:
            self.hosts_by_addr, self.hosts_by_name = {}, {}

    async def addresses(self, name: str) -> set[str] | None:
        """The name's A and AAAA addresses; None on a temporary failure."""
        key = name.lower().rstrip(".")
        if key in self.hosts_by_name:
            return set(self.hosts_by_name[key])
        found: set[str] = set()
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.dns.resolve(key, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except DNS_ERRORS:
                return None
            found |= {str(ipaddress.ip_address(r.to_text())) for r in answer}
        return found

    async def client_name(self, addr: str) -> str:
        """The client's name, forward-confirmed, else ``unknown`` (Postfix's smtpd)."""
        canonical = str(ipaddress.ip_address(addr))
        name = self.hosts_by_addr.get(canonical)
        if name is None:
            try:
                answer = await self.dns.resolve(dns.reversename.from_address(canonical), "PTR")
                name = answer[0].to_text().rstrip(".")
            except DNS_ERRORS:
                return "unknown"
        if not valid_hostname(name):
            return "unknown"  # as Postfix: a malformed name never reaches logs or headers
        confirmed = await self.addresses(name)
        return name if confirmed and canonical in confirmed else "unknown"

    async def domain_dns(self, domain: str) -> DnsResult:
        """Does the domain have an MX, A or AAAA record (reject_unknown_*_domain)?"""
        if domain.startswith("["):
            return DnsResult.HAS_ADDRESS
        temp = False
        for rdtype in ("MX", "A", "AAAA"):
            try:
                await self.dns.resolve(domain, rdtype)
                return DnsResult.HAS_ADDRESS
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except DNS_ERRORS:
                temp = True
        return DnsResult.TEMP_FAIL if temp else DnsResult.NOT_FOUND

    async def _ask(self, name: str, rdtype: str) -> tuple[Lookup, dns.resolver.Answer | None]:
        """One question: how it ended, and the answer when records were found."""
        try:
            return Lookup.FOUND, await self.dns.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            return Lookup.NOT_FOUND, None
        except dns.resolver.NoAnswer:
            return Lookup.NO_DATA, None
        except DNS_ERRORS:
            return Lookup.TEMP_FAIL, None

    async def _query(self, name: str, rdtype: str) -> tuple[Lookup, list[str]]:
        """One question: how it ended and the answer's records as text."""
        lookup, answer = await self._ask(name, rdtype)
        return lookup, [] if answer is None else [r.to_text() for r in answer]

    async def records(self, name: str, rdtype: str) -> tuple[Lookup, list[str]]:
        """``name``'s records of ``rdtype`` (A, AAAA, MX, NS, TXT) as restrictions read
        them: an address, a host name without the final dot (MX: the exchange only; a
        null MX is "."), or a TXT record's strings joined."""
        lookup, answer = await self._ask(name.rstrip("."), rdtype)
        if answer is None:
            return lookup, []
        texts: list[str] = []
        for r in answer:
            if rdtype == "MX":
                texts.append(r.exchange.to_text().rstrip(".").lower() or ".")
            elif rdtype == "NS":
                texts.append(r.target.to_text().rstrip(".").lower())
            elif rdtype == "TXT":
                texts.append(b"".join(r.strings).decode("utf-8", "replace"))
            else:
                texts.append(r.to_text())
        return Lookup.FOUND, texts

    async def mx(self, domain: str) -> MxAnswer:
        """``domain``'s MX records, (preference, host without the final dot), unsorted."""
        name = domain.rstrip(".")
        lookup, texts = await self._query(name, "MX")
        if lookup is not Lookup.FOUND:
            return MxAnswer(lookup, error=name_service_error(name, "MX", lookup))
        records = []
        for text in texts:
            pref, _, host = text.partition(" ")
            records.append((int(pref), host.rstrip(".").lower() or "."))
        return MxAnswer(Lookup.FOUND, tuple(records))

    async def host_addresses(
        self, name: str, *, ipv4: bool = True, ipv6: bool = True
    ) -> AddressAnswer:
        """``name``'s A then AAAA addresses (those ``ipv4``/``ipv6`` allow); an IP address
        is its own answer. A temporary failure of either question wins over no data."""
        try:
            return AddressAnswer(Lookup.FOUND, (str(ipaddress.ip_address(name)),))
        except ValueError:
            pass
        host = name.rstrip(".")
        found: list[str] = []
        worst = Lookup.NOT_FOUND
        last_type = "A"
        rank = {Lookup.NOT_FOUND: 0, Lookup.NO_DATA: 1, Lookup.TEMP_FAIL: 2}
        for rdtype, wanted in (("A", ipv4), ("AAAA", ipv6)):
            if not wanted:
                continue
            lookup, texts = await self._query(host, rdtype)
            if lookup is Lookup.FOUND:
                found += [str(ipaddress.ip_address(t)) for t in texts]
            elif rank[lookup] >= rank[worst]:
                worst, last_type = lookup, rdtype
        if found:
            return AddressAnswer(Lookup.FOUND, tuple(found))
        return AddressAnswer(worst, error=name_service_error(host, last_type, worst))


def local_addresses() -> list[str]:
    """This host's addresses, for mynetworks_style and address literals."""
    addrs = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            addrs.add(str(info[4][0]))
    except OSError:
        pass
    return sorted(addrs)
