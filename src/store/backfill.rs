//! The backfill of the content migration: messages stored before it get their
//! attachment rows and search text in batches, each batch committed with
//! the bookmark (`email_content_backfill.after_emmsid`) in one short
//! transaction, so a killed run resumes after the last batch committed and
//! the write lock is never held for long. What to write is computed by the
//! caller between the reading and the writing (`crate::backfill`).
//!
//! A message completed, expunged or re-stored meanwhile is left as the sync
//! left it: a batch writes only messages that still exist and still have no
//! search text.

use super::content;
use super::error::{Context, Result};
use super::sqlite::Sqlite;
use crate::mime::Content;
use rusqlite::{params, OptionalExtension};

/// Where the backfill stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackfillState {
    /// Every message with `emmsid <= after` has been processed.
    pub after: i64,
    /// The last message stored before the content migration.
    pub upto: i64,
    /// Messages processed so far, of `total` there were at the content migration.
    pub done: i64,
    pub total: i64,
}

impl BackfillState {
    /// Nothing is left to do.
    pub fn finished(&self) -> bool {
        self.after >= self.upto
    }
}

/// A message waiting for its rows.
#[derive(Debug, Clone)]
pub struct Unfilled {
    pub emmsid: i64,
    /// Stored header-only: it gets its rows when it is stored whole.
    pub partial: bool,
    pub raw: Vec<u8>,
}

impl Sqlite {
    /// Where the backfill stands (finished when there is nothing to do).
    pub fn backfill_state(&self) -> Result<BackfillState> {
        Ok(self
            .conn()
            .query_row(
                "SELECT after_emmsid, upto_emmsid, done, total FROM email_content_backfill WHERE id = 1",
                [],
                |r| {
                    Ok(BackfillState {
                        after: r.get(0)?,
                        upto: r.get(1)?,
                        done: r.get(2)?,
                        total: r.get(3)?,
                    })
                },
            )
            .optional()
            .context("read the backfill's bookmark")?
            .unwrap_or_default())
    }

    /// The next messages waiting, in `emmsid` order after `after`: at most
    /// `count`, and no more once `bytes` of them are read.
    pub fn backfill_batch(&self, after: i64, count: usize, bytes: usize) -> Result<Vec<Unfilled>> {
        let upto = self.backfill_state()?.upto;
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT emmsid, partial, raw FROM email_messages \
                 WHERE emmsid > ? AND emmsid <= ? ORDER BY emmsid LIMIT ?",
            )
            .context("prepare the backfill's batch")?;
        let mut rows = stmt
            .query(params![after, upto, count as i64])
            .context("read the backfill's batch")?;
        let (mut batch, mut read) = (Vec::new(), 0usize);
        while let Some(r) = rows.next().context("read the backfill's batch")? {
            let raw: Vec<u8> = r
                .get::<_, Option<Vec<u8>>>(2)
                .context("read a message")?
                .unwrap_or_default();
            read += raw.len();
            batch.push(Unfilled {
                emmsid: r.get(0).context("read a message")?,
                partial: r
                    .get::<_, Option<bool>>(1)
                    .context("read a message")?
                    .unwrap_or(false),
                raw,
            });
            if read >= bytes {
                break;
            }
        }
        Ok(batch)
    }

    /// Writes the rows of a batch and moves the bookmark to `last` (the
    /// batch's last `emmsid`), in one transaction. Returns how many
    /// messages got rows.
    pub fn backfill_write(
        &mut self,
        batch: &[(i64, Content)],
        last: i64,
        now: i64,
    ) -> Result<usize> {
        self.write(|tx| {
            let mut written = 0;
            for (emmsid, c) in batch {
                let what =
                    || format!("fill in the attachments and search text of message {emmsid}");
                if content::fill(tx, *emmsid, c).context(what())? {
                    content::attachments(tx, *emmsid, &c.attachments, false).context(what())?;
                    written += 1;
                }
            }
            tx.execute(
                "UPDATE email_content_backfill SET after_emmsid = MAX(after_emmsid, ?1), \
                 done = done + ?2, started_at = COALESCE(started_at, ?3), \
                 finished_at = CASE WHEN MAX(after_emmsid, ?1) >= upto_emmsid THEN ?3 END \
                 WHERE id = 1",
                params![last, batch.len() as i64, now],
            )
            .context("move the backfill's bookmark")?;
            crate::failpoint::hit("backfill-mid-commit");
            Ok(written)
        })
    }
}
