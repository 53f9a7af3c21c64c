"""The SMTP client's TLS policy and context: security level, trusted CAs, name checks.

Follows Postfix TLS_README ("Client-side TLS security levels") and postconf(5)
``smtp_tls_security_level`` (none, may, encrypt, verify, secure; empty = none),
``smtp_tls_CAfile``/``smtp_tls_CApath``, ``smtp_tls_verify_cert_match`` (hostname),
``smtp_tls_secure_cert_match`` (nexthop, dot-nexthop) and ``smtp_tls_loglevel``; RFC
3207 (STARTTLS), RFC 6125 (server identity). At ``may`` and ``encrypt`` the server's
certificate is not checked (Python's ``ssl`` cannot report a chain's trust without
failing the handshake: such connections are logged ``Untrusted``, see
docs/decisions.md); at ``verify`` and ``secure`` the chain must lead to a trusted CA
and a name must match, or the handshake fails and the server is skipped.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

from postier.config.errors import ConfigError
from postier.config.params import (
    SMTP_TLS_CAFILE,
    SMTP_TLS_CAPATH,
    SMTP_TLS_LOGLEVEL,
    SMTP_TLS_SECURE_CERT_MATCH,
    SMTP_TLS_SECURITY_LEVEL,
    SMTP_TLS_VERIFY_CERT_MATCH,
    ParamSource,
)


class ClientTlsLevel(enum.IntEnum):
    """smtp_tls_security_level, weakest first (comparisons follow the order)."""

    NONE = 0
    MAY = 1
    ENCRYPT = 2
    VERIFY = 3
    SECURE = 4


_LEVELS = {"": ClientTlsLevel.NONE, "none": ClientTlsLevel.NONE,
           "may": ClientTlsLevel.MAY, "encrypt": ClientTlsLevel.ENCRYPT,
           "verify": ClientTlsLevel.VERIFY, "secure": ClientTlsLevel.SECURE}


@dataclass(frozen=True)
class ClientTlsPolicy:
    """What one SMTP client transport does about TLS."""

    level: ClientTlsLevel = ClientTlsLevel.NONE
    ca_file: str = ""
    ca_path: str = ""
    loglevel: int = 0
    verify_match: tuple[str, ...] = ("hostname",)
    secure_match: tuple[str, ...] = ("nexthop", "dot-nexthop")

    @classmethod
    def from_config(cls, cfg: ParamSource) -> ClientTlsPolicy:
        """The policy in ``cfg``; ``ConfigError`` for a level postier does not know
        (``dane``, ``dane-only`` and ``fingerprint`` are not implemented)."""
        word = cfg[SMTP_TLS_SECURITY_LEVEL].strip().lower()
        if word not in _LEVELS:
            raise ConfigError(f"unsupported TLS security level {word!r} (none, may, "
                              "encrypt, verify, secure)", param=SMTP_TLS_SECURITY_LEVEL.name)
        return cls(
            level=_LEVELS[word],
            ca_file=cfg[SMTP_TLS_CAFILE],
            ca_path=cfg[SMTP_TLS_CAPATH],
            loglevel=cfg[SMTP_TLS_LOGLEVEL],
            verify_match=tuple(w.lower() for w in cfg[SMTP_TLS_VERIFY_CERT_MATCH]),
            secure_match=tuple(w.lower() for w in cfg[SMTP_TLS_SECURE_CERT_MATCH]),
        )

    @property
    def required(self) -> bool:
        """encrypt, verify, secure: no mail in clear text."""
        return self.level >= ClientTlsLevel.ENCRYPT

    @property
    def verifies(self) -> bool:
        """verify, secure: the certificate must be trusted and match a name."""
        return self.level >= ClientTlsLevel.VERIFY

    def match_names(self, hostname: str, nexthop: str) -> tuple[str, ...]:
        """The names a server certificate may match (RFC 6125): at verify the MX host
        name (``hostname``), at secure the next-hop domain (``nexthop``, ``dot-nexthop``
        = any subdomain, written ``.domain``); literal names as given."""
        words = self.verify_match if self.level is ClientTlsLevel.VERIFY \
            else self.secure_match
        names: list[str] = []
        for w in words:
            if w == "hostname":
                names.append(hostname)
            elif w == "nexthop":
                names.append(nexthop)
            elif w == "dot-nexthop":
                names.append("." + nexthop)
            else:
                names.append(w)
        return tuple(n.lower().rstrip(".") for n in names if n)


def client_context(policy: ClientTlsPolicy) -> ssl.SSLContext:
    """A client context for ``policy`` (TLSv1.2 at least, RFC 8996). At verify/secure
    the chain is checked against smtp_tls_CAfile/CApath (the names by
    ``certificate_matches`` after the handshake). Raises ``ConfigError`` when a CA
    file or directory cannot be read."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    if policy.verifies:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if policy.ca_file or policy.ca_path:
            try:
                ctx.load_verify_locations(cafile=policy.ca_file or None,
                                          capath=policy.ca_path or None)
            except (OSError, ssl.SSLError) as exc:
                param = SMTP_TLS_CAFILE.name if policy.ca_file else SMTP_TLS_CAPATH.name
                where = policy.ca_file or policy.ca_path
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(f"cannot load trusted CA certificates from {where}: {why}",
                                  param=param) from None
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def certificate_matches(cert: dict[str, object], names: tuple[str, ...]) -> bool:
    """Does the (verified, decoded) certificate ``cert`` name one of ``names``? DNS
    subjectAltNames (the CN when there is none), wildcards in the leftmost label; a
    name ``.domain`` matches any subdomain of it; IP address names an iPAddress SAN."""
    sans = [v for k, v in _pairs(cert.get("subjectAltName", ())) if k == "DNS"]
    ips = [v for k, v in _pairs(cert.get("subjectAltName", ())) if k == "IP Address"]
    if not sans:
        for rdn in cert.get("subject", ()) or ():  # type: ignore[attr-defined]
            for k, v in rdn:
                if k == "commonName":
                    sans.append(v)
    presented = [s.lower().rstrip(".") for s in sans]
    for name in names:
        if name in ips:
            return True
        for p in presented:
            if name.startswith("."):
                if p.endswith(name) or (p.startswith("*.") and p[1:].endswith(name)):
                    return True
            elif p == name or (p.startswith("*.") and "." in name
                               and name.split(".", 1)[1] == p[2:]):
                return True
    return False


def _pairs(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, tuple | list):
        return []
    return [(str(k), str(v)) for k, v in value]
