"""Read master.cf into service entries, and render them as ``postconf -M`` does.

Follows Postfix's master(5): comment lines (first non-whitespace character ``#``),
blank lines, continuation lines (starting with whitespace); each entry has the fields
service, type, private, unpriv, chroot, wakeup, maxproc, command, then the command's
arguments. ``-`` selects a field's default (private y, unpriv y, chroot n as of
Postfix 3.0, wakeup 0, maxproc default_process_limit). ``-o name=value`` and the
Postfix 3.0 form ``-o { name = value }`` (the value may contain whitespace) override
main.cf for that service; ``{ ... }`` groups any argument that contains whitespace.
Inet service names are ``host:port``, ``port`` or a services(5) name (RFC 6409
submission 587, RFC 8314 submissions/smtps 465).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from postier.config.braces import UnclosedBrace, split_braced, unbrace
from postier.config.errors import ConfigError
from postier.config.maincf import read_text

SERVICE_TYPES = frozenset({"inet", "unix", "unix-dgram", "fifo", "pass"})

#: Daemon programs of a Postfix 3.x installation (postier refuses others).
KNOWN_COMMANDS = frozenset({
    "anvil", "bounce", "cleanup", "discard", "dnsblog", "error", "flush", "lmtp", "local",
    "oqmgr", "pickup", "pipe", "postlog", "postlogd", "postscreen", "proxymap", "qmgr",
    "qmqpd", "scache", "showq", "smtp", "smtpd", "spawn", "tlsmgr", "tlsproxy",
    "trivial-rewrite", "verify", "virtual",
})

#: Well-known ports, used when services(5) lacks the name (Debian calls 465 "submissions").
WELL_KNOWN_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465,
                    "lmtp": 24, "qmqp": 628}

_FIELD_NAMES = ("private", "unpriv", "chroot", "wakeup", "maxproc")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9_]+\Z")
_WAKEUP_RE = re.compile(r"\d+\??\Z")


@dataclass
class MasterService:
    """One master.cf entry. Booleans and numbers have their ``-`` defaults applied;
    ``fields`` keeps the five columns as written, ``options`` the ``-o`` settings and the
    other arguments in their order (for rendering)."""

    name: str
    type: str
    private: bool
    unpriv: bool
    chroot: bool
    wakeup: str
    maxproc: int | None
    command: str
    args: list[str]
    overrides: dict[str, str]
    file: str
    line: int
    fields: tuple[str, str, str, str, str] = ("-", "-", "-", "-", "-")
    options: list[tuple[str, str]] = field(default_factory=list)  # ("-o", "n=v") or ("", arg)

    @property
    def key(self) -> str:
        """``service/type``, the name postconf(1) uses for an entry."""
        return f"{self.name}/{self.type}"


def _tokens(text: str, file: str, line: int) -> list[str]:
    """Split on whitespace; a ``{ ... }`` group (nesting allowed) is one token, braces kept."""
    try:
        return split_braced(text)
    except UnclosedBrace as exc:
        raise ConfigError(str(exc), file=file, line=line) from None


def _yes_no(value: str, default: bool, what: str, file: str, line: int) -> bool:
    if value == "-":
        return default
    if value in ("y", "n"):
        return value == "y"
    raise ConfigError(f'bad {what} field value: "{value}" (specify y, n or -)',
                      file=file, line=line)


def _override(text: str, file: str, line: int) -> tuple[str, str]:
    name, eq, value = unbrace(text).partition("=")
    name = name.strip()
    if not eq or not _PARAM_NAME_RE.match(name):
        raise ConfigError(f'bad -o option: "{text}" (specify -o name=value)',
                          file=file, line=line)
    return name, unbrace(value.strip())


def _entry(text: str, file: str, line: int) -> MasterService:
    tokens = _tokens(text, file, line)
    if len(tokens) < 8:
        raise ConfigError(
            f"too few fields ({len(tokens)}) in: {text.strip()} (expected: service type "
            "private unpriv chroot wakeup maxproc command [args])", file=file, line=line,
        )
    name, stype, private, unpriv, chroot, wakeup, maxproc, command = tokens[:8]
    if stype not in SERVICE_TYPES:
        raise ConfigError(f'service {name}: bad transport type: "{stype}" (specify one of '
                          f"{', '.join(sorted(SERVICE_TYPES))})", file=file, line=line)
    if wakeup != "-" and not _WAKEUP_RE.match(wakeup):
        raise ConfigError(f'service {name}: bad wakeup time: "{wakeup}"', file=file, line=line)
    if maxproc != "-" and not maxproc.isdigit():
        raise ConfigError(f'service {name}: bad maxproc value: "{maxproc}"',
                          file=file, line=line)
    if command not in KNOWN_COMMANDS:
        raise ConfigError(f'service {name}: unknown command (daemon program): "{command}"',
                          file=file, line=line)
    args: list[str] = []
    overrides: dict[str, str] = {}
    options: list[tuple[str, str]] = []
    rest = tokens[8:]
    i = 0
    while i < len(rest):
        token = rest[i]
        if token == "-o":
            if i + 1 >= len(rest):
                raise ConfigError(f"service {name}: -o without name=value", file=file, line=line)
            key, value = _override(rest[i + 1], file, line)
            i += 2
        elif token.startswith("-o") and len(token) > 2:
            key, value = _override(token[2:], file, line)
            i += 1
        else:
            args.append(unbrace(token))
            options.append(("", token))
            i += 1
            continue
        overrides[key] = value
        options.append(("-o", f"{key}={value}"))
    return MasterService(
        name=name, type=stype,
        private=_yes_no(private, True, "private", file, line),
        unpriv=_yes_no(unpriv, True, "unpriv", file, line),
        chroot=_yes_no(chroot, False, "chroot", file, line),
        wakeup="0" if wakeup == "-" else wakeup,
        maxproc=None if maxproc == "-" else int(maxproc),
        command=command, args=args, overrides=overrides, file=file, line=line,
        fields=(private, unpriv, chroot, wakeup, maxproc), options=options,
    )


def parse(text: str, file: str) -> list[MasterService]:
    """Parse master.cf ``text``; ``file`` names it in entries and errors."""
    services: list[MasterService] = []
    seen: dict[str, int] = {}
    current: list[str] = []
    start = 0

    def flush() -> None:
        if current:
            svc = _entry(" ".join(current), file, start)
            if svc.key in seen:
                raise ConfigError(f"duplicate service: {svc.key} (first defined at line "
                                  f"{seen[svc.key]})", file=file, line=start)
            seen[svc.key] = start
            services.append(svc)

    for idx, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0] in " \t":
            if not current:
                raise ConfigError(f'continuation line without an entry before it: "{stripped}"',
                                  file=file, line=idx)
            current.append(stripped)
            continue
        flush()
        current = [stripped]
        start = idx
    flush()
    return services


def load(path: str) -> list[MasterService]:
    """Read and parse the master.cf file at ``path``."""
    return parse(read_text(path), path)


def inet_endpoint(name: str) -> tuple[str | None, int]:
    """The (host or None for all interfaces, port) of an inet service name.

    ``127.0.0.1:2525``, ``[::1]:25``, ``2525``, ``smtp``, ``submission``, ``smtps``.
    """
    host: str | None = None
    port_text = name
    if name.startswith("["):
        end = name.find("]")
        if end < 0 or not name[end + 1:].startswith(":"):
            raise ConfigError(f'bad inet service name: "{name}"')
        host, port_text = name[1:end], name[end + 2:]
    elif ":" in name:
        host, _, port_text = name.rpartition(":")
        host = host or None
    if host in ("*", ""):
        host = None
    if port_text.isdigit():
        port = int(port_text)
    else:
        try:
            port = socket.getservbyname(port_text, "tcp")
        except OSError:
            if port_text not in WELL_KNOWN_PORTS:
                raise ConfigError(f'unknown service port: "{port_text}" in "{name}"') from None
            port = WELL_KNOWN_PORTS[port_text]
    if not 0 < port < 65536:
        raise ConfigError(f'bad port number: {port} in "{name}"')
    return host, port


def _render_option(kind: str, text: str) -> str:
    if kind == "-o":
        key, _, value = text.partition("=")
        if any(ch.isspace() for ch in value):
            return f"-o {{ {key} = {value} }}"
        return f"-o {text}"
    return text


def render_service(s: MasterService) -> str:
    """One master.cf entry in ``postconf -M`` layout (fields as written, one line)."""
    columns = [f"{s.name:<10}", f"{s.type:<5}"] + [f"{f:<7}" for f in s.fields] + [s.command]
    line = " ".join(columns)
    words = [_render_option(kind, text) for kind, text in s.options]
    return " ".join([line, *words]) if words else line
