"""Alias, .forward and :include: values: parsing, allow_mail_to_* classes, forward_path,
and LocalAgent's expansion into mailbox, command, file and forwarded targets."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from postier.config.maincf import parse
from postier.config.settings import Config
from postier.delivery.status import DeliveryStatus
from postier.local.forward import (
    Item,
    ItemKind,
    Origin,
    allowed,
    delivered_to,
    forward_paths,
    parse_file,
    parse_item,
    parse_values,
)
from postier.local.local import LocalAgent, Target
from postier.local.localpart import DEFAULT_EXPANSION_FILTER, ExpansionError
from postier.log import Log

# --- pure parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("|/usr/bin/procmail", ItemKind.COMMAND, "/usr/bin/procmail"),
    ('"|/usr/bin/vacation -a joe"', ItemKind.COMMAND, "/usr/bin/vacation -a joe"),
    ("/var/log/mail-archive", ItemKind.FILE, "/var/log/mail-archive"),
    ('"/var/spool/with space"', ItemKind.FILE, "/var/spool/with space"),
    (":include:/etc/mail/staff", ItemKind.INCLUDE, "/etc/mail/staff"),
    (":INCLUDE: /etc/mail/staff", ItemKind.INCLUDE, "/etc/mail/staff"),
    ("\\joe", ItemKind.MAILBOX, "joe"),
    ("admin@example.org", ItemKind.ADDRESS, "admin@example.org"),
    ("joe", ItemKind.ADDRESS, "joe"),
    ('"joe smith"@example.org', ItemKind.ADDRESS, '"joe smith"@example.org'),
    # quoted commands as an administrator writes them; Postfix 3.7 ran and logged these
    ('"|/bin/sh -c \'cat > /tmp/x.out\'"', ItemKind.COMMAND, "/bin/sh -c 'cat > /tmp/x.out'"),
    ('"|/bin/sh -c \\"cat > /tmp/fwd.out\\""', ItemKind.COMMAND,
     '/bin/sh -c "cat > /tmp/fwd.out"'),
    ('"a\\"b"@example.org', ItemKind.ADDRESS, '"a\\"b"@example.org'),
])
def test_parse_item_kinds(text: str, kind: ItemKind, value: str) -> None:
    assert parse_item(text) == Item(kind, value)


def test_parse_values_skips_empty_elements() -> None:
    assert parse_values(["joe", " ", "|cmd"]) == [
        Item(ItemKind.ADDRESS, "joe"), Item(ItemKind.COMMAND, "cmd")]


def test_parse_file_lines_commas_quotes_and_comments() -> None:
    text = '# a comment\n\njoe, ann@example.org\n  # indented comment\n"|cat, tee /x" ,/tmp/f\n'
    assert parse_file(text) == [
        Item(ItemKind.ADDRESS, "joe"),
        Item(ItemKind.ADDRESS, "ann@example.org"),
        Item(ItemKind.COMMAND, "cat, tee /x"),
        Item(ItemKind.FILE, "/tmp/f"),
    ]


def test_parse_file_dot_forward_with_mailbox_and_escaped_quoted_command() -> None:
    # the fresh administrator's ~/.forward: Postfix 3.7 delivered to the mailbox and ran
    # /bin/sh -c "cat > /tmp/fwd.out" (its log: delivered to command: /bin/sh -c "…")
    text = '\\fzfresh, "|/bin/sh -c \\"cat > /tmp/fwd.out\\""\n'
    assert parse_file(text) == [
        Item(ItemKind.MAILBOX, "fzfresh"),
        Item(ItemKind.COMMAND, '/bin/sh -c "cat > /tmp/fwd.out"'),
    ]


@pytest.mark.parametrize(("classes", "origin", "ok"), [
    (["alias", "forward"], Origin.ALIAS, True),
    (["alias", "forward"], Origin.FORWARD, True),
    (["alias", "forward"], Origin.INCLUDE, False),
    (["alias"], Origin.FORWARD, False),
    (["Include"], Origin.INCLUDE, True),
    ([], Origin.ALIAS, False),
])
def test_allowed_classes(classes: list[str], origin: Origin, ok: bool) -> None:
    assert allowed(classes, origin) is ok


def test_forward_paths_default_with_and_without_extension() -> None:
    templates = ["$home/.forward${recipient_delimiter}${extension}", "$home/.forward"]
    base = {"home": "/home/joe", "user": "joe"}
    assert forward_paths(templates, {**base, "extension": "lists",
                                     "recipient_delimiter": "+"},
                         DEFAULT_EXPANSION_FILTER) == [
        "/home/joe/.forward+lists", "/home/joe/.forward"]
    # no extension: both elements give the same path, kept once
    assert forward_paths(templates, {**base, "extension": None, "recipient_delimiter": None},
                         DEFAULT_EXPANSION_FILTER) == ["/home/joe/.forward"]


def test_forward_paths_censors_attribute_values() -> None:
    got = forward_paths(["$home/.forward+$extension"],
                        {"home": "/home/joe", "extension": "a;b"}, DEFAULT_EXPANSION_FILTER)
    assert got == ["/home/joe/.forward+a_b"]


def test_forward_paths_bad_syntax_raises() -> None:
    with pytest.raises(ExpansionError):
        forward_paths(["$home/.forward$"], {"home": "/h"}, DEFAULT_EXPANSION_FILTER)


# --- LocalAgent.expand ---------------------------------------------------------------

ME = pwd.getpwuid(os.geteuid())


@pytest.fixture
def agent_for(tmp_path: Path) -> Iterator[object]:
    def make(aliases: str, extra: str = "") -> LocalAgent:
        alias_file = tmp_path / "aliases"
        alias_file.write_text(aliases)
        main_cf = (f"myorigin = example.com\nmydestination = example.com, localhost\n"
                   f"alias_maps = texthash:{alias_file}\n"
                   f"forward_path = {tmp_path}/$user.forward\n{extra}")
        cfg = Config(parse(main_cf, "main.cf"), hostname="tintin.example.com")
        return LocalAgent(cfg, Log("local", target=str(tmp_path / "maillog")))

    yield make


def test_alias_to_remote_address_file_and_command(agent_for) -> None:
    agent = agent_for("root: admin@example.org, /tmp/archive, |/bin/true\n")
    got = agent.expand("root")
    assert isinstance(got, list)
    rights = agent.alias_owner()
    assert got == [Target(rights, forward="admin@example.org"),
                   Target(rights, file="/tmp/archive"),
                   Target(rights, "/bin/true", alias="root",
                          user_env=rights != agent.default_privs)]


def test_alias_owner_is_default_privs_for_root_owned_database(agent_for, tmp_path) -> None:
    agent = agent_for("x: y\n")
    owner = os.stat(tmp_path / "aliases").st_uid
    expected = "nobody" if owner == 0 else pwd.getpwuid(owner).pw_name
    assert agent.alias_owner() == expected


def test_alias_to_local_user_expands_in_place(agent_for) -> None:
    agent = agent_for(f"pm: {ME.pw_name}\n")
    assert agent.expand("pm") == [Target(ME.pw_name, address=f"{ME.pw_name}@example.com")]


def test_allow_mail_to_commands_refuses_alias_command(agent_for) -> None:
    agent = agent_for("bot: |/bin/true\n", "allow_mail_to_commands = forward\n")
    [target] = agent.expand("bot")
    assert isinstance(target.failed, DeliveryStatus)
    assert (target.failed.dsn, target.failed.text) == ("5.7.1", "mail to command is restricted")


def test_include_file_forwards_addresses_and_restricts_files(agent_for) -> None:
    # read with default_privs' rights when root runs the tests: not under pytest's 0700
    public = Path(tempfile.mkdtemp(prefix="postier-include-"))
    os.chmod(public, 0o755)
    members = public / "list"
    members.write_text("# members\nann@example.org\n/tmp/saved\n")
    os.chmod(members, 0o644)
    agent = agent_for(f"staff: :include:{members}\n")
    got = agent.expand("staff")
    assert isinstance(got, list) and len(got) == 2
    assert got[0].forward == "ann@example.org"
    # allow_mail_to_files default (alias, forward) excludes include
    assert got[1].failed is not None and got[1].failed.text == "mail to file is restricted"
    shutil.rmtree(public)


def test_include_relative_path_bounces(agent_for) -> None:
    got = agent_for("staff: :include:list\n").expand("staff")
    assert isinstance(got, DeliveryStatus)
    assert got.dsn.startswith("5.") and "uses a relative path" in got.text


def test_dot_forward_replaces_the_mailbox(agent_for, tmp_path) -> None:
    fwd = tmp_path / f"{ME.pw_name}.forward"
    fwd.write_text(f"\\{ME.pw_name}, ann@example.org, |/bin/true\n")
    agent = agent_for("")
    got = agent.expand(ME.pw_name)
    assert got == [Target(ME.pw_name, address=f"{ME.pw_name}@example.com"),
                   Target(ME.pw_name, forward="ann@example.org"),
                   Target(ME.pw_name, "/bin/true")]


def test_dot_forward_local_address_is_forwarded_and_own_name_is_the_mailbox(
        agent_for, tmp_path) -> None:
    fwd = tmp_path / f"{ME.pw_name}.forward"
    fwd.write_text(f"nobody, {ME.pw_name}\n")
    got = agent_for("").expand(ME.pw_name)
    assert got == [Target(ME.pw_name, forward="nobody@example.com"),
                   Target(ME.pw_name, address=f"{ME.pw_name}@example.com")]


def test_world_writable_dot_forward_is_ignored(agent_for, tmp_path) -> None:
    fwd = tmp_path / f"{ME.pw_name}.forward"
    fwd.write_text("ann@example.org\n")
    os.chmod(fwd, 0o666)
    agent = agent_for("")
    assert agent.expand(ME.pw_name) == [Target(ME.pw_name)]
    assert "is world writable" in (tmp_path / "maillog").read_text()


def test_allow_mail_to_files_alias_refuses_dot_forward_file(agent_for, tmp_path) -> None:
    (tmp_path / f"{ME.pw_name}.forward").write_text("/tmp/saved\n")
    [target] = agent_for("", "allow_mail_to_files = alias\n").expand(ME.pw_name)
    assert target.failed is not None
    assert (target.failed.dsn, target.failed.text) == ("5.7.1", "mail to file is restricted")


def test_delivered_to_values_of_the_primary_header_block_only() -> None:
    content = [b"Received: x\nDelivered-To: Root@Example.COM\nDelivered-To:\n",
               b" folded@example.com\nSubject: s\n\nDelivered-To: body@example.com\n"]
    assert delivered_to(iter(content)) == {"root@example.com", "folded@example.com"}
    assert delivered_to(iter([b"\nDelivered-To: body@example.com\n"])) == set()


def test_dot_forward_symlink_is_followed(agent_for, tmp_path) -> None:
    real = tmp_path / "real-forward"
    real.write_text("ann@example.org\n")
    (tmp_path / f"{ME.pw_name}.forward").symlink_to(real)
    assert agent_for("").expand(ME.pw_name) == [Target(ME.pw_name, forward="ann@example.org")]
