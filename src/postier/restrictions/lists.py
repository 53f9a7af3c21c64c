"""main.cf's smtpd restriction lists: which parameter feeds which stage, checked at start.

Follows postconf(5) ``smtpd_*_restrictions`` and Postfix's refusal to start with
restriction lists that would make an open relay (smtpd(8), "specify at least one
working instance of: reject_unauth_destination, …").
"""

from __future__ import annotations

from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.restrictions import evaluate as rs

#: The lists smtpd evaluates at RCPT time: main.cf parameter, stage.
RESTRICTION_LISTS = (
    ("smtpd_client_restrictions", rs.Stage.CLIENT),
    ("smtpd_helo_restrictions", rs.Stage.HELO),
    ("smtpd_sender_restrictions", rs.Stage.SENDER),
    ("smtpd_relay_restrictions", rs.Stage.RELAY),
    ("smtpd_recipient_restrictions", rs.Stage.RECIPIENT),
)


def check_restriction_lists(cfg: Config, where: str) -> None:
    """Refuse, at start, a restriction list smtpd cannot evaluate or that makes an open relay."""
    parsed = {}
    for param, stage in RESTRICTION_LISTS:
        try:
            parsed[stage] = rs.parse_restrictions(cfg.get_list(param), stage=stage)
        except ValueError as exc:
            file, line = cfg.location(param)
            raise ConfigError(str(exc), file=file or where, line=line, param=param) from None
    try:
        rs.check_relay_protection(parsed.get(rs.Stage.RELAY, []),
                                  parsed.get(rs.Stage.RECIPIENT, []))
    except ValueError as exc:
        raise ConfigError(str(exc), param="smtpd_relay_restrictions") from None
