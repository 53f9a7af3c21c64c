#!/bin/sh
# Installs everything the tests need, then runs lint, types and the whole test suite.
# As root it also installs the Debian packages the integration tests use (procmail,
# s-nail, swaks, dnsmasq-base, python3, dovecot-core and sasl2-bin for the SASL tests) and creates the mail_owner account "postfix"
# when it is missing.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    missing=""
    for tool in procmail s-nail swaks dnsmasq dovecot saslauthd; do
        command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
    done
    # The ordinary-user test runs postier with the system's python3 (see
    # tests/integration/test_user_mode.py).
    [ -x /usr/bin/python3 ] || missing="$missing python3"
    if [ -n "$missing" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq procmail s-nail swaks dnsmasq-base python3 \
            dovecot-core sasl2-bin >/dev/null
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
