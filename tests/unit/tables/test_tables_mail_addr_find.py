"""tables.search.mail_addr_find: canonical(5)/virtual(5) search order over real tables,
and the extension that propagate_unmatched_extensions appends."""

from __future__ import annotations

from pathlib import Path

from postier.rewrite.addrmap import Found
from postier.tables import Maps, SearchSettings, Tables
from postier.tables.search import mail_addr_find

PLUS = SearchSettings(recipient_delimiter="+")


def maps(spec: str) -> Maps:
    return Tables().maps("virtual_alias_maps", [spec])


def test_order_full_then_base_then_user_when_local_then_at_domain() -> None:
    m = maps("inline:{ a+x@d.example=full, a@d.example=base, b=user, b+y=userext, "
             "@d.example=catch }")
    assert mail_addr_find(m, "a+x@d.example", PLUS) == Found("full")
    assert mail_addr_find(m, "a+z@D.Example", PLUS) == Found("base", "+z")
    assert mail_addr_find(m, "A+Z@d.example", PLUS) == Found("base", "+Z")
    # the local part alone only for a local domain
    assert mail_addr_find(m, "b@d.example", PLUS) == Found("catch")
    assert mail_addr_find(m, "b@d.example", PLUS, local=True) == Found("user")
    assert mail_addr_find(m, "b+y@d.example", PLUS, local=True) == Found("userext")
    assert mail_addr_find(m, "b+q@d.example", PLUS, local=True) == Found("user", "+q")
    # "@domain" propagates nothing
    assert mail_addr_find(m, "c+q@d.example", PLUS) == Found("catch")
    assert mail_addr_find(m, "c@other.example", PLUS) is None
    # without recipient_delimiter nothing is stripped
    assert mail_addr_find(m, "a+z@d.example", SearchSettings()) == Found("catch")


def test_regexp_sees_the_whole_address_only(tmp_path: Path) -> None:
    path = tmp_path / "virtual.re"
    path.write_text("/^(.*)\\+(.*)@r\\.example$/  $1-$2@elsewhere.example\n")
    m = maps(f"regexp:{path}")
    assert mail_addr_find(m, "u+v@r.example", PLUS) == Found("u-v@elsewhere.example")
    base = tmp_path / "base.re"
    base.write_text("/^base@r\\.example$/  found\n/^@r\\.example$/  catch\n")
    m = maps(f"regexp:{base}")
    assert mail_addr_find(m, "base@r.example", PLUS) == Found("found")
    # neither the stripped form nor "@domain" is asked of a pattern table
    assert mail_addr_find(m, "base+v@r.example", PLUS) is None
