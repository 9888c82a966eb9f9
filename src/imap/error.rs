//! What can go wrong talking to an IMAP server, in words an administrator
//! understands, sorted by what the caller should do about it.

use std::fmt;

/// An IMAP failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The server could not be reached (DNS, refused, connect timeout).
    Connect(String),
    /// TLS failed: handshake, certificate, or STARTTLS not offered.
    Tls(String),
    /// The server stopped answering for longer than `BG_IO_TIMEOUT`.
    Timeout(String),
    /// The connection broke (reset, closed, BYE).
    Io(String),
    /// The server sent something we cannot understand; the session is unusable.
    Protocol(String),
    /// Login refused.
    Auth(String),
    /// The server refused a command (NO/BAD); the session is still usable.
    Refused(String),
}

impl Error {
    /// The server or the link is at fault: counts towards the account's one
    /// reconnect per run.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect(_) | Error::Timeout(_) | Error::Io(_) | Error::Tls(_)
        )
    }

    /// The session cannot be used for another command.
    pub fn breaks_session(&self) -> bool {
        !matches!(self, Error::Refused(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect(m)
            | Error::Tls(m)
            | Error::Timeout(m)
            | Error::Io(m)
            | Error::Protocol(m)
            | Error::Auth(m)
            | Error::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
