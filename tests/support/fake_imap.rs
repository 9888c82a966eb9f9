//! [`FakeImap`]: a scripted IMAP server (`fake_imap.py`) that speaks just
//! enough IMAP for a sync (greeting, CAPABILITY, LOGIN, STARTTLS, LIST with
//! LIST-STATUS, STATUS, EXAMINE, UID FETCH, UID SEARCH) and can send, for one
//! folder, any bytes in place of a response ([`Fault`]). It never rewrites a
//! message (Dovecot turns bare LF into CRLF and NUL into 0x80), serves folder
//! names Dovecot would refuse, and records every command it receives, so a
//! test can prove what the engine did or did not send (no LOGIN before TLS).
//!
//! The Python child binds port 0 itself and reports the port: no port race.

use std::path::{Path, PathBuf};
use std::process::Child;

use serde_json::{json, Value};

use super::tls::TestCa;
use super::{hex, start_python_helper};

/// TLS mode of a [`FakeImap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FakeTls {
    /// Plain IMAP, no STARTTLS offered.
    #[default]
    None,
    /// STARTTLS offered (LOGIN is accepted without it too: the engine must not try).
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

/// Which command of a folder a [`Fault`] replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOn {
    /// `UID FETCH` with `BODY.PEEK[]` or `BODY.PEEK[HEADER]`.
    Body,
    /// `UID FETCH` without a body (the index of UIDs, sizes and flags).
    Index,
    /// `EXAMINE` of the folder.
    Examine,
    /// Sent in the middle of `LIST`'s response, before this folder's line.
    List,
}

/// What the server does after a fault's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Completes the command with a tagged OK.
    Ok,
    /// Completes the command with a tagged NO.
    No,
    /// Closes the connection.
    Close,
    /// Sends nothing more until the client hangs up.
    Stall,
}

/// Bytes sent instead of a response: `send`, then `repeat` `count` times.
#[derive(Clone, Debug)]
pub struct Fault {
    pub on: FaultOn,
    pub send: Vec<u8>,
    pub repeat: Vec<u8>,
    pub count: usize,
    pub then: Then,
}

impl Fault {
    /// `send` in place of the response to `on`, then `then`.
    pub fn new(on: FaultOn, send: &[u8], then: Then) -> Fault {
        Fault {
            on,
            send: send.to_vec(),
            repeat: Vec::new(),
            count: 0,
            then,
        }
    }

    /// Adds `chunk` repeated `count` times after `send` (for huge responses).
    pub fn repeated(mut self, chunk: &[u8], count: usize) -> Fault {
        self.repeat = chunk.to_vec();
        self.count = count;
        self
    }
}

/// One message of a [`FakeFolder`]: its exact bytes and flags.
#[derive(Clone, Debug)]
pub struct FakeMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub flags: String,
}

/// A folder: its wire name (any bytes), attributes, UIDVALIDITY, messages.
#[derive(Clone, Debug)]
pub struct FakeFolder {
    pub wire: Vec<u8>,
    pub attrs: String,
    pub uidvalidity: u32,
    pub messages: Vec<FakeMessage>,
    pub fault: Option<Fault>,
}

impl FakeFolder {
    /// A folder named `wire` holding `messages` with UIDs 1, 2, ...
    pub fn new(wire: &[u8], messages: &[Vec<u8>]) -> FakeFolder {
        FakeFolder {
            wire: wire.to_vec(),
            attrs: "\\HasNoChildren".to_string(),
            uidvalidity: 1000,
            messages: messages
                .iter()
                .enumerate()
                .map(|(i, raw)| FakeMessage {
                    uid: i as u32 + 1,
                    raw: raw.clone(),
                    flags: String::new(),
                })
                .collect(),
            fault: None,
        }
    }

    pub fn with_fault(mut self, fault: Fault) -> FakeFolder {
        self.fault = Some(fault);
        self
    }
}

/// Options for [`FakeImap::start`].
#[derive(Clone, Debug)]
pub struct FakeImapOptions {
    pub tls: FakeTls,
    /// CA whose `localhost` cert to present (tls != None); None: a fresh CA.
    pub ca: Option<TestCa>,
    pub user: String,
    pub password: String,
    /// Capabilities (before and after login; STARTTLS is added as fits).
    pub caps: String,
    pub folders: Vec<FakeFolder>,
    /// A refused LOGIN is answered with the user and password it got (a
    /// careless server): they must not reach the engine's logs.
    pub echo_login: bool,
    /// The whole reply to STARTTLS (`TAG` stands for the command's tag);
    /// TLS starts only when it begins with `TAG OK` and `tls` is StartTls.
    pub starttls_reply: Option<Vec<u8>>,
    /// The whole reply to LOGIN (`TAG` stands for the command's tag); the
    /// server closes the connection after it when it holds a `* BYE`.
    pub login_reply: Option<Vec<u8>>,
}

impl Default for FakeImapOptions {
    fn default() -> Self {
        FakeImapOptions {
            tls: FakeTls::None,
            ca: None,
            user: "alice".to_string(),
            password: "fake-secret".to_string(),
            caps: "IMAP4rev1 LITERAL+ LIST-STATUS".to_string(),
            folders: Vec::new(),
            echo_login: false,
            starttls_reply: None,
            login_reply: None,
        }
    }
}

/// One command the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapCommand {
    /// Connection number (1, 2, ... in accept order).
    pub conn: u64,
    /// Received over TLS.
    pub tls: bool,
    /// The command's bytes, literals included.
    pub bytes: Vec<u8>,
}

/// A running fake server; `Drop` kills it.
pub struct FakeImap {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    ca: Option<TestCa>,
}

impl FakeImap {
    pub fn start(opts: FakeImapOptions) -> FakeImap {
        let dir = tempfile::Builder::new()
            .prefix("bp-fakeimap-")
            .tempdir()
            .expect("temp dir");
        let ca = match (&opts.ca, opts.tls) {
            (_, FakeTls::None) => None,
            (Some(ca), _) => Some(ca.clone()),
            (None, _) => Some(TestCa::new(&dir.path().join("ca"))),
        };
        let mut n = 0;
        let folders: Vec<Value> = opts
            .folders
            .iter()
            .map(|f| {
                let messages: Vec<Value> = f
                    .messages
                    .iter()
                    .map(|m| {
                        n += 1;
                        let path = dir.path().join(format!("msg-{n}.eml"));
                        std::fs::write(&path, &m.raw).expect("write message");
                        json!({"uid": m.uid, "file": path, "flags": m.flags})
                    })
                    .collect();
                let fault = f.fault.as_ref().map(|x| {
                    json!({
                        "on": match x.on {
                            FaultOn::Body => "body",
                            FaultOn::Index => "index",
                            FaultOn::Examine => "examine",
                            FaultOn::List => "list",
                        },
                        "send": hex(&x.send),
                        "repeat": hex(&x.repeat),
                        "count": x.count,
                        "then": match x.then {
                            Then::Ok => "ok",
                            Then::No => "no",
                            Then::Close => "close",
                            Then::Stall => "stall",
                        },
                    })
                });
                json!({
                    "wire": hex(&f.wire),
                    "attrs": f.attrs,
                    "uidvalidity": f.uidvalidity,
                    "messages": messages,
                    "fault": fault,
                })
            })
            .collect();
        let cfg = json!({
            "dir": dir.path(),
            "tls": match opts.tls {
                FakeTls::None => "none",
                FakeTls::StartTls => "starttls",
                FakeTls::Implicit => "implicit",
            },
            "cert": ca.as_ref().map(|c| c.cert_file()),
            "key": ca.as_ref().map(|c| c.key_file()),
            "user": opts.user,
            "password": opts.password,
            "caps": opts.caps,
            "folders": folders,
            "echo_login": opts.echo_login,
            "starttls_reply": opts.starttls_reply.as_deref().map(hex),
            "login_reply": opts.login_reply.as_deref().map(hex),
        });
        let cfg_path = dir.path().join("config.json");
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config.json");
        let (child, port) = start_python_helper(dir.path(), &[], "fake_imap.py", &cfg_path);
        FakeImap {
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

    /// Every command received so far, in order.
    pub fn commands(&self) -> Vec<ImapCommand> {
        let text =
            std::fs::read_to_string(self.dir.path().join("received.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| ImapCommand {
                conn: v["conn"].as_u64().unwrap_or(0),
                tls: v["tls"].as_bool().unwrap_or(false),
                bytes: unhex(v["hex"].as_str().unwrap_or_default()),
            })
            .collect()
    }

    /// The names (upper-cased second word, `UID FETCH` as one) of the
    /// commands received, in order.
    pub fn command_names(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| {
                let text = String::from_utf8_lossy(&c.bytes).to_ascii_uppercase();
                let mut w = text.split_whitespace().skip(1);
                match w.next() {
                    Some("UID") => format!("UID {}", w.next().unwrap_or_default()),
                    Some(x) => x.to_string(),
                    None => String::new(),
                }
            })
            .collect()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("conns.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// The Python child's stderr (tracebacks).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FakeImap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}
