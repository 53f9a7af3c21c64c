"""postconf(1) behaviour: -n on the tutorial's main.cf, -d, -h, -x, names, -e/-X, -M, -P."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from postier.cli import postconf
from postier.config import maincf

DATA = Path(__file__).resolve().parents[2] / "data" / "tutorial"

TUTORIAL_N = """\
inet_protocols = all
mailbox_command = procmail -a "$EXTENSION"
mailbox_size_limit = 51200000
mydestination = example.com, tintin.example.com, localhost, localhost.localdomain
mydomain = example.com
myhostname = tintin.example.com
mynetworks = 127.0.0.0/8 [::1]/128
myorigin = $mydomain
recipient_delimiter = +
smtpd_client_restrictions = permit_mynetworks, permit_sasl_authenticated, sleep 1, \
reject_unauth_pipelining
smtpd_helo_restrictions = reject_invalid_helo_hostname
smtpd_recipient_restrictions = reject_unlisted_recipient, reject_unknown_recipient_domain, \
permit_mynetworks, permit_sasl_authenticated, reject_non_fqdn_recipient, reject_unauth_destination
smtpd_sasl_auth_enable = yes
smtpd_sasl_authenticated_header = yes
smtpd_sasl_path = private/auth
smtpd_sasl_type = dovecot
smtpd_sender_restrictions = reject_unlisted_sender, reject_unknown_sender_domain, \
permit_mynetworks, permit_sasl_authenticated, reject_non_fqdn_sender
"""


@pytest.fixture
def tutorial(tmp_path: Path) -> Path:
    for name in ("main.cf", "master.cf"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = postconf.main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_n_on_tutorial_prints_exactly_its_parameters_sorted(tutorial: Path) -> None:
    status, out, err = run("-c", str(tutorial), "-n")
    assert (status, err) == (0, "")
    assert out == TUTORIAL_N


def test_names_and_unknown_warning(tutorial: Path) -> None:
    status, out, err = run("-c", str(tutorial), "myorigin", "no_such_thing", "relayhost")
    assert status == 0
    assert out == "myorigin = $mydomain\nrelayhost =\n"
    assert err == "postconf: warning: no_such_thing: unknown parameter\n"


def test_x_expands_and_h_prints_values_only(tutorial: Path) -> None:
    status, out, _ = run("-c", str(tutorial), "-xh", "myorigin", "smtpd_banner", "mailbox_command")
    assert status == 0
    assert out == 'example.com\ntintin.example.com ESMTP Postfix\nprocmail -a "$EXTENSION"\n'


def test_d_prints_defaults(tutorial: Path) -> None:
    status, out, _ = run("-c", str(tutorial), "-d", "myorigin", "smtpd_relay_restrictions",
                         "mailbox_size_limit", "mail_name")
    assert status == 0
    assert out == ("myorigin = $myhostname\n"
                   "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
                   "defer_unauth_destination\n"
                   "mailbox_size_limit = 51200000\n"
                   "mail_name = Postfix\n")


def test_d_works_without_main_cf(tmp_path: Path) -> None:
    status, out, _ = run("-c", str(tmp_path), "-d")
    assert status == 0
    lines = out.splitlines()
    assert lines == sorted(lines)
    assert "inet_interfaces = all" in lines


def test_all_parameters_sorted_with_actual_values(tutorial: Path) -> None:
    status, out, _ = run("-c", str(tutorial))
    lines = out.splitlines()
    assert status == 0 and lines == sorted(lines)
    assert "myhostname = tintin.example.com" in lines
    assert f"config_directory = {tutorial}" in lines
    assert "smtpd_helo_required = no" in lines


def test_unused_parameter_warning(tutorial: Path) -> None:
    with (tutorial / "main.cf").open("a") as f:
        f.write("tpyo_parameter = 1\n")
    line = len((tutorial / "main.cf").read_text().splitlines())
    status, _, err = run("-c", str(tutorial), "-n")
    assert status == 0
    assert err == (f"postconf: warning: {tutorial / 'main.cf'}, line {line}: "
                   "unused parameter: tpyo_parameter=1\n")


def test_edit_and_remove(tutorial: Path) -> None:
    status, _, _ = run("-c", str(tutorial), "-e", "relayhost = [smtp.fai.com]",
                       "mydomain=example.org")
    assert status == 0
    values = maincf.load(str(tutorial / "main.cf")).values
    assert values["relayhost"].value == "[smtp.fai.com]"
    assert values["mydomain"].value == "example.org"
    assert values["mydomain"].line == 6  # edited in place
    assert "# Nom d'hôte." in (tutorial / "main.cf").read_text()
    assert run("-c", str(tutorial), "-X", "relayhost")[0] == 0
    assert "relayhost" not in maincf.load(str(tutorial / "main.cf")).values
    # name=value arguments imply -e
    assert run("-c", str(tutorial), "biff=no")[0] == 0
    assert run("-c", str(tutorial), "-h", "biff")[1] == "no\n"


def test_edit_requires_name_value(tutorial: Path) -> None:
    status, _, err = run("-c", str(tutorial), "-e", "justaname")
    assert status == 1
    assert err.startswith("postconf: fatal: ")


def test_M_lists_services_in_postfix_layout(tutorial: Path) -> None:
    status, out, _ = run("-c", str(tutorial), "-M")
    assert status == 0
    assert out.splitlines() == [
        "smtp       inet  n       -       -       -       -       smtpd",
        "submission inet  n       -       -       -       -       smtpd -o smtpd_enforce_tls=yes "
        "-o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "smtps      inet  n       -       -       -       -       smtpd "
        "-o smtpd_tls_wrappermode=yes",
    ]
    assert run("-c", str(tutorial), "-M", "smtps/inet")[1].startswith("smtps ")
    assert run("-c", str(tutorial), "-M", "smtps/unix")[1] == ""


def test_P_lists_overrides(tutorial: Path) -> None:
    status, out, _ = run("-c", str(tutorial), "-P")
    assert status == 0
    assert out == ("submission/inet/smtpd_enforce_tls = yes\n"
                   "submission/inet/smtpd_client_restrictions = permit_sasl_authenticated,reject\n"
                   "smtps/inet/smtpd_tls_wrappermode = yes\n")
    assert run("-c", str(tutorial), "-P", "smtps")[1] == "smtps/inet/smtpd_tls_wrappermode = yes\n"


def test_fatal_on_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("this is not a setting\n")
    status, out, err = run("-c", str(tmp_path), "-n")
    assert (status, out) == (1, "")
    assert err.startswith(f"postconf: fatal: {tmp_path / 'main.cf'}, line 1: ")


def test_mail_config_environment(tutorial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_CONFIG", str(tutorial))
    assert run("-h", "myhostname")[1] == "tintin.example.com\n"


def test_bad_option() -> None:
    status, _, err = run("-Z")
    assert status == 1 and "usage" in err


def test_master_cf_override_warnings(tutorial: Path) -> None:
    with (tutorial / "master.cf").open("a") as f:
        f.write("127.0.0.1:2525 inet n - n - - smtpd -o smtpd_bogus=1 -o smtpd_use_tls=maybe\n"
                "relay unix - - n - - smtp -o syslog_name=postfix/$service_name\n")
    status, _, err = run("-c", str(tutorial), "-n")
    where = f"{tutorial / 'master.cf'}, line 7"
    assert status == 0
    assert err.splitlines() == [
        f"postconf: warning: {where}: unused parameter: smtpd_bogus=1",
        f"postconf: warning: {where}: parameter smtpd_use_tls: "
        'bad boolean value: "maybe" (specify yes or no)',
    ]
