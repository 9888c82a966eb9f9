#!/usr/bin/python3
"""What an OAuth 2.0 token refresh adds to a run.

    /usr/bin/python3 bench/oauth.py [--engine PATH] [--rounds 15]

One private Dovecot validating bearer tokens through its oauth2 passdb
against the test token server (tests/support/oauth_server.py, plain HTTP
on loopback, rotating refresh tokens), one OAuth 2.0 account with a
1,000-message Inbox and four more folders. After a first sync, rounds of
`engine run --force` take turns: with the stored access token valid, and
with it expired (so the run refreshes before its first connection and
commits the new tokens first). Prints the median of each and the difference.

On loopback the token endpoint answers in about a millisecond: the
difference is the engine's own cost (the request, the durable commit of the
tokens, the wait of the other connections); a real provider adds its round
trip (Microsoft's token endpoint: typically 100-300 ms from Europe).

Needs what bench/run.sh installs (Dovecot); run as root.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402

CLIENT = "backproc-bench"
INTROSPECT = ("dovecot", "introspect-secret")


def start_token_server(work):
    d = os.path.join(work, "oauth")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "config.json")
    with open(conf, "w") as f:
        json.dump(
            {
                "dir": d,
                "tls": False,
                "clients": [{"id": CLIENT, "secret": None}],
                "introspection_user": INTROSPECT[0],
                "introspection_password": INTROSPECT[1],
                "rotation": True,
                "access_lifetime": 3600,
                "token_length": 2200,
                "device_interval": 1,
                "device_expires_in": 600,
            },
            f,
        )
    server = os.path.join(ROOT, "tests", "support", "oauth_server.py")
    proc = subprocess.Popen(
        ["/usr/bin/python3", server, conf],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        raise RuntimeError(f"token server did not start: {line}")
    with open(os.path.join(d, "control.port")) as f:
        control = int(f.read().strip())
    return proc, int(line[1]), control


def admin(control, op, args):
    req = urllib.request.Request(
        f"http://127.0.0.1:{control}/admin/{op}",
        data=json.dumps(args).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def start_dovecot(work, user, control):
    """bench.py's Dovecot, plus the oauth2 passdb (as tests/support does)."""
    conf, port = bench.start_dovecot(work, [user])
    d = os.path.dirname(conf)
    with open(os.path.join(d, "oauth2.conf.ext"), "w") as f:
        f.write(
            f"introspection_mode = post\n"
            f"introspection_url = http://{INTROSPECT[0]}:{INTROSPECT[1]}@127.0.0.1:{control}/introspect\n"
            "force_introspection = yes\nusername_attribute = username\n"
            "active_attribute = active\nactive_value = true\ntimeout_msecs = 5000\n"
        )
    with open(conf) as f:
        text = f.read()
    text = text.replace(
        "passdb {\n  driver = passwd-file\n",
        "auth_mechanisms = plain login xoauth2 oauthbearer\n"
        "passdb {\n  driver = passwd-file\n  mechanisms = plain login none\n",
    )
    text += f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {d}/oauth2.conf.ext\n}}\n"
    with open(conf, "w") as f:
        f.write(text)
    subprocess.run(["doveadm", "-c", conf, "reload"], check=True)
    time.sleep(1)
    return conf, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default=os.path.join(ROOT, "target", "release", "engine"))
    ap.add_argument("--work", default=os.path.join(HERE, "work-oauth"))
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    user = "alice"
    token_server, port, control = start_token_server(args.work)
    conf, imap_port = start_dovecot(args.work, user, control)
    try:
        bench.load_account(imap_port, user, 1000, seed=7)
        bench.warm(imap_port, user)
        tokens = admin(control, "issue", {"user": user, "client_id": CLIENT})
        home = os.path.join(args.work, "home")
        os.makedirs(home)
        add = subprocess.run(
            [args.engine, "--home", home, "account", "add", "--email", f"{user}@example.com",
             "--imap-host", "127.0.0.1", "--imap-port", str(imap_port), "--imap-security", "plain",
             "--imap-login", user, "--imap-auth", "oauth2", "--smtp-auth", "oauth2",
             "--oauth-token-url", f"http://127.0.0.1:{port}/token", "--oauth-client-id", CLIENT],
            input=tokens["refresh_token"] + "\n\n", capture_output=True, text=True,
        )
        if add.returncode != 0:
            raise RuntimeError(add.stderr)
        acntid = int(add.stdout.strip())
        db = os.path.join(home, "data", "engine.sqlite")
        bench.engine_run(args.engine, home)
        valid, refreshing = [], []
        for r in range(args.rounds):
            for case in (["valid", "refresh"] if r % 2 == 0 else ["refresh", "valid"]):
                if case == "refresh":
                    c = sqlite3.connect(db)
                    c.execute("UPDATE email_accounts SET oauth_expires_at = 0 WHERE acntid = ?", (acntid,))
                    c.commit()
                    c.close()
                took, _ = bench.engine_run(args.engine, home, force=True)
                (refreshing if case == "refresh" else valid).append(took)
            print(f"round {r + 1}: valid {valid[-1]:.3f} s, with a refresh {refreshing[-1]:.3f} s", flush=True)
        stats = admin(control, "stats", {})
        refreshes = sum(stats["token_requests"].get("refresh_token", {}).values())
    finally:
        bench.stop_dovecot(conf)
        token_server.terminate()
    mv, mr = statistics.median(valid), statistics.median(refreshing)
    print()
    print(f"{args.rounds} rounds taking turns; {refreshes} token requests in all")
    print(f"run --force, token valid:      {mv * 1000:.0f} ms (spread {min(valid) * 1000:.0f}-{max(valid) * 1000:.0f})")
    print(f"run --force, token refreshed:  {mr * 1000:.0f} ms (spread {min(refreshing) * 1000:.0f}-{max(refreshing) * 1000:.0f})")
    print(f"a refresh adds {(mr - mv) * 1000:.0f} ms (median against median)")


if __name__ == "__main__":
    main()
