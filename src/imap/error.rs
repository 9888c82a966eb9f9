//! What can go wrong talking to an IMAP server, in words an administrator
//! understands, sorted by what the caller should do about it.

/// An IMAP failure. Each says, in one sentence built where the peer and
/// the command are known, what happened; the variant says what the caller
/// should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The server could not be reached (DNS, refused, connect timeout).
    #[error("{0}")]
    Connect(String),
    /// TLS failed: handshake, certificate, or STARTTLS not offered.
    #[error("{0}")]
    Tls(String),
    /// The server stopped answering for longer than `BG_IO_TIMEOUT`.
    #[error("{0}")]
    Timeout(String),
    /// The connection broke (reset, closed, BYE).
    #[error("{0}")]
    Io(String),
    /// The server sent something we cannot understand; the session is unusable.
    #[error("{0}")]
    Protocol(String),
    /// The account cannot log in as configured (no host, no password, no
    /// mechanism the server and the account share).
    #[error("{0}")]
    Auth(String),
    /// The server refused the login (NO to LOGIN or AUTHENTICATE): counts
    /// towards the account's refused-login back-off.
    #[error("{0}")]
    LoginRefused(String),
    /// The server limits connections (`[UNAVAILABLE]`, `[LIMIT]`, `[INUSE]`
    /// or BYE at login): not again in this run, nothing counted.
    #[error("{0}")]
    Unavailable(String),
    /// No access token to present (the token endpoint failed, or the
    /// account needs consent).
    #[error(transparent)]
    Token(#[from] crate::auth::Error),
    /// The server refused a command (NO/BAD); the session is still usable.
    #[error("{0}")]
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
