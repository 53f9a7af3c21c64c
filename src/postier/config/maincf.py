"""Read main.cf into parameter settings, and edit it in place the way ``postconf -e``/``-X`` do.

Follows postconf(5) "DESCRIPTION": a logical line is ``name = value``; whitespace
around ``=`` and at the end of a logical line is ignored; empty lines, whitespace-only
lines and lines whose first non-whitespace character is ``#`` are ignored; a line that
starts with whitespace continues the previous logical line; a later definition of a
parameter overrides an earlier one. Continuation lines are joined with one space.
Editing follows postconf(1) ``-e`` (replace the definition in place, or append) and
``-X`` (remove the definition), keeping comments and order.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from postier.config.errors import ConfigError

NAME_RE = re.compile(r"[A-Za-z0-9_]+\Z")


@dataclass(frozen=True)
class Setting:
    """One parameter's value as written, and where."""

    value: str
    file: str
    line: int


@dataclass
class MainCf:
    """The parameters a main.cf file sets (the last definition of each wins).

    ``overridden``: each earlier definition a later one replaced, as
    (name, the later definition's Setting, the earlier value), for Postfix's
    ``overriding earlier entry`` warning.
    """

    file: str
    values: dict[str, Setting] = field(default_factory=dict)
    overridden: list[tuple[str, Setting, str]] = field(default_factory=list)

    def override_warnings(self) -> list[str]:
        """Postfix's warnings: ``FILE, line N: overriding earlier entry: NAME=OLD``."""
        return [f"{later.file}, line {later.line}: overriding earlier entry: {name}={old}"
                for name, later, old in self.overridden]


@dataclass(frozen=True)
class _Logical:
    first: int  # 0-based index of the first physical line
    last: int  # 0-based index of the last physical line (continuations included)
    text: str  # joined logical line


def _logical_lines(lines: list[str], file: str) -> Iterator[_Logical]:
    current: list[str] = []
    first = last = -1
    for idx, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if not current:
                raise ConfigError(
                    "continuation line without a parameter line before it: "
                    f'"{stripped}"', file=file, line=idx + 1,
                )
            current.append(stripped)
            last = idx
            continue
        if current:
            yield _Logical(first, last, " ".join(current))
        current = [line.rstrip()]
        first = last = idx
    if current:
        yield _Logical(first, last, " ".join(current))


def _split(logical: _Logical, file: str) -> tuple[str, str]:
    name, eq, value = logical.text.partition("=")
    name = name.strip()
    if not eq:
        raise ConfigError(f'missing \'=\' after parameter name: "{name}"',
                          file=file, line=logical.first + 1)
    if not NAME_RE.match(name):
        raise ConfigError(f'bad parameter name: "{name}"', file=file, line=logical.first + 1)
    return name, value.strip()


def parse(text: str, file: str) -> MainCf:
    """Parse main.cf ``text``; ``file`` names it in settings and errors."""
    result = MainCf(file=file)
    for logical in _logical_lines(text.splitlines(), file):
        name, value = _split(logical, file)
        setting = Setting(value, file, logical.first + 1)
        earlier = result.values.get(name)
        if earlier is not None:
            result.overridden.append((name, setting, earlier.value))
        result.values[name] = setting
    return result


def read_text(path: str) -> str:
    """A configuration file's text; an unreadable file raises ConfigError naming it."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from None


def load(path: str) -> MainCf:
    """Read and parse the main.cf file at ``path`` (a missing file raises ConfigError)."""
    return parse(read_text(path), path)


def edit_text(text: str, changes: Mapping[str, str | None], file: str = "main.cf") -> str:
    """``text`` with each named parameter set (str) or removed (None).

    A parameter that is set replaces its first definition in place, later definitions
    are dropped (they would override it); one that is not defined yet is appended at
    the end. Comments, blank lines and other parameters keep their place.
    """
    for name in changes:
        if not NAME_RE.match(name):
            raise ConfigError(f'bad parameter name: "{name}"', file=file)
    lines = text.splitlines(keepends=True)
    drop: set[int] = set()
    replace: dict[int, str] = {}
    written: set[str] = set()
    for logical in _logical_lines([ln for ln in lines], file):
        name = logical.text.partition("=")[0].strip()
        if name not in changes:
            continue
        for idx in range(logical.first, logical.last + 1):
            drop.add(idx)
        new = changes[name]
        if new is not None and name not in written:
            replace[logical.first] = f"{name} = {new}\n"
            written.add(name)
    out: list[str] = []
    for idx, line in enumerate(lines):
        if idx in replace:
            out.append(replace[idx])
        elif idx not in drop:
            out.append(line)
    if out and not out[-1].endswith("\n"):
        out[-1] += "\n"
    for name, new in changes.items():
        if new is not None and name not in written:
            out.append(f"{name} = {new}\n")
    return "".join(out)


def edit_file(path: str, changes: Mapping[str, str | None]) -> None:
    """Apply ``edit_text`` to the file at ``path``: written to a temporary file, renamed."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    new = edit_text(text, changes, path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".main.cf.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        try:
            st = os.stat(path)
            os.chmod(tmp, st.st_mode & 0o7777)
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
