"""Start-time checks of every table the configuration names: refuse what cannot be used.

Follows postfix(1) ``check`` in spirit, stricter than Postfix (whose daemons find a
missing table only when they first need it): an unknown table type, a missing or
unreadable table file, a bad line in a table file, a ``fast_flush_domains`` table, a
``mydestination``/``relay_domains`` file or table (``tables.domainlist``), a
bad ``mynetworks`` (or
``smtpd_authorized_xclient_hosts``/``_xforward_hosts``, or a ``net/mask`` of
``smtpd_client_event_limit_exceptions``) entry are
start errors (``ConfigError``) naming main.cf's file and line, the parameter and the
offending word; so is a ``type:table`` entry of a domain list (``virtual_alias_domains``,
``relay_domains``, ``mydestination``), of ``smtpd_client_event_limit_exceptions`` or a
``check_address_map`` table of ``local_header_rewrite_clients`` that cannot be opened;
an out-of-date compiled table is a warning. Used by
``postier.instance`` for ``postier check`` and before every start.
"""

from __future__ import annotations

from postier.config.errors import ConfigError
from postier.config.params import (
    ALIAS_MAPS,
    CANONICAL_MAPS,
    FAST_FLUSH_DOMAINS,
    LOCAL_HEADER_REWRITE_CLIENTS,
    LOCAL_RECIPIENT_MAPS,
    MAILBOX_COMMAND_MAPS,
    MYDESTINATION,
    MYNETWORKS,
    MYNETWORKS_STYLE,
    RBL_REPLY_MAPS,
    RECIPIENT_CANONICAL_MAPS,
    RELAY_CLIENTCERTS,
    RELAY_DOMAINS,
    RELAY_RECIPIENT_MAPS,
    SENDER_CANONICAL_MAPS,
    SMTP_SASL_PASSWORD_MAPS,
    SMTPD_AUTHORIZED_XCLIENT_HOSTS,
    SMTPD_AUTHORIZED_XFORWARD_HOSTS,
    SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
    SMTPD_FORBIDDEN_COMMANDS,
    SMTPD_SENDER_LOGIN_MAPS,
    TLS_SERVER_SNI_MAPS,
    TRANSPORT_MAPS,
    VIRTUAL_ALIAS_DOMAINS,
    VIRTUAL_ALIAS_MAPS,
    VIRTUAL_MAILBOX_MAPS,
    Param,
)
from postier.config.settings import Config
from postier.restrictions.lists import parse_lists, restriction_classes, table_arguments
from postier.rewrite.mynetworks import MyNetworks, looks_like_network
from postier.tables.base import TableOpenError
from postier.tables.domainlist import domain_lists
from postier.tables.registry import Tables
from postier.tables.stringlist import StringList

#: Every parameter whose value is a list of tables (``alias_maps`` first: it decides
#: how a texthash alias source is read).
TABLE_PARAMS: tuple[Param[list[str]], ...] = (
    ALIAS_MAPS, LOCAL_RECIPIENT_MAPS, TRANSPORT_MAPS, RELAY_RECIPIENT_MAPS, VIRTUAL_ALIAS_MAPS,
    VIRTUAL_MAILBOX_MAPS, CANONICAL_MAPS, SENDER_CANONICAL_MAPS, RECIPIENT_CANONICAL_MAPS,
    SMTPD_SENDER_LOGIN_MAPS, SMTP_SASL_PASSWORD_MAPS, MAILBOX_COMMAND_MAPS, RBL_REPLY_MAPS,
    RELAY_CLIENTCERTS, TLS_SERVER_SNI_MAPS,
)

#: Domain lists whose ``type:table`` entries are tables (the other entries are names):
#: qmgr, cleanup and smtpd open them at start; smtpd's ETRN and ``postqueue -s`` look
#: ``fast_flush_domains``' up.
DOMAIN_LIST_PARAMS: tuple[Param[list[str]], ...] = (
    VIRTUAL_ALIAS_DOMAINS, RELAY_DOMAINS, MYDESTINATION, FAST_FLUSH_DOMAINS,
)


def _is_table(word: str) -> bool:
    """``type:name`` (``hash:/etc/x``, ``inline:{…}``), not ``[addr]`` nor an address."""
    kind, colon, _ = word.partition(":")
    return bool(colon) and kind[:1].isalpha() and kind.replace("_", "").isalnum()


def _open_entries(cfg: Config, opened: Tables, param: Param[list[str]],
                  words: list[str], what: str = "") -> None:
    """Open every table among ``words`` (``!`` negation ignored); ConfigError naming
    main.cf's line (or the master.cf override) and ``param`` at the first that fails."""
    for word in words:
        text = word.lstrip("!")
        if not _is_table(text):
            continue
        try:
            opened.table(text)
        except TableOpenError as exc:
            file, line = cfg.location(param.name)
            where = ""
            if file is None:  # a default naming another parameter's value ($relay_domains)
                for other in (*DOMAIN_LIST_PARAMS, *TABLE_PARAMS):
                    if other is not param and cfg.location(other.name)[0] is not None \
                            and text in (w.lstrip("!") for w in cfg[other]):
                        file, line = cfg.location(other.name)
                        where = f" (from {other.name})"
                        break
            raise ConfigError(f"{what}{text}{where}: {exc}", file=file, line=line,
                              param=param.name) from None


def _unnamed(exc: Exception, param: str) -> str:
    """``exc``'s text without the leading ``PARAM: `` that ConfigError adds itself."""
    return str(exc).removeprefix(f"{param}: ")


def _address_map_tables(words: list[str]) -> list[str]:
    """The TABLE of each ``check_address_map TABLE`` in ``local_header_rewrite_clients``."""
    return [words[i + 1] for i, w in enumerate(words[:-1])
            if w.lower() == "check_address_map"]


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def check_tables(cfg: Config, tables: Tables | None = None, *,
                 smtpd: bool = True) -> None:
    """Open every table ``cfg`` names (the ``*_maps`` parameters; with ``smtpd``, also
    the restriction lists' ``type:table`` arguments and ``mynetworks``); raise
    ConfigError at the first that cannot be used. Warnings go to ``tables.warn``."""
    opened = tables if tables is not None else Tables()
    for param in TABLE_PARAMS:
        opened.for_param(cfg, param, aliases=param is ALIAS_MAPS)
    for param in DOMAIN_LIST_PARAMS:
        _open_entries(cfg, opened, param, cfg[param])
    domain_lists(cfg, opened, read_file=_read)  # mydestination, relay_domains: files, tables
    if not smtpd:
        return
    try:  # every list and class; one that does not parse is reported by check_restriction_lists
        lists, classes = parse_lists(cfg), restriction_classes(cfg)
    except ConfigError:
        lists, classes = {}, {}
    for param_name, call in table_arguments(lists, classes):
        assert call.arg is not None
        try:
            opened.table(call.arg)
        except TableOpenError as exc:
            file, line = cfg.location(param_name)
            raise ConfigError(f"{call.name} {call.arg}: {exc}", file=file, line=line,
                              param=param_name) from None
    try:
        StringList.parse(cfg[SMTPD_FORBIDDEN_COMMANDS], opened.table)
    except TableOpenError as exc:
        file, line = cfg.location(SMTPD_FORBIDDEN_COMMANDS.name)
        raise ConfigError(str(exc), file=file, line=line,
                          param=SMTPD_FORBIDDEN_COMMANDS.name) from None
    if any(item.strip() for item in cfg[MYNETWORKS]):
        try:
            MyNetworks.from_config(cfg[MYNETWORKS], cfg[MYNETWORKS_STYLE], [],
                                   read_file=_read, open_table=opened.table, strict=True)
        except ValueError as exc:
            file, line = cfg.location(MYNETWORKS.name)
            raise ConfigError(_unnamed(exc, MYNETWORKS.name), file=file, line=line,
                              param=MYNETWORKS.name) from None
    # a host list that also takes names: its net/mask words, as written
    words = [w for w in cfg[SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS]
             if looks_like_network(w.lstrip("!"))]
    try:
        MyNetworks.parse(words, strict=True, param=SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name)
    except ValueError as exc:
        file, line = cfg.location(SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name)
        raise ConfigError(_unnamed(exc, SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name), file=file,
                          line=line, param=SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS.name) from None
    _open_entries(cfg, opened, SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
                  cfg[SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS])
    _open_entries(cfg, opened, LOCAL_HEADER_REWRITE_CLIENTS,
                  _address_map_tables(cfg[LOCAL_HEADER_REWRITE_CLIENTS]), "check_address_map ")
    for hosts in (SMTPD_AUTHORIZED_XCLIENT_HOSTS, SMTPD_AUTHORIZED_XFORWARD_HOSTS):
        try:  # the same list syntax as mynetworks
            MyNetworks.parse(cfg[hosts], read_file=_read, open_table=opened.table, strict=True,
                             param=hosts.name)
        except ValueError as exc:
            file, line = cfg.location(hosts.name)
            raise ConfigError(_unnamed(exc, hosts.name), file=file, line=line,
                              param=hosts.name) from None
