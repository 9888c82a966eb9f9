//! [`OAuthServer`]: an OAuth 2.0 provider on 127.0.0.1 (`oauth_server.py`,
//! Python stdlib only) that issues, refreshes, rotates and revokes bearer
//! tokens, serves RFC 8628 device authorization and RFC 7662 introspection
//! (what a [`super::Dovecot`] with [`super::DovecotOptions::oauth2`] asks to
//! validate a token), and fails on cue. Plus the bits a test needs to speak
//! to it and to mail servers by hand: [`post_form`] (a raw HTTP/1.1 client,
//! HTTPS through native-tls), [`xoauth2`] / [`oauthbearer`] (SASL initial
//! responses) and [`base64`] / [`unbase64`].
//!
//! The server has two listeners: the provider port (HTTP, or HTTPS with a
//! [`TestCa`] cert) with `/token`, `/devicecode`, `/introspect`, which the
//! engine is pointed at; and a plain-HTTP control port with `/introspect`
//! for Dovecot (no CA to configure there) and `/admin/OP`, which the methods
//! here wrap. The control protocol is documented at the top of
//! `oauth_server.py`. The server keeps every request it got, tokens
//! included ([`OAuthServer::requests`], [`OAuthServer::all_tokens`]), so a
//! test can check that none of them shows up where it must not.
//!
//! Its temp dir holds `config.json`, `control.port`, `stderr.log` and, with
//! HTTPS and no CA given, `ca/`. Must not be pointed at anything but
//! 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use super::start_python_helper;
use super::tls::TestCa;

/// The client id every [`OAuthServer`] knows (a public client: no secret),
/// unless [`OAuthServerOptions::clients`] says otherwise.
pub const DEFAULT_CLIENT_ID: &str = "backproc-test";
/// HTTP basic credentials of the introspection endpoint, as Dovecot sends
/// them (they are part of [`OAuthServer::introspection_url`]).
pub const INTROSPECTION_USER: &str = "dovecot";
pub const INTROSPECTION_PASSWORD: &str = "introspect-secret";
/// `grant_type` of the RFC 8628 device flow's token polls.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Options for [`OAuthServer::start_with`]; `Default` is plain HTTP, one
/// public client [`DEFAULT_CLIENT_ID`], rotation on, 3600 s access tokens
/// of 2,200 bytes, device interval 1 s.
#[derive(Clone, Debug)]
pub struct OAuthServerOptions {
    /// Serve the provider port over HTTPS (the control port stays HTTP).
    pub https: bool,
    /// CA whose server cert HTTPS presents (e.g. `dovecot.ca().clone()`, so
    /// one `BG_TLS_CA_FILE` serves all, or [`TestCa::untrusted`]); None: a
    /// fresh CA in the server's dir ([`OAuthServer::ca_file`]).
    pub ca: Option<TestCa>,
    /// Registered clients as (client_id, client_secret); None: a public
    /// client. A token request with an unknown id or a wrong secret gets
    /// 401 `invalid_client`.
    pub clients: Vec<(String, Option<String>)>,
    /// Every refresh returns a new refresh token and invalidates the old
    /// one (Microsoft); off: no `refresh_token` in the answer (Google).
    pub rotation: bool,
    /// `expires_in` of new access tokens, seconds.
    pub access_lifetime: i64,
    /// Length of new access tokens in bytes: JWT-shaped from 200 up, so
    /// 2,000+ exercises Postfix's 2048-byte limit on an AUTH line.
    pub token_length: usize,
    /// `interval` the device endpoint hands out, seconds.
    pub device_interval: u64,
}

impl Default for OAuthServerOptions {
    fn default() -> Self {
        OAuthServerOptions {
            https: false,
            ca: None,
            clients: vec![(DEFAULT_CLIENT_ID.to_string(), None)],
            rotation: true,
            access_lifetime: 3600,
            token_length: 2200,
            device_interval: 1,
        }
    }
}

/// Tokens from [`OAuthServer::issue`]: what the web application would have
/// stored after the user's consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives from issue.
    pub expires_in: i64,
    /// Unix seconds when it expires.
    pub expires_at: i64,
}

/// What [`OAuthServer::issue_with`] may change from the defaults.
#[derive(Clone, Debug, Default)]
pub struct IssueOptions {
    /// Default: the first registered client.
    pub client_id: Option<String>,
    pub scope: Option<String>,
    /// Lifetime in seconds; negative: already expired.
    pub expires_in: Option<i64>,
    /// Token length in bytes (below 200: a plain random string).
    pub length: Option<usize>,
}

/// An endpoint of the provider that [`OAuthServer::fail`] can break.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    DeviceCode,
    Introspect,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Token => "token",
            Endpoint::DeviceCode => "devicecode",
            Endpoint::Introspect => "introspect",
        }
    }
}

/// How an endpoint misbehaves. All but [`Failure::Delay`] and
/// [`Failure::ExpiresIn`] answer without touching any token: the refresh
/// token sent stays valid, nothing rotates.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// That status with a `text/plain` body, e.g. `(500, "Internal Server Error")`.
    Status(u16, String),
    /// That status with a JSON body, e.g.
    /// `(400, json!({"error": "unauthorized_client"}))`.
    JsonStatus(u16, Value),
    /// Waits this long, then answers normally: a stalled provider.
    Delay(Duration),
    /// 200 with an HTML sign-in page (a captive portal, a wrong URL).
    Html,
    /// 200 with a JSON body of this many bytes (10 MB:
    /// `Huge(10_000_000)`) that holds no `access_token`.
    Huge(usize),
    /// 200 with `{"token_type":"Bearer","expires_in":3600}`.
    NoAccessToken,
    /// A normal answer (tokens issued, the refresh token rotated) whose
    /// `expires_in` is this value: `json!(-5)`, `json!("soon")`, `json!(1e15)`.
    ExpiresIn(Value),
    /// Reads the request and closes the connection without a byte.
    Close,
}

impl Failure {
    fn to_json(&self) -> Value {
        match self {
            Failure::Status(s, b) => json!({"mode": "status", "status": s, "body": b}),
            Failure::JsonStatus(s, b) => json!({"mode": "status", "status": s, "body": b}),
            Failure::Delay(d) => json!({"mode": "delay", "seconds": d.as_secs_f64()}),
            Failure::Html => json!({"mode": "html"}),
            Failure::Huge(n) => json!({"mode": "huge", "bytes": n}),
            Failure::NoAccessToken => json!({"mode": "no_access_token"}),
            Failure::ExpiresIn(v) => json!({"mode": "expires_in", "value": v}),
            Failure::Close => json!({"mode": "close"}),
        }
    }
}

/// One request the provider got (provider port, or `/introspect` on the
/// control port), secrets verbatim.
#[derive(Clone, Debug)]
pub struct OAuthRequest {
    /// Unix time of arrival, fractional seconds.
    pub at: f64,
    /// `provider` or `control`.
    pub port: String,
    pub method: String,
    pub path: String,
    /// Form fields of a form-encoded body (last value of a repeated name).
    pub form: BTreeMap<String, String>,
    /// The body when it was not a form (first 10,000 bytes).
    pub body: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Accept` header, if any.
    pub accept: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The HTTP status answered; None when the connection was closed
    /// without an answer (or the answer is still pending).
    pub status: Option<u16>,
}

/// A private OAuth 2.0 provider in a Python child. The child binds port 0
/// itself (no port race) and exits with the test process. Starts in about
/// 100 ms; `Drop` kills it.
pub struct OAuthServer {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    control_port: u16,
    https: bool,
    ca: Option<TestCa>,
    client_id: String,
}

impl OAuthServer {
    /// A plain-HTTP provider with the default options.
    pub fn start() -> OAuthServer {
        Self::start_with(OAuthServerOptions::default())
    }

    /// An HTTPS provider presenting a cert from `ca` (pass
    /// [`TestCa::untrusted`] for the "cert not trusted" case).
    pub fn start_https(ca: &TestCa) -> OAuthServer {
        Self::start_with(OAuthServerOptions {
            https: true,
            ca: Some(ca.clone()),
            ..Default::default()
        })
    }

    pub fn start_with(opts: OAuthServerOptions) -> OAuthServer {
        assert!(!opts.clients.is_empty(), "OAuthServer needs a client");
        let dir = tempfile::Builder::new()
            .prefix("bp-oauth-")
            .tempdir()
            .expect("temp dir");
        let ca = match (&opts.ca, opts.https) {
            (_, false) => None,
            (Some(ca), true) => Some(ca.clone()),
            (None, true) => Some(TestCa::new(&dir.path().join("ca"))),
        };
        let clients: Vec<Value> = opts
            .clients
            .iter()
            .map(|(id, secret)| json!({"id": id, "secret": secret}))
            .collect();
        let cfg = json!({
            "dir": dir.path(),
            "tls": opts.https,
            "cert": ca.as_ref().map(TestCa::cert_file),
            "key": ca.as_ref().map(TestCa::key_file),
            "clients": clients,
            "introspection_user": INTROSPECTION_USER,
            "introspection_password": INTROSPECTION_PASSWORD,
            "rotation": opts.rotation,
            "access_lifetime": opts.access_lifetime,
            "token_length": opts.token_length,
            "device_interval": opts.device_interval,
        });
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config.json");
        let (child, port) = start_python_helper(dir.path(), &[], "oauth_server.py", &cfg_path);
        // Written before READY is printed.
        let control_port = std::fs::read_to_string(dir.path().join("control.port"))
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .expect("oauth_server.py wrote no control.port");
        OAuthServer {
            dir,
            child,
            port,
            control_port,
            https: opts.https,
            ca,
            client_id: opts.clients[0].0.clone(),
        }
    }

    /// The provider port (HTTP or HTTPS).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The plain-HTTP control port (`/admin/OP`, `/introspect`).
    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    /// Base URL of the provider, `http://127.0.0.1:PORT` or `https://...`.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The token endpoint (`oauth_token_url`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url())
    }

    /// The device authorization endpoint (`oauth_device_url`).
    pub fn device_url(&self) -> String {
        format!("{}/devicecode", self.url())
    }

    /// What the device endpoint hands out as `verification_uri`.
    pub fn verification_url(&self) -> String {
        format!("{}/device", self.url())
    }

    /// The introspection endpoint for Dovecot's `introspection_url`, with
    /// the basic-auth credentials in it, always plain HTTP on the control
    /// port: `http://dovecot:introspect-secret@127.0.0.1:CONTROL/introspect`.
    pub fn introspection_url(&self) -> String {
        format!(
            "http://{INTROSPECTION_USER}:{INTROSPECTION_PASSWORD}@127.0.0.1:{}/introspect",
            self.control_port
        )
    }

    /// The CA that signs the HTTPS cert (None for plain HTTP).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_file)
    }

    /// The CA of the HTTPS cert (None for plain HTTP).
    pub fn ca(&self) -> Option<&TestCa> {
        self.ca.as_ref()
    }

    /// The first registered client id ([`DEFAULT_CLIENT_ID`] by default).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// pid of the Python child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The child's stderr: one line per request, tracebacks, TLS failures.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Runs control operation `op` with `args`; panics unless it answers 200.
    pub fn admin(&self, op: &str, args: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/admin/{op}", self.control_port);
        let reply = post(
            &url,
            args.to_string().as_bytes(),
            "application/json",
            None,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("oauth admin {op}: {e}\n{}", self.stderr()));
        assert_eq!(
            reply.status,
            200,
            "oauth admin {op} {args}: {}",
            reply.text()
        );
        reply.json()
    }

    /// Issues an access and a refresh token for `user` (the introspected
    /// `username`, so the Dovecot login name: `alice`, not an address).
    pub fn issue(&self, user: &str) -> Tokens {
        self.issue_with(user, IssueOptions::default())
    }

    /// [`OAuthServer::issue`] with another client, scope, lifetime or length.
    pub fn issue_with(&self, user: &str, opts: IssueOptions) -> Tokens {
        let mut args = json!({"user": user});
        if let Some(c) = opts.client_id {
            args["client_id"] = json!(c);
        }
        if let Some(s) = opts.scope {
            args["scope"] = json!(s);
        }
        if let Some(e) = opts.expires_in {
            args["expires_in"] = json!(e);
        }
        if let Some(l) = opts.length {
            args["length"] = json!(l);
        }
        let v = self.admin("issue", args);
        Tokens {
            access_token: v["access_token"]
                .as_str()
                .expect("access_token")
                .to_string(),
            refresh_token: v["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_string(),
            expires_in: v["expires_in"].as_i64().expect("expires_in"),
            expires_at: v["expires_at"].as_i64().expect("expires_at"),
        }
    }

    fn config(&self, key: &str, value: Value) {
        self.admin("config", json!({ key: value }));
    }

    /// Rotation on (a new refresh token on every refresh, the old one dead)
    /// or off (no `refresh_token` in refresh answers).
    pub fn set_rotation(&self, on: bool) {
        self.config("rotation", json!(on));
    }

    /// `expires_in` of access tokens issued from now on, seconds.
    pub fn set_access_lifetime(&self, secs: i64) {
        self.config("access_lifetime", json!(secs));
    }

    /// Length of access tokens issued from now on, bytes.
    pub fn set_token_length(&self, bytes: usize) {
        self.config("token_length", json!(bytes));
    }

    /// `interval` of device codes handed out from now on, seconds.
    pub fn set_device_interval(&self, secs: u64) {
        self.config("device_interval", json!(secs));
    }

    /// `expires_in` of device codes handed out from now on, seconds.
    pub fn set_device_expires_in(&self, secs: i64) {
        self.config("device_expires_in", json!(secs));
    }

    /// Registers another client (`secret` None: a public client).
    pub fn add_client(&self, client_id: &str, secret: Option<&str>) {
        self.admin(
            "add_client",
            json!({"client_id": client_id, "client_secret": secret}),
        );
    }

    /// Revokes an access token before it expires: introspection answers
    /// `{"active":false}` from now on, so Dovecot refuses it.
    pub fn revoke_access(&self, token: &str) {
        self.admin("revoke_access", json!({ "token": token }));
    }

    /// Revokes a refresh token: refreshing with it gets `invalid_grant`.
    pub fn revoke_refresh(&self, token: &str) {
        self.admin("revoke_refresh", json!({ "token": token }));
    }

    /// Revokes every refresh token of `user` ("the user must sign in
    /// again"); returns how many were still valid.
    pub fn revoke_user(&self, user: &str) -> usize {
        let v = self.admin("revoke_refresh", json!({ "user": user }));
        v["revoked"].as_u64().expect("revoked") as usize
    }

    /// Sets an access token to expire `secs` from now (0 or negative:
    /// expired now; introspection then says inactive).
    pub fn set_expires_in(&self, token: &str, secs: i64) {
        self.admin("set_expiry", json!({"token": token, "expires_in": secs}));
    }

    /// Makes `endpoint` answer with `failure` until [`OAuthServer::clear_failure`].
    pub fn fail(&self, endpoint: Endpoint, failure: Failure) {
        let mut args = failure.to_json();
        args["endpoint"] = json!(endpoint.name());
        self.admin("fail", args);
    }

    /// Makes the next `times` requests of `endpoint` answer with
    /// `failure`, then normal service again.
    pub fn fail_times(&self, endpoint: Endpoint, failure: Failure, times: usize) {
        let mut args = failure.to_json();
        args["endpoint"] = json!(endpoint.name());
        args["times"] = json!(times);
        self.admin("fail", args);
    }

    /// Normal service again on `endpoint`.
    pub fn clear_failure(&self, endpoint: Endpoint) {
        self.admin("fail", json!({"endpoint": endpoint.name(), "mode": null}));
    }

    /// The script of device codes handed out from now on: each token poll
    /// takes the next step, the last repeating. Steps:
    /// `authorization_pending`, `slow_down`, `access_denied`,
    /// `expired_token` (that error), `ok` (tokens for `user`, then the code
    /// is used up). The default is `["ok"]` for `alice`.
    pub fn script_device(&self, steps: &[&str], user: &str) {
        self.admin("device_script", json!({"steps": steps, "user": user}));
    }

    /// Replaces the remaining script of one device code already handed out.
    pub fn script_device_code(&self, device_code: &str, steps: &[&str]) {
        self.admin(
            "device_script",
            json!({"steps": steps, "device_code": device_code}),
        );
    }

    /// The raw counters (see `oauth_server.py`).
    pub fn stats(&self) -> Value {
        self.admin("stats", json!({}))
    }

    /// Token endpoint requests with this `grant_type` (`refresh_token` or
    /// [`DEVICE_GRANT`]), any client, failed ones included.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.stats()["token_requests"][grant_type]
            .as_object()
            .map_or(0, |m| {
                m.values().filter_map(Value::as_u64).sum::<u64>() as usize
            })
    }

    /// Refresh requests so far (any client, answered or not).
    pub fn refresh_requests(&self) -> usize {
        self.token_requests("refresh_token")
    }

    /// Token endpoint requests with this `grant_type` from `client_id`.
    pub fn token_requests_by(&self, grant_type: &str, client_id: &str) -> usize {
        self.stats()["token_requests"][grant_type][client_id]
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// Requests to the device authorization endpoint, any client.
    pub fn device_requests(&self) -> usize {
        self.stats()["devicecode_requests"]
            .as_object()
            .map_or(0, |m| {
                m.values().filter_map(Value::as_u64).sum::<u64>() as usize
            })
    }

    /// Introspection requests so far (one per OAuth login Dovecot checks).
    pub fn introspections(&self) -> usize {
        self.stats()["introspections"]["total"]
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// Introspections of tokens issued to `user`, active or not: how many
    /// OAuth logins Dovecot checked for that user's tokens.
    pub fn introspections_for(&self, user: &str) -> usize {
        self.stats()["introspections"]["by_user"][user]
            .as_u64()
            .unwrap_or(0) as usize
    }

    /// Device codes handed out, in order.
    pub fn device_codes(&self) -> Vec<String> {
        strings(&self.stats()["device_codes"])
    }

    /// Unix times (fractional) of every token poll with `device_code`.
    pub fn device_polls(&self, device_code: &str) -> Vec<f64> {
        self.stats()["device_polls"][device_code]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<OAuthRequest> {
        let v = self.admin("requests", json!({}));
        let s = |x: &Value| x.as_str().map(str::to_string);
        v.as_array()
            .expect("requests array")
            .iter()
            .map(|r| OAuthRequest {
                at: r["at"].as_f64().unwrap_or_default(),
                port: s(&r["port"]).unwrap_or_default(),
                method: s(&r["method"]).unwrap_or_default(),
                path: s(&r["path"]).unwrap_or_default(),
                form: r["form"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                body: s(&r["body"]),
                authorization: s(&r["headers"]["authorization"]),
                accept: s(&r["headers"]["accept"]),
                content_type: s(&r["headers"]["content-type"]),
                status: r["status"].as_u64().map(|x| x as u16),
            })
            .collect()
    }

    /// Every access and refresh token ever issued (for "never in a log"
    /// checks such as `assert_secret_nowhere`).
    pub fn all_tokens(&self) -> Vec<String> {
        let v = self.admin("tokens", json!({}));
        ["access", "refresh"]
            .iter()
            .flat_map(|k| v[*k].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["token"].as_str().map(str::to_string))
            .collect()
    }

    /// Refresh tokens of `user` that would still be accepted (with rotation,
    /// exactly one per consent: the newest).
    pub fn valid_refresh_tokens(&self, user: &str) -> Vec<String> {
        let v = self.admin("tokens", json!({}));
        v["refresh"]
            .as_array()
            .expect("refresh tokens")
            .iter()
            .filter(|t| t["user"] == user && t["valid"] == true)
            .filter_map(|t| t["token"].as_str().map(str::to_string))
            .collect()
    }

    /// Whether introspection would call `token` active now.
    pub fn access_token_active(&self, token: &str) -> bool {
        let v = self.admin("tokens", json!({}));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        v["access"]
            .as_array()
            .expect("access tokens")
            .iter()
            .any(|t| {
                t["token"] == token
                    && t["revoked"] == false
                    && t["exp"].as_f64().is_some_and(|e| e > now)
            })
    }

    /// Clears the counters and the request list (tokens stay).
    pub fn reset_stats(&self) {
        self.admin("reset_stats", json!({}));
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An HTTP answer from [`post_form`].
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    /// The header block as sent (status line included).
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", super::text(&self.body)))
    }
}

/// POSTs `fields` form-encoded to `url` (`http://` or `https://`, host
/// 127.0.0.1 or localhost; `user:password@` becomes HTTP basic auth) with
/// `Accept: application/json`, as one HTTP/1.1 request on its own
/// connection, and reads the answer to the end. HTTPS trusts only `ca`.
/// Err on a connection, TLS or timeout failure, or a connection closed
/// without an answer.
pub fn post_form(
    url: &str,
    fields: &[(&str, &str)],
    ca: Option<&TestCa>,
    timeout: Duration,
) -> Result<HttpReply, String> {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    post(
        url,
        body.join("&").as_bytes(),
        "application/x-www-form-urlencoded",
        ca,
        timeout,
    )
}

fn post(
    url: &str,
    body: &[u8],
    content_type: &str,
    ca: Option<&TestCa>,
    timeout: Duration,
) -> Result<HttpReply, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("not an http(s) URL: {url}"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("no port in {url}"))?;
    assert!(
        host == "127.0.0.1" || host == "localhost",
        "loopback only: {url}"
    );
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: {content_type}\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(u) = userinfo {
        head.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(u.as_bytes())
        ));
    }
    head.push_str("\r\n");
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(timeout))
        .and_then(|()| tcp.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let raw = if https {
        let mut b = native_tls::TlsConnector::builder();
        b.disable_built_in_roots(true);
        if let Some(ca) = ca {
            let cert =
                native_tls::Certificate::from_pem(&ca.ca_pem()).map_err(|e| e.to_string())?;
            b.add_root_certificate(cert);
        }
        let connector = b.build().map_err(|e| e.to_string())?;
        let mut tls = connector
            .connect(host, tcp)
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(&mut tls, head.as_bytes(), body)?
    } else {
        let mut tcp = tcp;
        exchange(&mut tcp, head.as_bytes(), body)?
    };
    parse_reply(&raw)
}

fn exchange<S: Read + Write>(s: &mut S, head: &[u8], body: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(head)
        .and_then(|()| s.write_all(body))
        .and_then(|()| s.flush())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify still sent a whole answer.
        Err(_) if !raw.is_empty() => Ok(raw),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn parse_reply(raw: &[u8]) -> Result<HttpReply, String> {
    if raw.is_empty() {
        return Err("connection closed without an answer".to_string());
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", super::text(raw)))?;
    let head = super::text(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    let body = raw[end + 4..].to_vec();
    Ok(HttpReply { status, head, body })
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); None on a bad character.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The base64 XOAUTH2 initial response for `user` and bearer `token`:
/// `user=USER^Aauth=Bearer TOKEN^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    base64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// The base64 OAUTHBEARER (RFC 7628) initial response:
/// `n,a=USER,^Ahost=HOST^Aport=PORT^Aauth=Bearer TOKEN^A^A`.
pub fn oauthbearer(user: &str, token: &str, host: &str, port: u16) -> String {
    base64(
        format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
            .as_bytes(),
    )
}
