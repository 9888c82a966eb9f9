//! One cycle of the engine (SPEC §2 `run`): the lock, the plan, the sync
//! workers and the outbox, the logs, and the exit code.
//!
//! The clock is read once by the caller and passed in as `now`: every task of
//! the run writes that plan time as its sync time, so intervals do not drift
//! by the length of the run.

use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::lock::{self, Acquire};
use crate::pool::{self, AccountWork, Outcome};
use crate::schedule::{self, FolderInput, Settings, Task};
use crate::store::{Account, Store};
use crate::sync::Limits;
use crate::writer::Writer;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The options of `engine run`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    pub force: bool,
    pub accounts: Vec<i64>,
    pub no_sync: bool,
    pub no_outbox: bool,
}

/// The scheduler's view of the store: every folder of every active account
/// (an account without folders as one task to discover them).
pub fn plan_tasks(
    store: &Store,
    config: &Config,
    now: i64,
    force: bool,
    only: &[i64],
) -> Result<(Vec<Task>, Vec<Account>)> {
    let accounts: Vec<Account> = store
        .accounts()?
        .into_iter()
        .filter(|a| a.active && (only.is_empty() || only.contains(&a.acntid)))
        .collect();
    let folders = store.folders(None, false)?;
    let sessions = store.sessions()?;
    let mut inputs = Vec::new();
    for a in &accounts {
        let mut any = false;
        for f in folders.iter().filter(|f| f.acntid == a.acntid) {
            any = true;
            inputs.push(FolderInput {
                emfdid: Some(f.emfdid),
                acntid: a.acntid,
                usrid: a.usrid,
                hi: f.is_hi(),
                last_recent_sync_at: f.last_recent_sync_at,
                last_full_sync_at: f.last_full_sync_at,
                pending_large: f.has_partial,
            });
        }
        if !any {
            inputs.push(FolderInput {
                emfdid: None,
                acntid: a.acntid,
                usrid: a.usrid,
                hi: true,
                last_recent_sync_at: None,
                last_full_sync_at: None,
                pending_large: false,
            });
        }
    }
    let tasks = schedule::plan(
        &inputs,
        &sessions,
        &Settings::from(config),
        now,
        &chrono::Local,
        force,
    );
    Ok((tasks, accounts))
}

/// Refuses `--account ID` of an account that does not exist (exit 65): a
/// typo in a crontab line must not turn into a run that silently does nothing.
pub fn check_accounts(store: &Store, only: &[i64]) -> Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    let known: Vec<i64> = store.accounts()?.iter().map(|a| a.acntid).collect();
    let unknown: Vec<String> = only
        .iter()
        .filter(|id| !known.contains(id))
        .map(i64::to_string)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "--account: no account {}",
            unknown.join(", ")
        )))
    }
}

/// Runs one cycle; returns the exit code.
pub fn run(layout: &Layout, config: &Config, opts: &Options, now: i64) -> Result<i32> {
    layout.ensure_dirs()?;
    if opts.dry_run {
        let store = Store::open(&layout.db_path())?;
        check_accounts(&store, &opts.accounts)?;
        let (tasks, _) = plan_tasks(&store, config, now, opts.force, &opts.accounts)?;
        crate::cli::print_plan(&store, &tasks, false)?;
        return Ok(exit::OK);
    }
    crate::logging::init(layout)?;
    let pid = std::process::id();
    let _lock = match lock::acquire(&layout.pid_file(), pid, now) {
        Ok(Acquire::Acquired(l)) => l,
        Ok(Acquire::Held { pid }) => {
            let who = pid.map_or("unknown".to_string(), |p| p.to_string());
            log::info!("another run is live (pid {who}), exiting");
            return Ok(exit::OK);
        }
        Err(e) => {
            return Err(Error::Layout(format!(
                "cannot lock {}: {e}",
                layout.pid_file().display()
            )))
        }
    };
    if let Ok(false) = layout.config.try_exists() {
        // Allowed (SPEC §3), but a mistyped --config would go unnoticed.
        log::info!(
            "{} not found: running with the defaults",
            layout.config.display()
        );
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.max_run_time.max(1) as u64);
    let tls = crate::net::Tls::new(config.tls_ca_file.as_deref()).map_err(|e| {
        Error::Config(crate::config::ConfigError {
            path: layout.config.display().to_string(),
            line: 0,
            message: e,
        })
    })?;
    let mut store = Store::open(&layout.db_path())?;
    check_accounts(&store, &opts.accounts)?;
    store.ensure_inboxes()?;
    let db_path = layout.db_path();
    let (writer, writer_thread) =
        Writer::spawn_with_checkpointer(Store::open_unmigrated(&db_path)?, Some(db_path.clone()))
            .map_err(|e| Error::Other(format!("cannot start the database writer: {e}")))?;

    let sync_on = config.sync_enabled && !opts.no_sync;
    let outbox_on = config.outbox_enabled && !opts.no_outbox;
    let progress = TermProgress::new(std::io::stderr().is_terminal());
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut outbox_failed = 0usize;

    let sync_done = std::sync::atomic::AtomicBool::new(!sync_on);
    std::thread::scope(|scope| -> Result<()> {
        let outbox = if outbox_on {
            let (layout, config, sync_done) = (&*layout, config, &sync_done);
            Some(
                std::thread::Builder::new()
                    .name(format!("t{}", config.max_threads.saturating_add(1)))
                    .spawn_scoped(scope, move || {
                        let clock = || chrono::Utc::now().timestamp();
                        crate::outbox::drain_during_run(
                            layout,
                            config,
                            &clock,
                            deadline,
                            sync_done,
                            &opts.accounts,
                        )
                    })
                    .map_err(|e| Error::Other(format!("cannot start the outbox thread: {e}")))?,
            )
        } else {
            None
        };
        if sync_on {
            let (tasks, accounts) = plan_tasks(&store, config, now, opts.force, &opts.accounts)?;
            let deferred = tasks.iter().filter(|t| t.deferred).count();
            if deferred > 0 {
                log::info!("deferred {deferred} tasks");
            }
            let work = account_work(&tasks, &accounts);
            progress.add(tasks.len() - deferred);
            let settings = pool::Settings {
                max_threads: config.max_threads as usize,
                max_connections: config.max_connections_per_account,
                io_timeout: Duration::from_secs(config.io_timeout),
                deadline,
                now,
                limits: Limits {
                    max_message_size: config.max_message_size,
                    ..Limits::default()
                },
                tls,
            };
            outcomes = pool::run(&settings, work, &writer, &db_path, &progress);
            sync_done.store(true, Ordering::SeqCst);
            if let Some(h) = &outbox {
                h.thread().unpark();
            }
            progress.done();
        }
        if let Some(handle) = outbox {
            match handle.join() {
                Ok(Ok(failed)) => outbox_failed = failed,
                Ok(Err(e)) => {
                    log::error!(target: crate::logging::THREADING, "outbox: {e}");
                    outbox_failed += 1;
                }
                Err(_) => {
                    log::error!(target: crate::logging::THREADING, "outbox: the thread panicked");
                    outbox_failed += 1;
                }
            }
        }
        Ok(())
    })?;
    let locked_out = writer.locked_out();
    drop(writer);
    let _ = writer_thread.join();
    if let Some(why) = locked_out {
        // Nothing could be stored: the run stopped early (exit 1); the
        // next run starts over where this one was.
        log::error!(target: crate::logging::THREADING, "the run stopped: {why}");
        return Err(Error::Store(format!("the run stopped: {why}")));
    }

    let failed = outcomes.iter().filter(|o| o.failed()).count() + outbox_failed;
    let left = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Left { .. }))
        .count();
    if left > 0 {
        log::info!("run time limit reached: {left} tasks left for the next run");
    }
    log::debug!(
        "run finished in {:.1}s: {} tasks, {failed} failed",
        started.elapsed().as_secs_f64(),
        outcomes.len()
    );
    if failed > 0 {
        eprintln!(
            "engine: {failed} job(s) failed; see {}/l-info.log and `engine status`",
            layout.logs_dir().display()
        );
        return Ok(exit::TEMPFAIL);
    }
    Ok(exit::OK)
}

/// Groups the tasks that fit in this run by account, in run order.
fn account_work(tasks: &[Task], accounts: &[Account]) -> Vec<AccountWork> {
    let mut order: Vec<i64> = Vec::new();
    let mut by_account: HashMap<i64, Vec<(i64, schedule::Kind)>> = HashMap::new();
    for t in tasks.iter().filter(|t| !t.deferred) {
        if !order.contains(&t.acntid) {
            order.push(t.acntid);
        }
        let list = by_account.entry(t.acntid).or_default();
        if let Some(emfdid) = t.emfdid {
            list.push((emfdid, t.kind));
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let account = accounts.iter().find(|a| a.acntid == id)?.clone();
            Some(AccountWork {
                account,
                folders: by_account.remove(&id).unwrap_or_default(),
            })
        })
        .collect()
}

/// Progress on stderr when it is a terminal: folders done of total,
/// messages received, current folder. Silent otherwise (cron).
struct TermProgress {
    tty: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    messages: AtomicUsize,
    current: Mutex<(String, Instant)>,
}

impl TermProgress {
    fn new(tty: bool) -> TermProgress {
        TermProgress {
            tty,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            messages: AtomicUsize::new(0),
            current: Mutex::new((String::new(), Instant::now())),
        }
    }

    fn add(&self, n: usize) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn show(&self, force: bool) {
        if !self.tty {
            return;
        }
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if !force && cur.1.elapsed() < Duration::from_millis(200) {
            return;
        }
        cur.1 = Instant::now();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{}/{} folders, {} messages received  {}",
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            self.messages.load(Ordering::Relaxed),
            cur.0
        );
        let _ = err.flush();
    }

    fn done(&self) {
        if self.tty {
            self.show(true);
            eprintln!();
        }
    }
}

impl pool::Progress for TermProgress {
    fn started(&self, name: &str) {
        if self.tty {
            self.current.lock().unwrap_or_else(|p| p.into_inner()).0 = name.to_string();
            self.show(false);
        }
    }
    fn finished(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.show(false);
    }
    fn messages(&self, n: usize) {
        self.messages.fetch_add(n, Ordering::Relaxed);
        self.show(false);
    }
    fn add_total(&self, n: usize) {
        self.add(n);
    }
}
