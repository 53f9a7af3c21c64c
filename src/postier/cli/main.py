"""The ``postier`` command: postfix(1)'s verbs and Postfix's tools as subcommands.

Follows postfix(1) (``postfix [-c DIR] [-v] command``) for the verbs and each tool's own
manual page for the tools. ``postier [-c DIR] VERB`` drives the master like ``postfix -c
DIR VERB``; ``postier postfix VERB`` is the same, under Postfix's name. The tools
(``postconf``, ``postqueue``, ``mailq``, ``postsuper``, ``postcat``, ``postmap``,
``postalias``, ``postlog``, ``newaliases``) take their own Postfix-compatible options,
parsed by the tool (so ``postconf -h`` keeps Postfix's meaning); ``postier TOOL --help``
prints its usage.
Called through a link named after one of the tools it behaves as that tool. ``-c DIR``,
else ``MAIL_CONFIG``, else the default directory chooses the configuration
(``postier.config.paths``).

Exit status: 0 success; 1 the command failed (printed why: a configuration error, the
master not running, ...); 2 a usage error (unknown command or option, extra argument),
with the usage on stderr and nothing started.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import postier
from postier.config import paths

EXIT_USAGE = 2


@dataclass(frozen=True)
class Verb:
    """A postfix(1) verb: the function ``module.function(config_dir) -> int`` that does it."""

    name: str
    module: str
    function: str
    help: str


VERBS: tuple[Verb, ...] = (
    Verb("start", "postier.cli.control", "start",
         "check the configuration and start the mail system"),
    Verb("stop", "postier.cli.control", "stop",
         "stop the mail system, letting messages in progress finish"),
    Verb("abort", "postier.cli.control", "abort",
         "stop the mail system at once (Postfix's stop fast)"),
    Verb("reload", "postier.cli.control", "reload",
         "re-read the configuration of the running mail system (SIGHUP)"),
    Verb("restart", "postier.cli.control", "restart", "stop, then start the mail system"),
    Verb("status", "postier.cli.control", "status",
         "exit 0 when the mail system runs, else 1"),
    Verb("start-fg", "postier.cli.control", "start_fg",
         "run the master in the foreground, logging to stderr (containers, systemd)"),
    Verb("check", "postier.cli.check", "check",
         "validate the configuration; report what postier does not support"),
    Verb("flush", "postier.cli.postqueue", "flush", "attempt to deliver every deferred message"),
    Verb("set-permissions", "postier.cli.permissions", "set_permissions",
         "repair ownership and modes of the queue and configuration directories"),
)
VERB_NAMES = tuple(v.name for v in VERBS)

#: Postfix's tools: name -> (module, one-line help). Each module's ``main(argv)`` parses
#: its own options as the Postfix program does; ``USAGE`` is its usage text.
TOOLS: dict[str, tuple[str, str]] = {
    "postconf": ("postier.cli.postconf", "show or change main.cf and master.cf (postconf(1))"),
    "postqueue": ("postier.cli.postqueue", "list or flush the queue (postqueue(1))"),
    "mailq": ("postier.cli.postqueue", "list the queue (sendmail's mailq)"),
    "postsuper": ("postier.cli.postsuper", "delete, hold, release, requeue (postsuper(1))"),
    "postcat": ("postier.cli.postcat", "show a queue file (postcat(1))"),
    "postmap": ("postier.cli.postmap", "build or query a lookup table (postmap(1))"),
    "postalias": ("postier.cli.postalias", "build or query an alias table (postalias(1))"),
    "postlog": ("postier.cli.postlog", "write a line to the mail log (postlog(1))"),
    "newaliases": ("postier.cli.newaliases",
                   "rebuild the alias databases of alias_database (sendmail -bi)"),
}


def _tool(name: str, argv: list[str]) -> int:
    module = importlib.import_module(TOOLS[name][0])
    if argv[:1] == ["--help"]:
        usage: str = module.USAGE
        print(f"{name}: {TOOLS[name][1]}\n"
              + (usage if usage.startswith("usage:") else f"usage: {usage}"))
        return 0
    if name == "postqueue" or name == "mailq":
        result: int = module.main(argv, prog=name)
    else:
        result = module.main(argv)
    return result


def _verb_function(verb: Verb) -> Callable[[str], int] | None:
    module = importlib.import_module(verb.module)
    function: Callable[[str], int] | None = getattr(module, verb.function, None)
    return function


#: ``stop fast``: the fast stop under the spelling the issue asks for. Postfix 3.7's
#: postfix(1) documents only ``abort`` (its postfix-script ignores a word after
#: ``stop`` and stops in order); postier runs ``abort`` for ``stop fast``.
STOP_FAST = "fast"


def _add_verbs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb in VERBS:
        parser = sub.add_parser(verb.name, help=verb.help, description=verb.help,
                                allow_abbrev=False)
        if verb.name == "stop":
            parser.add_argument("how", nargs="?", choices=[STOP_FAST],
                                help="stop at once, as abort does")


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, verbs, ``postfix VERB`` and the tools."""
    top = argparse.ArgumentParser(
        prog="postier",
        description="A mail server that reads Postfix's configuration.",
        epilog="Exit status: 0 success, 1 failure (printed why), 2 usage error.",
        allow_abbrev=False,
    )
    top.add_argument("-c", dest="config_dir", metavar="config_dir",
                     help="configuration directory (default: $MAIL_CONFIG, else "
                          "the installed one)")
    top.add_argument("-v", dest="verbose", action="count", default=0,
                     help="more verbose logging (accepted as postfix(1) does)")
    top.add_argument("-D", dest="debug", action="store_true", help=argparse.SUPPRESS)
    top.add_argument("--version", action="version", version=f"postier {postier.__version__}")
    sub = top.add_subparsers(dest="command", metavar="command")
    _add_verbs(sub)
    alias = sub.add_parser("postfix", help="postfix(1)'s verbs under Postfix's name: "
                           "postier postfix start|stop|reload|...",
                           description="postfix(1)'s verbs", allow_abbrev=False)
    alias_sub = alias.add_subparsers(dest="postfix_command", metavar="command", required=True)
    _add_verbs(alias_sub)
    for name, (_, text) in TOOLS.items():
        # The tool parses its own options (Postfix's getopt syntax): no prefix chars here,
        # so every word after the tool's name reaches it unchanged.
        tool = sub.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        tool.add_argument("args", nargs="*")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run ``postier`` with ``argv`` (without the program name); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    invoked = os.path.basename(sys.argv[0]) if argv is None else "postier"
    if invoked in TOOLS:
        return _tool(invoked, args)
    top = parser()
    ns, extra = top.parse_known_args(args)
    command: str | None = ns.command
    if command is None:
        top.print_usage(sys.stderr)
        print("postier: error: a command is required (postier --help lists them)",
              file=sys.stderr)
        return EXIT_USAGE
    if command in TOOLS:
        rest: list[str] = [*ns.args, *extra]
        if ns.config_dir is not None:
            rest = ["-c", ns.config_dir, *rest]
        return _tool(command, rest)
    if command == "postfix":
        command = ns.postfix_command
    if extra:
        name = f"postier {command}" if ns.command == command else f"postier postfix {command}"
        print(f"usage: {name} [-h]\n{name}: error: unrecognized arguments: {' '.join(extra)}",
              file=sys.stderr)
        return EXIT_USAGE
    if command == "stop" and getattr(ns, "how", None) == STOP_FAST:
        command = "abort"
    verb = next(v for v in VERBS if v.name == command)
    function = _verb_function(verb)
    if function is None:
        print(f"postier: fatal: {verb.name} is not available in this version", file=sys.stderr)
        return 1
    return function(os.path.abspath(paths.config_dir(ns.config_dir)))


if __name__ == "__main__":
    sys.exit(main())
