"""Configuration directory choice and the default files written by ``postier start``."""

from __future__ import annotations

from pathlib import Path

from postier.config import mastercf, paths
from postier.config.maincf import parse
from postier.config.settings import Config


def test_config_dir_precedence() -> None:
    env = {"MAIL_CONFIG": "/srv/env", "HOME": "/home/u"}
    assert paths.config_dir("/srv/arg", env=env, euid=0) == "/srv/arg"
    assert paths.config_dir(None, env=env, euid=0) == "/srv/env"
    assert paths.config_dir(None, env={}, euid=0) == "/etc/postfix"
    assert paths.config_dir(None, env={"HOME": "/home/u"}, euid=1000) == "/home/u/.postier/etc"


def test_root_defaults_parse_and_validate() -> None:
    cfg = Config(parse(paths.default_main_cf(True, "/etc"), "main.cf"), hostname="h.example")
    assert cfg.validate() == []
    assert cfg.get("queue_directory") == "/var/spool/postfix"
    assert cfg.get("mail_spool_directory") == "/var/mail"
    services = mastercf.parse(paths.default_master_cf(True), "master.cf")
    inet = [s for s in services if s.type == "inet"]
    assert [(s.name, s.command, s.chroot) for s in inet] == [("smtp", "smtpd", True)]
    assert {"pickup", "cleanup", "qmgr", "local", "bounce"} <= {s.name for s in services}


def test_user_defaults(tmp_path: Path) -> None:
    text = paths.default_main_cf(False, str(tmp_path), user="alice")
    assert text.startswith("#")
    cfg = Config(parse(text, "main.cf"), hostname="h.example")
    assert cfg.validate() == []
    assert cfg.get("queue_directory") == f"{tmp_path}/spool"
    assert cfg.get("mail_spool_directory") == f"{tmp_path}/mail"
    assert cfg.get("mail_owner") == "alice"
    assert cfg.get_list("inet_interfaces") == ["loopback-only"]
    assert cfg.get_list("mydestination") == ["h.example", "localhost.example", "localhost"]
    master = paths.default_master_cf(False)
    assert master.startswith("#")
    inet = [s for s in mastercf.parse(master, "m") if s.type == "inet"]
    assert [(mastercf.inet_endpoint(s.name), s.chroot) for s in inet] == [((None, 2525), False)]
