//! One SMTP session per account (lettre's `SmtpConnection`, blocking), with
//! recipient-by-recipient control: one rejected address does not stop the
//! others, and each recipient's reply is kept.
//!
//! Every socket operation is bounded by the I/O timeout. lettre performs an
//! implicit-TLS handshake before it sets the socket timeouts (and hides the
//! socket), so the whole connect runs on a helper thread that we stop
//! waiting for after the timeout: with implicit TLS, connect + handshake +
//! greeting + EHLO together get one timeout (plus a second); a server that
//! accepts TCP and then says nothing costs that, not forever. The abandoned
//! thread ends when the server closes, at the latest when the process exits.

use super::policy::Delivery;
use crate::auth::{sasl, Secret, Tokens};
use crate::net::{Security, Tls};
use crate::store::{Account, AuthKind};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One attempt at one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempt {
    pub rcpts: Vec<(String, Delivery)>,
    /// The connection is unusable (network error, timeout).
    pub broken: bool,
}

/// The DATA payload, dot-stuffed, with its terminating CRLF.CRLF, written
/// in one piece. lettre's `message()` writes the terminator on its own after
/// the body, and as lettre sets no TCP_NODELAY (and hides the socket), Nagle
/// holds those five bytes until the server's delayed ACK: 40 ms a message on
/// Linux, 20 messages a second at best (lettre PR #1159, not yet released).
/// `command()` writes whatever its argument displays in one write and reads
/// the reply, so it carries the payload when the payload is text (UTF-8,
/// which includes all 7-bit mail); other bytes go through `message()`.
struct Payload<'a>(&'a str);

impl std::fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for line in self.0.split_inclusive("\r\n") {
            if line.starts_with('.') {
                f.write_str(".")?;
            }
            f.write_str(line)?;
        }
        f.write_str("\r\n.\r\n")
    }
}

/// An open, authenticated SMTP session.
pub struct Session {
    conn: SmtpConnection,
    peer: String,
    /// When [`Session::send_within`] stops waiting for this transaction.
    give_up_at: Option<Instant>,
}

/// Why no session could be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The account's SMTP settings cannot work (no host, a bad port).
    #[error("{0}")]
    Settings(String),
    /// The server could not be reached, or stopped answering.
    #[error("cannot connect to {peer}: {why}")]
    Connect { peer: String, why: String },
    /// TLS could not be set up, or the server would not do it.
    #[error("{peer}: {why}")]
    Tls { peer: String, why: String },
    /// The server refused the login (535 and the like): counts towards
    /// the account's refused-login back-off.
    #[error("{peer}: login as {login} refused: {why}")]
    Auth {
        peer: String,
        login: String,
        why: String,
    },
    /// The server limits connections (421): not again in this run.
    #[error("{peer}: {why}")]
    Unavailable { peer: String, why: String },
    /// No access token to present.
    #[error(transparent)]
    Token(#[from] crate::auth::Error),
    /// No helper thread could be started.
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
}

/// What an error says, for people (and `last_error`). lettre's own words
/// for a broken connection ("network error: Resource temporarily
/// unavailable (os error 11)", "response error: incomplete response",
/// "stream did not contain valid UTF-8") mean nothing to an administrator,
/// so those are said plainly; the server's own replies (4xx, 5xx) are kept
/// as they are. A socket timeout surfaces as EAGAIN, which lettre's
/// `is_timeout` misses: look for it in the cause chain.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    use std::io::ErrorKind as K;
    let mut io: Option<(K, String)> = None;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(err) = c.downcast_ref::<std::io::Error>() {
            io.get_or_insert((err.kind(), err.to_string()));
        }
        cause = c.source();
    }
    let raw = e.to_string();
    match io {
        _ if e.is_timeout() => "no answer from the server (timed out)".into(),
        Some((K::WouldBlock | K::TimedOut, _)) => "no answer from the server (timed out)".into(),
        Some((
            K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotConnected,
            what,
        )) => format!("connection lost: {what}"),
        Some((K::InvalidData, what)) => format!("cannot understand the server's reply ({what})"),
        // lettre's reader hit EOF before a complete reply.
        _ if e.is_response() && raw.ends_with("incomplete response") => {
            "the server closed the connection".into()
        }
        _ if e.is_response() => format!("cannot understand the server's reply ({raw})"),
        _ => raw,
    }
}

/// A command's error as a recipient's outcome: 5xx permanent, 4xx
/// temporary, anything else (network, timeout) temporary with the
/// connection broken.
fn classify(e: &lettre::transport::smtp::Error) -> (Delivery, bool) {
    if e.is_permanent() {
        (Delivery::Permanent(describe(e)), false)
    } else if e.is_transient() {
        (Delivery::Temporary(describe(e)), false)
    } else {
        (Delivery::Temporary(describe(e)), true)
    }
}

/// Connects, secures (implicit TLS or STARTTLS, never a silent downgrade)
/// and authenticates.
pub fn connect(
    account: &Account,
    tokens: &Tokens<'_>,
    trust: &Tls,
    timeout: Duration,
) -> Result<Session, Error> {
    let token = match account.smtp_auth {
        AuthKind::OAuth2 => Some(tokens.token(account)?),
        AuthKind::Password => None,
    };
    let secret = match &token {
        Some(t) => Some(Secret::Bearer(t.clone())),
        None => account
            .smtp_password
            .clone()
            .filter(|p| !p.is_empty())
            .map(Secret::Password),
    };
    match (open(account, secret, trust, timeout), token) {
        // A token believed valid and refused: refreshed, tried once more.
        (Err(refused @ Error::Auth { .. }), Some(token)) => match tokens.refused(account, &token) {
            Some(Ok(fresh)) => open(account, Some(Secret::Bearer(fresh)), trust, timeout),
            Some(Err(e)) => Err(e.into()),
            None => Err(refused),
        },
        (result, _) => result,
    }
}

/// Opens a session presenting `secret` (none: no AUTH).
fn open(
    account: &Account,
    secret: Option<Secret>,
    trust: &Tls,
    timeout: Duration,
) -> Result<Session, Error> {
    let (host, port, security) = endpoint(account)?;
    let peer = format!("{host}:{port}");
    let tls_error = |why: String| Error::Tls {
        peer: peer.clone(),
        why,
    };
    let mut builder = TlsParameters::builder(host.clone());
    for der in trust.extra_cas_der() {
        let cert =
            Certificate::from_der(der).map_err(|e| tls_error(format!("BG_TLS_CA_FILE: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    let tls = builder
        .build_native()
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    let hello = ClientId::default();

    let (tx, rx) = mpsc::channel();
    let implicit = security == Security::Tls;
    let addrs = crate::net::resolve(&host, port, timeout).map_err(|e| Error::Connect {
        peer: peer.clone(),
        why: e.to_string(),
    })?;
    let setup = SessionSetup {
        addrs,
        timeout,
        implicit,
        security,
        tls,
        hello,
        login: account.smtp_login().to_string(),
        secret,
        host,
        port,
        peer: peer.clone(),
    };
    // The whole session set-up runs on a helper thread, given up after the
    // limit: lettre bounds each read, not a server that trickles its
    // answers (greeting, EHLO, the TLS handshake, AUTH) a byte at a time.
    std::thread::Builder::new()
        .name("smtp-connect".into())
        .spawn(move || {
            let _ = tx.send(setup.open());
        })
        .map_err(Error::Thread)?;
    // A silent server costs one timeout either way (lettre's per-read
    // timeout; with implicit TLS, whose handshake lettre leaves unbounded,
    // this limit). With STARTTLS a server that trickles is given two.
    let limit = if implicit {
        timeout + Duration::from_secs(1)
    } else {
        timeout * 2 + Duration::from_secs(1)
    };
    let conn = match rx.recv_timeout(limit) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(Error::Connect {
                peer,
                why: format!(
                    "no answer within {} s (connect, greeting, TLS handshake or login; timed out)",
                    limit.as_secs()
                ),
            })
        }
    };
    Ok(Session {
        conn,
        peer,
        give_up_at: None,
    })
}

/// The account's SMTP server: host, port (the usual one for its security
/// when none is set) and security.
fn endpoint(account: &Account) -> Result<(String, u16, Security), Error> {
    let acntid = account.acntid;
    let security = Security::from_str(&account.smtp_security)
        .map_err(|e| Error::Settings(format!("account {acntid}: smtp_security: {e}")))?;
    let host = account
        .smtp_host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Settings(format!("account {acntid} has no smtp_host")))?;
    let port = match account.smtp_port {
        None => security.default_smtp_port(),
        Some(p) => u16::try_from(p)
            .map_err(|_| Error::Settings(format!("account {acntid}: bad smtp_port {p}")))?,
    };
    Ok((host.to_string(), port, security))
}

/// What it takes to open a session, for the helper thread.
struct SessionSetup {
    addrs: Vec<std::net::SocketAddr>,
    timeout: Duration,
    implicit: bool,
    security: Security,
    tls: TlsParameters,
    hello: ClientId,
    login: String,
    secret: Option<Secret>,
    host: String,
    port: u16,
    peer: String,
}

impl SessionSetup {
    /// Connects, reads the greeting, says EHLO, upgrades with STARTTLS and
    /// logs in, as the security and the password ask.
    fn open(self) -> Result<SmtpConnection, Error> {
        let (tls, hello, peer, login) = (&self.tls, &self.hello, &self.peer, &self.login);
        let mut conn = SmtpConnection::connect(
            &self.addrs[..],
            Some(self.timeout),
            hello,
            self.implicit.then_some(tls),
            None,
        )
        .map_err(|e| refused_connection(peer, &e))?;
        if self.security == Security::StartTls {
            if !conn.can_starttls() {
                conn.abort();
                return Err(Error::Tls {
                    peer: peer.clone(),
                    why: "the server does not offer STARTTLS; refusing to send without TLS".into(),
                });
            }
            conn.starttls(tls, hello).map_err(|e| Error::Tls {
                peer: peer.clone(),
                why: format!("STARTTLS failed: {}", describe(&e)),
            })?;
        }
        let refused = |e: &lettre::transport::smtp::Error| match e.status().map(u16::from) {
            Some(421) => refused_connection(peer, e),
            Some(500..=599) => Error::Auth {
                peer: peer.clone(),
                login: login.clone(),
                why: describe(e),
            },
            _ => Error::Connect {
                peer: peer.clone(),
                why: describe(e),
            },
        };
        match &self.secret {
            Some(Secret::Password(password)) => {
                let offers_auth = conn.server_info().supports_auth_mechanism(Mechanism::Plain)
                    || conn.server_info().supports_auth_mechanism(Mechanism::Login);
                if offers_auth {
                    let creds = Credentials::new(login.clone(), password.clone());
                    conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                        .map_err(|e| refused(&e))?;
                } else {
                    log::debug!("{peer} offers no AUTH: sending without logging in");
                }
            }
            Some(Secret::Bearer(token)) => self.bearer(&mut conn, token, &refused)?,
            None => {}
        }
        Ok(conn)
    }

    /// `AUTH OAUTHBEARER` (or `XOAUTH2`) with `token`. The response goes
    /// after an empty `334` when the line would be long (Postfix refuses
    /// an initial response over 2,048 bytes, and real tokens are 1.5-3
    /// KB); a refusal's challenge is answered at once, so the 535 comes
    /// without waiting.
    fn bearer(
        &self,
        conn: &mut SmtpConnection,
        token: &str,
        refused: &dyn Fn(&lettre::transport::smtp::Error) -> Error,
    ) -> Result<(), Error> {
        // lettre knows XOAUTH2 but not OAUTHBEARER: the server's own words.
        let ehlo = conn
            .command(Ehlo::new(self.hello.clone()))
            .map_err(|e| refused(&e))?;
        let offered: Vec<String> = ehlo
            .message()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words
                    .next()
                    .filter(|w| w.eq_ignore_ascii_case("AUTH"))
                    .map(|_| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
            })
            .flatten()
            .collect();
        let Some(mechanism) = sasl::Mechanism::choose(|m| offered.iter().any(|o| o == m)) else {
            return Err(Error::Settings(format!(
                "{}: the server offers neither OAUTHBEARER nor XOAUTH2 for an OAuth 2.0 account",
                self.peer
            )));
        };
        let response = mechanism.initial_response(&self.login, token, &self.host, self.port);
        let inline = format!("AUTH {} {response}", mechanism.name());
        let reply = if inline.len() <= 1000 {
            conn.command(Line(&inline))
        } else {
            conn.command(Line(&format!("AUTH {}", mechanism.name())))
                .and_then(|_| conn.command(Line(&response)))
        }
        .map_err(|e| refused(&e))?;
        if reply.has_code(334) {
            // The refusal's challenge: answered, then the 535 comes.
            let said = reply.first_line().and_then(sasl::challenge_text);
            return match conn.command(Line(mechanism.abort())) {
                Err(e) => Err(match refused(&e) {
                    Error::Auth { peer, login, why } => Error::Auth {
                        peer,
                        login,
                        why: match said {
                            Some(c) => format!("{why} ({c})"),
                            None => why,
                        },
                    },
                    other => other,
                }),
                Ok(_) => Err(Error::Auth {
                    peer: self.peer.clone(),
                    login: self.login.clone(),
                    why: "a second challenge after the token".into(),
                }),
            };
        }
        Ok(())
    }
}

/// A command line as written, with its CRLF.
struct Line<'a>(&'a str);

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

/// A connection that failed: a 421 is a server limiting connections.
fn refused_connection(peer: &str, e: &lettre::transport::smtp::Error) -> Error {
    if e.status().map(u16::from) == Some(421) {
        Error::Unavailable {
            peer: peer.to_string(),
            why: describe(e),
        }
    } else {
        Error::Connect {
            peer: peer.to_string(),
            why: describe(e),
        }
    }
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
        if let Err((d, broken)) = self.mail_from(from, rcpts, wire) {
            return all(d, broken);
        }
        let (mut out, accepted) = match self.rcpt_to(rcpts) {
            Ok(both) => both,
            Err(out) => {
                return Attempt {
                    rcpts: out,
                    broken: true,
                }
            }
        };
        if accepted.is_empty() {
            let _ = self.conn.command(Rset);
            return Attempt {
                rcpts: out,
                broken: false,
            };
        }
        // Given up by `send_within` meanwhile: the message must not go out
        // now that nobody records its reply (it would be sent again).
        if self.give_up_at.is_some_and(|t| Instant::now() >= t) {
            let why = Delivery::Temporary("given up: the server answers too slowly".into());
            out.extend(accepted.into_iter().map(|a| (a, why.clone())));
            return Attempt {
                rcpts: out,
                broken: true,
            };
        }
        let (d, broken) = match self.data(wire) {
            Ok(()) => (Delivery::Accepted, false),
            Err(failed) => failed,
        };
        out.extend(accepted.into_iter().map(|a| (a, d.clone())));
        Attempt { rcpts: out, broken }
    }

    /// MAIL FROM, with 8BITMIME and SMTPUTF8 when the message needs them
    /// and the server offers them. Err: the outcome for every recipient.
    fn mail_from(
        &mut self,
        from: &str,
        rcpts: &[String],
        wire: &[u8],
    ) -> Result<(), (Delivery, bool)> {
        let from_addr = lettre::Address::from_str(from)
            .map_err(|e| (Delivery::Permanent(format!("sender '{from}': {e}")), false))?;
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
        self.conn
            .command(Mail::new(Some(from_addr), params))
            .map(|_| ())
            .map_err(|e| self.failed(&e))
    }

    /// RCPT TO for each recipient: (the refused ones with their outcome,
    /// the accepted ones). Err: the connection broke; every recipient's
    /// outcome.
    fn rcpt_to(
        &mut self,
        rcpts: &[String],
    ) -> Result<(Vec<(String, Delivery)>, Vec<String>), Vec<(String, Delivery)>> {
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
            let e = match self.conn.command(Rcpt::new(addr, vec![])) {
                Ok(_) => {
                    accepted.push(r.clone());
                    continue;
                }
                Err(e) => e,
            };
            let (d, broken) = classify(&e);
            out.push((r.clone(), d));
            if broken {
                let done: Vec<String> = out.iter().map(|(a, _)| a.clone()).collect();
                for rest in rcpts.iter().filter(|x| !done.contains(x)) {
                    out.push((rest.clone(), Delivery::Temporary(describe(&e))));
                }
                return Err(out);
            }
        }
        Ok((out, accepted))
    }

    /// DATA and the message. Err: the outcome for the accepted recipients.
    fn data(&mut self, wire: &[u8]) -> Result<(), (Delivery, bool)> {
        // The data ends with CRLF.CRLF: the message's own last line end is
        // the first CRLF of that, so it must not be sent twice.
        let body = wire.strip_suffix(b"\r\n").unwrap_or(wire);
        self.conn
            .command(Data)
            .and_then(|_| match std::str::from_utf8(body) {
                Ok(text) => self.conn.command(Payload(text)),
                // lettre's own path: correct, but see `Payload` for its cost.
                Err(_) => self.conn.message(body),
            })
            .map(|_| ())
            .map_err(|e| self.failed(&e))
    }

    /// A command failed: its outcome, and whether the connection broke
    /// (else the transaction is reset for the next message).
    fn failed(&mut self, e: &lettre::transport::smtp::Error) -> (Delivery, bool) {
        let (d, broken) = classify(e);
        if !broken {
            let _ = self.conn.command(Rset);
        }
        (d, broken)
    }

    /// [`Session::send`] on a helper thread, given up after
    /// [`send_limit`]. lettre's per-read timeout does not stop a server
    /// that trickles its replies a byte at a time (every read returns in
    /// time), and lettre hides the socket, so a watchdog cannot shut it:
    /// the session goes to a thread, and comes back only if the
    /// transaction ends in time. Given up, the attempt is a temporary
    /// failure and the session is gone (its thread ends when the server
    /// closes, at the latest when the process exits).
    pub fn send_within(
        self,
        from: &str,
        rcpts: &[String],
        wire: &[u8],
        timeout: Duration,
    ) -> (Option<Session>, Attempt) {
        let limit = send_limit(timeout, wire.len());
        let gave_up = |why: String| Attempt {
            rcpts: rcpts
                .iter()
                .map(|r| (r.clone(), Delivery::Temporary(why.clone())))
                .collect(),
            broken: true,
        };
        let (tx, rx) = mpsc::channel();
        let (f, r, w) = (from.to_string(), rcpts.to_vec(), wire.to_vec());
        let mut session = self;
        session.give_up_at = Some(Instant::now() + limit);
        let spawned = std::thread::Builder::new()
            .name("smtp-send".into())
            .spawn(move || {
                let mut session = session;
                let attempt = session.send(&f, &r, &w);
                let _ = tx.send((session, attempt));
            });
        if let Err(e) = spawned {
            return (None, gave_up(format!("cannot start a thread: {e}")));
        }
        match rx.recv_timeout(limit) {
            Ok((mut session, attempt)) => {
                session.give_up_at = None;
                (Some(session), attempt)
            }
            Err(_) => (
                None,
                gave_up(format!(
                    "the server answers too slowly: no complete reply within {} s (timed out)",
                    limit.as_secs()
                )),
            ),
        }
    }

    /// QUIT.
    pub fn quit(mut self) {
        let _ = self.conn.quit();
    }
}

/// Bytes per second a message must at least go out at (as IMAP responses
/// must come in, src/imap/client.rs).
const MIN_RATE: u64 = 1024;

/// How long one transaction may take before [`Session::send_within`] gives
/// up: two I/O timeouts for all its replies together (MAIL, each RCPT,
/// DATA, the end of the data; a healthy server answers each in
/// milliseconds, a stalled one is cut off by the per-read timeout after
/// one), plus the payload at `MIN_RATE`. So a server that trickles its
/// replies costs its account about two timeouts, as a stalled one does.
pub fn send_limit(timeout: Duration, bytes: usize) -> Duration {
    timeout
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(bytes as u64 / MIN_RATE))
}

#[cfg(test)]
mod tests {
    use super::{send_limit, Payload};
    use std::time::Duration;

    #[test]
    fn send_limit_is_two_timeouts_plus_the_payload_at_min_rate() {
        let s = Duration::from_secs;
        let cases: &[(&str, u64, usize, Duration)] = &[
            ("small", 60, 500, s(120)),
            ("short_timeout", 2, 0, s(4)),
            ("payload_25_mib", 60, 25 << 20, s(120 + 25 * 1024)),
            ("just_under_a_kib_more", 10, 2047, s(21)),
            (
                "absurd_values_do_not_overflow",
                u64::MAX,
                usize::MAX,
                Duration::MAX,
            ),
        ];
        for (name, timeout, bytes, want) in cases {
            assert_eq!(send_limit(s(*timeout), *bytes), *want, "{name}");
        }
    }

    #[test]
    fn payload_is_dot_stuffed_and_terminated() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "a\r\nb", "a\r\nb\r\n.\r\n"),
            ("dot_line", "a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"),
            ("leading_dot_first_line", ".a\r\nb", "..a\r\nb\r\n.\r\n"),
            ("leading_dot_last_line", "a\r\n.b", "a\r\n..b\r\n.\r\n"),
            ("dot_inside_a_line", "a.b\r\nc", "a.b\r\nc\r\n.\r\n"),
            ("lone_cr_is_no_line_end", "a\r.b", "a\r.b\r\n.\r\n"),
            ("empty_last_line", "a\r\n", "a\r\n\r\n.\r\n"),
        ];
        for (name, body, want) in cases {
            assert_eq!(Payload(body).to_string(), *want, "{name}");
        }
    }
}
