#!/bin/sh
# The outbox benchmark: `engine run` draining N queued messages into a
# private Postfix, against Postfix's own load generator `smtp-source`
# sending N messages of the same bytes to the same port, in the same run.
#
#   bench/smtp.sh                 # N=2000 messages of 10,240 bytes, 3 rounds
#   N=500 SIZE=50000 ROUNDS=1 bench/smtp.sh
#
# Runs as root on Debian 12: installs what it needs (tests/install-deps.sh
# for Dovecot, Postfix and friends; gcc, pkg-config, libssl-dev for the
# build; Rust through rustup when cargo is missing), builds the engine with
# `cargo build --release`, then starts a private Dovecot (LMTP delivery,
# SASL for Postfix) and a private Postfix on free loopback ports under a
# temp dir, configured as tests/support/{dovecot,postfix}.rs do. Nothing
# else on the machine is touched; both servers are stopped by their own
# config dirs at the end.
#
# What is measured (wall clock, N messages each):
#   engine       `engine run --no-sync` on the account's outbox (the rows
#                inserted by SQL beforehand, as the web app does; queueing
#                is not timed), SMTP without AUTH on Postfix's plain port,
#                one connection, no Sent copies (the account has no IMAP
#                host): the same work smtp-source does
#   smtp-source  `smtp-source -s 1 -d -m N -F msg`: one session, the
#                connection reused, the same message bytes, the same port
#   engine-auth  (extra) the engine on the submission port: STARTTLS +
#                AUTH PLAIN through Dovecot SASL; smtp-source cannot do it
# Each gets two numbers: "accepted" = N / (time until the client has handed
# over the last message), and "delivered" = N / (time until the last one is
# in the recipient's Maildir): Postfix delivering into Dovecot over LMTP
# runs meanwhile and is part of both. A warm-up of 100 messages goes first;
# then ROUNDS rounds (the order reversed every other round), medians shown.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "bench/smtp.sh: run as root (Dovecot and Postfix switch users)" >&2
    exit 1
fi

sh "$HERE/tests/install-deps.sh"

missing=""
for p in gcc pkg-config libssl-dev ca-certificates curl; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    echo "bench/smtp.sh: installing:$missing" >&2
    apt-get update -q
    # shellcheck disable=SC2086 # word splitting intended
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
        echo "bench/smtp.sh: installing Rust with rustup" >&2
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    fi
    PATH="$HOME/.cargo/bin:$PATH"
    export PATH
fi

(cd "$HERE" && cargo build --release --quiet --bin engine)
ENGINE="${CARGO_TARGET_DIR:-$HERE/target}/release/engine"
[ -x "$ENGINE" ] || ENGINE="$HERE/$ENGINE"

exec /usr/bin/python3 - "$HERE" "$ENGINE" <<'PY'
import atexit
import grp
import json
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO, ENGINE = sys.argv[1], os.path.abspath(sys.argv[2])
N = int(os.environ.get("N", "2000"))
SIZE = int(os.environ.get("SIZE", "10240"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
WARMUP = 100
PASSWORDS = {"alice": "alice-bench-secret", "bob": "bob-bench-secret"}

root = tempfile.mkdtemp(prefix="bp-bench-smtp-")
os.chmod(root, 0o755)
started = []  # (kind, conf) of what to stop


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def cleanup():
    for kind, conf in reversed(started):
        if kind == "postfix":
            subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True)
        else:
            subprocess.run(["doveadm", "-c", conf, "stop"], capture_output=True)
    if os.environ.get("KEEP"):
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


atexit.register(cleanup)


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"port {port} never opened")


# --- a CA and a certificate for localhost (as tests/support/tls.rs) ---
ca = os.path.join(root, "ca")
os.mkdir(ca)
ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30",
   "-subj", "/CN=backproc bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
   "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=ca, capture_output=True)
sh("openssl", "req", "-x509", "-CA", "ca.pem", "-CAkey", "ca.key", *ec, "-keyout", "key.pem",
   "-out", "cert.pem", "-days", "30", "-subj", "/CN=localhost",
   "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
   "-addext", "basicConstraints=critical,CA:FALSE",
   "-addext", "keyUsage=critical,digitalSignature",
   "-addext", "extendedKeyUsage=serverAuth", cwd=ca, capture_output=True)

# --- Dovecot: IMAPS, LMTP for Postfix, SASL for Postfix (as dovecot.rs) ---
imaps, lmtp, auth = free_ports(3)
mail = os.path.join(root, "mail")
os.mkdir(mail)
os.chown(mail, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
with open(os.path.join(root, "passwd"), "w") as f:
    for u, p in PASSWORDS.items():
        f.write(f"{u}:{{PLAIN}}{p}\n")
dh = "ssl_dh = </usr/share/dovecot/dh.pem\n" if os.path.exists("/usr/share/dovecot/dh.pem") else ""
dovecot_conf = os.path.join(root, "dovecot.conf")
with open(dovecot_conf, "w") as f:
    f.write(f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = {os.path.basename(root)}
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <{ca}/cert.pem
ssl_key = <{ca}/key.pem
{dh}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %n
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{root}/mail/%n
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener sasl {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
""")
sh("dovecot", "-c", dovecot_conf)
started.append(("dovecot", dovecot_conf))
wait_port(lmtp)

# --- Postfix: plain smtp (no AUTH) and submission (STARTTLS + AUTH) ---
smtp_port, submission = free_ports(2)
postfix_uid = pwd.getpwnam("postfix").pw_uid
postdrop_gid = grp.getgrnam("postdrop").gr_gid
conf = os.path.join(root, "postfix")
os.mkdir(conf)


def mk(rel, uid, gid, mode):
    p = os.path.join(root, rel)
    os.mkdir(p)
    os.chown(p, uid, gid)
    os.chmod(p, mode)


mk("queue", 0, -1, 0o755)
mk("queue/pid", 0, -1, 0o755)
for d in ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming",
          "private", "saved", "trace"]:
    mk(f"queue/{d}", postfix_uid, -1, 0o700)
mk("queue/maildrop", postfix_uid, postdrop_gid, 0o730)
mk("queue/public", postfix_uid, postdrop_gid, 0o710)
mk("pfdata", postfix_uid, -1, 0o700)
main_cf = f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/pfdata
maillog_file_prefixes = {root}
maillog_file = {root}/postfix.log
myhostname = localhost.localdomain
mydomain = localdomain
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
virtual_mailbox_domains = example.com
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
local_transport = error:local delivery is disabled
default_transport = error:outbound mail is disabled
relay_transport = error:outbound mail is disabled
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {ca}/cert.pem
smtpd_tls_key_file = {ca}/key.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
message_size_limit = 209715200
virtual_mailbox_limit = 0
in_flow_delay = 0
smtpd_error_sleep_time = 0
biff = no
"""
master = []
skipping = False
for line in open("/usr/share/postfix/master.cf.dist"):
    line = line.rstrip("\n")
    service = line and not line.startswith(("#", " ", "\t"))
    if service:
        f = line.split()
        skipping = len(f) >= 2 and f[0] == "smtp" and f[1] == "inet"
        if skipping:
            continue
        if len(f) >= 8:
            f[4] = "n"
            master.append("  ".join(f))
            continue
    elif skipping and line.startswith((" ", "\t")):
        continue
    else:
        skipping = False
    master.append(line)
master.append(f"127.0.0.1:{smtp_port} inet n - n - - smtpd")
master.append(f"""127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=inet:127.0.0.1:{auth}
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject""")
past = time.time() - 10  # Postfix re-reads a config younger than a second
for name, text in [("main.cf", main_cf), ("master.cf", "\n".join(master) + "\n")]:
    p = os.path.join(conf, name)
    with open(p, "w") as f:
        f.write(text)
    os.utime(p, (past, past))
open(os.path.join(root, "queue/quick-start"), "w").close()
sh("postfix", "-c", conf, "start", capture_output=True)
started.append(("postfix", conf))
wait_port(smtp_port)
wait_port(submission)

# --- the engine's home and accounts ---
home = os.path.join(root, "home")
os.mkdir(home)
with open(os.path.join(home, "config.inc"), "w") as f:
    f.write(f"<?php\ndefine('BG_TLS_CA_FILE', '{ca}/ca.pem');\n")


def engine(*args, stdin=None):
    return subprocess.run([ENGINE, "--home", home, *args], input=stdin, capture_output=True,
                          check=False)


def add_account(security, port):
    out = engine("account", "add", "--email", "alice@example.com", "--imap-host", "localhost",
                 "--imap-port", str(imaps), "--imap-login", "alice", "--smtp-host", "localhost",
                 "--smtp-port", str(port), "--smtp-security", security, "--smtp-login", "alice",
                 stdin=(PASSWORDS["alice"] + "\n").encode())
    if out.returncode != 0:
        sys.exit(f"account add: {out.stderr.decode()}")
    return int(out.stdout.decode().strip())


plain_acct = add_account("plain", smtp_port)
auth_acct = add_account("starttls", submission)
db = sqlite3.connect(os.path.join(home, "data", "engine.sqlite"))
# No IMAP host: no Sent copies (smtp-source makes none either).
db.execute("UPDATE email_accounts SET imap_host = ''")
db.commit()


def message(i):
    head = ("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n"
            f"Subject: bench message {i:06d}\r\nDate: Sun, 29 Nov 2026 08:00:00 +0100\r\n"
            f"Message-ID: <bench-{i:06d}@example.com>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = b""
    while len(head) + len(body) + len(line) <= SIZE:
        body += line
    body += b"x" * max(0, SIZE - len(head) - len(body) - 2) + b"\r\n"
    return head + body


def delivered():
    n = 0
    for sub in ("new", "cur"):
        try:
            n += len(os.listdir(os.path.join(root, "mail", "bob", sub)))
        except FileNotFoundError:
            pass
    return n


def wait_delivered(total, t0):
    while delivered() < total:
        if time.monotonic() - t0 > 900:
            sys.exit(f"only {delivered()} of {total} delivered; see {root}/postfix.log")
        time.sleep(0.01)
    return time.monotonic()


# The same bytes for both clients; smtp-source -F wants bare LF lines (it
# sends CRLF after each) and sends the file as it is, headers included.
sample = message(0)
source_file = os.path.join(root, "message.txt")
with open(source_file, "wb") as f:
    f.write(sample.replace(b"\r\n", b"\n"))


def smtp_source(count):
    t0 = time.monotonic()
    sh("smtp-source", "-4", "-s", "1", "-d", "-m", str(count), "-M", "localhost",
       "-f", "alice@example.com", "-t", "bob@example.com", "-F", source_file,
       f"127.0.0.1:{smtp_port}", capture_output=True)
    return t0, time.monotonic()


def engine_drain(acntid, first):
    last = db.execute("SELECT COALESCE(MAX(emoid), 0) FROM email_outbox").fetchone()[0]
    db.execute("BEGIN")
    db.executemany("INSERT INTO email_outbox (acntid, raw) VALUES (?, ?)",
                   ((acntid, message(first + i)) for i in range(N)))
    db.commit()
    t0 = time.monotonic()
    out = engine("run", "--no-sync")
    t1 = time.monotonic()
    if out.returncode != 0:
        sys.exit(f"engine run exited {out.returncode}: {out.stderr.decode()}")
    sent = db.execute("SELECT COUNT(*) FROM email_outbox WHERE emoid > ? AND state = 'sent'",
                      (last,)).fetchone()[0]
    if sent != N:
        sys.exit(f"engine sent {sent} of {N}")
    return t0, t1


runs = {"engine": [], "smtp-source": [], "engine-auth": []}
expected = 0
t0, _ = smtp_source(WARMUP)
expected += WARMUP
wait_delivered(expected, t0)

first = 0
for r in range(ROUNDS):
    cases = [("engine", plain_acct), ("smtp-source", None), ("engine-auth", auth_acct)]
    if r % 2:
        cases.reverse()  # neither client always goes first
    for name, acct in cases:
        if acct is None:
            t0, t1 = smtp_source(N)
        else:
            t0, t1 = engine_drain(acct, first)
            first += N
        expected += N
        t2 = wait_delivered(expected, t0)
        runs[name].append((N / (t1 - t0), N / (t2 - t0)))
        print(f"round {r + 1} {name:<12} accepted {N / (t1 - t0):7.1f} msg/s, "
              f"delivered {N / (t2 - t0):7.1f} msg/s", file=sys.stderr)


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


results = {name: {"accepted_per_s": median([a for a, _ in v]),
                  "delivered_per_s": median([d for _, d in v])} for name, v in runs.items()}
print(f"\n{N} messages of {len(sample)} bytes to a private Postfix on 127.0.0.1 "
      f"(delivering into Dovecot over LMTP), one connection each; median of {ROUNDS} rounds")
print(f"{'client':<14}{'accepted msg/s':>16}{'delivered msg/s':>17}")
for name, r in results.items():
    print(f"{name:<14}{r['accepted_per_s']:>16.1f}{r['delivered_per_s']:>17.1f}")
e, s = results["engine"], results["smtp-source"]
print(f"engine / smtp-source (plain port, no AUTH): "
      f"accepted {e['accepted_per_s'] / s['accepted_per_s']:.2f}, "
      f"delivered {e['delivered_per_s'] / s['delivered_per_s']:.2f}")
print(json.dumps({"n": N, "size": len(sample), "rounds": ROUNDS, "median": results,
                  "runs": runs}))
PY
