//! `email_outbox` and `email_outbox_rcpts`: outgoing mail queued by the web
//! application (or `engine outbox add`), its recipients' outcomes, and the
//! copy for the Sent folder.

use super::Store;
use crate::error::{Context, Result};
use rusqlite::{params, OptionalExtension, Row};

/// An outgoing message without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub emoid: i64,
    pub acntid: i64,
    pub mail_from: Option<String>,
    pub rcpt_to: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Option<i64>,
    pub sent_at: Option<i64>,
    pub message_id: Option<String>,
    pub sent_copy: Option<String>,
    pub sent_copy_error: Option<String>,
}

const COLUMNS: &str = "emoid, acntid, mail_from, rcpt_to, state, attempts, next_attempt_at, \
    last_error, created_at, sent_at, message_id, sent_copy, sent_copy_error";

fn from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        emoid: r.get(0)?,
        acntid: r.get(1)?,
        mail_from: r.get(2)?,
        rcpt_to: r.get(3)?,
        state: r
            .get::<_, Option<String>>(4)?
            .unwrap_or_else(|| "queued".into()),
        attempts: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        sent_at: r.get(9)?,
        message_id: r.get(10)?,
        sent_copy: r.get(11)?,
        sent_copy_error: r.get(12)?,
    })
}

/// A recipient's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// Not delivered yet: the next attempt goes to it.
    Pending,
    /// The server accepted the message for it.
    Sent,
    /// Rejected for good.
    Failed,
}

impl RcptState {
    fn as_str(self) -> &'static str {
        match self {
            RcptState::Pending => "pending",
            RcptState::Sent => "sent",
            RcptState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> RcptState {
        match s {
            "sent" => RcptState::Sent,
            "failed" => RcptState::Failed,
            _ => RcptState::Pending,
        }
    }
}

/// The end of one attempt, written in one durable transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Recipients whose state changed, with the server's reply.
    pub rcpts: Vec<(String, RcptState, Option<String>)>,
    /// `queued`, `sent` or `failed`.
    pub state: &'static str,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    /// Count this as an attempt (a transmission was tried).
    pub attempted: bool,
}

impl Store {
    /// Makes this connection's commits durable against power loss (the
    /// outbox: a "sent" mark must never be lost, or mail goes out twice).
    pub fn set_durable(&self) -> Result<()> {
        self.conn()
            .pragma_update(None, "synchronous", "FULL")
            .context("set synchronous=FULL")
    }

    /// Queues a checked message; returns its `emoid`.
    pub fn queue_message(
        &mut self,
        acntid: i64,
        raw: &[u8],
        mail_from: &str,
        rcpts: &[String],
        message_id: Option<&str>,
        now: i64,
    ) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO email_outbox (acntid, raw, mail_from, rcpt_to, state, attempts, \
                 next_attempt_at, created_at, message_id) VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
                params![acntid, raw, mail_from, rcpts.join(","), now, now, message_id],
            )
            .context("queue the message")?;
            let emoid = tx.last_insert_rowid();
            insert_rcpts(tx, emoid, rcpts)?;
            Ok(emoid)
        })
    }

    /// One outgoing message (without its bytes).
    pub fn outbox_row(&self, emoid: i64) -> Result<Option<OutboxRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM email_outbox WHERE emoid = ?"),
                [emoid],
                from_row,
            )
            .optional()
            .context(format!("read outgoing message {emoid}"))
    }

    /// Outgoing messages, optionally of one state, oldest first.
    pub fn outbox_list(&self, state: Option<&str>) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE ?1 IS NULL OR state = ?1 ORDER BY emoid"
            ))
            .context("list the outbox")?;
        let rows = stmt
            .query_map([state], from_row)
            .and_then(|rows| rows.collect())
            .context("list the outbox")?;
        Ok(rows)
    }

    /// Number of outgoing messages by state.
    pub fn outbox_counts(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT state, COUNT(*) FROM email_outbox GROUP BY state ORDER BY state")
            .context("count the outbox")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .context("count the outbox")?;
        Ok(rows)
    }

    /// The bytes of a message as queued.
    pub fn outbox_raw(&self, emoid: i64) -> Result<Option<Vec<u8>>> {
        self.conn()
            .query_row(
                "SELECT raw FROM email_outbox WHERE emoid = ?",
                [emoid],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .map(Option::flatten)
            .context(format!("read outgoing message {emoid}"))
    }

    /// Messages due now: queued, with no attempt time or one in the past.
    pub fn outbox_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE (state = 'queued' OR state IS NULL) \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= ?) \
                 ORDER BY COALESCE(next_attempt_at, 0), emoid"
            ))
            .context("read the due outbox")?;
        let rows = stmt
            .query_map([now], from_row)
            .and_then(|rows| rows.collect())
            .context("read the due outbox")?;
        Ok(rows)
    }

    /// Puts messages a killed run left in `sending` back in the queue;
    /// returns their ids.
    pub fn requeue_sending(&mut self) -> Result<Vec<i64>> {
        self.write(|tx| {
            let ids: Vec<i64> = tx
                .prepare("SELECT emoid FROM email_outbox WHERE state = 'sending'")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .context("find interrupted sends")?;
            tx.execute(
                "UPDATE email_outbox SET state = 'queued' WHERE state = 'sending'",
                [],
            )
            .context("re-queue interrupted sends")?;
            Ok(ids)
        })
    }

    /// Completes a row the web app inserted itself: envelope, Message-ID
    /// and recipient rows, when missing.
    pub fn set_envelope(
        &mut self,
        emoid: i64,
        mail_from: &str,
        rcpts: &[String],
        message_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET mail_from = COALESCE(mail_from, ?), \
                 rcpt_to = COALESCE(NULLIF(rcpt_to, ''), ?), message_id = COALESCE(message_id, ?), \
                 created_at = COALESCE(created_at, ?), attempts = COALESCE(attempts, 0) WHERE emoid = ?",
                params![mail_from, rcpts.join(","), message_id, now, emoid],
            )
            .context(format!("complete outgoing message {emoid}"))?;
            let have: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM email_outbox_rcpts WHERE emoid = ?",
                    [emoid],
                    |r| r.get(0),
                )
                .context("count recipients")?;
            if have == 0 {
                insert_rcpts(tx, emoid, rcpts)?;
            }
            Ok(())
        })
    }

    /// Fails a message that cannot be sent at all (bad bytes, bad envelope).
    pub fn outbox_reject(&mut self, emoid: i64, reason: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET state = 'failed', last_error = ?, \
                 created_at = COALESCE(created_at, ?) WHERE emoid = ? AND state IN ('queued', 'sending')",
                params![reason, now, emoid],
            )
            .context(format!("fail outgoing message {emoid}"))?;
            Ok(())
        })
    }

    /// Claims a queued message for sending. False when someone else changed
    /// it meanwhile (cancelled, claimed).
    pub fn outbox_claim(&mut self, emoid: i64, now: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE email_outbox SET state = 'sending', claimed_at = ? \
                     WHERE emoid = ? AND (state = 'queued' OR state IS NULL)",
                    params![now, emoid],
                )
                .context(format!("claim outgoing message {emoid}"))?;
            Ok(n == 1)
        })
    }

    /// The recipients of a message and their states.
    pub fn outbox_rcpts(&self, emoid: i64) -> Result<Vec<(String, RcptState)>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT addr, state FROM email_outbox_rcpts WHERE emoid = ? ORDER BY rowid")
            .context("read recipients")?;
        let rows = stmt
            .query_map([emoid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    RcptState::parse(&r.get::<_, String>(1)?),
                ))
            })
            .and_then(|rows| rows.collect())
            .context(format!("read the recipients of message {emoid}"))?;
        Ok(rows)
    }

    /// Records an attempt: recipients' outcomes and the message's state, in
    /// one transaction (durable with `set_durable`).
    pub fn outbox_record(&mut self, emoid: i64, rec: &AttemptRecord, now: i64) -> Result<()> {
        self.write(|tx| {
            for (addr, state, reply) in &rec.rcpts {
                tx.execute(
                    "UPDATE email_outbox_rcpts SET state = ?, reply = ?, updated_at = ? \
                     WHERE emoid = ? AND addr = ?",
                    params![state.as_str(), reply, now, emoid, addr],
                )
                .context(format!("record recipient {addr} of message {emoid}"))?;
            }
            let sent = rec.state == "sent";
            tx.execute(
                "UPDATE email_outbox SET state = ?, next_attempt_at = ?, last_error = ?, \
                 attempts = attempts + ?, sent_at = CASE WHEN ? THEN ? ELSE sent_at END, \
                 sent_copy = CASE WHEN ? AND sent_copy IS NULL THEN 'pending' ELSE sent_copy END \
                 WHERE emoid = ?",
                params![
                    rec.state,
                    rec.next_attempt_at,
                    rec.last_error,
                    rec.attempted as i64,
                    sent,
                    now,
                    sent,
                    emoid
                ],
            )
            .context(format!("record the attempt of message {emoid}"))?;
            Ok(())
        })
    }

    /// Messages of an account whose copy for the Sent folder is still to do.
    pub fn sent_copies_pending(&self, acntid: i64) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE acntid = ? AND sent_copy = 'pending' ORDER BY emoid"
            ))
            .context("read pending Sent copies")?;
        let rows = stmt
            .query_map([acntid], from_row)
            .and_then(|rows| rows.collect())
            .context("read pending Sent copies")?;
        Ok(rows)
    }

    /// Accounts with Sent copies still to do.
    pub fn accounts_with_sent_copies(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT DISTINCT acntid FROM email_outbox WHERE sent_copy = 'pending'")
            .context("read pending Sent copies")?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context("read pending Sent copies")?;
        Ok(rows)
    }

    /// Records the Sent copy's outcome: `done`, `none`, or still `pending` with an error.
    pub fn set_sent_copy(
        &mut self,
        emoid: i64,
        state: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET sent_copy = ?, sent_copy_error = ?, sent_copy_at = ? WHERE emoid = ?",
                params![state, error, now, emoid],
            )
            .context(format!("record the Sent copy of message {emoid}"))?;
            Ok(())
        })
    }

    /// `outbox retry`: a failed or queued message becomes due now (its
    /// recipients not yet served pending again). False when not found or in
    /// another state.
    pub fn outbox_retry(&mut self, emoid: i64, now: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE email_outbox SET state = 'queued', next_attempt_at = ? \
                     WHERE emoid = ? AND state IN ('failed', 'queued')",
                    params![now, emoid],
                )
                .context(format!("retry message {emoid}"))?;
            if n == 1 {
                tx.execute(
                    "UPDATE email_outbox_rcpts SET state = 'pending' WHERE emoid = ? AND state = 'failed'",
                    [emoid],
                )
                .context(format!("retry the recipients of message {emoid}"))?;
            }
            Ok(n == 1)
        })
    }

    /// `outbox cancel`: a queued message is cancelled. False when not queued.
    pub fn outbox_cancel(&mut self, emoid: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE email_outbox SET state = 'cancelled' WHERE emoid = ? AND state = 'queued'",
                    [emoid],
                )
                .context(format!("cancel message {emoid}"))?;
            Ok(n == 1)
        })
    }
}

fn insert_rcpts(tx: &rusqlite::Transaction<'_>, emoid: i64, rcpts: &[String]) -> Result<()> {
    for addr in rcpts {
        tx.execute(
            "INSERT OR IGNORE INTO email_outbox_rcpts (emoid, addr, state) VALUES (?, ?, 'pending')",
            params![emoid, addr],
        )
        .context(format!("add recipient {addr} of message {emoid}"))?;
    }
    Ok(())
}
