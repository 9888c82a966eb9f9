//! The metrics file of SPEC §15 (`BG_METRICS_FILE`): a Prometheus textfile
//! for node_exporter's textfile collector, written at the end of every run.
//!
//! Three parts: [`gather`] reads what the store says now (accounts, their
//! hi folders' last syncs, the outbox) beside what the run reports;
//! [`render`] turns that into text (a pure function); [`write_file`]
//! replaces the file atomically (a temporary file in the same directory,
//! whose name does not end in `.prom`, renamed over it), mode 0644 so that
//! node_exporter's user can read it although the engine runs under umask 007.
//!
//! Every metric is a gauge. Labels are `acntid` and `state` only: never an
//! address, a folder name, a password or a token. Nothing here prints.

use crate::run::Summary;
use crate::store::{self, Account, Folder, Location, OutboxState, Store};
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the metrics file: node_exporter runs as another user.
pub const FILE_MODE: u32 = 0o644;

/// What the command line knows about the run that ends.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// When it ended (Unix seconds).
    pub end: i64,
    /// How long it took (s).
    pub duration: f64,
    /// Its exit code (SPEC §2).
    pub exit_code: i32,
    /// It found another run live and did nothing else.
    pub another_live: bool,
    /// What its jobs did; None when it did none (another run was live, or
    /// it stopped with an error).
    pub summary: Option<&'a Summary>,
}

/// Everything the file says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub end: i64,
    pub duration: f64,
    pub exit_code: i32,
    pub another_live: bool,
    /// Sync tasks of the run: done, failed, deferred.
    pub tasks: [usize; 3],
    /// Outgoing messages of the run: sent, failed.
    pub sent: [usize; 2],
    /// One per active account (None when the store could not be read;
    /// then only the run's own figures are written).
    pub accounts: Option<Vec<AccountMetrics>>,
    pub outbox: Option<OutboxMetrics>,
}

/// The figures of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMetrics {
    pub acntid: i64,
    /// New messages this run stored.
    pub received: u64,
    /// The last login worked (no refused login in a row, no consent
    /// needed, no account error since the last good login).
    pub login_ok: bool,
    /// Refused logins in a row.
    pub login_failures: i64,
    /// Seconds until a login may be tried again (0: no wait).
    pub login_retry_in: i64,
    /// Seconds since the least recently synced of its hi folders last
    /// synced; None while none of them has synced.
    pub sync_age: Option<i64>,
}

/// The outbox now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMetrics {
    /// Messages in each state, every state named.
    pub counts: Vec<(OutboxState, i64)>,
    /// Age of the oldest queued message (0 when none is queued).
    pub oldest_queued_age: i64,
}

impl AccountMetrics {
    /// The figures of `account` at `now`, from its folders (any account's
    /// may be given: only its own hi folders count) and what it received.
    pub fn of(account: &Account, folders: &[Folder], received: u64, now: i64) -> AccountMetrics {
        let oldest = folders
            .iter()
            .filter(|f| f.acntid == account.acntid && f.removed_at.is_none() && f.is_hi())
            .filter_map(|f| f.last_recent_sync_at.max(f.last_full_sync_at))
            .min();
        AccountMetrics {
            acntid: account.acntid,
            received,
            login_ok: account.login_failures == 0
                && !account.oauth.needs_consent
                && account.last_error.is_none(),
            login_failures: account.login_failures,
            login_retry_in: account
                .login_retry_at
                .map_or(0, |at| at.saturating_sub(now).max(0)),
            sync_age: oldest.map(|t| now.saturating_sub(t).max(0)),
        }
    }
}

/// What the run reports and the store holds at `run.end`. A store that
/// cannot be read leaves the accounts and the outbox out (logged): the
/// run's own figures still go out.
pub fn gather(at: &Location, run: &Run<'_>) -> Metrics {
    let now = run.end;
    let summary = run.summary.cloned().unwrap_or_default();
    let mut m = Metrics {
        end: run.end,
        duration: run.duration,
        exit_code: run.exit_code,
        another_live: run.another_live,
        tasks: [summary.done, summary.failed, summary.deferred],
        sent: [summary.outbox.sent, summary.outbox.failed],
        accounts: None,
        outbox: None,
    };
    let read = |store: &Store| -> store::Result<(Vec<AccountMetrics>, OutboxMetrics)> {
        let folders = store.folders(None, false)?;
        let accounts = store
            .accounts()?
            .iter()
            .filter(|a| a.active)
            .map(|a| {
                let received = summary.received.get(&a.acntid).copied().unwrap_or(0);
                AccountMetrics::of(a, &folders, received, now)
            })
            .collect();
        let oldest = store
            .outbox_list(Some(OutboxState::Queued))?
            .iter()
            .filter_map(|r| r.created_at)
            .min();
        let outbox = OutboxMetrics {
            counts: store.outbox_counts()?,
            oldest_queued_age: oldest.map_or(0, |t| now.saturating_sub(t).max(0)),
        };
        Ok((accounts, outbox))
    };
    match Store::open(at).and_then(|store| read(&store)) {
        Ok((accounts, outbox)) => {
            m.accounts = Some(accounts);
            m.outbox = Some(outbox);
        }
        Err(e) => log::warn!(
            "metrics: the accounts and the outbox are left out: {}",
            crate::logging::chain(&e)
        ),
    }
    m
}

/// One metric family: its name, help, and samples (labels, value).
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    samples: Vec<(String, String)>,
}

impl Family<'_> {
    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

fn plain(value: impl ToString) -> Vec<(String, String)> {
    vec![(String::new(), value.to_string())]
}

fn by_state<T: ToString>(states: &[(&str, T)]) -> Vec<(String, String)> {
    states
        .iter()
        .map(|(s, v)| (format!("{{state=\"{s}\"}}"), v.to_string()))
        .collect()
}

/// The text of the file (Prometheus text format 0.0.4). A family without
/// samples is left out (an install without accounts has no account lines).
pub fn render(m: &Metrics) -> String {
    let accounts = m.accounts.as_deref().unwrap_or(&[]);
    let per_account = |value: &dyn Fn(&AccountMetrics) -> Option<String>| {
        accounts
            .iter()
            .filter_map(|a| Some((format!("{{acntid=\"{}\"}}", a.acntid), value(a)?)))
            .collect::<Vec<_>>()
    };
    let [done, failed, deferred] = m.tasks;
    let [sent, send_failed] = m.sent;
    let mut families = vec![
        Family {
            name: "backproc_run_end_timestamp_seconds",
            help: "When the last run of the engine ended (Unix time).",
            samples: plain(m.end),
        },
        Family {
            name: "backproc_run_duration_seconds",
            help: "How long the last run took.",
            samples: plain(format!("{:.3}", m.duration)),
        },
        Family {
            name: "backproc_run_exit_code",
            help: "Exit code of the last run: 0 all jobs done, 75 some job failed, others an error (see engine(1)).",
            samples: plain(m.exit_code),
        },
        Family {
            name: "backproc_run_another_live",
            help: "1 when the last run found another run live and did nothing else.",
            samples: plain(u8::from(m.another_live)),
        },
        Family {
            name: "backproc_run_tasks",
            help: "Sync tasks of the last run by how they ended (deferred: due, left for a later run).",
            samples: by_state(&[("done", done), ("failed", failed), ("deferred", deferred)]),
        },
        Family {
            name: "backproc_run_outbox_messages",
            help: "Outgoing messages the last run tried, by outcome (failed: for good or for now).",
            samples: by_state(&[("sent", sent), ("failed", send_failed)]),
        },
        Family {
            name: "backproc_messages_received",
            help: "New messages the last run stored, per account.",
            samples: per_account(&|a| Some(a.received.to_string())),
        },
        Family {
            name: "backproc_account_login_ok",
            help: "1 when the account's last login worked; 0 when it was refused, needs consent, or its server failed.",
            samples: per_account(&|a| Some(u8::from(a.login_ok).to_string())),
        },
        Family {
            name: "backproc_account_login_failures",
            help: "Refused logins of the account in a row.",
            samples: per_account(&|a| Some(a.login_failures.to_string())),
        },
        Family {
            name: "backproc_account_login_retry_seconds",
            help: "Seconds until the account's login is tried again after refused logins (0: no wait).",
            samples: per_account(&|a| Some(a.login_retry_in.to_string())),
        },
        Family {
            name: "backproc_account_sync_age_seconds",
            help: "Seconds since the least recently synced hi folder of the account last synced.",
            samples: per_account(&|a| a.sync_age.map(|s| s.to_string())),
        },
    ];
    if let Some(o) = &m.outbox {
        let counts: Vec<(&str, i64)> = o.counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        families.push(Family {
            name: "backproc_outbox_messages",
            help: "Messages in the outbox by state.",
            samples: by_state(&counts),
        });
        families.push(Family {
            name: "backproc_outbox_oldest_queued_age_seconds",
            help: "Age of the oldest queued outgoing message (0 when none is queued).",
            samples: plain(o.oldest_queued_age),
        });
    }
    let mut out = String::new();
    for f in &families {
        f.write(&mut out);
    }
    out
}

/// The metrics file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics file {}", path.display())]
pub struct WriteError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Replaces `path` with `text` atomically: readers see the old file or the
/// new one, never a part. The temporary file, `.NAME.PID.tmp` beside it,
/// does not end in `.prom`, so node_exporter never reads it.
pub fn write_file(path: &Path, text: &str) -> Result<(), WriteError> {
    let error = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = write_new(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(error)
}

/// Writes `bytes` to a new file at `tmp` (one a killed run with our pid
/// left is replaced), mode 0644, flushed to disk.
fn write_new(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(tmp)
    };
    let mut file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(tmp)?;
            open()?
        }
        other => other?,
    };
    // The umask (007) took the bits for others away: node_exporter needs them.
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Gathers, renders and writes the file of `run` at `path`.
pub fn publish(path: &Path, at: &Location, run: &Run<'_>) -> Result<(), WriteError> {
    write_file(path, &render(&gather(at, run)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OAuthColumns;

    fn account(acntid: i64) -> Account {
        Account {
            acntid,
            usrid: Some(7),
            email: "jan@example.com".into(),
            imap_host: Some("imap.example.com".into()),
            imap_port: None,
            imap_security: "tls".into(),
            imap_login: None,
            imap_password: Some("secret".into()),
            imap_auth: crate::store::AuthKind::Password,
            smtp_host: None,
            smtp_port: None,
            smtp_security: "starttls".into(),
            smtp_login: None,
            smtp_password: None,
            smtp_auth: crate::store::AuthKind::Password,
            active: true,
            last_error: None,
            last_error_at: None,
            oauth: OAuthColumns::default(),
            login_failures: 0,
            login_retry_at: None,
        }
    }

    fn folder(
        emfdid: i64,
        acntid: i64,
        hi: bool,
        recent: Option<i64>,
        full: Option<i64>,
    ) -> Folder {
        Folder {
            emfdid,
            acntid,
            name: format!("Folder {emfdid}"),
            imap_name: format!("Folder {emfdid}"),
            special: None,
            priority: if hi { "hi" } else { "lo" }.into(),
            uidvalidity: None,
            uidnext: None,
            last_uid: 0,
            highestmodseq: None,
            backfill_below: None,
            last_recent_sync_at: recent,
            last_full_sync_at: full,
            removed_at: None,
            last_error: None,
            has_partial: false,
        }
    }

    #[test]
    #[rustfmt::skip]
    fn account_figures_table() {
        let now = 10_000;
        let ok = account(1);
        let refused = Account { login_failures: 2, login_retry_at: Some(now + 900), last_error: Some("refused".into()), ..account(1) };
        let retry_passed = Account { login_failures: 1, login_retry_at: Some(now - 5), ..account(1) };
        let consent = Account { oauth: OAuthColumns { needs_consent: true, ..OAuthColumns::default() }, ..account(1) };
        let unreachable = Account { last_error: Some("no answer".into()), ..account(1) };
        let inbox = Folder { special: Some("inbox".into()), priority: "lo".into(), ..folder(1, 1, false, Some(9_000), Some(8_000)) };
        let cases: &[(&str, &Account, Vec<Folder>, (bool, i64, i64, Option<i64>))] = &[
            ("all_well_no_folders", &ok, vec![], (true, 0, 0, None)),
            ("refused_waits", &refused, vec![], (false, 2, 900, None)),
            ("retry_time_passed_is_no_wait", &retry_passed, vec![], (false, 1, 0, None)),
            ("consent_needed", &consent, vec![], (false, 0, 0, None)),
            ("server_unreachable", &unreachable, vec![], (false, 0, 0, None)),
            ("inbox_counts_as_hi_latest_of_recent_and_full", &ok, vec![inbox.clone()], (true, 0, 0, Some(1_000))),
            ("oldest_hi_folder_wins", &ok, vec![inbox.clone(), folder(2, 1, true, None, Some(7_000))], (true, 0, 0, Some(3_000))),
            ("lo_folders_do_not_count", &ok, vec![folder(2, 1, false, Some(1), Some(1))], (true, 0, 0, None)),
            ("never_synced_hi_folder_is_left_out", &ok, vec![inbox.clone(), folder(2, 1, true, None, None)], (true, 0, 0, Some(1_000))),
            ("removed_folder_left_out", &ok, vec![inbox.clone(), Folder { removed_at: Some(5), ..folder(2, 1, true, Some(1), None) }], (true, 0, 0, Some(1_000))),
            ("other_accounts_folders_left_out", &ok, vec![inbox.clone(), folder(2, 9, true, Some(1), None)], (true, 0, 0, Some(1_000))),
            ("sync_in_the_future_is_age_zero", &ok, vec![folder(2, 1, true, Some(now + 60), None)], (true, 0, 0, Some(0))),
        ];
        for (case, a, folders, (login_ok, failures, retry, age)) in cases {
            let m = AccountMetrics::of(a, folders, 3, now);
            assert_eq!(
                (m.acntid, m.received, m.login_ok, m.login_failures, m.login_retry_in, m.sync_age),
                (1, 3, *login_ok, *failures, *retry, *age),
                "{case}"
            );
        }
    }

    fn sample() -> Metrics {
        Metrics {
            end: 1_764_770_000,
            duration: 2.5,
            exit_code: 75,
            another_live: false,
            tasks: [4, 1, 2],
            sent: [3, 1],
            accounts: Some(vec![
                AccountMetrics {
                    acntid: 1,
                    received: 12,
                    login_ok: true,
                    login_failures: 0,
                    login_retry_in: 0,
                    sync_age: Some(300),
                },
                AccountMetrics {
                    acntid: 2,
                    received: 0,
                    login_ok: false,
                    login_failures: 3,
                    login_retry_in: 1800,
                    sync_age: None,
                },
            ]),
            outbox: Some(OutboxMetrics {
                counts: OutboxState::ALL
                    .iter()
                    .copied()
                    .zip([2, 0, 5, 1, 0])
                    .collect(),
                oldest_queued_age: 4000,
            }),
        }
    }

    #[test]
    fn renders_every_family_as_a_gauge_with_help() {
        let text = render(&sample());
        let expected_samples = "\
backproc_run_end_timestamp_seconds 1764770000
backproc_run_duration_seconds 2.500
backproc_run_exit_code 75
backproc_run_another_live 0
backproc_run_tasks{state=\"done\"} 4
backproc_run_tasks{state=\"failed\"} 1
backproc_run_tasks{state=\"deferred\"} 2
backproc_run_outbox_messages{state=\"sent\"} 3
backproc_run_outbox_messages{state=\"failed\"} 1
backproc_messages_received{acntid=\"1\"} 12
backproc_messages_received{acntid=\"2\"} 0
backproc_account_login_ok{acntid=\"1\"} 1
backproc_account_login_ok{acntid=\"2\"} 0
backproc_account_login_failures{acntid=\"1\"} 0
backproc_account_login_failures{acntid=\"2\"} 3
backproc_account_login_retry_seconds{acntid=\"1\"} 0
backproc_account_login_retry_seconds{acntid=\"2\"} 1800
backproc_account_sync_age_seconds{acntid=\"1\"} 300
backproc_outbox_messages{state=\"queued\"} 2
backproc_outbox_messages{state=\"sending\"} 0
backproc_outbox_messages{state=\"sent\"} 5
backproc_outbox_messages{state=\"failed\"} 1
backproc_outbox_messages{state=\"cancelled\"} 0
backproc_outbox_oldest_queued_age_seconds 4000
";
        let samples: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(samples, expected_samples);
        // Each family: HELP, then TYPE gauge, then its samples.
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap_or("");
                assert!(rest.len() > family.len() + 10, "{line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert_eq!(rest, format!("{family} gauge"));
            } else {
                assert!(!family.is_empty() && line.starts_with(family), "{line}");
            }
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn labels_are_acntid_and_state_only() {
        for line in render(&sample()).lines().filter(|l| !l.starts_with('#')) {
            if let Some((_, labels)) = line.split_once('{') {
                let name = labels.split('=').next().unwrap_or("");
                assert!(name == "acntid" || name == "state", "{line}");
                assert_eq!(labels.matches('=').count(), 1, "{line}");
            }
        }
    }

    #[test]
    fn without_the_store_only_the_run_is_said() {
        let m = Metrics {
            another_live: true,
            exit_code: 0,
            accounts: None,
            outbox: None,
            ..sample()
        };
        let text = render(&m);
        assert!(text.contains("backproc_run_another_live 1\n"), "{text}");
        assert!(!text.contains("backproc_account_"), "{text}");
        assert!(!text.contains("backproc_outbox_"), "{text}");
        assert!(!text.contains("backproc_messages_received"), "{text}");
    }

    #[test]
    fn written_atomically_with_mode_0644_and_no_temporary_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("backproc.prom");
        crate::layout::set_umask();
        write_file(&path, "a 1\n").expect("first");
        write_file(&path, "a 2\n").expect("second");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 2\n");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["backproc.prom".to_string()]);
    }

    #[test]
    fn a_temporary_left_by_a_killed_run_is_replaced_and_a_missing_dir_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.prom");
        let stale = dir
            .path()
            .join(format!(".m.prom.{}.tmp", std::process::id()));
        std::fs::write(&stale, "half").expect("stale");
        write_file(&path, "b 1\n").expect("write");
        assert!(!stale.exists());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b 1\n");
        let err = write_file(&dir.path().join("nope/m.prom"), "x").expect_err("no dir");
        assert!(err.to_string().contains("nope/m.prom"), "{err}");
    }
}
