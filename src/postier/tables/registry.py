"""The ``type:name`` registry: a table specification in, an opened ``Table`` out.

Follows Postfix's dict_open(3) (``type:name``, ``proxy:`` accepted as a prefix and
ignored: each process opens its tables itself) and DATABASE_README's list of types.
An unknown type, a type postier does not serve, a missing or unreadable file, or a
bad line is a ``TableOpenError`` (a start error naming what is wrong). ``Tables``
keeps what one process opened, so that the same table named by several parameters
is opened (and its file mapped, its database connected) once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postier.config.errors import ConfigError
from postier.config.params import Param
from postier.config.settings import Config
from postier.tables.base import Table, TableOpenError, WarningSink, no_warnings
from postier.tables.maps import Maps


@dataclass(frozen=True)
class OpenOptions:
    """``aliases``: source files are aliases(5) (``alias_maps``); ``warn``: where
    Postfix's warnings go (an out-of-date database)."""

    aliases: bool = False
    warn: WarningSink = no_warnings


def _texthash(name: str, o: OpenOptions) -> Table:
    from postier.tables.texthash import TextHashTable
    return TextHashTable(name, aliases=o.aliases)


def _compiled(kind: str) -> Callable[[str, OpenOptions], Table]:
    def opener(name: str, o: OpenOptions) -> Table:
        from postier.tables.compiled import CompiledTable, db_path
        tool = "postalias" if o.aliases else "postmap"
        path = db_path(kind, name)
        if kind != "lmdb" and not os.path.exists(path) and os.path.isfile(name):
            # A Postfix-made NAME.db (or none) and the source beside it: read the source,
            # as texthash does; without a source the compiled table's error stands.
            from postier.tables.texthash import TextHashTable
            o.warn(f"{kind}:{name}: no {path}; reading the source file {name} instead "
                   f'(slower): run "postier {tool} {kind}:{name}"')
            return TextHashTable(name, aliases=o.aliases)
        return CompiledTable(kind, name, warn=o.warn, tool=tool)
    return opener


def _regexp(kind: str) -> Callable[[str, OpenOptions], Table]:
    def opener(name: str, o: OpenOptions) -> Table:
        from postier.tables.regexp import RegexpTable
        return RegexpTable(kind, name)
    return opener


def _cidr(name: str, o: OpenOptions) -> Table:
    from postier.tables.cidr import CidrTable
    return CidrTable(name)


def _inline(name: str, o: OpenOptions) -> Table:
    from postier.tables.inline import InlineTable
    return InlineTable(name)


def _static(name: str, o: OpenOptions) -> Table:
    from postier.tables.inline import StaticTable
    return StaticTable(name)


def _unix(name: str, o: OpenOptions) -> Table:
    from postier.tables.passwd import PasswdByName
    if name != "passwd.byname":
        raise TableOpenError(f"unix:{name}: unknown table; postier serves unix:passwd.byname",
                             word=f"unix:{name}")
    return PasswdByName()


def _sql(kind: str) -> Callable[[str, OpenOptions], Table]:
    def opener(name: str, o: OpenOptions) -> Table:
        from postier.tables.sql import SqlTable
        try:
            return SqlTable(kind, name)
        except ImportError:
            raise TableOpenError(f"{kind}:{name}: the psycopg package is not installed",
                                 word=f"{kind}:{name}") from None
    return opener


#: Every type postier serves: type -> opener(name, options).
TYPES: dict[str, Callable[[str, OpenOptions], Table]] = {
    "texthash": _texthash,
    "hash": _compiled("hash"),
    "btree": _compiled("btree"),
    "lmdb": _compiled("lmdb"),
    "regexp": _regexp("regexp"),
    "pcre": _regexp("pcre"),
    "cidr": _cidr,
    "inline": _inline,
    "static": _static,
    "unix": _unix,
    "sqlite": _sql("sqlite"),
    "pgsql": _sql("pgsql"),
}

#: Postfix types postier knows of and does not serve, with the reason.
UNSUPPORTED = {
    "cdb": "no maintained Python package serves cdb; use hash: or lmdb: (postier postmap)",
    "dbm": "use hash: or lmdb: (postier postmap)",
    "sdbm": "use hash: or lmdb: (postier postmap)",
    "mysql": "use pgsql: or sqlite:",
    "ldap": "not supported yet",
    "memcache": "not supported yet",
    "nis": "not supported", "nisplus": "not supported", "netinfo": "not supported",
    "tcp": "not supported yet", "socketmap": "not supported yet",
    "environ": "not supported yet", "fail": "not supported yet", "pipemap": "not supported yet",
    "unionmap": "not supported yet", "randmap": "not supported yet",
}

#: Types whose ``name`` is a file (postmap builds or reads it).
FILE_TYPES = frozenset({"texthash", "hash", "btree", "lmdb", "regexp", "pcre", "cidr",
                        "sqlite", "pgsql"})


def split_spec(spec: str) -> tuple[str, str]:
    """``proxy:hash:/etc/x`` -> ``("hash", "/etc/x")``; TableOpenError without a type."""
    text = spec.strip()
    while text.startswith("proxy:"):
        text = text[len("proxy:"):]
    kind, colon, name = text.partition(":")
    if not colon or not kind or not name:
        raise TableOpenError(f'need "type:name", not "{spec}"', word=spec)
    return kind.lower(), name


def open_table(spec: str, options: OpenOptions = OpenOptions()) -> Table:
    """Open one ``type:name``; TableOpenError when it cannot be used."""
    kind, name = split_spec(spec)
    opener = TYPES.get(kind)
    if opener is None:
        reason = UNSUPPORTED.get(kind)
        if reason is not None:
            raise TableOpenError(f'table type "{kind}" is not supported by postier: {reason}',
                                 word=spec)
        raise TableOpenError(f'unsupported dictionary type: "{kind}"', word=spec)
    return opener(name, options)


class Tables:
    """What one process opened, by specification: each opened once (the first opening
    decides whether a ``texthash`` source is read as aliases(5): open ``alias_maps``
    before ``local_recipient_maps``)."""

    def __init__(self, warn: WarningSink = no_warnings) -> None:
        self.warn = warn
        self._open: dict[str, Table] = {}

    def table(self, spec: str, *, aliases: bool = False) -> Table:
        """The table ``spec`` (opened now or before); TableOpenError."""
        kind, name = split_spec(spec)
        key = f"{kind}:{name}"
        table = self._open.get(key)
        if table is None:
            table = self._open[key] = open_table(spec, OpenOptions(aliases, self.warn))
        return table

    def maps(self, param: str, specs: Sequence[str], *, aliases: bool = False) -> Maps:
        """``param``'s tables as a ``Maps``; TableOpenError prefixed with the parameter."""
        tables = []
        for spec in specs:
            try:
                tables.append(self.table(spec, aliases=aliases))
            except TableOpenError as exc:
                raise TableOpenError(f"{param}: {spec}: {exc}", file=None,
                                     word=exc.word or spec) from None
        return Maps(param, tables)

    def for_param(self, cfg: Config, param: Param[list[str]], *, aliases: bool = False) -> Maps:
        """``cfg[param]``'s tables; a ``ConfigError`` naming main.cf's file and line
        (or the master.cf override), the parameter and the table when one cannot be
        opened. An empty parameter gives an empty ``Maps`` (false)."""
        try:
            return self.maps(param.name, cfg[param], aliases=aliases)
        except TableOpenError as exc:
            file, line = cfg.location(param.name)  # ConfigError puts "parameter NAME: "
            raise ConfigError(str(exc).removeprefix(f"{param.name}: "), file=file, line=line,
                              param=param.name) from None
