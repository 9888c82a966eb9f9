//! Logging in to an account and discovering its folders with LIST
//! (special-use attributes and statuses in the same round trip where the
//! server offers them).

use crate::imap::{self, utf7, Client, MailboxStatus};
use crate::net::Security;
use crate::store::{Account, Discovered};
use std::collections::HashMap;
use std::time::Duration;

/// Connects to the account's IMAP server and logs in; enables QRESYNC when
/// offered. Returns the session and whether QRESYNC is on.
pub fn connect(
    account: &Account,
    tls: &crate::net::Tls,
    timeout: Duration,
) -> Result<(Client, bool), imap::Error> {
    let security: Security = account.imap_security.parse().map_err(|e: String| {
        imap::Error::Auth(format!("account {}: imap_security: {e}", account.acntid))
    })?;
    let Some(host) = account
        .imap_host
        .as_deref()
        .filter(|h| !h.trim().is_empty())
    else {
        return Err(imap::Error::Auth(format!(
            "account {} has no imap_host",
            account.acntid
        )));
    };
    let port = match account.imap_port {
        None => security.default_imap_port(),
        Some(p) => u16::try_from(p).map_err(|_| {
            imap::Error::Auth(format!("account {}: bad imap_port {p}", account.acntid))
        })?,
    };
    let Some(password) = account.imap_password.as_deref() else {
        return Err(imap::Error::Auth(format!(
            "account {} has no IMAP password",
            account.acntid
        )));
    };
    let mut client = Client::connect(host.trim(), port, security, tls, timeout)?;
    client.login(account.imap_login(), password)?;
    let qresync = client.enable("QRESYNC")?;
    Ok((client, qresync))
}

/// What LIST found: the selectable folders and, when the server sent them,
/// their statuses by wire name.
pub fn list(
    client: &mut Client,
) -> Result<(Vec<Discovered>, HashMap<String, MailboxStatus>), imap::Error> {
    let mut found = Vec::new();
    let mut statuses = HashMap::new();
    for e in client.list()? {
        if e.attributes
            .iter()
            .any(|a| a == "\\noselect" || a == "\\nonexistent")
        {
            continue;
        }
        let Ok(wire) = String::from_utf8(e.name.clone()) else {
            // Say which one, escaped: the administrator must find it.
            log::warn!(
                "{}: skipped folder \"{}\": its name is not valid UTF-8 (nor modified UTF-7)",
                client.peer(),
                e.name.escape_ascii()
            );
            continue;
        };
        let special = e.attributes.iter().find_map(|a| match a.as_str() {
            "\\sent" => Some("sent"),
            "\\drafts" => Some("drafts"),
            "\\trash" => Some("trash"),
            "\\junk" => Some("junk"),
            "\\archive" => Some("archive"),
            _ => None,
        });
        let name = if wire.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            utf7::decode_lossy(&wire)
        };
        if let Some(st) = e.status {
            statuses.insert(wire.clone(), st);
        }
        found.push(Discovered {
            imap_name: wire,
            name,
            delimiter: e.delimiter,
            special,
        });
    }
    Ok((found, statuses))
}
