//! The SQLite store (`data/engine.sqlite`, the default): one connection and
//! its migrations. The tables' SQL is in the sibling files (`accounts.rs`,
//! `folders.rs`, ...), each an `impl Sqlite`; the WAL and its checkpoints in
//! `wal.rs`.
//!
//! WAL mode, so the web app reads and queues mail while a run writes; a busy
//! timeout so short overlaps wait instead of failing; migrations by
//! `user_version`, applied by every command before anything else. Values are
//! always bound as parameters, never formatted into SQL.

use super::error::{Context, Error, Result};
use super::schema;
use crate::layout::restrict_file;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// How long a statement waits for another writer (the web app, a second
/// engine command) before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest WAL kept after a checkpoint (a little over the auto-checkpoint
/// size of 4096 pages).
const WAL_KEEP: u64 = 80 << 20;

/// Page size of a newly created database: large messages are stored as
/// overflow chains, and bigger pages make those chains shorter.
const PAGE_SIZE: u32 = 16384;

/// One connection to the SQLite database.
#[derive(Debug)]
pub struct Sqlite {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// Set when a write waited the whole busy timeout in vain: later writes
    /// fail at once with this message instead of waiting again each.
    locked_out: Option<String>,
    /// Bytes in the WAL after the last commit (set by the bulk writer's hook).
    pub(super) wal_bytes: Option<Arc<AtomicU64>>,
    /// Bytes the bulk writer's commits added to the WAL (after its first).
    pub(super) written: Option<Arc<AtomicU64>>,
}

impl Sqlite {
    /// Opens (creating if needed) the database file, without migrating.
    pub fn connect(path: &Path) -> Result<Sqlite> {
        let open_error = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .context("set the busy timeout")?;
        let fresh: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(open_error)?;
        if fresh == 0 {
            conn.pragma_update(None, "page_size", PAGE_SIZE)
                .context("set the page size")?;
        }
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .context(format!("set WAL mode on {}", path.display()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Unusable(format!(
                "{}: cannot switch to WAL mode (got {mode})",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("set synchronous")?;
        // Checkpoint in larger steps than the default 1000 pages: fewer fsyncs
        // during a first sync that writes hundreds of megabytes.
        conn.pragma_update(None, "wal_autocheckpoint", 4096)
            .context("set wal_autocheckpoint")?;
        // Closing must not checkpoint (and fsync) on every small run: the WAL
        // is folded back when it has grown (the end of a bulk write, and
        // SQLite's auto-checkpoint during large writes).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .context("configure the connection")?;
        // Keep a WAL that has grown to the auto-checkpoint size: rewriting it
        // in place is much cheaper than growing a truncated one again.
        conn.pragma_update(None, "journal_size_limit", WAL_KEEP as i64)
            .context("set journal_size_limit")?;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            restrict_file(Path::new(&p));
        }
        Ok(Sqlite {
            conn,
            path: path.to_path_buf(),
            locked_out: None,
            wal_bytes: None,
            written: None,
        })
    }

    /// Why writes are refused for the rest of this connection's life: a
    /// write waited the whole busy timeout for another program's lock.
    pub fn locked_out(&self) -> Option<&str> {
        self.locked_out.as_deref()
    }

    /// Applies the migrations the database has not seen, idempotently.
    pub fn migrate(&self) -> Result<()> {
        let target = schema::MIGRATIONS.len() as i64;
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .context("read the schema version")?;
        if current == target {
            return Ok(());
        }
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .context("begin migration")?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let current: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .context("read the schema version")?;
        if current > target {
            return Err(Error::Unusable(format!(
                "{}: schema version {current} is newer than this engine knows ({target}); upgrade the engine",
                self.path.display()
            )));
        }
        if current == 0 {
            // Tables the web application created itself (SPEC §5 is a public
            // interface) get the columns the engine keeps besides the required ones.
            schema::adopt_tables(&tx)?;
        }
        for (i, m) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
            schema::add_columns(&tx, m.columns)?;
            tx.execute_batch(m.sql)
                .context(format!("apply migration {}", i + 1))?;
        }
        if current == 0 {
            schema::ensure_unique_keys(&tx)?;
        }
        tx.pragma_update(None, "user_version", target)
            .context("set the schema version")?;
        tx.commit().context("commit migrations")?;
        Ok(())
    }

    /// No run holds an account on SQLite: one host does all the work.
    pub fn holders(&self) -> Result<std::collections::HashMap<i64, String>> {
        Ok(std::collections::HashMap::new())
    }

    /// Runs `f` inside one immediate (write-locking) transaction.
    ///
    /// Another program holding the write lock past `BUSY_TIMEOUT` (a web
    /// request stuck in a transaction) would otherwise cost every later
    /// write of the run the same wait: after the first such failure, writes
    /// fail at once ([`Sqlite::locked_out`]) and the run stops.
    pub(super) fn write<T>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        if let Some(why) = &self.locked_out {
            return Err(Error::LockedOut(why.clone()));
        }
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                let why = format!(
                    "{} is locked by another program (the web application or another engine \
                     command) for longer than {} s: {e}",
                    self.path.display(),
                    BUSY_TIMEOUT.as_secs()
                );
                self.locked_out = Some(why.clone());
                return Err(Error::LockedOut(why));
            }
            Err(e) => return Err(e).context("begin a write transaction"),
        };
        let out = f(&tx)?;
        tx.commit().context("commit")?;
        Ok(out)
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .context("integrity check")
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
impl Sqlite {
    /// A migrated database at `path`, for the store's own tests.
    pub(super) fn for_tests(path: &Path) -> Sqlite {
        let store = Sqlite::connect(path).expect("open the test database");
        store.migrate().expect("migrate the test database");
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_migrated(path: &Path) -> Result<Sqlite> {
        let store = Sqlite::connect(path)?;
        store.migrate()?;
        Ok(store)
    }

    #[test]
    fn migrations_are_idempotent_and_set_wal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.sqlite");
        let store = open_migrated(&path).expect("open");
        store.migrate().expect("again");
        drop(store);
        let store = open_migrated(&path).expect("reopen");
        let version: i64 = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        assert_eq!(store.integrity_check().expect("check"), "ok");
    }

    #[test]
    fn tables_the_web_app_created_are_adopted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.sqlite");
        {
            let c = Connection::open(&path).expect("create");
            c.execute_batch(
                "CREATE TABLE email_folders (emfdid INTEGER PRIMARY KEY, acntid INTEGER, \
                 name TEXT, imap_name TEXT, special TEXT, priority TEXT);
                 INSERT INTO email_folders (acntid, name, imap_name) VALUES (1, 'INBOX', 'INBOX');
                 CREATE TABLE email_messages (emmsid INTEGER PRIMARY KEY, emfdid INTEGER, \
                 uidvalidity INTEGER, uid INTEGER, raw BLOB);",
            )
            .expect("web app schema");
        }
        let store = open_migrated(&path).expect("open adopts the tables");
        let (last_uid, backfill): (i64, Option<i64>) = store
            .conn()
            .query_row(
                "SELECT last_uid, backfill_below FROM email_folders",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("new columns with their defaults");
        assert_eq!((last_uid, backfill), (0, None));
        // the unique keys the upserts need
        store
            .conn()
            .execute_batch(
                "INSERT INTO email_messages (emfdid, uidvalidity, uid, partial) VALUES (1, 1, 1, 0) \
                 ON CONFLICT (emfdid, uidvalidity, uid) DO NOTHING;
                 INSERT OR IGNORE INTO email_folders (acntid, name, imap_name) VALUES (1, 'INBOX', 'INBOX');",
            )
            .expect("upserts");
        let n: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM email_folders", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 1);
        drop(store);
        open_migrated(&path).expect("reopen");
    }

    #[test]
    fn a_lock_held_past_the_busy_timeout_refuses_later_writes_at_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.sqlite");
        let mut store = open_migrated(&path).expect("open");
        store
            .conn
            .busy_timeout(Duration::from_millis(50))
            .expect("short busy timeout");
        let other = Connection::open(&path).expect("another program");
        other.execute_batch("BEGIN IMMEDIATE").expect("its lock");
        let err = store.touch_session(1, 100).expect_err("locked");
        assert!(
            err.to_string().contains("locked by another program"),
            "{err}"
        );
        assert!(err.to_string().contains("engine.sqlite"), "{err}");
        assert!(store.locked_out().is_some());
        other.execute_batch("ROLLBACK").expect("released");
        // The run stops rather than wait again: refused without trying.
        let again = store.touch_session(1, 100).expect_err("still refused");
        assert_eq!(again.to_string(), err.to_string());
        // The next run's connection writes.
        let mut next = open_migrated(&path).expect("reopen");
        next.touch_session(1, 100).expect("next run writes");
        assert!(next.locked_out().is_none());
    }

    #[test]
    fn newer_schema_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("engine.sqlite");
        let store = open_migrated(&path).expect("open");
        store
            .conn()
            .pragma_update(None, "user_version", 999)
            .expect("bump");
        drop(store);
        let err = open_migrated(&path).expect_err("must refuse");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn required_columns_exist() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = open_migrated(&tmp.path().join("db")).expect("open");
        let required: &[(&str, &[&str])] = &[
            ("user_sessions", &["usrid", "last_activity_at"]),
            (
                "email_accounts",
                &[
                    "acntid",
                    "usrid",
                    "email",
                    "imap_host",
                    "imap_port",
                    "imap_security",
                    "imap_login",
                    "imap_password",
                    "smtp_host",
                    "smtp_port",
                    "smtp_security",
                    "smtp_login",
                    "smtp_password",
                    "active",
                    "last_error",
                    "last_error_at",
                ],
            ),
            (
                "email_folders",
                &[
                    "emfdid",
                    "acntid",
                    "name",
                    "imap_name",
                    "special",
                    "priority",
                    "uidvalidity",
                    "last_uid",
                    "highestmodseq",
                    "last_recent_sync_at",
                    "last_full_sync_at",
                    "removed_at",
                    "last_error",
                ],
            ),
            (
                "email_messages",
                &[
                    "emmsid",
                    "emfdid",
                    "uidvalidity",
                    "uid",
                    "message_id",
                    "subject",
                    "from_addr",
                    "to_addrs",
                    "date_at",
                    "internal_date_at",
                    "size",
                    "flags",
                    "partial",
                    "raw",
                ],
            ),
            (
                "email_outbox",
                &[
                    "emoid",
                    "acntid",
                    "raw",
                    "mail_from",
                    "rcpt_to",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "last_error",
                    "created_at",
                    "sent_at",
                ],
            ),
        ];
        for (table, columns) in required {
            let mut stmt = store
                .conn()
                .prepare(&format!("PRAGMA table_info({table})"))
                .expect("prepare");
            let have: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(1))
                .expect("query")
                .collect::<std::result::Result<_, _>>()
                .expect("rows");
            for c in *columns {
                assert!(have.iter().any(|h| h == c), "{table}.{c} missing");
            }
        }
    }
}
