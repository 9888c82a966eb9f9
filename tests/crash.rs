//! Crash points: the engine is killed (SIGKILL) at many moments of a first
//! sync — at random and at every kind of step, through the crash points of
//! `BACKPROC_FAILPOINTS` — and resumed each time. After every kill the store
//! must be consistent (no duplicate, a contiguous newest-first block, a
//! sound file); after the last run it must equal the server.
//!
//! CI runs a modest number of kill points; set `BACKPROC_CRASH_POINTS=300`
//! (or any number) for the long variant.

mod support;

use std::collections::BTreeSet;
use std::process::Child;
use std::time::{Duration, Instant};
use support::engine::*;
use support::{Dovecot, TempHome};

/// The number of kill points to try.
fn kill_points() -> usize {
    std::env::var("BACKPROC_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// A tiny deterministic PRNG (xorshift), so a failing sequence can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the store holds for the folder, and its progress marks.
struct Snapshot {
    uids: Vec<u32>,
    last_uid: u32,
    backfill_below: Option<u32>,
    complete: bool,
}

fn snapshot(home: &TempHome, emfdid: i64) -> Option<Snapshot> {
    let c = home.db();
    let (last_uid, backfill_below, full): (i64, Option<i64>, Option<i64>) = c
        .query_row(
            "SELECT last_uid, backfill_below, last_full_sync_at FROM email_folders WHERE emfdid = ?",
            [emfdid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()?;
    let mut stmt = c
        .prepare(
            "SELECT m.uid FROM email_messages m JOIN email_folders f ON f.emfdid = m.emfdid \
             WHERE m.emfdid = ? AND m.uidvalidity = f.uidvalidity ORDER BY m.uid",
        )
        .ok()?;
    let uids = stmt
        .query_map([emfdid], |r| r.get(0))
        .ok()?
        .collect::<Result<Vec<u32>, _>>()
        .ok()?;
    Some(Snapshot {
        uids,
        last_uid: last_uid as u32,
        backfill_below: backfill_below.map(|b| b as u32),
        complete: full.is_some(),
    })
}

/// The store after a kill: exactly the server's messages between the
/// backfill mark and `last_uid`, nothing else, nothing twice.
fn assert_consistent(home: &TempHome, emfdid: i64, server: &[u32], what: &str) {
    integrity_ok(home);
    let Some(s) = snapshot(home, emfdid) else {
        return; // killed before the folder's first commit
    };
    let low = s.backfill_below.unwrap_or(0);
    let expected: Vec<u32> = server
        .iter()
        .copied()
        .filter(|u| *u >= low && *u <= s.last_uid)
        .collect();
    assert_eq!(
        s.uids, expected,
        "{what}: stored UIDs vs the progress marks"
    );
    let unique: BTreeSet<u32> = s.uids.iter().copied().collect();
    assert_eq!(unique.len(), s.uids.len(), "{what}: a UID stored twice");
    if s.backfill_below.is_some() {
        assert!(!s.complete, "{what}: a half-done folder looks complete");
    }
}

/// Kills `child` after `kill_after` when given, else waits for it to end
/// (within 60 s, or the test fails naming `label`). Whether it died of SIGKILL.
fn kill_or_wait(child: &mut Child, kill_after: Option<Duration>, label: &str) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = if let Some(after) = kill_after {
        std::thread::sleep(after);
        let _ = child.kill();
        child.wait().expect("wait")
    } else {
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            assert!(Instant::now() < deadline, "{label}: the run did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    status.signal() == Some(9)
}

fn inbox_id(home: &TempHome) -> Option<i64> {
    home.db()
        .query_row(
            "SELECT emfdid FROM email_folders WHERE imap_name = 'INBOX'",
            [],
            |r| r.get(0),
        )
        .ok()
}

fn a_first_sync_killed_at_many_moments_ends_exact() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("alice");
    let total = 20_000;
    let msgs: Vec<Vec<u8>> = (0..total)
        .map(|i| message(i, 600 + (i * 53) % 2500))
        .collect();
    imap.append_many("INBOX", &msgs);
    drop(msgs);
    let server = imap.uids("INBOX");
    assert_eq!(server.len(), total);
    let mut home = home;
    let mut acntid = add_account(&home, &dovecot, "alice");

    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let points = kill_points();
    let mut killed = 0;
    let mut outcomes = Vec::new();
    for k in 0..points {
        if inbox_id(&home)
            .and_then(|id| snapshot(&home, id))
            .is_some_and(|s| s.complete)
        {
            // This first sync got through: check it, then start another one.
            assert_mirror(&home, &dovecot, "alice", acntid, "INBOX");
            outcomes.push("complete: exact".to_string());
            home = TempHome::new();
            config(&home, &dovecot, "");
            acntid = add_account(&home, &dovecot, "alice");
        }
        // Every kind of step in turn, then random moments from outside.
        let (label, mut cmd) = match k % 4 {
            0 => {
                let n = 1 + rng.below(6);
                let mut c = home.engine();
                c.env("BACKPROC_FAILPOINTS", format!("fetched={n}"));
                (format!("fetched={n}"), c)
            }
            1 => {
                let n = 1 + rng.below(6);
                let mut c = home.engine();
                c.env("BACKPROC_FAILPOINTS", format!("mid-commit={n}"));
                (format!("mid-commit={n}"), c)
            }
            2 => {
                let n = 1 + rng.below(6);
                let mut c = home.engine();
                c.env("BACKPROC_FAILPOINTS", format!("committed={n}"));
                (format!("committed={n}"), c)
            }
            _ => ("random".to_string(), home.engine()),
        };
        let kill_after = (label == "random").then(|| Duration::from_millis(20 + rng.below(400)));
        let mut child = cmd.arg("run").spawn().expect("spawn engine");
        let was_killed = kill_or_wait(&mut child, kill_after, &label);
        killed += was_killed as usize;
        outcomes.push(format!(
            "{label}: {}",
            if was_killed { "killed" } else { "finished" }
        ));
        if let Some(id) = inbox_id(&home) {
            assert_consistent(&home, id, &server, &label);
        }
    }
    eprintln!("kill points tried: {outcomes:?}");
    assert!(
        killed >= points.min(4) / 2,
        "too few runs were actually killed: {outcomes:?}"
    );

    run(&home, &[], 0);
    assert_mirror(&home, &dovecot, "alice", acntid, "INBOX");
    integrity_ok(&home);
}

fn outbox_mail(id: &str, i: usize) -> Vec<u8> {
    format!(
        "From: alice@example.com\r\nTo: x{}@example.org\r\nSubject: crash {id}\r\n\
         Message-ID: <{id}>\r\nDate: Sun, 29 Nov 2026 08:00:00 +0100\r\n\r\n\
         Hello,\r\nthis is message {id}.\r\n",
        i % 7
    )
    .into_bytes()
}

/// Queues N messages as the web app does (direct INSERT); returns their ids.
fn queue_batch(home: &TempHome, acntid: i64, cycle: usize, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("crash{cycle}-{i}@test")).collect();
    let mut c = db(home);
    let tx = c.transaction().expect("tx");
    for (i, id) in ids.iter().enumerate() {
        tx.execute(
            "INSERT INTO email_outbox (acntid, raw) VALUES (?, ?)",
            crate::params![acntid, outbox_mail(id, i)],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    ids
}

fn count_in(hay: &[u8], needle: &str) -> usize {
    hay.windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

fn states(home: &TempHome, state: &str) -> Vec<i64> {
    let c = db(home);
    let mut s = c
        .prepare("SELECT emoid FROM email_outbox WHERE state = ? ORDER BY emoid")
        .expect("prepare");
    s.query_map([state], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn an_outbox_drain_killed_at_many_moments_delivers_everything_once() {
    use support::engine::{add_account_smtp, Side};
    use support::ScriptedSmtp;
    const N: usize = 200;
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let pw = dovecot.password("alice");
    let acntid = add_account_smtp(
        &home,
        "alice",
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &pw,
        },
        Side {
            security: "plain",
            port: smtp.port(),
            password: "",
        },
    );
    let mut ids = queue_batch(&home, acntid, 0, N);
    let mut cycle = 0;

    let mut rng = Rng(0x0b0c_5eed_7777_0001);
    let points = kill_points();
    let mut in_flight: Vec<i64> = Vec::new();
    let mut outcomes = Vec::new();
    for k in 0..points {
        let remaining = states(&home, "queued").len() + states(&home, "sending").len();
        let copies_left: i64 = db(&home)
            .query_row(
                "SELECT COUNT(*) FROM email_outbox WHERE sent_copy = 'pending'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        if remaining == 0 && copies_left == 0 {
            // This drain got through: queue the next batch and go on killing.
            cycle += 1;
            outcomes.push("drained".to_string());
            ids.extend(queue_batch(&home, acntid, cycle, N));
        }
        let n = 1 + rng.below(25);
        let (label, env) = match k % 4 {
            0 => (
                format!("smtp-accepted={n}"),
                Some(format!("smtp-accepted={n}")),
            ),
            1 => (
                format!("sent-recorded={n}"),
                Some(format!("sent-recorded={n}")),
            ),
            2 => (format!("appended={n}"), Some(format!("appended={n}"))),
            _ => ("random".to_string(), None),
        };
        let mut cmd = home.engine();
        if let Some(spec) = &env {
            cmd.env("BACKPROC_FAILPOINTS", spec);
        }
        let kill_after = env
            .is_none()
            .then(|| Duration::from_millis(30 + rng.below(300)));
        let mut child = cmd.args(["run", "--no-sync"]).spawn().expect("spawn");
        let killed = kill_or_wait(&mut child, kill_after, &label);
        outcomes.push(format!(
            "{label}: {}",
            if killed { "killed" } else { "finished" }
        ));
        integrity_ok(&home);
        let sending = states(&home, "sending");
        assert!(
            sending.len() <= 1,
            "{label}: more than one message in flight: {sending:?}"
        );
        in_flight.extend(sending);
    }
    eprintln!("outbox kill points: {outcomes:?}");
    let killed = outcomes.iter().filter(|o| o.ends_with("killed")).count();
    assert!(
        killed >= points / 2,
        "too few runs were actually killed: {outcomes:?}"
    );

    run(&home, &["--no-sync"], 0);
    assert_eq!(
        states(&home, "sent").len(),
        ids.len(),
        "every message ends sent"
    );
    let got = smtp.received();
    for bare in &ids {
        let id = format!("<{bare}>");
        let n: usize = got.iter().map(|r| count_in(&r.data, &id)).sum();
        assert!(n >= 1, "{id} never arrived");
        if n > 1 {
            let emoid: i64 = db(&home)
                .query_row(
                    "SELECT emoid FROM email_outbox WHERE message_id = ?",
                    [bare],
                    |r| r.get(0),
                )
                .expect("row");
            let times = in_flight.iter().filter(|e| **e == emoid).count();
            assert!(
                times >= 1 && n <= 1 + times,
                "{id} arrived {n} times but was in flight at {times} kills"
            );
        }
    }
    // One copy in Sent per message, however often the APPEND was cut short.
    let sent = dovecot.imap("alice").fetch_raw_all("Sent");
    for bare in &ids {
        let id = format!("<{bare}>");
        let n = sent
            .iter()
            .filter(|(_, raw, _)| count_in(raw, &id) > 0)
            .count();
        assert_eq!(n, 1, "{id}: copies in Sent");
    }
    integrity_ok(&home);
}

both_stores!(
    a_first_sync_killed_at_many_moments_ends_exact,
    an_outbox_drain_killed_at_many_moments_delivers_everything_once,
);
