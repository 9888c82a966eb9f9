//! [`Dovecot`]: a private Dovecot 2.3 on 127.0.0.1 (IMAP with STARTTLS,
//! IMAPS, LMTP for Postfix, an auth listener for Postfix's SASL), and
//! [`ImapTool`]: an independent IMAP client (Python imaplib, raw APPEND) for
//! tests to load and inspect mailboxes. Never uses the engine's IMAP code.
//!
//! Everything lives in one temp dir: `dovecot.conf`, `passwd`, `run/`
//! (base_dir), `state/`, `mail/USER` (Maildir, owned by nobody:nogroup),
//! `dovecot.log`, `ca/`, maybe `untrusted-ca/` and, with OAuth, `oauth2.conf.ext`.
//!
//! Every instance logs each authentication attempt at once (IMAP LOGIN and
//! AUTHENTICATE, and Postfix's SASL through the auth listener), so tests can
//! count them: [`Dovecot::auth_attempts`], [`Dovecot::auth_failures`],
//! [`Dovecot::imap_logins`].

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{self, group_id, run_ok, user_id};
use super::tls::TestCa;
use super::{free_ports, server_temp_dir, support_dir, wait_port, PYTHON};

/// Users every [`Dovecot`] has from the start, as (login, password). Their
/// addresses for Postfix/LMTP are `LOGIN@example.com`.
pub const DEFAULT_USERS: [(&str, &str); 4] = [
    ("alice", "alice-secret"),
    ("bob", "bob-secret"),
    ("carol", "carol-secret"),
    ("dave", "dave-secret"),
];

/// Dovecot 2.3.19's own post-login capability list minus CONDSTORE and
/// QRESYNC: for [`DovecotOptions::capabilities_override`] to test the
/// engine's fallback without them.
pub const CAPS_WITHOUT_CONDSTORE: &str = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT \
     SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL \
     CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 ESEARCH ESORT \
     SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY \
     PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY";

/// Which certificate the TLS ports present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertChoice {
    /// Signed by the CA that [`Dovecot::ca_file`] returns.
    #[default]
    Trusted,
    /// Signed by an unrelated CA ([`TestCa::untrusted`]); [`Dovecot::ca_file`]
    /// still returns the trusted CA, so verification against it must fail.
    Untrusted,
}

/// Options for [`Dovecot::start_with`]; `Default` is what [`Dovecot::start`] uses.
#[derive(Clone, Debug, Default)]
pub struct DovecotOptions {
    /// Sets `imap_capability` (the capabilities advertised after login),
    /// e.g. [`CAPS_WITHOUT_CONDSTORE`]. Only the advertisement changes:
    /// Dovecot still accepts the commands.
    pub capabilities_override: Option<String>,
    /// Which certificate the TLS ports present.
    pub cert: CertChoice,
    /// Users in addition to [`DEFAULT_USERS`], present from the start.
    pub users: Vec<(String, String)>,
    /// Appended verbatim to `dovecot.conf` (later settings win).
    pub extra_config: String,
    /// OAuth 2.0 logins: the RFC 7662 introspection URL (with basic-auth
    /// credentials), e.g. [`super::OAuthServer::introspection_url`]. Adds
    /// `XOAUTH2` and `OAUTHBEARER` to IMAP and to Postfix's SASL, validated
    /// by Dovecot's `oauth2` passdb asking that URL on every login (no
    /// cache); passwords, LMTP and doveadm lookups keep working. The token's
    /// introspected `username` must be the login name (`alice`).
    pub oauth2: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Ports {
    imap: u16,
    imaps: u16,
    lmtp: u16,
    auth: u16,
}

/// A private Dovecot instance. Start with [`Dovecot::start`]; `Drop` kills it
/// (SIGKILL to its process group, then waits until every process is gone).
pub struct Dovecot {
    dir: tempfile::TempDir,
    conf: PathBuf,
    ports: Ports,
    ca: TestCa,
    served: TestCa,
    users: Mutex<Vec<(String, String)>>,
    master: Mutex<Option<u32>>,
}

impl Dovecot {
    /// Starts a Dovecot with the default options: users [`DEFAULT_USERS`],
    /// trusted cert, Dovecot's full capabilities.
    pub fn start() -> Dovecot {
        Self::start_with(DovecotOptions::default())
    }

    /// Starts a Dovecot with `opts`. Takes about 50-80 ms (CA included).
    pub fn start_with(opts: DovecotOptions) -> Dovecot {
        let dir = server_temp_dir("bp-dovecot-");
        let root = dir.path().to_path_buf();
        process::reap_orphans();
        process::write_owner(&root);
        let ca = TestCa::new(&root.join("ca"));
        let served = match opts.cert {
            CertChoice::Trusted => ca.clone(),
            CertChoice::Untrusted => TestCa::untrusted(&root.join("untrusted-ca")),
        };
        let mail = root.join("mail");
        std::fs::create_dir(&mail).expect("mkdir mail");
        std::os::unix::fs::chown(&mail, Some(user_id("nobody")), Some(group_id("nogroup")))
            .expect("chown mail dir to nobody:nogroup");
        let mut users: Vec<(String, String)> = DEFAULT_USERS
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        users.extend(opts.users.iter().cloned());
        write_passwd(&root.join("passwd"), &users);
        if let Some(url) = &opts.oauth2 {
            std::fs::write(root.join("oauth2.conf.ext"), oauth2_config(url))
                .expect("write oauth2.conf.ext");
        }
        let conf = root.join("dovecot.conf");

        let mut last_err = String::new();
        for _attempt in 0..10 {
            let p = free_ports(4);
            let ports = Ports {
                imap: p[0],
                imaps: p[1],
                lmtp: p[2],
                auth: p[3],
            };
            std::fs::write(&conf, config(&root, ports, &served, &opts))
                .expect("write dovecot.conf");
            match launch(&conf) {
                Ok(()) => {
                    let dovecot = Dovecot {
                        conf,
                        ports,
                        ca,
                        served,
                        users: Mutex::new(users),
                        master: Mutex::new(None),
                        dir,
                    };
                    dovecot.after_launch();
                    return dovecot;
                }
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!(
                    "dovecot failed to start: {e}\nlog:\n{}",
                    read_lossy(&root.join("dovecot.log"))
                ),
            }
        }
        panic!("dovecot: no free ports after 10 attempts: {last_err}");
    }

    fn after_launch(&self) {
        // The daemonized master writes master.pid a moment after the
        // launcher has exited.
        let pid_file = self.dir.path().join("run/master.pid");
        let mut pid = None;
        super::wait_until(Duration::from_secs(10), || {
            pid = read_pid(&pid_file);
            pid.is_some()
        });
        let pid = pid.unwrap_or_else(|| {
            panic!(
                "dovecot started but wrote no master.pid\n{}",
                self.log_contents()
            )
        });
        *self.master.lock().expect("lock") = Some(pid);
        // The listeners exist before `dovecot` returns; this is a sanity check.
        assert!(
            wait_port(self.ports.imap, Duration::from_secs(5)),
            "dovecot IMAP port {} not accepting\n{}",
            self.ports.imap,
            self.log_contents()
        );
    }

    /// Plain IMAP port (STARTTLS offered; LOGIN allowed without TLS).
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }

    /// Implicit-TLS IMAP port.
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }

    /// LMTP port (`auth_username_format = %n`: `alice@example.com` is `alice`).
    pub fn lmtp_port(&self) -> u16 {
        self.ports.lmtp
    }

    /// Dovecot auth listener for Postfix's `smtpd_sasl_type = dovecot`.
    pub fn auth_port(&self) -> u16 {
        self.ports.auth
    }

    /// The CA to trust (`BG_TLS_CA_FILE`). With [`CertChoice::Untrusted`]
    /// this is still the trusted CA, which does not sign the served cert.
    pub fn ca_file(&self) -> PathBuf {
        self.ca.ca_file()
    }

    /// The trusted CA (see [`Dovecot::ca_file`]); clone it to give another
    /// server (Postfix, [`super::ScriptedSmtp`]) a cert from the same CA.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA whose cert the TLS ports actually present.
    pub fn served_ca(&self) -> &TestCa {
        &self.served
    }

    /// `dovecot.conf` of this instance (for `doveadm -c`).
    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Maildir of `user` (`mail/USER`, owned by nobody:nogroup). Dovecot
    /// uses Maildir++: folder `A/B` is the subdirectory `.A.B` (wire names).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// Everything Dovecot logged so far (`log_path`).
    pub fn log_contents(&self) -> String {
        read_lossy(&self.dir.path().join("dovecot.log"))
    }

    /// Authentication attempts for `user` so far, granted or refused, any
    /// mechanism, from IMAP and from Postfix's SASL alike: Dovecot's
    /// `auth: Debug: auth(USER,IP,<session>): Auth request finished` lines
    /// (written when the attempt ends). `user` matches the login name and
    /// `user@domain`. An attempt that never ends (a client that does not
    /// answer the challenge on a refused token) is not counted.
    pub fn auth_attempts(&self, user: &str) -> usize {
        self.log_contents()
            .lines()
            .filter(|l| l.contains(": Auth request finished"))
            .filter(|l| {
                auth_line_user(l, "auth: Debug: auth(").is_some_and(|n| user_matches(user, n))
            })
            .count()
    }

    /// Refused authentications for `user`: the `auth: Info: DRIVER(USER,...)`
    /// lines of `auth_verbose`, one per refusal, e.g.
    /// `oauth2(alice,127.0.0.1,<...>): oauth2 failed: Introspection failed:
    /// Provided token is not valid` or `passwd-file(alice,...): Password mismatch`.
    /// Lookups without a client IP (doveadm's, e.g. [`Dovecot::add_user`]'s
    /// `passwd-file(erin): unknown user`) are not logins and not counted.
    pub fn auth_failures(&self, user: &str) -> usize {
        self.log_contents()
            .lines()
            .filter(|l| {
                let Some(i) = l.find(" auth: Info: ") else {
                    return false;
                };
                // DRIVER(USER,IP,<session>): why
                let rest = &l[i + " auth: Info: ".len()..];
                rest.split_once('(')
                    .filter(|(driver, _)| !driver.is_empty() && !driver.contains(' '))
                    .and_then(|(_, args)| args.split_once(','))
                    .is_some_and(|(name, _)| user_matches(user, name))
            })
            .count()
    }

    /// Successful IMAP logins of `user` (`imap-login: Info: Login: user=<USER>`
    /// lines, any mechanism). Postfix's SASL successes are not here: count
    /// them with [`Dovecot::auth_attempts`] minus [`Dovecot::auth_failures`].
    pub fn imap_logins(&self, user: &str) -> usize {
        let plain = format!("Login: user=<{user}>,");
        let domain = format!("Login: user=<{user}@");
        self.log_contents()
            .lines()
            .filter(|l| l.contains(" imap-login: Info: "))
            .filter(|l| l.contains(&plain) || l.contains(&domain))
            .count()
    }

    /// Password of a user known to this instance.
    pub fn password(&self, user: &str) -> String {
        self.users
            .lock()
            .expect("lock")
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("dovecot: no user {user}"))
    }

    /// Adds a user after start and waits until Dovecot's auth sees it
    /// (it re-reads the passwd-file at most once a second, so up to ~1 s).
    /// Users needed from the start are cheaper in [`DovecotOptions::users`].
    pub fn add_user(&self, name: &str, password: &str) {
        let users = {
            let mut users = self.users.lock().expect("lock");
            users.push((name.to_string(), password.to_string()));
            users.clone()
        };
        write_passwd(&self.dir.path().join("passwd"), &users);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            // A passdb lookup is not a failed login: no penalty, no delay.
            let out = self.doveadm(&["auth", "lookup", name]);
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dovecot never saw new user {name}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An [`ImapTool`] logged in as `user` (a known user; password looked up).
    pub fn imap(&self, user: &str) -> ImapTool {
        ImapTool {
            port: self.ports.imap,
            user: user.to_string(),
            password: self.password(user),
        }
    }

    /// Runs `doveadm -c CONF ARGS` and returns its output (not checked).
    pub fn doveadm(&self, args: &[&str]) -> std::process::Output {
        Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run doveadm")
    }

    /// Sets a folder's UIDVALIDITY (`doveadm mailbox update`), for
    /// "UIDVALIDITY changed" tests. `folder` is the wire name (ASCII names
    /// are the same on the wire). Dovecot keeps the UIDs themselves.
    pub fn set_uidvalidity(&self, user: &str, folder: &str, uidvalidity: u32) {
        let v = uidvalidity.to_string();
        let out = self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            &v,
            folder,
        ]);
        assert!(
            out.status.success(),
            "doveadm mailbox update failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// pid of the running master process, if running.
    pub fn master_pid(&self) -> Option<u32> {
        *self.master.lock().expect("lock")
    }

    /// The master and all its live children (imap-login, imap, auth, ...).
    pub fn pids(&self) -> Vec<u32> {
        process::with_children(self.master_pid())
    }

    /// Stops gracefully like a real shutdown (SIGTERM to the master: clients
    /// get `* BYE`), waiting until every process is gone. Dovecot's master
    /// takes about 1.1 s to exit after SIGTERM. No-op when stopped.
    pub fn stop(&self) {
        if let Some(pid) = self.master.lock().expect("lock").take() {
            process::stop_tree(pid, "TERM", Duration::from_secs(10));
        }
    }

    /// Stop, then start again on the same ports with the same mail, users
    /// and config: the "server restarted mid-run" case.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Kills it abruptly (SIGKILL to the whole process group): connections
    /// drop without `BYE`. Fast; restart with [`Dovecot::start_again`].
    pub fn kill(&self) {
        if let Some(pid) = self.master.lock().expect("lock").take() {
            process::stop_tree(pid, "KILL", Duration::from_secs(5));
            // A killed master leaves its pid file behind, and while PID 1
            // has not reaped the zombie, `kill(pid, 0)` still finds it:
            // `start_again` would fail with "Dovecot is already running".
            let _ = std::fs::remove_file(self.dir.path().join("run/master.pid"));
        }
    }

    /// Starts a stopped instance again on the same ports and data.
    pub fn start_again(&self) {
        assert!(self.master_pid().is_none(), "dovecot is still running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match launch(&self.conf) {
                Ok(()) => break,
                // Someone grabbed one of our ports meanwhile: nothing to do but wait.
                Err(e) if e.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => panic!("dovecot restart failed: {e}\n{}", self.log_contents()),
            }
        }
        self.after_launch();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.kill();
    }
}

fn launch(conf: &Path) -> Result<(), String> {
    // `dovecot` binds every listener, then daemonizes; it exits non-zero
    // (89) with "Address already in use" when a port is taken.
    let log = conf.with_file_name("dovecot.start.log");
    let (ok, text) = process::run_daemonizing(Command::new("dovecot").arg("-c").arg(conf), &log)?;
    if ok {
        Ok(())
    } else {
        Err(text)
    }
}

/// Whether `name` from a log line is `user` or `user@domain`.
fn user_matches(user: &str, name: &str) -> bool {
    name == user
        || name
            .strip_prefix(user)
            .is_some_and(|rest| rest.starts_with('@'))
}

/// The USER of the first `PREFIXUSER,` in `line`, e.g. with prefix
/// `auth(`: `alice` from `auth(alice,127.0.0.1,<...>)`.
fn auth_line_user<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    let rest = &line[start..];
    Some(&rest[..rest.find(',')?])
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn write_passwd(path: &Path, users: &[(String, String)]) {
    let mut text = String::new();
    for (u, p) in users {
        assert!(
            !u.contains([':', '\n']) && !p.contains('\n'),
            "bad test user {u:?}"
        );
        text.push_str(&format!("{u}:{{PLAIN}}{p}\n"));
    }
    // Write a new file and rename: Dovecot never reads a half-written one.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write passwd");
    std::fs::rename(&tmp, path).expect("rename passwd");
}

fn config(root: &Path, p: Ports, cert: &TestCa, opts: &DovecotOptions) -> String {
    let r = root.display();
    let caps = match &opts.capabilities_override {
        Some(c) => format!("imap_capability = {c}\n"),
        None => String::new(),
    };
    let dh = Path::new("/usr/share/dovecot/dh.pem");
    let dh = if dh.exists() {
        format!("ssl_dh = <{}\n", dh.display())
    } else {
        String::new()
    };
    // With OAuth the passwd-file passdb must name its mechanisms, `none`
    // included: without `none` it is skipped for LMTP's and doveadm's
    // lookups ("All password databases were skipped").
    let (mechanisms, passwd_mechanisms, oauth_passdb) = match &opts.oauth2 {
        Some(_) => (
            "plain login xoauth2 oauthbearer",
            "  mechanisms = plain login none\n",
            format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                 args = {r}/oauth2.conf.ext\n}}\n"
            ),
        ),
        None => ("plain login", "", String::new()),
    };
    // instance_name keeps process titles and syslog idents apart per instance.
    let instance = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        r#"# Private test instance: generated by tests/support/dovecot.rs
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
instance_name = {instance}
listen = 127.0.0.1
protocols = imap lmtp
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{dh}disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_username_format = %n
# Test config: no delay after a failed login, and (with anvil's penalty
# socket closed below) no growing per-IP penalty for later logins either.
auth_failure_delay = 0
# One line per refused login (never the password or token), and one per
# finished authentication of any outcome: tests count login attempts.
auth_verbose = yes
log_debug = event=auth_request_finished
first_valid_uid = 1
mail_location = maildir:{r}/mail/%n
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
{passwd_mechanisms}  args = scheme=PLAIN username_format=%n {r}/passwd
}}
{oauth_passdb}userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={r}/mail/%n
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
{caps}service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
}}
service auth {{
  inet_listener sasl {{
    address = 127.0.0.1
    port = {auth}
  }}
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{extra}
"#,
        cert = cert.cert_file().display(),
        key = cert.key_file().display(),
        imap = p.imap,
        imaps = p.imaps,
        lmtp = p.lmtp,
        auth = p.auth,
        extra = opts.extra_config,
    )
}

/// The `oauth2` passdb's settings: RFC 7662 introspection by POST on every
/// login, the token's `username` must be the login name.
fn oauth2_config(introspection_url: &str) -> String {
    format!(
        "# Generated by tests/support/dovecot.rs\n\
         introspection_mode = post\n\
         introspection_url = {introspection_url}\n\
         force_introspection = yes\n\
         username_attribute = username\n\
         active_attribute = active\n\
         active_value = true\n\
         timeout_msecs = 5000\n"
    )
}

/// One folder from LIST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderInfo {
    /// The name on the wire (modified UTF-7), e.g. `Faktury/Za&AXwA8wFCAQc-`.
    pub wire: String,
    /// Decoded to UTF-8, e.g. `Faktury/Zażółć`.
    pub name: String,
    /// Hierarchy delimiter (`/` here).
    pub delim: Option<String>,
    /// Attributes as sent, e.g. `\Noselect \HasChildren`.
    pub flags: String,
}

/// STATUS of a folder. `highestmodseq` is None when the server refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolderStatus {
    pub messages: u32,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub unseen: u32,
    pub highestmodseq: Option<u64>,
}

/// IMAP client for tests, independent of the engine: each call runs
/// `tests/support/imaptool.py` (Python imaplib over the plain port, LOGIN),
/// one short session per call (~50 ms). Folder arguments are UTF-8 names;
/// the tool encodes them to modified UTF-7. Messages are appended with the
/// exact bytes given (raw literals: imaplib's own `append` would rewrite
/// line endings). Panics on any IMAP error.
#[derive(Clone, Debug)]
pub struct ImapTool {
    port: u16,
    user: String,
    password: String,
}

impl ImapTool {
    /// A tool for any server/user (e.g. one added with [`Dovecot::add_user`]).
    pub fn new(port: u16, user: &str, password: &str) -> ImapTool {
        ImapTool {
            port,
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Value {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(support_dir().join("imaptool.py"))
            .args(["--port", &self.port.to_string()])
            .args(["--user", &self.user, "--password", &self.password])
            .args(args);
        let out = run_ok(&mut cmd);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "imaptool output is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// APPENDs `raw` to `folder` with `flags` (e.g. `"\\Seen \\Flagged"`,
    /// or `""`); returns the new UID.
    pub fn append(&self, folder: &str, raw: &[u8], flags: &str) -> u32 {
        self.append_inner(folder, raw, flags, None)
    }

    /// Like [`ImapTool::append`] with an INTERNALDATE, e.g. `"01-Jan-2020 10:00:00 +0100"`.
    pub fn append_at(&self, folder: &str, raw: &[u8], flags: &str, internal_date: &str) -> u32 {
        self.append_inner(folder, raw, flags, Some(internal_date))
    }

    fn append_inner(&self, folder: &str, raw: &[u8], flags: &str, date: Option<&str>) -> u32 {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(raw).expect("write temp file");
        let path = file.path().to_string_lossy().into_owned();
        let mut args = vec!["append", folder, &path, flags];
        if let Some(d) = date {
            args.push(d);
        }
        let v = self.run(&args);
        v["uid"].as_u64().expect("APPENDUID in reply") as u32
    }

    /// APPENDs many messages fast: MULTIAPPEND with LITERAL+, up to 1,000
    /// messages / 32 MiB per command (about 10,000 messages in 4 s).
    /// Returns their UIDs in order.
    pub fn append_many<B: AsRef<[u8]>>(&self, folder: &str, messages: &[B]) -> Vec<u32> {
        self.append_many_with_flags(folder, messages, "")
    }

    /// [`ImapTool::append_many`] with the same `flags` on every message.
    pub fn append_many_with_flags<B: AsRef<[u8]>>(
        &self,
        folder: &str,
        messages: &[B],
        flags: &str,
    ) -> Vec<u32> {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        {
            let mut w = std::io::BufWriter::new(file.as_file());
            for m in messages {
                let m = m.as_ref();
                writeln!(w, "{}", m.len()).expect("write records");
                w.write_all(m).expect("write records");
            }
            w.flush().expect("flush records");
        }
        let path = file.path().to_string_lossy().into_owned();
        let v = self.run(&["append-many", folder, &path, flags]);
        let uids = as_u32s(&v["uids"]);
        assert_eq!(uids.len(), messages.len(), "APPENDUID count");
        uids
    }

    /// CREATEs `name` (UTF-8, hierarchy with `/`); returns its wire name.
    pub fn create_folder(&self, name: &str) -> String {
        let v = self.run(&["create", name]);
        v["wire"].as_str().expect("wire").to_string()
    }

    /// DELETEs `name` (UTF-8).
    pub fn delete_folder(&self, name: &str) {
        self.run(&["delete", name]);
    }

    /// RENAMEs folder `old` to `new` (UTF-8 names).
    pub fn rename_folder(&self, old: &str, new: &str) {
        self.run(&["rename", old, new]);
    }

    /// Wire names (modified UTF-7) of every folder from `LIST "" "*"`.
    pub fn list_folders(&self) -> Vec<String> {
        self.list().into_iter().map(|f| f.wire).collect()
    }

    /// Every folder from `LIST "" "*"`, wire and decoded names, attributes.
    pub fn list(&self) -> Vec<FolderInfo> {
        let v = self.run(&["list"]);
        v.as_array()
            .expect("list array")
            .iter()
            .map(|f| FolderInfo {
                wire: f["wire"].as_str().unwrap_or_default().to_string(),
                name: f["name"].as_str().unwrap_or_default().to_string(),
                delim: f["delim"].as_str().map(str::to_string),
                flags: f["flags"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ).
    pub fn status(&self, folder: &str) -> FolderStatus {
        let v = self.run(&["status", folder]);
        let n = |k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("STATUS {k} missing: {v}")) as u32
        };
        FolderStatus {
            messages: n("messages"),
            uidnext: n("uidnext"),
            uidvalidity: n("uidvalidity"),
            unseen: n("unseen"),
            highestmodseq: v["highestmodseq"].as_u64(),
        }
    }

    /// The folder's UIDVALIDITY.
    pub fn uidvalidity(&self, folder: &str) -> u32 {
        self.status(folder).uidvalidity
    }

    /// All UIDs in the folder, ascending (EXAMINE + UID SEARCH ALL).
    pub fn uids(&self, folder: &str) -> Vec<u32> {
        as_u32s(&self.run(&["uids", folder]))
    }

    /// (uid, flags as sent, e.g. `\Seen \Flagged`) of every message. Note
    /// `\Recent` shows until some session SELECTs the folder read-write.
    pub fn flags(&self, folder: &str) -> Vec<(u32, String)> {
        let v = self.run(&["flags", folder]);
        v.as_array()
            .expect("flags array")
            .iter()
            .map(|p| {
                (
                    p[0].as_u64().expect("uid") as u32,
                    p[1].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// How many messages carry `\Seen`.
    pub fn seen_count(&self, folder: &str) -> usize {
        self.flags(folder)
            .iter()
            .filter(|(_, f)| {
                f.split_whitespace()
                    .any(|x| x.eq_ignore_ascii_case("\\Seen"))
            })
            .count()
    }

    /// Every message as (uid, exact `BODY.PEEK[]` bytes, flags), ascending
    /// by UID. Read-only (EXAMINE): sets no `\Seen`. Bodies travel through
    /// files in a temp dir, so large folders are fine.
    pub fn fetch_raw_all(&self, folder: &str) -> Vec<(u32, Vec<u8>, String)> {
        let out = tempfile::tempdir().expect("temp dir");
        let dir = out.path().to_string_lossy().into_owned();
        let v = self.run(&["fetch-all", folder, &dir]);
        v.as_array()
            .expect("fetch array")
            .iter()
            .map(|m| {
                let path = m["path"].as_str().expect("path");
                (
                    m["uid"].as_u64().expect("uid") as u32,
                    std::fs::read(path).expect("read fetched body"),
                    m["flags"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// FETCHes each (uid, item) of `folder`, e.g. `(7, "BINARY.PEEK[2]")`
    /// for the server's own transfer decoding of part 2: the item's bytes,
    /// or the server's refusal as text (`[UNKNOWN-CTE] ...`).
    pub fn fetch_items(
        &self,
        folder: &str,
        items: &[(u32, String)],
    ) -> Vec<Result<Vec<u8>, String>> {
        let out = tempfile::tempdir().expect("temp dir");
        let dir = out.path().to_string_lossy().into_owned();
        let mut args = vec!["fetch-items".to_string(), folder.to_string(), dir];
        args.extend(items.iter().map(|(uid, item)| format!("{uid}:{item}")));
        let v = self.run(&args);
        v.as_array()
            .expect("fetch-items array")
            .iter()
            .map(|r| match r["path"].as_str() {
                Some(path) => Ok(std::fs::read(path).expect("read fetched item")),
                None => Err(r["error"].as_str().unwrap_or_default().to_string()),
            })
            .collect()
    }

    /// `UID STORE uid OP (flags)`, with OP `+FLAGS`, `-FLAGS` or `FLAGS`
    /// (e.g. `set_flags("INBOX", 3, "+FLAGS", "\\Flagged")`).
    pub fn set_flags(&self, folder: &str, uid: u32, op: &str, flags: &str) {
        self.run(&["store", folder, &uid.to_string(), op, flags]);
    }

    /// Marks `uids` `\Deleted` and `UID EXPUNGE`s exactly them.
    pub fn expunge(&self, folder: &str, uids: &[u32]) {
        if uids.is_empty() {
            return;
        }
        let set: Vec<String> = uids.iter().map(u32::to_string).collect();
        self.run(&["expunge", folder, &set.join(",")]);
    }
}

fn as_u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of numbers")
        .iter()
        .map(|x| x.as_u64().expect("number") as u32)
        .collect()
}
