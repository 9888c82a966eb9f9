//! The send side end to end (SPEC §8): `engine outbox add` or a row the web
//! app inserts → `engine run` → a real SMTP server (Postfix delivering into
//! Dovecot over LMTP, or a scripted aiosmtpd for 4xx/5xx on cue, or a server
//! that never answers) → the recipient's INBOX and the sender's Sent folder,
//! checked over IMAP by Message-ID with the independent ImapTool.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::engine::{
    add_account_smtp, add_account_with, db, engine, outbox_add, queue, run, Side,
};
use support::{
    wait_until, Dovecot, ImapTool, Postfix, ScriptedSmtp, ScriptedSmtpOptions, SilentServer,
    SmtpRules, SmtpTls, TempHome,
};

/// How often a run polls the outbox while its sync goes on (src/outbox/mod.rs).
const POLL_SECS: i64 = 5;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A home whose config trusts the Dovecot's CA; `extra` goes first, so it
/// wins over the defaults written after it.
fn setup(dovecot: &Dovecot, extra: &str) -> TempHome {
    let home = TempHome::new();
    write_config(&home, dovecot, extra);
    home
}

fn write_config(home: &TempHome, dovecot: &Dovecot, extra: &str) {
    home.write_config(&format!(
        "<?php\n{extra}\ndefine('BG_TLS_CA_FILE', '{}');\ndefine('BG_IO_TIMEOUT', 10);\n",
        dovecot.ca_file().display()
    ));
}

/// `user@example.com`: IMAP on the Dovecot (implicit TLS, the real
/// password), SMTP as given.
fn account(
    home: &TempHome,
    dovecot: &Dovecot,
    user: &str,
    smtp_security: &str,
    smtp_port: u16,
    smtp_password: &str,
) -> i64 {
    let imap_password = dovecot.password(user);
    add_account_smtp(
        home,
        user,
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &imap_password,
        },
        Side {
            security: smtp_security,
            port: smtp_port,
            password: smtp_password,
        },
    )
}

fn mail(from: &str, to: &str, id: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {to}\r\n{extra_headers}Subject: test {id}\r\n\
         Message-ID: <{id}>\r\nDate: Sun, 29 Nov 2026 08:00:00 +0100\r\n\r\n\
         Hello,\r\nthis is {id}.\r\n"
    )
    .into_bytes()
}

#[derive(Debug)]
struct Row {
    state: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<i64>,
    message_id: Option<String>,
    sent_copy: Option<String>,
    sent_copy_error: Option<String>,
    raw: Option<Vec<u8>>,
}

fn row(home: &TempHome, emoid: i64) -> Row {
    db(home)
        .query_row(
            "SELECT state, attempts, next_attempt_at, last_error, sent_at, message_id, \
             sent_copy, sent_copy_error, CAST(raw AS BLOB) FROM email_outbox WHERE emoid = ?",
            [emoid],
            |r| {
                Ok(Row {
                    state: r.get(0)?,
                    attempts: r.get(1)?,
                    next_attempt_at: r.get(2)?,
                    last_error: r.get(3)?,
                    sent_at: r.get(4)?,
                    message_id: r.get(5)?,
                    sent_copy: r.get(6)?,
                    sent_copy_error: r.get(7)?,
                    raw: r.get(8)?,
                })
            },
        )
        .unwrap_or_else(|e| panic!("outbox row {emoid}: {e}"))
}

/// (address, state) of a message's recipients.
fn rcpts(home: &TempHome, emoid: i64) -> Vec<(String, String)> {
    let c = db(home);
    let mut s = c
        .prepare("SELECT addr, state FROM email_outbox_rcpts WHERE emoid = ? ORDER BY addr")
        .expect("prepare");
    s.query_map([emoid], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Messages in `folder` carrying `Message-ID: <id>`, as (raw, flags); none
/// when the folder does not exist.
fn with_id(imap: &ImapTool, folder: &str, id: &str) -> Vec<(Vec<u8>, String)> {
    if !imap.list_folders().iter().any(|f| f == folder) {
        return Vec::new();
    }
    let header = format!("Message-ID: <{id}>");
    imap.fetch_raw_all(folder)
        .into_iter()
        .filter(|(_, raw, _)| contains(raw, &header))
        .map(|(_, raw, flags)| (raw, flags))
        .collect()
}

/// Lines of `log` that mention `message emoid=N ` (one per outcome).
fn lines_about(log: &str, emoid: i64) -> Vec<String> {
    let tag = format!("message emoid={emoid} ");
    log.lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

fn assert_no_secret(home: &TempHome, secrets: &[&str]) {
    for log in ["l-debug.log", "l-info.log", "l-threading-error.txt"] {
        let text = home.log(log);
        for s in secrets {
            assert!(!text.contains(s), "password '{s}' in {log}");
        }
    }
}

fn whole_loop_through_postfix_into_dovecot_with_sent_copies() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let home = setup(&dovecot, "");
    // submission: STARTTLS + AUTH through Dovecot's SASL; smtps: implicit TLS
    let alice = account(
        &home,
        &dovecot,
        "alice",
        "starttls",
        postfix.submission_port(),
        &dovecot.password("alice"),
    );
    let dave = account(
        &home,
        &dovecot,
        "dave",
        "tls",
        postfix.smtps_port(),
        &dovecot.password("dave"),
    );
    let m1 = queue(
        &home,
        alice,
        &mail(
            "Alice <alice@example.com>",
            "bob@example.com",
            "loop1@test.example.com",
            "Cc: Carol <carol@example.com>\r\n",
        ),
    );
    // no Message-ID: the engine makes one, the same on the wire and in Sent
    let m2 = queue(
        &home,
        dave,
        b"From: dave@example.com\r\nTo: bob@example.com\r\nSubject: no id\r\n\r\nbody\r\n",
    );
    run(&home, &[], 0);

    let r1 = row(&home, m1);
    assert_eq!(
        (r1.state.as_str(), r1.attempts, r1.last_error.as_deref()),
        ("sent", 1, None),
        "{r1:?}"
    );
    assert_eq!(r1.sent_copy.as_deref(), Some("done"), "{r1:?}");
    let r2 = row(&home, m2);
    assert_eq!(r2.state, "sent", "{r2:?}");
    let id2 = r2.message_id.expect("a Message-ID was made");
    assert!(id2.ends_with("@example.com"), "{id2}");

    let bob = dovecot.imap("bob");
    let carol = dovecot.imap("carol");
    assert!(
        wait_until(Duration::from_secs(15), || {
            with_id(&bob, "INBOX", "loop1@test.example.com").len() == 1
                && with_id(&bob, "INBOX", &id2).len() == 1
                && with_id(&carol, "INBOX", "loop1@test.example.com").len() == 1
        }),
        "not delivered\npostfix log:\n{}",
        postfix.log_contents()
    );
    let sent = with_id(&dovecot.imap("alice"), "Sent", "loop1@test.example.com");
    assert_eq!(sent.len(), 1, "alice's Sent copy");
    assert!(sent[0].1.contains("\\Seen"), "flags {}", sent[0].1);
    assert_eq!(with_id(&dovecot.imap("dave"), "Sent", &id2).len(), 1);

    let info = home.log("l-info.log");
    for (m, k, acntid) in [(m1, 2, alice), (m2, 1, dave)] {
        let lines = lines_about(&info, m);
        assert_eq!(lines.len(), 1, "one line per message:\n{info}");
        assert!(
            lines[0].ends_with(&format!(
                "sent message emoid={m} to {k} recipients [{acntid},]"
            )),
            "{info}"
        );
    }

    // another run sends nothing again and stores no second copy
    run(&home, &["--no-sync"], 0);
    let info = home.log("l-info.log");
    assert_eq!(lines_about(&info, m1).len(), 1, "{info}");
    assert_eq!(lines_about(&info, m2).len(), 1, "{info}");
    assert_eq!(
        with_id(&dovecot.imap("alice"), "Sent", "loop1@test.example.com").len(),
        1
    );
    assert_no_secret(
        &home,
        &[&dovecot.password("alice"), &dovecot.password("dave")],
    );
}

fn one_authenticated_starttls_connection_serves_all_due_messages_of_an_account() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::RequireStartTls,
        ca: Some(dovecot.ca().clone()),
        auth: Some(("alice".into(), "smtp-only-secret".into())),
        auth_required: true,
        ..Default::default()
    });
    let home = setup(&dovecot, "");
    let a = account(
        &home,
        &dovecot,
        "alice",
        "starttls",
        smtp.port(),
        "smtp-only-secret",
    );
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            queue(
                &home,
                a,
                &mail(
                    "alice@example.com",
                    "x@example.org",
                    &format!("conn{i}@test"),
                    "",
                ),
            )
        })
        .collect();
    run(&home, &["--no-sync"], 0);
    let got = smtp.received();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|r| r.tls && r.authenticated), "{got:?}");
    let auths: Vec<_> = smtp
        .events()
        .into_iter()
        .filter(|e| e.event == "auth")
        .collect();
    assert_eq!(auths.len(), 1, "one login for five messages: {auths:?}");
    assert_eq!(auths[0].reply, "ok");
    for id in ids {
        assert_eq!(row(&home, id).state, "sent");
    }
    assert_no_secret(&home, &["smtp-only-secret", &dovecot.password("alice")]);
}

fn one_rejected_recipient_does_not_stop_the_others_and_a_retry_goes_only_to_the_pending() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::with_rules(
        SmtpRules::default()
            .rcpt("b@example.org", "451 4.2.0 mailbox busy, try later")
            .rcpt("c@example.org", "550 5.1.1 no such user here"),
    );
    let home = setup(&dovecot, "define('EMAIL_OUTBOX_RETRY_MIN', 60);");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let id = queue(
        &home,
        a,
        &mail(
            "alice@example.com",
            "a@example.org, b@example.org",
            "rcpt1@test",
            "Cc: c@example.org\r\n",
        ),
    );
    let t0 = unix_now();
    run(&home, &["--no-sync"], 75);
    let t1 = unix_now();
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["a@example.org"]);
    let r = row(&home, id);
    assert_eq!((r.state.as_str(), r.attempts), ("queued", 1), "{r:?}");
    let next = r.next_attempt_at.expect("next_attempt_at");
    assert!((t0 + 60..=t1 + 60).contains(&next), "{next} vs {t0}..{t1}");
    let err = r.last_error.expect("last_error");
    assert!(
        err.contains("c@example.org") && err.contains("550") && err.contains("no such user here"),
        "{err}"
    );
    assert!(err.contains("451"), "{err}");
    assert_eq!(
        rcpts(&home, id),
        pairs(&[
            ("a@example.org", "sent"),
            ("b@example.org", "pending"),
            ("c@example.org", "failed")
        ])
    );
    let info = home.log("l-info.log");
    assert!(
        info.lines()
            .any(|l| l.contains(&format!("message emoid={id} not sent yet"))
                && l.ends_with(&format!("[{a},]"))),
        "{info}"
    );

    // not due yet: nothing is tried
    run(&home, &["--no-sync"], 0);
    assert_eq!(smtp.rcpt_attempts().len(), 3);

    // the backoff has passed and b's mailbox takes mail again
    smtp.set_rules(&SmtpRules::default().rcpt("c@example.org", "550 5.1.1 no such user here"));
    db(&home)
        .execute(
            "UPDATE email_outbox SET next_attempt_at = ? WHERE emoid = ?",
            params![unix_now() - 1, id],
        )
        .expect("make due");
    run(&home, &["--no-sync"], 0);
    assert_eq!(
        smtp.rcpt_attempts(),
        vec![
            "a@example.org",
            "b@example.org",
            "c@example.org",
            "b@example.org"
        ],
        "the retry goes to b alone"
    );
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_to, vec!["b@example.org"]);
    let r = row(&home, id);
    assert_eq!((r.state.as_str(), r.attempts), ("sent", 2), "{r:?}");
    assert!(r.sent_at.is_some());
    let err = r.last_error.expect("the rejected address stays named");
    assert!(
        err.contains("c@example.org") && err.contains("no such user here"),
        "{err}"
    );
    assert_eq!(r.sent_copy.as_deref(), Some("done"));
    assert_eq!(
        rcpts(&home, id),
        pairs(&[
            ("a@example.org", "sent"),
            ("b@example.org", "sent"),
            ("c@example.org", "failed")
        ])
    );
}

fn a_permanent_rejection_fails_the_message_with_the_servers_reply() {
    let dovecot = Dovecot::start();
    let smtp =
        ScriptedSmtp::with_rules(SmtpRules::default().data("554 5.7.1 refused as spam, sorry"));
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let id = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "spam1@test", ""),
    );
    run(&home, &["--no-sync"], 75);
    let r = row(&home, id);
    assert_eq!((r.state.as_str(), r.attempts), ("failed", 1), "{r:?}");
    let err = r.last_error.expect("last_error");
    assert!(
        err.contains("554") && err.contains("refused as spam, sorry"),
        "{err}"
    );
    assert_eq!(r.sent_copy, None, "no Sent copy of a message nobody got");
    let errors = home.log("l-threading-error.txt");
    assert!(
        lines_about(&errors, id)
            .iter()
            .any(|l| l.contains("failed") && l.ends_with(&format!("[{a},]"))),
        "{errors}"
    );
    // failed is final: later runs leave it alone
    run(&home, &["--no-sync"], 0);
    assert!(smtp.received().is_empty());
    assert_eq!(
        smtp.events().iter().filter(|e| e.event == "data").count(),
        1
    );
}

fn temporary_failures_back_off_exponentially_between_min_and_max() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::with_rules(SmtpRules::default().mail_from("451 4.3.0 try later"));
    let home = setup(
        &dovecot,
        "define('EMAIL_OUTBOX_RETRY_MIN', 100);\ndefine('EMAIL_OUTBOX_RETRY_MAX', 350);",
    );
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let id = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "backoff@test", ""),
    );
    for (attempt, delay) in [(1, 100), (2, 200), (3, 350), (4, 350)] {
        let t0 = unix_now();
        run(&home, &["--no-sync"], 75);
        let t1 = unix_now();
        let r = row(&home, id);
        assert_eq!((r.state.as_str(), r.attempts), ("queued", attempt), "{r:?}");
        let next = r.next_attempt_at.expect("next_attempt_at");
        assert!(
            (t0 + delay..=t1 + delay).contains(&next),
            "attempt {attempt}: next_attempt_at {next}, expected {t0}..{t1} + {delay}"
        );
        assert!(r.last_error.as_deref().is_some_and(|e| e.contains("451")));
        // time passes
        db(&home)
            .execute(
                "UPDATE email_outbox SET next_attempt_at = ? WHERE emoid = ?",
                params![unix_now() - 1, id],
            )
            .expect("make due");
    }
    assert!(smtp.received().is_empty());
}

fn past_its_lifetime_a_temporarily_failing_message_fails_for_good() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::with_rules(
        SmtpRules::default().rcpt("x@example.org", "452 4.2.2 mailbox full"),
    );
    let home = setup(&dovecot, "define('EMAIL_OUTBOX_LIFETIME', 600);");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let old = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "old@test", ""),
    );
    let young = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "young@test", ""),
    );
    db(&home)
        .execute(
            "UPDATE email_outbox SET created_at = ? WHERE emoid = ?",
            params![unix_now() - 1000, old],
        )
        .expect("age the message");
    run(&home, &["--no-sync"], 75);
    let r = row(&home, old);
    assert_eq!(r.state, "failed", "{r:?}");
    let err = r.last_error.expect("last_error");
    assert!(
        err.contains("EMAIL_OUTBOX_LIFETIME") && err.contains("mailbox full"),
        "{err}"
    );
    assert_eq!(rcpts(&home, old), pairs(&[("x@example.org", "failed")]));
    let r = row(&home, young);
    assert_eq!((r.state.as_str(), r.attempts), ("queued", 1), "{r:?}");
}

fn bcc_is_not_on_the_wire_but_its_recipients_get_the_envelope() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let raw = b"From: Boss <boss@example.com>\r\nSender: alice@example.com\r\n\
        To: to@example.org\r\nBcc: hidden1@example.org,\r\n  Hidden Two <hidden2@example.org>\r\n\
        Subject: bcc\r\nMessage-ID: <bcc1@test>\r\n\r\nSee: Bcc: in the body stays.\r\n";
    let id = queue(&home, a, raw);
    run(&home, &["--no-sync"], 0);
    let got = smtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "alice@example.com", "Sender wins");
    let mut to = got[0].rcpt_to.clone();
    to.sort();
    assert_eq!(
        to,
        vec![
            "hidden1@example.org",
            "hidden2@example.org",
            "to@example.org"
        ]
    );
    let data = String::from_utf8_lossy(&got[0].data);
    assert!(
        !data.to_ascii_lowercase().contains("\nbcc:") && !data.contains("hidden"),
        "Bcc leaked:\n{data}"
    );
    assert!(
        data.contains("\r\nSee: Bcc: in the body stays.\r\n"),
        "{data}"
    );
    assert!(data.starts_with("From: Boss <boss@example.com>\r\nSender: alice@example.com\r\nTo: to@example.org\r\nSubject: bcc\r\n"), "{data}");
    // the sender's own copy keeps the Bcc, as mail clients do
    let sent = with_id(&dovecot.imap("alice"), "Sent", "bcc1@test");
    assert_eq!(sent.len(), 1);
    assert!(contains(&sent[0].0, "Bcc: hidden1@example.org"));
    assert_eq!(row(&home, id).raw.as_deref(), Some(&raw[..]));
}

fn bare_lf_goes_out_as_crlf_and_the_queued_bytes_stay_as_they_were() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let lf: &[u8] = b"From: alice@example.com\nTo: x@example.org\nSubject: lf\n\
        Message-ID: <lf1@test>\n\nline one\n.\n..two dots\n.leading dot\nlast line\n";
    let no_eol: &[u8] =
        b"From: alice@example.com\nTo: x@example.org\nMessage-ID: <lf2@test>\n\nno line end";
    let m1 = queue(&home, a, lf);
    let m2 = queue(&home, a, no_eol);
    run(&home, &["--no-sync"], 0);
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        String::from_utf8_lossy(&got[0].data),
        "From: alice@example.com\r\nTo: x@example.org\r\nSubject: lf\r\n\
         Message-ID: <lf1@test>\r\n\r\nline one\r\n.\r\n..two dots\r\n.leading dot\r\nlast line\r\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&got[1].data),
        "From: alice@example.com\r\nTo: x@example.org\r\nMessage-ID: <lf2@test>\r\n\r\nno line end\r\n"
    );
    assert_eq!(row(&home, m1).raw.as_deref(), Some(lf), "raw was changed");
    assert_eq!(row(&home, m2).raw.as_deref(), Some(no_eol));
}

fn bad_messages_are_refused_at_queueing_with_exit_65_and_nothing_queued() {
    let dovecot = Dovecot::start();
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", 25, "x");
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty", b"", "empty"),
        ("not_a_message", b"hello world\nsecond line\n", "not 'Name: value'"),
        (
            "no_from",
            b"To: x@example.org\r\nSubject: s\r\n\r\nb\r\n",
            "no From",
        ),
        (
            "no_recipient",
            b"From: alice@example.com\r\nSubject: s\r\n\r\nb\r\n",
            "no recipient",
        ),
        (
            "bare_cr_injection",
            b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: hi\rBcc: evil@example.org\r\n\r\nb\r\n",
            "CR",
        ),
        (
            "bare_lf_injection_in_a_crlf_header",
            b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: hi\nBcc: evil@example.org\r\n\r\nb\r\n",
            "LF",
        ),
        (
            "nul_in_header",
            b"From: alice@example.com\r\nTo: x@exa\0mple.org\r\n\r\nb\r\n",
            "NUL",
        ),
        (
            "unparsable_to",
            b"From: alice@example.com\r\nTo: not an address\r\n\r\nb\r\n",
            "To",
        ),
        (
            "line_without_colon",
            b"From: alice@example.com\r\nTo: x@example.org\r\nnot a header\r\n\r\nb\r\n",
            "not 'Name: value'",
        ),
    ];
    for (name, raw, why) in cases {
        let out = outbox_add(&home, a, raw);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{name}: {err}");
        assert!(
            err.contains("refused") && err.contains(why),
            "{name}: {err}"
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
    let out = outbox_add(
        &home,
        999,
        &mail("alice@example.com", "x@example.org", "acct@test", ""),
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account 999"));

    let list = engine(&home, &["outbox", "list", "--json"]);
    assert!(list.status.success());
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(v, serde_json::json!([]), "something was queued");
    let n: i64 = db(&home)
        .query_row("SELECT COUNT(*) FROM email_outbox_rcpts", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0);
}

fn rows_the_web_app_inserts_are_checked_alike_and_bad_ones_fail_with_a_reason() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let c = db(&home);
    let insert = |acntid: i64, raw: support::db::Val| -> i64 {
        c.execute(
            "INSERT INTO email_outbox (acntid, raw) VALUES (?, ?)",
            params![acntid, raw],
        )
        .expect("insert");
        c.last_insert_rowid()
    };
    use support::db::Val::{Blob, Null, Text};
    let good_blob = insert(
        a,
        Blob(mail(
            "alice@example.com",
            "x@example.org",
            "direct1@test",
            "",
        )),
    );
    // PHP binds strings: raw arrives as TEXT
    let good_text = insert(
        a,
        Text(
            String::from_utf8(mail(
                "alice@example.com",
                "y@example.org",
                "direct2@test",
                "",
            ))
            .expect("utf8"),
        ),
    );
    let no_from = insert(a, Blob(b"To: x@example.org\r\n\r\nb\r\n".to_vec()));
    let injected = insert(
        a,
        Blob(b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: a\rBcc: e@example.org\r\n\r\nb".to_vec()),
    );
    let no_account = insert(
        4242,
        Blob(mail(
            "alice@example.com",
            "x@example.org",
            "direct3@test",
            "",
        )),
    );
    let null_raw = insert(a, Null);
    // envelope given by the web app: it wins over the header
    c.execute(
        "INSERT INTO email_outbox (acntid, raw, mail_from, rcpt_to) VALUES (?, ?, ?, ?)",
        params![
            a,
            mail("alice@example.com", "x@example.org", "direct4@test", ""),
            "bounces@example.com",
            "z1@example.org, z2@example.org"
        ],
    )
    .expect("insert");
    let with_envelope = c.last_insert_rowid();
    c.execute(
        "INSERT INTO email_outbox (acntid, raw, rcpt_to) VALUES (?, ?, ?)",
        params![
            a,
            mail("alice@example.com", "x@example.org", "direct5@test", ""),
            "not an address"
        ],
    )
    .expect("insert");
    let bad_rcpt = c.last_insert_rowid();
    // odd values where numbers belong (PostgreSQL's BIGINT columns take
    // none: there the web app can only leave them out)
    let odd = match c.store() {
        support::Store::Sqlite => "'yesterday', 'now'",
        support::Store::Postgres => "NULL, NULL",
    };
    c.execute(
        &format!("INSERT INTO email_outbox (acntid, raw, created_at, next_attempt_at) VALUES (?, ?, {odd})"),
        params![a, mail("alice@example.com", "w@example.org", "direct6@test", "")],
    )
    .expect("insert");
    let odd_times = c.last_insert_rowid();
    drop(c);

    run(&home, &["--no-sync"], 75);
    for (emoid, why) in [
        (no_from, "no From"),
        (injected, "CR"),
        (no_account, "account 4242"),
        (null_raw, "empty"),
        (bad_rcpt, "not an address"),
    ] {
        let r = row(&home, emoid);
        assert_eq!(r.state, "failed", "{emoid}: {r:?}");
        let err = r.last_error.unwrap_or_default();
        assert!(err.contains(why), "{emoid}: {err}");
    }
    for emoid in [good_blob, good_text, with_envelope, odd_times] {
        let r = row(&home, emoid);
        assert_eq!(r.state, "sent", "{emoid}: {r:?}");
    }
    let got = smtp.received();
    let find = |id: &str| {
        got.iter()
            .find(|r| contains(&r.data, &format!("<{id}>")))
            .unwrap_or_else(|| panic!("{id} not received"))
    };
    assert_eq!(find("direct1@test").rcpt_to, vec!["x@example.org"]);
    assert_eq!(find("direct2@test").rcpt_to, vec!["y@example.org"]);
    assert_eq!(find("direct4@test").mail_from, "bounces@example.com");
    assert_eq!(
        find("direct4@test").rcpt_to,
        vec!["z1@example.org", "z2@example.org"]
    );
    assert_eq!(find("direct6@test").rcpt_to, vec!["w@example.org"]);
    assert_eq!(got.len(), 4);
    let errors = home.log("l-threading-error.txt");
    for emoid in [no_from, injected, no_account, null_raw, bad_rcpt] {
        assert_eq!(lines_about(&errors, emoid).len(), 1, "{errors}");
    }
    assert!(!errors.contains("panicked"), "{errors}");
}

fn retry_cancel_and_list_commands() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::with_rules(
        SmtpRules::default().rcpt("x@example.org", "550 5.1.1 unknown, for now"),
    );
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    // queued from a file
    let file = home.path().join("m.eml");
    std::fs::write(
        &file,
        mail("alice@example.com", "y@example.org", "cancel@test", ""),
    )
    .expect("write");
    let out = engine(
        &home,
        &[
            "outbox",
            "add",
            "--account",
            &a.to_string(),
            file.to_str().expect("path"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let cancelled: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("emoid");
    let failing = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "retry@test", ""),
    );
    let code = |args: &[&str]| engine(&home, args).status.code();
    assert_eq!(code(&["outbox", "cancel", &cancelled.to_string()]), Some(0));
    assert_eq!(row(&home, cancelled).state, "cancelled");
    assert_eq!(
        code(&["outbox", "cancel", &cancelled.to_string()]),
        Some(65),
        "only a queued message can be cancelled"
    );
    run(&home, &["--no-sync"], 75);
    assert_eq!(row(&home, failing).state, "failed");
    assert_eq!(row(&home, cancelled).state, "cancelled");

    // the address exists now: retry makes the failed message due at once
    smtp.set_rules(&SmtpRules::default());
    let before = unix_now();
    assert_eq!(code(&["outbox", "retry", &failing.to_string()]), Some(0));
    let r = row(&home, failing);
    assert_eq!((r.state.as_str(), r.attempts), ("queued", 1), "{r:?}");
    assert!(r.next_attempt_at.is_some_and(|t| t <= before + 1), "{r:?}");
    run(&home, &["--no-sync"], 0);
    let r = row(&home, failing);
    assert_eq!((r.state.as_str(), r.attempts), ("sent", 2), "{r:?}");
    let got = smtp.received();
    assert_eq!(got.len(), 1, "the cancelled message never went out");
    assert!(contains(&got[0].data, "<retry@test>"));

    assert_eq!(code(&["outbox", "retry", &failing.to_string()]), Some(65));
    assert_eq!(code(&["outbox", "retry", "9999"]), Some(65));
    assert_eq!(code(&["outbox", "cancel", "9999"]), Some(65));
    assert_eq!(code(&["outbox", "list", "--state", "bogus"]), Some(2));

    let list = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["outbox", "list", "--json"];
        all.extend_from_slice(args);
        let out = engine(&home, &all);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let all = list(&[]);
    let states: Vec<(i64, &str)> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["emoid"].as_i64().expect("emoid"),
                m["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(states, vec![(cancelled, "cancelled"), (failing, "sent")]);
    let sent = list(&["--state", "sent"]);
    assert_eq!(sent.as_array().map(Vec::len), Some(1));
    assert_eq!(sent[0]["rcpt_to"], "x@example.org");
    assert_eq!(sent[0]["attempts"], 2);
    assert!(sent[0]["sent_at"].as_i64().is_some());
    let text = engine(&home, &["outbox", "list"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("cancelled") && text.contains("x@example.org"),
        "{text}"
    );
}

/// A server that accepts TCP and then says nothing, or stops answering
/// after DATA: each costs about one BG_IO_TIMEOUT, and the message waits.
fn a_stalled_server_costs_about_one_io_timeout_also_in_the_tls_handshake() {
    const TIMEOUT: u64 = 2;
    let dovecot = Dovecot::start();
    let silent = SilentServer::start();
    let slow_data = ScriptedSmtp::with_rules(SmtpRules {
        data_delay_ms: 20_000,
        ..SmtpRules::default()
    });
    for (security, port) in [
        ("starttls", silent.port()),
        ("tls", silent.port()),
        ("plain", slow_data.port()),
    ] {
        let home = setup(&dovecot, &format!("define('BG_IO_TIMEOUT', {TIMEOUT});"));
        let a = account(&home, &dovecot, "alice", security, port, "x");
        let id = queue(
            &home,
            a,
            &mail("alice@example.com", "x@example.org", "stall@test", ""),
        );
        let accepted = silent.accepted();
        let t0 = Instant::now();
        run(&home, &["--no-sync"], 75);
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(TIMEOUT + 2),
            "{security}: the run took {took:?}\n{}",
            home.log("l-debug.log")
        );
        assert!(took >= Duration::from_secs(TIMEOUT), "{security}: {took:?}");
        if port == silent.port() {
            assert!(silent.accepted() > accepted, "{security}: never connected");
        }
        let r = row(&home, id);
        assert_eq!(
            (r.state.as_str(), r.attempts),
            ("queued", 1),
            "{security}: {r:?}"
        );
        let err = r.last_error.unwrap_or_default();
        assert!(
            err.contains("timed out") || err.contains("no answer"),
            "{security}: {err}"
        );
    }
}

fn killed_mid_drain_every_message_arrives_and_only_the_one_in_flight_can_arrive_twice() {
    const N: usize = 200;
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::with_rules(SmtpRules {
        data_delay_ms: 15,
        ..SmtpRules::default()
    });
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    {
        let mut c = db(&home);
        let tx = c.transaction().expect("tx");
        for i in 0..N {
            tx.execute(
                "INSERT INTO email_outbox (acntid, raw) VALUES (?, ?)",
                params![
                    a,
                    mail(
                        "alice@example.com",
                        "x@example.org",
                        &format!("kill{i}@test"),
                        ""
                    )
                ],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let count_sent = || -> i64 {
        db(&home)
            .query_row(
                "SELECT COUNT(*) FROM email_outbox WHERE state = 'sent'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    };
    let mut child = home
        .engine()
        .args(["run", "--no-sync"])
        .spawn()
        .expect("spawn");
    assert!(
        wait_until(Duration::from_secs(20), || count_sent() >= 20),
        "nothing sent"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let at_kill = count_sent();
    assert!((at_kill as usize) < N, "killed too late to test: {at_kill}");
    let in_flight: Vec<i64> = {
        let c = db(&home);
        let mut s = c
            .prepare("SELECT emoid FROM email_outbox WHERE state = 'sending'")
            .expect("prepare");
        s.query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert!(in_flight.len() <= 1, "{in_flight:?}");

    run(&home, &["--no-sync"], 0);
    assert_eq!(count_sent(), N as i64);
    let got = smtp.received();
    let mut twice = Vec::new();
    for i in 0..N {
        let id = format!("kill{i}@test");
        let n = got
            .iter()
            .filter(|r| contains(&r.data, &format!("<{id}>")))
            .count();
        assert!(n >= 1, "{id} never arrived");
        if n > 1 {
            assert_eq!(n, 2, "{id}");
            let emoid: i64 = db(&home)
                .query_row(
                    "SELECT emoid FROM email_outbox WHERE message_id = ?",
                    [&id],
                    |r| r.get(0),
                )
                .expect("emoid");
            twice.push(emoid);
        }
    }
    eprintln!("killed after {at_kill} sent; in flight {in_flight:?}; arrived twice {twice:?}");
    assert!(
        twice.iter().all(|e| in_flight.contains(e)),
        "arrived twice: {twice:?}, in flight at the kill: {in_flight:?}"
    );
    for emoid in &in_flight {
        assert!(
            home.log("l-info.log").contains(&format!(
                "message emoid={emoid} was being sent when a run stopped; it goes out again [{a},]"
            )),
            "no warning for {emoid}"
        );
    }
    // and one copy each in Sent, the resent one included
    let sent = dovecot.imap("alice").fetch_raw_all("Sent");
    assert_eq!(sent.len(), N, "Sent copies");
}

fn a_sending_row_left_by_a_killed_run_is_requeued_with_a_warning() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = setup(&dovecot, "");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let id = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "left@test", ""),
    );
    db(&home)
        .execute(
            "UPDATE email_outbox SET state = 'sending' WHERE emoid = ?",
            [id],
        )
        .expect("update");
    run(&home, &["--no-sync"], 0);
    assert_eq!(row(&home, id).state, "sent");
    assert_eq!(smtp.received().len(), 1);
    let info = home.log("l-info.log");
    assert!(
        info.contains(&format!(
            "message emoid={id} was being sent when a run stopped; it goes out again [{a},]"
        )),
        "{info}"
    );
}

fn a_failed_append_is_retried_alone_by_a_later_run() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::start(ScriptedSmtpOptions {
        auth: Some(("alice".into(), "right-smtp-secret".into())),
        auth_required: true,
        ..Default::default()
    });
    let home = setup(&dovecot, "define('EMAIL_OUTBOX_LIFETIME', 600);");
    let a = add_account_smtp(
        &home,
        "alice",
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: "wrong-imap-secret",
        },
        Side {
            security: "plain",
            port: smtp.port(),
            password: "right-smtp-secret",
        },
    );
    let imap = dovecot.imap("alice");
    // the server already keeps a copy of m2 (as Gmail does)
    imap.create_folder("Sent");
    let raw2 = mail("alice@example.com", "x@example.org", "app2@test", "");
    imap.append("Sent", &raw2, "\\Seen");
    let m1 = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "app1@test", ""),
    );
    let m2 = queue(&home, a, &raw2);
    let m3 = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "app3@test", ""),
    );
    run(&home, &["--no-sync"], 0);
    for m in [m1, m2, m3] {
        let r = row(&home, m);
        assert_eq!(r.state, "sent", "{r:?}");
        assert_eq!(r.sent_copy.as_deref(), Some("pending"), "{r:?}");
        assert!(
            r.sent_copy_error
                .as_deref()
                .is_some_and(|e| e.contains("refused")),
            "{r:?}"
        );
    }
    assert_eq!(smtp.received().len(), 3);
    assert!(with_id(&imap, "Sent", "app1@test").is_empty());
    // one copy has waited longer than EMAIL_OUTBOX_LIFETIME: given up
    db(&home)
        .execute(
            "UPDATE email_outbox SET sent_at = sent_at - 1000 WHERE emoid = ?",
            [m3],
        )
        .expect("age");
    run(&home, &["--no-sync"], 0);
    assert_eq!(row(&home, m3).sent_copy.as_deref(), Some("failed"));
    assert_eq!(row(&home, m1).sent_copy.as_deref(), Some("pending"));

    db(&home)
        .execute(
            "UPDATE email_accounts SET imap_password = ? WHERE acntid = ?",
            params![dovecot.password("alice"), a],
        )
        .expect("fix the password");
    run(&home, &["--no-sync"], 0);
    assert_eq!(smtp.received().len(), 3, "sent again");
    assert_eq!(row(&home, m3).sent_copy.as_deref(), Some("failed"));
    assert!(with_id(&imap, "Sent", "app3@test").is_empty());
    for m in [m1, m2] {
        let r = row(&home, m);
        assert_eq!(
            (r.state.as_str(), r.sent_copy.as_deref()),
            ("sent", Some("done")),
            "{r:?}"
        );
    }
    let copy = with_id(&imap, "Sent", "app1@test");
    assert_eq!(copy.len(), 1);
    assert!(copy[0].1.contains("\\Seen"));
    assert_eq!(
        with_id(&imap, "Sent", "app2@test").len(),
        1,
        "a second copy next to the server's own"
    );
    assert_no_secret(&home, &["wrong-imap-secret", "right-smtp-secret"]);
}

/// While a run's sync is held up (an account whose server never answers,
/// BG_IO_TIMEOUT 5: the sync takes about 10 s), the outbox goes on: mail
/// queued before the run goes at once, mail queued during it within a poll.
/// A home whose second account ("stalled") sits on a server that never
/// answers, so a run's sync lasts about `BG_IO_TIMEOUT` (5 s); alice sends
/// through `smtp_port`. Returns the home and alice's account.
fn with_a_stalled_account(
    dovecot: &Dovecot,
    smtp_port: u16,
    silent: &SilentServer,
) -> (TempHome, i64) {
    let home = setup(dovecot, "define('BG_IO_TIMEOUT', 5);");
    let a = account(&home, dovecot, "alice", "plain", smtp_port, "x");
    add_account_with(
        &home,
        "plain",
        silent.port(),
        "stalled",
        "stalled-imap-secret",
    );
    (home, a)
}

/// Starts a run and waits until its sync hangs on the silent server.
fn run_until_stalled(home: &TempHome, silent: &SilentServer) -> std::process::Child {
    let child = home.engine().arg("run").spawn().expect("spawn");
    assert!(
        wait_until(Duration::from_secs(5), || silent.accepted() > 0),
        "the sync never reached the stalled server"
    );
    child
}

/// Waits (20 s at most) for message `emoid` to be sent; whether the run
/// `child` was still live then.
fn sent_while_live(home: &TempHome, child: &mut std::process::Child, emoid: i64) -> bool {
    let mut live_when_sent = false;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let sent = row(home, emoid).state == "sent";
            if sent {
                live_when_sent = matches!(child.try_wait(), Ok(None));
            }
            sent
        }),
        "message {emoid} was not sent"
    );
    live_when_sent
}

fn the_outbox_is_never_starved_by_a_long_sync() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let silent = SilentServer::start();
    let (home, a) = with_a_stalled_account(&dovecot, smtp.port(), &silent);
    let early = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "early@test", ""),
    );
    let start = unix_now();
    let t0 = Instant::now();
    let mut child = run_until_stalled(&home, &silent);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).expect("cmdline");
    for secret in [dovecot.password("alice").as_str(), "stalled-imap-secret"] {
        assert!(!contains(&cmdline, secret), "password in ps: {secret:?}");
    }
    let queued_at = unix_now();
    let late = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "late@test", ""),
    );
    let live_when_sent = sent_while_live(&home, &mut child, late);
    let status = child.wait().expect("wait");
    let ended = t0.elapsed();
    assert_eq!(status.code(), Some(75), "the stalled account fails");
    assert!(live_when_sent, "sent only when the run ended");
    let early_at = row(&home, early).sent_at.expect("sent_at");
    let late_at = row(&home, late).sent_at.expect("sent_at");
    assert!(early_at - start <= 2, "early: {early_at} vs start {start}");
    assert!(
        late_at - queued_at <= POLL_SECS + 2,
        "late: queued {queued_at}, sent {late_at}"
    );
    let end = start + ended.as_secs() as i64;
    assert!(
        end - late_at >= 2,
        "sent at {late_at}, the sync ended at {end}: not before the end"
    );
    assert_eq!(smtp.received().len(), 2);
}

fn mail_queued_into_an_empty_outbox_during_a_sync_goes_out_in_that_run() {
    // An empty outbox at the start: on PostgreSQL the outbox has no
    // connection of its own yet, and its polls must still see new mail.
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let silent = SilentServer::start();
    let (home, a) = with_a_stalled_account(&dovecot, smtp.port(), &silent);
    let mut child = run_until_stalled(&home, &silent);
    let queued_at = unix_now();
    let late = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "late@test", ""),
    );
    let live_when_sent = sent_while_live(&home, &mut child, late);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(75), "the stalled account fails");
    assert!(live_when_sent, "sent only when the run ended");
    let sent_at = row(&home, late).sent_at.expect("sent_at");
    assert!(
        sent_at - queued_at <= POLL_SECS + 2,
        "queued {queued_at}, sent {sent_at}"
    );
    assert_eq!(smtp.received().len(), 1);
}

fn a_disabled_outbox_is_left_alone() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = setup(&dovecot, "define('EMAIL_OUTBOX_ENABLED', FALSE);");
    let a = account(&home, &dovecot, "alice", "plain", smtp.port(), "x");
    let id = queue(
        &home,
        a,
        &mail("alice@example.com", "x@example.org", "off@test", ""),
    );
    run(&home, &["--no-sync"], 0);
    assert_eq!(row(&home, id).state, "queued");
    write_config(&home, &dovecot, "");
    run(&home, &["--no-sync", "--no-outbox"], 0);
    assert_eq!(row(&home, id).state, "queued");
    assert!(smtp.events().is_empty(), "the server was contacted");
    run(&home, &["--no-sync"], 0);
    assert_eq!(row(&home, id).state, "sent");
    assert_eq!(smtp.received().len(), 1);
}

fn certificates_are_verified_and_starttls_is_never_skipped() {
    let dovecot = Dovecot::start();
    let auth = Some(("alice".to_string(), "tls-test-secret".to_string()));
    // offers AUTH but no STARTTLS
    let no_tls = ScriptedSmtp::start(ScriptedSmtpOptions {
        auth: auth.clone(),
        ..Default::default()
    });
    // certificates from a CA nobody trusts
    let untrusted_starttls = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::StartTls,
        auth: auth.clone(),
        ..Default::default()
    });
    let untrusted_tls = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::Implicit,
        auth,
        ..Default::default()
    });
    let home = setup(&dovecot, "");
    let cases = [
        ("starttls", &no_tls, "STARTTLS"),
        ("starttls", &untrusted_starttls, "certificate"),
        ("tls", &untrusted_tls, "certificate"),
    ];
    let ids: Vec<i64> = cases
        .iter()
        .map(|(security, server, _)| {
            let user = match server.port() {
                p if p == no_tls.port() => "alice",
                p if p == untrusted_starttls.port() => "bob",
                _ => "carol",
            };
            let acntid = account(
                &home,
                &dovecot,
                user,
                security,
                server.port(),
                "tls-test-secret",
            );
            queue(
                &home,
                acntid,
                &mail(
                    &format!("{user}@example.com"),
                    "x@example.org",
                    &format!("{user}-tls@test"),
                    "",
                ),
            )
        })
        .collect();
    run(&home, &["--no-sync"], 75);
    for ((_, server, why), id) in cases.iter().zip(ids) {
        let r = row(&home, id);
        assert_eq!(r.state, "queued", "{r:?}");
        let err = r.last_error.unwrap_or_default();
        assert!(err.contains(why), "{why}: {err}");
        assert!(
            server.events().iter().all(|e| e.event != "auth"),
            "the password went out without TLS"
        );
        assert!(server.received().is_empty());
    }
}

both_stores!(
    whole_loop_through_postfix_into_dovecot_with_sent_copies,
    one_authenticated_starttls_connection_serves_all_due_messages_of_an_account,
    one_rejected_recipient_does_not_stop_the_others_and_a_retry_goes_only_to_the_pending,
    a_permanent_rejection_fails_the_message_with_the_servers_reply,
    temporary_failures_back_off_exponentially_between_min_and_max,
    past_its_lifetime_a_temporarily_failing_message_fails_for_good,
    bcc_is_not_on_the_wire_but_its_recipients_get_the_envelope,
    bare_lf_goes_out_as_crlf_and_the_queued_bytes_stay_as_they_were,
    bad_messages_are_refused_at_queueing_with_exit_65_and_nothing_queued,
    rows_the_web_app_inserts_are_checked_alike_and_bad_ones_fail_with_a_reason,
    retry_cancel_and_list_commands,
    a_stalled_server_costs_about_one_io_timeout_also_in_the_tls_handshake,
    killed_mid_drain_every_message_arrives_and_only_the_one_in_flight_can_arrive_twice,
    a_sending_row_left_by_a_killed_run_is_requeued_with_a_warning,
    a_failed_append_is_retried_alone_by_a_later_run,
    the_outbox_is_never_starved_by_a_long_sync,
    mail_queued_into_an_empty_outbox_during_a_sync_goes_out_in_that_run,
    a_disabled_outbox_is_left_alone,
    certificates_are_verified_and_starttls_is_never_skipped,
);
