//! The command line, run lifecycle, configuration, database and scheduling
//! contract (SPEC §1-6, §9), checked from the outside: the real binary in a
//! temp home, a real Dovecot where a server is needed.

mod support;

use chrono::TimeZone;
use rusqlite::Connection;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::engine::*;
use support::{
    text, Dovecot, ScriptedSmtp, ScriptedSmtpOptions, SilentServer, SmtpTls, TempHome, TestCa,
};

// ---------------------------------------------------------------------------
// helpers

fn ok(home: &TempHome, args: &[&str]) -> Output {
    expect_code(home, args, &[], 0)
}

fn json(home: &TempHome, args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = expect_code(home, args, env, 0);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("engine {args:?}: not JSON ({e}): {}", text(&out.stdout)))
}

const WARSAW: (&str, &str) = ("TZ", "Europe/Warsaw");

/// Unix time of a Warsaw wall-clock time (unambiguous ones only).
fn warsaw(s: &str) -> i64 {
    let naive = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
    chrono_tz::Europe::Warsaw
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .timestamp()
}

fn utc(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .expect("time")
        .and_utc()
        .timestamp()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An account whose server is never contacted (plan/status tests):
/// 127.0.0.1:9 over plain IMAP.
/// `account add` of `email` (plain IMAP on a closed port), password on stdin.
fn add_account_cmd(home: &TempHome, email: &str, usrid: i64) -> Output {
    engine_with(
        home,
        &[
            "account",
            "add",
            "--email",
            email,
            "--usrid",
            &usrid.to_string(),
            "--imap-host",
            "127.0.0.1",
            "--imap-port",
            "9",
            "--imap-security",
            "plain",
        ],
        &[],
        b"pw\n",
    )
}

fn dummy_account(home: &TempHome, user: &str, usrid: i64) -> i64 {
    let out = add_account_cmd(home, &format!("{user}@example.com"), usrid);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().parse().expect("acntid")
}

fn inbox_of(home: &TempHome, acntid: i64) -> i64 {
    db(home)
        .query_row(
            "SELECT emfdid FROM email_folders WHERE acntid = ? AND special = 'inbox'",
            [acntid],
            |r| r.get(0),
        )
        .expect("inbox row")
}

/// Inserts a folder the way the web app or a past sync would have left it.
fn add_folder(
    home: &TempHome,
    acntid: i64,
    name: &str,
    priority: &str,
    recent: Option<i64>,
    full: Option<i64>,
) -> i64 {
    let c = db(home);
    c.execute(
        "INSERT INTO email_folders (acntid, name, imap_name, priority, last_recent_sync_at, last_full_sync_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
        crate::params![acntid, name, name, priority, recent, full],
    )
    .expect("insert folder");
    c.last_insert_rowid()
}

fn set_times(home: &TempHome, emfdid: i64, recent: Option<i64>, full: Option<i64>) {
    db(home)
        .execute(
            "UPDATE email_folders SET last_recent_sync_at = ?, last_full_sync_at = ? WHERE emfdid = ?",
            crate::params![recent, full, emfdid],
        )
        .expect("set times");
}

/// (emfdid, kind, deferred, class) of `plan --json ARGS`.
fn plan(home: &TempHome, args: &[&str]) -> Vec<(i64, String, bool, String)> {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let v = json(home, &all, &[WARSAW]);
    v.as_array()
        .expect("plan --json is an array")
        .iter()
        .map(|t| {
            assert!(t["acntid"].is_i64(), "acntid: {t}");
            assert!(
                t["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "reason: {t}"
            );
            (
                t["emfdid"].as_i64().expect("emfdid"),
                t["kind"].as_str().expect("kind").to_string(),
                t["deferred"].as_bool().expect("deferred"),
                t["class"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn plan_ids(home: &TempHome, args: &[&str]) -> Vec<i64> {
    plan(home, args).into_iter().map(|t| t.0).collect()
}

/// Every row of every table, as text: "nothing changed" is equality.
fn dump(path: &Path) -> String {
    let c = Connection::open(path).expect("open db");
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("tables");
    let mut out = String::new();
    for t in tables {
        // A WITHOUT ROWID table (FTS5's shadow tables) reads in key order.
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY rowid"))
            .or_else(|_| c.prepare(&format!("SELECT * FROM \"{t}\"")))
            .expect("prepare");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        out.push_str(&format!("{t}: {rows:?}\n"));
    }
    out
}

fn schema(path: &Path) -> (String, i64) {
    let c = Connection::open(path).expect("open db");
    let sql: Vec<String> = c
        .prepare("SELECT COALESCE(sql, name) FROM sqlite_master ORDER BY type, name")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    (sql.join(";\n"), version)
}

/// The required tables and columns of SPEC §5.
const REQUIRED: &[(&str, &[&str])] = &[
    ("user_sessions", &["usrid", "last_activity_at"]),
    (
        "email_accounts",
        &[
            "acntid",
            "usrid",
            "email",
            "imap_host",
            "imap_port",
            "imap_security",
            "imap_login",
            "imap_password",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_login",
            "smtp_password",
            "active",
            "last_error",
            "last_error_at",
        ],
    ),
    (
        "email_folders",
        &[
            "emfdid",
            "acntid",
            "name",
            "imap_name",
            "special",
            "priority",
            "uidvalidity",
            "last_uid",
            "highestmodseq",
            "last_recent_sync_at",
            "last_full_sync_at",
            "removed_at",
            "last_error",
        ],
    ),
    (
        "email_messages",
        &[
            "emmsid",
            "emfdid",
            "uidvalidity",
            "uid",
            "message_id",
            "subject",
            "from_addr",
            "to_addrs",
            "date_at",
            "internal_date_at",
            "size",
            "flags",
            "partial",
            "raw",
        ],
    ),
    (
        "email_outbox",
        &[
            "emoid",
            "acntid",
            "raw",
            "mail_from",
            "rcpt_to",
            "state",
            "attempts",
            "next_attempt_at",
            "last_error",
            "created_at",
            "sent_at",
        ],
    ),
];

fn assert_public_schema(path: &Path, after: &str) {
    let c = Connection::open(path).unwrap_or_else(|e| panic!("{after}: open db: {e}"));
    for (table, columns) in REQUIRED {
        let have: Vec<String> = c
            .prepare(&format!("PRAGMA table_info({table})"))
            .expect("prepare")
            .query_map([], |r| r.get::<_, String>(1))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert!(!have.is_empty(), "{after}: table {table} missing");
        for col in *columns {
            assert!(
                have.iter().any(|h| h == col),
                "{after}: {table}.{col} missing"
            );
        }
    }
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal", "{after}");
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version");
    assert!(version >= 1, "{after}: user_version {version}");
}

/// `[YYYY-MM-DD HH:MM:SS][#PID.tN] message`: (time, pid, N, message).
fn parse_line(l: &str) -> Option<(chrono::NaiveDateTime, u32, u32, &str)> {
    let rest = l.strip_prefix('[')?;
    let time = chrono::NaiveDateTime::parse_from_str(rest.get(..19)?, "%Y-%m-%d %H:%M:%S").ok()?;
    let rest = rest.get(19..)?.strip_prefix("][#")?;
    let (pid, rest) = rest.split_once(".t")?;
    let (n, msg) = rest.split_once("] ")?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((time, pid.parse().ok()?, n.parse().ok()?, msg))
}

/// A trailing ` [acntid,emfdid]` (either part may be empty, not both).
fn trailing_at(msg: &str) -> Option<(Option<i64>, Option<i64>)> {
    let inner = msg.strip_suffix(']')?;
    let (_, at) = inner.rsplit_once(" [")?;
    let (a, f) = at.split_once(',')?;
    let num = |s: &str| -> Option<Option<i64>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let (a, f) = (num(a)?, num(f)?);
    (a.is_some() || f.is_some()).then_some((a, f))
}

/// Spawns `engine run` (cron-like: no terminal) and returns the child.
fn spawn_run(home: &TempHome, args: &[&str]) -> std::process::Child {
    home.engine()
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn engine run")
}

/// A copy of the engine binary that any user may execute (the build dir
/// may not be reachable for `nobody`).
fn engine_for_anyone(dir: &Path) -> PathBuf {
    let bin = dir.join("engine");
    std::fs::copy(env!("CARGO_BIN_EXE_engine"), &bin).expect("copy engine");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// `engine --home HOME ARGS` as user nobody.
fn engine_as_nobody(bin: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("BACKPROC_HOME")
        .env_remove("BACKPROC_CONFIG")
        .current_dir("/")
        .output()
        .expect("setpriv")
}

fn world_open_dir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}

// ---------------------------------------------------------------------------
// 1. layout and lifecycle

#[test]
fn home_and_config_come_from_flags_or_environment() {
    let base = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_engine");
    let make = |name: &str| {
        let p = base.path().join(name);
        std::fs::create_dir(&p).expect("mkdir");
        p
    };
    let (flag_home, env_home, cwd_home) = (make("flag"), make("env"), make("cwd"));
    let cmd = |dir: &Path| {
        let mut c = Command::new(bin);
        c.env_remove("BACKPROC_HOME")
            .env_remove("BACKPROC_CONFIG")
            .current_dir(dir);
        c
    };
    let has_db = |h: &Path| h.join("data/engine.sqlite").exists();

    // --home wins over BACKPROC_HOME; BACKPROC_HOME over the current directory
    let out = cmd(&cwd_home)
        .args(["--home"])
        .arg(&flag_home)
        .env("BACKPROC_HOME", &env_home)
        .arg("status")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(has_db(&flag_home) && !has_db(&env_home) && !has_db(&cwd_home));
    let out = cmd(&cwd_home)
        .env("BACKPROC_HOME", &env_home)
        .arg("status")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(has_db(&env_home) && !has_db(&cwd_home));
    let out = cmd(&cwd_home).arg("status").output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(has_db(&cwd_home), "default home is the current directory");

    // config: HOME/config.inc by default; --config and BACKPROC_CONFIG name another
    std::fs::write(
        flag_home.join("config.inc"),
        "<?php\ndefine('BG_MAX_THREADS', 'home');\n",
    )
    .expect("write");
    let other = base.path().join("other.inc");
    std::fs::write(&other, "<?php\n\ndefine('BG_MAX_THREADS', 'other');\n").expect("write");
    let out = cmd(&cwd_home)
        .arg("--home")
        .arg(&flag_home)
        .arg("plan")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains(&format!(
            "{}:2: BG_MAX_THREADS expects",
            flag_home.join("config.inc").display()
        )),
        "{}",
        text(&out.stderr)
    );
    let out = cmd(&cwd_home)
        .arg("--home")
        .arg(&flag_home)
        .arg("--config")
        .arg(&other)
        .arg("plan")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains(&format!("{}:3: ", other.display())));
    let out = cmd(&cwd_home)
        .arg("--home")
        .arg(&flag_home)
        .env("BACKPROC_CONFIG", &other)
        .arg("plan")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains(&format!("{}:3: ", other.display())));
    // a good file named by the environment replaces the bad HOME/config.inc
    let good = base.path().join("good.inc");
    std::fs::write(&good, "<?php define('BG_MAX_THREADS', 3);").expect("write");
    let out = cmd(&cwd_home)
        .arg("--home")
        .arg(&flag_home)
        .env("BACKPROC_CONFIG", &good)
        .arg("plan")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // --config wins over BACKPROC_CONFIG
    let out = cmd(&cwd_home)
        .arg("--home")
        .arg(&flag_home)
        .arg("--config")
        .arg(&good)
        .env("BACKPROC_CONFIG", &other)
        .arg("plan")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_fresh_home_gets_private_setgid_dirs_and_a_quiet_cron_run() {
    let home = TempHome::new();
    // a fresh git checkout has the directories with 0755
    std::fs::create_dir(home.path().join("logs")).expect("mkdir");
    std::fs::set_permissions(
        home.path().join("logs"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let out = ok(&home, &["run"]);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "a cron run with nothing to do prints nothing: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = ok(&home, &[]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let files = assert_private(&home, "after a cron run");
    for f in [
        "data/engine.sqlite",
        "pid/engine.pid",
        "logs/l-debug.log",
        "logs/l-info.log",
        "logs/l-threading-error.txt",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {files:?}");
    }
}

#[test]
fn a_live_run_holds_the_pidfile_with_its_pid_and_start_time_and_keeps_files_private() {
    let home = TempHome::new();
    let silent = SilentServer::start();
    home.write_config("<?php define('BG_IO_TIMEOUT', 30);");
    add_account_with(&home, "plain", silent.port(), "alice", "pw-live-secret");
    let t0 = now();
    let mut child = spawn_run(&home, &[]);
    assert!(
        support::wait_until(Duration::from_secs(20), || silent.accepted() > 0),
        "the run never connected"
    );
    let t1 = now();
    let pidfile = std::fs::read_to_string(home.pid_path()).expect("pidfile");
    let mut lines = pidfile.lines();
    assert_eq!(
        lines.next().and_then(|l| l.trim().parse::<u32>().ok()),
        Some(child.id()),
        "pidfile: {pidfile:?}"
    );
    let since: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no start time in the pidfile: {pidfile:?}"));
    assert!(
        (t0..=t1).contains(&since),
        "start time {since} not in [{t0}, {t1}]"
    );
    // while live the database has its -wal and -shm: all private
    let files = assert_private(&home, "during a live run");
    for f in ["data/engine.sqlite-wal", "data/engine.sqlite-shm"] {
        assert!(files.iter().any(|x| x == f), "{f} missing: {files:?}");
    }
    let status = ok(&home, &["status"]);
    assert!(
        text(&status.stdout).contains(&format!("live (pid {}", child.id())),
        "{}",
        text(&status.stdout)
    );
    // the web app's commands do not wait for the run
    let t = Instant::now();
    let b = dummy_account(&home, "bob", 8);
    let out = engine_with(
        &home,
        &["outbox", "add", "--account", &b.to_string()],
        &[],
        b"From: bob@example.com\r\nTo: carol@example.com\r\n\r\nhi\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&home, &["session", "touch", "8"]);
    ok(&home, &["account", "list"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(support::process::alive(child.id()), "the run ended early");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        !home.log("l-debug.log").contains("pw-live-secret"),
        "password in the log"
    );
}

#[test]
fn on_a_terminal_run_shows_progress_on_stderr() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    dovecot
        .imap("dave")
        .append_many("INBOX", &[message(1, 300), message(2, 300)]);
    add_account(&home, &dovecot, "dave");
    // `script` gives the engine a terminal; what it shows comes back on stdout
    let out = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} --home {} run",
            env!("CARGO_BIN_EXE_engine"),
            home.path().display()
        ))
        .arg("/dev/null")
        .env_remove("BACKPROC_HOME")
        .env_remove("BACKPROC_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("1/1 folders") && shown.contains("2 messages received"),
        "{shown:?}"
    );
}

#[test]
fn a_damaged_database_exits_1_naming_the_file() {
    let home = TempHome::new();
    std::fs::create_dir(home.path().join("data")).expect("mkdir");
    std::fs::write(home.db_path(), vec![b'x'; 8192]).expect("write");
    for cmd in [&["status"][..], &["run"], &["plan"]] {
        let out = expect_code(&home, cmd, &[], 1);
        assert!(
            text(&out.stderr).contains("engine.sqlite"),
            "{cmd:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn unusable_directories_exit_73() {
    // logs/ (or pid/, data/) is a regular file
    for name in ["logs", "pid", "data"] {
        let home = TempHome::new();
        std::fs::write(home.path().join(name), b"x").expect("write");
        let out = expect_code(&home, &["run"], &[], 73);
        assert!(
            text(&out.stderr).contains(name),
            "the message names {name}: {}",
            text(&out.stderr)
        );
        expect_code(&home, &["status"], &[], 73);
    }
    // HOME itself is a regular file
    let base = tempfile::tempdir().expect("tempdir");
    let file = base.path().join("home");
    std::fs::write(&file, b"x").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .arg("--home")
        .arg(&file)
        .arg("run")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));

    // as an unprivileged user: HOME not writable, data/ or logs/ not writable
    let base = world_open_dir("bp-nobody-");
    let bin = engine_for_anyone(base.path());
    let ro_home = base.path().join("ro");
    std::fs::create_dir(&ro_home).expect("mkdir");
    std::fs::set_permissions(&ro_home, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = engine_as_nobody(&bin, &ro_home, &["run"]);
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));
    let out = engine_as_nobody(&bin, &ro_home, &["status"]);
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));

    for locked in ["data", "logs", "pid"] {
        let home = base.path().join(format!("home-{locked}"));
        std::fs::create_dir(&home).expect("mkdir");
        std::os::unix::fs::chown(&home, Some(65534), Some(65534)).expect("chown");
        // root's directory, no access for others (not world-accessible, so
        // the engine has nothing to fix and cannot fix it anyway)
        std::fs::create_dir(home.join(locked)).expect("mkdir");
        std::fs::set_permissions(home.join(locked), std::fs::Permissions::from_mode(0o2770))
            .expect("chmod");
        let out = engine_as_nobody(&bin, &home, &["run"]);
        assert_eq!(
            out.status.code(),
            Some(73),
            "{locked}/ not writable: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(locked),
            "the message names {locked}: {}",
            text(&out.stderr)
        );
    }
    // and the same user with a writable home works
    let fine = base.path().join("fine");
    std::fs::create_dir(&fine).expect("mkdir");
    std::os::unix::fs::chown(&fine, Some(65534), Some(65534)).expect("chown");
    let out = engine_as_nobody(&bin, &fine, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------
// 2. configuration

/// A web app's config.inc: hundreds of unrelated things, ours in the middle.
fn realistic_config(ours: &str) -> String {
    let mut s = String::from(
        "<?php\n\
         /**\n * eDokumenty configuration\n * define('BG_MAX_THREADS', 0);  <- commented out\n */\n\
         # define('BG_MAX_TASKS_PER_THREAD', 'x');\n\
         // define('EMAIL_OUTBOX_ENABLED', 'maybe');\n\
         error_reporting(E_ALL & ~E_NOTICE);\n\
         define('DB_HOST', 'localhost');\n\
         define('DB_PORT', 5432);\n\
         define(\"DB_NAME\", \"edokumenty\");\n\
         define('APP_ROOT', dirname(__FILE__) . '/..');\n\
         define('DEBUG', false);\n\
         define('PRICES', [1, 2, 3]);\n\
         define('GREETING', \"Witaj, {$user}!\");\n\
         $config = array('x' => 'define(\\'BG_MAX_THREADS\\', 0);');\n\
         if (!defined('LANG')) { define('LANG', 'pl_PL'); }\n\
         $sql = <<<SQL\nSELECT define('BG_MAX_THREADS', 0);\nSQL;\n",
    );
    for i in 0..150 {
        s.push_str(&format!(
            "define('OPTION_{i}', {});  // option {i}\n",
            match i % 4 {
                0 => format!("{i}"),
                1 => format!("'value {i}'"),
                2 => "TRUE".to_string(),
                _ => format!("OPTION_{} * 2", i - 1),
            }
        ));
    }
    s.push_str(ours);
    s.push_str("\nfunction helper($a) { return define('X_' . $a, 1); }\n?>\n<html>define('BG_MAX_THREADS', 0);</html>\n");
    s
}

#[test]
fn a_realistic_config_inc_is_read_as_is() {
    let home = TempHome::new();
    home.write_config(&realistic_config(
        "DEFINE('BG_MAX_THREADS', '1');\n\
         define(\"BG_MAX_TASKS_PER_THREAD\", 2); /* two */\n\
         define( 'EMAIL_BG_LO_FOLDERS_SYNC_START' , \"21:30\" ) ;\n",
    ));
    let a = dummy_account(&home, "alice", 7);
    let t = "2026-06-02 21:00:00";
    let inbox = inbox_of(&home, a);
    let later = utc("2027-01-01 00:00:00");
    set_times(&home, inbox, Some(later), Some(later));
    // synced after yesterday's 21:30 window: due at 21:30, not at 21:00 (with
    // the default 20:00 it would be due at 21:00 already)
    let lo = add_folder(
        &home,
        a,
        "Archiwum",
        "lo",
        Some(warsaw("2026-06-01 21:45:00")),
        Some(warsaw("2026-06-01 21:45:00")),
    );
    let n1 = add_folder(&home, a, "Nowy1", "lo", None, None);
    let n2 = add_folder(&home, a, "Nowy2", "lo", None, None);
    assert_eq!(plan_ids(&home, &["--at", t]), vec![n1, n2]);
    let tasks = plan(&home, &["--at", "2026-06-02 21:30:00"]);
    assert_eq!(
        tasks.iter().map(|t| (t.0, t.2)).collect::<Vec<_>>(),
        vec![(n1, false), (n2, false), (lo, true)],
        "capacity 1 thread x 2 tasks"
    );
    // every command reads it
    ok(&home, &["status"]);
    ok(&home, &["run", "--dry-run"]);
}

#[test]
fn a_bad_value_exits_78_naming_path_line_and_name() {
    let home = TempHome::new();
    let dir = home.path().join("etc");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(
        dir.join("config.inc"),
        "<?php\n// comment\ndefine('BG_MAX_THREADS', 4);\n\ndefine('EMAIL_BG_LO_FOLDERS_SYNC_START', '25:00');\n",
    )
    .expect("write");
    for cmd in [&["run"][..], &["plan"], &["status"], &[]] {
        // PATH as given on the command line (relative here)
        let out = home
            .engine()
            .current_dir(home.path())
            .args(["--config", "./etc/config.inc"])
            .args(cmd)
            .output()
            .expect("run");
        assert_eq!(
            out.status.code(),
            Some(78),
            "{cmd:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(
            err.starts_with(
                "./etc/config.inc:5: EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM'"
            ),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("'25:00'"), "{err}");
        assert!(out.stdout.is_empty());
    }
    assert!(
        !home.logs_dir().join("l-info.log").exists(),
        "a run with a bad config does no work"
    );
    // the defaulted path, as given: --home HOME gives HOME/config.inc
    home.write_config("<?php\ndefine('BG_MAX_THREADS', 0);\n");
    let out = expect_code(&home, &["status"], &[], 78);
    assert!(
        text(&out.stderr).starts_with(&format!(
            "{}:2: BG_MAX_THREADS expects an integer >= 1, got 0",
            home.config_path().display()
        )),
        "{}",
        text(&out.stderr)
    );
    // a wrong type and an unparsable define of a known name
    for (body, name) in [
        (
            "define('EMAIL_OUTBOX_ENABLED', 'yes');",
            "EMAIL_OUTBOX_ENABLED",
        ),
        ("define('BG_IO_TIMEOUT', 1.5);", "BG_IO_TIMEOUT"),
        ("define('BG_SCHEDULE_GRACE', -1);", "BG_SCHEDULE_GRACE"),
        ("define('BG_MAX_RUN_TIME', 60;", "BG_MAX_RUN_TIME"),
    ] {
        home.write_config(&format!("<?php\n{body}\n"));
        let out = expect_code(&home, &["plan"], &[], 78);
        assert!(
            text(&out.stderr).starts_with(&format!(
                "{}:2: {name} expects ",
                home.config_path().display()
            )),
            "{body}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_missing_config_means_defaults() {
    let home = TempHome::new();
    assert!(!home.config_path().exists());
    let a = dummy_account(&home, "alice", 7);
    let inbox = inbox_of(&home, a);
    let t = warsaw("2026-06-02 12:00:00");
    // defaults: NL recent interval 1800 s with 60 s grace, lo window 20:00
    set_times(&home, inbox, Some(t - 1739), Some(t - 1739));
    let lo = add_folder(
        &home,
        a,
        "Lo",
        "lo",
        Some(warsaw("2026-06-01 19:59:00")),
        Some(warsaw("2026-06-01 19:59:00")),
    );
    assert_eq!(plan_ids(&home, &["--at", "2026-06-02 12:00:00"]), vec![lo]);
    set_times(&home, inbox, Some(t - 1740), Some(t - 1740));
    let v = json(
        &home,
        &["plan", "--json", "--at", "2026-06-02 12:00:00"],
        &[WARSAW],
    );
    assert_eq!(v[0]["emfdid"].as_i64(), Some(inbox));
    assert_eq!(v[0]["kind"], "recent");
    assert!(v[1]["reason"].as_str().expect("reason").contains("20:00"));
    ok(&home, &["status"]);
    ok(&home, &["run", "--dry-run"]);
    // A run says so in its log: a mistyped --config is not silent.
    ok(&home, &["run", "--no-sync", "--no-outbox"]);
    let info = std::fs::read_to_string(home.logs_dir().join("l-info.log")).expect("l-info.log");
    let line = info
        .lines()
        .find(|l| l.contains("not found: running with the defaults"))
        .unwrap_or_else(|| panic!("no line about the missing config in:\n{info}"));
    assert!(
        line.contains(&home.config_path().display().to_string()),
        "{line}"
    );
    // With the file in place, no such line.
    std::fs::write(home.config_path(), "<?php\n").expect("write config.inc");
    std::fs::remove_file(home.logs_dir().join("l-info.log")).expect("rm l-info.log");
    ok(&home, &["run", "--no-sync", "--no-outbox"]);
    let info = std::fs::read_to_string(home.logs_dir().join("l-info.log")).unwrap_or_default();
    assert!(!info.contains("not found"), "{info}");
}

#[test]
fn adding_an_address_twice_is_allowed_with_a_note_naming_the_first() {
    let home = TempHome::new();
    let first = dummy_account(&home, "alice", 7);
    let out = add_account_cmd(&home, "Alice@example.com", 8);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let second: i64 = text(&out.stdout)
        .trim()
        .parse()
        .expect("the acntid alone on stdout");
    assert_ne!(second, first);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("account {first} has the same address")),
        "{err}"
    );
    // A new address: nothing on stderr.
    let out = add_account_cmd(&home, "bob@example.com", 9);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn switches_turn_off_sync_and_outbox_and_each_run_rereads_the_file() {
    let home = TempHome::new();
    let imap = SilentServer::start();
    let smtp = SilentServer::start();
    let out = engine_with(
        &home,
        &[
            "account",
            "add",
            "--email",
            "alice@example.com",
            "--imap-host",
            "127.0.0.1",
            "--imap-port",
            &imap.port().to_string(),
            "--imap-security",
            "plain",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            &smtp.port().to_string(),
            "--smtp-security",
            "plain",
        ],
        &[],
        b"pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let acntid = text(&out.stdout).trim().to_string();
    let out = engine_with(
        &home,
        &["outbox", "add", "--account", &acntid],
        &[],
        b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhello\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    home.write_config(
        "<?php\ndefine('EMAIL_BACKGROUND_SYNC_ENABLED', FALSE);\ndefine('EMAIL_OUTBOX_ENABLED', false);\ndefine('BG_IO_TIMEOUT', 1);\n",
    );
    let out = ok(&home, &["run"]);
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    // the flags do the same with the switches on
    home.write_config("<?php\ndefine('BG_IO_TIMEOUT', 1);\n");
    ok(&home, &["run", "--no-sync", "--no-outbox"]);
    assert_eq!(imap.accepted(), 0, "IMAP was contacted");
    assert_eq!(smtp.accepted(), 0, "SMTP was contacted");
    let inbox_synced: Option<i64> = db(&home)
        .query_row(
            "SELECT last_full_sync_at FROM email_folders WHERE special = 'inbox'",
            [],
            |r| r.get(0),
        )
        .expect("inbox");
    assert_eq!(inbox_synced, None);

    // sync off, outbox on: only SMTP is contacted
    home.write_config(
        "<?php\ndefine('EMAIL_BACKGROUND_SYNC_ENABLED', FALSE);\ndefine('BG_IO_TIMEOUT', 1);\n",
    );
    let out = engine_with(&home, &["run"], &[], b"");
    assert!(matches!(out.status.code(), Some(0 | 75)));
    assert_eq!(imap.accepted(), 0, "IMAP was contacted with sync off");
    assert!(smtp.accepted() > 0, "the outbox was not drained");
    // the file is read afresh: sync on, outbox off
    home.write_config(
        "<?php\ndefine('EMAIL_OUTBOX_ENABLED', FALSE);\ndefine('BG_IO_TIMEOUT', 1);\n",
    );
    let smtp_before = smtp.accepted();
    let out = engine_with(&home, &["run"], &[], b"");
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(imap.accepted() > 0, "sync did not run");
    assert_eq!(
        smtp.accepted(),
        smtp_before,
        "SMTP contacted with outbox off"
    );
}

// ---------------------------------------------------------------------------
// 3. exit codes

#[test]
fn usage_errors_exit_2() {
    let home = TempHome::new();
    let a = dummy_account(&home, "alice", 7);
    let a = a.to_string();
    for args in [
        &["--no-such-flag"][..],
        &["run", "--no-such-flag"],
        &["frobnicate"],
        &["plan", "--at", "garbage"],
        &["plan", "--at", "2026-02-30 10:00:00"],
        &["plan", "--at", "2026-06-02 24:00:00"],
        &["plan", "--at", "2026-06-02"],
        &["run", "--account", "abc"],
        &["folder", "priority", "1", "mid"],
        &["account", "add", "--email", "x@example.com"],
        &["account", "show"],
        &["session", "touch"],
        &["outbox", "list", "--state", "lost"],
        &["--force", "status"],
    ] {
        let out = expect_code(&home, args, &[], 2);
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    // a valid --at is accepted
    ok(&home, &["plan", "--at", "2026-06-02 23:59:59"]);
    ok(&home, &["account", "show", &a]);
}

#[test]
fn bad_input_exits_65_and_changes_nothing() {
    let home = TempHome::new();
    let a = dummy_account(&home, "alice", 7).to_string();
    let before = dump(&home.db_path());
    let cases: Vec<(Vec<&str>, &[u8])> = vec![
        (
            vec!["outbox", "add", "--account", &a],
            b"To: bob@example.com\r\nSubject: no from\r\n\r\nbody\r\n",
        ),
        (
            vec!["outbox", "add", "--account", &a],
            b"From: alice@example.com\r\nSubject: nobody to send to\r\n\r\nbody\r\n",
        ),
        (
            vec!["outbox", "add", "--account", "999"],
            b"From: alice@example.com\r\nTo: bob@example.com\r\n\r\nbody\r\n",
        ),
        (vec!["account", "show", "999"], b""),
        (vec!["account", "show", "999", "--json"], b""),
        (vec!["account", "remove", "999"], b""),
        (vec!["account", "test", "999"], b""),
        (vec!["folder", "priority", "999", "hi"], b""),
        (
            vec![
                "account",
                "add",
                "--email",
                "not-an-address",
                "--imap-host",
                "h",
            ],
            b"pw\n",
        ),
        (
            vec![
                "account",
                "add",
                "--email",
                "b@example.com",
                "--imap-host",
                "h",
            ],
            b"",
        ),
        (
            vec![
                "account",
                "add",
                "--email",
                "b@example.com",
                "--imap-host",
                "h",
                "--password-env",
                "BP_TEST_UNSET_VARIABLE",
            ],
            b"",
        ),
        (vec!["run", "--account", "999"], b""),
        (vec!["run", "--dry-run", "--account", "999"], b""),
        (vec!["plan", "--account", "999"], b""),
    ];
    for (args, stdin) in cases {
        let out = engine_with(&home, &args, &[], stdin);
        assert_eq!(
            out.status.code(),
            Some(65),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: no reason given");
    }
    assert_eq!(
        dump(&home.db_path()),
        before,
        "bad input changed the database"
    );
}

// ---------------------------------------------------------------------------
// 4. database

#[test]
fn every_command_creates_the_public_schema_in_wal_idempotently() {
    let commands: &[&[&str]] = &[
        &["status"],
        &["status", "--json"],
        &["plan"],
        &["run"],
        &["run", "--dry-run"],
        &["account", "list"],
        &["folder", "list", "--json"],
        &["session", "touch", "5"],
        &["outbox", "list"],
    ];
    for cmd in commands {
        let home = TempHome::new();
        ok(&home, cmd);
        assert_public_schema(&home.db_path(), &format!("{cmd:?}"));
        let first = schema(&home.db_path());
        ok(&home, cmd);
        ok(&home, &["status"]);
        assert_eq!(schema(&home.db_path()), first, "{cmd:?} twice");
    }
    let home = TempHome::new();
    ok(&home, &["session", "touch", "5"]);
    ok(&home, &["session", "touch", "5"]);
    let n: i64 = db(&home)
        .query_row("SELECT COUNT(*) FROM user_sessions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1);
    ok(&home, &["session", "end", "5"]);
    ok(&home, &["session", "end", "5"]);
}

/// The tables as the web application might have created them itself:
/// exactly the columns SPEC §5 requires, in rollback-journal mode.
const WEB_APP_SCHEMA: &str = "
CREATE TABLE user_sessions (usrid INTEGER PRIMARY KEY, last_activity_at INTEGER);
CREATE TABLE email_accounts (acntid INTEGER PRIMARY KEY, usrid INTEGER, email TEXT,
    imap_host TEXT, imap_port INTEGER, imap_security TEXT, imap_login TEXT, imap_password TEXT,
    smtp_host TEXT, smtp_port INTEGER, smtp_security TEXT, smtp_login TEXT, smtp_password TEXT,
    active INTEGER, last_error TEXT, last_error_at INTEGER);
CREATE TABLE email_folders (emfdid INTEGER PRIMARY KEY, acntid INTEGER, name TEXT,
    imap_name TEXT, special TEXT, priority TEXT, uidvalidity INTEGER, last_uid INTEGER,
    highestmodseq INTEGER, last_recent_sync_at INTEGER, last_full_sync_at INTEGER,
    removed_at INTEGER, last_error TEXT);
CREATE TABLE email_messages (emmsid INTEGER PRIMARY KEY, emfdid INTEGER, uidvalidity INTEGER,
    uid INTEGER, message_id TEXT, subject TEXT, from_addr TEXT, to_addrs TEXT, date_at INTEGER,
    internal_date_at INTEGER, size INTEGER, flags TEXT, partial INTEGER, raw BLOB,
    UNIQUE (emfdid, uidvalidity, uid));
CREATE TABLE email_outbox (emoid INTEGER PRIMARY KEY, acntid INTEGER, raw BLOB, mail_from TEXT,
    rcpt_to TEXT, state TEXT, attempts INTEGER, next_attempt_at INTEGER, last_error TEXT,
    created_at INTEGER, sent_at INTEGER);
CREATE TABLE documents (docid INTEGER PRIMARY KEY, title TEXT);
INSERT INTO documents (title) VALUES ('faktura 1/2026');
INSERT INTO user_sessions VALUES (7, 1);
";

fn insert_web_app_account(c: &support::Db, dovecot: &Dovecot, user: &str) -> i64 {
    c.execute(
        "INSERT INTO email_accounts (usrid, email, imap_host, imap_port, imap_security, imap_login, imap_password) \
         VALUES (7, ?, 'localhost', ?, 'tls', ?, ?)",
        crate::params![
            format!("{user}@example.com"),
            dovecot.imaps_port(),
            user,
            dovecot.password(user)
        ],
    )
    .expect("insert account");
    c.last_insert_rowid()
}

fn assert_synced_like_an_engine_account(home: &TempHome, dovecot: &Dovecot, user: &str, a: i64) {
    let inbox: (String, String, Option<i64>) = db(home)
        .query_row(
            "SELECT special, priority, last_full_sync_at FROM email_folders \
             WHERE acntid = ? AND imap_name = 'INBOX'",
            [a],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("INBOX row");
    assert_eq!((inbox.0.as_str(), inbox.1.as_str()), ("inbox", "hi"));
    assert!(inbox.2.is_some(), "INBOX not synced");
    let lo: String = db(home)
        .query_row(
            "SELECT priority FROM email_folders WHERE acntid = ? AND name = 'Projekty'",
            [a],
            |r| r.get(0),
        )
        .expect("Projekty row");
    assert_eq!(lo, "lo");
    assert_mirror(home, dovecot, user, a, "INBOX");
    assert_mirror(home, dovecot, user, a, "Projekty");
}

#[test]
fn an_account_inserted_by_the_web_app_is_synced() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    // the web app's config.inc lives elsewhere and names the CA relative to itself
    let app = home.path().join("app");
    std::fs::create_dir_all(app.join("certs")).expect("mkdir");
    std::fs::copy(dovecot.ca_file(), app.join("certs/ca.pem")).expect("copy CA");
    std::fs::write(
        app.join("config.inc"),
        "<?php\ndefine('BG_TLS_CA_FILE', 'certs/ca.pem');\n",
    )
    .expect("write config");
    let imap = dovecot.imap("alice");
    imap.create_folder("Projekty");
    imap.append("INBOX", &message(1, 400), "");
    imap.append("Projekty", &message(2, 400), "\\Seen");
    ok(&home, &["status"]);
    let a = insert_web_app_account(&db(&home), &dovecot, "alice");
    // before any run, plan already shows the account due
    let v = json(&home, &["plan", "--json"], &[]);
    assert!(
        v.as_array()
            .expect("array")
            .iter()
            .any(|t| t["acntid"].as_i64() == Some(a) && t["kind"] == "full"),
        "{v}"
    );
    // cron starts it elsewhere
    let out = home
        .engine()
        .arg("--config")
        .arg(app.join("config.inc"))
        .arg("run")
        .current_dir("/")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        home.log("l-debug.log")
    );
    assert_synced_like_an_engine_account(&home, &dovecot, "alice", a);
}

#[test]
fn tables_the_web_app_created_itself_are_adopted() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let imap = dovecot.imap("bob");
    imap.create_folder("Projekty");
    imap.append_many("INBOX", &[message(1, 400), message(2, 600)]);
    imap.append("Projekty", &message(3, 400), "");
    std::fs::create_dir(home.path().join("data")).expect("mkdir");
    let a = {
        let c = support::Db::sqlite(&home.db_path());
        c.execute_batch(WEB_APP_SCHEMA).expect("web app schema");
        insert_web_app_account(&c, &dovecot, "bob")
    };
    ok(&home, &["status"]);
    assert_public_schema(&home.db_path(), "status on the web app's tables");
    let first = schema(&home.db_path());
    ok(&home, &["account", "list", "--json"]);
    assert_eq!(schema(&home.db_path()), first, "a second migration");
    run(&home, &[], 0);
    assert_synced_like_an_engine_account(&home, &dovecot, "bob", a);
    // a second full sync finds everything in place (no duplicates)
    run(&home, &["--force"], 0);
    assert_mirror(&home, &dovecot, "bob", a, "INBOX");
    // the web app's own data is untouched
    let c = db(&home);
    let title: String = c
        .query_row("SELECT title FROM documents", [], |r| r.get(0))
        .expect("documents");
    assert_eq!(title, "faktura 1/2026");
    let act: i64 = c
        .query_row(
            "SELECT last_activity_at FROM user_sessions WHERE usrid = 7",
            [],
            |r| r.get(0),
        )
        .expect("session");
    assert_eq!(act, 1);
    // engine commands work on it too
    let b = add_account(&home, &dovecot, "carol");
    assert!(b > a);
    ok(&home, &["account", "remove", &b.to_string()]);
    integrity_ok(&home);
}

// ---------------------------------------------------------------------------
// 5. plan

#[test]
fn plan_lists_due_folders_in_run_order_with_reasons_and_capacity() {
    let home = TempHome::new();
    home.write_config("<?php define('BG_MAX_THREADS', 2); define('BG_MAX_TASKS_PER_THREAD', 2);");
    let at = "2026-06-02 12:00:00";
    let t = warsaw(at);
    let a = dummy_account(&home, "alice", 7);
    let b = dummy_account(&home, "bob", 8);
    // alice is logged in at `at` (the web app writes the table)
    db(&home)
        .execute(
            "INSERT INTO user_sessions (usrid, last_activity_at) VALUES (7, ?)",
            [t - 100],
        )
        .expect("session");
    let a_inbox = inbox_of(&home, a);
    let b_inbox = inbox_of(&home, b);
    set_times(&home, a_inbox, Some(t - 700), Some(t - 1000)); // recent due, 100 s over
    let a_proj = add_folder(&home, a, "Projekty", "hi", Some(t - 4000), Some(t - 4000)); // full due
    let a_new = add_folder(&home, a, "Nowy", "hi", None, None); // never synced
    let a_fresh = add_folder(&home, a, "Fresh", "hi", Some(t - 100), Some(t - 100)); // not due
    let a_arch = add_folder(
        &home,
        a,
        "Archiwum",
        "lo",
        Some(warsaw("2026-06-01 19:00:00")),
        Some(warsaw("2026-06-01 19:00:00")),
    ); // missed yesterday's window
    let a_old = add_folder(
        &home,
        a,
        "Stare",
        "lo",
        Some(warsaw("2026-06-01 20:30:00")),
        Some(warsaw("2026-06-01 20:30:00")),
    ); // synced after it: not due
    set_times(&home, b_inbox, Some(t - 2000), Some(t - 2000)); // NL recent due
    let b_lo = add_folder(&home, b, "Lo-never", "lo", None, None);

    let tasks = plan(&home, &["--at", at]);
    let got: Vec<(i64, &str, bool)> = tasks.iter().map(|t| (t.0, t.1.as_str(), t.2)).collect();
    assert_eq!(
        got,
        vec![
            (a_new, "full", false),
            (a_proj, "full", false),
            (a_inbox, "recent", false),
            (b_inbox, "recent", false),
            (b_lo, "full", true),
            (a_arch, "full", true),
        ]
    );
    assert!(!got.iter().any(|x| x.0 == a_fresh || x.0 == a_old));
    let v = json(&home, &["plan", "--json", "--at", at], &[WARSAW]);
    let reason = |id: i64| {
        v.as_array()
            .expect("array")
            .iter()
            .find(|t| t["emfdid"].as_i64() == Some(id))
            .and_then(|t| t["reason"].as_str())
            .expect("reason")
            .to_string()
    };
    assert!(reason(a_new).contains("never synced"), "{}", reason(a_new));
    assert!(reason(a_inbox).contains("logged in"), "{}", reason(a_inbox));
    assert!(
        reason(b_inbox).contains("not logged in"),
        "{}",
        reason(b_inbox)
    );
    assert!(reason(a_arch).contains("20:00"), "{}", reason(a_arch));
    assert_eq!(v[0]["acntid"].as_i64(), Some(a));
    // the text form says the same, deferred ones marked
    let out = expect_code(&home, &["plan", "--at", at], &[WARSAW], 0);
    let s = text(&out.stdout);
    assert!(s.contains("Nowy") && s.contains("Archiwum"), "{s}");
    assert_eq!(s.matches("deferred").count(), 2, "{s}");
    // --account limits the plan
    let only_b = plan_ids(&home, &["--at", at, "--account", &b.to_string()]);
    assert_eq!(only_b, vec![b_inbox, b_lo]);
}

#[test]
fn plan_at_evaluates_another_local_moment_dst_included() {
    let home = TempHome::new();
    let a = dummy_account(&home, "alice", 7);
    let inbox = inbox_of(&home, a);
    // out of the way: synced far in the future
    set_times(
        &home,
        inbox,
        Some(utc("2027-01-01 00:00:00")),
        Some(utc("2027-01-01 00:00:00")),
    );
    let yesterday_2005 = warsaw("2026-06-01 20:05:00");
    let lo = add_folder(
        &home,
        a,
        "Archiwum",
        "lo",
        Some(yesterday_2005),
        Some(yesterday_2005),
    );
    assert!(plan_ids(&home, &["--at", "2026-06-02 19:59:00"]).is_empty());
    assert!(plan_ids(&home, &["--at", "2026-06-02 19:59:59"]).is_empty());
    assert_eq!(plan_ids(&home, &["--at", "2026-06-02 20:00:00"]), vec![lo]);
    assert_eq!(plan_ids(&home, &["--at", "2026-06-02 20:05:00"]), vec![lo]);
    // the same instant under another TZ is another local time
    let v = json(
        &home,
        &["plan", "--json", "--at", "2026-06-02 19:30:00"],
        &[("TZ", "UTC")],
    );
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(1),
        "19:30 UTC is 21:30 in Warsaw: {v}"
    );

    // DST: 2026-03-29 02:30 does not exist in Warsaw; it means 03:00 (01:00 UTC)
    // full (NL 4800 s, 60 s grace) due exactly at 01:00 UTC; recent not due
    let hi = add_folder(
        &home,
        a,
        "Hi",
        "hi",
        Some(utc("2026-03-29 01:00:00") - 100),
        Some(utc("2026-03-29 01:00:00") - 4740),
    );
    db(&home)
        .execute("DELETE FROM email_folders WHERE emfdid = ?", [lo])
        .expect("delete");
    let v = json(
        &home,
        &["plan", "--json", "--at", "2026-03-29 02:30:00"],
        &[WARSAW],
    );
    let tasks = v.as_array().expect("array");
    assert_eq!(tasks.len(), 1, "{v}");
    assert_eq!(tasks[0]["emfdid"].as_i64(), Some(hi));
    assert_eq!(tasks[0]["kind"], "full");
    assert!(
        tasks[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("4740s ago"),
        "{v}"
    );
    // a second earlier (01:59:59 local = 00:59:59 UTC) it is not due yet
    assert!(plan_ids(&home, &["--at", "2026-03-29 01:59:59"]).is_empty());
    // ambiguous (fall back): 2026-10-25 02:30 means its first occurrence, 00:30 UTC
    set_times(
        &home,
        hi,
        Some(utc("2026-10-25 00:30:00") - 100),
        Some(utc("2026-10-25 00:30:00") - 4740),
    );
    let v = json(
        &home,
        &["plan", "--json", "--at", "2026-10-25 02:30:00"],
        &[WARSAW],
    );
    assert!(
        v[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("4740s ago"),
        "{v}"
    );
}

#[test]
fn sessions_switch_a_users_hi_folders_to_the_logged_in_intervals() {
    let home = TempHome::new();
    let a = dummy_account(&home, "alice", 7);
    let b = dummy_account(&home, "bob", 8);
    let t = now();
    let a_inbox = inbox_of(&home, a);
    let b_inbox = inbox_of(&home, b);
    let a_lo = add_folder(&home, a, "Lo", "lo", Some(t), Some(t));
    set_times(&home, a_inbox, Some(t - 700), Some(t - 1000)); // due only when logged in
    set_times(&home, b_inbox, Some(t - 4000), Some(t - 4000)); // due either way, more overdue
    assert_eq!(plan_ids(&home, &[]), vec![b_inbox]);
    ok(&home, &["session", "touch", "7"]);
    let tasks = plan(&home, &[]);
    assert_eq!(
        tasks
            .iter()
            .map(|t| (t.0, t.1.as_str(), t.3.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (a_inbox, "recent", "hi-logged-in"),
            (b_inbox, "recent", "hi")
        ],
        "the logged-in user's hi folders go first"
    );
    assert!(
        !tasks.iter().any(|t| t.0 == a_lo),
        "lo folders ignore sessions"
    );
    let s: (i64, i64) = db(&home)
        .query_row(
            "SELECT usrid, last_activity_at FROM user_sessions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("session row");
    assert_eq!(s.0, 7);
    assert!((t..=now()).contains(&s.1));
    ok(&home, &["session", "end", "7"]);
    assert_eq!(plan_ids(&home, &[]), vec![b_inbox]);
    // a session older than BG_SESSION_TIMEOUT does not count
    home.write_config("<?php define('BG_SESSION_TIMEOUT', 100);");
    db(&home)
        .execute(
            "INSERT INTO user_sessions (usrid, last_activity_at) VALUES (7, ?)",
            [t - 200],
        )
        .expect("session");
    assert_eq!(plan_ids(&home, &[]), vec![b_inbox]);
}

#[test]
fn folder_priority_changes_the_schedule() {
    let home = TempHome::new();
    let a = dummy_account(&home, "alice", 7);
    let at = "2026-06-02 12:00:00";
    let t = warsaw(at);
    let inbox = inbox_of(&home, a);
    set_times(&home, inbox, Some(t - 60), Some(t - 60));
    let f = add_folder(&home, a, "Klienci", "lo", Some(t - 7200), Some(t - 7200));
    assert!(
        plan_ids(&home, &["--at", at]).is_empty(),
        "lo: synced after last night's window"
    );
    ok(&home, &["folder", "priority", &f.to_string(), "hi"]);
    let tasks = plan(&home, &["--at", at]);
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].0, tasks[0].1.as_str()), (f, "full"));
    let listed = json(&home, &["folder", "list", "--json"], &[]);
    let row = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|x| x["emfdid"].as_i64() == Some(f))
        .cloned()
        .expect("folder listed");
    assert_eq!(row["priority"], "hi");
    ok(&home, &["folder", "priority", &f.to_string(), "lo"]);
    assert!(plan_ids(&home, &["--at", at]).is_empty());
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let home = TempHome::new();
    let silent = SilentServer::start();
    home.write_config("<?php define('BG_IO_TIMEOUT', 2);");
    let a = add_account_with(&home, "plain", silent.port(), "alice", "pw");
    let inbox = inbox_of(&home, a);
    // a web-app account without any folder row yet
    db(&home)
        .execute(
            "INSERT INTO email_accounts (email, imap_host, imap_port, imap_security, imap_password) \
             VALUES ('bob@example.com', '127.0.0.1', ?, 'plain', 'x')",
            [silent.port()],
        )
        .expect("insert");
    let before = dump(&home.db_path());
    let t0 = Instant::now();
    for args in [&["--dry-run"][..], &["--dry-run", "--force"]] {
        let out = run(&home, args, 0);
        let s = text(&out.stdout);
        assert!(s.contains("INBOX") && s.contains("full"), "{args:?}: {s}");
        assert!(s.contains(&inbox.to_string()), "{s}");
    }
    let out = expect_code(&home, &["--dry-run"], &[], 0);
    assert!(text(&out.stdout).contains("INBOX"));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(silent.accepted(), 0, "a dry run connected to the server");
    assert_eq!(
        dump(&home.db_path()),
        before,
        "a dry run changed the database"
    );
    assert!(
        !home.logs_dir().join("l-info.log").exists() && !home.pid_path().exists(),
        "a dry run is no run"
    );
}

#[test]
fn run_account_force_and_capacity_shape_the_run() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(
        &home,
        &dovecot,
        "define('BG_MAX_THREADS', 1);\ndefine('BG_MAX_TASKS_PER_THREAD', 2);",
    );
    let imap = dovecot.imap("alice");
    for f in ["A", "B", "C"] {
        imap.create_folder(f);
        imap.append(f, &message(f.len(), 300), "");
    }
    imap.append("INBOX", &message(9, 300), "");
    let alice = add_account(&home, &dovecot, "alice");
    let bob = add_account(&home, &dovecot, "bob");

    // --account: only alice is synced
    run(&home, &["--account", &alice.to_string()], 0);
    let synced = |acntid: i64| -> Vec<(i64, Option<i64>)> {
        let c = db(&home);
        let mut s = c
            .prepare("SELECT emfdid, last_full_sync_at FROM email_folders WHERE acntid = ? ORDER BY emfdid")
            .expect("prepare");
        s.query_map([acntid], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert!(synced(bob).iter().all(|f| f.1.is_none()), "bob was synced");
    let a_folders = synced(alice);
    assert_eq!(a_folders.len(), 4);

    // capacity 1 x 2: four never-synced folders, two deferred
    let c = db(&home);
    c.execute(
        "UPDATE email_folders SET last_recent_sync_at = NULL, last_full_sync_at = NULL WHERE acntid = ?",
        [alice],
    )
    .expect("reset");
    let tasks = plan(&home, &["--account", &alice.to_string()]);
    assert_eq!(tasks.len(), 4);
    assert_eq!(
        tasks.iter().map(|t| t.2).collect::<Vec<_>>(),
        vec![false, false, true, true]
    );
    let inbox = inbox_of(&home, alice);
    assert_eq!(tasks[0].0, inbox, "the Inbox (hi) goes first");
    let first_two: Vec<i64> = tasks[..2].iter().map(|t| t.0).collect();
    run(&home, &["--account", &alice.to_string()], 0);
    assert!(
        home.log("l-info.log").contains("deferred 2 tasks"),
        "{}",
        home.log("l-info.log")
    );
    let done: Vec<i64> = synced(alice)
        .into_iter()
        .filter(|f| f.1.is_some())
        .map(|f| f.0)
        .collect();
    let mut want = first_two.clone();
    want.sort();
    assert_eq!(done, want, "the two planned first were synced");
    let rest = plan(&home, &["--account", &alice.to_string()]);
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|t| !t.2), "nothing deferred now");

    // --force: every folder due for a full sync, also ones not due
    let t = now();
    c.execute(
        "UPDATE email_folders SET last_recent_sync_at = ?, last_full_sync_at = ? WHERE acntid = ?",
        crate::params![t - 10, t - 10, alice],
    )
    .expect("set");
    assert!(plan_ids(&home, &["--account", &alice.to_string()]).is_empty());
    let forced = plan(&home, &["--force", "--account", &alice.to_string()]);
    assert_eq!(forced.len(), 4);
    assert!(forced.iter().all(|t| t.1 == "full"));
    home.write_config(&format!(
        "<?php define('BG_TLS_CA_FILE', '{}');",
        dovecot.ca_file().display()
    ));
    run(&home, &["--force", "--account", &alice.to_string()], 0);
    assert!(
        synced(alice).iter().all(|f| f.1.is_some_and(|x| x >= t)),
        "{:?}",
        synced(alice)
    );
    // --no-sync: bob still untouched
    run(&home, &["--no-sync"], 0);
    assert!(synced(bob).iter().all(|f| f.1.is_none()));
}

// ---------------------------------------------------------------------------
// 6. status

#[test]
fn status_reports_accounts_folders_errors_outbox_and_the_run() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    dovecot.imap("alice").create_folder("Projekty");
    dovecot.imap("alice").append("INBOX", &message(1, 300), "");
    let good = add_account(&home, &dovecot, "alice");
    let bad = add_account_with(&home, "tls", dovecot.imaps_port(), "bob", "wrong-pw");
    let t0 = now();
    run(&home, &[], 75);
    let out = engine_with(
        &home,
        &["outbox", "add", "--account", &good.to_string()],
        &[],
        b"From: alice@example.com\r\nTo: carol@example.com\r\nSubject: x\r\n\r\nx\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let v = json(&home, &["status", "--json"], &[]);
    assert_eq!(v["run"]["live"], Value::Bool(false));
    assert!(v["run"].get("pid").is_some() && v["run"].get("since").is_some());
    assert_eq!(v["outbox"]["queued"].as_i64(), Some(1));
    assert_eq!(v["outbox"]["sent"].as_i64(), Some(0));
    let accounts = v["accounts"].as_array().expect("accounts");
    let acct = |id: i64| {
        accounts
            .iter()
            .find(|a| a["acntid"].as_i64() == Some(id))
            .unwrap_or_else(|| panic!("account {id} in {v}"))
    };
    let g = acct(good);
    assert_eq!(g["email"], "alice@example.com");
    assert_eq!(g["last_error"], Value::Null);
    let folders = g["folders"].as_array().expect("folders");
    assert_eq!(folders.len(), 2, "{g}");
    for f in folders {
        let full = f["last_full_sync_at"].as_i64().expect("last_full_sync_at");
        assert!(full >= t0, "{f}");
        assert!(f["last_recent_sync_at"].as_i64().is_some(), "{f}");
        assert!(
            f["next_due_at"].as_i64().expect("next_due_at") > full,
            "{f}"
        );
        assert!(f.get("last_error").is_some() && f.get("name").is_some());
    }
    let b = acct(bad);
    assert!(
        b["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{b}"
    );
    assert!(b["last_error_at"].as_i64().is_some_and(|t| t >= t0));

    let out = ok(&home, &["status"]);
    let s = text(&out.stdout);
    for needle in [
        "run: none live",
        "alice@example.com",
        "bob@example.com",
        "Projekty",
        "INBOX",
        "refused",
        "1 queued",
    ] {
        assert!(s.contains(needle), "status lacks {needle:?}:\n{s}");
    }
    assert!(!s.contains("wrong-pw") && !text(&out.stderr).contains("wrong-pw"));
}

// ---------------------------------------------------------------------------
// 7. accounts

#[test]
fn account_passwords_come_from_stdin_or_env_and_are_never_shown() {
    let home = TempHome::new();
    let add = |email: &str, stdin: &[u8], env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec![
            "account",
            "add",
            "--email",
            email,
            "--imap-host",
            "imap.example.com",
            "--smtp-host",
            "smtp.example.com",
        ];
        args.extend_from_slice(extra);
        let out = engine_with(&home, &args, env, stdin);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        assert!(
            s.ends_with('\n') && s.lines().count() == 1,
            "prints the acntid alone on a line: {s:?}"
        );
        s.trim().parse::<i64>().expect("acntid")
    };
    let two = add(
        "two@example.com",
        b"imap-Secret-1\nsmtp-Secret-2\n",
        &[],
        &[],
    );
    let one = add(
        "one@example.com",
        b"both-Secret-3\n",
        &[],
        &["--usrid", "12"],
    );
    let env = add(
        "env@example.com",
        b"ignored-stdin\n",
        &[("BP_TEST_PW", "env-Secret-4")],
        &["--password-env", "BP_TEST_PW", "--imap-login", "envlogin"],
    );
    let crlf = add("crlf@example.com", b"crlf-Secret-5\r\n", &[], &[]);
    let pw = |id: i64| -> (String, String) {
        db(&home)
            .query_row(
                "SELECT imap_password, smtp_password FROM email_accounts WHERE acntid = ?",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("account row")
    };
    assert_eq!(pw(two), ("imap-Secret-1".into(), "smtp-Secret-2".into()));
    assert_eq!(pw(one), ("both-Secret-3".into(), "both-Secret-3".into()));
    assert_eq!(pw(env), ("env-Secret-4".into(), "env-Secret-4".into()));
    assert_eq!(pw(crlf).0, "crlf-Secret-5");
    let (login, usrid): (Option<String>, Option<i64>) = db(&home)
        .query_row(
            "SELECT imap_login, usrid FROM email_accounts WHERE acntid = ?",
            [env],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!(login.as_deref(), Some("envlogin"));
    assert_eq!(usrid, None);

    let mut shown = String::new();
    for args in [
        vec!["account".to_string(), "list".into()],
        vec!["account".into(), "list".into(), "--json".into()],
        vec!["status".into()],
        vec!["status".into(), "--json".into()],
    ]
    .into_iter()
    .chain([two, one, env, crlf].iter().flat_map(|id| {
        [
            vec!["account".to_string(), "show".into(), id.to_string()],
            vec![
                "account".to_string(),
                "show".into(),
                id.to_string(),
                "--json".into(),
            ],
        ]
    })) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&home, &args);
        shown.push_str(&text(&out.stdout));
        shown.push_str(&text(&out.stderr));
    }
    assert!(shown.contains("two@example.com") && shown.contains("envlogin"));
    assert!(!shown.contains("Secret-"), "a password was shown:\n{shown}");
    let list = json(&home, &["account", "list", "--json"], &[]);
    assert_eq!(list.as_array().map(Vec::len), Some(4));
    let show = json(&home, &["account", "show", &one.to_string(), "--json"], &[]);
    assert_eq!(show["acntid"].as_i64(), Some(one));
    assert_eq!(show["usrid"].as_i64(), Some(12));
    assert_eq!(show["email"], "one@example.com");
    assert_eq!(
        show["imap_login"], "one@example.com",
        "login defaults to the email"
    );
    assert_eq!(show["smtp_login"], "one@example.com");
}

#[test]
fn account_test_reports_capabilities_and_refused_logins() {
    let dovecot = Dovecot::start();
    let smtp = ScriptedSmtp::start(ScriptedSmtpOptions {
        tls: SmtpTls::StartTls,
        ca: Some(dovecot.ca().clone()),
        auth: Some(("alice".into(), "alice-smtp-pw".into())),
        ..Default::default()
    });
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let add = |imap_pw: &str, smtp_pw: &str| {
        let out = engine_with(
            &home,
            &[
                "account",
                "add",
                "--email",
                "alice@example.com",
                "--imap-host",
                "localhost",
                "--imap-port",
                &dovecot.imaps_port().to_string(),
                "--imap-security",
                "tls",
                "--imap-login",
                "alice",
                "--smtp-host",
                "localhost",
                "--smtp-port",
                &smtp.port().to_string(),
                "--smtp-security",
                "starttls",
                "--smtp-login",
                "alice",
            ],
            &[],
            format!("{imap_pw}\n{smtp_pw}\n").as_bytes(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let good = add(&dovecot.password("alice"), "alice-smtp-pw");
    let out = ok(&home, &["account", "test", &good]);
    let s = text(&out.stdout);
    assert!(
        s.contains("imap: ok") && s.to_ascii_uppercase().contains("IMAP4REV1"),
        "{s}"
    );
    assert!(s.contains("smtp: ok"), "{s}");
    assert!(!s.contains(&dovecot.password("alice")) && !s.contains("alice-smtp-pw"));

    let bad = add("wrong-imap-pw", "wrong-smtp-pw");
    let out = engine_with(&home, &["account", "test", &bad], &[], b"");
    assert_ne!(out.status.code(), Some(0));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("imap: FAILED") && all.contains("refused"),
        "{all}"
    );
    assert!(all.contains("smtp: FAILED"), "{all}");
    assert!(!all.contains("wrong-imap-pw") && !all.contains("wrong-smtp-pw"));
    // an untrusted server is refused, not silently accepted
    let other_ca = TestCa::untrusted(&home.path().join("other-ca"));
    home.write_config(&format!(
        "<?php define('BG_TLS_CA_FILE', '{}');",
        other_ca.ca_file().display()
    ));
    let out = engine_with(&home, &["account", "test", &good], &[], b"");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn account_remove_takes_its_folders_and_mail_only() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    for user in ["alice", "bob"] {
        let imap = dovecot.imap(user);
        imap.create_folder("Projekty");
        imap.append_many("INBOX", &[message(1, 300), message(2, 300)]);
        imap.append("Projekty", &message(3, 300), "");
    }
    let a = add_account(&home, &dovecot, "alice");
    let b = add_account(&home, &dovecot, "bob");
    run(&home, &[], 0);
    let counts = |acntid: i64| -> (i64, i64) {
        db(&home)
            .query_row(
                "SELECT (SELECT COUNT(*) FROM email_folders WHERE acntid = ?1), \
                 (SELECT COUNT(*) FROM email_messages m JOIN email_folders f ON f.emfdid = m.emfdid \
                  WHERE f.acntid = ?1)",
                [acntid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("counts")
    };
    assert_eq!(counts(a), (2, 3));
    assert_eq!(counts(b), (2, 3));
    let folder_ids: Vec<i64> = {
        let c = db(&home);
        let mut s = c
            .prepare("SELECT emfdid FROM email_folders WHERE acntid = ?")
            .expect("prepare");
        s.query_map([a], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let out = ok(&home, &["account", "remove", &a.to_string()]);
    assert!(out.stderr.is_empty());
    assert_eq!(counts(a), (0, 0));
    let orphans: i64 = db(&home)
        .query_row(
            &format!(
                "SELECT COUNT(*) FROM email_messages WHERE emfdid IN ({})",
                folder_ids
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(orphans, 0);
    assert_eq!(counts(b), (2, 3), "the other account is untouched");
    let list = json(&home, &["account", "list", "--json"], &[]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    expect_code(&home, &["account", "show", &a.to_string()], &[], 65);
    expect_code(&home, &["account", "remove", &a.to_string()], &[], 65);
    // and a run afterwards is clean
    run(&home, &["--force"], 0);
    assert_eq!(counts(a), (0, 0));
}

// ---------------------------------------------------------------------------
// 8. logs

#[test]
fn log_lines_carry_local_time_and_the_engine_pid_and_files_reopen_each_run() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    dovecot.imap("carol").create_folder("Projekty");
    dovecot.imap("carol").append("INBOX", &message(1, 300), "");
    let acntid = add_account(&home, &dovecot, "carol");
    let pw = dovecot.password("carol");

    let one_run = |args: &[&str]| -> u32 {
        let child = home
            .engine()
            .arg("run")
            .args(args)
            .env("TZ", "Europe/Warsaw")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
        pid
    };
    let check = |name: &str, pid: u32, want_lines: bool| {
        let log = home.log(name);
        assert!(!want_lines || !log.is_empty(), "{name} is empty");
        assert!(log.is_empty() || log.ends_with('\n'));
        let warsaw_now = chrono::Utc::now()
            .with_timezone(&chrono_tz::Europe::Warsaw)
            .naive_local();
        for l in log.lines() {
            let (time, p, _, msg) =
                parse_line(l).unwrap_or_else(|| panic!("{name}: bad line {l:?}"));
            assert_eq!(p, pid, "{name}: not the engine's pid: {l}");
            let skew = (warsaw_now - time).num_seconds().abs();
            assert!(skew < 120, "{name}: not local time: {l}");
            assert!(!msg.contains(&pw), "{name}: password logged");
            if msg.starts_with("received ") {
                let (a, f) = trailing_at(msg).unwrap_or_else(|| panic!("no [a,f]: {l}"));
                assert_eq!(a, Some(acntid));
                assert!(f.is_some());
            }
        }
    };
    let pid1 = one_run(&[]);
    check("l-info.log", pid1, true);
    check("l-debug.log", pid1, true);
    check("l-threading-error.txt", pid1, false);
    let info1 = home.log("l-info.log");
    assert_eq!(
        info1.lines().filter(|l| l.contains(" received ")).count(),
        2,
        "{info1}"
    );
    assert!(
        home.log("l-debug.log").lines().count() >= info1.lines().count(),
        "l-debug.log holds the info lines too"
    );

    // logrotate: move the files away; the next run creates new ones
    let rotated = home.path().join("rotated");
    std::fs::create_dir(&rotated).expect("mkdir");
    for f in ["l-info.log", "l-debug.log", "l-threading-error.txt"] {
        std::fs::rename(home.logs_dir().join(f), rotated.join(f)).expect("rename");
    }
    let pid2 = one_run(&["--force"]);
    assert_ne!(pid1, pid2);
    check("l-info.log", pid2, true);
    check("l-debug.log", pid2, true);
    assert!(home.logs_dir().join("l-threading-error.txt").exists());
    assert_eq!(
        std::fs::read_to_string(rotated.join("l-info.log")).expect("rotated"),
        info1,
        "the rotated file was written to"
    );
    assert_private(&home, "after the logs were rotated");

    // appended, not truncated: a third run adds to the second's lines
    let info2 = home.log("l-info.log");
    let pid3 = one_run(&["--force"]);
    let info3 = home.log("l-info.log");
    assert!(info3.starts_with(&info2) && info3.len() > info2.len());
    assert!(info3[info2.len()..].contains(&format!("[#{pid3}.t")));
    // worker lines name their thread, the main thread is t0
    let debug = home.log("l-debug.log");
    assert!(
        debug
            .lines()
            .any(|l| parse_line(l).is_some_and(|x| x.2 == 0)),
        "{debug}"
    );
    assert!(
        info3
            .lines()
            .filter(|l| l.contains(" received "))
            .all(|l| parse_line(l).is_some_and(|x| x.2 >= 1)),
        "{info3}"
    );
}
