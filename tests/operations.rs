//! Operations (SPEC §15): the systemd units, the cron and logrotate
//! examples as an administrator installs them, the metrics file for
//! Prometheus, the alert rules, shell completions and the manual page, and
//! the one-command demo.
//!
//! The tools are the real ones from Debian (installed by
//! tests/install-deps.sh): `systemd-analyze verify`, `logrotate` run as
//! root, `promtool check metrics|rules` and `promtool test rules`, `bash -n`
//! and `man -l`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::engine::{add_account_smtp, add_account_with, db, engine, queue, run, Side};
use support::{mode_of, text, Dovecot, Postfix, TempHome};

const ENGINE: &str = env!("CARGO_BIN_EXE_engine");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Runs `cmd`, captures its output; panics if it cannot start.
fn output(cmd: &mut Command) -> Output {
    let name = format!("{:?}", cmd.get_program());
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name} (tests/install-deps.sh installs it): {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// systemd, cron, logrotate: the files an administrator installs

/// The units with the install directory (`/opt/backproc`) and the engine
/// filled in for `dir` and this build's binary.
fn units_in(dir: &Path) -> (PathBuf, PathBuf) {
    let fill = |s: String| {
        s.replace("/opt/backproc/target/release/engine", ENGINE)
            .replace("/opt/backproc", &dir.display().to_string())
    };
    let service = dir.join("backproc.service");
    let timer = dir.join("backproc.timer");
    std::fs::write(&service, fill(read("contrib/systemd/backproc.service"))).expect("service");
    std::fs::write(&timer, fill(read("contrib/systemd/backproc.timer"))).expect("timer");
    (service, timer)
}

fn verify(service: &Path, timer: &Path) -> Output {
    output(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(service)
            .arg(timer),
    )
}

/// The settings SPEC §15 asks for, as `key=value` lines of a unit.
fn settings(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(str::to_string)
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (service, timer) = units_in(dir.path());
    let out = verify(&service, &timer);
    // verify only warns (exit 0) about many mistakes: silence is the pass.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        describe(&out)
    );
    let s = settings(&read("contrib/systemd/backproc.service"));
    for want in [
        "Type=oneshot",
        "User=www-data",
        "Group=edokumenty",
        "UMask=0007",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/opt/backproc",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ExecStart=/opt/backproc/target/release/engine --home /opt/backproc run",
    ] {
        assert!(s.iter().any(|l| l == want), "backproc.service lacks {want}");
    }
    // The engine sets the setgid bit on the directories it creates.
    assert!(!s.iter().any(|l| l.starts_with("RestrictSUIDSGID=")));
    let t = settings(&read("contrib/systemd/backproc.timer"));
    for want in [
        "OnCalendar=*:0/5",
        "Persistent=true",
        "Unit=backproc.service",
    ] {
        assert!(t.iter().any(|l| l == want), "backproc.timer lacks {want}");
    }
    // Every 5 minutes, as systemd reads it.
    let cal = output(Command::new("systemd-analyze").args(["calendar", "--iterations=3", "*:0/5"]));
    // `    Next elapse: Thu 2026-12-03 12:55:00 UTC`, then `Iter. #2: ...`
    let minutes: Vec<u32> = text(&cal.stdout)
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("Next elapse:") || l.starts_with("Iter. #"))
        .map(|l| {
            let time = l.split_whitespace().rev().nth(1).unwrap_or("");
            time.split(':')
                .nth(1)
                .and_then(|m| m.parse().ok())
                .unwrap_or(99)
        })
        .collect();
    assert_eq!(minutes.len(), 3, "{}", describe(&cal));
    for (a, b) in minutes.iter().zip(minutes.iter().skip(1)) {
        assert_eq!((a % 5, (b + 60 - a) % 60), (0, 5), "{minutes:?}");
    }
    // The check sees what it should: a mistyped value is reported.
    std::fs::write(
        &service,
        std::fs::read_to_string(&service)
            .expect("read")
            .replace("Type=oneshot", "Type=oneshoot"),
    )
    .expect("write");
    let bad = verify(&service, &timer);
    assert!(text(&bad.stderr).contains("oneshoot"), "{}", describe(&bad));
}

/// `USER:GROUP` of the README's chown line.
fn readme_owner() -> (String, String) {
    let readme = read("README.md");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("chown -R "))
        .expect("README: a chown line");
    let owner = line.split_whitespace().nth(2).expect("chown OWNER");
    let (u, g) = owner.split_once(':').expect("USER:GROUP");
    (u.to_string(), g.to_string())
}

#[test]
fn the_examples_name_the_readmes_user_and_group_and_the_license_is_mit() {
    let (user, group) = readme_owner();
    let command = "/opt/backproc/target/release/engine --home /opt/backproc run";
    // crontab.example: the /etc/cron.d line (active) has the user field,
    // the user-crontab line (a comment to paste) has none.
    let cron = read("crontab.example");
    let active: Vec<&str> = cron
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(active, vec![format!("*/5 * * * * {user} {command}")]);
    assert!(
        cron.lines()
            .any(|l| l == format!("# */5 * * * * {command}")),
        "{cron}"
    );
    assert!(cron.contains(&format!("crontab -u {user} -e")), "{cron}");
    assert!(cron.contains(&format!("{user} (group {group}")), "{cron}");
    // logrotate.example
    let rotate = read("logrotate.example");
    let lines: Vec<&str> = rotate.lines().map(str::trim).collect();
    assert!(
        lines.contains(&format!("su {user} {group}").as_str()),
        "{rotate}"
    );
    assert!(
        lines.contains(&format!("create 0660 {user} {group}").as_str()),
        "{rotate}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("copytruncate")));
    // the systemd unit
    let s = settings(&read("contrib/systemd/backproc.service"));
    assert!(s.contains(&format!("User={user}")) && s.contains(&format!("Group={group}")));
    // the README's crontab line is the example's
    assert!(read("README.md").contains(command));
    // LICENSE matches Cargo.toml
    assert!(read("Cargo.toml").contains("license = \"MIT\""));
    let license = read("LICENSE");
    assert!(license.starts_with("MIT License\n"), "{license}");
    assert!(license.contains("THE SOFTWARE IS PROVIDED \"AS IS\""));
}

/// The engine binary copied where `www-data` can run it (the build
/// directory may not be reachable for that user).
fn engine_for_www_data(dir: &Path) -> PathBuf {
    let bin = dir.join("engine");
    std::fs::copy(ENGINE, &bin).expect("copy engine");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// `engine --home HOME run` as www-data; asserts exit 0.
fn run_as_www_data(bin: &Path, home: &Path) {
    let out = output(
        Command::new("runuser")
            .args(["-u", "www-data", "--"])
            .arg(bin)
            .arg("--home")
            .arg(home)
            .arg("run"),
    );
    assert!(out.status.success(), "{}", describe(&out));
}

fn logrotate(conf: &Path, state: &Path) -> Output {
    output(
        Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(state)
            .arg(conf),
    )
}

#[test]
fn logrotate_rotates_the_seed_modes_logs_and_the_next_run_writes_the_new_files() {
    let base = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = engine_for_www_data(base.path());
    let home = base.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let uid = support::process::user_id("www-data");
    // The README's group (edokumenty) is the web application's: a test
    // machine has none, so the files here use www-data's own group.
    let gid = support::process::group_id("www-data");
    std::os::unix::fs::chown(&home, Some(uid), Some(gid)).expect("chown home");
    run_as_www_data(&bin, &home);
    // The README's install step, as on the seed's page.
    let chown = output(
        Command::new("chown")
            .arg("-R")
            .arg("www-data:www-data")
            .args(["data", "logs", "pid"])
            .current_dir(&home),
    );
    assert!(chown.status.success(), "{}", describe(&chown));
    let chmod = output(
        Command::new("chmod")
            .args(["-R", "u+rwX,g+rwXs,o-rwx", "data", "logs", "pid"])
            .current_dir(&home),
    );
    assert!(chmod.status.success(), "{}", describe(&chmod));
    let logs = home.join("logs");
    assert_eq!(mode_of(&logs), 0o2770);
    let info = logs.join("l-info.log");
    let debug = logs.join("l-debug.log");
    let before = std::fs::read_to_string(&info).expect("l-info.log");
    assert!(before.contains("config.inc not found"), "{before}");
    let debug_before = std::fs::read_to_string(&debug).expect("l-debug.log");

    // logrotate.example with the paths and the group filled in.
    let conf = base.path().join("logrotate.conf");
    let example = read("logrotate.example")
        .replace("/opt/backproc", &home.display().to_string())
        .replace("edokumenty", "www-data");
    std::fs::write(&conf, &example).expect("write conf");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // Without its `su` line logrotate refuses the group-writable logs/.
    let no_su = base.path().join("no-su.conf");
    let without: String = example
        .lines()
        .filter(|l| !l.trim_start().starts_with("su "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&no_su, without).expect("write");
    let refused = logrotate(&no_su, &base.path().join("state0"));
    assert!(
        !refused.status.success() && text(&refused.stderr).contains("insecure permissions"),
        "{}",
        describe(&refused)
    );
    assert!(!logs.join("l-info.log.1").exists());

    let state = base.path().join("state");
    let out = logrotate(&conf, &state);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(logs.join("l-info.log.1")).expect("l-info.log.1"),
        before
    );
    assert_eq!(
        std::fs::read_to_string(logs.join("l-debug.log.1")).expect("l-debug.log.1"),
        debug_before
    );
    // notifempty: the empty error file stays as it is.
    assert!(!logs.join("l-threading-error.txt.1").exists());
    for f in [&info, &debug] {
        let meta = std::fs::metadata(f).expect("new log file");
        assert_eq!(meta.len(), 0, "{}", f.display());
        assert_eq!(mode_of(f), 0o660, "{}", f.display());
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{}", f.display());
    }
    assert_eq!(mode_of(&logs), 0o2770);

    // The next run reopens the files: it writes to the new ones.
    run_as_www_data(&bin, &home);
    let after = std::fs::read_to_string(&info).expect("l-info.log");
    assert!(after.contains("config.inc not found"), "{after}");
    assert!(std::fs::metadata(&debug).expect("debug").len() > 0);
    assert_eq!(
        std::fs::read_to_string(logs.join("l-info.log.1")).expect("l-info.log.1"),
        before,
        "the run wrote to the rotated file"
    );
    // A second rotation compresses the first (delaycompress).
    let out = logrotate(&conf, &state);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(logs.join("l-info.log.2.gz").exists());
    assert_eq!(
        std::fs::read_to_string(logs.join("l-info.log.1")).expect("l-info.log.1"),
        after
    );
    for e in std::fs::read_dir(&logs).expect("logs") {
        let p = e.expect("entry").path();
        assert_eq!(
            mode_of(&p) & 0o007,
            0,
            "{} is world-accessible",
            p.display()
        );
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// The samples of a metrics file: `name{labels}` -> value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                key.to_string(),
                value.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect()
}

fn promtool_check_metrics(path: &Path) {
    let out = output(
        Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(path).expect("open metrics")),
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}",
        describe(&out),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn the_only_file_in(dir: &Path) -> String {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

#[test]
fn the_metrics_file_after_a_run_with_a_failing_account_a_deferred_task_and_queued_mail() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(&dovecot);
    let home = TempHome::new();
    // node_exporter's textfile directory, which its own user can read.
    let textfile = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(textfile.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let prom = textfile.path();
    let metrics = prom.join("backproc.prom");
    // One worker with room for two tasks; new mail looked for at every run.
    home.write_config(&format!(
        "<?php\ndefine('BG_METRICS_FILE', '{}');\n\
         define('BG_MAX_THREADS', 1);\ndefine('BG_MAX_TASKS_PER_THREAD', 2);\n\
         define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL', 0);\n\
         define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL', 0);\n\
         define('BG_TLS_CA_FILE', '{}');\ndefine('BG_IO_TIMEOUT', 10);\n",
        metrics.display(),
        dovecot.ca_file().display()
    ));
    let bad = add_account_with(&home, "tls", dovecot.imaps_port(), "bob", "wrong-password");
    let pw = dovecot.password("alice");
    let good = add_account_smtp(
        &home,
        "alice",
        Side {
            security: "tls",
            port: dovecot.imaps_port(),
            password: &pw,
        },
        Side {
            security: "starttls",
            port: postfix.submission_port(),
            password: &pw,
        },
    );
    let imap = dovecot.imap("alice");
    imap.create_folder("Projects");
    // Where the copy of sent mail goes: a lo folder, not due again today.
    imap.create_folder("Sent");
    imap.append("INBOX", &support::engine::message(1, 300), "");

    // A first run: alice's folders are found and synced, bob's login is refused.
    let t0 = unix_now();
    run(&home, &[], 75);
    let t1 = unix_now();
    let projects = support::engine::emfdid(&home, good, "Projects");
    let out = engine(&home, &["folder", "priority", &projects.to_string(), "hi"]);
    assert!(out.status.success(), "{}", describe(&out));
    for i in 2..=4 {
        imap.append("INBOX", &support::engine::message(i, 300), "");
    }
    // bob is tried again now (the web application fixed nothing).
    db(&home)
        .execute(
            "UPDATE email_accounts SET login_retry_at = NULL WHERE acntid = ?",
            [bad],
        )
        .expect("retry now");
    let mail = "From: alice@example.com\r\nTo: carol@example.com\r\nSubject: metrics\r\n\
                Message-ID: <metrics-1@test.example.com>\r\n\r\nHello.\r\n";
    queue(&home, good, mail.as_bytes());
    // Mail the web application queued two hours ago, due in an hour.
    let queued_at = unix_now() - 7200;
    db(&home)
        .execute(
            "INSERT INTO email_outbox (acntid, raw, created_at, next_attempt_at, state) \
             VALUES (?, ?, ?, ?, 'queued')",
            crate::params![
                good,
                mail.replace("metrics-1", "metrics-2"),
                queued_at,
                queued_at + 10_800
            ],
        )
        .expect("insert");

    // The run measured: bob fails, alice's Inbox syncs, Projects is deferred.
    let t2 = unix_now();
    let started = Instant::now();
    run(&home, &[], 75);
    let took = started.elapsed().as_secs_f64();
    let t3 = unix_now();

    promtool_check_metrics(&metrics);
    assert_eq!(mode_of(&metrics), 0o644);
    assert_eq!(the_only_file_in(prom), "backproc.prom");
    let text = std::fs::read_to_string(&metrics).expect("metrics");
    println!("{}:\n{text}", metrics.display());
    let m = samples(&text);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    let (b, g) = (
        format!("{{acntid=\"{bad}\"}}"),
        format!("{{acntid=\"{good}\"}}"),
    );
    let end = get("backproc_run_end_timestamp_seconds") as i64;
    assert!((t2..=t3).contains(&end), "{end} not in {t2}..={t3}");
    let duration = get("backproc_run_duration_seconds");
    assert!(duration > 0.0 && duration <= took, "{duration} vs {took}");
    assert_eq!(get("backproc_run_exit_code"), 75.0);
    assert_eq!(get("backproc_run_another_live"), 0.0);
    // alice's Inbox synced; bob's Inbox and bob's folder discovery failed;
    // Projects did not fit in the run's two tasks.
    assert_eq!(get("backproc_run_tasks{state=\"done\"}"), 1.0, "{text}");
    assert_eq!(get("backproc_run_tasks{state=\"failed\"}"), 2.0, "{text}");
    assert_eq!(get("backproc_run_tasks{state=\"deferred\"}"), 1.0, "{text}");
    assert_eq!(get("backproc_run_outbox_messages{state=\"sent\"}"), 1.0);
    assert_eq!(get("backproc_run_outbox_messages{state=\"failed\"}"), 0.0);
    assert_eq!(get(&format!("backproc_messages_received{g}")), 3.0);
    assert_eq!(get(&format!("backproc_messages_received{b}")), 0.0);
    assert_eq!(get(&format!("backproc_account_login_ok{g}")), 1.0);
    assert_eq!(get(&format!("backproc_account_login_ok{b}")), 0.0);
    assert_eq!(get(&format!("backproc_account_login_failures{g}")), 0.0);
    assert_eq!(get(&format!("backproc_account_login_failures{b}")), 2.0);
    assert_eq!(
        get(&format!("backproc_account_login_retry_seconds{g}")),
        0.0
    );
    // The second refusal in a row waits 2 × BG_LOGIN_RETRY_MIN from the run's start.
    let retry = get(&format!("backproc_account_login_retry_seconds{b}")) as i64;
    assert!((1800 - (t3 - t2) - 1..=1800).contains(&retry), "{retry}");
    // Projects last synced in the first run.
    let age = get(&format!("backproc_account_sync_age_seconds{g}")) as i64;
    assert!(
        (end - t1..=end - t0).contains(&age),
        "{age}: {t0} {t1} {end}"
    );
    assert!(!m.contains_key(&format!("backproc_account_sync_age_seconds{b}")));
    assert_eq!(get("backproc_outbox_messages{state=\"queued\"}"), 1.0);
    assert_eq!(get("backproc_outbox_messages{state=\"sent\"}"), 1.0);
    assert_eq!(get("backproc_outbox_messages{state=\"failed\"}"), 0.0);
    let oldest = get("backproc_outbox_oldest_queued_age_seconds") as i64;
    assert!(
        (end - queued_at..=end - queued_at + 1).contains(&oldest),
        "{oldest}"
    );
    // Every family is a gauge with its help; labels are acntid and state only.
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert!(rest.ends_with(" gauge"), "{line}");
        } else if let Some((_, labels)) = line.split_once('{') {
            let label = labels.split('=').next().unwrap_or("");
            assert!(label == "acntid" || label == "state", "{line}");
        }
    }
    let families = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(
        families,
        text.lines().filter(|l| l.starts_with("# TYPE ")).count()
    );
    assert!(families >= 12, "{text}");
    // Never a password, an address, a login or a folder name.
    let lower = text.to_lowercase();
    for secret in [
        pw.as_str(),
        "wrong-password",
        "@",
        "example.com",
        "alice",
        "bob",
        "carol",
        "inbox",
        "projects",
    ] {
        assert!(!lower.contains(secret), "{secret} in\n{text}");
    }
    // node_exporter, as an unprivileged user, serves every sample of it.
    let served = node_exporter_serves(prom);
    assert!(served.contains("node_textfile_scrape_error 0"), "{served}");
    let body = served.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let seen = samples(body);
    for (key, value) in &m {
        assert_eq!(seen.get(key), Some(value), "node_exporter: {key}\n{served}");
    }
}

/// Kills a child process when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What Debian's node_exporter, running as `nobody` with only the textfile
/// collector on `dir`, serves at /metrics.
fn node_exporter_serves(dir: &Path) -> String {
    use std::io::{Read, Write};
    let port = support::free_port();
    let _exporter = Killed(
        Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg("/usr/bin/prometheus-node-exporter")
            .args(["--collector.disable-defaults", "--collector.textfile"])
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-node-exporter (tests/install-deps.sh installs it)"),
    );
    assert!(
        support::wait_port(port, Duration::from_secs(10)),
        "node_exporter did not listen on {port}"
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("request");
    let mut body = Vec::new();
    conn.read_to_end(&mut body).expect("response");
    text(&body)
}

#[test]
fn a_run_that_finds_another_live_writes_the_file_saying_so() {
    let home = TempHome::new();
    let silent = support::SilentServer::start();
    let metrics = home.path().join("m.prom");
    home.write_config("<?php define('BG_METRICS_FILE', 'm.prom'); define('BG_IO_TIMEOUT', 5);");
    let acntid = add_account_with(&home, "plain", silent.port(), "alice", "x");
    let mut first = home.engine().arg("run").spawn().expect("spawn");
    assert!(support::wait_until(Duration::from_secs(10), || silent
        .accepted()
        > 0));
    run(&home, &[], 0);
    // BG_METRICS_FILE is relative to config.inc's directory.
    let text = std::fs::read_to_string(&metrics).expect("written by the second run");
    let m = samples(&text);
    assert_eq!(m["backproc_run_another_live"], 1.0, "{text}");
    assert_eq!(m["backproc_run_exit_code"], 0.0);
    assert_eq!(m["backproc_run_tasks{state=\"done\"}"], 0.0);
    assert_eq!(m["backproc_run_tasks{state=\"failed\"}"], 0.0);
    // The accounts and the outbox are as the store has them now.
    assert!(m.contains_key(&format!("backproc_account_login_ok{{acntid=\"{acntid}\"}}")));
    assert_eq!(m["backproc_outbox_messages{state=\"queued\"}"], 0.0);
    promtool_check_metrics(&metrics);
    first.kill().expect("kill");
    first.wait().expect("wait");
}

#[test]
fn the_metrics_file_is_replaced_atomically_while_50_runs_write_it() {
    let home = TempHome::new();
    let prom = home.path().join("textfile");
    std::fs::create_dir(&prom).expect("mkdir");
    let metrics = prom.join("backproc.prom");
    home.write_config(&format!(
        "<?php define('BG_METRICS_FILE', '{}');",
        metrics.display()
    ));
    // 300 accounts waiting after refused logins: a file of some 1,300
    // lines, written at every run, and none of them tried.
    assert!(engine(&home, &["status"]).status.success());
    let now = unix_now();
    {
        let mut c = db(&home);
        let tx = c.transaction().expect("tx");
        for i in 0..300 {
            tx.execute(
                "INSERT INTO email_accounts (email, imap_host, imap_port, imap_password, \
                 login_failures, login_retry_at) VALUES (?, '127.0.0.1', 1, 'pw', 1, ?)",
                crate::params![format!("u{i}@example.com"), now + 86_400],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    run(&home, &[], 0);
    let complete = std::fs::read_to_string(&metrics).expect("first file");
    let lines = complete.lines().count();
    assert!(lines > 1200, "{lines}");
    assert_eq!(
        complete.matches("backproc_account_login_ok{").count(),
        300,
        "{complete}"
    );

    let stop = AtomicBool::new(false);
    let (reads, bad) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut reads, mut bad) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                if let Ok(t) = std::fs::read_to_string(&metrics) {
                    reads += 1;
                    let whole = t.lines().count() == lines
                        && t.ends_with('\n')
                        && t.matches("backproc_account_login_ok{").count() == 300;
                    if !whole && bad.len() < 3 {
                        bad.push(format!("{} bytes, {} lines", t.len(), t.lines().count()));
                    }
                }
                // No temporary file looks like one node_exporter reads.
                for e in std::fs::read_dir(&prom).expect("read_dir").flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name != "backproc.prom" && name.ends_with(".prom") && bad.len() < 3 {
                        bad.push(format!("temporary file {name}"));
                    }
                }
            }
            (reads, bad)
        });
        // 50 runs, two at a time: one of a pair often finds the other live
        // and writes the file too.
        for _ in 0..25 {
            let spawn = || {
                home.engine()
                    .arg("run")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn")
            };
            let (mut a, mut b) = (spawn(), spawn());
            assert!(a.wait().expect("wait").success());
            assert!(b.wait().expect("wait").success());
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().expect("reader")
    });
    assert!(bad.is_empty(), "partial files seen: {bad:?}");
    assert!(reads > 100, "the reader read only {reads} times");
    assert_eq!(the_only_file_in(&prom), "backproc.prom");
    assert_eq!(mode_of(&metrics), 0o644);
    promtool_check_metrics(&metrics);
}

// ---------------------------------------------------------------------------
// Alert rules

#[test]
fn promtool_accepts_the_alert_rules_and_they_fire_when_they_should() {
    let rules = repo().join("contrib/prometheus/backproc.rules.yml");
    let out = output(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules),
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("3 rules found"),
        "{}",
        describe(&out)
    );
    // What each rule does with series over time (promtool's unit tests:
    // one sample a minute; `time()` starts at 0).
    let dir = tempfile::tempdir().expect("tempdir");
    let test = dir.path().join("backproc.test.yml");
    std::fs::write(
        &test,
        format!(
            r#"rule_files: ["{}"]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # runs at minutes 0..10, then none
      - series: 'backproc_run_end_timestamp_seconds{{instance="h"}}'
        values: '0+60x10 600x30'
      # account 1 fails from minute 10, account 2 never
      - series: 'backproc_account_login_ok{{acntid="1",instance="h"}}'
        values: '1x10 0x80'
      - series: 'backproc_account_login_ok{{acntid="2",instance="h"}}'
        values: '1x90'
      # a message queued at minute 0 and never sent
      - series: 'backproc_outbox_oldest_queued_age_seconds{{instance="h"}}'
        values: '0+60x90'
    alert_rule_test:
      - {{eval_time: 20m, alertname: BackprocNoRun}}
      - eval_time: 26m
        alertname: BackprocNoRun
        exp_alerts:
          - exp_labels: {{severity: critical, instance: h}}
            exp_annotations:
              summary: "backproc: no run of the engine for 15 minutes on h"
              description: "No mail is received or sent. Check the crontab line or `systemctl list-timers backproc.timer`, and logs/l-info.log."
      - {{eval_time: 60m, alertname: BackprocAccountFailing}}
      - eval_time: 71m
        alertname: BackprocAccountFailing
        exp_alerts:
          - exp_labels: {{severity: warning, acntid: "1", instance: h}}
            exp_annotations:
              summary: "backproc: account 1 has been failing for an hour"
              description: "`engine status` and `engine account show 1` show the error; a wrong password is fixed with `engine account set 1` (or by the web application)."
      - {{eval_time: 59m, alertname: BackprocOutboxStuck}}
      - eval_time: 61m
        alertname: BackprocOutboxStuck
        exp_alerts:
          - exp_labels: {{severity: warning, instance: h}}
            exp_annotations:
              summary: "backproc: outgoing mail has been queued for over an hour"
              description: "The oldest queued message is 1h 1m 0s old. `engine outbox list --state queued` shows each message's last error."
"#,
            rules.display()
        ),
    )
    .expect("write test");
    let out = output(Command::new("promtool").args(["test", "rules"]).arg(&test));
    assert!(out.status.success(), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// Completions and the manual page

/// Every command's full name (`engine account add`), from `--help`.
fn commands(prefix: &[&str]) -> Vec<Vec<String>> {
    let out = output(
        Command::new(ENGINE)
            .args(prefix.iter().skip(1))
            .arg("--help"),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let help = text(&out.stdout);
    let mut all = Vec::new();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or(""));
    for line in list.unwrap_or("").lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.is_empty() || name == "help" {
            continue;
        }
        let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        path.push(name.to_string());
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let nested = commands(&refs);
        all.push(path);
        all.extend(nested);
    }
    all
}

#[test]
fn completions_and_the_man_page_name_every_command_and_create_nothing() {
    let all = commands(&["engine"]);
    let names: Vec<String> = all.iter().map(|p| p.join(" ")).collect();
    for want in [
        "engine run",
        "engine account add",
        "engine outbox retry",
        "engine man",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    let cwd = tempfile::tempdir().expect("tempdir");
    let generate = |args: &[&str]| {
        let out = output(
            Command::new(ENGINE)
                .args(args)
                .current_dir(cwd.path())
                .env_remove("BACKPROC_HOME"),
        );
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", describe(&out));
        text(&out.stdout)
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = generate(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {script}");
        for path in &all {
            let leaf = path.last().expect("name");
            assert!(script.contains(leaf.as_str()), "{shell}: no {leaf}");
        }
    }
    let bash = cwd.path().join("engine.bash");
    std::fs::write(&bash, generate(&["completions", "bash"])).expect("write");
    let syntax = output(Command::new("bash").arg("-n").arg(&bash));
    assert!(syntax.status.success(), "{}", describe(&syntax));
    // It completes: `engine acc<TAB>`, `engine outbox <TAB>`.
    let complete = |words: &str, cword: usize| {
        let script = format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _engine engine \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        );
        text(&output(Command::new("bash").arg("-c").arg(script)).stdout)
    };
    assert_eq!(complete("engine acc", 1).trim(), "account");
    let outbox = complete("engine outbox ''", 2);
    for sub in ["add", "list", "retry", "cancel"] {
        assert!(outbox.lines().any(|l| l == sub), "{outbox}");
    }

    let page = cwd.path().join("engine.1");
    let roff = generate(&["man"]);
    std::fs::write(&page, &roff).expect("write");
    let man = output(
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "100")
            .env_remove("MAN_KEEP_FORMATTING"),
    );
    assert!(
        man.status.success() && man.stderr.is_empty(),
        "{}",
        describe(&man)
    );
    let rendered = text(&man.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "FILES",
    ] {
        assert!(
            rendered.lines().any(|l| l == section),
            "no {section}:\n{rendered}"
        );
    }
    for name in &names {
        assert!(
            rendered.lines().any(|l| l.trim() == name),
            "man page: no heading {name}"
        );
    }
    for option in ["--dry-run", "--password-env", "--at", "BACKPROC_HOME"] {
        assert!(rendered.contains(option), "man page: no {option}");
    }
    // Nothing was created where the commands ran.
    let left: Vec<_> = std::fs::read_dir(cwd.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

// ---------------------------------------------------------------------------
// The demo

#[test]
fn the_demo_shows_the_mail_received_and_sent_and_leaves_nothing_behind() {
    let out = output(
        Command::new("bash")
            .arg(repo().join("demo/run.sh"))
            .env("ENGINE", ENGINE),
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    for want in [
        "Starting a private Dovecot on 127.0.0.1",
        "Starting a private Postfix on 127.0.0.1",
        "alice@example.com: 80 messages in INBOX",
        "queued as emoid 1",
        "engine run exited with 0",
        "outbox: 0 queued, 0 sending, 1 sent, 0 failed, 0 cancelled",
        "received: Hello from the backproc demo",
        "sent:     Hello from the backproc demo",
        "sent message emoid=1 to 1 recipients [1,]",
        "received 80 new messages in",
        "received 1 new messages in",
        "engine search 'backproc demo'",
    ] {
        assert!(said.contains(want), "no {want:?} in:\n{said}");
    }
    // The search finds the message in bob's Inbox and alice's Sent copy.
    let (_, found) = said
        .split_once("engine search 'backproc demo'")
        .expect("the search ran");
    let hits = found
        .lines()
        .filter(|l| l.contains("Hello from the backproc demo"))
        .count();
    assert!(hits >= 2, "{found}");
    assert!(found.contains("[backproc]"), "{found}");
    // It stopped what it started and removed its directory.
    let work = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("work directory: "))
        .expect("the demo names its directory");
    assert!(!Path::new(work).exists(), "{work} left behind");
    let pids: Vec<u32> = said
        .lines()
        .filter_map(|l| l.split_once("is running (pid ").map(|(_, p)| p))
        .filter_map(|p| p.trim_end_matches(')').parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{said}");
    for pid in pids {
        // Gone, or (very unlikely) the pid of some other process by now.
        let cmdline = text(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
        assert!(
            !cmdline.contains(work) && !cmdline.contains("master"),
            "pid {pid} still runs: {cmdline}"
        );
    }
    let mine = output(Command::new("ps").args(["-e", "-o", "args="]));
    assert!(!text(&mine.stdout).contains(work), "{}", text(&mine.stdout));
}
