//! Outgoing mail (SPEC §8): [`queue`] checks and stores a message, [`drain`]
//! sends what is due over SMTP with Postfix's retry policy and stores the
//! copy in the Sent folder.
//!
//! A message is claimed (`sending`) before it goes out, and the outcome of
//! each recipient is recorded in one durable transaction right after the
//! server's reply, before anything else happens: a killed run can at worst
//! resend the one message in flight (the next run re-queues it with a
//! warning). During a run the outbox is polled every few seconds while the
//! sync goes on, so a long first sync never holds outgoing mail back.
//! Nothing here prints: the command line does.

pub mod message;
pub mod policy;
pub mod sent;
pub mod smtp;

use crate::auth::Tokens;
use crate::config::Config;
use crate::logging::chain;
use crate::logging::{at_account, THREADING};
use crate::net::Tls;
use crate::store::{
    self, Account, AttemptRecord, Claim, Leases, Location, OutboxRow, OutboxState, RcptState,
    SentCopy, Store,
};
use policy::{Delivery, Rcpt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the outbox is polled while the sync runs: a message queued
/// during a long sync waits at most this long (plus the sending before it).
/// A poll is one indexed query.
const POLL: Duration = Duration::from_secs(5);

/// Why `outbox add` queued nothing.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No such account.
    #[error("no account {0}")]
    NoAccount(i64),
    /// The message cannot be sent as it is.
    #[error("message refused: {0}")]
    Refused(#[from] message::Refused),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Checks a raw RFC 5322 message for `acntid` and queues it; returns its
/// `emoid`.
pub fn queue(store: &mut Store, acntid: i64, raw: &[u8], now: i64) -> Result<i64, QueueError> {
    let account = store
        .account(acntid)?
        .ok_or(QueueError::NoAccount(acntid))?;
    let env = message::check(raw, &account.email)?;
    Ok(store.queue_message(
        acntid,
        raw,
        &env.mail_from,
        &env.rcpt_to,
        env.message_id.as_deref(),
        now,
    )?)
}

/// What a drain needs besides the store.
pub struct Drain<'a> {
    pub config: &'a Config,
    pub tls: &'a Tls,
    /// The run's OAuth 2.0 tokens (shared with the sync).
    pub tokens: &'a Tokens<'a>,
    /// The current time: a run can last an hour, and retry times are
    /// wall-clock times.
    pub clock: &'a (dyn Fn() -> i64 + Sync),
    /// No message is started after this.
    pub deadline: Instant,
    /// Only these accounts (all when empty).
    pub only: &'a [i64],
    /// The accounts this run holds: a message is claimed only by the
    /// holder of its account (SPEC §13).
    pub leases: &'a Leases,
    /// `claimed_until` of this run's claims (when it expects to be done).
    pub claim_until: i64,
}

impl Drain<'_> {
    fn io_timeout(&self) -> Duration {
        Duration::from_secs(self.config.io_timeout)
    }

    fn serves(&self, acntid: i64) -> bool {
        self.only.is_empty() || self.only.contains(&acntid)
    }
}

/// What the drains of a run did with the messages they tried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Messages whose attempt went through (sent to every recipient tried).
    pub sent: usize,
    /// Messages that failed, for good or for now (a refused login counts one).
    pub failed: usize,
}

impl std::ops::AddAssign for Drained {
    fn add_assign(&mut self, other: Drained) {
        self.sent += other.sent;
        self.failed += other.failed;
    }
}

/// Connection failures of one account this run; after two it waits for the
/// next run.
#[derive(Default)]
struct Health {
    failures: HashMap<i64, u32>,
}

impl Health {
    fn usable(&self, acntid: i64) -> bool {
        self.failures.get(&acntid).copied().unwrap_or(0) < 2
    }
    fn failed(&mut self, acntid: i64) {
        let n = self.failures.entry(acntid).or_default();
        *n = n.saturating_add(1);
    }
    fn give_up(&mut self, acntid: i64) {
        self.failures.insert(acntid, u32::MAX);
    }
}

/// Drains the outbox now and every `POLL` until the sync is done (then once
/// more); returns how many messages went out and how many failed.
pub fn drain(at: &Location, d: &Drain<'_>, sync_done: &AtomicBool) -> store::Result<Drained> {
    let mut own: Option<Store> = None;
    let mut health = Health::default();
    let mut no_copies = HashSet::new();
    let mut drained = Drained::default();
    loop {
        let last_round = sync_done.load(Ordering::SeqCst);
        if own.is_some() || has_work(d)? {
            let store = match &mut own {
                Some(store) => store,
                None => own.insert(durable(at)?),
            };
            drained += drain_once(store, d, &mut health)?;
            copy_to_sent(store, d, &mut no_copies);
        }
        if last_round || Instant::now() >= d.deadline {
            break;
        }
        // The run unparks this thread when the sync is done.
        let until = (Instant::now() + POLL).min(d.deadline);
        while !sync_done.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
    }
    Ok(drained)
}

/// The outbox's own connection: its commits wait for the disk (a "sent"
/// mark must never be lost).
fn durable(at: &Location) -> store::Result<Store> {
    let store = Store::connect(at)?;
    store.set_durable()?;
    Ok(store)
}

/// Whether this round of the drain has anything to do. On PostgreSQL the
/// run's lock connection looks, and the outbox opens a connection of its
/// own only for work: an empty outbox costs the server no session. On
/// SQLite a connection costs nothing: always.
fn has_work(d: &Drain<'_>) -> store::Result<bool> {
    match d.leases.with_store(|s| s.outbox_has_work((d.clock)())) {
        Some(found) => found,
        None => match d.leases.lost() {
            Some(why) => Err(store::Error::Lost(why)),
            None => Ok(true),
        },
    }
}

/// Puts back in the queue what a run that stopped (or a host that died)
/// left `sending`: by whoever takes the account next, so it goes out in
/// this same drain.
fn requeue_interrupted(store: &mut Store, d: &Drain<'_>) -> store::Result<()> {
    let mut accounts: Vec<i64> = Vec::new();
    for row in store.outbox_list(Some(OutboxState::Sending))? {
        if d.serves(row.acntid) && !accounts.contains(&row.acntid) {
            accounts.push(row.acntid);
        }
    }
    for acntid in accounts {
        if !d.leases.take(acntid)? {
            continue; // its holder is sending them
        }
        let requeued = store.requeue_sending(acntid);
        d.leases.release(acntid);
        for emoid in requeued? {
            log::warn!(
                "message emoid={emoid} was being sent when a run stopped; it goes out again {}",
                at_account(acntid)
            );
        }
    }
    Ok(())
}

/// Sends every due message once.
fn drain_once(store: &mut Store, d: &Drain<'_>, health: &mut Health) -> store::Result<Drained> {
    requeue_interrupted(store, d)?;
    let mut by_account: Vec<(i64, Vec<OutboxRow>)> = Vec::new();
    for row in store.outbox_due((d.clock)())? {
        if !d.serves(row.acntid) {
            continue;
        }
        match by_account.iter_mut().find(|(a, _)| *a == row.acntid) {
            Some((_, rows)) => rows.push(row),
            None => by_account.push((row.acntid, vec![row])),
        }
    }
    let mut drained = Drained::default();
    for (acntid, rows) in by_account {
        if !health.usable(acntid) {
            continue;
        }
        if !d.leases.take(acntid)? {
            log::debug!(
                "{} queued message(s) are another host's to send {}",
                rows.len(),
                at_account(acntid)
            );
            continue;
        }
        let done = drain_account(store, d, health, acntid, rows);
        d.leases.release(acntid);
        drained += done?;
    }
    Ok(drained)
}

/// The SMTP session of one account during a drain: opened for the first
/// message, reconnected once after a broken connection.
struct Link<'a> {
    account: &'a Account,
    session: Option<smtp::Session>,
    /// Why no session can be had in this drain (its messages get a
    /// temporary failure).
    down: Option<String>,
}

/// A login that cannot work: the account's messages stay queued, untouched.
enum Stop {
    /// The server refused the login: the account's back-off moves on.
    Refused(String),
    /// The server limits connections (421): the next run tries again.
    Unavailable(String),
    /// No token: the endpoint failed, or the account needs consent.
    Token(crate::auth::Error),
}

impl Link<'_> {
    /// Opens the session when there is none yet (and no reason why not).
    fn ensure(&mut self, d: &Drain<'_>, health: &mut Health) -> Result<(), Stop> {
        if self.session.is_some() || self.down.is_some() {
            return Ok(());
        }
        match smtp::connect(self.account, d.tokens, d.tls, d.io_timeout()) {
            Ok(s) => self.session = Some(s),
            Err(e @ smtp::Error::Auth { .. }) => return Err(Stop::Refused(chain(&e))),
            Err(e @ smtp::Error::Unavailable { .. }) => return Err(Stop::Unavailable(chain(&e))),
            Err(smtp::Error::Token(e)) => return Err(Stop::Token(e)),
            Err(e) => {
                health.failed(self.account.acntid);
                self.down = Some(chain(&e));
            }
        }
        Ok(())
    }

    /// Sends to `pending` on the session [`Link::ensure`] opened.
    fn send(
        &mut self,
        d: &Drain<'_>,
        health: &mut Health,
        prepared: &Prepared,
        pending: &[String],
    ) -> smtp::Attempt {
        let acntid = self.account.acntid;
        let Some(session) = self.session.take() else {
            let why = self.down.clone().unwrap_or_default();
            return smtp::Attempt {
                rcpts: pending
                    .iter()
                    .map(|r| (r.clone(), Delivery::Temporary(why.clone())))
                    .collect(),
                broken: false,
            };
        };
        // On a helper thread: a server trickling its replies must not hold
        // the run (the session comes back unless given up).
        let (back, attempt) =
            session.send_within(&prepared.mail_from, pending, &prepared.wire, d.io_timeout());
        let given_up = back.is_none();
        self.session = back;
        if attempt.broken {
            self.session = None;
            if given_up {
                // A server this slow would be as slow on a new connection:
                // no reconnect for this account in this run.
                health.give_up(acntid);
                self.down = Some("the SMTP server answers too slowly".into());
            } else {
                health.failed(acntid);
                self.down = (!health.usable(acntid))
                    .then(|| "the SMTP server stopped answering".to_string());
            }
        }
        attempt
    }
}

/// Sends an account's due messages.
fn drain_account(
    store: &mut Store,
    d: &Drain<'_>,
    health: &mut Health,
    acntid: i64,
    rows: Vec<OutboxRow>,
) -> store::Result<Drained> {
    let account = store.account(acntid)?.filter(|a| a.active);
    let mut drained = Drained::default();
    let Some(account) = account else {
        for row in rows {
            let why = format!("account {acntid} does not exist or is inactive");
            store.outbox_reject(row.emoid, &why, (d.clock)())?;
            log::error!(target: THREADING, "message emoid={} failed: {why} {}", row.emoid, at_account(acntid));
            drained.failed += 1;
        }
        return Ok(drained);
    };
    if let Some(why) = crate::auth::hold(&account, (d.clock)()) {
        // Queued as they are, no attempt counted.
        log::debug!(
            "{} queued message(s) wait: {why} {}",
            rows.len(),
            at_account(acntid)
        );
        health.give_up(acntid);
        return Ok(drained);
    }
    let mut link = Link {
        account: &account,
        session: None,
        down: None,
    };
    for row in rows {
        if Instant::now() >= d.deadline {
            break;
        }
        let now = (d.clock)();
        let Some(prepared) = prepare(store, &row, &account, now)? else {
            drained.failed += 1;
            continue;
        };
        // The login first: one that cannot work leaves every message of
        // the account queued as it is, with no attempt counted.
        if let Err(stop) = link.ensure(d, health) {
            health.give_up(acntid);
            drained.failed += stopped(store, d, &account, stop)?;
            return Ok(drained);
        }
        let claim = Claim {
            now,
            by: d.leases.owner().to_string(),
            until: d.claim_until,
        };
        let Some(rcpts) = store.outbox_claim(
            row.emoid,
            &prepared.mail_from,
            &prepared.rcpts,
            &prepared.message_id,
            &claim,
        )?
        else {
            continue; // cancelled or taken meanwhile
        };
        let pending: Vec<String> = rcpts
            .iter()
            .filter(|(_, s, _)| *s == RcptState::Pending)
            .map(|(a, _, _)| a.clone())
            .collect();
        let attempt = if pending.is_empty() {
            smtp::Attempt::default()
        } else {
            link.send(d, health, &prepared, &pending)
        };
        crate::failpoint::hit("smtp-accepted");
        let ok = record(store, &row, &rcpts, &attempt, d.config, (d.clock)())?;
        crate::failpoint::hit("sent-recorded");
        if ok {
            drained.sent += 1;
        } else {
            drained.failed += 1;
        }
    }
    if let Some(s) = link.session {
        s.quit();
    }
    Ok(drained)
}

/// Records why an account's outbox stopped; returns the failed jobs it
/// counts (a refused login or a failed token: one).
fn stopped(
    store: &mut Store,
    d: &Drain<'_>,
    account: &Account,
    stop: Stop,
) -> store::Result<usize> {
    let (acntid, now) = (account.acntid, (d.clock)());
    let at = at_account(acntid);
    // Each waiting message says why (its attempts and due time unchanged).
    let why = match &stop {
        Stop::Refused(w) | Stop::Unavailable(w) => w.clone(),
        Stop::Token(e) => e.to_string(),
    };
    store.outbox_waits(acntid, &format!("not sent yet: {why}"))?;
    match stop {
        Stop::Refused(why) => {
            let (min, max) = (d.config.login_retry_min, d.config.login_retry_max);
            let delay = |n| crate::auth::login_retry_delay(n, min, max);
            let (failures, retry_at) = store.login_refused(acntid, &why, now, &delay)?;
            log::error!(target: THREADING, "outbox: {why}; login refused {failures} time(s) in a row, no attempt before {} s from now {at}", retry_at - now);
            Ok(1)
        }
        Stop::Unavailable(why) => {
            log::warn!("outbox: {why}; its messages wait for the next run {at}");
            Ok(0)
        }
        Stop::Token(e) => {
            if let crate::auth::Error::Failed(why) = &e {
                store.set_account_error(acntid, Some(why), now)?;
            }
            log::error!(target: THREADING, "outbox: {e}; its messages wait {at}");
            Ok(1)
        }
    }
}

/// A message ready to go: envelope, Message-ID and wire bytes.
struct Prepared {
    mail_from: String,
    rcpts: Vec<String>,
    message_id: String,
    wire: Vec<u8>,
}

/// Checks a message as `outbox add` does (the web app may have inserted it
/// directly) and works out its envelope (the claim stores what the row
/// lacks); a bad one is failed with the reason.
fn prepare(
    store: &mut Store,
    row: &OutboxRow,
    account: &Account,
    now: i64,
) -> store::Result<Option<Prepared>> {
    match envelope(store, row, account, now)? {
        Ok(prepared) => Ok(Some(prepared)),
        Err(why) => {
            log::error!(target: THREADING, "message emoid={} refused: {why} {}", row.emoid, at_account(row.acntid));
            store.outbox_reject(row.emoid, &why.to_string(), now)?;
            Ok(None)
        }
    }
}

/// The message's envelope and wire bytes, or why it cannot be sent.
fn envelope(
    store: &Store,
    row: &OutboxRow,
    account: &Account,
    now: i64,
) -> store::Result<Result<Prepared, message::Refused>> {
    let Some(raw) = store.outbox_raw(row.emoid)? else {
        return Ok(Err("the message is empty".into()));
    };
    let env = match message::check(&raw, &account.email) {
        Ok(env) => env,
        Err(why) => return Ok(Err(why)),
    };
    let mail_from = row
        .mail_from
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(env.mail_from.clone());
    if !message::valid_address(&mail_from) {
        return Ok(Err(
            format!("mail_from '{mail_from}' is not an address").into()
        ));
    }
    let rcpts: Vec<String> = match row.rcpt_to.as_deref().filter(|r| !r.trim().is_empty()) {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => env.rcpt_to.clone(),
    };
    if let Some(bad) = rcpts.iter().find(|r| !message::valid_address(r)) {
        return Ok(Err(format!("rcpt_to '{bad}' is not an address").into()));
    }
    if rcpts.is_empty() {
        return Ok(Err("no recipient".into()));
    }
    let created_at = row.created_at.unwrap_or(now);
    let message_id = env
        .message_id
        .clone()
        .or(row.message_id.clone())
        .unwrap_or_else(|| message::made_message_id(row.emoid, created_at, &mail_from));
    let add_id = env.message_id.is_none().then_some(message_id.as_str());
    let wire = message::wire(&raw, add_id, true);
    Ok(Ok(Prepared {
        mail_from,
        rcpts,
        message_id,
        wire,
    }))
}

/// Records an attempt and logs its one line; returns false when something
/// failed in this attempt (a recipient rejected, for good or for now).
fn record(
    store: &mut Store,
    row: &OutboxRow,
    before: &[Rcpt],
    attempt: &smtp::Attempt,
    config: &Config,
    now: i64,
) -> store::Result<bool> {
    let attempted = !attempt.rcpts.is_empty();
    let retry = policy::Retry {
        min: config.outbox_retry_min,
        max: config.outbox_retry_max,
        lifetime: config.outbox_lifetime,
    };
    let created_at = row.created_at.unwrap_or(now);
    let attempts = row.attempts + attempted as i64;
    let o = policy::outcome(before, &attempt.rcpts, attempts, created_at, now, retry);
    let rec = AttemptRecord {
        rcpts: o.changes,
        state: o.after.state,
        next_attempt_at: o.after.next_attempt_at,
        last_error: o.last_error.clone(),
        attempted,
    };
    store.outbox_record(row.emoid, &rec, now)?;
    let delivered = attempt
        .rcpts
        .iter()
        .filter(|(_, d)| *d == Delivery::Accepted)
        .count();
    let (emoid, at) = (row.emoid, at_account(row.acntid));
    let error = o.last_error.unwrap_or_default();
    match o.after.state {
        OutboxState::Sent if error.is_empty() => {
            log::info!("sent message emoid={emoid} to {delivered} recipients {at}");
        }
        OutboxState::Sent => {
            log::info!("sent message emoid={emoid} to {delivered} recipients; {error} {at}");
        }
        OutboxState::Queued => {
            let next = o.after.next_attempt_at.unwrap_or(now);
            log::info!(
                "message emoid={emoid} not sent yet ({error}), {delivered} delivered now; next attempt in {} s {at}",
                next - now
            );
        }
        _ => {
            log::error!(target: THREADING, "message emoid={emoid} failed: {error} {at}");
            return Ok(false);
        }
    }
    Ok(!o.failed)
}

/// APPENDs the copies of accepted messages to their accounts' Sent folders.
/// A failure leaves the copy pending (with the reason in `sent_copy_error`)
/// for a later run; the message is never sent again for it. An account whose
/// IMAP server failed is not tried again in this run (`skip`): a wrong
/// password must not cost a failed login at every poll.
fn copy_to_sent(store: &mut Store, d: &Drain<'_>, skip: &mut HashSet<i64>) {
    let accounts = match store.accounts_with_sent_copies() {
        Ok(a) => a,
        Err(e) => {
            log::warn!("Sent copies: {}", chain(&e));
            return;
        }
    };
    let now = (d.clock)();
    for acntid in accounts {
        if Instant::now() >= d.deadline {
            return;
        }
        if skip.contains(&acntid) || !d.serves(acntid) {
            continue;
        }
        // Only the account's holder stores its copies (SPEC §13).
        match d.leases.take(acntid) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("Sent copies: {}", chain(&e));
                return;
            }
        }
        let copied = copy_account(store, d, acntid, now);
        d.leases.release(acntid);
        if let Err(e) = copied {
            let why = chain(&e);
            skip.insert(acntid);
            log::warn!(
                "Sent copies wait for a later run: {why} {}",
                at_account(acntid)
            );
            let recorded = store.sent_copies_pending(acntid).and_then(|rows| {
                rows.iter()
                    .try_for_each(|r| copy_failed(store, r, &why, d.config, now))
            });
            if let Err(e) = recorded {
                log::warn!("Sent copies: {} {}", chain(&e), at_account(acntid));
            }
        }
    }
}

/// Records a failed Sent copy: still pending for a later run, until
/// `EMAIL_OUTBOX_LIFETIME` after the sending; then failed (a copy the IMAP
/// server refuses for days, say for its size, is not uploaded for ever).
fn copy_failed(
    store: &mut Store,
    row: &OutboxRow,
    why: &str,
    config: &Config,
    now: i64,
) -> store::Result<()> {
    let expired = row
        .sent_at
        .is_some_and(|t| now - t >= config.outbox_lifetime);
    if expired {
        log::error!(
            target: THREADING,
            "message emoid={}: no copy in Sent after {} s (EMAIL_OUTBOX_LIFETIME): {why} {}",
            row.emoid,
            config.outbox_lifetime,
            at_account(row.acntid)
        );
        store.set_sent_copy(row.emoid, SentCopy::Failed, Some(why), now)
    } else {
        store.set_sent_copy(row.emoid, SentCopy::Pending, Some(why), now)
    }
}

/// Why the Sent copies of an account wait for a later run.
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Imap(#[from] crate::imap::Error),
}

/// Stores the account's pending Sent copies over one IMAP session. An
/// error that ends the session (or stops it from starting) is returned,
/// for the copies still pending.
fn copy_account(store: &mut Store, d: &Drain<'_>, acntid: i64, now: i64) -> Result<(), CopyError> {
    let Some(account) = store.account(acntid)? else {
        return Ok(store.no_sent_copies(acntid, "the account no longer exists", now)?);
    };
    if account
        .imap_host
        .as_deref()
        .is_none_or(|h| h.trim().is_empty())
    {
        return Ok(store.no_sent_copies(acntid, "the account has no IMAP server", now)?);
    }
    let rows = store.sent_copies_pending(acntid)?;
    if crate::auth::hold(&account, now).is_some() {
        return Ok(());
    }
    let (mut client, _) = crate::imap::login(&account, d.tokens, d.tls, d.io_timeout())?;
    let folder = sent::sent_folder(&mut client, store, acntid)?;
    for r in rows {
        let Some(raw) = store.outbox_raw(r.emoid)? else {
            continue;
        };
        let own_id = message::check(&raw, &account.email)
            .ok()
            .and_then(|e| e.message_id);
        let Some(id) = own_id.clone().or(r.message_id.clone()) else {
            store.set_sent_copy(r.emoid, SentCopy::None, Some("no Message-ID"), now)?;
            continue;
        };
        let wire = message::wire(&raw, own_id.is_none().then_some(id.as_str()), false);
        match sent::store_copy(&mut client, &folder, &id, &wire) {
            Ok(appended) => {
                crate::failpoint::hit("appended");
                store.set_sent_copy(r.emoid, SentCopy::Done, None, now)?;
                log::debug!(
                    "message emoid={}: {} in Sent {}",
                    r.emoid,
                    if appended {
                        "copy stored"
                    } else {
                        "the server already had a copy"
                    },
                    at_account(acntid)
                );
            }
            Err(e) => {
                copy_failed(store, &r, &chain(&e), d.config, now)?;
                if e.breaks_session() {
                    return Err(e.into());
                }
            }
        }
    }
    client.logout();
    Ok(())
}
