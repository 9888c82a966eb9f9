//! What can go wrong with the database, with SQLite's own error kept as the
//! cause (nothing outside `store` sees a SQLite type).

use std::path::PathBuf;

/// A failure of the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be opened at all.
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A statement failed; `what` says which work.
    #[error("{what}")]
    Sql {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Another program held the write lock past the busy timeout: this
    /// connection writes no more (the message names the file and the wait).
    #[error("{0}")]
    LockedOut(String),
    /// The connection to PostgreSQL was lost mid-run (the server
    /// restarted, or was stopped): the run ends, the next one goes on
    /// (exit 75).
    #[error("{0}")]
    Lost(String),
    /// The database is not one this engine can use (a newer schema, no WAL,
    /// a table without its key, a value it cannot hold).
    #[error("{0}")]
    Unusable(String),
    /// The run's writer thread is gone.
    #[error("the database writer stopped")]
    WriterGone,
    /// `BG_DATABASE_URL` (or `BACKPROC_DATABASE_URL`) is not a URL the
    /// engine can use (exit 78). Never holds the password.
    #[error("BG_DATABASE_URL: {0}")]
    BadUrl(String),
    /// PostgreSQL cannot be reached or refused the connection (exit 73):
    /// `target` is host, port, user and database (never the password).
    #[error("cannot connect to PostgreSQL ({target})")]
    Connect {
        target: String,
        #[source]
        source: postgres::Error,
    },
    /// A PostgreSQL statement failed; `what` says which work.
    #[error("{what}")]
    Pg {
        what: String,
        #[source]
        source: postgres::Error,
    },
    /// A connection found itself in another PostgreSQL session than the
    /// one it started (exit 78): `BG_DATABASE_URL` leads through a pooler
    /// in transaction or statement mode, which hands each transaction to
    /// whichever session is free. `source` is what PostgreSQL said, when
    /// it said something (a statement prepared in the session before).
    /// `what` says what was being done, and [`SHARED_SESSIONS`].
    #[error("{what}")]
    Pooled {
        what: String,
        #[source]
        source: Option<postgres::Error>,
    },
}

/// What [`Error::Pooled`] tells the administrator.
pub const SHARED_SESSIONS: &str = "PostgreSQL moved this connection to another session \
    between statements, or handed it one another client had left as it was: BG_DATABASE_URL \
    leads through a pooler that shares sessions (transaction or statement mode, or session mode \
    without server_reset_query = DISCARD ALL); the engine needs a session of its own per \
    connection (its account locks belong to one): connect directly, or through a pool in \
    session mode";

impl Error {
    /// The file cannot be opened because of its directory or permissions:
    /// a problem of the install (exit 73), not of the database.
    pub fn is_layout(&self) -> bool {
        use rusqlite::ErrorCode;
        match self {
            Error::Open { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly)
            ),
            // The server unreachable, the login or the database refused,
            // no rights on the schema: the install's problem (exit 73).
            Error::Connect { .. } => true,
            Error::Pg { source, .. } => source.code().is_some_and(|c| {
                let c = c.code();
                c.starts_with("28") || c.starts_with("3D") || c == "42501" || c.starts_with("3F")
            }),
            _ => false,
        }
    }

    /// The database went away mid-run (exit 75): the next run goes on.
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::Lost(_))
    }

    /// A bad `BG_DATABASE_URL` (exit 78): malformed, or leading through a
    /// pooler that shares sessions.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::BadUrl(_) | Error::Pooled { .. })
    }

    /// A failed PostgreSQL statement. A statement the session no longer
    /// knows, or one it already has under that name, means the connection
    /// changed sessions: the engine never prepares or names statements by
    /// SQL, only the driver does, once per connection.
    pub(super) fn pg(what: impl Into<String>, source: postgres::Error) -> Error {
        use postgres::error::SqlState;
        let what = what.into();
        match source.code() {
            Some(c)
                if *c == SqlState::INVALID_SQL_STATEMENT_NAME
                    || *c == SqlState::DUPLICATE_PSTATEMENT =>
            {
                Error::Pooled {
                    what: format!("{what}: {SHARED_SESSIONS}"),
                    source: Some(source),
                }
            }
            _ => Error::Pg { what, source },
        }
    }
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Names the work a failed statement was doing.
pub(super) trait Context<T> {
    /// `what` failed ("read account 3"), because of the SQLite error.
    fn context(self, what: impl Into<String>) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, postgres::Error> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::pg(what, source))
    }
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|source| Error::Sql {
            what: what.into(),
            source,
        })
    }
}
