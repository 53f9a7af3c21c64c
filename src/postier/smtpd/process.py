"""What every session of one smtpd process shares: log, the way into the queue, tables, DNS.

Follows Postfix's smtpd(8) (one process serves many sessions; the client's name is
looked up once per connection, forward-confirmed) and proxymap(8) (tables kept open
by a long-lived process). One ``Worker`` per process; every ``Service`` and
``Session`` of that process uses it.
"""

from __future__ import annotations

from postier.cleanup.cleanup import Cleanup, QmgrTrigger, Qualify
from postier.config.params import (
    ALIAS_MAPS,
    APPEND_AT_MYORIGIN,
    APPEND_DOT_MYDOMAIN,
    HOPCOUNT_LIMIT,
    MYDOMAIN,
    MYORIGIN,
    QUEUE_DIRECTORY,
)
from postier.config.settings import Config
from postier.dns.resolver import Resolver
from postier.dns.result import DnsResult
from postier.log import Log
from postier.rewrite.resolve import LocalUsers
from postier.tables.aliases import AliasMaps, open_alias_maps
from postier.tables.cache import Expiring
from postier.tables.passwd import PasswdTable

NAME_CACHE_SECONDS = 60.0  # client names (PTR, forward-confirmed), failures included


class Worker:
    """What every session of one smtpd process shares."""

    def __init__(self, cfg: Config, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.queue_dir = cfg[QUEUE_DIRECTORY]
        self.trigger = QmgrTrigger(self.queue_dir, log)
        # Addresses are qualified in cleanup, after the restrictions saw them as sent.
        qualify = Qualify(cfg[MYORIGIN], cfg[APPEND_AT_MYORIGIN], cfg[APPEND_DOT_MYDOMAIN],
                          cfg[MYDOMAIN])
        self.cleanup = Cleanup(self.queue_dir, log=log, trigger=self.trigger, qualify=qualify,
                               hopcount_limit=cfg[HOPCOUNT_LIMIT])
        warnings: list[str] = []
        self.aliases: AliasMaps = open_alias_maps(cfg[ALIAS_MAPS], warnings)
        for w in warnings:
            log.warning(w)
        # local_recipient_maps at its default: passwd (answers kept 10 s), then the aliases
        self.local_users = LocalUsers(PasswdTable(), self.aliases)
        self.resolver = Resolver()
        self._names: Expiring[str] = Expiring(NAME_CACHE_SECONDS)

    async def reverse_name(self, addr: str) -> str:
        """The client's forward-confirmed name, or ``unknown`` (kept 60 s)."""
        name = self._names.get(addr)
        if name is None:
            name = self._names.put(addr, await self.resolver.client_name(addr))
        return name

    async def domain_dns(self, domain: str) -> DnsResult:
        """Has ``domain`` (folded) an MX, A or AAAA record?"""
        return await self.resolver.domain_dns(domain)
