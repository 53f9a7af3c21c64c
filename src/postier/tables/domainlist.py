"""Domain lists opened at start: mydestination and relay_domains with their files, tables.

Follows postconf(5) ``mydestination`` and ``relay_domains``: an entry is a domain name
pattern, a ``/file/name`` (read now: patterns, one or more per line, ``#``
comments) or a ``type:table`` (opened now through the process's ``Tables``; a domain
is listed when it is a key, the value ignored). ``domain_lists(cfg, tables)`` ->
``rewrite.resolve.DomainLists`` for ``Classifier.from_config``; a file that cannot be
read or a table that cannot be opened raises ``ConfigError`` naming main.cf's file and
line, the parameter and the entry (``postier check`` and every start go through
``tables.check.check_tables``, which calls it). At run time a table's lookup raises
``tables.TableError`` when it cannot answer (the caller tempfails or defers).
"""

from __future__ import annotations

from collections.abc import Callable

from postier.config.errors import ConfigError
from postier.config.params import MYDESTINATION, RELAY_DOMAINS, Param
from postier.config.settings import Config
from postier.rewrite.resolve import (
    DomainEntry,
    DomainLists,
    TableEntry,
    file_patterns,
    is_table_entry,
)
from postier.tables.base import TableError, TableOpenError
from postier.tables.maps import Maps
from postier.tables.registry import Tables

#: The domain lists whose file and table entries the address classes use.
CLASS_LIST_PARAMS: tuple[Param[list[str]], ...] = (MYDESTINATION, RELAY_DOMAINS)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _key_table(param: str, spec: str, maps: Maps) -> Callable[[str], bool]:
    """A ``TableEntry``'s question; its TableError names the parameter and the table as
    Postfix's warning does (``relay_domains: hash:/x: table lookup problem``)."""
    def contains(key: str) -> bool:
        try:
            return maps.lookup(key) is not None
        except TableError as exc:
            raise TableError(f"{param}: {spec}: table lookup problem ({exc})") from exc
    return contains


def open_domain_list(cfg: Config, param: Param[list[str]], tables: Tables, *,
                     read_file: Callable[[str], str] = _read) -> tuple[DomainEntry, ...]:
    """``param``'s entries in order, ``/file/name`` entries replaced by their patterns
    and ``type:table`` entries opened (``TableEntry``); ConfigError (file, line,
    parameter, entry) when a file cannot be read or a table cannot be opened."""
    entries: list[DomainEntry] = []

    def fail(entry: str, why: str) -> ConfigError:
        file, line = cfg.location(param.name)
        return ConfigError(f"{entry}: {why}", file=file, line=line, param=param.name)

    def add(words: list[str], depth: int) -> None:
        for raw in words:
            entry = raw.strip()
            if not entry:
                continue
            if entry.startswith("/"):
                if depth > 0:
                    raise fail(entry, "a file inside a file is not supported")
                try:
                    text = read_file(entry)
                except OSError as exc:
                    raise fail(entry, exc.strerror or str(exc)) from None
                add(file_patterns(text), depth + 1)
            elif is_table_entry(entry):
                try:
                    maps = Maps(entry, [tables.table(entry)])
                except TableOpenError as exc:
                    raise fail(entry, str(exc)) from None
                entries.append(TableEntry(entry, _key_table(param.name, entry, maps)))
            else:
                entries.append(entry.lower().rstrip("."))
    add(list(cfg[param]), 0)
    return tuple(entries)


def domain_lists(cfg: Config, tables: Tables, *,
                 read_file: Callable[[str], str] = _read) -> DomainLists:
    """``mydestination`` and ``relay_domains`` opened (``open_domain_list``); None of
    the work is done again per lookup. ConfigError as ``open_domain_list``."""
    return DomainLists(
        mydestination=open_domain_list(cfg, MYDESTINATION, tables, read_file=read_file),
        relay_domains=open_domain_list(cfg, RELAY_DOMAINS, tables, read_file=read_file),
    )
