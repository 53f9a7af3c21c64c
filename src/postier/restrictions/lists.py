"""main.cf's smtpd restriction lists: which parameter feeds which stage, checked at start.

Follows postconf(5) ``smtpd_*_restrictions`` and Postfix's refusal to start with
restriction lists that would make an open relay (smtpd(8), "specify at least one
working instance of: reject_unauth_destination, …").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from postier.config.errors import ConfigError
from postier.config.params import (
    RBL_REPLY_MAPS,
    SMTPD_CLIENT_RESTRICTIONS,
    SMTPD_DATA_RESTRICTIONS,
    SMTPD_DELAY_REJECT,
    SMTPD_END_OF_DATA_RESTRICTIONS,
    SMTPD_ETRN_RESTRICTIONS,
    SMTPD_HELO_RESTRICTIONS,
    SMTPD_RECIPIENT_RESTRICTIONS,
    SMTPD_RELAY_RESTRICTIONS,
    SMTPD_RESTRICTION_CLASSES,
    SMTPD_SENDER_RESTRICTIONS,
    Param,
)
from postier.config.settings import Config
from postier.restrictions import evaluate as rs

#: The lists smtpd evaluates at RCPT time: main.cf parameter, stage.
RESTRICTION_LISTS: tuple[tuple[Param[list[str]], rs.Stage], ...] = (
    (SMTPD_CLIENT_RESTRICTIONS, rs.Stage.CLIENT),
    (SMTPD_HELO_RESTRICTIONS, rs.Stage.HELO),
    (SMTPD_SENDER_RESTRICTIONS, rs.Stage.SENDER),
    (SMTPD_RELAY_RESTRICTIONS, rs.Stage.RELAY),
    (SMTPD_RECIPIENT_RESTRICTIONS, rs.Stage.RECIPIENT),
)


#: Every smtpd restriction list: those of RCPT time, then DATA, end of data and ETRN.
ALL_LISTS: tuple[tuple[Param[list[str]], rs.Stage], ...] = (
    *RESTRICTION_LISTS,
    (SMTPD_DATA_RESTRICTIONS, rs.Stage.DATA),
    (SMTPD_END_OF_DATA_RESTRICTIONS, rs.Stage.END_OF_DATA),
    (SMTPD_ETRN_RESTRICTIONS, rs.Stage.ETRN),
)


def _error(cfg: Config, name: str, where: str, exc: ValueError) -> ConfigError:
    file, line = cfg.location(name)
    return ConfigError(str(exc), file=file or where, line=line, param=name)


def restriction_classes(cfg: Config, where: str = "main.cf"
                        ) -> dict[str, list[rs.RestrictionCall]]:
    """smtpd_restriction_classes: each class name and its parsed list (a ConfigError
    names the class parameter's line when one cannot be used)."""
    names = cfg[SMTPD_RESTRICTION_CLASSES]
    classes: dict[str, list[rs.RestrictionCall]] = {}
    for name in names:
        if name in rs.RESTRICTIONS:
            raise ConfigError(f'restriction class "{name}" has the name of a restriction',
                              param=SMTPD_RESTRICTION_CLASSES.name)
        try:
            items = cfg.get_list(name)
        except ConfigError:
            raise ConfigError(f'restriction class "{name}" is not defined',
                              param=SMTPD_RESTRICTION_CLASSES.name) from None
        try:
            classes[name] = rs.parse_restrictions(items, stage=rs.Stage.RECIPIENT,
                                                  classes=names)
        except ValueError as exc:
            raise _error(cfg, name, where, exc) from None
    return classes


def parse_lists(cfg: Config, where: str = "main.cf"
                ) -> dict[rs.Stage, list[rs.RestrictionCall]]:
    """Every smtpd restriction list, parsed as smtpd evaluates it (smtpd_delay_reject,
    smtpd_restriction_classes); a ConfigError names file, line, parameter and word."""
    names = cfg[SMTPD_RESTRICTION_CLASSES]
    parsed = {}
    for param, stage in ALL_LISTS:
        try:
            parsed[stage] = rs.parse_restrictions(cfg[param], stage=stage, classes=names,
                                                  delay_reject=cfg[SMTPD_DELAY_REJECT])
        except ValueError as exc:
            raise _error(cfg, param.name, where, exc) from None
    return parsed


def check_restriction_lists(cfg: Config, where: str) -> None:
    """Refuse, at start, a restriction list smtpd cannot evaluate or that makes an open relay."""
    restriction_classes(cfg, where)
    parsed = parse_lists(cfg, where)
    for spec in cfg[RBL_REPLY_MAPS]:
        if ":" not in spec:
            raise ConfigError(f"bad table name: {spec}", param=RBL_REPLY_MAPS.name)
    try:
        rs.check_relay_protection(parsed.get(rs.Stage.RELAY, []),
                                  parsed.get(rs.Stage.RECIPIENT, []))
    except ValueError as exc:
        raise ConfigError(str(exc), param=SMTPD_RELAY_RESTRICTIONS.name) from None


def table_arguments(
    lists: Mapping[rs.Stage, Sequence[rs.RestrictionCall]],
    classes: Mapping[str, Sequence[rs.RestrictionCall]],
) -> Iterator[tuple[str, rs.RestrictionCall]]:
    """Every restriction of ``lists`` (by stage, as ``parse_lists`` gives them) and of the
    restriction ``classes`` whose argument is a table: (the parameter that names it, the
    call). The one walk both ``postier check`` and smtpd's start use to open them."""
    names = {stage: param.name for param, stage in ALL_LISTS}
    named: list[tuple[str, Sequence[rs.RestrictionCall]]] = [
        (names[stage], calls) for stage, calls in lists.items()]
    named += list(classes.items())
    for param, calls in named:
        for call in calls:
            row = rs.RESTRICTIONS.get(call.name)
            if row is not None and row.needs.table and call.arg is not None:
                yield param, call

