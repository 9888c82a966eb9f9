//! The schema migrations, by `PRAGMA user_version`.
//!
//! Migration N takes the database from version N-1 to N. They are applied in
//! order inside one immediate transaction, so two processes starting at once
//! (a run and the web app's `engine outbox add`) cannot both apply one.
//! Never edit a migration that has shipped: add the next one.

/// The migrations, the first one at index 0 (it makes version 1).
pub const MIGRATIONS: &[&str] = &[
    // 1: the public tables of SPEC §5.
    r#"
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
CREATE INDEX IF NOT EXISTS email_messages_partial ON email_messages (emfdid) WHERE partial = 1;
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
"#,
];
