#!/bin/sh
# Installs everything the tests need, then runs lint, types and the whole test suite.
# As root it also installs the Debian packages the integration tests use, each only when
# what it provides is missing: procmail, s-nail, swaks, dnsmasq-base (the tests' DNS
# server), python3 (the ordinary-user test runs the system's python3), openssl (test
# certificates), dovecot-core, dovecot-lmtpd and sasl2-bin (SASL, LMTP), postgresql (pgsql: tables; the test
# starts its own cluster), postfix installed unconfigured (smtp-sink for the relay tests,
# and the reference in bench/), pflogsumm and fail2ban (test_logtools reads the log with
# pflogsumm and fail2ban-regex; fail2ban's service is not started by the install) — and
# creates the mail_owner account "postfix" when it is missing.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    packages=""
    need() {  # need PACKAGE TEST...: install PACKAGE unless the test succeeds
        package=$1
        shift
        "$@" >/dev/null 2>&1 || packages="$packages $package"
    }
    need procmail command -v procmail
    need s-nail command -v s-nail
    need swaks command -v swaks
    need dnsmasq-base command -v dnsmasq
    need python3 test -x /usr/bin/python3
    need openssl command -v openssl
    need dovecot-core command -v dovecot
    need dovecot-lmtpd test -x /usr/lib/dovecot/lmtp
    need sasl2-bin command -v saslauthd
    need postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
    need postfix test -x /usr/sbin/smtp-sink
    need pflogsumm command -v pflogsumm
    need fail2ban command -v fail2ban-regex
    if [ -n "$packages" ]; then
        apt-get update -qq
        echo "postfix postfix/main_mailer_type select No configuration" \
            | debconf-set-selections 2>/dev/null || true
        # Only fail2ban-regex is used: no service may start during the install (Debian's
        # policy-rc.d convention, exit 101 = action forbidden), unless a policy exists.
        policy=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            policy=/usr/sbin/policy-rc.d
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
        fi
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null || {
            [ -z "$policy" ] || rm -f "$policy"
            exit 1
        }
        [ -z "$policy" ] || rm -f "$policy"
    fi
    getent group postfix >/dev/null || groupadd --system postfix
    getent passwd postfix >/dev/null || \
        useradd --system --gid postfix --home-dir /var/spool/postfix --shell /usr/sbin/nologin postfix
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
.venv/bin/ruff check src tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
