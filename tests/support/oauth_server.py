#!/usr/bin/python3
"""OAuth 2.0 provider for the test harness (Python 3 stdlib only).

Run as: oauth_server.py CONFIG.json
CONFIG: {"dir": DIR, "tls": bool, "cert": PEM, "key": PEM,
         "clients": [{"id": ID, "secret": SECRET or null}, ...],
         "introspection_user": U, "introspection_password": P,
         "rotation": bool, "access_lifetime": SECONDS, "token_length": BYTES,
         "device_interval": SECONDS, "device_expires_in": SECONDS}

Two listeners on 127.0.0.1, each bound to port 0 (no port race):
- the provider port, HTTP or HTTPS (CONFIG "tls"), what the engine talks to:
    POST /token        grant_type=refresh_token (refresh_token, client_id,
                       client_secret?, scope?) or
                       grant_type=urn:ietf:params:oauth:grant-type:device_code
                       (device_code, client_id). The client may also
                       authenticate with HTTP basic (client_secret_basic).
    POST /devicecode   RFC 8628 device authorization (client_id, scope)
    POST /introspect   RFC 7662 (basic auth introspection_user:password, token)
    GET  /device       the verification page a user would open (HTML)
- the control port, always plain HTTP, for the tests and for Dovecot:
    POST /introspect   the same introspection endpoint (Dovecot needs no CA)
    POST /admin/OP     control operations, JSON in, JSON out (below)
It writes the control port to DIR/control.port, then prints
"READY <provider port>" on stdout once both accept connections, and exits
when its parent process does.

Control operations (POST /admin/OP with a JSON object; the answer is JSON,
status 400 with {"error": ...} on a bad request):
  issue {user, client_id?, scope?, expires_in?, length?}
        -> {access_token, refresh_token, token_type, expires_in, expires_at, scope}
  config {rotation?, access_lifetime?, token_length?, device_interval?,
          device_expires_in?}                       -> the whole config
  add_client {client_id, client_secret?}            -> {}
  revoke_access {token}                             -> {}   (introspection: inactive)
  revoke_refresh {token} or {user}                  -> {"revoked": N}
  set_expiry {token, expires_in}                    -> {"expires_at": T}
  fail {endpoint, mode, times?, ...}                -> {}   (mode null: clear)
  device_script {steps, user?, device_code?}        -> {}
  stats                                             -> counters (below)
  requests                                          -> every request seen
  tokens                                            -> {"access": [...], "refresh": [...]}
  reset_stats                                       -> {}   (counters and requests)

Failure modes ("fail"), per endpoint ("token", "devicecode", "introspect"),
for the next `times` requests of that endpoint (absent: until cleared). A
failure answers without touching any token, except "expires_in":
  {"mode": "status", "status": 500, "body": "text" or {json}}  that answer
  {"mode": "delay", "seconds": N}     wait N s, then answer normally (a stall)
  {"mode": "html"}                    200 with an HTML sign-in page
  {"mode": "huge", "bytes": N}        200 with an N-byte (default 10 MB) JSON
                                      body that holds no access_token
  {"mode": "no_access_token"}         200 JSON without "access_token"
  {"mode": "expires_in", "value": V}  a normal answer (tokens issued, rotated)
                                      whose "expires_in" is V (-5, "soon", 1e12)
  {"mode": "close"}                   read the request, close without answer

Device flow: each device code gets the script that "device_script" set last
(default ["ok"], user "alice"); every poll of the token endpoint takes the
next step, the last one repeating: "authorization_pending", "slow_down",
"access_denied", "expired_token" answer that error (400), "ok" issues tokens
(then the code is used up: invalid_grant). A code past its expires_in
answers expired_token whatever the script says.

Stats: {"token_requests": {GRANT: {CLIENT: N}}, "devicecode_requests": {CLIENT: N},
        "introspections": {"total", "active", "inactive", "unauthorized",
                           "by_user": {USER: N}},
        "device_codes": [CODE, ...], "device_polls": {CODE: [UNIX_TIME, ...]}}
Requests: [{"at", "port" ("provider"|"control"), "method", "path", "query",
            "form": {...} (values verbatim, secrets included), "body" (when not
            a form), "headers": {"authorization", "accept", "content-type",
            "user-agent"}, "status"}] (control operations are not recorded).
"""

import base64
import json
import os
import secrets
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote_plus, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_STEPS = ("authorization_pending", "slow_down", "ok", "access_denied", "expired_token")
ENDPOINTS = ("token", "devicecode", "introspect")
FAIL_MODES = ("status", "delay", "html", "huge", "no_access_token", "expires_in", "close")
DEVICE_ERRORS = {
    "authorization_pending": "The user has not yet completed the sign-in.",
    "slow_down": "Polling too fast: add 5 seconds to the interval.",
    "access_denied": "The user declined the authorization request.",
    "expired_token": "The device code has expired.",
}
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to your account</title></head>\n"
    b"<body><form method=\"post\"><input name=\"login\"><input type=\"password\" "
    b"name=\"passwd\"></form></body></html>\n"
)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def random_text(n):
    """n characters of [A-Za-z0-9_-]."""
    return secrets.token_urlsafe(n)[:n] if n > 0 else ""


class ApiError(Exception):
    pass


class State:
    def __init__(self, cfg):
        self.lock = threading.Lock()
        self.clients = {c["id"]: c.get("secret") for c in cfg.get("clients", [])}
        self.intro_user = cfg["introspection_user"]
        self.intro_password = cfg["introspection_password"]
        self.config = {
            "rotation": bool(cfg.get("rotation", True)),
            "access_lifetime": int(cfg.get("access_lifetime", 3600)),
            "token_length": int(cfg.get("token_length", 2200)),
            "device_interval": int(cfg.get("device_interval", 1)),
            "device_expires_in": int(cfg.get("device_expires_in", 900)),
        }
        self.base_url = ""
        self.access = {}  # token -> {user, client_id, scope, exp, iat, revoked}
        self.refresh = {}  # token -> {user, client_id, scope, valid, why}
        self.failures = {}  # endpoint -> failure dict
        self.device_script = {"steps": ["ok"], "user": "alice"}
        self.devices = {}  # device_code -> {...}
        self.reset_stats()

    def reset_stats(self):
        self.token_requests = {}
        self.devicecode_requests = {}
        self.introspections = {
            "total": 0, "active": 0, "inactive": 0, "unauthorized": 0, "by_user": {},
        }
        self.device_codes = []
        self.device_polls = {}
        self.requests = []

    # -- tokens (callers hold the lock) --

    def new_access(self, user, client_id, scope, lifetime=None, length=None):
        now = int(time.time())
        lifetime = self.config["access_lifetime"] if lifetime is None else int(lifetime)
        length = self.config["token_length"] if length is None else int(length)
        exp = now + lifetime
        if length < 200:
            token = random_text(max(length, 16))
        else:
            # Shaped like the JWTs real providers hand out.
            head = b64url(json.dumps({"typ": "JWT", "alg": "RS256", "kid": "backproc-test"}).encode())
            body = b64url(json.dumps({
                "aud": "https://outlook.office.com", "iss": self.base_url, "sub": user,
                "scp": scope, "iat": now, "exp": exp, "jti": random_text(22),
            }).encode())
            stem = head + "." + body + "."
            token = stem + random_text(max(length - len(stem), 43))
        self.access[token] = {
            "user": user, "client_id": client_id, "scope": scope,
            "iat": now, "exp": exp, "revoked": False,
        }
        return token, lifetime, exp

    def new_refresh(self, user, client_id, scope):
        token = "rt." + random_text(60)
        self.refresh[token] = {
            "user": user, "client_id": client_id, "scope": scope, "valid": True, "why": "",
        }
        return token

    def take_failure(self, endpoint):
        with self.lock:
            f = self.failures.get(endpoint)
            if f is None:
                return None
            if f.get("times") is not None:
                f["times"] -= 1
                if f["times"] <= 0:
                    del self.failures[endpoint]
            return dict(f)

    # -- control operations --

    def admin(self, op, a):
        with self.lock:
            if op == "issue":
                user = a["user"]
                cid = a.get("client_id") or next(iter(self.clients), "")
                scope = a.get("scope", "")
                at, lifetime, exp = self.new_access(
                    user, cid, scope, a.get("expires_in"), a.get("length"))
                rt = self.new_refresh(user, cid, scope)
                return {
                    "access_token": at, "refresh_token": rt, "token_type": "Bearer",
                    "expires_in": lifetime, "expires_at": exp, "scope": scope,
                }
            if op == "config":
                for k in self.config:
                    if k in a:
                        self.config[k] = bool(a[k]) if k == "rotation" else int(a[k])
                unknown = set(a) - set(self.config)
                if unknown:
                    raise ApiError("unknown config keys %s" % sorted(unknown))
                return dict(self.config)
            if op == "add_client":
                self.clients[a["client_id"]] = a.get("client_secret")
                return {}
            if op == "revoke_access":
                rec = self.access.get(a["token"])
                if rec is None:
                    raise ApiError("no such access token")
                rec["revoked"] = True
                return {}
            if op == "revoke_refresh":
                n = 0
                for t, rec in self.refresh.items():
                    if (t == a.get("token") or rec["user"] == a.get("user")) and rec["valid"]:
                        rec["valid"] = False
                        rec["why"] = "revoked"
                        n += 1
                if "token" in a and n == 0 and a["token"] not in self.refresh:
                    raise ApiError("no such refresh token")
                return {"revoked": n}
            if op == "set_expiry":
                rec = self.access.get(a["token"])
                if rec is None:
                    raise ApiError("no such access token")
                rec["exp"] = int(time.time()) + int(a["expires_in"])
                return {"expires_at": rec["exp"]}
            if op == "fail":
                ep = a.get("endpoint")
                if ep not in ENDPOINTS:
                    raise ApiError("endpoint must be one of %s" % (ENDPOINTS,))
                mode = a.get("mode")
                if mode is None:
                    self.failures.pop(ep, None)
                    return {}
                if mode not in FAIL_MODES:
                    raise ApiError("mode must be one of %s" % (FAIL_MODES,))
                self.failures[ep] = dict(a)
                return {}
            if op == "device_script":
                steps = a["steps"]
                if isinstance(steps, str):
                    steps = [steps]
                bad = [s for s in steps if s not in DEVICE_STEPS]
                if not steps or bad:
                    raise ApiError("steps must be a non-empty list of %s" % (DEVICE_STEPS,))
                if a.get("device_code"):
                    dev = self.devices.get(a["device_code"])
                    if dev is None:
                        raise ApiError("no such device code")
                    dev["steps"], dev["next"] = list(steps), 0
                    if "user" in a:
                        dev["user"] = a["user"]
                else:
                    self.device_script = {"steps": list(steps), "user": a.get("user", "alice")}
                return {}
            if op == "stats":
                return {
                    "token_requests": self.token_requests,
                    "devicecode_requests": self.devicecode_requests,
                    "introspections": self.introspections,
                    "device_codes": self.device_codes,
                    "device_polls": self.device_polls,
                }
            if op == "requests":
                return self.requests
            if op == "tokens":
                return {
                    "access": [dict(v, token=k) for k, v in self.access.items()],
                    "refresh": [dict(v, token=k) for k, v in self.refresh.items()],
                }
            if op == "reset_stats":
                self.reset_stats()
                return {}
        raise ApiError("unknown operation %r" % op)

    # -- endpoints; each returns (status, JSON-able body) --

    def client_auth(self, form, basic):
        cid, secret = form.get("client_id"), form.get("client_secret")
        if basic is not None:
            cid, secret = basic
        if cid not in self.clients:
            return cid, False
        want = self.clients[cid]
        return cid, want is None or secret == want

    def count(self, endpoint, form, basic):
        """Counts a request as it arrives, before any failure mode answers it."""
        with self.lock:
            if endpoint == "token":
                grant = form.get("grant_type", "")
                cid = basic[0] if basic is not None else form.get("client_id", "")
                per_client = self.token_requests.setdefault(grant, {})
                per_client[cid] = per_client.get(cid, 0) + 1
                if grant == DEVICE_GRANT:
                    dc = form.get("device_code", "")
                    self.device_polls.setdefault(dc, []).append(time.time())
            elif endpoint == "devicecode":
                cid = basic[0] if basic is not None else form.get("client_id", "")
                self.devicecode_requests[cid] = self.devicecode_requests.get(cid, 0) + 1
            elif endpoint == "introspect":
                self.introspections["total"] += 1

    def token(self, form, basic):
        grant = form.get("grant_type", "")
        with self.lock:
            cid, client_ok = self.client_auth(form, basic)
        if not client_ok:
            return 401, {"error": "invalid_client",
                         "error_description": "Client authentication failed."}
        with self.lock:
            if grant == "refresh_token":
                return self.refresh_grant(form, cid)
            if grant == DEVICE_GRANT:
                return self.device_grant(form, cid)
        return 400, {"error": "unsupported_grant_type",
                     "error_description": "grant_type %r is not supported" % grant}

    def refresh_grant(self, form, cid):
        rt = form.get("refresh_token", "")
        rec = self.refresh.get(rt)
        if rec is None or not rec["valid"] or rec["client_id"] != cid:
            why = "unknown" if rec is None else (rec["why"] or "issued to another client")
            return 400, {"error": "invalid_grant",
                         "error_description": "The refresh token is not valid (%s)." % why}
        scope = form.get("scope") or rec["scope"]
        at, lifetime, _ = self.new_access(rec["user"], cid, scope)
        answer = {"access_token": at, "token_type": "Bearer", "expires_in": lifetime,
                  "scope": scope}
        if self.config["rotation"]:
            rec["valid"], rec["why"] = False, "rotated"
            answer["refresh_token"] = self.new_refresh(rec["user"], cid, scope)
        return 200, answer

    def device_grant(self, form, cid):
        dev = self.devices.get(form.get("device_code", ""))
        if dev is None or dev["client_id"] != cid or dev["done"]:
            return 400, {"error": "invalid_grant",
                         "error_description": "Unknown or used device code."}
        step = dev["steps"][min(dev["next"], len(dev["steps"]) - 1)]
        dev["next"] += 1
        if time.time() > dev["expires_at"]:
            step = "expired_token"
        if step != "ok":
            return 400, {"error": step, "error_description": DEVICE_ERRORS[step]}
        dev["done"] = True
        at, lifetime, _ = self.new_access(dev["user"], cid, dev["scope"])
        rt = self.new_refresh(dev["user"], cid, dev["scope"])
        return 200, {"access_token": at, "token_type": "Bearer", "expires_in": lifetime,
                     "scope": dev["scope"], "refresh_token": rt}

    def devicecode(self, form, basic):
        with self.lock:
            cid, client_ok = self.client_auth(form, basic)
            if not client_ok:
                return 401, {"error": "invalid_client",
                             "error_description": "Client authentication failed."}
            dc = "dc." + random_text(40)
            uc = "%s-%s" % (random_text(4).upper(), random_text(4).upper())
            expires_in = self.config["device_expires_in"]
            self.devices[dc] = {
                "client_id": cid, "scope": form.get("scope", ""), "user_code": uc,
                "user": self.device_script["user"], "steps": list(self.device_script["steps"]),
                "next": 0, "done": False, "expires_at": time.time() + expires_in,
            }
            self.device_codes.append(dc)
            uri = self.base_url + "/device"
            return 200, {
                "device_code": dc, "user_code": uc, "verification_uri": uri,
                "verification_uri_complete": uri + "?code=" + uc,
                "expires_in": expires_in, "interval": self.config["device_interval"],
                "message": "To sign in, open %s and enter the code %s." % (uri, uc),
            }

    def introspect(self, form, basic):
        with self.lock:
            if basic != (self.intro_user, self.intro_password):
                self.introspections["unauthorized"] += 1
                return 401, {"error": "invalid_client"}
            rec = self.access.get(form.get("token", ""))
            now = time.time()
            if rec is None or rec["revoked"] or rec["exp"] <= now:
                self.introspections["inactive"] += 1
                if rec is not None:
                    by = self.introspections["by_user"]
                    by[rec["user"]] = by.get(rec["user"], 0) + 1
                return 200, {"active": False}
            self.introspections["active"] += 1
            by = self.introspections["by_user"]
            by[rec["user"]] = by.get(rec["user"], 0) + 1
            return 200, {
                "active": True, "username": rec["user"], "sub": rec["user"],
                "client_id": rec["client_id"], "scope": rec["scope"],
                "token_type": "Bearer", "exp": rec["exp"], "iat": rec["iat"],
            }


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "backproc-test-oauth/1"
    sys_version = ""
    # Idle keep-alive connections and half-sent requests end after this.
    timeout = 120

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.server.role, fmt % args))

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def basic_auth(self):
        h = self.headers.get("Authorization") or ""
        if not h.lower().startswith("basic "):
            return None
        try:
            user, _, pw = base64.b64decode(h[6:].strip()).decode("utf-8").partition(":")
        except Exception:
            return ("", "")
        # RFC 6749 2.3.1: client credentials are form-encoded before base64.
        return (unquote_plus(user), unquote_plus(pw))

    def send(self, status, body, ctype="application/json;charset=UTF-8"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="backproc-test"')
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.record is not None:
            self.record["status"] = status

    def do_GET(self):
        self.record = None
        path = urlsplit(self.path).path
        self.read_body()
        if self.server.role == "provider" and path == "/device":
            self.send(200, HTML_PAGE, "text/html; charset=utf-8")
        else:
            self.send(404, {"error": "not_found"})

    def do_POST(self):
        self.record = None
        url = urlsplit(self.path)
        body = self.read_body()
        if self.server.role == "control" and url.path.startswith("/admin/"):
            try:
                args = json.loads(body or b"{}")
                self.send(200, STATE.admin(url.path[len("/admin/"):], args))
            except (ApiError, KeyError, ValueError, TypeError) as e:
                self.send(400, {"error": "%s: %s" % (type(e).__name__, e)})
            return
        endpoints = {"/introspect": "introspect"}
        if self.server.role == "provider":
            endpoints.update({"/token": "token", "/devicecode": "devicecode"})
        endpoint = endpoints.get(url.path)
        ctype = (self.headers.get("Content-Type") or "").lower()
        form = {}
        if "application/x-www-form-urlencoded" in ctype or (body and b"=" in body and b"{" not in body[:1]):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        self.record = {
            "at": time.time(), "port": self.server.role, "method": "POST",
            "path": url.path, "query": url.query, "form": form,
            "headers": {k: self.headers.get(k) for k in
                        ("authorization", "accept", "content-type", "user-agent")},
            "status": None,
        }
        if not form and body:
            self.record["body"] = body[:10000].decode("utf-8", "replace")
        with STATE.lock:
            STATE.requests.append(self.record)
        if endpoint is None:
            self.send(404, {"error": "not_found"})
            return
        basic = self.basic_auth()
        STATE.count(endpoint, form, basic)
        fail = STATE.take_failure(endpoint)
        mode = fail and fail["mode"]
        if mode == "delay":
            time.sleep(float(fail.get("seconds", 0)))
        elif mode == "close":
            self.record["status"] = "closed"
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        elif mode == "status":
            b = fail.get("body", "")
            if isinstance(b, str):
                self.send(int(fail.get("status", 500)), b.encode(), "text/plain; charset=utf-8")
            else:
                self.send(int(fail.get("status", 500)), b)
            return
        elif mode == "html":
            self.send(200, HTML_PAGE, "text/html; charset=utf-8")
            return
        elif mode == "huge":
            n = int(fail.get("bytes", 10_000_000))
            head, tail = b'{"padding":"', b'"}'
            self.send(200, head + b"x" * max(n - len(head) - len(tail), 0) + tail)
            return
        elif mode == "no_access_token":
            self.send(200, {"token_type": "Bearer", "expires_in": 3600})
            return
        status, answer = getattr(STATE, endpoint)(form, basic)
        if mode == "expires_in" and status == 200:
            answer["expires_in"] = fail.get("value")
        self.send(status, answer)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, role, ctx):
        self.role = role
        self.ctx = ctx
        super().__init__(("127.0.0.1", 0), Handler)

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread: a client that never completes
        # the TLS handshake holds up only itself, not the accept loop.
        if self.ctx is not None:
            try:
                request.settimeout(30)
                request = self.ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                sys.stderr.write("%s: TLS handshake failed: %s\n" % (self.role, e))
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        sys.stderr.write("%s: error with %s: %s\n" % (self.role, client_address, sys.exc_info()[1]))


def main():
    global STATE
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    STATE = State(cfg)
    ctx = None
    if cfg.get("tls"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg["cert"], cfg["key"])
    provider = Server("provider", ctx)
    control = Server("control", None)
    port = provider.server_address[1]
    STATE.base_url = "%s://127.0.0.1:%d" % ("https" if ctx else "http", port)
    for srv in (provider, control):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = os.path.join(cfg["dir"], "control.port.tmp")
    with open(tmp, "w") as f:
        f.write(str(control.server_address[1]))
    os.rename(tmp, os.path.join(cfg["dir"], "control.port"))
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    parent = os.getppid()
    # Exit with the test process even when it dies without Drop.
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


if __name__ == "__main__":
    main()
