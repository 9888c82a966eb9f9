//! PostgreSQL as the store and several engine hosts on one database
//! (SPEC §13), against a real PostgreSQL 15 cluster, a real Dovecot and a
//! real Postfix: hosts sharing the accounts round after round, a host
//! killed mid-run, two hosts draining one outbox, the server restarted
//! mid-run, the errors an administrator sees, and hosts through a
//! connection pooler (PgBouncer): in session mode as through a direct
//! connection, one that shares sessions refused with exit 78. (The sync,
//! outbox, crash and fault suites run on PostgreSQL too: their
//! `on_postgres::` tests.)

mod support;

use std::collections::HashMap;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};
use support::engine::{add_account, add_account_smtp, assert_mirror, config, message, queue, Side};
use support::postgres::{self, ENGINE_PASSWORD, ENGINE_ROLE, NO_RIGHTS_PASSWORD, NO_RIGHTS_ROLE};
use support::{text, wait_until, Db, Dovecot, DovecotOptions, PgCluster, Postfix, TempHome};

/// The engine's lock class (`src/store/pg/leases.rs`, named in the README).
const LOCK_CLASS: i32 = 0x6270_6163;

/// Two install directories on one database: two engine hosts.
fn two_hosts(dovecot: &Dovecot, url: &str, extra: &str) -> (TempHome, TempHome) {
    let a = TempHome::with_database_url(Some(url.to_string()));
    let b = TempHome::with_database_url(Some(url.to_string()));
    config(&a, dovecot, extra);
    config(&b, dovecot, extra);
    (a, b)
}

fn spawn_run(home: &TempHome, args: &[&str], env: &[(&str, &str)]) -> Child {
    home.engine()
        .arg("run")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn engine run")
}

/// Waits for a run (within 120 s); its output.
fn finish(child: Child, home: &TempHome) -> Output {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    if !wait_until(Duration::from_secs(120), || waiter.is_finished()) {
        support::process::signal(pid, "KILL");
        panic!("a run did not end in 120 s\n{}", home.log("l-debug.log"));
    }
    waiter.join().expect("join").expect("output")
}

/// Runs both hosts at the same moment; each must exit 0. What each wrote
/// to its `l-info.log` meanwhile.
fn both_at_once(a: &TempHome, b: &TempHome, round: usize) -> (String, String) {
    let (log_a, log_b) = (a.log("l-info.log").len(), b.log("l-info.log").len());
    let (ra, rb) = (spawn_run(a, &[], &[]), spawn_run(b, &[], &[]));
    let (oa, ob) = (finish(ra, a), finish(rb, b));
    for (o, h) in [(&oa, a), (&ob, b)] {
        assert_eq!(
            o.status.code(),
            Some(0),
            "round {round}: {}\n{}",
            text(&o.stderr),
            h.log("l-debug.log")
        );
    }
    (
        a.log("l-info.log")[log_a..].to_string(),
        b.log("l-info.log")[log_b..].to_string(),
    )
}

/// Each account's Inbox in exactly one `received` line of what the two
/// hosts logged (`new_a`, `new_b`).
fn each_inbox_synced_once(db: &Db, ids: &[(String, i64)], new_a: &str, new_b: &str, round: usize) {
    let received: Vec<String> = received_lines(new_a)
        .into_iter()
        .chain(received_lines(new_b))
        .collect();
    for (_, acntid) in ids {
        let emfdid: i64 = db
            .query_row(
                "SELECT emfdid FROM email_folders WHERE acntid = ? AND imap_name = 'INBOX'",
                [*acntid],
                |r| r.get(0),
            )
            .expect("inbox");
        let tag = format!("[{acntid},{emfdid}]");
        let n = received.iter().filter(|t| **t == tag).count();
        assert_eq!(
            n, 1,
            "round {round}: {tag} synced by {n} hosts\nA:\n{new_a}\nB:\n{new_b}"
        );
    }
}

/// A cluster for a test that stops or restarts the server, a Dovecot, and
/// a home on a database of that cluster.
fn on_a_cluster_of_its_own() -> (PgCluster, Dovecot, TempHome) {
    let cluster = PgCluster::start();
    let dovecot = Dovecot::start();
    let home = TempHome::with_database_url(Some(cluster.new_database()));
    config(&home, &dovecot, "");
    (cluster, dovecot, home)
}

/// Users `u01`..`uNN` with their passwords.
fn users(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("u{i:02}"), format!("pw-u{i:02}")))
        .collect()
}

/// `[acntid,emfdid]` of every `received N new messages` line in `log`.
fn received_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("] received ") && l.contains(" new messages in "))
        .filter_map(|l| {
            let tag = &l[l.rfind('[')?..];
            Some(tag.to_string())
        })
        .collect()
}

/// Moves every folder's sync times back two hours: each is due again, as
/// if the time between two cron runs had passed.
fn age_folders(db: &Db) {
    db.execute(
        "UPDATE email_folders SET last_recent_sync_at = last_recent_sync_at - 7200, \
         last_full_sync_at = last_full_sync_at - 7200",
        [],
    )
    .expect("age the folders");
}

#[test]
fn two_hosts_share_forty_accounts_round_after_round() {
    const ACCOUNTS: usize = 40;
    let dovecot = Dovecot::start_with(DovecotOptions {
        users: users(ACCOUNTS),
        ..DovecotOptions::default()
    });
    let url = postgres::shared().new_database();
    let (a, b) = two_hosts(&dovecot, &url, "");
    let mut ids = Vec::new();
    for (user, _) in users(ACCOUNTS) {
        // Every other account added through the other host: both write.
        let home = if ids.len() % 2 == 0 { &a } else { &b };
        ids.push((user.clone(), add_account(home, &dovecot, &user)));
    }
    let db = a.db();
    let mut seen = 0;
    let mut by_host = [0usize; 2];
    for round in 0..5 {
        // New mail for some accounts each round (all of them in the first).
        for (i, (user, _)) in ids.iter().enumerate() {
            if round == 0 || (i + round) % 3 == 0 {
                let msgs: Vec<Vec<u8>> =
                    (0..3).map(|k| message(seen + i * 10 + k, 2_000)).collect();
                dovecot.imap(user).append_many("INBOX", &msgs);
            }
        }
        seen += 1000;
        if round > 0 {
            age_folders(&db);
        }
        let (new_a, new_b) = both_at_once(&a, &b, round);
        by_host[0] += received_lines(&new_a).len();
        by_host[1] += received_lines(&new_b).len();
        // Every account's Inbox was due: each synced by exactly one host.
        each_inbox_synced_once(&db, &ids, &new_a, &new_b, round);
        for (user, acntid) in &ids {
            assert_mirror(&a, &dovecot, user, *acntid, "INBOX");
        }
        // Nobody holds anything once both runs are over.
        let held: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM email_accounts WHERE lease_owner IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .expect("leases");
        assert_eq!(held, 0, "round {round}: lease_owner left set");
    }
    eprintln!("received lines by host over 5 rounds: {by_host:?}");
    assert!(
        by_host[0] > 0 && by_host[1] > 0,
        "one host did all the work: {by_host:?}"
    );
}

#[test]
fn a_host_killed_mid_run_gives_its_accounts_to_the_next_run_at_once() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let url = postgres::shared().new_database();
    let (a, b) = two_hosts(&dovecot, &url, "");
    let mut accounts = Vec::new();
    for user in ["alice", "carol", "dave"] {
        let imap_password = dovecot.password(user);
        let id = add_account_smtp(
            &a,
            user,
            Side {
                security: "tls",
                port: dovecot.imaps_port(),
                password: &imap_password,
            },
            Side {
                security: "starttls",
                port: postfix.submission_port(),
                password: &imap_password,
            },
        );
        let msgs: Vec<Vec<u8>> = (0..1500).map(|i| message(i, 3_000)).collect();
        dovecot.imap(user).append_many("INBOX", &msgs);
        accounts.push((user, id));
    }
    let alice = accounts[0].1;
    let raw = "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: in flight\r\n\
         Message-ID: <in-flight@test.example.com>\r\n\r\nbody\r\n";
    let emoid = queue(&a, alice, raw.as_bytes());
    // Host A dies the moment Postfix has accepted the message, before it
    // records it: the message stays `sending`, the first sync half done.
    let run_a = spawn_run(&a, &[], &[("BACKPROC_FAILPOINTS", "smtp-accepted=1")]);
    let out_a = finish(run_a, &a);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out_a.status.signal(), Some(9), "{}", text(&out_a.stderr));
    let db = b.db();
    let (state, claimed_by): (String, Option<String>) = db
        .query_row(
            "SELECT state, claimed_by FROM email_outbox WHERE emoid = ?",
            [emoid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(state, "sending");
    assert!(
        claimed_by.is_some_and(|c| c.contains(':')),
        "claimed_by HOST:PID"
    );
    // Host B, right after: no lock to wait out.
    let t0 = Instant::now();
    let out_b = finish(spawn_run(&b, &[], &[]), &b);
    let took = t0.elapsed();
    assert_eq!(
        out_b.status.code(),
        Some(0),
        "{}\n{}",
        text(&out_b.stderr),
        b.log("l-debug.log")
    );
    assert!(
        took < Duration::from_secs(60),
        "host B took {took:?}: it waited for A's locks"
    );
    let log_b = b.log("l-info.log");
    assert!(
        log_b.contains(&format!(
            "message emoid={emoid} was being sent when a run stopped"
        )),
        "{log_b}"
    );
    let state: String = db
        .query_row(
            "SELECT state FROM email_outbox WHERE emoid = ?",
            [emoid],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(state, "sent");
    for (user, id) in &accounts {
        assert_mirror(&b, &dovecot, user, *id, "INBOX");
    }
    // At least once: the one in flight may arrive twice, never lost.
    let bob = dovecot.imap("bob");
    assert!(
        wait_until(Duration::from_secs(15), || {
            let n = bob
                .fetch_raw_all("INBOX")
                .iter()
                .filter(|(_, r, _)| r.windows(27).any(|w| w == b"in-flight@test.example.com>"))
                .count();
            (1..=2).contains(&n)
        }),
        "the message in flight did not arrive\n{}",
        postfix.log_contents()
    );
}

#[test]
fn two_hosts_drain_two_hundred_messages_each_delivered_and_copied_once() {
    const SENDERS: usize = 10;
    const EACH: usize = 20;
    let dovecot = Dovecot::start_with(DovecotOptions {
        users: users(SENDERS),
        ..DovecotOptions::default()
    });
    let postfix = Postfix::start(&dovecot);
    let url = postgres::shared().new_database();
    let (a, b) = two_hosts(&dovecot, &url, "");
    let mut ids = Vec::new();
    for (user, password) in users(SENDERS) {
        let id = add_account_smtp(
            &a,
            &user,
            Side {
                security: "tls",
                port: dovecot.imaps_port(),
                password: &password,
            },
            Side {
                security: "starttls",
                port: postfix.submission_port(),
                password: &password,
            },
        );
        for k in 0..EACH {
            let raw = format!(
                "From: {user}@example.com\r\nTo: bob@example.com\r\nSubject: {user} {k}\r\n\
                 Message-ID: <{user}.{k}@drain.test>\r\n\r\nbody {k}\r\n"
            );
            queue(&a, id, raw.as_bytes());
        }
        ids.push((user, id));
    }
    // Only the outbox: both hosts at the same moment.
    let (ra, rb) = (
        spawn_run(&a, &["--no-sync"], &[]),
        spawn_run(&b, &["--no-sync"], &[]),
    );
    let (oa, ob) = (finish(ra, &a), finish(rb, &b));
    assert_eq!(oa.status.code(), Some(0), "{}", text(&oa.stderr));
    assert_eq!(ob.status.code(), Some(0), "{}", text(&ob.stderr));
    let sent = |log: &str| {
        log.lines()
            .filter(|l| l.contains("] sent message emoid="))
            .count()
    };
    let (sent_a, sent_b) = (sent(&a.log("l-info.log")), sent(&b.log("l-info.log")));
    assert_eq!(
        sent_a + sent_b,
        SENDERS * EACH,
        "each message sent once by one host"
    );
    eprintln!("sent by host A {sent_a}, by host B {sent_b}");
    let db = a.db();
    let not_sent: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM email_outbox WHERE state != 'sent' OR sent_copy != 'done'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(not_sent, 0);
    let count_ids = |raws: Vec<(u32, Vec<u8>, String)>| {
        let mut n: HashMap<String, usize> = HashMap::new();
        for (_, raw, _) in raws {
            let head = String::from_utf8_lossy(support::header_of(&raw)).into_owned();
            if let Some(id) = head
                .lines()
                .find_map(|l| l.strip_prefix("Message-ID: <"))
                .and_then(|r| r.strip_suffix('>'))
            {
                *n.entry(id.to_string()).or_default() += 1;
            }
        }
        n
    };
    let bob = dovecot.imap("bob");
    assert!(
        wait_until(Duration::from_secs(60), || bob.uids("INBOX").len()
            >= SENDERS * EACH),
        "not all delivered\n{}",
        postfix.log_contents()
    );
    let inbox = count_ids(bob.fetch_raw_all("INBOX"));
    assert_eq!(inbox.len(), SENDERS * EACH);
    assert!(inbox.values().all(|n| *n == 1), "a message delivered twice");
    for (user, _) in &ids {
        let imap = dovecot.imap(user);
        let sent = count_ids(imap.fetch_raw_all("Sent"));
        assert_eq!(sent.len(), EACH, "{user}'s Sent");
        assert!(sent.values().all(|n| *n == 1), "{user}: a Sent copy twice");
    }
}

#[test]
fn postgresql_restarted_mid_run_ends_the_run_and_the_next_is_exact() {
    let (cluster, dovecot, home) = on_a_cluster_of_its_own();
    let mut ids = Vec::new();
    for user in ["alice", "carol"] {
        let msgs: Vec<Vec<u8>> = (0..3000).map(|i| message(i, 4_000)).collect();
        dovecot.imap(user).append_many("INBOX", &msgs);
        ids.push((user, add_account(&home, &dovecot, user)));
    }
    let child = spawn_run(&home, &[], &[]);
    let db = home.db();
    assert!(
        wait_until(Duration::from_secs(60), || db
            .query_row("SELECT COUNT(*) FROM email_messages", [], |r| r
                .get::<i64>(0))
            .unwrap_or(0)
            > 0),
        "nothing stored"
    );
    drop(db);
    cluster.restart();
    let out = finish(child, &home);
    let code = out.status.code();
    assert!(
        matches!(code, Some(75) | Some(73)),
        "exit {code:?}: {}\n{}",
        text(&out.stderr),
        home.log("l-debug.log")
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains(ENGINE_PASSWORD), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        home.log("l-debug.log")
    );
    for (user, id) in &ids {
        assert_mirror(&home, &dovecot, user, *id, "INBOX");
    }
}

/// `engine status` with `url` as `BACKPROC_DATABASE_URL`: exit code and stderr.
fn status_with(url: &str) -> (Option<i32>, String) {
    let home = TempHome::with_database_url(Some(url.to_string()));
    let out = home.engine().arg("status").output().expect("engine status");
    (out.status.code(), text(&out.stderr))
}

#[test]
fn errors_name_the_database_and_never_the_password() {
    let cluster = postgres::shared();
    let port = cluster.port();
    let db = cluster.create_database();
    let cases: Vec<(String, i32, Vec<String>)> = vec![
        (
            format!("postgresql://{ENGINE_ROLE}:wrong-pw-1@127.0.0.1:{port}/{db}?sslmode=disable"),
            73,
            vec![
                format!("{ENGINE_ROLE}@127.0.0.1:{port}/{db}"),
                "password authentication failed".into(),
            ],
        ),
        (
            format!("postgresql://{ENGINE_ROLE}:{ENGINE_PASSWORD}@127.0.0.1:{port}/no_such_db?sslmode=disable"),
            73,
            vec!["no_such_db".into(), "does not exist".into()],
        ),
        (
            format!("postgresql://{NO_RIGHTS_ROLE}:{NO_RIGHTS_PASSWORD}@127.0.0.1:{port}/{db}?sslmode=disable"),
            73,
            vec![NO_RIGHTS_ROLE.into(), "permission denied".into()],
        ),
        (
            format!("postgresql://{ENGINE_ROLE}:{ENGINE_PASSWORD}@127.0.0.1:{}/{db}?sslmode=disable", support::free_port()),
            73,
            vec!["cannot connect to PostgreSQL".into()],
        ),
        (
            format!("postgresql://{ENGINE_ROLE}:{ENGINE_PASSWORD}@127.0.0.1:{port}/{db}?sslmode=sometimes"),
            78,
            vec!["BG_DATABASE_URL".into(), "sslmode".into()],
        ),
        (
            format!("mysql://{ENGINE_ROLE}:{ENGINE_PASSWORD}@127.0.0.1/{db}"),
            78,
            vec!["BG_DATABASE_URL".into()],
        ),
    ];
    for (url, code, words) in cases {
        let (got, stderr) = status_with(&url);
        assert_eq!(got, Some(code), "{url}: {stderr}");
        for w in words {
            assert!(stderr.contains(&w), "{url}: {w:?} not in {stderr}");
        }
        for secret in [ENGINE_PASSWORD, NO_RIGHTS_PASSWORD, "wrong-pw-1"] {
            assert!(!stderr.contains(secret), "{url}: password in {stderr}");
        }
    }
    // The password from PGPASSWORD works like one in the URL.
    let home = TempHome::with_database_url(Some(format!(
        "postgresql://{ENGINE_ROLE}@127.0.0.1:{port}/{db}?sslmode=disable"
    )));
    let out = home
        .engine()
        .arg("status")
        .env("PGPASSWORD", ENGINE_PASSWORD)
        .output()
        .expect("engine status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // BG_DATABASE_URL in config.inc, when the environment says nothing.
    let home = TempHome::with_database_url(None);
    home.write_config(&format!(
        "<?php\ndefine('BG_DATABASE_URL', 'postgres://{ENGINE_ROLE}:{ENGINE_PASSWORD}@127.0.0.1:{port}/{db}?sslmode=disable');\n"
    ));
    let out = home.engine().arg("status").output().expect("engine status");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !home.db_path().exists(),
        "a PostgreSQL install made a SQLite file"
    );
}

#[test]
fn hosts_starting_at_once_migrate_once() {
    let url = postgres::shared().new_database();
    let homes: Vec<TempHome> = (0..6)
        .map(|_| TempHome::with_database_url(Some(url.clone())))
        .collect();
    let children: Vec<Child> = homes
        .iter()
        .map(|h| {
            h.engine()
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let db = Db::postgres(&url);
    let versions: Vec<i64> = db
        .prepare("SELECT version FROM backproc_schema")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("versions");
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions[0] >= 3, "{versions:?}");
}

/// A session on `url` named as the run of `otherhost:4242`, holding
/// account `acntid`'s lock as a run does (until it is dropped).
fn hold_as_otherhost(url: &str, acntid: i64) -> ::postgres::Client {
    let mut other = ::postgres::Client::connect(
        &format!("{url}&application_name=backproc%20otherhost%3A4242"),
        ::postgres::NoTls,
    )
    .expect("connect");
    other
        .execute(
            "SELECT pg_advisory_lock($1::int4, $2::int4)",
            &[&LOCK_CLASS, &(acntid as i32)],
        )
        .expect("lock");
    other
}

/// What `plan`, `status` and `status --json` print (each must succeed).
fn holder_views(home: &TempHome) -> Vec<(&'static [&'static str], String)> {
    [&["plan"][..], &["status"], &["status", "--json"]]
        .into_iter()
        .map(|args| {
            let out = home.engine().args(args).output().expect("engine");
            assert!(
                out.status.success(),
                "engine {args:?}: {}",
                text(&out.stderr)
            );
            (args, text(&out.stdout))
        })
        .collect()
}

#[test]
fn an_account_another_session_holds_is_skipped_and_named_as_held() {
    let dovecot = Dovecot::start();
    let home = TempHome::on(support::Store::Postgres);
    config(&home, &dovecot, "");
    let alice = add_account(&home, &dovecot, "alice");
    let carol = add_account(&home, &dovecot, "carol");
    dovecot.imap("alice").append("INBOX", &message(1, 500), "");
    dovecot.imap("carol").append("INBOX", &message(2, 500), "");
    // Another host holds alice's account, as a run does.
    let other = hold_as_otherhost(home.database_url().expect("url"), alice);
    for (args, stdout) in holder_views(&home) {
        assert!(
            stdout.contains("otherhost:4242"),
            "engine {args:?} names no holder:\n{stdout}"
        );
    }
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stored = |acntid: i64| -> i64 {
        home.db()
            .query_row(
                "SELECT COUNT(*) FROM email_messages m JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE f.acntid = ?",
                [acntid],
                |r| r.get(0),
            )
            .expect("count")
    };
    assert_eq!(stored(alice), 0, "a held account was synced");
    assert_eq!(stored(carol), 1);
    assert!(
        home.log("l-info.log").contains("another engine host"),
        "{}",
        home.log("l-info.log")
    );
    // The holder goes away: the next run takes the account.
    drop(other);
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(stored(alice), 1);
}

#[test]
fn a_lock_held_in_another_database_of_the_server_names_no_holder() {
    let dovecot = Dovecot::start();
    let home = TempHome::on(support::Store::Postgres);
    config(&home, &dovecot, "");
    let alice = add_account(&home, &dovecot, "alice");
    // Another installation on the same server, its own database: its run
    // holds its account with the same number.
    let _other = hold_as_otherhost(&postgres::shared().new_database(), alice);
    for (args, stdout) in holder_views(&home) {
        assert!(
            !stdout.contains("otherhost:4242"),
            "engine {args:?} names another database's session:\n{stdout}"
        );
    }
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !home.log("l-info.log").contains("another engine host"),
        "{}",
        home.log("l-info.log")
    );
}

#[test]
fn the_credential_trigger_starts_the_back_off_over_on_postgresql() {
    let dovecot = Dovecot::start();
    let home = TempHome::on(support::Store::Postgres);
    config(&home, &dovecot, "");
    let id = add_account(&home, &dovecot, "alice");
    let db = home.db();
    db.execute(
        "UPDATE email_accounts SET login_failures = 3, login_retry_at = 99999999999, \
         oauth_needs_consent = 1 WHERE acntid = ?",
        [id],
    )
    .expect("refused");
    // The engine's own token refresh (oauth_refreshed_at moves on) keeps it.
    db.execute(
        "UPDATE email_accounts SET oauth_refresh_token = 'rotated', oauth_refreshed_at = 5 WHERE acntid = ?",
        [id],
    )
    .expect("refresh");
    let failures: i64 = db
        .query_row(
            "SELECT login_failures FROM email_accounts WHERE acntid = ?",
            [id],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(failures, 3);
    // The web application's new password starts it over.
    db.execute(
        "UPDATE email_accounts SET imap_password = 'new' WHERE acntid = ?",
        [id],
    )
    .expect("new password");
    let (failures, retry, consent): (i64, Option<i64>, i64) = db
        .query_row(
            "SELECT login_failures, login_retry_at, oauth_needs_consent FROM email_accounts WHERE acntid = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("row");
    assert_eq!((failures, retry, consent), (0, None, 0));
}

#[test]
fn a_run_that_stores_a_thousand_messages_vacuums_and_analyzes_the_search_tables() {
    let dovecot = Dovecot::start();
    let home = TempHome::on(support::Store::Postgres);
    config(&home, &dovecot, "");
    add_account(&home, &dovecot, "alice");
    let imap = dovecot.imap("alice");
    let few: Vec<Vec<u8>> = (0..5).map(|i| message(i, 300)).collect();
    imap.append_many("INBOX", &few);
    let analyzed = || -> Vec<String> {
        home.db()
            .prepare(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL \
                 AND last_vacuum IS NOT NULL AND relname IN ('email_messages', 'email_search') ORDER BY relname",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("pg_stat_user_tables")
    };
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        analyzed().is_empty(),
        "a run of 5 messages analyzed {:?}",
        analyzed()
    );
    let many: Vec<Vec<u8>> = (5..1005).map(|i| message(i, 300)).collect();
    imap.append_many("INBOX", &many);
    age_folders(&home.db());
    let out = finish(spawn_run(&home, &[], &[]), &home);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The statistics collector reports the ANALYZE a moment later.
    assert!(
        wait_until(Duration::from_secs(10), || analyzed().len() == 2),
        "after 1000 new messages: {:?}\n{}",
        analyzed(),
        home.log("l-debug.log")
    );
}

/// Sessions of database `db` now (superuser connections to another
/// database do not count).
fn sessions_of(db: &str) -> i64 {
    postgres::shared()
        .admin()
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .and_then(|r| r.try_get(0))
        .expect("count sessions")
}

#[test]
fn a_run_needs_three_sessions_and_one_with_nothing_new_one() {
    // The run's own connection also holds its accounts' locks and writes
    // the folder times of an account with nothing new; the writer opens
    // its own only when it has something to write, the outbox only when
    // it has work, and a worker only when a folder needs syncing. A
    // session over the database's limit is refused, so a run that wanted
    // one more fails.
    let dovecot = Dovecot::start();
    let home = TempHome::on(support::Store::Postgres);
    config(
        &home,
        &dovecot,
        "define('BG_MAX_CONNECTIONS_PER_ACCOUNT', 1);",
    );
    let alice = add_account(&home, &dovecot, "alice");
    let url = home.database_url().expect("on PostgreSQL").to_string();
    let db = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name")
        .to_string();
    let imap = dovecot.imap("alice");
    let set_limit = |limit: i32| {
        postgres::shared()
            .admin()
            .batch_execute(&format!("ALTER DATABASE {db} CONNECTION LIMIT {limit}"))
            .expect("limit the sessions");
    };
    let limit_to = |limit: i32| {
        set_limit(limit);
        // The session of the command before may still be ending.
        assert!(
            wait_until(Duration::from_secs(10), || sessions_of(&db) == 0),
            "sessions left on {db}"
        );
    };
    // The run's sessions may still be ending when it has exited: the
    // test's own checks connect only once the limit is lifted.
    let lift_limit = || set_limit(-1);
    // New messages, and the sessions the run may have: its own, the
    // writer's and a worker's; with nothing new, its own alone.
    for (round, new, limit) in [(1, 3, 3), (2, 2, 3), (3, 0, 1), (4, 0, 1)] {
        let msgs: Vec<Vec<u8>> = (0..new).map(|i| message(round * 10 + i, 500)).collect();
        imap.append_many("INBOX", &msgs);
        limit_to(limit);
        let out = finish(spawn_run(&home, &["--force"], &[]), &home);
        let log = home.log("l-debug.log");
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}\n{log}",
            text(&out.stderr)
        );
        assert!(
            !log.contains("too many connections"),
            "round {round}:\n{log}"
        );
        lift_limit();
        assert_mirror(&home, &dovecot, "alice", alice, "INBOX");
    }
    // New mail with room for the run's own session and the worker's only:
    // the writer, opening its own for the first batch, is refused; the run
    // stops (exit 75) with nothing stored, and the next run, with room,
    // stores it all.
    imap.append_many("INBOX", &[message(50, 500), message(51, 500)]);
    let stored = || -> i64 {
        let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).expect("connect");
        c.query_one("SELECT COUNT(*) FROM email_messages", &[])
            .and_then(|r| r.try_get(0))
            .expect("count")
    };
    let before = stored();
    for (limit, code) in [(2, 75), (3, 0)] {
        limit_to(limit);
        let out = finish(spawn_run(&home, &["--force"], &[]), &home);
        let stderr = text(&out.stderr);
        lift_limit();
        assert_eq!(out.status.code(), Some(code), "limit {limit}: {stderr}");
        if code == 75 {
            assert!(
                stderr.contains("the run stopped") && stderr.contains("too many"),
                "{stderr}"
            );
            assert!(!stderr.contains(ENGINE_PASSWORD), "{stderr}");
            assert_eq!(stored(), before, "stored without the writer");
        }
    }
    assert_mirror(&home, &dovecot, "alice", alice, "INBOX");
    assert_eq!(stored(), before + 2);
}

#[test]
fn folder_patches_go_in_together_and_end_as_they_do_on_sqlite() {
    use backproc::store::{Discovered, Folder, FolderPatch, Location, PgTarget, Store};
    let dovecot = Dovecot::start();
    let pg_home = TempHome::on(support::Store::Postgres);
    let sqlite_home = TempHome::on(support::Store::Sqlite);
    let url = pg_home.database_url().expect("on PostgreSQL").to_string();
    let places = [
        (Location::Postgres(Box::new(PgTarget::parse(&url).expect("url")))),
        (Location::Sqlite(sqlite_home.db_path())),
    ];
    let listed = |name: &str| Discovered {
        imap_name: name.into(),
        name: name.into(),
        delimiter: Some("/".into()),
        special: None,
    };
    let found: Vec<Discovered> = ["INBOX", "A", "B", "C", "D"].map(listed).to_vec();
    let patch = |f: &dyn Fn(&mut FolderPatch)| {
        let mut p = FolderPatch::default();
        f(&mut p);
        p
    };
    let mut ends: Vec<Vec<Folder>> = Vec::new();
    for (home, at) in [&pg_home, &sqlite_home].into_iter().zip(&places) {
        config(home, &dovecot, "");
        let acntid = add_account(home, &dovecot, "alice");
        let mut store = Store::open(at).expect("open");
        let ids: HashMap<String, i64> = store
            .apply_discovery(acntid, &found, 1)
            .expect("discovery")
            .into_iter()
            .map(|f| (f.imap_name, f.emfdid))
            .collect();
        let id = |name: &str| ids[name];
        let counted = |n: u32| {
            move |p: &mut FolderPatch| {
                p.uidnext = Some(n + 1);
                p.last_uid = Some(n);
            }
        };
        // Three of one shape, two of others.
        store
            .patch_folders(
                &[
                    (id("A"), patch(&counted(9))),
                    (id("B"), patch(&counted(19))),
                    (
                        id("C"),
                        patch(&|p| p.error = Some(Some("it's \0 broken".into()))),
                    ),
                    (id("D"), patch(&counted(29))),
                    (id("INBOX"), patch(&|p| p.recent_sync_at = Some(100))),
                ],
                2,
            )
            .expect("patch");
        // One folder twice: the later patch wins.
        store
            .patch_folders(
                &[
                    (id("A"), patch(&|p| p.uidnext = Some(11))),
                    (
                        id("A"),
                        patch(&|p| {
                            p.uidnext = Some(12);
                            p.highestmodseq = Some(Some(5));
                        }),
                    ),
                ],
                3,
            )
            .expect("patch twice");
        // Nulls of both types in one statement.
        let clear = |p: &mut FolderPatch| {
            p.error = Some(None);
            p.backfill_below = Some(None);
            p.full_sync_at = Some(7);
        };
        store
            .patch_folders(&[(id("C"), patch(&clear)), (id("B"), patch(&clear))], 4)
            .expect("clear");
        let mut folders = store.folders(Some(acntid), false).expect("folders");
        folders.sort_by(|a, b| a.imap_name.cmp(&b.imap_name));
        let get = |name: &str| folders.iter().find(|f| f.imap_name == name).expect(name);
        assert_eq!((get("A").uidnext, get("A").last_uid), (Some(12), 9));
        assert_eq!(get("A").highestmodseq, Some(5));
        assert_eq!((get("B").uidnext, get("B").last_uid), (Some(20), 19));
        assert_eq!((get("D").uidnext, get("D").last_uid), (Some(30), 29));
        assert_eq!(get("INBOX").last_recent_sync_at, Some(100));
        assert_eq!(get("C").last_error, None);
        assert_eq!(
            (get("C").last_full_sync_at, get("B").last_full_sync_at),
            (Some(7), Some(7))
        );
        ends.push(folders);
    }
    // The same rows on both stores, but for the ids.
    let strip = |folders: &[Folder]| -> Vec<Folder> {
        folders
            .iter()
            .map(|f| Folder {
                emfdid: 0,
                acntid: 0,
                ..f.clone()
            })
            .collect()
    };
    assert_eq!(strip(&ends[0]), strip(&ends[1]));
}

#[test]
fn mail_outbox_add_reported_queued_survives_a_crash_of_the_server() {
    // A run's connections commit without waiting for the disk (what they
    // lose is fetched again); a command's commits must not: the server
    // killed the moment `outbox add` returned keeps the message.
    let (cluster, dovecot, home) = on_a_cluster_of_its_own();
    let alice = add_account(&home, &dovecot, "alice");
    let mut queued = Vec::new();
    for i in 0..5 {
        let raw = format!(
            "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: crash {i}\r\n\
             Message-ID: <crash-{i}@test.example.com>\r\n\r\nbody\r\n"
        );
        queued.push(queue(&home, alice, raw.as_bytes()));
        cluster.kill();
        cluster.start_again();
    }
    let db = home.db();
    for emoid in queued {
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM email_outbox WHERE emoid = ?",
                [emoid],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(n, 1, "message {emoid} was reported queued, then lost");
    }
}

/// Advisory locks of the engine's class held in the database of `url`.
fn engine_locks(url: &str) -> i64 {
    let db = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name");
    postgres::shared()
        .admin()
        .query_one(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE l.locktype = 'advisory' AND l.classid::int8 = $1 AND d.datname = $2",
            &[&i64::from(LOCK_CLASS), &db],
        )
        .and_then(|r| r.try_get(0))
        .expect("count the engine's locks")
}

#[test]
fn through_a_pooler_in_session_mode_hosts_share_the_work_and_a_dead_hosts_accounts_come_back() {
    // PgBouncer in session mode: each client connection keeps one server
    // session while it lasts, and the session is reset (DISCARD ALL: its
    // locks and settings) before the next client gets it.
    const POOL: usize = 12;
    let users = users(6);
    let dovecot = Dovecot::start_with(DovecotOptions {
        users: users.clone(),
        ..DovecotOptions::default()
    });
    let pooler = support::Pooler::start(
        postgres::shared(),
        &format!("pool_mode = session\ndefault_pool_size = {POOL}"),
    );
    let direct = postgres::shared().new_database();
    let url = pooler.url(&direct);
    let (a, b) = two_hosts(&dovecot, &url, "define('BG_MAX_THREADS', 2);");
    let mut ids = Vec::new();
    for (i, (user, _)) in users.iter().enumerate() {
        ids.push((
            user.clone(),
            add_account(if i % 2 == 0 { &a } else { &b }, &dovecot, user),
        ));
        let msgs: Vec<Vec<u8>> = (0..400).map(|k| message(i * 1000 + k, 3_000)).collect();
        dovecot.imap(user).append_many("INBOX", &msgs);
    }
    let db = TempHome::with_database_url(Some(direct.clone())).db();

    // Host A dies after its first batch, holding accounts.
    let out_a = finish(
        spawn_run(&a, &[], &[("BACKPROC_FAILPOINTS", "committed=1")]),
        &a,
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out_a.status.signal(), Some(9), "{}", text(&out_a.stderr));
    // The pooler sees its client gone and resets the session: the locks go.
    assert!(
        wait_until(Duration::from_secs(10), || engine_locks(&direct) == 0),
        "the dead host's locks stayed behind the pooler\n{}",
        pooler.log()
    );

    // Both hosts at once, then again with new mail: each Inbox synced by
    // exactly one of them each time, and together they finish everything.
    for round in 0..2 {
        if round > 0 {
            for (i, (user, _)) in ids.iter().enumerate() {
                dovecot
                    .imap(user)
                    .append_many("INBOX", &[message(50_000 + i, 1_000)]);
            }
            age_folders(&db);
        }
        let (new_a, new_b) = both_at_once(&a, &b, round);
        // Every Inbox was due (unfinished, or aged): one host each.
        each_inbox_synced_once(&db, &ids, &new_a, &new_b, round);
        for (user, acntid) in &ids {
            assert_mirror(&a, &dovecot, user, *acntid, "INBOX");
        }
        assert_eq!(engine_locks(&direct), 0, "round {round}: locks left");
    }

    // A holder's name passes through the pooler: `plan` and `status` name
    // it (the folders due, for `plan` to list them); and once it is gone
    // its lock is gone too.
    age_folders(&db);
    let other = hold_as_otherhost(&url, ids[0].1);
    for (args, stdout) in holder_views(&a) {
        assert!(
            stdout.contains("otherhost:4242"),
            "engine {args:?} names no holder through the pooler:\n{stdout}"
        );
    }
    drop(other);
    assert!(
        wait_until(Duration::from_secs(10), || engine_locks(&direct) == 0),
        "a lock stayed behind the pooler"
    );

    // Every server session of the pool, taken at once by clients of the
    // pooler: none kept a run's relaxed commits or a lock. (`outbox add`
    // through the pooler must commit durably.)
    let clients: Vec<::postgres::Client> = (0..POOL)
        .map(|_| {
            ::postgres::Client::connect(&url, ::postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect through the pooler: {e}"))
        })
        .collect();
    for mut c in clients {
        let row = c
            .query_one(
                "SELECT current_setting('synchronous_commit'), \
                 (SELECT COUNT(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory')",
                &[],
            )
            .expect("read a pooled session");
        let (commit, locks): (String, i64) = (row.get(0), row.get(1));
        assert_eq!(
            (commit.as_str(), locks),
            ("on", 0),
            "a pooled session kept a run's state"
        );
    }
}

#[test]
fn through_a_pooler_that_shares_sessions_a_command_stops_with_exit_78_and_says_why() {
    // A pooler in transaction mode hands each transaction to whichever
    // server session is free: session locks and prepared statements do
    // not stay with the client. The engine notices either and refuses.
    let dovecot = Dovecot::start();
    let run_through = |settings: &str| -> (Output, TempHome, String) {
        let pooler = support::Pooler::start(postgres::shared(), settings);
        let direct = postgres::shared().new_database();
        let setup = TempHome::with_database_url(Some(direct.clone()));
        config(&setup, &dovecot, "");
        add_account(&setup, &dovecot, "alice");
        let home = TempHome::with_database_url(Some(pooler.url(&direct)));
        config(&home, &dovecot, "");
        let out = finish(spawn_run(&home, &["--force"], &[]), &home);
        (out, setup, pooler.log())
    };
    // One server session, its settings reset after every transaction and
    // its prepared statements kept: the statements work, but the lock
    // connection's mark of its session is gone by the time it takes an
    // account.
    let (out, setup, log) = run_through(
        "pool_mode = transaction\ndefault_pool_size = 1\n\
         server_reset_query = RESET ALL\nserver_reset_query_always = 1",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}\n{log}");
    assert!(
        stderr.contains("take account") && stderr.contains("pool in session mode"),
        "{stderr}"
    );
    let stored: i64 = setup
        .db()
        .query_row("SELECT COUNT(*) FROM email_messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(stored, 0, "the run went on after it knew");
    // PgBouncer's defaults for transaction mode: a run is handed the
    // session an earlier one marked (or, in its first run, one of its
    // connections finds another's mark, or statements it prepared).
    let pooler = support::Pooler::start(
        postgres::shared(),
        "pool_mode = transaction\ndefault_pool_size = 1",
    );
    let direct = postgres::shared().new_database();
    let setup = TempHome::with_database_url(Some(direct.clone()));
    config(&setup, &dovecot, "");
    add_account(&setup, &dovecot, "alice");
    let home = TempHome::with_database_url(Some(pooler.url(&direct)));
    config(&home, &dovecot, "");
    for round in 0..3 {
        let out = finish(spawn_run(&home, &["--force"], &[]), &home);
        let stderr = text(&out.stderr);
        if round == 0 && out.status.code() == Some(0) {
            // The first alone in a new session may get through.
            continue;
        }
        assert_eq!(out.status.code(), Some(78), "round {round}: {stderr}");
        assert!(
            stderr.contains("BG_DATABASE_URL leads through a pooler that shares sessions")
                && (stderr.contains("carries another connection's mark ('")
                    || stderr.contains("prepared statement")),
            "round {round}: {stderr}"
        );
        assert!(!stderr.contains(ENGINE_PASSWORD), "{stderr}");
    }
    // Session mode, but sessions handed on as the last client left them:
    // the next command finds the mark of the one before it.
    let pooler = support::Pooler::start(
        postgres::shared(),
        "pool_mode = session\ndefault_pool_size = 1\nserver_reset_query =",
    );
    let home = TempHome::with_database_url(Some(pooler.url(&postgres::shared().new_database())));
    config(&home, &dovecot, "");
    // (The first creates the tables, the second is given the session the
    // first left, with its mark.)
    let codes: Vec<(Option<i32>, String)> = (0..4)
        .map(|_| {
            let out = home.engine().arg("status").output().expect("status");
            (out.status.code(), text(&out.stderr))
        })
        .collect();
    assert_eq!(codes[0].0, Some(0), "{codes:?}");
    for (code, stderr) in &codes[1..] {
        assert_eq!(*code, Some(78), "{codes:?}");
        assert!(
            stderr.contains("carries another connection's mark")
                && stderr.contains("server_reset_query = DISCARD ALL"),
            "{stderr}"
        );
    }
}
