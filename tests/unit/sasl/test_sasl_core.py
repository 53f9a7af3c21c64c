"""The pure parts of postier.sasl: mechanisms, base64, Dovecot's protocol, Cyrus's config."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from postier.sasl import cyrusconf
from postier.sasl import dovecot_protocol as dp
from postier.sasl.api import ClientInfo, Status, decode_base64, is_valid_base64
from postier.sasl.mechanisms import Mechanism, offered, parse_security_options, usable
from postier.sasl.saslauthd import parse_plain, request

PLAIN = Mechanism("PLAIN", frozenset({"plaintext"}))
LOGIN = Mechanism("LOGIN", frozenset({"plaintext"}))
ANON = Mechanism("ANONYMOUS", frozenset({"anonymous"}))
CRAM = Mechanism("CRAM-MD5", frozenset({"dictionary"}))
SECRET = Mechanism("EXTERNAL", frozenset({"private"}))


def test_security_options_filter_what_is_offered() -> None:
    mechs = [PLAIN, LOGIN, ANON, CRAM, SECRET]
    assert offered(mechs, parse_security_options(["noanonymous"])) == ["PLAIN", "LOGIN",
                                                                       "CRAM-MD5"]
    assert offered(mechs, parse_security_options(["noanonymous", "noplaintext"])) == ["CRAM-MD5"]
    assert offered(mechs, frozenset()) == ["PLAIN", "LOGIN", "ANONYMOUS", "CRAM-MD5"]
    assert offered(mechs, parse_security_options(["mutual_auth"])) == []
    # private: usable, never advertised; a filtered one is not usable either
    assert usable(mechs, frozenset(), "external")
    assert not usable(mechs, parse_security_options(["noplaintext"]), "PLAIN")
    with pytest.raises(ValueError, match="unknown SASL security option: bogus"):
        parse_security_options(["noanonymous", "bogus"])


@pytest.mark.parametrize(("text", "valid"), [
    ("AGFsaWNlAHNlY3JldA==", True), ("", True), ("YQ==", True), ("YWI=", True),
    ("!!!", False), ("YQ", False), ("YQ=", False), ("Y Q==", False), ("YQ==YQ==", False),
])
def test_base64_validity(text: str, valid: bool) -> None:
    assert is_valid_base64(text) is valid
    assert (decode_base64(text) is not None) is valid


def test_decode_base64() -> None:
    assert decode_base64("=") == b""
    assert decode_base64("AGFsaWNlAHNlY3JldA==") == b"\0alice\0secret"


def test_escape_round_trip() -> None:
    text = "a\tb\nc\rd\x01e"
    assert "\t" not in dp.escape(text) and "\n" not in dp.escape(text)
    assert dp.unescape(dp.escape(text)) == text


def test_handshake() -> None:
    assert dp.hello(42) == b"VERSION\t1\t2\nCPID\t42\n"
    h = dp.Handshake()
    for line in ["VERSION\t1\t2", "MECH\tPLAIN\tplaintext", "MECH\tlogin\tplaintext",
                 "MECH\tANONYMOUS\tanonymous", "SPID\t1", "CUID\t3", "COOKIE\tab"]:
        h.feed(line)
        assert not h.done
    h.feed("DONE")
    assert h.done
    assert [m.name for m in h.mechanisms] == ["PLAIN", "LOGIN", "ANONYMOUS"]
    assert h.mechanisms[2].flags == {"anonymous"}
    with pytest.raises(dp.ProtocolError):
        dp.Handshake().feed("VERSION\t2\t0")
    with pytest.raises(dp.ProtocolError):
        dp.Handshake().feed("MECH\tPLAIN")


def test_auth_request_carries_the_client() -> None:
    info = ClientInfo(remote_ip="192.0.2.7", remote_port=5555, local_ip="127.0.0.1",
                      local_port=25, secured=True)
    line = dp.auth_request(7, "PLAIN", info, "AGFsaWNlAHNlY3JldA==").decode()
    assert line.endswith("\n")
    words = line.rstrip("\n").split("\t")
    assert words[:5] == ["AUTH", "7", "PLAIN", "service=smtp", "nologin"]
    assert {"lip=127.0.0.1", "rip=192.0.2.7", "lport=25", "rport=5555", "secured",
            "resp=AGFsaWNlAHNlY3JldA=="} <= set(words)
    plain = dp.auth_request(8, "LOGIN", ClientInfo(remote_ip="192.0.2.7"), None).decode()
    assert "secured" not in plain and "resp=" not in plain
    assert "resp=\n" in dp.auth_request(9, "PLAIN", info, "=").decode()
    assert dp.cont_request(7, "YQ==") == b"CONT\t7\tYQ==\n"
    assert dp.cancel_request(7) == b"CANCEL\t7\n"


def test_replies() -> None:
    assert dp.parse_reply("OK\t1\tuser=alice") == (1, dp.Step(Status.OK, username="alice"))
    assert dp.parse_reply("CONT\t2\tVXNlcm5hbWU6")[1].challenge == "VXNlcm5hbWU6"
    assert dp.parse_reply("CONT\t2\t")[1].status is Status.MORE
    fail = dp.parse_reply("FAIL\t3\tuser=alice\treason=bad\\ password")[1]
    assert fail.status is Status.FAIL and fail.username == "alice"
    assert dp.parse_reply("FAIL\t4\ttemp")[1].status is Status.TEMP
    assert dp.parse_reply("FAIL\t4\tcode=temp_fail")[1].status is Status.TEMP
    # an OK that carries nologin or proxy does not let the client in
    assert dp.parse_reply("OK\t5\tuser=locked\tnologin")[1].status is Status.FAIL
    assert dp.parse_reply("OK\t5\tuser=x\tproxy\thost=h")[1].status is Status.FAIL
    for bad in ("OK", "OK\tx", "HUH\t1", "OK\t1"):
        with pytest.raises(dp.ProtocolError):
            dp.parse_reply(bad)


def test_saslauthd_request_and_plain() -> None:
    data = request(b"alice", b"pw", b"smtp", b"")
    assert data == struct.pack("!H", 5) + b"alice" + struct.pack("!H", 2) + b"pw" + \
        struct.pack("!H", 4) + b"smtp" + struct.pack("!H", 0)
    with pytest.raises(ValueError):
        request(b"a" * 70000, b"", b"", b"")
    assert parse_plain(b"\0alice\0pw") == ("", "alice", b"pw")
    assert parse_plain(b"boss\0alice\0pw") == ("boss", "alice", b"pw")
    for bad in (b"alice\0pw", b"\0\0pw", b"\0alice\0", b"a\0b\0c\0d"):
        assert parse_plain(bad) is None


def test_cyrus_conf(tmp_path: Path) -> None:
    conf = cyrusconf.parse("# c\npwcheck_method: saslauthd\nmech_list: plain LOGIN cram-md5\n"
                           "saslauthd_path: /run/x/mux\n", "f")
    assert conf.usable and conf.saslauthd_path == "/run/x/mux"
    assert conf.mechanisms() == ("PLAIN", "LOGIN")
    assert conf.problems() == ["f: mech_list: not supported with saslauthd, not offered: CRAM-MD5"]
    aux = cyrusconf.parse("pwcheck_method: auxprop\n", "g")
    assert not aux.usable and "only saslauthd" in aux.problems()[0]
    assert cyrusconf.parse("").mechanisms() == ("PLAIN", "LOGIN")
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "smtpd.conf").write_text("mech_list: login\n")
    loaded = cyrusconf.load("smtpd", f"{first}:{second}")
    assert loaded.file == str(second / "smtpd.conf") and loaded.mechanisms() == ("LOGIN",)
    assert cyrusconf.load("other", str(first)).file is None
    assert cyrusconf.directories("") == cyrusconf.DEFAULT_DIRECTORIES
