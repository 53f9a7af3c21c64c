"""The ``sqlite`` and ``pgsql`` tables: a query per lookup, configured by a *_table(5) file.

Follows sqlite_table(5) and pgsql_table(5): the table's name is a file of ``name =
value`` lines: ``hosts`` (pgsql: ``host``, ``host:port``, ``inet:host:port``,
``unix:/socket/or/dir``; tried in order, a failed host skipped for ``retry_interval``
seconds), ``user``, ``password``, ``dbname`` (pgsql: the database), ``dbpath`` (sqlite: the
database file, Postfix's name; ``dbname`` is postier's older spelling, still read
when ``dbpath`` is absent), ``query``
(``%s`` the key, ``%u`` its local part, ``%d`` its domain, ``%1``…``%9`` the domain's
labels from the right, ``%%``; ``%d`` and ``%1``… suppress the query for a key with no
domain or too few labels), ``result_format`` (default ``%s``; also ``%u %d %1…`` of
the result and ``%S %U %D`` of the key), ``domain`` (only keys ``user@`` one of these
domains are asked), ``expansion_limit`` (more rows than that is a lookup error), and
the legacy ``select_field``/``table``/``where_field``/``additional_conditions``.
Values put into the query are quoted as SQL strings (quotes doubled). Several rows
give one value, comma-separated. One connection per process (pgsql through psycopg,
``autocommit``; sqlite read-only), guarded by a lock; lookups run off the event loop
(``blocking``). A query that cannot run raises ``TableError`` (smtpd: 451 4.3.0).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from postier.tables.base import TableError, TableOpenError, fold
from postier.tables.texthash import read_text

KNOWN = frozenset({
    "hosts", "user", "password", "dbname", "dbpath", "query", "result_format", "domain",
    "expansion_limit", "select_field", "table", "where_field", "additional_conditions",
    "retry_interval", "idle_interval", "encoding", "connect_timeout",
})
_EXPAND = re.compile(r"%([%sudSUD1-9])|%")


@dataclass
class SqlConfig:
    """A parsed *_table(5) file."""

    file: str
    hosts: list[str] = field(default_factory=list)
    user: str = ""
    password: str = ""
    dbname: str = ""
    """pgsql: the database name; sqlite: the database file (``dbpath``)."""
    query: str = ""
    result_format: str = "%s"
    domain: list[str] = field(default_factory=list)
    expansion_limit: int = 0
    retry_interval: int = 60
    connect_timeout: int = 5


def parse_config(text: str, file: str, kind: str) -> SqlConfig:
    """A *_table(5) file; TableOpenError names file, line and word."""
    values: dict[str, tuple[str, int]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or not name:
            raise TableOpenError('need "name = value"', file=file, line=lineno, word=line)
        if name not in KNOWN:
            raise TableOpenError(f'unknown {kind} parameter "{name}"', file=file, line=lineno,
                                 word=name)
        values[name] = (value.strip(), lineno)
    cfg = SqlConfig(file)

    def get(name: str, default: str = "") -> str:
        return values.get(name, (default, 0))[0]

    def number(name: str, default: int) -> int:
        text_value, line = values.get(name, (str(default), 0))
        if not text_value.isdigit():
            raise TableOpenError(f"{name}: bad number: {text_value}", file=file, line=line,
                                 word=text_value)
        return int(text_value)

    cfg.hosts = get("hosts").replace(",", " ").split()
    cfg.user, cfg.password, cfg.dbname = get("user"), get("password"), get("dbname")
    database = "dbpath" if kind == "sqlite" else "dbname"
    if kind == "sqlite":
        cfg.dbname = get("dbpath") or cfg.dbname
    cfg.result_format = get("result_format", "%s") or "%s"
    cfg.domain = get("domain").replace(",", " ").split()
    for d in cfg.domain:
        if ":" in d or d.startswith("/"):
            raise TableOpenError("domain: table lookups are not supported yet; list the "
                                 "domains", file=file, line=values["domain"][1], word=d)
    cfg.expansion_limit = number("expansion_limit", 0)
    cfg.retry_interval = number("retry_interval", 60)
    cfg.connect_timeout = number("connect_timeout", 5)
    cfg.query = get("query")
    if not cfg.query and get("table"):
        cfg.query = (f"SELECT {get('select_field')} FROM {get('table')} "
                     f"WHERE {get('where_field')} = '%s' {get('additional_conditions')}").strip()
    if not cfg.query:
        raise TableOpenError(f'{kind} table needs a "query"', file=file, word="query")
    if not cfg.dbname:
        raise TableOpenError(f'{kind} table needs a "{database}"', file=file, word=database)
    for text_value, what in ((cfg.query, "query"), (cfg.result_format, "result_format")):
        for m in _EXPAND.finditer(text_value):
            if m.group(1) is None or (what == "query" and m.group(1) in "SUD"):
                at = values.get(what, ("", 0))[1] or None
                raise TableOpenError(f'{what}: invalid expansion "{m.group(0)}"', file=file,
                                     line=at, word=text_value)
    return cfg


def sql_quote(text: str) -> str:
    """A value as it goes between single quotes in SQL (quotes doubled, NUL refused)."""
    if "\0" in text:
        raise TableError("key contains a NUL character")
    return text.replace("'", "''")


def _parts(key: str) -> tuple[str, str | None]:
    local, at, domain = key.rpartition("@")
    return (local, domain) if at else (key, None)


def expand(template: str, key: str, *, quote: Callable[[str], str] = sql_quote,
           original: str | None = None) -> str | None:
    """``template`` with Postfix's ``%`` expansions of ``key`` (``%S %U %D``: of
    ``original``); None when a ``%d``/``%1``… expansion has nothing to stand for."""
    missing = False

    def of(value: str, upper: bool) -> tuple[str, str | None]:
        return _parts(original if upper and original is not None else value)

    def repl(m: re.Match[str]) -> str:
        nonlocal missing
        code = m.group(1)
        if code == "%":
            return "%"
        upper = code in "SUD"
        local, domain = of(key, upper)
        if code in "sS":
            return quote(original if upper and original is not None else key)
        if code in "uU":
            return quote(local)
        if domain is None:
            missing = True
            return ""
        if code in "dD":
            return quote(domain)
        labels = domain.split(".")
        n = int(code)
        if n > len(labels):
            missing = True
            return ""
        return quote(labels[-n])

    out = _EXPAND.sub(repl, template)
    return None if missing else out


class SqlTable:
    """``sqlite:/file`` or ``pgsql:/file``: one query per lookup on one connection."""

    pattern = False
    blocking = True

    def __init__(self, kind: str, path: str, *, text: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.kind = kind
        self.spec = f"{kind}:{path}"
        self.config = parse_config(read_text(path) if text is None else text, path, kind)
        if kind == "pgsql":
            import psycopg  # noqa: F401  (a start error when missing, not at first lookup)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._clock = clock
        self._down: dict[str, float] = {}

    # --- connections -------------------------------------------------------------------

    def _connect_sqlite(self) -> Any:
        path = self.config.dbname
        if not os.path.exists(path):
            raise TableError(f"{self.spec}: open database {path}: No such file or directory")
        uri = "file:" + path.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        try:
            return sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:  # a directory, an unreadable file
            raise TableError(f"{self.spec}: open database {path}: {exc}") from None

    def _pg_target(self, host: str) -> dict[str, Any]:
        if host.startswith("unix:"):
            sock = host[5:]
            m = re.search(r"/\.s\.PGSQL\.(\d+)$", sock)
            if m:
                return {"host": os.path.dirname(sock), "port": int(m.group(1))}
            return {"host": sock}
        if host.startswith("inet:"):
            host = host[5:]
        if host.startswith("["):
            name, _, rest = host[1:].partition("]")
            port = rest.lstrip(":")
        else:
            name, _, port = host.partition(":")
        target: dict[str, Any] = {"host": name}
        if port:
            target["port"] = int(port)
        return target

    def _connect_pgsql(self) -> Any:
        import psycopg

        errors: list[str] = []
        now = self._clock()
        for host in self.config.hosts or ["localhost"]:
            if now - self._down.get(host, -1e18) < self.config.retry_interval:
                errors.append(f"{host}: skipped after a recent failure")
                continue
            try:
                return psycopg.connect(
                    dbname=self.config.dbname, user=self.config.user or None,
                    password=self.config.password or None, autocommit=True,
                    connect_timeout=self.config.connect_timeout, **self._pg_target(host))
            except (psycopg.Error, OSError, ValueError) as exc:
                self._down[host] = now
                errors.append(f"{host}: {str(exc).strip().splitlines()[0] if str(exc) else exc}")
        raise TableError(f"{self.spec}: cannot connect: " + "; ".join(errors))

    def _rows(self, query: str) -> Sequence[Sequence[Any]]:
        if self.kind == "sqlite":
            if self._conn is None:
                self._conn = self._connect_sqlite()
            try:
                return list(self._conn.execute(query).fetchall())
            except sqlite3.Error as exc:
                self._conn = None
                raise TableError(f"{self.spec}: {exc}") from None
        import psycopg

        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect_pgsql()
            try:
                with self._conn.cursor() as cur:
                    cur.execute(query)
                    return list(cur.fetchall()) if cur.description else []
            except psycopg.OperationalError as exc:  # connection lost: reconnect once
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise TableError(f"{self.spec}: {str(exc).strip()}") from None
            except psycopg.Error as exc:
                raise TableError(f"{self.spec}: {str(exc).strip()}") from None
        raise AssertionError("unreachable")

    # --- Table -------------------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        folded = fold(key)
        if self.config.domain:
            _local, domain = _parts(folded)
            if domain is None or domain not in self.config.domain:
                return None
        query = expand(self.config.query, folded)
        if query is None:
            return None
        with self._lock:
            rows = self._rows(query)
        values: list[str] = []
        for row in rows:
            for cell in row:
                if cell is None or str(cell) == "":
                    continue
                text = expand(self.config.result_format, str(cell), quote=lambda s: s,
                              original=folded)
                if text is not None:
                    values.append(text)
        if not values:
            return None
        if self.config.expansion_limit and len(values) > self.config.expansion_limit:
            raise TableError(f"{self.spec}: {key}: number of results exceeds "
                             f"expansion_limit {self.config.expansion_limit}")
        return ",".join(values)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
