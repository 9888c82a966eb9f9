//! The receive side end to end: `engine run` against a real Dovecot, the
//! store compared with what the server returns for `BODY.PEEK[]`.

mod support;

use std::time::{Duration, Instant};
use support::engine::*;
use support::{Dovecot, DovecotOptions, SilentServer, TempHome};

fn new_mail_is_stored_once_byte_exact_without_setting_seen() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("alice");
    let msgs: Vec<Vec<u8>> = (0..40).map(|i| message(i, 500 + i * 300)).collect();
    imap.append_many("INBOX", &msgs);
    imap.append("INBOX", &message(100, 800), "\\Flagged $Label1");
    let acntid = add_account(&home, &dovecot, "alice");

    let out = run(&home, &[], 0);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "a healthy cron run prints nothing"
    );
    assert_mirror(&home, &dovecot, "alice", acntid, "INBOX");
    assert_eq!(
        imap.seen_count("INBOX"),
        0,
        "syncing set \\Seen on the server"
    );

    // decoded columns
    let (subject, from, msgid, date): (String, String, String, i64) = db(&home)
        .query_row(
            "SELECT subject, from_addr, message_id, date_at FROM email_messages WHERE uid = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("row");
    assert_eq!(subject, "Zażółć gęślą jaźń 0");
    assert_eq!(from, "Paweł Nowak <pawel0@example.com>");
    assert_eq!(msgid, "msg0@test.example.com");
    assert_eq!(date, 1_795_935_600);

    // new mail arrives: the next (forced) run stores only it
    imap.append_many("INBOX", &[message(200, 1000), message(201, 1000)]);
    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "alice", acntid, "INBOX");
    let info = home.log("l-info.log");
    let inbox = emfdid(&home, acntid, "INBOX");
    assert!(
        info.contains(&format!(
            "received 41 new messages in 0s [{acntid},{inbox}]"
        )),
        "{info}"
    );
    assert!(
        info.contains(&format!("received 2 new messages in 0s [{acntid},{inbox}]")),
        "{info}"
    );
    assert_eq!(imap.seen_count("INBOX"), 0);
    integrity_ok(&home);
}

fn log_lines_follow_the_seed_format_one_per_synced_folder() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("bob");
    imap.create_folder("Projekty");
    imap.append("INBOX", &message(1, 300), "");
    let acntid = add_account(&home, &dovecot, "bob");
    run(&home, &[], 0);
    let info = home.log("l-info.log");
    let re_line = |l: &str| {
        // [2014-01-12 22:28:05][#13817.t12] received 31468 new messages in 432s [53,824]
        let b = l.as_bytes();
        l.len() > 24
            && b[0] == b'['
            && b[20] == b']'
            && l[21..].starts_with("[#")
            && l.contains(".t")
    };
    let received: Vec<&str> = info.lines().filter(|l| l.contains(" received ")).collect();
    let folders: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_folders WHERE acntid = ?",
            [acntid],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        received.len() as i64,
        folders,
        "one line per folder:\n{info}"
    );
    for l in &received {
        assert!(re_line(l), "bad line format: {l}");
        assert!(
            l.ends_with(']') && l.contains(&format!(" [{acntid},")),
            "{l}"
        );
        let pid = std::process::id();
        assert!(
            !l.contains(&format!("#{pid}.")),
            "the engine's own pid is logged, not the test's"
        );
    }
    assert!(
        !info.contains(&dovecot.password("bob")),
        "password in the log"
    );
    assert!(
        !home.log("l-debug.log").contains(&dovecot.password("bob")),
        "password in the debug log"
    );
    assert!(home.logs_dir().join("l-threading-error.txt").exists());
}

fn flags_and_expunges(dovecot: Dovecot, method: &str) {
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("carol");
    let msgs: Vec<Vec<u8>> = (0..30).map(|i| message(i, 400)).collect();
    let uids = imap.append_many("INBOX", &msgs);
    let acntid = add_account(&home, &dovecot, "carol");
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");

    imap.set_flags("INBOX", uids[3], "+FLAGS", "\\Flagged");
    imap.set_flags("INBOX", uids[4], "+FLAGS", "\\Seen $Work");
    imap.expunge("INBOX", &[uids[0], uids[10], uids[29]]);
    imap.append("INBOX", &message(99, 400), "\\Answered");
    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
    let flags: String = db(&home)
        .query_row(
            "SELECT flags FROM email_messages WHERE uid = ?",
            [uids[4]],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(flags, "\\Seen $Work");
    let debug = home.log("l-debug.log");
    assert!(
        debug.contains(method),
        "expected reconciliation {method}:\n{debug}"
    );

    // nothing changed: a full sync leaves everything as it is
    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
    integrity_ok(&home);
}

fn full_sync_reflects_flags_and_expunges_with_qresync() {
    flags_and_expunges(Dovecot::start(), "flags and expunges by QRESYNC");
}

fn full_sync_reflects_flags_and_expunges_without_condstore() {
    flags_and_expunges(
        Dovecot::start_with(DovecotOptions {
            capabilities_override: Some(support::dovecot::CAPS_WITHOUT_CONDSTORE.to_string()),
            ..DovecotOptions::default()
        }),
        "flags and expunges by comparing every message",
    );
}

fn folder_recreated_with_new_uidvalidity_is_remapped_not_downloaded_again() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("dave");
    imap.create_folder("Archiwum");
    let msgs: Vec<Vec<u8>> = (0..20).map(|i| message(i, 600)).collect();
    imap.append_many("Archiwum", &msgs);
    let acntid = add_account(&home, &dovecot, "dave");
    run(&home, &[], 0);
    let id = emfdid(&home, acntid, "Archiwum");
    let before: Vec<(i64, String)> = {
        let c = db(&home);
        let mut s = c
            .prepare(
                "SELECT emmsid, message_id FROM email_messages WHERE emfdid = ? ORDER BY emmsid",
            )
            .expect("prepare");
        s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let old_v = imap.uidvalidity("Archiwum");

    // deleted and re-created: new UIDVALIDITY, 15 of the old messages back
    // (in another order) and 3 new ones
    imap.delete_folder("Archiwum");
    imap.create_folder("Archiwum");
    let mut back: Vec<Vec<u8>> = msgs[5..].iter().rev().cloned().collect();
    back.extend((50..53).map(|i| message(i, 700)));
    imap.append_many("Archiwum", &back);
    assert_ne!(imap.uidvalidity("Archiwum"), old_v);

    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "dave", acntid, "Archiwum");
    let info = home.log("l-info.log");
    assert!(
        info.contains(&format!("received 3 new messages in 0s [{acntid},{id}]")),
        "only the 3 new messages are downloaded:\n{info}"
    );
    // the 15 that came back kept their rows (the web app's references)
    let c = db(&home);
    for (emmsid, msgid) in before {
        let n: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM email_messages WHERE emmsid = ?",
                [emmsid],
                |r| r.get(0),
            )
            .expect("count");
        let back_again = msgs[5..]
            .iter()
            .any(|m| String::from_utf8_lossy(m).contains(&format!("<{msgid}>")));
        assert_eq!(n == 1, back_again, "row {emmsid} ({msgid})");
    }

    // UIDVALIDITY changed in place (same UIDs): nothing downloaded
    dovecot.set_uidvalidity("dave", "Archiwum", 4242);
    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "dave", acntid, "Archiwum");
    assert!(
        home.log("l-info.log")
            .ends_with(&format!("received 0 new messages in 0s [{acntid},{id}]\n"))
            || home
                .log("l-info.log")
                .contains(&format!("received 0 new messages in 0s [{acntid},{id}]"))
    );
    integrity_ok(&home);
}

fn non_ascii_and_nested_folders() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("alice");
    let wire = imap.create_folder("Faktury/Zażółć");
    assert_eq!(wire, "Faktury/Za&AXwA8wFCAQc-");
    imap.create_folder("Odd \"quoted\" & back\\slash");
    imap.append("Faktury/Zażółć", &message(1, 300), "\\Seen");
    imap.append("Odd \"quoted\" & back\\slash", &message(2, 300), "");
    let acntid = add_account(&home, &dovecot, "alice");
    run(&home, &[], 0);
    let (name, priority): (String, String) = db(&home)
        .query_row(
            "SELECT name, priority FROM email_folders WHERE imap_name = ?",
            [&wire],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("folder row");
    assert_eq!(name, "Faktury/Zażółć");
    assert_eq!(priority, "lo");
    assert_mirror(&home, &dovecot, "alice", acntid, "Faktury/Zażółć");
    assert_mirror(
        &home,
        &dovecot,
        "alice",
        acntid,
        "Odd \"quoted\" & back\\slash",
    );
    let inbox: (String, String) = db(&home)
        .query_row(
            "SELECT special, priority FROM email_folders WHERE imap_name = 'INBOX'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("inbox");
    assert_eq!(inbox, ("inbox".to_string(), "hi".to_string()));

    // a folder gone from the server keeps its messages and gets removed_at
    imap.delete_folder("Faktury/Zażółć");
    run(&home, &["--force"], 0);
    let (removed, n): (Option<i64>, i64) = db(&home)
        .query_row(
            "SELECT removed_at, (SELECT COUNT(*) FROM email_messages m WHERE m.emfdid = f.emfdid) \
             FROM email_folders f WHERE imap_name = ?",
            [&wire],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("folder row");
    assert!(removed.is_some());
    assert_eq!(n, 1);
}

fn every_corpus_message_is_stored_byte_exact() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("bob");
    imap.create_folder("Corpus");
    let corpus = support::corpus();
    assert!(corpus.len() >= 100, "corpus fixtures missing");
    let bodies: Vec<Vec<u8>> = corpus.iter().map(|(_, b)| b.clone()).collect();
    imap.append_many("Corpus", &bodies);
    let acntid = add_account(&home, &dovecot, "bob");
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "bob", acntid, "Corpus");
    let with_subject: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages WHERE subject IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert!(with_subject > 80, "decoded subjects: {with_subject}");
    assert_eq!(home.log("l-threading-error.txt"), "");
}

fn large_messages_come_header_first_then_whole() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "define('BG_MAX_MESSAGE_SIZE', 20000);");
    let imap = dovecot.imap("carol");
    imap.append_many(
        "INBOX",
        &[message(1, 1000), message(2, 120_000), message(3, 1000)],
    );
    let acntid = add_account(&home, &dovecot, "carol");
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
    let partial: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages WHERE partial = 1",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        partial, 0,
        "the large message was completed in the same run"
    );
    let debug = home.log("l-debug.log");
    assert!(debug.contains("fetched 1 large messages whole"), "{debug}");
}

fn killed_mid_sync_resumes_with_nothing_missing_or_twice() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("dave");
    let msgs: Vec<Vec<u8>> = (0..4000)
        .map(|i| message(i, 2000 + (i * 37) % 9000))
        .collect();
    imap.append_many("INBOX", &msgs);
    let acntid = add_account(&home, &dovecot, "dave");

    let mut child = home.engine().arg("run").spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = home
            .db()
            .query_row("SELECT COUNT(*) FROM email_messages", [], |r| r.get(0))
            .unwrap_or(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing stored within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");

    // newest first: what is stored is a block at the top
    let id = emfdid(&home, acntid, "INBOX");
    let part = stored(&home, id);
    assert!(
        !part.is_empty() && part.len() < 4000,
        "killed too late to test: {}",
        part.len()
    );
    let top = 4000u32;
    assert_eq!(
        part.last().map(|m| m.0),
        Some(top),
        "the newest message comes first"
    );
    let lowest = part[0].0;
    assert_eq!(
        part.len() as u32,
        top - lowest + 1,
        "the stored part is contiguous from the top"
    );
    let (backfill, complete_at): (Option<i64>, Option<i64>) = db(&home)
        .query_row(
            "SELECT backfill_below, last_full_sync_at FROM email_folders WHERE emfdid = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("folder");
    assert!(
        backfill.is_some(),
        "a half-done folder must not look complete"
    );
    assert!(complete_at.is_none());
    integrity_ok(&home);

    imap.append("INBOX", &message(5000, 500), "");
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "dave", acntid, "INBOX");
    integrity_ok(&home);
}

fn a_second_run_exits_at_once_while_one_is_live() {
    let home = TempHome::new();
    let silent = SilentServer::start();
    home.write_config("<?php define('BG_IO_TIMEOUT', 5);");
    add_account_with(&home, "plain", silent.port(), "alice", "x");
    let mut first = home.engine().arg("run").spawn().expect("spawn");
    assert!(support::wait_until(Duration::from_secs(10), || silent
        .accepted()
        > 0));
    let t0 = Instant::now();
    let second = engine(&home, &["run"]);
    assert_eq!(second.status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "the second run waited"
    );
    assert!(home.log("l-info.log").contains("another run is live (pid "));
    let status = engine(&home, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(v["run"]["live"], serde_json::Value::Bool(true));
    assert_eq!(v["run"]["pid"].as_u64(), Some(first.id() as u64));
    assert!(v["run"]["since"].as_i64().is_some());
    first.kill().expect("kill");
    first.wait().expect("wait");
    // the pidfile left by the killed run does not block
    let status = engine(&home, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(v["run"]["live"], serde_json::Value::Bool(false));
}

fn a_stalled_server_costs_about_two_timeouts_and_others_still_sync() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    let silent = SilentServer::start();
    config(&home, &dovecot, "define('BG_IO_TIMEOUT', 2);");
    let stalled = add_account_with(&home, "plain", silent.port(), "nobody", "x");
    dovecot.imap("alice").append("INBOX", &message(1, 500), "");
    let good = add_account(&home, &dovecot, "alice");
    let t0 = Instant::now();
    run(&home, &[], 75);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(9),
        "gave up after {took:?}\n{}",
        home.log("l-debug.log")
    );
    assert_mirror(&home, &dovecot, "alice", good, "INBOX");
    let err = account_error(&home, stalled);
    let err = err.expect("last_error set");
    assert!(err.contains("no answer"), "{err}");
    assert!(home
        .log("l-threading-error.txt")
        .contains(&format!("[{stalled},]")));
}

fn a_wrong_password_fails_only_that_account() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    dovecot.imap("bob").append("INBOX", &message(1, 500), "");
    dovecot.imap("carol").append("INBOX", &message(2, 500), "");
    let bad = add_account_with(
        &home,
        "tls",
        dovecot.imaps_port(),
        "bob",
        "not-the-password",
    );
    let good = add_account(&home, &dovecot, "carol");
    let out = run(&home, &[], 75);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not-the-password"));
    assert_mirror(&home, &dovecot, "carol", good, "INBOX");
    let err = account_error(&home, bad);
    assert!(err.expect("last_error").contains("login as bob refused"));
    for log in ["l-debug.log", "l-info.log", "l-threading-error.txt"] {
        assert!(
            !home.log(log).contains("not-the-password"),
            "password in {log}"
        );
    }
    // fixed: the next run clears the error
    let c = db(&home);
    c.execute(
        "UPDATE email_accounts SET imap_password = ? WHERE acntid = ?",
        crate::params![dovecot.password("bob"), bad],
    )
    .expect("fix password");
    run(&home, &["--force"], 0);
    let err = account_error(&home, bad);
    assert_eq!(err, None);
    assert_mirror(&home, &dovecot, "bob", bad, "INBOX");
}

fn starttls_and_plain_accounts() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    dovecot.imap("alice").append("INBOX", &message(1, 500), "");
    dovecot.imap("bob").append("INBOX", &message(2, 500), "");
    let a = add_account_with(
        &home,
        "starttls",
        dovecot.imap_port(),
        "alice",
        &dovecot.password("alice"),
    );
    let b = add_account_with(
        &home,
        "plain",
        dovecot.imap_port(),
        "bob",
        &dovecot.password("bob"),
    );
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "alice", a, "INBOX");
    assert_mirror(&home, &dovecot, "bob", b, "INBOX");
}

fn run_time_limit_stops_and_the_next_run_resumes() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "define('BG_MAX_RUN_TIME', 1);");
    let imap = dovecot.imap("carol");
    let msgs: Vec<Vec<u8>> = (0..3000).map(|i| message(i, 20_000)).collect();
    imap.append_many("INBOX", &msgs);
    let acntid = add_account(&home, &dovecot, "carol");
    let t0 = Instant::now();
    run(&home, &[], 0);
    assert!(t0.elapsed() < Duration::from_secs(10));
    let id = emfdid(&home, acntid, "INBOX");
    let n = stored(&home, id).len();
    if n < 3000 {
        assert!(home.log("l-info.log").contains("run time limit reached"));
    }
    config(&home, &dovecot, "");
    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
}

both_stores!(
    new_mail_is_stored_once_byte_exact_without_setting_seen,
    log_lines_follow_the_seed_format_one_per_synced_folder,
    full_sync_reflects_flags_and_expunges_with_qresync,
    full_sync_reflects_flags_and_expunges_without_condstore,
    folder_recreated_with_new_uidvalidity_is_remapped_not_downloaded_again,
    non_ascii_and_nested_folders,
    every_corpus_message_is_stored_byte_exact,
    large_messages_come_header_first_then_whole,
    killed_mid_sync_resumes_with_nothing_missing_or_twice,
    a_second_run_exits_at_once_while_one_is_live,
    a_stalled_server_costs_about_two_timeouts_and_others_still_sync,
    a_wrong_password_fails_only_that_account,
    starttls_and_plain_accounts,
    run_time_limit_stops_and_the_next_run_resumes,
);
