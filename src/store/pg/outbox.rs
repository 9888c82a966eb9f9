//! `email_outbox` and `email_outbox_rcpts` on PostgreSQL: the same
//! operations as on SQLite. A message is claimed only by the run holding
//! its account (the caller's lease, SPEC §13); the claim's UPDATE still
//! checks the state, so a message cancelled meanwhile is not sent.

use super::super::error::Result;
use super::super::outbox::COLUMNS;
use super::super::{AttemptRecord, Claim, OutboxRow, OutboxState, RcptState, SentCopy};
use super::{get, opt_text, text, Postgres, Tx};
use postgres::Row;

fn from_row(r: &Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        emoid: get(r, 0)?,
        acntid: get(r, 1)?,
        mail_from: get(r, 2)?,
        rcpt_to: get(r, 3)?,
        state: get::<Option<String>>(r, 4)?.unwrap_or_else(|| "queued".into()),
        attempts: get::<Option<i64>>(r, 5)?.unwrap_or(0),
        next_attempt_at: get(r, 6)?,
        last_error: get(r, 7)?,
        created_at: get(r, 8)?,
        sent_at: get(r, 9)?,
        message_id: get(r, 10)?,
        sent_copy: get(r, 11)?,
        sent_copy_error: get(r, 12)?,
        claimed_by: get(r, 13)?,
    })
}

fn rows(rows: Vec<Row>) -> Result<Vec<OutboxRow>> {
    rows.iter().map(from_row).collect()
}

fn insert_rcpts(tx: &mut Tx<'_>, emoid: i64, rcpts: &[String]) -> Result<()> {
    for addr in rcpts {
        let addr = text(addr);
        tx.execute(
            "INSERT INTO email_outbox_rcpts (emoid, addr, state) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
            &[&emoid, &addr, &RcptState::Pending.as_str()],
            format!("add recipient {addr} of message {emoid}"),
        )?;
    }
    Ok(())
}

/// The recipients of a message: (address, state, the server's last reply).
fn read_rcpts(tx: &mut Tx<'_>, emoid: i64) -> Result<Vec<(String, RcptState, Option<String>)>> {
    tx.rows(
        "SELECT addr, state, reply FROM email_outbox_rcpts WHERE emoid = $1 ORDER BY seq",
        &[&emoid],
        format!("read the recipients of message {emoid}"),
    )?
    .iter()
    .map(|r| {
        Ok((
            get(r, 0)?,
            RcptState::parse(&get::<String>(r, 1)?),
            get(r, 2)?,
        ))
    })
    .collect()
}

impl Postgres {
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
        let (mail_from, rcpt_to) = (text(mail_from), text(&rcpts.join(",")).into_owned());
        let message_id = opt_text(message_id);
        self.write(|tx| {
            let emoid: i64 = match tx.row(
                "INSERT INTO email_outbox (acntid, raw, mail_from, rcpt_to, state, attempts, \
                 next_attempt_at, created_at, message_id) VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7) \
                 RETURNING emoid",
                &[
                    &acntid,
                    &raw,
                    &mail_from,
                    &rcpt_to,
                    &OutboxState::Queued.as_str(),
                    &now,
                    &message_id,
                ],
                "queue the message",
            )? {
                Some(r) => get(&r, 0)?,
                None => 0,
            };
            insert_rcpts(tx, emoid, rcpts)?;
            Ok(emoid)
        })
    }

    /// Outgoing messages, optionally of one state, oldest first.
    pub fn outbox_list(&self, state: Option<OutboxState>) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM email_outbox WHERE $1::text IS NULL OR state = $1 ORDER BY emoid"
        );
        rows(self.rows(&sql, &[&state.map(OutboxState::as_str)], "list the outbox")?)
    }

    /// Number of outgoing messages in each state.
    pub fn outbox_counts(&self) -> Result<Vec<(OutboxState, i64)>> {
        let counted: Vec<(Option<String>, i64)> = self
            .rows(
                "SELECT state, COUNT(*) FROM email_outbox GROUP BY state",
                &[],
                "count the outbox",
            )?
            .iter()
            .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
            .collect::<Result<_>>()?;
        Ok(OutboxState::ALL
            .into_iter()
            .map(|st| {
                let n = counted
                    .iter()
                    .filter(|(s, _)| s.as_deref() == Some(st.as_str()))
                    .map(|(_, n)| n)
                    .sum();
                (st, n)
            })
            .collect())
    }

    /// The bytes of a message as queued.
    pub fn outbox_raw(&self, emoid: i64) -> Result<Option<Vec<u8>>> {
        match self.row(
            "SELECT raw FROM email_outbox WHERE emoid = $1",
            &[&emoid],
            format!("read outgoing message {emoid}"),
        )? {
            Some(r) => get(&r, 0),
            None => Ok(None),
        }
    }

    /// Messages due now.
    pub fn outbox_due(&self, now: i64) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM email_outbox WHERE (state = $1 OR state IS NULL) \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $2) ORDER BY emoid"
        );
        rows(self.rows(
            &sql,
            &[&OutboxState::Queued.as_str(), &now],
            "read the due outbox",
        )?)
    }

    /// Puts the account's messages a killed run left `sending` back in the
    /// queue; returns their ids.
    pub fn requeue_sending(&mut self, acntid: i64) -> Result<Vec<i64>> {
        self.write(|tx| {
            tx.rows(
                "UPDATE email_outbox SET state = $1 WHERE state = $2 AND acntid = $3 RETURNING emoid",
                &[
                    &OutboxState::Queued.as_str(),
                    &OutboxState::Sending.as_str(),
                    &acntid,
                ],
                "re-queue interrupted sends",
            )?
            .iter()
            .map(|r| get(r, 0))
            .collect()
        })
    }

    /// Fails a message that cannot be sent at all.
    pub fn outbox_reject(&mut self, emoid: i64, reason: &str, now: i64) -> Result<()> {
        let reason = text(reason);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET state = $1, last_error = $2, \
                 created_at = COALESCE(created_at, $3) WHERE emoid = $4 AND state IN ($5, $6)",
                &[
                    &OutboxState::Failed.as_str(),
                    &reason,
                    &now,
                    &emoid,
                    &OutboxState::Queued.as_str(),
                    &OutboxState::Sending.as_str(),
                ],
                format!("fail outgoing message {emoid}"),
            )?;
            Ok(())
        })
    }

    /// Claims a queued message for sending; its recipients, or None.
    pub fn outbox_claim(
        &mut self,
        emoid: i64,
        mail_from: &str,
        rcpts: &[String],
        message_id: &str,
        claim: &Claim,
    ) -> Result<Option<Vec<(String, RcptState, Option<String>)>>> {
        let (mail_from, message_id) = (text(mail_from), text(message_id));
        let rcpt_to = text(&rcpts.join(",")).into_owned();
        self.write(|tx| {
            // Not durable by itself: the outcome's durable commit covers it.
            tx.batch("SET LOCAL synchronous_commit = off", "claim")?;
            let n = tx.execute(
                "UPDATE email_outbox SET state = $1, claimed_at = $2, claimed_by = $3, \
                 claimed_until = $4, mail_from = COALESCE(NULLIF(mail_from, ''), $5), \
                 rcpt_to = COALESCE(NULLIF(rcpt_to, ''), $6), \
                 message_id = COALESCE(message_id, $7), created_at = COALESCE(created_at, $2), \
                 attempts = COALESCE(attempts, 0) \
                 WHERE emoid = $8 AND (state = $9 OR state IS NULL)",
                &[
                    &OutboxState::Sending.as_str(),
                    &claim.now,
                    &claim.by,
                    &claim.until,
                    &mail_from,
                    &rcpt_to,
                    &message_id,
                    &emoid,
                    &OutboxState::Queued.as_str(),
                ],
                format!("claim outgoing message {emoid}"),
            )?;
            if n == 0 {
                return Ok(None);
            }
            let mut have = read_rcpts(tx, emoid)?;
            if have.is_empty() {
                insert_rcpts(tx, emoid, rcpts)?;
                have = read_rcpts(tx, emoid)?;
            }
            Ok(Some(have))
        })
    }

    /// Records an attempt in one durable transaction.
    pub fn outbox_record(&mut self, emoid: i64, rec: &AttemptRecord, now: i64) -> Result<()> {
        let last_error = opt_text(rec.last_error.as_deref());
        self.write(|tx| {
            for (addr, state, reply) in &rec.rcpts {
                let reply = opt_text(reply.as_deref());
                tx.execute(
                    "UPDATE email_outbox_rcpts SET state = $1, reply = $2, updated_at = $3 \
                     WHERE emoid = $4 AND addr = $5",
                    &[&state.as_str(), &reply, &now, &emoid, addr],
                    format!("record recipient {addr} of message {emoid}"),
                )?;
            }
            let sent = rec.state == OutboxState::Sent;
            tx.execute(
                "UPDATE email_outbox SET state = $1, next_attempt_at = $2, last_error = $3, \
                 attempts = attempts + $4, sent_at = CASE WHEN $5 THEN $6 ELSE sent_at END, \
                 sent_copy = CASE WHEN $5 AND sent_copy IS NULL THEN $7 ELSE sent_copy END \
                 WHERE emoid = $8",
                &[
                    &rec.state.as_str(),
                    &rec.next_attempt_at,
                    &last_error,
                    &i64::from(rec.attempted),
                    &sent,
                    &now,
                    &SentCopy::Pending.as_str(),
                    &emoid,
                ],
                format!("record the attempt of message {emoid}"),
            )?;
            Ok(())
        })
    }

    /// Messages of an account whose copy for the Sent folder is still to do.
    pub fn sent_copies_pending(&self, acntid: i64) -> Result<Vec<OutboxRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM email_outbox WHERE acntid = $1 AND sent_copy = $2 ORDER BY emoid"
        );
        rows(self.rows(
            &sql,
            &[&acntid, &SentCopy::Pending.as_str()],
            "read pending Sent copies",
        )?)
    }

    /// Whether a drain would find anything to do now (see `Store`).
    pub fn outbox_has_work(&self, now: i64) -> Result<bool> {
        let row = self.row(
            "SELECT EXISTS (SELECT 1 FROM email_outbox WHERE state = $1) \
             OR EXISTS (SELECT 1 FROM email_outbox WHERE (state = $2 OR state IS NULL) \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $3)) \
             OR EXISTS (SELECT 1 FROM email_outbox WHERE sent_copy = $4)",
            &[
                &OutboxState::Sending.as_str(),
                &OutboxState::Queued.as_str(),
                &now,
                &SentCopy::Pending.as_str(),
            ],
            "look for work in the outbox",
        )?;
        row.as_ref().map_or(Ok(false), |r| get(r, 0))
    }

    /// Accounts with Sent copies still to do.
    pub fn accounts_with_sent_copies(&self) -> Result<Vec<i64>> {
        self.rows(
            "SELECT DISTINCT acntid FROM email_outbox WHERE sent_copy = $1",
            &[&SentCopy::Pending.as_str()],
            "read pending Sent copies",
        )?
        .iter()
        .map(|r| get(r, 0))
        .collect()
    }

    /// Records the Sent copy's outcome.
    pub fn set_sent_copy(
        &mut self,
        emoid: i64,
        state: SentCopy,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let error = opt_text(error);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET sent_copy = $1, sent_copy_error = $2, sent_copy_at = $3 \
                 WHERE emoid = $4",
                &[&state.as_str(), &error, &now, &emoid],
                format!("record the Sent copy of message {emoid}"),
            )?;
            Ok(())
        })
    }

    /// Marks every pending Sent copy of an account `none`.
    pub fn no_sent_copies(&mut self, acntid: i64, why: &str, now: i64) -> Result<()> {
        let why = text(why);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET sent_copy = $1, sent_copy_error = $2, sent_copy_at = $3 \
                 WHERE acntid = $4 AND sent_copy = $5",
                &[
                    &SentCopy::None.as_str(),
                    &why,
                    &now,
                    &acntid,
                    &SentCopy::Pending.as_str(),
                ],
                format!("record the Sent copies of account {acntid}"),
            )?;
            Ok(())
        })
    }

    /// Notes why an account's queued messages wait (no attempt counted).
    pub fn outbox_waits(&mut self, acntid: i64, why: &str) -> Result<()> {
        let why = text(why);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_outbox SET last_error = $1 WHERE acntid = $2 AND state = $3",
                &[&why, &acntid, &OutboxState::Queued.as_str()],
                format!("note why the mail of account {acntid} waits"),
            )?;
            Ok(())
        })
    }

    /// `outbox retry`. False when not failed or queued.
    pub fn outbox_retry(&mut self, emoid: i64, now: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE email_outbox SET state = $1, next_attempt_at = $2 \
                 WHERE emoid = $3 AND state IN ($4, $1)",
                &[
                    &OutboxState::Queued.as_str(),
                    &now,
                    &emoid,
                    &OutboxState::Failed.as_str(),
                ],
                format!("retry message {emoid}"),
            )?;
            if n == 1 {
                tx.execute(
                    "UPDATE email_outbox_rcpts SET state = $1 WHERE emoid = $2 AND state = $3",
                    &[
                        &RcptState::Pending.as_str(),
                        &emoid,
                        &RcptState::Failed.as_str(),
                    ],
                    format!("retry the recipients of message {emoid}"),
                )?;
            }
            Ok(n == 1)
        })
    }

    /// `outbox cancel`. False when not queued.
    pub fn outbox_cancel(&mut self, emoid: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE email_outbox SET state = $1 WHERE emoid = $2 AND state = $3",
                &[
                    &OutboxState::Cancelled.as_str(),
                    &emoid,
                    &OutboxState::Queued.as_str(),
                ],
                format!("cancel message {emoid}"),
            )?;
            Ok(n == 1)
        })
    }
}
