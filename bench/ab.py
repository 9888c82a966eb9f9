#!/usr/bin/python3
"""A/B of two engine builds on one private Dovecot, taking turns.

    bench/ab.py --a OLD_ENGINE --b NEW_ENGINE [--size 10000] [--rounds 7]

For a change that must not cost speed (a refactoring): both builds sync the
same generated account (bench.py's corpus), the order alternating every
round, so a slow spell of the machine hits both alike. Cases per round and
build: first sync (a fresh home, verified message by message against the
server), nothing changed (`run --force`: a full sync of every folder), 1%
new mail (appended to INBOX just before that build's run, which comes
right after its own first sync), and 500 folders with nothing changed.
Reports the median of each case per build and B/A, and the largest peak
RSS of each build's first syncs.

Needs what bench/run.sh installs (Dovecot); run as root.
"""

import argparse
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the engine binary before the change")
    ap.add_argument("--b", required=True, help="the engine binary after the change")
    ap.add_argument("--work", default=os.path.join(bench.HERE, "work-ab"))
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--folders", type=int, default=500)
    args = ap.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    user = f"u{args.size}"
    conf, port = bench.start_dovecot(args.work, [user, "folders"])
    builds = {"A": args.a, "B": args.b}
    times = {(b, case): [] for b in builds for case in ("first", "same", "new", "folders")}
    rss = {b: [] for b in builds}
    try:
        bench.load_account(port, user, args.size, seed=args.size)
        bench.warm(port, user)
        bench.load_folders(port, "folders", args.folders, 20, seed=500)
        bench.warm(port, "folders")
        homes = {}
        for b, engine in builds.items():
            homes[b] = bench.engine_home(engine, args.work, f"folders-{b}", port, "folders")
            bench.engine_run(engine, homes[b])
        for r in range(args.rounds):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            for b in order:
                engine = builds[b]
                home = bench.engine_home(engine, args.work, f"engine-{b}", port, user)
                took, peak = bench.engine_run(engine, home)
                rss[b].append(peak)
                stored = bench.verify_engine(home, port, user, sample=10)
                if stored < args.size:
                    raise RuntimeError(f"{b} stored {stored} of {args.size}")
                times[(b, "first")].append(took)
                times[(b, "same")].append(bench.engine_run(engine, home, force=True)[0])
                bench.add_new(port, user, max(1, args.size // 100), seed=1000 + r * 2 + order.index(b))
                times[(b, "new")].append(bench.engine_run(engine, home, force=True)[0])
                times[(b, "folders")].append(bench.engine_run(engine, homes[b], force=True)[0])
                print(
                    f"round {r + 1} {b}: first {times[(b, 'first')][-1]:.3f} s, "
                    f"same {times[(b, 'same')][-1]:.3f} s, new {times[(b, 'new')][-1]:.3f} s, "
                    f"folders {times[(b, 'folders')][-1]:.3f} s",
                    flush=True,
                )
    finally:
        bench.stop_dovecot(conf)

    print()
    print(f"medians of {args.rounds} rounds, builds taking turns ({args.size:,} messages)")
    print()
    print("| case | A | B | B/A | A spread | B spread |")
    print("|---|---|---|---|---|---|")
    names = {
        "first": "first sync",
        "same": "nothing changed (--force)",
        "new": "1% new mail",
        "folders": f"{args.folders} folders, nothing changed",
    }
    for case, name in names.items():
        a, b = times[("A", case)], times[("B", case)]
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"| {name} | {ma:.3f} s | {mb:.3f} s | {mb / ma:.2f} | "
            f"{min(a):.3f}-{max(a):.3f} | {min(b):.3f}-{max(b):.3f} |"
        )
    ra, rb = max(rss["A"]), max(rss["B"])
    print(f"| peak RSS, first sync (largest) | {ra:.0f} MiB | {rb:.0f} MiB | {rb / ra:.2f} | | |")


if __name__ == "__main__":
    main()
