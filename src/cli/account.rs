//! `engine account ...`: add, list, show, remove, and test an account.

use super::args::{AccountCmd, AddAccount};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::logging::chain;
use crate::store::{Account, NewAccount};
use crate::store::{Location, Store};
use serde_json::json;
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

/// Reads the IMAP and SMTP passwords: from `env` when named, else stdin
/// (first line IMAP, second SMTP; one line means both).
fn read_passwords(env: Option<&str>) -> Result<(String, String)> {
    if let Some(var) = env {
        let value = std::env::var(var)
            .map_err(|_| Error::Input(format!("environment variable {var} is not set")))?;
        if value.is_empty() {
            return Err(Error::Input(format!("environment variable {var} is empty")));
        }
        return Ok((value.clone(), value));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password: IMAP on the first line, SMTP on the second (empty: the same)");
    }
    let mut lines = Vec::new();
    for line in stdin.lock().lines().take(2) {
        let line = line.map_err(|e| Error::Input(format!("cannot read the password: {e}")))?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    let imap = lines.first().cloned().unwrap_or_default();
    if imap.is_empty() {
        return Err(Error::Input(
            "no password on stdin (first line IMAP, second SMTP), and no --password-env".into(),
        ));
    }
    let smtp = lines
        .get(1)
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| imap.clone());
    Ok((imap, smtp))
}

fn account_json(a: &Account) -> serde_json::Value {
    json!({
        "acntid": a.acntid,
        "usrid": a.usrid,
        "email": a.email,
        "imap_host": a.imap_host,
        "imap_port": a.imap_port,
        "imap_security": a.imap_security,
        "imap_login": a.imap_login(),
        "imap_password_set": a.imap_password.as_deref().is_some_and(|p| !p.is_empty()),
        "smtp_host": a.smtp_host,
        "smtp_port": a.smtp_port,
        "smtp_security": a.smtp_security,
        "smtp_login": a.smtp_login(),
        "smtp_password_set": a.smtp_password.as_deref().is_some_and(|p| !p.is_empty()),
        "active": a.active,
        "last_error": a.last_error,
        "last_error_at": a.last_error_at,
    })
}

/// `engine account ...`
pub fn command(layout: &Layout, cmd: AccountCmd, now: i64) -> Result<i32> {
    match cmd {
        AccountCmd::Add(a) => add(layout, *a, now),
        AccountCmd::List { json: as_json } => {
            let store = Store::open(&Location::of(layout))?;
            let accounts = store.accounts()?;
            if as_json {
                let v: Vec<_> = accounts.iter().map(account_json).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for a in &accounts {
                    println!(
                        "{:>5}  {:<32} imap {}:{} ({}){}{}",
                        a.acntid,
                        a.email,
                        a.imap_host.as_deref().unwrap_or("-"),
                        a.imap_port.map_or("default".into(), |p| p.to_string()),
                        a.imap_security,
                        if a.active { "" } else { "  inactive" },
                        a.last_error
                            .as_deref()
                            .map(|e| format!("  error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Show {
            acntid,
            json: as_json,
        } => {
            let store = Store::open(&Location::of(layout))?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            let v = account_json(&a);
            if as_json {
                println!("{v}");
            } else if let Some(map) = v.as_object() {
                for (k, val) in map {
                    println!(
                        "{k}: {}",
                        val.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| val.to_string())
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Remove { acntid } => {
            let mut store = Store::open(&Location::of(layout))?;
            if !store.remove_account(acntid)? {
                return Err(Error::Input(format!("no account {acntid}")));
            }
            Ok(exit::OK)
        }
        AccountCmd::Test { acntid } => {
            let config = layout.read_config()?;
            let store = Store::open(&Location::of(layout))?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            test(&a, &config)
        }
    }
}

/// `engine account add`: prints the new `acntid`.
fn add(layout: &Layout, a: AddAccount, now: i64) -> Result<i32> {
    if !a.email.contains('@') || a.email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Input(format!(
            "--email '{}' is not an address",
            a.email
        )));
    }
    if a.imap_host.trim().is_empty() {
        return Err(Error::Input("--imap-host is empty".into()));
    }
    let (imap_password, smtp_password) = read_passwords(a.password_env.as_deref())?;
    let mut store = Store::open(&Location::of(layout))?;
    let twins: Vec<String> = store
        .accounts()?
        .iter()
        .filter(|b| b.email.eq_ignore_ascii_case(&a.email))
        .map(|b| b.acntid.to_string())
        .collect();
    let email = a.email.clone();
    let acntid = store.add_account(
        &NewAccount {
            usrid: a.usrid,
            email: a.email,
            imap_host: a.imap_host,
            imap_port: a.imap_port,
            imap_security: a.imap_security,
            imap_login: a.imap_login,
            imap_password,
            smtp_host: a.smtp_host,
            smtp_port: a.smtp_port,
            smtp_security: a.smtp_security,
            smtp_login: a.smtp_login,
            smtp_password: Some(smtp_password),
        },
        now,
    )?;
    println!("{acntid}");
    if !twins.is_empty() {
        // Added all the same (two accounts may share an address on
        // purpose), but both would receive the same mail.
        eprintln!(
            "engine: note: account {} has the same address ({email}); \
             both will receive its mail (`engine account remove ID` removes one)",
            twins.join(", ")
        );
    }
    Ok(exit::OK)
}

/// `engine account test`: logs in to IMAP and SMTP and reports the
/// capabilities (exit 1 when either fails).
fn test(a: &Account, config: &Config) -> Result<i32> {
    let timeout = Duration::from_secs(config.io_timeout);
    let tls = crate::net::Tls::new(config.tls_ca_file.as_deref())
        .map_err(|e| Error::other("cannot set up TLS", e))?;
    let mut ok = true;
    match crate::imap::login(a, &tls, timeout) {
        Ok((client, _)) => {
            println!(
                "imap: ok ({}), capabilities: {}",
                client.peer(),
                client.caps().sorted().join(" ")
            );
            client.logout();
        }
        Err(e) => {
            ok = false;
            println!("imap: FAILED: {}", chain(&e));
        }
    }
    if a.smtp_host.as_deref().is_some_and(|h| !h.trim().is_empty()) {
        match crate::outbox::smtp::connect(a, &tls, timeout) {
            Ok(s) => {
                println!("smtp: ok ({}), {}", s.peer(), s.describe());
                s.quit();
            }
            Err(e) => {
                ok = false;
                println!("smtp: FAILED: {}", chain(&e));
            }
        }
    } else {
        println!("smtp: no smtp_host configured");
    }
    Ok(if ok { exit::OK } else { exit::FAILURE })
}
