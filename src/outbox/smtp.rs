//! One SMTP session per account (lettre's `SmtpConnection`, blocking), with
//! recipient-by-recipient control: one rejected address does not stop the
//! others, and each recipient's reply is kept.
//!
//! Every socket operation is bounded by the I/O timeout. lettre performs an
//! implicit-TLS handshake before it sets the socket timeouts, so the whole
//! connect runs on a helper thread that we stop waiting for after the
//! timeout (the thread ends when the server closes, at the latest when the
//! process exits).

use crate::net::Security;
use crate::store::Account;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

/// The outcome for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx: the server took the message for this recipient.
    Accepted,
    /// 4xx or a network error: try again later.
    Temporary(String),
    /// 5xx: never.
    Permanent(String),
}

/// One attempt at one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub rcpts: Vec<(String, Delivery)>,
    /// The connection is unusable (network error, timeout).
    pub broken: bool,
}

/// An open, authenticated SMTP session.
pub struct Session {
    conn: SmtpConnection,
    peer: String,
}

fn pem_certs(path: &Path) -> Result<Vec<Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("BG_TLS_CA_FILE {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&pem);
    let mut out = Vec::new();
    for block in text.split_inclusive("-----END CERTIFICATE-----") {
        if let Some(start) = block.find("-----BEGIN CERTIFICATE-----") {
            let cert = Certificate::from_pem(&block.as_bytes()[start..])
                .map_err(|e| format!("BG_TLS_CA_FILE {}: {e}", path.display()))?;
            out.push(cert);
        }
    }
    Ok(out)
}

/// What an error says, for people (and `last_error`).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    if e.is_timeout() {
        s.push_str(" (timed out)");
    }
    s
}

/// Connects, secures (implicit TLS or STARTTLS, never a silent downgrade)
/// and authenticates.
pub fn connect(
    account: &Account,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Session, String> {
    let security = Security::from_str(&account.smtp_security)
        .map_err(|e| format!("account {}: smtp_security: {e}", account.acntid))?;
    let host = account
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("account {} has no smtp_host", account.acntid))?
        .to_string();
    let port = match account.smtp_port {
        None => security.default_smtp_port(),
        Some(p) => u16::try_from(p)
            .map_err(|_| format!("account {}: bad smtp_port {p}", account.acntid))?,
    };
    let peer = format!("{host}:{port}");
    let mut builder = TlsParameters::builder(host.clone());
    if let Some(ca) = ca_file {
        for cert in pem_certs(ca)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    let tls = builder
        .build_native()
        .map_err(|e| format!("{peer}: cannot set up TLS: {e}"))?;
    let hello = ClientId::default();

    let (tx, rx) = mpsc::channel();
    let (h, t, hl) = (host.clone(), tls.clone(), hello.clone());
    let implicit = security == Security::Tls;
    let addrs = crate::net::resolve(&host, port, timeout)
        .map_err(|e| format!("cannot connect to {peer}: {e}"))?;
    std::thread::Builder::new()
        .name("smtp-connect".into())
        .spawn(move || {
            let _ = h;
            let r = SmtpConnection::connect(
                &addrs[..],
                Some(timeout),
                &hl,
                implicit.then_some(&t),
                None,
            );
            let _ = tx.send(r);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    // connect (timeout) + TLS handshake + greeting + EHLO, each bounded.
    let mut conn = match rx.recv_timeout(timeout * 2 + Duration::from_secs(1)) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("cannot connect to {peer}: {}", describe(&e))),
        Err(_) => {
            return Err(format!(
            "cannot connect to {peer}: no answer within {} s (connect, TLS handshake or greeting)",
            timeout.as_secs()
        ))
        }
    };
    match security {
        Security::Tls => {}
        Security::StartTls => {
            if !conn.can_starttls() {
                conn.abort();
                return Err(format!(
                    "{peer}: the server does not offer STARTTLS; refusing to send without TLS"
                ));
            }
            conn.starttls(&tls, &hello)
                .map_err(|e| format!("{peer}: STARTTLS failed: {}", describe(&e)))?;
        }
        Security::Plain => {}
    }
    if let Some(password) = account.smtp_password.as_deref().filter(|p| !p.is_empty()) {
        let offers_auth = conn.server_info().supports_auth_mechanism(Mechanism::Plain)
            || conn.server_info().supports_auth_mechanism(Mechanism::Login);
        if offers_auth {
            let creds = Credentials::new(account.smtp_login().to_string(), password.to_string());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .map_err(|e| {
                    format!(
                        "{peer}: login as {} refused: {}",
                        account.smtp_login(),
                        describe(&e)
                    )
                })?;
        } else {
            log::debug!("{peer} offers no AUTH: sending without logging in");
        }
    }
    Ok(Session { conn, peer })
}

impl Session {
    /// `host:port`
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The server's EHLO keywords, for `account test`.
    pub fn describe(&self) -> String {
        self.conn.server_info().to_string()
    }

    /// Sends `wire` from `from` to `rcpts`, recipient by recipient.
    pub fn send(&mut self, from: &str, rcpts: &[String], wire: &[u8]) -> Attempt {
        let all = |d: Delivery, broken| Attempt {
            rcpts: rcpts.iter().map(|r| (r.clone(), d.clone())).collect(),
            broken,
        };
        let classify = |e: &lettre::transport::smtp::Error| {
            if e.is_permanent() {
                (Delivery::Permanent(describe(e)), false)
            } else if e.is_transient() {
                (Delivery::Temporary(describe(e)), false)
            } else {
                (Delivery::Temporary(describe(e)), true)
            }
        };
        let from_addr = match lettre::Address::from_str(from) {
            Ok(a) => a,
            Err(e) => return all(Delivery::Permanent(format!("sender '{from}': {e}")), false),
        };
        let info = self.conn.server_info();
        let mut params = Vec::new();
        if !wire.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if (!from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii()))
            && info.supports_feature(Extension::SmtpUtfEight)
        {
            params.push(MailParameter::SmtpUtfEight);
        }
        if let Err(e) = self.conn.command(Mail::new(Some(from_addr), params)) {
            let (d, broken) = classify(&e);
            if !broken {
                let _ = self.conn.command(Rset);
            }
            return all(d, broken);
        }
        let mut out = Vec::new();
        let mut accepted = Vec::new();
        for r in rcpts {
            let addr = match lettre::Address::from_str(r) {
                Ok(a) => a,
                Err(e) => {
                    out.push((r.clone(), Delivery::Permanent(format!("'{r}': {e}"))));
                    continue;
                }
            };
            match self.conn.command(Rcpt::new(addr, vec![])) {
                Ok(_) => accepted.push(r.clone()),
                Err(e) => {
                    let (d, broken) = classify(&e);
                    out.push((r.clone(), d));
                    if broken {
                        let done: Vec<String> = out.iter().map(|(a, _)| a.clone()).collect();
                        for rest in rcpts.iter().filter(|x| !done.contains(x)) {
                            out.push((rest.clone(), Delivery::Temporary(describe(&e))));
                        }
                        return Attempt {
                            rcpts: out,
                            broken: true,
                        };
                    }
                }
            }
        }
        if accepted.is_empty() {
            let _ = self.conn.command(Rset);
            return Attempt {
                rcpts: out,
                broken: false,
            };
        }
        // lettre ends the data with CRLF.CRLF: the message's own last line
        // end is the first CRLF of that, so it must not be sent twice.
        let body = wire.strip_suffix(b"\r\n").unwrap_or(wire);
        let data = self
            .conn
            .command(Data)
            .and_then(|_| self.conn.message(body));
        match data {
            Ok(_) => {
                out.extend(accepted.into_iter().map(|a| (a, Delivery::Accepted)));
                Attempt {
                    rcpts: out,
                    broken: false,
                }
            }
            Err(e) => {
                let (d, broken) = classify(&e);
                if !broken {
                    let _ = self.conn.command(Rset);
                }
                out.extend(accepted.into_iter().map(|a| (a, d.clone())));
                Attempt { rcpts: out, broken }
            }
        }
    }

    /// QUIT.
    pub fn quit(mut self) {
        let _ = self.conn.quit();
    }
}
