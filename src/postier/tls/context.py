"""The SMTP server's TLS context: certificates and keys read from disk into an ``ssl.SSLContext``.

Follows Postfix's tls_server(3) setup and postconf(5) ``smtpd_tls_cert_file``,
``smtpd_tls_key_file``, ``smtpd_tls_chain_files``, ``smtpd_tls_CAfile``/``CApath``,
``smtpd_tls_dh1024_param_file``, ``smtpd_tls_ask_ccert``/``req_ccert`` (a client
certificate is asked for and accepted whatever its chain, ``tls.verify``; the
``req_ccert`` refusal comes after the handshake, as Postfix's smtpd does it) and
``tls_server_sni_maps`` (``tls.sni``). Called as root, before the privilege drop, since
keys are usually readable by root alone; a failure names the parameter whose file is
at fault (``TlsSetupError``).
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tempfile
from dataclasses import dataclass

from postier.config.params import (
    SMTPD_TLS_CAFILE,
    SMTPD_TLS_CERT_FILE,
    SMTPD_TLS_CHAIN_FILES,
    SMTPD_TLS_DH1024_PARAM_FILE,
    TLS_SERVER_SNI_MAPS,
)
from postier.tables.base import TableOpenError
from postier.tables.inline import StaticTable
from postier.tables.registry import Tables
from postier.tls import verify
from postier.tls.policy import ServerTlsPolicy
from postier.tls.sni import SniChains


class TlsSetupError(Exception):
    """A certificate, key or other TLS file that cannot be used; ``str()`` names the
    parameter: ``parameter smtpd_tls_cert_file: cannot read /x.pem: No such file …``."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"parameter {param}: {message}")
        self.param = param
        self.message = message


def _readable(path: str, param: str, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TlsSetupError(param, f"cannot read {what} {path}: {exc.strerror}") from None


def server_context(policy: ServerTlsPolicy) -> ssl.SSLContext:
    """A server context for ``policy``: protocol range, ciphers, certificates, client
    certificate checking. Raises TlsSetupError (missing or unreadable file, a key that
    does not match its certificate, no certificate at all, a cipher list OpenSSL rejects).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = policy.min_version
    ctx.maximum_version = policy.max_version
    try:
        ctx.set_ciphers(policy.ciphers)
    except ssl.SSLError as exc:
        raise TlsSetupError("smtpd_tls_ciphers", f"no usable cipher in {policy.ciphers}: "
                            f"{exc.reason or exc}") from None
    if not policy.keys and not policy.chain_files:
        raise TlsSetupError(
            SMTPD_TLS_CERT_FILE.name,
            "no server certificate configured (set smtpd_tls_cert_file and "
            "smtpd_tls_key_file, or smtpd_tls_chain_files)")
    for pair in policy.keys:
        _readable(pair.cert_file, pair.cert_param, "certificate file")
        _readable(pair.key_file, pair.key_param, "private key file")
        try:
            ctx.load_cert_chain(pair.cert_file, pair.key_file)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise TlsSetupError(
                    pair.key_param, f"the private key in {pair.key_file} does not match "
                    f"the certificate in {pair.cert_file}") from None
            raise TlsSetupError(
                pair.cert_param, f"cannot load the certificate {pair.cert_file} and key "
                f"{pair.key_file}: {exc.reason or exc}") from None
    load_chain_files(ctx, policy.chain_files, SMTPD_TLS_CHAIN_FILES.name)
    if policy.dh_file:
        _readable(policy.dh_file, SMTPD_TLS_DH1024_PARAM_FILE.name, "DH parameter file")
        try:
            ctx.load_dh_params(policy.dh_file)
        except ssl.SSLError as exc:
            raise TlsSetupError(SMTPD_TLS_DH1024_PARAM_FILE.name,
                                f"cannot load {policy.dh_file}: {exc.reason or exc}") from None
    if policy.ca_file or policy.ca_path:
        if policy.ca_file:
            _readable(policy.ca_file, SMTPD_TLS_CAFILE.name, "CA file")
        if policy.ca_path and not os.path.isdir(policy.ca_path):
            raise TlsSetupError("smtpd_tls_CApath", f"not a directory: {policy.ca_path}")
        try:
            ctx.load_verify_locations(cafile=policy.ca_file or None,
                                      capath=policy.ca_path or None)
        except ssl.SSLError as exc:
            raise TlsSetupError(SMTPD_TLS_CAFILE.name,
                                f"cannot load {policy.ca_file}: {exc.reason or exc}") from None
    if policy.ask_ccert:
        # Asked, not demanded: Postfix completes the handshake without a certificate or
        # with an untrusted one, and smtpd_tls_req_ccert refuses afterwards (421).
        ctx.verify_mode = ssl.CERT_OPTIONAL
        verify.install(ctx)
    return ctx


def _pem_groups(files: tuple[str, ...], param: str) -> list[list[str]]:
    """``files`` grouped as Postfix reads chain files: a file holding a private key starts
    a group, files holding only certificates join the group before them."""
    groups: list[list[str]] = []
    for path in files:
        _readable(path, param, "chain file")
        with open(path, "rb") as f:
            text = f.read()
        has_key = b"PRIVATE KEY-----" in text
        if has_key or not groups:
            groups.append([path])
        else:
            groups[-1].append(path)
    return groups


def load_chain_files(ctx: ssl.SSLContext, files: tuple[str, ...], param: str) -> None:
    """Load key and certificate chains from ``files`` (smtpd_tls_chain_files' form: each
    key followed by its chain, in one file or in a key file and then certificate
    files). Raises TlsSetupError naming ``param``."""
    for group in _pem_groups(files, param):
        path = group[0]
        try:
            if len(group) == 1:
                ctx.load_cert_chain(path)
                continue
            with tempfile.TemporaryDirectory(prefix="postier-chain-") as tmp:
                joined = os.path.join(tmp, "chain.pem")
                fd = os.open(joined, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for member in group:
                        with open(member, "rb") as f:
                            out.write(f.read().rstrip(b"\n") + b"\n")
                ctx.load_cert_chain(joined)
        except ssl.SSLError as exc:
            reason = ("the private key does not match the certificate"
                      if exc.reason == "KEY_VALUES_MISMATCH" else (exc.reason or str(exc)))
            raise TlsSetupError(param, f"cannot load {' '.join(group)}: {reason}") from None


@dataclass(frozen=True)
class ServerTls:
    """One service's TLS: its policy, and its context unless the files failed (``error``).

    ``context is None`` while ``policy.offered``: STARTTLS is announced and answered
    ``454 4.7.0 TLS not available due to local problem``, as Postfix does.
    """

    policy: ServerTlsPolicy
    context: ssl.SSLContext | None
    error: TlsSetupError | None = None
    sni: SniChains | None = None

    @property
    def offered(self) -> bool:
        return self.policy.offered

    @property
    def required(self) -> bool:
        return self.policy.required


def sni_chains(policy: ServerTlsPolicy, default: ssl.SSLContext,
               tables: Tables | None = None) -> SniChains | None:
    """tls_server_sni_maps for ``default`` (its ``sni_callback`` set): each entry's
    context has the service's settings and the entry's key and chain. The entries of
    tables that can be listed are read now. Raises TlsSetupError naming
    tls_server_sni_maps (a table that cannot be opened, an entry whose files fail)."""
    if not policy.sni_maps:
        return None
    param = TLS_SERVER_SNI_MAPS.name
    registry = tables if tables is not None else Tables()
    try:
        maps = registry.maps(param, list(policy.sni_maps))
    except TableOpenError as exc:
        raise TlsSetupError(param, str(exc)) from None
    base = dataclasses.replace(policy, keys=(), chain_files=())

    def factory(files: tuple[str, ...]) -> ssl.SSLContext:
        try:
            return server_context(dataclasses.replace(base, chain_files=files))
        except TlsSetupError as exc:
            raise TlsSetupError(param, exc.message) from None

    chains = SniChains(maps, factory)
    values: list[str] = []
    for table in maps.tables:
        items = getattr(table, "items", None)
        if callable(items):
            values += [value for _key, value in items()]
        elif isinstance(table, StaticTable):  # every name: its one value
            values.append(table.value)
    chains.preload(values)
    default.sni_callback = chains.callback
    return chains


def load_server_tls(policy: ServerTlsPolicy, tables: Tables | None = None) -> ServerTls:
    """Read the files of a service that offers TLS (nothing when it does not), with
    its tls_server_sni_maps entries (``tables``: the process's registry).

    A failure is kept in ``error``: the caller decides whether it stops the start
    (TLS required) or is a warning (level may).
    """
    if not policy.offered:
        return ServerTls(policy, None)
    try:
        context = server_context(policy)
        return ServerTls(policy, context, sni=sni_chains(policy, context, tables))
    except TlsSetupError as exc:
        return ServerTls(policy, None, exc)
