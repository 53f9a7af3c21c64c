"""Answers the restriction evaluator's lookups for one smtpd service, on the event loop.

Follows Postfix's smtpd_check fact sources (postconf(5) ``mynetworks``,
``mydestination``/``relay_domains`` address classes, ``local_recipient_maps``,
``reject_unknown_*`` DNS lookups, access(5) tables). ``ServiceFacts.run(steps)``
drives one evaluation (``restrictions.lookups.Steps``): what the configuration
knows is answered at once, the DNS is awaited (each domain asked once per run).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from postier.dns.result import DnsResult
from postier.restrictions import lookups as lk
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import Classifier, LocalRecipientCheck

T = TypeVar("T")


class ServiceFacts:
    """The facts one service's restrictions see; ``domain_dns(folded) -> DnsResult``."""

    def __init__(
        self,
        mynetworks: MyNetworks,
        classify: Classifier,
        local_recipients: LocalRecipientCheck,
        domain_dns: Callable[[str], Awaitable[DnsResult]],
        sender_logins: Callable[[str], tuple[str, ...] | None] = lambda sender: None,
    ) -> None:
        """``sender_logins(sender)``: the owners in smtpd_sender_login_maps (``()``: in no
        map; None: no maps). Until tables exist it says "no maps"."""
        self.sender_logins = sender_logins
        self.mynetworks = mynetworks
        self.classify = classify
        self.local_recipients = local_recipients
        self.domain_dns = domain_dns

    def answer_now(self, lookup: lk.Lookup) -> lk.Answer:
        """The answer to a lookup the configuration holds (all but DNS)."""
        match lookup:
            case lk.InMyNetworks(ip=ip):
                return self.mynetworks.match(ip)
            case lk.AddressClassOf(domain=domain):
                return self.classify(domain)
            case lk.LocalRecipient(address=address):
                return self.local_recipients(address)
            case lk.TableLookup():
                return None  # access tables are not built yet: "not found"
            case lk.SenderLogins(sender=sender):
                return self.sender_logins(sender)
            case lk.DomainDns():
                raise AssertionError("DNS is answered by run()")

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
            else:
                reply = self.answer_now(lookup)
