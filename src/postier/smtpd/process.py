"""What every session of one smtpd process shares: log, the way into the queue, tables, DNS.

Follows Postfix's smtpd(8) (one process serves many sessions; the client's name is
looked up once per connection, forward-confirmed), proxymap(8) (tables kept open
by a long-lived process) and SASL_README (one connection to Dovecot's auth server per
smtpd process). One ``Worker`` per process; every ``Service`` and
``Session`` of that process uses it.
"""

from __future__ import annotations

from postier.anvilclient.client import AnvilClient
from postier.cleanup.cleanup import Cleanup, QmgrTrigger, Qualify
from postier.cleanup.rewrite import rewriting_from_config
from postier.config.params import (
    ALIAS_MAPS,
    APPEND_AT_MYORIGIN,
    APPEND_DOT_MYDOMAIN,
    CYRUS_SASL_CONFIG_PATH,
    HOPCOUNT_LIMIT,
    LOCAL_RECIPIENT_MAPS,
    MYDOMAIN,
    MYORIGIN,
    QUEUE_DIRECTORY,
    SMTPD_SASL_LOCAL_DOMAIN,
    SMTPD_SASL_PATH,
    SMTPD_SASL_TYPE,
    SMTPUTF8_AUTODETECT_CLASSES,
)
from postier.config.settings import Config
from postier.dns.resolver import Resolver, local_addresses
from postier.dns.result import DnsResult
from postier.log import Log
from postier.rewrite.resolve import UserTable, routing_resolver
from postier.sasl import cyrusconf
from postier.sasl.api import Authenticator
from postier.sasl.dovecot import DovecotClient, endpoint
from postier.sasl.saslauthd import SaslauthdClient
from postier.tables import TableError, Tables
from postier.tables.aliases import AliasMaps
from postier.tables.cache import Expiring
from postier.tables.domainlist import domain_lists
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
        #: every table this process opened (alias_maps, local_recipient_maps, access
        #: tables of the restrictions, mynetworks entries), each once
        self.tables = Tables(warn=log.warning)
        #: trivial-rewrite's resolve step (percent hack, bang path in a local domain)
        self.resolve_routing = routing_resolver(cfg, local_addresses(),
                                                domain_lists(cfg, self.tables), TableError)
        qualify = Qualify(cfg[MYORIGIN], cfg[APPEND_AT_MYORIGIN], cfg[APPEND_DOT_MYDOMAIN],
                          cfg[MYDOMAIN], resolve=self.resolve_routing)
        # canonical and virtual alias maps, applied by cleanup as each message is queued
        self.rewriting = rewriting_from_config(cfg, self.tables, qualify.address)
        self.cleanup = Cleanup(self.queue_dir, log=log, trigger=self.trigger, qualify=qualify,
                               hopcount_limit=cfg[HOPCOUNT_LIMIT], rewriting=self.rewriting,
                               smtputf8_autodetect=cfg[SMTPUTF8_AUTODETECT_CLASSES])
        self.aliases = AliasMaps(self.tables.for_param(cfg, ALIAS_MAPS, aliases=True))
        # local_recipient_maps (default: proxy:unix:passwd.byname $alias_maps); empty: any name
        local_maps = self.tables.for_param(cfg, LOCAL_RECIPIENT_MAPS)
        self.local_users: UserTable = MapsUsers(local_maps) if local_maps else _anyone
        self.resolver = Resolver()
        self._names: Expiring[str] = Expiring(NAME_CACHE_SECONDS)
        self._sasl: dict[tuple[str, ...], Authenticator] = {}
        #: the stream to anvil (private/anvil), shared by every session's limits
        self.anvil = AnvilClient(self.queue_dir, log.warning)

    def authenticator(self, cfg: Config) -> Authenticator:
        """The SASL back end for a service's settings (``smtpd_sasl_type``,
        ``smtpd_sasl_path``, …), shared by every service that names the same one: one
        Dovecot connection per process and socket, opened at the first need (after the
        privilege drop). Cyrus's ``smtpd.conf`` is read here, at start.
        Raises ValueError for an unknown ``smtpd_sasl_type`` or a bad ``inet:`` path."""
        kind, path = cfg[SMTPD_SASL_TYPE].strip().lower(), cfg[SMTPD_SASL_PATH].strip()
        if kind == "dovecot":
            key: tuple[str, ...] = (kind, path)
            if key not in self._sasl:
                self._sasl[key] = DovecotClient(endpoint(path, self.queue_dir), self.log)
            return self._sasl[key]
        if kind == "cyrus":
            config_path, realm = cfg[CYRUS_SASL_CONFIG_PATH], cfg[SMTPD_SASL_LOCAL_DOMAIN]
            key = (kind, path, config_path, realm)
            if key not in self._sasl:
                conf = cyrusconf.load(path or "smtpd", config_path)
                for problem in conf.problems():
                    self.log.warning(problem)
                self._sasl[key] = SaslauthdClient(conf, realm=realm)
            return self._sasl[key]
        raise ValueError(f"unsupported SASL server implementation: {kind}")

    async def close(self) -> None:
        """Close the SASL connections and the stream to anvil."""
        for sasl in self._sasl.values():
            await sasl.close()
        await self.anvil.close()

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
