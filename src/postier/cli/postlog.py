"""``postier postlog``: write lines to the mail log, as Postfix's postlog(1).

Follows postlog(1): ``postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text ...]``.
The text is logged as one line; without text, each line of standard input is logged.
``-p``: ``info`` (default), ``warn``/``warning``, ``error``, ``fatal``, ``panic``;
``-t``: the whole tag (default ``$syslog_name/postlog``). The line goes where postier's
own lines go (``postier.log.for_config``: maillog_file, syslog or the fallback file).
Exit status 0, 1 on a usage or configuration error.
"""

from __future__ import annotations

import getopt
import sys
from typing import TextIO

from postier.config import paths
from postier.config.errors import ConfigError
from postier.config.params import SYSLOG_NAME
from postier.config.settings import Config
from postier.log import for_config

USAGE = "usage: postlog [-iv] [-c config_dir] [-p priority] [-t tag] [text ...]"

_PRIORITIES = {"info": "info", "warn": "warning", "warning": "warning", "error": "error",
               "fatal": "fatal", "panic": "panic"}


def main(argv: list[str], *, stdin: TextIO | None = None) -> int:
    """Run postlog with ``argv`` (without the program name); return the exit status."""
    try:
        opts, args = getopt.getopt(argv, "c:ip:t:v")
    except getopt.GetoptError as exc:
        print(f"postlog: fatal: {exc.msg}\n{USAGE}", file=sys.stderr)
        return 1
    config_arg: str | None = None
    priority = "info"
    tag: str | None = None
    for opt, value in opts:
        if opt == "-c":
            config_arg = value
        elif opt == "-p":
            if value.lower() not in _PRIORITIES:
                print(f"postlog: fatal: unknown priority value: {value}", file=sys.stderr)
                return 1
            priority = _PRIORITIES[value.lower()]
        elif opt == "-t":
            tag = value
    try:
        cfg = Config.from_dir(paths.config_dir(config_arg))
        log = for_config("postlog", cfg)
    except (ConfigError, OSError) as exc:
        print(f"postlog: fatal: {exc}", file=sys.stderr)
        return 1
    if tag is not None:
        log.ident = tag
    else:
        log.ident = f"{cfg[SYSLOG_NAME]}/postlog"
    try:
        if args:
            log.log(priority, " ".join(args))
        else:
            for line in stdin if stdin is not None else sys.stdin:
                log.log(priority, line.rstrip("\n"))
    finally:
        log.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
