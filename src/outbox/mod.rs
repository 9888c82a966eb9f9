//! Outgoing mail (SPEC §8): queueing, sending over SMTP with Postfix's retry
//! policy, and the copy in the Sent folder.
//!
//! A message is claimed (`sending`) before it goes out, and the outcome of
//! each recipient is recorded in one durable transaction right after the
//! server's reply, before anything else happens: a killed run can at worst
//! resend the one message in flight (the next run re-queues it with a
//! warning). During a run the outbox is polled every few seconds while the
//! sync goes on, so a long first sync never holds outgoing mail back.

pub mod message;
pub mod policy;
pub mod sent;
pub mod smtp;

use crate::cli::OutboxCmd;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::logging::{at_account, THREADING};
use crate::store::{Account, AttemptRecord, OutboxRow, RcptState, Store};
use serde_json::json;
use smtp::Delivery;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the outbox is polled while the sync runs: a message queued
/// during a long sync waits at most this long (plus the sending before it).
/// A poll is one indexed query.
const POLL: Duration = Duration::from_secs(5);

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
/// more); returns the number of messages that failed (for good or for now).
/// `clock` gives the current time: a run can last an hour, and retry times
/// are wall-clock times.
pub fn drain_during_run(
    layout: &Layout,
    config: &Config,
    clock: &(dyn Fn() -> i64 + Sync),
    deadline: Instant,
    sync_done: &AtomicBool,
    only: &[i64],
) -> Result<usize> {
    let mut store = Store::open_unmigrated(&layout.db_path())?;
    store.set_durable()?;
    let interrupted = store.outbox_list(Some("sending"))?;
    for row in &interrupted {
        log::warn!(
            "message emoid={} was being sent when a run stopped; it goes out again {}",
            row.emoid,
            at_account(row.acntid)
        );
    }
    if !interrupted.is_empty() {
        store.requeue_sending()?;
    }
    let mut health = Health::default();
    let mut no_copies = HashSet::new();
    let mut failed = 0;
    loop {
        let last_round = sync_done.load(Ordering::SeqCst);
        failed += drain_once(&mut store, config, clock, deadline, &mut health, only)?;
        copy_to_sent(&mut store, config, clock(), deadline, &mut no_copies, only);
        if last_round || Instant::now() >= deadline {
            break;
        }
        // The run unparks this thread when the sync is done.
        let until = (Instant::now() + POLL).min(deadline);
        while !sync_done.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout(until - now);
        }
    }
    Ok(failed)
}

/// Sends every due message once; returns how many failed.
fn drain_once(
    store: &mut Store,
    config: &Config,
    clock: &dyn Fn() -> i64,
    deadline: Instant,
    health: &mut Health,
    only: &[i64],
) -> Result<usize> {
    let mut due = store.outbox_due(clock())?;
    due.retain(|r| only.is_empty() || only.contains(&r.acntid));
    let mut by_account: Vec<(i64, Vec<OutboxRow>)> = Vec::new();
    for row in due {
        match by_account.iter_mut().find(|(a, _)| *a == row.acntid) {
            Some((_, rows)) => rows.push(row),
            None => by_account.push((row.acntid, vec![row])),
        }
    }
    let mut failed = 0;
    for (acntid, rows) in by_account {
        if !health.usable(acntid) {
            continue;
        }
        let account = store.account(acntid)?;
        let mut session: Option<smtp::Session> = None;
        let mut session_error: Option<String> = None;
        for row in rows {
            if Instant::now() >= deadline {
                return Ok(failed);
            }
            let now = clock();
            let Some(account) = account.as_ref().filter(|a| a.active) else {
                let why = format!("account {acntid} does not exist or is inactive");
                store.outbox_reject(row.emoid, &why, now)?;
                log::error!(target: THREADING, "message emoid={} failed: {why} {}", row.emoid, at_account(acntid));
                failed += 1;
                continue;
            };
            let Some(prepared) = prepare(store, &row, account, now)? else {
                failed += 1;
                continue;
            };
            let Some(rcpts) = store.outbox_claim(
                row.emoid,
                &prepared.mail_from,
                &prepared.rcpts,
                &prepared.message_id,
                now,
            )?
            else {
                continue; // cancelled or taken meanwhile
            };
            let pending: Vec<String> = rcpts
                .iter()
                .filter(|(_, s, _)| *s == RcptState::Pending)
                .map(|(a, _, _)| a.clone())
                .collect();
            if session.is_none() && session_error.is_none() && !pending.is_empty() {
                match smtp::connect(
                    account,
                    config.tls_ca_file.as_deref(),
                    Duration::from_secs(config.io_timeout),
                ) {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        health.failed(acntid);
                        session_error = Some(e);
                    }
                }
            }
            let mut given_up = false;
            let attempt = match (session.take(), &session_error) {
                (s, _) if pending.is_empty() => {
                    session = s;
                    smtp::Attempt {
                        rcpts: vec![],
                        broken: false,
                    }
                }
                // On a helper thread: a server trickling its replies must
                // not hold the run (the session comes back unless given up).
                (Some(s), _) => {
                    let timeout = Duration::from_secs(config.io_timeout);
                    let (back, attempt) =
                        s.send_within(&prepared.mail_from, &pending, &prepared.wire, timeout);
                    given_up = back.is_none();
                    session = back;
                    attempt
                }
                (None, e) => smtp::Attempt {
                    rcpts: pending
                        .iter()
                        .map(|r| {
                            (
                                r.clone(),
                                Delivery::Temporary(e.clone().unwrap_or_default()),
                            )
                        })
                        .collect(),
                    broken: false,
                },
            };
            if attempt.broken {
                session = None;
                if given_up {
                    // A server this slow would be as slow on a new
                    // connection: no reconnect for this account in this run.
                    health.give_up(acntid);
                    session_error = Some("the SMTP server answers too slowly".into());
                } else {
                    health.failed(acntid);
                    if health.usable(acntid) {
                        session_error = None; // one reconnect
                    } else {
                        session_error = Some("the SMTP server stopped answering".into());
                    }
                }
            }
            crate::failpoint::hit("smtp-accepted");
            let now = clock();
            let ok = record(store, &row, &rcpts, &attempt, config, now)?;
            crate::failpoint::hit("sent-recorded");
            if !ok {
                failed += 1;
            }
        }
        if let Some(s) = session {
            s.quit();
        }
    }
    Ok(failed)
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
) -> Result<Option<Prepared>> {
    let reject = |store: &mut Store, why: String| -> Result<Option<Prepared>> {
        log::error!(target: THREADING, "message emoid={} refused: {why} {}", row.emoid, at_account(row.acntid));
        store.outbox_reject(row.emoid, &why, now)?;
        Ok(None)
    };
    let Some(raw) = store.outbox_raw(row.emoid)? else {
        return reject(store, "the message is empty".into());
    };
    let env = match message::check(&raw, &account.email) {
        Ok(env) => env,
        Err(why) => return reject(store, why),
    };
    let mail_from = row
        .mail_from
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or(env.mail_from.clone());
    if !message::valid_address(&mail_from) {
        return reject(store, format!("mail_from '{mail_from}' is not an address"));
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
        return reject(store, format!("rcpt_to '{bad}' is not an address"));
    }
    if rcpts.is_empty() {
        return reject(store, "no recipient".into());
    }
    let created_at = row.created_at.unwrap_or(now);
    let message_id = env
        .message_id
        .clone()
        .or(row.message_id.clone())
        .unwrap_or_else(|| message::made_message_id(row.emoid, created_at, &mail_from));
    let add_id = env.message_id.is_none().then_some(message_id.as_str());
    let wire = message::wire(&raw, add_id, true);
    Ok(Some(Prepared {
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
    before: &[(String, RcptState, Option<String>)],
    attempt: &smtp::Attempt,
    config: &Config,
    now: i64,
) -> Result<bool> {
    let outcome = |addr: &str| {
        attempt
            .rcpts
            .iter()
            .find(|(a, _)| a == addr)
            .map(|(_, d)| d)
    };
    // Each recipient after this attempt: (address, state, reply).
    let mut after: Vec<(String, RcptState, Option<String>)> = Vec::new();
    let mut changes: Vec<(String, RcptState, Option<String>)> = Vec::new();
    let mut rejected_now = false;
    let mut temporary: Vec<(String, String)> = Vec::new();
    for (addr, state, reply) in before {
        let (state, reply) = match outcome(addr) {
            Some(Delivery::Accepted) => (RcptState::Sent, None),
            Some(Delivery::Permanent(r)) => {
                rejected_now = true;
                (RcptState::Failed, Some(r.clone()))
            }
            Some(Delivery::Temporary(r)) => {
                temporary.push((addr.clone(), r.clone()));
                (RcptState::Pending, Some(r.clone()))
            }
            None => {
                after.push((addr.clone(), *state, reply.clone()));
                continue;
            }
        };
        changes.push((addr.clone(), state, reply.clone()));
        after.push((addr.clone(), state, reply));
    }
    let attempted = !attempt.rcpts.is_empty();
    let attempts = row.attempts + attempted as i64;
    let created_at = row.created_at.unwrap_or(now);
    let states: Vec<RcptState> = after.iter().map(|(_, s, _)| *s).collect();
    let decided = policy::after_attempt(
        &states,
        attempts,
        created_at,
        now,
        config.outbox_retry_min,
        config.outbox_retry_max,
        config.outbox_lifetime,
    );
    if decided.expire_pending {
        let why = format!(
            "still failing after {} s (EMAIL_OUTBOX_LIFETIME {}): {}",
            now - created_at,
            config.outbox_lifetime,
            temporary
                .last()
                .map(|(_, r)| r.as_str())
                .or_else(|| after.iter().rev().find_map(|(_, s, r)| {
                    (*s == RcptState::Pending).then_some(r.as_deref()).flatten()
                }))
                .unwrap_or("no reply")
        );
        for (addr, state, reply) in after.iter_mut() {
            if *state == RcptState::Pending {
                *state = RcptState::Failed;
                *reply = Some(why.clone());
                changes.retain(|(a, _, _)| a != addr);
                changes.push((addr.clone(), RcptState::Failed, Some(why.clone())));
            }
        }
        rejected_now = true;
        temporary.clear();
    }
    let last_error = last_error(&after, &temporary);
    let rec = AttemptRecord {
        rcpts: changes,
        state: decided.state,
        next_attempt_at: decided.next_attempt_at,
        last_error: last_error.clone(),
        attempted,
    };
    store.outbox_record(row.emoid, &rec, now)?;
    let delivered = attempt
        .rcpts
        .iter()
        .filter(|(_, d)| *d == Delivery::Accepted)
        .count();
    let at = at_account(row.acntid);
    let ok = !rejected_now && temporary.is_empty();
    match decided.state {
        "sent" if last_error.is_none() => {
            log::info!(
                "sent message emoid={} to {delivered} recipients {at}",
                row.emoid
            );
        }
        "sent" => {
            log::info!(
                "sent message emoid={} to {delivered} recipients; {} {at}",
                row.emoid,
                last_error.unwrap_or_default()
            );
        }
        "queued" => {
            let next = decided.next_attempt_at.unwrap_or(now);
            log::info!(
                "message emoid={} not sent yet ({}), {delivered} delivered now; next attempt in {} s {at}",
                row.emoid,
                last_error.unwrap_or_default(),
                next - now
            );
        }
        _ => {
            log::error!(
                target: THREADING,
                "message emoid={} failed: {} {at}",
                row.emoid,
                last_error.unwrap_or_default()
            );
            return Ok(false);
        }
    }
    Ok(ok)
}

/// `last_error` of a message: every recipient rejected for good (so far,
/// not only in this attempt) with the server's reply, then this attempt's
/// temporary failures (the reply once when several recipients got the same,
/// as when the server could not be reached). None when nothing went wrong.
fn last_error(
    rcpts: &[(String, RcptState, Option<String>)],
    temporary: &[(String, String)],
) -> Option<String> {
    let rejected: Vec<String> = rcpts
        .iter()
        .filter(|(_, s, _)| *s == RcptState::Failed)
        .map(|(a, _, r)| format!("{a}: {}", r.as_deref().unwrap_or("rejected")))
        .collect();
    let mut parts = Vec::new();
    if !rejected.is_empty() {
        parts.push(format!("rejected: {}", rejected.join("; ")));
    }
    if let Some((_, first)) = temporary.first() {
        if temporary.len() > 1 && temporary.iter().all(|(_, r)| r == first) {
            parts.push(format!(
                "temporary: {first} ({} recipients)",
                temporary.len()
            ));
        } else {
            let each: Vec<String> = temporary.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            parts.push(format!("temporary: {}", each.join("; ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" | "))
}

/// APPENDs the copies of accepted messages to their accounts' Sent folders.
/// A failure leaves the copy pending (with the reason in `sent_copy_error`)
/// for a later run; the message is never sent again for it. An account whose
/// IMAP server failed is not tried again in this run (`skip`): a wrong
/// password must not cost a failed login at every poll.
fn copy_to_sent(
    store: &mut Store,
    config: &Config,
    now: i64,
    deadline: Instant,
    skip: &mut HashSet<i64>,
    only: &[i64],
) {
    let accounts = match store.accounts_with_sent_copies() {
        Ok(a) => a,
        Err(e) => {
            log::warn!("Sent copies: {e}");
            return;
        }
    };
    for acntid in accounts {
        if Instant::now() >= deadline {
            return;
        }
        if skip.contains(&acntid) || !(only.is_empty() || only.contains(&acntid)) {
            continue;
        }
        if let Err(e) = copy_account(store, config, acntid, now) {
            skip.insert(acntid);
            log::warn!(
                "Sent copies wait for a later run: {e} {}",
                at_account(acntid)
            );
            let why = e.to_string();
            let recorded = store.sent_copies_pending(acntid).and_then(|rows| {
                rows.iter()
                    .try_for_each(|r| copy_failed(store, r, &why, config, now))
            });
            if let Err(e) = recorded {
                log::warn!("Sent copies: {e} {}", at_account(acntid));
            }
        }
    }
}

/// Records a failed Sent copy: still `pending` for a later run, until
/// `EMAIL_OUTBOX_LIFETIME` after the sending; then `failed` (a copy the IMAP
/// server refuses for days, say for its size, is not uploaded for ever).
fn copy_failed(
    store: &mut Store,
    row: &OutboxRow,
    why: &str,
    config: &Config,
    now: i64,
) -> Result<()> {
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
        store.set_sent_copy(row.emoid, "failed", Some(why), now)
    } else {
        store.set_sent_copy(row.emoid, "pending", Some(why), now)
    }
}

fn copy_account(store: &mut Store, config: &Config, acntid: i64, now: i64) -> Result<()> {
    let Some(account) = store.account(acntid)? else {
        return store.no_sent_copies(acntid, "the account no longer exists", now);
    };
    if account
        .imap_host
        .as_deref()
        .is_none_or(|h| h.trim().is_empty())
    {
        return store.no_sent_copies(acntid, "the account has no IMAP server", now);
    }
    let rows = store.sent_copies_pending(acntid)?;
    let tls = crate::net::Tls::new(config.tls_ca_file.as_deref()).map_err(Error::Other)?;
    let (mut client, _) =
        crate::sync::discover::connect(&account, &tls, Duration::from_secs(config.io_timeout))
            .map_err(|e| Error::Other(e.to_string()))?;
    let folder =
        sent::sent_folder(&mut client, store, acntid).map_err(|e| Error::Other(e.to_string()))?;
    for r in rows {
        let Some(raw) = store.outbox_raw(r.emoid)? else {
            continue;
        };
        let own_id = message::check(&raw, &account.email)
            .ok()
            .and_then(|e| e.message_id);
        let Some(id) = own_id.clone().or(r.message_id.clone()) else {
            store.set_sent_copy(r.emoid, "none", Some("no Message-ID"), now)?;
            continue;
        };
        let wire = message::wire(&raw, own_id.is_none().then_some(id.as_str()), false);
        match sent::store_copy(&mut client, &folder, &id, &wire) {
            Ok(appended) => {
                crate::failpoint::hit("appended");
                store.set_sent_copy(r.emoid, "done", None, now)?;
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
                copy_failed(store, &r, &e.to_string(), config, now)?;
                if e.breaks_session() {
                    return Err(Error::Other(e.to_string()));
                }
            }
        }
    }
    client.logout();
    Ok(())
}

/// `engine outbox ...`
pub fn command(layout: &Layout, cmd: OutboxCmd, now: i64) -> Result<i32> {
    layout.ensure_dirs()?;
    let mut store = Store::open(&layout.db_path())?;
    match cmd {
        OutboxCmd::Add { account, file } => {
            let raw = if file == "-" {
                let mut buf = Vec::new();
                std::io::stdin().read_to_end(&mut buf).map_err(|e| {
                    Error::Input(format!("cannot read the message from stdin: {e}"))
                })?;
                buf
            } else {
                std::fs::read(&file)
                    .map_err(|e| Error::Input(format!("cannot read {file}: {e}")))?
            };
            let acct = store
                .account(account)?
                .ok_or_else(|| Error::Input(format!("no account {account}")))?;
            let env = message::check(&raw, &acct.email)
                .map_err(|why| Error::Input(format!("message refused: {why}")))?;
            let emoid = store.queue_message(
                account,
                &raw,
                &env.mail_from,
                &env.rcpt_to,
                env.message_id.as_deref(),
                now,
            )?;
            println!("{emoid}");
            Ok(exit::OK)
        }
        OutboxCmd::List {
            state,
            json: as_json,
        } => {
            if let Some(s) = &state {
                if !["queued", "sending", "sent", "failed", "cancelled"].contains(&s.as_str()) {
                    return Err(Error::Usage(format!(
                        "--state must be queued, sending, sent, failed or cancelled, got '{s}'"
                    )));
                }
            }
            let rows = store.outbox_list(state.as_deref())?;
            if as_json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({
                            "emoid": r.emoid, "acntid": r.acntid, "mail_from": r.mail_from,
                            "rcpt_to": r.rcpt_to, "state": r.state, "attempts": r.attempts,
                            "next_attempt_at": r.next_attempt_at, "last_error": r.last_error,
                            "created_at": r.created_at, "sent_at": r.sent_at,
                            "message_id": r.message_id, "sent_copy": r.sent_copy,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for r in &rows {
                    println!(
                        "{:>6} {:>5} {:<9} attempts {:<3} {} -> {}{}",
                        r.emoid,
                        r.acntid,
                        r.state,
                        r.attempts,
                        r.mail_from.as_deref().unwrap_or("-"),
                        r.rcpt_to.as_deref().unwrap_or("-"),
                        r.last_error
                            .as_deref()
                            .map(|e| format!("\n       {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        OutboxCmd::Retry { emoid } => {
            if !store.outbox_retry(emoid, now)? {
                return Err(Error::Input(format!(
                    "message {emoid} is not failed or queued"
                )));
            }
            Ok(exit::OK)
        }
        OutboxCmd::Cancel { emoid } => {
            if !store.outbox_cancel(emoid)? {
                return Err(Error::Input(format!("message {emoid} is not queued")));
            }
            Ok(exit::OK)
        }
    }
}

/// `engine account test`: log in to IMAP and SMTP and report capabilities.
pub fn test_account(a: &Account, config: &Config) -> Result<i32> {
    let timeout = Duration::from_secs(config.io_timeout);
    let mut ok = true;
    let tls = crate::net::Tls::new(config.tls_ca_file.as_deref()).map_err(Error::Other)?;
    match crate::sync::discover::connect(a, &tls, timeout) {
        Ok((client, _)) => {
            println!(
                "imap: ok ({}), capabilities: {}",
                client.peer(),
                client.caps().sorted().join(" ")
            );
            client.logout();
        }
        Err(e) => {
            ok = false;
            println!("imap: FAILED: {e}");
        }
    }
    if a.smtp_host.as_deref().is_some_and(|h| !h.trim().is_empty()) {
        match smtp::connect(a, config.tls_ca_file.as_deref(), timeout) {
            Ok(s) => {
                println!("smtp: ok ({}), {}", s.peer(), s.describe());
                s.quit();
            }
            Err(e) => {
                ok = false;
                println!("smtp: FAILED: {e}");
            }
        }
    } else {
        println!("smtp: no smtp_host configured");
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(addr: &str, state: RcptState, reply: Option<&str>) -> (String, RcptState, Option<String>) {
        (addr.into(), state, reply.map(str::to_string))
    }

    fn t(addr: &str, reply: &str) -> (String, String) {
        (addr.into(), reply.into())
    }

    #[test]
    fn last_error_table() {
        use RcptState::*;
        let cases: Vec<(&str, Vec<_>, Vec<_>, Option<&str>)> = vec![
            ("all_sent", vec![r("a@x", Sent, None)], vec![], None),
            (
                "earlier_rejection_stays_named",
                vec![
                    r("a@x", Sent, None),
                    r("c@x", Failed, Some("550 no such user")),
                ],
                vec![],
                Some("rejected: c@x: 550 no such user"),
            ),
            (
                "one_temporary_names_its_address",
                vec![r("a@x", Sent, None), r("b@x", Pending, Some("451 busy"))],
                vec![t("b@x", "451 busy")],
                Some("temporary: b@x: 451 busy"),
            ),
            (
                "same_temporary_reply_for_all_once",
                vec![r("a@x", Pending, None), r("b@x", Pending, None)],
                vec![t("a@x", "cannot connect"), t("b@x", "cannot connect")],
                Some("temporary: cannot connect (2 recipients)"),
            ),
            (
                "different_temporary_replies_each",
                vec![r("a@x", Pending, None), r("b@x", Pending, None)],
                vec![t("a@x", "451 a"), t("b@x", "452 b")],
                Some("temporary: a@x: 451 a; b@x: 452 b"),
            ),
            (
                "rejected_and_temporary",
                vec![r("b@x", Pending, None), r("c@x", Failed, Some("550 no"))],
                vec![t("b@x", "451 busy")],
                Some("rejected: c@x: 550 no | temporary: b@x: 451 busy"),
            ),
        ];
        for (name, rcpts, temporary, want) in cases {
            assert_eq!(last_error(&rcpts, &temporary).as_deref(), want, "{name}");
        }
    }
}
