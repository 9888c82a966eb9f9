#!/bin/bash
# demo/run.sh: watch the backproc engine do its job on this machine, in one
# command, before connecting a real mailbox.
#
# It starts a private Dovecot (IMAP) and Postfix (SMTP) on 127.0.0.1, loads
# sample mail (the test corpus) into two mailboxes, adds them as accounts,
# queues a message from one to the other, runs the engine twice, and shows
# `engine status`, the mail received and sent, the log lines and a search.
# Then it stops both servers and removes its temporary directory: nothing it
# started or wrote is left behind. Dovecot
# and Postfix are installed from Debian's packages when missing (they stay
# installed; their own system services are not started).
#
# Run as root on Debian 12 (the servers switch users). The engine is $ENGINE
# when set, else the README's build (`cargo build --release`, into
# $CARGO_TARGET_DIR when set). Only Bash, Debian's packages and
# /usr/bin/python3's standard library are used.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3

say() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'demo/run.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run me as root (Dovecot and Postfix switch users): sudo demo/run.sh"

# ---------------------------------------------------------------------------
# The engine

if [ -n "${ENGINE:-}" ]; then
    engine=$ENGINE
    say "Using the engine at $engine (from \$ENGINE)"
else
    say "Building the engine as the README says: cargo build --release"
    (cd "$repo" && cargo build --release)
    target=${CARGO_TARGET_DIR:-$repo/target}
    case $target in /*) ;; *) target=$repo/$target ;; esac
    engine=$target/release/engine
fi
[ -x "$engine" ] || die "no engine at $engine"

# ---------------------------------------------------------------------------
# Dovecot and Postfix from Debian, when missing

packages="dovecot-imapd dovecot-lmtpd postfix openssl"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "Installing what the demo needs from Debian:$missing"
    note "(they stay installed; their system services are not started)"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    policy=/usr/sbin/policy-rc.d
    made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# demo/run.sh: do not start services during install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    apt_install() {
        # shellcheck disable=SC2086 # the list is meant to split
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
    }
    apt_install || { DEBIAN_FRONTEND=noninteractive apt-get update -q && apt_install; } || {
        [ -n "$made_policy" ] && rm -f "$policy"
        die "could not install:$missing"
    }
    [ -n "$made_policy" ] && rm -f "$policy"
fi

# ---------------------------------------------------------------------------
# A private temporary directory, and how everything is undone

work=$(mktemp -d /tmp/backproc-demo.XXXXXX)
chmod 755 "$work" # the servers' own users (dovecot, postfix, nobody) go through it
dovecot_pid=""
postfix_pid=""

# A process and all its descendants, from ps.
tree() {
    local pids=$1 more
    more=$1
    while [ -n "$more" ]; do
        more=$(ps -e -o pid=,ppid= | awk -v p=" $more " 'index(p, " " $2 " ") { printf "%s ", $1 }')
        pids="$pids $more"
    done
    echo "$pids"
}

# Stops a server by its master's pid: TERM to the master (it takes its
# children along), then KILL for anything of it left after 10 s.
stop_server() {
    local name=$1 pid=$2 pids left i
    pids=$(tree "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        left=""
        for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    [ -n "$left" ] && kill -KILL $left 2>/dev/null || true
    note "stopped $name (pid $pid)"
}

cleanup() {
    set +e
    say "Cleaning up: stopping the servers and removing $work"
    [ -n "$postfix_pid" ] && stop_server Postfix "$postfix_pid"
    [ -n "$dovecot_pid" ] && stop_server Dovecot "$dovecot_pid"
    rm -rf "$work"
    note "removed $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Working in $work (removed at the end)"
note "work directory: $work"

# ---------------------------------------------------------------------------
# Certificates: a throwaway CA, trusted by the engine through BG_TLS_CA_FILE,
# so certificate checks stay on as in production.

mkdir "$work/ca"
(
    cd "$work/ca"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 \
        -subj "/CN=backproc demo CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -x509 -CA ca.pem -CAkey ca.key "${ec[@]}" -keyout key.pem -out cert.pem -days 30 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -addext basicConstraints=critical,CA:FALSE -addext keyUsage=critical,digitalSignature \
        -addext extendedKeyUsage=serverAuth
) 2>"$work/ca/openssl.log" || die "openssl failed: $(cat "$work/ca/openssl.log")"

read -r imap_port imaps_port lmtp_port auth_port submission_port < <(
    $python -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
)
alice_pw="alice-$(openssl rand -hex 8)"
bob_pw="bob-$(openssl rand -hex 8)"

# ---------------------------------------------------------------------------
# Dovecot: IMAP for alice@example.com and bob@example.com, LMTP for Postfix
# to deliver into, and its password check for Postfix's AUTH.

say "Starting a private Dovecot on 127.0.0.1 (IMAP port $imap_port, IMAPS port $imaps_port)"
d=$work/dovecot
mkdir -p "$d" "$work/mail"
chown nobody:nogroup "$work/mail"
printf 'alice:{PLAIN}%s\nbob:{PLAIN}%s\n' "$alice_pw" "$bob_pw" >"$d/passwd"
chmod 640 "$d/passwd"
chgrp dovecot "$d/passwd" 2>/dev/null || true
dh=""
[ -e /usr/share/dovecot/dh.pem ] && dh="ssl_dh = </usr/share/dovecot/dh.pem"
cat >"$d/dovecot.conf" <<EOF
# backproc demo: a private Dovecot (demo/run.sh)
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
instance_name = backproc-demo-$$
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <$work/ca/cert.pem
ssl_key = <$work/ca/key.pem
$dh
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %n
first_valid_uid = 1
mail_location = maildir:$work/mail/%n
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = create
  }
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $d/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$work/mail/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
service auth {
  inet_listener sasl {
    address = 127.0.0.1
    port = $auth_port
  }
}
EOF
dovecot -c "$d/dovecot.conf" </dev/null >"$d/start.log" 2>&1 \
    || die "Dovecot did not start: $(cat "$d/start.log" "$d/dovecot.log" 2>/dev/null)"
for _ in $(seq 100); do
    [ -s "$d/run/master.pid" ] && break
    sleep 0.1
done
dovecot_pid=$(cat "$d/run/master.pid" 2>/dev/null) || die "Dovecot wrote no pid"
note "Dovecot is running (pid $dovecot_pid)"

# ---------------------------------------------------------------------------
# Postfix: a submission port (STARTTLS, AUTH checked by Dovecot) that
# delivers @example.com to Dovecot over LMTP. Nothing leaves the machine.

say "Starting a private Postfix on 127.0.0.1 (submission port $submission_port)"
p=$work/postfix
mkdir -p "$p/conf"
mkq() { mkdir "$p/$1" && chown "$2" "$p/$1" && chmod "$3" "$p/$1"; }
mkq queue root 755
mkq queue/pid root 755
for q in active bounce corrupt defer deferred flush hold incoming private saved trace; do
    mkq "queue/$q" postfix 700
done
mkq queue/maildrop postfix:postdrop 730
mkq queue/public postfix:postdrop 710
mkq data postfix 700
cat >"$p/conf/main.cf" <<EOF
# backproc demo: a private Postfix (demo/run.sh)
compatibility_level = 3.6
queue_directory = $p/queue
data_directory = $p/data
maillog_file_prefixes = $p
maillog_file = $p/postfix.log
myhostname = localhost.localdomain
mydomain = localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
virtual_mailbox_domains = example.com
virtual_transport = lmtp:inet:127.0.0.1:$lmtp_port
local_transport = error:local delivery is off in the demo
default_transport = error:mail to the outside is off in the demo
relay_transport = error:mail to the outside is off in the demo
smtpd_tls_cert_file = $work/ca/cert.pem
smtpd_tls_key_file = $work/ca/key.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
biff = no
EOF
# master.cf: Debian's, every service unchrooted, the stock port 25 line
# replaced by our submission port.
$python - "$p/conf/master.cf" "$submission_port" "$auth_port" <<'EOF'
import sys
out_path, port, auth = sys.argv[1:]
out, skipping = [], False
for line in open("/usr/share/postfix/master.cf.dist"):
    line = line.rstrip("\n")
    if line and line[0] not in "# \t":
        f = line.split()
        skipping = len(f) >= 2 and f[0] == "smtp" and f[1] == "inet"
        if skipping:
            continue
        if len(f) >= 8:
            f[4] = "n"
            line = "  ".join(f)
    elif skipping and line[:1] in (" ", "\t"):
        continue
    else:
        skipping = False
    out.append(line)
out.append(f"""127.0.0.1:{port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:127.0.0.1:{auth}
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject""")
open(out_path, "w").write("\n".join(out) + "\n")
EOF
# Postfix waits for a main.cf changed in this very second; skip its checks.
touch -d '-10 seconds' "$p/conf/main.cf" "$p/conf/master.cf"
: >"$p/queue/quick-start"
postfix -c "$p/conf" start </dev/null >"$p/start.log" 2>&1 \
    || die "Postfix did not start: $(cat "$p/start.log" "$p/postfix.log" 2>/dev/null)"
for _ in $(seq 100); do
    [ -s "$p/queue/pid/master.pid" ] && break
    sleep 0.1
done
postfix_pid=$(tr -d ' ' <"$p/queue/pid/master.pid" 2>/dev/null) || die "Postfix wrote no pid"
note "Postfix is running (pid $postfix_pid)"

# ---------------------------------------------------------------------------
# Sample mail

say "Loading sample mail (tests/fixtures/corpus/, from public test suites) over IMAP"
$python - "$imap_port" "$alice_pw" "$bob_pw" "$repo/tests/fixtures/corpus" <<'EOF'
import imaplib, pathlib, sys
port, alice_pw, bob_pw, corpus = sys.argv[1:]
files = sorted(pathlib.Path(corpus).glob("*.eml"))
def load(user, pw, folder, paths):
    imap = imaplib.IMAP4("127.0.0.1", int(port))
    imap.login(user, pw)
    if folder != "INBOX":
        imap.create(folder)
    done = 0
    for path in paths:
        try:
            imap.append(folder, None, None, path.read_bytes())
            done += 1
        except imaplib.IMAP4.error:
            pass
    imap.logout()
    print(f"    {user}@example.com: {done} messages in {folder}")
load("alice", alice_pw, "INBOX", files[:80])
load("alice", alice_pw, "Archive", files[80:])
load("bob", bob_pw, "INBOX", files[:5])
EOF

# ---------------------------------------------------------------------------
# The engine's home, its configuration and the two accounts

home=$work/home
mkdir "$home"
cat >"$home/config.inc" <<EOF
<?php
// backproc demo (demo/run.sh). Trust the demo's CA, as a company would
// trust its own: certificates are still checked.
define('BG_TLS_CA_FILE', '$work/ca/ca.pem');
// Look for new mail at every run (the defaults are 10 and 30 minutes).
define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL', 0);
define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL', 0);
define('BG_IO_TIMEOUT', 10);
EOF
e() { "$engine" --home "$home" "$@"; }

say "Adding the two accounts (passwords go through stdin, never the command line)"
add() {
    printf '%s\n' "$2" | e account add --email "$1@example.com" --usrid "$3" \
        --imap-host localhost --imap-port "$imaps_port" --imap-security tls \
        --smtp-host localhost --smtp-port "$submission_port" --smtp-security starttls
}
alice=$(add alice "$alice_pw" 1)
bob=$(add bob "$bob_pw" 2)
note "alice@example.com is account $alice, bob@example.com is account $bob"
e account list

say "Queueing a message from alice to bob (engine outbox add)"
subject="Hello from the backproc demo"
emoid=$(e outbox add --account "$alice" - <<EOF
From: Alice <alice@example.com>
To: Bob <bob@example.com>
Subject: $subject
Date: $(date -R)

Hi Bob,

this message went from the outbox through Postfix to your Inbox, and the
engine brought it back into its database.

Alice
EOF
)
note "queued as emoid $emoid"

# ---------------------------------------------------------------------------
# Two runs

run() {
    local code=0
    e run || code=$?
    note "engine run exited with $code (0: every job done)"
}
say "First run: the engine discovers both mailboxes' folders, downloads their mail, and sends the queued message"
run
say "Waiting for Postfix to deliver the message to bob's Inbox"
for _ in $(seq 200); do
    grep -rqs "^Subject: $subject" "$work/mail/bob/new" "$work/mail/bob/cur" && break
    sleep 0.1
done
grep -rqs "^Subject: $subject" "$work/mail/bob/new" "$work/mail/bob/cur" \
    && note "delivered" || note "not delivered yet (see $p/postfix.log)"
sent=$(e folder list --account "$alice" --json | $python -c '
import json, sys
print(next(f["emfdid"] for f in json.load(sys.stdin) if f["special"] == "sent"))')
say "Making alice's Sent folder (emfdid $sent) hi: checked at every run, like an Inbox"
e folder priority "$sent" hi
say "Second run: the engine finds the new message in bob's Inbox, and the copy of it in alice's Sent"
run

# ---------------------------------------------------------------------------
# What there is to see

say "engine status"
e status
say "engine outbox list: the sent mail"
e outbox list
say "Mail the engine received, from its database (data/engine.sqlite)"
$python - "$home/data/engine.sqlite" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("""
    SELECT a.email, f.name, COUNT(m.emmsid) FROM email_folders f
    JOIN email_accounts a ON a.acntid = f.acntid
    LEFT JOIN email_messages m ON m.emfdid = f.emfdid
    GROUP BY f.emfdid ORDER BY a.acntid, f.name""").fetchall()
for email, folder, n in rows:
    print(f"    {email:20} {folder:10} {n:4} messages")
def newest(email, special, n):
    return db.execute("""
        SELECT m.subject, m.from_addr, m.to_addrs FROM email_messages m
        JOIN email_folders f ON f.emfdid = m.emfdid JOIN email_accounts a ON a.acntid = f.acntid
        WHERE a.email = ? AND f.special = ? ORDER BY m.uid DESC LIMIT ?""", (email, special, n))
print("\n    bob@example.com's Inbox, newest first:")
for subject, sender, _ in newest("bob@example.com", "inbox", 4):
    print(f"    received: {(subject or '(no subject)')[:46]:46}  from {sender or '?'}")
print("\n    alice@example.com's Sent:")
for subject, _, to in newest("alice@example.com", "sent", 4):
    print(f"    sent:     {(subject or '(no subject)')[:46]:46}  to {to or '?'}")
EOF
say "The log lines of both runs (logs/l-info.log)"
sed 's/^/    /' "$home/logs/l-info.log"
say "engine search 'backproc demo': the full-text index, newest first, matches in [brackets]"
e search "backproc demo"

say "Done. The engine, the servers and the database were all on this machine."
