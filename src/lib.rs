//! backproc: the background mail engine of a document-workflow web application.
//!
//! `engine` is a one-shot batch program started by cron every five minutes. It
//! receives mail from the users' IMAP accounts into the application's database
//! (SQLite, or PostgreSQL) and sends the mail the application queued in its outbox, then exits.
//!
//! # Layout
//! Calls go down this list (docs/design.md has the picture, the threads of a
//! run and the decisions):
//! - [`cli`]: the command line: parses, dispatches, prints (nothing else prints).
//! - [`run`]: one cycle of the engine, from the lock to the report of its jobs.
//! - [`metrics`]: the Prometheus textfile a run leaves for monitoring (`BG_METRICS_FILE`).
//! - [`pool`]: the worker threads of a run and the per-account connection limits.
//! - [`backfill`]: attachments and search for messages stored before them, a
//!   slice of each run.
//! - [`outbox`]: outgoing mail: `queue` checks and stores, `drain` sends over SMTP.
//! - [`sync`]: the sync of one folder: read the server, plan (pure), execute.
//! - [`writer`]: the one thread that writes a run's sync results.
//! - [`imap`]: our blocking IMAP client (timeouts on every socket operation) and login.
//! - [`auth`]: how an account logs in: passwords, OAuth 2.0 tokens (refresh,
//!   device flow, SASL) and the back-off after refused logins.
//! - [`schedule`]: the pure scheduler: which folders are due, in what order, and why.
//! - [`store`]: the database behind one seam: all SQL and every SQLite and PostgreSQL type live here (and the account leases of several engine hosts).
//! - [`net`]: TCP connections with timeouts and TLS with verified certificates.
//! - [`message`]: the decoded columns (subject, from, to, date) of a raw message.
//! - [`mime`]: a message's attachments (as the IMAP server numbers its parts) and
//!   its readable text, for the web application and the search index.
//! - [`config`]: the reader of the web application's `config.inc` (PHP `define`s).
//! - [`layout`]: the install directory (`pid/`, `data/`, `logs/`) and its permissions.
//! - [`logging`]: the three log files, the seed's line format (fern lives here only),
//!   and errors said with their causes.
//! - [`lock`]: the pidfile lock that keeps runs from overlapping, and its probe.
//! - [`failpoint`]: crash points for the crash tests (`BACKPROC_FAILPOINTS`).
//! - [`error`]: the errors that stop a command, each with its exit code.

pub mod auth;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod error;
pub mod failpoint;
pub mod imap;
pub mod layout;
pub mod lock;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod mime;
pub mod net;
pub mod outbox;
pub mod pool;
pub mod run;
pub mod schedule;
pub mod store;
pub mod sync;
pub mod writer;
