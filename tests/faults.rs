//! Faults between the engine and its servers, and in its own database
//! (SPEC §6 "A server that stalls or drops the connection", §11).
//!
//! The network faults go through [`FaultProxy`] in front of a real Dovecot
//! (IMAP, plain port) or a real SMTP server (aiosmtpd): a reset, a stall,
//! garbage, a trickle and a clean close, each at a chosen point of the
//! conversation. For each: the run ends within about 2 × BG_IO_TIMEOUT for
//! the affected account (a trickling SMTP server: one timeout per reply of
//! the transaction, twice), exits 75, the account's (or folder's, or
//! message's) `last_error` says what happened in words an administrator
//! understands, another account going straight to the server is served
//! meanwhile, and the next clean run leaves the store an exact mirror of
//! the server (SMTP: every message arrived exactly once).
//!
//! Then the server itself restarted or killed in the middle of a big first
//! sync, the database locked by another writer, and the disk under `data/`
//! full: a clear error, nothing corrupted, and the next run exact. A full
//! disk fails each job at once and the run goes on (exit 75, like any failed
//! job: the next run resumes once there is room); a lock held past the busy
//! timeout would cost every write that wait, so the run stops (exit 1).

mod support;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use support::engine::*;
use support::proxy::{Fault, Rule, When};
use support::{
    wait_until, Dovecot, FaultProxy, ScriptedSmtp, ScriptedSmtpOptions, SmtpTls, TempHome,
};

/// BG_IO_TIMEOUT of these tests, in seconds.
const T: u64 = 2;

/// What SPEC §6 allows for one dead account (2 × BG_IO_TIMEOUT), plus
/// slack for process start, logins and the other account's sync.
fn bound() -> Duration {
    Duration::from_secs(2 * T) + Duration::from_millis(2500)
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The account's `last_error` and those of its folders, one per line.
fn errors(home: &TempHome, acntid: i64) -> String {
    let mut all: Vec<String> = Vec::new();
    all.extend(account_error(home, acntid));
    let c = db(home);
    let mut s = c
        .prepare("SELECT last_error FROM email_folders WHERE acntid = ? AND last_error IS NOT NULL")
        .expect("prepare");
    let folders: Vec<String> = s
        .query_map([acntid], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    all.extend(folders);
    all.join("\n")
}

// ---------------------------------------------------------------- IMAP

/// Alice behind the proxy (plain IMAP), Bob straight to Dovecot (TLS).
struct Imap {
    dovecot: Dovecot,
    proxy: FaultProxy,
    home: TempHome,
    alice: i64,
    bob: i64,
}

const FOLDERS: [&str; 2] = ["INBOX", "Archiwum"];

fn imap_setup(rules: Vec<Rule>) -> Imap {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, &format!("define('BG_IO_TIMEOUT', {T});"));
    let imap = dovecot.imap("alice");
    // bodies of ~6 KB: a fault 3000 bytes into a FETCH answer is mid-message
    let inbox: Vec<Vec<u8>> = (0..30).map(|i| message(i, 6000)).collect();
    imap.append_many("INBOX", &inbox);
    imap.create_folder("Archiwum");
    let archive: Vec<Vec<u8>> = (100..110).map(|i| message(i, 6000)).collect();
    imap.append_many("Archiwum", &archive);
    let bob: Vec<Vec<u8>> = (200..205).map(|i| message(i, 2000)).collect();
    dovecot.imap("bob").append_many("INBOX", &bob);
    let proxy = FaultProxy::with_rules(dovecot.imap_port(), rules);
    let alice = add_account_with(
        &home,
        "plain",
        proxy.port(),
        "alice",
        &dovecot.password("alice"),
    );
    let bob = add_account(&home, &dovecot, "bob");
    Imap {
        dovecot,
        proxy,
        home,
        alice,
        bob,
    }
}

impl Imap {
    /// The faulty run: exit 75 within the bound, Bob synced, the errors
    /// returned (and printed with the time taken).
    fn faulty_run(&self, what: &str) -> (Duration, String) {
        let (out, took) = run_within(&self.home, &["run"], Duration::from_secs(60));
        assert_eq!(
            code(&out),
            Some(75),
            "{what}: stderr {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.home.log("l-debug.log")
        );
        assert!(
            took < bound(),
            "{what}: the run took {took:?} (bound {:?})\n{}",
            bound(),
            self.home.log("l-debug.log")
        );
        assert!(self.proxy.fired() > 0, "{what}: the fault never fired");
        assert_mirror(&self.home, &self.dovecot, "bob", self.bob, "INBOX");
        let errors = errors(&self.home, self.alice);
        eprintln!("IMAP {what}: gave up after {took:?}; last_error: {errors}");
        (took, errors)
    }

    /// The proxy made transparent, the next run completes and mirrors
    /// every folder exactly; the errors are cleared.
    fn clean_run(&self) {
        self.proxy.clear_rules();
        run(&self.home, &[], 0);
        for f in FOLDERS {
            assert_mirror(&self.home, &self.dovecot, "alice", self.alice, f);
        }
        assert_eq!(errors(&self.home, self.alice), "", "errors left behind");
        integrity_ok(&self.home);
    }
}

fn assert_words(what: &str, text: &str, words: &[&str]) {
    for w in words {
        assert!(
            text.to_lowercase().contains(&w.to_lowercase()),
            "{what}: '{w}' not in last_error: {text}"
        );
    }
}

fn imap_reset_mid_fetch() {
    let t = imap_setup(vec![Rule::all(
        When::after_command("BODY.PEEK[]", 3000),
        Fault::Reset,
    )]);
    let (took, errors) = t.faulty_run("reset mid-fetch");
    assert_words("reset", &errors, &["connection lost", "reset"]);
    assert!(
        took < Duration::from_secs(T),
        "a reset needs no timeout: {took:?}"
    );
    t.clean_run();
}

fn imap_clean_close_mid_fetch() {
    let t = imap_setup(vec![Rule::all(
        When::after_command("BODY.PEEK[]", 3000),
        Fault::Close,
    )]);
    let (took, errors) = t.faulty_run("close mid-fetch");
    assert_words("close", &errors, &["closed the connection", "UID FETCH"]);
    assert!(
        took < Duration::from_secs(T),
        "a close needs no timeout: {took:?}"
    );
    t.clean_run();
}

fn imap_stall_after_fetch() {
    let t = imap_setup(vec![Rule::all(When::command("BODY.PEEK[]"), Fault::Stall)]);
    let (took, errors) = t.faulty_run("stall after UID FETCH");
    assert_words("stall", &errors, &["no answer for 2 s", "UID FETCH"]);
    assert!(!errors.contains("os error"), "no EAGAIN jargon: {errors}");
    assert!(took >= Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

fn imap_stall_before_the_greeting() {
    let t = imap_setup(vec![Rule::all(When::Accept, Fault::Stall)]);
    let (took, errors) = t.faulty_run("stall before the greeting");
    assert_words("greeting", &errors, &["no answer for 2 s", "greeting"]);
    assert!(!errors.contains("os error"), "no EAGAIN jargon: {errors}");
    assert!(
        took >= Duration::from_secs(2 * T),
        "two connections: {took:?}"
    );
    assert_eq!(t.proxy.accepted(), 2, "one connection and one reconnect");
    t.clean_run();
}

fn imap_garbage_instead_of_an_answer() {
    let t = imap_setup(vec![Rule::all(
        When::command("BODY.PEEK[]"),
        Fault::Garbage(b"\x16\x03\x01\x02\x00\x01\x00 \xff\xfe garbage\r\n".to_vec()),
    )]);
    let (took, errors) = t.faulty_run("garbage after UID FETCH");
    assert_words("garbage", &errors, &["cannot understand", "UID FETCH"]);
    assert!(took < Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

/// Regression: the error said "no answer for 2 s ... (the server sends too
/// slowly)", which contradicts itself; a stall's error carried EAGAIN's
/// "Resource temporarily unavailable (os error 11)".
fn imap_trickle_is_cut_off() {
    // 50 bytes a second: far below what a working server sends.
    let t = imap_setup(vec![Rule::all(
        When::command("BODY.PEEK[]"),
        Fault::Trickle {
            every: Duration::from_millis(20),
        },
    )]);
    let (_, errors) = t.faulty_run("trickle after UID FETCH");
    assert_words("trickle", &errors, &["too slowly", "UID FETCH"]);
    assert!(
        !errors.contains("no answer"),
        "it did answer, slowly: {errors}"
    );
    t.clean_run();
}

fn imap_one_dropped_connection_costs_one_reconnect_not_the_run() {
    let t = imap_setup(vec![Rule::nth(
        1,
        When::after_command("BODY.PEEK[]", 3000),
        Fault::Reset,
    )]);
    let (out, took) = run_within(&t.home, &["run"], bound());
    assert_eq!(
        code(&out),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        t.home.log("l-debug.log")
    );
    assert_eq!(t.proxy.fired(), 1);
    eprintln!("IMAP one reset, reconnected: the run took {took:?}");
    for f in FOLDERS {
        assert_mirror(&t.home, &t.dovecot, "alice", t.alice, f);
    }
    assert_eq!(account_error(&t.home, t.alice), None);
    assert!(
        t.home.log("l-debug.log").contains("reconnecting"),
        "the reconnect is logged"
    );
    assert_mirror(&t.home, &t.dovecot, "bob", t.bob, "INBOX");
    integrity_ok(&t.home);
}

// ---------------------------------------------------------------- SMTP

/// Alice's SMTP behind the proxy, Bob's straight to the same aiosmtpd;
/// both read IMAP straight from Dovecot.
struct Smtp {
    /// How long the faulty run may take.
    bound: Duration,
    _dovecot: Dovecot,
    smtp: ScriptedSmtp,
    proxy: FaultProxy,
    home: TempHome,
    alice_msgs: Vec<(i64, String)>,
    bob_msgs: Vec<(i64, String)>,
}

fn mail(from: &str, id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: someone@example.org\r\nSubject: fault {id}\r\n\
         Message-ID: <{id}>\r\nDate: Sun, 29 Nov 2026 08:00:00 +0100\r\n\r\n\
         Hello,\r\nthis is {id}.\r\n"
    )
    .into_bytes()
}

fn smtp_setup(rules: Vec<Rule>) -> Smtp {
    smtp_setup_with(rules, T, bound())
}

/// With BG_IO_TIMEOUT `timeout` and the faulty run allowed `bound`.
fn smtp_setup_with(rules: Vec<Rule>, timeout: u64, bound: Duration) -> Smtp {
    smtp_setup_full(rules, timeout, bound, false)
}

/// `starttls`: the server requires STARTTLS (and the accounts use it).
fn smtp_setup_full(rules: Vec<Rule>, timeout: u64, bound: Duration, starttls: bool) -> Smtp {
    let dovecot = Dovecot::start();
    let smtp = if starttls {
        ScriptedSmtp::start(ScriptedSmtpOptions {
            tls: SmtpTls::RequireStartTls,
            ca: Some(dovecot.ca().clone()),
            ..Default::default()
        })
    } else {
        ScriptedSmtp::accept_all()
    };
    let proxy = FaultProxy::with_rules(smtp.port(), rules);
    let home = TempHome::new();
    config(
        &home,
        &dovecot,
        &format!("define('BG_IO_TIMEOUT', {timeout});"),
    );
    let side = |user: &str, port: u16| {
        let imap = Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &dovecot.password(user),
        };
        let smtp = Side {
            security: if starttls { "starttls" } else { "plain" },
            port,
            password: "x",
        };
        add_account_smtp(&home, user, imap, smtp)
    };
    let alice = side("alice", proxy.port());
    let bob = side("bob", smtp.port());
    let mut alice_msgs = Vec::new();
    for i in 0..3 {
        let id = format!("alice{i}@fault.test");
        alice_msgs.push((queue(&home, alice, &mail("alice@example.com", &id)), id));
    }
    let id = "bob0@fault.test".to_string();
    let bob_msgs = vec![(queue(&home, bob, &mail("bob@example.com", &id)), id)];
    Smtp {
        bound,
        _dovecot: dovecot,
        smtp,
        proxy,
        home,
        alice_msgs,
        bob_msgs,
    }
}

impl Smtp {
    fn state(&self, emoid: i64) -> (String, Option<String>) {
        db(&self.home)
            .query_row(
                "SELECT state, last_error FROM email_outbox WHERE emoid = ?",
                [emoid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("outbox row")
    }

    fn arrived(&self, id: &str) -> usize {
        let header = format!("Message-ID: <{id}>");
        self.smtp
            .received()
            .iter()
            .filter(|r| r.data.windows(header.len()).any(|w| w == header.as_bytes()))
            .count()
    }

    /// The faulty run: exit 75 within the bound, Bob's message sent,
    /// Alice's queued again; returns her messages' errors.
    fn faulty_run(&self, what: &str) -> (Duration, String) {
        let (out, took) = run_within(&self.home, &["run"], Duration::from_secs(60));
        assert_eq!(
            code(&out),
            Some(75),
            "{what}: stderr {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.home.log("l-debug.log")
        );
        assert!(
            took < self.bound,
            "{what}: the run took {took:?} (bound {:?})\n{}",
            self.bound,
            self.home.log("l-debug.log")
        );
        assert!(self.proxy.fired() > 0, "{what}: the fault never fired");
        for (emoid, id) in &self.bob_msgs {
            assert_eq!(self.state(*emoid).0, "sent", "{what}: bob's {id}");
            assert_eq!(self.arrived(id), 1, "{what}: bob's {id}");
        }
        let mut errors = Vec::new();
        for (emoid, id) in &self.alice_msgs {
            let (state, err) = self.state(*emoid);
            assert_eq!(state, "queued", "{what}: {id} must wait for a retry");
            errors.push(err.unwrap_or_else(|| panic!("{what}: {id} has no last_error")));
        }
        let errors = errors.join("\n");
        eprintln!("SMTP {what}: gave up after {took:?}; last_error: {errors}");
        (took, errors)
    }

    /// The proxy made transparent and the messages made due: the next run
    /// sends each exactly once.
    fn clean_run(&self) {
        self.proxy.clear_rules();
        for (emoid, _) in &self.alice_msgs {
            let out = engine(&self.home, &["outbox", "retry", &emoid.to_string()]);
            assert!(out.status.success(), "outbox retry {emoid}");
        }
        run(&self.home, &[], 0);
        for (emoid, id) in self.alice_msgs.iter().chain(&self.bob_msgs) {
            assert_eq!(self.state(*emoid), ("sent".into(), None), "{id}");
            assert_eq!(self.arrived(id), 1, "{id} must arrive exactly once");
        }
        integrity_ok(&self.home);
    }
}

// Regression for the SMTP errors: `last_error` carried lettre's words
// ("network error: Resource temporarily unavailable (os error 11) (timed
// out)", "response error: incomplete response", "network error: stream did
// not contain valid UTF-8").

fn smtp_reset_after_data() {
    let t = smtp_setup(vec![Rule::all(When::command("DATA\r\n"), Fault::Reset)]);
    let (took, errors) = t.faulty_run("reset after DATA");
    assert_words("reset", &errors, &["connection lost", "reset"]);
    assert!(took < Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

fn smtp_clean_close_after_rcpt() {
    let t = smtp_setup(vec![Rule::all(When::command("RCPT TO"), Fault::Close)]);
    let (took, errors) = t.faulty_run("close after RCPT");
    assert_words("close", &errors, &["closed the connection"]);
    assert!(took < Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

fn smtp_stall_after_data() {
    let t = smtp_setup(vec![Rule::all(When::command("DATA\r\n"), Fault::Stall)]);
    let (took, errors) = t.faulty_run("stall after DATA");
    assert_words("stall", &errors, &["no answer"]);
    assert!(!errors.contains("os error"), "no EAGAIN jargon: {errors}");
    assert!(took >= Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

fn smtp_stall_before_the_greeting() {
    let t = smtp_setup(vec![Rule::all(When::Accept, Fault::Stall)]);
    let (_, errors) = t.faulty_run("stall before the greeting");
    assert_words("greeting", &errors, &["no answer"]);
    assert!(!errors.contains("os error"), "no EAGAIN jargon: {errors}");
    t.clean_run();
}

fn smtp_garbage_instead_of_a_reply() {
    let t = smtp_setup(vec![Rule::all(
        When::command("MAIL FROM"),
        Fault::Garbage(b"\xff\xfe\x00garbage\r\n".to_vec()),
    )]);
    let (took, errors) = t.faulty_run("garbage after MAIL FROM");
    assert_words("garbage", &errors, &["cannot understand"]);
    assert!(took < Duration::from_secs(T), "{took:?}");
    t.clean_run();
}

/// The server's bytes after `command`, one every 300 ms.
fn trickle_after(command: &str) -> Vec<Rule> {
    vec![Rule::all(
        When::command(command),
        Fault::Trickle {
            every: Duration::from_millis(300),
        },
    )]
}

/// Every reply trickles in a byte at a time, each byte well within the
/// per-read timeout: the transaction gets two BG_IO_TIMEOUTs for all its
/// replies (here 2 s), then the account is given up for this run, without
/// a reconnect (a server that slow is as slow on a new connection): about
/// 2 x BG_IO_TIMEOUT for the account, as a stalled server costs.
/// Regression: lettre read such replies for as long as they lasted.
fn smtp_trickle_is_cut_off() {
    let timeout = Duration::from_secs(1);
    let t = smtp_setup_with(
        trickle_after("MAIL FROM"),
        timeout.as_secs(),
        timeout * 2 + Duration::from_millis(2500),
    );
    let (took, errors) = t.faulty_run("trickle after MAIL FROM");
    assert_words("trickle", &errors, &["too slowly", "within 2 s"]);
    assert!(
        took >= timeout * 2,
        "the transaction is given its time: {took:?}"
    );
    assert_eq!(t.proxy.accepted(), 1, "no reconnect to a server that slow");
    t.clean_run();
}

/// The server's answer to STARTTLS and the TLS handshake after it trickle
/// in a byte at a time: the session set-up (connect, greeting, EHLO,
/// STARTTLS, handshake, AUTH) is given up after 2 x BG_IO_TIMEOUT + 1 s.
/// Regression: STARTTLS, the handshake and AUTH ran on the sending thread,
/// each read bounded but not the whole.
fn smtp_trickle_in_the_starttls_handshake_is_cut_off() {
    let timeout = Duration::from_secs(1);
    let t = smtp_setup_full(
        trickle_after("STARTTLS\r\n"),
        timeout.as_secs(),
        timeout * 3 + Duration::from_millis(2500),
        true,
    );
    let (took, errors) = t.faulty_run("trickle after STARTTLS");
    assert_words("starttls trickle", &errors, &["no answer within 3 s"]);
    assert!(
        took >= timeout * 3,
        "the set-up is given its time: {took:?}"
    );
    t.clean_run();
}

// ------------------------------------------------- server restart / kill

/// `user`'s account, reading Dovecot through a proxy that lets
/// `bytes_per_sec` through (so that a run lasts long enough to be hit).
fn throttled_account(
    home: &TempHome,
    dovecot: &Dovecot,
    user: &str,
    bytes_per_sec: u64,
) -> (FaultProxy, i64) {
    let proxy = FaultProxy::with_rules(
        dovecot.imap_port(),
        vec![Rule::all(When::Accept, Fault::Throttle { bytes_per_sec })],
    );
    let acntid = add_account_with(home, "plain", proxy.port(), user, &dovecot.password(user));
    (proxy, acntid)
}

/// How many messages are stored (0 while the database cannot be read).
fn stored_count(home: &TempHome) -> i64 {
    db(home)
        .query_row("SELECT COUNT(*) FROM email_messages", [], |r| r.get(0))
        .unwrap_or(0)
}

/// A first sync of 3000 messages (24 MB), the server stopped under it:
/// `restart` (SIGTERM to the master; Dovecot 2.3 lets a session that is
/// busy answering finish, and the stop waits for it, so the engine's
/// connection need not break) or SIGKILL and start again (the connection
/// breaks: one reconnect). The engine reads through a proxy throttled to
/// 8 MB/s, so the sync lasts a few seconds and the stop surely lands in
/// the middle of it.
fn server_gone_mid_sync(graceful: bool) {
    const N: usize = 3000;
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "define('BG_IO_TIMEOUT', 5);");
    let msgs: Vec<Vec<u8>> = (0..N).map(|i| message(i, 8000)).collect();
    dovecot.imap("carol").append_many("INBOX", &msgs);
    let (proxy, acntid) = throttled_account(&home, &dovecot, "carol", 8 << 20);
    let stored = || stored_count(&home);
    let t0 = Instant::now();
    let mut child: Child = home.engine().arg("run").spawn().expect("spawn");
    assert!(
        wait_until(Duration::from_secs(20), || stored() > 0),
        "nothing stored"
    );
    let at_stop = stored();
    if graceful {
        dovecot.restart();
    } else {
        dovecot.kill();
        dovecot.start_again();
    }
    let status = child.wait().expect("wait");
    let took = t0.elapsed();
    let log = home.log("l-debug.log");
    eprintln!(
        "server {} at {at_stop} of {N} stored: the run ended {status} after {took:?}",
        if graceful { "restarted" } else { "killed" }
    );
    assert!(
        (at_stop as usize) < N,
        "stopped too late to test: {at_stop}"
    );
    if !graceful {
        assert!(
            log.contains("reconnecting"),
            "the engine saw the connection drop:\n{log}"
        );
    }
    assert!(
        matches!(status.code(), Some(0) | Some(75)),
        "{status}\n{log}"
    );
    if status.code() == Some(75) {
        let err = errors(&home, acntid);
        assert!(
            [
                "connection lost",
                "closed the connection",
                "cannot connect",
                "not an IMAP server"
            ]
            .iter()
            .any(|w| err.contains(w)),
            "{err}"
        );
    }
    assert!(took < Duration::from_secs(20), "{took:?}");
    integrity_ok(&home);
    proxy.clear_rules();
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
    let (rows, distinct): (i64, i64) = db(&home)
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM email_messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!(
        (rows, distinct),
        (N as i64, N as i64),
        "nothing twice, nothing missing"
    );
    integrity_ok(&home);
}

fn dovecot_restarted_mid_first_sync() {
    server_gone_mid_sync(true);
}

fn dovecot_killed_mid_first_sync() {
    server_gone_mid_sync(false);
}

// ------------------------------------------------------- the database

/// Holds `BEGIN IMMEDIATE` on the database (another writer: the web app,
/// a second engine command) until dropped.
struct WriteLock(support::Db);

impl WriteLock {
    fn take(home: &TempHome) -> WriteLock {
        let c = db(home);
        c.execute_batch("BEGIN IMMEDIATE").expect("BEGIN IMMEDIATE");
        WriteLock(c)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[test]
fn a_short_write_lock_is_waited_out() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let msgs: Vec<Vec<u8>> = (0..20).map(|i| message(i, 1000)).collect();
    dovecot.imap("dave").append_many("INBOX", &msgs);
    let acntid = add_account(&home, &dovecot, "dave");
    let lock = WriteLock::take(&home);
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        drop(lock);
    });
    let (out, took) = run_within(&home, &["run"], Duration::from_secs(20));
    release.join().expect("join");
    assert_eq!(
        code(&out),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took >= Duration::from_secs(2), "it waited: {took:?}");
    assert_mirror(&home, &dovecot, "dave", acntid, "INBOX");
    integrity_ok(&home);
}

/// Another program takes the write lock in the middle of a sync and holds
/// it past the engine's busy timeout (30 s, `BUSY_TIMEOUT` in
/// src/store/mod.rs; there is no knob for it, so this test takes about
/// 33 s). Regression: every later write of the run waited 30 s again, so
/// such a run lasted 30 s × the writes it still had to make; now the run
/// stops after the first (exit 1, the reason on stderr), keeps what it had
/// committed, and the next run goes on from there.
#[test]
fn a_write_lock_held_past_the_busy_timeout_stops_the_run_with_a_clear_error() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    // 10 MB: three batches of 4 MB, through a 2 MB/s link
    let msgs: Vec<Vec<u8>> = (0..200).map(|i| message(i, 50_000)).collect();
    dovecot.imap("dave").append_many("INBOX", &msgs);
    let (proxy, acntid) = throttled_account(&home, &dovecot, "dave", 2 << 20);
    let stored = || stored_count(&home);
    let t0 = Instant::now();
    let child = home
        .engine()
        .arg("run")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    assert!(
        wait_until(Duration::from_secs(20), || stored() > 0),
        "nothing stored"
    );
    let lock = WriteLock::take(&home);
    let at_lock = stored();
    let out = child.wait_with_output().expect("wait");
    let took = t0.elapsed();
    drop(lock);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "database locked at {at_lock} of 200 stored: exit {:?} after {took:?}: {stderr}",
        code(&out)
    );
    assert!(at_lock < 200, "locked too late to test: {at_lock}");
    assert_eq!(code(&out), Some(1), "{stderr}");
    assert!(took >= Duration::from_secs(30), "{took:?}");
    assert!(
        took < Duration::from_secs(40),
        "one wait, not one per write: {took:?}"
    );
    assert_words(
        "locked",
        &stderr,
        &[
            "the run stopped",
            "engine.sqlite",
            "locked by another program",
            "30 s",
        ],
    );
    assert_eq!(
        stored(),
        at_lock,
        "what was committed stays, nothing half-written"
    );
    integrity_ok(&home);
    proxy.clear_rules();
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "dave", acntid, "INBOX");
    integrity_ok(&home);
}

/// A tmpfs mounted over a directory until dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        support::process::run_ok(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir),
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        support::process::run_ok(
            std::process::Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.0),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

#[test]
fn a_full_disk_under_data_is_a_clear_error_and_nothing_is_corrupted() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let disk = Tmpfs::mount(&home.path().join("data"), "2m");
    // 4 MB of mail for a 2 MB disk
    let msgs: Vec<Vec<u8>> = (0..80).map(|i| message(i, 50_000)).collect();
    dovecot.imap("alice").append_many("INBOX", &msgs);
    let alice = add_account(&home, &dovecot, "alice");
    let (out, took) = run_within(&home, &["run"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errs = errors(&home, alice);
    eprintln!(
        "disk full: exit {:?} after {took:?}; stderr: {stderr}; last_error: {errs}",
        code(&out)
    );
    assert_eq!(
        code(&out),
        Some(75),
        "{stderr}\n{}",
        home.log("l-debug.log")
    );
    let logged = home.log("l-threading-error.txt");
    assert!(
        logged.contains("database or disk is full"),
        "the logs say why: {logged}"
    );
    // nothing half-written; room made, the next run completes exactly
    integrity_ok(&home);
    disk.resize("64m");
    integrity_ok(&home);
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "alice", alice, "INBOX");
    integrity_ok(&home);
    let n: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages m JOIN email_folders f USING (emfdid) \
             WHERE f.acntid = ?",
            params![alice],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n, 80);
}

/// Regression: a large message (fetched whole by a task of its own) whose
/// download the connection drops each time was lost as a failure: the log
/// said "reconnecting", then "its remaining tasks wait for the next run",
/// yet the run exited 0 ("5 tasks, 0 failed") and the account's
/// `last_error` was NULL with `last_error_at` set.
fn a_large_message_whose_download_breaks_every_time_fails_the_run() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(
        &home,
        &dovecot,
        &format!("define('BG_IO_TIMEOUT', {T});\ndefine('BG_MAX_MESSAGE_SIZE', 100000);"),
    );
    let small: Vec<Vec<u8>> = (0..4).map(|i| message(i, 2000)).collect();
    let imap = dovecot.imap("alice");
    imap.append_many("INBOX", &small);
    imap.append_many("INBOX", &[message(9, 300_000)]);
    // Every answer with a whole message is cut 150 kB in: the small ones
    // pass, the large one never does.
    let proxy = FaultProxy::with_rules(
        dovecot.imap_port(),
        vec![Rule::all(
            When::after_command("BODY.PEEK[]", 150_000),
            Fault::Reset,
        )],
    );
    let alice = add_account_with(
        &home,
        "plain",
        proxy.port(),
        "alice",
        &dovecot.password("alice"),
    );
    // The first run stores the header and fails on the body; the second
    // (the folder is due again for it) fails on the body again.
    for round in 1..=2 {
        let fired = proxy.fired();
        let (out, _) = run_within(&home, &["run"], Duration::from_secs(60));
        assert_eq!(
            code(&out),
            Some(75),
            "run {round}, a failed job: stderr {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            home.log("l-debug.log")
        );
        assert!(
            proxy.fired() >= fired + 2,
            "run {round}: the download broke twice"
        );
        let (error, error_at): (Option<String>, Option<i64>) = db(&home)
            .query_row(
                "SELECT last_error, last_error_at FROM email_accounts WHERE acntid = ?",
                [alice],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("account");
        let error = error
            .unwrap_or_else(|| panic!("run {round}: no last_error (last_error_at {error_at:?})"));
        assert_words("large message", &error, &["connection lost", "UID FETCH"]);
        assert!(error_at.is_some());
    }
    // The header is stored meanwhile, waiting for its body.
    let partial: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages WHERE partial = 1",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(partial, 1);

    proxy.clear_rules();
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "alice", alice, "INBOX");
    assert_eq!(errors(&home, alice), "", "errors left behind");
}

both_stores!(
    imap_reset_mid_fetch,
    imap_clean_close_mid_fetch,
    imap_stall_after_fetch,
    imap_stall_before_the_greeting,
    imap_garbage_instead_of_an_answer,
    imap_trickle_is_cut_off,
    imap_one_dropped_connection_costs_one_reconnect_not_the_run,
    smtp_reset_after_data,
    smtp_clean_close_after_rcpt,
    smtp_stall_after_data,
    smtp_stall_before_the_greeting,
    smtp_garbage_instead_of_a_reply,
    smtp_trickle_is_cut_off,
    smtp_trickle_in_the_starttls_handshake_is_cut_off,
    dovecot_restarted_mid_first_sync,
    dovecot_killed_mid_first_sync,
    a_large_message_whose_download_breaks_every_time_fails_the_run,
);
