//! `email_accounts` on PostgreSQL: the same operations as on SQLite.

use super::super::accounts::{AccountChange, AuthKind, COLUMNS, SETTABLE};
use super::super::error::Result;
use super::super::{Account, NewAccount, OAuthColumns, OutboxState};
use super::{get, opt_text, text, Postgres};
use postgres::Row;

fn from_row(r: &Row) -> Result<Account> {
    let txt = |i: usize| -> Result<Option<String>> {
        get::<Option<String>>(r, i).map(|v| v.filter(|s| !s.is_empty()))
    };
    Ok(Account {
        acntid: get(r, 0)?,
        usrid: get(r, 1)?,
        email: get::<Option<String>>(r, 2)?.unwrap_or_default(),
        imap_host: get(r, 3)?,
        imap_port: get(r, 4)?,
        imap_security: get::<Option<String>>(r, 5)?.unwrap_or_else(|| "tls".into()),
        imap_login: get(r, 6)?,
        imap_password: get(r, 7)?,
        smtp_host: get(r, 8)?,
        smtp_port: get(r, 9)?,
        smtp_security: get::<Option<String>>(r, 10)?.unwrap_or_else(|| "starttls".into()),
        smtp_login: get(r, 11)?,
        smtp_password: get(r, 12)?,
        active: get::<Option<i64>>(r, 13)?.unwrap_or(1) != 0,
        last_error: get(r, 14)?,
        last_error_at: get(r, 15)?,
        imap_auth: AuthKind::parse(get::<Option<String>>(r, 16)?.as_deref()),
        smtp_auth: AuthKind::parse(get::<Option<String>>(r, 17)?.as_deref()),
        oauth: OAuthColumns {
            provider: txt(18)?,
            token_url: txt(19)?,
            device_url: txt(20)?,
            client_id: txt(21)?,
            client_secret: txt(22)?,
            scope: txt(23)?,
            refresh_token: txt(24)?,
            access_token: txt(25)?,
            expires_at: get(r, 26)?,
            needs_consent: get::<Option<i64>>(r, 27)?.unwrap_or(0) != 0,
        },
        login_failures: get::<Option<i64>>(r, 28)?.unwrap_or(0),
        login_retry_at: get(r, 29)?,
    })
}

/// `oauth_refreshed_at` of the engine's own token write (`$2` is now): it
/// moves on, so the credential trigger takes it for no change of
/// credentials.
const REFRESHED_AT: &str = "GREATEST($2::int8, COALESCE(oauth_refreshed_at, 0) + 1)";

impl Postgres {
    /// Adds an account and its Inbox row; returns the new `acntid`.
    pub fn add_account(&mut self, a: &NewAccount, now: i64) -> Result<i64> {
        let port = |p: Option<u16>| p.map(i64::from);
        let (imap_port, smtp_port) = (port(a.imap_port), port(a.smtp_port));
        let imap_auth = a.imap_auth.unwrap_or(AuthKind::Password).as_str();
        let smtp_auth = a.smtp_auth.unwrap_or(AuthKind::Password).as_str();
        self.write(|tx| {
            let row = tx.row(
                "INSERT INTO email_accounts (usrid, email, imap_host, imap_port, imap_security, \
                 imap_login, imap_password, smtp_host, smtp_port, smtp_security, smtp_login, \
                 smtp_password, active, created_at, imap_auth, smtp_auth, oauth_provider, \
                 oauth_token_url, oauth_device_url, oauth_client_id, oauth_client_secret, \
                 oauth_scope, oauth_refresh_token) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,1,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22) \
                 RETURNING acntid",
                &[
                    &a.usrid,
                    &a.email,
                    &a.imap_host,
                    &imap_port,
                    &a.imap_security,
                    &a.imap_login,
                    &a.imap_password,
                    &a.smtp_host,
                    &smtp_port,
                    &a.smtp_security,
                    &a.smtp_login,
                    &a.smtp_password,
                    &now,
                    &imap_auth,
                    &smtp_auth,
                    &a.oauth.provider,
                    &a.oauth.token_url,
                    &a.oauth.device_url,
                    &a.oauth.client_id,
                    &a.oauth.client_secret,
                    &a.oauth.scope,
                    &a.oauth.refresh_token,
                ],
                "insert the account",
            )?;
            let acntid: i64 = match row {
                Some(r) => get(&r, 0)?,
                None => 0,
            };
            super::folders::insert_inbox(tx, acntid)?;
            Ok(acntid)
        })
    }

    /// Every account, active or not, by id.
    pub fn accounts(&self) -> Result<Vec<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM email_accounts ORDER BY acntid");
        self.rows(&sql, &[], "list accounts")?
            .iter()
            .map(from_row)
            .collect()
    }

    /// One account.
    pub fn account(&self, acntid: i64) -> Result<Option<Account>> {
        let sql = format!("SELECT {COLUMNS} FROM email_accounts WHERE acntid = $1");
        self.row(&sql, &[&acntid], format!("read account {acntid}"))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Removes an account with its folders and messages; its queued mail
    /// is cancelled. False when unknown.
    pub fn remove_account(&mut self, acntid: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM email_accounts WHERE acntid = $1",
                &[&acntid],
                "delete the account",
            )?;
            tx.execute(
                "DELETE FROM email_messages WHERE emfdid IN \
                 (SELECT emfdid FROM email_folders WHERE acntid = $1)",
                &[&acntid],
                "delete the account's messages",
            )?;
            tx.execute(
                "DELETE FROM email_folders WHERE acntid = $1",
                &[&acntid],
                "delete the account's folders",
            )?;
            tx.execute(
                "UPDATE email_outbox SET state = $1, last_error = 'account removed' \
                 WHERE acntid = $2 AND state IN ($3, $4)",
                &[
                    &OutboxState::Cancelled.as_str(),
                    &acntid,
                    &OutboxState::Queued.as_str(),
                    &OutboxState::Sending.as_str(),
                ],
                "cancel the account's outgoing mail",
            )?;
            Ok(n > 0)
        })
    }

    /// Records (or clears, with `None`) the account's last error.
    pub fn set_account_error(&mut self, acntid: i64, error: Option<&str>, now: i64) -> Result<()> {
        let error = opt_text(error);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET last_error = $1::text, \
                 last_error_at = CASE WHEN $1::text IS NULL THEN last_error_at ELSE $2 END \
                 WHERE acntid = $3",
                &[&error, &now, &acntid],
                format!("record the error of account {acntid}"),
            )?;
            Ok(())
        })
    }

    /// `account set`: writes the changed columns. False when unknown.
    pub fn update_account(&mut self, acntid: i64, change: &AccountChange) -> Result<bool> {
        self.write(|tx| {
            let exists = tx
                .row(
                    "SELECT 1 FROM email_accounts WHERE acntid = $1",
                    &[&acntid],
                    format!("read account {acntid}"),
                )?
                .is_some();
            if !exists {
                return Ok(false);
            }
            // Column names only from SETTABLE (never from input); values bound.
            let mut set = |column: &str, value: &(dyn postgres::types::ToSql + Sync)| {
                if !SETTABLE.contains(&column) {
                    return Ok(0);
                }
                let sql = format!("UPDATE email_accounts SET {column} = $1 WHERE acntid = $2");
                tx.execute(
                    &sql,
                    &[value, &acntid],
                    format!("set {column} of account {acntid}"),
                )
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

    /// The tokens of the engine's own refresh, committed before use.
    pub fn save_refreshed_tokens(
        &mut self,
        acntid: i64,
        access_token: &str,
        expires_at: i64,
        rotated: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE email_accounts SET oauth_access_token = $1, oauth_expires_at = $3, \
             oauth_refresh_token = COALESCE($4, oauth_refresh_token), \
             oauth_refreshed_at = {REFRESHED_AT} WHERE acntid = $5"
        );
        self.write(|tx| {
            tx.execute(
                &sql,
                &[&access_token, &now, &expires_at, &rotated, &acntid],
                format!("store the tokens of account {acntid}"),
            )?;
            Ok(())
        })
    }

    /// A rotated refresh token that came without a usable access token.
    pub fn save_rotated_refresh_token(
        &mut self,
        acntid: i64,
        refresh_token: &str,
        now: i64,
    ) -> Result<()> {
        let sql = format!(
            "UPDATE email_accounts SET oauth_refresh_token = $1, \
             oauth_refreshed_at = {REFRESHED_AT} WHERE acntid = $3"
        );
        self.write(|tx| {
            tx.execute(
                &sql,
                &[&refresh_token, &now, &acntid],
                format!("store the refresh token of account {acntid}"),
            )?;
            Ok(())
        })
    }

    /// The tokens a person's consent gave (`account authorize`).
    pub fn save_consented_tokens(
        &mut self,
        acntid: i64,
        refresh_token: &str,
        access_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_refresh_token = $1, oauth_access_token = $2, \
                 oauth_expires_at = $3, oauth_needs_consent = 0, login_failures = 0, \
                 login_retry_at = NULL WHERE acntid = $4",
                &[&refresh_token, &access_token, &expires_at, &acntid],
                format!("store the tokens of account {acntid}"),
            )?;
            Ok(())
        })
    }

    /// The provider refused the refresh token: the account needs consent.
    pub fn set_needs_consent(&mut self, acntid: i64, why: &str, now: i64) -> Result<()> {
        let why = text(why);
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET oauth_needs_consent = 1, last_error = $1, \
                 last_error_at = $2 WHERE acntid = $3",
                &[&why, &now, &acntid],
                format!("record that account {acntid} needs consent"),
            )?;
            Ok(())
        })
    }

    /// A refused login: one more in a row, and the next attempt's time.
    pub fn login_refused(
        &mut self,
        acntid: i64,
        why: &str,
        now: i64,
        delay: &dyn Fn(i64) -> i64,
    ) -> Result<(i64, i64)> {
        let why = text(why);
        self.write(|tx| {
            let before: i64 = match tx.row(
                "SELECT COALESCE(login_failures, 0) FROM email_accounts WHERE acntid = $1 FOR UPDATE",
                &[&acntid],
                format!("read account {acntid}"),
            )? {
                Some(r) => get(&r, 0)?,
                None => 0,
            };
            let failures = before.saturating_add(1);
            let retry_at = now.saturating_add(delay(failures));
            tx.execute(
                "UPDATE email_accounts SET login_failures = $1, login_retry_at = $2, \
                 last_error = $3, last_error_at = $4 WHERE acntid = $5",
                &[&failures, &retry_at, &why, &now, &acntid],
                format!("record the refused login of account {acntid}"),
            )?;
            Ok((failures, retry_at))
        })
    }

    /// A good login: the back-off starts over.
    pub fn login_ok(&mut self, acntid: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE email_accounts SET login_failures = 0, login_retry_at = NULL \
                 WHERE acntid = $1 AND (login_failures != 0 OR login_retry_at IS NOT NULL)",
                &[&acntid],
                format!("record the login of account {acntid}"),
            )?;
            Ok(())
        })
    }
}
