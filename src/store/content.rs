//! What a stored message adds for the web application (SPEC §14):
//! `email_attachments` (one row per attachment) and `email_search` (the
//! FTS5 index over its subject, addresses and readable text), written in the
//! transaction that stores the message, and removed with it.
//!
//! `email_search` is an FTS5 table whose content lives in
//! `email_search_text` (rowid = `emmsid`): that table holds the text as the
//! message has it, and snippets show it; the index holds the text with
//! ł, đ, ø, ß (and their capitals) folded, because the `unicode61`
//! tokenizer folds only letters with a Unicode decomposition. The engine
//! indexes a text when it stores it (folded in Rust, [`crate::mime::fold`]);
//! triggers take a text out of the index when its row is deleted or changed
//! (folding with SQL's `replace()`, the same letters: a test holds them
//! together), and delete a message's rows with it, whoever deletes it (any
//! connection runs them, the web application's too). A query is folded the
//! same way. Folding changes letters, never where words start or end, so
//! the index's word positions are the original text's and snippets of it
//! come out right.

use super::error::{Context, Result};
use super::sqlite::Sqlite;
#[cfg(doc)]
use super::Store;
use crate::message::Summary;
use crate::mime::{fold, Attachment, Content};
use rusqlite::{params, OptionalExtension, Transaction};

/// SQL folding the letters `unicode61` leaves alone, the same as
/// [`crate::mime::FOLDS`] (a test checks they agree).
macro_rules! fold_sql {
    ($x:literal) => {
        concat!(
            "replace(replace(replace(replace(replace(replace(replace(replace(",
            $x,
            ", 'ł', 'l'), 'Ł', 'L'), 'đ', 'd'), 'Đ', 'D'), 'ø', 'o'), 'Ø', 'O'), 'ß', 'ss'), 'ẞ', 'SS')"
        )
    };
}
#[cfg(test)]
pub(super) use fold_sql;

/// The content migration (SQLite's 4th): the tables, the index, the triggers, and the bookmark of
/// the backfill of messages stored before it (see [`super::backfill`]).
pub(super) const MIGRATION: &str = concat!(
    r#"
CREATE TABLE IF NOT EXISTS email_attachments (
    emattid INTEGER PRIMARY KEY,
    emmsid INTEGER NOT NULL,
    -- The IMAP section of the part: BODY[part] on the server.
    part TEXT NOT NULL,
    filename TEXT,
    content_type TEXT NOT NULL,
    disposition TEXT,
    content_id TEXT,
    -- Of the transfer-decoded bytes.
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS email_attachments_emmsid ON email_attachments (emmsid);
-- "Is this document already registered?"
CREATE INDEX IF NOT EXISTS email_attachments_sha256 ON email_attachments (sha256);

-- The text email_search indexes, as the message has it (snippets show it).
CREATE TABLE IF NOT EXISTS email_search_text (
    emmsid INTEGER PRIMARY KEY,
    subject TEXT,
    from_addr TEXT,
    to_addrs TEXT,
    body TEXT
);
CREATE VIRTUAL TABLE IF NOT EXISTS email_search USING fts5(
    subject, from_addr, to_addrs, body,
    content = 'email_search_text', content_rowid = 'emmsid',
    tokenize = 'unicode61 remove_diacritics 2',
    -- No per-row token counts: hits are ordered by date, not by bm25().
    columnsize = 0
);
-- Index pages the size of the database's (16 KiB), and merges of 8
-- segments at a time: a first sync indexes a fifth faster (bench/README.md).
INSERT INTO email_search (email_search, rank) VALUES ('pgsz', 16000);
INSERT INTO email_search (email_search, rank) VALUES ('automerge', 8);
CREATE TRIGGER IF NOT EXISTS email_search_text_delete AFTER DELETE ON email_search_text BEGIN
    INSERT INTO email_search (email_search, rowid, subject, from_addr, to_addrs, body) VALUES ('delete', OLD.emmsid, "#,
    fold_sql!("OLD.subject"),
    ", ",
    fold_sql!("OLD.from_addr"),
    ", ",
    fold_sql!("OLD.to_addrs"),
    ", ",
    fold_sql!("OLD.body"),
    r#");
END;
CREATE TRIGGER IF NOT EXISTS email_search_text_update AFTER UPDATE ON email_search_text BEGIN
    INSERT INTO email_search (email_search, rowid, subject, from_addr, to_addrs, body) VALUES ('delete', OLD.emmsid, "#,
    fold_sql!("OLD.subject"),
    ", ",
    fold_sql!("OLD.from_addr"),
    ", ",
    fold_sql!("OLD.to_addrs"),
    ", ",
    fold_sql!("OLD.body"),
    r#");
    INSERT INTO email_search (rowid, subject, from_addr, to_addrs, body) VALUES (NEW.emmsid, "#,
    fold_sql!("NEW.subject"),
    ", ",
    fold_sql!("NEW.from_addr"),
    ", ",
    fold_sql!("NEW.to_addrs"),
    ", ",
    fold_sql!("NEW.body"),
    r#");
END;
-- Search hits newest first without reading the messages' rows: their dates
-- by emmsid, and the messages newest first, those with a Date field and
-- those without (by arrival). No index on an expression: SQLite then
-- refuses to write any column of the table in place, and large messages
-- are written so (store/messages.rs).
CREATE INDEX IF NOT EXISTS email_messages_search ON email_messages (emmsid, emfdid, date_at, internal_date_at);
CREATE INDEX IF NOT EXISTS email_messages_dated ON email_messages (date_at DESC, emmsid DESC, emfdid)
    WHERE date_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS email_messages_undated ON email_messages (internal_date_at DESC, emmsid DESC, emfdid)
    WHERE date_at IS NULL;
-- A message's rows go with it, whoever deletes it (an expunge, an old
-- generation, an account removed, the web application).
CREATE TRIGGER IF NOT EXISTS email_messages_content_delete AFTER DELETE ON email_messages BEGIN
    DELETE FROM email_attachments WHERE emmsid = OLD.emmsid;
    DELETE FROM email_search_text WHERE emmsid = OLD.emmsid;
END;

-- The backfill of the messages stored before this migration: every message
-- with after_emmsid < emmsid <= upto_emmsid still waits for its rows.
CREATE TABLE IF NOT EXISTS email_content_backfill (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    after_emmsid INTEGER NOT NULL,
    upto_emmsid INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER
);
INSERT OR IGNORE INTO email_content_backfill (id, after_emmsid, upto_emmsid, total)
    SELECT 1, 0, COALESCE(MAX(emmsid), 0), COUNT(*) FROM email_messages;
"#
);

/// A row of `email_attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub emattid: i64,
    pub emmsid: i64,
    pub part: String,
    pub filename: Option<String>,
    pub content_type: String,
    pub disposition: Option<String>,
    pub content_id: Option<String>,
    pub size: i64,
    pub sha256: String,
}

/// A message's attachments, and whether the list is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttachments {
    pub attachments: Vec<StoredAttachment>,
    /// Stored header-only: its attachments come when it is fetched whole.
    pub partial: bool,
    /// Stored before the content migration and not yet reached by the backfill.
    pub pending: bool,
}

/// Writes the search text and the attachment rows of message `emmsid`,
/// just inserted.
pub(super) fn insert(
    tx: &Transaction<'_>,
    emmsid: i64,
    summary: &Summary,
    content: &Content,
) -> Result<()> {
    let what = || format!("store the attachments and search text of message {emmsid}");
    let columns = [
        summary.subject.as_deref(),
        summary.from_addr.as_deref(),
        summary.to_addrs.as_deref(),
    ];
    index(tx, emmsid, columns, content).context(what())?;
    attachments(tx, emmsid, &content.attachments, false).context(what())
}

/// Replaces the search text and the attachment rows of message `emmsid`
/// (stored whole now, after its header alone).
pub(super) fn replace(tx: &Transaction<'_>, emmsid: i64, content: &Content) -> Result<()> {
    let what = || format!("store the attachments and search text of message {emmsid}");
    tx.prepare_cached("DELETE FROM email_search_text WHERE emmsid = ?")
        .and_then(|mut s| s.execute([emmsid]))
        .context(what())?;
    fill(tx, emmsid, content).context(what())?;
    attachments(tx, emmsid, &content.attachments, true).context(what())
}

/// Gives message `emmsid` its search text unless it has one (or is gone),
/// the summary columns read from its row. True when it was written.
pub(super) fn fill(tx: &Transaction<'_>, emmsid: i64, content: &Content) -> rusqlite::Result<bool> {
    type Columns = (Option<String>, Option<String>, Option<String>);
    let summary: Option<Columns> = tx
        .prepare_cached(
            "SELECT subject, from_addr, to_addrs FROM email_messages m WHERE m.emmsid = ?1 \
             AND NOT EXISTS (SELECT 1 FROM email_search_text t WHERE t.emmsid = ?1)",
        )?
        .query_row([emmsid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((subject, from, to)) = summary else {
        return Ok(false);
    };
    let columns = [subject.as_deref(), from.as_deref(), to.as_deref()];
    index(tx, emmsid, columns, content)?;
    Ok(true)
}

/// Inserts the search text of `emmsid` (subject, from, to, and the body
/// from `content`) as it is, and into the index folded (the body comes
/// folded from the parsing thread: [`Store::make_content`]). (The
/// triggers fold the same in SQL when a row is deleted or changed; folding
/// in Rust, once, costs a fraction of SQL's eight `replace()` passes over
/// every text.)
fn index(
    tx: &Transaction<'_>,
    emmsid: i64,
    summary: [Option<&str>; 3],
    content: &Content,
) -> rusqlite::Result<()> {
    let [subject, from, to] = summary;
    tx.prepare_cached(
        "INSERT INTO email_search_text (emmsid, subject, from_addr, to_addrs, body) \
         VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![emmsid, subject, from, to, content.text])?;
    let [subject, from, to] = summary.map(|c| c.map(fold));
    let body = content.indexed();
    tx.prepare_cached(
        "INSERT INTO email_search (rowid, subject, from_addr, to_addrs, body) \
         VALUES (?, ?, ?, ?, ?)",
    )?
    .execute(params![emmsid, subject, from, to, body])?;
    Ok(())
}

/// Inserts `list` as the attachments of `emmsid` (after deleting what it
/// had, when `replace`).
pub(super) fn attachments(
    tx: &Transaction<'_>,
    emmsid: i64,
    list: &[Attachment],
    replace: bool,
) -> rusqlite::Result<()> {
    if replace {
        tx.prepare_cached("DELETE FROM email_attachments WHERE emmsid = ?")?
            .execute([emmsid])?;
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO email_attachments (emmsid, part, filename, content_type, disposition, \
         content_id, size, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for a in list {
        insert.execute(params![
            emmsid,
            a.part,
            a.filename,
            a.content_type,
            a.disposition,
            a.content_id,
            i64::try_from(a.size).unwrap_or(i64::MAX),
            a.sha256
        ])?;
    }
    Ok(())
}

const ATTACHMENT_COLUMNS: &str = "emattid, emmsid, part, filename, content_type, disposition, \
     content_id, size, sha256";

fn attachment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAttachment> {
    Ok(StoredAttachment {
        emattid: r.get(0)?,
        emmsid: r.get(1)?,
        part: r.get(2)?,
        filename: r.get(3)?,
        content_type: r.get(4)?,
        disposition: r.get(5)?,
        content_id: r.get(6)?,
        size: r.get(7)?,
        sha256: r.get(8)?,
    })
}

impl Sqlite {
    /// The attachments of message `emmsid` in part order; None when there
    /// is no such message.
    pub fn attachments(&self, emmsid: i64) -> Result<Option<MessageAttachments>> {
        let what = || format!("read the attachments of message {emmsid}");
        let state: Option<(bool, bool)> = self
            .conn()
            .query_row(
                "SELECT m.partial, \
                 NOT EXISTS (SELECT 1 FROM email_search_text t WHERE t.emmsid = m.emmsid) \
                 FROM email_messages m WHERE m.emmsid = ?",
                [emmsid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .context(what())?;
        let Some((partial, unindexed)) = state else {
            return Ok(None);
        };
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {ATTACHMENT_COLUMNS} FROM email_attachments WHERE emmsid = ? ORDER BY emattid"
            ))
            .context(what())?;
        let attachments = stmt
            .query_map([emmsid], attachment_row)
            .and_then(|rows| rows.collect())
            .context(what())?;
        Ok(Some(MessageAttachments {
            attachments,
            partial,
            pending: unindexed && !partial,
        }))
    }

    /// Attachment `emattid` and the raw message it is part of; None when
    /// there is no such attachment.
    pub fn attachment(&self, emattid: i64) -> Result<Option<(StoredAttachment, Vec<u8>)>> {
        let what = || format!("read attachment {emattid}");
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {ATTACHMENT_COLUMNS} FROM email_attachments WHERE emattid = ?"),
                [emattid],
                attachment_row,
            )
            .optional()
            .context(what())?;
        let Some(row) = row else {
            return Ok(None);
        };
        let raw: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT raw FROM email_messages WHERE emmsid = ?",
                [row.emmsid],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()
            .context(what())?
            .flatten();
        Ok(raw.map(|raw| (row, raw)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FolderPatch, NewMessage, Op, SearchQuery};
    use super::*;
    use crate::message::summarize;

    const RAW: &str = "From: Jan <jan@firma.pl>\r\nTo: anna@firma.pl\r\n\
        Subject: Faktura\r\nDate: Sun, 29 Nov 2026 08:00:00 +0100\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\r\nZażółć gęślą jaźń\r\n--b\r\n\
        Content-Type: application/pdf; name=faktura.pdf\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n";

    fn message(uid: u32, raw: &[u8], partial: bool) -> NewMessage {
        let stored = if partial {
            raw[..crate::message::header_end(raw).1].to_vec()
        } else {
            raw.to_vec()
        };
        NewMessage {
            uid,
            summary: summarize(raw),
            internal_date_at: None,
            size: raw.len() as u32,
            flags: String::new(),
            partial,
            content: if partial {
                Content::default()
            } else {
                crate::mime::content(raw)
            },
            raw: stored,
        }
    }

    fn found(store: &Sqlite, q: &str) -> Vec<i64> {
        store
            .search(&SearchQuery {
                text: q,
                account: None,
                folder: None,
                limit: 50,
                marks: ("[", "]"),
            })
            .expect("search")
            .expect("query")
            .iter()
            .map(|h| h.emmsid)
            .collect()
    }

    fn count(store: &Sqlite, table: &str) -> i64 {
        store
            .conn()
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    fn id_of(store: &Sqlite, uid: u32) -> i64 {
        store
            .conn()
            .query_row(
                "SELECT emmsid FROM email_messages WHERE uid = ?",
                [uid],
                |r| r.get(0),
            )
            .expect("emmsid")
    }

    #[test]
    fn rows_come_and_go_with_the_message() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = Sqlite::for_tests(&tmp.path().join("db"));
        store
            .conn()
            .execute_batch(
                "INSERT INTO email_accounts (acntid, email) VALUES (1, 'a@x.pl');
                 INSERT INTO email_folders (emfdid, acntid, name, imap_name) VALUES (5, 1, 'INBOX', 'INBOX');",
            )
            .expect("account and folder");
        let (raw, patch) = (RAW.as_bytes(), FolderPatch::default());
        let ops = [
            Op::Insert(message(1, raw, false)),
            Op::Insert(message(2, raw, true)),
        ];
        store.apply(5, 7, &ops, &patch, 100).expect("insert");
        let (whole, partial) = (id_of(&store, 1), id_of(&store, 2));

        let listed = store.attachments(whole).expect("read").expect("message");
        assert!(!listed.partial && !listed.pending);
        let a = &listed.attachments[..];
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].part.as_str(), a[0].filename.as_deref(), a[0].size),
            ("2", Some("faktura.pdf"), 4)
        );
        let (row, raw_back) = store
            .attachment(a[0].emattid)
            .expect("read")
            .expect("found");
        assert_eq!((row.emmsid, raw_back.as_slice()), (whole, raw));
        // The partial message: searchable by its header, no rows yet.
        let p = store.attachments(partial).expect("read").expect("message");
        assert!(p.partial && p.attachments.is_empty());
        assert_eq!(found(&store, "zazolc"), vec![whole]);
        assert_eq!(found(&store, "subject:faktura").len(), 2);

        // Stored whole: its rows and its text come.
        let complete = Op::Complete {
            uid: 2,
            raw: raw.to_vec(),
            content: crate::mime::content(raw),
        };
        store
            .apply(5, 7, &[complete], &patch, 101)
            .expect("complete");
        assert_eq!(
            store
                .attachments(partial)
                .expect("read")
                .expect("message")
                .attachments
                .len(),
            1
        );
        assert_eq!(found(&store, "zazolc").len(), 2);

        // Expunged: gone from both tables and from the index.
        store
            .apply(5, 7, &[Op::Expunge { uids: vec![1] }], &patch, 102)
            .expect("expunge");
        assert_eq!(found(&store, "zazolc"), vec![partial]);
        assert!(store.attachment(a[0].emattid).expect("read").is_none());
        // An old generation dropped, then the account removed.
        store
            .apply(5, 8, &[Op::Insert(message(3, raw, false))], &patch, 103)
            .expect("new generation");
        store
            .apply(5, 8, &[Op::DropOldGenerations], &patch, 104)
            .expect("drop");
        assert_eq!(found(&store, "zazolc"), vec![id_of(&store, 3)]);
        assert!(store.remove_account(1).expect("remove"));
        assert_eq!(found(&store, "zazolc"), Vec::<i64>::new());
        for table in ["email_attachments", "email_search_text", "email_messages"] {
            assert_eq!(count(&store, table), 0, "{table}");
        }
        store
            .conn()
            .execute_batch(
                "INSERT INTO email_search(email_search, rank) VALUES ('integrity-check', 0)",
            )
            .expect("the index is consistent");
    }

    #[test]
    fn the_backfill_gives_older_messages_the_rows_a_sync_gives() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = Sqlite::for_tests(&tmp.path().join("db"));
        let raw = RAW.as_bytes();
        let ops: Vec<Op> = (1..=25)
            .map(|uid| Op::Insert(message(uid, raw, uid == 7)))
            .collect();
        store
            .apply(5, 7, &ops, &FolderPatch::default(), 100)
            .expect("insert");
        let snapshot = |s: &Sqlite| -> Vec<(i64, String, String)> {
            s.conn()
                .prepare(
                    "SELECT t.emmsid, COALESCE(t.body, ''), COALESCE(group_concat(a.part || ' ' || a.sha256), '') \
                     FROM email_search_text t LEFT JOIN email_attachments a USING (emmsid) \
                     GROUP BY t.emmsid ORDER BY t.emmsid",
                )
                .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
                .expect("snapshot")
        };
        // What a sync gives a whole message, for every one of them.
        let whole = snapshot(&store)[0].clone();
        let synced: Vec<(i64, String, String)> = (1..=25)
            .map(|id| (id, whole.1.clone(), whole.2.clone()))
            .collect();
        // As if they had been stored before the content migration.
        store
            .conn()
            .execute_batch(
                "DELETE FROM email_attachments; DELETE FROM email_search_text;
                 UPDATE email_content_backfill SET after_emmsid = 0, done = 0,
                   upto_emmsid = (SELECT MAX(emmsid) FROM email_messages),
                   total = (SELECT COUNT(*) FROM email_messages), finished_at = NULL;",
            )
            .expect("rewind");
        assert!(!store.backfill_state().expect("state").finished());
        // A message completed before the backfill reaches it keeps its rows.
        let seventh = id_of(&store, 7);
        let complete = Op::Complete {
            uid: 7,
            raw: raw.to_vec(),
            content: crate::mime::content(raw),
        };
        store
            .apply(5, 7, &[complete], &FolderPatch::default(), 101)
            .expect("complete");
        let mut after = 0;
        loop {
            let batch = store.backfill_batch(after, 4, 1 << 20).expect("batch");
            let Some(last) = batch.last().map(|m| m.emmsid) else {
                break;
            };
            let work: Vec<(i64, Content)> = batch
                .iter()
                .map(|m| (m.emmsid, crate::mime::content(&m.raw)))
                .collect();
            store.backfill_write(&work, last, 200).expect("write");
            after = last;
        }
        let state = store.backfill_state().expect("state");
        assert!(state.finished());
        assert_eq!((state.done, state.total), (25, 25));
        assert_eq!(snapshot(&store), synced);
        assert_eq!(
            store
                .attachments(seventh)
                .expect("read")
                .expect("message")
                .attachments
                .len(),
            1
        );
    }
}
