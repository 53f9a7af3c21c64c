#!/bin/sh
# Installs postier into this Python and, as root, creates the mail_owner account "postfix".
set -eu
cd "$(dirname "$0")/.."
python3 -m pip install -q .
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
if [ "$(id -u)" = 0 ]; then
    getent group postfix >/dev/null || groupadd --system postfix
    getent passwd postfix >/dev/null || \
        useradd --system --gid postfix --home-dir /var/spool/postfix --shell /usr/sbin/nologin postfix
    mkdir -p /var/mail
fi
