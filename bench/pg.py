#!/usr/bin/python3
"""The PostgreSQL store against the SQLite one (and mbsync), on one private
Dovecot and one private PostgreSQL cluster, in the same run (SPEC §13).

Run through bench/run.sh (after bench.py) or alone:
    /usr/bin/python3 bench/pg.py --sizes 10000 --accounts 1000

Cases (each timed N times, median reported):
  first sync        a fresh home (SQLite) / a fresh database (PostgreSQL),
                    one account of N messages; mbsync as the peer
  nothing changed   `run --force` again on each store (taking turns), and on
                    PostgreSQL through PgBouncer in session mode as well
                    (when `pgbouncer` is installed): the pooler keeps server
                    sessions warm between runs
  deployment        ACCOUNTS accounts x 3 folders (INBOX, Sent, Archiwum; a
                    few small messages each) on the bench Dovecot, every
                    folder due (their sync times moved back two hours), one
                    host against two hosts on one database started at the
                    same moment: wall time until both runs end, accounts per
                    second; nothing changed, and with 1% new mail; directly
                    and through PgBouncer.

PostgreSQL runs with its defaults (fsync on) except a larger
max_connections; the engine's sync writer commits with
synchronous_commit=off (each batch with its folder's progress), its outbox
with it on.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the corpus, Dovecot, mbsync and timing helpers)

ROLE, ROLE_PW = "engine", "bench-pg-secret"


def pg_bin():
    versions = sorted(int(v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit())
    return f"/usr/lib/postgresql/{versions[-1]}/bin"


class Cluster:
    """A private cluster under WORK/postgres, run as the postgres user."""

    def __init__(self, work):
        self.dir = os.path.join(work, "postgres")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.port = bench.free_port()
        self.as_pg(["initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8",
                    "--locale=C.UTF-8", "--auth=trust", "-N"])
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                "-c max_connections=300 -c shared_buffers=256MB")
        self.as_pg(["pg_ctl", "-D", self.data, "-w", "-l", os.path.join(self.dir, "log"),
                    "-o", opts, "start"])
        self.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{ROLE_PW}'")
        self.n = 0
        # Before every timed run (of any tool): the pages earlier runs left
        # in the server's buffers are written now, not by a checkpoint that
        # would run during the next run (its own checkpoints still count).
        bench.SETTLE_HOOKS.append(self.checkpoint)

    def checkpoint(self):
        self.sql("CHECKPOINT")

    def as_pg(self, argv):
        subprocess.run(["runuser", "-u", "postgres", "--", f"{pg_bin()}/{argv[0]}"] + argv[1:],
                       check=True, capture_output=True)

    def sql(self, statement, db="postgres"):
        p = subprocess.run(
            [f"{pg_bin()}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", statement],
            check=True, capture_output=True)
        return p.stdout.decode().strip()

    def new_database(self):
        self.n += 1
        name = f"bench_{self.n}"
        self.sql(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name, f"postgresql://{ROLE}:{ROLE_PW}@127.0.0.1:{self.port}/{name}?sslmode=disable"

    def stop(self):
        if self.checkpoint in bench.SETTLE_HOOKS:
            bench.SETTLE_HOOKS.remove(self.checkpoint)
        subprocess.run(["runuser", "-u", "postgres", "--", f"{pg_bin()}/pg_ctl", "-D", self.data,
                        "-m", "fast", "stop"], capture_output=True)


class Pooler:
    """PgBouncer in session mode in front of the cluster, run as the
    postgres user (it refuses root); None from start() when not installed."""

    @staticmethod
    def start(work, cluster):
        if not shutil.which("pgbouncer"):
            print("pgbouncer not installed: no rows through a pooler", flush=True)
            return None
        return Pooler(work, cluster)

    def __init__(self, work, cluster):
        self.dir = os.path.join(work, "pgbouncer")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        shutil.chown(self.dir, "postgres", "postgres")
        self.cluster_port = cluster.port
        self.port = bench.free_port()
        users = os.path.join(self.dir, "users.txt")
        with open(users, "w") as f:  # trust still wants the role listed
            f.write(f'"{ROLE}" "{ROLE_PW}"\n')
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(f"[databases]\n* = host=127.0.0.1 port={cluster.port}\n"
                    f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\n"
                    f"unix_socket_dir =\nauth_type = trust\nauth_file = {users}\npool_mode = session\n"
                    "default_pool_size = 100\nmax_client_conn = 1000\n"
                    f"logfile = {self.dir}/pgbouncer.log\n")
        self.proc = subprocess.Popen(["pgbouncer", "-u", "postgres", ini],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def url(self, url):
        return url.replace(f"@127.0.0.1:{self.cluster_port}/", f"@127.0.0.1:{self.port}/")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def engine_env(url):
    env = dict(os.environ)
    env.pop("BACKPROC_DATABASE_URL", None)
    if url:
        env["BACKPROC_DATABASE_URL"] = url
    return env


def add_account(engine, home, url, port, user):
    subprocess.run(
        [engine, "--home", home, "account", "add", "--email", f"{user}@example.com",
         "--imap-host", "127.0.0.1", "--imap-port", str(port), "--imap-security", "plain",
         "--imap-login", user],
        input=(bench.PASSWORD + "\n").encode(), check=True, capture_output=True,
        env=engine_env(url))


def fresh_home(work, name):
    home = os.path.join(work, name)
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    return home


def run(engine, home, url, force=False):
    bench.settle()
    cmd = [engine, "--home", home, "run"] + (["--force"] if force else [])
    took, rss, _ = bench.timed(cmd, env=engine_env(url))
    return took, rss


def verify_pg(cluster, db, port, user):
    """Per folder: count and bytes stored equal the server's; one message
    per folder compared byte for byte."""
    imap = bench.Imap(port, user)
    total = 0
    try:
        for folder in imap.folders():
            sizes = imap.sizes(folder)
            safe = folder.replace("'", "''")
            row = cluster.sql(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(m.raw)), 0) FROM email_messages m "
                "JOIN email_folders f ON f.emfdid = m.emfdid "
                f"WHERE f.imap_name = '{safe}' AND m.uidvalidity = f.uidvalidity", db).split("|")
            if int(row[0]) != len(sizes) or int(row[1]) != sum(sizes.values()):
                raise RuntimeError(f"{folder}: stored {row}, server {len(sizes)} / {sum(sizes.values())}")
            total += int(row[0])
            if sizes:
                uid = random.Random(3).choice(sorted(sizes))
                got = cluster.sql(
                    "SELECT encode(m.raw, 'hex') FROM email_messages m JOIN email_folders f "
                    f"ON f.emfdid = m.emfdid WHERE f.imap_name = '{safe}' AND m.uid = {uid} "
                    "AND m.uidvalidity = f.uidvalidity", db)
                if bytes.fromhex(got) != imap.body(folder, uid):
                    raise RuntimeError(f"{folder} uid {uid}: stored bytes differ")
    finally:
        imap.close()
    return total


def one_account(args, cluster, pooler, port, n, rows):
    user = f"u{n}"
    bench.load_account(port, user, n, seed=n)
    bench.warm(port, user)
    sq_first, pg_first, mb_first = [], [], []
    sq_home = pg_home = None
    for r in range(args.runs):
        sq_home = fresh_home(args.work, f"sqlite-{n}")
        add_account(args.engine, sq_home, None, port, user)
        sq_first.append(run(args.engine, sq_home, None))
        if bench.verify_engine(sq_home, port, user, sample=5) != n:
            raise RuntimeError("sqlite: not all stored")
        db, url = cluster.new_database()
        pg_home = fresh_home(args.work, f"pg-{n}")
        add_account(args.engine, pg_home, url, port, user)
        pg_first.append(run(args.engine, pg_home, url))
        if verify_pg(cluster, db, port, user) != n:
            raise RuntimeError("postgresql: not all stored")
        print(f"[{user}] first sync {r + 1}: SQLite {sq_first[-1][0]:.2f} s, "
              f"PostgreSQL {pg_first[-1][0]:.2f} s (verified)", flush=True)
        if not args.skip_mbsync:
            conf = bench.mbsync_conf(args.work, f"mbsync-{n}", port, user)
            mb_first.append(bench.mbsync_run(conf))
            print(f"[{user}] mbsync first sync {r + 1}: {mb_first[-1][0]:.2f} s", flush=True)
    sq_same, pg_same, pooled_same = [], [], []
    for _ in range(args.same_runs):
        sq_same.append(run(args.engine, sq_home, None, force=True))
        pg_same.append(run(args.engine, pg_home, url, force=True))
        if pooler:
            pooled_same.append(run(args.engine, pg_home, pooler.url(url), force=True))
    ms = lambda xs: [round(x[0] * 1000, 1) for x in xs]
    print(f"[{user}] nothing changed (ms): SQLite {ms(sq_same)}, PostgreSQL {ms(pg_same)}, "
          f"through PgBouncer {ms(pooled_same)}", flush=True)
    med = lambda xs: bench.med([x[0] for x in xs])
    rows.append((f"{n:,} msgs, first sync", med(sq_first), med(pg_first),
                 med(mb_first) if mb_first else None))
    rows.append((f"{n:,} msgs, nothing changed", med(sq_same), med(pg_same), None))
    if pooled_same:
        rows.append((f"{n:,} msgs, nothing changed, through PgBouncer", med(sq_same),
                     med(pooled_same), None))
    for d in (f"sqlite-{n}", f"pg-{n}", f"mbsync-{n}"):
        shutil.rmtree(os.path.join(args.work, d), ignore_errors=True)


def load_deployment(port, users, per_folder):
    """Every user: INBOX, Sent and Archiwum with a few small messages."""
    rng = random.Random(11)
    for u in users:
        imap = bench.Imap(port, u)
        for f in ("Sent", "Archiwum"):
            imap.cmd(f'CREATE "{f}"')
        for f in ("INBOX", "Sent", "Archiwum"):
            imap.multiappend(f, [bench.make_message(rng, i, u) for i in range(per_folder)])
        imap.close()


def deployment(args, cluster, pooler, port, users, rows):
    db, url = cluster.new_database()
    homes = [fresh_home(args.work, f"host-{h}") for h in ("a", "b")]
    t0 = time.monotonic()
    for i, u in enumerate(users):
        add_account(args.engine, homes[i % 2], url, port, u)
    print(f"[deployment] {len(users)} accounts added in {time.monotonic() - t0:.1f} s", flush=True)
    # First sync by both hosts (not timed), until everything is stored.
    for _ in range(3):
        procs = [subprocess.Popen([args.engine, "--home", h, "run"], env=engine_env(url))
                 for h in homes]
        for p in procs:
            p.wait()
    stored = int(cluster.sql("SELECT COUNT(*) FROM email_messages", db))
    want = len(users) * 3 * args.per_folder
    if stored != want:
        raise RuntimeError(f"deployment: {stored} of {want} stored")

    def due():
        cluster.sql("UPDATE email_folders SET last_recent_sync_at = last_recent_sync_at - 7200, "
                    "last_full_sync_at = last_full_sync_at - 7200", db)

    def timed_hosts(n_hosts, url):
        due()
        bench.settle()
        t = time.monotonic()
        procs = [subprocess.Popen([args.engine, "--home", h, "run"], env=engine_env(url),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for h in homes[:n_hosts]]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"run exited {p.returncode}: {err.decode()[-2000:]}")
        return time.monotonic() - t

    def new_mail(seed):
        rng = random.Random(seed)
        n = max(1, want // 100)
        for k in range(n):
            u = rng.choice(users)
            imap = bench.Imap(port, u)
            imap.multiappend("INBOX", [bench.make_message(rng, 5_000_000 + seed * 10_000 + k, u)])
            imap.close()

    ways = [("", url)] + ([(", through PgBouncer", pooler.url(url))] if pooler else [])
    for label, before in (("nothing changed", None), ("1% new mail", new_mail)):
        for way, through in ways:
            for hosts in (1, 2):
                times = []
                for r in range(args.runs):
                    if before:
                        before(100 * hosts + r + (50 if way else 0))
                    times.append(timed_hosts(hosts, through))
                t = bench.med(times)
                print(f"[deployment] {label}{way}, {hosts} host(s): {[round(x, 2) for x in times]} s",
                      flush=True)
                rows.append((f"{len(users)} accounts x 3 folders, {label}{way}, {hosts} host(s)",
                             t, len(users) / t))
    stored = int(cluster.sql("SELECT COUNT(*) FROM email_messages", db))
    dupes = int(cluster.sql("SELECT COUNT(*) FROM (SELECT emfdid, uid FROM email_messages "
                            "GROUP BY emfdid, uidvalidity, uid HAVING COUNT(*) > 1) d", db))
    print(f"[deployment] {stored} messages stored, {dupes} twice", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default=os.path.join(bench.ROOT, "target", "release", "engine"))
    ap.add_argument("--work", default=os.path.join(HERE, "work-pg"))
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--same-runs", type=int, default=15,
                    help="runs of nothing changed per store, taking turns")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--per-folder", type=int, default=3)
    ap.add_argument("--skip-mbsync", action="store_true")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    os.chmod(args.work, 0o755)
    dep_users = [f"d{i:04d}" for i in range(args.accounts)]
    conf, port = bench.start_dovecot(args.work, [f"u{n}" for n in sizes] + dep_users)
    cluster = Cluster(args.work)
    pooler = Pooler.start(args.work, cluster)
    rows, dep_rows = [], []
    try:
        for n in sizes:
            one_account(args, cluster, pooler, port, n, rows)
        if args.accounts:
            t0 = time.monotonic()
            load_deployment(port, dep_users, args.per_folder)
            print(f"[deployment] loaded in {time.monotonic() - t0:.1f} s", flush=True)
            deployment(args, cluster, pooler, port, dep_users, dep_rows)
    finally:
        if pooler:
            pooler.stop()
        cluster.stop()
        bench.stop_dovecot(conf)

    print()
    print(f"median of {args.runs} runs ({args.same_runs} for nothing changed)")
    print()
    print("| case | engine, SQLite | engine, PostgreSQL | PostgreSQL/SQLite | mbsync | PostgreSQL/mbsync |")
    print("|---|---|---|---|---|---|")
    secs = lambda t: f"{t:.2f} s" if t >= 1 else f"{t * 1000:.1f} ms"
    for what, sq, pg, mb in rows:
        mb_cells = f"{secs(mb)} | {pg / mb:.2f}" if mb else " | "
        print(f"| {what} | {secs(sq)} | {secs(pg)} | {pg / sq:.2f} | {mb_cells} |")
    if dep_rows:
        print()
        print("| deployment case (PostgreSQL) | wall time until every run ended | accounts/s |")
        print("|---|---|---|")
        for what, t, rate in dep_rows:
            print(f"| {what} | {t:.2f} s | {rate:,.0f} |")


if __name__ == "__main__":
    main()
