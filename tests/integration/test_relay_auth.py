"""The SMTP client's STARTTLS and SASL login against an ISP-like relayhost that requires them.

``relayhost = [127.13.0.x]:2526``; the relay is ``SubmissionPeer``, a scripted server in
a thread that offers STARTTLS with a throwaway certificate (openssl, as test_tls.py)
and, once TLS is up, AUTH PLAIN LOGIN, and refuses MAIL before AUTH. The password comes
from a ``texthash:`` table or a ``hash:`` table built with ``postier postmap``.
"""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, postier
from .test_relay import MAIN_CF, send, status_line

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs root (real users, a root-only password file)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

PORT = 2526
USER, PASSWORD = "tintin@fai.test", "S3cret:with:colons"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass
class Seen:
    auth: list[str] = field(default_factory=list)  # "MECH user:password" accepted or not
    tls: bool = False
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    data: bytes = b""


class SubmissionPeer:
    """A relay on ``address:2526``: STARTTLS (when ``offer_tls``) with ``cert``/``key``,
    then AUTH PLAIN LOGIN checking ``user``/``password``; MAIL before AUTH gets 530."""

    def __init__(self, address: str, cert: Path, key: Path, *, offer_tls: bool = True,
                 user: str = USER, password: str = PASSWORD) -> None:
        self.address = address
        self.offer_tls = offer_tls
        self.user, self.password = user, password
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sessions: list[Seen] = []
        self.delivered: list[Seen] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, PORT))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.running = False
        self.sock.close()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        seen = Seen()
        with self.lock:
            self.sessions.append(seen)
        conn.settimeout(30)
        sock: socket.socket = conn
        f = sock.makefile("rwb")
        authed = False

        def say(*lines: str) -> None:
            f.write("".join(x + "\r\n" for x in lines).encode())
            f.flush()

        def read() -> str:
            return f.readline(1 << 16).decode("utf-8", "replace").rstrip("\r\n")

        try:
            say("220 smtp.fai.test ESMTP")
            while line := read():
                verb = line[:4].upper()
                if verb == "EHLO":
                    ext = (["AUTH PLAIN LOGIN"] if seen.tls else
                           ["STARTTLS"] if self.offer_tls else [])
                    lines = ["smtp.fai.test", "PIPELINING", "8BITMIME", *ext,
                             "ENHANCEDSTATUSCODES"]
                    say(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")
                elif line.upper() == "STARTTLS" and self.offer_tls and not seen.tls:
                    say("220 2.0.0 Ready to start TLS")
                    sock = self.ctx.wrap_socket(conn, server_side=True)
                    f = sock.makefile("rwb")
                    seen.tls = True
                elif verb == "AUTH":
                    words = line.split()
                    if words[1].upper() == "PLAIN":
                        _, user, password = base64.b64decode(words[2]).decode().split("\0")
                    else:
                        say("334 " + base64.b64encode(b"Username:").decode())
                        user = base64.b64decode(read()).decode()
                        say("334 " + base64.b64encode(b"Password:").decode())
                        password = base64.b64decode(read()).decode()
                    seen.auth.append(f"{words[1].upper()} {user}:{password}")
                    if (user, password) == (self.user, self.password):
                        authed = True
                        say("235 2.7.0 Authentication successful")
                    else:
                        say("535 5.7.8 Error: authentication failed: authentication failure")
                elif verb == "MAIL":
                    if not authed:
                        say("530 5.7.0 Authentication required")
                        continue
                    seen.sender = line[10:].partition(">")[0].lstrip("<")
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    seen.recipients.append(line[8:].partition(">")[0].lstrip("<"))
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    say("354 End data with <CR><LF>.<CR><LF>")
                    chunks = []
                    while (raw := f.readline(1 << 20)) not in (b".\r\n", b""):
                        chunks.append(raw)
                    seen.data = b"".join(chunks)
                    with self.lock:
                        self.delivered.append(seen)
                    say("250 2.0.0 Ok: queued as FAI1")
                elif verb == "RSET":
                    say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    return
                else:
                    say("502 5.5.2 Error: command not recognized")
        except (OSError, ValueError):
            return
        finally:
            sock.close()

    def wait(self, timeout: float = 30.0) -> Seen:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.delivered:
                    return self.delivered[0]
            time.sleep(0.05)
        raise AssertionError(f"{self.address}: nothing delivered; sessions {self.sessions}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a certificate for smtp.fai.test and 127.13.0.1-9 it signed."""
    base = tmp_path_factory.mktemp("fai-pki")
    ca_key, ca, key, csr, cert = (base / n for n in
                                  ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=fai test CA", "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=smtp.fai.test",
            "-keyout", str(key), "-out", str(csr))
    ext = base / "ext.cnf"
    ext.write_text("subjectAltName=DNS:smtp.fai.test,"
                   + ",".join(f"IP:127.13.0.{i}" for i in range(1, 10)) + "\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return {"ca": ca, "cert": cert, "key": key}


def password_table(workdir: Path, key: str, value: str, *, kind: str) -> str:
    table = workdir / f"sasl_passwd_{kind}"
    table.write_text(f"# smtp_sasl_password_maps\n{key}    {value}\n")
    table.chmod(0o600)  # root's alone, as /etc/postfix/sasl_passwd
    if kind == "hash":
        built = postier("postmap", f"hash:{table}", check=False)
        assert built.returncode == 0, built.stderr
    return f"{kind}:{table}"


def relay_instance(make_instance, address: str, extra: str) -> Instance:
    ensure_user("tintin")
    inst: Instance = make_instance(MAIN_CF, f"relayhost = [{address}]:{PORT}\n{extra}")
    result = inst.start()
    assert result.returncode == 0, (result.stderr, inst.log())
    return inst


def test_starttls_then_auth_plain_with_a_texthash_password(
        make_instance, workdir: Path, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.1", pki["cert"], pki["key"])
    try:
        # keyed by the host name (tried first), as SASL_README's [host] example
        spec = password_table(workdir, "127.13.0.1", f"{USER}:{PASSWORD}", kind="texthash")
        inst = relay_instance(make_instance, "127.13.0.1", (
            "smtp_tls_security_level = may\nsmtp_tls_loglevel = 1\n"
            "smtp_sasl_auth_enable = yes\n"
            f"smtp_sasl_password_maps = {spec}\n"
            "smtp_sasl_security_options = noanonymous\n"))
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        seen = peer.wait()
        assert seen.tls and seen.auth == [f"PLAIN {USER}:{PASSWORD}"]
        assert seen.sender == "tintin@example.com"
        assert seen.recipients == ["haddock@moulinsart.test"]
        line = status_line(inst, qid, "haddock@moulinsart.test", "sent")
        assert "relay=127.13.0.1[127.13.0.1]:2526" in line
        assert "status=sent (250 2.0.0 Ok: queued as FAI1)" in line
        log = inst.log()
        assert ("Untrusted TLS connection established to 127.13.0.1[127.13.0.1]:2526: TLSv1."
                in log), log
    finally:
        peer.close()


def test_verify_level_and_a_hash_password_keyed_by_the_relayhost_as_written(
        make_instance, workdir: Path, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.2", pki["cert"], pki["key"])
    try:
        spec = password_table(workdir, f"[127.13.0.2]:{PORT}", f"{USER}:{PASSWORD}",
                              kind="hash")
        inst = relay_instance(make_instance, "127.13.0.2", (
            "smtp_tls_security_level = verify\nsmtp_tls_loglevel = 1\n"
            f"smtp_tls_CAfile = {pki['ca']}\n"
            "smtp_sasl_auth_enable = yes\n"
            f"smtp_sasl_password_maps = {spec}\n"
            "smtp_sasl_tls_security_options = noanonymous\n"))
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        seen = peer.wait()
        assert seen.tls and seen.auth == [f"PLAIN {USER}:{PASSWORD}"]
        status_line(inst, qid, "haddock@moulinsart.test", "sent")
        assert ("Verified TLS connection established to 127.13.0.2[127.13.0.2]:2526: TLSv1."
                in inst.log())
    finally:
        peer.close()


def test_a_wrong_password_defers_with_the_servers_words(
        make_instance, workdir: Path, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.3", pki["cert"], pki["key"])
    try:
        spec = password_table(workdir, f"[127.13.0.3]:{PORT}", f"{USER}:wrong", kind="texthash")
        inst = relay_instance(make_instance, "127.13.0.3", (
            "smtp_tls_security_level = encrypt\n"
            "smtp_sasl_auth_enable = yes\n"
            f"smtp_sasl_password_maps = {spec}\n"
            "smtp_sasl_security_options = noanonymous\n"))
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        line = status_line(inst, qid, "haddock@moulinsart.test", "deferred")
        # smtp_sasl_auth_soft_bounce = yes (the default): 5.7.8 becomes 4.7.8
        assert ("relay=127.13.0.3[127.13.0.3]:2526, " in line and "dsn=4.7.8, status=deferred "
                "(SASL authentication failed; server 127.13.0.3[127.13.0.3] said: 535 5.7.8 "
                "Error: authentication failed: authentication failure)") in line, line
        assert peer.sessions[0].auth == [f"PLAIN {USER}:wrong"]
        assert not peer.delivered
    finally:
        peer.close()


def test_default_security_options_forbid_plaintext_mechanisms(
        make_instance, workdir: Path, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.5", pki["cert"], pki["key"])
    try:
        spec = password_table(workdir, "127.13.0.5", f"{USER}:{PASSWORD}", kind="texthash")
        inst = relay_instance(make_instance, "127.13.0.5", (
            "smtp_tls_security_level = may\n"
            "smtp_sasl_auth_enable = yes\n"
            f"smtp_sasl_password_maps = {spec}\n"))
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        line = status_line(inst, qid, "haddock@moulinsart.test", "deferred")
        assert ("dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate "
                "to server 127.13.0.5[127.13.0.5]: no mechanism available)") in line, line
        assert peer.sessions[0].auth == []
    finally:
        peer.close()


def test_encrypt_against_a_server_without_starttls_defers(
        make_instance, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.4", pki["cert"], pki["key"], offer_tls=False)
    try:
        inst = relay_instance(make_instance, "127.13.0.4", "smtp_tls_security_level = encrypt\n")
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        line = status_line(inst, qid, "haddock@moulinsart.test", "deferred")
        assert ("dsn=4.7.4, status=deferred (TLS is required, but was not offered by host "
                "127.13.0.4[127.13.0.4])") in line, line
        assert not peer.delivered and peer.sessions
    finally:
        peer.close()


def test_verify_with_an_untrusted_certificate_defers(
        make_instance, pki: dict[str, Path]) -> None:
    peer = SubmissionPeer("127.13.0.6", pki["cert"], pki["key"])
    try:
        inst = relay_instance(make_instance, "127.13.0.6", "smtp_tls_security_level = verify\n")
        qid = send(inst, "tintin@example.com", ["haddock@moulinsart.test"])
        line = status_line(inst, qid, "haddock@moulinsart.test", "deferred")
        assert "dsn=4.7.5, status=deferred (Server certificate not trusted)" in line, line
        assert not peer.delivered
    finally:
        peer.close()
