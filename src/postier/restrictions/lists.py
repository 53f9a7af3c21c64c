"""main.cf's smtpd restriction lists: which parameter feeds which stage, checked at start.

Follows postconf(5) ``smtpd_*_restrictions`` and Postfix's refusal to start with
restriction lists that would make an open relay (smtpd(8), "specify at least one
working instance of: reject_unauth_destination, …").
"""

from __future__ import annotations

from postier.config.errors import ConfigError
from postier.config.params import (
    SMTPD_CLIENT_RESTRICTIONS,
    SMTPD_HELO_RESTRICTIONS,
    SMTPD_RECIPIENT_RESTRICTIONS,
    SMTPD_RELAY_RESTRICTIONS,
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


def check_restriction_lists(cfg: Config, where: str) -> None:
    """Refuse, at start, a restriction list smtpd cannot evaluate or that makes an open relay."""
    parsed = {}
    for param, stage in RESTRICTION_LISTS:
        try:
            parsed[stage] = rs.parse_restrictions(cfg[param], stage=stage)
        except ValueError as exc:
            file, line = cfg.location(param.name)
            raise ConfigError(
                str(exc), file=file or where, line=line, param=param.name
            ) from None
    try:
        rs.check_relay_protection(parsed.get(rs.Stage.RELAY, []),
                                  parsed.get(rs.Stage.RECIPIENT, []))
    except ValueError as exc:
        raise ConfigError(str(exc), param=SMTPD_RELAY_RESTRICTIONS.name) from None
