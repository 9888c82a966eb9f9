//! The errors that stop a command, each mapped to its documented exit code.
//!
//! A failure of one job (a folder, an outgoing message) is not an error here:
//! it is an outcome, collected by the run and merged into the exit code at the
//! end. Only what prevents the command from doing its work at all lives here.

use std::fmt;

/// Exit codes of SPEC §2 (sysexits-style where one fits).
pub mod exit {
    /// The run completed and every job succeeded (or another run was live).
    pub const OK: i32 = 0;
    /// Anything not covered below.
    pub const FAILURE: i32 = 1;
    /// Bad command line.
    pub const USAGE: i32 = 2;
    /// Bad input to a command (e.g. a message `outbox add` refuses).
    pub const DATAERR: i32 = 65;
    /// `pid/`, `data/` or `logs/` cannot be created or opened.
    pub const CANTCREAT: i32 = 73;
    /// The run completed but at least one job failed.
    pub const TEMPFAIL: i32 = 75;
    /// `config.inc` is wrong.
    pub const CONFIG: i32 = 78;
}

/// What stops a command.
#[derive(Debug)]
pub enum Error {
    /// `config.inc` could not be read or has a bad value (exit 78).
    Config(crate::config::ConfigError),
    /// A directory or file of the install could not be created or opened (exit 73).
    Layout(String),
    /// The database could not be opened, migrated or written (exit 1).
    Store(String),
    /// A command line that parses but makes no sense (exit 2).
    Usage(String),
    /// Bad input to a command, e.g. a message refused by `outbox add` (exit 65).
    Input(String),
    /// Anything else (exit 1).
    Other(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit::CONFIG,
            Error::Layout(_) => exit::CANTCREAT,
            Error::Usage(_) => exit::USAGE,
            Error::Input(_) => exit::DATAERR,
            Error::Store(_) | Error::Other(_) => exit::FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Layout(m) | Error::Store(m) | Error::Usage(m) | Error::Input(m) => {
                write!(f, "{m}")
            }
            Error::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::config::ConfigError> for Error {
    fn from(e: crate::config::ConfigError) -> Self {
        Error::Config(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(format!("database: {e}"))
    }
}

/// Result of a command.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to errors of the store, keeping their kind.
pub trait Context<T> {
    /// Prefix the error with `what` ("open data/engine.sqlite").
    fn context(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, rusqlite::Error> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::Store(format!("{what}: {e}")))
    }
}
