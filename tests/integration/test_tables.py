"""Lookup tables against a running postier: check_client_access with hash (postier
postmap), cidr, regexp and pcre (captures) and pgsql (a real PostgreSQL the test starts)
tables each changing the reply; a database that goes down gives 451 4.3.0; tables that
cannot be used refuse the start with file and line; mynetworks in Postfix's file form."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, free_port, postier
from .test_restrictions import Client

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not ROOT, reason="starts postier as root")]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
mydestination = $myhostname, localhost, $mydomain
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
"""
LISTED, UNLISTED = "127.0.0.2", "127.0.0.5"

MakeInstance = Callable[..., Instance]


def rcpt_reply(port: int, source: str, rcpt: str = "postmaster@example.com") -> str:
    c = Client(port, source)
    try:
        assert c.cmd("EHLO milou.example.net").startswith("250")
        assert c.cmd("MAIL FROM:<tournesol@example.net>").startswith("250")
        return c.cmd(f"RCPT TO:<{rcpt}>")
    finally:
        c.close()


def start_with_client_access(make_instance: MakeInstance, spec: str) -> Instance:
    inst = make_instance(MAIN_CF, f"mynetworks = 127.0.0.1/32\n"
                                  f"smtpd_client_restrictions = check_client_access {spec}\n")
    done = inst.start()
    assert done.returncode == 0, done.stderr + inst.log()
    return inst


def rejected(text: str, source: str = LISTED) -> str:
    return f"554 5.7.1 <unknown[{source}]>: Client host rejected: {text}"


def test_hash_table_built_by_postier_postmap(make_instance: MakeInstance, workdir: Path) -> None:
    table = workdir / "client_access"
    table.write_text(f"# built by postier postmap\n{LISTED}  REJECT hash says no\n")
    built = postier("postmap", f"hash:{table}", check=False)
    assert built.returncode == 0, built.stderr
    inst = start_with_client_access(make_instance, f"hash:{table}")
    assert rcpt_reply(inst.port, LISTED) == rejected("hash says no")
    assert rcpt_reply(inst.port, UNLISTED) == "250 2.1.5 Ok"
    assert "Traceback" not in inst.log()


def test_cidr_table(make_instance: MakeInstance, workdir: Path) -> None:
    table = workdir / "clients.cidr"
    table.write_text("127.0.0.0/30   550 5.7.0 cidr says no\n")
    inst = start_with_client_access(make_instance, f"cidr:{table}")
    assert rcpt_reply(inst.port, LISTED) == (
        f"550 5.7.0 <unknown[{LISTED}]>: Client host rejected: cidr says no")
    assert rcpt_reply(inst.port, UNLISTED) == "250 2.1.5 Ok"


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
def test_regexp_and_pcre_tables_with_captures(make_instance: MakeInstance, workdir: Path,
                                              kind: str) -> None:
    table = workdir / f"clients.{kind}"
    table.write_text("if /^127\\./\n/^127\\.0\\.0\\.([0-2])$/  REJECT host number $1 "
                     f"from {kind}\nendif\n")
    inst = start_with_client_access(make_instance, f"{kind}:{table}")
    assert rcpt_reply(inst.port, LISTED) == rejected(f"host number 2 from {kind}")
    assert rcpt_reply(inst.port, UNLISTED) == "250 2.1.5 Ok"


# --- PostgreSQL -----------------------------------------------------------------------------

def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture
def postgres() -> Iterator[tuple[int, Callable[[], None]]]:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl as the postgres user) on a free
    loopback port with a table ``access(k, v)``; yields (port, stop)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (Debian postgresql) are not installed")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres system user to run the server as")
    base = Path(tempfile.mkdtemp(prefix="postier-pg-"))
    os.chown(base, pg.pw_uid, pg.pw_gid)
    data, port = base / "data", free_port()

    def as_pg(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                              text=True, check=check, timeout=120, cwd=base)

    as_pg(f"{bindir}/initdb", "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    as_pg(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(base / "log"), "-w", "-o",
          f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start")
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            as_pg(f"{bindir}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop", check=False)
            stopped = True

    try:
        as_pg("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
              "CREATE DATABASE mail;")
        as_pg("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "mail",
              "-c", "CREATE TABLE access (k text, v text); "
                    f"INSERT INTO access VALUES ('{LISTED}', 'REJECT pgsql says no');")
        yield port, stop
    finally:
        stop()
        shutil.rmtree(base, ignore_errors=True)


def test_pgsql_table_and_database_down(make_instance: MakeInstance, workdir: Path,
                                       postgres: tuple[int, Callable[[], None]]) -> None:
    port, stop = postgres
    cf = workdir / "pgsql-access.cf"
    cf.write_text(f"hosts = inet:127.0.0.1:{port}\nuser = postgres\ndbname = mail\n"
                  "query = SELECT v FROM access WHERE k = '%s'\nretry_interval = 0\n")
    inst = start_with_client_access(make_instance, f"proxy:pgsql:{cf}")
    assert rcpt_reply(inst.port, LISTED) == rejected("pgsql says no")
    assert rcpt_reply(inst.port, UNLISTED) == "250 2.1.5 Ok"
    stop()
    assert rcpt_reply(inst.port, UNLISTED) == (
        f"451 4.3.0 <unknown[{UNLISTED}]>: Temporary lookup failure")
    log = inst.log()
    assert "warning: " in log and "lookup error" in log and "Traceback" not in log


# --- what cannot be used is refused; mynetworks in the file form --------------------------

@pytest.mark.parametrize(("extra", "needle"), [
    ("smtpd_client_restrictions = check_client_access frob:/etc/x\n",
     'main.cf, line 16: parameter smtpd_client_restrictions: check_client_access frob:/etc/x: '
     'unsupported dictionary type: "frob"'),
    ("smtpd_client_restrictions = check_client_access hash:/nonexistent/access\n",
     "main.cf, line 16: parameter smtpd_client_restrictions: check_client_access "
     "hash:/nonexistent/access: open database /nonexistent/access.pdb"),
    ("mynetworks = 127.0.0.1/8\n",
     "main.cf, line 16: parameter mynetworks: non-null host address bits in "
     '"127.0.0.1/8"'),
])
def test_unusable_tables_refuse_start_and_check(make_instance: MakeInstance, extra: str,
                                                needle: str) -> None:
    inst = make_instance(MAIN_CF, "mynetworks = 127.0.0.1/32\n" + extra)
    check = postier("-c", str(inst.config_dir), "check", check=False)
    assert check.returncode != 0 and needle in check.stderr + check.stdout
    assert "Traceback" not in check.stderr
    started = inst.start()
    assert started.returncode != 0 and needle in started.stderr + started.stdout
    assert not inst.pids()


def test_mynetworks_file_form(make_instance: MakeInstance, workdir: Path) -> None:
    nets = workdir / "mynetworks"
    nets.write_text(f"# trusted clients\n{LISTED}/32   # the test client\n")
    inst = make_instance(MAIN_CF, f"mynetworks = 127.0.0.1/32, {nets}\n"
                                  "smtpd_client_restrictions = permit_mynetworks, reject\n")
    assert postier("-c", str(inst.config_dir), "check", check=False).returncode == 0
    assert inst.start().returncode == 0, inst.log()
    assert rcpt_reply(inst.port, LISTED) == "250 2.1.5 Ok"  # in the file: trusted
    assert rcpt_reply(inst.port, UNLISTED) == rejected("Access denied", UNLISTED)
    assert "Traceback" not in inst.log()
