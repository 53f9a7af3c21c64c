"""The SMTP client's settings, read once from a configuration (main.cf plus a master.cf
service's ``-o`` overrides).

Follows postconf(5)'s ``smtp_*`` parameters; a master.cf service (``relay unix … smtp``)
gets its own ``Config.with_overrides`` and so its own settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postier.config.params import (
    INET_PROTOCOLS,
    SMTP_BIND_ADDRESS,
    SMTP_BIND_ADDRESS6,
    SMTP_CONNECT_TIMEOUT,
    SMTP_CONNECTION_CACHE_ON_DEMAND,
    SMTP_CONNECTION_CACHE_TIME_LIMIT,
    SMTP_CONNECTION_REUSE_TIME_LIMIT,
    SMTP_DATA_DONE_TIMEOUT,
    SMTP_DATA_INIT_TIMEOUT,
    SMTP_DATA_XFER_TIMEOUT,
    SMTP_FALLBACK_RELAY,
    SMTP_HELO_NAME,
    SMTP_HELO_TIMEOUT,
    SMTP_MAIL_TIMEOUT,
    SMTP_QUIT_TIMEOUT,
    SMTP_RCPT_TIMEOUT,
    SMTP_SASL_AUTH_ENABLE,
    SMTP_SASL_AUTH_SOFT_BOUNCE,
    SMTP_SASL_SECURITY_OPTIONS,
    SMTP_SASL_TLS_SECURITY_OPTIONS,
    ParamSource,
)
from postier.tls.client import ClientTlsPolicy


@dataclass(frozen=True)
class Timeouts:
    """postconf(5)'s smtp_*_timeout, in seconds; ``for_command`` picks one by the name
    ``smtpproto.client`` gives a command."""

    connect: float = 30.0
    helo: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_xfer: float = 180.0
    data_done: float = 600.0
    quit: float = 300.0

    def for_command(self, command: str) -> float:
        return {
            "GREETING": self.helo, "EHLO": self.helo, "HELO": self.helo, "LHLO": self.helo,
            "MAIL": self.mail, "RCPT": self.rcpt, "DATA": self.data_init,
            "CONTENT": self.data_xfer, "DATAEND": self.data_done, "QUIT": self.quit,
        }.get(command, self.helo)


@dataclass(frozen=True)
class SmtpSettings:
    """Everything one SMTP (or LMTP) transport reads from its configuration."""

    helo_name: str
    timeouts: Timeouts = Timeouts()
    bind_address: str = ""
    bind_address6: str = ""
    fallback_relay: tuple[str, ...] = ()
    cache_on_demand: bool = True
    cache_time_limit: float = 2.0
    reuse_time_limit: float = 300.0
    ipv4: bool = True
    ipv6: bool = True
    lmtp: bool = False
    tls: ClientTlsPolicy = field(default_factory=ClientTlsPolicy)
    sasl_enable: bool = False
    sasl_options: tuple[str, ...] = ("noplaintext", "noanonymous")
    sasl_tls_options: tuple[str, ...] = ("noplaintext", "noanonymous")
    sasl_soft_bounce: bool = True

    @classmethod
    def from_config(cls, cfg: ParamSource, *, lmtp: bool = False) -> SmtpSettings:
        """The settings in ``cfg``; raises ``ConfigError`` on a bad value. LMTP (lmtp(8))
        has its own ``lmtp_tls_*``/``lmtp_sasl_*`` parameters, not implemented: an LMTP
        transport uses neither TLS nor SASL."""
        protocols = {p.lower() for p in cfg[INET_PROTOCOLS]}
        both = "all" in protocols
        return cls(
            helo_name=cfg[SMTP_HELO_NAME],
            timeouts=Timeouts(
                connect=cfg[SMTP_CONNECT_TIMEOUT],
                helo=cfg[SMTP_HELO_TIMEOUT],
                mail=cfg[SMTP_MAIL_TIMEOUT],
                rcpt=cfg[SMTP_RCPT_TIMEOUT],
                data_init=cfg[SMTP_DATA_INIT_TIMEOUT],
                data_xfer=cfg[SMTP_DATA_XFER_TIMEOUT],
                data_done=cfg[SMTP_DATA_DONE_TIMEOUT],
                quit=cfg[SMTP_QUIT_TIMEOUT],
            ),
            bind_address=cfg[SMTP_BIND_ADDRESS],
            bind_address6=cfg[SMTP_BIND_ADDRESS6],
            fallback_relay=tuple(cfg[SMTP_FALLBACK_RELAY]),
            cache_on_demand=cfg[SMTP_CONNECTION_CACHE_ON_DEMAND],
            cache_time_limit=cfg[SMTP_CONNECTION_CACHE_TIME_LIMIT],
            reuse_time_limit=cfg[SMTP_CONNECTION_REUSE_TIME_LIMIT],
            ipv4=both or "ipv4" in protocols,
            ipv6=both or "ipv6" in protocols,
            lmtp=lmtp,
            tls=ClientTlsPolicy() if lmtp else ClientTlsPolicy.from_config(cfg),
            sasl_enable=not lmtp and cfg[SMTP_SASL_AUTH_ENABLE],
            sasl_options=tuple(o.lower() for o in cfg[SMTP_SASL_SECURITY_OPTIONS]),
            sasl_tls_options=tuple(o.lower() for o in cfg[SMTP_SASL_TLS_SECURITY_OPTIONS]),
            sasl_soft_bounce=cfg[SMTP_SASL_AUTH_SOFT_BOUNCE],
        )
