"""cleanup.rewrite: canonical and virtual alias maps applied as a message is queued,
with real tables (``inline:``, ``regexp:``) opened from a main.cf; the expected values
were taken from Postfix 3.7.11 side by side (postcat of the queue file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.cleanup.cleanup import Cleanup, Qualify
from postier.cleanup.rewrite import (
    AddressRewriting,
    address_spans,
    rewriting_from_config,
    virtual_alias_domain_tables,
)
from postier.config.errors import ConfigError
from postier.config.maincf import parse
from postier.config.settings import Config
from postier.queue import dirs
from postier.queue import file as qfile
from postier.queue.file import Envelope, QueueFile, Recipient
from postier.rewrite.virtual import ExpansionError
from postier.tables import Tables

QUALIFY = Qualify("tintin.example.com")


def config(tmp_path: Path, extra: str = "") -> Config:
    regexp = tmp_path / "virtual.re"
    regexp.write_text("/^catch-.*@virt\\.example$/  bob\n")
    text = f"""\
myorigin = tintin.example.com
mydestination = tintin.example.com, localhost
recipient_delimiter = +
virtual_alias_maps = inline:{{ alice@virt.example=alice, {{ both@virt.example = alice, bob }},
    remote@virt.example=far@remote.example, loop1@virt.example=loop2@virt.example,
    loop2@virt.example=loop1@virt.example, virt.example=domain, @virt2.example=bob }}
    regexp:{regexp}
sender_canonical_maps = inline:{{ carol@example.com=carol.smith@example.com }}
recipient_canonical_maps = inline:{{ dave@example.com=dave.jones@example.com,
    @old.example=@example.com }}
{extra}"""
    return Config(parse(text, "main.cf"), hostname="tintin.example.com")


def rewriting(tmp_path: Path, extra: str = "") -> AddressRewriting:
    return rewriting_from_config(config(tmp_path, extra), Tables(), QUALIFY.address)


@pytest.fixture
def qdir(tmp_path: Path) -> Iterator[str]:
    d = str(tmp_path / "queue")
    dirs.ensure(d, None, None)
    yield d
    qfile.forget_dir_fds()


@pytest.mark.parametrize(("value", "addresses"), [
    (" a@x.example", ["a@x.example"]),
    (' Carol <carol@example.com>, "X, Y" <alice@virt.example>', ["carol@example.com",
                                                                  "alice@virt.example"]),
    (" dave@example.com (Dave, the man), e@x", ["dave@example.com", "e@x"]),
    (" friends: a@x, B <b@y>;, c@z", ["a@x", "b@y", "c@z"]),
    (" undisclosed-recipients:;", []),
    (' "a b"@x.example', ['"a b"@x.example']),
    (" Just A Name", []),
    (" <>", []),
])
def test_address_spans(value: str, addresses: list[str]) -> None:
    assert [value[s:e] for s, e in address_spans(value)] == addresses


def test_envelope_canonical_then_virtual_with_orig_and_orcpt(tmp_path: Path) -> None:
    env = Envelope("carol@example.com", [
        Recipient("both@virt.example", "both@virt.example"),
        Recipient("dave+bar@example.com", "dave+bar@example.com"),
        Recipient("alice+foo@virt.example", "alice+foo@virt.example", dsn_notify="NEVER"),
        Recipient("remote@virt.example", "remote@virt.example",
                  dsn_orcpt="rfc822;given@example.net"),
        Recipient("catch-x@virt.example", "catch-x@virt.example"),
        Recipient("zed+q@old.example", "zed+q@old.example"),
        Recipient("root@tintin.example.com", "root"),
        Recipient("x+foo@virt2.example", "x+foo@virt2.example"),
    ], 1.0)
    got = rewriting(tmp_path).envelope(env, lambda text: None)
    assert got.sender == "carol.smith@example.com"
    assert [(r.address, r.orig, r.dsn_orcpt, r.dsn_notify) for r in got.recipients] == [
        ("alice@tintin.example.com", "both@virt.example", "rfc822;both@virt.example", ""),
        ("bob@tintin.example.com", "both@virt.example", "rfc822;both@virt.example", ""),
        ("dave.jones+bar@example.com", "dave+bar@example.com",
         "rfc822;dave+bar@example.com", ""),
        ("alice+foo@tintin.example.com", "alice+foo@virt.example",
         "rfc822;alice+foo@virt.example", "NEVER"),
        ("far@remote.example", "remote@virt.example", "rfc822;given@example.net", ""),
        ("bob@tintin.example.com", "catch-x@virt.example", "rfc822;catch-x@virt.example", ""),
        ("zed+q@example.com", "zed+q@old.example", "rfc822;zed+q@old.example", ""),
        ("root@tintin.example.com", "root", "", ""),
        ("bob@tintin.example.com", "x+foo@virt2.example", "rfc822;x+foo@virt2.example", ""),
    ]


def test_loop_refuses_the_message_and_nothing_is_queued(tmp_path: Path, qdir: str) -> None:
    warnings: list[str] = []

    class Log:
        def info(self, text: str) -> None: ...
        def warning(self, text: str) -> None:
            warnings.append(text)
        def for_program(self, program: str) -> Log:
            return self

    cleanup = Cleanup(qdir, log=Log(), trigger=None, fsync=False, qualify=QUALIFY,
                      rewriting=rewriting(tmp_path, "virtual_alias_recursion_limit = 5"))
    msg = cleanup.open()
    msg.write(b"Subject: x\n\nbody\n")
    with pytest.raises(ExpansionError):
        msg.commit(Envelope("a@example.com", [Recipient("loop1@virt.example")], 1.0))
    assert warnings == [f"{msg.queue_id}: unreasonable virtual_alias_maps map nesting for "
                        "loop1@virt.example -- message not accepted, try again later"]
    assert not list(Path(qdir, "incoming").rglob("*"))


def test_headers_of_local_clients_only_through_canonical(tmp_path: Path, qdir: str) -> None:
    cleanup = Cleanup(qdir, log=None, trigger=None, fsync=False, qualify=QUALIFY,
                      rewriting=rewriting(tmp_path))
    content = (b"From: Carol <carol@example.com>\n"
               b"To: dave@example.com, \"X\" <alice@virt.example>, tintin\n"
               b"Cc: loop1@virt.example\nSubject: carol@example.com\n\n"
               b"From: carol@example.com\n")
    queued = []
    for local in (True, False):
        msg = cleanup.open()
        if local:
            msg.rewrite_headers()
        msg.write(content)
        qid = msg.commit(Envelope("carol@example.com", [Recipient("both@virt.example")], 1.0))
        with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
            assert qf.envelope.sender == "carol.smith@example.com"
            queued.append(b"".join(qf.iter_content()))
    # Postfix 3.7: "To: dave.jones@example.com, … tintin@MYORIGIN"; virtual maps never apply
    assert queued[0] == (b"From: Carol <carol.smith@example.com>\n"
                         b"To: dave.jones@example.com, \"X\" <alice@virt.example>, "
                         b"tintin@tintin.example.com\n"
                         b"Cc: loop1@virt.example\nSubject: carol@example.com\n\n"
                         b"From: carol@example.com\n")
    assert queued[1] == content


def test_listed_recipients_for_smtpd(tmp_path: Path) -> None:
    rw = rewriting(tmp_path)
    assert rw.listed("alice@virt.example") is True
    assert rw.listed("catch-1@virt.example") is True  # regexp
    assert rw.listed("anyone@virt2.example") is True  # @domain
    assert rw.listed("dave+x@example.com") is True  # recipient_canonical_maps
    assert rw.listed("carol@example.com") is False  # sender_canonical_maps does not count
    assert rw.listed("nobody@virt.example") is False


def test_virtual_alias_domains_default_is_the_tables_keys(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    listed = virtual_alias_domain_tables(cfg, Tables(), lambda text: None)
    assert listed("virt.example") is True
    assert listed("Virt.Example.") is True
    assert listed("virt2.example") is False  # only "@virt2.example" is a key
    names = config(tmp_path, "virtual_alias_domains = virt9.example")
    assert virtual_alias_domain_tables(names, Tables(), lambda text: None)("virt.example") \
        is False


def test_no_maps_no_rewriting(tmp_path: Path) -> None:
    cfg = Config(parse("myorigin = t.example\n", "main.cf"), hostname="t.example")
    rw = rewriting_from_config(cfg, Tables(), QUALIFY.address)
    assert not rw and rw.virtual is None and not rw.recipient_finders


def test_bad_class_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError,
                       match='unknown sender_canonical_classes value "envelope_sendr"'):
        rewriting(tmp_path, "sender_canonical_classes = envelope_sendr")


def test_headers_of_local_clients_are_qualified_without_maps(qdir: str) -> None:
    cleanup = Cleanup(qdir, log=None, trigger=None, fsync=False, qualify=QUALIFY)
    msg = cleanup.open()
    msg.rewrite_headers()
    msg.write(b"From: carol (Carol C)\nTo: Dave <dave>, e@x.example\nX-To: f\n\nTo: g\n")
    qid = msg.commit(Envelope("carol", [Recipient("dave")], 1.0))
    with QueueFile.open(dirs.path(qdir, "incoming", qid)) as qf:
        assert b"".join(qf.iter_content()) == (
            b"From: carol@tintin.example.com (Carol C)\n"
            b"To: Dave <dave@tintin.example.com>, e@x.example\nX-To: f\n\nTo: g\n")


def test_postier_check_refuses_an_unknown_class(tmp_path: Path) -> None:
    """``postier check`` names file, line and word, as Postfix refuses to start."""
    from postier.cli import check

    (tmp_path / "main.cf").write_text(
        f"queue_directory = {tmp_path}/q\ndata_directory = {tmp_path}/d\n"
        "canonical_maps = inline:{ a@x.example=b@x.example }\n"
        "canonical_classes = envelope_sender, header_sendr\n")
    (tmp_path / "master.cf").write_text("127.0.0.1:2999 inet n - n - - smtpd\n")
    _, refused, _ = check.report(str(tmp_path))
    assert refused == [f"{tmp_path}/main.cf, line 4: parameter canonical_classes: unknown "
                       'canonical_classes value "header_sendr"']


_LOCAL = st.from_regex(r"[a-z0-9][a-z0-9.+_-]{0,10}[a-z0-9]", fullmatch=True)
_DOMAIN = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)
_NAME = st.from_regex(r"[A-Za-z][A-Za-z ]{0,10}[A-Za-z]", fullmatch=True)


@st.composite
def _mailbox(draw: st.DrawFn) -> tuple[str, str]:
    """One mailbox as written in a header, and its address."""
    address = f"{draw(_LOCAL)}@{draw(_DOMAIN)}"
    form = draw(st.sampled_from(["bare", "angle", "quoted", "comment"]))
    if form == "bare":
        return address, address
    if form == "angle":
        return f"{draw(_NAME)} <{address}>", address
    if form == "quoted":
        return f'"{draw(_NAME)}, x" <{address}>', address
    return f"{address} ({draw(_NAME)}, y)", address


@given(st.lists(_mailbox(), min_size=1, max_size=5), st.booleans())
def test_address_spans_find_every_mailbox(mailboxes: list[tuple[str, str]],
                                          group: bool) -> None:
    value = ", ".join(written for written, _ in mailboxes)
    if group:
        value = f"Team: {value};"
    value = " " + value
    assert [value[s:e] for s, e in address_spans(value)] == [a for _, a in mailboxes]


def test_smtpd_facts_known_recipient(tmp_path: Path) -> None:
    """smtpd's LocalRecipient answer (Postfix's check_rcpt_maps): listed in the canonical
    or virtual alias maps, else unknown in a virtual alias domain, else the local users;
    a failing table is None (451 4.3.0)."""
    from postier.dns.result import DnsResult
    from postier.rewrite.mynetworks import MyNetworks
    from postier.rewrite.resolve import AddressClass, Classifier, LocalRecipientCheck
    from postier.smtpd.facts import ServiceFacts

    async def dns(domain: str) -> DnsResult:
        return DnsResult.HAS_ADDRESS

    classify = Classifier.from_lists(["tintin.example.com"], [], [], ["virt.example"])
    warnings: list[str] = []
    rw = rewriting(tmp_path)
    facts = ServiceFacts(MyNetworks.parse(["127.0.0.0/8"]), classify,
                         LocalRecipientCheck(lambda name: name == "root"), dns,
                         warn=warnings.append, rewrite_listed=rw.listed)
    assert classify("virt.example") is AddressClass.VIRTUAL_ALIAS
    assert facts.known_recipient("alice@virt.example") is True
    assert facts.known_recipient("nobody@virt.example") is False
    assert facts.known_recipient("root@tintin.example.com") is True
    assert facts.known_recipient("tintin@tintin.example.com") is False
    assert facts.known_recipient("root") is True  # unqualified: the local class

    def broken(address: str) -> bool | None:
        return None

    failing = ServiceFacts(MyNetworks.parse(["127.0.0.0/8"]), classify,
                           LocalRecipientCheck(lambda name: True), dns,
                           warn=warnings.append, rewrite_listed=broken)
    assert failing.known_recipient("alice@virt.example") is None
    assert warnings == ["recipient lookup of alice@virt.example in the canonical or virtual "
                        "alias maps failed"]


def test_the_local_part_alone_is_a_key_only_for_local_domains(tmp_path: Path) -> None:
    """canonical(5)/virtual(5): ``user`` matches ``user@domain`` only when the domain is
    $myorigin or in $mydestination."""
    rw = rewriting(tmp_path, "canonical_maps = inline:{ root=admin }")
    env = Envelope("root@localhost", [Recipient("root@tintin.example.com"),
                                      Recipient("root@example.net")], 1.0)
    got = rw.envelope(env, lambda text: None)
    assert got.sender == "admin@tintin.example.com"
    assert [r.address for r in got.recipients] == ["admin@tintin.example.com",
                                                   "root@example.net"]
