//! The worker threads of a run (SPEC §6): at most `BG_MAX_THREADS` of them,
//! at most `BG_MAX_CONNECTIONS_PER_ACCOUNT` connections to one account, one
//! login per connection reused for all of that account's folders.
//!
//! A worker takes the most urgent account that may open another connection,
//! logs in, and serves that account's queue until it is empty. The first
//! connection of an account discovers its folders (LIST, with statuses when
//! offered) before the others start. A server that stalls or drops the
//! connection gets one reconnect in the run; after a second failure the
//! account's remaining tasks fail and the error is recorded. A failure or
//! panic in a task fails that task only.

use crate::auth::Tokens;
use crate::imap::{self, Client, MailboxStatus};
use crate::logging::chain;
use crate::logging::{at, at_account, THREADING};
use crate::schedule::Kind;
use crate::store::{self, Account, FolderPatch, Leases, Location, Store};
use crate::sync::{self, discover, plan, Ctx, SyncError};
use crate::writer::{Pending, Writer};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The work of one account in this run.
#[derive(Debug, Clone)]
pub struct AccountWork {
    pub account: Account,
    /// Due folders in run order.
    pub folders: Vec<(i64, Kind)>,
    /// Every folder of the account (removed ones too) as read for this
    /// plan, when it was made for this account alone (planned again once
    /// taken): its discovery compares LIST with them instead of reading
    /// them again.
    pub known: Option<Vec<store::Folder>>,
}

/// How the pool runs.
pub struct Settings<'a> {
    pub max_threads: usize,
    pub max_connections: u32,
    pub io_timeout: Duration,
    pub deadline: Instant,
    pub now: i64,
    pub limits: plan::Limits,
    pub tls: &'a crate::net::Tls,
    /// The run's OAuth 2.0 tokens (shared with the outbox).
    pub tokens: &'a Tokens<'a>,
    /// `BG_LOGIN_RETRY_MIN`, `BG_LOGIN_RETRY_MAX`.
    pub login_retry: (i64, i64),
    /// Where each worker opens its read connection.
    pub store: Location,
    /// The accounts this run holds (SPEC §13): each is taken before its
    /// first session and given back when done.
    pub leases: &'a Leases,
    /// An account's work planned again, once taken (another host may have
    /// synced it since the plan was made); None: nothing of it is due.
    /// Called only when other hosts may share the work.
    pub replan: &'a Replan<'a>,
}

/// See [`Settings::replan`].
pub type Replan<'a> = dyn Fn(&Store, i64) -> store::Result<Option<AccountWork>> + Sync + 'a;

/// How one task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Synced (or stopped by the time limit, to go on next run).
    Synced,
    /// Failed; the reason is in the folder's or account's `last_error`.
    Failed,
    /// Not started because the run reached BG_MAX_RUN_TIME.
    Left,
    /// Not started because the server limits connections (`[UNAVAILABLE]`
    /// and the like): its account waits for the next run.
    Skipped,
    /// Another engine host holds the account, or synced the folder since
    /// the plan was made (SPEC §13).
    Elsewhere,
}

/// Progress reporting for a terminal.
pub trait Progress: Sync {
    /// A task of folder `name` starts.
    fn started(&self, name: &str);
    /// A task ended.
    fn finished(&self);
    /// `n` more messages were stored.
    fn messages(&self, n: usize);
    /// Tasks were added (discovered folders).
    fn add_total(&self, n: usize);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// A folder's sync, as the scheduler decided.
    Folder(i64, Kind),
    /// The bodies of a folder's messages stored header-only.
    Large(i64),
}

impl Job {
    fn emfdid(self) -> i64 {
        match self {
            Job::Folder(id, _) | Job::Large(id) => id,
        }
    }
}

struct Acct {
    account: Account,
    jobs: VecDeque<Job>,
    open: u32,
    discovered: bool,
    discovering: bool,
    statuses: HashMap<String, MailboxStatus>,
    failures: u32,
    dead: bool,
    /// The account's old `last_error` was cleared after a good login.
    cleared: bool,
    /// This run holds the account (SPEC §13).
    leased: bool,
    /// Its folders as the new plan read them ([`AccountWork::known`]).
    known: Option<Vec<store::Folder>>,
}

struct State {
    accts: Vec<Acct>,
    outcomes: Vec<Outcome>,
    /// New messages stored, by account.
    received: BTreeMap<i64, u64>,
}

/// What became of a run's sync work.
#[derive(Debug, Default)]
pub struct Done {
    /// How each task ended.
    pub outcomes: Vec<Outcome>,
    /// New messages stored, by account (accounts that stored none may be missing).
    pub received: BTreeMap<i64, u64>,
}

struct Pool<'a> {
    state: Mutex<State>,
    cond: Condvar,
    settings: &'a Settings<'a>,
    writer: &'a Writer,
    progress: &'a dyn Progress,
}

/// Runs every account's work and returns the outcome of each task and the
/// messages each account received.
pub fn run(
    settings: &Settings<'_>,
    work: Vec<AccountWork>,
    writer: &Writer,
    progress: &dyn Progress,
) -> Done {
    let wanted: usize = work.iter().map(|_| settings.max_connections as usize).sum();
    let threads = wanted.min(settings.max_threads).max(1);
    let accts = work
        .into_iter()
        .map(|w| Acct {
            account: w.account,
            jobs: w
                .folders
                .into_iter()
                .map(|(f, k)| Job::Folder(f, k))
                .collect(),
            open: 0,
            discovered: false,
            discovering: false,
            statuses: HashMap::new(),
            failures: 0,
            dead: false,
            cleared: false,
            leased: false,
            known: w.known,
        })
        .collect();
    let pool = Pool {
        state: Mutex::new(State {
            accts,
            outcomes: Vec::new(),
            received: BTreeMap::new(),
        }),
        cond: Condvar::new(),
        settings,
        writer,
        progress,
    };
    std::thread::scope(|scope| {
        for i in 0..threads {
            let pool = &pool;
            let spawned = std::thread::Builder::new()
                .name(format!("t{}", i + 1))
                .spawn_scoped(scope, move || pool.worker());
            if let Err(e) = spawned {
                log::error!(target: THREADING, "cannot start worker t{}: {e}", i + 1);
            }
        }
    });
    let mut state = pool.state.into_inner().unwrap_or_else(|p| p.into_inner());
    // Whatever folder is still queued was not reached in time (or no worker could run).
    for a in &mut state.accts {
        if std::mem::take(&mut a.leased) {
            settings.leases.release(a.account.acntid);
        }
        for job in a.jobs.drain(..) {
            if let Job::Folder(..) = job {
                state.outcomes.push(Outcome::Left);
            }
        }
    }
    Done {
        outcomes: state.outcomes,
        received: state.received,
    }
}

/// A connection slot of an account, given back when dropped (on every way
/// out of a session).
struct Slot<'p, 'a> {
    pool: &'p Pool<'a>,
    idx: usize,
}

impl Drop for Slot<'_, '_> {
    /// The last connection of an account whose work is done gives the
    /// account back (another host may take it at once).
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        let a = &mut st.accts[self.idx];
        a.open = a.open.saturating_sub(1);
        let done = a.open == 0 && !a.discovering && (a.jobs.is_empty() || a.dead);
        let release = (done && std::mem::take(&mut a.leased)).then_some(a.account.acntid);
        drop(st);
        if let Some(acntid) = release {
            self.pool.settings.leases.release(acntid);
        }
        self.pool.cond.notify_all();
    }
}

/// The recording of the folders that needed no sync, still in flight.
struct SkippedWrite {
    idx: usize,
    acntid: i64,
    skipped: Vec<(i64, FolderPatch)>,
    pending: Pending<()>,
}

/// How a session ended.
enum Ended {
    /// The account's queue is done, or the run must stop taking work.
    Done,
    /// The connection broke: the worker goes on (a reconnect, if allowed).
    Broken,
}

impl Pool<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Past the deadline, or the database cannot be written (for this
    /// run's accounts): no more work.
    fn must_stop(&self) -> bool {
        Instant::now() >= self.settings.deadline
            || self.writer.locked_out().is_some()
            || self.settings.leases.lost().is_some()
    }

    /// The `acntid` of account `idx`.
    fn acntid(&self, idx: usize) -> i64 {
        self.lock().accts[idx].account.acntid
    }

    /// Serves accounts until none is left. Its database connection is
    /// opened while its first server greets and logs in (opening costs about
    /// what that wait does); on PostgreSQL only once a folder needs syncing
    /// or a second account comes (see `session`).
    fn worker(&self) {
        let mut store = None;
        let mut first = true;
        while let Some((idx, discover)) = self.take_account() {
            let slot = Slot { pool: self, idx };
            let mut skipped = None;
            let lazy = first && discover && self.settings.leases.shared();
            first = false;
            let go_on = self.session(&slot, discover, lazy, &mut store, &mut skipped);
            if let Some(w) = skipped {
                self.settle_skipped(w);
            }
            drop(slot);
            if !go_on {
                break;
            }
        }
    }

    /// The most urgent account this worker may connect to (and whether it
    /// must discover folders first); waits while a discovery may add work.
    fn take_account(&self) -> Option<(usize, bool)> {
        let mut st = self.lock();
        loop {
            // Past the deadline, or the database cannot be written: no more work.
            if self.must_stop() {
                return None;
            }
            let max = self.settings.max_connections;
            let pick = st.accts.iter().position(|a| {
                // Another connection only when there is more queued work
                // than the open connections are about to take.
                !a.dead
                    && a.open < max
                    && if a.discovered {
                        a.jobs.len() > a.open as usize
                    } else {
                        !a.discovering
                    }
            });
            if let Some(i) = pick {
                let a = &mut st.accts[i];
                a.open += 1;
                let discover = !a.discovered;
                a.discovering |= discover;
                return Some((i, discover));
            }
            if !st.accts.iter().any(|a| a.discovering) {
                return None;
            }
            st = self
                .cond
                .wait_timeout(st, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// A connection-level failure: one reconnect per run, then the account
    /// is given up. A login that cannot work (refused, no token, a server
    /// that limits connections) is given up at once; a refused login also
    /// counts towards the account's back-off.
    fn connection_failed(&self, idx: usize, error: &imap::Error, requeue: Option<Job>) {
        let mut st = self.lock();
        let st = &mut *st;
        let a = &mut st.accts[idx];
        let acntid = a.account.acntid;
        if let Some(job) = requeue {
            // At the back: a folder whose task breaks the connection (a
            // response that cannot be read, a server that drops it there)
            // is retried after the account's other folders, so one bad
            // folder cannot use up the account's reconnect for them.
            a.jobs.push_back(job);
        }
        a.failures += 1;
        a.discovering = false;
        let at_once = matches!(
            error,
            imap::Error::Auth(_)
                | imap::Error::LoginRefused(_)
                | imap::Error::Unavailable(_)
                | imap::Error::Token(_)
        );
        if (at_once || a.failures >= 2) && !a.dead {
            let reason = error.to_string();
            // A server that limits connections fails nothing: the work
            // waits for the next run. Anything else fails every job left,
            // the large-message ones too: each is work this run owed.
            let outcome = match error {
                imap::Error::Unavailable(_) => Outcome::Skipped,
                _ => Outcome::Failed,
            };
            log::error!(target: THREADING, "account {}: {reason}; its remaining tasks wait for the next run {}", a.account.email, at_account(acntid));
            for job in a.jobs.drain(..) {
                st.outcomes.push(outcome.clone());
                if let Job::Folder(..) = job {
                    self.progress.finished();
                }
            }
            if !a.discovered {
                st.outcomes.push(outcome);
            }
            a.dead = true;
            self.record_account_error(acntid, error);
        } else {
            log::warn!(
                "account {}: {error}; reconnecting {}",
                a.account.email,
                at_account(acntid)
            );
        }
        if let Some(Job::Folder(emfdid, _)) = requeue {
            // The folder says what broke its task; a retry that completes
            // clears it again.
            let (now, e) = (self.settings.now, error.to_string());
            let _ = self
                .writer
                .submit(move |s| s.set_folder_error(emfdid, Some(&e), now));
        }
    }

    /// Records why the account was given up: a refused login also moves
    /// its back-off on; the need for consent was recorded with the refusal.
    fn record_account_error(&self, acntid: i64, error: &imap::Error) {
        let (now, reason) = (self.settings.now, error.to_string());
        match error {
            imap::Error::LoginRefused(_) => {
                let (min, max) = self.settings.login_retry;
                let _ = self.writer.submit(move |s| {
                    let delay = |n| crate::auth::login_retry_delay(n, min, max);
                    let (failures, at) = s.login_refused(acntid, &reason, now, &delay)?;
                    log::info!(
                        "login refused {failures} time(s) in a row; no attempt before {} s from now {}",
                        at - now,
                        at_account(acntid)
                    );
                    Ok(())
                });
            }
            imap::Error::Token(crate::auth::Error::NeedsConsent(_)) => {}
            _ => {
                let _ = self
                    .writer
                    .submit(move |s| s.set_account_error(acntid, Some(&reason), now));
            }
        }
    }

    /// One session on an account: connect (and open this worker's database
    /// connection meanwhile, unless `lazy`), discover when asked, then the
    /// account's jobs until none is left (or the run must stop). Returns
    /// false when this worker cannot go on (no database connection).
    ///
    /// `lazy` (PostgreSQL, the worker's first account): the discovery may
    /// find every folder unchanged, the common run; the connection then
    /// waits until a job needs it, and a run with nothing new opens none.
    /// The discovery reads through the lock connection meanwhile. Not for
    /// later accounts: the lock connection would serialise every worker's
    /// reads.
    fn session(
        &self,
        slot: &Slot<'_, '_>,
        discover_first: bool,
        lazy: bool,
        store: &mut Option<Store>,
        skipped: &mut Option<SkippedWrite>,
    ) -> bool {
        let idx = slot.idx;
        if !self.lock().accts[idx].leased {
            match self.take(idx) {
                Ok(true) => {}
                Ok(false) => return true,
                Err(()) => return false,
            }
        }
        let account = self.lock().accts[idx].account.clone();
        let connected = match self.connect(&account, store, !lazy) {
            Ok(connected) => connected,
            Err(()) => return false,
        };
        let (mut client, qresync) = match connected {
            Ok(c) => c,
            Err(e) => {
                self.connection_failed(idx, &e, None);
                return true;
            }
        };
        log::debug!(
            "logged in to {} as {} {}",
            client.peer(),
            account.imap_login(),
            at_account(account.acntid)
        );
        self.clear_old_error(idx, &account);
        if discover_first {
            match self.discover(idx, &mut client, store.as_ref()) {
                Ok(w) => *skipped = w,
                Err(e) if e.breaks_session() => {
                    self.connection_failed(idx, &e, None);
                    return true;
                }
                Err(e) => {
                    // LIST refused: go on with the folders we know.
                    log::warn!(
                        "folder discovery failed: {e} {}",
                        at_account(account.acntid)
                    );
                    self.discovered(idx);
                }
            }
        }
        if store.is_none() && !self.lock().accts[idx].jobs.is_empty() {
            match Store::connect(&self.settings.store) {
                Ok(opened) => *store = Some(opened),
                Err(e) => {
                    log::error!(target: THREADING, "worker cannot open the database: {}", chain(&e));
                    client.logout();
                    return false;
                }
            }
        }
        let Some(store) = store.as_ref() else {
            // Nothing left to do in this session.
            client.logout();
            return true;
        };
        let s = self.settings;
        let ctx = Ctx {
            now: s.now,
            deadline: s.deadline,
            limits: s.limits,
            writer: self.writer,
            store,
            qresync,
            progress: &|n| self.progress.messages(n),
        };
        if let Ended::Done = self.serve_jobs(idx, &mut client, &ctx) {
            client.logout();
        }
        true
    }

    /// Takes account `idx` for this run before its first session. When
    /// other hosts may share the work, the account's work is planned again
    /// from what the database says now. False when the account is not this
    /// run's to sync (another host holds it, or nothing of it is due any
    /// more); Err(()) when this worker cannot go on.
    fn take(&self, idx: usize) -> Result<bool, ()> {
        let s = self.settings;
        let acntid = self.acntid(idx);
        if !s.leases.shared() {
            self.lock().accts[idx].leased = true;
            return Ok(true);
        }
        match s.leases.take(acntid) {
            Ok(true) => self.lock().accts[idx].leased = true,
            Ok(false) => {
                log::debug!("another host holds the account {}", at_account(acntid));
                self.elsewhere(idx, None);
                return Ok(false);
            }
            Err(e) => {
                log::error!(target: THREADING, "{} {}", chain(&e), at_account(acntid));
                return Err(());
            }
        }
        // On the lock connection: this worker's own opens while it logs in.
        let replanned = s
            .leases
            .with_store(|db| (s.replan)(db, acntid))
            .unwrap_or_else(|| Err(store::Error::Lost("the lock connection is gone".into())));
        match replanned {
            Ok(Some(work)) => {
                self.elsewhere(idx, Some(work));
                Ok(true)
            }
            Ok(None) => {
                log::debug!(
                    "nothing of the account is due any more {}",
                    at_account(acntid)
                );
                self.elsewhere(idx, None);
                Ok(false)
            }
            Err(e) => {
                // The plan made at the start still holds: go on with it.
                log::warn!(
                    "cannot plan the account again: {} {}",
                    chain(&e),
                    at_account(acntid)
                );
                Ok(true)
            }
        }
    }

    /// The account's work as planned again once taken (`Some`), or none
    /// of it for this run (`None`): the folders dropped from the plan are
    /// another host's (or were synced since), neither failed nor left.
    fn elsewhere(&self, idx: usize, work: Option<AccountWork>) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let a = &mut st.accts[idx];
        let before = a.jobs.len() + usize::from(!a.discovered && a.jobs.is_empty());
        match work {
            Some(w) => {
                a.account = w.account;
                a.known = w.known;
                a.jobs = w
                    .folders
                    .into_iter()
                    .map(|(f, k)| Job::Folder(f, k))
                    .collect();
            }
            None => {
                a.jobs.clear();
                a.dead = true;
                a.discovering = false;
                a.discovered = true;
            }
        }
        for _ in a.jobs.len()..before {
            st.outcomes.push(Outcome::Elsewhere);
            self.progress.finished();
        }
        let a = &mut st.accts[idx];
        let release = (a.dead && std::mem::take(&mut a.leased)).then_some(a.account.acntid);
        drop(guard);
        if let Some(acntid) = release {
            self.settings.leases.release(acntid);
        }
        self.cond.notify_all();
    }

    /// Logs in to the account; opens this worker's database connection
    /// meanwhile when it has none and `open`. Err(()) when that cannot be
    /// opened.
    #[allow(clippy::type_complexity)]
    fn connect(
        &self,
        account: &Account,
        store: &mut Option<Store>,
        open: bool,
    ) -> Result<Result<(Client, bool), imap::Error>, ()> {
        let s = self.settings;
        let (connected, opened) = std::thread::scope(|scope| {
            let opening = (open && store.is_none()).then(|| {
                std::thread::Builder::new()
                    .name("open".into())
                    .spawn_scoped(scope, || Store::connect(&s.store))
            });
            let connected = imap::login(account, s.tokens, s.tls, s.io_timeout);
            let opened = opening.map(|spawned| match spawned {
                Ok(h) => h
                    .join()
                    .map_err(|_| "opening it panicked".to_string())
                    .and_then(|r| r.map_err(|e| chain(&e))),
                Err(e) => Err(format!("cannot start a thread: {e}")),
            });
            (connected, opened)
        });
        match opened {
            Some(Ok(opened)) => *store = Some(opened),
            Some(Err(why)) => {
                log::error!(target: THREADING, "worker cannot open the database: {why}");
                if let Ok((client, _)) = connected {
                    client.logout();
                }
                return Err(());
            }
            None => {}
        }
        Ok(connected)
    }

    /// After a good login, the account's `last_error` of an earlier run is
    /// cleared and its refused-login back-off starts over (once a run).
    fn clear_old_error(&self, idx: usize, account: &Account) {
        let backoff = account.login_failures != 0 || account.login_retry_at.is_some();
        if account.last_error.is_none() && !backoff {
            return;
        }
        let mut st = self.lock();
        if st.accts[idx].cleared {
            return;
        }
        st.accts[idx].cleared = true;
        let (acntid, now, had_error) = (
            account.acntid,
            self.settings.now,
            account.last_error.is_some(),
        );
        let _ = self.writer.submit(move |w| {
            if backoff {
                w.login_ok(acntid)?;
            }
            if had_error {
                w.set_account_error(acntid, None, now)?;
            }
            Ok(())
        });
    }

    /// The account's folders are known: the other connections may start.
    fn discovered(&self, idx: usize) {
        let mut st = self.lock();
        st.accts[idx].discovered = true;
        st.accts[idx].discovering = false;
        drop(st);
        self.cond.notify_all();
    }

    /// Runs the account's jobs on this session until none is left.
    fn serve_jobs(&self, idx: usize, client: &mut Client, ctx: &Ctx<'_>) -> Ended {
        let acntid = self.acntid(idx);
        while let Some((job, status)) = self.next_job(idx, ctx.store) {
            let result = catch_unwind(AssertUnwindSafe(|| self.run_job(client, ctx, job, status)));
            match result {
                Ok(Ok(())) => {}
                Ok(Err(SyncError::Imap(e))) if e.is_connection() => {
                    self.connection_failed(idx, &e, Some(job));
                    return Ended::Broken;
                }
                Ok(Err(e)) => {
                    let breaks = matches!(&e, SyncError::Imap(i) if i.breaks_session());
                    self.job_failed(acntid, job, &chain(&e));
                    if breaks {
                        // The session is in an unknown state: start a fresh one.
                        return Ended::Broken;
                    }
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    self.job_failed(acntid, job, &format!("internal error (panic): {what}"));
                    return Ended::Broken;
                }
            }
        }
        Ended::Done
    }

    /// The account's next job and its folder's status from LIST, unless the
    /// account is given up or the run must stop.
    fn next_job(&self, idx: usize, store: &Store) -> Option<(Job, Option<MailboxStatus>)> {
        let mut st = self.lock();
        let a = &mut st.accts[idx];
        if a.dead || self.must_stop() {
            return None;
        }
        let job = a.jobs.pop_front()?;
        let status = store
            .folder(job.emfdid())
            .ok()
            .flatten()
            .and_then(|f| a.statuses.get(&f.imap_name).copied());
        Some((job, status))
    }

    /// LIST: new folders are added (and synced in this run), vanished ones
    /// marked removed; statuses are kept for the skip decisions.
    fn discover(
        &self,
        idx: usize,
        client: &mut Client,
        store: Option<&Store>,
    ) -> Result<Option<SkippedWrite>, imap::Error> {
        let acntid = self.acntid(idx);
        let (found, mut statuses) = discover::list(client)?;
        let now = self.settings.now;
        // Through the lock connection while this worker has none of its
        // own (see `session`).
        let read = |with_removed: bool| {
            let read = |db: &Store| db.folders(Some(acntid), with_removed);
            store
                .map(read)
                .or_else(|| self.settings.leases.with_store(read))
                .and_then(|r| r.ok())
        };
        let planned = self.lock().accts[idx].known.take();
        let known = planned.or_else(|| read(true));
        let before: HashSet<i64> = known.iter().flatten().map(|f| f.emfdid).collect();
        let live = match known {
            // The common run: the folders are what they were, nothing to write.
            Some(known) if store::discovery_changes_nothing(&known, &found) => known
                .into_iter()
                .filter(|f| f.removed_at.is_none())
                .collect(),
            _ => match self
                .writer
                .call(move |s| s.apply_discovery(acntid, &found, now))
            {
                Ok(live) => live,
                Err(e) => {
                    log::error!(target: THREADING, "cannot record the folders: {} {}", chain(&e), at_account(acntid));
                    read(false).unwrap_or_default()
                }
            },
        };
        let need_status = self.queue_discovered(idx, &before, &live, &statuses);
        if !need_status.is_empty() {
            // No LIST-STATUS: one pipelined STATUS round trip for the due folders.
            for (name, st) in client.status_many(&need_status)? {
                if let Ok(name) = String::from_utf8(name) {
                    statuses.insert(name, st);
                }
            }
        }
        // Folders whose status shows nothing to do are settled here in one
        // transaction, without selecting them or holding up a connection.
        let mut st = self.lock();
        let a = &mut st.accts[idx];
        let mut skipped: Vec<(i64, FolderPatch)> = Vec::new();
        a.jobs.retain(|j| {
            let Job::Folder(emfdid, kind) = *j else {
                return true;
            };
            let Some(f) = live.iter().find(|f| f.emfdid == emfdid) else {
                return true;
            };
            let status = statuses.get(&f.imap_name);
            if plan::decide(f, kind, status) != plan::Decision::Skip {
                return true;
            }
            let patch = plan::done_patch(now, kind, status.and_then(|s| s.uidnext));
            skipped.push((emfdid, patch));
            false
        });
        a.statuses = statuses;
        drop(st);
        // On PostgreSQL written at once through the lock connection (a run
        // that finds nothing new opens no writer's session); else recorded by
        // the writer while the first folder is selected: nothing waits for
        // it (`settle_skipped` takes the result at the end of the session).
        let skipped_write = (!skipped.is_empty()).then(|| {
            let pending = match self
                .settings
                .leases
                .with_store_mut(|s| s.patch_folders(&skipped, now))
            {
                Some(done) => Pending::ready(done),
                None => {
                    let patches = skipped.clone();
                    self.writer.submit(move |s| s.patch_folders(&patches, now))
                }
            };
            SkippedWrite {
                idx,
                acntid,
                skipped,
                pending,
            }
        });
        self.discovered(idx);
        Ok(skipped_write)
    }

    /// Drops the jobs of folders gone from the server, queues a full sync
    /// of each new folder, and returns the due folders LIST gave no status
    /// for (wire names).
    fn queue_discovered(
        &self,
        idx: usize,
        before: &HashSet<i64>,
        live: &[store::Folder],
        statuses: &HashMap<String, MailboxStatus>,
    ) -> Vec<Vec<u8>> {
        let live_ids: HashSet<i64> = live.iter().map(|f| f.emfdid).collect();
        let mut st = self.lock();
        let a = &mut st.accts[idx];
        a.jobs.retain(|j| live_ids.contains(&j.emfdid()));
        let queued: HashSet<i64> = a.jobs.iter().map(|j| j.emfdid()).collect();
        let mut added = 0;
        for f in live {
            if !before.contains(&f.emfdid) && !queued.contains(&f.emfdid) {
                a.jobs.push_back(Job::Folder(f.emfdid, Kind::Full));
                added += 1;
            }
        }
        self.progress.add_total(added);
        live.iter()
            .filter(|f| {
                a.jobs
                    .iter()
                    .any(|j| matches!(j, Job::Folder(id, _) if *id == f.emfdid))
            })
            .filter(|f| !statuses.contains_key(&f.imap_name))
            .map(|f| f.imap_name.clone().into_bytes())
            .collect()
    }

    /// Takes the result of recording the folders that needed no sync: on
    /// success they are done; else they are queued to be synced the normal
    /// way.
    fn settle_skipped(&self, w: SkippedWrite) {
        let SkippedWrite {
            idx,
            acntid,
            skipped,
            pending,
        } = w;
        match pending.wait() {
            Ok(()) => {
                let mut st = self.lock();
                for (emfdid, _) in &skipped {
                    log::info!("received 0 new messages in 0s {}", at(acntid, *emfdid));
                    st.outcomes.push(Outcome::Synced);
                    self.progress.finished();
                }
            }
            Err(e) => {
                // Could not record them: sync them the normal way.
                log::warn!("{} {}", chain(&e), at_account(acntid));
                let mut st = self.lock();
                let a = &mut st.accts[idx];
                for (emfdid, p) in skipped {
                    let kind = if p.full_sync_at.is_some() {
                        Kind::Full
                    } else {
                        Kind::Recent
                    };
                    a.jobs.push_back(Job::Folder(emfdid, kind));
                }
                drop(st);
                self.cond.notify_all();
            }
        }
    }

    fn run_job(
        &self,
        client: &mut Client,
        ctx: &Ctx<'_>,
        job: Job,
        status: Option<MailboxStatus>,
    ) -> Result<(), SyncError> {
        let Some(folder) = ctx.store.folder(job.emfdid())? else {
            return Ok(());
        };
        let emfdid = folder.emfdid;
        match job {
            Job::Folder(_, kind) => {
                if folder.removed_at.is_some() {
                    return Ok(());
                }
                self.progress.started(&folder.name);
                let t0 = Instant::now();
                let out = sync::sync_folder(client, ctx, &folder, kind, status.as_ref());
                self.progress.finished();
                let out = out?;
                let secs = t0.elapsed().as_secs_f64().round() as u64;
                log::info!(
                    "received {} new messages in {secs}s {}",
                    out.received,
                    at(folder.acntid, emfdid)
                );
                if !out.complete {
                    log::info!(
                        "run time limit reached: '{}' continues next run {}",
                        folder.name,
                        at(folder.acntid, emfdid)
                    );
                }
                let mut st = self.lock();
                st.outcomes.push(Outcome::Synced);
                *st.received.entry(folder.acntid).or_default() += out.received as u64;
                if out.large_pending && out.complete {
                    if let Some(a) = st
                        .accts
                        .iter_mut()
                        .find(|a| a.account.acntid == folder.acntid)
                    {
                        a.jobs.push_back(Job::Large(emfdid));
                    }
                }
            }
            Job::Large(_) => {
                let n = sync::fetch_large(client, ctx, &folder)?;
                log::debug!(
                    "fetched {n} large messages whole {}",
                    at(folder.acntid, emfdid)
                );
            }
        }
        Ok(())
    }

    fn job_failed(&self, acntid: i64, job: Job, error: &str) {
        let emfdid = job.emfdid();
        log::error!(target: THREADING, "sync failed: {error} {}", at(acntid, emfdid));
        self.lock().outcomes.push(Outcome::Failed);
        let (now, e) = (self.settings.now, error.to_string());
        let _ = self
            .writer
            .submit(move |s| s.set_folder_error(emfdid, Some(&e), now));
    }
}
