#!/usr/bin/python3
"""The sync benchmark: `engine run` against mbsync (isync) and the raw-fetch
floor, on one private Dovecot, in the same run.

Run through bench/run.sh (it installs Dovecot and isync when missing and
builds the engine in release mode). Everything happens under bench/work/:
the Dovecot instance (plain IMAP on a free loopback port), the generated
mailboxes, the engine homes and the mbsync Maildirs.

Cases (each timed N times, median reported):
  first sync        fresh engine home / fresh Maildir+state, whole account
  nothing changed   the same again (engine: `run --force`, a full sync of
                    every folder; mbsync: its normal run, which is always full)
  1% new mail       1% new messages appended to INBOX, then the same
  raw-fetch floor   one `UID FETCH 1:* BODY.PEEK[]` of INBOX read off the
                    socket and discarded
  500 folders       500 folders x 20 messages, nothing changed

The corpus is deterministic (seeded): mostly 2-20 KB text, ~5% with a
0.1-1.7 MB base64 attachment, Polish subjects (RFC 2047), a few other
folders, one nested with a non-ASCII name.
"""

import argparse
import base64
import hashlib
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PASSWORD = "bench-secret"

SUBJECTS = [
    "Faktura VAT nr {n}/2026 za usługi",
    "Zażółć gęślą jaźń — spotkanie {n}",
    "Umowa najmu lokalu, aneks {n}",
    "Przypomnienie o płatności {n}",
    "Wniosek urlopowy {n}: zatwierdzenie",
    "Re: Oferta handlowa {n}",
    "Protokół z zebrania zarządu {n}",
    "Zamówienie {n} — potwierdzenie wysyłki",
]
WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
    "tempor incididunt ut labore et dolore magna aliqua zażółć gęślą jaźń "
    "faktura umowa płatność termin dokument spotkanie oferta"
).split()


def encode_subject(s):
    return "=?UTF-8?B?" + base64.b64encode(s.encode()).decode() + "?="


def make_message(rng, n, tag):
    """One deterministic message of a realistic shape."""
    subject = rng.choice(SUBJECTS).format(n=n)
    day = 1 + n % 28
    head = (
        f"Return-Path: <sender{n % 97}@example.com>\r\n"
        f"From: =?UTF-8?B?{base64.b64encode('Paweł Wiśniewski'.encode()).decode()}?= <sender{n % 97}@example.com>\r\n"
        f"To: bench@example.com\r\n"
        f"Subject: {encode_subject(subject)}\r\n"
        f"Date: Mon, {day:02d} Nov 2026 10:{n % 60:02d}:00 +0100\r\n"
        f"Message-ID: <{tag}.{n}@bench.example.com>\r\n"
        "MIME-Version: 1.0\r\n"
    )
    target = int(rng.uniform(2000, 20000))
    lines = []
    size = 0
    while size < target:
        line = " ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(line)
        size += len(line) + 2
    text = "\r\n".join(lines) + "\r\n"
    if rng.random() < 0.05:
        att = int(rng.uniform(100_000, 1_700_000) * 3 / 4)
        blob = rng.randbytes(att)
        b64 = base64.encodebytes(blob).decode().replace("\n", "\r\n")
        body = (
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            + text
            + "--b1\r\nContent-Type: application/pdf; name=\"dokument.pdf\"\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="dokument.pdf"\r\n\r\n'
            + b64
            + "--b1--\r\n"
        )
    else:
        body = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
    return (head + body).encode()


def mutf7(name):
    out, buf = [], []

    def flush():
        if buf:
            b = base64.b64encode("".join(buf).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b.replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


# ---------------------------------------------------------------- IMAP, raw


class Imap:
    """A tiny raw IMAP client (no imaplib: it would rewrite line ends)."""

    def __init__(self, port, user):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.n = 0
        self.f.readline()
        self.cmd(f'LOGIN {user} "{PASSWORD}"')

    def cmd(self, line, literals=()):
        self.n += 1
        tag = f"B{self.n}"
        data = f"{tag} {line}".encode()
        for lit in literals:
            data += lit
        self.s.sendall(data + b"\r\n")
        out = []
        while True:
            resp = self.f.readline()
            if not resp:
                raise RuntimeError("connection closed")
            m = re.search(rb"\{(\d+)\}\r\n$", resp)
            while m:
                lit = self.f.read(int(m.group(1)))
                resp += lit
                more = self.f.readline()
                resp += more
                m = re.search(rb"\{(\d+)\}\r\n$", more)
            if resp.startswith(tag.encode() + b" "):
                if not resp.startswith(tag.encode() + b" OK"):
                    raise RuntimeError(f"{line[:60]}: {resp[:200]!r}")
                return out
            out.append(resp)

    def multiappend(self, folder, messages):
        """MULTIAPPEND with LITERAL+, in chunks."""
        chunk, size = [], 0
        for m in messages:
            chunk.append(m)
            size += len(m)
            if len(chunk) >= 500 or size > 32 << 20:
                self._append(folder, chunk)
                chunk, size = [], 0
        if chunk:
            self._append(folder, chunk)

    def _append(self, folder, chunk):
        lits = []
        for m in chunk:
            lits.append(b" () {" + str(len(m)).encode() + b"+}\r\n" + m)
        self.cmd(f'APPEND "{folder}"', lits)

    def sizes(self, folder):
        self.cmd(f'EXAMINE "{folder}"')
        out = self.cmd("UID FETCH 1:* (UID RFC822.SIZE)")
        res = {}
        for line in out:
            m = re.search(rb"UID (\d+) RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+) UID (\d+)", line)
            if m:
                if m.group(1):
                    res[int(m.group(1))] = int(m.group(2))
                else:
                    res[int(m.group(4))] = int(m.group(3))
        return res

    def body(self, folder, uid):
        self.cmd(f'EXAMINE "{folder}"')
        out = self.cmd(f"UID FETCH {uid} BODY.PEEK[]")
        for line in out:
            m = re.search(rb"BODY\[\] \{(\d+)\}\r\n", line)
            if m:
                start = m.end()
                return line[start : start + int(m.group(1))]
        return None

    def folders(self):
        out = self.cmd('LIST "" "*"')
        names = []
        for line in out:
            m = re.match(rb'\* LIST \(([^)]*)\) (?:"[^"]*"|NIL) "?(.*?)"?\r\n$', line)
            if m and b"\\Noselect" not in m.group(1) and b"\\NonExistent" not in m.group(1):
                names.append(m.group(2).decode())
        return names

    def close(self):
        try:
            self.cmd("LOGOUT")
        except Exception:
            pass
        self.s.close()


def raw_fetch_floor(port, user):
    """One UID FETCH 1:* BODY.PEEK[] of INBOX, read off the socket and discarded."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f'a LOGIN {user} "{PASSWORD}"\r\nb EXAMINE INBOX\r\n'.encode())
    while not f.readline().startswith(b"b "):
        pass
    tag = b"\r\nZZFLOOR7 "
    t0 = time.monotonic()
    s.sendall(b"ZZFLOOR7 UID FETCH 1:* BODY.PEEK[]\r\n")
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    tail = b""
    total = 0
    while True:
        n = s.recv_into(view)
        if n == 0:
            raise RuntimeError("closed")
        total += n
        chunk = tail + bytes(view[max(0, n - 256) : n])
        if tag in chunk and chunk.endswith(b"\r\n"):
            break
        tail = chunk[-256:]
    took = time.monotonic() - t0
    s.close()
    return took, total


# ---------------------------------------------------------------- Dovecot


def server_alone(port, user, runs=5):
    """What Dovecot itself takes for the first steps of every run, measured
    from a bare client: connect, greeting and LOGIN; then the
    `LIST "" "*" RETURN (STATUS (...))` that tells what changed. Medians, s."""
    login, lst = [], []
    for _ in range(runs):
        t0 = time.monotonic()
        imap = Imap(port, user)
        t1 = time.monotonic()
        imap.cmd('LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))')
        t2 = time.monotonic()
        imap.close()
        login.append(t1 - t0)
        lst.append(t2 - t1)
    return med(login), med(lst)


def server_new_mail(port, user, n, runs, seed):
    """What Dovecot itself takes to hand over 1% new mail of INBOX, from a
    bare client sending the engine's commands (ENABLE QRESYNC, EXAMINE with
    CONDSTORE, the same FETCH items, in batches of 100) in two orders:
    asking first (LIST-STATUS before the EXAMINE: the engine's order, SPEC
    7) and selecting straight away (no LIST-STATUS: mbsync's order). From
    connect to the last new message read. New mail is appended before
    each; the orders take turns. Medians, s."""
    ls = 'LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))'
    times = {"ask": [], "select": []}
    for r in range(runs):
        for order in (("ask", "select") if r % 2 == 0 else ("select", "ask")):
            seed += 1
            add_new(port, user, n, seed)
            settle()
            t0 = time.monotonic()
            imap = Imap(port, user)
            imap.cmd("ENABLE QRESYNC")
            if order == "ask":
                imap.cmd(ls)
            out = b"".join(imap.cmd('EXAMINE "INBOX" (CONDSTORE)'))
            uidnext = int(re.search(rb"UIDNEXT (\d+)", out).group(1))
            lo = uidnext - n
            imap.cmd(f"UID FETCH {lo}:* (UID RFC822.SIZE FLAGS)")
            for u in range(lo, uidnext, 100):
                imap.cmd(f"UID FETCH {u}:{min(uidnext - 1, u + 99)} (UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])")
            times[order].append(time.monotonic() - t0)
            imap.close()
    return med(times["ask"]), med(times["select"])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_dovecot(work, users):
    d = os.path.join(work, "dovecot")
    os.makedirs(os.path.join(d, "mail"), exist_ok=True)
    shutil.chown(os.path.join(d, "mail"), "nobody", "nogroup")
    os.chmod(work, 0o755)
    os.chmod(d, 0o755)
    with open(os.path.join(d, "passwd"), "w") as f:
        for u in users:
            f.write(f"{u}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(
            f"""
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = bench-dovecot
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_failure_delay = 0
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""
        )
    subprocess.run(["dovecot", "-c", conf], check=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    return conf, port


def stop_dovecot(conf):
    subprocess.run(["doveadm", "-c", conf, "stop"], check=False)


# ---------------------------------------------------------------- runs


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS in MiB, output)."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, env=env)
    took = time.monotonic() - t0
    err = p.stderr.decode(errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}:\n{err[-3000:]}\n{p.stdout.decode(errors='replace')[-2000:]}")
    return took, rss, err


def engine_home(engine, work, name, port, user):
    home = os.path.join(work, name)
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    subprocess.run(
        [engine, "--home", home, "account", "add", "--email", f"{user}@example.com",
         "--imap-host", "127.0.0.1", "--imap-port", str(port), "--imap-security", "plain",
         "--imap-login", user],
        input=(PASSWORD + "\n").encode(), check=True, capture_output=True,
    )
    return home


# What else settle() must flush: a database server's own buffers (pg.py's
# cluster adds its CHECKPOINT here).
SETTLE_HOOKS = []


def settle():
    """Before each timed run of either tool: flush what earlier runs left
    for the disk to write (so no run pays for its predecessor's writeback:
    a database server's checkpoint of the last run's pages first, then the
    kernel's), and pause a second (mbsync waits for the clock to move on
    when its Maildir changed in the current second; a real run starts
    minutes after the last)."""
    for hook in SETTLE_HOOKS:
        hook()
    os.sync()
    time.sleep(1.1)


def engine_run(engine, home, force=False):
    settle()
    cmd = [engine, "--home", home, "run"]
    if force:
        cmd.append("--force")
    took, rss, _ = timed(cmd)
    return took, rss


def verify_engine(home, port, user, sample=40):
    """Every message of every folder stored: count and total bytes per
    folder equal the server's, and a sample compared byte for byte."""
    db = sqlite3.connect(os.path.join(home, "data", "engine.sqlite"))
    imap = Imap(port, user)
    total = 0
    try:
        for folder in imap.folders():
            sizes = imap.sizes(folder)
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(m.raw)), 0), SUM(m.partial) FROM email_messages m "
                "JOIN email_folders f ON f.emfdid = m.emfdid WHERE f.imap_name = ? AND m.uidvalidity = f.uidvalidity",
                (folder,),
            ).fetchone()
            if row[0] != len(sizes) or row[1] != sum(sizes.values()) or (row[2] or 0) != 0:
                raise RuntimeError(
                    f"{folder}: stored {row[0]} messages / {row[1]} bytes, server has {len(sizes)} / {sum(sizes.values())}"
                )
            total += row[0]
            uids = sorted(sizes)
            rng = random.Random(7)
            for uid in rng.sample(uids, min(sample, len(uids))):
                want = imap.body(folder, uid)
                got = db.execute(
                    "SELECT m.raw FROM email_messages m JOIN email_folders f ON f.emfdid = m.emfdid "
                    "WHERE f.imap_name = ? AND m.uid = ? AND m.uidvalidity = f.uidvalidity",
                    (folder, uid),
                ).fetchone()
                if got is None or bytes(got[0]) != want:
                    raise RuntimeError(f"{folder} uid {uid}: stored bytes differ")
    finally:
        imap.close()
        db.close()
    return total


def mbsync_conf(work, name, port, user):
    d = os.path.join(work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "mail"))
    conf = os.path.join(d, "mbsyncrc")
    with open(conf, "w") as f:
        f.write(
            f"""FSync yes

IMAPAccount acc
Host 127.0.0.1
Port {port}
User {user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account acc

MaildirStore local
Path {d}/mail/
Inbox {d}/mail/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
"""
        )
    return conf


def mbsync_run(conf):
    settle()
    took, rss, _ = timed(["mbsync", "-q", "-c", conf, "-a"])
    return took, rss


def load_account(port, user, n, seed, big_folder_share=0.97):
    """Generates and APPENDs n messages: most to INBOX, the rest to a few
    other folders (one nested with a non-ASCII name). Returns total bytes."""
    rng = random.Random(seed)
    imap = Imap(port, user)
    others = ["Sent", "Archiwum/2025", "Faktury/Zażółć"]
    for o in ["Archiwum", "Faktury"] + others:
        try:
            imap.cmd(f'CREATE "{mutf7(o)}"')
        except RuntimeError:
            pass
    inbox_n = int(n * big_folder_share)
    rest = n - inbox_n
    total = 0
    batch = []
    for i in range(inbox_n):
        m = make_message(rng, i, user)
        total += len(m)
        batch.append(m)
        if len(batch) >= 500:
            imap.multiappend("INBOX", batch)
            batch = []
    imap.multiappend("INBOX", batch)
    for j, o in enumerate(others):
        k = rest // len(others) + (1 if j < rest % len(others) else 0)
        msgs = [make_message(rng, inbox_n + j * 100000 + i, user) for i in range(k)]
        total += sum(len(m) for m in msgs)
        imap.multiappend(mutf7(o), msgs)
    imap.close()
    return total


def load_folders(port, user, folders, per, seed):
    rng = random.Random(seed)
    imap = Imap(port, user)
    total = 0
    for i in range(folders):
        name = f"Projekt {i:03d}"
        imap.cmd(f'CREATE "{name}"')
        msgs = [make_message(rng, i * 1000 + j, user) for j in range(per)]
        total += sum(len(m) for m in msgs)
        imap.multiappend(name, msgs)
    imap.close()
    return total


def add_new(port, user, n, seed):
    """Appends n new messages to INBOX, then lets Dovecot finish its own
    indexing of them (a STATUS and an EXAMINE), so that neither tool timed
    next pays for the server's deferred work."""
    rng = random.Random(seed)
    imap = Imap(port, user)
    msgs = [make_message(rng, 10_000_000 + seed * 100_000 + i, user) for i in range(n)]
    imap.multiappend("INBOX", msgs)
    imap.close()
    warm(port, user)


def warm(port, user):
    imap = Imap(port, user)
    for f in imap.folders():
        imap.cmd(f'STATUS "{f}" (MESSAGES UIDNEXT)')
        imap.cmd(f'EXAMINE "{f}"')
    imap.close()


# ---------------------------------------------------------------- report


def med(xs):
    return statistics.median(xs)


def fmt_row(what, eng, peer, floor=None, n=None, mb=None):
    cells = [what]
    for r in (eng, peer):
        if r is None:
            cells.append("")
            continue
        t, rss = r
        s = f"{t:.3f} s"
        if n:
            s += f", {n / t:,.0f} msg/s"
        if mb:
            s += f", {mb / t:,.0f} MB/s"
        s += f", {rss:.0f} MiB"
        cells.append(s)
    ratio = eng[0] / peer[0] if eng and peer else None
    cells.append(f"{ratio:.2f}" if ratio is not None else "")
    cells.append(f"{eng[0] / floor:.2f}" if floor else "")
    return "| " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default=os.path.join(ROOT, "target", "release", "engine"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--folders", type=int, default=500)
    ap.add_argument("--per-folder", type=int, default=20)
    ap.add_argument("--skip-mbsync", action="store_true")
    args = ap.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s]
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    users = [f"u{n}" for n in sizes] + ["folders"]
    conf, port = start_dovecot(args.work, users)
    rows = []
    try:
        for n in sizes:
            user = f"u{n}"
            t0 = time.monotonic()
            total = load_account(port, user, n, seed=n)
            warm(port, user)
            mb = total / 1e6
            print(f"[{user}] loaded {n} messages, {mb:.0f} MB in {time.monotonic() - t0:.1f} s", flush=True)

            floors = [raw_fetch_floor(port, user) for _ in range(args.runs)]
            floor = med([f[0] for f in floors])
            inbox_mb = floors[0][1] / 1e6
            print(f"[{user}] raw fetch of INBOX: {floor:.3f} s ({inbox_mb:.0f} MB)", flush=True)
            login_s, list_s = server_alone(port, user)
            print(f"[{user}] Dovecot alone: connect+LOGIN {login_s * 1000:.1f} ms, LIST-STATUS {list_s * 1000:.1f} ms", flush=True)

            eng_first, mb_first = [], []
            home = None
            for r in range(args.runs):
                home = engine_home(args.engine, args.work, f"engine-{n}", port, user)
                eng_first.append(engine_run(args.engine, home))
                stored = verify_engine(home, port, user)
                if stored != n:
                    raise RuntimeError(f"engine stored {stored} of {n}")
                print(f"[{user}] engine first sync {r + 1}: {eng_first[-1][0]:.3f} s, {eng_first[-1][1]:.0f} MiB (verified)", flush=True)
            eng_same = [engine_run(args.engine, home, force=True) for _ in range(args.runs)]
            print(f"[{user}] engine nothing changed: {[round(x[0], 3) for x in eng_same]}", flush=True)

            mconf = None
            if not args.skip_mbsync:
                for r in range(args.runs):
                    mconf = mbsync_conf(args.work, f"mbsync-{n}", port, user)
                    mb_first.append(mbsync_run(mconf))
                    print(f"[{user}] mbsync first sync {r + 1}: {mb_first[-1][0]:.3f} s", flush=True)
                mb_same = [mbsync_run(mconf) for _ in range(args.runs)]
                print(f"[{user}] mbsync nothing changed: {[round(x[0], 3) for x in mb_same]}", flush=True)

            eng_new, mb_new = [], []
            for r in range(args.runs):
                add_new(port, user, max(1, n // 100), seed=r + 1)
                # The first client after new mail pays for some of the
                # server's own work: take turns going first.
                if r % 2 == 0 or args.skip_mbsync:
                    eng_new.append(engine_run(args.engine, home, force=True))
                    if not args.skip_mbsync:
                        mb_new.append(mbsync_run(mconf))
                else:
                    mb_new.append(mbsync_run(mconf))
                    eng_new.append(engine_run(args.engine, home, force=True))
            verify_engine(home, port, user, sample=5)
            print(f"[{user}] 1% new: engine {[round(x[0], 3) for x in eng_new]} mbsync {[round(x[0], 3) for x in mb_new]}", flush=True)
            ask_s, select_s = server_new_mail(port, user, max(1, n // 100), args.runs, seed=100)
            print(f"[{user}] Dovecot alone, 1% new: asking first {ask_s * 1000:.1f} ms, selecting straight away {select_s * 1000:.1f} ms", flush=True)

            pick = lambda runs: (med([x[0] for x in runs]), max(x[1] for x in runs)) if runs else None
            rows.append(fmt_row(f"{n:,} msgs, first sync", pick(eng_first), pick(mb_first), floor, n, mb))
            rows.append(fmt_row(f"{n:,} msgs, nothing changed", pick(eng_same), pick(mb_same) if not args.skip_mbsync else None))
            rows.append(fmt_row(f"{n:,} msgs, 1% new mail", pick(eng_new), pick(mb_new)))
            rows.append(f"| {n:,} msgs, raw-fetch floor (INBOX) | {floor:.3f} s, {inbox_mb / floor:,.0f} MB/s | | | |")
            rows.append(
                f"| {n:,} msgs, Dovecot alone: connect+LOGIN, LIST-STATUS | "
                f"{login_s * 1000:.1f} ms, {list_s * 1000:.1f} ms | | | |"
            )
            rows.append(
                f"| {n:,} msgs, 1% new mail, Dovecot alone: LOGIN+LIST-STATUS+EXAMINE+FETCH, LOGIN+EXAMINE+FETCH | "
                f"{ask_s * 1000:.1f} ms, {select_s * 1000:.1f} ms | | | |"
            )
            shutil.rmtree(os.path.join(args.work, f"engine-{n}"), ignore_errors=True)
            shutil.rmtree(os.path.join(args.work, f"mbsync-{n}"), ignore_errors=True)

        if args.folders:
            user = "folders"
            total = load_folders(port, user, args.folders, args.per_folder, seed=500)
            warm(port, user)
            n = args.folders * args.per_folder
            home = engine_home(args.engine, args.work, "engine-folders", port, user)
            first = engine_run(args.engine, home)
            verify_engine(home, port, user, sample=2)
            same = [engine_run(args.engine, home, force=True) for _ in range(args.runs)]
            mfirst, msame = None, []
            if not args.skip_mbsync:
                mconf = mbsync_conf(args.work, "mbsync-folders", port, user)
                mfirst = mbsync_run(mconf)
                msame = [mbsync_run(mconf) for _ in range(args.runs)]
            pick = lambda runs: (med([x[0] for x in runs]), max(x[1] for x in runs)) if runs else None
            rows.append(fmt_row(f"{args.folders} folders x {args.per_folder}, first sync", first, mfirst, None, n, total / 1e6))
            rows.append(fmt_row(f"{args.folders} folders x {args.per_folder}, nothing changed", pick(same), pick(msame)))
            login_s, list_s = server_alone(port, user)
            rows.append(
                f"| {args.folders} folders, Dovecot alone: connect+LOGIN, LIST-STATUS | "
                f"{login_s * 1000:.1f} ms, {list_s * 1000:.1f} ms | | | |"
            )
    finally:
        stop_dovecot(conf)

    print()
    print(f"median of {args.runs} runs; time, msg/s, MB/s, peak RSS")
    print()
    print("| case | engine | mbsync (fsync on) | engine/mbsync | engine/floor |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
