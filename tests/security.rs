//! Security (SPEC §10): certificates are verified, STARTTLS is never
//! skipped and `plain` is used only when an account says so — proved with
//! [`FakeImap`], which records every command it receives, so "no LOGIN was
//! sent" is an observation, not an inference; passwords appear in no log,
//! no `ps` line, no status output and no error; the files of an install are
//! private even under a careless umask; header injection is refused at
//! queue time; names full of quotes and SQL are stored as they are.
//!
//! SMTP certificate and STARTTLS refusal are in `tests/outbox.rs`
//! (`certificates_are_verified_and_starttls_is_never_skipped`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use support::engine::*;
use support::{
    text, CertChoice, Dovecot, DovecotOptions, FakeFolder, FakeImap, FakeImapOptions, FakeTls,
    ScriptedSmtp, ScriptedSmtpOptions, SilentServer, SmtpTls, TempHome,
};

/// Whether any command the server received is a LOGIN (or AUTHENTICATE).
fn login_seen(fake: &FakeImap) -> bool {
    fake.command_names()
        .iter()
        .any(|c| c == "LOGIN" || c == "AUTHENTICATE")
}

fn one_message_folder() -> Vec<FakeFolder> {
    vec![FakeFolder::new(
        b"INBOX",
        &[b"Subject: hi\r\n\r\nbody\r\n".to_vec()],
    )]
}

// ---------------------------------------------------------------------------
// TLS

#[test]
fn imap_certificates_from_an_untrusted_ca_are_refused_before_login() {
    // A real server whose certificate the configured CA did not sign.
    let dovecot = Dovecot::start_with(DovecotOptions {
        cert: CertChoice::Untrusted,
        ..DovecotOptions::default()
    });
    // Scripted servers, each with a CA of its own (trusted by nobody), that
    // record what they receive.
    let implicit = FakeImap::start(FakeImapOptions {
        tls: FakeTls::Implicit,
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    let starttls = FakeImap::start(FakeImapOptions {
        tls: FakeTls::StartTls,
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let pw = dovecot.password("alice");
    let cases = [
        add_account_with(&home, "tls", dovecot.imaps_port(), "alice", &pw),
        add_account_with(&home, "starttls", dovecot.imap_port(), "alice", &pw),
        add_account_with(&home, "tls", implicit.port(), "alice", "fake-secret"),
        add_account_with(&home, "starttls", starttls.port(), "alice", "fake-secret"),
    ];
    let out = run(&home, &[], 75);
    for acntid in cases {
        let err = account_error(&home, acntid).unwrap_or_default();
        assert!(
            err.contains("TLS handshake failed") && err.contains("certificate verify failed"),
            "account {acntid}: {err}"
        );
    }
    let log = dovecot.log_contents();
    assert!(!log.contains("Login: user=<alice>"), "{log}");
    assert!(
        !login_seen(&implicit) && implicit.commands().is_empty(),
        "implicit TLS: {:?}",
        implicit.command_names()
    );
    assert!(implicit.connections() >= 1, "never tried");
    assert_eq!(
        starttls.command_names().first().map(String::as_str),
        Some("STARTTLS"),
        "{:?}",
        starttls.command_names()
    );
    assert!(!login_seen(&starttls), "{:?}", starttls.command_names());
    assert!(starttls.commands().iter().all(|c| !c.tls));
    assert_secret_nowhere(&home, &[&pw, "fake-secret"]);
    assert!(!text(&out.stderr).contains(&pw));
    let n: i64 = db(&home)
        .query_row("SELECT COUNT(*) FROM email_messages", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0);
}

#[test]
fn starttls_missing_refused_or_tampered_with_never_falls_back_to_plaintext() {
    let plain = FakeImap::start(FakeImapOptions {
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    // advertises STARTTLS, then refuses it
    let refusing = FakeImap::start(FakeImapOptions {
        caps: "IMAP4rev1 STARTTLS LITERAL+".into(),
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    // plaintext injected after the OK, before the handshake (CVE-2011-0411)
    let injecting = FakeImap::start(FakeImapOptions {
        tls: FakeTls::StartTls,
        starttls_reply: Some(
            b"TAG OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1] injected\r\n".to_vec(),
        ),
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    // the honest one, with a CA the engine trusts: the control
    let ca_dir = tempfile::tempdir().expect("tempdir");
    let ca = support::TestCa::new(ca_dir.path());
    let good = FakeImap::start(FakeImapOptions {
        tls: FakeTls::StartTls,
        ca: Some(ca.clone()),
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config(&format!(
        "<?php define('BG_TLS_CA_FILE', '{}'); define('BG_IO_TIMEOUT', 5);",
        ca.ca_file().display()
    ));
    let cases = [
        (
            &plain,
            "the server does not offer STARTTLS; refusing to log in without TLS",
        ),
        (&refusing, "STARTTLS failed"),
        (&injecting, "sent data before the TLS handshake"),
    ];
    let ids: Vec<i64> = cases
        .iter()
        .map(|(f, _)| add_account_with(&home, "starttls", f.port(), "alice", "fake-secret"))
        .collect();
    let ok = add_account_with(&home, "starttls", good.port(), "alice", "fake-secret");
    run(&home, &[], 75);
    for ((fake, why), acntid) in cases.iter().zip(ids) {
        let err = account_error(&home, acntid).unwrap_or_default();
        assert!(err.contains(why), "{why}: {err}");
        assert!(
            !login_seen(fake),
            "{why}: LOGIN sent: {:?}",
            fake.command_names()
        );
    }
    // The control: LOGIN went out, over TLS only, and the mail came in.
    assert_eq!(account_error(&home, ok).unwrap_or_default(), "");
    let logins: Vec<bool> = good
        .commands()
        .iter()
        .filter(|c| text(&c.bytes).to_ascii_uppercase().contains(" LOGIN "))
        .map(|c| c.tls)
        .collect();
    assert!(
        !logins.is_empty() && logins.iter().all(|t| *t),
        "{logins:?}"
    );
    assert_eq!(stored(&home, emfdid(&home, ok, "INBOX")).len(), 1);
    assert_secret_nowhere(&home, &["fake-secret"]);
}

#[test]
fn plain_is_used_only_when_an_account_says_so() {
    let fake = FakeImap::start(FakeImapOptions {
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 5);");
    // tls against a plaintext server: a failed handshake, nothing else
    let tls = add_account_with(&home, "tls", fake.port(), "alice", "fake-secret");
    run(&home, &[], 75);
    assert!(
        account_error(&home, tls)
            .unwrap_or_default()
            .contains("TLS handshake failed"),
        "{}",
        account_error(&home, tls).unwrap_or_default()
    );
    assert!(fake.connections() >= 1);
    // (what it recorded is the TLS ClientHello, cut at its 0x0a bytes)
    assert!(!login_seen(&fake), "{:?}", fake.command_names());
    assert!(fake
        .commands()
        .iter()
        .all(|c| !text(&c.bytes).contains("fake-secret")));

    // a security the engine does not know (a web-app row): refused, and
    // the server never contacted
    let c = db(&home);
    for bad in ["none", "", "ssl/tls", "PLAIN-ish"] {
        c.execute(
            "UPDATE email_accounts SET imap_security = ? WHERE acntid = ?",
            crate::params![bad, tls],
        )
        .expect("update");
        let before = fake.connections();
        run(&home, &["--force"], 75);
        assert!(
            account_error(&home, tls)
                .unwrap_or_default()
                .contains("unknown security"),
            "{bad:?}: {}",
            account_error(&home, tls).unwrap_or_default()
        );
        assert_eq!(
            fake.connections(),
            before,
            "{bad:?}: the server was contacted"
        );
    }
    c.execute(
        "UPDATE email_accounts SET imap_security = NULL WHERE acntid = ?",
        [tls],
    )
    .ok();
    let before = fake.connections();
    let out = engine(&home, &["run", "--force"]);
    assert_ne!(out.status.code(), Some(0), "NULL security accepted");
    assert_eq!(fake.connections(), before, "NULL: the server was contacted");

    // `account add` accepts only the three words
    let out = engine(
        &home,
        &[
            "account",
            "add",
            "--email",
            "x@example.com",
            "--imap-host",
            "localhost",
            "--imap-security",
            "none",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // plain when chosen: LOGIN in the clear, mail synced
    let plain = add_account_with(&home, "plain", fake.port(), "alice", "fake-secret");
    run(&home, &["--account", &plain.to_string()], 0);
    assert!(login_seen(&fake));
    assert_eq!(stored(&home, emfdid(&home, plain, "INBOX")).len(), 1);
}

// ---------------------------------------------------------------------------
// passwords

#[test]
fn passwords_never_appear_in_ps_logs_status_or_errors() {
    let wrong = "Wr0ng \"pass\\' {5}";
    let echoed = "echo-Secret-77";
    let live = "live-Secret-42";
    let smtp_pw = "smtp-Wrong-Secret";
    let dovecot = Dovecot::start();
    let echoing = FakeImap::start(FakeImapOptions {
        echo_login: true,
        folders: one_message_folder(),
        ..FakeImapOptions::default()
    });
    let smtp = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::Implicit,
        ca: Some(dovecot.ca().clone()),
        auth: Some(("carol".into(), "the-right-one".into())),
        auth_required: true,
        ..ScriptedSmtpOptions::default()
    });
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let a = add_account_with(&home, "tls", dovecot.imaps_port(), "alice", wrong);
    let b = add_account_with(&home, "plain", echoing.port(), "alice", echoed);
    let carol = add_account_smtp(
        &home,
        "carol",
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &dovecot.password("carol"),
        },
        Side {
            security: "tls",
            port: smtp.port(),
            password: smtp_pw,
        },
    );
    let raw = b"From: carol@example.com\r\nTo: x@example.org\r\nSubject: s\r\n\r\nb\r\n";
    assert!(outbox_add(&home, carol, raw).status.success());

    let out = run(&home, &[], 75);
    assert!(account_error(&home, a)
        .unwrap_or_default()
        .contains("login as alice refused"));
    assert!(account_error(&home, b)
        .unwrap_or_default()
        .contains("login as alice refused"));
    let smtp_err: String = db(&home)
        .query_row("SELECT last_error FROM email_outbox", [], |r| r.get(0))
        .expect("outbox row");
    assert!(!smtp_err.is_empty());
    for s in [wrong, echoed, smtp_pw] {
        assert!(!text(&out.stderr).contains(s) && !text(&out.stdout).contains(s));
    }
    assert_secret_nowhere(&home, &[wrong, echoed, smtp_pw, "Wr0ng"]);

    // While a run is live, its command line (what `ps` shows) holds no password.
    let silent = SilentServer::start();
    let home = TempHome::new();
    home.write_config("<?php define('BG_IO_TIMEOUT', 5);");
    add_account_with(&home, "plain", silent.port(), "alice", live);
    let mut child = home.engine().arg("run").spawn().expect("spawn run");
    assert!(support::wait_until(Duration::from_secs(10), || silent
        .accepted()
        > 0));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).expect("cmdline");
    let ps = Command::new("ps")
        .args(["-ww", "-o", "args=", "-p", &child.id().to_string()])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        text(&cmdline).contains("run"),
        "not the engine: {cmdline:?}"
    );
    assert!(!text(&cmdline).contains(live), "password in argv");
    assert!(!text(&ps).contains(live), "password in ps");
    assert_secret_nowhere(&home, &[live]);
}

// ---------------------------------------------------------------------------
// files

/// `engine --home HOME ARGS` as started from a shell whose umask is 000.
fn engine_umask0_cmd(home: &TempHome, args: &[&str]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_engine"))
        .arg("--home")
        .arg(home.path())
        .args(args)
        .env_remove("BACKPROC_HOME")
        .env_remove("BACKPROC_CONFIG");
    cmd
}

/// [`engine_umask0_cmd`] run with `stdin` on its stdin; the output.
fn engine_umask0(home: &TempHome, args: &[&str], stdin: &[u8]) -> Output {
    output_with_stdin(&mut engine_umask0_cmd(home, args), stdin)
}

#[test]
fn files_stay_private_under_a_careless_umask_and_loose_modes_are_repaired() {
    let dovecot = Dovecot::start();
    dovecot.imap("dave").append("INBOX", &message(1, 800), "");
    let silent = SilentServer::start();
    let home = TempHome::new();
    config(&home, &dovecot, "define('BG_IO_TIMEOUT', 3);");
    let pw = format!("{}\n", dovecot.password("dave"));
    let add = |port: u16, security: &str, email: &str| {
        let out = engine_umask0(
            &home,
            &[
                "account",
                "add",
                "--email",
                email,
                "--imap-host",
                "localhost",
                "--imap-port",
                &port.to_string(),
                "--imap-security",
                security,
                "--imap-login",
                "dave",
            ],
            pw.as_bytes(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    add(dovecot.imaps_port(), "tls", "dave@example.com");
    assert_private(&home, "after account add");
    add(silent.port(), "plain", "stalled@example.com");
    let out = engine_umask0(
        &home,
        &["outbox", "add", "--account", "1", "-"],
        b"From: dave@example.com\r\nTo: x@example.org\r\n\r\nb\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A live run (the stalled account keeps it going): -wal and -shm too.
    let mut child = engine_umask0_cmd(&home, &["run", "--no-outbox"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn run");
    assert!(support::wait_until(Duration::from_secs(10), || silent
        .accepted()
        > 0));
    assert!(support::wait_until(Duration::from_secs(10), || {
        db(&home)
            .query_row("SELECT COUNT(*) FROM email_messages", [], |r| {
                r.get::<i64>(0)
            })
            .unwrap_or(0)
            > 0
    }));
    let live = assert_private(&home, "during a run");
    for f in [
        "data/engine.sqlite",
        "data/engine.sqlite-wal",
        "data/engine.sqlite-shm",
        "pid/engine.pid",
        "logs/l-debug.log",
        "logs/l-info.log",
        "logs/l-threading-error.txt",
    ] {
        assert!(live.iter().any(|x| x == f), "{f} missing: {live:?}");
    }
    child.wait().expect("wait");
    assert_private(&home, "after the run");

    // Loose modes left by someone else (a restore, `logrotate create 0644`,
    // a chmod) are taken back by the next command.
    for f in ["data/engine.sqlite", "logs/l-debug.log", "pid/engine.pid"] {
        std::fs::set_permissions(home.path().join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    std::fs::set_permissions(
        home.path().join("data"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let out = engine_umask0(&home, &["run", "--no-outbox", "--account", "1"], b"");
    assert!(out.status.code().is_some());
    assert_private(&home, "after loose modes");
}

// ---------------------------------------------------------------------------
// header injection

#[test]
fn header_injection_is_refused_at_queue_time_and_tricky_headers_go_out_harmless() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::accept_all();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let acntid = add_account_smtp(
        &home,
        "alice",
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &dovecot.password("alice"),
        },
        Side {
            security: "plain",
            port: smtp.port(),
            password: "x",
        },
    );
    // Beyond tests/outbox.rs: CR before the CRLF, CR in From, injection in
    // the first line and in the last header line, LF among CRLF at the end,
    // NUL in a name, white space or 8-bit in a field name, a broken address.
    let refused: &[(&str, &[u8])] = &[
        ("cr_before_crlf", b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: a\r\r\n\r\nb\r\n"),
        ("cr_in_from", b"From: alice@example.com\rBcc: evil@example.org\r\nTo: x@example.org\r\n\r\nb\r\n"),
        ("lf_in_first_line", b"From: alice@example.com\nBcc: evil@example.org\r\nTo: x@example.org\r\n\r\nb\r\n"),
        ("lf_in_last_line", b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: s\nBcc: evil@example.org\r\n\r\nb\r\n"),
        ("cr_at_header_end", b"From: alice@example.com\r\nTo: x@example.org\r\nSubject: s\r"),
        ("nul_in_name", b"From: alice@example.com\r\nTo: x@example.org\r\nX-\0A: b\r\n\r\nb\r\n"),
        ("space_before_colon", b"From: alice@example.com\r\nTo: x@example.org\r\nBcc : evil@example.org\r\n\r\nb\r\n"),
        ("eight_bit_name", b"From: alice@example.com\r\nTo: x@example.org\r\nB\xffcc: evil@example.org\r\n\r\nb\r\n"),
        ("angle_in_address", b"From: alice@example.com\r\nTo: \"x\" <x@example.org>evil@example.org>\r\n\r\nb\r\n"),
    ];
    for (name, raw) in refused {
        let out = outbox_add(&home, acntid, raw);
        assert_eq!(out.status.code(), Some(65), "{name}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("refused"),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    let n: i64 = db(&home)
        .query_row("SELECT COUNT(*) FROM email_outbox", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 0, "something was queued");

    // Accepted, and harmless on the wire: an encoded CR LF stays encoded;
    // Bcc of a bare-LF message, folded and in capitals, does not go out.
    let tricky: &[&[u8]] = &[
        b"From: alice@example.com\r\nTo: =?utf-8?Q?x=0D=0ABcc:_evil@example.org?= <x@example.org>\r\n\
Subject: =?utf-8?Q?a=0D=0ABcc:_evil@example.org?=\r\n\r\nb\r\n",
        b"From: alice@example.com\nTo: y@example.org\nBCC: hidden@example.org,\n  hidden2@example.org\nSubject: lf\n\nbody\n",
    ];
    for raw in tricky {
        let out = outbox_add(&home, acntid, raw);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    run(&home, &["--no-sync"], 0);
    let got = smtp.wait_received(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].rcpt_to, vec!["x@example.org"]);
    let mut rcpt2 = got[1].rcpt_to.clone();
    rcpt2.sort();
    assert_eq!(
        rcpt2,
        vec!["hidden2@example.org", "hidden@example.org", "y@example.org"]
    );
    for r in &got {
        let data = text(&r.data);
        let header = data.split("\r\n\r\n").next().unwrap_or_default();
        assert!(
            !header
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc")),
            "Bcc on the wire:\n{data}"
        );
        assert!(
            !data.contains("hidden"),
            "Bcc addresses on the wire:\n{data}"
        );
        assert!(
            !r.data
                .iter()
                .enumerate()
                .any(|(i, b)| *b == b'\n' && (i == 0 || r.data[i - 1] != b'\r')),
            "bare LF on the wire"
        );
    }
    assert!(smtp.rcpt_attempts().iter().all(|a| !a.contains("evil")));
}

// ---------------------------------------------------------------------------
// SQL: bound parameters only

#[test]
fn quotes_and_sql_in_names_are_stored_verbatim_and_break_nothing() {
    // (Dovecot refuses an apostrophe in a login name; the address has one.)
    let user = "obrien";
    let password = "p\"w\\' {3}; DROP TABLE email_accounts;--";
    let dovecot = Dovecot::start_with(DovecotOptions {
        users: vec![(user.into(), password.into())],
        ..DovecotOptions::default()
    });
    let folders = [
        "x'; DROP TABLE email_messages; --",
        "Robert'); DROP TABLE email_folders;--",
        "q\"uote\\back %_ *",
    ];
    let imap = dovecot.imap(user);
    let subject = "'; DELETE FROM email_accounts WHERE '1'='1";
    let msg = format!(
        "From: \"O'Brien; DROP\" <o'brien@example.com>\r\nTo: x@example.org\r\n\
         Subject: {subject}\r\nMessage-ID: <'or'1'='1@example.com>\r\n\r\nbody\r\n"
    );
    for f in folders {
        imap.create_folder(f);
        imap.append(f, msg.as_bytes(), "\\Seen");
    }
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let out = engine_with(
        &home,
        &[
            "account",
            "add",
            "--email",
            "o'brien@example.com",
            "--usrid",
            "7",
            "--imap-host",
            "localhost",
            "--imap-port",
            &dovecot.imaps_port().to_string(),
            "--imap-security",
            "tls",
            "--imap-login",
            user,
        ],
        &[],
        format!("{password}\n").as_bytes(),
    );
    assert!(out.status.success());
    let acntid: i64 = text(&out.stdout).trim().parse().expect("acntid");
    run(&home, &[], 0);
    let c = db(&home);
    let email: String = c
        .query_row(
            "SELECT email FROM email_accounts WHERE acntid = ?",
            [acntid],
            |r| r.get(0),
        )
        .expect("account");
    assert_eq!(email, "o'brien@example.com");
    for f in folders {
        assert_mirror(&home, &dovecot, user, acntid, f);
        let id = emfdid(&home, acntid, f);
        let (subj, msgid): (String, String) = c
            .query_row(
                "SELECT subject, message_id FROM email_messages WHERE emfdid = ?",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("message");
        assert_eq!(subj, subject);
        assert_eq!(msgid, "'or'1'='1@example.com");
    }
    let tables: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN \
             ('email_accounts', 'email_folders', 'email_messages', 'email_outbox', 'user_sessions')",
            [],
            |r| r.get(0),
        )
        .expect("tables");
    assert_eq!(tables, 5);
    // The commands that print these names still work and print them as they are.
    let out = engine(&home, &["folder", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<String> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_string))
        .collect();
    for f in folders {
        assert!(names.iter().any(|n| n == f), "{f} not in {names:?}");
    }
    for args in [
        &["status", "--json"][..],
        &["account", "list", "--json"],
        &["plan", "--json"],
    ] {
        let out = engine(&home, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    }
    let out = outbox_add(&home, acntid, msg.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let from: String = c
        .query_row("SELECT mail_from FROM email_outbox", [], |r| r.get(0))
        .expect("outbox");
    assert_eq!(from, "o'brien@example.com");
    integrity_ok(&home);
    run(&home, &["--force", "--no-outbox"], 0);
    assert_secret_nowhere(&home, &[password]);
}
