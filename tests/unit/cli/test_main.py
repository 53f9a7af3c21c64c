"""The postier command line: --help everywhere, usage errors exit 2 and start nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

import postier
from postier.cli import check, main, postconf, postlog
from postier.config.capabilities import LOCK_METHODS, SMTPD_SASL_TYPES
from postier.tables.registry import TYPES


def test_every_verb_and_tool_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for verb in main.VERB_NAMES:
        with pytest.raises(SystemExit) as exc:
            main.main([verb, "--help"])
        assert exc.value.code == 0
        assert f"usage: postier {verb}" in capsys.readouterr().out
    for tool in main.TOOLS:
        assert main.main([tool, "--help"]) == 0
        assert "usage" in capsys.readouterr().out


def test_top_help_lists_every_command_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in (*main.VERB_NAMES, *main.TOOLS, "postfix"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"postier {postier.__version__}"


@pytest.mark.parametrize("argv", [
    ["start", "--bogus"], ["start", "extra"], ["postfix", "stop", "-x"], ["frobnicate"], [],
    ["--bogus", "start"], ["postfix"], ["stop", "slow"], ["stop", "fast", "now"],
    ["postfix", "stop", "faster"],
])
def test_usage_errors_exit_2_and_run_nothing(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[str] = []
    monkeypatch.setattr(main, "_verb_function", lambda verb: lambda d: called.append(d) or 0)
    try:
        status = main.main(argv)
    except SystemExit as exc:
        status = exc.code  # type: ignore[assignment]
    assert status == 2
    assert called == []
    assert "usage:" in capsys.readouterr().err


def test_postfix_alias_routes_to_the_same_verb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[tuple[str, str]] = []

    def fake(verb: main.Verb) -> object:
        return lambda config_dir: called.append((verb.function, config_dir)) or 0

    monkeypatch.setattr(main, "_verb_function", fake)
    assert main.main(["-c", str(tmp_path), "postfix", "reload"]) == 0
    assert main.main(["-c", str(tmp_path), "status"]) == 0
    assert called == [("reload", str(tmp_path)), ("status", str(tmp_path))]


def test_stop_fast_is_abort_under_both_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    called: list[str] = []

    def fake(verb: main.Verb) -> object:
        return lambda config_dir: called.append(verb.function) or 0

    monkeypatch.setattr(main, "_verb_function", fake)
    for argv in (["stop", "fast"], ["postfix", "stop", "fast"], ["stop"], ["abort"]):
        assert main.main(["-c", str(tmp_path), *argv]) == 0
    assert called == ["abort", "abort", "stop", "abort"]


def test_postconf_lists(capsys: pytest.CaptureFixture[str]) -> None:
    assert postconf.main(["-m"]) == 0
    assert capsys.readouterr().out.split() == sorted(TYPES)
    assert postconf.main(["-l"]) == 0
    assert capsys.readouterr().out.split() == list(LOCK_METHODS)
    assert postconf.main(["-a"]) == 0
    assert capsys.readouterr().out.split() == list(SMTPD_SASL_TYPES)
    assert postconf.main(["-T", "nonsense"]) == 1


def test_postconf_n_warns_about_an_overridden_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "main.cf").write_text("mydomain = a.example\nbiff = no\nmydomain = b.example\n")
    assert postconf.main(["-c", str(tmp_path), "-n"]) == 0
    got = capsys.readouterr()
    assert got.out.splitlines() == ["biff = no", "mydomain = b.example"]
    assert (f"postconf: warning: {tmp_path}/main.cf, line 3: overriding earlier entry: "
            "mydomain=a.example") in got.err.splitlines()


def test_postconf_d_computes_mynetworks_from_the_style(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postconf, "local_addresses", lambda: ["127.0.0.1", "::1", "192.0.2.7"])
    assert postconf.main(["-c", str(tmp_path), "-d", "mynetworks", "mydomain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mynetworks = 127.0.0.1/32 [::1]/128 192.0.2.7/32"
    assert lines[1].startswith("mydomain = ") and lines[1] != "mydomain ="


def test_postlog_writes_a_line_under_its_tag(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    (tmp_path / "main.cf").write_text(
        f"maillog_file = {log}\nmaillog_file_prefixes = {tmp_path}\n")
    assert postlog.main(["-c", str(tmp_path), "-p", "warn", "-t", "mytag", "disk", "full"]) == 0
    assert postlog.main(["-c", str(tmp_path), "hello"]) == 0
    lines = log.read_text().splitlines()
    assert lines[0].endswith("]: warning: disk full") and " mytag[" in lines[0]
    assert " postfix/postlog[" in lines[1] and lines[1].endswith("]: hello")
    assert log.stat().st_mode & 0o777 == 0o600  # maillog_file_permissions' default
    assert postlog.main(["-c", str(tmp_path), "-p", "loud", "x"]) == 1


TUTORIAL = Path(__file__).parents[2] / "data" / "tutorial"


def test_check_reports_nothing_on_the_tutorial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # the tutorial as written, on a machine whose aliases postier compiled and whose
    # log goes to a file (neither is part of the tutorial's configuration)
    (tmp_path / "aliases").write_text("postmaster: root\n")
    assert main.main(["postalias", str(tmp_path / "aliases")]) == 0
    text = (TUTORIAL / "main.cf").read_text()
    (tmp_path / "main.cf").write_text(
        text + f"alias_maps = hash:{tmp_path}/aliases\nmaillog_file = /dev/stdout\n")
    (tmp_path / "master.cf").write_text((TUTORIAL / "master.cf").read_text())
    unsupported, refused, _ = check.report(str(tmp_path))
    assert unsupported == []
    # the tutorial names no certificate yet (a later step): refused, as by Postfix
    assert [r.split(": ")[0] for r in refused] == [
        f"{tmp_path}/master.cf, line 2", f"{tmp_path}/master.cf, line 5"]


def test_check_reports_each_unsupported_setting_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text(
        "maillog_file = /dev/stdout\nalias_maps =\n"
        "multi_instance_enable = yes\n"
        "alias_maps = mysql:/etc/postfix/mysql.cf\n"
        "smtpd_client_restrictions = check_client_access ldap:/etc/postfix/ldap.cf\n")
    (tmp_path / "master.cf").write_text(
        "smtp inet n - n - - smtpd -o strict_rfc821_envelopes=yes\n")
    unsupported, _, warnings = check.report(str(tmp_path))
    main_cf, master_cf = tmp_path / "main.cf", tmp_path / "master.cf"
    assert [u.split(": ")[0] for u in unsupported] == [
        f"{main_cf}, line 3", f"{main_cf}, line 4", f"{main_cf}, line 5",
        f"{master_cf}, line 1",
    ], unsupported
    assert "multi_instance_enable" in unsupported[0]
    assert '"mysql"' in unsupported[1] and '"ldap"' in unsupported[2]
    assert "strict_rfc821_envelopes" in unsupported[3]
    assert f"{main_cf}, line 4: overriding earlier entry: alias_maps=" in warnings
    assert check.check(str(tmp_path)) == 1


def test_check_reports_what_a_child_would_refuse_at_start(tmp_path: Path) -> None:
    """The settings qmgr and smtpd read at start, one line each at main.cf's line (a
    word parameter is re-checked at its default, so no second, empty-value line)."""
    (tmp_path / "main.cf").write_text(
        "maillog_file = /dev/stdout\nalias_maps =\n"
        f"relay_domains = hash:{tmp_path}/gone\n"
        "smtp_tls_security_level = bogus\n"
        "smtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = bogus\n")
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    unsupported, refused, _ = check.report(str(tmp_path))
    main_cf = tmp_path / "main.cf"
    assert [u.split(": ")[0:2] for u in unsupported] == [
        [f"{main_cf}, line 3", "parameter relay_domains"],
        [f"{main_cf}, line 6", "parameter smtpd_sasl_type"],
    ], unsupported
    assert refused == [f"{main_cf}, line 4: parameter smtp_tls_security_level: unsupported "
                       "TLS security level 'bogus' (none, may, encrypt, verify, secure)"]


@pytest.mark.parametrize(("setting", "message"), [
    ("mynetworks = 127.0.0.1/33", 'parameter mynetworks: bad mask length in "127.0.0.1/33"'),
    ("transport_maps = frob:/x",
     'parameter transport_maps: frob:/x: unsupported dictionary type: "frob"'),
    ("virtual_alias_maps = sqlite:{dir}/gone.cf",
     "parameter virtual_alias_maps: sqlite:{dir}/gone.cf: open {dir}/gone.cf: No such file "
     "or directory"),
])
def test_check_says_each_error_once_in_one_form(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, message: str) -> None:
    # FILE, line N: parameter NAME: TEXT — the name once, the line once (not also "fatal:")
    (tmp_path / "main.cf").write_text(
        "maillog_file = /dev/stdout\nalias_maps =\n" + setting.format(dir=tmp_path) + "\n")
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    assert check.check(str(tmp_path)) == 1
    out, err = capsys.readouterr()
    assert out == f"{tmp_path}/main.cf, line 3: {message.format(dir=tmp_path)}\n"
    assert "fatal" not in err
