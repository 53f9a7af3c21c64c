"""``postier postmap`` and ``postier postalias``: build, query, dump and update tables.

Follows postmap(1) and postalias(1): ``[type:]file`` (type default
``default_database_type``) is compiled from its source into postier's own format
(``tables.compiled``: ``file.pdb`` for hash/btree, ``file.lmdb`` for lmdb); ``-q key``
prints the value of ``key`` in each table named until one has it (exit 1 when none
does), ``-q -`` reads keys from standard input and prints ``key<TAB>value`` for each
found; ``-s`` prints every entry; ``-i`` adds the ``key value`` lines of standard input
(postalias: ``name: value``) to an existing table; ``-d key`` (or ``-d -``) deletes.
``-c config_dir`` selects main.cf. A malformed source line is a warning naming file
and line (``postmap: warning: FILE, line N: expected format: key whitespace value``;
postalias: ``need name:value pair``) and is skipped, the rest built, exit 0; a key
seen twice keeps the first value and warns ``TABLE: duplicate entry: "KEY"``
(``-w``: no warning; ``-r``: the last value wins, no warning). Other Postfix flags
(``-N -n -f -o -p -b -h -v``) are accepted and ignored.
"""

from __future__ import annotations

import getopt
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

from postier.config import paths
from postier.config.params import DEFAULT_DATABASE_TYPE
from postier.config.settings import Config
from postier.tables import TableError, TableOpenError, compiled, open_table, split_spec
from postier.tables.registry import OpenOptions
from postier.tables.source import Entry, parse_aliases_entries, parse_postmap

COMPILED = frozenset(compiled.SUFFIX)


class Fatal(Exception):
    """One ``PROG: fatal: …`` line and exit status 1."""


def _default_type(config_dir: str | None) -> str:
    directory = paths.config_dir(config_dir)
    if os.path.exists(os.path.join(directory, "main.cf")):
        try:
            return Config.from_dir(directory)[DEFAULT_DATABASE_TYPE]
        except Exception:
            return "hash"
    return "hash"


def _spec(arg: str, default_type: str) -> tuple[str, str]:
    if ":" in arg and not arg.startswith("/"):
        return split_spec(arg)
    return default_type, arg


@dataclass(frozen=True)
class Duplicates:
    """What to do with a key seen twice: ``replace`` (``-r``: the last one wins, no
    warning), else the first one wins, with a warning unless ``quiet`` (``-w``)."""

    replace: bool = False
    quiet: bool = False


def _entries(text: str, file: str, aliases: bool, prog: str, err: TextIO,
             dups: Duplicates, target: str) -> list[Entry]:
    """The entries to store; a malformed line is a warning ``PROG: warning: FILE, line
    N: …`` and is skipped, a duplicate key ``PROG: warning: TARGET: duplicate entry:
    "KEY"`` (TARGET the table written, as postmap(1) names its .db)."""
    def warn(message: str) -> None:
        print(f"{prog}: warning: {message}", file=err)

    parse = parse_aliases_entries if aliases else parse_postmap
    kept: dict[str, Entry] = {}
    for entry in parse(text, file, warn=warn):
        if entry.key in kept and not dups.replace:
            if not dups.quiet:
                warn(f'{target}: duplicate entry: "{entry.key}"')
            continue
        kept.pop(entry.key, None)
        kept[entry.key] = entry
    return sorted(kept.values(), key=lambda e: e.line)


def _read_source(file: str) -> str:
    try:
        with open(file, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise Fatal(f"open {file}: {exc.strerror}") from None


def _build(kind: str, name: str, aliases: bool, prog: str, err: TextIO,
           dups: Duplicates) -> None:
    if kind not in COMPILED:
        raise Fatal(f"unsupported dictionary type for building: {kind} "
                    f"(postier compiles {', '.join(sorted(COMPILED))})")
    text = _read_source(name)
    entries = _entries(text, name, aliases, prog, err, dups, compiled.db_path(kind, name))
    compiled.build(kind, name, [(e.key, e.value) for e in entries])


def _stdin_entries(stdin: TextIO, aliases: bool, prog: str, err: TextIO,
                   dups: Duplicates) -> list[Entry]:
    return _entries(stdin.read(), "stdin", aliases, prog, err, dups, "stdin")


def _lookup(specs: Iterable[tuple[str, str]], key: str, options: OpenOptions) -> str | None:
    for kind, name in specs:
        table = open_table(f"{kind}:{name}", options)
        value = table.lookup(key)
        if value is not None:
            return value
    return None


USAGE = ("postmap [-bfhinNoprsuvw] [-c config_dir] [-d key|-] [-q key|-] "
         "[type:]file ...")


def run(prog: str, argv: list[str], stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """The tool's work; returns the exit status."""
    aliases = prog == "postalias"
    try:
        opts, args = getopt.getopt(argv, "bc:d:fhiNno:pq:rsuvw")
    except getopt.GetoptError as exc:
        print(f"{prog}: fatal: {exc}\nusage: {prog} [-c config_dir] [-i] [-s] "
              "[-q key|-] [-d key|-] [type:]file ...", file=err)
        return 1
    config_dir: str | None = None
    query: str | None = None
    delete: str | None = None
    dump = incremental = replace = quiet = False
    for opt, val in opts:
        if opt == "-c":
            config_dir = val
        elif opt == "-q":
            query = val
        elif opt == "-d":
            delete = val
        elif opt == "-s":
            dump = True
        elif opt == "-i":
            incremental = True
        elif opt == "-r":
            replace = True
        elif opt == "-w":
            quiet = True
    dups = Duplicates(replace=replace, quiet=quiet)
    if not args:
        print(f"{prog}: fatal: usage: {prog} [options] [type:]file...", file=err)
        return 1
    options = OpenOptions(aliases=aliases,
                          warn=lambda message: print(f"{prog}: warning: {message}", file=err))
    try:
        default = _default_type(config_dir)
        specs = [_spec(a, default) for a in args]
        if query is not None:
            if query == "-":
                found_any = False
                for line in stdin:
                    key = line.strip()
                    if not key:
                        continue
                    value = _lookup(specs, key, options)
                    if value is not None:
                        found_any = True
                        print(f"{key}\t{value}", file=out)
                return 0 if found_any else 1
            value = _lookup(specs, query, options)
            if value is None:
                return 1
            print(value, file=out)
            return 0
        if dump:
            for kind, name in specs:
                table = open_table(f"{kind}:{name}", options)
                items = getattr(table, "items", None)
                if items is None:
                    raise Fatal(f"table {kind}:{name} cannot be listed")
                for k, v in items():
                    print(f"{k}\t{v}", file=out)
            return 0
        if delete is not None:
            keys = [line.strip() for line in stdin if line.strip()] if delete == "-" else [delete]
            status = 1
            for kind, name in specs:
                if kind not in COMPILED:
                    raise Fatal(f"unsupported dictionary type for deleting: {kind}")
                present = [k for k in keys if compiled.has_key(kind, name, k)]
                if present:
                    compiled.update(kind, name, delete=present)
                    status = 0
            return status
        if incremental:
            entries = _stdin_entries(stdin, aliases, prog, err, dups)
            for kind, name in specs:
                if kind not in COMPILED:
                    raise Fatal(f"unsupported dictionary type for updating: {kind}")
                compiled.update(kind, name, add=[(e.key, e.value) for e in entries])
            return 0
        for kind, name in specs:
            _build(kind, name, aliases, prog, err, dups)
        return 0
    except (Fatal, TableOpenError, TableError) as exc:
        print(f"{prog}: fatal: {exc}", file=err)
        return 1


def main(argv: list[str], prog: str = "postmap") -> int:
    """``postmap`` (or ``postalias`` when ``prog`` says so) with ``argv``."""
    return run(prog, argv, sys.stdin, sys.stdout, sys.stderr)
