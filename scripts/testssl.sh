#!/bin/sh
# testssl.sh (Debian package testssl.sh) against a throwaway postier on loopback ports:
# --starttls smtp against an smtp service (level may) and a submission service (level
# encrypt), plainly against an smtps service (wrapper mode). Takes minutes, so it is not
# part of the CI suite. Run as root from the repository: scripts/testssl.sh [OUTDIR]
# Prints each run's protocol and vulnerability lines; full reports stay in OUTDIR.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
OUT=${1:-$(mktemp -d /tmp/postier-testssl-XXXXXX)}
command -v testssl >/dev/null || { echo "testssl missing: apt-get install testssl.sh" >&2; exit 2; }
W=$(mktemp -d /tmp/postier-testssl-run-XXXXXX)
chmod 755 "$W"
mkdir -p "$W/etc" "$W/spool" "$W/mail" "$OUT"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=tintin.example.com \
    -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
chmod 600 "$W/key.pem"
ports=$("$PY" -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
set -- $ports
P25=$1 P587=$2 P465=$3
cat > "$W/etc/main.cf" <<EOF
myhostname = tintin.example.com
mydestination = tintin.example.com, localhost
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
queue_directory = $W/spool
mail_spool_directory = $W/mail
maillog_file = $W/maillog
maillog_file_prefixes = $W
alias_maps =
smtpd_tls_cert_file = $W/cert.pem
smtpd_tls_key_file = $W/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
EOF
cat > "$W/etc/master.cf" <<EOF
127.0.0.1:$P25 inet n - n - - smtpd
127.0.0.1:$P587 inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
127.0.0.1:$P465 inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
EOF
"$PY" -m postier.cli.main -c "$W/etc" start
trap '"$PY" -m postier.cli.main -c "$W/etc" stop >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
run() {
    name=$1; shift
    testssl --quiet --color 0 --warnings off --ip one "$@" > "$OUT/$name.txt" 2>&1 || true
    echo "=== $name: testssl $*"
    sed -n '/Testing protocols/,/Testing cipher categories/p' "$OUT/$name.txt" | grep -E '^ (SSL|TLS)'
    sed -n '/Testing vulnerabilities/,/^ *Running client simulations/p' "$OUT/$name.txt" \
        | grep -E '^ [A-Z]' | grep -v '^ Running'
}
run smtp-starttls --starttls smtp "127.0.0.1:$P25"
run submission-starttls --starttls smtp "127.0.0.1:$P587"
run smtps "127.0.0.1:$P465"
echo "full reports: $OUT"
