"""newaliases (sendmail -bi): which databases it builds, from which main.cf, usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.cli import main as cli_main
from postier.cli import newaliases
from postier.tables import open_table
from postier.tables.registry import OpenOptions


def setup(tmp_path: Path, setting: str | None) -> tuple[Path, Path]:
    """A configuration directory and an aliases source beside it; ``setting`` is the
    alias_database line's value ({aliases} replaced), or None to leave the default."""
    etc = tmp_path / "etc"
    etc.mkdir()
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\ntintin: milou, haddock\n")
    line = "" if setting is None else f"alias_database = {setting.format(aliases=aliases)}\n"
    (etc / "main.cf").write_text(line)
    return etc, aliases


def lookup(spec: str, key: str) -> str | None:
    return open_table(spec, OpenOptions(aliases=True)).lookup(key)


def test_builds_every_database_of_alias_database(tmp_path: Path) -> None:
    etc, aliases = setup(tmp_path, "hash:{aliases}, lmdb:{aliases}")
    assert newaliases.main(["-C", str(etc)]) == 0
    assert lookup(f"hash:{aliases}", "tintin") == "milou, haddock"
    assert lookup(f"lmdb:{aliases}", "postmaster") == "root"


def test_rebuild_sees_a_new_alias(tmp_path: Path) -> None:
    etc, aliases = setup(tmp_path, "hash:{aliases}")
    assert newaliases.main(["-C", str(etc)]) == 0
    assert lookup(f"hash:{aliases}", "dupont") is None
    aliases.write_text(aliases.read_text() + "dupont: dupond\n")
    assert newaliases.main(["-C", str(etc)]) == 0
    assert lookup(f"hash:{aliases}", "dupont") == "dupond"


@pytest.mark.parametrize("how", ["-C dir", "-C main.cf", "-c dir", "MAIL_CONFIG", "postier -c"])
def test_configuration_chosen_like_the_other_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    etc, aliases = setup(tmp_path, "hash:{aliases}")
    monkeypatch.delenv("MAIL_CONFIG", raising=False)
    if how == "-C dir":
        status = newaliases.main(["-C", str(etc)])
    elif how == "-C main.cf":
        status = newaliases.main(["-C", str(etc / "main.cf")])
    elif how == "-c dir":
        status = newaliases.main(["-c", str(etc)])
    elif how == "MAIL_CONFIG":
        monkeypatch.setenv("MAIL_CONFIG", str(etc))
        status = newaliases.main([])
    else:
        status = cli_main.main(["-c", str(etc), "newaliases"])
    assert status == 0
    assert lookup(f"hash:{aliases}", "postmaster") == "root"


def test_invoked_through_a_link_named_newaliases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc, aliases = setup(tmp_path, "hash:{aliases}")
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/newaliases", "-C", str(etc)])
    assert cli_main.main() == 0
    assert lookup(f"hash:{aliases}", "tintin") == "milou, haddock"


def test_oA_names_the_database_instead_of_alias_database(tmp_path: Path) -> None:
    etc, _ = setup(tmp_path, "hash:{aliases}")
    other = tmp_path / "other"
    other.write_text("haddock: tintin\n")
    assert newaliases.main(["-C", str(etc), f"-oAhash:{other}", "-oi"]) == 0
    assert lookup(f"hash:{other}", "haddock") == "tintin"
    assert not (tmp_path / "aliases.pdb").exists()
    assert newaliases.main(["-C", str(etc), "-o", f"Almdb:{other}", "-v", "-I"]) == 0
    assert lookup(f"lmdb:{other}", "haddock") == "tintin"


def test_empty_alias_database_builds_nothing(tmp_path: Path) -> None:
    etc, _ = setup(tmp_path, "")
    assert newaliases.main(["-C", str(etc)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aliases", "etc"]


def test_default_is_hash_etc_aliases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc, _ = setup(tmp_path, None)
    ran: list[list[str]] = []
    monkeypatch.setattr(newaliases.postalias, "main", lambda argv: ran.append(argv) or 0)
    assert newaliases.main(["-C", str(etc), "-v"]) == 0
    assert ran == [["-c", str(etc), "-v", "hash:/etc/aliases"]]


def test_build_failure_is_postalias_fatal_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    etc, _ = setup(tmp_path, f"hash:{tmp_path / 'missing'}")
    assert newaliases.main(["-C", str(etc)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"postalias: fatal: open {tmp_path / 'missing'}: ")


def test_missing_main_cf_is_fatal_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert newaliases.main(["-C", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("newaliases: fatal: ")


@pytest.mark.parametrize("argv", [["someone@example.com"], ["-Z"], ["-C"]])
def test_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    etc, _ = setup(tmp_path, "hash:{aliases}")
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["-c", str(etc), "newaliases", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"newaliases: fatal: usage: {newaliases.USAGE}\n" in err
    if argv == ["someone@example.com"]:
        assert f"newaliases: fatal: {newaliases.NO_RECIPIENT}\n" in err
    assert not (tmp_path / "aliases.pdb").exists()


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["newaliases", "--help"]) == 0
    assert f"usage: {newaliases.USAGE}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        newaliases.main(["-h"])
    assert exc.value.code == 0
    assert "-oA" in capsys.readouterr().out
