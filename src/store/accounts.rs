//! `email_accounts`: the IMAP/SMTP accounts to serve.

use super::error::{Context, Result};
use super::{OutboxState, Store};
use rusqlite::{params, OptionalExtension, Row};

/// One account as stored. Ports and logins may be NULL when the web app
/// inserted the row itself: the accessors supply the defaults.
#[derive(Clone)]
pub struct Account {
    pub acntid: i64,
    pub usrid: Option<i64>,
    pub email: String,
    pub imap_host: Option<String>,
    pub imap_port: Option<i64>,
    pub imap_security: String,
    pub imap_login: Option<String>,
    pub imap_password: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub smtp_security: String,
    pub smtp_login: Option<String>,
    pub smtp_password: Option<String>,
    pub active: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

// Passwords must never reach a log line through `{:?}`.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("acntid", &self.acntid)
            .field("email", &self.email)
            .field("imap_host", &self.imap_host)
            .field("imap_port", &self.imap_port)
            .field("imap_security", &self.imap_security)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.smtp_security)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Account {
    /// The IMAP login: `imap_login`, else the address.
    pub fn imap_login(&self) -> &str {
        self.imap_login
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.email)
    }
    /// The SMTP login: `smtp_login`, else the address.
    pub fn smtp_login(&self) -> &str {
        self.smtp_login
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.email)
    }
}

/// What `account add` stores.
pub struct NewAccount {
    pub usrid: Option<i64>,
    pub email: String,
    pub imap_host: String,
    pub imap_port: Option<u16>,
    pub imap_security: String,
    pub imap_login: Option<String>,
    pub imap_password: String,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_security: String,
    pub smtp_login: Option<String>,
    pub smtp_password: Option<String>,
}

const COLUMNS: &str = "acntid, usrid, email, imap_host, imap_port, imap_security, imap_login, \
    imap_password, smtp_host, smtp_port, smtp_security, smtp_login, smtp_password, active, \
    last_error, last_error_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        acntid: r.get(0)?,
        usrid: r.get(1)?,
        email: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        imap_host: r.get(3)?,
        imap_port: r.get(4)?,
        imap_security: r
            .get::<_, Option<String>>(5)?
            .unwrap_or_else(|| "tls".into()),
        imap_login: r.get(6)?,
        imap_password: r.get(7)?,
        smtp_host: r.get(8)?,
        smtp_port: r.get(9)?,
        smtp_security: r
            .get::<_, Option<String>>(10)?
            .unwrap_or_else(|| "starttls".into()),
        smtp_login: r.get(11)?,
        smtp_password: r.get(12)?,
        active: r.get::<_, Option<i64>>(13)?.unwrap_or(1) != 0,
        last_error: r.get(14)?,
        last_error_at: r.get(15)?,
    })
}

impl Store {
    /// Adds an account and its Inbox row (so it is due at once and shows in
    /// `plan`); returns the new `acntid`.
    pub fn add_account(&mut self, a: &NewAccount, now: i64) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO email_accounts (usrid, email, imap_host, imap_port, imap_security, \
                 imap_login, imap_password, smtp_host, smtp_port, smtp_security, smtp_login, \
                 smtp_password, active, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?)",
                params![
                    a.usrid,
                    a.email,
                    a.imap_host,
                    a.imap_port,
                    a.imap_security,
                    a.imap_login,
                    a.imap_password,
                    a.smtp_host,
                    a.smtp_port,
                    a.smtp_security,
                    a.smtp_login,
                    a.smtp_password,
                    now
                ],
            )
            .context("insert the account")?;
            let acntid = tx.last_insert_rowid();
            super::folders::insert_inbox(tx, acntid)?;
            Ok(acntid)
        })
    }

    /// Every account, active or not, by id.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let mut stmt = self
            .conn()
            .prepare(&format!(
                "SELECT {COLUMNS} FROM email_accounts ORDER BY acntid"
            ))
            .context("list accounts")?;
        let rows = stmt
            .query_map([], from_row)
            .context("list accounts")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("list accounts")?;
        Ok(rows)
    }

    /// One account.
    pub fn account(&self, acntid: i64) -> Result<Option<Account>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM email_accounts WHERE acntid = ?"),
                [acntid],
                from_row,
            )
            .optional()
            .context(format!("read account {acntid}"))
    }

    /// Removes an account with its folders and messages; its queued outgoing
    /// mail is cancelled (kept for the record). Returns false when unknown.
    pub fn remove_account(&mut self, acntid: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute("DELETE FROM email_accounts WHERE acntid = ?", [acntid])
                .context("delete the account")?;
            tx.execute(
                "DELETE FROM email_messages WHERE emfdid IN \
                 (SELECT emfdid FROM email_folders WHERE acntid = ?)",
                [acntid],
            )
            .context("delete the account's messages")?;
            tx.execute("DELETE FROM email_folders WHERE acntid = ?", [acntid])
                .context("delete the account's folders")?;
            tx.execute(
                "UPDATE email_outbox SET state = ?1, last_error = 'account removed' \
                 WHERE acntid = ?2 AND state IN (?3, ?4)",
                params![
                    OutboxState::Cancelled.as_str(),
                    acntid,
                    OutboxState::Queued.as_str(),
                    OutboxState::Sending.as_str()
                ],
            )
            .context("cancel the account's outgoing mail")?;
            Ok(n > 0)
        })
    }

    /// Records (or clears, with `None`) the account's last error.
    pub fn set_account_error(&mut self, acntid: i64, error: Option<&str>, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET last_error = ?, \
                 last_error_at = CASE WHEN ? IS NULL THEN last_error_at ELSE ? END WHERE acntid = ?",
                params![error, error, now, acntid],
            )
            .context(format!("record the error of account {acntid}"))?;
            Ok(())
        })
    }
}
