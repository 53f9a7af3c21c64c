"""What every session of one smtpd process shares: log, the way into the queue, tables, DNS.

Follows Postfix's smtpd(8) (one process serves many sessions; the client's name is
looked up once per connection, forward-confirmed), proxymap(8) (tables kept open
by a long-lived process) and SASL_README (one connection to Dovecot's auth server per
smtpd process). One ``Worker`` per process; every ``Service`` and
``Session`` of that process uses it.
"""

from __future__ import annotations

from postier.cleanup.cleanup import Cleanup, QmgrTrigger
from postier.config.params import (
    ALIAS_MAPS,
    CYRUS_SASL_CONFIG_PATH,
    QUEUE_DIRECTORY,
    SMTPD_SASL_LOCAL_DOMAIN,
    SMTPD_SASL_PATH,
    SMTPD_SASL_TYPE,
)
from postier.config.settings import Config
from postier.dns.resolver import Resolver
from postier.dns.result import DnsResult
from postier.log import Log
from postier.rewrite.resolve import LocalUsers
from postier.sasl import cyrusconf
from postier.sasl.api import Authenticator
from postier.sasl.dovecot import DovecotClient, endpoint
from postier.sasl.saslauthd import SaslauthdClient
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
        self.cleanup = Cleanup(self.queue_dir, log=log, trigger=self.trigger)
        warnings: list[str] = []
        self.aliases: AliasMaps = open_alias_maps(cfg[ALIAS_MAPS], warnings)
        for w in warnings:
            log.warning(w)
        # local_recipient_maps at its default: passwd (answers kept 10 s), then the aliases
        self.local_users = LocalUsers(PasswdTable(), self.aliases)
        self.resolver = Resolver()
        self._names: Expiring[str] = Expiring(NAME_CACHE_SECONDS)
        self._sasl: dict[tuple[str, ...], Authenticator] = {}

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
        """Close the SASL connections."""
        for sasl in self._sasl.values():
            await sasl.close()

    async def reverse_name(self, addr: str) -> str:
        """The client's forward-confirmed name, or ``unknown`` (kept 60 s)."""
        name = self._names.get(addr)
        if name is None:
            name = self._names.put(addr, await self.resolver.client_name(addr))
        return name

    async def domain_dns(self, domain: str) -> DnsResult:
        """Has ``domain`` (folded) an MX, A or AAAA record?"""
        return await self.resolver.domain_dns(domain)
