#!/usr/bin/python3
"""`engine search` over a synced account (SPEC section 14): the whole
process, from exec to exit, as the web application or an administrator
runs it.

    bench/search.py --engine target/release/engine [--size 50000] [--runs 21]
                    [--stores sqlite,postgres]

Loads bench.py's corpus (N messages: 2-20 KB of Polish and Latin text,
~5% with an attachment) into a private Dovecot, syncs it with `engine run`,
then times queries, taking turns: a one-word query matching a few
messages, a one-word query matching nearly every message, a phrase, a
prefix, `subject:`, each with the default --limit (20). Prints the median
and the spread of each, per store: the same mail synced into SQLite and
into a private PostgreSQL cluster (bench/pg.py's), the stores taking turns.
Needs what bench/run.sh installs (Dovecot, PostgreSQL); run as root.
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
import pg  # noqa: E402

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
    ap.add_argument("--stores", default="sqlite,postgres")
    args = ap.parse_args()
    engine = os.path.abspath(args.engine)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    stores = args.stores.split(",")
    cluster = pg.Cluster(args.work) if "postgres" in stores else None
    user = f"s{args.size}"
    conf, port = bench.start_dovecot(args.work, [user])
    homes = {}
    try:
        bench.load_account(port, user, args.size, seed=args.size)
        for store in stores:
            url = cluster.new_database()[1] if store == "postgres" else None
            home = pg.fresh_home(args.work, f"engine-{store}")
            pg.add_account(engine, home, url, port, user)
            took, rss = pg.run(engine, home, url)
            homes[store] = (home, url)
            print(f"{store}: first sync of {args.size:,} messages: {took:.1f} s, "
                  f"peak RSS {rss:.0f} MiB", flush=True)
        bench.stop_dovecot(conf)
        conf = None
        times = {(store, name): [] for store in stores for name, _ in QUERIES}
        for r in range(args.runs):
            for store in stores if r % 2 == 0 else reversed(stores):
                home, url = homes[store]
                for name, q in QUERIES if r % 2 == 0 else reversed(QUERIES):
                    t0 = time.monotonic()
                    p = subprocess.run([engine, "--home", home, "search", *q, "--json"],
                                       capture_output=True, env=pg.engine_env(url))
                    times[(store, name)].append(time.monotonic() - t0)
                    if p.returncode != 0:
                        raise RuntimeError(f"{store}: search {q}: {p.stderr.decode()}")
        counts = {}
        for store in stores:
            home, url = homes[store]
            for name, q in QUERIES:
                p = subprocess.run([engine, "--home", home, "search", *q, "--limit", "100000",
                                    "--json"], capture_output=True, env=pg.engine_env(url))
                counts[(store, name)] = p.stdout.count(b'"emmsid"')
    finally:
        if conf:
            bench.stop_dovecot(conf)
        if cluster:
            cluster.stop()
    print()
    print(f"`engine search` over {args.size:,} messages, medians of {args.runs} runs "
          "(whole process, the default --limit 20)")
    print()
    print("| query | matching messages | " + " | ".join(f"{s} median (spread)" for s in stores) + " |")
    print("|---|---|" + "---|" * len(stores))
    for name, q in QUERIES:
        found = sorted({counts[(s, name)] for s in stores})
        cells = []
        for store in stores:
            t = times[(store, name)]
            cells.append(f"{statistics.median(t) * 1000:.0f} ms ({min(t) * 1000:.0f}-{max(t) * 1000:.0f})")
        print(f"| {name}: `{' '.join(q)}` | {' / '.join(f'{c:,}' for c in found)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
