//! The schema migrations, by `PRAGMA user_version`.
//!
//! Migration N takes the database from version N-1 to N. They are applied in
//! order inside one immediate transaction, so two processes starting at once
//! (a run and the web app's `engine outbox add`) cannot both apply one.
//! Never edit a migration that has shipped: add the next one.
//!
//! The tables are a public interface (SPEC §5): the web application may have
//! created them itself, with only the required columns, before the engine
//! ever ran. Migration 1 then adopts them: [`adopt_tables`] adds the columns
//! the engine keeps besides the required ones, and [`ensure_unique_keys`] the
//! unique keys its upserts rely on. Both compare with the tables as
//! migration 1 would create them, built in a scratch in-memory database.

use super::error::{Context, Error, Result};
use rusqlite::Connection;

/// One migration: SQL, and columns to add to a table where missing (the web
/// application may have created a table with them already: SPEC §5 and §12
/// are a public interface).
pub struct Migration {
    pub sql: &'static str,
    pub columns: &'static [(&'static str, &'static str, &'static str)],
}

/// The migrations, the first one at index 0 (it makes version 1).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        sql: VERSION_ONE,
        columns: &[],
    },
    // 2: OAuth 2.0 accounts and refused logins (SPEC §12).
    Migration {
        columns: &[
            (
                "email_accounts",
                "imap_auth",
                "TEXT NOT NULL DEFAULT 'password'",
            ),
            (
                "email_accounts",
                "smtp_auth",
                "TEXT NOT NULL DEFAULT 'password'",
            ),
            ("email_accounts", "oauth_provider", "TEXT"),
            ("email_accounts", "oauth_token_url", "TEXT"),
            ("email_accounts", "oauth_device_url", "TEXT"),
            ("email_accounts", "oauth_client_id", "TEXT"),
            ("email_accounts", "oauth_client_secret", "TEXT"),
            ("email_accounts", "oauth_scope", "TEXT"),
            ("email_accounts", "oauth_refresh_token", "TEXT"),
            ("email_accounts", "oauth_access_token", "TEXT"),
            ("email_accounts", "oauth_expires_at", "INTEGER"),
            (
                "email_accounts",
                "oauth_needs_consent",
                "INTEGER NOT NULL DEFAULT 0",
            ),
            // When the engine last refreshed the tokens itself: its own
            // writes of the token columns are no credential change.
            ("email_accounts", "oauth_refreshed_at", "INTEGER"),
            (
                "email_accounts",
                "login_failures",
                "INTEGER NOT NULL DEFAULT 0",
            ),
            ("email_accounts", "login_retry_at", "INTEGER"),
        ],
        sql: r#"
-- A credential changed by anyone but the engine's own refresh (the web
-- application, `engine account set`, an UPDATE by hand): the refused-login
-- back-off and the need for consent start over.
CREATE TRIGGER IF NOT EXISTS email_accounts_credentials_changed
AFTER UPDATE OF imap_password, smtp_password, oauth_refresh_token, oauth_client_secret
ON email_accounts
FOR EACH ROW
WHEN (OLD.imap_password IS NOT NEW.imap_password
      OR OLD.smtp_password IS NOT NEW.smtp_password
      OR OLD.oauth_refresh_token IS NOT NEW.oauth_refresh_token
      OR OLD.oauth_client_secret IS NOT NEW.oauth_client_secret)
  AND OLD.oauth_refreshed_at IS NEW.oauth_refreshed_at
BEGIN
  UPDATE email_accounts SET login_failures = 0, login_retry_at = NULL, oauth_needs_consent = 0
  WHERE acntid = NEW.acntid;
END;
"#,
    },
    // 3: who holds an account, who claimed a message (SPEC §13; written on
    // SQLite too, where one host does all the work).
    Migration {
        columns: &[
            ("email_accounts", "lease_owner", "TEXT"),
            ("email_accounts", "lease_until", "INTEGER"),
            ("email_outbox", "claimed_by", "TEXT"),
            ("email_outbox", "claimed_until", "INTEGER"),
        ],
        sql: "",
    },
    // 4: attachments and search (SPEC §14); the SQL lives with the code
    // that writes those tables.
    Migration {
        columns: &[],
        sql: super::content::MIGRATION,
    },
];

/// Migration 1: the public tables of SPEC §5.
const VERSION_ONE: &str = r#"
CREATE TABLE IF NOT EXISTS user_sessions (
    usrid INTEGER PRIMARY KEY,
    last_activity_at INTEGER
);

CREATE TABLE IF NOT EXISTS email_accounts (
    acntid INTEGER PRIMARY KEY,
    usrid INTEGER,
    email TEXT NOT NULL,
    imap_host TEXT,
    imap_port INTEGER,
    imap_security TEXT NOT NULL DEFAULT 'tls',
    imap_login TEXT,
    imap_password TEXT,
    smtp_host TEXT,
    smtp_port INTEGER,
    smtp_security TEXT NOT NULL DEFAULT 'starttls',
    smtp_login TEXT,
    smtp_password TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    last_error TEXT,
    last_error_at INTEGER,
    created_at INTEGER
);

CREATE TABLE IF NOT EXISTS email_folders (
    emfdid INTEGER PRIMARY KEY,
    acntid INTEGER NOT NULL,
    name TEXT NOT NULL,
    imap_name TEXT NOT NULL,
    delimiter TEXT,
    special TEXT,
    priority TEXT NOT NULL DEFAULT 'lo',
    uidvalidity INTEGER,
    uidnext INTEGER,
    last_uid INTEGER NOT NULL DEFAULT 0,
    highestmodseq INTEGER,
    backfill_below INTEGER,
    last_recent_sync_at INTEGER,
    last_full_sync_at INTEGER,
    removed_at INTEGER,
    last_error TEXT,
    last_error_at INTEGER,
    UNIQUE (acntid, imap_name)
);

CREATE TABLE IF NOT EXISTS email_messages (
    emmsid INTEGER PRIMARY KEY,
    emfdid INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT,
    subject TEXT,
    from_addr TEXT,
    to_addrs TEXT,
    date_at INTEGER,
    internal_date_at INTEGER,
    size INTEGER,
    flags TEXT,
    partial INTEGER NOT NULL DEFAULT 0,
    stored_at INTEGER,
    -- raw last: reading the other columns never walks its overflow pages.
    raw BLOB,
    UNIQUE (emfdid, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS email_messages_message_id ON email_messages (emfdid, message_id);
-- Messages waiting for their bodies, found without walking the folder's rows.
CREATE INDEX IF NOT EXISTS email_messages_partial ON email_messages (emfdid, uidvalidity, uid) WHERE partial = 1;
-- Covers the flag comparison of a full sync without CONDSTORE: the rows
-- themselves (with the start of raw inline) are never walked for it.
CREATE INDEX IF NOT EXISTS email_messages_flags ON email_messages (emfdid, uidvalidity, uid, flags);

CREATE TABLE IF NOT EXISTS email_outbox (
    emoid INTEGER PRIMARY KEY,
    acntid INTEGER NOT NULL,
    raw BLOB,
    mail_from TEXT,
    rcpt_to TEXT,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error TEXT,
    created_at INTEGER,
    sent_at INTEGER,
    -- The Message-ID the message goes out with (its own, or one we add).
    message_id TEXT,
    claimed_at INTEGER,
    -- The copy in the account's Sent folder: NULL (not yet accepted),
    -- 'pending', 'done', or 'none' (the account has no IMAP).
    sent_copy TEXT,
    sent_copy_error TEXT,
    sent_copy_at INTEGER
);
CREATE INDEX IF NOT EXISTS email_outbox_due ON email_outbox (state, next_attempt_at);

-- Each recipient's outcome: a retry goes only to those still pending.
CREATE TABLE IF NOT EXISTS email_outbox_rcpts (
    emoid INTEGER NOT NULL,
    addr TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    reply TEXT,
    updated_at INTEGER,
    PRIMARY KEY (emoid, addr)
);
"#;

/// The tables exactly as migration 1 creates them.
fn version_one() -> Result<Connection> {
    let c = Connection::open_in_memory().context("open a scratch database")?;
    c.execute_batch(VERSION_ONE)
        .context("build the reference schema")?;
    Ok(c)
}

struct Column {
    name: String,
    decl_type: String,
    notnull: bool,
    default: Option<String>,
    pk: i64,
}

fn tables(c: &Connection) -> Result<Vec<String>> {
    c.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .context("list tables")
}

fn columns_of(c: &Connection, table: &str) -> Result<Vec<Column>> {
    c.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?)")
        .and_then(|mut s| {
            s.query_map([table], |r| {
                Ok(Column {
                    name: r.get(0)?,
                    decl_type: r.get(1)?,
                    notnull: r.get(2)?,
                    default: r.get(3)?,
                    pk: r.get(4)?,
                })
            })?
            .collect()
        })
        .context(format!("read the columns of {table}"))
}

/// The column lists of the table's unique indexes (sorted, for comparison).
fn unique_keys(c: &Connection, table: &str) -> Result<Vec<Vec<String>>> {
    let names: Vec<String> = c
        .prepare("SELECT name FROM pragma_index_list(?) WHERE \"unique\" = 1")
        .and_then(|mut s| s.query_map([table], |r| r.get(0))?.collect())
        .context(format!("read the indexes of {table}"))?;
    let mut keys = Vec::new();
    for index in names {
        let cols: Vec<Option<String>> = c
            .prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
            .and_then(|mut s| s.query_map([&index], |r| r.get(0))?.collect())
            .context(format!("read index {index}"))?;
        // An index on an expression is no key on columns.
        if let Some(mut cols) = cols.into_iter().collect::<Option<Vec<String>>>() {
            cols.sort();
            keys.push(cols);
        }
    }
    Ok(keys)
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Adds to tables that already exist the columns migration 1 would have
/// given them. A column with a default keeps its NOT NULL; one without
/// cannot be added NOT NULL to a table with rows, so it is added nullable.
pub(super) fn adopt_tables(c: &Connection) -> Result<()> {
    let reference = version_one()?;
    for table in tables(&reference)? {
        let have = columns_of(c, &table)?;
        if have.is_empty() {
            continue; // not there yet: migration 1 creates it whole
        }
        for col in columns_of(&reference, &table)? {
            if have.iter().any(|h| h.name.eq_ignore_ascii_case(&col.name)) {
                continue;
            }
            if col.pk > 0 {
                return Err(Error::Unusable(format!(
                    "table {table} exists without its key column {}: the engine cannot use it",
                    col.name
                )));
            }
            let mut sql = format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                quoted(&table),
                quoted(&col.name),
                col.decl_type
            );
            if let Some(default) = &col.default {
                if col.notnull {
                    sql.push_str(" NOT NULL");
                }
                sql.push_str(&format!(" DEFAULT {default}"));
            }
            c.execute_batch(&sql)
                .context(format!("add column {}.{}", table, col.name))?;
        }
    }
    Ok(())
}

/// Adds `columns` (table, name, declaration) to the tables that lack them.
pub(super) fn add_columns(c: &Connection, columns: &[(&str, &str, &str)]) -> Result<()> {
    for (table, name, decl) in columns {
        let have = columns_of(c, table)?;
        if have.iter().any(|h| h.name.eq_ignore_ascii_case(name)) {
            continue;
        }
        c.execute_batch(&format!(
            "ALTER TABLE {} ADD COLUMN {} {decl}",
            quoted(table),
            quoted(name)
        ))
        .context(format!("add column {table}.{name}"))?;
    }
    Ok(())
}

/// Gives every table the unique keys migration 1 declares (the targets of
/// the engine's `ON CONFLICT` and `INSERT OR IGNORE`), unless an equivalent
/// unique index exists already.
pub(super) fn ensure_unique_keys(c: &Connection) -> Result<()> {
    let reference = version_one()?;
    for table in tables(&reference)? {
        let have = unique_keys(c, &table)?;
        let want: Vec<Vec<String>> = reference
            .prepare("SELECT name FROM pragma_index_list(?) WHERE \"unique\" = 1")
            .and_then(|mut s| s.query_map([&table], |r| r.get::<_, String>(0))?.collect())
            .context(format!("read the indexes of {table}"))
            .and_then(|names: Vec<String>| {
                names
                    .iter()
                    .map(|index| {
                        reference
                            .prepare("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                            .and_then(|mut s| s.query_map([index], |r| r.get(0))?.collect())
                            .context(format!("read index {index}"))
                    })
                    .collect()
            })?;
        for key in want {
            let mut sorted = key.clone();
            sorted.sort();
            if have.contains(&sorted) {
                continue;
            }
            let sql = format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})",
                quoted(&format!("{table}_{}_key", key.join("_"))),
                quoted(&table),
                key.iter().map(|k| quoted(k)).collect::<Vec<_>>().join(", ")
            );
            c.execute_batch(&sql).context(format!(
                "add the unique key ({}) to {table}",
                key.join(", ")
            ))?;
        }
    }
    Ok(())
}
