//! Hostile input (SPEC §11: "any byte sequence a server sends is stored as
//! received ... never a crash"; "one bad account, folder or message never
//! stops the others").
//!
//! - Messages: generated nasties (50 MB, 10,000 header lines, NUL, 8-bit
//!   headers, unknown charsets, broken encoded words, bare LF, 500 nested
//!   multiparts, no separator, 1 MB header line, ...) and a mutated variant
//!   of every corpus message, through a real Dovecot: stored byte-exact (as
//!   Dovecot returns them for `BODY.PEEK[]`), decoded columns best effort,
//!   no panic. The same and worse through [`FakeImap`], which rewrites
//!   nothing (Dovecot turns NUL into 0x80 and bare LF into CRLF).
//! - Server responses the parser cannot handle, from [`FakeImap`] for one
//!   folder: that folder fails with a readable `last_error`, the others of
//!   the account are synced, the run ends (exit 75) within its time bounds.
//! - Folder names Dovecot would refuse: synced, or skipped with a log line.

mod support;

use std::io::Read;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::db::Optional;
use support::engine::*;
use support::{
    header_of, Dovecot, FakeFolder, FakeImap, FakeImapOptions, Fault, FaultOn, TempHome, Then,
};

// ---------------------------------------------------------------------------
// helpers

/// `engine run` with a watchdog: a run that outlives `limit` is killed and
/// the test fails ("never hangs"). Returns the output, the time taken and
/// the engine's peak RSS (VmHWM, kB) as last seen while it ran.
fn run_bounded(
    home: &TempHome,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Output, Duration, u64) {
    let t0 = Instant::now();
    let mut cmd = home.engine();
    cmd.arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn engine run");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "engine run still running after {limit:?}: it hangs\n{}",
                home.log("l-debug.log")
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut stderr);
    }
    (
        Output {
            status,
            stdout,
            stderr,
        },
        t0.elapsed(),
        peak_kb,
    )
}

/// No panic anywhere: not on stderr, not in the threading-error log.
fn assert_no_panic(home: &TempHome, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    let te = home.log("l-threading-error.txt");
    assert!(!te.contains("panic"), "l-threading-error.txt:\n{te}");
    assert!(
        out.status.code().is_some(),
        "the engine died of a signal: {:?}\n{stderr}",
        out.status
    );
}

/// (subject, from, to, message_id, date_at, size, partial) of a stored message.
type Columns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

fn columns(home: &TempHome, emfdid: i64, uid: u32) -> Columns {
    db(home)
        .query_row(
            "SELECT subject, from_addr, to_addrs, message_id, date_at, size, partial \
             FROM email_messages WHERE emfdid = ? AND uid = ?",
            crate::params![emfdid, uid],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap_or_else(|e| panic!("message uid {uid}: {e}"))
}

fn nested_multipart(levels: usize) -> Vec<u8> {
    let mut m = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: nested\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n"
        .to_vec();
    for i in 1..levels {
        m.extend_from_slice(
            format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
                i - 1
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(
        format!(
            "--b{}\r\nContent-Type: text/plain\r\n\r\ndeep\r\n",
            levels - 1
        )
        .as_bytes(),
    );
    for i in (0..levels).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The generated hostile messages (all but the 50 MB ones), by name.
fn generated() -> Vec<(&'static str, Vec<u8>)> {
    let mut many_lines = Vec::new();
    for i in 0..10_000 {
        many_lines.extend_from_slice(format!("X-Line-{i}: value {i}\r\n").as_bytes());
    }
    many_lines.extend_from_slice(b"Subject: last\r\nFrom: a@example.com\r\n\r\nbody\r\n");
    let mut huge_line = b"From: a@example.com\r\nSubject: ".to_vec();
    huge_line.resize(huge_line.len() + (1 << 20), b'x');
    huge_line.extend_from_slice(b"\r\n\r\nbody\r\n");
    let mut long_body_line = b"Subject: long body line\r\n\r\n".to_vec();
    long_body_line.resize(5 << 20, b'y');
    let mut markers = b"Subject: \xff ".to_vec();
    markers.extend(b"=?".repeat(400_000));
    markers.extend_from_slice(b"\r\n\r\nbody\r\n");
    let mut open_words = b"Subject: \xb1 ".to_vec();
    open_words.extend(b"=?a?q?".repeat(150_000));
    open_words.extend_from_slice(b"\r\n\r\n");
    let mut parens = b"Subject: parens\r\nTo: ".to_vec();
    parens.extend(b"(".repeat(200_000));
    parens.extend_from_slice(b"\r\n\r\n");
    let mut many_to = b"Subject: many\r\nTo: ".to_vec();
    for i in 0..20_000 {
        many_to.extend_from_slice(format!("u{i}@example.com, ").as_bytes());
    }
    many_to.extend_from_slice(b"last@example.com\r\n\r\n");
    let mut binary = noise(7, 64 * 1024);
    binary.extend_from_slice(b"\r\n");
    vec![
        ("ten_thousand_header_lines", many_lines),
        (
            "nul_bytes",
            b"Subject: n\0l\r\nFrom: a\0@example.com\r\n\r\nbody \0\0 with NULs\r\n\0".to_vec(),
        ),
        (
            "utf8_8bit_headers",
            "Subject: Zażółć gęślą jaźń\r\nFrom: Łukasz Żak <l@example.com>\r\n\r\nciało\r\n"
                .as_bytes()
                .to_vec(),
        ),
        (
            "latin2_8bit_headers",
            b"Subject: Za\xbf\xf3\xb3\xe6 g\xea\xb6l\xb1\r\nFrom: \xa3ukasz <l@example.com>\r\n\r\nb\r\n"
                .to_vec(),
        ),
        (
            "invalid_charset",
            b"Subject: =?x-unknown?Q?abc?=\r\nFrom: =?x-unknown?B?AAAA?= <a@example.com>\r\n\r\nb\r\n"
                .to_vec(),
        ),
        (
            "broken_encoded_words",
            b"Subject: =?utf-8?B?###?= =?iso-8859-2?Q?=ZZ?= =?utf-8?B?QUJD =?\r\n\r\nb\r\n"
                .to_vec(),
        ),
        (
            "no_date_no_message_id",
            b"From: a@example.com\r\nSubject: no date\r\n\r\nb\r\n".to_vec(),
        ),
        (
            "bare_lf",
            b"Subject: lf only\nFrom: a@example.com\n\nline\nline\n".to_vec(),
        ),
        (
            "bare_cr",
            b"Subject: cr\rinside\r\nFrom: a@example.com\r\n\r\nli\rne\r\n".to_vec(),
        ),
        ("nested_multipart_500", nested_multipart(500)),
        (
            "no_separator",
            b"From: a@example.com\r\nSubject: no body".to_vec(),
        ),
        (
            "header_only",
            b"From: a@example.com\r\nSubject: header only\r\n\r\n".to_vec(),
        ),
        ("huge_header_line_1mb", huge_line),
        ("binary_garbage", binary),
        ("long_body_line_5mb", long_body_line),
        ("encoded_word_markers_8bit", markers),
        ("open_encoded_words_8bit", open_words),
        ("deep_parentheses_in_to", parens),
        ("twenty_thousand_recipients", many_to),
        ("only_crlf", b"\r\n".to_vec()),
        ("controls_in_subject", b"Subject: a\x01b\x1bc\x7fd\r\n\r\n".to_vec()),
        (
            "bad_mime",
            b"Subject: bad mime\r\nContent-Type: multipart/mixed; boundary=\r\n\
Content-Transfer-Encoding: base64\r\n\r\n--\r\n!!!!\r\n--\r\n"
                .to_vec(),
        ),
    ]
}

/// A damaged variant of each corpus message: truncated, LF only, NUL and
/// 8-bit bytes in the header, separator removed, or header only.
fn corpus_variants() -> Vec<(String, Vec<u8>)> {
    support::corpus()
        .into_iter()
        .enumerate()
        .map(|(i, (name, raw))| {
            let sep = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| (p, 4))
                .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)));
            let (kind, bytes) = match i % 5 {
                0 => ("truncated", raw[..raw.len() * 3 / 5].to_vec()),
                1 => {
                    let mut v = Vec::with_capacity(raw.len());
                    for (k, b) in raw.iter().enumerate() {
                        if !(*b == b'\r' && raw.get(k + 1) == Some(&b'\n')) {
                            v.push(*b);
                        }
                    }
                    ("lf_only", v)
                }
                2 => {
                    let mut v = raw.clone();
                    let end = sep.map_or(v.len(), |(p, _)| p);
                    for k in [end / 4, end / 2, end * 3 / 4] {
                        if k < v.len() {
                            v.insert(k, [0u8, 0xff, 0x80][k % 3]);
                        }
                    }
                    ("nul_and_8bit_in_header", v)
                }
                3 => match sep {
                    Some((p, n)) => ("no_separator", [&raw[..p + n / 2], &raw[p + n..]].concat()),
                    None => ("no_separator", raw.clone()),
                },
                _ => match sep {
                    Some((p, n)) => ("header_only", raw[..p + n].to_vec()),
                    None => ("header_only", raw.clone()),
                },
            };
            (format!("{name} ({kind})"), bytes)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// messages through Dovecot

#[test]
fn generated_and_damaged_corpus_messages_are_stored_byte_exact() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("bob");
    imap.create_folder("Hostile");
    imap.create_folder("Damaged");
    let gen = generated();
    let bodies: Vec<Vec<u8>> = gen.iter().map(|(_, b)| b.clone()).collect();
    let uids = imap.append_many("Hostile", &bodies);
    let damaged = corpus_variants();
    assert!(damaged.len() >= 100, "corpus fixtures missing");
    let dbodies: Vec<Vec<u8>> = damaged.iter().map(|(_, b)| b.clone()).collect();
    imap.append_many("Damaged", &dbodies);
    let acntid = add_account(&home, &dovecot, "bob");

    let (out, took, peak) = run_bounded(&home, &[], &[], Duration::from_secs(60));
    eprintln!(
        "{} hostile + {} damaged messages: {took:?}, peak RSS {} MB",
        gen.len(),
        damaged.len(),
        peak / 1024
    );
    assert_no_panic(&home, &out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        home.log("l-debug.log")
    );
    assert_eq!(home.log("l-threading-error.txt"), "");
    assert_mirror(&home, &dovecot, "bob", acntid, "Hostile");
    assert_mirror(&home, &dovecot, "bob", acntid, "Damaged");
    integrity_ok(&home);

    // Best-effort columns where there is something to decode.
    let id = emfdid(&home, acntid, "Hostile");
    let uid_of = |name: &str| uids[gen.iter().position(|(n, _)| *n == name).expect(name)];
    let subject = |name: &str| columns(&home, id, uid_of(name)).0;
    assert_eq!(
        subject("ten_thousand_header_lines").as_deref(),
        Some("last")
    );
    assert_eq!(
        subject("utf8_8bit_headers").as_deref(),
        Some("Zażółć gęślą jaźń")
    );
    assert_eq!(
        columns(&home, id, uid_of("utf8_8bit_headers")).1.as_deref(),
        Some("Łukasz Żak <l@example.com>")
    );
    assert_eq!(
        subject("latin2_8bit_headers").as_deref(),
        Some("Zażółć gęślą")
    );
    assert_eq!(subject("invalid_charset").as_deref(), Some("abc"));
    assert_eq!(subject("bare_lf").as_deref(), Some("lf only"));
    assert_eq!(subject("no_separator").as_deref(), Some("no body"));
    assert_eq!(subject("header_only").as_deref(), Some("header only"));
    assert_eq!(subject("nested_multipart_500").as_deref(), Some("nested"));
    assert_eq!(subject("controls_in_subject").as_deref(), Some("a b c d"));
    assert_eq!(
        subject("huge_header_line_1mb").map(|s| s.len()),
        Some(1 << 20)
    );
    let (_, _, to, msgid, date, size, partial) =
        columns(&home, id, uid_of("twenty_thousand_recipients"));
    assert!(to.is_some_and(|t| t.ends_with("last@example.com")));
    assert_eq!((msgid, date, partial), (None, None, 0));
    assert!(size > 0);
    let (_, _, _, msgid, date, _, _) = columns(&home, id, uid_of("no_date_no_message_id"));
    assert_eq!((msgid, date), (None, None));
    // Every message has its row and RFC822.SIZE, whatever its columns.
    let n: i64 = db(&home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages WHERE size > 0 AND partial = 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(n as usize, gen.len() + damaged.len());
}

fn fifty_mb_message() -> Vec<u8> {
    let mut m = b"From: Big Sender <big@example.com>\r\nTo: carol@example.com\r\n\
Subject: =?UTF-8?Q?za=C5=82=C4=85cznik_50_MB?=\r\nMessage-ID: <big@example.com>\r\n\
MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    while m.len() < 50 * 1024 * 1024 {
        m.extend_from_slice(line);
    }
    m
}

#[test]
fn a_50_mb_message_with_the_default_limit_comes_header_first_then_whole() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("carol");
    let big = fifty_mb_message();
    imap.append_many("INBOX", &[message(1, 2000), big.clone(), message(3, 2000)]);

    // Killed right after the first batch is committed: the 50 MB message
    // (above the default 25 MiB) is there with its header only.
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let acntid = add_account(&home, &dovecot, "carol");
    let (out, _, _) = run_bounded(
        &home,
        &[],
        &[("BACKPROC_FAILPOINTS", "committed=2")],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), None, "the failpoint did not fire");
    let id = emfdid(&home, acntid, "INBOX");
    let (raw, partial): (Vec<u8>, i64) = db(&home)
        .query_row(
            "SELECT raw, partial FROM email_messages WHERE emfdid = ? AND uid = 2",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the large message's row");
    assert_eq!(partial, 1);
    assert!(raw == header_of(&big), "header-only row is not the header");
    let (subject, _, _, msgid, _, size, _) = columns(&home, id, 2);
    assert_eq!(subject.as_deref(), Some("załącznik 50 MB"));
    assert_eq!(msgid.as_deref(), Some("big@example.com"));
    assert_eq!(size as usize, big.len(), "size is the server's RFC822.SIZE");
    // The next run fetches it whole.
    let (out, _, _) = run_bounded(&home, &[], &[], Duration::from_secs(60));
    assert_no_panic(&home, &out);
    assert_eq!(out.status.code(), Some(0));
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");

    // Without a kill: header first, then whole, in the same run.
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let acntid = add_account(&home, &dovecot, "carol");
    let (out, took, peak) = run_bounded(&home, &[], &[], Duration::from_secs(60));
    eprintln!(
        "50 MB message, default limit: {took:?}, peak RSS {} MB",
        peak / 1024
    );
    // Held once while fetched and stored (the IMAP buffer is handed over,
    // not copied): 50 MB plus the engine's usual ~20-30 MB.
    assert!(peak / 1024 < 100, "peak RSS {} MB", peak / 1024);
    assert_no_panic(&home, &out);
    assert_eq!(out.status.code(), Some(0));
    assert_mirror(&home, &dovecot, "carol", acntid, "INBOX");
    let id = emfdid(&home, acntid, "INBOX");
    assert_eq!(columns(&home, id, 2).6, 0, "still partial");
    assert!(home
        .log("l-debug.log")
        .contains(&format!("fetched 1 large messages whole [{acntid},{id}]")));
    assert_eq!(home.log("l-threading-error.txt"), "");
}

#[test]
fn a_50_mb_message_without_a_limit_and_with_a_small_one() {
    let dovecot = Dovecot::start();
    let imap = dovecot.imap("dave");
    let big = fifty_mb_message();
    let mut msgs: Vec<Vec<u8>> = (0..20).map(|i| message(i, 30_000)).collect();
    msgs.insert(10, big);
    imap.append_many("INBOX", &msgs);
    for (limit, large_task) in [(0u64, false), (100_000, true)] {
        let home = TempHome::new();
        config(
            &home,
            &dovecot,
            &format!("define('BG_MAX_MESSAGE_SIZE', {limit});"),
        );
        let acntid = add_account(&home, &dovecot, "dave");
        let (out, took, peak) = run_bounded(&home, &[], &[], Duration::from_secs(60));
        eprintln!(
            "50 MB message, BG_MAX_MESSAGE_SIZE {limit}: {took:?}, peak RSS {} MB",
            peak / 1024
        );
        assert!(peak / 1024 < 100, "peak RSS {} MB", peak / 1024);
        assert_no_panic(&home, &out);
        assert_eq!(out.status.code(), Some(0), "{}", home.log("l-debug.log"));
        assert_mirror(&home, &dovecot, "dave", acntid, "INBOX");
        let partial: i64 = db(&home)
            .query_row(
                "SELECT COUNT(*) FROM email_messages WHERE partial = 1",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(partial, 0, "limit {limit}");
        assert_eq!(
            home.log("l-debug.log")
                .contains("fetched 1 large messages whole"),
            large_task,
            "limit {limit}"
        );
    }
}

// ---------------------------------------------------------------------------
// bytes Dovecot would rewrite, from a server that rewrites nothing

#[test]
fn any_bytes_a_server_sends_are_stored_exactly() {
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let messages: Vec<Vec<u8>> = vec![
        b"Subject: nul\0inside\r\n\r\n\0\0body\0".to_vec(),
        b"Subject: bare lf\n\nline\nline\n".to_vec(),
        b"Subject: trailing cr\r\n\r\nbody\r".to_vec(),
        b"Subject: lone cr\rFrom: x\r\r\n\r\n".to_vec(),
        b"Subject: looks like IMAP\r\n\r\n)\r\n* 2 FETCH (UID 9 BODY[] {5}\r\nhello)\r\na1 OK done\r\n"
            .to_vec(),
        all_bytes,
        Vec::new(),
        b"\r".to_vec(),
        b"\n".to_vec(),
        noise(99, 100_000),
    ];
    let fake = FakeImap::start(FakeImapOptions {
        folders: vec![
            FakeFolder::new(b"INBOX", &messages),
            FakeFolder::new(b"Other", &messages[..3]),
        ],
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 5);");
    let acntid = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    let (out, _, _) = run_bounded(&home, &[], &[], Duration::from_secs(30));
    assert_no_panic(&home, &out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        home.log("l-debug.log"),
        fake.stderr()
    );
    for (folder, want) in [("INBOX", &messages[..]), ("Other", &messages[..3])] {
        let got = stored(&home, emfdid(&home, acntid, folder));
        assert_eq!(got.len(), want.len(), "{folder}");
        for ((uid, raw, _), w) in got.iter().zip(want) {
            assert!(raw == w, "{folder} uid {uid}: stored bytes differ");
        }
    }
    assert_eq!(home.log("l-threading-error.txt"), "");
}

// ---------------------------------------------------------------------------
// server responses the parser cannot handle fail that folder only

const GOOD: [&str; 2] = ["INBOX", "Zeta"];

fn folder_messages(tag: &str) -> Vec<Vec<u8>> {
    (1..=2)
        .map(|i| {
            format!(
                "From: a@example.com\r\nTo: b@example.com\r\nSubject: {tag} {i}\r\n\
                 Message-ID: <{tag}.{i}@example.com>\r\n\r\nbody of {tag} {i}\r\n"
            )
            .into_bytes()
        })
        .collect()
}

/// Runs a sync against a fake server whose folder `Bad` (between `INBOX`
/// and `Zeta`) answers with `fault`. Returns the home, the account, the
/// run's output and how long it took.
fn with_fault(fault: Fault) -> (TempHome, FakeImap, i64, Output, Duration) {
    let folders = vec![
        FakeFolder::new(b"INBOX", &folder_messages("INBOX")),
        FakeFolder::new(b"Bad", &folder_messages("Bad")).with_fault(fault),
        FakeFolder::new(b"Zeta", &folder_messages("Zeta")),
    ];
    let fake = FakeImap::start(FakeImapOptions {
        folders,
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    // One connection: the folders go in order INBOX, Bad, Zeta on it (and
    // on its one reconnect), the hardest case for Zeta.
    home.write_config(
        "<?php define('BG_IO_TIMEOUT', 2); define('BG_MAX_CONNECTIONS_PER_ACCOUNT', 1);",
    );
    let acntid = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    let (out, took, _) = run_bounded(&home, &[], &[], Duration::from_secs(40));
    assert_no_panic(&home, &out);
    assert!(fake.stderr().is_empty(), "fake server: {}", fake.stderr());
    (home, fake, acntid, out, took)
}

/// The good folders hold their messages byte-exact.
fn assert_good_folders_synced(home: &TempHome, acntid: i64) {
    for name in GOOD {
        let got = stored(home, emfdid(home, acntid, name));
        let want = folder_messages(name);
        assert_eq!(
            got.iter().map(|m| m.1.clone()).collect::<Vec<_>>(),
            want,
            "{name} not synced\n{}",
            home.log("l-debug.log")
        );
    }
}

fn folder_error(home: &TempHome, acntid: i64, name: &str) -> Option<String> {
    db(home)
        .query_row(
            "SELECT last_error FROM email_folders WHERE acntid = ? AND name = ?",
            crate::params![acntid, name],
            |r| r.get(0),
        )
        .optional()
        .expect("query")
        .flatten()
}

/// The fault failed `Bad` only: exit 75, its `last_error` says `words`
/// (each), the other folders are synced and have no error.
fn assert_bad_failed_alone(fault: Fault, words: &[&str], max: Duration) {
    let (home, _fake, acntid, out, took) = with_fault(fault);
    assert_eq!(
        out.status.code(),
        Some(75),
        "stderr {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        home.log("l-debug.log")
    );
    assert!(took < max, "took {took:?}");
    let err = folder_error(&home, acntid, "Bad")
        .unwrap_or_else(|| panic!("no last_error on Bad\n{}", home.log("l-debug.log")));
    for w in words {
        assert!(err.contains(w), "last_error {err:?} lacks {w:?}");
    }
    assert!(err.len() < 600, "last_error too long: {err}");
    assert!(
        err.chars().all(|c| !c.is_control()),
        "control characters in last_error: {err:?}"
    );
    assert_good_folders_synced(&home, acntid);
    for name in GOOD {
        assert_eq!(folder_error(&home, acntid, name), None, "{name}");
    }
    assert!(
        stored(&home, emfdid(&home, acntid, "Bad")).is_empty(),
        "a message of a failed fetch was stored"
    );
    let te = home.log("l-threading-error.txt");
    let id = emfdid(&home, acntid, "Bad");
    assert!(
        te.contains(&format!("[{acntid},{id}]")) || te.contains(&format!("[{acntid},]")),
        "the failure is not in l-threading-error.txt:\n{te}"
    );
}

#[test]
fn garbage_after_a_literal_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 RFC822.SIZE 5 BODY[] {5}\r\nhello garbage \"((\r\n",
            Then::Ok,
        ),
        &["cannot understand the server's reply to UID FETCH"],
        Duration::from_secs(15),
    );
}

#[test]
fn an_unbalanced_parenthesis_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 FLAGS (\\Seen BODY[] {5}\r\nhello\r\n",
            Then::Ok,
        ),
        &["cannot understand", "unterminated list"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_fetch_without_uid_fails_that_folder_instead_of_losing_the_message() {
    // Regression: a FETCH response without UID was taken for an unsolicited
    // flag update and skipped, the batch committed and last_uid moved past
    // the message: it was never stored and never fetched again.
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (RFC822.SIZE 5 FLAGS () BODY[] {5}\r\nhello)\r\n\
* 2 FETCH (RFC822.SIZE 5 FLAGS () BODY[] {5}\r\nhello)\r\n",
            Then::Ok,
        ),
        &["without its UID"],
        Duration::from_secs(15),
    );
}

#[test]
fn an_index_without_uids_fails_that_folder_instead_of_skipping_its_messages() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Index,
            b"* 1 FETCH (RFC822.SIZE 5 FLAGS ())\r\n* 2 FETCH (RFC822.SIZE 5 FLAGS ())\r\n",
            Then::Ok,
        ),
        &["without its UID"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_nil_body_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 RFC822.SIZE 5 BODY[] NIL)\r\n",
            Then::Ok,
        ),
        &["no content (NIL) for message UID 1"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_message_number_beyond_u32_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 99999999999 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n",
            Then::Ok,
        ),
        &["message number too large"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_million_nested_parentheses_fail_that_folder_without_crashing() {
    // Regression: the parser recursed per '(' and overflowed the worker's
    // stack: SIGSEGV, the whole run gone, no log line, no outcome recorded.
    let send = [
        b"* 1 FETCH (UID 1 X ".as_slice(),
        &b"(".repeat(1_000_000),
        b"\r\n",
    ]
    .concat();
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, &send, Then::Ok),
        &["cannot understand", "nested too deeply"],
        Duration::from_secs(15),
    );
}

#[test]
fn an_absurd_literal_length_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 BODY[] {99999999999}\r\nabc",
            Then::Stall,
        ),
        &["announced a literal of 99999999999 bytes"],
        Duration::from_secs(15),
    );
}

#[test]
fn an_unexpected_continuation_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, b"+ more please\r\n", Then::Ok),
        &["unexpected continuation request during UID FETCH"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_refused_fetch_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, b"", Then::No),
        &["UID FETCH failed", "the server failed"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_refused_examine_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(FaultOn::Examine, b"", Then::No),
        &["cannot open folder 'Bad'"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_response_line_over_64_mib_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, b"* OK ", Then::Stall).repeated(b"a", 65 << 20),
        &["a response line longer than 64 MiB"],
        Duration::from_secs(20),
    );
}

#[test]
fn a_literal_longer_than_the_data_then_close_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 BODY[] {100000}\r\nshort",
            Then::Close,
        ),
        &["closed the connection during UID FETCH"],
        Duration::from_secs(15),
    );
}

#[test]
fn ten_mb_without_crlf_then_close_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, b"* OK ", Then::Close).repeated(b"a", 10 << 20),
        &["closed the connection during UID FETCH"],
        Duration::from_secs(15),
    );
}

#[test]
fn ten_mb_without_crlf_then_silence_fails_that_folder_within_two_timeouts() {
    // BG_IO_TIMEOUT is 2 s: the folder's two attempts cost about 4 s.
    assert_bad_failed_alone(
        Fault::new(FaultOn::Body, b"* OK ", Then::Stall).repeated(b"a", 10 << 20),
        &["no answer for 2 s during UID FETCH"],
        Duration::from_secs(15),
    );
}

#[test]
fn a_bye_in_the_middle_of_a_fetch_fails_that_folder_only() {
    assert_bad_failed_alone(
        Fault::new(
            FaultOn::Body,
            b"* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n* BYE shutting down for maintenance\r\n",
            Then::Close,
        ),
        &[
            "closed the connection during UID FETCH",
            "shutting down for maintenance",
        ],
        Duration::from_secs(15),
    );
}

#[test]
fn an_absurd_exists_count_is_ignored_and_every_folder_syncs() {
    let (home, _fake, acntid, out, _) = with_fault(Fault::new(
        FaultOn::Examine,
        b"* FLAGS (\\Seen)\r\n* 99999999999 EXISTS\r\n* OK [UIDVALIDITY 1000] x\r\n\
* OK [UIDNEXT 3] x\r\n",
        Then::Ok,
    ));
    assert_eq!(out.status.code(), Some(0), "{}", home.log("l-debug.log"));
    assert_good_folders_synced(&home, acntid);
    let got = stored(&home, emfdid(&home, acntid, "Bad"));
    assert_eq!(
        got.into_iter().map(|m| m.1).collect::<Vec<_>>(),
        folder_messages("Bad")
    );
    assert!(home
        .log("l-debug.log")
        .contains("ignored an unparsable response (message number too large"));
}

// ---------------------------------------------------------------------------
// folder names

#[test]
fn odd_folder_names_are_synced_or_skipped_with_a_clear_log_line() {
    // (wire name as the server sends it, the UTF-8 name expected in `name`;
    // None: cannot be stored and must be skipped)
    let names: Vec<(&[u8], Option<&str>)> = vec![
        (b"INBOX", Some("INBOX")),
        (b"a \"quoted\" name", Some("a \"quoted\" name")),
        (b"back\\slash", Some("back\\slash")),
        (b"star*", Some("star*")),
        (b"pct%", Some("pct%")),
        (b"Faktury/Za&AXwA8wFCAQc-", Some("Faktury/Zażółć")),
        // raw UTF-8 (a server with UTF8=ACCEPT habits): kept as sent
        ("Zażółć".as_bytes(), Some("Zażółć")),
        // invalid modified UTF-7: shown as sent
        (b"bad&name", Some("bad&name")),
        (b"&AEE-", Some("&AEE-")),
        // a line break hidden in modified UTF-7
        (b"new&AAo-line", Some("new\nline")),
        (
            b"x'; DROP TABLE email_messages; --",
            Some("x'; DROP TABLE email_messages; --"),
        ),
        // not UTF-8 at all: cannot be a key of ours
        (b"latin\xb1\xbf", None),
    ];
    let folders: Vec<FakeFolder> = names
        .iter()
        .enumerate()
        .map(|(i, (wire, _))| {
            FakeFolder::new(
                wire,
                &[format!("Subject: folder {i}\r\n\r\nbody {i}\r\n").into_bytes()],
            )
        })
        .collect();
    let fake = FakeImap::start(FakeImapOptions {
        folders,
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 5);");
    let acntid = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    let (out, _, _) = run_bounded(&home, &[], &[], Duration::from_secs(30));
    assert_no_panic(&home, &out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        home.log("l-debug.log"),
        fake.stderr()
    );
    for (i, (wire, name)) in names.iter().enumerate() {
        let row: Option<(i64, String)> = db(&home)
            .query_row(
                "SELECT emfdid, name FROM email_folders WHERE acntid = ? AND imap_name = ?",
                crate::params![acntid, String::from_utf8_lossy(wire)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .expect("query");
        match name {
            Some(name) => {
                let (id, got) = row.unwrap_or_else(|| {
                    panic!(
                        "folder {:?} not discovered\n{}",
                        String::from_utf8_lossy(wire),
                        home.log("l-debug.log")
                    )
                });
                assert_eq!(&got, name);
                let msgs = stored(&home, id);
                assert_eq!(msgs.len(), 1, "{name:?} not synced");
                assert_eq!(
                    msgs[0].1,
                    format!("Subject: folder {i}\r\n\r\nbody {i}\r\n").into_bytes()
                );
            }
            None => assert!(row.is_none(), "{wire:?} stored"),
        }
    }
    let folders: i64 = db(&home)
        .query_row("SELECT COUNT(*) FROM email_folders", [], |r| r.get(0))
        .expect("count");
    assert_eq!(folders as usize, names.len() - 1);
    let debug = home.log("l-debug.log");
    assert!(
        debug
            .lines()
            .any(|l| l.contains("skipped") && l.contains("latin") && l.contains("not valid UTF-8")),
        "no clear line about the skipped folder:\n{debug}"
    );
    // A name with a line break cannot forge a log line.
    for log in ["l-debug.log", "l-info.log"] {
        for l in home.log(log).lines() {
            assert!(l.starts_with('['), "{log}: a line of its own: {l:?}");
        }
    }
}

#[test]
fn a_garbled_list_response_keeps_the_known_folders_syncing() {
    // First run: a healthy LIST. Second run: LIST breaks in the middle; the
    // folders already known are still synced.
    let fake = FakeImap::start(FakeImapOptions {
        folders: vec![
            FakeFolder::new(b"INBOX", &folder_messages("INBOX")),
            FakeFolder::new(b"Zeta", &folder_messages("Zeta")),
        ],
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 2);");
    let acntid = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    let (out, _, _) = run_bounded(&home, &[], &[], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", home.log("l-debug.log"));
    assert_good_folders_synced(&home, acntid);
    drop(fake);

    let mut inbox = FakeFolder::new(b"INBOX", &folder_messages("INBOX"));
    inbox.messages.push(support::FakeMessage {
        uid: 3,
        raw: b"Subject: new\r\n\r\nnew\r\n".to_vec(),
        flags: String::new(),
    });
    let broken = FakeImap::start(FakeImapOptions {
        folders: vec![
            inbox,
            FakeFolder::new(b"Zeta", &folder_messages("Zeta")).with_fault(Fault::new(
                FaultOn::List,
                b"* LIST (\\X \"/\" \"unterminated\r\n* LIST ((( garbage\r\n",
                Then::Ok,
            )),
        ],
        ..FakeImapOptions::default()
    });
    db(&home)
        .execute(
            "UPDATE email_accounts SET imap_port = ? WHERE acntid = ?",
            crate::params![broken.port(), acntid],
        )
        .expect("move the account");
    let (out, _, _) = run_bounded(&home, &["--force"], &[], Duration::from_secs(30));
    assert_no_panic(&home, &out);
    let id = emfdid(&home, acntid, "INBOX");
    assert_eq!(
        stored(&home, id).len(),
        3,
        "the new message was not fetched\n{}",
        home.log("l-debug.log")
    );
}

#[test]
fn a_flag_check_answered_without_uids_deletes_nothing() {
    // Regression: a full sync without CONDSTORE compares every message's
    // flags; answers without UID were skipped, so every stored message
    // looked expunged and was deleted from the store.
    let fake = FakeImap::start(FakeImapOptions {
        folders: vec![FakeFolder::new(b"INBOX", &folder_messages("INBOX"))],
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 2);");
    let acntid = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    let (out, _, _) = run_bounded(&home, &[], &[], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", home.log("l-debug.log"));
    drop(fake);

    let broken = FakeImap::start(FakeImapOptions {
        folders: vec![
            FakeFolder::new(b"INBOX", &folder_messages("INBOX")).with_fault(Fault::new(
                FaultOn::Index,
                b"* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS ())\r\n",
                Then::Ok,
            )),
        ],
        ..FakeImapOptions::default()
    });
    db(&home)
        .execute(
            "UPDATE email_accounts SET imap_port = ? WHERE acntid = ?",
            crate::params![broken.port(), acntid],
        )
        .expect("move the account");
    let (out, _, _) = run_bounded(&home, &["--force"], &[], Duration::from_secs(30));
    assert_no_panic(&home, &out);
    assert!(
        broken.command_names().iter().any(|c| c == "UID FETCH"),
        "no flag check happened"
    );
    assert_folder_holds(&home, acntid, "INBOX");
    assert!(home
        .log("l-debug.log")
        .contains("FETCH responses without UID"));
}

/// `name` holds its two messages byte-exact.
fn assert_folder_holds(home: &TempHome, acntid: i64, name: &str) {
    let got = stored(home, emfdid(home, acntid, name));
    assert_eq!(
        got.into_iter().map(|m| m.1).collect::<Vec<_>>(),
        folder_messages(name),
        "{}",
        home.log("l-debug.log")
    );
}
