"""What an alias value, a ~/.forward line or a :include: line asks for, as pure functions.

Follows Postfix aliases(5) ("``|command``", "``/file/name``", "``:include:/file/name``",
"``address``", "``\\user``" delivering to the user's mailbox without further expansion),
local(8) "SYSTEM-WIDE AND USER-LEVEL ALIASING" (a ``.forward`` file has the same
syntax as the right-hand side of an alias; ``#`` starts a comment line) and postconf(5)
``allow_mail_to_commands`` / ``allow_mail_to_files`` (the classes ``alias``,
``forward``, ``include``: where the command or file was found) and ``forward_path``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from postier.local.localpart import local_expand
from postier.tables.aliases import split_values


class Origin(enum.Enum):
    """Where a delivery target was found (postconf(5) allow_mail_to_* class names)."""

    ALIAS = "alias"
    FORWARD = "forward"
    INCLUDE = "include"


class ItemKind(enum.Enum):
    """What one element of an alias value or .forward file names."""

    ADDRESS = "address"  # user or user@domain, looked up again
    MAILBOX = "mailbox"  # \\user: that user's mailbox, no alias or .forward
    COMMAND = "command"  # |command
    FILE = "file"  # /absolute/path
    INCLUDE = "include"  # :include:/absolute/path


@dataclass(frozen=True)
class Item:
    """One element: its kind and its text (the command without ``|``, the path, the
    address without quotes around the whole)."""

    kind: ItemKind
    value: str


def parse_item(text: str) -> Item:
    """One element of an alias value or .forward line, as aliases(5) reads it.

    ``"|cmd args"`` and ``|cmd`` are commands; ``/path`` a file; ``:include:/path`` an
    include (the path as written, checked by the caller); ``\\user`` a mailbox; anything
    else an address (a quoted whole is unquoted unless it is a quoted local part).
    """
    value = text.strip()
    inner = unquote_whole(value)
    if inner is not None and inner.startswith(("|", "/", ":include:")):
        value = inner
    if value.startswith("|"):
        return Item(ItemKind.COMMAND, value[1:].strip())
    if value[:9].lower() == ":include:":
        return Item(ItemKind.INCLUDE, value[9:].strip())
    if value.startswith("/"):
        return Item(ItemKind.FILE, value)
    if value.startswith("\\"):
        return Item(ItemKind.MAILBOX, value[1:].strip('"'))
    return Item(ItemKind.ADDRESS, value)


def unquote_whole(value: str) -> str | None:
    """``value`` without its quotes when it is one RFC 822 quoted string from end to end
    (``"|cmd \\"arg\\""``: ``\\x`` gives ``x``); None when it is not one (unquoted, or a
    quoted local part followed by ``@domain``)."""
    if len(value) < 2 or value[0] != '"':
        return None
    out: list[str] = []
    i = 1
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out) if i == len(value) - 1 else None
        out.append(c)
        i += 1
    return None


def parse_values(values: Iterable[str]) -> list[Item]:
    """The elements of an alias's values (already split on commas by the table)."""
    return [parse_item(v) for v in values if v.strip()]


def parse_file(text: str) -> list[Item]:
    """The elements of a ``.forward`` or ``:include:`` file: comma- or line-separated
    values (commas inside double quotes kept), lines starting with ``#`` ignored."""
    items: list[Item] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        items.extend(parse_item(v) for v in split_values(line))
    return items


def allowed(classes: Sequence[str], origin: Origin) -> bool:
    """Does ``allow_mail_to_commands``/``allow_mail_to_files`` (``classes``) allow a
    command or file found in ``origin``? Names compare case-insensitively."""
    return origin.value in {c.strip().lower() for c in classes}


def forward_paths(
    templates: Sequence[str], attrs: Mapping[str, str | None], expansion_filter: str
) -> list[str]:
    """``forward_path``'s elements expanded for one recipient (``localpart.local_expand``
    attributes: user, home, shell, recipient, extension, domain, local,
    recipient_delimiter); empty results and duplicates dropped, order kept. Raises
    ``localpart.ExpansionError`` for bad ``$`` syntax."""
    out: list[str] = []
    for template in templates:
        path = local_expand(template.strip(), attrs, expansion_filter).strip()
        if path and path not in out:
            out.append(path)
    return out


def delivered_to(content: Iterable[bytes], limit: int = 1 << 20) -> set[str]:
    """The ``Delivered-To:`` values (lower-cased, unfolded) of the message's primary
    header block, read from ``content`` (the queued message, LF line ends) up to its
    empty line or ``limit`` bytes: local(8)'s forwarding-loop evidence."""
    data = bytearray()
    for chunk in content:
        data += chunk
        if b"\n\n" in data or data.startswith(b"\n") or len(data) >= limit:
            break
    head = bytes(data).split(b"\n\n", 1)[0] if not data.startswith(b"\n") else b""
    found: set[str] = set()
    current: list[bytes] = []
    for line in [*head.split(b"\n"), b""]:
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        if current:
            name, _, value = b"".join(current).partition(b":")
            if name.strip().lower() == b"delivered-to":
                found.add(value.decode("utf-8", "replace").strip().lower())
        current = [line] if line else []
    return found
