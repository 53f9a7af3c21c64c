"""TLS client certificates and SNI on the server, end to end, as Postfix 3.7 does them.

smtpd_tls_ask_ccert with permit_tls_clientcerts/relay_clientcerts, check_ccert_access,
permit_tls_all_clientcerts, smtpd_tls_req_ccert at level encrypt, tls_server_sni_maps.
Each test makes its own CA, server, client and SNI certificates with the openssl command
(keys root's alone). Replies, log lines and Received: clauses are Postfix 3.7's, taken
side by side from a throwaway Postfix instance with the same settings.
"""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, ensure_user

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="needs root (root-only keys, real users)"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

HOST = "tintin.example.com"
CLIENT = "localhost[127.0.0.1]"
# Not in mynetworks: relaying is decided by the client certificate alone.
MAIN_CF = f"""myhostname = {HOST}
mydomain = example.com
mydestination = example.com, {HOST}, localhost
mynetworks = 10.9.9.0/24
"""


def openssl(*args: str) -> str:
    done = subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60,
                          text=True)
    return done.stdout


class Pki:
    """A CA; the server's certificate; client certificates it signed (``one``, ``two``);
    a self-signed client certificate (``self``); two SNI names' certificates."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.ca = base / "ca.pem"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=postier test CA", "-keyout", str(base / "ca.key"),
                "-out", str(self.ca))
        for name, cn in (("server", HOST), ("one", "client-one"), ("two", "client-two"),
                         ("sni1", "one.example.org"), ("sni2", "two.example.org")):
            self.signed(name, cn)
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=selfsigned", "-keyout", str(base / "self.key"),
                "-out", str(base / "self.pem"))
        for key in base.glob("*.key"):
            key.chmod(0o600)  # root's alone: smtpd reads them before dropping privileges

    def signed(self, name: str, cn: str) -> None:
        b = self.base
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", str(b / f"{name}.key"), "-out", str(b / f"{name}.csr"))
        (b / f"{name}.ext").write_text(f"subjectAltName=DNS:{cn}\n")
        openssl("x509", "-req", "-in", str(b / f"{name}.csr"), "-CA", str(self.ca),
                "-CAkey", str(b / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(b / f"{name}.ext"), "-out", str(b / f"{name}.pem"))

    def pem(self, name: str) -> Path:
        return self.base / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.base / f"{name}.key"

    def fingerprint(self, name: str) -> str:
        """openssl's sha256 fingerprint, as postconf(5) tells administrators to take it."""
        out = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(self.pem(name)))
        return out.strip().split("=", 1)[1]

    def pubkey_fingerprint(self, name: str) -> str:
        """postconf(5)'s recipe: the public key in DER, then its sha256 digest."""
        pub = subprocess.run(["openssl", "x509", "-in", str(self.pem(name)), "-noout",
                              "-pubkey"], check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                             check=True, capture_output=True).stdout
        out = subprocess.run(["openssl", "dgst", "-sha256", "-c"], input=der, check=True,
                             capture_output=True).stdout
        return out.decode().strip().split("= ", 1)[1].upper()

    def client(self, cert: str | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if cert is not None:
            ctx.load_cert_chain(str(self.pem(cert)), str(self.key(cert)))
        return ctx


@pytest.fixture
def pki(workdir: Path) -> Pki:
    return Pki(workdir / "pki")


def settings(pki: Pki, extra: str = "") -> str:
    return (f"smtpd_tls_cert_file = {pki.pem('server')}\n"
            f"smtpd_tls_key_file = {pki.key('server')}\n"
            f"smtpd_tls_CAfile = {pki.ca}\nsmtpd_tls_security_level = may\n"
            "smtpd_tls_ask_ccert = yes\nsmtpd_tls_loglevel = 1\n"
            "smtpd_tls_received_header = yes\nmailbox_command =\n" + extra)


def started(make_instance, extra: str, master_cf: str | None = None):  # type: ignore[no-untyped-def]
    ensure_user("tintin")
    inst = make_instance(MAIN_CF, extra)
    if master_cf is not None:
        inst.write_master_cf(master_cf.format(port=inst.port))
    done = inst.start()
    assert done.returncode == 0, done.stdout + done.stderr + inst.log()
    return inst


def session(port: int, ctx: ssl.SSLContext, server_hostname: str | None = None
            ) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    s.ehlo("milou.example.com")
    if server_hostname is not None:
        s._host = server_hostname  # smtplib's SNI name for starttls()
    assert s.starttls(context=ctx)[0] == 220
    s.ehlo("milou.example.com")
    return s


def relay_reply(port: int, ctx: ssl.SSLContext) -> tuple[int, bytes]:
    s = session(port, ctx)
    try:
        assert s.mail("milou@example.com")[0] == 250
        return s.rcpt("haddock@remote.test")
    finally:
        s.quit()


def test_permit_tls_clientcerts_relays_listed_certificates_only(  # type: ignore[no-untyped-def]
    make_instance, pki
) -> None:
    table = pki.base / "relay_clientcerts"
    table.write_text(f"{pki.fingerprint('one')} client-one\n")
    inst = started(make_instance, settings(pki, (
        f"relay_clientcerts = texthash:{table}\n"
        "smtpd_relay_restrictions = permit_mynetworks, permit_tls_clientcerts, "
        "reject_unauth_destination\n")))
    assert relay_reply(inst.port, pki.client("one")) == (250, b"2.1.5 Ok")
    denied = (554, b"5.7.1 <haddock@remote.test>: Relay access denied")
    assert relay_reply(inst.port, pki.client("two")) == denied  # signed by the CA, not listed
    assert relay_reply(inst.port, pki.client(None)) == denied
    log = inst.wait_log("disconnect from", count=3)
    assert (f"Trusted TLS connection established from {CLIENT}: TLSv1.3 with cipher TLS_"
            in log)
    assert f"Anonymous TLS connection established from {CLIENT}: TLSv1.3" in log
    assert (f"NOQUEUE: reject: RCPT from {CLIENT}: 554 5.7.1 <haddock@remote.test>: Relay "
            "access denied; from=<milou@example.com> to=<haddock@remote.test> proto=ESMTP "
            "helo=<milou.example.com>") in log
    # The Received: header names the certificate, as Postfix 3.7's smtpd.
    with session(inst.port, pki.client("one")) as s:
        s.sendmail("milou@example.com", ["tintin@example.com"], b"Subject: one\r\n\r\nhi\r\n")
    with session(inst.port, pki.client(None)) as s:
        s.sendmail("milou@example.com", ["tintin@example.com"], b"Subject: none\r\n\r\nhi\r\n")
    inst.wait_log("status=sent", count=2)
    box = inst.mailbox("tintin").read_text()
    assert ('\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\n'
            '\t(Client CN "client-one", Issuer "postier test CA" (verified OK))\n'
            f"\tby {HOST} (Postfix) with ESMTPS id") in box
    assert ("(256/256 bits))\n\t(Client did not present a certificate)\n"
            f"\tby {HOST}") in box


def test_check_ccert_access_by_fingerprint_and_public_key(  # type: ignore[no-untyped-def]
    make_instance, pki
) -> None:
    table = pki.base / "ccert_access"
    # A self-signed (untrusted) certificate by its fingerprint; client-two by its key.
    table.write_text(f"{pki.fingerprint('self')} REJECT self signed\n"
                     f"{pki.pubkey_fingerprint('two')} OK\n")
    inst = started(make_instance, settings(pki, (
        f"smtpd_relay_restrictions = permit_mynetworks, check_ccert_access "
        f"texthash:{table}, reject_unauth_destination\n")))
    assert relay_reply(inst.port, pki.client("two")) == (250, b"2.1.5 Ok")
    assert relay_reply(inst.port, pki.client("self")) == (
        554, b"5.7.1 <selfsigned>: Client certificate rejected: self signed")
    assert relay_reply(inst.port, pki.client("one")) == (
        554, b"5.7.1 <haddock@remote.test>: Relay access denied")
    log = inst.wait_log("disconnect from", count=3)
    # Postfix 3.7 asks for the certificate and completes the handshake (it names the
    # verification failure only where smtpd_tls_req_ccert requires a trusted one).
    assert f"Untrusted TLS connection established from {CLIENT}: TLSv1.3" in log
    assert "certificate verification failed" not in log
    assert (f"NOQUEUE: reject: RCPT from {CLIENT}: 554 5.7.1 <selfsigned>: Client "
            "certificate rejected: self signed; from=<milou@example.com> "
            "to=<haddock@remote.test> proto=ESMTP helo=<milou.example.com>") in log
    # check_ccert_access OK: the message is taken, its certificate named in Received:.
    with session(inst.port, pki.client("two")) as s:
        s.sendmail("milou@example.com", ["tintin@example.com"], b"Subject: two\r\n\r\nhi\r\n")
    inst.wait_log("status=sent")
    assert '\t(Client CN "client-two", Issuer "postier test CA" (verified OK))\n' in \
        inst.mailbox("tintin").read_text()


def test_permit_tls_all_clientcerts_needs_a_trusted_certificate(  # type: ignore[no-untyped-def]
    make_instance, pki
) -> None:
    inst = started(make_instance, settings(pki, (
        "smtpd_relay_restrictions = permit_tls_all_clientcerts, reject_unauth_destination\n")))
    assert relay_reply(inst.port, pki.client("two")) == (250, b"2.1.5 Ok")
    denied = (554, b"5.7.1 <haddock@remote.test>: Relay access denied")
    assert relay_reply(inst.port, pki.client("self")) == denied
    assert relay_reply(inst.port, pki.client(None)) == denied
    # A certificate that did not verify is named "not verified" in Received:.
    with session(inst.port, pki.client("self")) as s:
        s.sendmail("milou@example.com", ["tintin@example.com"], b"Subject: self\r\n\r\nhi\r\n")
    inst.wait_log("status=sent")
    assert '\t(Client CN "selfsigned", Issuer "selfsigned" (not verified))\n' in \
        inst.mailbox("tintin").read_text()


def req_ccert_reply(port: int, ctx: ssl.SSLContext) -> str:
    """What the server says right after the handshake (nothing is sent before it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
        f = raw.makefile("rb")
        f.readline()
        raw.sendall(b"EHLO milou.example.com\r\n")
        while f.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"EHLO milou.example.com\r\n")
            return tls.recv(4096).decode().split("\r\n")[0]


def test_req_ccert_with_encrypt_refuses_clients_without_a_trusted_certificate(  # type: ignore[no-untyped-def]
    make_instance, pki
) -> None:
    master = ("127.0.0.1:{port} inet n - n - - smtpd -o smtpd_tls_security_level=encrypt "
              "-o smtpd_tls_req_ccert=yes\n")
    inst = started(make_instance, settings(pki), master)
    assert req_ccert_reply(inst.port, pki.client(None)) == (
        f"421 4.7.1 {HOST} Error: No client certificate presented")
    assert req_ccert_reply(inst.port, pki.client("self")) == (
        f"421 4.7.1 {HOST} Error: Client certificate not trusted")
    assert req_ccert_reply(inst.port, pki.client("one")).startswith(f"250-{HOST}")
    log = inst.wait_log("disconnect from", count=3)
    assert f"NOQUEUE: abort: TLS from {CLIENT}: No client certificate presented" in log
    assert (f"certificate verification failed for {CLIENT}: self-signed certificate\n"
            in log)
    assert f"NOQUEUE: abort: TLS from {CLIENT}: Client certificate not trusted" in log
    # Postfix's disconnect line for a refused client: the STARTTLS counted, nothing after.
    assert log.count(f"disconnect from {CLIENT} ehlo=1 starttls=1 commands=2") == 2
    assert f"Trusted TLS connection established from {CLIENT}: TLSv1.3" in log


def test_sni_names_pick_their_certificates(make_instance, pki) -> None:  # type: ignore[no-untyped-def]
    chain = pki.base / "sni1.chain"  # key then certificate in one file (root's alone)
    chain.write_text(pki.key("sni1").read_text() + pki.pem("sni1").read_text())
    chain.chmod(0o600)
    table = pki.base / "sni"
    table.write_text(f"one.example.org {chain}\n"
                     f"two.example.org {pki.key('sni2')}, {pki.pem('sni2')}\n")
    inst = started(make_instance, settings(pki, f"tls_server_sni_maps = texthash:{table}\n"))
    for name in ("one.example.org", "two.example.org"):
        verified = ssl.create_default_context(cafile=str(pki.ca))  # checks server_hostname
        with session(inst.port, verified, server_hostname=name) as s:
            sock = s.sock
            assert isinstance(sock, ssl.SSLSocket)
            subject = dict(x[0] for x in sock.getpeercert()["subject"])
            assert subject["commonName"] == name
    # An unknown name gets the default chain (the server's own certificate).
    with session(inst.port, pki.client(None), server_hostname="other.example") as s:
        sock = s.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        assert ssl.DER_cert_to_PEM_cert(der).split() == pki.pem("server").read_text().split()
    log = inst.wait_log("disconnect from", count=3)
    assert (f"Anonymous TLS connection established from {CLIENT} to one.example.org: "
            "TLSv1.3 with cipher") in log
    assert f"established from {CLIENT} to two.example.org: TLSv1.3" in log
    assert f"TLS SNI other.example from {CLIENT} not matched, using default chain" in log
