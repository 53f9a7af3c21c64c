"""``postier check``: the migration report of a Postfix configuration directory.

Follows postfix(1) ``check``, extended into a report: every parameter, table type,
restriction, master.cf service and ``-o`` option that postier does not support or
supports differently, one line each naming the file and line and what happens instead,
on standard output; ``postier: warning:`` lines (a parameter defined twice, where the log
goes) on stderr. Where ``postier start`` stops at the first error, this goes on and
reports them all. Missing certificates are no migration difference (Postfix fails on them
too): ``postier: fatal:`` lines apart from the report, exit status 1 as ``postier start``
refuses them. Exit status 0 only when nothing is unsupported or refused and
``mail_owner`` is usable, else 1.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from postier import instance, log, metrics
from postier.cleanup.rewrite import rewriting_from_config
from postier.config import mastercf
from postier.config.errors import ConfigError
from postier.config.params import PARAMS, ParamType, unimplemented_settings
from postier.config.settings import Config
from postier.tables.check import check_tables
from postier.tables.registry import Tables

#: At most this many errors of one check (each one neutralises its parameter).
_MAX_ERRORS = 200


def _collect(cfg: Config, stage: Callable[[Config], object]) -> list[ConfigError]:
    """Run ``stage`` until it passes, each error's parameter emptied so the next one shows
    (a check raises at its first error; the stages check lists, where empty is valid)."""
    found: list[ConfigError] = []
    reset: set[str] = set()
    for _ in range(_MAX_ERRORS):
        try:
            stage(cfg)
            return found
        except ConfigError as exc:
            found.append(exc)
            # the parameter: named as such, or as the message's first word (tables' errors)
            param = exc.param or exc.message.partition(":")[0]
            if not cfg.known(param) or param in reset:
                return found
            reset.add(param)
            declared = PARAMS.get(param)  # a list: empty is valid; a word: its default is
            empty = "" if declared is None or declared.type is ParamType.LIST \
                else declared.default
            cfg = cfg.with_overrides({param: empty}, source="postier check")
    return found


def report(config_dir: str) -> tuple[list[str], list[str], list[str]]:
    """(unsupported, refused, warnings) for the configuration in ``config_dir``: each a
    list of one-line texts naming file and line. ``refused``: what Postfix would refuse
    too (a missing certificate), not a migration difference, but ``postier start``
    refuses it. Reads files only; raises nothing for a bad configuration (it is in the
    report)."""
    out: list[str] = []
    refused: list[str] = []
    main_cf = os.path.join(config_dir, "main.cf")
    if not os.path.exists(main_cf):
        return [f"open {main_cf}: No such file or directory"], [], []
    try:
        cfg = Config.from_dir(config_dir)
    except ConfigError as exc:
        return [str(exc)], [], []
    warnings = cfg.main.override_warnings()
    out += cfg.validate(raise_errors=False)
    changed = {n for n, s in cfg.main.values.items() if s.value != cfg.default(n)}
    for name in unimplemented_settings(changed):
        file, line = cfg.location(name)
        out.append(f"{file}, line {line}: parameter {name} is not implemented by postier "
                   f"yet; its setting ({cfg.get_raw(name)}) has no effect")
    log_errors, notice = log.check(cfg)
    out += [f"{main_cf}: {e}" for e in log_errors]
    if notice is not None:
        warnings.append(notice)
    tables = Tables(warn=warnings.append)
    out += [str(e) for e in _collect(cfg, lambda c: check_tables(c, tables, smtpd=False))]
    out += [str(e) for e in _collect(cfg, metrics.check)]  # postier_metrics_listen
    # a *canonical_classes word Postfix does not know: Postfix refuses it too
    refused += [str(e) for e in _collect(cfg, lambda c: rewriting_from_config(c, tables, str))]
    try:
        services = mastercf.load(os.path.join(config_dir, "master.cf"))
    except ConfigError as exc:
        return [*out, str(exc)], refused, warnings
    # the SMTP client's settings (a bad value: Postfix's smtp(8) refuses it too)
    refused += [str(e) for e in _collect(cfg, lambda c: instance.check_smtp_settings(c, services))]
    for svc in services:
        if svc.command != "smtpd":
            continue
        where = f"{svc.file}, line {svc.line}"
        scfg = cfg.with_overrides(svc.overrides, source=where)
        out += [w for w in scfg.validate(raise_errors=False) if w.startswith(where)]
        restrictions = functools.partial(instance.check_smtpd_settings, where=where)
        out += [str(e) for e in _collect(scfg, restrictions)]
        out += [str(e) for e in _collect(scfg, lambda c: check_tables(c, tables))]
        try:
            warnings += [w for w in instance.check_smtpd_tls(scfg, svc) if w not in warnings]
        except ConfigError as exc:  # Postfix refuses it too: not a migration difference
            refused.append(str(exc))
        for name in unimplemented_settings(set(svc.overrides)):
            out.append(f"{where}: service {svc.name}: -o {name} is not implemented by "
                       "postier yet; it has no effect")
    out = list(dict.fromkeys(out))
    # one error, one line: a table both checks open (virtual_alias_maps) is reported once
    refused = [r for r in dict.fromkeys(refused) if r not in out]
    return out, refused, list(dict.fromkeys(warnings))


def check(config_dir: str) -> int:
    """Print the migration report of ``config_dir``: 0 when nothing is unsupported and
    mail_owner is usable, else 1."""
    unsupported, refused, warnings = report(config_dir)
    for warning in warnings:
        print(f"postier: warning: {warning}", file=sys.stderr)
    for error in refused:
        print(f"postier: fatal: {error}", file=sys.stderr)
    for line in unsupported:
        print(line)
    if unsupported:
        print(f"postier: {len(unsupported)} setting(s) above are not supported as written",
              file=sys.stderr)
        return 1
    if refused:
        return 1
    try:
        instance.Runtime.from_config(Config.from_dir(config_dir))
    except instance.StartError as exc:
        print(f"postier: fatal: {exc}", file=sys.stderr)
        return 1
    return 0
