#!/bin/sh
# Installs postier into its own virtual environment and links the postier command onto PATH.
#
#   sh scripts/install.sh            as root: /opt/postier, /usr/local/bin/postier, the
#                                    accounts postfix (mail_owner) and postdrop (setgid_group)
#                                    as an ordinary user: ~/.local/share/postier, ~/.local/bin
#   sh scripts/install.sh --systemd  also installs packaging/postier.service (root only)
#   sh scripts/install.sh --sendmail-links
#                                    also links mailq and newaliases (sendmail -bp, -bi)
#                                    into the same directory, each only when no command of
#                                    that name is on PATH already (a Postfix's /usr/bin/mailq)
#                                    and no other file has that name there
#
# Only the system's python3 is needed: as root, python3-venv is installed with apt-get when
# the venv module cannot make an environment. By default only "postier" is linked: Postfix's
# tool names (postqueue, postconf, mailq, ...) are never put on PATH unasked, so that a real
# Postfix's commands are never shadowed; use "postier postqueue ..." (see docs/install.md).
# POSTIER_PREFIX and POSTIER_BINDIR override the two places.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)

systemd=no
sendmail_links=no
for arg in "$@"; do
    case $arg in
        --systemd) systemd=yes ;;
        --sendmail-links) sendmail_links=yes ;;
        *) echo "usage: sh scripts/install.sh [--systemd] [--sendmail-links]" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" = 0 ]; then
    prefix=${POSTIER_PREFIX:-/opt/postier}
    bindir=${POSTIER_BINDIR:-/usr/local/bin}
else
    prefix=${POSTIER_PREFIX:-${XDG_DATA_HOME:-$HOME/.local/share}/postier}
    bindir=${POSTIER_BINDIR:-$HOME/.local/bin}
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "install.sh: python3 is missing (Debian: apt-get install python3)" >&2
    exit 1
fi
# Debian splits venv's pip bootstrap into python3-venv (python3.X-venv): test it for real.
probe=$(mktemp -d)
if ! python3 -m venv "$probe/v" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: installing python3-venv" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        rm -rf "$probe"
        echo "install.sh: python3 cannot create a virtual environment; as root run:" \
             "apt-get install python3-venv" >&2
        exit 1
    fi
fi
rm -rf "$probe"

python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install -q --disable-pip-version-check "$src"
mkdir -p "$bindir"
ln -sf "$prefix/bin/postier" "$bindir/postier"

# mailq and newaliases: postier behaves as the command it is called by. A name that is
# already a command (Postfix's or another MTA's /usr/bin/mailq -> ../sbin/sendmail) or a
# file of bindir that is not our link is left alone: never shadow or overwrite another
# package's command.
if [ "$sendmail_links" = yes ]; then
    for name in mailq newaliases; do
        link="$bindir/$name"
        if [ -L "$link" ] && [ "$(readlink "$link")" = "$prefix/bin/postier" ]; then
            continue
        fi
        if [ -e "$link" ] || [ -L "$link" ]; then
            echo "install.sh: $link exists and is not postier's: not linked" >&2
            continue
        fi
        other=$(command -v "$name" 2>/dev/null || true)
        if [ -n "$other" ]; then
            echo "install.sh: $name is already a command ($other): not linked;" \
                 "use postier $name" >&2
            continue
        fi
        ln -s "$prefix/bin/postier" "$link"
        echo "install.sh: linked $link" >&2
    done
fi

if [ "$(id -u)" = 0 ]; then
    getent group postfix >/dev/null || groupadd --system postfix
    getent passwd postfix >/dev/null || \
        useradd --system --gid postfix --home-dir /var/spool/postfix --shell /usr/sbin/nologin postfix
    getent group postdrop >/dev/null || groupadd --system postdrop
    mkdir -p /var/mail
    # The default main.cf reads alias_maps = hash:/etc/aliases, as Debian's postfix does;
    # like its package, make /etc/aliases when no mail server did, and build the table.
    [ -e /etc/aliases ] || printf 'postmaster:    root\n' > /etc/aliases
    [ -e /etc/aliases.pdb ] || "$prefix/bin/postier" postalias hash:/etc/aliases
fi

if [ "$systemd" = yes ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install.sh: --systemd needs root" >&2
        exit 1
    fi
    sed "s#@BINDIR@#$bindir#g" packaging/postier.service > /etc/systemd/system/postier.service
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    echo "install.sh: installed /etc/systemd/system/postier.service;" \
         "enable it with: systemctl enable --now postier" >&2
fi

case ":$PATH:" in
    *":$bindir:"*) ;;
    *) echo "install.sh: $bindir is not on your PATH: run $bindir/postier, or log in again" \
            "(Debian's ~/.profile adds ~/.local/bin when it exists)" >&2 ;;
esac
echo "install.sh: postier installed in $prefix, command $bindir/postier" >&2
