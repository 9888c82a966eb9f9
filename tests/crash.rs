//! Crash points: the engine is killed (SIGKILL) at many moments of a first
//! sync — at random and at every kind of step, through the crash points of
//! `BACKPROC_FAILPOINTS` — and resumed each time. After every kill the store
//! must be consistent (no duplicate, a contiguous newest-first block, a
//! sound file); after the last run it must equal the server.
//!
//! CI runs a modest number of kill points; set `BACKPROC_CRASH_POINTS=300`
//! (or any number) for the long variant.

mod support;

use rusqlite::Connection;
use std::collections::BTreeSet;
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
    let c = Connection::open(home.db_path()).ok()?;
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

fn inbox_id(home: &TempHome) -> Option<i64> {
    Connection::open(home.db_path())
        .ok()?
        .query_row(
            "SELECT emfdid FROM email_folders WHERE imap_name = 'INBOX'",
            [],
            |r| r.get(0),
        )
        .ok()
}

#[test]
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
        let mut child = cmd.arg("run").spawn().expect("spawn engine");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = if label == "random" {
            std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
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
        use std::os::unix::process::ExitStatusExt;
        let was_killed = status.signal() == Some(9);
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
