#!/usr/bin/python3
"""IMAP tool for the test harness: manipulate and inspect a test Dovecot
independently of the engine's own IMAP code.

Run as: imaptool.py --port P --user U --password W COMMAND ARGS...
Every command prints one JSON document on stdout; errors go to stderr with a
non-zero exit code. Folder arguments are UTF-8 names; this script encodes them
to modified UTF-7 (RFC 3501 5.1.3) itself. Message bytes never go through
stdout: they are read from / written to files.

Commands:
  append FOLDER FILE FLAGS [DATE]      -> {"uid": N}
  append-many FOLDER RECORDS FLAGS     -> {"uids": [...]}  (RECORDS: "<len>\\n<bytes>" repeated)
  create NAME                          -> {"wire": "..."}
  delete NAME                          -> {}
  rename OLD NEW                       -> {}
  list                                 -> [{"wire","name","delim","flags"}]
  status FOLDER                        -> {"messages","uidnext","uidvalidity","unseen","highestmodseq"}
  uids FOLDER                          -> [uid, ...]
  flags FOLDER                         -> [[uid, "flags"], ...]
  fetch-all FOLDER OUTDIR              -> [{"uid","flags","size","path"}]
  fetch-items FOLDER OUTDIR UID:ITEM.. -> [{"uid","item","path"} or {"uid","item","error"}]
                                          (ITEM e.g. BINARY.PEEK[2]: the server's decoding of part 2)
  store FOLDER UIDSET OP FLAGS         -> {}   (OP: +FLAGS, -FLAGS, FLAGS)
  expunge FOLDER UIDSET                -> {}
"""

import argparse
import imaplib
import json
import os
import re
import sys

imaplib._MAXLINE = 10_000_000


def mutf7_encode(name):
    """UTF-8 str -> modified UTF-7 (RFC 3501 5.1.3)."""
    out = []
    buf = []

    def flush():
        if buf:
            utf16 = "".join(buf).encode("utf-16-be")
            import base64

            b64 = base64.b64encode(utf16).decode("ascii").rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(wire):
    import base64

    out = []
    i = 0
    while i < len(wire):
        ch = wire[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        j = wire.index("-", i)
        chunk = wire[i + 1 : j]
        if chunk == "":
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            out.append(base64.b64decode(b64).decode("utf-16-be"))
        i = j + 1
    return "".join(out)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def qfolder(name):
    return quote(mutf7_encode(name))


def check(typ, data, what):
    if typ != "OK":
        raise SystemExit(f"imaptool: {what} failed: {typ} {data!r}")
    return data


def connect(args):
    m = imaplib.IMAP4("127.0.0.1", args.port, timeout=120)
    check(*m.login(args.user, args.password), "LOGIN")
    return m


def expand_uidset(s):
    uids = []
    for part in s.split(","):
        if ":" in part:
            a, b = part.split(":")
            a, b = int(a), int(b)
            if a > b:
                a, b = b, a
            uids.extend(range(a, b + 1))
        else:
            uids.append(int(part))
    return uids


APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]")


def post_login_caps(m):
    data = check(*m.capability(), "CAPABILITY")
    return set(b" ".join(data).upper().split())


def raw_append(m, folder, messages, flags, date):
    """APPEND without imaplib's line-ending rewriting (imaplib.append turns
    every bare CR or LF into CRLF): the literal is exactly the given bytes.
    Several messages go in one MULTIAPPEND (RFC 3502) command with LITERAL+
    (RFC 7888) non-synchronising literals when the server offers them, one
    round trip per batch; otherwise one APPEND per message with synchronising
    literals. Returns the UIDs from APPENDUID (empty if not offered)."""
    caps = post_login_caps(m)
    plus = b"LITERAL+" in caps
    multi = plus and b"MULTIAPPEND" in caps
    folder = qfolder(folder).encode()
    prefix = b""
    if flags:
        prefix += b"(" + flags.encode() + b") "
    if date:
        prefix += quote(date).encode() + b" "
    uids = []
    tagn = [0]

    def read_tagged(tag):
        while True:
            line = m.readline()
            if not line:
                raise SystemExit("imaptool: connection closed during APPEND")
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise SystemExit(f"imaptool: APPEND failed: {line!r}")
                mt = APPENDUID.search(line)
                if mt:
                    uids.extend(expand_uidset(mt.group(2).decode()))
                return
            if line.startswith(b"+"):
                return line

    def send(batch):
        tagn[0] += 1
        tag = b"MA%d" % tagn[0]
        if plus:
            parts = [tag, b" APPEND ", folder]
            for raw in batch:
                parts.append(b" " + prefix + b"{%d+}\r\n" % len(raw))
                parts.append(raw)
            parts.append(b"\r\n")
            m.send(b"".join(parts))
            read_tagged(tag)
        else:
            for raw in batch:
                m.send(tag + b" APPEND " + folder + b" " + prefix + b"{%d}\r\n" % len(raw))
                if read_tagged(tag) is None:
                    raise SystemExit("imaptool: APPEND refused the literal")
                m.send(raw + b"\r\n")
                read_tagged(tag)
                tagn[0] += 1
                tag = b"MA%d" % tagn[0]

    batch, size = [], 0
    for raw in messages:
        batch.append(raw)
        size += len(raw)
        if not multi or len(batch) >= 1000 or size >= 32 * 1024 * 1024:
            send(batch)
            batch, size = [], 0
    if batch:
        send(batch)
    return uids


def cmd_append(m, a):
    with open(a.file, "rb") as f:
        raw = f.read()
    uids = raw_append(m, a.folder, [raw], a.flags, a.date)
    return {"uid": uids[0] if uids else None}


def read_records(path):
    with open(path, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                return
            n = int(line)
            body = f.read(n)
            if len(body) != n:
                raise SystemExit("imaptool: truncated records file")
            yield body


def cmd_append_many(m, a):
    return {"uids": raw_append(m, a.folder, read_records(a.records), a.flags, None)}


def cmd_create(m, a):
    check(*m.create(qfolder(a.name)), "CREATE")
    return {"wire": mutf7_encode(a.name)}


def cmd_rename(m, a):
    check(*m.rename(qfolder(a.old), qfolder(a.new)), "RENAME")
    return {}


def cmd_delete(m, a):
    check(*m.delete(qfolder(a.name)), "DELETE")
    return {}


LIST_RE = re.compile(rb'^\(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") (.*)$', re.S)


def unquote(b):
    if b.startswith(b'"') and b.endswith(b'"'):
        return re.sub(rb"\\(.)", rb"\1", b[1:-1])
    return b


def cmd_list(m, a):
    data = check(*m.list('""', "*"), "LIST")
    out = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):  # name sent as a literal
            head, lit = item
            mt = LIST_RE.match(head)
            name = lit
        else:
            mt = LIST_RE.match(item)
            name = unquote(mt.group(3)) if mt else b""
        if not mt:
            raise SystemExit(f"imaptool: cannot parse LIST line {item!r}")
        wire = name.decode("ascii", "replace")
        delim = mt.group(2)
        out.append(
            {
                "wire": wire,
                "name": mutf7_decode(wire),
                "delim": None if delim == b"NIL" else unquote(delim).decode(),
                "flags": mt.group(1).decode(),
            }
        )
    return out


def cmd_status(m, a):
    items = "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
    typ, data = m.status(qfolder(a.folder), items)
    if typ != "OK":
        data = check(*m.status(qfolder(a.folder), "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)"), "STATUS")
    text = data[0].decode("ascii", "replace")
    res = {}
    for key in ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ"):
        mt = re.search(key + r" (\d+)", text)
        res[key.lower()] = int(mt.group(1)) if mt else None
    return res


def select(m, folder, readonly=True):
    check(*m.select(qfolder(folder), readonly=readonly), "SELECT")


def all_uids(m):
    data = check(*m.uid("SEARCH", "ALL"), "UID SEARCH")
    return [int(x) for x in b" ".join(d for d in data if d).split()]


def cmd_uids(m, a):
    select(m, a.folder)
    return all_uids(m)


FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")
UID_RE = re.compile(rb"UID (\d+)")
SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")


def fetch_records(data):
    """Group imaplib's FETCH data into (text-without-literals, literal)."""
    recs = []
    cur = None
    for item in data:
        if isinstance(item, tuple):
            cur = [item[0], item[1]]
            recs.append(cur)
        elif item is None:
            continue
        elif cur is not None and not re.match(rb"^\d+ \(", item):
            cur[0] += b" " + item
            cur = None
        else:
            recs.append([item, None])
            cur = None
    return recs


def cmd_flags(m, a):
    select(m, a.folder)
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
    check(typ, data, "UID FETCH")
    out = {}
    for text, _ in fetch_records(data):
        u, f = UID_RE.search(text), FLAGS_RE.search(text)
        if u and f:
            out[int(u.group(1))] = f.group(1).decode()
    return sorted([k, v] for k, v in out.items())


def cmd_fetch_all(m, a):
    select(m, a.folder)
    uids = all_uids(m)
    out = []
    for i in range(0, len(uids), 200):
        chunk = ",".join(str(u) for u in uids[i : i + 200])
        typ, data = m.uid("FETCH", chunk, "(UID RFC822.SIZE FLAGS BODY.PEEK[])")
        check(typ, data, "UID FETCH")
        for text, lit in fetch_records(data):
            if lit is None:
                continue  # an unsolicited FETCH (flag update), not ours
            u = int(UID_RE.search(text).group(1))
            f = FLAGS_RE.search(text)
            s = SIZE_RE.search(text)
            path = os.path.join(a.outdir, "%d.eml" % u)
            with open(path, "wb") as fh:
                fh.write(lit)
            out.append(
                {
                    "uid": u,
                    "flags": f.group(1).decode() if f else "",
                    "size": int(s.group(1)) if s else None,
                    "path": path,
                }
            )
    out.sort(key=lambda r: r["uid"])
    return out


def cmd_fetch_items(m, a):
    """Each UID:ITEM (e.g. 7:BINARY.PEEK[2.1], 7:BODY.PEEK[3]) into a file of
    its own. A refusal (NO [UNKNOWN-CTE], [PARSE], a BYE after an internal
    error) is recorded as the item's error and the next item goes on, on a
    new connection when the server hung up."""
    select(m, a.folder)
    out = []
    for n, spec in enumerate(a.items):
        uid, item = spec.split(":", 1)
        rec = {"uid": int(uid), "item": item}
        try:
            typ, data = m.uid("FETCH", uid, "(%s)" % item)
        except imaplib.IMAP4.abort as e:
            rec["error"] = str(e)
            out.append(rec)
            m = connect(a)
            select(m, a.folder)
            continue
        if typ != "OK":
            rec["error"] = " ".join(d.decode(errors="replace") for d in data if isinstance(d, bytes))
            out.append(rec)
            continue
        literals = [lit for _, lit in fetch_records(data) if lit is not None]
        # An empty part comes back as "" (no literal) from Dovecot.
        path = os.path.join(a.outdir, "%d.bin" % n)
        with open(path, "wb") as fh:
            fh.write(literals[0] if literals else b"")
        rec["path"] = path
        out.append(rec)
    return out


def cmd_store(m, a):
    select(m, a.folder, readonly=False)
    check(*m.uid("STORE", a.uidset, a.op, "(" + a.flags + ")"), "UID STORE")
    return {}


def cmd_expunge(m, a):
    select(m, a.folder, readonly=False)
    check(*m.uid("STORE", a.uidset, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
    check(*m.uid("EXPUNGE", a.uidset), "UID EXPUNGE")
    return {}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("append")
    s.add_argument("folder")
    s.add_argument("file")
    s.add_argument("flags")
    s.add_argument("date", nargs="?")
    s = sub.add_parser("append-many")
    s.add_argument("folder")
    s.add_argument("records")
    s.add_argument("flags")
    s = sub.add_parser("create")
    s.add_argument("name")
    s = sub.add_parser("delete")
    s.add_argument("name")
    s = sub.add_parser("rename")
    s.add_argument("old")
    s.add_argument("new")
    sub.add_parser("list")
    for name in ("status", "uids", "flags"):
        s = sub.add_parser(name)
        s.add_argument("folder")
    s = sub.add_parser("fetch-all")
    s.add_argument("folder")
    s.add_argument("outdir")
    s = sub.add_parser("fetch-items")
    s.add_argument("folder")
    s.add_argument("outdir")
    s.add_argument("items", nargs="+")
    s = sub.add_parser("store")
    s.add_argument("folder")
    s.add_argument("uidset")
    s.add_argument("op")
    s.add_argument("flags")
    s = sub.add_parser("expunge")
    s.add_argument("folder")
    s.add_argument("uidset")
    a = p.parse_args()

    m = connect(a)
    fn = {
        "append": cmd_append,
        "append-many": cmd_append_many,
        "create": cmd_create,
        "delete": cmd_delete,
        "rename": cmd_rename,
        "list": cmd_list,
        "status": cmd_status,
        "uids": cmd_uids,
        "flags": cmd_flags,
        "fetch-all": cmd_fetch_all,
        "fetch-items": cmd_fetch_items,
        "store": cmd_store,
        "expunge": cmd_expunge,
    }[a.cmd]
    try:
        res = fn(m, a)
    except imaplib.IMAP4.error as e:
        sys.stderr.write(f"imaptool: {a.cmd}: {e}\n")
        sys.exit(1)
    try:
        m.logout()
    except Exception:
        pass
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
