//! backproc: the background mail engine of a document-workflow web application.
//!
//! `engine` is a one-shot batch program started by cron every five minutes. It
//! receives mail from the users' IMAP accounts into the application's SQLite
//! store and sends the mail the application queued in its outbox, then exits.
//!
//! # Layout
//! - [`cli`]: the command line (clap) and the dispatch of each command.
//! - [`error`]: the errors that stop a command, each with its exit code.
//! - [`config`]: the reader of the web application's `config.inc` (PHP `define`s).
//! - [`layout`]: the install directory (`pid/`, `data/`, `logs/`) and its permissions.
//! - [`lock`]: the pidfile lock that keeps runs from overlapping, and its probe.
//! - [`logging`]: the three log files and the seed's line format (fern lives here only).
//! - [`store`]: the SQLite database, its schema and migrations (all SQL lives here).
//! - [`schedule`]: the pure scheduler: which folders are due, in what order, and why.
//! - [`imap`]: a small blocking IMAP client with timeouts on every socket operation.
//! - [`net`]: TCP connections with timeouts and TLS with verified certificates.
//! - [`failpoint`]: crash points for the crash tests (`BACKPROC_FAILPOINTS`).
//! - [`message`]: the decoded columns (subject, from, to, date) of a raw message.
//! - [`sync`]: the sync of one folder: read the server, compute operations, apply them.
//! - [`pool`]: the worker threads of a run and the per-account connection limits.
//! - [`writer`]: the one thread that writes the database during a run.
//! - [`run`]: one cycle of the engine, from the lock to the exit code.
//! - [`outbox`]: queueing and sending of outgoing mail over SMTP.

pub mod cli;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod imap;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod message;
pub mod net;
pub mod outbox;
pub mod pool;
pub mod run;
pub mod schedule;
pub mod store;
pub mod sync;
pub mod writer;
