//! `engine outbox ...`: queue a message, list, retry and cancel.

use super::args::OutboxCmd;
use crate::error::{exit, Error, Result};
use crate::outbox::{self, QueueError};
use crate::store::{OutboxRow, OutboxState, Store};
use serde_json::json;
use std::io::Read;

/// `engine outbox ...`
pub fn command(store: &mut Store, cmd: OutboxCmd, now: i64) -> Result<i32> {
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
            let emoid = outbox::queue(store, account, &raw, now).map_err(|e| match e {
                QueueError::Store(e) => Error::Store(e),
                refused => Error::Input(refused.to_string()),
            })?;
            println!("{emoid}");
            Ok(exit::OK)
        }
        OutboxCmd::List {
            state,
            json: as_json,
        } => {
            let rows = store.outbox_list(state)?;
            let holders = store.holders()?;
            // Who sends it: the run holding its account (SPEC §13), or the
            // one that claimed it when it is `sending`.
            let holder = |r: &OutboxRow| -> Option<String> {
                let sending = r.state == OutboxState::Sending.as_str();
                holders
                    .get(&r.acntid)
                    .cloned()
                    .or_else(|| r.claimed_by.clone().filter(|_| sending))
            };
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
                            "claimed_by": r.claimed_by, "held_by": holder(r),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for r in &rows {
                    println!(
                        "{:>6} {:>5} {:<9} attempts {:<3} {} -> {}{}{}",
                        r.emoid,
                        r.acntid,
                        r.state,
                        r.attempts,
                        r.mail_from.as_deref().unwrap_or("-"),
                        r.rcpt_to.as_deref().unwrap_or("-"),
                        holder(r)
                            .map(|h| format!(" [held by {h}]"))
                            .unwrap_or_default(),
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
