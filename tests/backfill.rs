//! Migration 3 on a store that already holds mail (SPEC §14): 20,000
//! messages stored by an engine from before attachments and search get
//! their rows from `engine run`, in batches; killed twice midway (inside a
//! batch's transaction, and from outside at a random moment), the backfill
//! resumes and ends complete and exact: the rows of every message are the
//! ones a sync would have written. Meanwhile other writers (`engine outbox
//! add`, `engine status`, the web application's own transactions) go on.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::engine::*;
use support::{process, text, TempHome};

const MESSAGES: usize = 20_000;

/// A varied message: plain Polish text, HTML only, quoted-printable
/// ISO-8859-2, attachments with RFC 2231 and RFC 2047 names; each with a
/// word of its own (`znacznik{i}`).
fn generated(i: usize) -> Vec<u8> {
    let mut seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let head = format!(
        "From: =?UTF-8?Q?Pawe=C5=82_Nowak?= <pawel{}@example.com>\r\nTo: alice@example.com\r\n\
         Subject: Zamówienie {i} =?UTF-8?B?WmHFvMOzxYLEhw==?=\r\n\
         Date: Sun, 29 Nov 2026 08:00:00 +0100\r\nMessage-ID: <m{i}@example.com>\r\nMIME-Version: 1.0\r\n",
        i % 97
    );
    let words = "Zażółć gęślą jaźń, proszę o fakturę za styczeń. Łódź i Kraków. ";
    let text: String = words.repeat(1 + (next() % 60) as usize) + &format!("znacznik{i}");
    let body = match i % 10 {
        0 | 5 => {
            let data: Vec<u8> = (0..2_000 + next() % 30_000).map(|_| next() as u8).collect();
            let name = if i.is_multiple_of(20) {
                format!("filename*=UTF-8''Faktura%20{i}%20%C5%BC%C3%B3%C5%82%C4%87.pdf")
            } else {
                format!("filename=\"=?UTF-8?Q?Umowa_{i}_=C5=81=C3=B3d=C5=BA?=.pdf\"")
            };
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).expect("ascii"))
                .collect();
            format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b{i}\r\n\
                 Content-Type: application/pdf\r\nContent-Disposition: attachment; {name}\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b{i}--\r\n",
                lines.join("\r\n")
            )
        }
        1 => format!(
            "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>{text}</p></body></html>\r\n"
        ),
        3 => "Content-Type: text/plain; charset=iso-8859-2\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
              Za=BF=F3=B3=E6 g=EA=B6l=B1 ja=BC=F1\r\n"
            .to_string()
            + &format!("znacznik{i}\r\n"),
        _ => format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"),
    };
    (head + &body).into_bytes()
}

/// Messages stored header-only (large ones, fetched whole later).
fn partial(i: usize) -> bool {
    i % 10 == 7
}

/// The store as an engine from before the content migration left it: none
/// of its tables, indexes or triggers; 20,000 messages.
fn store_before_migration_3(home: &TempHome) {
    expect_code(home, &["status"], &[], 0);
    let mut c = home.db();
    match c.store() {
        support::Store::Sqlite => c.execute_batch(
            "DROP TRIGGER email_messages_content_delete;
             DROP TRIGGER email_search_text_delete;
             DROP TRIGGER email_search_text_update;
             DROP TABLE email_search;
             DROP TABLE email_search_text;
             DROP TABLE email_attachments;
             DROP TABLE email_content_backfill;
             DROP INDEX email_messages_search;
             DROP INDEX email_messages_dated;
             DROP INDEX email_messages_undated;
             PRAGMA user_version = 3;",
        ),
        support::Store::Postgres => c.execute_batch(
            "DROP TRIGGER email_messages_content_delete ON email_messages;
             DROP FUNCTION email_messages_content_delete();
             DROP TABLE email_search;
             DROP TABLE email_attachments;
             DROP TABLE email_content_backfill;
             DROP INDEX email_messages_newest;
             UPDATE backproc_schema SET version = 3;",
        ),
    }
    .expect("back to the version before");
    let tx = c.transaction().expect("tx");
    tx.execute(
        "INSERT INTO email_folders (emfdid, acntid, name, imap_name, special, priority) \
         VALUES (1, 1, 'INBOX', 'INBOX', 'inbox', 'hi')",
        [],
    )
    .expect("folder");
    for i in 0..MESSAGES {
        let raw = generated(i);
        let s = backproc::message::summarize(&raw);
        let stored = if partial(i) {
            raw[..backproc::message::header_end(&raw).1].to_vec()
        } else {
            raw.clone()
        };
        tx.execute(
            "INSERT INTO email_messages (emmsid, emfdid, uidvalidity, uid, message_id, subject, \
             from_addr, to_addrs, date_at, size, flags, partial, raw) \
             VALUES (?, 1, 1, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)",
            params![
                i as i64 + 1,
                i as i64 + 1,
                s.message_id,
                s.subject,
                s.from_addr,
                s.to_addrs,
                s.date_at,
                raw.len() as i64,
                partial(i),
                stored
            ],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
}

fn bookmark(home: &TempHome) -> (i64, i64) {
    home.db()
        .query_row(
            "SELECT after_emmsid, upto_emmsid FROM email_content_backfill",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("bookmark")
}

/// `engine run --no-sync --no-outbox`: the backfill alone.
fn backfill_run(home: &TempHome) -> std::process::Child {
    home.engine()
        .args(["run", "--no-sync", "--no-outbox"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn engine")
}

both_stores!(the_backfill_of_20000_messages_survives_two_kills_and_ends_exact);

fn the_backfill_of_20000_messages_survives_two_kills_and_ends_exact() {
    let home = TempHome::new();
    home.write_config("<?php\n");
    store_before_migration_3(&home);
    // The first command after the upgrade migrates: an account for `outbox add`.
    let acntid = add_account_with(&home, "plain", 1, "nobody", "secret");
    let (after, upto) = bookmark(&home);
    assert_eq!(
        (after, upto),
        (0, MESSAGES as i64),
        "migration 3 set the bookmark"
    );

    // Kill 1: inside a batch's transaction (the 30th), by the failpoint.
    let started = Instant::now();
    let out = home
        .engine()
        .args(["run", "--no-sync", "--no-outbox"])
        .env("BACKPROC_FAILPOINTS", "backfill-mid-commit=30")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), None, "killed: {}", text(&out.stderr));
    let first_kill = bookmark(&home).0;
    assert!(
        first_kill > 0 && first_kill < upto,
        "after the first kill: {first_kill}"
    );

    // Kill 2: from outside, past 60%, while other writers work.
    let stop = Arc::new(AtomicBool::new(false));
    let web_app = {
        let (stop, path, url) = (
            stop.clone(),
            home.db_path(),
            home.database_url().map(String::from),
        );
        std::thread::spawn(move || {
            // What a web application does meanwhile: small write transactions.
            let c = match url {
                Some(url) => support::Db::postgres(&url),
                None => support::Db::sqlite_patient(&path),
            };
            let (mut longest, mut n) = (Duration::ZERO, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                c.execute(
                    "INSERT INTO user_sessions (usrid, last_activity_at) VALUES (42, ?) \
                     ON CONFLICT (usrid) DO UPDATE SET last_activity_at = excluded.last_activity_at",
                    [n as i64],
                )
                .expect("the web application's write");
                longest = longest.max(t.elapsed());
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (longest, n)
        })
    };
    let mut child = backfill_run(&home);
    let pid = child.id();
    let mut side_writes = 0;
    let killed_at = loop {
        let (after, _) = bookmark(&home);
        if side_writes < 3 {
            expect_code(&home, &["status"], &[], 0);
            queue(
                &home,
                acntid,
                b"From: nobody@example.com\r\nTo: x@example.com\r\nSubject: q\r\n\r\nx\r\n",
            );
            side_writes += 1;
        }
        if after * 10 >= upto * 6 {
            process::signal(pid, "KILL");
            break after;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before 60%: {}",
            home.log("l-debug.log")
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), None, "killed");
    assert_eq!(
        side_writes, 3,
        "status and outbox add ran during the backfill"
    );
    let second_kill = bookmark(&home).0;
    assert!(
        second_kill >= killed_at && second_kill < upto,
        "{second_kill}"
    );

    // The rest.
    let out = home
        .engine()
        .args(["run", "--no-sync", "--no-outbox"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (longest_web_write, web_writes) = web_app.join().expect("web app thread");
    assert_eq!(bookmark(&home).0, upto, "finished");
    let info = home.log("l-info.log");
    assert!(
        info.contains(
            "filling in attachments and search for messages stored before them: 0 of 20000 done"
        ),
        "{info}"
    );
    assert!(
        info.contains(&format!(
            "filled in attachments and search for all {MESSAGES} messages"
        )),
        "{info}"
    );
    let debug = home.log("l-debug.log");
    let longest_tx: Vec<&str> = debug
        .lines()
        .filter(|l| l.contains("longest write transaction"))
        .collect();
    eprintln!(
        "backfill of {MESSAGES} messages in three runs (two killed): {:.1}s; the web \
         application's writes: {web_writes}, the longest {} ms; {longest_tx:?}",
        took.as_secs_f64(),
        longest_web_write.as_millis()
    );
    assert!(
        longest_web_write < Duration::from_secs(5),
        "{longest_web_write:?}"
    );

    // Exact: every message's rows are what a sync would have written.
    let c = home.db();
    let table = c.search_text_table();
    let texts: i64 = c
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .expect("count");
    assert_eq!(
        texts, MESSAGES as i64,
        "one search text per message, none twice"
    );
    let mut rows = c
        .prepare(
            "SELECT part, filename, content_type, disposition, content_id, size, sha256 \
             FROM email_attachments WHERE emmsid = ? ORDER BY emattid",
        )
        .expect("prepare");
    let body_sql = format!("SELECT body, subject FROM {table} WHERE emmsid = ?");
    let mut with_attachments = 0;
    for i in 0..MESSAGES {
        let emmsid = i as i64 + 1;
        let raw = generated(i);
        let want = if partial(i) {
            backproc::mime::Content::default()
        } else {
            backproc::mime::content(&raw)
        };
        type Row = (
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            i64,
            String,
        );
        let got: Vec<Row> = rows
            .query_map([emmsid], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let expected: Vec<Row> = want
            .attachments
            .iter()
            .map(|a| {
                (
                    a.part.clone(),
                    a.filename.clone(),
                    a.content_type.clone(),
                    a.disposition.map(String::from),
                    a.content_id.clone(),
                    a.size as i64,
                    a.sha256.clone(),
                )
            })
            .collect();
        assert_eq!(got, expected, "message {i}");
        with_attachments += usize::from(!got.is_empty());
        let (text, subject): (Option<String>, Option<String>) = c
            .query_row(&body_sql, [emmsid], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("search text");
        assert_eq!(text.unwrap_or_default(), want.text, "message {i}");
        assert_eq!(
            subject,
            backproc::message::summarize(&raw).subject,
            "message {i}"
        );
    }
    assert_eq!(with_attachments, MESSAGES / 5);
    c.search_index_consistent();
    // And the index answers: a word of one message, a word of many.
    let out = expect_code(&home, &["search", "znacznik12345", "--json"], &[], 0);
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    assert_eq!(hits[0]["emmsid"], 12_346);
    let out = expect_code(
        &home,
        &["search", "lodz", "--limit", "100000", "--json"],
        &[],
        0,
    );
    let hits: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let partials = (0..MESSAGES).filter(|i| partial(*i)).count();
    let without = (0..MESSAGES)
        .filter(|i| i % 10 == 3 && !partial(*i))
        .count();
    assert_eq!(
        hits.as_array().map(Vec::len),
        Some(MESSAGES - partials - without)
    );
    integrity_ok(&home);
}
