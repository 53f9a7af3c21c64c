"""master.cf (master(5)): the tutorial's services, a stock Postfix 3.7 file, errors, rendering."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from postier.config import mastercf
from postier.config.errors import ConfigError
from postier.config.mastercf import inet_endpoint, render_service

DATA = Path(__file__).resolve().parents[2] / "data" / "tutorial"

# A Postfix 3.7 master.cf in the Debian layout, written for this test from master(5).
STOCK_37 = """\
#
# Postfix master process configuration file.  For details on the format
# of the file, see the master(5) manual page (command: "man 5 master" or
# on-line: http://www.postfix.org/master.5.html).
#
# Do not forget to execute "postfix reload" after editing this file.
#
# ==========================================================================
# service type  private unpriv  chroot  wakeup  maxproc command + args
#               (yes)   (yes)   (no)    (never) (100)
# ==========================================================================
smtp      inet  n       -       y       -       -       smtpd
#smtp      inet  n       -       y       -       1       postscreen
#smtpd     pass  -       -       y       -       -       smtpd
#dnsblog   unix  -       -       y       -       0       dnsblog
#tlsproxy  unix  -       -       y       -       0       tlsproxy
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission
#  -o smtpd_tls_security_level=encrypt
#  -o smtpd_sasl_auth_enable=yes
#  -o smtpd_client_restrictions=$mua_client_restrictions
#628       inet  n       -       y       -       -       qmqpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
#qmgr     unix  n       -       n       300     1       oqmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
defer     unix  -       -       y       -       0       bounce
trace     unix  -       -       y       -       0       bounce
verify    unix  -       -       y       -       1       verify
flush     unix  n       -       y       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
#       -o smtp_helo_timeout=5 -o smtp_connect_timeout=5
showq     unix  n       -       y       -       -       showq
error     unix  -       -       y       -       -       error
retry     unix  -       -       y       -       -       error
discard   unix  -       -       y       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       y       -       1       anvil
scache    unix  -       -       y       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
#
# Interfaces to non-Postfix software.
#
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
uucp      unix  -       n       n       -       -       pipe
  flags=Fqhu user=uucp argv=uux -r -n -z -a$sender - $nexthop!rmail ($recipient)
ifmail    unix  -       n       n       -       -       pipe
  flags=F user=ftn argv=/usr/lib/ifmail/ifmail -r $nexthop ($recipient)
bsmtp     unix  -       n       n       -       -       pipe
  flags=Fq. user=bsmtp argv=/usr/lib/bsmtp/bsmtp -t$nexthop -f$sender $recipient
scalemail-backend unix -       n       n       -       2       pipe
  flags=R user=scalemail argv=/usr/lib/scalemail/bin/scalemail-store ${nexthop} ${user} ${extension}
mailman   unix  -       n       n       -       -       pipe
  flags=FRX user=list argv=/usr/lib/mailman/bin/postfix-to-mailman.py ${nexthop} ${user}
"""


def test_tutorial_master_cf() -> None:
    path = str(DATA / "master.cf")
    services = mastercf.load(path)
    assert [(s.name, s.type, s.command) for s in services] == [
        ("smtp", "inet", "smtpd"), ("submission", "inet", "smtpd"), ("smtps", "inet", "smtpd")]
    smtp, submission, smtps = services
    assert smtp.private is False and smtp.unpriv is True and smtp.chroot is False
    assert smtp.maxproc is None and smtp.wakeup == "0"
    assert submission.overrides == {
        "smtpd_enforce_tls": "yes",
        "smtpd_client_restrictions": "permit_sasl_authenticated,reject",
    }
    assert smtps.overrides == {"smtpd_tls_wrappermode": "yes"}
    assert (submission.file, submission.line, smtps.line) == (path, 2, 5)
    assert [inet_endpoint(s.name) for s in services] == [(None, 25), (None, 587), (None, 465)]


def test_tutorial_flattened_on_one_line_each() -> None:
    text = ("smtp inet n - - - - smtpd\n"
            "submission inet n - - - - smtpd -o smtpd_enforce_tls=yes "
            "-o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
            "smtps inet n - - - - smtpd -o smtpd_tls_wrappermode=yes\n")
    services = mastercf.parse(text, "master.cf")
    assert services[1].overrides["smtpd_client_restrictions"] == "permit_sasl_authenticated,reject"


def test_stock_postfix_37_master_cf() -> None:
    services = mastercf.parse(STOCK_37, "/etc/postfix/master.cf")
    by_key = {s.key: s for s in services}
    assert len(services) == 31
    assert by_key["smtp/inet"].chroot is True
    assert by_key["pickup/unix"].wakeup == "60" and by_key["pickup/unix"].maxproc == 1
    assert by_key["tlsmgr/unix"].wakeup == "1000?"
    assert by_key["relay/unix"].overrides == {"syslog_name": "postfix/$service_name"}
    assert by_key["postlog/unix-dgram"].command == "postlogd"
    maildrop = by_key["maildrop/unix"]
    assert maildrop.private is True and maildrop.unpriv is False
    assert maildrop.args == ["flags=DRXhu", "user=vmail", "argv=/usr/bin/maildrop", "-d",
                             "${recipient}"]
    assert by_key["scalemail-backend/unix"].maxproc == 2
    assert "submission/inet" not in by_key  # commented out


def test_brace_override_with_spaces_and_flags() -> None:
    text = ("submission inet n - n - - smtpd -v -D\n"
            "  -o { smtpd_banner = $myhostname ESMTP ready }\n"
            "  -o smtpd_sasl_auth_enable=yes -osyslog_name=postfix/submission\n"
            "  -o smtpd_recipient_restrictions=\n")
    (svc,) = mastercf.parse(text, "m")
    assert svc.args == ["-v", "-D"]
    assert svc.overrides == {
        "smtpd_banner": "$myhostname ESMTP ready",
        "smtpd_sasl_auth_enable": "yes",
        "syslog_name": "postfix/submission",
        "smtpd_recipient_restrictions": "",
    }
    assert render_service(svc) == (
        "submission inet  n       -       n       -       -       smtpd -v -D "
        "-o { smtpd_banner = $myhostname ESMTP ready } -o smtpd_sasl_auth_enable=yes "
        "-o syslog_name=postfix/submission -o smtpd_recipient_restrictions=")


def test_render_layout_round_trips() -> None:
    services = mastercf.parse(STOCK_37, "m")
    rendered = "\n".join(render_service(s) for s in services) + "\n"
    assert rendered.splitlines()[0] == (
        "smtp       inet  n       -       y       -       -       smtpd")
    again = mastercf.parse(rendered, "m")
    assert [(s.key, s.fields, s.command, s.args, s.overrides) for s in again] == [
        (s.key, s.fields, s.command, s.args, s.overrides) for s in services]


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("smtp inet n - - - smtpd\n", 1, "too few fields"),
        ("# c\nsmtp tcp n - - - - smtpd\n", 2, "bad transport type"),
        ("smtp inet x - - - - smtpd\n", 1, "private"),
        ("smtp inet n - - - 0x smtpd\n", 1, "maxproc"),
        ("smtp inet n - - soon - smtpd\n", 1, "wakeup"),
        ("\n\nsmtp inet n - - - - sendmaild\n", 3, "unknown command"),
        ("smtp inet n - - - - smtpd -o\n", 1, "-o"),
        ("smtp inet n - - - - smtpd -o novalue\n", 1, "-o"),
        ("  smtp inet n - - - - smtpd\n", 1, "continuation"),
        ("smtp inet n - - - - smtpd\nsmtp inet n - - - - smtpd\n", 2, "duplicate"),
        ("smtp inet n - - - - smtpd -o { a = b\n", 1, "}"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        mastercf.parse(text, "/etc/postfix/master.cf")
    assert (info.value.file, info.value.line) == ("/etc/postfix/master.cf", line)
    assert needle in str(info.value)
    assert str(info.value).startswith(f"/etc/postfix/master.cf, line {line}: ")


def test_inet_endpoint_forms() -> None:
    assert inet_endpoint("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert inet_endpoint("[::1]:25") == ("::1", 25)
    assert inet_endpoint("2525") == (None, 2525)
    assert inet_endpoint("localhost:smtp") == ("localhost", 25)
    assert inet_endpoint("smtp") == (None, 25)
    assert inet_endpoint("submission") == (None, 587)
    assert inet_endpoint("smtps") == (None, 465)
    for bad in ("no-such-service-name", "[::1]25", "0", "70000"):
        with pytest.raises(ConfigError):
            inet_endpoint(bad)


def test_smtps_without_services_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    def lacking(name: str, proto: str = "tcp") -> int:
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", lacking)
    assert inet_endpoint("smtps") == (None, 465)
    assert inet_endpoint("submission") == (None, 587)
