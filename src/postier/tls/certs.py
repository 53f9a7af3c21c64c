"""Client certificate fingerprints, as check_ccert_access and relay_clientcerts key them (pure).

Follows postconf(5) ``smtpd_tls_fingerprint_digest`` (md5, sha1, sha224, sha256, sha384,
sha512; the digest of the DER certificate, and of the DER SubjectPublicKeyInfo for the
public-key fingerprint), written as ``openssl x509 -fingerprint`` does: upper-case hex
pairs joined by colons. The certificate is read as RFC 5280 section 4.1 lays it out
(X.690 DER).
"""

from __future__ import annotations

import hashlib

#: The digests smtpd_tls_fingerprint_digest may name (those libssl uses in cipher suites).
DIGESTS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


class CertificateFormatError(ValueError):
    """DER bytes that are not an X.509 certificate as RFC 5280 lays it out."""


def check_digest(name: str) -> str:
    """``name`` lower-cased when it is one of ``DIGESTS``; ValueError otherwise."""
    key = name.strip().lower()
    if key not in DIGESTS:
        raise ValueError(f"unsupported fingerprint digest {name!r} "
                         f"(specify one of: {', '.join(DIGESTS)})")
    return key


def fingerprint(data: bytes, digest: str = "sha256") -> str:
    """``AB:01:…`` (upper-case hex pairs) of ``digest`` over ``data``."""
    text = hashlib.new(digest, data).hexdigest().upper()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, start of its content, end of its content)."""
    if at + 2 > len(der):
        raise CertificateFormatError("truncated DER element")
    tag, first = der[at], der[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or at + count > len(der):
            raise CertificateFormatError("bad DER length")
        length = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + length > len(der):
        raise CertificateFormatError("DER element runs past the end")
    return tag, at, at + length


_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT Version


def public_key_info(der: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of certificate ``der`` (the bytes the public-key
    fingerprint is taken over). Raises CertificateFormatError."""
    tag, start, _end = _element(der, 0)
    if tag != _SEQUENCE:
        raise CertificateFormatError("not a certificate")
    tag, at, _tbs_end = _element(der, start)  # tbsCertificate
    if tag != _SEQUENCE:
        raise CertificateFormatError("no tbsCertificate")
    tag, _s, end = _element(der, at)
    if tag == _VERSION:
        at = end
    # serialNumber, signature, issuer, validity, subject: then subjectPublicKeyInfo.
    for _ in range(5):
        _tag, _s, at = _element(der, at)
    tag, _s, end = _element(der, at)
    if tag != _SEQUENCE:
        raise CertificateFormatError("no subjectPublicKeyInfo")
    return der[at:end]


def fingerprints(der: bytes, digest: str = "sha256") -> tuple[str, str]:
    """(certificate fingerprint, public key fingerprint) of a DER certificate; the
    second is "" when the certificate cannot be parsed."""
    try:
        pkey = fingerprint(public_key_info(der), digest)
    except CertificateFormatError:
        pkey = ""
    return fingerprint(der, digest), pkey
