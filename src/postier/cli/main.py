"""The ``postier`` command: postfix(1)'s verbs and Postfix's tools as subcommands.

``postier [-c DIR] start|stop|status|start-fg|check`` drives the master like
``postfix -c DIR …``; ``postier postconf …`` and the other tools take their own
Postfix-compatible options. Called through a link named ``postconf`` it behaves as that
tool. ``-c DIR``, else ``MAIL_CONFIG``, else the default directory chooses the
configuration (``postier.config.paths``).
"""

from __future__ import annotations

import os
import sys

from postier.config import paths

VERBS = ("start", "stop", "status", "start-fg", "check")
TOOLS = ("postconf", "postmap", "postalias")

USAGE = """usage: postier [-c config_dir] start|stop|status|start-fg|check
       postier postconf [options] [name ...]
       postier postmap|postalias [options] [type:]file ..."""


def _tool(name: str, argv: list[str]) -> int:
    if name == "postconf":
        from postier.cli import postconf

        return postconf.main(argv)
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
    from postier.cli import control

    action = {
        "start": control.start, "stop": control.stop, "status": control.status,
        "start-fg": control.start_fg, "check": control.check,
    }[verb]
    return action(os.path.abspath(paths.config_dir(config_arg)))


if __name__ == "__main__":
    sys.exit(main())
