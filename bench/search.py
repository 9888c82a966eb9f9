#!/usr/bin/python3
"""`engine search` over a synced account (SPEC section 14): the whole
process, from exec to exit, as the web application or an administrator
runs it.

    bench/search.py --engine target/release/engine [--size 50000] [--runs 21]

Loads bench.py's corpus (N messages: 2-20 KB of Polish and Latin text,
~5% with an attachment) into a private Dovecot, syncs it with `engine run`,
then times queries, taking turns: a one-word query matching a few
messages, a one-word query matching nearly every message, a phrase, a
prefix, `subject:`, each with the default --limit (20). Prints the median
and the spread of each. Needs what bench/run.sh installs (Dovecot); run as
root.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

QUERIES = [
    ("one word, one message", ["4711"]),
    ("one word, an eighth of them", ["aneks"]),
    ("one word, nearly every message", ["faktura"]),
    ("a word without its diacritics", ["zazolc"]),
    ("phrase", ['"gęślą jaźń"']),
    ("prefix", ["płatn*"]),
    ("subject:", ["subject:protokół"]),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--size", type=int, default=50000)
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--work", default=os.path.join(bench.HERE, "work-search"))
    args = ap.parse_args()
    engine = os.path.abspath(args.engine)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    user = f"s{args.size}"
    conf, port = bench.start_dovecot(args.work, [user])
    try:
        bench.load_account(port, user, args.size, seed=args.size)
        home = bench.engine_home(engine, args.work, "engine", port, user)
        took, rss = bench.engine_run(engine, home)
        print(f"first sync of {args.size:,} messages: {took:.1f} s, peak RSS {rss:.0f} MiB", flush=True)
    finally:
        bench.stop_dovecot(conf)
    db = os.path.join(home, "data", "engine.sqlite")
    print(f"database: {os.path.getsize(db) / 1e6:.0f} MB", flush=True)
    times = {name: [] for name, _ in QUERIES}
    hits = {}
    for r in range(args.runs):
        for name, q in QUERIES if r % 2 == 0 else reversed(QUERIES):
            t0 = time.monotonic()
            p = subprocess.run([engine, "--home", home, "search", *q, "--json"], capture_output=True)
            times[name].append(time.monotonic() - t0)
            if p.returncode != 0:
                raise RuntimeError(f"search {q}: {p.stderr.decode()}")
            hits[name] = p.stdout.count(b'"emmsid"')
    counts = {}
    for name, q in QUERIES:
        p = subprocess.run([engine, "--home", home, "search", *q, "--limit", "100000", "--json"], capture_output=True)
        counts[name] = p.stdout.count(b'"emmsid"')
    print()
    print(f"`engine search` over {args.size:,} messages, medians of {args.runs} runs (whole process)")
    print()
    print("| query | matching messages | median | spread |")
    print("|---|---|---|---|")
    for name, q in QUERIES:
        t = times[name]
        print(
            f"| {name}: `{' '.join(q)}` | {counts[name]:,} | {statistics.median(t) * 1000:.0f} ms | "
            f"{min(t) * 1000:.0f}-{max(t) * 1000:.0f} ms |"
        )


if __name__ == "__main__":
    main()
