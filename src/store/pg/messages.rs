//! `email_messages` on PostgreSQL: a batch of new messages is one
//! multi-row INSERT (a few of them for a large batch) in the transaction
//! that also records the folder's progress.

use super::super::error::{Error, Result};
use super::super::{Applied, FolderPatch, NewMessage, OldRow, Op};
use super::folders::apply_patch;
use super::{content, get, opt_text, text, Postgres, Tx};
use crate::mime::Content;
use postgres::types::ToSql;

/// Rows in one INSERT at most (14 parameters each, far below the
/// protocol's 65,535).
const ROWS_PER_INSERT: usize = 200;
/// Bytes of messages in one INSERT at most: a statement's parameters are
/// held in memory whole.
const BYTES_PER_INSERT: usize = 16 << 20;

const INSERT_HEAD: &str = "INSERT INTO email_messages (emfdid, uidvalidity, uid, message_id, \
     subject, from_addr, to_addrs, date_at, internal_date_at, size, flags, partial, stored_at, raw) \
     VALUES ";
const INSERT_TAIL: &str =
    " ON CONFLICT (emfdid, uidvalidity, uid) DO NOTHING RETURNING emmsid, uid";

/// The values of one message's row, owned so the text is NUL-free.
struct Values<'a> {
    uid: i64,
    message_id: Option<String>,
    subject: Option<String>,
    from_addr: Option<String>,
    to_addrs: Option<String>,
    size: i64,
    flags: String,
    partial: i64,
    m: &'a NewMessage,
}

impl<'a> Values<'a> {
    fn of(m: &'a NewMessage) -> Values<'a> {
        let owned = |s: &Option<String>| opt_text(s.as_deref()).map(|c| c.into_owned());
        Values {
            uid: i64::from(m.uid),
            message_id: owned(&m.summary.message_id),
            subject: owned(&m.summary.subject),
            from_addr: owned(&m.summary.from_addr),
            to_addrs: owned(&m.summary.to_addrs),
            size: i64::from(m.size),
            flags: text(&m.flags).into_owned(),
            partial: i64::from(m.partial),
            m,
        }
    }
}

/// One generation of a folder, inside the transaction of a batch.
struct Generation<'t, 'c> {
    tx: &'t mut Tx<'c>,
    emfdid: i64,
    uidvalidity: i64,
}

impl Generation<'_, '_> {
    /// Stores new messages (one already stored under its UID is left as it
    /// is); returns the rows inserted.
    fn insert(&mut self, batch: &[&NewMessage], now: i64) -> Result<usize> {
        std::thread::scope(|scope| {
            // The search rows are made on another core while the messages
            // go in: the writer is what a first sync waits for.
            let made = scope.spawn(|| content::search_rows(batch));
            let mut stored = Vec::with_capacity(batch.len());
            let mut start = 0;
            while start < batch.len() {
                let mut end = start;
                let mut bytes = 0;
                while end < batch.len() && end - start < ROWS_PER_INSERT {
                    bytes += batch[end].raw.len();
                    end += 1;
                    if bytes >= BYTES_PER_INSERT {
                        break;
                    }
                }
                stored.extend(self.insert_rows(&batch[start..end], now)?);
                start = end;
            }
            let made = made.join().map_err(|_| {
                Error::Unusable(format!(
                    "making the search rows of folder {} panicked",
                    self.emfdid
                ))
            })?;
            // Their attachments and search rows, in the same transaction.
            content::insert(self.tx, batch, made, &stored)?;
            Ok(stored.len())
        })
    }

    /// Inserts `rows`; the (`emmsid`, UID) of those stored.
    fn insert_rows(&mut self, rows: &[&NewMessage], now: i64) -> Result<Vec<(i64, u32)>> {
        let values: Vec<Values<'_>> = rows.iter().map(|m| Values::of(m)).collect();
        let mut sql = String::from(INSERT_HEAD);
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(rows.len() * 14);
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let n = i * 14;
            sql.push('(');
            for k in 1..=14 {
                if k > 1 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", n + k));
            }
            sql.push(')');
            params.extend_from_slice(&[
                &self.emfdid,
                &self.uidvalidity,
                &v.uid,
                &v.message_id,
                &v.subject,
                &v.from_addr,
                &v.to_addrs,
                &v.m.summary.date_at,
                &v.m.internal_date_at,
                &v.size,
                &v.flags,
                &v.partial,
                &now,
                &v.m.raw,
            ]);
        }
        sql.push_str(INSERT_TAIL);
        let first = rows.first().map_or(0, |m| m.uid);
        let stored = self.tx.rows(
            &sql,
            &params,
            format!(
                "store {} message(s) from uid {first} of folder {}",
                rows.len(),
                self.emfdid
            ),
        )?;
        stored
            .iter()
            .map(|r| Ok((get::<i64>(r, 0)?, get::<i64>(r, 1)? as u32)))
            .collect()
    }

    fn set_flags(&mut self, uid: u32, flags: &str) -> Result<()> {
        let (emfdid, flags) = (self.emfdid, text(flags));
        self.tx.execute(
            "UPDATE email_messages SET flags = $1 WHERE emfdid = $2 AND uidvalidity = $3 AND uid = $4",
            &[&flags, &emfdid, &self.uidvalidity, &i64::from(uid)],
            format!("update flags of uid {uid} in folder {emfdid}"),
        )?;
        Ok(())
    }

    fn expunge(&mut self, uids: &[u32]) -> Result<()> {
        let emfdid = self.emfdid;
        let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
        self.tx.execute(
            "DELETE FROM email_messages WHERE emfdid = $1 AND uidvalidity = $2 AND uid = ANY($3)",
            &[&emfdid, &self.uidvalidity, &uids],
            format!("delete {} message(s) of folder {emfdid}", uids.len()),
        )?;
        Ok(())
    }

    /// A row of an older generation becomes message `uid` of this one.
    fn remap(&mut self, emmsid: i64, uid: u32, flags: &str) -> Result<()> {
        let flags = text(flags);
        self.tx.execute(
            "UPDATE email_messages SET uidvalidity = $1, uid = $2, flags = $3 \
             WHERE emmsid = $4 AND emfdid = $5",
            &[
                &self.uidvalidity,
                &i64::from(uid),
                &flags,
                &emmsid,
                &self.emfdid,
            ],
            format!("re-map message {emmsid} to uid {uid}"),
        )?;
        Ok(())
    }

    /// The whole message for a row stored header-only.
    fn complete(&mut self, uid: u32, raw: &[u8], content: &Content) -> Result<()> {
        let emfdid = self.emfdid;
        let stored = self.tx.row(
            "UPDATE email_messages SET raw = $1, partial = 0 \
             WHERE emfdid = $2 AND uidvalidity = $3 AND uid = $4 RETURNING emmsid",
            &[&raw, &emfdid, &self.uidvalidity, &i64::from(uid)],
            format!("store the whole of uid {uid} in folder {emfdid}"),
        )?;
        if let Some(r) = stored {
            content::replace(self.tx, get(&r, 0)?, content)?;
        }
        Ok(())
    }

    /// Rows of older generations that were not re-mapped are gone.
    fn drop_old_generations(&mut self) -> Result<()> {
        let emfdid = self.emfdid;
        self.tx.execute(
            "DELETE FROM email_messages WHERE emfdid = $1 AND uidvalidity != $2",
            &[&emfdid, &self.uidvalidity],
            format!("drop old generations of folder {emfdid}"),
        )?;
        Ok(())
    }
}

/// `(uid, flags)` of each row.
fn uid_flags(rows: Vec<postgres::Row>) -> Result<Vec<(u32, String)>> {
    rows.iter()
        .map(|r| Ok((get::<i64>(r, 0)? as u32, get(r, 1)?)))
        .collect()
}

/// The UID of each row.
fn uids(rows: Vec<postgres::Row>) -> Result<Vec<u32>> {
    rows.iter().map(|r| Ok(get::<i64>(r, 0)? as u32)).collect()
}

impl Postgres {
    /// Applies `ops` to folder `emfdid` (generation `uidvalidity`) and then
    /// `patch` to the folder, all in one transaction.
    pub fn apply(
        &mut self,
        emfdid: i64,
        uidvalidity: u32,
        ops: &[Op],
        patch: &FolderPatch,
        now: i64,
    ) -> Result<Applied> {
        self.write(|tx| {
            let mut folder = Generation {
                tx,
                emfdid,
                uidvalidity: i64::from(uidvalidity),
            };
            let mut applied = Applied::default();
            let mut i = 0;
            while i < ops.len() {
                // Consecutive inserts go in together.
                let run: Vec<&NewMessage> = ops[i..]
                    .iter()
                    .map_while(|op| match op {
                        Op::Insert(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                if !run.is_empty() {
                    applied.inserted += folder.insert(&run, now)?;
                    i += run.len();
                    continue;
                }
                match &ops[i] {
                    Op::Insert(_) => {}
                    Op::SetFlags { uid, flags } => folder.set_flags(*uid, flags)?,
                    Op::Expunge { uids } => folder.expunge(uids)?,
                    Op::Remap { emmsid, uid, flags } => folder.remap(*emmsid, *uid, flags)?,
                    Op::Complete { uid, raw, content } => folder.complete(*uid, raw, content)?,
                    Op::DropOldGenerations => folder.drop_old_generations()?,
                }
                i += 1;
            }
            apply_patch(folder.tx, emfdid, patch, now)?;
            crate::failpoint::hit("mid-commit");
            Ok(applied)
        })
    }

    /// UIDs stored for the folder's generation, ascending.
    pub fn stored_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>> {
        uids(self.rows(
            "SELECT uid FROM email_messages WHERE emfdid = $1 AND uidvalidity = $2 ORDER BY uid",
            &[&emfdid, &i64::from(uidvalidity)],
            format!("read the uids of folder {emfdid}"),
        )?)
    }

    /// UIDs and flags stored for the generation, ascending by UID.
    pub fn stored_flags(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<(u32, String)>> {
        uid_flags(self.rows(
            "SELECT uid, COALESCE(flags, '') FROM email_messages \
             WHERE emfdid = $1 AND uidvalidity = $2 ORDER BY uid",
            &[&emfdid, &i64::from(uidvalidity)],
            format!("read the flags of folder {emfdid}"),
        )?)
    }

    /// UIDs and flags stored for the generation with `lo <= uid <= hi`.
    pub fn stored_flags_between(
        &self,
        emfdid: i64,
        uidvalidity: u32,
        lo: u32,
        hi: u32,
    ) -> Result<Vec<(u32, String)>> {
        uid_flags(self.rows(
            "SELECT uid, COALESCE(flags, '') FROM email_messages \
             WHERE emfdid = $1 AND uidvalidity = $2 AND uid BETWEEN $3 AND $4 ORDER BY uid",
            &[
                &emfdid,
                &i64::from(uidvalidity),
                &i64::from(lo),
                &i64::from(hi),
            ],
            format!("read the flags of folder {emfdid}"),
        )?)
    }

    /// Rows of generations other than `uidvalidity`.
    pub fn old_generation(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<OldRow>> {
        self.rows(
            "SELECT emmsid, message_id, size FROM email_messages \
             WHERE emfdid = $1 AND uidvalidity != $2",
            &[&emfdid, &i64::from(uidvalidity)],
            format!("read old generations of folder {emfdid}"),
        )?
        .iter()
        .map(|r| {
            Ok(OldRow {
                emmsid: get(r, 0)?,
                message_id: get(r, 1)?,
                size: get::<Option<i64>>(r, 2)?.map(|s| s.clamp(0, u32::MAX as i64) as u32),
            })
        })
        .collect()
    }

    /// UIDs of the generation stored header-only, ascending.
    pub fn partial_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>> {
        uids(self.rows(
            "SELECT uid FROM email_messages \
             WHERE emfdid = $1 AND uidvalidity = $2 AND partial = 1 ORDER BY uid",
            &[&emfdid, &i64::from(uidvalidity)],
            format!("read the partial messages of folder {emfdid}"),
        )?)
    }
}
