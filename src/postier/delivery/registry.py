"""The table of delivery transports by name: the only place a transport is registered.

Follows Postfix's master.cf, where a transport name (the first column) names the
delivery agent that qmgr(8) hands requests to: ``local`` -> local(8), ``error`` ->
error(8), ``retry`` -> error(8) deferring, ``discard`` -> discard(8), ``smtp`` and
``relay`` -> smtp(8), ``lmtp`` -> lmtp(8). Every ``unix`` service of master.cf whose
command is ``smtp`` or ``lmtp``
is a transport of that name too, with its ``-o`` settings (``relay unix - - n - - smtp
-o smtp_fallback_relay=``). The scheduler treats a name missing here as a transport
without an agent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from postier.config import mastercf
from postier.config.params import CONFIG_DIRECTORY, SMTP_SASL_PASSWORD_MAPS
from postier.config.settings import Config
from postier.delivery.discard import DiscardTransport
from postier.delivery.error import ErrorTransport
from postier.delivery.local_client import LocalTransport
from postier.delivery.transport import StatusLog, Transport
from postier.dns.resolver import Resolver
from postier.smtp.settings import SmtpSettings
from postier.smtp.transport import SmtpTransport
from postier.tables import Tables


@dataclass(frozen=True)
class TransportSetup:
    """What a transport may need to be built: the queue directory, the log, and (for the
    SMTP and LMTP clients) the configuration and master.cf's services (None: read
    ``master.cf`` from ``config_directory``)."""

    queue_dir: str
    log: StatusLog
    cfg: Config | None = None
    services: Sequence[mastercf.MasterService] | None = None
    resolver: Resolver | None = field(default=None, compare=False)
    tables: Tables | None = field(default=None, compare=False)
    # program name ("smtp", "lmtp", "error", "discard") and that service's configuration
    # -> the log its status lines go to, under Postfix's program name (None: ``log``).
    program_log: Callable[[str, Config | None], StatusLog] | None = field(
        default=None, compare=False)

    def log_for(self, program: str, cfg: Config | None = None) -> StatusLog:
        """The log of delivery agent ``program`` (Postfix: ``postfix/smtp[PID]: …``)."""
        if self.program_log is None:
            return self.log
        return self.program_log(program, cfg if cfg is not None else self.cfg)


TransportFactory = Callable[[TransportSetup], Transport]

#: Transport name -> how to build it.
TRANSPORTS: Mapping[str, TransportFactory] = {
    "local": lambda s: LocalTransport(os.path.join(s.queue_dir, "private", "local")),
    "error": lambda s: ErrorTransport(s.log_for("error")),
    "retry": lambda s: ErrorTransport(s.log_for("retry"), retry=True),
    "discard": lambda s: DiscardTransport(s.log_for("discard")),
}

#: Client transports present without a master.cf line (Postfix's default master.cf has
#: them): name -> the daemon program.
CLIENT_TRANSPORTS: Mapping[str, str] = {"smtp": "smtp", "relay": "smtp", "lmtp": "lmtp"}


#: Transports whose default concurrency limit is not default_destination_concurrency_limit
#: (0: none). ``local`` requests are a pipeline into one process that delivers them in
#: group-committed batches: limiting them only shrinks the batches (more fsyncs), so,
#: unless local_destination_concurrency_limit is set, they are not limited.
CONCURRENCY_DEFAULTS: Mapping[str, int] = {"local": 0}


def client_services(
    cfg: Config, services: Sequence[mastercf.MasterService] | None,
) -> dict[str, tuple[str, Config]]:
    """Each SMTP/LMTP client transport: name -> (daemon program, its configuration).

    master.cf ``unix`` services running ``smtp`` or ``lmtp`` (with their ``-o``
    settings), plus ``CLIENT_TRANSPORTS`` not listed there. Raises ``ConfigError``.
    """
    if services is None:
        path = os.path.join(cfg[CONFIG_DIRECTORY], "master.cf")
        services = mastercf.load(path) if os.path.exists(path) else []
    found: dict[str, tuple[str, Config]] = {
        name: (command, cfg) for name, command in CLIENT_TRANSPORTS.items()}
    for svc in services:
        if svc.type == "unix" and svc.command in ("smtp", "lmtp"):
            where = f"{svc.file}, line {svc.line}"
            found[svc.name] = (svc.command, cfg.with_overrides(svc.overrides, where))
    return found


def build_transports(setup: TransportSetup) -> dict[str, Transport]:
    """Every registered transport, built: name -> transport. Raises ``ConfigError``."""
    built: dict[str, Transport] = {name: factory(setup) for name, factory in TRANSPORTS.items()}
    if setup.cfg is None:
        return built
    resolver = setup.resolver or Resolver()
    tables = setup.tables or Tables()
    for name, (command, cfg) in client_services(setup.cfg, setup.services).items():
        settings = SmtpSettings.from_config(cfg, lmtp=command == "lmtp")
        # smtp(8) opens smtp_sasl_password_maps at start, before dropping privileges.
        passwords = (tables.for_param(cfg, SMTP_SASL_PASSWORD_MAPS)
                     if settings.sasl_enable else None)
        built[name] = SmtpTransport(settings, setup.log_for(command, cfg), resolver,
                                    password_maps=passwords)
    return built
