"""Where log lines go: maillog_file with its mode, the fallback file, for_program."""

from __future__ import annotations

from pathlib import Path

from postier import log
from postier.config.maincf import parse
from postier.config.settings import Config


def _cfg(tmp_path: Path, text: str) -> Config:
    return Config(parse(text, str(tmp_path / "main.cf")))


def test_no_syslog_and_no_maillog_file_falls_back_and_says_so(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, f"queue_directory = {tmp_path}\n")
    missing = str(tmp_path / "no-syslog-here")
    errors, notice = log.check(cfg, syslog_socket=missing)
    assert errors == []
    assert notice is not None and str(tmp_path / "maillog") in notice
    assert log.log_target(cfg, syslog_socket=missing) == str(tmp_path / "maillog")


def test_maillog_file_outside_the_prefixes_is_an_error(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, f"maillog_file = {tmp_path}/x.log\nmaillog_file_permissions = 0777\n")
    errors, notice = log.check(cfg)
    assert notice is None
    assert len(errors) == 2
    assert "maillog_file_prefixes" in errors[0] and "0600, 0640, 0644" in errors[1]


def test_file_created_with_the_mode_and_cleanup_shares_it(tmp_path: Path) -> None:
    path = tmp_path / "maillog"
    cfg = _cfg(tmp_path, f"maillog_file = {path}\nmaillog_file_permissions = 0640\n")
    smtpd = log.for_config("smtpd", cfg)
    cleanup = smtpd.for_program("cleanup")
    smtpd.info("ABC: client=x[192.0.2.1]")
    cleanup.info("ABC: message-id=<m@x>")
    smtpd.close()
    lines = path.read_text().splitlines()
    assert " postfix/smtpd[" in lines[0] and " postfix/cleanup[" in lines[1]
    assert lines[1].endswith("]: ABC: message-id=<m@x>")
    assert path.stat().st_mode & 0o777 == 0o640


def test_file_lines_carry_myhostnames_first_label(tmp_path: Path) -> None:
    """Postfix 3.7's maillog_file lines name the host by myhostname's first label
    (``mx`` for mx.example.com), not by the machine's name; so do postier's, for
    every program of the process (siblings too)."""
    path = tmp_path / "maillog"
    cfg = _cfg(tmp_path, f"maillog_file = {path}\nmyhostname = mx.example.com\n")
    smtpd = log.for_config("smtpd", cfg)
    smtpd.info("one")
    smtpd.sibling("bounce", syslog_name="postfix", facility="mail").info("two")
    smtpd.close()
    lines = path.read_text().splitlines()
    assert [line.split()[3] for line in lines] == ["mx", "mx"], lines
