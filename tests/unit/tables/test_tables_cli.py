"""postier postmap / postalias, and the start-time checks of every table main.cf names."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from postier.cli import postmap
from postier.config.errors import ConfigError
from postier.instance import load_with_warnings
from postier.rewrite.resolve import AddressClass, Classifier
from postier.tables import Tables
from postier.tables.domainlist import domain_lists


def run(prog: str, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = postmap.run(prog, list(argv), io.StringIO(stdin), out, err)
    return status, out.getvalue(), err.getvalue()


def test_postmap_build_query_dump_incremental_delete(tmp_path: Path) -> None:
    src = tmp_path / "access"
    src.write_text("Joe@Example.com REJECT go away\n10.1 OK\nx y\nx dup\n")
    status, _, err = run("postmap", str(src))
    # postmap(1) names the database it writes, not the source line
    assert status == 0 and err == f'postmap: warning: {src}.pdb: duplicate entry: "x"\n'
    assert (tmp_path / "access.pdb").exists()
    assert run("postmap", "-q", "joe@example.com", f"hash:{src}")[:2] == (0, "REJECT go away\n")
    assert run("postmap", "-q", "nobody", str(src))[0] == 1
    assert run("postmap", "-q", "-", str(src), stdin="10.1\nnone\nx\n")[1] == "10.1\tOK\nx\ty\n"
    assert run("postmap", "-i", str(src), stdin="new value\nx replaced\n")[0] == 0
    assert run("postmap", "-d", "10.1", str(src))[0] == 0
    assert run("postmap", "-d", "10.1", str(src))[0] == 1  # no longer there
    assert run("postmap", "-s", str(src))[1] == (
        "joe@example.com\tREJECT go away\nnew\tvalue\nx\treplaced\n")


def test_postmap_errors_name_file_and_line(tmp_path: Path) -> None:
    # Postfix 3.7 postmap: a bad line is a warning, the rest is built, exit 0
    src = tmp_path / "access"
    src.write_text("ok OK\n# c\nbroken\n")
    status, _, err = run("postmap", f"lmdb:{src}")
    assert status == 0 and err == f"postmap: warning: {src}, line 3: expected format: key " \
                                   "whitespace value\n"
    assert run("postmap", "-s", f"lmdb:{src}")[1] == "ok\tOK\n"
    assert "unsupported dictionary type for building: regexp" in run(
        "postmap", f"regexp:{src}")[2]
    assert "No such file" in run("postmap", str(tmp_path / "nope"))[2]


MIXED_ALIASES = ("# comment\ngood: a, b\nnocolon line\n: nokey\ndupe: x\ndupe: y\n"
                 "cont: c1,\n  c2\n\"quoted\": q\n\"unclosed: z\n")


@pytest.mark.parametrize(("flags", "dupe", "warned"), [
    ((), "x", True), (("-w",), "x", False), (("-r",), "y", False)])
def test_postalias_warns_and_builds_the_rest_as_postfix(
        tmp_path: Path, flags: tuple[str, ...], dupe: str, warned: bool) -> None:
    # texts and outcome of Postfix 3.7.11 postalias on the same file (.db there, .pdb here)
    src = tmp_path / "aliases"
    src.write_text(MIXED_ALIASES)
    status, _, err = run("postalias", *flags, str(src))
    expected = [f"postalias: warning: {src}, line {n}: need name:value pair" for n in (3, 4, 10)]
    if warned:
        expected.insert(2, f'postalias: warning: {src}.pdb: duplicate entry: "dupe"')
    assert status == 0 and err.splitlines() == expected
    assert run("postalias", "-s", str(src))[1] == (
        f"cont\tc1, c2\ndupe\t{dupe}\ngood\ta, b\nquoted\tq\n")


@pytest.mark.parametrize(("flags", "dupe", "warned"), [
    ((), "x", True), (("-w",), "x", False), (("-r",), "y", False)])
def test_postmap_warns_and_builds_the_rest_as_postfix(
        tmp_path: Path, flags: tuple[str, ...], dupe: str, warned: bool) -> None:
    src = tmp_path / "access"
    src.write_text("  lead x\n# comment\ngood a\nkeyonly\ndupe x\ndupe y\ncont c1\n  c2\n")
    status, _, err = run("postmap", *flags, str(src))
    expected = [f'postmap: warning: {src}: logical line must not start with whitespace: '
                f'"  lead x"',
                f"postmap: warning: {src}, line 4: expected format: key whitespace value"]
    if warned:
        expected.append(f'postmap: warning: {src}.pdb: duplicate entry: "dupe"')
    assert status == 0 and err.splitlines() == expected
    assert run("postmap", "-s", str(src))[1] == f"cont\tc1 c2\ndupe\t{dupe}\ngood\ta\n"


def test_postalias_and_the_stale_warning(tmp_path: Path) -> None:
    src = tmp_path / "aliases"
    src.write_text("postmaster: root\nteam: a,\n  b\n")
    assert run("postalias", str(src))[0] == 0
    assert run("postalias", "-q", "team", str(src))[1] == "a, b\n"
    os.utime(src, (os.stat(src).st_mtime + 5,) * 2)
    _, out, err = run("postalias", "-q", "postmaster", str(src))
    assert out == "root\n"
    assert err == f"postalias: warning: database {src}.pdb is older than source file {src}\n"


def _config(tmp_path: Path, extra: str) -> str:
    (tmp_path / "main.cf").write_text("queue_directory = /tmp/q\nalias_maps =\n" + extra)
    (tmp_path / "master.cf").write_text("smtp inet n - n - - smtpd\n")
    return str(tmp_path)


@pytest.mark.parametrize(("extra", "message"), [
    ("transport_maps = frob:/x\n",
     r'main.cf, line 3: parameter transport_maps: frob:/x: unsupported dictionary type: "frob"'),
    ("alias_maps = hash:/nonexistent/aliases\n",
     r"main.cf, line 3: parameter alias_maps: hash:/nonexistent/aliases: open database "
     r"/nonexistent/aliases.pdb: No such file"),
    ("smtpd_client_restrictions = check_client_access regexp:{dir}/bad.re\n",
     r"main.cf, line 3: parameter smtpd_client_restrictions: check_client_access "
     r"regexp:.*bad.re: .*bad.re, line 2: bad regular expression"),
    ("mynetworks = 127.0.0.1/32, /nonexistent/nets\n",
     r"main.cf, line 3: parameter mynetworks: open /nonexistent/nets"),
    ("mynetworks = 127.0.0.1/8\n",
     r'main.cf, line 3: parameter mynetworks: non-null host address bits in '
     r'"127.0.0.1/8"'),
    ("mynetworks = 127.0.0.0/255.255.255.0\n",
     r'main.cf, line 3: parameter mynetworks: bad mask value in '
     r'"127.0.0.0/255.255.255.0"'),
    # every list of mynetworks' syntax names itself and the word as written
    ("smtpd_authorized_xclient_hosts = 999.1.1.1/33\n",
     r'main.cf, line 3: parameter smtpd_authorized_xclient_hosts: '
     r'bad mask length in "999.1.1.1/33"$'),
    ("smtpd_client_event_limit_exceptions = mx.example.com, !1.2.3.4/8\n",
     r'main.cf, line 3: parameter smtpd_client_event_limit_exceptions: '
     r'non-null host address bits in "!1.2.3.4/8", '
     r'perhaps you should use "1.0.0.0/8" instead$'),
    ("smtpd_authorized_xforward_hosts = 127.0.0.1, !!bogus/x\n",
     r"main.cf, line 3: parameter smtpd_authorized_xforward_hosts: "
     r"bad network pattern: !!bogus/x$"),
    # tables of every list and restriction class, not only those of RCPT time
    ("smtpd_data_restrictions = check_client_access regexp:{dir}/bad.re\n",
     r"main.cf, line 3: parameter smtpd_data_restrictions: check_client_access "
     r"regexp:.*bad.re: .*bad.re, line 2: bad regular expression"),
    ("smtpd_restriction_classes = friends\n"
     "friends = check_sender_access hash:/nonexistent/friends\n",
     r"main.cf, line 4: parameter friends: check_sender_access hash:/nonexistent/friends: "
     r"open database /nonexistent/friends.pdb: No such file"),
    ("smtpd_authorized_xclient_hosts = 127.0.0.1, /nonexistent/proxies\n",
     r"main.cf, line 3: parameter smtpd_authorized_xclient_hosts: .*open /nonexistent/proxies"),
    ("smtpd_authorized_xforward_hosts = 127.0.0.1/8\n",
     r"main.cf, line 3: parameter smtpd_authorized_xforward_hosts: .*non-null host address"),
    # smtpd_delay_reject = no: a list runs at its own command, without later data
    ("smtpd_delay_reject = no\nsmtpd_client_restrictions = reject_non_fqdn_sender\n",
     r"main.cf, line 4: parameter smtpd_client_restrictions: restriction "
     r'"reject_non_fqdn_sender" needs the sender and cannot be used in the client '
     r"restrictions with smtpd_delay_reject = no"),
    # Postfix 3.7 starts, then answers ETRN "458 Unable to queue messages": a start error
    ("fast_flush_domains = example.net, hash:/nonexistent/flush\n",
     r"main.cf, line 3: parameter fast_flush_domains: hash:/nonexistent/flush: open "
     r"database /nonexistent/flush.pdb: No such file"),
    ("relay_domains = example.net, hash:/nonexistent/relay\n",
     r"main.cf, line 3: parameter relay_domains: hash:/nonexistent/relay: open "
     r"database /nonexistent/relay.pdb: No such file"),  # also fast_flush_domains' default
    # the address classes' lists: a file or table that cannot be used, named with its line
    ("mydestination = localhost, /nonexistent/local_domains\n",
     r"main.cf, line 3: parameter mydestination: /nonexistent/local_domains: "
     r"No such file or directory$"),
    ("fast_flush_domains =\nrelay_domains = example.net, /nonexistent/relays\n",
     r"main.cf, line 4: parameter relay_domains: /nonexistent/relays: No such file"),
    ("fast_flush_domains =\nrelay_domains = example.net, hash:/nonexistent/relay\n",
     r"main.cf, line 4: parameter relay_domains: hash:/nonexistent/relay: open "
     r"database /nonexistent/relay.pdb: No such file"),
    ("mydestination = localhost, bogus:/etc/x\n",
     r"main.cf, line 3: parameter mydestination: bogus:/etc/x: .*bogus"),
    ("rbl_reply_maps = hash:/nonexistent/rbl\n",
     r"main.cf, line 3: parameter rbl_reply_maps: hash:/nonexistent/rbl: open database "
     r"/nonexistent/rbl.pdb: No such file"),
])
def test_tables_that_cannot_be_used_are_start_errors(tmp_path: Path, extra: str,
                                                     message: str) -> None:
    (tmp_path / "bad.re").write_text("/ok/ OK\n/a(b/ REJECT\n")
    config = _config(tmp_path, extra.replace("{dir}", str(tmp_path)))
    with pytest.raises(ConfigError, match=message):
        load_with_warnings(config)


def test_usable_tables_and_mynetworks_files_pass(tmp_path: Path) -> None:
    (tmp_path / "nets").write_text("# office\n192.0.2.0/24\n")
    (tmp_path / "access").write_text("192.0.2 OK\n")
    assert run("postmap", str(tmp_path / "access"))[0] == 0
    config = _config(tmp_path, f"mynetworks = 127.0.0.1/32, {tmp_path}/nets\n"
                     f"smtpd_client_restrictions = check_client_access hash:{tmp_path}/access"
                     "\nmaillog_file = /dev/stdout\n")  # not this machine's syslog
    assert load_with_warnings(config)[2] == []


def test_domain_list_files_and_tables_pass_and_open(tmp_path: Path) -> None:
    (tmp_path / "local_domains").write_text("# ours\nOne.Example two.example\n")
    (tmp_path / "relays").write_text("relay.example OK\n")
    assert run("postmap", str(tmp_path / "relays"))[0] == 0
    config = _config(tmp_path, f"mydestination = localhost, {tmp_path}/local_domains\n"
                     f"relay_domains = hash:{tmp_path}/relays\n"
                     "maillog_file = /dev/stdout\n")  # not this machine's syslog
    cfg, _, warnings = load_with_warnings(config)
    assert warnings == []
    classify = Classifier.from_config(cfg, [], lists=domain_lists(cfg, Tables()))
    assert classify("one.example") is AddressClass.LOCAL  # from the file, case folded
    assert classify("two.example") is AddressClass.LOCAL
    assert classify("Relay.Example") is AddressClass.RELAY  # a key of the hash table
    assert classify("sub.relay.example") is AddressClass.RELAY  # its parent is a key
    assert classify("other.example") is AddressClass.DEFAULT
    assert Classifier.from_config(cfg, [])("relay.example") is AddressClass.DEFAULT


def test_postfix_made_hash_table_is_read_from_its_source(tmp_path: Path) -> None:
    # /etc/aliases.db made by Postfix's newaliases, no .pdb: the source is read instead.
    (tmp_path / "aliases").write_text("ghost: nosuchuser\n")
    (tmp_path / "aliases.db").write_bytes(b"\0" * 12 + b"\x61\x15\x06\x00" + b"\0" * 100)
    (tmp_path / "access").write_text("192.0.2 OK\n")
    config = _config(tmp_path, f"alias_maps = hash:{tmp_path}/aliases\n"
                     f"smtpd_client_restrictions = check_client_access btree:{tmp_path}/access"
                     "\nmaillog_file = /dev/stdout\n")  # not this machine's syslog
    warnings = load_with_warnings(config)[2]
    assert warnings == [
        f"{tmp_path}/main.cf, line 3: overriding earlier entry: alias_maps=",
        f"hash:{tmp_path}/aliases: no {tmp_path}/aliases.pdb; reading the source file "
        f'{tmp_path}/aliases instead (slower): run "postier postalias hash:{tmp_path}/aliases"',
        f"btree:{tmp_path}/access: no {tmp_path}/access.pdb; reading the source file "
        f'{tmp_path}/access instead (slower): run "postier postmap btree:{tmp_path}/access"']
    from postier.tables import Tables
    from postier.tables.aliases import AliasMaps
    maps = AliasMaps(Tables().maps("alias_maps", [f"hash:{tmp_path}/aliases"], aliases=True))
    assert maps.lookup("ghost") == ["nosuchuser"]


@pytest.mark.parametrize(("limits", "refused"), [
    ("mailbox_size_limit = 1000\nmessage_size_limit = 2000\n", True),
    ("mailbox_size_limit = 2000\nmessage_size_limit = 2000\n", False),
    ("mailbox_size_limit = 0\nmessage_size_limit = 2000\n", False),
])
def test_mailbox_size_limit_below_message_size_limit(tmp_path: Path, limits: str,
                                                     refused: bool) -> None:
    # Postfix 3.7.11's local(8): "fatal: configuration error: mailbox_size_limit is
    # smaller than message_size_limit", mail stays queued; postier refuses to start.
    config = _config(tmp_path, limits)
    if refused:
        with pytest.raises(ConfigError, match=r"main.cf, line 3: parameter mailbox_size_limit: "
                           r"configuration error: mailbox_size_limit \(1000\) is smaller "
                           r"than message_size_limit \(2000\)"):
            load_with_warnings(config)
    else:
        load_with_warnings(config)
