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
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the outbox is polled while the sync runs.
const POLL: Duration = Duration::from_secs(10);

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
        *self.failures.entry(acntid).or_default() += 1;
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
) -> Result<usize> {
    let mut store = Store::open_unmigrated(&layout.db_path())?;
    store.set_durable()?;
    for row in store.outbox_list(Some("sending"))? {
        log::warn!(
            "message emoid={} was being sent when a run stopped; it goes out again {}",
            row.emoid,
            at_account(row.acntid)
        );
    }
    store.requeue_sending()?;
    let mut health = Health::default();
    let mut failed = 0;
    loop {
        let last_round = sync_done.load(Ordering::SeqCst);
        failed += drain_once(&mut store, config, clock, deadline, &mut health)?;
        copy_to_sent(&mut store, config, clock(), deadline);
        if last_round || Instant::now() >= deadline {
            break;
        }
        let until = Instant::now() + POLL;
        while Instant::now() < until
            && Instant::now() < deadline
            && !sync_done.load(Ordering::SeqCst)
        {
            std::thread::sleep(Duration::from_millis(100));
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
) -> Result<usize> {
    let due = store.outbox_due(clock())?;
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
            if !store.outbox_claim(row.emoid, now)? {
                continue;
            }
            let pending: Vec<String> = store
                .outbox_rcpts(row.emoid)?
                .into_iter()
                .filter(|(_, s)| *s == RcptState::Pending)
                .map(|(a, _)| a)
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
            let attempt = match (&mut session, &session_error) {
                _ if pending.is_empty() => smtp::Attempt {
                    rcpts: vec![],
                    broken: false,
                },
                (Some(s), _) => s.send(&prepared.mail_from, &pending, &prepared.wire),
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
                health.failed(acntid);
                if health.usable(acntid) {
                    session_error = None; // one reconnect
                } else {
                    session_error = Some("the SMTP server stopped answering".into());
                }
            }
            let now = clock();
            let ok = record(store, &row, &attempt, config, now)?;
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

/// A message ready to go: envelope and wire bytes.
struct Prepared {
    mail_from: String,
    wire: Vec<u8>,
}

/// Checks a message as `outbox add` does (the web app may have inserted it
/// directly) and completes its envelope; a bad one is failed with the reason.
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
    store.set_envelope(row.emoid, &mail_from, &rcpts, Some(&message_id), now)?;
    let add_id = env.message_id.is_none().then_some(message_id.as_str());
    Ok(Some(Prepared {
        mail_from,
        wire: message::wire(&raw, add_id, true),
    }))
}

/// Records an attempt and logs its one line; returns false when the message
/// failed (for good or for now).
fn record(
    store: &mut Store,
    row: &OutboxRow,
    attempt: &smtp::Attempt,
    config: &Config,
    now: i64,
) -> Result<bool> {
    let before = store.outbox_rcpts(row.emoid)?;
    let mut changes: Vec<(String, RcptState, Option<String>)> = Vec::new();
    let mut states: Vec<RcptState> = Vec::new();
    let mut rejected = Vec::new();
    let mut temporary = Vec::new();
    for (addr, state) in &before {
        match attempt.rcpts.iter().find(|(a, _)| a == addr) {
            Some((_, Delivery::Accepted)) => {
                changes.push((addr.clone(), RcptState::Sent, None));
                states.push(RcptState::Sent);
            }
            Some((_, Delivery::Permanent(reply))) => {
                changes.push((addr.clone(), RcptState::Failed, Some(reply.clone())));
                states.push(RcptState::Failed);
                rejected.push(format!("{addr}: {reply}"));
            }
            Some((_, Delivery::Temporary(reply))) => {
                changes.push((addr.clone(), RcptState::Pending, Some(reply.clone())));
                states.push(RcptState::Pending);
                temporary.push(reply.clone());
            }
            None => states.push(*state),
        }
    }
    let attempted = !attempt.rcpts.is_empty();
    let attempts = row.attempts + attempted as i64;
    let created_at = row.created_at.unwrap_or(now);
    let after = policy::after_attempt(
        &states,
        attempts,
        created_at,
        now,
        config.outbox_retry_min,
        config.outbox_retry_max,
        config.outbox_lifetime,
    );
    if after.expire_pending {
        let why = format!(
            "still failing after {} s (EMAIL_OUTBOX_LIFETIME): {}",
            now - created_at,
            temporary.last().cloned().unwrap_or_default()
        );
        for (addr, state) in &before {
            let pending_now = states
                .iter()
                .zip(before.iter())
                .any(|(s, (a, _))| a == addr && *s == RcptState::Pending);
            if pending_now
                || (*state == RcptState::Pending && !changes.iter().any(|(a, _, _)| a == addr))
            {
                changes.retain(|(a, _, _)| a != addr);
                changes.push((addr.clone(), RcptState::Failed, Some(why.clone())));
                rejected.push(format!("{addr}: {why}"));
            }
        }
    }
    let mut errors = Vec::new();
    if !rejected.is_empty() {
        errors.push(format!("rejected: {}", rejected.join("; ")));
    }
    if !temporary.is_empty() && !after.expire_pending {
        errors.push(format!("temporary: {}", temporary.join("; ")));
    }
    let last_error = (!errors.is_empty()).then(|| errors.join(" | "));
    let rec = AttemptRecord {
        rcpts: changes,
        state: after.state,
        next_attempt_at: after.next_attempt_at,
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
    match after.state {
        "sent" if last_error.is_none() => {
            log::info!(
                "sent message emoid={} to {delivered} recipients {at}",
                row.emoid
            );
            Ok(true)
        }
        "sent" => {
            log::info!(
                "sent message emoid={} to {delivered} recipients; {} {at}",
                row.emoid,
                last_error.unwrap_or_default()
            );
            Ok(false)
        }
        "queued" => {
            let next = after.next_attempt_at.unwrap_or(now);
            log::info!(
                "message emoid={} not sent yet ({}), {delivered} delivered now; next attempt in {} s {at}",
                row.emoid,
                last_error.unwrap_or_default(),
                next - now
            );
            Ok(delivered > 0 && temporary.is_empty())
        }
        _ => {
            log::error!(
                target: THREADING,
                "message emoid={} failed: {} {at}",
                row.emoid,
                last_error.unwrap_or_default()
            );
            Ok(false)
        }
    }
}

/// APPENDs the copies of accepted messages to their accounts' Sent folders.
/// A failure leaves the copy pending for a later run; the message is never
/// sent again for it.
fn copy_to_sent(store: &mut Store, config: &Config, now: i64, deadline: Instant) {
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
        if let Err(e) = copy_account(store, config, acntid, now) {
            log::warn!(
                "Sent copies wait for a later run: {e} {}",
                at_account(acntid)
            );
        }
    }
}

fn copy_account(store: &mut Store, config: &Config, acntid: i64, now: i64) -> Result<()> {
    let rows = store.sent_copies_pending(acntid)?;
    let Some(account) = store.account(acntid)? else {
        for r in &rows {
            store.set_sent_copy(r.emoid, "none", Some("the account no longer exists"), now)?;
        }
        return Ok(());
    };
    if account
        .imap_host
        .as_deref()
        .is_none_or(|h| h.trim().is_empty())
    {
        for r in &rows {
            store.set_sent_copy(r.emoid, "none", Some("the account has no IMAP server"), now)?;
        }
        return Ok(());
    }
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
                store.set_sent_copy(r.emoid, "pending", Some(&e.to_string()), now)?;
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
