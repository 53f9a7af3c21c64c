"""main.cf syntax (postconf(5) DESCRIPTION) and in-place editing (postconf -e / -X)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.config import maincf
from postier.config.errors import ConfigError

DATA = Path(__file__).resolve().parents[2] / "data" / "tutorial"


def test_name_value_whitespace_and_comments() -> None:
    text = "# comment\n\n   \n  # indented comment\nmyhostname   =   host.example.com   \nempty =\n"
    cf = maincf.parse(text, "/etc/postfix/main.cf")
    assert cf.values["myhostname"] == maincf.Setting("host.example.com", "/etc/postfix/main.cf", 5)
    assert cf.values["empty"].value == ""
    assert set(cf.values) == {"myhostname", "empty"}


def test_value_may_contain_equals_and_hash() -> None:
    cf = maincf.parse("smtpd_banner = a=b # not a comment\n", "m")
    assert cf.values["smtpd_banner"].value == "a=b # not a comment"


def test_continuation_lines_join_and_keep_first_line_number() -> None:
    text = ("a = 1\n"
            "smtpd_recipient_restrictions =\n"
            "    permit_mynetworks,\n"
            "# a comment inside does not end the logical line\n"
            "\treject_unauth_destination\n"
            "b = 2\n")
    cf = maincf.parse(text, "m")
    setting = cf.values["smtpd_recipient_restrictions"]
    assert setting.value == "permit_mynetworks, reject_unauth_destination"
    assert setting.line == 2
    assert cf.values["b"].line == 6


def test_later_definition_overrides_earlier() -> None:
    cf = maincf.parse("x = 1\ny = 2\nx = 3\n", "m")
    assert cf.values["x"].value == "3"
    assert cf.values["x"].line == 3


def test_line_without_equals_is_an_error_with_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        maincf.parse("a = 1\n\nmyhostname host\n", "/etc/postfix/main.cf")
    assert info.value.file == "/etc/postfix/main.cf"
    assert info.value.line == 3
    assert str(info.value).startswith("/etc/postfix/main.cf, line 3: ")
    assert "myhostname host" in str(info.value)


def test_bad_name_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        maincf.parse("my-host = x\n", "m")
    assert info.value.line == 1
    assert "my-host" in info.value.message


def test_continuation_without_parameter_line_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        maincf.parse("# only a comment\n   orphan = 1\n", "m")
    assert (info.value.file, info.value.line) == ("m", 2)


def test_load_missing_file_raises() -> None:
    with pytest.raises(ConfigError, match="No such file"):
        maincf.load("/nonexistent/postier/main.cf")


def test_tutorial_main_cf_parses() -> None:
    cf = maincf.load(str(DATA / "main.cf"))
    assert cf.values["mailbox_command"].value == 'procmail -a "$EXTENSION"'
    assert cf.values["mynetworks"].value == "127.0.0.0/8 [::1]/128"
    assert "relayhost" not in cf.values  # commented out in the tutorial
    assert cf.values["smtpd_sasl_path"].value == "private/auth"


# --- editing --------------------------------------------------------------------

ORIGINAL = """\
# header comment
myhostname = a.example.com
mydestination = $myhostname,
    localhost
# trailing comment
relayhost = old
relayhost = older
"""


def test_edit_replaces_in_place_and_keeps_comments() -> None:
    new = maincf.edit_text(ORIGINAL, {"mydestination": "example.com", "relayhost": "[smtp.x]"})
    assert new == ("# header comment\n"
                   "myhostname = a.example.com\n"
                   "mydestination = example.com\n"
                   "# trailing comment\n"
                   "relayhost = [smtp.x]\n")


def test_edit_appends_new_parameter() -> None:
    new = maincf.edit_text("a = 1", {"b": "2"})
    assert new == "a = 1\nb = 2\n"
    assert maincf.parse(new, "m").values["b"].value == "2"


def test_edit_remove() -> None:
    new = maincf.edit_text(ORIGINAL, {"mydestination": None, "relayhost": None})
    cf = maincf.parse(new, "m")
    assert set(cf.values) == {"myhostname"}
    assert "# trailing comment\n" in new and "localhost" not in new


def test_edit_rejects_bad_name() -> None:
    with pytest.raises(ConfigError):
        maincf.edit_text("", {"bad name": "x"})


def test_edit_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "main.cf"
    path.write_text(ORIGINAL)
    path.chmod(0o640)
    maincf.edit_file(str(path), {"myhostname": "b.example.com"})
    assert maincf.load(str(path)).values["myhostname"].value == "b.example.com"
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["main.cf"]


_names = st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=30,
).map(str.strip)


@given(st.dictionaries(_names, _values, max_size=6), _names, st.one_of(st.none(), _values))
def test_edit_then_parse_round_trip(
    settings: dict[str, str], name: str, value: str | None
) -> None:
    text = "# generated\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    edited = maincf.parse(maincf.edit_text(text, {name: value}), "m")
    expected = dict(settings)
    if value is None:
        expected.pop(name, None)
    else:
        expected[name] = value
    assert {k: s.value for k, s in edited.values.items()} == expected
