//! One cycle of the engine (SPEC §2 `run`): the lock, the plan, the sync
//! workers and the outbox, the logs, and what became of the jobs. It prints
//! nothing: the command line says what the returned [`Report`] means.
//!
//! The clock is read once by the caller and passed in as `now`: every task of
//! the run writes that plan time as its sync time, so intervals do not drift
//! by the length of the run.

use crate::auth::Tokens;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::lock::{self, Acquire};
use crate::logging::{chain, THREADING};
use crate::outbox::Drained;
use crate::pool::{self, AccountWork, Outcome, Progress};
use crate::schedule::{self, FolderInput, Settings, Task};
use crate::store::{self, Account, Folder, Leases, Location, Session, Store};
use crate::sync::plan::Limits;
use crate::writer::Writer;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The options of `engine run`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub force: bool,
    pub accounts: Vec<i64>,
    pub no_sync: bool,
    pub no_outbox: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Another run holds the lock; this one did nothing.
    AnotherLive,
    /// The run completed.
    Completed(Summary),
}

/// The jobs of a completed run and how they ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sync tasks (folders, large messages) that ended well.
    pub done: usize,
    /// Sync tasks that failed (an account given up before its folders were
    /// known also fails its discovery).
    pub failed: usize,
    /// Due sync tasks left for a later run: beyond the run's capacity, of
    /// accounts that wait (consent, refused logins), not reached in time,
    /// or refused by a server that limits connections.
    pub deferred: usize,
    /// Outgoing messages sent, and those that failed (for good or for now).
    pub outbox: Drained,
    /// New messages stored, by account (accounts that stored none may be missing).
    pub received: BTreeMap<i64, u64>,
}

impl Summary {
    /// Jobs that failed: sync tasks and messages (exit 75 when any).
    pub fn failed_jobs(&self) -> usize {
        self.failed + self.outbox.failed
    }
}

/// The scheduler's view of the store: every folder of every active account
/// (an account without folders as one task to discover them). The due
/// tasks of an account that cannot log in now (it needs consent, or waits
/// after refused logins) come last, deferred, saying why.
pub fn plan_tasks(
    store: &Store,
    config: &Config,
    now: i64,
    force: bool,
    only: &[i64],
) -> store::Result<(Vec<Task>, Vec<Account>)> {
    let (tasks, accounts, _) = plan_reading(store, config, now, force, only)?;
    Ok((tasks, accounts))
}

/// [`plan_tasks`], and the users' sessions it read: a run plans each
/// account again once taken, with the same sessions.
fn plan_reading(
    store: &Store,
    config: &Config,
    now: i64,
    force: bool,
    only: &[i64],
) -> store::Result<(Vec<Task>, Vec<Account>, Vec<Session>)> {
    // One account (`--account ID`): only its own rows are read.
    let (all, of_one) = match only {
        [one] => (store.account(*one)?.into_iter().collect(), Some(*one)),
        _ => (store.accounts()?, None),
    };
    let folders = store.folders(of_one, false)?;
    let sessions = store.sessions()?;
    let (tasks, accounts) = plan_of(all, &folders, &sessions, config, now, force, only);
    Ok((tasks, accounts, sessions))
}

/// One account planned again once this run holds it (SPEC §13): another
/// host may have synced it since the plan was made. Its account and
/// folder rows are read again, the sessions are the run's; its folders
/// (removed ones too) go with its work, for its discovery.
fn replan_one(
    store: &Store,
    config: &Config,
    now: i64,
    force: bool,
    acntid: i64,
    sessions: &[Session],
) -> store::Result<Option<AccountWork>> {
    let account: Vec<Account> = store.account(acntid)?.into_iter().collect();
    let known = store.folders(Some(acntid), true)?;
    let live: Vec<Folder> = known
        .iter()
        .filter(|f| f.removed_at.is_none())
        .cloned()
        .collect();
    let (tasks, accounts) = plan_of(account, &live, sessions, config, now, force, &[acntid]);
    Ok(account_work(&tasks, &accounts)
        .into_iter()
        .next()
        .map(|work| AccountWork {
            known: Some(known),
            ..work
        }))
}

/// The plan from the rows read: `all` accounts (those of `only`, when
/// given), their live `folders`, the users' `sessions`.
fn plan_of(
    all: Vec<Account>,
    folders: &[Folder],
    sessions: &[Session],
    config: &Config,
    now: i64,
    force: bool,
    only: &[i64],
) -> (Vec<Task>, Vec<Account>) {
    let accounts: Vec<Account> = all
        .into_iter()
        .filter(|a| a.active && (only.is_empty() || only.contains(&a.acntid)))
        .collect();
    let (mut ready, mut held) = (Vec::new(), Vec::new());
    let mut holds: HashMap<i64, String> = HashMap::new();
    for a in &accounts {
        let inputs = match crate::auth::hold(a, now) {
            Some(why) => {
                holds.insert(a.acntid, why);
                &mut held
            }
            None => &mut ready,
        };
        let before = inputs.len();
        inputs.extend(
            folders
                .iter()
                .filter(|f| f.acntid == a.acntid)
                .map(|f| FolderInput::of(f, a.usrid)),
        );
        if inputs.len() == before {
            inputs.push(FolderInput::undiscovered(a.acntid, a.usrid));
        }
    }
    let settings = Settings::from(config);
    let plan = |inputs: &[FolderInput]| {
        schedule::plan(inputs, sessions, &settings, now, &chrono::Local, force)
    };
    let mut tasks = plan(&ready);
    for mut t in plan(&held) {
        t.deferred = true;
        t.reason = holds.get(&t.acntid).cloned().unwrap_or_default();
        tasks.push(t);
    }
    (tasks, accounts)
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

/// Runs one cycle. The logs must be set up (`logging::init`).
pub fn run(
    layout: &Layout,
    config: &Config,
    opts: &Options,
    now: i64,
    progress: &dyn Progress,
) -> Result<Report> {
    limit_malloc_arenas();
    let Some(_lock) = take_lock(layout, now)? else {
        return Ok(Report::AnotherLive);
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
    let tls =
        crate::net::Tls::new(config.tls_ca_file.as_deref()).map_err(|source| Error::CaFile {
            config: layout.config.clone(),
            source,
        })?;
    let at = Location::of(layout, config)?;
    // Until when this run expects to hold what it takes (`lease_until`).
    let until = now.saturating_add(config.max_run_time.max(1));
    let (mut store, writer_store) = connections(&at)?;
    check_accounts(&store, &opts.accounts)?;
    store.ensure_inboxes()?;
    // On PostgreSQL the run's connection holds its accounts' locks until
    // the cycle ends; on SQLite it stays here.
    let (leases, own) = Leases::for_run(store, until)?;
    let open_writer = {
        let at = at.clone();
        move || writer_store.map_or_else(|| Store::connect(&at), Ok)
    };
    let (writer, writer_thread) = Writer::spawn(open_writer)
        .map_err(|e| Error::other("cannot start the database writer", e))?;
    let clock = || chrono::Utc::now().timestamp();
    let timeout = Duration::from_secs(config.io_timeout);
    let tokens = Tokens::new(&at, &tls, timeout, &clock);
    let cycle = Cycle {
        config,
        opts,
        now,
        deadline,
        at: &at,
        tls: &tls,
        tokens: &tokens,
        store: own.as_ref(),
        writer: &writer,
        leases: &leases,
        until,
        progress,
    };
    let done = cycle.sync_and_send();
    let locked_out = writer.locked_out();
    let pooled = writer.pooled() || leases.pooled();
    drop(writer);
    let _ = writer_thread.join();
    if let Some(why) = locked_out.or_else(|| leases.lost()) {
        // Nothing more could be stored: the run stopped early; the next
        // run starts over where this one was. SQLite locked by another
        // program: exit 1; PostgreSQL gone mid-run: exit 75.
        log::error!(target: THREADING, "the run stopped: {why}");
        let why = format!("the run stopped: {why}");
        return Err(Error::Store(match at {
            Location::Postgres(_) if pooled => store::Error::Pooled {
                what: why,
                source: None,
            },
            Location::Postgres(_) => store::Error::Lost(why),
            Location::Sqlite(_) => store::Error::LockedOut(why),
        }));
    }
    let (synced, outbox) = done?;
    let Some(mut store) = own.or_else(|| leases.into_store()) else {
        return Err(Error::Store(store::Error::Lost(
            "the run stopped: lost the run's connection to PostgreSQL".into(),
        )));
    };
    after_bulk_load(&mut store, &synced);
    let backfill_failed = backfill(&mut store, opts, deadline, now);
    let count = |which: Outcome| synced.done.outcomes.iter().filter(|o| **o == which).count();
    let left = count(Outcome::Left);
    if left > 0 {
        log::info!("run time limit reached: {left} tasks left for the next run");
    }
    let skipped = count(Outcome::Skipped);
    if skipped > 0 {
        log::info!("{skipped} tasks wait for the next run: their servers limit connections");
    }
    let elsewhere = count(Outcome::Elsewhere);
    if elsewhere > 0 {
        log::info!("{elsewhere} tasks were another engine host's (it holds their accounts, or synced them since the plan)");
    }
    let summary = Summary {
        done: count(Outcome::Synced),
        failed: count(Outcome::Failed) + backfill_failed,
        deferred: synced.postponed + left + skipped,
        outbox,
        received: synced.done.received,
    };
    log::debug!(
        "run finished in {:.1}s: {} tasks, {} failed",
        started.elapsed().as_secs_f64(),
        synced.done.outcomes.len(),
        summary.failed_jobs()
    );
    Ok(Report::Completed(summary))
}

/// The sync part of a run: what the workers did, and the due tasks the
/// plan left for a later run.
#[derive(Default)]
struct Synced {
    done: pool::Done,
    postponed: usize,
}

/// The run's slice of the backfill of attachments and search (see
/// `backfill`); a run limited to some accounts leaves it alone. Returns the
/// jobs failed (0 or 1).
fn backfill(store: &mut Store, opts: &Options, deadline: Instant, now: i64) -> usize {
    if !opts.accounts.is_empty() {
        return 0;
    }
    let until = if opts.no_sync && opts.no_outbox {
        deadline
    } else {
        deadline.min(Instant::now() + crate::backfill::PER_RUN)
    };
    match crate::backfill::run(store, until, now) {
        Ok(_) => 0,
        Err(e) => {
            log::error!("filling in attachments and search: {}", chain(&e));
            1
        }
    }
}

/// New messages in a run from which the store's statistics are refreshed
/// at its end (`Store::refresh_statistics`).
const BULK: u64 = 1000;

/// After a run that stored `BULK` messages or more: the planner has no
/// statistics of them, and they are not marked visible to all, until
/// autovacuum gets to them (PostgreSQL: a minute); a search wants both now.
fn after_bulk_load(store: &mut Store, synced: &Synced) {
    let stored: u64 = synced.done.received.values().sum();
    if stored >= BULK {
        if let Err(e) = store.refresh_statistics() {
            log::warn!("after storing {stored} messages: {}", chain(&e));
        }
    }
}

/// What the sync and the outbox of a run share.
struct Cycle<'a> {
    config: &'a Config,
    opts: &'a Options,
    /// The run's plan time.
    now: i64,
    /// No new work starts after this (`BG_MAX_RUN_TIME`).
    deadline: Instant,
    at: &'a Location,
    tls: &'a crate::net::Tls,
    tokens: &'a Tokens<'a>,
    /// The run's own connection on SQLite (the plan is read through it);
    /// None on PostgreSQL, where the leases hold it ([`Cycle::on_own`]).
    store: Option<&'a Store>,
    writer: &'a Writer,
    /// The accounts this run holds (SPEC §13).
    leases: &'a Leases,
    /// When this run expects to be done (`lease_until`, `claimed_until`).
    until: i64,
    progress: &'a dyn Progress,
}

impl Cycle<'_> {
    /// The sync on the worker pool and the outbox on a thread of its own,
    /// side by side: the outbox is polled while the sync goes on and
    /// drained once more when it ends. Returns what the sync and the outbox did.
    fn sync_and_send(&self) -> Result<(Synced, Drained)> {
        let config = self.config;
        let sync_on = config.sync_enabled && !self.opts.no_sync;
        let outbox_on = config.outbox_enabled && !self.opts.no_outbox;
        let sync_done = AtomicBool::new(!sync_on);
        let clock = || chrono::Utc::now().timestamp();
        let drain = crate::outbox::Drain {
            config,
            tls: self.tls,
            tokens: self.tokens,
            clock: &clock,
            deadline: self.deadline,
            only: &self.opts.accounts,
            leases: self.leases,
            claim_until: self.until,
        };
        std::thread::scope(|scope| {
            let outbox = if outbox_on {
                let (at, drain, sync_done) = (self.at, &drain, &sync_done);
                let name = format!("t{}", config.max_threads.saturating_add(1));
                let spawned = std::thread::Builder::new()
                    .name(name)
                    .spawn_scoped(scope, move || crate::outbox::drain(at, drain, sync_done))
                    .map_err(|e| Error::other("cannot start the outbox thread", e))?;
                Some(spawned)
            } else {
                None
            };
            let synced = if sync_on {
                self.sync()
            } else {
                Ok(Synced::default())
            };
            sync_done.store(true, Ordering::SeqCst);
            if let Some(h) = &outbox {
                h.thread().unpark();
            }
            let drained = match outbox.map(|h| h.join()) {
                None => Drained::default(),
                Some(Ok(Ok(drained))) => drained,
                Some(Ok(Err(e))) => {
                    log::error!(target: THREADING, "outbox: {}", chain(&e));
                    Drained { sent: 0, failed: 1 }
                }
                Some(Err(_)) => {
                    log::error!(target: THREADING, "outbox: the thread panicked");
                    Drained { sent: 0, failed: 1 }
                }
            };
            Ok((synced?, drained))
        })
    }

    /// Runs `f` on the run's own connection: the caller's on SQLite, the
    /// lock connection on PostgreSQL.
    fn on_own<R>(&self, f: impl FnOnce(&Store) -> store::Result<R>) -> store::Result<R> {
        match self.store {
            Some(store) => f(store),
            None => self.leases.with_store(f).unwrap_or_else(|| {
                let why = self
                    .leases
                    .lost()
                    .unwrap_or_else(|| "no lock connection".into());
                Err(store::Error::Lost(why))
            }),
        }
    }

    /// The sync part of a run: the plan, then the workers.
    fn sync(&self) -> Result<Synced> {
        let (config, opts, now) = (self.config, self.opts, self.now);
        let (tasks, accounts, sessions) =
            self.on_own(|s| plan_reading(s, config, now, opts.force, &opts.accounts))?;
        let held: Vec<i64> = accounts
            .iter()
            .filter(|a| crate::auth::hold(a, self.now).is_some())
            .map(|a| a.acntid)
            .collect();
        let waiting = tasks.iter().filter(|t| held.contains(&t.acntid)).count();
        let deferred = tasks.iter().filter(|t| t.deferred).count() - waiting;
        if deferred > 0 {
            log::info!("deferred {deferred} tasks");
        }
        if waiting > 0 {
            log::info!(
                "{waiting} tasks of {} account(s) wait: consent needed, or refused logins",
                held.len()
            );
        }
        self.progress.add_total(tasks.len() - deferred - waiting);
        let settings = pool::Settings {
            max_threads: config.max_threads as usize,
            max_connections: config.max_connections_per_account,
            io_timeout: Duration::from_secs(config.io_timeout),
            deadline: self.deadline,
            now: self.now,
            limits: Limits {
                max_message_size: config.max_message_size,
                ..Limits::default()
            },
            tls: self.tls,
            tokens: self.tokens,
            login_retry: (config.login_retry_min, config.login_retry_max),
            store: self.at.clone(),
            leases: self.leases,
            replan: &|store: &Store, acntid: i64| {
                replan_one(store, config, now, opts.force, acntid, &sessions)
            },
        };
        let work = account_work(&tasks, &accounts);
        Ok(Synced {
            done: pool::run(&settings, work, self.writer, self.progress),
            postponed: deferred + waiting,
        })
    }
}

/// The run's own connection (migrated) and, on SQLite, the writer's. On
/// PostgreSQL the writer opens its own when it first has work: a session
/// costs the server a new backend, and a run that finds nothing new writes
/// its folder times through the run's own, which becomes the lock
/// connection of its leases ([`Leases::for_run`], [`Leases::with_store_mut`]).
fn connections(at: &Location) -> store::Result<(Store, Option<Store>)> {
    let store = Store::open_for_run(at)?;
    Ok(match at {
        // One file: the writer's connection after the migrations.
        Location::Sqlite(_) => (store, Some(Store::connect(at)?)),
        // The writer opens its own once it has something to write.
        Location::Postgres(_) => (store, None),
    })
}

/// At most two malloc arenas for the run's threads. A batch is fetched on
/// a worker, parsed on a thread of its own and freed by the writer; with
/// glibc's default of one arena per thread (up to 8 per core), each of
/// those threads keeps the memory it once held, and a first sync peaked
/// 8 to 10 MiB higher (bench/README.md). Before any thread starts.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of glibc's allocator; it
    // has no memory-safety preconditions, and an unknown value is refused
    // (returns 0), which leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Takes the run's lock; None when another run holds it (logged).
fn take_lock(layout: &Layout, now: i64) -> Result<Option<lock::RunLock>> {
    let path = layout.pid_file();
    match lock::acquire(&path, std::process::id(), now) {
        Ok(Acquire::Acquired(l)) => Ok(Some(l)),
        Ok(Acquire::Held { pid }) => {
            let who = pid.map_or("unknown".to_string(), |p| p.to_string());
            log::info!("another run is live (pid {who}), exiting");
            Ok(None)
        }
        Err(e) => Err(Error::layout(format!("cannot lock {}", path.display()), e)),
    }
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
                known: None,
            })
        })
        .collect()
}
