"""instance: a per-service error is reported where its parameter is set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from postier import instance
from postier.config import mastercf
from postier.config.errors import ConfigError
from postier.config.settings import Config


def setup(tmp_path: Path, main_cf: str, master_cf: str
          ) -> tuple[Config, mastercf.MasterService, str]:
    (tmp_path / "main.cf").write_text("alias_maps =\nmyhostname = mail.example.com\n" + main_cf)
    (tmp_path / "master.cf").write_text(master_cf)
    svc = mastercf.load(str(tmp_path / "master.cf"))[-1]
    where = f"{svc.file}, line {svc.line}"
    return Config.from_dir(str(tmp_path)).with_overrides(svc.overrides, source=where), svc, where


SERVICE = "127.0.0.1:2525 inet n - n - - smtpd\n"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A self-signed certificate and key in one PEM file (its path)."""
    base = tmp_path_factory.mktemp("pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mail.example.com", "-keyout", str(base / "k.pem"),
                    "-out", str(base / "c.pem")], check=True, capture_output=True)
    both = base / "both.pem"
    both.write_text((base / "k.pem").read_text() + (base / "c.pem").read_text())
    return str(both)


@pytest.mark.parametrize(("line", "param"), [
    ("tls_server_sni_maps = hash:{tmp}/gone", "tls_server_sni_maps"),
    ("tls_server_sni_maps = inline:{{mail.example.com={tmp}/gone.pem}}",
     "tls_server_sni_maps"),
    ("tls_server_sni_maps = static:{tmp}/gone.pem", "tls_server_sni_maps"),
    ("smtpd_tls_cert_file = {tmp}/gone.pem", "smtpd_tls_cert_file"),
    ("smtpd_tls_fingerprint_digest = bogus", "smtpd_tls_fingerprint_digest"),
    ("smtpd_tls_mandatory_protocols = >=TLSv9", "smtpd_tls_mandatory_protocols"),
])
def test_tls_error_at_main_cf_line(tmp_path: Path, cert: str, line: str, param: str) -> None:
    cfg, svc, _ = setup(tmp_path, f"smtpd_tls_chain_files = {cert}\n"
                        "smtpd_tls_security_level = encrypt\n"
                        f"{line.format(tmp=tmp_path)}\n", SERVICE)
    with pytest.raises(ConfigError) as caught:
        instance.check_smtpd_tls(cfg, svc)
    assert str(caught.value).startswith(
        f"{tmp_path}/main.cf, line 5: parameter {param}: service 127.0.0.1:2525: ")


def test_tls_warning_at_main_cf_line(tmp_path: Path) -> None:
    cfg, svc, _ = setup(tmp_path, f"smtpd_tls_security_level = may\n"
                        f"smtpd_tls_cert_file = {tmp_path}/gone.pem\n", SERVICE)
    warnings = instance.check_smtpd_tls(cfg, svc)
    assert warnings == [
        f"{tmp_path}/main.cf, line 4: parameter smtpd_tls_cert_file: service 127.0.0.1:2525: "
        f"cannot read certificate file {tmp_path}/gone.pem: No such file or directory; "
        "TLS is not available (STARTTLS is answered 454 4.7.0)"]


def test_tls_override_at_master_cf_line(tmp_path: Path, cert: str) -> None:
    cfg, svc, where = setup(tmp_path, f"smtpd_tls_security_level = encrypt\n"
                            f"smtpd_tls_chain_files = {cert}\n"
                            f"tls_server_sni_maps = hash:{tmp_path}/gone-too\n",
                            "smtp inet n - n - - smtpd\n" + SERVICE
                            + f"  -o tls_server_sni_maps=hash:{tmp_path}/gone\n")
    with pytest.raises(ConfigError) as caught:
        instance.check_smtpd_tls(cfg, svc)
    assert where == f"{tmp_path}/master.cf, line 2"
    assert str(caught.value).startswith(f"{where}: parameter tls_server_sni_maps: ")


def test_tls_default_at_service_line(tmp_path: Path) -> None:
    cfg, svc, where = setup(tmp_path, "", SERVICE + "  -o smtpd_tls_security_level=encrypt\n")
    with pytest.raises(ConfigError) as caught:
        instance.check_smtpd_tls(cfg, svc)
    assert str(caught.value).startswith(f"{where}: parameter smtpd_tls_cert_file: ")


@pytest.mark.parametrize(("line", "param", "text"), [
    ("smtpd_relay_restrictions = permit_mynetworks", "smtpd_relay_restrictions",
     "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions"),
    ("smtpd_restriction_classes = foo", "smtpd_restriction_classes",
     'restriction class "foo" is not defined'),
    ("smtpd_sasl_security_options = noanonymous, bogus", "smtpd_sasl_security_options",
     "unknown SASL security option: bogus"),
    ("smtpd_sasl_tls_security_options = bogus", "smtpd_sasl_tls_security_options",
     "unknown SASL security option: bogus"),
])
def test_smtpd_settings_at_main_cf_line(tmp_path: Path, line: str, param: str,
                                        text: str) -> None:
    cfg, _, where = setup(tmp_path, f"{line}\n", SERVICE)
    with pytest.raises(ConfigError) as caught:
        instance.check_smtpd_settings(cfg, where)
    assert str(caught.value).startswith(f"{tmp_path}/main.cf, line 3: parameter {param}: ")
    assert text in str(caught.value)


def test_located_keeps_a_placed_error(tmp_path: Path) -> None:
    cfg, _, where = setup(tmp_path, "", SERVICE)
    placed = ConfigError("x", file="/a/main.cf", line=9, param="relay_domains")
    assert instance.located(cfg, placed, where) is placed
    unknown = instance.located(cfg, ConfigError("y"), where)
    assert str(unknown) == f"{where}: y"


@pytest.mark.parametrize(("line", "text"), [
    ("smtp_tls_security_level = bogus", "parameter smtp_tls_security_level: unsupported TLS "
     "security level 'bogus' (none, may, encrypt, verify, secure)"),
    ("smtp_sasl_security_options = noanonymous, bogus",
     "parameter smtp_sasl_security_options: unknown SASL security option: bogus"),
    ("smtp_tls_security_level = verify\nsmtp_tls_CAfile = {tmp}/gone.pem",
     "parameter smtp_tls_CAfile: cannot load trusted CA certificates from {tmp}/gone.pem: "
     "No such file or directory"),
])
def test_smtp_client_settings_at_main_cf_line(tmp_path: Path, line: str, text: str) -> None:
    cfg, _, _ = setup(tmp_path, line.format(tmp=tmp_path) + "\n", SERVICE)
    with pytest.raises(ConfigError) as caught:
        instance.check_smtp_settings(cfg, [])
    last = 2 + line.count("\n") + 1
    assert str(caught.value) == f"{tmp_path}/main.cf, line {last}: {text.format(tmp=tmp_path)}"


def test_smtp_client_override_at_its_service_line(tmp_path: Path) -> None:
    setup(tmp_path, "", SERVICE + "relay unix - - n - - smtp\n"
          "  -o smtp_tls_security_level=dane-only\n")
    cfg = Config.from_dir(str(tmp_path))
    instance.check_smtp_settings(cfg, [])  # main.cf alone is fine
    with pytest.raises(ConfigError) as caught:
        instance.check_smtp_settings(cfg, mastercf.load(str(tmp_path / "master.cf")))
    assert str(caught.value).startswith(
        f"{tmp_path}/master.cf, line 2: parameter smtp_tls_security_level: ")


def test_smtpd_sasl_type_is_checked_when_auth_is_on(tmp_path: Path) -> None:
    cfg, _, where = setup(tmp_path, "smtpd_sasl_type = bogus\n", SERVICE)
    instance.check_smtpd_settings(cfg, where)  # smtpd_sasl_auth_enable = no: unused
    cfg, _, where = setup(tmp_path, "smtpd_sasl_type = bogus\nsmtpd_sasl_auth_enable = yes\n",
                          SERVICE)
    with pytest.raises(ConfigError) as caught:
        instance.check_smtpd_settings(cfg, where)
    assert str(caught.value) == (
        f"{tmp_path}/main.cf, line 3: parameter smtpd_sasl_type: unsupported SASL server "
        "implementation: bogus (specify cyrus or dovecot)")
