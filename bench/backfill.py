#!/usr/bin/python3
"""The backfill of the content migration (SQLite's migration 4:
attachments and search for mail stored before them, SPEC section 14): how
long it takes, and how long the web application's writes wait meanwhile.

    bench/backfill.py --engine target/release/engine [--messages 20000] [--rounds 3]

Builds a store as an engine from before that migration left it (schema
version 3, none of its objects) holding N messages of bench.py's
corpus (2-20 KB of text, ~5% with a 0.1-1.7 MB attachment), then runs
`engine run --no-sync --no-outbox` (the backfill alone, to the end) while a
writer does what a web application does: one small write transaction
(BEGIN IMMEDIATE, an upsert, COMMIT; Python's sqlite3, busy timeout 30 s)
every 5 ms. The same writer runs for 5 s on the idle store first, for
comparison. No Dovecot needed. Reports, per round: the backfill's time and
messages/s, its longest write transaction (from its debug log), and the
writer's latency (median, 99th percentile, maximum) idle and during it.
"""

import argparse
import os
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

# Migration 3's objects: dropping them gives the store of an engine before it.
MIGRATION_3 = """
DROP TRIGGER email_messages_content_delete;
DROP TRIGGER email_search_text_delete;
DROP TRIGGER email_search_text_update;
DROP TABLE email_search;
DROP TABLE email_search_text;
DROP TABLE email_attachments;
DROP TABLE email_content_backfill;
DROP INDEX email_messages_search;
DROP INDEX email_messages_dated;
DROP INDEX email_messages_undated;
PRAGMA user_version = 3;
"""


def build_store(engine, home, n, seed):
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    subprocess.run([engine, "--home", home, "status"], check=True, capture_output=True)
    db = sqlite3.connect(os.path.join(home, "data", "engine.sqlite"), isolation_level=None)
    db.executescript(MIGRATION_3)
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO email_folders (emfdid, acntid, name, imap_name, special, priority) "
        "VALUES (1, 1, 'INBOX', 'INBOX', 'inbox', 'hi')"
    )
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        raw = bench.make_message(rng, i, "backfill")
        total += len(raw)
        db.execute(
            "INSERT INTO email_messages (emfdid, uidvalidity, uid, subject, from_addr, to_addrs, "
            "size, flags, partial, raw) VALUES (1, 1, ?, ?, ?, 'bench@example.com', ?, '', 0, ?)",
            (i + 1, f"message {i}", f"sender{i % 97}@example.com", len(raw), raw),
        )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return total


class Writer(threading.Thread):
    """The web application: a write transaction every 5 ms until stopped."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.lat = []
        self.stop = threading.Event()

    def run(self):
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        n = 0
        while not self.stop.is_set():
            t = time.monotonic()
            c.execute("BEGIN IMMEDIATE")
            c.execute(
                "INSERT INTO user_sessions (usrid, last_activity_at) VALUES (4242, ?) "
                "ON CONFLICT (usrid) DO UPDATE SET last_activity_at = excluded.last_activity_at",
                (n,),
            )
            c.execute("COMMIT")
            self.lat.append(time.monotonic() - t)
            n += 1
            time.sleep(0.005)
        c.close()

    def summary(self):
        lat = sorted(self.lat)
        ms = lambda x: x * 1000  # noqa: E731
        return (
            len(lat),
            ms(lat[len(lat) // 2]),
            ms(lat[min(len(lat) - 1, int(len(lat) * 0.99))]),
            ms(lat[-1]),
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(bench.HERE, "work-backfill"))
    args = ap.parse_args()
    engine = os.path.abspath(args.engine)
    home = os.path.join(args.work, "home")
    db_path = os.path.join(home, "data", "engine.sqlite")
    rows = []
    for r in range(args.rounds):
        size = build_store(engine, home, args.messages, seed=args.messages)
        # The first command after the upgrade migrates (fast); time the backfill alone.
        subprocess.run([engine, "--home", home, "status"], check=True, capture_output=True)
        bench.settle()
        idle = Writer(db_path)
        idle.start()
        time.sleep(5)
        idle.stop.set()
        idle.join()
        busy = Writer(db_path)
        busy.start()
        took, rss, _ = bench.timed([engine, "--home", home, "run", "--no-sync", "--no-outbox"])
        busy.stop.set()
        busy.join()
        log = open(os.path.join(home, "logs", "l-debug.log"), encoding="utf-8", errors="replace").read()
        longest = max((int(m) for m in re.findall(r"longest write transaction (\d+) ms", log)), default=-1)
        done = sqlite3.connect(db_path).execute("SELECT COUNT(*) FROM email_search_text").fetchone()[0]
        if done != args.messages:
            raise RuntimeError(f"{done} of {args.messages} indexed")
        rows.append((took, rss, longest, idle.summary(), busy.summary()))
        i, b = idle.summary(), busy.summary()
        print(
            f"round {r + 1}: {args.messages:,} messages ({size / 1e6:.0f} MB) in {took:.2f} s "
            f"({args.messages / took:,.0f} msg/s), peak RSS {rss:.0f} MiB, longest write "
            f"transaction {longest} ms; web writes idle: median {i[1]:.1f} p99 {i[2]:.1f} max "
            f"{i[3]:.1f} ms; during: {b[0]} writes, median {b[1]:.1f} p99 {b[2]:.1f} max {b[3]:.1f} ms",
            flush=True,
        )
    print()
    print(f"medians of {args.rounds} rounds, {args.messages:,} messages")
    print()
    print("| backfill | msg/s | peak RSS | longest write transaction | web writes idle (median / p99 / max) | during the backfill |")
    print("|---|---|---|---|---|---|")
    med = statistics.median
    took = med(r[0] for r in rows)
    print(
        f"| {took:.2f} s | {args.messages / took:,.0f} | {max(r[1] for r in rows):.0f} MiB | "
        f"{med(r[2] for r in rows):.0f} ms | "
        f"{med(r[3][1] for r in rows):.1f} / {med(r[3][2] for r in rows):.1f} / {med(r[3][3] for r in rows):.1f} ms | "
        f"{med(r[4][1] for r in rows):.1f} / {med(r[4][2] for r in rows):.1f} / {med(r[4][3] for r in rows):.1f} ms |"
    )


if __name__ == "__main__":
    main()
