"""The SMTP client's SASL helpers and TLS policy (smtp.auth, tls.client): pure parts."""

from __future__ import annotations

import base64

import pytest

from postier.config import maincf
from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.smtp import auth
from postier.smtp.settings import SmtpSettings
from postier.tables import Key
from postier.tls.client import ClientTlsLevel, ClientTlsPolicy, certificate_matches


def test_password_keys_host_name_first_then_the_next_hop_as_written() -> None:
    assert auth.password_keys("smtp.fai.com", "[smtp.fai.com]:587") == [
        Key("smtp.fai.com"), Key("[smtp.fai.com]:587")]
    assert auth.password_keys("mx.example", "mx.example") == [Key("mx.example")]


def test_credentials_keep_colons_in_the_password() -> None:
    assert auth.Credentials.parse("u@x:a:b") == auth.Credentials("u@x", "a:b")
    assert auth.Credentials.parse("alone") == auth.Credentials("alone", "")


@pytest.mark.parametrize(("offered", "options", "chosen"), [
    ("PLAIN LOGIN", ("noanonymous",), "PLAIN"),
    ("login cram-md5", ("noanonymous",), "LOGIN"),
    ("PLAIN LOGIN", ("noplaintext", "noanonymous"), None),
    ("CRAM-MD5", (), None),
])
def test_mechanism_choice(offered: str, options: tuple[str, ...], chosen: str | None) -> None:
    assert auth.choose_mechanism(offered, options) == chosen


def test_plain_and_login_responses() -> None:
    creds = auth.Credentials("tintin", "milou")
    assert base64.b64decode(auth.initial_response("PLAIN", creds) or "") == b"\0tintin\0milou"
    assert auth.initial_response("LOGIN", creds) is None
    user = auth.respond("LOGIN", base64.b64encode(b"Username:").decode(), creds)
    password = auth.respond("LOGIN", base64.b64encode(b"Password:").decode(), creds)
    assert base64.b64decode(user) == b"tintin" and base64.b64decode(password) == b"milou"


def cfg(main: str = "") -> Config:
    return Config(maincf.parse(main, "main.cf"), {}, hostname="tintin.example.com")


@pytest.mark.parametrize(("word", "level"), [
    ("", ClientTlsLevel.NONE), ("none", ClientTlsLevel.NONE), ("may", ClientTlsLevel.MAY),
    ("encrypt", ClientTlsLevel.ENCRYPT), ("Verify", ClientTlsLevel.VERIFY),
    ("secure", ClientTlsLevel.SECURE),
])
def test_security_levels(word: str, level: ClientTlsLevel) -> None:
    policy = ClientTlsPolicy.from_config(cfg(f"smtp_tls_security_level = {word}\n"))
    assert policy.level is level
    assert policy.required == (level >= ClientTlsLevel.ENCRYPT)
    assert policy.verifies == (level >= ClientTlsLevel.VERIFY)


def test_unsupported_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"smtp_tls_security_level.*dane"):
        ClientTlsPolicy.from_config(cfg("smtp_tls_security_level = dane\n"))


def test_postfix_defaults_no_tls_and_no_plaintext_sasl() -> None:
    s = SmtpSettings.from_config(cfg())
    assert s.tls.level is ClientTlsLevel.NONE and not s.sasl_enable
    assert s.sasl_options == ("noplaintext", "noanonymous")
    assert s.sasl_tls_options == s.sasl_options  # $smtp_sasl_security_options
    assert s.sasl_soft_bounce
    lmtp = SmtpSettings.from_config(cfg("smtp_tls_security_level = may\n"), lmtp=True)
    assert lmtp.tls.level is ClientTlsLevel.NONE


def test_match_names_per_level() -> None:
    verify = ClientTlsPolicy(level=ClientTlsLevel.VERIFY)
    secure = ClientTlsPolicy(level=ClientTlsLevel.SECURE)
    assert verify.match_names("MX1.Example.com.", "example.com") == ("mx1.example.com",)
    assert secure.match_names("mx1.example.com", "example.com") == (
        "example.com", ".example.com")


CERT = {"subject": ((("commonName", "ignored.example"),),),
        "subjectAltName": (("DNS", "*.example.com"), ("DNS", "smtp.fai.test"),
                           ("IP Address", "127.13.0.1"))}


@pytest.mark.parametrize(("names", "ok"), [
    (("smtp.fai.test",), True),
    (("mx1.example.com",), True),        # wildcard, leftmost label
    (("a.mx1.example.com",), False),     # a wildcard covers one label
    ((".example.com",), True),           # dot-nexthop: any subdomain
    (("ignored.example",), False),       # the CN is not used when there are DNS SANs
    (("127.13.0.1",), True),
    (("other.test",), False),
])
def test_certificate_matches(names: tuple[str, ...], ok: bool) -> None:
    assert certificate_matches(CERT, names) is ok
