"""TLS on the server, end to end: STARTTLS, smtps, level encrypt, the injection, -o per service.

Each test makes its own throwaway CA and server certificate with the openssl command;
the server key is root's alone (mode 0600), so smtpd must read it before dropping to
mail_owner. Clients: raw sockets, smtplib, swaks.
"""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import DATA, ROOT, ensure_user, postier

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs root (root-only key, real users)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

HOST = "tintin.example.com"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pki:
    """A CA, a server certificate for tintin.example.com it signed, and a stray key."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = base / "ca.key", base / "ca.pem"
        self.key, self.cert = base / "server.key", base / "server.pem"
        self.other_key = base / "other.key"
        csr = base / "server.csr"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=postier test CA", "-keyout", str(self.ca_key), "-out", str(self.ca))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
                "-keyout", str(self.key), "-out", str(csr))
        ext = base / "ext.cnf"
        ext.write_text(f"subjectAltName=DNS:{HOST},DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(self.cert))
        openssl("genrsa", "-out", str(self.other_key), "2048")
        for k in (self.key, self.other_key, self.ca_key):
            k.chmod(0o600)  # root's alone, as /etc/ssl/private keys are

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = False  # the tests connect to 127.0.0.1 by address
        return ctx


@pytest.fixture
def pki(workdir: Path) -> Pki:
    return Pki(workdir / "pki")


def tls_settings(pki: Pki, level: str = "may") -> str:
    return (f"smtpd_tls_cert_file = {pki.cert}\nsmtpd_tls_key_file = {pki.key}\n"
            f"smtpd_tls_security_level = {level}\nsmtpd_tls_loglevel = 1\n"
            "smtpd_tls_received_header = yes\nmailbox_command =\n")


class Client:
    """A line-oriented SMTP client on a raw socket that can switch to TLS."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock: socket.socket = tls.wrap_socket(raw) if tls is not None else raw
        self.buf = b""
        self.greeting = self.reply()

    def reply(self) -> str:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionError(f"closed; read so far: {lines!r} {self.buf!r}")
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\n".join(lines)

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert not self.buf, f"bytes after 220: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock)

    def close(self) -> None:
        self.sock.close()


def started(make_instance, tutorial_main_cf: str, extra: str, master_cf: str | None = None):  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, extra)
    if master_cf is not None:
        inst.write_master_cf(master_cf.format(port=inst.port))
    done = inst.start()
    assert done.returncode == 0, done.stdout + done.stderr + inst.log()
    return inst


def test_starttls_offered_then_not_and_received_header(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    inst = started(make_instance, tutorial_main_cf, tls_settings(pki))
    c = Client(inst.port)
    assert "250-STARTTLS" in c.cmd("EHLO milou.example.com")
    assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    c.starttls(pki.client_context())
    ehlo = c.cmd("EHLO milou.example.com")
    assert ehlo.startswith("250-tintin.example.com") and "STARTTLS" not in ehlo
    assert c.cmd("STARTTLS") == "554 5.5.1 Error: TLS already active"
    c.cmd("QUIT")
    c.close()
    # smtplib, certificate verified against the test CA
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
        s.ehlo("milou.example.com")
        assert s.has_extn("starttls")
        s.starttls(context=pki.client_context())
        s.ehlo("milou.example.com")
        assert not s.has_extn("starttls")
        s.sendmail("haddock@example.com", ["tintin@example.com"], b"Subject: tls\r\n\r\nhello\r\n")
    log = inst.wait_log("status=sent")
    assert ("Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with "
            "cipher TLS_") in log
    box = inst.mailbox("tintin").read_text()
    assert "\t(using TLSv1.3 with cipher TLS_" in box
    assert "with ESMTPS id" in box
    assert "starttls=1" in log and "starttls=1/2" in log  # the refused second one


def test_plaintext_pipelined_after_starttls_is_discarded(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    # By default (smtpd_forbid_unauth_pipelining = yes) the injection ends the session
    # before any TLS: commands pipelined behind STARTTLS break SMTP's synchronization.
    guarded = started(make_instance, tutorial_main_cf, tls_settings(pki))
    c = Client(guarded.port)
    c.cmd("EHLO milou.example.com")
    c.sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<tintin@example.com>\r\n")
    assert c.reply() == "554 5.5.0 Error: SMTP protocol synchronization"
    c.close()
    # Without that guard, the plaintext behind STARTTLS is discarded, never answered.
    inst = started(make_instance, tutorial_main_cf,
                   tls_settings(pki) + "smtpd_forbid_unauth_pipelining = no\n")
    c = Client(inst.port)
    c.cmd("EHLO milou.example.com")
    # One packet: STARTTLS and a plaintext MAIL an attacker in the path added behind it.
    c.sock.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<tintin@example.com>\r\n")
    assert c.reply() == "220 2.0.0 Ready to start TLS"
    time.sleep(0.3)  # give the server every chance to (wrongly) answer the injected lines
    c.sock.setblocking(False)
    try:
        early = c.sock.recv(4096)
    except BlockingIOError:
        early = b""
    c.sock.setblocking(True)
    c.sock.settimeout(20)
    assert early == b""
    c.starttls(pki.client_context())
    # Inside TLS: no reply to the injected commands is pending, and no transaction exists.
    assert c.cmd("EHLO milou.example.com").startswith("250-tintin.example.com")
    assert c.cmd("RCPT TO:<tintin@example.com>") == "503 5.5.1 Error: need MAIL command"
    assert c.cmd("QUIT") == "221 2.0.0 Bye"
    c.close()
    log = inst.wait_log("disconnect from")
    # The injected bytes appear only in the pipelining warning (as Postfix logs them),
    # never as a command that was acted on.
    assert "improper command pipelining after STARTTLS" in log
    acted = [line for line in log.splitlines() if "improper command pipelining" not in line]
    assert not [line for line in acted if "evil@example.net" in line], log
    assert "mail=" not in log.split("disconnect from", 1)[1].splitlines()[0]


def test_tutorial_master_cf_submission_and_smtps(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    # The tutorial's master.cf lines verbatim, each service on its own loopback port.
    lines = (DATA / "tutorial" / "master.cf").read_text()
    smtp_port = sub_port = smtps_port = 0

    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    smtp_port, sub_port, smtps_port = free(), free(), free()
    master_cf = (lines.replace("smtp       inet", f"127.0.0.1:{smtp_port} inet")
                 .replace("submission inet", f"127.0.0.1:{sub_port} inet")
                 .replace("smtps      inet", f"127.0.0.1:{smtps_port} inet"))
    # A main.cf with the certificate but no level: smtpd_enforce_tls decides (the tutorial).
    extra = (f"smtpd_tls_cert_file = {pki.cert}\nsmtpd_tls_key_file = {pki.key}\n"
             "smtpd_tls_loglevel = 1\nmailbox_command =\n")
    inst = started(make_instance, tutorial_main_cf, extra, master_cf)
    # smtp: no TLS offered (no level, smtpd_use_tls = no)
    c = Client(smtp_port)
    assert "STARTTLS" not in c.cmd("EHLO milou.example.com")
    assert c.cmd("STARTTLS") == "502 5.5.1 Error: command not implemented"
    c.close()
    # submission: -o smtpd_enforce_tls=yes
    c = Client(sub_port)
    assert "250-STARTTLS" in c.cmd("EHLO milou.example.com")
    assert c.cmd("MAIL FROM:<haddock@example.com>") == (
        "530 5.7.0 Must issue a STARTTLS command first")
    assert c.cmd("RCPT TO:<tintin@example.com>") == "530 5.7.0 Must issue a STARTTLS command first"
    assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
    c.starttls(pki.client_context())
    c.cmd("EHLO milou.example.com")
    assert c.cmd("MAIL FROM:<haddock@example.com>") == "250 2.1.0 Ok"
    # -o smtpd_client_restrictions=permit_sasl_authenticated,reject: no AUTH yet, so
    # even a client in mynetworks is refused (the restriction is this service's alone).
    assert c.cmd("RCPT TO:<tintin@example.com>") == (
        "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied")
    c.close()
    # smtps: TLS at connect, then the banner
    with smtplib.SMTP_SSL("127.0.0.1", smtps_port, timeout=20,
                          context=pki.client_context()) as s:
        s.ehlo("milou.example.com")
        assert not s.has_extn("starttls")
        s.sendmail("haddock@example.com", ["tintin@example.com"], b"Subject: 465\r\n\r\nhi\r\n")
    inst.wait_log("status=sent")
    assert "Subject: 465" in inst.mailbox("tintin").read_text()
    # smtps: a plaintext client gets no banner, only a failed handshake
    raw = socket.create_connection(("127.0.0.1", smtps_port), timeout=20)
    raw.sendall(b"EHLO milou.example.com\r\n")
    got = b""
    while True:
        try:
            data = raw.recv(4096)
        except ConnectionResetError:
            break
        if not data:
            break
        got += data
    raw.close()
    assert not got.startswith(b"220")
    log = inst.wait_log("SSL_accept error from localhost[127.0.0.1]")
    assert "Traceback" not in log and "error:" not in log


def test_o_overrides_per_service_syslog_name_and_references(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    # Debian's stock commented submission form, with a $name reference to main.cf.
    master_cf = (
        "127.0.0.1:{port} inet n - n - - smtpd\n"
        "127.0.0.1:{sub} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_tls_security_level=encrypt\n"
        "  -o smtpd_client_restrictions=$mua_client_restrictions\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        sub = int(s.getsockname()[1])
    extra = tls_settings(pki) + "mua_client_restrictions = permit_sasl_authenticated, reject\n"
    ensure_user("tintin")
    inst = make_instance(tutorial_main_cf, extra)
    inst.write_master_cf(master_cf.format(port=inst.port, sub=sub))
    done = inst.start()
    assert done.returncode == 0, done.stdout + done.stderr + inst.log()
    # port 25-like: may, and the tutorial's own client restrictions (mynetworks permitted)
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=20) as s:
        s.ehlo("milou.example.com")
        assert s.mail("haddock@example.com")[0] == 250
        assert s.rcpt("tintin@example.com")[0] == 250
    # submission: encrypt, its own restriction list through $mua_client_restrictions
    c = Client(sub)
    c.cmd("EHLO milou.example.com")
    assert c.cmd("MAIL FROM:<haddock@example.com>").startswith("530 5.7.0")
    c.cmd("STARTTLS")
    c.starttls(pki.client_context())
    c.cmd("EHLO milou.example.com")
    c.cmd("MAIL FROM:<haddock@example.com>")
    assert c.cmd("RCPT TO:<tintin@example.com>").startswith("554 5.7.1 <localhost[127.0.0.1]>")
    c.cmd("QUIT")
    c.close()
    log = inst.wait_log("postfix/submission/smtpd[", count=3)
    sub_lines = [ln for ln in log.splitlines() if "postfix/submission/smtpd[" in ln]
    assert any("Anonymous TLS connection established" in ln for ln in sub_lines)
    assert any("reject: RCPT from localhost[127.0.0.1]" in ln for ln in sub_lines)
    assert any("postfix/smtpd[" in ln and "connect from" in ln for ln in log.splitlines())


def test_handshake_timeout_and_garbage_on_smtps(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    master_cf = ("127.0.0.1:{port} inet n - n - - smtpd\n"
                 "  -o smtpd_tls_wrappermode=yes -o smtpd_starttls_timeout=2s\n")
    inst = started(make_instance, tutorial_main_cf, tls_settings(pki), master_cf)
    silent = socket.create_connection(("127.0.0.1", inst.port), timeout=20)
    t0 = time.monotonic()
    assert silent.recv(10) == b""  # the server gives up and closes, having sent nothing
    assert 1.5 < time.monotonic() - t0 < 10
    silent.close()
    inst.wait_log("timeout after CONNECT from localhost[127.0.0.1]")
    garbage = socket.create_connection(("127.0.0.1", inst.port), timeout=20)
    garbage.sendall(bytes(range(256)) * 4)
    with pytest.raises(OSError):
        while garbage.recv(4096):
            pass
        raise ConnectionResetError  # a clean close is fine too
    garbage.close()
    log = inst.wait_log("disconnect from", count=2)
    assert log.count("SSL_accept error from localhost[127.0.0.1]") == 1
    assert "Traceback" not in log and "error:" not in log
    # The slots are free: a real client is served at once.
    with smtplib.SMTP_SSL("127.0.0.1", inst.port, timeout=20, context=pki.client_context()) as s:
        assert s.noop()[0] == 250


@pytest.mark.skipif(shutil.which("swaks") is None, reason="needs swaks")
def test_swaks_starttls_and_tlsc(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        smtps = int(s.getsockname()[1])
    master_cf = ("127.0.0.1:{port} inet n - n - - smtpd\n"
                 f"127.0.0.1:{smtps} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n")
    inst = started(make_instance, tutorial_main_cf, tls_settings(pki), master_cf)
    for port, mode in ((inst.port, "--tls"), (smtps, "--tlsc")):
        done = subprocess.run(
            ["swaks", "--server", "127.0.0.1", "--port", str(port), mode,
             "--from", "haddock@example.com", "--to", "tintin@example.com",
             "--helo", "milou.example.com", "--header", f"Subject: swaks {mode}"],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "TLS started" in done.stdout
    inst.wait_log("status=sent", count=2)
    box = inst.mailbox("tintin").read_text()
    assert "Subject: swaks --tls" in box and "Subject: swaks --tlsc" in box


def check_of(make_instance, tutorial_main_cf, extra: str, master_cf: str):  # type: ignore[no-untyped-def]
    inst = make_instance(tutorial_main_cf, extra)
    inst.write_master_cf(master_cf.format(port=inst.port))
    return inst, postier("-c", str(inst.config_dir), "check", check=False)


def test_certificate_problems_are_start_errors_naming_the_parameter(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, pki, workdir
) -> None:
    encrypt = "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt\n"
    missing = workdir / "nonexistent.pem"
    inst, done = check_of(make_instance, tutorial_main_cf,
                          f"smtpd_tls_cert_file = {missing}\n", encrypt)
    assert done.returncode != 0
    assert "parameter smtpd_tls_cert_file" in done.stderr + done.stdout
    assert "No such file or directory" in done.stderr + done.stdout
    start = inst.start()
    assert start.returncode != 0 and "smtpd_tls_cert_file" in start.stdout + start.stderr
    inst, done = check_of(make_instance, tutorial_main_cf,
                          f"smtpd_tls_cert_file = {pki.cert}\n"
                          f"smtpd_tls_key_file = {pki.other_key}\n",
                          "127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes\n")
    assert done.returncode != 0
    out = done.stderr + done.stdout
    assert "parameter smtpd_tls_key_file" in out and "does not match" in out


def test_missing_snakeoil_at_level_may_warns_and_answers_454(  # type: ignore[no-untyped-def]
    make_instance, tutorial_main_cf, workdir
) -> None:
    # Debian's default main.cf lines, with the snakeoil files absent: Postfix starts,
    # announces STARTTLS and answers it 454; so does postier, with a warning.
    snakeoil = workdir / "ssl-cert-snakeoil.pem"
    extra = (f"smtpd_tls_cert_file = {snakeoil}\n"
             f"smtpd_tls_key_file = {workdir / 'ssl-cert-snakeoil.key'}\n"
             "smtpd_tls_security_level = may\n")
    inst = started(make_instance, tutorial_main_cf, extra)
    c = Client(inst.port)
    assert "250-STARTTLS" in c.cmd("EHLO milou.example.com")
    assert c.cmd("STARTTLS") == "454 4.7.0 TLS not available due to local problem"
    assert c.cmd("MAIL FROM:<haddock@example.com>") == "250 2.1.0 Ok"
    c.close()
    assert "parameter smtpd_tls_cert_file: cannot read certificate file" in inst.log()
