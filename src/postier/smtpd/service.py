"""One smtpd service of master.cf: its settings (main.cf plus that service's ``-o`` overrides).

Follows Postfix's master.cf(5) (``-o name=value`` per service: every parameter,
``syslog_name`` included) and the smtpd(8) parameters of postconf(5); restriction lists
are parsed here once, at start, and the TLS certificates and keys are read here, at
start, before the privilege drop (``postier.tls``); SASL settings as SASL_README
(``smtpd_sasl_*``, ``smtpd_tls_auth_only``, ``broken_sasl_auth_clients``).
"""

from __future__ import annotations

from functools import partial

from postier.cleanup.cleanup import Cleanup
from postier.cleanup.rewrite import virtual_alias_domain_tables
from postier.config.errors import ConfigError
from postier.config.params import (
    ALWAYS_ADD_MISSING_HEADERS,
    BROKEN_SASL_AUTH_CLIENTS,
    DISABLE_VRFY_COMMAND,
    FAST_FLUSH_DOMAINS,
    INET_PROTOCOLS,
    LINE_LENGTH_LIMIT,
    LOCAL_HEADER_REWRITE_CLIENTS,
    MAIL_NAME,
    MESSAGE_SIZE_LIMIT,
    MYHOSTNAME,
    MYNETWORKS,
    MYNETWORKS_STYLE,
    MYORIGIN,
    RECIPIENT_DELIMITER,
    RELAY_RECIPIENT_MAPS,
    SMTPD_AUTHORIZED_XCLIENT_HOSTS,
    SMTPD_AUTHORIZED_XFORWARD_HOSTS,
    SMTPD_BANNER,
    SMTPD_DELAY_REJECT,
    SMTPD_ERROR_SLEEP_TIME,
    SMTPD_FORBID_UNAUTH_PIPELINING,
    SMTPD_FORBIDDEN_COMMANDS,
    SMTPD_HARD_ERROR_LIMIT,
    SMTPD_HELO_REQUIRED,
    SMTPD_RECIPIENT_LIMIT,
    SMTPD_REJECT_UNLISTED_RECIPIENT,
    SMTPD_REJECT_UNLISTED_SENDER,
    SMTPD_SASL_AUTH_ENABLE,
    SMTPD_SASL_AUTHENTICATED_HEADER,
    SMTPD_SASL_SECURITY_OPTIONS,
    SMTPD_SASL_SERVICE,
    SMTPD_SASL_TLS_SECURITY_OPTIONS,
    SMTPD_SENDER_LOGIN_MAPS,
    SMTPD_SOFT_ERROR_LIMIT,
    SMTPD_TIMEOUT,
    SMTPD_TLS_AUTH_ONLY,
    SMTPUTF8_ENABLE,
    STRICT_SMTPUTF8,
    SYSLOG_FACILITY,
    SYSLOG_NAME,
)
from postier.config.settings import Config
from postier.delivery.route import Resolver
from postier.dns.resolver import local_addresses
from postier.log import Log
from postier.queue.flush import flush_configured
from postier.restrictions import evaluate as rs
from postier.restrictions.lists import parse_lists, restriction_classes
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import Classifier, LocalRecipientCheck, is_table_entry
from postier.sasl.api import Authenticator
from postier.sasl.mechanisms import parse_security_options
from postier.smtpd.facts import (
    ServiceFacts,
    access_search,
    open_access_tables,
    policy_settings,
    read_text_file,
)
from postier.smtpd.limits import ClientLimits
from postier.smtpd.policy import HEADER_REWRITE_CLIENT_RULES, rewrite_headers_for
from postier.smtpd.process import Worker
from postier.smtpproto import xclient
from postier.tables import Table, TableOpenError
from postier.tables.domainlist import domain_lists
from postier.tables.stringlist import StringList
from postier.tls.context import ServerTls, load_server_tls
from postier.tls.policy import ServerTlsPolicy


class Service:
    """One smtpd service of master.cf: main.cf with that service's ``-o`` overrides."""

    def __init__(self, name: str, cfg: Config, worker: Worker) -> None:
        self.name = name
        self.cfg = cfg
        self.worker = worker
        # -o syslog_name=postfix/submission: this service's lines read
        # postfix/submission/smtpd[PID], the client= line included.
        self.log = worker.log
        self.cleanup = worker.cleanup
        if cfg[SYSLOG_NAME] != worker.cfg[SYSLOG_NAME]:
            self.log = Log("smtpd", syslog_name=cfg[SYSLOG_NAME], target=worker.log.target,
                           facility=cfg[SYSLOG_FACILITY], host=worker.log.host)
            shared = worker.cleanup  # the same cleanup settings, only the log differs
            self.cleanup = Cleanup(worker.queue_dir, log=self.log, trigger=worker.trigger,
                                   qualify=shared.qualify,
                                   hopcount_limit=shared.hopcount_limit,
                                   smtputf8_autodetect=shared.smtputf8_autodetect,
                                   rewriting=shared.rewriting)
            self.cleanup.incoming_sync = worker.cleanup.incoming_sync  # one group commit
        # Certificates and keys are read now, as root (before the privilege drop).
        self.tls: ServerTls = load_server_tls(ServerTlsPolicy.from_config(cfg),
                                                worker.tables)
        if self.tls.error is not None:
            if self.tls.required:
                raise ConfigError(f"service {name}: {self.tls.error.message}",
                                  param=self.tls.error.param)
            self.log.warning(f"service {name}: {self.tls.error}; TLS is not available")
        self.hostname = cfg[MYHOSTNAME]
        self.mail_name = cfg[MAIL_NAME]
        self.banner = cfg[SMTPD_BANNER]
        self.timeout = cfg[SMTPD_TIMEOUT]
        self.message_size_limit = cfg[MESSAGE_SIZE_LIMIT]
        self.line_length_limit = cfg[LINE_LENGTH_LIMIT]
        self.helo_required = cfg[SMTPD_HELO_REQUIRED]
        self.forbid_unauth_pipelining = cfg[SMTPD_FORBID_UNAUTH_PIPELINING]
        self.forbidden_commands = StringList.parse(cfg[SMTPD_FORBIDDEN_COMMANDS],
                                                   worker.tables.table)
        self.hard_error_limit = cfg[SMTPD_HARD_ERROR_LIMIT]
        self.soft_error_limit = cfg[SMTPD_SOFT_ERROR_LIMIT]
        self.error_sleep_time = cfg[SMTPD_ERROR_SLEEP_TIME]
        self.recipient_limit = cfg[SMTPD_RECIPIENT_LIMIT]
        self.disable_vrfy = cfg[DISABLE_VRFY_COMMAND]
        self.delimiter = cfg[RECIPIENT_DELIMITER]
        self.myorigin = cfg[MYORIGIN]
        self.local_addrs = local_addresses()
        self.classify = Classifier.from_config(
            cfg, self.local_addrs,
            virtual_alias_tables=virtual_alias_domain_tables(cfg, worker.tables,
                                                             worker.log.warning),
            lists=domain_lists(cfg, worker.tables))
        self.local_recipients = LocalRecipientCheck(worker.local_users, self.delimiter)
        self.mynetworks = MyNetworks.from_config(
            cfg[MYNETWORKS], cfg[MYNETWORKS_STYLE], self.local_addrs,
            read_file=read_text_file, open_table=worker.tables.table, strict=False,
        )
        self.facts = ServiceFacts(
            self.mynetworks, self.classify, self.local_recipients, worker.domain_dns,
            tables=worker.tables, search=access_search(cfg), warn=worker.log.warning,
            sender_login_maps=worker.tables.for_param(cfg, SMTPD_SENDER_LOGIN_MAPS),
            relay_recipient_maps=worker.tables.for_param(cfg, RELAY_RECIPIENT_MAPS),
            dns_records=worker.resolver.records, interfaces=self.local_addrs,
            policy=policy_settings(cfg), queue_directory=worker.queue_dir,
            rewrite_listed=worker.rewriting.listed if worker.rewriting.recipient_finders
            else None,
            resolver=Resolver.from_config(cfg, worker.tables, self.classify),
        )
        self.classes = restriction_classes(cfg)
        self.lists = parse_lists(cfg)
        open_access_tables(cfg, self.lists, self.facts, self.classes)
        self.codes = rs.RejectCodes.from_config(cfg)
        self.reject_unlisted_recipient = cfg[SMTPD_REJECT_UNLISTED_RECIPIENT]
        self.reject_unlisted_sender = cfg[SMTPD_REJECT_UNLISTED_SENDER]
        keywords = ["PIPELINING"]
        keywords.append(f"SIZE {self.message_size_limit}" if self.message_size_limit else "SIZE")
        if not self.disable_vrfy:
            keywords.append("VRFY")
        keywords.append("ETRN")  # RFC 1985, always offered (as Postfix)
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN"]
        # SMTPUTF8 (RFC 6531) per smtputf8_enable; CHUNKING (RFC 3030) always, as Postfix
        # 3.7; BINARYMIME beside it (Postfix has none: docs/decisions.md).
        self.smtputf8_enable = cfg[SMTPUTF8_ENABLE]
        self.strict_smtputf8 = cfg[STRICT_SMTPUTF8]  # RFC 6531 3.3 (policy reads it)
        if self.smtputf8_enable:
            keywords.append("SMTPUTF8")
        keywords += ["CHUNKING", "BINARYMIME"]
        self.ehlo_keywords = keywords
        # smtpd_delay_reject, ETRN's fast_flush_domains, XCLIENT and XFORWARD's clients
        self.delay_reject = cfg[SMTPD_DELAY_REJECT]
        for entry in cfg[FAST_FLUSH_DOMAINS]:  # its tables opened now, as Postfix does
            if is_table_entry(entry.strip()) and not entry.strip().startswith("/"):
                worker.tables.table(entry.strip())
        self.flush_allowed = partial(flush_configured, cfg, open_table=worker.tables.table)
        self.xclient_hosts, self.xforward_hosts = (
            MyNetworks.parse(cfg[param], read_file=read_text_file,
                             open_table=worker.tables.table, strict=False, param=param.name)
            for param in (SMTPD_AUTHORIZED_XCLIENT_HOSTS, SMTPD_AUTHORIZED_XFORWARD_HOSTS))
        # the address families XCLIENT's and XFORWARD's ADDR may be of
        self.inet_families = xclient.inet_families(cfg[INET_PROTOCOLS])
        # SASL (SASL_README): the back end is the process's, shared by its services.
        self.sasl_enable = cfg[SMTPD_SASL_AUTH_ENABLE]
        self.sasl: Authenticator | None = worker.authenticator(cfg) if self.sasl_enable else None
        self.sasl_service = cfg[SMTPD_SASL_SERVICE]
        self.sasl_security_options = parse_security_options(cfg[SMTPD_SASL_SECURITY_OPTIONS])
        self.sasl_tls_security_options = parse_security_options(
            cfg[SMTPD_SASL_TLS_SECURITY_OPTIONS])
        self.tls_auth_only = cfg[SMTPD_TLS_AUTH_ONLY]
        self.broken_sasl_auth_clients = cfg[BROKEN_SASL_AUTH_CLIENTS]
        self.always_add_missing_headers = cfg[ALWAYS_ADD_MISSING_HEADERS]
        self._address_maps: dict[str, Table] = {}
        self.header_rewrite_rules = self._header_rewrite_rules(cfg)
        self.sasl_authenticated_header = cfg[SMTPD_SASL_AUTHENTICATED_HEADER]
        # smtpd_client_*_limit through anvil (smtpd.limits)
        self.limits = ClientLimits(name, cfg, worker.anvil, self.hostname, self.mynetworks,
                                   worker.tables.table, read_text_file)

    def _header_rewrite_rules(self, cfg: Config) -> list[str]:
        """local_header_rewrite_clients, checked and its tables opened (ConfigError)."""
        rules = [r for r in cfg[LOCAL_HEADER_REWRITE_CLIENTS] if r]
        file, line = cfg.location(LOCAL_HEADER_REWRITE_CLIENTS.name)
        words = iter(rules)
        for word in words:
            if word.lower() == "check_address_map":
                spec = next(words, "")
                try:
                    self._address_maps[spec] = self.worker.tables.table(spec)
                except TableOpenError as exc:
                    raise ConfigError(f"check_address_map {spec}: {exc}", file=file,
                                      line=line, param=LOCAL_HEADER_REWRITE_CLIENTS.name) from None
            elif word.lower() not in HEADER_REWRITE_CLIENT_RULES:
                raise ConfigError(f'unknown element "{word}"', file=file, line=line,
                                  param=LOCAL_HEADER_REWRITE_CLIENTS.name)
        return rules

    def add_missing_headers(self, client_addr: str, sasl_authenticated: bool) -> bool:
        """Does cleanup add missing Message-Id:/Date:/From: for this client (Postfix's
        always_add_missing_headers, local_header_rewrite_clients)?"""
        return self.always_add_missing_headers or self.local_header_rewrite(
            client_addr, sasl_authenticated)

    def local_header_rewrite(self, client_addr: str, sasl_authenticated: bool) -> bool:
        """Does the client match local_header_rewrite_clients (its headers are rewritten:
        canonical maps, missing headers)?"""

        def address_map(spec: str) -> str | None:
            table = self._address_maps.get(spec)
            return None if table is None else table.lookup(client_addr)

        return rewrite_headers_for(
            self.header_rewrite_rules, inet_interface=client_addr in self.local_addrs,
            mynetworks=self.mynetworks.match(client_addr),
            sasl_authenticated=sasl_authenticated, address_map=address_map)

    def auth_allowed(self, tls: bool) -> bool:
        """May a session use AUTH (smtpd_sasl_auth_enable; with smtpd_tls_auth_only, only
        under TLS)?"""
        return self.sasl is not None and (tls or not self.tls_auth_only)

    def sasl_options(self, tls: bool) -> frozenset[str]:
        """smtpd_sasl_tls_security_options under TLS, else smtpd_sasl_security_options."""
        return self.sasl_tls_security_options if tls else self.sasl_security_options

    def xclient_allowed(self, client_addr: str) -> bool:
        """Is the client in smtpd_authorized_xclient_hosts (default: nobody)?"""
        return self.xclient_hosts.match(client_addr)

    def xforward_allowed(self, client_addr: str) -> bool:
        """Is the client in smtpd_authorized_xforward_hosts (default: nobody)?"""
        return self.xforward_hosts.match(client_addr)

    def x_keywords(self, client_addr: str) -> list[str]:
        """The XCLIENT and XFORWARD EHLO lines for this client (only when authorized)."""
        return ([xclient.ehlo_keyword(xclient.Command.XCLIENT)]
                if self.xclient_allowed(client_addr) else []) + (
            [xclient.ehlo_keyword(xclient.Command.XFORWARD)]
            if self.xforward_allowed(client_addr) else [])

    def ehlo_keywords_for(self, *, tls_active: bool, auth_lines: list[str],
                          x_lines: list[str] | None = None) -> list[str]:
        """The EHLO keywords now, in Postfix's order: STARTTLS while TLS is offered and not
        yet active (never in wrapper mode: TLS is already on), then the AUTH lines, then
        ``x_lines`` (XCLIENT, XFORWARD), all before ENHANCEDSTATUSCODES."""
        extra = list(auth_lines) + list(x_lines or [])
        if self.tls.offered and not tls_active:
            extra.insert(0, "STARTTLS")
        if not extra:
            return self.ehlo_keywords
        at = self.ehlo_keywords.index("ENHANCEDSTATUSCODES")
        return [*self.ehlo_keywords[:at], *extra, *self.ehlo_keywords[at:]]
