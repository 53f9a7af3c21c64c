"""newaliases (sendmail -bi): rebuild every alias database named by ``alias_database``.

Follows sendmail(1)'s ``-bi`` mode and newaliases(1): the configuration is chosen by
``-C config_dir`` (or ``-C config_dir/main.cf``; postier's ``-c config_dir`` too), else
``MAIL_CONFIG``, else the default directory; ``-oA[type:]file`` names the database to
build instead of ``alias_database`` (default ``hash:/etc/aliases``); each database is
built as ``postalias`` builds it (``cli.postalias``), in order, so error lines read
``postalias: fatal: ...`` as under Postfix, whose sendmail runs postalias. An empty
``alias_database`` builds nothing and succeeds. ``-v`` and ``-I`` (sendmail's older
name for this mode) are accepted; other ``-o`` options are accepted and ignored, as
sendmail does.

Exit status: 0 every database built (or none named); 1 a database could not be built
(postalias printed why) or main.cf could not be read; 2 a usage error (an unknown
option, a recipient argument: ``alias initialization mode requires no recipient``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from postier.cli import postalias
from postier.config import paths
from postier.config.braces import split_list
from postier.config.errors import ConfigError
from postier.config.params import ALIAS_DATABASE
from postier.config.settings import Config

PROG = "newaliases"
USAGE = "newaliases [-C config_dir] [-oA[type:]file] [-v]"
NO_RECIPIENT = "alias initialization mode requires no recipient"


def sendmail_config_dir(arg: str | None) -> str:
    """sendmail's ``-C``: ``arg`` names main.cf or its directory; absent, the usual choice
    (``MAIL_CONFIG``, else the default directory). Returns an absolute directory path."""
    if arg is not None and not os.path.isdir(arg) and os.path.basename(arg) == "main.cf":
        arg = os.path.dirname(arg) or "."
    return os.path.abspath(paths.config_dir(arg))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: fatal: {message}\n{self.prog}: fatal: usage: {USAGE}\n")


def parser() -> argparse.ArgumentParser:
    """newaliases' options (sendmail's, for ``-bi``); ``args`` collects recipients, refused."""
    p = _Parser(prog=PROG, usage=USAGE, allow_abbrev=False,
                description="Rebuild the alias databases named by alias_database "
                            "(sendmail -bi).")
    p.add_argument("-C", "-c", dest="config_dir", metavar="config_dir",
                   help="main.cf, or its directory (default: $MAIL_CONFIG, else the "
                        "installed one)")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="Xvalue",
                   help="-oA[type:]file: build this database instead of alias_database; "
                        "other -o options are ignored")
    p.add_argument("-v", dest="verbose", action="count", default=0,
                   help="verbose (passed to postalias, no effect)")
    p.add_argument("-I", dest="initialize", action="store_true",
                   help="sendmail's older spelling of this mode (no effect)")
    p.add_argument("args", nargs="*", metavar="recipient", help=argparse.SUPPRESS)
    return p


def databases(value: str) -> list[str]:
    """``-oA``'s value split as ``alias_database`` is (commas and white space):
    ``"hash:/a, lmdb:/b"`` -> ``["hash:/a", "lmdb:/b"]``."""
    return split_list(value)


def postalias_argv(config_dir: str, names: list[str], verbose: int) -> list[str]:
    """The postalias command line newaliases runs: ``-c DIR [-v ...] name ...``."""
    return ["-c", config_dir, *["-v"] * verbose, *names]


def main(argv: list[str] | None = None) -> int:
    """``newaliases`` with ``argv`` (without the program name); returns the exit status."""
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.args:
        p.error(NO_RECIPIENT)
    config_dir = sendmail_config_dir(args.config_dir)
    override = [o[1:] for o in args.options if o.startswith("A")]
    if override:
        names = [n for value in override for n in databases(value)]
    else:
        try:
            cfg = Config.from_dir(config_dir)
        except ConfigError as exc:
            print(f"{PROG}: fatal: {exc}", file=sys.stderr)
            return 1
        names = list(cfg[ALIAS_DATABASE])
    if not names:
        return 0
    return postalias.main(postalias_argv(config_dir, names, args.verbose))
