"""What smtpd decides, and with which settings: per process, per service, per session.

``Worker`` holds what every session of a process shares (log, the way into the queue
with its qmgr trigger, the local recipient table); ``Service`` is one master.cf smtpd service's
settings (main.cf plus its ``-o`` overrides); ``Policy`` answers MAIL, RCPT and VRFY
for one session by running the restriction evaluator (``smtpd.restrictions``, pure)
over facts gathered here (mynetworks, address classes, local users, DNS).
Follows Postfix's smtpd(8) and SMTPD_ACCESS_README, with ``smtpd_delay_reject = yes``
semantics: client, HELO and sender restrictions are evaluated at RCPT time.
"""

from __future__ import annotations

import asyncio
import pwd
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from postier.cleanup.cleanup import Cleanup, QmgrTrigger
from postier.config.settings import Config
from postier.dns.resolver import Resolver, local_addresses
from postier.dns.result import DnsResult
from postier.log import Log
from postier.restrictions import evaluate as rs
from postier.restrictions.lists import RESTRICTION_LISTS
from postier.rewrite import address as addr_mod
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import AddressClass, Classifier, LocalRecipientCheck
from postier.smtpproto import replies
from postier.smtpproto.replies import Reply
from postier.tables.aliases import AliasMaps, open_alias_maps

if TYPE_CHECKING:
    from postier.smtpd.session import Session

V = TypeVar("V")

PASSWD_CACHE_SECONDS = 10.0
NAME_CACHE_SECONDS = 60.0  # client names (PTR, forward-confirmed), failures included

class Expiring(Generic[V]):
    """Answers kept for ``ttl`` seconds (at most ``limit`` of them) by one process."""

    def __init__(self, ttl: float, limit: int = 10000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None or time.monotonic() - item[0] >= self.ttl:
            return None
        return item[1]

    def put(self, key: str, value: V) -> V:
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)
        return value


class Worker:
    """What every session of one smtpd process shares."""

    def __init__(self, cfg: Config, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.queue_dir = cfg.get("queue_directory")
        self.cleanup = Cleanup(self.queue_dir, log=log, trigger=QmgrTrigger(self.queue_dir, log))
        warnings: list[str] = []
        self.aliases: AliasMaps = open_alias_maps(cfg.get_list("alias_maps"), warnings)
        for w in warnings:
            log.warning(w)
        self.resolver = Resolver()
        self._names: Expiring[str] = Expiring(NAME_CACHE_SECONDS)
        # passwd is read from /etc/passwd at each lookup; answers are kept a little while,
        # as Postfix's proxymap keeps its table open.
        self._users: Expiring[bool] = Expiring(PASSWD_CACHE_SECONDS)

    async def reverse_name(self, addr: str) -> str:
        name = self._names.get(addr)
        if name is None:
            name = self._names.put(addr, await self.resolver.client_name(addr))
        return name

    def is_local_user(self, localpart: str) -> bool:
        if self.aliases.lookup(localpart) is not None:
            return True
        known = self._users.get(localpart)
        if known is None:
            try:
                pwd.getpwnam(localpart)
                known = True
            except KeyError:
                known = False
            self._users.put(localpart, known)
        return known

    async def domain_dns(self, domain: str) -> DnsResult:
        return await self.resolver.domain_dns(domain)


class Service:
    """One smtpd service of master.cf: main.cf with that service's ``-o`` overrides."""

    def __init__(self, name: str, cfg: Config, worker: Worker) -> None:
        self.name = name
        self.cfg = cfg
        self.worker = worker
        self.hostname = cfg.get("myhostname")
        self.mail_name = cfg.get("mail_name")
        self.banner = cfg.get("smtpd_banner")
        self.timeout = cfg.get_time("smtpd_timeout")
        self.message_size_limit = cfg.get_size("message_size_limit")
        self.line_length_limit = cfg.get_int("line_length_limit")
        self.helo_required = cfg.get_bool("smtpd_helo_required")
        self.hard_error_limit = cfg.get_int("smtpd_hard_error_limit")
        self.soft_error_limit = cfg.get_int("smtpd_soft_error_limit")
        self.error_sleep_time = cfg.get_time("smtpd_error_sleep_time")
        self.recipient_limit = cfg.get_int("smtpd_recipient_limit")
        self.disable_vrfy = cfg.get_bool("disable_vrfy_command")
        self.delimiter = cfg.get("recipient_delimiter")
        self.myorigin = cfg.get("myorigin")
        self.local_addrs = local_addresses()
        self.classify = Classifier.from_lists(
            cfg.get_list("mydestination"), self.local_addrs, cfg.get_list("relay_domains")
        )
        self.local_recipients = LocalRecipientCheck(worker.is_local_user, self.delimiter)
        self.mynetworks = MyNetworks.from_config(
            cfg.get_list("mynetworks"), cfg.get("mynetworks_style"), self.local_addrs
        )
        self.lists = {
            stage: rs.parse_restrictions(cfg.get_list(param), stage=stage)
            for param, stage in RESTRICTION_LISTS
        }
        self.codes = rs.RejectCodes.from_config(cfg)
        self.reject_unlisted_recipient = cfg.get_bool("smtpd_reject_unlisted_recipient")
        self.reject_unlisted_sender = cfg.get_bool("smtpd_reject_unlisted_sender")
        keywords = ["PIPELINING"]
        keywords.append(f"SIZE {self.message_size_limit}" if self.message_size_limit else "SIZE")
        if not self.disable_vrfy:
            keywords.append("VRFY")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        self.ehlo_keywords = keywords


class SessionFacts:
    """The ``Facts`` the restriction evaluator asks about, for one session."""

    def __init__(self, svc: Service, dns_answers: Mapping[str, DnsResult]) -> None:
        self.svc = svc
        self.dns_answers = dns_answers

    def mynetworks(self, ip: str) -> bool:
        return self.svc.mynetworks.match(ip)

    def address_class(self, domain: str) -> AddressClass:
        return self.svc.classify(domain)

    def is_local_recipient(self, address: str) -> bool | None:
        return self.svc.local_recipients(address)

    def domain_dns(self, domain: str) -> DnsResult:
        return self.dns_answers.get(domain.lower(), DnsResult.TEMP_FAIL)

    def lookup(self, table: str, key: str) -> str | None:
        return None


class Policy:
    """MAIL, RCPT and VRFY decisions for one session."""

    def __init__(self, svc: Service, session: Session) -> None:
        self.svc = svc
        self.session = session
        self.slept = False

    def check_mail(self, address: str, params: Mapping[str, str | None]) -> Reply | None:
        size = params.get("SIZE")
        if size is not None:
            if not (size.isascii() and size.isdigit()):
                return replies.BAD_SIZE_SYNTAX
            if self.svc.message_size_limit and int(size) > self.svc.message_size_limit:
                return replies.SIZE_EXCEEDS_LIMIT
        for key in params:
            if key not in ("SIZE", "BODY"):
                return replies.unsupported_option(key)
        return None

    def state(self, recipient: str | None) -> rs.SmtpdState:
        s = self.session
        return rs.SmtpdState(
            client_address=s.client_addr,
            client_name=s.client_name,
            reverse_client_name=s.client_name,
            helo_name=s.helo,
            sender=s.sender,
            recipient=recipient,
            sasl_username=None,
            esmtp=s.esmtp,
            pipelining_violation=s.pipelining_violation,
            stage="recipient",
        )

    async def check_rcpt(self, address: str, params: Mapping[str, str | None]) -> Reply | None:
        if params:
            return replies.unsupported_option(next(iter(params)))
        if "@" not in address:
            address = f"{address}@{self.svc.myorigin}"
        state = self.state(address)
        answers: dict[str, DnsResult] = {}
        facts = SessionFacts(self.svc, answers)
        domains: set[str] = set()
        for calls in self.svc.lists.values():
            domains |= rs.dns_domains_needed(calls, state, facts)
        for domain in domains:
            answers[domain] = await self.svc.worker.domain_dns(domain)
        decision = rs.evaluate_stage(
            self.svc.lists,
            state,
            facts,
            self.svc.codes,
            reject_unlisted_recipient=self.svc.reject_unlisted_recipient,
            reject_unlisted_sender=self.svc.reject_unlisted_sender,
        )
        # Every list runs again at each RCPT (smtpd_delay_reject); a "sleep" there is meant
        # to make a zombie give up before it talks, so it pauses a session only once.
        if decision.sleeps and not self.slept:
            self.slept = True
            await self.session.flush()
            await asyncio.sleep(sum(decision.sleeps))
        if decision.reply is not None and decision.action in ("reject", "defer"):
            return decision.reply
        # Until postier has an SMTP client, only local mail can be accepted.
        domain = addr_mod.parse_address(address).domain or ""
        if facts.address_class(domain) is not AddressClass.LOCAL:
            return replies.relay_denied(address)
        if facts.is_local_recipient(address) is False:
            return replies.user_unknown(address)
        return None

    def vrfy(self, argument: str) -> Reply:
        if self.svc.disable_vrfy:
            return replies.VRFY_DISABLED
        address = argument.strip().strip("<>")
        if not address:
            return replies.VRFY_SYNTAX
        full = address if "@" in address else f"{address}@{self.svc.myorigin}"
        facts = SessionFacts(self.svc, {})
        domain = full.rpartition("@")[2]
        if (
            facts.address_class(domain) is AddressClass.LOCAL
            and facts.is_local_recipient(full) is False
        ):
            return replies.user_unknown(full)
        return replies.vrfy_ok(address)
