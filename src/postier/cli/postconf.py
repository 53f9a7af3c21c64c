"""postconf: show and edit main.cf parameters and show master.cf services, as Postfix's postconf(1).

Follows postconf(1): ``-c config_dir``; no option = every parameter with its value,
sorted; ``-n`` only parameters set in main.cf (a parameter defined twice draws Postfix's
``overriding earlier entry`` warning); ``-d`` defaults, computed as Postfix computes them
for ``myhostname`` (the host's name), ``mydomain`` (from it) and ``mynetworks`` (from
``mynetworks_style`` and the host's addresses); ``-m`` the lookup table types
(``postier.tables``' registry); ``-l`` the mailbox lock methods; ``-a``/``-A`` the SASL
server/client plug-in types; ``-T compile-version|run-version`` the TLS library;
``-h`` values only;
``-x`` expand ``$name``; ``-e name=value ...`` (also implied by ``name=value``
arguments) and ``-X name ...`` edit main.cf in place; ``-M [service[/type] ...]``
master.cf entries; ``-P [service[/type[/parameter]] ...]`` their ``-o`` settings.
Diagnostics go to the standard error stream as ``postconf: warning: ...`` and
``postconf: fatal: ...``.
"""

from __future__ import annotations

import getopt
import os
import ssl
import sys
from typing import TextIO

from postier.config import maincf, mastercf, paths
from postier.config.capabilities import LOCK_METHODS, SMTP_SASL_TYPES, SMTPD_SASL_TYPES
from postier.config.errors import ConfigError
from postier.config.maincf import MainCf
from postier.config.params import MYNETWORKS, MYNETWORKS_STYLE
from postier.config.settings import Config
from postier.dns.resolver import local_addresses
from postier.rewrite.mynetworks import style_networks
from postier.tables.registry import TYPES as TABLE_TYPES

USAGE = """usage: postconf [-dhnx] [-c config_dir] [parameter ...]
       postconf -m|-l|-a|-A|-T compile-version|run-version
       postconf -e [-c config_dir] parameter=value ...
       postconf -X [-c config_dir] parameter ...
       postconf -M [-c config_dir] [service[/type] ...]
       postconf -P [-c config_dir] [service[/type[/parameter]] ...]"""


class _Fatal(Exception):
    pass


def _line(name: str, value: str, values_only: bool) -> str:
    if values_only:
        return value
    return f"{name} = {value}" if value else f"{name} ="


def _load_config(config_dir: str, *, need_main: bool) -> Config:
    if os.path.exists(os.path.join(config_dir, "main.cf")) or need_main:
        return Config.from_dir(config_dir)
    return Config(MainCf(file=os.path.join(config_dir, "main.cf")),
                  config_directory=config_dir)


def computed_default(cfg: Config, name: str) -> str | None:
    """``postconf -d``'s value of ``name``: mynetworks computed from mynetworks_style and
    this host's addresses (IPv6 networks in brackets, as Postfix writes them), else the
    configuration's default (myhostname and mydomain are computed there)."""
    if name == MYNETWORKS.name:
        try:
            nets = style_networks(cfg.default(MYNETWORKS_STYLE.name) or "host",
                                  local_addresses())
        except ValueError:
            return cfg.default(name)
        return " ".join(f"[{n.network_address}]/{n.prefixlen}" if n.version == 6 else str(n)
                        for n in nets)
    return cfg.default(name)


def _warnings(cfg: Config, config_dir: str) -> list[str]:
    """main.cf warnings, then those of each master.cf service's ``-o`` settings."""
    warnings = [*cfg.main.override_warnings(), *cfg.validate(raise_errors=False)]
    master_cf = os.path.join(config_dir, "master.cf")
    if not os.path.exists(master_cf):
        return warnings
    try:
        services = mastercf.load(master_cf)
    except ConfigError as exc:
        return [*warnings, str(exc)]
    for svc in services:
        if not svc.overrides:
            continue
        source = f"{svc.file}, line {svc.line}"
        scfg = cfg.with_overrides(svc.overrides, source=source)
        warnings += [w for w in scfg.validate(raise_errors=False) if w.startswith(source)]
    return warnings


def _show_params(config_dir: str, names: list[str], flags: set[str],
                 out: TextIO, err: TextIO) -> int:
    defaults_only = "d" in flags
    cfg = _load_config(config_dir, need_main=not defaults_only)
    if not defaults_only:
        for warning in _warnings(cfg, config_dir):
            print(f"postconf: warning: {warning}", file=err)
    if names:
        wanted = names
    elif "n" in flags:
        wanted = sorted(cfg.non_default())
    elif defaults_only:
        wanted = sorted(cfg.defaults)
    else:
        wanted = cfg.names()
    for name in wanted:
        if defaults_only:
            value = computed_default(cfg, name)
            if value is None:
                print(f"postconf: warning: {name}: unknown parameter", file=err)
                continue
            if "x" in flags:
                value = cfg.expand(value)
        else:
            if not cfg.known(name):
                print(f"postconf: warning: {name}: unknown parameter", file=err)
                continue
            if "n" in flags and names and not cfg.is_set(name):
                continue
            value = cfg.get(name) if "x" in flags else cfg.get_raw(name)
        print(_line(name, value, "h" in flags), file=out)
    return 0


def _edit(config_dir: str, args: list[str], remove: bool) -> int:
    changes: dict[str, str | None] = {}
    for arg in args:
        if remove:
            changes[arg.strip()] = None
            continue
        name, eq, value = arg.partition("=")
        if not eq:
            raise _Fatal(f'edit mode requires name=value, not: "{arg}"')
        changes[name.strip()] = value.strip()
    maincf.edit_file(os.path.join(config_dir, "main.cf"), changes)
    return 0


def _selected(svc: mastercf.MasterService, patterns: list[str]) -> bool:
    if not patterns:
        return True
    for pattern in patterns:
        name, _, stype = pattern.partition("/")
        if name == svc.name and (not stype or stype == svc.type):
            return True
    return False


def _show_master(config_dir: str, args: list[str], params: bool, flags: set[str],
                 out: TextIO) -> int:
    services = mastercf.load(os.path.join(config_dir, "master.cf"))
    if not params:
        for svc in services:
            if _selected(svc, args):
                print(mastercf.render_service(svc), file=out)
        return 0
    for svc in services:
        for name, value in svc.overrides.items():
            key = f"{svc.name}/{svc.type}/{name}"
            if args and not any(key == a or key.startswith(a.rstrip("/") + "/")
                                for a in args):
                continue
            print(_line(key, value, "h" in flags), file=out)
    return 0


def _listing(flags: set[str], tls_query: str | None) -> list[str] | str | None:
    """What -m, -l, -a, -A or -T print (a str: the fatal error), None for other modes."""
    if "m" in flags:
        return sorted(TABLE_TYPES)
    if "l" in flags:
        return list(LOCK_METHODS)
    if "a" in flags:
        return list(SMTPD_SASL_TYPES)
    if "A" in flags:
        return list(SMTP_SASL_TYPES)
    if tls_query is not None:
        if tls_query in ("compile-version", "run-version"):
            return [ssl.OPENSSL_VERSION]
        return f'invalid -T option "{tls_query}"'
    return None


def main(argv: list[str], *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run postconf with ``argv`` (without the program name); return the exit status."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    try:
        opts, args = getopt.getopt(argv, "aAc:dehlmnT:vxMPX")
    except getopt.GetoptError as exc:
        print(f"postconf: fatal: {exc.msg}\n{USAGE}", file=stderr)
        return 1
    config_arg: str | None = None
    flags: set[str] = set()
    tls_query: str | None = None
    for opt, value in opts:
        if opt == "-c":
            config_arg = value
        elif opt == "-T":
            tls_query = value
        else:
            flags.add(opt[1:])
    listing = _listing(flags, tls_query)
    if listing is not None:
        if isinstance(listing, str):
            print(f"postconf: fatal: {listing}", file=stderr)
            return 1
        for item in listing:
            print(item, file=stdout)
        return 0
    config_dir = paths.config_dir(config_arg)
    try:
        if "M" in flags or "P" in flags:
            return _show_master(config_dir, args, "P" in flags, flags, stdout)
        if "X" in flags:
            return _edit(config_dir, args, remove=True)
        if "e" in flags or (args and all("=" in a for a in args)):
            return _edit(config_dir, args, remove=False)
        return _show_params(config_dir, args, flags, stdout, stderr)
    except (ConfigError, _Fatal) as exc:
        print(f"postconf: fatal: {exc}", file=stderr)
        return 1
    except OSError as exc:
        print(f"postconf: fatal: {exc}", file=stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
