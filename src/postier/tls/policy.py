"""The SMTP server's TLS policy, decided from parameters alone (pure: no file, no socket).

Follows Postfix's smtpd(8) and postconf(5): ``smtpd_tls_security_level`` (none, may,
encrypt) wins over the obsolete ``smtpd_use_tls``/``smtpd_enforce_tls`` whenever it is
set, in main.cf or as a master.cf ``-o``; ``smtpd_tls_wrappermode`` requires TLS;
``smtpd_tls_[mandatory_]protocols`` and ``smtpd_tls_[mandatory_]ciphers`` (the mandatory
forms when TLS is required); ``smtpd_tls_ask_ccert``/``smtpd_tls_req_ccert`` and
``smtpd_tls_fingerprint_digest``; ``tls_server_sni_maps``; the log line and the
Received: clauses of Postfix's tls_server(3) and smtpd(8). RFC 8996: protocols below
TLSv1.2 are never enabled, whatever the list.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

from postier.config.errors import ConfigError
from postier.config.params import (
    SMTPD_ENFORCE_TLS,
    SMTPD_STARTTLS_TIMEOUT,
    SMTPD_TLS_ASK_CCERT,
    SMTPD_TLS_AUTH_ONLY,
    SMTPD_TLS_CAFILE,
    SMTPD_TLS_CAPATH,
    SMTPD_TLS_CERT_FILE,
    SMTPD_TLS_CHAIN_FILES,
    SMTPD_TLS_CIPHERS,
    SMTPD_TLS_DH1024_PARAM_FILE,
    SMTPD_TLS_EXCLUDE_CIPHERS,
    SMTPD_TLS_FINGERPRINT_DIGEST,
    SMTPD_TLS_KEY_FILE,
    SMTPD_TLS_LOGLEVEL,
    SMTPD_TLS_MANDATORY_CIPHERS,
    SMTPD_TLS_MANDATORY_EXCLUDE_CIPHERS,
    SMTPD_TLS_MANDATORY_PROTOCOLS,
    SMTPD_TLS_PROTOCOLS,
    SMTPD_TLS_RECEIVED_HEADER,
    SMTPD_TLS_REQ_CCERT,
    SMTPD_TLS_SECURITY_LEVEL,
    SMTPD_TLS_WRAPPERMODE,
    SMTPD_USE_TLS,
    TLS_EXPORT_CIPHERLIST,
    TLS_HIGH_CIPHERLIST,
    TLS_LOW_CIPHERLIST,
    TLS_MEDIUM_CIPHERLIST,
    TLS_NULL_CIPHERLIST,
    TLS_SERVER_SNI_MAPS,
    Param,
)
from postier.config.settings import Config
from postier.tls.certs import check_digest, fingerprints


class TlsLevel(enum.Enum):
    """smtpd_tls_security_level: what the server offers (may) or requires (encrypt)."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"


#: Protocol names of smtpd_tls_protocols, oldest first, with the version each enables.
PROTOCOLS: dict[str, ssl.TLSVersion] = {
    "SSLv2": ssl.TLSVersion.SSLv3,  # never enabled (below the floor); known name only
    "SSLv3": ssl.TLSVersion.SSLv3,
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = list(PROTOCOLS)
#: RFC 8996: TLSv1 and TLSv1.1 are deprecated; postier never enables them.
FLOOR = "TLSv1.2"

_GRADES: dict[str, Param[str]] = {
    "high": TLS_HIGH_CIPHERLIST,
    "medium": TLS_MEDIUM_CIPHERLIST,
    "low": TLS_LOW_CIPHERLIST,
    "export": TLS_EXPORT_CIPHERLIST,
    "null": TLS_NULL_CIPHERLIST,
}


def security_level(cfg: Config) -> TlsLevel:
    """Postfix's precedence: a non-empty smtpd_tls_security_level wins; else
    smtpd_enforce_tls (encrypt), else smtpd_use_tls (may), else none.

    Raises ConfigError for a level smtpd does not know.
    """
    text = cfg[SMTPD_TLS_SECURITY_LEVEL].strip().lower()
    if text:
        try:
            return TlsLevel(text)
        except ValueError:
            file, line = cfg.location(SMTPD_TLS_SECURITY_LEVEL.name)
            raise ConfigError(
                f'invalid TLS level "{text}" (specify none, may or encrypt)',
                file=file, line=line, param=SMTPD_TLS_SECURITY_LEVEL.name) from None
    if cfg[SMTPD_ENFORCE_TLS]:
        return TlsLevel.ENCRYPT
    if cfg[SMTPD_USE_TLS]:
        return TlsLevel.MAY
    return TlsLevel.NONE


def ignored_legacy(cfg: Config) -> list[str]:
    """The obsolete smtpd_use_tls/smtpd_enforce_tls settings that smtpd_tls_security_level
    overrides (set to yes while the level is set): each is silently ignored by Postfix."""
    if not cfg[SMTPD_TLS_SECURITY_LEVEL].strip():
        return []
    return [p.name for p in (SMTPD_USE_TLS, SMTPD_ENFORCE_TLS)
            if cfg.is_set(p.name) and cfg[p]]


def protocol_range(items: list[str], param: str = SMTPD_TLS_PROTOCOLS.name,
                   ) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The (minimum, maximum) TLS version a protocol list allows, never below ``FLOOR``.

    Forms (postconf(5)): ``>=TLSv1.2``, ``<=TLSv1.3``, ``!SSLv3`` (excluded),
    ``TLSv1.2`` (when any plain name is given, only the names given). Separators are
    commas, white space and colons. A hole in the middle is filled (OpenSSL takes a
    range). Raises ConfigError for an unknown name or an empty result.
    """
    names: list[str] = []
    for item in items:
        names += [p for p in item.replace(",", ":").split(":") if p]
    included: set[int] = set()
    excluded: set[int] = set()
    low, high = 0, len(_ORDER) - 1
    any_included = False

    def index(name: str) -> int:
        for i, known in enumerate(_ORDER):
            if known.lower() == name.lower():
                return i
        raise ConfigError(f'invalid TLS protocol name "{name}"', param=param)

    for name in names:
        if name.startswith(">="):
            low = max(low, index(name[2:]))
        elif name.startswith("<="):
            high = min(high, index(name[2:]))
        elif name.startswith("!"):
            excluded.add(index(name[1:]))
        else:
            any_included = True
            included.add(index(name))
    floor = _ORDER.index(FLOOR)
    enabled = [
        i for i in range(max(low, floor), high + 1)
        if i not in excluded and (not any_included or i in included)
    ]
    if not enabled:
        raise ConfigError(
            f"no TLS protocol left at or above {FLOOR} in: {' '.join(names)}", param=param)
    return PROTOCOLS[_ORDER[enabled[0]]], PROTOCOLS[_ORDER[enabled[-1]]]


def cipher_list(cfg: Config, grade: str, exclude: list[str],
                param: str = SMTPD_TLS_CIPHERS.name) -> str:
    """The OpenSSL cipher list of a grade (``tls_<grade>_cipherlist``) minus ``exclude``
    (``smtpd_tls_exclude_ciphers``: names or types such as ``aNULL``, ``RC4``, ``MD5``).
    Raises ConfigError for an unknown grade."""
    key = grade.strip().lower()
    if key not in _GRADES:
        raise ConfigError(
            f'invalid cipher grade "{grade}" (specify null, export, low, medium or high)',
            param=param)
    base = cfg[_GRADES[key]]
    return ":".join([base, *(f"!{x}" for x in exclude if x)])


@dataclass(frozen=True)
class KeyPair:
    """One certificate file and its key file, with the parameters naming them."""

    cert_file: str
    key_file: str
    cert_param: str = SMTPD_TLS_CERT_FILE.name
    key_param: str = SMTPD_TLS_KEY_FILE.name


@dataclass(frozen=True)
class ServerTlsPolicy:
    """What one smtpd service does about TLS, from its parameters (main.cf plus ``-o``).

    ``offered``: STARTTLS is announced (or TLS starts at connect, ``wrappermode``);
    ``required``: level encrypt or wrapper mode (mandatory protocols and ciphers apply,
    commands other than EHLO/HELO, NOOP, QUIT and STARTTLS get 530 before TLS);
    ``auth_only``: smtpd_tls_auth_only as set (AUTH only under TLS). ``ask_ccert``:
    a client certificate is asked for (smtpd_tls_ask_ccert, or req_ccert); ``req_ccert``:
    a trusted one is required (smtpd_tls_req_ccert at level encrypt or wrapper mode);
    ``fingerprint_digest``: smtpd_tls_fingerprint_digest (a hashlib name); ``sni_maps``:
    tls_server_sni_maps' table specifications. Times in seconds.
    """

    level: TlsLevel
    wrappermode: bool
    auth_only: bool
    keys: tuple[KeyPair, ...]
    chain_files: tuple[str, ...]
    ca_file: str
    ca_path: str
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    ciphers: str
    dh_file: str
    ask_ccert: bool
    req_ccert: bool
    loglevel: int
    received_header: bool
    handshake_timeout: float
    fingerprint_digest: str = "sha256"
    sni_maps: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.wrappermode or self.level is TlsLevel.ENCRYPT

    @property
    def offered(self) -> bool:
        return self.required or self.level is TlsLevel.MAY

    @classmethod
    def from_config(cls, cfg: Config) -> ServerTlsPolicy:
        """Decide from ``cfg``; raises ConfigError naming the parameter at fault."""
        level = security_level(cfg)
        wrapper = cfg[SMTPD_TLS_WRAPPERMODE]
        required = wrapper or level is TlsLevel.ENCRYPT
        proto_param = SMTPD_TLS_MANDATORY_PROTOCOLS if required else SMTPD_TLS_PROTOCOLS
        grade_param = SMTPD_TLS_MANDATORY_CIPHERS if required else SMTPD_TLS_CIPHERS
        exclude = list(cfg[SMTPD_TLS_EXCLUDE_CIPHERS])
        if required:
            exclude += cfg[SMTPD_TLS_MANDATORY_EXCLUDE_CIPHERS]
        low, high = protocol_range(cfg[proto_param], proto_param.name)
        cert = cfg[SMTPD_TLS_CERT_FILE].strip()
        key = cfg[SMTPD_TLS_KEY_FILE].strip() or cert
        try:
            digest = check_digest(cfg[SMTPD_TLS_FINGERPRINT_DIGEST])
        except ValueError as exc:
            raise ConfigError(str(exc), param=SMTPD_TLS_FINGERPRINT_DIGEST.name) from None
        return cls(
            level=level,
            wrappermode=wrapper,
            auth_only=cfg[SMTPD_TLS_AUTH_ONLY],
            keys=(KeyPair(cert, key),) if cert else (),
            chain_files=tuple(cfg[SMTPD_TLS_CHAIN_FILES]),
            ca_file=cfg[SMTPD_TLS_CAFILE].strip(),
            ca_path=cfg[SMTPD_TLS_CAPATH].strip(),
            min_version=low,
            max_version=high,
            ciphers=cipher_list(cfg, cfg[grade_param], exclude, grade_param.name),
            dh_file=cfg[SMTPD_TLS_DH1024_PARAM_FILE].strip(),
            ask_ccert=cfg[SMTPD_TLS_ASK_CCERT] or cfg[SMTPD_TLS_REQ_CCERT],
            req_ccert=cfg[SMTPD_TLS_REQ_CCERT] and required,
            loglevel=cfg[SMTPD_TLS_LOGLEVEL],
            received_header=cfg[SMTPD_TLS_RECEIVED_HEADER],
            handshake_timeout=cfg[SMTPD_STARTTLS_TIMEOUT],
            fingerprint_digest=digest,
            sni_maps=tuple(cfg[TLS_SERVER_SNI_MAPS]),
        )


@dataclass(frozen=True)
class TlsInfo:
    """What a completed handshake established, for logs, Received: and restrictions.

    ``bits``: the cipher's secret bits. ``peer_*`` are empty without a client
    certificate: ``peer_cn``/``issuer_cn`` its subject's and issuer's commonName,
    ``peer_fingerprint`` the digest (smtpd_tls_fingerprint_digest) of the certificate
    (DER) and ``peer_pkey_fingerprint`` of its public key (DER SubjectPublicKeyInfo),
    upper-case hex pairs joined by colons, as Postfix's check_ccert_access and
    relay_clientcerts key them; ``peer_verified``: it chained to
    smtpd_tls_CAfile/CApath (else ``verify_error`` says why, OpenSSL's text).
    ``sni``: the TLS SNI name the client sent when it matched tls_server_sni_maps.
    ``ccert_asked``: a client certificate was asked for (smtpd_tls_ask_ccert).
    """

    protocol: str
    cipher: str
    bits: int
    peer_cn: str = ""
    issuer_cn: str = ""
    peer_fingerprint: str = ""
    peer_verified: bool = False
    peer_pkey_fingerprint: str = ""
    verify_error: str = ""
    sni: str = ""
    ccert_asked: bool = False

    @classmethod
    def from_ssl_object(cls, obj: ssl.SSLObject | ssl.SSLSocket, *, digest: str = "sha256",
                        verify_error: str | None = None, sni: str = "",
                        ccert_asked: bool = False) -> TlsInfo:
        """Read a finished handshake's facts (no I/O). ``verify_error``: why the client
        certificate did not verify (``tls.verify``), None when it did."""
        name, _, bits = obj.cipher() or ("unknown", "", 0)
        der = obj.getpeercert(binary_form=True)
        fingerprint = pkey = ""
        peer_cn = issuer_cn = ""
        decoded: dict[str, object] = {}
        if der:
            fingerprint, pkey = fingerprints(der, digest)
            # getpeercert() decodes only when the peer was asked to verify (else {}).
            decoded = dict(obj.getpeercert() or {})
            peer_cn = _common_name(decoded.get("subject", ()))
            issuer_cn = _common_name(decoded.get("issuer", ()))
        return cls(
            protocol=obj.version() or "unknown",
            cipher=name,
            bits=int(bits or 0),
            peer_cn=peer_cn,
            issuer_cn=issuer_cn,
            peer_fingerprint=fingerprint,
            peer_verified=bool(decoded) and verify_error is None,
            peer_pkey_fingerprint=pkey,
            verify_error=(verify_error or "") if der else "",
            sni=sni,
            ccert_asked=ccert_asked,
        )

    @property
    def trust(self) -> str:
        """Postfix's word for the peer: Trusted, Untrusted (a certificate that did not
        verify) or Anonymous (none)."""
        return "Trusted" if self.peer_verified else "Untrusted" if self.peer_fingerprint \
            else "Anonymous"

    def established(self, client: str) -> str:
        """Postfix's summary line (smtpd_tls_loglevel >= 1): ``Trusted TLS connection
        established from NAME[ADDR]: TLSv1.3 with cipher X (256/256 bits)``; `` to NAME``
        follows the client when an SNI name matched tls_server_sni_maps."""
        to = f" to {self.sni}" if self.sni else ""
        return (f"{self.trust} TLS connection established from {client}{to}: "
                f"{self.protocol} with cipher {self.cipher} ({self.bits}/{self.bits} bits)")

    def received_clause(self) -> str:
        """The Received: header's clause, without its parentheses
        (smtpd_tls_received_header = yes)."""
        return f"using {self.protocol} with cipher {self.cipher} ({self.bits}/{self.bits} bits)"

    def received_peer_clause(self) -> str:
        """The Received: header's client certificate clause, without its parentheses
        (Postfix 3.7's smtpd): ``Client CN "c", Issuer "ca" (verified OK)`` (``not
        verified``), ``Client did not present a certificate``, or ``No client
        certificate requested``."""
        if self.peer_fingerprint:
            verdict = "verified OK" if self.peer_verified else "not verified"
            return f'Client CN "{self.peer_cn}", Issuer "{self.issuer_cn}" ({verdict})'
        if self.ccert_asked:
            return "Client did not present a certificate"
        return "No client certificate requested"

    @property
    def missing_ccert(self) -> str | None:
        """Why smtpd_tls_req_ccert refuses this peer (Postfix's words), None when its
        certificate is trusted."""
        if self.peer_verified:
            return None
        return "Client certificate not trusted" if self.peer_fingerprint \
            else "No client certificate presented"


def _common_name(rdns: object) -> str:
    if not isinstance(rdns, tuple):
        return ""
    for rdn in rdns:
        for pair in rdn:
            if len(pair) == 2 and pair[0] == "commonName":
                return str(pair[1])
    return ""
