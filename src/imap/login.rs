//! Logging in to an account's IMAP server, as its row in the store says.

use super::{Client, Error};
use crate::net::{Security, Tls};
use crate::store::Account;
use std::time::Duration;

/// Connects to the account's IMAP server and logs in; enables QRESYNC when
/// offered. Returns the session and whether QRESYNC is on.
pub fn login(account: &Account, tls: &Tls, timeout: Duration) -> Result<(Client, bool), Error> {
    let security: Security = account
        .imap_security
        .parse()
        .map_err(|e| Error::Auth(format!("account {}: imap_security: {e}", account.acntid)))?;
    let Some(host) = account
        .imap_host
        .as_deref()
        .filter(|h| !h.trim().is_empty())
    else {
        return Err(Error::Auth(format!(
            "account {} has no imap_host",
            account.acntid
        )));
    };
    let port = match account.imap_port {
        None => security.default_imap_port(),
        Some(p) => u16::try_from(p)
            .map_err(|_| Error::Auth(format!("account {}: bad imap_port {p}", account.acntid)))?,
    };
    let Some(password) = account.imap_password.as_deref() else {
        return Err(Error::Auth(format!(
            "account {} has no IMAP password",
            account.acntid
        )));
    };
    let mut client = Client::connect(host.trim(), port, security, tls, timeout)?;
    client.login(account.imap_login(), password)?;
    let qresync = client.enable("QRESYNC")?;
    Ok((client, qresync))
}
