//! Test support shared by every integration test: real mail servers on
//! loopback, a temp home for the engine, and the message corpus.
//!
//! Include it with `mod support;` and use what the test needs. Each test
//! binary uses a subset, hence the `dead_code` allowance.
//!
//! Layout:
//! - `process`: pids, signals and waiting, without `unsafe` (signals go
//!   through `/usr/bin/kill`, state is read from `/proc`).
//! - `tls`: [`TestCa`], a throwaway CA and a `localhost` server cert (openssl, EC P-256).
//! - `dovecot`: [`Dovecot`], a private Dovecot (IMAP, IMAPS, LMTP, SASL) and
//!   [`ImapTool`], a Python imaplib client to load and inspect mailboxes
//!   independently of the engine's own IMAP code. With
//!   [`DovecotOptions::oauth2`] it takes XOAUTH2/OAUTHBEARER logins, checked
//!   against an [`OAuthServer`]'s introspection endpoint.
//! - `oauth`: [`OAuthServer`], an OAuth 2.0 provider (`oauth_server.py`):
//!   token refresh with rotation, RFC 8628 device flow, RFC 7662
//!   introspection, revocation and failure modes on cue, counters of every
//!   request; and [`post_form`], [`xoauth2`], [`oauthbearer`], [`base64`]
//!   for talking to it and to the mail servers by hand.
//! - `postfix`: [`Postfix`], a private Postfix delivering example.com into a [`Dovecot`].
//! - `smtp`: [`ScriptedSmtp`] (aiosmtpd answering 4xx/5xx on cue, recording
//!   every transaction) and [`SilentServer`] (accepts TCP, never answers).
//! - `home`: [`TempHome`], a temp `--home` for the engine binary.
//! - `proxy`: [`FaultProxy`], a TCP proxy in front of any of these servers
//!   that resets, stalls, garbles, trickles or closes connections on cue.
//! - `fake_imap`: [`FakeImap`], a scripted IMAP server (`fake_imap.py`) that
//!   sends chosen malformed responses for one folder, serves names Dovecot
//!   refuses and messages byte for byte, and records every command it gets.
//! - `db`: [`Db`], the engine's database as tests read and write it, on
//!   SQLite or PostgreSQL alike, and [`both_stores!`] to run a test on each.
//! - `postgres`: [`PgCluster`], a private PostgreSQL 15 cluster (one per
//!   test process, shared; or a test's own to restart and stop).
//! - `engine`: driving the engine binary in a [`TempHome`] (`engine_with`,
//!   `expect_code`, `run`, `add_account`, `queue`, ...), reading its database
//!   (`db`, `stored`, `account_error`, ...) and checking it (`assert_mirror`,
//!   `assert_private`, `assert_secret_nowhere`).
//! - here: small helpers every test file may want: [`text`], [`hex`] and
//!   [`hex_brief`], [`header_of`], [`mode_of`], waiting ([`wait_port`],
//!   [`wait_until`]), free ports and the message [`corpus`].
//!
//! Rules every server here follows: 127.0.0.1 only, its own temp dir, its own
//! free ports (a start that loses a port race retries with new ports), stopped
//! by pid in `Drop`, never by process name. So any number of them can run in
//! parallel, from cargo's test threads and from separate test binaries.
//! Everything panics with a descriptive message on failure: this is test code.
//!
//! Needs the Debian packages installed by `tests/install-deps.sh`, and root
//! (Dovecot and Postfix switch users; the mail store is owned by `nobody`).
#![allow(dead_code, unused_imports)]

pub mod db;
pub mod dovecot;
pub mod engine;
pub mod fake_imap;
pub mod home;
pub mod oauth;
pub mod postfix;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod smtp;
pub mod tls;

pub use db::{Db, Store};
pub use dovecot::{
    CertChoice, Dovecot, DovecotOptions, FolderInfo, FolderStatus, ImapTool,
    CAPS_WITHOUT_CONDSTORE, DEFAULT_USERS,
};
pub use fake_imap::{
    FakeFolder, FakeImap, FakeImapOptions, FakeMessage, FakeTls, Fault, FaultOn, ImapCommand, Then,
};
pub use home::TempHome;
pub use oauth::{
    base64, oauthbearer, post_form, unbase64, xoauth2, Endpoint, Failure, HttpReply, IssueOptions,
    OAuthRequest, OAuthServer, OAuthServerOptions, Tokens, DEFAULT_CLIENT_ID, DEVICE_GRANT,
};
pub use postfix::{Postfix, PostfixOptions};
pub use postgres::{PgCluster, Pooler};
// The rest of the proxy's names (Rule, When, Fault, ...) are used as
// `support::proxy::X`: `Fault` is also fake_imap's.
pub use proxy::FaultProxy;
pub use smtp::{
    Received, ScriptedSmtp, ScriptedSmtpOptions, SilentServer, SmtpEvent, SmtpRules, SmtpTls,
};
pub use tls::TestCa;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Debian's Python, which has `aiosmtpd` (a pyenv `python3` on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// `tests/support/` of this crate, where the Python helpers live.
pub fn support_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("support")
}

/// A port that was free on 127.0.0.1 a moment ago. Another process may take
/// it before you bind it: servers started here retry on a bind failure.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports free on 127.0.0.1 (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Waits until 127.0.0.1:`port` accepts a TCP connection; false on timeout.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
}

/// Polls `cond` every 10 ms until it holds; false if `timeout` passes first.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The message corpus, `tests/fixtures/corpus/*.eml` sorted by name, as
/// (file name, exact bytes). Attribution and categories of each file are in
/// `tests/fixtures/corpus/MANIFEST.tsv`. Dovecot stores bare LF as CRLF, NUL
/// as 0x80 and drops a trailing lone CR, so compare what the engine stored
/// with [`ImapTool::fetch_raw_all`], not with these bytes.
pub fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap_or_else(|e| panic!("read {n}: {e}"));
            (n, bytes)
        })
        .collect()
}

/// A private temp dir that the unprivileged server processes (`nobody`,
/// `dovecot`, `postfix`) can traverse: mode 0755 instead of tempfile's 0700.
pub(crate) fn server_temp_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod temp dir");
    dir
}

/// Starts the Python helper `tests/support/SCRIPT CONFIG` (after
/// `python_args`), its stderr into `DIR/stderr.log`, and waits for it to
/// report `READY PORT` on stdout (30 s) and for that port to accept
/// connections. Panics with its stderr if it does not start.
pub(crate) fn start_python_helper(
    dir: &Path,
    python_args: &[&str],
    script: &str,
    config: &Path,
) -> (Child, u16) {
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr.log");
    let mut child = Command::new(PYTHON)
        .args(python_args)
        .arg(support_dir().join(script))
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {script} (run tests/install-deps.sh): {e}"));
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let port = line
        .strip_prefix("READY ")
        .and_then(|p| p.trim().parse::<u16>().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        panic!("{script} did not start: {line:?}\n{err}");
    };
    assert!(
        wait_port(port, Duration::from_secs(5)),
        "{script}: port {port}"
    );
    (child, port)
}

/// Bytes as text, invalid UTF-8 replaced (for output and messages).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Lowercase hex, two digits a byte, all of it: the byte-exact form the
/// Python helpers read.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// [`hex`] for a failure message: the first 600 bytes, then
/// `... (N bytes)` when there are more.
pub fn hex_brief(b: &[u8]) -> String {
    let shown = hex(&b[..b.len().min(600)]);
    if b.len() > 600 {
        format!("{shown}... ({} bytes)", b.len())
    } else {
        shown
    }
}

/// The header block of a CRLF message, the empty line that ends it
/// included; the whole message when it has no empty line.
pub fn header_of(raw: &[u8]) -> &[u8] {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw, |p| &raw[..p + 4])
}

/// The permission bits (with setuid, setgid, sticky) of `path`; panics if
/// it cannot be read.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}
