//! `email_accounts`: the IMAP/SMTP accounts to serve.

use super::error::{Context, Result};
use super::sqlite::Sqlite;
use super::OutboxState;
use rusqlite::{params, OptionalExtension, Row};

/// How an account logs in to one of its servers (`imap_auth`, `smtp_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// The `*_password` column.
    Password,
    /// An OAuth 2.0 access token (XOAUTH2 or OAUTHBEARER).
    OAuth2,
}

impl AuthKind {
    /// The value as the table holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Password => "password",
            AuthKind::OAuth2 => "oauth2",
        }
    }

    /// The kind a text of the table names; anything else is a password
    /// (the default of the column).
    pub(super) fn parse(s: Option<&str>) -> AuthKind {
        match s {
            Some(s) if s.trim().eq_ignore_ascii_case("oauth2") => AuthKind::OAuth2,
            _ => AuthKind::Password,
        }
    }
}

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
    pub imap_auth: AuthKind,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    pub smtp_security: String,
    pub smtp_login: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_auth: AuthKind,
    pub active: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub oauth: OAuthColumns,
    /// Refused logins in a row.
    pub login_failures: i64,
    /// No login before this (NULL: now).
    pub login_retry_at: Option<i64>,
}

/// The OAuth 2.0 columns of an account (SPEC §12).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OAuthColumns {
    pub provider: Option<String>,
    pub token_url: Option<String>,
    pub device_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub expires_at: Option<i64>,
    /// The provider refused the refresh token: nothing is tried until a
    /// credential changes.
    pub needs_consent: bool,
}

// Passwords and tokens must never reach a log line through `{:?}`.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("acntid", &self.acntid)
            .field("email", &self.email)
            .field("imap_host", &self.imap_host)
            .field("imap_port", &self.imap_port)
            .field("imap_security", &self.imap_security)
            .field("imap_auth", &self.imap_auth)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_security", &self.smtp_security)
            .field("smtp_auth", &self.smtp_auth)
            .field("active", &self.active)
            .field("login_failures", &self.login_failures)
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
    /// Whether either server takes an OAuth 2.0 token.
    pub fn uses_oauth(&self) -> bool {
        self.imap_auth == AuthKind::OAuth2 || self.smtp_auth == AuthKind::OAuth2
    }
}

/// What `account add` stores; `account set` changes any of it (secrets
/// included) through [`AccountChange`].
#[derive(Default)]
pub struct NewAccount {
    pub usrid: Option<i64>,
    pub email: String,
    pub imap_host: String,
    pub imap_port: Option<u16>,
    pub imap_security: String,
    pub imap_login: Option<String>,
    pub imap_password: Option<String>,
    pub imap_auth: Option<AuthKind>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_security: String,
    pub smtp_login: Option<String>,
    pub smtp_password: Option<String>,
    pub smtp_auth: Option<AuthKind>,
    pub oauth: OAuthColumns,
}

/// Columns `account set` changes: each `Some` is written (an empty text
/// clears the column), `None` keeps what is there.
#[derive(Default)]
pub struct AccountChange {
    pub texts: Vec<(&'static str, Option<String>)>,
    pub numbers: Vec<(&'static str, Option<i64>)>,
}

/// The columns `account set` may change.
pub const SETTABLE: &[&str] = &[
    "usrid",
    "email",
    "imap_host",
    "imap_port",
    "imap_security",
    "imap_login",
    "imap_password",
    "imap_auth",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_login",
    "smtp_password",
    "smtp_auth",
    "oauth_provider",
    "oauth_token_url",
    "oauth_device_url",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
    "oauth_refresh_token",
];

pub(super) const COLUMNS: &str =
    "acntid, usrid, email, imap_host, imap_port, imap_security, imap_login, \
    imap_password, smtp_host, smtp_port, smtp_security, smtp_login, smtp_password, active, \
    last_error, last_error_at, imap_auth, smtp_auth, oauth_provider, oauth_token_url, \
    oauth_device_url, oauth_client_id, oauth_client_secret, oauth_scope, oauth_refresh_token, \
    oauth_access_token, oauth_expires_at, oauth_needs_consent, login_failures, login_retry_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    let text = |i: usize| -> rusqlite::Result<Option<String>> {
        r.get::<_, Option<String>>(i)
            .map(|v| v.filter(|s| !s.is_empty()))
    };
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
        imap_auth: AuthKind::parse(r.get::<_, Option<String>>(16)?.as_deref()),
        smtp_auth: AuthKind::parse(r.get::<_, Option<String>>(17)?.as_deref()),
        oauth: OAuthColumns {
            provider: text(18)?,
            token_url: text(19)?,
            device_url: text(20)?,
            client_id: text(21)?,
            client_secret: text(22)?,
            scope: text(23)?,
            refresh_token: text(24)?,
            access_token: text(25)?,
            expires_at: r.get(26)?,
            needs_consent: r.get::<_, Option<i64>>(27)?.unwrap_or(0) != 0,
        },
        login_failures: r.get::<_, Option<i64>>(28)?.unwrap_or(0),
        login_retry_at: r.get(29)?,
    })
}

impl Sqlite {
    /// Adds an account and its Inbox row (so it is due at once and shows in
    /// `plan`); returns the new `acntid`.
    pub fn add_account(&mut self, a: &NewAccount, now: i64) -> Result<i64> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO email_accounts (usrid, email, imap_host, imap_port, imap_security, \
                 imap_login, imap_password, smtp_host, smtp_port, smtp_security, smtp_login, \
                 smtp_password, active, created_at, imap_auth, smtp_auth, oauth_provider, \
                 oauth_token_url, oauth_device_url, oauth_client_id, oauth_client_secret, \
                 oauth_scope, oauth_refresh_token) \
                 VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1,?,?,?,?,?,?,?,?,?,?)",
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
                    now,
                    a.imap_auth.unwrap_or(AuthKind::Password).as_str(),
                    a.smtp_auth.unwrap_or(AuthKind::Password).as_str(),
                    a.oauth.provider,
                    a.oauth.token_url,
                    a.oauth.device_url,
                    a.oauth.client_id,
                    a.oauth.client_secret,
                    a.oauth.scope,
                    a.oauth.refresh_token,
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

    /// `account set`: writes the changed columns in one transaction.
    /// False when there is no such account.
    pub fn update_account(&mut self, acntid: i64, change: &AccountChange) -> Result<bool> {
        self.write(|tx| {
            let exists: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM email_accounts WHERE acntid = ?",
                    [acntid],
                    |r| r.get(0),
                )
                .context(format!("read account {acntid}"))?;
            if exists == 0 {
                return Ok(false);
            }
            // Column names only from SETTABLE (never from input); values bound.
            let set = |column: &str, value: &dyn rusqlite::ToSql| {
                if !SETTABLE.contains(&column) {
                    return Ok(());
                }
                let sql = format!("UPDATE email_accounts SET {column} = ? WHERE acntid = ?");
                tx.execute(&sql, params![value, acntid])
                    .map(|_| ())
                    .context(format!("set {column} of account {acntid}"))
            };
            for (column, value) in &change.texts {
                set(column, value)?;
            }
            for (column, value) in &change.numbers {
                set(column, value)?;
            }
            Ok(true)
        })
    }

    /// Stores the tokens of the engine's own refresh (the rotated refresh
    /// token too, when there is one) in one durable transaction, before
    /// the access token is used. `oauth_refreshed_at` moves on, so the
    /// credential trigger takes this for no change of credentials.
    pub fn save_refreshed_tokens(
        &mut self,
        acntid: i64,
        access_token: &str,
        expires_at: i64,
        rotated: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_access_token = ?, oauth_expires_at = ?, \
                 oauth_refresh_token = COALESCE(?, oauth_refresh_token), \
                 oauth_refreshed_at = MAX(?, COALESCE(oauth_refreshed_at, 0) + 1) WHERE acntid = ?",
                params![access_token, expires_at, rotated, now, acntid],
            )
            .context(format!("store the tokens of account {acntid}"))?;
            Ok(())
        })
    }

    /// Keeps a rotated refresh token that came without a usable access
    /// token (the engine's own write, as in `save_refreshed_tokens`).
    pub fn save_rotated_refresh_token(
        &mut self,
        acntid: i64,
        refresh_token: &str,
        now: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_refresh_token = ?, \
                 oauth_refreshed_at = MAX(?, COALESCE(oauth_refreshed_at, 0) + 1) WHERE acntid = ?",
                params![refresh_token, now, acntid],
            )
            .context(format!("store the refresh token of account {acntid}"))?;
            Ok(())
        })
    }

    /// Stores the tokens a person's consent gave (`account authorize`): a
    /// new credential, so the need for consent and the refused-login
    /// back-off start over (by the trigger).
    pub fn save_consented_tokens(
        &mut self,
        acntid: i64,
        refresh_token: &str,
        access_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_refresh_token = ?, oauth_access_token = ?, \
                 oauth_expires_at = ?, oauth_needs_consent = 0, login_failures = 0, \
                 login_retry_at = NULL WHERE acntid = ?",
                params![refresh_token, access_token, expires_at, acntid],
            )
            .context(format!("store the tokens of account {acntid}"))?;
            Ok(())
        })
    }

    /// The provider refused the refresh token or the client: nothing is
    /// tried for the account until its credentials change.
    pub fn set_needs_consent(&mut self, acntid: i64, why: &str, now: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_needs_consent = 1, last_error = ?, \
                 last_error_at = ? WHERE acntid = ?",
                params![why, now, acntid],
            )
            .context(format!("record that account {acntid} needs consent"))?;
            Ok(())
        })
    }

    /// A server refused the account's login: one more in a row, and no
    /// attempt before `now + delay(failures)`. Returns the failures in a row
    /// and when the next attempt may be made.
    pub fn login_refused(
        &mut self,
        acntid: i64,
        why: &str,
        now: i64,
        delay: &dyn Fn(i64) -> i64,
    ) -> Result<(i64, i64)> {
        self.write(|tx| {
            let before: i64 = tx
                .query_row(
                    "SELECT COALESCE(login_failures, 0) FROM email_accounts WHERE acntid = ?",
                    [acntid],
                    |r| r.get(0),
                )
                .optional()
                .context(format!("read account {acntid}"))?
                .unwrap_or(0);
            let failures = before.saturating_add(1);
            let retry_at = now.saturating_add(delay(failures));
            tx.execute(
                "UPDATE email_accounts SET login_failures = ?, login_retry_at = ?, \
                 last_error = ?, last_error_at = ? WHERE acntid = ?",
                params![failures, retry_at, why, now, acntid],
            )
            .context(format!("record the refused login of account {acntid}"))?;
            Ok((failures, retry_at))
        })
    }

    /// A login succeeded: the back-off starts over.
    pub fn login_ok(&mut self, acntid: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET login_failures = 0, login_retry_at = NULL \
                 WHERE acntid = ? AND (login_failures != 0 OR login_retry_at IS NOT NULL)",
                [acntid],
            )
            .context(format!("record the login of account {acntid}"))?;
            Ok(())
        })
    }
}
