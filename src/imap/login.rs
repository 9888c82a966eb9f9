//! Logging in to an account's IMAP server, as its row in the store says:
//! LOGIN with the password, or AUTHENTICATE with an OAuth 2.0 token
//! (OAUTHBEARER when offered, else XOAUTH2).

use super::{Client, Error};
use crate::auth::{sasl::Mechanism, Secret, Side, Tokens};
use crate::net::{Security, Tls};
use crate::store::Account;
use std::time::Duration;

/// Connects to the account's IMAP server and logs in; enables QRESYNC when
/// offered. Returns the session and whether QRESYNC is on. A token the
/// server refuses is refreshed and tried once more (once per run).
pub fn login(
    account: &Account,
    tokens: &Tokens<'_>,
    tls: &Tls,
    timeout: Duration,
) -> Result<(Client, bool), Error> {
    let acntid = account.acntid;
    let security: Security = account
        .imap_security
        .parse()
        .map_err(|e| Error::Auth(format!("account {acntid}: imap_security: {e}")))?;
    let Some(host) = account
        .imap_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
    else {
        return Err(Error::Auth(format!("account {acntid} has no imap_host")));
    };
    let port = match account.imap_port {
        None => security.default_imap_port(),
        Some(p) => u16::try_from(p)
            .map_err(|_| Error::Auth(format!("account {acntid}: bad imap_port {p}")))?,
    };
    let secret = tokens.secret(account, Side::Imap)?;
    if matches!(secret, Secret::Password(_)) && account.imap_password.is_none() {
        return Err(Error::Auth(format!(
            "account {acntid} has no IMAP password"
        )));
    }
    let mut client = Client::connect(host, port, security, tls, timeout)?;
    let user = account.imap_login();
    match secret {
        Secret::Password(password) => client.login(user, &password)?,
        Secret::Bearer(token) => {
            let Some(mechanism) = Mechanism::choose(|m| client.caps().has(&format!("AUTH={m}")))
            else {
                return Err(Error::Auth(format!(
                    "{}: the server offers neither OAUTHBEARER nor XOAUTH2 for an OAuth 2.0 account",
                    client.peer()
                )));
            };
            let first = mechanism.initial_response(user, &token, host, port);
            match client.authenticate(user, mechanism, &first) {
                Err(Error::LoginRefused(why)) => match tokens.refused(account, &token) {
                    // Refreshed: once more, on the same connection.
                    Some(Ok(fresh)) => {
                        let again = mechanism.initial_response(user, &fresh, host, port);
                        client.authenticate(user, mechanism, &again)?;
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(Error::LoginRefused(why)),
                },
                other => other?,
            }
        }
    }
    let qresync = client.enable("QRESYNC")?;
    Ok((client, qresync))
}
