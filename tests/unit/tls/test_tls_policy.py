"""The server TLS policy from parameters: level precedence, protocols, ciphers, log texts."""

from __future__ import annotations

import ssl

import pytest

from postier.config import maincf
from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.tls.context import TlsSetupError, load_server_tls, server_context
from postier.tls.policy import (
    ServerTlsPolicy,
    TlsInfo,
    TlsLevel,
    cipher_list,
    ignored_legacy,
    protocol_range,
    security_level,
)

V = ssl.TLSVersion


def cfg(main: str = "", **overrides: str) -> Config:
    return Config(maincf.parse(main, "main.cf"), overrides, hostname="tintin.example.com")


@pytest.mark.parametrize(("main", "overrides", "level"), [
    ("", {}, TlsLevel.NONE),
    ("smtpd_use_tls = yes", {}, TlsLevel.MAY),
    ("smtpd_use_tls = yes", {"smtpd_enforce_tls": "yes"}, TlsLevel.ENCRYPT),
    ("", {"smtpd_enforce_tls": "yes"}, TlsLevel.ENCRYPT),
    # A level set anywhere wins over the obsolete pair (Postfix's smtpd.c rule).
    ("smtpd_tls_security_level = may", {"smtpd_enforce_tls": "yes"}, TlsLevel.MAY),
    ("smtpd_enforce_tls = yes\nsmtpd_tls_security_level = none", {}, TlsLevel.NONE),
    ("smtpd_use_tls = no", {"smtpd_tls_security_level": "encrypt"}, TlsLevel.ENCRYPT),
    ("smtpd_tls_security_level = Encrypt", {}, TlsLevel.ENCRYPT),
])
def test_security_level_precedence(main: str, overrides: dict[str, str], level: TlsLevel) -> None:
    assert security_level(cfg(main, **overrides)) is level


def test_ignored_legacy_names_what_the_level_overrides() -> None:
    c = cfg("smtpd_tls_security_level = may", smtpd_enforce_tls="yes")
    assert ignored_legacy(c) == ["smtpd_enforce_tls"]
    assert ignored_legacy(cfg("", smtpd_enforce_tls="yes")) == []


def test_unknown_level_is_an_error_naming_the_parameter() -> None:
    with pytest.raises(ConfigError, match=r"smtpd_tls_security_level.*invalid TLS level"):
        security_level(cfg("smtpd_tls_security_level = dane"))


@pytest.mark.parametrize(("items", "expected"), [
    ([">=TLSv1"], (V.TLSv1_2, V.TLSv1_3)),  # Postfix's default, floored (RFC 8996)
    (["!SSLv2,", "!SSLv3"], (V.TLSv1_2, V.TLSv1_3)),
    ([">=TLSv1.3"], (V.TLSv1_3, V.TLSv1_3)),
    (["<=TLSv1.2"], (V.TLSv1_2, V.TLSv1_2)),
    (["!TLSv1.3"], (V.TLSv1_2, V.TLSv1_2)),
    (["TLSv1.3"], (V.TLSv1_3, V.TLSv1_3)),
    (["TLSv1:TLSv1.2"], (V.TLSv1_2, V.TLSv1_2)),
    ([], (V.TLSv1_2, V.TLSv1_3)),
])
def test_protocol_range(items: list[str], expected: tuple[V, V]) -> None:
    assert protocol_range(items) == expected


@pytest.mark.parametrize("items", [["TLSv9"], ["<=TLSv1.1"], ["!TLSv1.2", "!TLSv1.3"]])
def test_protocol_range_errors(items: list[str]) -> None:
    with pytest.raises(ConfigError, match="smtpd_tls_protocols"):
        protocol_range(items)


def test_cipher_list_grades_and_exclusions() -> None:
    c = cfg("tls_high_cipherlist = HIGH:!aNULL")
    assert cipher_list(c, "high", ["RC4", "aNULL"]) == "HIGH:!aNULL:!RC4:!aNULL"
    assert cipher_list(c, "medium", []) == "aNULL:-aNULL:HIGH:MEDIUM:+RC4:@STRENGTH"
    with pytest.raises(ConfigError, match="invalid cipher grade"):
        cipher_list(c, "strong", [])


def test_policy_mandatory_settings_when_required() -> None:
    main = ("smtpd_tls_cert_file = /c.pem\nsmtpd_tls_protocols = >=TLSv1.2\n"
            "smtpd_tls_mandatory_protocols = >=TLSv1.3\nsmtpd_tls_ciphers = medium\n"
            "smtpd_tls_mandatory_ciphers = high\nsmtpd_tls_exclude_ciphers = RC4\n"
            "smtpd_tls_mandatory_exclude_ciphers = SHA1\n")
    may = ServerTlsPolicy.from_config(cfg(main + "smtpd_tls_security_level = may"))
    assert (may.offered, may.required, may.min_version) == (True, False, V.TLSv1_2)
    assert may.ciphers.startswith("aNULL:-aNULL:HIGH:MEDIUM") and may.ciphers.endswith("!RC4")
    assert may.keys[0].cert_file == "/c.pem" and may.keys[0].key_file == "/c.pem"
    smtps = ServerTlsPolicy.from_config(cfg(main, smtpd_tls_wrappermode="yes"))
    assert (smtps.offered, smtps.required, smtps.min_version) == (True, True, V.TLSv1_3)
    assert smtps.ciphers == "aNULL:-aNULL:HIGH:@STRENGTH:!RC4:!SHA1"
    assert smtps.handshake_timeout == 300.0
    none = ServerTlsPolicy.from_config(cfg(main))
    assert (none.offered, none.required) == (False, False)
    assert load_server_tls(none).context is None and load_server_tls(none).error is None


def test_context_errors_name_the_parameter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = cfg(f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {tmp_path}/none.pem")
    with pytest.raises(TlsSetupError) as info:
        server_context(ServerTlsPolicy.from_config(c))
    assert info.value.param == "smtpd_tls_cert_file"
    assert "No such file or directory" in str(info.value)
    empty = ServerTlsPolicy.from_config(cfg("smtpd_tls_security_level = may"))
    tls = load_server_tls(empty)
    assert tls.context is None and tls.error is not None
    assert str(tls.error).startswith("parameter smtpd_tls_cert_file: no server certificate")


def test_tls_info_texts_are_postfix_s() -> None:
    info = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)
    assert info.established("localhost[127.0.0.1]") == (
        "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with "
        "cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
    assert info.received_clause() == (
        "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
    trusted = TlsInfo("TLSv1.2", "X", 128, peer_cn="c", peer_fingerprint="AB", peer_verified=True)
    assert trusted.established("a[1.2.3.4]").startswith("Trusted TLS connection")
