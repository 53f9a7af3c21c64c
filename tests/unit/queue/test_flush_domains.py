"""fast_flush_domains's tables (queue.flush.flush_configured), as Postfix 3.7 matches them."""

from __future__ import annotations

import pytest

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.queue.flush import FlushTableError, flush_configured
from postier.tables import Table, TableError
from postier.tables.inline import InlineTable


class Broken:
    """A table whose every lookup fails (a database that went away)."""

    spec = "pgsql:/etc/postfix/flush.cf"
    pattern = False
    blocking = False

    def lookup(self, key: str) -> str | None:
        raise TableError(f"{self.spec}: connection refused")


def cfg(text: str) -> Config:
    return Config(parse(text, "main.cf"), hostname="mx.example.com")


def opener(spec: str) -> Table:
    if spec.startswith("inline:"):
        return InlineTable(spec.removeprefix("inline:"))
    return Broken()


@pytest.mark.parametrize("main_cf, site, expected", [
    ("fast_flush_domains = inline:{remote.example=x}\n", "remote.example", True),
    ("fast_flush_domains = inline:{remote.example=x}\n", "a.remote.example", True),
    ("fast_flush_domains = inline:{remote.example=x}\n", "other.example", False),
    ("fast_flush_domains = inline:{remote.example=x}\nparent_domain_matches_subdomains =\n",
     "a.remote.example", False),
    ("fast_flush_domains = inline:{.remote.example=x}\nparent_domain_matches_subdomains =\n",
     "a.remote.example", True),
    ("fast_flush_domains = example.net, inline:{remote.example=x}\n", "example.net", True),
])
def test_tables_are_looked_up(main_cf: str, site: str, expected: bool) -> None:
    assert flush_configured(cfg(main_cf), site, opener) is expected


def test_a_failing_table_is_postfixs_table_lookup_problem() -> None:
    with pytest.raises(FlushTableError) as exc:
        flush_configured(cfg("fast_flush_domains = pgsql:/etc/postfix/flush.cf\n"),
                         "remote.example", opener)
    assert str(exc.value) == ("fast_flush_domains: pgsql:/etc/postfix/flush.cf: "
                              "table lookup problem")
    # a domain listed before the table answers first, as Postfix's list is read in order
    assert flush_configured(cfg("fast_flush_domains = remote.example, pgsql:/x.cf\n"),
                            "remote.example", opener)
