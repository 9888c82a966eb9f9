#!/usr/bin/python3
"""Scripted SMTP server for the test harness (aiosmtpd).

Run as: scripted_smtp.py CONFIG.json
CONFIG: {"dir": DIR, "port": 0, "tls": "none"|"starttls"|"require-starttls"|"implicit",
         "cert": PEM, "key": PEM, "auth": [user, password] or null, "auth_required": bool}
The rules live in DIR/rules.json and are re-read at every MAIL, RCPT and DATA,
so a test can change them while the server runs:
  {"mail_from_reply": null or "451 ...", "rcpt": {"addr@x": "550 ..."},
   "data_reply": null or "452 ...", "data_delay_ms": 0}
It binds 127.0.0.1:PORT itself (0 = any free port, so there is no race) and
prints "READY <port>" on stdout once it accepts connections.
Records, in DIR:
  events.jsonl       one line per MAIL/RCPT/DATA/AUTH with the reply given
  msg-NNNNNN.json    an accepted transaction: mail_from, rcpt_to, data file
  msg-NNNNNN.eml     its data bytes exactly as received (dot-unstuffed)
"""

import asyncio
import json
import os
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class LongLineSMTP(SMTP):
    # aiosmtpd enforces RFC 5321's 1000-octet lines; real messages (and the
    # corpus) have longer ones and Postfix accepts them, so do we.
    line_length_limit = 4 * 1024 * 1024


class Handler:
    def __init__(self, d):
        self.dir = d
        self.count = 0
        self.implicit_tls = False

    def rules(self):
        try:
            with open(os.path.join(self.dir, "rules.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def event(self, **kw):
        with open(os.path.join(self.dir, "events.jsonl"), "a") as f:
            f.write(json.dumps(kw) + "\n")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # Without an authenticator aiosmtpd would still advertise a bare
        # "AUTH" with no mechanisms: drop it.
        session.host_name = hostname
        return [r for r in responses if r.strip() != "250-AUTH"]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.rules().get("mail_from_reply")
        if reply:
            self.event(event="mail", addr=address, reply=reply)
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self.event(event="mail", addr=address, reply="250 OK")
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rules = self.rules().get("rcpt", {})
        reply = rules.get(address) or rules.get(address.lower())
        if reply:
            self.event(event="rcpt", addr=address, reply=reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self.event(event="rcpt", addr=address, reply="250 OK")
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rules = self.rules()
        delay = rules.get("data_delay_ms") or 0
        if delay:
            await asyncio.sleep(delay / 1000.0)
        reply = rules.get("data_reply")
        if reply:
            self.event(event="data", rcpt_to=envelope.rcpt_tos, reply=reply)
            return reply
        self.count += 1
        base = os.path.join(self.dir, "msg-%06d" % self.count)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        tmp = base + ".json.tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_to": envelope.rcpt_tos,
                    "data": base + ".eml",
                    "authenticated": bool(session.authenticated),
                    "tls": self.implicit_tls or session.ssl is not None,
                },
                f,
            )
        os.rename(tmp, base + ".json")  # the .json appears only once complete
        self.event(event="data", rcpt_to=envelope.rcpt_tos, reply="250 OK")
        return "250 OK: queued as %d" % self.count


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    handler = Handler(cfg["dir"])
    tls = cfg.get("tls", "none")
    handler.implicit_tls = tls == "implicit"
    ctx = None
    if tls != "none":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg["cert"], cfg["key"])
    auth = cfg.get("auth")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            auth is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == auth[0]
            and auth_data.password.decode() == auth[1]
        )
        handler.event(event="auth", mechanism=mechanism, ok=ok)
        # handled=False: aiosmtpd itself answers 235 or 535 (with the
        # default handled=True a failed AUTH would get no reply at all).
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def factory():
        kw = dict(
            hostname="scripted.test",
            data_size_limit=None,
            enable_SMTPUTF8=True,
            decode_data=False,
            auth_required=bool(cfg.get("auth_required")),
            # Implicit TLS is invisible to aiosmtpd's check (it only knows
            # STARTTLS), so there AUTH must not "require TLS".
            auth_require_tls=tls in ("starttls", "require-starttls"),
        )
        if auth is not None:
            kw["authenticator"] = authenticator
        else:
            # aiosmtpd offers AUTH only with an authenticator; none -> no AUTH.
            kw["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        if tls in ("starttls", "require-starttls"):
            kw["tls_context"] = ctx
            kw["require_starttls"] = tls == "require-starttls"
        return LongLineSMTP(handler, **kw)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", cfg.get("port", 0)))
    sock.listen(128)
    port = sock.getsockname()[1]

    async def serve():
        server = await asyncio.get_running_loop().create_server(
            factory, sock=sock, ssl=ctx if tls == "implicit" else None
        )
        sys.stdout.write("READY %d\n" % port)
        sys.stdout.flush()
        parent = os.getppid()

        async def watch_parent():
            # Exit with the test process even when it dies without Drop.
            while os.getppid() == parent:
                await asyncio.sleep(0.5)
            os._exit(0)

        asyncio.ensure_future(watch_parent())
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
