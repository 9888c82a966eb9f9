//! `email_outbox` and `email_outbox_rcpts`: outgoing mail queued by the web
//! application (or `engine outbox add`), its recipients' outcomes, and the
//! copy for the Sent folder.

use super::error::{Context, Result};
use super::sqlite::Sqlite;
use rusqlite::types::ValueRef;
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
    /// `HOSTNAME:PID` of the run that claimed it last (SPEC §13).
    pub claimed_by: Option<String>,
}

pub(super) const COLUMNS: &str =
    "emoid, acntid, mail_from, rcpt_to, state, attempts, next_attempt_at, \
    last_error, created_at, sent_at, message_id, sent_copy, sent_copy_error, claimed_by";

// The web app writes these rows itself, with whatever types its driver
// binds: a value of an unexpected type must not make the whole queue
// unreadable. Numbers may come as text, text as a blob; anything else counts
// as missing (a missing `acntid` as 0, an account that never exists, so the
// message fails with a reason instead of stopping the outbox).
fn int(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Real(f) if f.is_finite() => Some(f as i64),
        ValueRef::Text(t) | ValueRef::Blob(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    })
}

fn text(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<String>> {
    Ok(match r.get_ref(i)? {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Null => None,
    })
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        emoid: r.get(0)?,
        acntid: int(r, 1)?.unwrap_or(0),
        mail_from: text(r, 2)?,
        rcpt_to: text(r, 3)?,
        state: text(r, 4)?.unwrap_or_else(|| "queued".into()),
        attempts: int(r, 5)?.unwrap_or(0),
        next_attempt_at: int(r, 6)?,
        last_error: text(r, 7)?,
        created_at: int(r, 8)?,
        sent_at: int(r, 9)?,
        message_id: text(r, 10)?,
        sent_copy: text(r, 11)?,
        sent_copy_error: text(r, 12)?,
        claimed_by: text(r, 13)?,
    })
}

/// A message's state (`email_outbox.state`, SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting to go out (again): due at `next_attempt_at`.
    Queued,
    /// Claimed by a run that is sending it.
    Sending,
    /// Accepted for every recipient that could have it.
    Sent,
    /// Given up: rejected, or still failing past the lifetime.
    Failed,
    /// Cancelled before it went out.
    Cancelled,
}

impl OutboxState {
    /// Every state, in the order `status` names them.
    pub const ALL: [OutboxState; 5] = [
        OutboxState::Queued,
        OutboxState::Sending,
        OutboxState::Sent,
        OutboxState::Failed,
        OutboxState::Cancelled,
    ];

    /// The state as the table holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
            OutboxState::Cancelled => "cancelled",
        }
    }

    /// The state a text of the table names, if any.
    pub fn parse(s: &str) -> Option<OutboxState> {
        OutboxState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for OutboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            RcptState::Pending => "pending",
            RcptState::Sent => "sent",
            RcptState::Failed => "failed",
        }
    }
    pub(super) fn parse(s: &str) -> RcptState {
        match s {
            "sent" => RcptState::Sent,
            "failed" => RcptState::Failed,
            _ => RcptState::Pending,
        }
    }
}

/// The copy of a sent message in the account's Sent folder
/// (`email_outbox.sent_copy`; NULL until the message is accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCopy {
    /// Still to be stored (after an error too, until the lifetime ends).
    Pending,
    /// Stored, or the server had one already.
    Done,
    /// Nowhere to store it (no IMAP server, no Message-ID).
    None,
    /// Given up after `EMAIL_OUTBOX_LIFETIME`.
    Failed,
}

impl SentCopy {
    /// The value as the table holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            SentCopy::Pending => "pending",
            SentCopy::Done => "done",
            SentCopy::None => "none",
            SentCopy::Failed => "failed",
        }
    }
}

/// The end of one attempt, written in one durable transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Recipients whose state changed, with the server's reply.
    pub rcpts: Vec<(String, RcptState, Option<String>)>,
    /// `Queued`, `Sent` or `Failed`.
    pub state: OutboxState,
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    /// Count this as an attempt (a transmission was tried).
    pub attempted: bool,
}

impl Sqlite {
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
                 next_attempt_at, created_at, message_id) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                params![
                    acntid,
                    raw,
                    mail_from,
                    rcpts.join(","),
                    OutboxState::Queued.as_str(),
                    now,
                    now,
                    message_id
                ],
            )
            .context("queue the message")?;
            let emoid = tx.last_insert_rowid();
            insert_rcpts(tx, emoid, rcpts)?;
            Ok(emoid)
        })
    }

    /// Outgoing messages, optionally of one state, oldest first.
    pub fn outbox_list(&self, state: Option<OutboxState>) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE ?1 IS NULL OR state = ?1 ORDER BY emoid"
            ))
            .context("list the outbox")?;
        let rows = stmt
            .query_map([state.map(OutboxState::as_str)], from_row)
            .and_then(|rows| rows.collect())
            .context("list the outbox")?;
        Ok(rows)
    }

    /// Number of outgoing messages in each state (states the engine does
    /// not know are not counted).
    pub fn outbox_counts(&self) -> Result<Vec<(OutboxState, i64)>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT state, COUNT(*) FROM email_outbox GROUP BY state")
            .context("count the outbox")?;
        let rows: Vec<(Option<String>, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .context("count the outbox")?;
        Ok(OutboxState::ALL
            .into_iter()
            .map(|st| {
                let n = rows
                    .iter()
                    .filter(|(s, _)| s.as_deref() == Some(st.as_str()))
                    .map(|(_, n)| n)
                    .sum();
                (st, n)
            })
            .collect())
    }

    /// The bytes of a message as queued. The web app may have stored them
    /// as TEXT (PHP binds strings): those bytes count the same; a number
    /// counts as no message.
    pub fn outbox_raw(&self, emoid: i64) -> Result<Option<Vec<u8>>> {
        self.conn()
            .query_row(
                "SELECT raw FROM email_outbox WHERE emoid = ?",
                [emoid],
                |r| {
                    Ok(match r.get_ref(0)? {
                        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
                        _ => None,
                    })
                },
            )
            .optional()
            .map(Option::flatten)
            .context(format!("read outgoing message {emoid}"))
    }

    /// Messages due now: queued, with no attempt time or one in the past (a
    /// value that is no number, which SQLite would rank above every time,
    /// counts as none).
    pub fn outbox_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_outbox WHERE (state = ?1 OR state IS NULL) \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= ?2 \
                      OR typeof(next_attempt_at) NOT IN ('integer', 'real')) \
                 ORDER BY emoid"
            ))
            .context("read the due outbox")?;
        let rows = stmt
            .query_map(params![OutboxState::Queued.as_str(), now], from_row)
            .and_then(|rows| rows.collect())
            .context("read the due outbox")?;
        Ok(rows)
    }

    /// Puts the account's messages a killed run left in `sending` back in
    /// the queue; returns their ids.
    pub fn requeue_sending(&mut self, acntid: i64) -> Result<Vec<i64>> {
        self.write(|tx| {
            let ids: Vec<i64> = tx
                .prepare("SELECT emoid FROM email_outbox WHERE state = ? AND acntid = ?")
                .and_then(|mut s| {
                    s.query_map(params![OutboxState::Sending.as_str(), acntid], |r| r.get(0))?
                        .collect()
                })
                .context("find interrupted sends")?;
            tx.execute(
                "UPDATE email_outbox SET state = ?1 WHERE state = ?2 AND acntid = ?3",
                params![
                    OutboxState::Queued.as_str(),
                    OutboxState::Sending.as_str(),
                    acntid
                ],
            )
            .context("re-queue interrupted sends")?;
            Ok(ids)
        })
    }

    /// Fails a message that cannot be sent at all (bad bytes, bad envelope).
    pub fn outbox_reject(&mut self, emoid: i64, reason: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET state = ?1, last_error = ?2, \
                 created_at = COALESCE(created_at, ?3) WHERE emoid = ?4 AND state IN (?5, ?6)",
                params![
                    OutboxState::Failed.as_str(),
                    reason,
                    now,
                    emoid,
                    OutboxState::Queued.as_str(),
                    OutboxState::Sending.as_str()
                ],
            )
            .context(format!("fail outgoing message {emoid}"))?;
            Ok(())
        })
    }

    /// Claims a queued message for sending (`sending`) and, in the same
    /// transaction, completes what a row the web app inserted itself may
    /// lack: envelope, Message-ID, `created_at` and the recipient rows.
    /// Returns the recipients (address, state, last reply), or None when the
    /// message is no longer queued (cancelled, claimed meanwhile).
    pub fn outbox_claim(
        &mut self,
        emoid: i64,
        mail_from: &str,
        rcpts: &[String],
        message_id: &str,
        claim: &super::Claim,
    ) -> Result<Option<Vec<(String, RcptState, Option<String>)>>> {
        // The claim need not survive a power loss (the message would only
        // be sent again, as the one in flight): it is committed without an
        // fsync of its own, which the outcome's durable commit then covers.
        let level: i64 = self
            .conn()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .context("read the synchronous level")?;
        self.conn()
            .pragma_update(None, "synchronous", "NORMAL")
            .context("set synchronous=NORMAL")?;
        let claimed = self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE email_outbox SET state = ?1, claimed_at = ?2, \
                     claimed_by = ?8, claimed_until = ?9, mail_from = COALESCE(NULLIF(mail_from, ''), ?3), \
                     rcpt_to = COALESCE(NULLIF(rcpt_to, ''), ?4), \
                     message_id = COALESCE(message_id, ?5), \
                     created_at = CASE WHEN typeof(created_at) = 'integer' THEN created_at ELSE ?2 END, \
                     attempts = COALESCE(attempts, 0) \
                     WHERE emoid = ?6 AND (state = ?7 OR state IS NULL)",
                    params![
                        OutboxState::Sending.as_str(),
                        claim.now,
                        mail_from,
                        rcpts.join(","),
                        message_id,
                        emoid,
                        OutboxState::Queued.as_str(),
                        claim.by,
                        claim.until
                    ],
                )
                .context(format!("claim outgoing message {emoid}"))?;
            if n == 0 {
                return Ok(None);
            }
            let mut have = read_rcpts(tx, emoid)?;
            if have.is_empty() {
                insert_rcpts(tx, emoid, rcpts)?;
                have = read_rcpts(tx, emoid)?;
            }
            Ok(Some(have))
        });
        self.conn()
            .pragma_update(None, "synchronous", level)
            .context("restore the synchronous level")?;
        claimed
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
            let sent = rec.state == OutboxState::Sent;
            tx.execute(
                "UPDATE email_outbox SET state = ?1, next_attempt_at = ?2, last_error = ?3, \
                 attempts = attempts + ?4, sent_at = CASE WHEN ?5 THEN ?6 ELSE sent_at END, \
                 sent_copy = CASE WHEN ?5 AND sent_copy IS NULL THEN ?7 ELSE sent_copy END \
                 WHERE emoid = ?8",
                params![
                    rec.state.as_str(),
                    rec.next_attempt_at,
                    rec.last_error,
                    rec.attempted as i64,
                    sent,
                    now,
                    SentCopy::Pending.as_str(),
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
                "SELECT {COLUMNS} FROM email_outbox WHERE acntid = ? AND sent_copy = ? ORDER BY emoid"
            ))
            .context("read pending Sent copies")?;
        let rows = stmt
            .query_map(params![acntid, SentCopy::Pending.as_str()], from_row)
            .and_then(|rows| rows.collect())
            .context("read pending Sent copies")?;
        Ok(rows)
    }

    /// Whether a drain would find anything to do now (see `Store`).
    pub fn outbox_has_work(&self, now: i64) -> Result<bool> {
        self.conn()
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM email_outbox WHERE state = ?1) \
                 OR EXISTS (SELECT 1 FROM email_outbox WHERE (state = ?2 OR state IS NULL) \
                     AND (next_attempt_at IS NULL OR next_attempt_at <= ?3 \
                          OR typeof(next_attempt_at) NOT IN ('integer', 'real'))) \
                 OR EXISTS (SELECT 1 FROM email_outbox WHERE sent_copy = ?4)",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        OutboxState::Sending.as_str(),
                        OutboxState::Queued.as_str(),
                        now,
                        SentCopy::Pending.as_str()
                    ],
                    |r| r.get(0),
                )
            })
            .context("look for work in the outbox")
    }

    /// Accounts with Sent copies still to do.
    pub fn accounts_with_sent_copies(&self) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT DISTINCT acntid FROM email_outbox WHERE sent_copy = ?")
            .context("read pending Sent copies")?;
        let rows = stmt
            .query_map([SentCopy::Pending.as_str()], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context("read pending Sent copies")?;
        Ok(rows)
    }

    /// Records the Sent copy's outcome.
    pub fn set_sent_copy(
        &mut self,
        emoid: i64,
        state: SentCopy,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET sent_copy = ?, sent_copy_error = ?, sent_copy_at = ? WHERE emoid = ?",
                params![state.as_str(), error, now, emoid],
            )
            .context(format!("record the Sent copy of message {emoid}"))?;
            Ok(())
        })
    }

    /// Marks every pending Sent copy of an account `none` (nowhere to put
    /// them), in one transaction.
    pub fn no_sent_copies(&mut self, acntid: i64, why: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET sent_copy = ?, sent_copy_error = ?, sent_copy_at = ? \
                 WHERE acntid = ? AND sent_copy = ?",
                params![
                    SentCopy::None.as_str(),
                    why,
                    now,
                    acntid,
                    SentCopy::Pending.as_str()
                ],
            )
            .context(format!("record the Sent copies of account {acntid}"))?;
            Ok(())
        })
    }

    /// Notes why an account's queued messages wait, without counting an
    /// attempt or moving their due time (the login, not the message, failed).
    pub fn outbox_waits(&mut self, acntid: i64, why: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET last_error = ? WHERE acntid = ? AND state = ?",
                params![why, acntid, OutboxState::Queued.as_str()],
            )
            .context(format!("note why the mail of account {acntid} waits"))?;
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
                    "UPDATE email_outbox SET state = ?1, next_attempt_at = ?2 \
                     WHERE emoid = ?3 AND state IN (?4, ?1)",
                    params![
                        OutboxState::Queued.as_str(),
                        now,
                        emoid,
                        OutboxState::Failed.as_str()
                    ],
                )
                .context(format!("retry message {emoid}"))?;
            if n == 1 {
                tx.execute(
                    "UPDATE email_outbox_rcpts SET state = ? WHERE emoid = ? AND state = ?",
                    params![
                        RcptState::Pending.as_str(),
                        emoid,
                        RcptState::Failed.as_str()
                    ],
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
                    "UPDATE email_outbox SET state = ? WHERE emoid = ? AND state = ?",
                    params![
                        OutboxState::Cancelled.as_str(),
                        emoid,
                        OutboxState::Queued.as_str()
                    ],
                )
                .context(format!("cancel message {emoid}"))?;
            Ok(n == 1)
        })
    }
}

fn insert_rcpts(tx: &rusqlite::Transaction<'_>, emoid: i64, rcpts: &[String]) -> Result<()> {
    for addr in rcpts {
        tx.execute(
            "INSERT OR IGNORE INTO email_outbox_rcpts (emoid, addr, state) VALUES (?, ?, ?)",
            params![emoid, addr, RcptState::Pending.as_str()],
        )
        .context(format!("add recipient {addr} of message {emoid}"))?;
    }
    Ok(())
}

/// The recipients of a message: (address, state, the server's last reply).
fn read_rcpts(
    c: &rusqlite::Connection,
    emoid: i64,
) -> Result<Vec<(String, RcptState, Option<String>)>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT addr, state, reply FROM email_outbox_rcpts WHERE emoid = ? ORDER BY rowid",
        )
        .context("read recipients")?;
    let rows = stmt
        .query_map([emoid], |r| {
            Ok((
                r.get(0)?,
                RcptState::parse(&r.get::<_, String>(1)?),
                r.get(2)?,
            ))
        })
        .and_then(|rows| rows.collect())
        .context(format!("read the recipients of message {emoid}"))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_has_work_for_a_due_or_sending_message_or_a_sent_copy_owed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Sqlite::for_tests(&tmp.path().join("engine.sqlite"));
        let now = 1_000;
        assert!(!store.outbox_has_work(now).expect("empty"));
        // state, next_attempt_at, sent_copy: work or not.
        let cases: &[(&str, &str, &str, bool)] = &[
            ("queued", "NULL", "NULL", true),
            ("queued", "999", "NULL", true),
            ("queued", "1000", "NULL", true),
            ("queued", "1001", "NULL", false),
            ("queued", "'soon'", "NULL", true),
            ("sending", "NULL", "NULL", true),
            ("sent", "NULL", "'pending'", true),
            ("sent", "NULL", "'done'", false),
            ("sent", "NULL", "'none'", false),
            ("failed", "NULL", "NULL", false),
            ("cancelled", "NULL", "NULL", false),
        ];
        for (state, next, copy, work) in cases {
            store
                .conn()
                .execute_batch(&format!(
                    "DELETE FROM email_outbox;
                     INSERT INTO email_outbox (acntid, state, next_attempt_at, sent_copy) \
                     VALUES (1, '{state}', {next}, {copy});"
                ))
                .expect("row");
            let found = store.outbox_has_work(now).expect("look");
            assert_eq!(found, *work, "{state} {next} {copy}");
            // Never less than what a drain reads.
            let due = !store.outbox_due(now).expect("due").is_empty();
            assert!(found || !due, "{state} {next}: due but no work");
        }
    }
}
