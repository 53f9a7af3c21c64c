"""Client certificates and SNI: fingerprints, the verify callback, chain files, SNI
contexts, the restriction rows and the texts Postfix 3.7 writes (checked side by side)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from postier.config import maincf
from postier.config.errors import ConfigError
from postier.config.settings import Config
from postier.restrictions import evaluate as rs
from postier.restrictions import lookups as lk
from postier.tables import Maps, TableError
from postier.tls import verify
from postier.tls.certs import (
    CertificateFormatError,
    check_digest,
    fingerprint,
    fingerprints,
    public_key_info,
)
from postier.tls.context import TlsSetupError, load_chain_files, load_server_tls, server_context
from postier.tls.policy import ServerTlsPolicy, TlsInfo
from postier.tls.sni import SniChains, chain_files, sni_keys

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="needs the openssl command")


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True,
                          timeout=60).stdout


class Pki:
    def __init__(self, base: Path) -> None:
        self.base = base
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=unit CA", "-keyout", str(base / "ca.key"), "-out", str(base / "ca.pem"))
        for name, cn in (("server", "mx.example.com"), ("one", "client-one"),
                         ("sni", "sni.example.org")):
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                    "-keyout", str(base / f"{name}.key"), "-out", str(base / f"{name}.csr"))
            (base / f"{name}.ext").write_text(f"subjectAltName=DNS:{cn}\n")
            openssl("x509", "-req", "-in", str(base / f"{name}.csr"), "-CA",
                    str(base / "ca.pem"), "-CAkey", str(base / "ca.key"), "-CAcreateserial",
                    "-days", "2", "-extfile", str(base / f"{name}.ext"),
                    "-out", str(base / f"{name}.pem"))
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=selfsigned", "-keyout", str(base / "self.key"),
                "-out", str(base / "self.pem"))

    def path(self, name: str) -> str:
        return str(self.base / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    return Pki(tmp_path_factory.mktemp("pki"))


def cfg(text: str) -> Config:
    return Config(maincf.parse(text, "main.cf"), {}, hostname="mx.example.com")


def policy(pki: Pki, extra: str = "") -> ServerTlsPolicy:
    return ServerTlsPolicy.from_config(cfg(
        f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {pki.path('server.pem')}\n"
        f"smtpd_tls_key_file = {pki.path('server.key')}\n"
        f"smtpd_tls_CAfile = {pki.path('ca.pem')}\nsmtpd_tls_ask_ccert = yes\n" + extra))


def handshake(server: ssl.SSLContext, cert: str | None, pki: Pki,
              server_hostname: str | None = None) -> tuple[ssl.SSLSocket, bytes]:
    """One handshake over a socket pair: the server side, and the certificate the
    client was shown (DER)."""
    a, b = socket.socketpair()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    if cert is not None:
        client.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    shown: dict[str, Any] = {}

    def run() -> None:
        with client.wrap_socket(b, server_hostname=server_hostname) as s:
            shown["der"] = s.getpeercert(binary_form=True)
            s.sendall(b"x")
            s.recv(1)

    t = threading.Thread(target=run)
    t.start()
    s = server.wrap_socket(a, server_side=True)
    assert s.recv(1) == b"x"
    s.sendall(b"y")
    t.join(10)
    return s, shown["der"]


# --- fingerprints -----------------------------------------------------------------------


@needs_openssl
def test_fingerprints_are_openssl_s(pki: Pki) -> None:
    pem = Path(pki.path("one.pem")).read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    for digest in ("sha256", "md5", "sha1"):
        out = openssl("x509", "-noout", "-fingerprint", f"-{digest}", "-in", pki.path("one.pem"))
        assert fingerprints(der, digest)[0] == out.decode().strip().split("=", 1)[1]
    pub = openssl("x509", "-in", pki.path("one.pem"), "-noout", "-pubkey")
    spki = openssl("pkey", "-pubin", "-outform", "DER", data=pub)
    assert public_key_info(der) == spki
    assert fingerprints(der)[1] == fingerprint(spki)
    assert len(fingerprints(der)[1].split(":")) == 32


def test_bad_certificates_and_digests() -> None:
    with pytest.raises(CertificateFormatError):
        public_key_info(b"\x30\x82\xff")
    with pytest.raises(CertificateFormatError):
        public_key_info(b"\x02\x01\x00")
    assert fingerprints(b"\x04\x00")[1] == ""  # no public key to be found
    assert fingerprint(b"", "md5") == "D4:1D:8C:D9:8F:00:B2:04:E9:80:09:98:EC:F8:42:7E"
    assert check_digest(" SHA256 ") == "sha256"
    with pytest.raises(ValueError, match="unsupported fingerprint digest 'crc32'"):
        check_digest("crc32")
    with pytest.raises(ConfigError, match="smtpd_tls_fingerprint_digest"):
        ServerTlsPolicy.from_config(cfg("smtpd_tls_fingerprint_digest = whirlpool9"))
    assert ServerTlsPolicy.from_config(cfg("")).fingerprint_digest == "sha256"


# --- the handshake ----------------------------------------------------------------------


@needs_openssl
def test_untrusted_certificates_are_accepted_and_said_so(pki: Pki) -> None:
    p = policy(pki, "smtpd_tls_fingerprint_digest = md5\n")
    ctx = server_context(p)
    s, _ = handshake(ctx, "self", pki)
    error = verify.verify_error(s)
    assert error == "self-signed certificate"
    info = TlsInfo.from_ssl_object(s, digest=p.fingerprint_digest, verify_error=error,
                                   ccert_asked=True)
    s.close()
    assert (info.peer_cn, info.issuer_cn, info.peer_verified) == ("selfsigned", "selfsigned",
                                                                   False)
    assert len(info.peer_fingerprint.split(":")) == 16  # md5
    assert info.trust == "Untrusted" and info.missing_ccert == "Client certificate not trusted"
    assert info.received_peer_clause() == (
        'Client CN "selfsigned", Issuer "selfsigned" (not verified)')
    s, _ = handshake(ctx, "one", pki)
    assert verify.verify_error(s) is None
    info = TlsInfo.from_ssl_object(s, verify_error=None, ccert_asked=True)
    s.close()
    assert info.peer_verified and info.trust == "Trusted" and info.missing_ccert is None
    assert info.received_peer_clause() == 'Client CN "client-one", Issuer "unit CA" (verified OK)'
    s, _ = handshake(ctx, None, pki)
    info = TlsInfo.from_ssl_object(s, verify_error=verify.verify_error(s), ccert_asked=True)
    s.close()
    assert info.trust == "Anonymous" and info.peer_fingerprint == ""
    assert info.missing_ccert == "No client certificate presented"
    assert info.received_peer_clause() == "Client did not present a certificate"


def test_req_ccert_needs_level_encrypt_and_asks() -> None:
    may = ServerTlsPolicy.from_config(cfg("smtpd_tls_security_level = may\n"
                                          "smtpd_tls_req_ccert = yes"))
    assert (may.ask_ccert, may.req_ccert) == (True, False)
    enc = ServerTlsPolicy.from_config(cfg("smtpd_tls_security_level = encrypt\n"
                                          "smtpd_tls_req_ccert = yes"))
    assert (enc.ask_ccert, enc.req_ccert) == (True, True)
    plain = TlsInfo("TLSv1.3", "X", 256)
    assert plain.received_peer_clause() == "No client certificate requested"


@needs_openssl
def test_chain_files_key_then_certificate_in_two_files(pki: Pki, tmp_path: Path) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_chain_files(ctx, (pki.path("sni.key"), pki.path("sni.pem")), "tls_server_sni_maps")
    s, der = handshake(ctx, None, pki)
    s.close()
    assert ssl.DER_cert_to_PEM_cert(der).split() == Path(pki.path("sni.pem")).read_text().split()
    wrong = tmp_path / "wrong.pem"
    wrong.write_text(Path(pki.path("one.key")).read_text() + Path(pki.path("sni.pem")).read_text())
    with pytest.raises(TlsSetupError, match=r"tls_server_sni_maps: cannot load .*does not match"):
        load_chain_files(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), (str(wrong),),
                         "tls_server_sni_maps")


# --- SNI --------------------------------------------------------------------------------


def test_sni_keys_and_values() -> None:
    assert sni_keys("A.Example.COM.") == ["a.example.com", ".example.com", ".com"]
    assert sni_keys("") == []
    assert chain_files("/a.pem, /b.key /c.pem") == ("/a.pem", "/b.key", "/c.pem")


class FakeTable:
    spec = "fake:x"
    pattern = False
    blocking = False

    def __init__(self, rows: dict[str, str], fail: bool = False) -> None:
        self.rows, self.fail = rows, fail

    def lookup(self, key: str) -> str | None:
        if self.fail:
            raise TableError("fake:x is down")
        return self.rows.get(key)


class Obj:
    context: object = None


def test_sni_chains_lookup_and_outcomes() -> None:
    built: list[tuple[str, ...]] = []
    made: dict[tuple[str, ...], Any] = {}

    def factory(files: tuple[str, ...]) -> Any:
        built.append(files)
        return made.setdefault(files, object())

    chains = SniChains(Maps("tls_server_sni_maps", [FakeTable(
        {"one.example.org": "/one.pem", ".example.net": "/k.pem /c.pem"})]), factory)
    chains.preload(["/one.pem"])
    default = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    a, b, c, d = Obj(), Obj(), Obj(), Obj()
    chains.callback(a, "ONE.example.org", default)  # type: ignore[arg-type]
    chains.callback(b, "mx.example.net", default)  # type: ignore[arg-type]
    chains.callback(c, "other.example", default)  # type: ignore[arg-type]
    chains.callback(d, None, default)  # type: ignore[arg-type]
    assert built == [("/one.pem",), ("/k.pem", "/c.pem")]  # each value built once
    assert a.context is made[("/one.pem",)] and b.context is made[("/k.pem", "/c.pem")]
    assert c.context is None and d.context is None
    out = chains.outcome(a)
    assert out is not None and (out.name, out.matched) == ("ONE.example.org", True)
    out = chains.outcome(c)
    assert out is not None and (out.matched, out.problem) == (False, "")
    assert chains.outcome(d) is None
    down = SniChains(Maps("tls_server_sni_maps", [FakeTable({}, fail=True)]), factory)
    down.callback(c, "x.example", default)  # type: ignore[arg-type]
    out = down.outcome(c)
    assert out is not None and not out.matched and "fake:x is down" in out.problem


@needs_openssl
def test_sni_picks_the_certificate_of_the_name(pki: Pki, tmp_path: Path) -> None:
    table = tmp_path / "sni"
    table.write_text(f"sni.example.org {pki.path('sni.key')} {pki.path('sni.pem')}\n")
    tls = load_server_tls(policy(pki, f"tls_server_sni_maps = texthash:{table}\n"))
    assert tls.error is None and tls.context is not None and tls.sni is not None
    s, der = handshake(tls.context, None, pki, server_hostname="sni.example.org")
    assert ssl.DER_cert_to_PEM_cert(der).split() == Path(pki.path("sni.pem")).read_text().split()
    out = tls.sni.outcome(s)
    s.close()
    assert out is not None and out.matched and out.name == "sni.example.org"
    s, der = handshake(tls.context, None, pki, server_hostname="else.example.org")
    out = tls.sni.outcome(s)
    s.close()
    assert ssl.DER_cert_to_PEM_cert(der).split() == \
        Path(pki.path("server.pem")).read_text().split()
    assert out is not None and not out.matched
    info = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, sni="sni.example.org")
    assert info.established("localhost[127.0.0.1]") == (
        "Anonymous TLS connection established from localhost[127.0.0.1] to "
        "sni.example.org: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
    # An entry whose files cannot be read is a start error naming the parameter.
    table.write_text(f"bad.example.org {tmp_path}/missing.pem\n")
    bad = load_server_tls(policy(pki, f"tls_server_sni_maps = texthash:{table}\n"))
    assert bad.context is None and bad.error is not None
    assert str(bad.error).startswith("parameter tls_server_sni_maps: cannot read")


# --- the restrictions -------------------------------------------------------------------

FP, PKFP = "AA:BB", "CC:DD"


def decide(restrictions: list[str], tables: dict[str, dict[str, str]], *,
           fingerprint: str = FP, trusted: bool = True,
           relay_clientcerts: tuple[str, ...] = ()) -> tuple[str, list[tuple[str, str]]]:
    state = rs.SmtpdState(client_address="203.0.113.5", recipient="rcpt@remote.example",
                          encrypted=True, ccert_subject="client-one", ccert_issuer="CA",
                          ccert_fingerprint=fingerprint,
                          ccert_pubkey_fingerprint=PKFP if fingerprint else "",
                          ccert_trusted=trusted)
    codes = rs.RejectCodes(relay_clientcerts=relay_clientcerts)
    steps = rs.evaluate_steps(restrictions, state, codes, stage=rs.Stage.RECIPIENT)
    asked: list[tuple[str, str]] = []
    answer: Any = None
    while True:
        try:
            lookup = steps.send(answer)
        except StopIteration as stop:
            d: rs.Decision = stop.value
            return ("OK" if d.action == "permit" else "DUNNO" if d.accepted
                    else str(d.reply)), asked
        assert isinstance(lookup, lk.TableLookup)
        asked.append((lookup.table, lookup.key))
        answer = (lk.TableFailed("down") if lookup.table == "fail:x"
                  else tables.get(lookup.table, {}).get(lookup.key))


def test_check_ccert_access_fingerprint_then_public_key() -> None:
    t = {"hash:/ccert": {FP: "REJECT self signed", PKFP: "OK"}}
    assert decide(["check_ccert_access hash:/ccert"], t) == (
        "554 5.7.1 <client-one>: Client certificate rejected: self signed",
        [("hash:/ccert", FP)])
    t = {"hash:/ccert": {PKFP: "OK"}}
    assert decide(["check_ccert_access hash:/ccert"], t) == (
        "OK", [("hash:/ccert", FP), ("hash:/ccert", PKFP)])
    # Untrusted certificates are looked up too; no certificate: nothing is asked.
    assert decide(["check_ccert_access hash:/ccert"], t, trusted=False)[0] == "OK"
    assert decide(["check_ccert_access hash:/ccert"], t, fingerprint="") == ("DUNNO", [])


def test_permit_tls_clientcerts_and_all_clientcerts() -> None:
    t = {"hash:/a": {}, "hash:/b": {PKFP: "client one"}}
    assert decide(["permit_tls_clientcerts"], t, relay_clientcerts=("hash:/a", "hash:/b")) == (
        "OK", [("hash:/a", FP), ("hash:/b", FP), ("hash:/a", PKFP), ("hash:/b", PKFP)])
    assert decide(["permit_tls_clientcerts"], {}, relay_clientcerts=("hash:/a",))[0] == "DUNNO"
    assert decide(["permit_tls_clientcerts"], t, relay_clientcerts=("hash:/b",),
                  trusted=False)[0] == "OK"
    assert decide(["permit_tls_clientcerts"], t, fingerprint="",
                  relay_clientcerts=("hash:/b",)) == ("DUNNO", [])
    assert decide(["permit_tls_clientcerts"], {}, relay_clientcerts=("fail:x",))[0] == (
        "451 4.3.0 <rcpt@remote.example>: Temporary lookup failure")
    assert decide(["permit_tls_all_clientcerts"], {})[0] == "OK"
    assert decide(["permit_tls_all_clientcerts"], {}, trusted=False)[0] == "DUNNO"
    for name in ("check_ccert_access", "permit_tls_clientcerts", "permit_tls_all_clientcerts"):
        assert name not in rs.NOT_BUILT and name in rs.RESTRICTIONS


def test_policy_service_sees_the_certificate() -> None:
    state = rs.SmtpdState(client_address="1.2.3.4", encrypted=True, ccert_subject="c",
                          ccert_issuer="ca", ccert_fingerprint=FP,
                          ccert_pubkey_fingerprint=PKFP, ccert_trusted=True,
                          encryption_protocol="TLSv1.3", encryption_cipher="TLS_X",
                          encryption_keysize=256)
    attrs = dict(rs.policy_attributes(state))
    assert (attrs["ccert_subject"], attrs["ccert_issuer"], attrs["ccert_fingerprint"],
            attrs["ccert_pubkey_fingerprint"]) == ("c", "ca", FP, PKFP)
    assert (attrs["encryption_protocol"], attrs["encryption_cipher"],
            attrs["encryption_keysize"]) == ("TLSv1.3", "TLS_X", "256")
    untrusted = dict(rs.policy_attributes(rs.with_stage(
        rs.SmtpdState(client_address="1.2.3.4", ccert_subject="c", ccert_fingerprint=FP),
        rs.Stage.RECIPIENT)))
    assert (untrusted["ccert_subject"], untrusted["ccert_fingerprint"]) == ("", FP)


def test_rows_warn_without_ask_ccert_as_postfix() -> None:
    def alerts(row: str, encrypted: bool, ask: bool) -> list[str]:
        state = rs.SmtpdState(client_address="1.2.3.4", encrypted=encrypted,
                              recipient="r@remote.example")
        d = rs.evaluate([row], state, _NoFacts(), rs.RejectCodes(smtpd_tls_ask_ccert=ask),
                        stage=rs.Stage.RECIPIENT)
        return d.alerts

    warning = '{} is requested, but "smtpd_tls_ask_ccert = no"'
    assert alerts("check_ccert_access hash:/x", False, False) == [
        warning.format("check_ccert_access")]
    assert alerts("permit_tls_clientcerts", True, False) == [
        warning.format("permit_tls_clientcerts")]
    assert alerts("permit_tls_all_clientcerts", True, False) == [
        warning.format("permit_tls_all_clientcerts")]
    assert alerts("permit_tls_clientcerts", False, False) == []  # only under TLS
    assert alerts("check_ccert_access hash:/x", True, True) == []


class _NoFacts:
    """Facts for rows that ask nothing (no certificate: nothing is looked up)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"asked {name}")
