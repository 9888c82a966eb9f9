//! How an account logs in (SPEC §12): with its password or an OAuth 2.0
//! access token, refreshed when it is about to expire; and how long a
//! refused login keeps the account waiting.
//!
//! A run shares one [`Tokens`]: an account's token is refreshed at most
//! once per run, by whichever of its IMAP connections or its outbox needs it
//! first (the others wait for that one request), and the tokens the
//! provider returns are committed durably before they are used — a rotated
//! refresh token that is lost would end the account. No token ever reaches
//! a log line, an error text or a process's arguments.

pub mod http;
pub mod oauth;
pub mod sasl;

use crate::logging::chain;
use crate::net::Tls;
use crate::store::{Account, AuthKind, Location, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A token that expires within this many seconds is refreshed first.
pub const REFRESH_MARGIN: i64 = 300;

/// Seconds to wait after the `failures`-th refused login in a row:
/// `min × 2^(failures−1)`, at most `max`.
pub fn login_retry_delay(failures: i64, min: i64, max: i64) -> i64 {
    let min = min.max(1);
    let doublings = failures.saturating_sub(1).clamp(0, 62) as u32;
    min.saturating_mul(1i64.checked_shl(doublings).unwrap_or(i64::MAX))
        .min(max.max(min))
}

/// Why an account cannot be used now, for `plan`, `status` and the run:
/// it needs a person's consent, or it waits after refused logins.
pub fn hold(account: &Account, now: i64) -> Option<String> {
    if account.uses_oauth() && account.oauth.needs_consent {
        return Some(format!(
            "the provider refused the refresh token: it needs the user's consent \
                 (`engine account authorize {}` or the web application)",
            account.acntid
        ));
    }
    match account.login_retry_at {
        Some(at) if at > now => Some(format!(
            "login refused {} time{} in a row; next attempt at {}",
            account.login_failures,
            if account.login_failures == 1 { "" } else { "s" },
            local_time(at)
        )),
        _ => None,
    }
}

fn local_time(t: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_opt(t, 0)
        .earliest()
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// What a login presents.
pub enum Secret {
    Password(String),
    /// An OAuth 2.0 access token.
    Bearer(String),
}

/// Which server of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Imap,
    Smtp,
}

/// Why an account cannot log in now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The account's row cannot work (no password, no client id, ...).
    #[error("{0}")]
    Settings(String),
    /// The provider refused the refresh token or the client: recorded as
    /// `oauth_needs_consent`; nothing is tried until the credentials change.
    #[error("{0}")]
    NeedsConsent(String),
    /// No token this time (the endpoint down, slow, answering nonsense).
    #[error("{0}")]
    Failed(String),
}

/// The tokens of a run's accounts.
pub struct Tokens<'a> {
    at: &'a Location,
    tls: &'a Tls,
    timeout: Duration,
    clock: &'a (dyn Fn() -> i64 + Sync),
    accounts: Mutex<HashMap<i64, Arc<Mutex<State>>>>,
    /// The connection the tokens are committed through, opened on first use.
    store: Mutex<Option<Store>>,
}

/// An account's token in this run.
#[derive(Clone, Default)]
enum State {
    /// Not looked at yet: the stored one is used while it lives.
    #[default]
    Unknown,
    /// Usable until `expires_at`; `refreshed` when this run got it.
    Held {
        token: String,
        expires_at: i64,
        refreshed: bool,
    },
    /// This run's refresh failed: not asked again.
    Failed(Error),
}

impl<'a> Tokens<'a> {
    pub fn new(
        at: &'a Location,
        tls: &'a Tls,
        timeout: Duration,
        clock: &'a (dyn Fn() -> i64 + Sync),
    ) -> Tokens<'a> {
        Tokens {
            at,
            tls,
            timeout,
            clock,
            accounts: Mutex::new(HashMap::new()),
            store: Mutex::new(None),
        }
    }

    /// What `account` presents to its IMAP or SMTP server.
    pub fn secret(&self, account: &Account, side: Side) -> Result<Secret, Error> {
        let (kind, password) = match side {
            Side::Imap => (account.imap_auth, &account.imap_password),
            Side::Smtp => (account.smtp_auth, &account.smtp_password),
        };
        match kind {
            AuthKind::Password => Ok(Secret::Password(password.clone().unwrap_or_default())),
            AuthKind::OAuth2 => self.token(account).map(Secret::Bearer),
        }
    }

    /// The account's access token: the stored one while it lives more than
    /// [`REFRESH_MARGIN`], else a refreshed one (once per run, unless that
    /// one expires too: a run may last an hour).
    pub fn token(&self, account: &Account) -> Result<String, Error> {
        let slot = self.slot(account.acntid);
        let mut state = slot.lock().unwrap_or_else(|p| p.into_inner());
        let now = (self.clock)();
        if let State::Unknown = *state {
            if let (Some(token), Some(expires_at)) =
                (account.oauth.access_token.clone(), account.oauth.expires_at)
            {
                *state = State::Held {
                    token,
                    expires_at,
                    refreshed: false,
                };
            }
        }
        match &*state {
            // A token this run refreshed is used until it expires.
            State::Held {
                token,
                expires_at,
                refreshed,
            } if *expires_at > now + if *refreshed { 0 } else { REFRESH_MARGIN } => {
                return Ok(token.clone())
            }
            State::Failed(e) => return Err(e.clone()),
            _ => {}
        }
        *state = self.refresh(account, now);
        match &*state {
            State::Held { token, .. } => Ok(token.clone()),
            State::Failed(e) => Err(e.clone()),
            State::Unknown => Err(Error::Failed("no token".into())),
        }
    }

    /// The server refused `token`, which the engine believed valid: a new
    /// one, once per run (None when this run's refresh gave that token
    /// already: the refusal stands).
    pub fn refused(&self, account: &Account, token: &str) -> Option<Result<String, Error>> {
        let slot = self.slot(account.acntid);
        let mut state = slot.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            State::Held {
                refreshed: true, ..
            } => {
                // Another connection may have refreshed meanwhile.
                return match &*state {
                    State::Held { token: t, .. } if t != token => Some(Ok(t.clone())),
                    _ => None,
                };
            }
            State::Failed(e) => return Some(Err(e.clone())),
            _ => {}
        }
        *state = self.refresh(account, (self.clock)());
        Some(match &*state {
            State::Held { token, .. } => Ok(token.clone()),
            State::Failed(e) => Err(e.clone()),
            State::Unknown => Err(Error::Failed("no token".into())),
        })
    }

    fn slot(&self, acntid: i64) -> Arc<Mutex<State>> {
        let mut all = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(acntid).or_default().clone()
    }

    /// Asks the token endpoint, commits what it gives, and says what this
    /// run holds afterwards.
    fn refresh(&self, account: &Account, now: i64) -> State {
        match self.try_refresh(account, now) {
            Ok((token, expires_at)) => State::Held {
                token,
                expires_at,
                refreshed: true,
            },
            Err(e) => State::Failed(e),
        }
    }

    fn try_refresh(&self, account: &Account, now: i64) -> Result<(String, i64), Error> {
        let acntid = account.acntid;
        let client = client_of(account)?;
        let Some(refresh_token) = account.oauth.refresh_token.as_deref() else {
            return Err(Error::NeedsConsent(format!(
                "account {acntid} has no refresh token: sign in with `engine account authorize \
                 {acntid}` or store one from the web application"
            )));
        };
        let provider = oauth::provider_name(client.provider.as_deref(), &client.token_url);
        let answer = oauth::refresh(&client, refresh_token, self.tls, self.timeout)
            .map_err(|e| Error::Failed(format!("token refresh at {provider}: {}", chain(&e))))?;
        crate::failpoint::hit("token-received");
        match answer {
            oauth::Answer::Granted(grant) => {
                let expires_at = now.saturating_add(grant.expires_in);
                self.with_store(|s| {
                    s.save_refreshed_tokens(
                        acntid,
                        &grant.access_token,
                        expires_at,
                        grant.refresh_token.as_deref(),
                        now,
                    )
                })
                .map_err(|e| {
                    Error::Failed(format!("cannot store the refreshed token: {}", chain(&e)))
                })?;
                crate::failpoint::hit("token-stored");
                log::debug!(
                    "access token refreshed at {provider}{} [{acntid},]",
                    if grant.refresh_token.is_some() {
                        " (refresh token rotated)"
                    } else {
                        ""
                    }
                );
                Ok((grant.access_token, expires_at))
            }
            oauth::Answer::Refused { code, why } => {
                let words = format!(
                    "{provider} refused the refresh token ({code}): the user must sign in again \
                     — `engine account authorize {acntid}` or the web application{}",
                    why.map(|w| format!(" ({provider} said: {w})"))
                        .unwrap_or_default()
                );
                if let Err(e) = self.with_store(|s| s.set_needs_consent(acntid, &words, now)) {
                    log::warn!(
                        "cannot record that account {acntid} needs consent: {}",
                        chain(&e)
                    );
                }
                Err(Error::NeedsConsent(words))
            }
            oauth::Answer::Failed(why) => {
                Err(Error::Failed(format!("token refresh at {provider}: {why}")))
            }
            oauth::Answer::Rotated { why, refresh_token } => {
                // No usable access token, but the old refresh token may be
                // dead already: the new one is kept.
                if let Err(e) =
                    self.with_store(|s| s.save_rotated_refresh_token(acntid, &refresh_token, now))
                {
                    log::warn!(
                        "cannot store the rotated refresh token of account {acntid}: {}",
                        chain(&e)
                    );
                }
                Err(Error::Failed(format!("token refresh at {provider}: {why}")))
            }
            oauth::Answer::Pending | oauth::Answer::SlowDown => Err(Error::Failed(format!(
                "token refresh at {provider}: an answer of the device flow"
            ))),
        }
    }

    /// Runs `f` on the durable connection the tokens are committed through.
    fn with_store(
        &self,
        f: impl FnOnce(&mut Store) -> crate::store::Result<()>,
    ) -> crate::store::Result<()> {
        let mut slot = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let store = Store::connect(self.at)?;
            store.set_durable()?;
            *slot = Some(store);
        }
        match slot.as_mut() {
            Some(store) => f(store),
            None => Err(crate::store::Error::WriterGone),
        }
    }
}

/// The account's OAuth 2.0 client, as its row has it (the preset's URLs
/// and scope where the row has none).
pub fn client_of(account: &Account) -> Result<oauth::Client, Error> {
    let o = &account.oauth;
    let acntid = account.acntid;
    let preset = o
        .provider
        .as_deref()
        .and_then(|p| oauth::preset(p, "common"));
    let token_url = o
        .token_url
        .clone()
        .or_else(|| preset.as_ref().map(|p| p.token_url.clone()))
        .ok_or_else(|| Error::Settings(format!("account {acntid} has no oauth_token_url")))?;
    let client_id = o
        .client_id
        .clone()
        .ok_or_else(|| Error::Settings(format!("account {acntid} has no oauth_client_id")))?;
    Ok(oauth::Client {
        provider: o.provider.clone(),
        token_url,
        device_url: o
            .device_url
            .clone()
            .or_else(|| preset.as_ref().and_then(|p| p.device_url.clone())),
        client_id,
        client_secret: o.client_secret.clone(),
        scope: o
            .scope
            .clone()
            .or_else(|| preset.as_ref().map(|p| p.scope.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_retry_delay_table() {
        let (min, max) = (900, 86_400);
        let cases: &[(&str, i64, i64)] = &[
            ("first_refusal_waits_min", 1, 900),
            ("second_doubles", 2, 1800),
            ("third", 3, 3600),
            ("seventh_just_under_the_cap", 7, 57_600),
            ("eighth_hits_the_cap", 8, 86_400),
            ("hundredth_stays_at_the_cap", 100, 86_400),
            ("no_overflow", i64::MAX, 86_400),
            ("zero_counts_as_first", 0, 900),
        ];
        for (name, failures, want) in cases {
            assert_eq!(login_retry_delay(*failures, min, max), *want, "{name}");
        }
        assert_eq!(login_retry_delay(3, 10, 5), 10, "max below min: min wins");
    }
}
