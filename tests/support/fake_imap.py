#!/usr/bin/python3
"""A scripted IMAP server for the test harness: just enough IMAP4rev1 for
the engine to log in, list folders, ask their status, EXAMINE them and
UID FETCH their messages -- and, for one chosen folder, a response the
engine's parser was never meant to accept (a fault), sent byte for byte.

Run as: fake_imap.py CONFIG.json
CONFIG:
  {"dir": DIR,                      records go here
   "tls": "none"|"implicit"|"starttls",
   "cert": PEM, "key": PEM,         for tls != none
   "user": U, "password": P,
   "caps": "IMAP4rev1 LITERAL+ ...",  advertised after login (and before,
                                      plus STARTTLS as fits)
   "echo_login": bool,              a refused LOGIN's reply quotes user and password
   "login_reply": HEX or null,      sent for LOGIN instead ("TAG" is replaced by
                                    the command's tag), then the connection closes
                                    when it holds a BYE
   "starttls_reply": HEX or null,   sent for STARTTLS instead ("TAG" is replaced
                                    by the command's tag); TLS starts only if it
                                    begins with "TAG OK" and tls is "starttls"
   "folders": [{"wire": HEX,        the name's bytes on the wire
                "attrs": "\\\\HasNoChildren",
                "uidvalidity": N,
                "messages": [{"uid": N, "file": PATH, "flags": "\\\\Seen"}],
                "fault": null | {"on": "body"|"index"|"examine"|"list",
                                 "send": HEX, "repeat": HEX, "count": N,
                                 "then": "ok"|"no"|"close"|"stall"}}]}
A fault replaces the normal response of the command it is "on" (for
"list": is sent in the middle of LIST's response): `send`, then `repeat`
`count` times, then the tagged OK ("ok") or NO ("no"), nothing and a close ("close"),
or nothing until the client hangs up ("stall"). "body" is a UID FETCH
asking for BODY.PEEK[] or BODY.PEEK[HEADER]; "index" one without a body.

It binds 127.0.0.1:0 itself and prints "READY <port>" once it accepts.
Records, in DIR:
  received.jsonl  one line per command received: {"conn": N, "tls": bool,
                  "hex": the command's bytes (literals included)}
  conns.jsonl     one line per accepted connection: {"conn": N}
"""

import json
import os
import re
import socket
import ssl
import sys
import threading
import time

CONFIG = None
LOCK = threading.Lock()
COUNTER = [0]


def record(name, obj):
    with LOCK:
        with open(os.path.join(CONFIG["dir"], name), "a") as f:
            f.write(json.dumps(obj) + "\n")


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock, n):
        self.sock = sock
        self.n = n
        self.buf = b""
        self.tls = False
        self.selected = None
        self.authed = False

    # ---- I/O
    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def readline(self):
        while b"\n" not in self.buf:
            if len(self.buf) > 1 << 20:
                raise Closed()
            self.fill()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def read_command(self):
        """One command with its literals (a synchronizing one gets '+')."""
        whole = b""
        while True:
            line = self.readline()
            whole += line
            m = re.search(rb"\{(\d+)(\+?)\}\r?\n$", line)
            if not m:
                return whole
            if not m.group(2):
                self.send(b"+ go ahead\r\n")
            whole += self.read_exact(int(m.group(1)))

    # ---- the session
    def caps(self):
        caps = CONFIG.get("caps") or "IMAP4rev1 LITERAL+"
        if not self.authed:
            if CONFIG["tls"] == "starttls" and not self.tls:
                caps += " STARTTLS"
        return caps

    def run(self):
        record("conns.jsonl", {"conn": self.n})
        if CONFIG["tls"] == "implicit":
            self.start_tls()
        self.send("* OK [CAPABILITY %s] fake IMAP ready\r\n" % self.caps())
        while True:
            cmd = self.read_command()
            record("received.jsonl", {"conn": self.n, "tls": self.tls, "hex": cmd.hex()})
            args = Args(cmd)
            tag = args.atom()
            name = (args.atom() or b"").upper()
            if name == b"UID":
                name = b"UID " + (args.atom() or b"").upper()
            handler = HANDLERS.get(name)
            if handler is None:
                self.send(tag + b" BAD unknown command\r\n")
                continue
            if handler(self, tag, args) == "close":
                return

    def start_tls(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(CONFIG["cert"], CONFIG["key"])
        self.sock = ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True

    def folder(self, wire):
        for f in CONFIG["folders"]:
            w = bytes.fromhex(f["wire"])
            if w == wire or (w.upper() == b"INBOX" and wire.upper() == b"INBOX"):
                return f
        return None

    def fault(self, tag, fault):
        """Sends a fault; returns "close" when the connection must end."""
        self.send(bytes.fromhex(fault.get("send", "")))
        if fault.get("repeat"):
            chunk = bytes.fromhex(fault["repeat"]) * 65536
            left = fault.get("count", 1) * len(bytes.fromhex(fault["repeat"]))
            while left > 0:
                part = chunk[: min(left, len(chunk))]
                self.send(part)
                left -= len(part)
        then = fault.get("then", "ok")
        if then == "continue":
            return None
        if then == "ok":
            self.send(tag + b" OK done\r\n")
            return None
        if then == "no":
            self.send(tag + b" NO [SERVERBUG] the server failed\r\n")
            return None
        if then == "stall":
            self.sock.settimeout(60)
            try:
                while self.sock.recv(65536):
                    pass
            except OSError:
                pass
        return "close"


class Args:
    """Reads IMAP arguments (atoms, quoted strings, literals) from a command."""

    def __init__(self, data):
        self.d = data
        self.i = 0

    def skip(self):
        while self.i < len(self.d) and self.d[self.i : self.i + 1] == b" ":
            self.i += 1

    def atom(self):
        self.skip()
        j = self.i
        while j < len(self.d) and self.d[j : j + 1] not in (b" ", b"\r", b"\n", b"(", b")"):
            j += 1
        out, self.i = self.d[self.i : j], j
        return out

    def astring(self):
        self.skip()
        c = self.d[self.i : self.i + 1]
        if c == b'"':
            out = b""
            self.i += 1
            while self.i < len(self.d):
                c = self.d[self.i : self.i + 1]
                if c == b"\\":
                    out += self.d[self.i + 1 : self.i + 2]
                    self.i += 2
                    continue
                self.i += 1
                if c == b'"':
                    break
                out += c
            return out
        if c == b"{":
            m = re.match(rb"\{(\d+)\+?\}\r?\n", self.d[self.i :])
            n = int(m.group(1))
            self.i += m.end()
            out = self.d[self.i : self.i + n]
            self.i += n
            return out
        return self.atom()

    def rest(self):
        return self.d[self.i :].rstrip(b"\r\n")


def quote(b):
    if all(0x20 <= c < 0x7F for c in b) and len(b) < 512:
        return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(b) + b


def messages(f):
    return sorted(f.get("messages", []), key=lambda m: m["uid"])


def uidnext(f):
    ms = messages(f)
    return (ms[-1]["uid"] + 1) if ms else 1


def parse_set(s, top):
    out = []
    for part in s.split(b","):
        a, _, b = part.partition(b":")
        a = top if a == b"*" else int(a)
        b = a if not b else (top if b == b"*" else int(b))
        out.append((min(a, b), max(a, b)))
    return out


# ---- command handlers: (conn, tag, args) -> None | "close"


def h_capability(c, tag, args):
    c.send("* CAPABILITY %s\r\n" % c.caps())
    c.send(tag + b" OK done\r\n")


def h_noop(c, tag, args):
    c.send(tag + b" OK done\r\n")


def h_logout(c, tag, args):
    c.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
    return "close"


def h_starttls(c, tag, args):
    reply = CONFIG.get("starttls_reply")
    if reply is not None:
        reply = bytes.fromhex(reply).replace(b"TAG", tag)
        c.send(reply)
        if not reply.startswith(tag + b" OK") or CONFIG["tls"] != "starttls":
            return None
    elif CONFIG["tls"] != "starttls" or c.tls:
        c.send(tag + b" BAD no STARTTLS here\r\n")
        return None
    else:
        c.send(tag + b" OK begin TLS\r\n")
    try:
        c.start_tls()
    except (ssl.SSLError, OSError):
        return "close"
    return None


def h_login(c, tag, args):
    user, password = args.astring(), args.astring()
    reply = CONFIG.get("login_reply")
    if reply is not None:
        reply = bytes.fromhex(reply).replace(b"TAG", tag)
        c.send(reply)
        return "close" if b"* BYE" in reply else None
    if user == CONFIG["user"].encode() and password == CONFIG["password"].encode():
        c.authed = True
        c.send(tag + b" OK [CAPABILITY " + c.caps().encode() + b"] logged in\r\n")
    elif CONFIG.get("echo_login"):
        # A careless server that quotes the command back.
        c.send(tag + b" NO [AUTHENTICATIONFAILED] bad login: " + user + b" " + password + b"\r\n")
    else:
        c.send(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")


def h_list(c, tag, args):
    rest = args.rest().upper()
    with_status = b"STATUS" in rest
    for f in CONFIG["folders"]:
        fault = f.get("fault")
        if fault and fault.get("on") == "list":
            then = fault.get("then", "ok")
            c.fault(tag, dict(fault, then="continue"))
            if then != "ok":
                return c.fault(tag, {"then": then})
        wire = bytes.fromhex(f["wire"])
        attrs = f.get("attrs", "\\HasNoChildren").encode()
        c.send(b"* LIST (" + attrs + b') "/" ' + quote(wire) + b"\r\n")
        if with_status:
            c.send(
                b"* STATUS " + quote(wire) + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
                % (len(messages(f)), uidnext(f), f["uidvalidity"])
            )
    c.send(tag + b" OK done\r\n")


def h_status(c, tag, args):
    f = c.folder(args.astring())
    if f is None:
        c.send(tag + b" NO no such folder\r\n")
        return
    c.send(
        b"* STATUS " + quote(bytes.fromhex(f["wire"]))
        + b" (MESSAGES %d UIDNEXT %d UIDVALIDITY %d)\r\n"
        % (len(messages(f)), uidnext(f), f["uidvalidity"])
    )
    c.send(tag + b" OK done\r\n")


def h_examine(c, tag, args):
    f = c.folder(args.astring())
    if f is None:
        c.selected = None
        c.send(tag + b" NO no such folder\r\n")
        return
    c.selected = f
    fault = f.get("fault")
    if fault and fault.get("on") == "examine":
        return c.fault(tag, fault)
    c.send(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n")
    c.send(b"* %d EXISTS\r\n" % len(messages(f)))
    c.send(b"* OK [UIDVALIDITY %d] ok\r\n" % f["uidvalidity"])
    c.send(b"* OK [UIDNEXT %d] ok\r\n" % uidnext(f))
    c.send(tag + b" OK [READ-ONLY] done\r\n")


def header_of(raw):
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[: i + len(sep)]
    return raw


def message_id_field(raw):
    for line in re.split(rb"\r?\n", header_of(raw)):
        if line.lower().startswith(b"message-id:"):
            return line + b"\r\n\r\n"
    return b"\r\n"


def h_uid_fetch(c, tag, args):
    f = c.selected
    if f is None:
        c.send(tag + b" BAD nothing selected\r\n")
        return
    uidset = args.atom()
    items = args.rest().upper()
    body = b"BODY.PEEK[]" in items
    header = b"BODY.PEEK[HEADER]" in items
    fault = f.get("fault")
    if fault and fault.get("on") == ("body" if (body or header) else "index"):
        return c.fault(tag, fault)
    ms = messages(f)
    top = ms[-1]["uid"] if ms else 0
    ranges = parse_set(uidset, top)
    for seq, m in enumerate(ms, 1):
        if not any(a <= m["uid"] <= b for a, b in ranges):
            continue
        with open(m["file"], "rb") as fh:
            raw = fh.read()
        parts = [b"UID %d" % m["uid"]]
        if b"RFC822.SIZE" in items:
            parts.append(b"RFC822.SIZE %d" % len(raw))
        if b"FLAGS" in items:
            parts.append(b"FLAGS (" + m.get("flags", "").encode() + b")")
        if b"INTERNALDATE" in items:
            parts.append(b'INTERNALDATE "01-Jan-2026 10:00:00 +0100"')
        if b"HEADER.FIELDS" in items:
            v = message_id_field(raw)
            parts.append(b"BODY[HEADER.FIELDS (MESSAGE-ID)] {%d}\r\n" % len(v) + v)
        elif header:
            v = header_of(raw)
            parts.append(b"BODY[HEADER] {%d}\r\n" % len(v) + v)
        if body:
            parts.append(b"BODY[] {%d}\r\n" % len(raw) + raw)
        c.send(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
    c.send(tag + b" OK done\r\n")


def h_uid_search(c, tag, args):
    f = c.selected
    uids = [m["uid"] for m in messages(f)] if f else []
    c.send(b"* SEARCH" + b"".join(b" %d" % u for u in uids) + b"\r\n")
    c.send(tag + b" OK done\r\n")


HANDLERS = {
    b"CAPABILITY": h_capability,
    b"NOOP": h_noop,
    b"ID": h_noop,
    b"ENABLE": h_noop,
    b"LOGOUT": h_logout,
    b"STARTTLS": h_starttls,
    b"LOGIN": h_login,
    b"LIST": h_list,
    b"STATUS": h_status,
    b"EXAMINE": h_examine,
    b"SELECT": h_examine,
    b"UID FETCH": h_uid_fetch,
    b"UID SEARCH": h_uid_search,
}


def serve(sock, n):
    conn = Conn(sock, n)
    try:
        conn.run()
    except (Closed, OSError, ssl.SSLError, ValueError, AttributeError):
        pass
    finally:
        try:
            conn.sock.close()
        except OSError:
            pass


def main():
    global CONFIG
    with open(sys.argv[1]) as f:
        CONFIG = json.load(f)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    print("READY %d" % lsock.getsockname()[1], flush=True)
    while True:
        sock, _ = lsock.accept()
        COUNTER[0] += 1
        threading.Thread(target=serve, args=(sock, COUNTER[0]), daemon=True).start()


if __name__ == "__main__":
    main()
