//! `engine search`: the FTS5 query language over `email_search` (SPEC §14),
//! newest first, with a snippet of the text as the message has it.
//!
//! The query is folded as the index is (ł→l, Ł→L, đ→d, ø→o, ß→ss and
//! the capitals: [`crate::mime::FOLDS`]), so `zazolc` finds `Zażółć`: `unicode61
//! remove_diacritics 2` folds ż, ó, ć itself but leaves letters without a
//! Unicode decomposition alone. A query FTS5 refuses is a [`BadQuery`]
//! with FTS5's reason, never a failure of the store.

use super::error::{Context, Error, Result};
use super::sqlite::Sqlite;
use crate::mime::fold;
use rusqlite::params;
#[cfg(test)]
use std::borrow::Cow;

/// A search.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    /// In the FTS5 query language: words, "phrases", prefix*, subject:word,
    /// AND/OR/NOT, parentheses.
    pub text: &'a str,
    pub account: Option<i64>,
    pub folder: Option<i64>,
    pub limit: u32,
    /// What the snippet puts around each match.
    pub marks: (&'a str, &'a str),
}

/// One message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub emmsid: i64,
    pub acntid: i64,
    pub emfdid: i64,
    /// The folder's name (UTF-8).
    pub folder: String,
    /// The Date field, else the server's arrival time.
    pub date_at: Option<i64>,
    pub from_addr: Option<String>,
    pub subject: Option<String>,
    /// Words around the matches, from the column that matched most.
    pub snippet: String,
}

/// A query FTS5 refuses, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadQuery(pub String);

/// Words of context a snippet keeps.
const SNIPPET_TOKENS: i32 = 16;

/// A query with fewer matches than this has them all sorted by date; one
/// with more is answered by trying the newest messages first.
const FEW: usize = 2000;

/// Messages tried newest first before sorting every match after all.
const MAX_PROBES: usize = 2000;

/// The columns of a hit: `m` a message, `f` its folder, with `email_search`.
const HIT_COLUMNS: &str = "m.emmsid, f.acntid, m.emfdid, f.name, \
     COALESCE(m.date_at, m.internal_date_at), m.from_addr, m.subject, \
     snippet(email_search, -1, ?3, ?4, '…', ?5)";

fn hit(r: &rusqlite::Row<'_>) -> rusqlite::Result<Hit> {
    Ok(Hit {
        emmsid: r.get(0)?,
        acntid: r.get(1)?,
        emfdid: r.get(2)?,
        folder: r.get(3)?,
        date_at: r.get(4)?,
        from_addr: r.get(5)?,
        subject: r.get(6)?,
        snippet: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
    })
}

impl Sqlite {
    /// Nothing to do: the search's plans do not depend on statistics
    /// (`INDEXED BY`, `CROSS JOIN`).
    pub fn refresh_statistics(&mut self) -> Result<()> {
        Ok(())
    }

    /// The messages matching `q`, newest first (by Date, else arrival;
    /// then the last stored), at most `q.limit`.
    ///
    /// FTS5 hands its matches over in `emmsid` order, not by date, and
    /// evaluating a query for one message (`rowid = ?`) costs a fraction of
    /// a millisecond unless it has a prefix (`faktur*` merges every word it
    /// covers each time). So: a query with few matches has them all sorted
    /// by date; one that matches most messages tries the newest ones one by
    /// one until it has enough (a few dozen tries instead of sorting tens
    /// of thousands of matches); the rest (and a prefix query) are
    /// evaluated once and their matches sorted by date. Snippets are made
    /// for the hits kept only (bench/README.md has the times).
    pub fn search(&self, q: &SearchQuery<'_>) -> Result<std::result::Result<Vec<Hit>, BadQuery>> {
        if q.text.trim().is_empty() {
            return Ok(Err(BadQuery("the query is empty".into())));
        }
        let text = fold(q.text).into_owned();
        let prefix = text.contains('*');
        let ids = if prefix {
            None
        } else {
            // The first matches (this also has FTS5 read the query: a bad
            // one is refused here even where nothing could match).
            let first = self
                .conn()
                .prepare_cached(
                    "SELECT rowid FROM email_search WHERE email_search MATCH ?1 LIMIT ?2",
                )
                .context("prepare the search")?
                .query_map(params![text, FEW as i64], |r| r.get::<_, i64>(0))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<i64>>>());
            match first {
                Ok(first) if first.len() < FEW => Some(self.newest_of(&first, q)?),
                // FTS5 goes up the emmsids: the first FEW matches spread
                // over many more messages means one in five or fewer
                // matches, too few to go looking for them one by one.
                Ok(first) if first.last().is_some_and(|&m| m > (FEW * 5) as i64) => None,
                Ok(_) => match self.probe_newest(&text, q) {
                    Ok(Some(hits)) => return Ok(Ok(hits)),
                    Ok(None) => None,
                    Err(e) => return query_error(e),
                },
                Err(e) => return query_error(e),
            }
        };
        let ids = match ids {
            Some(ids) => ids,
            None => match self.newest_of_all(&text, q) {
                Ok(ids) => ids,
                Err(e) => return query_error(e),
            },
        };
        let hits = if prefix {
            self.hits_in_one_pass(&text, &ids, q)
        } else {
            self.hits_one_by_one(&text, &ids, q)
        };
        match hits {
            Ok(hits) => Ok(Ok(hits)),
            Err(e) => query_error(e),
        }
    }

    /// Of the messages `ids`, the newest that pass `q`'s filters.
    fn newest_of(&self, ids: &[i64], q: &SearchQuery<'_>) -> Result<Vec<i64>> {
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        self.conn()
            .prepare_cached(
                "SELECT m.emmsid FROM email_messages m INDEXED BY email_messages_search \
                 CROSS JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE m.emmsid IN (SELECT value FROM json_each(?1)) \
                 AND (?2 IS NULL OR f.acntid = ?2) AND (?3 IS NULL OR m.emfdid = ?3) \
                 ORDER BY COALESCE(m.date_at, m.internal_date_at) DESC, m.emmsid DESC LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![ids, q.account, q.folder, q.limit], |r| r.get(0))?
                    .collect()
            })
            .context("sort the matches")
    }

    /// Every match of `text`, the newest that pass `q`'s filters (the
    /// index drives: CROSS JOIN keeps that order; the dates come from a
    /// covering index, no message row is read).
    fn newest_of_all(&self, text: &str, q: &SearchQuery<'_>) -> rusqlite::Result<Vec<i64>> {
        self.conn()
            .prepare_cached(
                "SELECT m.emmsid FROM email_search \
                 CROSS JOIN email_messages m INDEXED BY email_messages_search ON m.emmsid = email_search.rowid \
                 CROSS JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE email_search MATCH ?1 AND (?2 IS NULL OR f.acntid = ?2) \
                 AND (?3 IS NULL OR m.emfdid = ?3) \
                 ORDER BY COALESCE(m.date_at, m.internal_date_at) DESC, m.emmsid DESC LIMIT ?4",
            )?
            .query_map(params![text, q.account, q.folder, q.limit], |r| r.get(0))?
            .collect()
    }

    /// The newest messages that pass `q`'s filters, tried one by one, until
    /// `q.limit` match; None when [`MAX_PROBES`] tries were not enough.
    /// Newest first is two index scans merged: the messages with a Date
    /// field by it, those without by their arrival.
    fn probe_newest(&self, text: &str, q: &SearchQuery<'_>) -> rusqlite::Result<Option<Vec<Hit>>> {
        let scan = |index: &str, key: &str, which: &str| {
            format!(
                "SELECT {key}, m.emmsid FROM email_messages m INDEXED BY {index} \
                 CROSS JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE m.date_at IS {which} AND (?1 IS NULL OR f.acntid = ?1) \
                 AND (?2 IS NULL OR m.emfdid = ?2) ORDER BY {key} DESC, m.emmsid DESC"
            )
        };
        let mut dated =
            self.conn()
                .prepare_cached(&scan("email_messages_dated", "m.date_at", "NOT NULL"))?;
        let mut undated = self.conn().prepare_cached(&scan(
            "email_messages_undated",
            "m.internal_date_at",
            "NULL",
        ))?;
        let mut a = dated.query(params![q.account, q.folder])?;
        let mut b = undated.query(params![q.account, q.folder])?;
        let next = |rows: &mut rusqlite::Rows<'_>| -> rusqlite::Result<Option<(Option<i64>, i64)>> {
            rows.next()?.map(|r| Ok((r.get(0)?, r.get(1)?))).transpose()
        };
        let (mut head_a, mut head_b) = (next(&mut a)?, next(&mut b)?);
        let mut hits = Vec::new();
        let mut tries = 0;
        while hits.len() < q.limit as usize {
            // The newer of the two heads (no date at all counts as oldest).
            let take_a = match (head_a, head_b) {
                (Some(x), Some(y)) => x >= y,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let emmsid = if take_a {
                let (_, id) = head_a.take().unwrap_or_default();
                head_a = next(&mut a)?;
                id
            } else {
                let (_, id) = head_b.take().unwrap_or_default();
                head_b = next(&mut b)?;
                id
            };
            tries += 1;
            if tries > MAX_PROBES {
                return Ok(None);
            }
            if let Some(h) = self.hit(text, emmsid, q)? {
                hits.push(h);
            }
        }
        Ok(Some(hits))
    }

    /// Message `emmsid` as a hit of `text`, or None when it does not match.
    fn hit(&self, text: &str, emmsid: i64, q: &SearchQuery<'_>) -> rusqlite::Result<Option<Hit>> {
        use rusqlite::OptionalExtension;
        self.conn()
            .prepare_cached(&format!(
                "SELECT {HIT_COLUMNS} FROM email_search \
                 CROSS JOIN email_messages m ON m.emmsid = email_search.rowid \
                 CROSS JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE email_search MATCH ?1 AND email_search.rowid = ?2"
            ))?
            .query_row(
                params![text, emmsid, q.marks.0, q.marks.1, SNIPPET_TOKENS],
                hit,
            )
            .optional()
    }

    /// The hits `ids` (in that order), each on its own.
    fn hits_one_by_one(
        &self,
        text: &str,
        ids: &[i64],
        q: &SearchQuery<'_>,
    ) -> rusqlite::Result<Vec<Hit>> {
        let mut hits = Vec::with_capacity(ids.len());
        for &id in ids {
            // A message deleted in between is simply not there.
            hits.extend(self.hit(text, id, q)?);
        }
        Ok(hits)
    }

    /// The hits `ids` (in that order) from one evaluation of the query: the
    /// unary + keeps the rowid test a filter, not a constraint FTS5 would
    /// evaluate the query again for, once per value.
    fn hits_in_one_pass(
        &self,
        text: &str,
        ids: &[i64],
        q: &SearchQuery<'_>,
    ) -> rusqlite::Result<Vec<Hit>> {
        let wanted = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let mut found: Vec<Hit> = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {HIT_COLUMNS} FROM email_search \
                 CROSS JOIN email_messages m ON m.emmsid = email_search.rowid \
                 CROSS JOIN email_folders f ON f.emfdid = m.emfdid \
                 WHERE email_search MATCH ?1 AND +email_search.rowid IN (SELECT value FROM json_each(?2))"
            ))?
            .query_map(params![text, wanted, q.marks.0, q.marks.1, SNIPPET_TOKENS], hit)?
            .collect::<rusqlite::Result<_>>()?;
        let mut hits = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(i) = found.iter().position(|h| h.emmsid == *id) {
                hits.push(found.swap_remove(i));
            }
        }
        Ok(hits)
    }
}

/// A failed search statement: FTS5's own complaint about the query (a
/// plain SQLITE_ERROR: the statement itself is ours and fixed) is a
/// [`BadQuery`]; anything else (busy, I/O, corruption) fails the store.
fn query_error<T>(e: rusqlite::Error) -> Result<std::result::Result<T, BadQuery>> {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg) if f.code == rusqlite::ErrorCode::Unknown => {
            Ok(Err(BadQuery(
                msg.clone().unwrap_or_else(|| "malformed query".into()),
            )))
        }
        _ => Err(Error::Sql {
            what: "search".into(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::content::fold_sql;
    use super::*;
    use crate::mime::FOLDS;

    #[test]
    fn the_query_fold_and_the_index_fold_agree() {
        let all: String = FOLDS.iter().map(|(c, _)| *c).collect();
        let sample = format!("Zażółć {all} Łódź Øre Straße");
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        let sql: String = conn
            .query_row(concat!("SELECT ", fold_sql!("?1")), [&sample], |r| r.get(0))
            .expect("fold in SQL");
        assert_eq!(sql, fold(&sample));
        assert!(
            matches!(fold("Zażó ascii"), Cow::Borrowed(_)),
            "nothing to fold: no copy"
        );
        for (from, _) in FOLDS {
            assert!(matches!(fold(&format!("a{from}")), Cow::Owned(_)), "{from}");
        }
        assert_eq!(fold("Łódź żółw"), "Lódź żólw");
        assert_eq!(fold("Straße ẞ"), "Strasse SS");
    }

    #[test]
    fn every_way_of_finding_the_newest_gives_the_same_hits() {
        use crate::store::{FolderPatch, NewMessage, Op};
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut store = Sqlite::for_tests(&tmp.path().join("db"));
        store
            .conn()
            .execute_batch(
                "INSERT INTO email_accounts (acntid, email) VALUES (1, 'a@x.pl'), (2, 'b@x.pl');
                 INSERT INTO email_folders (emfdid, acntid, name, imap_name) VALUES
                   (5, 1, 'INBOX', 'INBOX'), (6, 1, 'Faktury', 'Faktury'), (7, 2, 'INBOX', 'INBOX');",
            )
            .expect("folders");
        // 12,000 messages: every one says "wszystkie", every second "polowa"
        // (the tries newest first), every seventh "siodma" (all sorted),
        // a few "rzadkie" (fewer than FEW); dates out of emmsid order.
        let n = 12_000u32;
        let words = |i: u32| {
            let mut w = vec!["wszystkie"];
            if i.is_multiple_of(2) {
                w.push("polowa");
            }
            if i.is_multiple_of(7) {
                w.push("siodma");
            }
            if i.is_multiple_of(997) {
                w.push("rzadkie");
            }
            w.join(" ")
        };
        let date = |i: u32| 1_700_000_000 + ((i as i64 * 7919) % 100_000) * 60;
        let folder_of = |i: u32| [5i64, 6, 7][(i % 3) as usize];
        for emfdid in [5i64, 6, 7] {
            let ops: Vec<Op> = (0..n)
                .filter(|i| folder_of(*i) == emfdid)
                .map(|i| {
                    let raw = format!("Subject: m{i}\r\n\r\n{}\r\n", words(i)).into_bytes();
                    let mut summary = crate::message::summarize(&raw);
                    summary.date_at = (i % 11 != 0).then(|| date(i));
                    Op::Insert(NewMessage {
                        uid: i + 1,
                        summary,
                        internal_date_at: Some(date(i) + 1),
                        size: raw.len() as u32,
                        flags: String::new(),
                        partial: false,
                        content: crate::mime::content(&raw),
                        raw,
                    })
                })
                .collect();
            store
                .apply(emfdid, 1, &ops, &FolderPatch::default(), 1)
                .expect("insert");
        }
        let subjects =
            |text: &str, account: Option<i64>, folder: Option<i64>, limit: u32| -> Vec<String> {
                store
                    .search(&SearchQuery {
                        text,
                        account,
                        folder,
                        limit,
                        marks: ("[", "]"),
                    })
                    .expect("search")
                    .expect("query")
                    .into_iter()
                    .map(|h| h.subject.unwrap_or_default())
                    .collect()
            };
        let expected =
            |word: &str, account: Option<i64>, folder: Option<i64>, limit: usize| -> Vec<String> {
                let mut all: Vec<(i64, u32)> = (0..n)
                    .filter(|i| {
                        words(*i)
                            .split(' ')
                            .any(|w| w.starts_with(word.trim_end_matches('*')))
                    })
                    .filter(|i| folder.is_none_or(|f| folder_of(*i) == f))
                    .filter(|i| account.is_none_or(|a| (folder_of(*i) == 7) == (a == 2)))
                    .map(|i| (if i % 11 != 0 { date(i) } else { date(i) + 1 }, i))
                    .collect();
                // Newest first, then the last stored: emmsids follow the folders' order of insertion.
                let emmsid = |i: u32| {
                    (
                        [5i64, 6, 7]
                            .iter()
                            .position(|f| *f == folder_of(i))
                            .unwrap_or(0),
                        i,
                    )
                };
                all.sort_by(|a, b| b.0.cmp(&a.0).then(emmsid(b.1).cmp(&emmsid(a.1))));
                all.into_iter()
                    .take(limit)
                    .map(|(_, i)| format!("m{i}"))
                    .collect()
            };
        for word in [
            "wszystkie",
            "polowa",
            "siodma",
            "rzadkie",
            "siod*",
            "\"wszystkie polowa\"",
        ] {
            for (account, folder) in [
                (None, None),
                (Some(1), None),
                (None, Some(6)),
                (Some(2), Some(7)),
            ] {
                for limit in [1, 20, 300] {
                    let plain = word
                        .trim_matches('"')
                        .split(' ')
                        .next_back()
                        .unwrap_or(word);
                    assert_eq!(
                        subjects(word, account, folder, limit),
                        expected(plain, account, folder, limit as usize),
                        "{word} {account:?} {folder:?} {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn unicode61_needs_the_fold() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Sqlite::for_tests(&tmp.path().join("db"));
        let c = store.conn();
        let (subject, body) = ("Zażółć gęślą jaźń", "Straße");
        c.execute(
            "INSERT INTO email_search_text (emmsid, subject, body) VALUES (1, ?, ?)",
            [subject, body],
        )
        .expect("insert the text");
        c.execute(
            "INSERT INTO email_search (rowid, subject, body) VALUES (1, ?, ?)",
            [fold(subject), fold(body)],
        )
        .expect("index it");
        let count = |q: &str| -> i64 {
            c.query_row(
                "SELECT COUNT(*) FROM email_search WHERE email_search MATCH ?",
                [q],
                |r| r.get(0),
            )
            .expect("match")
        };
        // The tokenizer folds ż, ó, ć; fold() the ł it leaves alone (CRATES.md).
        assert_eq!(count("zazolc"), 1);
        assert_eq!(count(&fold("zażółć")), 1);
        assert_eq!(count(&fold("strasse")), 1);
        assert_eq!(count(&fold("straße")), 1);
        let snippet: String = c
            .query_row(
                "SELECT snippet(email_search, -1, '[', ']', '…', 8) FROM email_search \
                 WHERE email_search MATCH 'zazolc'",
                [],
                |r| r.get(0),
            )
            .expect("snippet");
        assert_eq!(snippet, "[Zażółć] gęślą jaźń", "the original text");
        c.execute_batch("DELETE FROM email_search_text WHERE emmsid = 1")
            .expect("delete");
        assert_eq!(count("zazolc"), 0);
        c.execute_batch(
            "INSERT INTO email_search(email_search, rank) VALUES ('integrity-check', 0)",
        )
        .expect("the index is consistent");
    }
}
