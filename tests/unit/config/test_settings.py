"""Config: precedence, expansion, typed getters with file:line errors, -o overrides, validate()."""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

import pytest

from postier.config import params
from postier.config.errors import ConfigError
from postier.config.maincf import parse
from postier.config.params import PARAMS, Param, ParamType
from postier.config.settings import Config, split_list

FILE = "/etc/postfix/main.cf"


def cfg(text: str, **kwargs: object) -> Config:
    return Config(parse(text, FILE), hostname="mx.example.net", **kwargs)  # type: ignore[arg-type]


def test_defaults_and_expansion() -> None:
    c = cfg("")
    assert c.get("myhostname") == "mx.example.net"
    assert c.get("mydomain") == "example.net"
    assert c.get("myorigin") == "mx.example.net"
    assert c.get("mydestination") == "mx.example.net, localhost.example.net, localhost"
    assert c.get_list("mydestination") == ["mx.example.net", "localhost.example.net", "localhost"]
    assert c.get("smtpd_banner") == "mx.example.net ESMTP Postfix"
    assert c.get("syslog_name") == "postfix"
    assert c.get("local_transport") == "local:mx.example.net"
    assert c.get_time("smtpd_timeout") == 300.0
    assert c.get_int("smtpd_hard_error_limit") == 20
    assert c.get_size("message_size_limit") == 10240000
    assert c.get_bool("smtpd_delay_reject") is True
    assert c.get_list("smtpd_relay_restrictions") == [
        "permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"]


def test_short_hostname_gets_localdomain() -> None:
    c = Config(parse("", FILE), hostname="box")
    assert (c.get("myhostname"), c.get("mydomain")) == ("box.localdomain", "localdomain")


def test_mydomain_follows_configured_myhostname() -> None:
    c = cfg("myhostname = tintin.example.com\n")
    assert c.get("mydomain") == "example.com"
    assert cfg("myhostname = tintin.example.com\nmydomain = other.org\n").get("myorigin") == (
        "tintin.example.com")


def test_myhostname_referring_to_mydomain_default() -> None:
    c = Config(parse("myhostname = mail.$mydomain\n", FILE), hostname="box.example.org")
    assert (c.get("myhostname"), c.get("mydomain")) == ("mail.example.org", "example.org")
    c = Config(parse("mydomain = $myhostname\n", FILE), hostname="box")
    assert c.get("mydomain") == "box.localdomain"
    c = Config(parse("mydomain = example.com\n", FILE), hostname="box")
    assert c.get("myhostname") == "box.example.com"
    c = Config(parse("myhostname = $myorigin\nmyorigin = mx.$mydomain\n", FILE),
               hostname="box.example.org")
    assert c.get("myhostname") == "mx.example.org"


def test_stress_dependent_defaults() -> None:
    c = cfg("stress = yes\n")
    assert c.get_time("smtpd_timeout") == 10.0
    assert c.get_int("smtpd_hard_error_limit") == 1


def test_multi_instance_syslog_name() -> None:
    assert cfg("multi_instance_name = postfix-out\n").get("syslog_name") == "postfix-out"


def test_mailbox_command_is_not_expanded() -> None:
    c = cfg('mailbox_command = procmail -a "$EXTENSION" -d $USER\n')
    assert c.get("mailbox_command") == 'procmail -a "$EXTENSION" -d $USER'
    assert c.get_raw("mailbox_command") == c.get("mailbox_command")
    assert c.validate() == []


def test_get_raw_keeps_references() -> None:
    c = cfg("myorigin = $mydomain\n")
    assert c.get_raw("myorigin") == "$mydomain"
    assert c.get_raw("mydestination") == "$myhostname, localhost.$mydomain, localhost"
    assert c.get("myorigin") == "example.net"


def test_unknown_parameter_raises_but_user_parameters_work() -> None:
    c = cfg("my_list = a, b\nsmtpd_client_restrictions = $my_list\n")
    assert c.get_list("smtpd_client_restrictions") == ["a", "b"]
    assert c.get("my_list") == "a, b"
    with pytest.raises(ConfigError):
        c.get("no_such_parameter")


def test_bad_bool_names_file_line_and_parameter() -> None:
    c = cfg("\nsmtpd_helo_required = maybe\n")
    with pytest.raises(ConfigError) as info:
        c.get_bool("smtpd_helo_required")
    err = info.value
    assert (err.file, err.line, err.param) == (FILE, 2, "smtpd_helo_required")
    assert str(err).startswith(f"{FILE}, line 2: parameter smtpd_helo_required: ")
    assert "maybe" in str(err)
    with pytest.raises(ConfigError):
        c.validate()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("YES", True), ("Yes", True), ("yes", True), ("NO", False), ("No", False)],
)
def test_bool_is_case_insensitive(value: str, expected: bool) -> None:
    assert cfg(f"biff = {value}\n").get_bool("biff") is expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("300", 300), ("300s", 300), ("5m", 300), ("2h", 7200), ("5d", 432000), ("1w", 604800),
     ("10M", 600)],
)
def test_time_units(value: str, seconds: float) -> None:
    assert cfg(f"queue_run_delay = {value}\n").get_time("queue_run_delay") == seconds


def test_time_default_unit_is_per_parameter() -> None:
    assert cfg("maximal_queue_lifetime = 2\n").get_time("maximal_queue_lifetime") == 2 * 86400
    assert cfg("delay_warning_time = 4\n").get_time("delay_warning_time") == 4 * 3600


@pytest.mark.parametrize("value", ["5x", "s", "1.5h", "-1s", ""])
def test_bad_time(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfg(f"queue_run_delay = {value}\n").get_time("queue_run_delay")
    assert info.value.param == "queue_run_delay"
    assert info.value.line == 1


@pytest.mark.parametrize("value", ["10k", "-1", "ten"])
def test_bad_size_and_int(value: str) -> None:
    with pytest.raises(ConfigError):
        cfg(f"message_size_limit = {value}\n").get_size("message_size_limit")
    if value != "-1":
        with pytest.raises(ConfigError):
            cfg(f"smtpd_recipient_limit = {value}\n").get_int("smtpd_recipient_limit")


def test_split_list() -> None:
    assert split_list("a, b,c  d\n\te,,") == ["a", "b", "c", "d", "e"]
    assert split_list("permit_mynetworks, sleep 1, reject") == [
        "permit_mynetworks", "sleep", "1", "reject"]
    assert split_list("check_policy_service { inet:127.0.0.1:9998, timeout=10s }, permit") == [
        "check_policy_service", "inet:127.0.0.1:9998, timeout=10s", "permit"]
    assert split_list("") == []


def test_overrides_take_precedence_and_are_tracked() -> None:
    c = cfg("smtpd_client_restrictions = permit_mynetworks\nsmtpd_enforce_tls = no\n")
    s = c.with_overrides({"smtpd_enforce_tls": "yes",
                          "smtpd_client_restrictions": "permit_sasl_authenticated,reject"},
                         source="/etc/postfix/master.cf, line 12")
    assert s.get_bool("smtpd_enforce_tls") is True
    assert s.get_list("smtpd_client_restrictions") == ["permit_sasl_authenticated", "reject"]
    assert c.get_bool("smtpd_enforce_tls") is False  # the original is unchanged
    assert "smtpd_enforce_tls" in s.overrides and "smtpd_enforce_tls" not in c.overrides
    bad = c.with_overrides({"smtpd_tls_wrappermode": "oui"}, source="master.cf, line 7")
    with pytest.raises(ConfigError) as info:
        bad.validate()
    assert str(info.value) == ('master.cf, line 7: parameter smtpd_tls_wrappermode: '
                               'bad boolean value: "oui" (specify yes or no)')


def test_override_may_refer_to_user_parameter() -> None:
    c = cfg("mua_client_restrictions = permit_sasl_authenticated, reject\n")
    s = c.with_overrides({"smtpd_client_restrictions": "$mua_client_restrictions"})
    assert s.get_list("smtpd_client_restrictions") == ["permit_sasl_authenticated", "reject"]
    assert s.validate() == []


def test_non_default() -> None:
    c = cfg("a = 1\nmyhostname = h.example\n").with_overrides({"b": "2"})
    assert c.non_default() == {"a": "1", "myhostname": "h.example", "b": "2"}


def test_validate_unused_and_referenced() -> None:
    c = cfg("foo = bar\nused = x\nmyorigin = $used\nrelayhost = $nowhere\n")
    warnings = c.validate()
    assert f"{FILE}, line 1: unused parameter: foo=bar" in warnings
    assert not any("used=x" in w for w in warnings)
    assert f"{FILE}, line 4: parameter relayhost: reference to undefined parameter: $nowhere" in (
        warnings)
    assert len(warnings) == 2


def test_recursive_expansion_in_config() -> None:
    c = cfg("myorigin = $mydomain\nmydomain = $myorigin\n")
    with pytest.raises(ConfigError, match="recursive expansion") as info:
        c.get("myorigin")
    assert info.value.param == "myorigin"
    assert info.value.file == FILE


def test_every_default_has_a_valid_typed_value() -> None:
    c = cfg("")
    for name, param in PARAMS.items():
        c.check_value(name)
        if param.type is ParamType.LIST:
            assert isinstance(c.get_list(name), list)
    assert c.validate() == []


def test_from_dir(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text("foo = x\nbar = y\n")
    (tmp_path / "master.cf").write_text(
        "smtp inet n - n - - smtpd -o smtpd_client_restrictions=$foo\n")
    c = Config.from_dir(str(tmp_path))
    assert c.get("config_directory") == str(tmp_path)
    assert c.main.values["foo"].file == str(tmp_path / "main.cf")
    assert c.validate() == [f"{tmp_path / 'main.cf'}, line 2: unused parameter: bar=y"]


def test_from_dir_missing_main_cf(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        Config.from_dir(str(tmp_path))


_PYTHON_TYPE: dict[ParamType, type] = {
    ParamType.STR: str, ParamType.BOOL: bool, ParamType.INT: int, ParamType.SIZE: int,
    ParamType.TIME: float, ParamType.LIST: list,
}
_STRING_GETTER = {
    ParamType.STR: Config.get, ParamType.BOOL: Config.get_bool, ParamType.INT: Config.get_int,
    ParamType.SIZE: Config.get_size, ParamType.TIME: Config.get_time,
    ParamType.LIST: Config.get_list,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_typed_access_returns_the_declared_type(name: str) -> None:
    c = cfg("")
    param = PARAMS[name]
    value = c[param]
    assert type(value) is _PYTHON_TYPE[param.type]
    if isinstance(value, list):
        assert all(type(item) is str for item in value)
    assert value == _STRING_GETTER[param.type](c, name)


def test_typed_access_values() -> None:
    c = cfg("stress = yes\nmaximal_queue_lifetime = 2\nbiff = No\n")
    t_seconds = assert_type(c[params.SMTPD_TIMEOUT], float)
    assert t_seconds == 10.0
    assert assert_type(c[params.QUEUE_RUN_DELAY], float) == 300.0
    assert c[params.MAXIMAL_QUEUE_LIFETIME] == 2 * 86400.0
    assert assert_type(c[params.SMTPD_HARD_ERROR_LIMIT], int) == 1
    assert assert_type(c[params.MESSAGE_SIZE_LIMIT], int) == 10240000
    assert assert_type(c[params.BIFF], bool) is False
    assert assert_type(c[params.MYDESTINATION], list[str]) == [
        "mx.example.net", "localhost.example.net", "localhost"]
    assert assert_type(c[params.SMTPD_BANNER], str) == "mx.example.net ESMTP Postfix"
    assert c[params.MAILBOX_COMMAND] == ""
    over = c.with_overrides({"smtpd_timeout": "1m", "smtpd_client_restrictions": "$x, reject",
                             "x": "permit_mynetworks", "myorigin": "$myorigin"})
    assert over[params.SMTPD_TIMEOUT] == 60.0
    assert over[params.SMTPD_CLIENT_RESTRICTIONS] == ["permit_mynetworks", "reject"]
    with pytest.raises(ConfigError, match="recursive expansion"):
        over[params.MYORIGIN]


def test_typed_access_keeps_delivery_time_parameters_unexpanded() -> None:
    c = cfg('mailbox_command = procmail -a "$EXTENSION"\n')
    assert c[params.MAILBOX_COMMAND] == 'procmail -a "$EXTENSION"'
    assert c[params.FORWARD_PATH][0] == "$home/.forward${recipient_delimiter}${extension}"


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [(params.SMTPD_HELO_REQUIRED, "maybe", 'bad boolean value: "maybe" (specify yes or no)'),
     (params.SMTPD_RECIPIENT_LIMIT, "ten", 'bad numerical value: "ten"'),
     (params.MESSAGE_SIZE_LIMIT, "10k", 'bad size value: "10k" (specify a number of bytes)'),
     (params.QUEUE_RUN_DELAY, "1.5h",
      'bad time value: "1.5h" (specify a number with unit s, m, h, d or w)')],
)
def test_typed_access_bad_value_names_file_line_and_parameter(
    param: Param[object], value: str, message: str
) -> None:
    c = cfg(f"# comment\n\n{param.name} = {value}\n")
    with pytest.raises(ConfigError) as info:
        c[param]
    err = info.value
    assert (err.file, err.line, err.param) == (FILE, 3, param.name)
    assert str(err) == f"{FILE}, line 3: parameter {param.name}: {message}"
    over = cfg("").with_overrides({param.name: value}, source="/etc/postfix/master.cf, line 9")
    with pytest.raises(ConfigError) as info:
        over[param]
    assert str(info.value) == (
        f"/etc/postfix/master.cf, line 9: parameter {param.name}: {message}")
