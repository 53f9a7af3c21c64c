"""tables.check: every table a child opens at start is checked first, at main.cf's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.tables.check import check_tables


def config(tmp_path: Path, main_cf: str) -> Config:
    (tmp_path / "main.cf").write_text(main_cf)
    return Config.from_dir(str(tmp_path))


@pytest.mark.parametrize(("param", "value", "smtpd"), [
    ("virtual_alias_domains", "virt.test, hash:{missing}", False),
    ("relay_domains", "hash:{missing}", False),
    ("mydestination", "localhost, btree:{missing}", False),
    ("smtpd_client_event_limit_exceptions", "127.0.0.1, !cidr:{missing}", True),
    ("local_header_rewrite_clients", "permit_mynetworks, check_address_map hash:{missing}",
     True),
])
def test_a_missing_table_names_file_line_and_parameter(
        tmp_path: Path, param: str, value: str, smtpd: bool) -> None:
    missing = tmp_path / "nonexist"
    text = "alias_maps =\nmyhostname = mail.example.com\n" \
        f"{param} = {value.format(missing=missing)}\n"
    cfg = config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        check_tables(cfg, smtpd=smtpd)
    err = caught.value
    assert (err.file, err.line, err.param) == (str(tmp_path / "main.cf"), 3, param)
    assert str(missing) in str(err)
    assert str(err).startswith(f"{tmp_path / 'main.cf'}, line 3: parameter {param}: ")


def test_names_and_present_tables_pass(tmp_path: Path) -> None:
    table = tmp_path / "domains"
    table.write_text("virt.test ok\n")
    cfg = config(tmp_path, f"alias_maps =\nvirtual_alias_domains = a.test, texthash:{table}\n"
                 "relay_domains = b.test, [10.0.0.1]\nmydestination = localhost\n"
                 "smtpd_client_event_limit_exceptions = 127.0.0.0/8, [::1]/128, host.test\n")
    check_tables(cfg)  # no error


def test_a_service_override_is_reported_at_its_master_cf_line(tmp_path: Path) -> None:
    cfg = config(tmp_path, "alias_maps =\n").with_overrides(
        {"relay_domains": f"hash:{tmp_path}/gone"}, source=f"{tmp_path}/master.cf, line 7")
    with pytest.raises(ConfigError) as caught:
        check_tables(cfg)
    assert str(caught.value).startswith(f"{tmp_path}/master.cf, line 7: ")
