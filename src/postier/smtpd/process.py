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
    LOCAL_RECIPIENT_MAPS,
    MYDOMAIN,
    MYORIGIN,
    QUEUE_DIRECTORY,
)
from postier.config.settings import Config
from postier.dns.resolver import Resolver
from postier.dns.result import DnsResult
from postier.log import Log
from postier.rewrite.resolve import UserTable
from postier.tables import Tables
from postier.tables.aliases import AliasMaps
from postier.tables.cache import Expiring
from postier.tables.passwd import MapsUsers

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
        #: every table this process opened (alias_maps, local_recipient_maps, access
        #: tables of the restrictions, mynetworks entries), each once
        self.tables = Tables(warn=log.warning)
        self.aliases = AliasMaps(self.tables.for_param(cfg, ALIAS_MAPS, aliases=True))
        # local_recipient_maps (default: proxy:unix:passwd.byname $alias_maps); empty: any name
        local_maps = self.tables.for_param(cfg, LOCAL_RECIPIENT_MAPS)
        self.local_users: UserTable = MapsUsers(local_maps) if local_maps else _anyone
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


def _anyone(name: str, /) -> bool:
    """An empty ``local_recipient_maps``: every local name is accepted (postconf(5))."""
    return True
