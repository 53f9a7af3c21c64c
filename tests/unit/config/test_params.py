"""The registry holds every parameter the tutorial, Debian's main.cf and postier's code use."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from postier.config import maincf, params
from postier.config.params import PARAMS, Param, ParamType, constant_name, unimplemented_settings

SRC = Path(__file__).resolve().parents[3] / "src" / "postier"
DATA = Path(__file__).resolve().parents[2] / "data" / "tutorial"

_REQUIRED_TEXT = """
myhostname mydomain myorigin mydestination inet_interfaces inet_protocols mynetworks
mynetworks_style relayhost relay_domains mailbox_command mailbox_size_limit message_size_limit
recipient_delimiter smtpd_banner mail_name mail_version smtpd_client_restrictions
smtpd_helo_restrictions smtpd_sender_restrictions smtpd_recipient_restrictions
smtpd_relay_restrictions smtpd_data_restrictions smtpd_end_of_data_restrictions
smtpd_helo_required smtpd_delay_reject disable_vrfy_command smtpd_sasl_auth_enable
smtpd_sasl_type smtpd_sasl_path smtpd_sasl_authenticated_header smtpd_tls_security_level
smtpd_enforce_tls smtpd_use_tls smtpd_tls_wrappermode smtpd_tls_cert_file smtpd_tls_key_file
smtpd_tls_auth_only config_directory queue_directory data_directory command_directory
daemon_directory mail_owner setgid_group default_privs mail_spool_directory home_mailbox
alias_maps alias_database local_recipient_maps local_transport default_transport
relay_transport transport_maps virtual_alias_maps canonical_maps maillog_file syslog_name
syslog_facility queue_run_delay minimal_backoff_time maximal_backoff_time
maximal_queue_lifetime bounce_queue_lifetime delay_warning_time default_process_limit
smtpd_timeout smtpd_hard_error_limit smtpd_soft_error_limit smtpd_error_sleep_time
smtpd_recipient_limit line_length_limit header_size_limit hash_queue_names hash_queue_depth
enable_long_queue_ids mailbox_delivery_lock defer_transports smtpd_forbid_bare_newline
smtpd_forbid_unauth_pipelining always_add_missing_headers local_header_rewrite_clients biff
allow_mail_to_commands allow_mail_to_files compatibility_level readme_directory
html_directory manpage_directory sample_directory sendmail_path newaliases_path mailq_path
smtputf8_enable append_dot_mydomain smtp_tls_security_level smtp_tls_CApath
smtp_tls_session_cache_database smtpd_tls_session_cache_database smtp_helo_name
unknown_local_recipient_reject_code unknown_address_reject_code relay_domains_reject_code
access_map_reject_code non_fqdn_reject_code invalid_hostname_reject_code
unknown_client_reject_code reject_code defer_code unverified_recipient_reject_code
multi_recipient_bounce_reject_code unknown_hostname_reject_code debug_peer_level
debug_peer_list notify_classes 2bounce_notice_recipient bounce_notice_recipient
double_bounce_sender empty_address_recipient propagate_unmatched_extensions
owner_request_special expand_owner_alias import_environment export_environment
command_execution_directory forward_path mailbox_transport fallback_transport luser_relay
process_id_directory master_service_disable default_database_type smtpd_sender_login_maps
smtpd_tls_loglevel smtpd_tls_received_header smtp_sasl_auth_enable smtp_sasl_password_maps
tls_random_source
"""
REQUIRED = _REQUIRED_TEXT.split()


@pytest.mark.parametrize("name", REQUIRED)
def test_required_parameter_declared(name: str) -> None:
    param = PARAMS[name]
    assert param.name == name and param.doc


def test_tutorial_parameters_declared() -> None:
    for name in maincf.load(str(DATA / "main.cf")).values:
        assert name in PARAMS, name


def test_parameters_used_by_postier_code_are_declared() -> None:
    call = re.compile(r"cfg\.get(?:_raw|_bool|_int|_time|_size|_list)?\(\s*\"([A-Za-z0-9_]+)\"")
    imported = re.compile(r"from postier\.config\.params import (?:\(([^)]*)\)|([^\n]+))")
    used: set[str] = set()
    constants: set[str] = set()
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        used |= set(call.findall(text))
        for group in imported.findall(text):
            names = "".join(group)
            constants |= {n.strip() for n in names.split(",") if n.strip().isupper()}
    assert used or constants, "the scan found no parameter use at all"
    assert sorted(used - set(PARAMS)) == []
    declared = {constant_name(name) for name in PARAMS}
    assert constants, "the scan found no typed parameter use (config/settings.py has some)"
    assert sorted(constants - declared - {"PARAMS"}) == []


@pytest.mark.parametrize(
    ("name", "default"),
    [("smtpd_banner", "$myhostname ESMTP $mail_name"), ("mail_name", "Postfix"),
     ("mynetworks_style", "host"), ("relay_domains", ""), ("inet_interfaces", "all"),
     ("smtputf8_enable", "yes"), ("append_dot_mydomain", "no"),
     ("strict_smtputf8", "no"), ("smtputf8_autodetect_classes", "sendmail, verify"),
     ("mailbox_size_limit", "51200000"), ("message_size_limit", "10240000"),
     ("smtpd_relay_restrictions",
      "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination")],
)
def test_postfix_defaults(name: str, default: str) -> None:
    assert PARAMS[name].default == default


def test_every_parameter_is_its_module_constant() -> None:
    for name, param in PARAMS.items():
        assert param.name == name
        assert getattr(params, constant_name(name)) is param
    assert constant_name("smtpd_timeout") == "SMTPD_TIMEOUT"
    assert constant_name("2bounce_notice_recipient") == "PARAM_2BOUNCE_NOTICE_RECIPIENT"
    assert params.SMTPD_TIMEOUT.type is ParamType.TIME
    assert params.MAXIMAL_QUEUE_LIFETIME.time_unit == "d"
    assert params.MAILBOX_COMMAND.expand is False


def test_a_parameter_is_not_both_implemented_and_inert() -> None:
    with pytest.raises(ValueError, match="both implemented and inert"):
        Param.str("x", "", "doc", implemented=True, inert=True)
    assert not [name for name, p in PARAMS.items() if p.implemented and p.inert]


def test_unimplemented_settings_reads_the_flags() -> None:
    assert PARAMS["myhostname"].implemented and PARAMS["biff"].inert
    assert not (PARAMS["multi_instance_enable"].implemented
                or PARAMS["multi_instance_enable"].inert)
    assert unimplemented_settings({"multi_instance_enable", "myhostname", "biff", "nosuch"}) == [
        "multi_instance_enable"
    ]


def _instance(tmp_path: Path, main_cf: str, master_cf: str) -> str:
    (tmp_path / "main.cf").write_text(main_cf)
    (tmp_path / "master.cf").write_text(master_cf)
    return str(tmp_path)


def test_the_flag_drives_the_not_implemented_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postier.instance import load_with_warnings

    config_dir = _instance(
        tmp_path,
        # alias_maps emptied: the default hash:/etc/aliases depends on this machine
        # maillog_file set: where the log goes otherwise depends on this machine's syslog
        "queue_directory = /tmp/q\nmulti_instance_enable = yes\nbiff = no\nalias_maps =\n"
        "maillog_file = /dev/stdout\n",
        "smtp inet n - n - - smtpd -o strict_rfc821_envelopes=yes\n",
    )
    main_cf, master_cf = tmp_path / "main.cf", tmp_path / "master.cf"
    expected = [
        f"{main_cf}, line 2: parameter multi_instance_enable is not implemented by postier "
        "yet; its setting (yes) has no effect",
        f"{master_cf}, line 1: service smtp: -o strict_rfc821_envelopes is not implemented by "
        "postier yet; it has no effect",
    ]
    assert load_with_warnings(config_dir)[2] == expected
    for name in ("multi_instance_enable", "strict_rfc821_envelopes"):
        monkeypatch.setitem(PARAMS, name, dataclasses.replace(PARAMS[name], implemented=True))
    assert load_with_warnings(config_dir)[2] == []
    monkeypatch.setitem(PARAMS, "biff", dataclasses.replace(PARAMS["biff"], inert=False))
    assert load_with_warnings(config_dir)[2] == [
        f"{main_cf}, line 3: parameter biff is not implemented by postier yet; "
        "its setting (no) has no effect"
    ]


def test_default_value_is_the_typed_default() -> None:
    assert params.SMTPD_RECIPIENT_LIMIT.default_value() == 1000
    assert params.MESSAGE_SIZE_LIMIT.default_value() == 10240000
    assert params.COMMAND_TIME_LIMIT.default_value() == 1000.0
    assert params.MAXIMAL_QUEUE_LIFETIME.default_value() == 5 * 86400.0
    assert params.OWNER_REQUEST_SPECIAL.default_value() is True
    assert params.HASH_QUEUE_NAMES.default_value() == ["deferred", "defer"]
    assert params.MAILBOX_COMMAND.default_value() == ""
    for param in (params.SMTPD_TIMEOUT, params.MYORIGIN, params.MYHOSTNAME, params.MYDOMAIN):
        with pytest.raises(ValueError, match="depends on the configuration"):
            param.default_value()


def test_forward_path_default_is_not_expanded_so_it_has_a_value() -> None:
    assert params.FORWARD_PATH.default_value() == [
        "$home/.forward${recipient_delimiter}${extension}", "$home/.forward"]


def test_every_name_postfix_knows_is_declared() -> None:
    # config.postfix_names is postconf -d of Postfix 3.7.11 (scripts/postfix_params.py)
    from postier.config.postfix_names import POSTFIX_DEFAULTS, POSTFIX_VERSION
    assert POSTFIX_VERSION == "3.7.11" and len(POSTFIX_DEFAULTS) > 800
    per_transport = {"local_destination_concurrency_limit", "local_destination_recipient_limit"}
    assert set(POSTFIX_DEFAULTS) - set(PARAMS) == per_transport
    generic = PARAMS["smtp_generic_maps"]
    assert generic.default == "" and not generic.implemented and not generic.inert
    assert PARAMS["smtp_helo_name"].implemented  # postier's own declaration wins
    assert PARAMS["header_checks"].default == POSTFIX_DEFAULTS["header_checks"]


def test_the_table_is_the_installed_postfix_postconf_d(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from postier.config.postfix_names import POSTFIX_DEFAULTS, POSTFIX_VERSION
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    if not Path(postconf).exists():
        pytest.skip("no Postfix installed")
    for name in ("main.cf", "master.cf"):
        (tmp_path / name).write_text("")
    text = subprocess.run([postconf, "-c", str(tmp_path), "-d"], capture_output=True,
                          text=True, check=True).stdout
    names = {line.partition(" =")[0] for line in text.splitlines()}
    version = next(line.partition(" = ")[2] for line in text.splitlines()
                   if line.startswith("mail_version ="))
    if version != POSTFIX_VERSION:
        pytest.skip(f"Postfix {version} installed, table of {POSTFIX_VERSION}")
    assert names == set(POSTFIX_DEFAULTS)
