"""Tests of the relay and tls scenarios' pure parts: main.cf and master.cf writers, the
smtp-sink counter parser, Dovecot's configuration, and the STARTTLS+AUTH client's helpers
(no servers started)."""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load(name: str, file: str) -> ModuleType:
    path = Path(__file__).resolve().parents[1] / file
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


run = sys.modules.get("bench_run") or _load("bench_run", "run.py")
client = _load("bench_auth_client", "auth_client.py")


def test_scenario_main_cf_relay_points_relayhost_at_the_sink() -> None:
    cf = run.scenario_main_cf("relay", sink_port=2600)
    assert cf == {"relayhost": f"[{run.SINK_ADDRESS}]:2600"}
    # the sink's address is not local, and mynetworks lets smtp-source relay
    assert run.RELAY_RECIPIENT.split("@")[1] not in run.common_main_cf()["mydestination"]
    assert run.SINK_ADDRESS.startswith("127.")
    assert run.common_main_cf()["mynetworks"] == "127.0.0.0/8"
    with pytest.raises(ValueError):
        run.scenario_main_cf("relay")


def test_scenario_main_cf_tls_names_certificate_and_dovecot_socket() -> None:
    cf = run.scenario_main_cf("tls", tls_dir="/tmp/b/tls")
    assert cf["smtpd_tls_cert_file"] == "/tmp/b/tls/cert.pem"
    assert cf["smtpd_tls_key_file"] == "/tmp/b/tls/key.pem"
    assert (cf["smtpd_sasl_type"], cf["smtpd_sasl_path"]) == ("dovecot", "private/auth")
    assert run.scenario_main_cf("local") == {}
    with pytest.raises(ValueError):
        run.scenario_main_cf("tls")
    with pytest.raises(ValueError):
        run.scenario_main_cf("carrier-pigeon")


def test_main_cf_sections_render_the_scenario_between_common_and_paths() -> None:
    text = run.render_main_cf(run.common_main_cf(), run.scenario_main_cf("relay", 2600),
                              run.instance_main_cf("/tmp/x/postier"))
    lines = text.splitlines()
    assert f"relayhost = [{run.SINK_ADDRESS}]:2600" in lines
    assert "relayhost =" not in lines  # common's empty relayhost is overridden


def test_submission_options_demand_tls_and_authentication() -> None:
    opts = dict(run.submission_options())
    assert opts["smtpd_tls_security_level"] == "encrypt"
    assert opts["smtpd_sasl_auth_enable"] == "yes"
    assert opts["smtpd_client_restrictions"] == "permit_sasl_authenticated,reject"


DEBIAN_SMTP = """\
smtp      inet  n       -       y       -       -       smtpd
  -o smtpd_sasl_auth_enable=no
pickup    unix  n       -       y       60      1       pickup
"""


def test_rewrite_master_cf_gives_the_listen_service_its_options() -> None:
    out = run.rewrite_master_cf(DEBIAN_SMTP, "127.0.0.1:2525",
                                [("smtpd_tls_security_level", "encrypt"), ("a", "b,c")])
    lines = out.splitlines()
    i = lines.index("127.0.0.1:2525 inet n - n - - smtpd")
    assert lines[i + 1:i + 3] == ["  -o smtpd_tls_security_level=encrypt", "  -o a=b,c"]
    assert "#  -o smtpd_sasl_auth_enable=no" in lines  # the packaged option is replaced
    assert "pickup unix n - n 60 1 pickup" in lines
    # without options the packaged continuation lines stay as they were
    plain = run.rewrite_master_cf(DEBIAN_SMTP, "127.0.0.1:2525").splitlines()
    assert "  -o smtpd_sasl_auth_enable=no" in plain


def test_minimal_master_cf_carries_options_and_relays() -> None:
    text = run.minimal_master_cf("127.0.0.1:2525", [("smtpd_tls_auth_only", "yes")])
    assert text.splitlines() == [
        "127.0.0.1:2525 inet n - n - - smtpd",
        "  -o smtpd_tls_auth_only=yes",
        "local unix - n n - - local",
        "smtp unix - - n - - smtp",
    ]


def test_parse_sink_counters_takes_the_last_complete_record() -> None:
    text = "sess=1 quit=0 mesg=1\rsess=2 quit=1 mesg=2\rsess=3 quit=2 mes"
    assert run.parse_sink_counters(text) == {"sess": 2, "quit": 1, "mesg": 2}
    assert run.parse_sink_counters("sess=9 quit=9 mesg=9\n") == {"sess": 9, "quit": 9, "mesg": 9}
    assert run.parse_sink_counters("") == {}
    assert run.parse_sink_counters("sess=1 quit=0 mesg=1") == {}  # not ended yet
    with pytest.raises(ValueError):
        run.parse_sink_counters("smtp-sink: fatal: bind: Address in use\r")


def test_sink_counter_counts_from_its_creation_and_reads_incrementally(tmp_path: Path) -> None:
    out = tmp_path / "sink.out"
    out.write_bytes(b"sess=5 quit=5 mesg=7\r")
    counter = run.SinkCounter(str(out))
    assert counter.poll() == 0  # the 7 before are another round's
    with out.open("ab") as f:
        f.write(b"sess=6 quit=5 mesg=8\rsess=6 quit=5 me")
    assert counter.poll() == 1
    first_seen = counter.end_time()
    with out.open("ab") as f:
        f.write(b"sg=10\r")
    assert counter.poll() == 3
    assert counter.end_time() >= first_seen
    with out.open("ab") as f:
        f.write(b"sess=7 quit=7 mesg=10\r")  # a session ended, no new message
    at = counter.end_time()
    assert counter.poll() == 3 and counter.end_time() == at


def test_sink_counter_before_the_file_exists(tmp_path: Path) -> None:
    counter = run.SinkCounter(str(tmp_path / "missing"))
    assert counter.poll() == 0


def test_dovecot_conf_one_listener_per_queue_directory() -> None:
    text = run.dovecot_conf("/tmp/b/dovecot", "/tmp/b/dovecot/users",
                            ["/tmp/b/postfix/queue/private/auth",
                             "/tmp/b/postier/queue/private/auth"])
    assert text.count("unix_listener ") == 2
    assert "unix_listener /tmp/b/postier/queue/private/auth {" in text
    assert text.count("mode = 0660") == 2 and text.count("group = postfix") == 2
    assert "args = scheme=PLAIN username_format=%u /tmp/b/dovecot/users" in text
    assert "base_dir = /tmp/b/dovecot/run" in text
    assert text.count("{") == text.count("}")


def test_passwd_file_line() -> None:
    assert run.passwd_file("bob", "pw") == "bob:{PLAIN}pw::::::\n"


def test_load_command_per_scenario() -> None:
    args = argparse.Namespace(messages=50, sessions=5, size=2048, stall_timeout=10.0)
    relay = run.load_command("relay", args, "/usr/sbin/smtp-source", 2525)
    assert relay[0] == "/usr/sbin/smtp-source" and relay[-1] == "127.0.0.1:2525"
    assert relay[relay.index("-t") + 1] == run.RELAY_RECIPIENT
    local = run.load_command("local", args, "/usr/sbin/smtp-source", 2525)
    assert local[local.index("-t") + 1] == run.RECIPIENT
    tls = run.load_command("tls", args, "/usr/sbin/smtp-source", 2525)
    assert tls[1].endswith("auth_client.py")
    parsed = client.parse_args(tls[2:])
    assert (parsed.port, parsed.messages, parsed.sessions, parsed.size) == (2525, 50, 5, 2048)
    assert (parsed.user, parsed.password) == (run.AUTH_USER, run.AUTH_PASSWORD)


def test_parse_client_report() -> None:
    line = json.dumps({"completed": 3, "failed": 0, "seconds": 1.5, "conn_per_s": 2.0,
                       "first_error": ""})
    assert run.parse_client_report("noise\n" + line + "\n")["seconds"] == 1.5
    with pytest.raises(ValueError):
        run.parse_client_report("Traceback ...\n")
    with pytest.raises(ValueError):
        run.parse_client_report('{"seconds": 0}')


def rr(server: str, round: int, conn: float) -> object:
    r = run.RoundResult(server, round, 100)
    r.ok, r.msgs_per_s, r.cpu_ms_per_msg, r.inject_msgs_per_s = True, 1.0, 1.0, conn
    return r


def test_tls_table_gives_the_connections_ratio_and_its_spread() -> None:
    results = [rr("postfix", 1, 40.0), rr("postier", 1, 60.0),
               rr("postier", 2, 80.0), rr("postfix", 2, 40.0)]
    summary = run.summarize(results)
    assert summary["ratio_inject"] == pytest.approx(70.0 / 40.0)
    assert summary["paired"]["inject"] == {"median": 1.75, "min": 1.5, "max": 2.0}
    table = run.format_table(summary, "tls")
    assert "conn/s" in table.splitlines()[0]
    assert "connections/s (STARTTLS + AUTH + 1 message) x1.75" in table
    assert "round by round: connections/s x1.50..x2.00 (median x1.75)" in table
    assert "connections/s" not in run.format_table(summary)


def test_auth_plain_initial_response() -> None:
    raw = base64.b64decode(client.auth_plain_response("benchauth", "p w"))
    assert raw == b"\0benchauth\0p w"


@pytest.mark.parametrize("size", [0, 100, 1024, 5000])
def test_message_body_is_about_size_and_needs_no_dot_stuffing(size: int) -> None:
    body = client.message_body(size, "a@example.com", "b@example.com", 7)
    head = body.split(b"\r\n\r\n", 1)[0]
    assert b"Message-ID: <bench-7@" in head
    assert len(body) >= size and len(body) <= max(size, len(head) + 4) + 80
    assert body.endswith(b"\r\n")
    assert not any(line.startswith(b".") for line in body.split(b"\r\n"))
    assert b"\n" not in body.replace(b"\r\n", b"")


def test_reply_complete() -> None:
    assert client.reply_complete(b"250 ok\r\n")
    assert not client.reply_complete(b"250-PIPELINING\r\n")
    assert client.reply_complete(b"250\r\n")


def test_describe_names_the_scenario_figures() -> None:
    r = rr("postier", 1, 55.0)
    r.seconds, r.scenario, r.helper_cpu_ms_per_msg = 2.0, "tls", 0.25
    line = run.describe(r)
    assert "55.0 connections/s (STARTTLS + AUTH + 1 message)" in line
    assert "dovecot 0.25 ms CPU/msg" in line
    r.scenario = "relay"
    assert "injection 55.0 msgs/s" in run.describe(r) and "sink 0.25" in run.describe(r)
