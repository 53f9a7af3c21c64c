"""recipient_delimiter splitting, the mailbox_command environment, $name expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.config.params import IMPORT_ENVIRONMENT
from postier.local.localpart import (
    ExpansionError,
    censor,
    client_attributes,
    command_env,
    expand_command,
    imported_environment,
    local_expand,
)
from postier.rewrite.extension import find_extension, split_extension


@pytest.mark.parametrize(
    ("localpart", "delims", "expected"),
    [
        ("user+ext", "+", ("user", "ext")),
        ("user+ext+more", "+", ("user", "ext+more")),
        ("user", "+", ("user", None)),
        ("user+ext", "", ("user+ext", None)),
        ("user-ext", "+-", ("user", "ext")),
        ("user+a-b", "+-", ("user", "a-b")),  # the first delimiter found wins
        ("user-a+b", "+-", ("user", "a+b")),
        ("+ext", "+", ("+ext", None)),  # would leave an empty name
        ("user+", "+", ("user", "")),
        ("owner-list", "-", ("owner-list", None)),
        ("Owner-list", "+-", ("Owner-list", None)),
        ("list-request", "-", ("list-request", None)),
        ("owner-list+x", "+", ("owner-list", "x")),  # "-" not a delimiter: ordinary split
        ("postmaster+x", "+", ("postmaster", "x")),  # only the bare name is exempt
        ("PostMaster", "+", ("PostMaster", None)),
        ("mailer-daemon", "-", ("mailer-daemon", None)),
        ("double-bounce", "-", ("double-bounce", None)),
    ],
)
def test_split_extension(localpart: str, delims: str, expected: tuple[str, str | None]) -> None:
    assert split_extension(localpart, delims) == expected


def test_owner_request_special_off_splits() -> None:
    assert find_extension("owner-list", "-", owner_request_special=False).extension == "list"


def test_find_extension_reports_the_delimiter_found() -> None:
    assert find_extension("joe-x", "+-").delimiter == "-"
    assert find_extension("joe", "+-").delimiter == ""


@given(st.text(alphabet="abc+-", min_size=1, max_size=12))
def test_split_is_lossless(localpart: str) -> None:
    found = find_extension(localpart, "+-", owner_request_special=False)
    if found.extension is None:
        assert found.base == localpart
    else:
        assert found.base + found.delimiter + found.extension == localpart
        assert found.base and not any(c in "+-" for c in found.base)


def test_censor_replaces_shell_specials() -> None:
    assert censor("a;b`c$(d)|e f'g\"h") == "a_b_c__d__e_f_g_h"
    assert censor("joe+x@example.com") == "joe+x@example.com"


def test_command_env_contents() -> None:
    env = command_env(
        user="joe",
        home="/home/joe",
        shell="/bin/bash",
        recipient="joe+list@example.com",
        sender="ann@example.org",
        orig_recipient="Joe@example.com",
        extension="list",
        attrs={"client_address": "127.0.0.1", "client_helo": "x;y", "sasl_username": ""},
        export_environment=("TZ", "LANG", "FOO=bar", "MISSING"),
        parent_env={"TZ": "Europe/Paris", "LANG": "C.UTF-8", "SECRET": "no"},
    )
    assert env == {
        "HOME": "/home/joe",
        "LOGNAME": "joe",
        "USER": "joe",
        "SENDER": "ann@example.org",
        "RECIPIENT": "joe+list@example.com",
        "LOCAL": "joe+list",
        "SHELL": "/bin/bash",
        "DOMAIN": "example.com",
        "EXTENSION": "list",
        "ORIGINAL_RECIPIENT": "Joe@example.com",
        "CLIENT_ADDRESS": "127.0.0.1",
        "CLIENT_HELO": "x_y",
        "PATH": "/usr/bin:/bin",
        "TZ": "Europe/Paris",
        "LANG": "C.UTF-8",
        "FOO": "bar",
    }


def test_command_env_censors_hostile_extension() -> None:
    env = command_env(
        user="joe",
        home=None,
        shell=None,
        recipient="joe+`rm -rf ~`@example.com",
        sender="",
        extension="`rm -rf ~`",
        parent_env={},
    )
    assert env["EXTENSION"] == "_rm_-rf___"
    assert "HOME" not in env and "SHELL" not in env
    assert env["SENDER"] == ""


def test_mailbox_command_is_not_expanded() -> None:
    cmd = '/usr/bin/procmail -a "$EXTENSION"'
    assert expand_command(cmd, {"EXTENSION": "x"}) == cmd


def test_local_expand() -> None:
    attrs = {"home": "/home/joe", "extension": "list", "recipient_delimiter": "+", "user": None}
    assert (
        local_expand("$home/.forward${recipient_delimiter}${extension}", attrs)
        == "/home/joe/.forward+list"
    )
    assert local_expand("${extension?x-$extension}${user:nouser}", attrs) == "x-listnouser"
    assert local_expand("$(home)/$$", attrs) == "/home/joe/$"
    assert local_expand("/d;/$extension", {"extension": "a;b"}, "ab") == "/d;/a_b"
    with pytest.raises(ExpansionError):
        local_expand("$", attrs)


def test_client_attributes_from_the_queue_file() -> None:
    """smtpd's queue-file attributes become command_env's CLIENT_*/SASL_* sources."""
    qattrs = {"client_name": "mx.example.org", "client_address": "192.0.2.7",
              "helo_name": "helo.example.org", "protocol": "ESMTPA", "service": "smtpd",
              "sasl_method": "PLAIN", "sasl_username": "ann", "client_port": "4000"}
    env = command_env(user="bob", home=None, shell=None, recipient="bob@example.com",
                      sender="ann@example.org", attrs=client_attributes(qattrs))
    assert {k: v for k, v in env.items() if k.startswith(("CLIENT_", "SASL_"))} == {
        "CLIENT_HOSTNAME": "mx.example.org", "CLIENT_ADDRESS": "192.0.2.7",
        "CLIENT_HELO": "helo.example.org", "CLIENT_PROTOCOL": "ESMTPA",
        "SASL_METHOD": "PLAIN", "SASL_USERNAME": "ann"}


def test_client_attributes_prefer_the_forwarded_client() -> None:
    qattrs = {"client_name": "localhost", "client_address": "127.0.0.1", "helo_name": "me",
              "protocol": "ESMTP", "log_client_name": "far.example.net",
              "log_client_address": "198.51.100.9", "log_helo_name": "far",
              "log_protocol_name": "SMTP"}
    assert client_attributes(qattrs) == {
        "client_hostname": "far.example.net", "client_address": "198.51.100.9",
        "client_helo": "far", "client_protocol": "SMTP"}
    assert client_attributes({"origin": "local"}) == {}


def test_imported_environment_is_import_environment() -> None:
    """Postfix's default import_environment: names copied when set, LANG=C forced,
    MAIL_CONFIG the configuration directory; nothing else leaks (HOME, PATH...)."""
    parent = {"TZ": "Europe/Paris", "HOME": "/root", "PATH": "/sbin", "LANG": "fr_FR.UTF-8",
              "MAIL_CONFIG": "/elsewhere", "DISPLAY": ":0"}
    env = imported_environment(list(IMPORT_ENVIRONMENT.default_value()), parent, "/etc/pf")
    assert env == {"TZ": "Europe/Paris", "LANG": "C", "MAIL_CONFIG": "/etc/pf",
                   "DISPLAY": ":0"}
    exported = command_env(user="bob", home=None, shell=None, recipient="bob@example.com",
                           sender="", parent_env=env)
    assert (exported["TZ"], exported["LANG"], exported["MAIL_CONFIG"]) == (
        "Europe/Paris", "C", "/etc/pf")
    assert "DISPLAY" not in exported and exported["PATH"] == "/usr/bin:/bin"
