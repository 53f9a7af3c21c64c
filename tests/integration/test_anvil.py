"""Client rate and concurrency limits end to end: a running postier with its anvil.

Every expected reply and log line below was first read from a throwaway Postfix 3.7
instance given the same settings (smtp-source/Python clients on loopback): the
concurrency and rate limits at connect, MAIL, RCPT, AUTH and STARTTLS, the
exceptions, the ``statistics: max …`` lines, and smtpd going on without limits
(with Postfix's warning) when anvil is not in master.cf.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from .conftest import Instance, free_port

pytestmark = pytest.mark.integration

HOST = "mx.anvil.test"
MAIN_CF = f"""\
myhostname = {HOST}
mydomain = anvil.test
mydestination = $myhostname, localhost
mynetworks = 127.0.0.0/8
local_recipient_maps =
smtpd_client_event_limit_exceptions =
smtpd_client_connection_count_limit = 2
smtpd_client_message_rate_limit = 2
smtpd_client_recipient_rate_limit = 3
smtpd_client_auth_rate_limit = 1
anvil_status_update_time = 1s
"""
ANVIL_LINE = "anvil unix - - y - 1 anvil\n"


def read_reply(f: socket.SocketIO | object) -> list[str]:
    lines = []
    while True:
        line = f.readline().decode().rstrip("\r\n")  # type: ignore[attr-defined]
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


class Client:
    """A plain SMTP client that shows every reply line (smtplib hides 421 at connect)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.greeting = read_reply(self.file)[0]

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return read_reply(self.file)[-1]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def started(make_instance, master_cf: str, extra: str = "") -> Instance:  # type: ignore[no-untyped-def]
    inst: Instance = make_instance(MAIN_CF, extra)
    inst.write_master_cf(master_cf.format(port=inst.port))
    done = inst.start()
    assert done.returncode == 0, done.stdout + done.stderr
    return inst


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for HOST and its key (readable by smtpd)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", f"/CN={HOST}"], check=True, capture_output=True)
    key.chmod(0o644)
    return cert, key


def namaddr(inst: Instance) -> str:
    """The client as smtpd names it (NAME[127.0.0.1]), from its connect line."""
    found = re.search(r"connect from (\S+\[127\.0\.0\.1\])", inst.wait_log("connect from"))
    assert found is not None
    return found.group(1)


def test_concurrency_message_recipient_and_auth_limits(make_instance) -> None:  # type: ignore[no-untyped-def]
    inst = started(make_instance, "127.0.0.1:{port} inet n - n - - smtpd\n" + ANVIL_LINE)
    service = f"127.0.0.1:{inst.port}"
    first, second = Client(inst.port), Client(inst.port)
    assert first.greeting.startswith("220 ") and second.greeting.startswith("220 ")
    third = Client(inst.port)  # one over smtpd_client_connection_count_limit = 2
    assert third.greeting == f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.1"
    third.close()
    who = namaddr(inst)
    inst.wait_log(f"warning: Connection concurrency limit exceeded: 3 from {who} "
                  f"for service {service}")
    inst.wait_log(f"disconnect from {who} commands=0/0\n")

    # smtpd_client_message_rate_limit = 2: the third MAIL in the time unit is refused,
    # and so is the next one, on another connection of the same client (one count).
    assert first.cmd("EHLO client.test").startswith("250 ")
    for _ in range(2):
        assert first.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
        assert first.cmd("RSET").startswith("250 ")
    assert first.cmd("MAIL FROM:<a@example.com>") == \
        "450 4.7.1 Error: too much mail from 127.0.0.1"
    inst.wait_log(f"warning: Message delivery request rate limit exceeded: 3 from {who} "
                  f"for service {service}")
    assert second.cmd("HELO client.test").startswith("250 ")
    assert second.cmd("MAIL FROM:<a@example.com>") == \
        "450 4.7.1 Error: too much mail from 127.0.0.1"
    inst.wait_log("Message delivery request rate limit exceeded: 4 from")

    # smtpd_client_auth_rate_limit = 1: checked before anything else about AUTH.
    assert second.cmd("AUTH PLAIN AGFhAGI=") == "503 5.5.1 Error: authentication not enabled"
    assert second.cmd("AUTH PLAIN AGFhAGI=") == \
        "450 4.7.1 Error: too many AUTH commands from 127.0.0.1"
    inst.wait_log(f"warning: AUTH command rate limit exceeded: 2 from {who} "
                  f"for service {service}")
    first.cmd("QUIT")
    second.cmd("QUIT")
    first.close()
    second.close()
    log = inst.wait_log(f"disconnect from {who} helo=1 auth=0/2 mail=0/1 quit=1")
    assert f"disconnect from {who} ehlo=1 mail=2/3 rset=2 quit=1 commands=6/7" in log

    # The connections ended: a new one is greeted again (anvil counted the disconnects).
    # (RCPT's rate needs a MAIL that passes: see the next test.)
    again = Client(inst.port)
    assert again.greeting.startswith("220 ")
    again.close()

    # anvil's peaks, every anvil_status_update_time (here 1s).
    ident = f"({service}:127.0.0.1)"
    log = inst.wait_log(f"statistics: max connection count 3 for {ident} at ")
    assert re.search(r"postfix/anvil\[\d+\]: statistics: max message rate 4/60s for "
                     + re.escape(ident) + r" at \w{3} [ \d]\d \d\d:\d\d:\d\d", log)
    assert f"statistics: max auth rate 2/60s for {ident}" in log
    assert re.search(r"statistics: max cache size 1 at ", log)


def test_recipient_and_connection_rate_limits(make_instance) -> None:  # type: ignore[no-untyped-def]
    other = free_port()
    inst = started(
        make_instance,
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o smtpd_client_message_rate_limit=0\n"
        f"127.0.0.1:{other} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/other\n"
        "  -o smtpd_client_connection_count_limit=0\n"
        "  -o smtpd_client_connection_rate_limit=2\n" + ANVIL_LINE)
    client = Client(inst.port)
    assert client.cmd("HELO client.test").startswith("250 ")
    assert client.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
    for i in range(3):
        assert client.cmd(f"RCPT TO:<u{i}@example.com>").startswith("250 ")
    for i in range(3, 5):
        assert client.cmd(f"RCPT TO:<u{i}@example.com>") == \
            "450 4.7.1 Error: too many recipients from 127.0.0.1"
    who = namaddr(inst)
    inst.wait_log(f"warning: Recipient address rate limit exceeded: 5 from {who} "
                  f"for service 127.0.0.1:{inst.port}")
    client.close()

    # smtpd_client_connection_rate_limit = 2 on the other service, counted apart.
    greetings = []
    for _ in range(4):
        c = Client(other)
        greetings.append(c.greeting)
        c.close()
    refused = f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.1"
    assert [g.startswith("220 ") for g in greetings[:2]] == [True, True]
    assert greetings[2:] == [refused, refused]
    log = inst.wait_log(f"warning: Connection rate limit exceeded: 4 from {who} "
                        f"for service 127.0.0.1:{other}")
    assert re.search(r"postfix/other/smtpd\[\d+\]: warning: Connection rate limit exceeded: "
                     f"3 from {re.escape(who)} for service 127.0.0.1:{other}", log)


def test_exceptions_are_neither_counted_nor_limited(make_instance) -> None:  # type: ignore[no-untyped-def]
    # The default exceptions are $mynetworks (127.0.0.0/8 here).
    inst = started(
        make_instance,
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o smtpd_client_event_limit_exceptions=$mynetworks\n"
        "  -o smtpd_client_connection_count_limit=1\n" + ANVIL_LINE)
    clients = [Client(inst.port) for _ in range(3)]
    assert all(c.greeting.startswith("220 ") for c in clients)
    for c in clients:
        c.close()
    inst.wait_log("disconnect from", count=3)
    assert "limit exceeded" not in inst.log()


def test_without_anvil_smtpd_goes_on_unlimited(make_instance) -> None:  # type: ignore[no-untyped-def]
    inst = started(make_instance, "127.0.0.1:{port} inet n - n - - smtpd\n")
    clients = [Client(inst.port) for _ in range(3)]
    assert all(c.greeting.startswith("220 ") for c in clients)
    for c in clients:
        c.close()
    log = inst.wait_log("warning: connect to private/anvil: No such file or directory")
    assert "warning: problem talking to server private/anvil: No such file or directory" in log
    assert "limit exceeded" not in log


def test_new_tls_session_rate_limit(make_instance, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    cert, key = self_signed(workdir)
    inst = started(
        make_instance,
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o smtpd_client_connection_count_limit=0\n"
        "  -o smtpd_client_new_tls_session_rate_limit=1\n" + ANVIL_LINE,
        f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
        "smtpd_tls_security_level = may\n")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as s:
        s.starttls(context=context)
        assert s.ehlo("client.test")[0] == 250
    who = namaddr(inst)
    # The second new session in the time unit: 421 inside TLS, then the end.
    c = Client(inst.port)
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    tls = context.wrap_socket(c.sock)
    tls.sendall(b"EHLO client.test\r\n")
    reply = tls.makefile("rb").readline().decode().rstrip()
    assert reply == f"421 4.7.0 {HOST} Error: too many new TLS sessions from {who}"
    tls.close()
    inst.wait_log(f"warning: New TLS session rate limit exceeded: 2 from {who} "
                  f"for service 127.0.0.1:{inst.port}")
    inst.wait_log(f"disconnect from {who} ehlo=1 starttls=0/1 commands=1/2")
    # From now on STARTTLS itself is refused.
    c = Client(inst.port)
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS") == f"454 4.7.0 Error: too many new TLS sessions from {who}"
    c.close()
    inst.wait_log(f"warning: Refusing STARTTLS request from {who} "
                  f"for service 127.0.0.1:{inst.port}")


def test_anvil_killed_mid_session_is_restarted_and_smtpd_carries_on(make_instance) -> None:  # type: ignore[no-untyped-def]
    inst = started(make_instance, "127.0.0.1:{port} inet n - n - - smtpd\n" + ANVIL_LINE)
    first = Client(inst.port)
    assert first.greeting.startswith("220 ")
    assert first.cmd("EHLO client.test").startswith("250 ")
    [anvil] = inst.pids("postier.anvil.anvil")
    os.kill(anvil, signal.SIGKILL)
    inst.wait_log(f"process postier.anvil.anvil pid {anvil} killed by signal 9")
    # The session goes on; its worker finds anvil gone and asks the new one.
    assert first.cmd("MAIL FROM:<a@example.com>") == "250 2.1.0 Ok"
    assert first.cmd("RCPT TO:<u@example.com>").startswith("250 ")
    assert first.cmd("QUIT").startswith("221 ")
    first.close()
    log = inst.wait_log("warning: problem talking to server private/anvil: ")
    assert "Traceback" not in log
    # The new anvil counts again: two connections, then a refused third.
    clients = [Client(inst.port) for _ in range(3)]
    assert [c.greeting[:3] for c in clients] == ["220", "220", "421"]
    for c in clients:
        c.close()


def test_new_tls_session_rate_limit_in_wrapper_mode(make_instance, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    cert, key = self_signed(workdir)
    inst = started(
        make_instance,
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o smtpd_tls_wrappermode=yes\n"
        "  -o smtpd_client_connection_count_limit=0\n"
        "  -o smtpd_client_new_tls_session_rate_limit=1\n" + ANVIL_LINE,
        f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    def first_line() -> str:
        with socket.create_connection(("127.0.0.1", inst.port), timeout=30) as raw, \
                context.wrap_socket(raw) as tls:
            return tls.makefile("rb").readline().decode().rstrip()

    assert first_line().startswith("220 ")
    who = namaddr(inst)
    # The second new session: 421 instead of the greeting, inside TLS.
    assert first_line() == f"421 4.7.0 {HOST} Error: too many new TLS sessions from {who}"
    inst.wait_log(f"warning: New TLS session rate limit exceeded: 2 from {who} "
                  f"for service 127.0.0.1:{inst.port}")
    # From now on the connection is dropped before any handshake.
    with pytest.raises((ssl.SSLError, OSError)):
        first_line()
    inst.wait_log(f"warning: Refusing TLS service request from {who} "
                  f"for service 127.0.0.1:{inst.port}")


def test_xclient_authorized_clients_are_neither_counted_nor_limited(make_instance) -> None:  # type: ignore[no-untyped-def]
    # Postfix 3.7 side by side (smtpd_client_message_rate_limit = 1): a client in
    # smtpd_authorized_xclient_hosts got 250 to MAIL in three sessions and two
    # connections past smtpd_client_connection_count_limit = 1; one only in
    # smtpd_authorized_xforward_hosts got 250 then ``450 4.7.1 Error: too much mail
    # from ADDR`` twice; after ``XCLIENT ADDR=10.0.0.5`` (not itself authorized) the
    # new client's MAILs were counted: 250, then ``450 4.7.1 Error: too much mail
    # from 10.0.0.5`` with ``Message delivery request rate limit exceeded: 2 from
    # unknown[10.0.0.5]``.
    inst = started(
        make_instance,
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o smtpd_authorized_xclient_hosts=127.0.0.1\n"
        "  -o smtpd_client_message_rate_limit=1\n"
        "  -o smtpd_client_connection_count_limit=1\n"
        "127.0.0.2:{port} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/xforward\n"
        "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8\n"
        "  -o smtpd_client_message_rate_limit=1\n" + ANVIL_LINE)
    held = [Client(inst.port) for _ in range(2)]  # over the count limit: not counted
    assert all(c.greeting.startswith("220 ") for c in held)
    for _ in range(3):
        c = Client(inst.port)
        assert c.cmd("EHLO client.test").startswith("250 ")
        assert c.cmd("MAIL FROM:<a@anvil.test>").startswith("250 ")
        c.cmd("QUIT")
        c.close()
    moved = held[0]
    assert moved.cmd("XCLIENT ADDR=10.0.0.5").startswith("220 ")
    assert moved.cmd("EHLO client.test").startswith("250 ")
    assert moved.cmd("MAIL FROM:<a@anvil.test>").startswith("250 ")
    assert moved.cmd("RSET").startswith("250 ")
    assert moved.cmd("MAIL FROM:<a@anvil.test>") == "450 4.7.1 Error: too much mail from 10.0.0.5"
    for c in held:
        c.close()
    answers = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.2", inst.port), timeout=30,
                                        source_address=("127.0.0.1", 0))
        f = sock.makefile("rb")
        read_reply(f)
        sock.sendall(b"EHLO client.test\r\n")
        read_reply(f)
        sock.sendall(b"MAIL FROM:<a@anvil.test>\r\n")
        answers.append(read_reply(f)[-1])
        f.close()
        sock.close()
    assert answers == ["250 2.1.0 Ok"] + ["450 4.7.1 Error: too much mail from 127.0.0.1"] * 2
    log = inst.log()
    assert re.search(r"warning: Message delivery request rate limit exceeded: 2 from "
                     r"\S+\[10\.0\.0\.5\] for service", log)
    assert not re.search(r"\[127\.0\.0\.1\] for service 127\.0\.0\.1:", log)
    assert "Connection concurrency limit exceeded" not in log
