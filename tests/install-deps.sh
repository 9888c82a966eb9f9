#!/bin/sh
# Installs the Debian packages the integration tests need (real Dovecot and
# Postfix started by tests/support/, aiosmtpd for scripted SMTP, openssl for
# the test CA; systemd-analyze, logrotate, promtool, node_exporter and man
# for tests/operations.rs; PostgreSQL for the store tests of SPEC §13, whose
# support code starts private clusters with initdb and pg_ctl). Idempotent: when everything is present it only
# asks dpkg and exits. Non-interactive. Needs root (or sudo) on Debian 12 / Ubuntu.
#
# The packages' own system services are not wanted: the tests start private
# instances on free loopback ports. A policy-rc.d is put in place for the
# install (unless one exists) so that apt does not start them.
set -eu

PACKAGES="dovecot-imapd dovecot-lmtpd postfix python3-aiosmtpd isync swaks openssl time
    systemd logrotate prometheus prometheus-node-exporter man-db postgresql pgbouncer"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps.sh: need root to install:$missing" >&2
        exit 1
    fi
fi

echo "install-deps.sh: installing:$missing" >&2

# Postfix asks what kind of mail system this is; answer "No configuration".
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# tests/install-deps.sh: do not start services during install\nexit 101\n' \
        | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    made_policy=1
fi
cleanup() {
    if [ -n "$made_policy" ]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

apt_install() {
    # shellcheck disable=SC2086 # word splitting of $missing is intended
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
}

# Try without `apt-get update` first (fast when the lists are fresh); on a
# fresh machine the lists are empty or stale, so update and try again.
if ! apt_install; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    apt_install
fi

# Fail loudly now rather than in the middle of a test run.
for bin in dovecot doveadm postfix postconf openssl systemd-analyze logrotate promtool \
    prometheus-node-exporter man; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || {
        echo "install-deps.sh: $bin missing after install" >&2
        exit 1
    }
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
    echo "install-deps.sh: no initdb under /usr/lib/postgresql after install" >&2
    exit 1
}
# OAuth tests: Dovecot's oauth2 passdb is built into its auth process
# (dovecot-core on Debian 12), and the provider needs Python's ssl module.
grep -q oauth2_introspection_start /usr/lib/dovecot/auth || {
    echo "install-deps.sh: this Dovecot's auth has no oauth2 passdb" >&2
    exit 1
}
/usr/bin/python3 -c 'import ssl, http.server' || {
    echo "install-deps.sh: /usr/bin/python3 lacks ssl or http.server" >&2
    exit 1
}
/usr/bin/python3 -c 'import aiosmtpd' || {
    echo "install-deps.sh: /usr/bin/python3 cannot import aiosmtpd" >&2
    exit 1
}
