//! The database: the public interface shared with the web application
//! (SPEC §5), behind one seam. Everything outside this module reaches it
//! through [`Store`] and the plain data types below; all SQL, every SQLite
//! and PostgreSQL type, lives under it.
//!
//! Two backends: SQLite (`data/engine.sqlite`, the default: `sqlite.rs` and
//! the sibling files, each an `impl Sqlite`) and PostgreSQL (`BG_DATABASE_URL`,
//! SPEC §13: `pg/`). [`Store`] is an enum of the two connections; each of
//! its methods says the same thing to either (`docs/design.md` says why an
//! enum and not a trait).

mod accounts;
mod backfill;
mod content;
mod error;
mod folders;
mod messages;
mod outbox;
mod pg;
mod schema;
mod search;
mod sessions;
mod sqlite;
mod wal;

pub use accounts::{Account, AccountChange, AuthKind, NewAccount, OAuthColumns, SETTABLE};
pub use backfill::{BackfillState, Unfilled};
pub use content::{MessageAttachments, StoredAttachment};
pub use error::{Error, Result};
pub use folders::{discovery_changes_nothing, Discovered, Folder, FolderPatch, Priority};
pub use messages::{Applied, NewMessage, OldRow, Op};
pub use outbox::{AttemptRecord, OutboxRow, OutboxState, RcptState, SentCopy};
pub use pg::{Leases, PgTarget, LOCK_CLASS};
pub use search::{BadQuery, Hit, SearchQuery};
pub use sessions::Session;
pub use sqlite::BUSY_TIMEOUT;

use crate::mime::Content;
use pg::Postgres;
use sqlite::Sqlite;
use std::path::PathBuf;

/// Where the database is. Every connection of a run is opened from it.
#[derive(Debug, Clone)]
pub enum Location {
    /// The SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<PgTarget>),
}

impl Location {
    /// The SQLite file at `path`.
    pub fn sqlite(path: PathBuf) -> Location {
        Location::Sqlite(path)
    }

    /// The install's database: `BACKPROC_DATABASE_URL` when set, else
    /// `BG_DATABASE_URL` of `config.inc`; `''` means `data/engine.sqlite`.
    pub fn of(layout: &crate::layout::Layout, config: &crate::config::Config) -> Result<Location> {
        let url = std::env::var("BACKPROC_DATABASE_URL")
            .ok()
            .unwrap_or_else(|| config.database_url.clone());
        if url.trim().is_empty() {
            return Ok(Location::Sqlite(layout.db_path()));
        }
        let timeout = std::time::Duration::from_secs(config.io_timeout.max(1));
        Ok(Location::Postgres(Box::new(
            PgTarget::parse(url.trim())?.with(config.tls_ca_file.clone(), timeout),
        )))
    }

    /// The database for people: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(t) => t.describe(),
        }
    }
}

/// One connection to the database.
pub struct Store(Db);

enum Db {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Db::Sqlite(s) => f.debug_tuple("Store::Sqlite").field(s).finish(),
            Db::Postgres(p) => f
                .debug_tuple("Store::Postgres")
                .field(&p.describe())
                .finish(),
        }
    }
}

/// The run's bulk writing (SQLite: the WAL's checkpointer thread).
pub struct Bulk(Option<wal::Bulk>);

impl Store {
    /// Opens (creating if needed) the database and applies pending
    /// migrations: what every command does first. On PostgreSQL its
    /// commits wait for the disk.
    pub fn open(at: &Location) -> Result<Store> {
        Store::migrated(Store::with(at, false)?)
    }

    /// [`Store::open`] for a run's own connection: on PostgreSQL its
    /// commits (holders, the backfill) do not wait for the disk.
    pub fn open_for_run(at: &Location) -> Result<Store> {
        Store::migrated(Store::with(at, true)?)
    }

    /// Opens without migrating: for the extra connections of a run, opened
    /// after the main one migrated (on PostgreSQL, commits that do not
    /// wait for the disk unless [`Store::set_durable`]).
    pub fn connect(at: &Location) -> Result<Store> {
        Store::with(at, true)
    }

    fn with(at: &Location, relaxed: bool) -> Result<Store> {
        Ok(Store(match at {
            Location::Sqlite(path) => Db::Sqlite(Sqlite::connect(path)?),
            Location::Postgres(t) => Db::Postgres(Box::new(Postgres::connect(t, relaxed)?)),
        }))
    }

    fn migrated(store: Store) -> Result<Store> {
        match &store.0 {
            Db::Sqlite(s) => s.migrate()?,
            Db::Postgres(p) => p.migrate()?,
        }
        Ok(store)
    }

    /// Why writes are refused for the rest of this connection's life
    /// (SQLite: another program held the write lock past the busy timeout).
    pub fn locked_out(&self) -> Option<&str> {
        match &self.0 {
            Db::Sqlite(s) => s.locked_out(),
            Db::Postgres(p) => p.locked_out(),
        }
    }

    /// Whether writes are refused because `BG_DATABASE_URL` leads through
    /// a pooler that moved this connection to another session
    /// ([`Error::Pooled`]).
    pub fn pooled(&self) -> bool {
        match &self.0 {
            Db::Sqlite(_) => false,
            Db::Postgres(p) => p.pooled(),
        }
    }

    /// Makes this connection the run's only bulk writer until
    /// [`Store::finish_bulk`].
    pub fn start_bulk(&mut self) -> std::io::Result<Bulk> {
        match &mut self.0 {
            Db::Sqlite(s) => s.start_bulk().map(|b| Bulk(Some(b))),
            Db::Postgres(_) => Ok(Bulk(None)),
        }
    }

    /// Ends bulk writing.
    pub fn finish_bulk(&mut self, bulk: Bulk) {
        if let (Db::Sqlite(s), Some(b)) = (&mut self.0, bulk.0) {
            s.finish_bulk(b);
        }
    }

    /// How this store wants a message's attachments and text made from its
    /// raw bytes before the writer takes it: a plain function, for the
    /// thread that parses. SQLite also folds the text for its index there;
    /// PostgreSQL makes its `tsvector` itself.
    pub fn make_content(&self) -> fn(&[u8]) -> Content {
        match &self.0 {
            Db::Sqlite(_) => |raw| crate::mime::content(raw).folded(),
            Db::Postgres(_) => crate::mime::content,
        }
    }

    /// `PRAGMA integrity_check` on SQLite ("ok" when the file is sound);
    /// "ok" on PostgreSQL, which checks itself.
    pub fn integrity_check(&self) -> Result<String> {
        match &self.0 {
            Db::Sqlite(s) => s.integrity_check(),
            Db::Postgres(_) => Ok("ok".into()),
        }
    }
}

/// The operations of the store, the same for either backend: each method
/// of [`Store`] calls the backend's method of the same name.
macro_rules! both {
    () => {};
    (
        $(#[$doc:meta])*
        fn $name:ident(&mut self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
        $($rest:tt)*
    ) => {
        impl Store {
            $(#[$doc])*
            pub fn $name(&mut self $(, $arg: $ty)*) -> $ret {
                match &mut self.0 {
                    Db::Sqlite(db) => db.$name($($arg),*),
                    Db::Postgres(db) => db.$name($($arg),*),
                }
            }
        }
        both! { $($rest)* }
    };
    (
        $(#[$doc:meta])*
        fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
        $($rest:tt)*
    ) => {
        impl Store {
            $(#[$doc])*
            pub fn $name(&self $(, $arg: $ty)*) -> $ret {
                match &self.0 {
                    Db::Sqlite(db) => db.$name($($arg),*),
                    Db::Postgres(db) => db.$name($($arg),*),
                }
            }
        }
        both! { $($rest)* }
    };
}

both! {
    /// Adds an account and its Inbox row; returns the new `acntid`.
    fn add_account(&mut self, a: &NewAccount, now: i64) -> Result<i64>;
    /// Every account, active or not, by id.
    fn accounts(&self) -> Result<Vec<Account>>;
    /// One account.
    fn account(&self, acntid: i64) -> Result<Option<Account>>;
    /// Removes an account with its folders and messages; its queued mail is
    /// cancelled. False when unknown.
    fn remove_account(&mut self, acntid: i64) -> Result<bool>;
    /// Records (or clears, with `None`) the account's last error.
    fn set_account_error(&mut self, acntid: i64, error: Option<&str>, now: i64) -> Result<()>;
    /// `account set`: writes the changed columns. False when unknown.
    fn update_account(&mut self, acntid: i64, change: &AccountChange) -> Result<bool>;
    /// The tokens of the engine's own refresh, committed before use.
    fn save_refreshed_tokens(
        &mut self,
        acntid: i64,
        access_token: &str,
        expires_at: i64,
        rotated: Option<&str>,
        now: i64,
    ) -> Result<()>;
    /// A rotated refresh token that came without a usable access token.
    fn save_rotated_refresh_token(&mut self, acntid: i64, refresh_token: &str, now: i64) -> Result<()>;
    /// The tokens a person's consent gave (`account authorize`).
    fn save_consented_tokens(
        &mut self,
        acntid: i64,
        refresh_token: &str,
        access_token: &str,
        expires_at: i64,
    ) -> Result<()>;
    /// The provider refused the refresh token: the account needs consent.
    fn set_needs_consent(&mut self, acntid: i64, why: &str, now: i64) -> Result<()>;
    /// A refused login: one more in a row, and the next attempt's time.
    fn login_refused(
        &mut self,
        acntid: i64,
        why: &str,
        now: i64,
        delay: &dyn Fn(i64) -> i64,
    ) -> Result<(i64, i64)>;
    /// A good login: the back-off starts over.
    fn login_ok(&mut self, acntid: i64) -> Result<()>;

    /// Folders of active accounts (all, or of `acntid`), removed ones too
    /// when `with_removed`.
    fn folders(&self, acntid: Option<i64>, with_removed: bool) -> Result<Vec<Folder>>;
    /// One folder.
    fn folder(&self, emfdid: i64) -> Result<Option<Folder>>;
    /// Gives every account without any folder its Inbox row.
    fn ensure_inboxes(&mut self) -> Result<()>;
    /// `folder priority`. False when unknown.
    fn set_folder_priority(&mut self, emfdid: i64, priority: Priority) -> Result<bool>;
    /// What LIST found for one account; returns its live folders.
    fn apply_discovery(&mut self, acntid: i64, found: &[Discovered], now: i64) -> Result<Vec<Folder>>;
    /// Several folders' patches in one transaction.
    fn patch_folders(&mut self, patches: &[(i64, FolderPatch)], now: i64) -> Result<()>;
    /// Records a folder's error (or clears it).
    fn set_folder_error(&mut self, emfdid: i64, error: Option<&str>, now: i64) -> Result<()>;

    /// Applies `ops` to folder `emfdid` (generation `uidvalidity`) and then
    /// `patch` to the folder, all in one transaction.
    fn apply(
        &mut self,
        emfdid: i64,
        uidvalidity: u32,
        ops: &[Op],
        patch: &FolderPatch,
        now: i64,
    ) -> Result<Applied>;
    /// UIDs stored for the folder's generation, ascending.
    fn stored_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>>;
    /// UIDs and flags stored for the generation, ascending by UID.
    fn stored_flags(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<(u32, String)>>;
    /// UIDs and flags stored for the generation with `lo <= uid <= hi`.
    fn stored_flags_between(&self, emfdid: i64, uidvalidity: u32, lo: u32, hi: u32) -> Result<Vec<(u32, String)>>;
    /// Rows of generations other than `uidvalidity`.
    fn old_generation(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<OldRow>>;
    /// UIDs of the generation stored header-only, ascending.
    fn partial_uids(&self, emfdid: i64, uidvalidity: u32) -> Result<Vec<u32>>;

    /// Makes this connection's commits durable (the outbox's).
    fn set_durable(&self) -> Result<()>;
    /// Queues a checked message; returns its `emoid`.
    fn queue_message(
        &mut self,
        acntid: i64,
        raw: &[u8],
        mail_from: &str,
        rcpts: &[String],
        message_id: Option<&str>,
        now: i64,
    ) -> Result<i64>;
    /// Outgoing messages, optionally of one state, oldest first.
    fn outbox_list(&self, state: Option<OutboxState>) -> Result<Vec<OutboxRow>>;
    /// Number of outgoing messages in each state.
    fn outbox_counts(&self) -> Result<Vec<(OutboxState, i64)>>;
    /// The bytes of a message as queued.
    fn outbox_raw(&self, emoid: i64) -> Result<Option<Vec<u8>>>;
    /// Messages due now.
    fn outbox_due(&self, now: i64) -> Result<Vec<OutboxRow>>;
    /// Whether a drain would find anything to do now: a message `sending`
    /// (left by a run that stopped), one due, or a Sent copy to store.
    fn outbox_has_work(&self, now: i64) -> Result<bool>;
    /// Puts the account's messages a killed run left `sending` back in the
    /// queue; returns their ids.
    fn requeue_sending(&mut self, acntid: i64) -> Result<Vec<i64>>;
    /// Fails a message that cannot be sent at all.
    fn outbox_reject(&mut self, emoid: i64, reason: &str, now: i64) -> Result<()>;
    /// Claims a queued message for sending; its recipients, or None.
    fn outbox_claim(
        &mut self,
        emoid: i64,
        mail_from: &str,
        rcpts: &[String],
        message_id: &str,
        claim: &Claim,
    ) -> Result<Option<Vec<(String, RcptState, Option<String>)>>>;
    /// Records an attempt in one durable transaction.
    fn outbox_record(&mut self, emoid: i64, rec: &AttemptRecord, now: i64) -> Result<()>;
    /// Messages of an account whose copy for the Sent folder is still to do.
    fn sent_copies_pending(&self, acntid: i64) -> Result<Vec<OutboxRow>>;
    /// Accounts with Sent copies still to do.
    fn accounts_with_sent_copies(&self) -> Result<Vec<i64>>;
    /// Records the Sent copy's outcome.
    fn set_sent_copy(&mut self, emoid: i64, state: SentCopy, error: Option<&str>, now: i64) -> Result<()>;
    /// Marks every pending Sent copy of an account `none`.
    fn no_sent_copies(&mut self, acntid: i64, why: &str, now: i64) -> Result<()>;
    /// Notes why an account's queued messages wait (no attempt counted).
    fn outbox_waits(&mut self, acntid: i64, why: &str) -> Result<()>;
    /// `outbox retry`. False when not failed or queued.
    fn outbox_retry(&mut self, emoid: i64, now: i64) -> Result<bool>;
    /// `outbox cancel`. False when not queued.
    fn outbox_cancel(&mut self, emoid: i64) -> Result<bool>;

    /// Every session row.
    fn sessions(&self) -> Result<Vec<Session>>;
    /// Marks `usrid` active at `now`.
    fn touch_session(&mut self, usrid: i64, now: i64) -> Result<()>;
    /// Ends `usrid`'s session.
    fn end_session(&mut self, usrid: i64) -> Result<()>;

    /// Accounts another run holds, with its `HOSTNAME:PID` (SPEC §13;
    /// none on SQLite, where one host does all the work).
    fn holders(&self) -> Result<std::collections::HashMap<i64, String>>;

    /// The attachments of message `emmsid` in part order; None when there
    /// is no such message.
    fn attachments(&self, emmsid: i64) -> Result<Option<MessageAttachments>>;
    /// Attachment `emattid` and the raw message it is part of; None when
    /// there is no such attachment.
    fn attachment(&self, emattid: i64) -> Result<Option<(StoredAttachment, Vec<u8>)>>;
    /// The messages matching `q`, newest first, at most `q.limit`; a query
    /// the index refuses is a [`BadQuery`] with its reason.
    fn search(&self, q: &SearchQuery<'_>) -> Result<std::result::Result<Vec<Hit>, BadQuery>>;
    /// Refreshes the planner's statistics of the message and search tables
    /// after a bulk load (PostgreSQL's VACUUM and ANALYZE; nothing on SQLite, whose
    /// search plans are fixed).
    fn refresh_statistics(&mut self) -> Result<()>;
    /// Where the backfill of attachments and search stands.
    fn backfill_state(&self) -> Result<BackfillState>;
    /// The next messages waiting for their rows, in `emmsid` order after
    /// `after`: at most `count`, and no more once `bytes` of them are read.
    fn backfill_batch(&self, after: i64, count: usize, bytes: usize) -> Result<Vec<Unfilled>>;
    /// Writes the rows of a batch and moves the bookmark to `last`, in one
    /// transaction; returns how many messages got rows.
    fn backfill_write(&mut self, batch: &[(i64, Content)], last: i64, now: i64) -> Result<usize>;
}

/// Who claims an outgoing message, and until when (SPEC §13: the host
/// holding the account; on SQLite the columns are written all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub now: i64,
    /// `HOSTNAME:PID`.
    pub by: String,
    pub until: i64,
}
