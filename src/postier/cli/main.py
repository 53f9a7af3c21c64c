"""The ``postier`` command: postfix(1)'s verbs and Postfix's tools as subcommands.

``postier [-c DIR] start|stop|status|start-fg|check|flush`` drives the master like
``postfix -c DIR …``; ``postier postconf …`` and the other tools (``postqueue``,
``mailq``, ``postsuper``, ``postcat``) take their own Postfix-compatible options. Called
through a link named after one of the tools it behaves as that tool. ``-c DIR``, else
``MAIL_CONFIG``, else the default directory chooses the configuration (``postier.config.paths``).
"""

from __future__ import annotations

import os
import sys

from postier.config import paths

VERBS = ("start", "stop", "status", "start-fg", "check", "flush", "reload", "restart", "abort")
TOOLS = ("postconf", "postqueue", "mailq", "postsuper", "postcat", "postmap", "postalias")

USAGE = """usage: postier [-c config_dir] start|stop|reload|restart|abort|status|start-fg|check
       postier [-c config_dir] flush
       postier postconf [options] [name ...]
       postier postqueue -f | -i queueid | -j | -p | -s site
       postier mailq
       postier postsuper [-d|-h|-H|-r queue_id|ALL|-] [queue ...]
       postier postcat [-beh] [-q] queue_id|file ...
       postier postmap|postalias [options] [type:]file ..."""


def _tool(name: str, argv: list[str]) -> int:
    if name == "postconf":
        from postier.cli import postconf

        return postconf.main(argv)
    if name in ("postqueue", "mailq"):
        from postier.cli import postqueue

        return postqueue.main(argv, prog=name)
    if name == "postsuper":
        from postier.cli import postsuper

        return postsuper.main(argv)
    if name == "postcat":
        from postier.cli import postcat

        return postcat.main(argv)
    if name == "postmap":
        from postier.cli import postmap

        return postmap.main(argv)
    if name == "postalias":
        from postier.cli import postalias

        return postalias.main(argv)
    raise AssertionError(name)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    invoked = os.path.basename(sys.argv[0]) if argv is None else "postier"
    if invoked in TOOLS:
        return _tool(invoked, args)
    config_arg: str | None = None
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt == "-c" and args:
            config_arg = args.pop(0)
        elif opt.startswith("-c") and len(opt) > 2:
            config_arg = opt[2:]
        elif opt in ("-h", "--help"):
            print(USAGE)
            return 0
        elif opt == "-v":
            continue
        else:
            print(f"postier: fatal: unknown option {opt}\n{USAGE}", file=sys.stderr)
            return 1
    if not args:
        print(USAGE, file=sys.stderr)
        return 1
    verb, rest = args[0], args[1:]
    if verb in TOOLS:
        if config_arg is not None:
            rest = ["-c", config_arg, *rest]
        return _tool(verb, rest)
    if verb not in VERBS:
        print(f"postier: fatal: unknown command: {verb}\n{USAGE}", file=sys.stderr)
        return 1
    from postier.cli import control, postqueue

    action = {
        "start": control.start, "stop": control.stop, "status": control.status,
        "start-fg": control.start_fg, "check": control.check, "flush": postqueue.flush,
        "reload": control.reload, "restart": control.restart, "abort": control.abort,
    }[verb]
    return action(os.path.abspath(paths.config_dir(config_arg)))


if __name__ == "__main__":
    sys.exit(main())
