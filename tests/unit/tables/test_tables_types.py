"""Each table type: its parser (errors name file and line) and its lookups."""

from __future__ import annotations

import os
import pwd
import sqlite3
from pathlib import Path

import pytest

from postier.tables import Maps, TableError, TableOpenError, Tables, open_table
from postier.tables.cidr import CidrTable
from postier.tables.compiled import CompiledTable, build, db_path, update
from postier.tables.inline import InlineTable, StaticTable
from postier.tables.regexp import RegexpTable
from postier.tables.sql import SqlTable, expand, parse_config

# --- texthash, hash, btree, lmdb -------------------------------------------------------

def test_texthash_reads_the_source_and_rereads_it_when_changed(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("# comment\nExample.COM  REJECT no\n  thanks\n1.2.3 OK\n")
    table = open_table(f"texthash:{src}")
    assert table.lookup("example.com") == "REJECT no thanks"
    assert table.lookup("EXAMPLE.com") == "REJECT no thanks"
    assert table.lookup("1.2.3") == "OK" and table.lookup("nope") is None
    src.write_text("other DUNNO\n")
    os.utime(src, ns=(1, 1))
    assert table.lookup("other") == "DUNNO" and table.lookup("1.2.3") is None


def test_texthash_bad_line_names_file_and_line(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("good OK\nlonely\n")
    with pytest.raises(TableOpenError, match=r"access, line 2: expected format"):
        open_table(f"texthash:{src}")


@pytest.mark.parametrize("kind", ["hash", "btree", "lmdb"])
def test_compiled_tables_build_update_delete(tmp_path: Path, kind: str) -> None:
    name = str(tmp_path / "map")
    build(kind, name, [("a@example.com", "OK"), ("b", "REJECT"), ("a@example.com", "late")])
    assert db_path(kind, name).endswith(".pdb" if kind != "lmdb" else ".lmdb")
    table = CompiledTable(kind, name, clock=lambda: 1e9)
    assert table.lookup("A@Example.com") == "OK"  # folded; the first duplicate wins
    assert table.lookup("c") is None
    update(kind, name, add=[("c", "DUNNO"), ("b", "HOLD")], delete=["a@example.com"])
    fresh = CompiledTable(kind, name)
    assert dict(fresh.items()) == {"b": "HOLD", "c": "DUNNO"}


def test_compiled_table_notices_a_rebuild(tmp_path: Path) -> None:
    now = [0.0]
    name = str(tmp_path / "map")
    build("hash", name, [("k", "one")])
    table = CompiledTable("hash", name, clock=lambda: now[0])
    assert table.lookup("k") == "one"
    build("hash", name, [("k", "two")])
    assert table.lookup("k") == "one"  # not rechecked within a second
    now[0] = 5.0
    assert table.lookup("k") == "two"


def test_missing_compiled_file_and_berkeley_db_are_start_errors(tmp_path: Path) -> None:
    name = tmp_path / "aliases"
    with pytest.raises(TableOpenError, match=r"aliases.pdb: No such file.*postier postmap"):
        open_table(f"hash:{name}")
    # a Berkeley DB hash file as Postfix's postmap leaves it (magic at offset 12)
    (tmp_path / "aliases.db").write_bytes(b"\0" * 12 + b"\x61\x15\x06\x00" + b"\0" * 100)
    with pytest.raises(TableOpenError, match=r"Berkeley DB file made by Postfix.*postier postmap"):
        open_table(f"hash:{name}")


def test_source_newer_than_database_is_warned_about(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("k v\n")
    build("hash", str(src), [("k", "v")])
    os.utime(src, (os.stat(src).st_mtime + 10,) * 2)
    warnings: list[str] = []
    Tables(warn=warnings.append).table(f"hash:{src}")
    assert warnings == [f"database {src}.pdb is older than source file {src}"]


# --- regexp and pcre -------------------------------------------------------------------

REGEXP = r"""
# comment
/^(.*)@(example\.com)$/     550 user $1 at ${2} denied
if /\.example\.net$/
/^spam/                     DISCARD
/^(x)|(y)z/                 FILTER smtp:[$2]
endif
/^[[:digit:]]+\.test$/      OK digits $$5
/CASE/i                     exact case only
!/@/                        REJECT no domain
"""


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
def test_regexp_and_pcre_rules(kind: str) -> None:
    t = RegexpTable(kind, "/t", text=REGEXP)
    assert t.pattern and not t.blocking
    assert t.lookup("Joe@Example.COM") == "550 user Joe at Example.COM denied"
    assert t.lookup("joe") == "REJECT no domain"
    assert t.lookup("spammer@mx.example.net") == "DISCARD"
    assert t.lookup("spammer@mx.example.org") is None  # outside the if block
    assert t.lookup("x@a.example.net") == "FILTER smtp:[]"  # unmatched group: empty
    assert t.lookup("123.test") == "OK digits $5"
    assert t.lookup("CASE@b") == "exact case only" and t.lookup("case@b") is None


@pytest.mark.parametrize(("text", "message"), [
    ("/a(b/ OK\n", r"/t, line 1: bad regular expression"),
    ("/a/ OK\n/(b)/ $2\n", r"/t, line 2: out of range replacement index"),
    ("!/(a)/ $1\n", r"line 1: \$number found in negative match"),
    ("ok\n", r"line 1: no closing regexp delimiter"),
    ("/a/\n", r"line 1: no replacement text"),
    ("if /a/\n/b/ OK\n", r"line 1: IF has no matching ENDIF"),
    ("endif\n", r"line 1: ignoring ENDIF"),
    ("/a/q OK\n", r'unknown regexp option "q"'),
])
def test_regexp_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(TableOpenError, match=message):
        RegexpTable("regexp", "/t", text=text)


def test_pcre_flags_and_differences() -> None:
    t = RegexpTable("pcre", "/t", text="/b/A anchored\n/x.y/s dotall\n")
    assert t.lookup("bc") == "anchored" and t.lookup("ab") is None
    assert t.lookup("x\ny") == "dotall"
    with pytest.raises(TableOpenError, match=r'pcre flag "U"'):
        RegexpTable("pcre", "/t", text="/a/U OK\n")
    with pytest.raises(TableOpenError, match=r'unknown regexp option "s"'):
        RegexpTable("regexp", "/t", text="/a/s OK\n")


# --- cidr -------------------------------------------------------------------------------

def test_cidr_rules() -> None:
    t = CidrTable("/c", text=(
        "192.0.2.5 REJECT one host\n192.0.2.0/24 OK\n[2001:db8::]/32 DUNNO\n"
        "if !198.51.100.0/24\n203.0.113.0/24 HOLD\nendif\n!10.0.0.0/8 FILTER x\n"))
    assert t.lookup("192.0.2.5") == "REJECT one host"
    assert t.lookup("192.0.2.77") == "OK"
    assert t.lookup("2001:db8::1") == "DUNNO" and t.lookup("[IPv6:2001:db8::2]") == "DUNNO"
    assert t.lookup("203.0.113.9") == "HOLD"
    assert t.lookup("10.1.1.1") is None  # inside 10/8: the negated rule does not match
    assert t.lookup("172.16.0.1") == "FILTER x"
    assert t.lookup("not-an-address") is None


@pytest.mark.parametrize(("text", "message"), [
    ("192.0.2.1/24 OK\n", r'/c, line 1: non-null host address bits in "192.0.2.1/24"'),
    ("192.0.2.0/33 OK\n", r"line 1: bad net/mask"),
    ("example.com OK\n", r"line 1: bad address pattern"),
    ("192.0.2.0/24\n", r"line 1: no lookup result"),
])
def test_cidr_errors(text: str, message: str) -> None:
    with pytest.raises(TableOpenError, match=message):
        CidrTable("/c", text=text)


# --- inline, static, unix --------------------------------------------------------------

def test_inline_static_unix() -> None:
    t = open_table("inline:{ Foo=bar, { b = two words }, c= }")
    assert isinstance(t, InlineTable)
    assert t.lookup("FOO") == "bar" and t.lookup("b") == "two words" and t.lookup("x") is None
    s = open_table("static:{ hello world }")
    assert isinstance(s, StaticTable) and s.lookup("anything") == "hello world"
    root = pwd.getpwuid(0)
    line = open_table("proxy:unix:passwd.byname").lookup(root.pw_name)
    assert line is not None and line.split(":")[5] == root.pw_dir
    assert open_table("unix:passwd.byname").lookup("no-such-user-postier") is None
    with pytest.raises(TableOpenError, match="inline table needs braces"):
        open_table("inline:a=b")
    with pytest.raises(TableOpenError, match=r"unix:group\.byname: unknown table"):
        open_table("unix:group.byname")


@pytest.mark.parametrize(("spec", "message"), [
    ("frob:/x", r'unsupported dictionary type: "frob"'),
    ("cdb:/etc/x", r'"cdb" is not supported by postier: no maintained Python package'),
    ("/etc/aliases", r'need "type:name"'),
    ("regexp:/nonexistent/file", r"open /nonexistent/file: No such file"),
])
def test_registry_refuses_what_it_cannot_open(spec: str, message: str) -> None:
    with pytest.raises(TableOpenError, match=message):
        open_table(spec)


# --- Maps -------------------------------------------------------------------------------

class Failing:
    spec = "pgsql:/down"
    pattern = False
    blocking = True

    def lookup(self, key: str) -> str | None:
        raise TableError("pgsql:/down: connection refused")


def test_maps_first_match_wins_pattern_tables_skip_partial_keys_errors_propagate() -> None:
    regexp = RegexpTable("regexp", "/r", text="/^example\\.com$/ from regexp\n")
    inline = InlineTable.from_pairs({"example.com": "from inline"})
    maps = Maps("p", [regexp, inline])
    assert maps.lookup("example.com") == "from regexp"
    assert maps.lookup("example.com", partial=True) == "from inline"
    failing = Maps("p", [inline, Failing()])
    assert failing.lookup("example.com") == "from inline"  # found before the broken one
    with pytest.raises(TableError, match="p: pgsql:/down: connection refused"):
        failing.lookup("other")
    assert not Maps("p", []) and Maps("p", []).lookup("x") is None


def test_maps_async_asks_blocking_tables_in_a_thread() -> None:
    import asyncio
    import threading

    seen: list[bool] = []

    class Slow:
        spec = "sqlite:/x"
        pattern = False
        blocking = True

        def lookup(self, key: str) -> str | None:
            seen.append(threading.current_thread() is threading.main_thread())
            return "v" if key == "k" else None

    from postier.tables import Key

    maps = Maps("p", [Slow()])
    assert asyncio.run(maps.search_async([Key("x"), Key("k", True)])) == "v"
    assert seen == [False, False]


# --- sqlite (and the SQL expansion shared with pgsql) ---------------------------------

def test_sql_query_expansion() -> None:
    assert expand("%s|%u|%d|%1|%2|%%", "o'hara@mail.example.com") == (
        "o''hara@mail.example.com|o''hara|mail.example.com|com|example|%")
    assert expand("x=%u", "plain") == "x=plain"
    assert expand("x=%d", "plain") is None  # no domain: no query
    assert expand("x=%4", "u@a.b.c") is None
    assert expand("%U/%s", "result@r.org", quote=lambda s: s, original="key@k.org") == (
        "key/result@r.org")


def test_sql_config_errors_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TableOpenError, match=r"/cf, line 2: unknown sqlite parameter \"bogus\""):
        parse_config("dbname = x\nbogus = 1\nquery = select 1\n", "/cf", "sqlite")
    with pytest.raises(TableOpenError, match=r'query: invalid expansion "%U"'):
        parse_config("dbname = x\nquery = select '%U'\n", "/cf", "sqlite")
    with pytest.raises(TableOpenError, match=r'needs a "query"'):
        parse_config("dbname = x\n", "/cf", "sqlite")
    with pytest.raises(TableOpenError, match=r'/cf: sqlite table needs a "dbpath"'):
        parse_config("query = select 1\n", "/cf", "sqlite")
    with pytest.raises(TableOpenError, match=r'/cf: pgsql table needs a "dbname"'):
        parse_config("query = select 1\n", "/cf", "pgsql")


def test_sqlite_dbpath_is_the_database_file_and_dbname_its_older_spelling() -> None:
    # sqlite_table(5): "dbpath"; postier first read "dbname" and still does
    assert parse_config("dbpath = /db/a\nquery = select 1\n", "/cf", "sqlite").dbname == "/db/a"
    assert parse_config("dbname = /db/b\nquery = select 1\n", "/cf", "sqlite").dbname == "/db/b"
    both = "dbname = /db/old\ndbpath = /db/new\nquery = select 1\n"
    assert parse_config(both, "/cf", "sqlite").dbname == "/db/new"
    assert parse_config(both, "/cf", "pgsql").dbname == "/db/old"


def test_sqlite_table(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("create table access (k text, v text)")
        conn.executemany("insert into access values (?, ?)", [
            ("joe@example.com", "REJECT"), ("example.org", "OK"), ("multi", "a"),
            ("multi", "b"), ("o'hara", "quoted")])
    cf = tmp_path / "sqlite.cf"
    cf.write_text(f"dbpath = {db}\nquery = SELECT v FROM access WHERE k='%s'\n"
                  "result_format = [%s]\nexpansion_limit = 2\n")
    t = open_table(f"proxy:sqlite:{cf}")
    assert t.blocking and not t.pattern
    assert t.lookup("Joe@Example.com") == "[REJECT]"
    assert t.lookup("multi") == "[a],[b]"
    assert t.lookup("o'hara") == "[quoted]"
    assert t.lookup("nobody") is None
    cf.write_text(f"dbpath = {db}\nquery = SELECT v FROM access WHERE k='%d'\n"
                  "domain = example.org\n")
    only = SqlTable("sqlite", str(cf))
    assert only.lookup("x@example.org") == "OK"
    assert only.lookup("x@example.com") is None  # not one of "domain"
    cf.write_text(f"dbpath = {db}\nquery = SELECT v FROM access WHERE k='%s'\n"
                  "expansion_limit = 1\n")
    with pytest.raises(TableError, match="exceeds expansion_limit 1"):
        SqlTable("sqlite", str(cf)).lookup("multi")
    cf.write_text(f"dbpath = {tmp_path}/gone.sqlite\nquery = SELECT 1\n")
    with pytest.raises(TableError, match="No such file"):
        SqlTable("sqlite", str(cf)).lookup("x")
    cf.write_text(f"dbpath = {db}\nquery = SELECT nosuchcolumn FROM access\n")
    with pytest.raises(TableError, match="no such column"):
        SqlTable("sqlite", str(cf)).lookup("x")


def test_pgsql_down_is_a_lookup_error_not_a_miss(tmp_path: Path) -> None:
    cf = tmp_path / "pg.cf"
    cf.write_text("hosts = inet:127.0.0.1:1\ndbname = mail\nuser = u\n"
                  "query = SELECT 1 WHERE '%s' = 'x'\nconnect_timeout = 2\n")
    t = open_table(f"pgsql:{cf}")
    with pytest.raises(TableError, match="cannot connect"):
        t.lookup("x")
    with pytest.raises(TableError, match="skipped after a recent failure"):
        t.lookup("x")  # retry_interval: the host is not hammered


def test_inline_regexp_and_string_list() -> None:
    from postier.tables import Tables
    from postier.tables.stringlist import StringList

    table = Tables().table("regexp:{{/^[^A-Z]/ Bogus}, {/^x(.)/ got$1}}")
    assert table.lookup(".") == "Bogus"
    assert table.lookup("xy") == "goty"
    assert table.lookup("helo") is None
    words = StringList.parse(["CONNECT", "GET", "!post", "regexp:{{/^[^A-Z]/ Bogus}}",
                              "POST"], Tables().table)
    assert [words.matches(w) for w in ("connect", "Get", "POST", ".", "1abc", "HELO")] == [
        True, True, False, True, True, False]


def test_sqlite_dbname_that_is_a_directory_is_a_table_error(tmp_path: Path) -> None:
    """A lookup that cannot be answered is a TableError (451 4.3.0 in smtpd), whatever
    sqlite3 raises: here a directory given as the database."""
    cf = tmp_path / "sqlite.cf"
    cf.write_text(f"dbname = {tmp_path}\nquery = SELECT 1\n")
    with pytest.raises(TableError, match=str(tmp_path)):
        SqlTable("sqlite", str(cf)).lookup("x")
