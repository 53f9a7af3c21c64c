"""Prometheus metrics end to end: postier_metrics_listen, traffic, a scrape with urllib.

One instance with ``postier_metrics_listen`` on a loopback port receives three messages
delivered locally, one refused at RCPT by a restriction, one held by an access action
and one that local bounces (an unknown user, accepted at RCPT because
``local_recipient_maps`` is empty); ``/metrics`` is then read with urllib and the
counters, the delay histogram and the queue sizes are compared with that traffic.
Without the parameter, the instance listens on its SMTP port only.
"""

from __future__ import annotations

import os
import pwd
import re
import smtplib
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT, Instance, ensure_user, free_port, postier

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ROOT, reason="delivers to user tintin, which only root can create"),
]

MAIN_CF = """\
myhostname = tintin.example.com
mydomain = example.com
mydestination = example.com
mynetworks = 127.0.0.0/8
local_recipient_maps =
smtpd_recipient_restrictions = reject_non_fqdn_recipient,
    check_recipient_access inline:{held@example.com=HOLD},
    permit_mynetworks, reject_unauth_destination
"""

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(url: str) -> dict[str, float]:
    """``/metrics`` in Prometheus's text format, as {"name{labels}": value}."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m is not None, line
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def listening_ports(inst: Instance) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by the instance's
    processes (read from /proc: their descriptors' inodes, /proc/net/tcp)."""
    inodes: set[str] = set()
    for pid in inst.pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: set[tuple[str, int]] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:  # TCP_LISTEN
            addr_hex, port_hex = local.split(":")
            addr = ".".join(str(int(addr_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
            found.add((addr, int(port_hex, 16)))
    return found


def send(port: int, sender: str, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(sender, [rcpt], f"Subject: to {rcpt}\n\nhello\n")


def wait_for(url: str, ready: object, timeout: float = 20.0) -> dict[str, float]:
    """Scrape until ``ready(samples)`` holds (deliveries are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:  # type: ignore[operator]
            return samples
        time.sleep(0.2)


def test_metrics_count_traffic(make_instance) -> None:
    ensure_user("tintin")
    metrics_port = free_port()
    inst: Instance = make_instance(
        MAIN_CF, f"postier_metrics_listen = 127.0.0.1:{metrics_port}", name="metrics")
    started = inst.start()
    assert started.returncode == 0, started.stdout + started.stderr
    service = f"127.0.0.1:{inst.port}"
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    assert listening_ports(inst) == {("127.0.0.1", inst.port), ("127.0.0.1", metrics_port)}
    endpoint = inst.pids("postier.metricsd")
    assert len(endpoint) == 1
    # The endpoint parses HTTP as mail_owner, never as root (the master does not).
    uid_line = next(line for line in Path(f"/proc/{endpoint[0]}/status").read_text()
                    .splitlines() if line.startswith("Uid:"))
    assert set(uid_line.split()[1:]) == {str(pwd.getpwnam("postfix").pw_uid)}
    inst.wait_log(f"metrics endpoint listening on 127.0.0.1:{metrics_port}")

    for _ in range(3):
        send(inst.port, "milou@example.net", "tintin@example.com")
    with smtplib.SMTP("127.0.0.1", inst.port, timeout=30) as client:
        client.ehlo("milou.example.net")
        client.mail("milou@example.net")
        code, _ = client.rcpt("tintin")  # not fully qualified
        assert code == 504
    send(inst.port, "", "nobody-here@example.com")  # bounced by local; <>: no notice
    send(inst.port, "milou@example.net", "held@example.com")
    inst.wait_log("status=bounced")
    inst.wait_log("status=sent", count=3)

    key_sent = 'postier_qmgr_delivered_total{transport="local"}'
    samples = wait_for(url, lambda s: s.get(key_sent) == 3.0
                       and s.get('postier_qmgr_bounced_total{transport="local"}') == 1.0)
    assert samples[f'postier_smtpd_connections_total{{service="{service}"}}'] == 6
    assert samples[f'postier_smtpd_messages_received_total{{service="{service}"}}'] == 5
    assert samples[
        f'postier_smtpd_rejects_total{{code="504",restriction="reject_non_fqdn_recipient",'
        f'service="{service}",stage="RCPT"}}'] == 1
    assert sum(v for k, v in samples.items()
               if k.startswith("postier_smtpd_rejects_total")) == 1
    assert samples[key_sent] == 3
    assert samples['postier_qmgr_bounced_total{transport="local"}'] == 1
    assert samples.get('postier_qmgr_deferred_total{transport="local"}', 0) == 0
    # The delay histogram: one observation per delivered recipient, all within +Inf.
    assert samples['postier_qmgr_delivery_delay_seconds_count{transport="local"}'] == 3
    assert samples['postier_qmgr_delivery_delay_seconds_bucket{le="+Inf",transport="local"}'] \
        == 3
    assert 0 <= samples['postier_qmgr_delivery_delay_seconds_sum{transport="local"}'] < 60
    # Queue sizes at scrape time: the held message, nothing else.
    assert samples['postier_queue_messages{queue="hold"}'] == 1
    for queue in ("incoming", "active", "deferred"):
        assert samples[f'postier_queue_messages{{queue="{queue}"}}'] == 0
    assert len(list((inst.queue_dir / "hold").iterdir())) == 1

    # A reload replaces smtpd, qmgr and local: their counts stay (the files of exited
    # processes stay in the multiprocess directory) and the new processes add to them.
    reloaded = postier("-c", str(inst.config_dir), "reload", check=False)
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    send(inst.port, "milou@example.net", "tintin@example.com")
    samples = wait_for(url, lambda s: s.get(key_sent) == 4.0)
    assert samples[key_sent] == 4
    assert samples[f'postier_smtpd_connections_total{{service="{service}"}}'] == 7
    assert samples[f'postier_smtpd_messages_received_total{{service="{service}"}}'] == 6

    stopped = inst.stop()
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_metrics_off_by_default(make_instance) -> None:
    inst: Instance = make_instance(MAIN_CF, name="nometrics")
    started = inst.start()
    assert started.returncode == 0, started.stdout + started.stderr
    assert listening_ports(inst) == {("127.0.0.1", inst.port)}
    assert inst.pids("postier.metricsd") == []
    assert not (inst.base / "data" / "postier-metrics").exists()
    send(inst.port, "milou@example.net", "postmaster@example.com")
    assert "metrics endpoint" not in inst.log()


def test_bad_metrics_listen_refused(make_instance) -> None:
    inst: Instance = make_instance(MAIN_CF, "postier_metrics_listen = localhost", name="bad")
    started = inst.start()
    assert started.returncode != 0
    assert "parameter postier_metrics_listen: expected host:port" in started.stdout + \
        started.stderr
    assert inst.pids() == []
