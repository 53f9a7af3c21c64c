"""Postfix's search orders (access(5), transport(5), aliases) and the places they are used."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from postier.cli import postmap
from postier.dns.result import DnsResult
from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.rewrite.mynetworks import MyNetworks
from postier.rewrite.resolve import AddressClass, LocalRecipientCheck
from postier.smtpd.facts import ServiceFacts
from postier.tables import (
    Key,
    Maps,
    SearchSettings,
    Subject,
    TableError,
    Tables,
    access_keys,
    address_keys,
    alias_keys,
    mail_addr_keys,
    transport_keys,
)
from postier.tables.inline import InlineTable


def texts(keys: list[Key]) -> list[str]:
    return [k.text for k in keys]


def test_access_address_order_with_extension() -> None:
    keys = address_keys("User+Foo@Mail.Example.COM", SearchSettings(recipient_delimiter="+"))
    assert texts(keys) == ["user+foo@mail.example.com", "user@mail.example.com",
                           "mail.example.com", "example.com", "com", "user+foo@", "user@"]
    assert [k.partial for k in keys] == [False] + [True] * 6
    plain = address_keys("user@example.com", SearchSettings(recipient_delimiter="+"))
    assert texts(plain) == ["user@example.com", "example.com", "com", "user@"]


def test_access_address_order_without_parent_style_and_null_sender() -> None:
    keys = address_keys("u@a.b.c", SearchSettings(parent_style=False))
    assert texts(keys) == ["u@a.b.c", "a.b.c", ".b.c", ".c", "u@"]
    assert texts(address_keys("", SearchSettings(null_key="<null>"))) == ["<null>"]


def test_hostname_client_address_and_whole_orders() -> None:
    assert texts(access_keys(Subject.HOSTNAME, "Mail.Example.com")) == [
        "mail.example.com", "example.com", "com"]
    assert texts(access_keys(Subject.CLIENT_ADDRESS, "192.0.2.7")) == [
        "192.0.2.7", "192.0.2", "192.0", "192"]
    assert texts(access_keys(Subject.CLIENT_ADDRESS, "::ffff:192.0.2.7"))[0] == "192.0.2.7"
    assert texts(access_keys(Subject.CLIENT_ADDRESS, "2001:db8::1")) == [
        "2001:db8::1", "2001:db8", "2001"]
    assert texts(access_keys(Subject.WHOLE, "Any Thing")) == ["Any Thing"]


def test_transport_and_alias_orders() -> None:
    keys = transport_keys("user+ext@mail.example.com",
                          SearchSettings(recipient_delimiter="+", parent_style=False))
    assert texts(keys) == ["user+ext@mail.example.com", "user@mail.example.com",
                           "mail.example.com", ".example.com", ".com", "*"]
    assert texts(alias_keys("Joe+List", "+")) == ["joe+list", "joe"]
    assert texts(alias_keys("joe", "+")) == ["joe"]


def test_pattern_tables_see_only_the_whole_address(tmp_path: Path) -> None:
    regexp = tmp_path / "r"
    regexp.write_text("/^example\\.com$/ REJECT domain only\n/^joe@/ OK joe\n")
    maps = Tables().maps("check", [f"regexp:{regexp}"])
    assert maps.search(address_keys("bob@example.com")) is None  # "example.com" is partial
    assert maps.search(address_keys("joe@example.com")) == "OK joe"


# --- the restriction evaluator and smtpd's facts ------------------------------------------

class Facts:
    """A sync ``lookups.Facts`` whose one table is given, or fails."""

    def __init__(self, table: dict[str, str] | None) -> None:
        self.table = table
        self.asked: list[str] = []

    def mynetworks(self, ip: str) -> bool:
        return False

    def address_class(self, domain: str) -> AddressClass:
        return AddressClass.LOCAL if domain == "example.com" else AddressClass.DEFAULT

    def is_local_recipient(self, address: str) -> bool | None:
        return True

    def domain_dns(self, domain: str) -> DnsResult:
        return DnsResult.HAS_ADDRESS

    def lookup(self, table: str, key: str) -> str | None:
        self.asked.append(key)
        if self.table is None:
            raise TableError(f"{table}: connection refused")
        return self.table.get(key)


def _decide(facts: Facts, restriction: str, **state: str) -> rs.Decision:
    lists = {rs.Stage.CLIENT: [restriction], rs.Stage.RECIPIENT: ["permit_mynetworks",
                                                                  "reject_unauth_destination"]}
    s = rs.SmtpdState("192.0.2.7", client_name="mx.example.net", helo_name="helo.example.org",
                      sender="s@example.org", recipient="u@example.com", **state)
    return rs.evaluate_stage(lists, s, facts, rs.RejectCodes())


def test_client_access_searches_the_name_then_the_address() -> None:
    facts = Facts({"192.0.2": "REJECT no thanks"})
    d = _decide(facts, "check_client_access pgsql:/etc/x.cf")
    assert str(d.reply) == "554 5.7.1 <mx.example.net[192.0.2.7]>: Client host rejected: no thanks"
    assert facts.asked == ["mx.example.net", "example.net", "net", "192.0.2.7", "192.0.2"]


def test_a_failing_access_table_tempfails_never_accepts() -> None:
    d = _decide(Facts(None), "check_client_access pgsql:/etc/x.cf")
    assert d.action == "defer"
    assert str(d.reply) == "451 4.3.0 <mx.example.net[192.0.2.7]>: Temporary lookup failure"


def _service_facts(tables: Tables, networks: MyNetworks, warnings: list[str]) -> ServiceFacts:
    async def dns(domain: str) -> DnsResult:
        return DnsResult.HAS_ADDRESS

    return ServiceFacts(networks, lambda domain: AddressClass.LOCAL,
                        LocalRecipientCheck(lambda name: True), dns, tables=tables,
                        search=SearchSettings(recipient_delimiter="+"), warn=warnings.append)


def test_service_facts_answer_table_lookups_from_real_tables(tmp_path: Path) -> None:
    src = tmp_path / "sender_access"
    src.write_text("joe@example.org REJECT bye\n")
    assert postmap.main([f"hash:{src}"]) == 0
    warnings: list[str] = []
    facts = _service_facts(Tables(), MyNetworks.parse(["127.0.0.0/8"]), warnings)
    found = asyncio.run(facts.run(lk.ask_table(f"hash:{src}", "Joe+x@Example.org",
                                               Subject.ADDRESS)))
    assert found == "REJECT bye"  # user+ext@domain, then user@domain: the extension
    failed = asyncio.run(facts.run(lk.ask_table(f"hash:{tmp_path}/gone", "x", Subject.WHOLE)))
    assert isinstance(failed, lk.TableFailed) and "gone.pdb" in warnings[0]


def test_mynetworks_files_tables_and_bad_entries(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    nets.write_text("# trusted\n192.0.2.0/24   # office\n!198.51.100.7, 198.51.100.0/24\n")
    cidr = tmp_path / "more.cidr"
    cidr.write_text("203.0.113.0/24 whatever\n")
    tables = Tables()
    m = MyNetworks.parse(["127.0.0.1/32", str(nets), f"cidr:{cidr}"],
                         read_file=lambda p: Path(p).read_text(), open_table=tables.table)
    assert m.lookup("192.0.2.9") is True and m.lookup("198.51.100.7") is False
    assert m.lookup("198.51.100.8") is True and m.lookup("203.0.113.1") is True
    assert m.lookup("10.0.0.1") is False and not m.errors
    bad = MyNetworks.parse(["127.0.0.1/32", "127.0.0.1/8", "10.0.0.0/8"], strict=False)
    assert bad.errors == ['mynetworks: non-null host address bits in "127.0.0.1/8", perhaps '
                          'you should use "127.0.0.0/8" instead']
    assert bad.lookup("127.0.0.1") is True  # matched before the bad entry
    assert bad.lookup("10.1.1.1") is None  # reaches it: neither yes nor no
    assert bad.match("10.1.1.1") is False
    with pytest.raises(ValueError, match="open /nonexistent: No such file"):
        MyNetworks.parse(["/nonexistent"], read_file=lambda p: Path(p).read_text())
    warnings: list[str] = []
    facts = _service_facts(tables, bad, warnings)
    assert isinstance(asyncio.run(facts.run(lk.ask_mynetworks("10.1.1.1"))), lk.TableFailed)
    assert "non-null host address bits" in warnings[0]


def test_inline_table_in_facts() -> None:
    facts = _service_facts(Tables(), MyNetworks.parse([]), [])
    spec = "inline:{ example.net=OK, { other = REJECT no } }"
    got = asyncio.run(facts.run(lk.ask_table(spec, "mail.example.net", Subject.HOSTNAME)))
    assert got == "OK"
    assert isinstance(facts.access_maps(spec).tables[0], InlineTable)


def test_mail_addr_keys_follow_mail_addr_find() -> None:
    s = SearchSettings(recipient_delimiter="+")
    assert [k.text for k in mail_addr_keys("Joe+x@Sub.Example.ORG", s)] == [
        "joe+x@sub.example.org", "joe@sub.example.org", "@sub.example.org"]
    assert [k.text for k in mail_addr_keys("joe+x@example.com", s, local=True)] == [
        "joe+x@example.com", "joe@example.com", "joe+x", "joe", "@example.com"]


def _login_facts(tmp_path: Path, warnings: list[str]) -> ServiceFacts:
    logins = tmp_path / "logins"
    logins.write_text("alice@example.org alice\n@shared.example.org alice, bob\n"
                      "boss boss\n")
    relay = tmp_path / "relay_recipients"
    relay.write_text("known@example.org x\n@open.example.org x\n")
    tables = Tables()

    async def dns(domain: str) -> DnsResult:
        return DnsResult.HAS_ADDRESS

    def classify(domain: str) -> AddressClass:
        return AddressClass.LOCAL if domain == "example.com" else AddressClass.RELAY

    return ServiceFacts(
        MyNetworks.parse(["127.0.0.0/8"]), classify, LocalRecipientCheck(lambda name: True),
        dns, tables=tables, search=SearchSettings(recipient_delimiter="+"),
        warn=warnings.append,
        sender_login_maps=tables.maps("smtpd_sender_login_maps", [f"texthash:{logins}"]),
        relay_recipient_maps=tables.maps("relay_recipient_maps", [f"texthash:{relay}"]))


def test_service_facts_answer_sender_logins_from_smtpd_sender_login_maps(
        tmp_path: Path) -> None:
    facts = _login_facts(tmp_path, [])

    def owners(sender: str) -> object:
        return asyncio.run(facts.run(lk.ask_sender_logins(sender)))

    assert owners("Alice+tag@example.org") == ("alice",)
    assert owners("anyone@shared.example.org") == ("alice", "bob")
    assert owners("boss@example.com") == ("boss",)  # a local domain: the bare user too
    assert owners("boss@example.org") == ()  # not local: no bare user key
    none = _service_facts(Tables(), MyNetworks.parse(["127.0.0.0/8"]), [])
    assert asyncio.run(none.run(lk.ask_sender_logins("alice@example.org"))) is None


def test_service_facts_answer_relay_recipients_and_a_failure_is_not_not_found(
        tmp_path: Path) -> None:
    warnings: list[str] = []
    facts = _login_facts(tmp_path, warnings)

    def listed(address: str) -> object:
        return asyncio.run(facts.run(lk.ask_relay_recipient(address)))

    assert listed("Known+x@example.org") is True
    assert listed("anyone@open.example.org") is True
    assert listed("unknown@example.org") is False
    without = _service_facts(Tables(), MyNetworks.parse(["127.0.0.0/8"]), [])
    assert asyncio.run(without.run(lk.ask_relay_recipient("unknown@example.org"))) is True

    class Failing(Maps):
        def __bool__(self) -> bool:
            return True

        async def search_async(self, keys: Sequence[Key]) -> str | None:
            raise TableError("relay_recipient_maps: pgsql:/etc/x.cf: connection refused")

    facts.relay_recipient_maps = Failing("relay_recipient_maps", [])
    assert listed("unknown@example.org") is None
    assert warnings == ['lookup error for "unknown@example.org": relay_recipient_maps: '
                        'pgsql:/etc/x.cf: connection refused']
    facts.sender_login_maps = Failing("smtpd_sender_login_maps", [])
    assert isinstance(asyncio.run(facts.run(lk.ask_sender_logins("a@example.org"))),
                      lk.TableFailed)
