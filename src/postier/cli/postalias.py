"""``postier postalias``: postalias(1), the aliases(5) flavour of ``postier postmap``.

Follows postalias(1): the same options as postmap(1) (see ``cli.postmap``), the source
in aliases(5) form (``name: value, …``).
"""

from __future__ import annotations

from postier.cli import postmap

USAGE = postmap.USAGE.replace("postmap", "postalias", 1)


def main(argv: list[str]) -> int:
    return postmap.main(argv, prog="postalias")
