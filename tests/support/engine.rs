//! Helpers for tests that drive the engine binary: accounts, runs, the
//! database, and the comparison of the store with the server.

use super::{mode_of, text, Dovecot, TempHome};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A test message: unique Message-ID, a Polish subject in RFC 2047, a body
/// of about `size` bytes.
pub fn message(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: =?ISO-8859-2?Q?Pawe=B3_Nowak?= <pawel{i}@example.com>\r\n\
         To: alice@example.com\r\n\
         Subject: =?UTF-8?B?WmHFvMOzxYLEhyBnxJnFm2zEhSBqYcW6xYQ=?= {i}\r\n\
         Message-ID: <msg{i}@test.example.com>\r\n\
         Date: Sun, 29 Nov 2026 08:00:00 +0100\r\n\r\n"
    )
    .into_bytes();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

pub fn config(home: &TempHome, dovecot: &Dovecot, extra: &str) {
    // PHP keeps the first define of a name: the test's own settings go first.
    home.write_config(&format!(
        "<?php\n{extra}\ndefine('BG_TLS_CA_FILE', '{}');\ndefine('BG_IO_TIMEOUT', 10);\n",
        dovecot.ca_file().display()
    ));
}

/// Adds `user`'s account over implicit TLS (verified with the test CA).
pub fn add_account(home: &TempHome, dovecot: &Dovecot, user: &str) -> i64 {
    add_account_with(
        home,
        "tls",
        dovecot.imaps_port(),
        user,
        &dovecot.password(user),
    )
}

pub fn add_account_with(
    home: &TempHome,
    security: &str,
    port: u16,
    user: &str,
    password: &str,
) -> i64 {
    let mut cmd = home.engine();
    cmd.args(["account", "add", "--email"])
        .arg(format!("{user}@example.com"))
        .args(["--imap-host", "localhost", "--imap-port"])
        .arg(port.to_string())
        .args([
            "--imap-security",
            security,
            "--imap-login",
            user,
            "--usrid",
            "7",
        ]);
    added(output_with_stdin(
        &mut cmd,
        format!("{password}\n").as_bytes(),
    ))
}

/// The acntid that a successful `account add` printed.
fn added(out: Output) -> i64 {
    assert!(out.status.success(), "account add: {}", text(&out.stderr));
    text(&out.stdout)
        .trim()
        .parse()
        .expect("account add prints the acntid")
}

/// One side (IMAP or SMTP) of an account for [`add_account_smtp`].
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// `tls`, `starttls` or `plain`.
    pub security: &'a str,
    pub port: u16,
    pub password: &'a str,
}

/// Adds `user@example.com` with IMAP and SMTP on `localhost` (login `user`
/// on both sides, usrid 7) through `engine account add`; the two passwords
/// go through stdin (first line IMAP, second SMTP), never argv.
pub fn add_account_smtp(home: &TempHome, user: &str, imap: Side<'_>, smtp: Side<'_>) -> i64 {
    let mut cmd = home.engine();
    cmd.args(["account", "add", "--email"])
        .arg(format!("{user}@example.com"))
        .args(["--usrid", "7", "--imap-host", "localhost", "--imap-port"])
        .arg(imap.port.to_string())
        .args(["--imap-security", imap.security, "--imap-login", user])
        .args(["--smtp-host", "localhost", "--smtp-port"])
        .arg(smtp.port.to_string())
        .args(["--smtp-security", smtp.security, "--smtp-login", user]);
    let passwords = format!("{}\n{}\n", imap.password, smtp.password);
    added(output_with_stdin(&mut cmd, passwords.as_bytes()))
}

/// Runs `cmd` with `stdin` written to its stdin (then closed) and its
/// stdout and stderr captured. A child that exits without reading its
/// stdin is fine: a broken pipe is ignored.
pub fn output_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"))
}

/// Runs `engine ARGS` with `env` added and `stdin` on its stdin; the output.
pub fn engine_with(home: &TempHome, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = home.engine();
    cmd.args(args).envs(env.iter().copied());
    output_with_stdin(&mut cmd, stdin)
}

/// Runs `engine ARGS`, nothing on stdin; the output.
pub fn engine(home: &TempHome, args: &[&str]) -> Output {
    engine_with(home, args, &[], b"")
}

/// Runs `engine ARGS` with `env` added and asserts the exit code; the output.
pub fn expect_code(home: &TempHome, args: &[&str], env: &[(&str, &str)], code: i32) -> Output {
    let out = engine_with(home, args, env, b"");
    assert_eq!(
        out.status.code(),
        Some(code),
        "engine {args:?}\nstdout: {}\nstderr: {}\nlog:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        home.log("l-debug.log")
    );
    out
}

/// Runs `engine run ARGS` and asserts the exit code.
pub fn run(home: &TempHome, args: &[&str], code: i32) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    expect_code(home, &all, &[], code)
}

/// A connection to the home's database (SQLite or PostgreSQL).
pub fn db(home: &TempHome) -> super::Db {
    home.db()
}

/// The account's `last_error` (None when it has none).
pub fn account_error(home: &TempHome, acntid: i64) -> Option<String> {
    db(home)
        .query_row(
            "SELECT last_error FROM email_accounts WHERE acntid = ?",
            [acntid],
            |r| r.get(0),
        )
        .expect("account")
}

/// The folder's id by its UTF-8 name.
pub fn emfdid(home: &TempHome, acntid: i64, name: &str) -> i64 {
    db(home)
        .query_row(
            "SELECT emfdid FROM email_folders WHERE acntid = ? AND name = ?",
            crate::params![acntid, name],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("folder {name}: {e}"))
}

/// (uid, raw, flags) of a folder's current generation, by uid.
pub fn stored(home: &TempHome, emfdid: i64) -> Vec<(u32, Vec<u8>, String)> {
    let c = db(home);
    let mut stmt = c
        .prepare(
            "SELECT m.uid, m.raw, COALESCE(m.flags, '') FROM email_messages m \
             JOIN email_folders f ON f.emfdid = m.emfdid \
             WHERE m.emfdid = ? AND m.uidvalidity = f.uidvalidity ORDER BY m.uid",
        )
        .expect("prepare");
    stmt.query_map([emfdid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

pub fn without_recent(flags: &str) -> String {
    flags
        .split_whitespace()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The store holds exactly what the server holds: same UIDs, byte-exact
/// bodies, same flags, no other rows, nothing twice.
pub fn assert_mirror(home: &TempHome, dovecot: &Dovecot, user: &str, acntid: i64, folder: &str) {
    let id = emfdid(home, acntid, folder);
    let server = dovecot.imap(user).fetch_raw_all(folder);
    let local = stored(home, id);
    assert_eq!(
        local.iter().map(|m| m.0).collect::<Vec<_>>(),
        server.iter().map(|m| m.0).collect::<Vec<_>>(),
        "UIDs of {folder}"
    );
    for ((uid, raw, flags), (_, sraw, sflags)) in local.iter().zip(server.iter()) {
        assert!(
            raw == sraw,
            "{folder} uid {uid}: stored bytes differ from the server's"
        );
        assert_eq!(
            without_recent(flags),
            without_recent(sflags),
            "{folder} uid {uid}: flags"
        );
    }
    let all: i64 = db(home)
        .query_row(
            "SELECT COUNT(*) FROM email_messages WHERE emfdid = ?",
            [id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(
        all as usize,
        server.len(),
        "{folder}: rows beyond the server's messages"
    );
}

pub fn integrity_ok(home: &TempHome) {
    if home.store() == super::Store::Postgres {
        return; // PostgreSQL checks its own pages
    }
    let r: String = db(home)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(r, "ok");
}

/// Every directory under pid/ data/ logs/ is 2770 and every file in them
/// 0660 (none world-accessible); `when` names the moment in the messages.
/// Returns the files seen, as `dir/name`.
pub fn assert_private(home: &TempHome, when: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for dir in ["pid", "data", "logs"] {
        let d = home.path().join(dir);
        assert_eq!(mode_of(&d), 0o2770, "{when}: {dir}/ is {:o}", mode_of(&d));
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("dir entry");
            let m = mode_of(&e.path());
            let name = format!("{dir}/{}", e.file_name().to_string_lossy());
            assert_eq!(m & 0o007, 0, "{when}: {name} is world-accessible ({m:o})");
            assert_eq!(m, 0o660, "{when}: {name} is {m:o}");
            seen.push(name);
        }
    }
    seen
}

/// None of `secrets` (passwords) appears in any file under `logs/`, in the
/// output of the commands an administrator runs (`status`, the `list`s,
/// `account show`), or in any `last_error` column.
pub fn assert_secret_nowhere(home: &TempHome, secrets: &[&str]) {
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(home.logs_dir()) {
        for e in dir.flatten() {
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            places.push((format!("logs/{}", e.file_name().to_string_lossy()), bytes));
        }
    }
    let mut commands: Vec<Vec<String>> = [
        &["status"][..],
        &["status", "--json"],
        &["account", "list", "--json"],
        &["folder", "list", "--json"],
        &["outbox", "list", "--json"],
    ]
    .iter()
    .map(|a| a.iter().map(|s| s.to_string()).collect())
    .collect();
    let c = db(home);
    let ids: Vec<i64> = c
        .prepare("SELECT acntid FROM email_accounts")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    for id in ids {
        commands.push(vec![
            "account".into(),
            "show".into(),
            id.to_string(),
            "--json".into(),
        ]);
    }
    for args in commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = engine(home, &args);
        let mut text = out.stdout;
        text.extend_from_slice(&out.stderr);
        places.push((format!("engine {}", args.join(" ")), text));
    }
    for table in ["email_accounts", "email_folders", "email_outbox"] {
        let errors: Vec<Option<String>> = c
            .prepare(&format!("SELECT last_error FROM {table}"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_default();
        for e in errors.into_iter().flatten() {
            places.push((format!("{table}.last_error"), e.into_bytes()));
        }
    }
    for (place, bytes) in &places {
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "password {s:?} in {place}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// `engine outbox add --account ACNTID -` with `raw` on stdin.
pub fn outbox_add(home: &TempHome, acntid: i64, raw: &[u8]) -> Output {
    engine_with(
        home,
        &["outbox", "add", "--account", &acntid.to_string(), "-"],
        &[],
        raw,
    )
}

/// Queues `raw` and returns its emoid.
pub fn queue(home: &TempHome, acntid: i64, raw: &[u8]) -> i64 {
    let out = outbox_add(home, acntid, raw);
    assert!(
        out.status.success(),
        "outbox add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("outbox add prints the emoid")
}

/// `engine ARGS`, killed (and the test failed) if it runs past `limit`.
pub fn run_within(home: &TempHome, args: &[&str], limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let child = home
        .engine()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn engine");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    if !super::wait_until(limit, || waiter.is_finished()) {
        super::process::signal(pid, "KILL");
        let _ = waiter.join();
        panic!(
            "engine {args:?} still running after {limit:?}: something held the run\n{}",
            home.log("l-debug.log")
        );
    }
    let out = waiter.join().expect("join").expect("engine output");
    (out, t0.elapsed())
}
