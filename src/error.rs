//! The errors that stop a command, each mapped to its documented exit code
//! (SPEC §2). The top of the error types: every layer's error can become
//! one, so nothing below the command line and the run imports this module.
//!
//! A failure of one job (a folder, an outgoing message) is not an error here:
//! it is an outcome, collected by the run and merged into the exit code at the
//! end. Only what prevents the command from doing its work at all lives here.

use std::path::PathBuf;

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
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.inc` could not be read or has a bad value (exit 78).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `BG_TLS_CA_FILE` of `config.inc` cannot be used (exit 78).
    #[error("{}", config.display())]
    CaFile {
        /// The `config.inc` that names it.
        config: PathBuf,
        #[source]
        source: crate::net::CaFileError,
    },
    /// A directory or file of the install could not be created or opened (exit 73).
    #[error(transparent)]
    Layout(#[from] crate::layout::Error),
    /// The database could not be opened, migrated or written (exit 1; 73
    /// when its file cannot be opened at all).
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A command line that parses but makes no sense (exit 2).
    #[error("{0}")]
    Usage(String),
    /// Bad input to a command, e.g. a message refused by `outbox add` (exit 65).
    #[error("{0}")]
    Input(String),
    /// Anything else (exit 1).
    #[error("{what}")]
    Other {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::CaFile { .. } => exit::CONFIG,
            Error::Store(e) if e.is_config() => exit::CONFIG,
            Error::Layout(_) => exit::CANTCREAT,
            Error::Store(e) if e.is_layout() => exit::CANTCREAT,
            Error::Store(e) if e.is_lost() => exit::TEMPFAIL,
            Error::Usage(_) => exit::USAGE,
            Error::Input(_) => exit::DATAERR,
            Error::Store(_) | Error::Other { .. } => exit::FAILURE,
        }
    }

    /// A layout error: `what` failed because of `source`.
    pub fn layout(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Layout(crate::layout::Error::new(what, source))
    }

    /// Any other error: `what` failed because of `source`.
    pub fn other(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Other {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Result of a command.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::chain;

    #[test]
    fn chain_says_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = Error::layout("cannot create /x/pid", io);
        assert_eq!(e.to_string(), "cannot create /x/pid");
        assert_eq!(chain(&e), "cannot create /x/pid: denied");
        assert_eq!(e.exit_code(), exit::CANTCREAT);
        let usage = Error::Usage("bad".into());
        assert_eq!(chain(&usage), "bad");
    }
}
