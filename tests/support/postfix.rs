//! [`Postfix`]: a private Postfix 3.7 instance (`postfix -c CONFDIR start`)
//! on 127.0.0.1 that delivers `@example.com` over LMTP into a [`Dovecot`].
//!
//! Its temp dir holds `conf/` (main.cf, master.cf from master.cf.dist),
//! `queue/` (queue_directory, with `pid/master.pid`), `data/`
//! (data_directory) and `postfix.log`. Nothing is shared between instances
//! except the read-only files under /etc/postfix and /usr.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use super::dovecot::{CertChoice, Dovecot};
use super::process::{self, group_id, user_id};
use super::tls::TestCa;
use super::{free_ports, server_temp_dir, wait_port};

/// Options for [`Postfix::start_with`].
#[derive(Clone, Debug, Default)]
pub struct PostfixOptions {
    /// Certificate of the TLS ports: [`CertChoice::Trusted`] uses the
    /// Dovecot's trusted CA ([`Dovecot::ca_file`] verifies it).
    pub cert: CertChoice,
    /// Appended verbatim to main.cf (later settings win).
    pub extra_main_cf: String,
}

#[derive(Clone, Copy, Debug)]
struct Ports {
    smtp: u16,
    submission: u16,
    smtps: u16,
}

/// A private Postfix. Ports:
/// - smtp: no AUTH, accepts mail for `@example.com` from anyone (relay elsewhere refused);
/// - submission: STARTTLS required, AUTH through the Dovecot's auth port
///   (PLAIN, LOGIN, and XOAUTH2, OAUTHBEARER when the Dovecot has
///   [`super::DovecotOptions::oauth2`]), `permit_sasl_authenticated,reject`.
///   Postfix refuses an AUTH command line over 2048 bytes (`line_length_limit`)
///   with `535 5.7.8 Error: authentication failed: Invalid base64 data in
///   initial response`: a long token goes after an empty `334` instead;
/// - smtps: the same behind implicit TLS (`smtpd_tls_wrappermode=yes`).
///
/// `example.com` goes by LMTP to the Dovecot (`bob@example.com` lands in
/// bob's INBOX within a second; an unknown user bounces to the sender).
/// Every other domain fails at once (`default_transport = error`): nothing
/// ever leaves the machine. `Drop` stops it (SIGTERM to the master, which
/// takes its children along; Postfix exits in a few ms).
pub struct Postfix {
    dir: tempfile::TempDir,
    conf_dir: PathBuf,
    ports: Ports,
    ca: TestCa,
    master: Mutex<Option<u32>>,
}

impl Postfix {
    /// Starts a Postfix delivering into `dovecot`, cert from the Dovecot's CA.
    pub fn start(dovecot: &Dovecot) -> Postfix {
        Self::start_with(dovecot, PostfixOptions::default())
    }

    /// Starts a Postfix with `opts`. Takes about 60-100 ms.
    pub fn start_with(dovecot: &Dovecot, opts: PostfixOptions) -> Postfix {
        let dir = server_temp_dir("bp-postfix-");
        let root = dir.path().to_path_buf();
        let ca = match opts.cert {
            CertChoice::Trusted => dovecot.ca().clone(),
            CertChoice::Untrusted => TestCa::untrusted(&root.join("untrusted-ca")),
        };
        process::reap_orphans();
        process::write_owner(&root);
        let conf_dir = root.join("conf");
        std::fs::create_dir(&conf_dir).expect("mkdir conf");
        make_queue(&root);
        write_backdated(
            &conf_dir.join("main.cf"),
            &main_cf(&root, dovecot, &ca, &opts.extra_main_cf),
        );

        let mut last_err = String::new();
        for _attempt in 0..10 {
            let p = free_ports(3);
            let ports = Ports {
                smtp: p[0],
                submission: p[1],
                smtps: p[2],
            };
            write_backdated(
                &conf_dir.join("master.cf"),
                &master_cf(ports, dovecot.auth_port()),
            );
            match launch(&conf_dir, &root) {
                Ok(()) => {
                    let postfix = Postfix {
                        dir,
                        conf_dir,
                        ports,
                        ca,
                        master: Mutex::new(None),
                    };
                    postfix.after_launch();
                    return postfix;
                }
                // The master's "bind: Address already in use" goes to a
                // log service that is not up yet: we only see the exit
                // status. So probe our ports; a taken one means a lost race.
                Err(e)
                    if [ports.smtp, ports.submission, ports.smtps]
                        .iter()
                        .any(|&p| TcpListener::bind(("127.0.0.1", p)).is_err()) =>
                {
                    last_err = e
                }
                Err(e) => panic!("postfix failed to start: {e}"),
            }
        }
        panic!("postfix: no free ports after 10 attempts: {last_err}");
    }

    fn after_launch(&self) {
        let pid_file = self.dir.path().join("queue/pid/master.pid");
        let mut pid = None;
        super::wait_until(Duration::from_secs(10), || {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            pid.is_some()
        });
        let pid = pid.unwrap_or_else(|| panic!("postfix started without {}", pid_file.display()));
        *self.master.lock().expect("lock") = Some(pid);
        for port in [self.ports.smtp, self.ports.submission, self.ports.smtps] {
            assert!(
                wait_port(port, Duration::from_secs(5)),
                "postfix port {port} not accepting\n{}",
                self.log_contents()
            );
        }
    }

    /// Plain SMTP port (no AUTH; accepts `@example.com` recipients).
    pub fn smtp_port(&self) -> u16 {
        self.ports.smtp
    }

    /// Submission port: STARTTLS required, then AUTH as a Dovecot user.
    pub fn submission_port(&self) -> u16 {
        self.ports.submission
    }

    /// Implicit-TLS submission port (smtps), AUTH as a Dovecot user.
    pub fn smtps_port(&self) -> u16 {
        self.ports.smtps
    }

    /// CA that signs the served certificate (the Dovecot's trusted CA by default).
    pub fn ca_file(&self) -> PathBuf {
        self.ca.ca_file()
    }

    /// `postfix -c` directory of this instance.
    pub fn config_dir(&self) -> &Path {
        &self.conf_dir
    }

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Postfix's log so far (`maillog_file`, written by postlogd).
    pub fn log_contents(&self) -> String {
        std::fs::read(self.dir.path().join("postfix.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `postqueue -p` output: "Mail queue is empty" when all is delivered.
    pub fn queue_listing(&self) -> String {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(&self.conf_dir)
            .arg("-p")
            .output()
            .expect("run postqueue");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// pid of the running master, if running.
    pub fn master_pid(&self) -> Option<u32> {
        *self.master.lock().expect("lock")
    }

    /// The master and all its live children (smtpd, qmgr, pickup, ...).
    pub fn pids(&self) -> Vec<u32> {
        process::with_children(self.master_pid())
    }

    /// Stops it: SIGTERM to the master pid (what `postfix stop` does, minus
    /// the script), then waits until the master and its children are gone.
    pub fn stop(&self) {
        if let Some(pid) = self.master.lock().expect("lock").take() {
            process::stop_tree(pid, "TERM", Duration::from_secs(10));
        }
    }

    /// Stop, then start again on the same ports with the same queue.
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Starts a stopped instance again with the same ports and queue.
    pub fn start_again(&self) {
        assert!(self.master_pid().is_none(), "postfix is still running");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while let Err(e) = launch(&self.conf_dir, self.dir.path()) {
            // A port taken meanwhile by someone else: wait for it.
            assert!(
                std::time::Instant::now() < deadline,
                "postfix restart failed: {e}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.after_launch();
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

fn launch(conf_dir: &Path, root: &Path) -> Result<(), String> {
    // With `quick-start` present, postfix-script skips its integrity checks
    // (post-install, postsuper, find over the queue: ~200 ms); make_queue
    // has already built the queue exactly as they would. Then it runs
    // `master -w`, which returns only once the master has bound its ports.
    std::fs::write(root.join("queue/quick-start"), b"").map_err(|e| e.to_string())?;
    let (ok, text) = process::run_daemonizing(
        Command::new("postfix").arg("-c").arg(conf_dir).arg("start"),
        &root.join("postfix.start.log"),
    )?;
    if ok {
        return Ok(());
    }
    let log = std::fs::read(root.join("postfix.log"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Err(format!("{text}\nlog:\n{log}"))
}

/// Writes a config file with an mtime 10 s in the past. Postfix re-reads a
/// main.cf modified within the current second (sleeping 300 ms between
/// reads until it is older), which made every fresh start take ~2 s.
fn write_backdated(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(past))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

/// Builds queue_directory and data_directory with the owners and modes of
/// /etc/postfix/postfix-files (what `postfix set-permissions` would do).
fn make_queue(root: &Path) {
    use std::os::unix::fs::{chown, PermissionsExt};
    let postfix = user_id("postfix");
    let postdrop = group_id("postdrop");
    let mk = |rel: &str, uid: Option<u32>, gid: Option<u32>, mode: u32| {
        let p = root.join(rel);
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        chown(&p, uid, gid).unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
    };
    mk("queue", Some(0), None, 0o755);
    mk("queue/pid", Some(0), None, 0o755);
    for d in [
        "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
        "saved", "trace",
    ] {
        mk(&format!("queue/{d}"), Some(postfix), None, 0o700);
    }
    mk("queue/maildrop", Some(postfix), Some(postdrop), 0o730);
    mk("queue/public", Some(postfix), Some(postdrop), 0o710);
    mk("data", Some(postfix), None, 0o700);
}

fn main_cf(root: &Path, dovecot: &Dovecot, ca: &TestCa, extra: &str) -> String {
    let r = root.display();
    format!(
        r#"# Private test instance: generated by tests/support/postfix.rs
compatibility_level = 3.6
queue_directory = {r}/queue
data_directory = {r}/data
# maillog_file must start with one of maillog_file_prefixes (default /var,
# /dev/stdout); allowing our own dir keeps the log private to this instance.
maillog_file_prefixes = {r}
maillog_file = {r}/postfix.log
myhostname = localhost.localdomain
mydomain = localdomain
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
virtual_mailbox_domains = example.com
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
# Nothing leaves this machine: any other destination fails at once.
local_transport = error:local delivery is disabled in tests
default_transport = error:outbound mail is disabled in tests
relay_transport = error:outbound mail is disabled in tests
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
# Big messages (50 MB tests) go through.
message_size_limit = 209715200
mailbox_size_limit = 0
virtual_mailbox_limit = 0
# Fast test turnaround.
in_flow_delay = 0
smtpd_error_sleep_time = 0
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
biff = no
{extra}
"#,
        lmtp = dovecot.lmtp_port(),
        cert = ca.cert_file().display(),
        key = ca.key_file().display(),
    )
}

/// master.cf.dist with every service unchrooted (the queue dir has no
/// chroot jail) and the stock `smtp inet` line replaced by our three ports.
fn master_cf(p: Ports, auth_port: u16) -> String {
    let dist = std::fs::read_to_string("/usr/share/postfix/master.cf.dist")
        .expect("read /usr/share/postfix/master.cf.dist (run tests/install-deps.sh)");
    let mut out = String::new();
    let mut skipping = false;
    for line in dist.lines() {
        let service_line = !line.is_empty() && !line.starts_with(['#', ' ', '\t']);
        if service_line {
            let f: Vec<&str> = line.split_whitespace().collect();
            skipping = f.len() >= 2 && f[0] == "smtp" && f[1] == "inet";
            if skipping {
                continue;
            }
            if f.len() >= 8 {
                let mut f = f.clone();
                f[4] = "n";
                out.push_str(&f.join("  "));
                out.push('\n');
                continue;
            }
        } else if skipping && line.starts_with([' ', '\t']) {
            continue; // options of the dropped line
        } else {
            skipping = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    let auth = format!(
        "  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_sasl_type=dovecot\n  \
         -o smtpd_sasl_path=inet:127.0.0.1:{auth_port}\n  \
         -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n  \
         -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
    );
    out.push_str("# Test ports (tests/support/postfix.rs)\n");
    out.push_str(&format!("127.0.0.1:{} inet n - n - - smtpd\n", p.smtp));
    out.push_str(&format!(
        "127.0.0.1:{} inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n  \
         -o smtpd_tls_security_level=encrypt\n{auth}",
        p.submission
    ));
    out.push_str(&format!(
        "127.0.0.1:{} inet n - n - - smtpd\n  -o syslog_name=postfix/smtps\n  \
         -o smtpd_tls_wrappermode=yes\n{auth}",
        p.smtps
    ));
    out
}
