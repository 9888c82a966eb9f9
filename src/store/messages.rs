//! `email_messages`: the stored mail, and the batched operations a folder sync
//! commits (rows and the folder's progress in one transaction).

use super::error::{Context, Result};
use super::folders::{apply_patch, FolderPatch};
use super::sqlite::Sqlite;
use crate::message::Summary;
use crate::mime::Content;
use rusqlite::{params, OptionalExtension};

/// Above this size a message's bytes are written into a zeroblob in place.
const LARGE_BLOB: usize = 1 << 20;

fn blob_placeholder(len: usize) -> Result<rusqlite::blob::ZeroBlob> {
    // SQLite's blobs end at 2^31 - 1 bytes.
    i32::try_from(len)
        .map(|l| rusqlite::blob::ZeroBlob(l as u64))
        .map_err(|_| {
            super::Error::Unusable(format!("a message of {len} bytes is too large to store"))
        })
}

/// A message fetched from the server, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub uid: u32,
    pub summary: Summary,
    pub internal_date_at: Option<i64>,
    pub size: u32,
    pub flags: String,
    /// Only the header was fetched (the message is above the size limit).
    pub partial: bool,
    pub raw: Vec<u8>,
    /// Its attachments and readable text (none while `partial`).
    pub content: Content,
}

/// One change to a folder's stored messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store a new message of the folder's current generation (a message
    /// already stored under that UID is left as it is).
    Insert(NewMessage),
    /// The server's flags for a stored message.
    SetFlags { uid: u32, flags: String },
    /// Messages the server no longer has.
    Expunge { uids: Vec<u32> },
    /// A row of an older generation is this message of the current one.
    Remap {
        emmsid: i64,
        uid: u32,
        flags: String,
    },
    /// The whole message for a row stored header-only, with its content.
    Complete {
        uid: u32,
        raw: Vec<u8>,
        content: Content,
    },
    /// The new generation is complete: rows of older ones that were not
    /// re-mapped are gone from the server.
    DropOldGenerations,
}

/// A row of an older generation, a candidate for re-mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldRow {
    pub emmsid: i64,
    pub message_id: Option<String>,
    pub size: Option<u32>,
}

/// One generation of a folder, inside the transaction of a batch.
struct Generation<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    emfdid: i64,
    uidvalidity: i64,
}

impl Generation<'_> {
    /// Stores a new message (one already stored under its UID is left as
    /// it is); returns the rows inserted.
    fn insert(&self, m: &NewMessage, now: i64) -> Result<usize> {
        let (tx, emfdid) = (self.tx, self.emfdid);
        let what = || format!("store message uid {} of folder {emfdid}", m.uid);
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO email_messages (emfdid, uidvalidity, uid, message_id, \
                 subject, from_addr, to_addrs, date_at, internal_date_at, size, \
                 flags, partial, stored_at, raw) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) \
                 ON CONFLICT (emfdid, uidvalidity, uid) DO NOTHING",
            )
            .context("prepare insert")?;
        // A large message goes in as a zeroblob written in place: no second
        // copy for the bound parameter, no record of its full size in memory.
        let large = m.raw.len() > LARGE_BLOB;
        let raw: &dyn rusqlite::ToSql = if large {
            &blob_placeholder(m.raw.len())?
        } else {
            &m.raw
        };
        let n = stmt
            .execute(params![
                emfdid,
                self.uidvalidity,
                m.uid,
                m.summary.message_id,
                m.summary.subject,
                m.summary.from_addr,
                m.summary.to_addrs,
                m.summary.date_at,
                m.internal_date_at,
                m.size,
                m.flags,
                m.partial,
                now,
                raw
            ])
            .context(what())?;
        if n == 1 {
            let emmsid = tx.last_insert_rowid();
            if large {
                self.write_blob(emmsid, &m.raw).context(what())?;
            }
            super::content::insert(tx, emmsid, &m.summary, &m.content)?;
        }
        Ok(n)
    }

    /// Writes `raw` into the zeroblob of row `rowid`.
    fn write_blob(&self, rowid: i64, raw: &[u8]) -> rusqlite::Result<()> {
        self.tx
            .blob_open(rusqlite::MAIN_DB, "email_messages", "raw", rowid, false)
            .and_then(|mut b| b.write_at(raw, 0))
    }

    fn set_flags(&self, uid: u32, flags: &str) -> Result<()> {
        let emfdid = self.emfdid;
        self.tx
            .prepare_cached(
                "UPDATE email_messages SET flags = ? \
                 WHERE emfdid = ? AND uidvalidity = ? AND uid = ?",
            )
            .and_then(|mut s| s.execute(params![flags, emfdid, self.uidvalidity, uid]))
            .context(format!("update flags of uid {uid} in folder {emfdid}"))?;
        Ok(())
    }

    fn expunge(&self, uids: &[u32]) -> Result<()> {
        let emfdid = self.emfdid;
        let mut stmt = self
            .tx
            .prepare_cached(
                "DELETE FROM email_messages \
                 WHERE emfdid = ? AND uidvalidity = ? AND uid = ?",
            )
            .context("prepare delete")?;
        for uid in uids {
            stmt.execute(params![emfdid, self.uidvalidity, uid])
                .context(format!("delete uid {uid} of folder {emfdid}"))?;
        }
        Ok(())
    }

    /// A row of an older generation becomes message `uid` of this one.
    fn remap(&self, emmsid: i64, uid: u32, flags: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE email_messages SET uidvalidity = ?, uid = ?, flags = ? \
                 WHERE emmsid = ? AND emfdid = ?",
            )
            .and_then(|mut s| s.execute(params![self.uidvalidity, uid, flags, emmsid, self.emfdid]))
            .context(format!("re-map message {emmsid} to uid {uid}"))?;
        Ok(())
    }

    /// The whole message for a row stored header-only.
    fn complete(&self, uid: u32, raw: &[u8], content: &Content) -> Result<()> {
        let emfdid = self.emfdid;
        let what = || format!("store the whole of uid {uid} in folder {emfdid}");
        let placeholder = blob_placeholder(raw.len())?;
        let rowid: Option<i64> = self
            .tx
            .prepare_cached(
                "UPDATE email_messages SET raw = ?, partial = 0 \
                 WHERE emfdid = ? AND uidvalidity = ? AND uid = ? RETURNING emmsid",
            )
            .and_then(|mut s| {
                s.query_row(params![placeholder, emfdid, self.uidvalidity, uid], |r| {
                    r.get(0)
                })
                .optional()
            })
            .context(what())?;
        if let Some(rowid) = rowid {
            self.write_blob(rowid, raw).context(what())?;
            super::content::replace(self.tx, rowid, content)?;
        }
        Ok(())
    }

    /// Rows of older generations that were not re-mapped are gone.
    fn drop_old_generations(&self) -> Result<()> {
        self.tx
            .execute(
                "DELETE FROM email_messages WHERE emfdid = ? AND uidvalidity != ?",
                params![self.emfdid, self.uidvalidity],
            )
            .context(format!("drop old generations of folder {}", self.emfdid))?;
        Ok(())
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// New rows inserted.
    pub inserted: usize,
}

impl Sqlite {
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
            let folder = Generation {
                tx,
                emfdid,
                uidvalidity: uidvalidity as i64,
            };
            let mut applied = Applied::default();
            for op in ops {
                match op {
                    Op::Insert(m) => applied.inserted += folder.insert(m, now)?,
                    Op::SetFlags { uid, flags } => folder.set_flags(*uid, flags)?,
                    Op::Expunge { uids } => folder.expunge(uids)?,
                    Op::Remap { emmsid, uid, flags } => folder.remap(*emmsid, *uid, flags)?,
                    Op::Complete { uid, raw, content } => folder.complete(*uid, raw, content)?,
                    Op::DropOldGenerations => folder.drop_old_generations()?,
                }
            }
            apply_patch(tx, emfdid, patch, now)?;
            crate::failpoint::hit("mid-commit");
            Ok(applied)
        })
    }

    /// UIDs stored for the folder's generation, ascending.
    pub fn stored_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT uid FROM email_messages WHERE emfdid = ? AND uidvalidity = ? ORDER BY uid",
            )
            .context("prepare uid list")?;
        let rows = stmt
            .query_map(params![emfdid, uidvalidity], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(format!("read the uids of folder {emfdid}"))?;
        Ok(rows)
    }

    /// UIDs and flags stored for the folder's generation, ascending by UID.
    pub fn stored_flags(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<(u32, String)>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT uid, COALESCE(flags, '') FROM email_messages INDEXED BY email_messages_flags \
                 WHERE emfdid = ? AND uidvalidity = ? ORDER BY uid",
            )
            .context("prepare flag list")?;
        let rows = stmt
            .query_map(params![emfdid, uidvalidity], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .context(format!("read the flags of folder {emfdid}"))?;
        Ok(rows)
    }

    /// UIDs and flags stored for the generation with `lo <= uid <= hi`.
    pub fn stored_flags_between(
        &self,
        emfdid: i64,
        uidvalidity: u32,
        lo: u32,
        hi: u32,
    ) -> Result<Vec<(u32, String)>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT uid, COALESCE(flags, '') FROM email_messages INDEXED BY email_messages_flags \
                 WHERE emfdid = ? AND uidvalidity = ? AND uid BETWEEN ? AND ? ORDER BY uid",
            )
            .context("prepare flag list")?;
        let rows = stmt
            .query_map(params![emfdid, uidvalidity, lo, hi], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .and_then(|rows| rows.collect())
            .context(format!("read the flags of folder {emfdid}"))?;
        Ok(rows)
    }

    /// Rows of generations other than `uidvalidity` (candidates for re-mapping).
    pub fn old_generation(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<OldRow>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT emmsid, message_id, size FROM email_messages \
                 WHERE emfdid = ? AND uidvalidity != ?",
            )
            .context("prepare old generation")?;
        let rows = stmt
            .query_map(params![emfdid, uidvalidity], |r| {
                Ok(OldRow {
                    emmsid: r.get(0)?,
                    message_id: r.get(1)?,
                    size: r
                        .get::<_, Option<i64>>(2)?
                        .map(|s| s.clamp(0, u32::MAX as i64) as u32),
                })
            })
            .and_then(|rows| rows.collect())
            .context(format!("read old generations of folder {emfdid}"))?;
        Ok(rows)
    }

    /// UIDs of the generation stored header-only, ascending.
    pub fn partial_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT uid FROM email_messages INDEXED BY email_messages_partial \
                 WHERE emfdid = ? AND uidvalidity = ? AND partial = 1 ORDER BY uid",
            )
            .context("prepare partial list")?;
        let rows = stmt
            .query_map(params![emfdid, uidvalidity], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .context(format!("read the partial messages of folder {emfdid}"))?;
        Ok(rows)
    }
}
