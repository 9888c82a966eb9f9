//! SMTP servers whose behaviour a test decides:
//! - [`ScriptedSmtp`]: aiosmtpd in a Python child (`scripted_smtp.py`),
//!   answering chosen MAIL/RCPT/DATA with 4xx/5xx, optional STARTTLS,
//!   implicit TLS and AUTH PLAIN/LOGIN, recording every transaction.
//! - [`SilentServer`]: accepts TCP connections and never sends a byte (a
//!   stalled server, for timeout tests; works for IMAP as well as SMTP).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::start_python_helper;
use super::tls::TestCa;

/// TLS mode of a [`ScriptedSmtp`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP, no STARTTLS offered.
    #[default]
    None,
    /// STARTTLS offered, not required.
    StartTls,
    /// STARTTLS offered and required before MAIL (`530` otherwise).
    RequireStartTls,
    /// TLS from the first byte (smtps).
    Implicit,
}

/// What the server answers; changeable while it runs ([`ScriptedSmtp::set_rules`]).
/// Replies are full SMTP reply lines, e.g. `"451 4.3.0 try again later"`.
#[derive(Clone, Debug, Default)]
pub struct SmtpRules {
    /// Answer to every MAIL FROM (None: `250 OK`).
    pub mail_from_reply: Option<String>,
    /// (address, reply) pairs for RCPT TO; other addresses get `250 OK`.
    pub rcpt: Vec<(String, String)>,
    /// Answer after the DATA payload (None: accept and record it).
    pub data_reply: Option<String>,
    /// Wait this long before answering the DATA payload.
    pub data_delay_ms: u64,
}

impl SmtpRules {
    /// Adds a RCPT rule: answer `reply` (e.g. `"550 5.1.1 no such user"`) for `addr`.
    pub fn rcpt(mut self, addr: &str, reply: &str) -> Self {
        self.rcpt.push((addr.to_string(), reply.to_string()));
        self
    }

    /// Sets the DATA reply (e.g. `"452 4.3.1 out of space"` or `"554 5.6.0 rejected"`).
    pub fn data(mut self, reply: &str) -> Self {
        self.data_reply = Some(reply.to_string());
        self
    }

    /// Sets the MAIL FROM reply.
    pub fn mail_from(mut self, reply: &str) -> Self {
        self.mail_from_reply = Some(reply.to_string());
        self
    }

    fn to_json(&self) -> Value {
        let rcpt: serde_json::Map<String, Value> = self
            .rcpt
            .iter()
            .map(|(a, r)| (a.clone(), Value::String(r.clone())))
            .collect();
        json!({
            "mail_from_reply": self.mail_from_reply,
            "rcpt": rcpt,
            "data_reply": self.data_reply,
            "data_delay_ms": self.data_delay_ms,
        })
    }
}

/// Options for [`ScriptedSmtp::start`].
#[derive(Clone, Debug, Default)]
pub struct ScriptedSmtpOptions {
    /// Port to listen on; 0 (default) = any free port, chosen without a race.
    /// A fixed port is for restarting a server where the engine expects it.
    pub port: u16,
    pub tls: SmtpTls,
    /// CA whose server cert to present (e.g. `dovecot.ca().clone()`, so one
    /// `BG_TLS_CA_FILE` serves both); None: a fresh CA in the server's dir.
    pub ca: Option<TestCa>,
    /// AUTH PLAIN/LOGIN accepting this (user, password); None: no AUTH offered.
    /// With STARTTLS modes AUTH is offered only after STARTTLS.
    pub auth: Option<(String, String)>,
    /// Refuse MAIL until authenticated.
    pub auth_required: bool,
    pub rules: SmtpRules,
}

/// One accepted transaction (DATA answered 250).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message bytes as received, dot-unstuffed, ending with the CRLF
    /// before the final `.`.
    pub data: Vec<u8>,
    pub authenticated: bool,
    pub tls: bool,
}

/// One MAIL/RCPT/DATA/AUTH command seen and the reply given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpEvent {
    /// `mail`, `rcpt`, `data` or `auth`.
    pub event: String,
    /// The address for `mail` and `rcpt`, else empty.
    pub addr: String,
    /// The reply line given (for `auth`: `ok` or `failed`).
    pub reply: String,
}

/// An aiosmtpd server on 127.0.0.1 in a Python child process. The child
/// binds port 0 itself and reports the port, so there is no port race.
/// Startup ~150-250 ms (Python + aiosmtpd import). `Drop` kills the child.
pub struct ScriptedSmtp {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    ca: Option<TestCa>,
}

impl ScriptedSmtp {
    /// A plain server that accepts everything.
    pub fn accept_all() -> ScriptedSmtp {
        Self::start(ScriptedSmtpOptions::default())
    }

    /// A server that accepts TCP and never answers: see [`SilentServer`].
    pub fn silent() -> SilentServer {
        SilentServer::start()
    }

    /// A plain server with `rules`.
    pub fn with_rules(rules: SmtpRules) -> ScriptedSmtp {
        Self::start(ScriptedSmtpOptions {
            rules,
            ..Default::default()
        })
    }

    pub fn start(opts: ScriptedSmtpOptions) -> ScriptedSmtp {
        let dir = tempfile::Builder::new()
            .prefix("bp-smtp-")
            .tempdir()
            .expect("temp dir");
        let ca = match (&opts.ca, opts.tls) {
            (_, SmtpTls::None) => None,
            (Some(ca), _) => Some(ca.clone()),
            (None, _) => Some(TestCa::new(&dir.path().join("ca"))),
        };
        let tls = match opts.tls {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::RequireStartTls => "require-starttls",
            SmtpTls::Implicit => "implicit",
        };
        let cfg = json!({
            "dir": dir.path(),
            "port": opts.port,
            "tls": tls,
            "cert": ca.as_ref().map(|c| c.cert_file()),
            "key": ca.as_ref().map(|c| c.key_file()),
            "auth": opts.auth.as_ref().map(|(u, p)| [u, p]),
            "auth_required": opts.auth_required,
        });
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config.json");
        write_rules(dir.path(), &opts.rules);
        let (child, port) =
            start_python_helper(dir.path(), &["-W", "ignore"], "scripted_smtp.py", &cfg_path);
        ScriptedSmtp {
            dir,
            child,
            port,
            ca,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA of the presented certificate (None without TLS).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(TestCa::ca_file)
    }

    /// pid of the Python child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the rules; applies from the next MAIL/RCPT/DATA on.
    pub fn set_rules(&self, rules: &SmtpRules) {
        write_rules(self.dir.path(), rules);
    }

    /// Every accepted transaction so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read smtp dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                n.starts_with("msg-") && n.ends_with(".json")
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(p).expect("read msg json"))
                    .expect("msg json");
                Received {
                    mail_from: v["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_to: v["rcpt_to"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    data: std::fs::read(v["data"].as_str().expect("data path"))
                        .expect("read msg data"),
                    authenticated: v["authenticated"].as_bool().unwrap_or(false),
                    tls: v["tls"].as_bool().unwrap_or(false),
                }
            })
            .collect()
    }

    /// Waits until at least `n` transactions were accepted; returns them all.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if r.len() >= n || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every MAIL/RCPT/DATA/AUTH seen, with the reply given, in order.
    pub fn events(&self) -> Vec<SmtpEvent> {
        let text =
            std::fs::read_to_string(self.dir.path().join("events.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| SmtpEvent {
                event: v["event"].as_str().unwrap_or_default().to_string(),
                addr: v["addr"].as_str().unwrap_or_default().to_string(),
                reply: match v["ok"].as_bool() {
                    Some(true) => "ok".to_string(),
                    Some(false) => "failed".to_string(),
                    None => v["reply"].as_str().unwrap_or_default().to_string(),
                },
            })
            .collect()
    }

    /// Every RCPT TO address tried, accepted or not, in order.
    pub fn rcpt_attempts(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter(|e| e.event == "rcpt")
            .map(|e| e.addr)
            .collect()
    }

    /// The Python child's stderr (tracebacks, aiosmtpd warnings).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The server's directory (records, rules, config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScriptedSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_rules(dir: &Path, rules: &SmtpRules) {
    // Written whole, then renamed: the server never reads half a file.
    let tmp = dir.join("rules.json.tmp");
    std::fs::write(&tmp, rules.to_json().to_string()).expect("write rules");
    std::fs::rename(&tmp, dir.join("rules.json")).expect("rename rules");
}

/// A TCP server on 127.0.0.1 that accepts connections and never sends or
/// reads anything: a stalled SMTP or IMAP server. Connections stay open
/// until drop. A plain thread; no port race (binds port 0).
pub struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent server");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, accepted, conns) = (stop.clone(), accepted.clone(), conns.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(c) = conn {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        conns.lock().expect("lock").push(c);
                    }
                }
            })
        };
        SilentServer {
            port,
            stop,
            accepted,
            conns,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.conns.lock().expect("lock").clear();
    }
}
