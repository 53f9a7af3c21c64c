"""The SMTP server's TLS context: certificates and keys read from disk into an ``ssl.SSLContext``.

Follows Postfix's tls_server(3) setup and postconf(5) ``smtpd_tls_cert_file``,
``smtpd_tls_key_file``, ``smtpd_tls_chain_files``, ``smtpd_tls_CAfile``/``CApath``,
``smtpd_tls_dh1024_param_file``, ``smtpd_tls_ask_ccert``/``req_ccert``. Called as root,
before the privilege drop, since keys are usually readable by root alone; a failure
names the parameter whose file is at fault (``TlsSetupError``).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from postier.config.params import (
    SMTPD_TLS_CAFILE,
    SMTPD_TLS_CERT_FILE,
    SMTPD_TLS_CHAIN_FILES,
    SMTPD_TLS_DH1024_PARAM_FILE,
)
from postier.tls.policy import ServerTlsPolicy


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
    for path in policy.chain_files:
        _readable(path, SMTPD_TLS_CHAIN_FILES.name, "chain file")
        try:
            ctx.load_cert_chain(path)
        except ssl.SSLError as exc:
            reason = ("the private key does not match the certificate"
                      if exc.reason == "KEY_VALUES_MISMATCH" else (exc.reason or str(exc)))
            raise TlsSetupError(SMTPD_TLS_CHAIN_FILES.name,
                                f"cannot load {path}: {reason}") from None
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
    if policy.req_ccert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif policy.ask_ccert:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


@dataclass(frozen=True)
class ServerTls:
    """One service's TLS: its policy, and its context unless the files failed (``error``).

    ``context is None`` while ``policy.offered``: STARTTLS is announced and answered
    ``454 4.7.0 TLS not available due to local problem``, as Postfix does.
    """

    policy: ServerTlsPolicy
    context: ssl.SSLContext | None
    error: TlsSetupError | None = None

    @property
    def offered(self) -> bool:
        return self.policy.offered

    @property
    def required(self) -> bool:
        return self.policy.required


def load_server_tls(policy: ServerTlsPolicy) -> ServerTls:
    """Read the files of a service that offers TLS (nothing when it does not).

    A failure is kept in ``error``: the caller decides whether it stops the start
    (TLS required) or is a warning (level may).
    """
    if not policy.offered:
        return ServerTls(policy, None)
    try:
        return ServerTls(policy, server_context(policy))
    except TlsSetupError as exc:
        return ServerTls(policy, None, exc)
