//! The command line as clap parses it (SPEC §2).

use crate::store::OutboxState;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// backproc's background mail engine: syncs IMAP folders into SQLite and
/// sends the outbox. Run from cron every 5 minutes.
#[derive(Debug, Parser)]
#[command(name = "engine", version)]
pub struct Cli {
    /// Directory holding pid/, data/, logs/ and config.inc [default: current directory]
    #[arg(long, global = true, env = "BACKPROC_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// The config.inc to read [default: HOME/config.inc]
    #[arg(long, global = true, env = "BACKPROC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One cycle: sync what is due, drain the outbox, exit (the default)
    Run(RunArgs),
    /// What `run` would do now (or --at another moment) and why
    Plan(PlanArgs),
    /// Accounts, folders, outbox and whether a run is live
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Manage accounts
    #[command(subcommand)]
    Account(AccountCmd),
    /// Folders and their priority
    #[command(subcommand)]
    Folder(FolderCmd),
    /// Mark a web-app user logged in or out
    #[command(subcommand)]
    Session(SessionCmd),
    /// Queue and manage outgoing mail
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// The attachments of stored messages
    #[command(subcommand)]
    Attachment(AttachmentCmd),
    /// Search stored mail, newest first
    Search(SearchArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout
    Completions {
        #[arg(value_enum)]
        shell: ShellArg,
    },
    /// Print the manual page (roff) on stdout: `engine man | man -l -`
    Man,
}

/// A shell `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShellArg {
    Bash,
    Zsh,
    Fish,
}

/// Options of `run`.
#[derive(Debug, Args, Default, Clone)]
pub struct RunArgs {
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Make every folder due for a full sync
    #[arg(long)]
    pub force: bool,
    /// Only this account (repeatable)
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<i64>,
    /// Skip the IMAP sync
    #[arg(long)]
    pub no_sync: bool,
    /// Skip the outbox
    #[arg(long)]
    pub no_outbox: bool,
}

/// Options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Evaluate the schedule at this local time instead of now: 'YYYY-MM-DD HH:MM:SS'
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Only this account (repeatable)
    #[arg(long = "account", value_name = "ID")]
    pub accounts: Vec<i64>,
    /// As with `run --force`
    #[arg(long)]
    pub force: bool,
}

/// `account ...`
#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Add an account; prints its acntid. Passwords come from stdin (first
    /// line IMAP, second SMTP; one line means both) or --password-env; for
    /// an OAuth 2.0 account stdin's first line is the refresh token (may be
    /// empty) and its second the client secret, or --refresh-token-env and
    /// --client-secret-env
    Add(Box<AccountArgs>),
    /// Change an account's settings and secrets (as `add` takes them;
    /// secrets from the environment, or from stdin when it is not a terminal)
    Set {
        acntid: i64,
        #[command(flatten)]
        args: Box<AccountArgs>,
    },
    /// Sign in an OAuth 2.0 account with the provider's device flow: prints
    /// a code to enter at the provider, waits, stores the tokens
    Authorize { acntid: i64 },
    /// List accounts
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Show one account (never its passwords or tokens)
    Show {
        acntid: i64,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Remove an account with its folders and stored mail
    Remove { acntid: i64 },
    /// Log in to IMAP and SMTP and report the capabilities
    Test { acntid: i64 },
}

/// How a server takes the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthArg {
    Password,
    Oauth2,
}

/// A provider preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderArg {
    Microsoft,
    Google,
}

/// The settings of `account add` and `account set`.
#[derive(Debug, Args, Default)]
pub struct AccountArgs {
    /// The address (required by `add`)
    #[arg(long)]
    pub email: Option<String>,
    /// The web application's user who owns the account (for logged-in scheduling)
    #[arg(long)]
    pub usrid: Option<i64>,
    /// Required by `add`, unless an --oauth-provider preset gives it
    #[arg(long)]
    pub imap_host: Option<String>,
    #[arg(long)]
    pub imap_port: Option<u16>,
    /// [default: tls, or the preset's]
    #[arg(long, value_parser = ["tls", "starttls", "plain"])]
    pub imap_security: Option<String>,
    /// Defaults to the email
    #[arg(long)]
    pub imap_login: Option<String>,
    /// [default: oauth2 with --oauth-provider, else password]
    #[arg(long, value_enum)]
    pub imap_auth: Option<AuthArg>,
    #[arg(long)]
    pub smtp_host: Option<String>,
    #[arg(long)]
    pub smtp_port: Option<u16>,
    /// [default: starttls, or the preset's]
    #[arg(long, value_parser = ["tls", "starttls", "plain"])]
    pub smtp_security: Option<String>,
    /// Defaults to the email
    #[arg(long)]
    pub smtp_login: Option<String>,
    /// [default: as --imap-auth]
    #[arg(long, value_enum)]
    pub smtp_auth: Option<AuthArg>,
    /// Fills in the token and device URLs, the scope, and the servers
    #[arg(long, value_enum)]
    pub oauth_provider: Option<ProviderArg>,
    /// Microsoft's tenant [default: common]
    #[arg(long)]
    pub oauth_tenant: Option<String>,
    #[arg(long, value_name = "URL")]
    pub oauth_token_url: Option<String>,
    #[arg(long, value_name = "URL")]
    pub oauth_device_url: Option<String>,
    #[arg(long, value_name = "ID")]
    pub oauth_client_id: Option<String>,
    /// Space-separated scopes [default: the preset's]
    #[arg(long)]
    pub oauth_scope: Option<String>,
    /// Read the password (IMAP and SMTP) from this environment variable instead of stdin
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Read the OAuth 2.0 refresh token from this environment variable instead of stdin
    #[arg(long, value_name = "VAR")]
    pub refresh_token_env: Option<String>,
    /// Read the OAuth 2.0 client secret from this environment variable instead of stdin
    #[arg(long, value_name = "VAR")]
    pub client_secret_env: Option<String>,
}

/// `folder ...`
#[derive(Debug, Subcommand)]
pub enum FolderCmd {
    /// List folders
    List {
        #[arg(long = "account", value_name = "ID")]
        account: Option<i64>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Set a folder's priority
    Priority { emfdid: i64, priority: PriorityArg },
}

/// A folder priority on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PriorityArg {
    Hi,
    Lo,
}

/// `session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// The user is active now
    Touch { usrid: i64 },
    /// The user logged out
    End { usrid: i64 },
}

/// `outbox ...`
#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// Queue a raw RFC 5322 message from FILE or stdin (-)
    Add {
        #[arg(long = "account", value_name = "ID")]
        account: i64,
        #[arg(value_name = "FILE", default_value = "-")]
        file: String,
    },
    /// List outgoing messages
    List {
        #[arg(long, value_parser = parse_state)]
        state: Option<OutboxState>,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Make a failed or queued message due now
    Retry { emoid: i64 },
    /// Cancel a queued message
    Cancel { emoid: i64 },
}

/// `attachment ...`
#[derive(Debug, Subcommand)]
pub enum AttachmentCmd {
    /// List a message's attachments
    List {
        emmsid: i64,
        #[arg(long)]
        json: bool,
    },
    /// Write an attachment's decoded bytes to FILE, or to stdout
    Get {
        emattid: i64,
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Options of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// FTS5 query: words, "phrases", prefix*, subject:word (also from_addr:,
    /// to_addrs:, body:), AND, OR, NOT, parentheses. Several arguments are
    /// one query, joined by spaces
    #[arg(required = true, value_name = "QUERY")]
    pub query: Vec<String>,
    /// Only this account's mail
    #[arg(long = "account", value_name = "ID")]
    pub account: Option<i64>,
    /// Only this folder's mail
    #[arg(long = "folder", value_name = "EMFDID")]
    pub folder: Option<i64>,
    /// At most this many messages
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

/// A `--state` that names no state.
#[derive(Debug, thiserror::Error)]
#[error("--state must be queued, sending, sent, failed or cancelled, got '{0}'")]
struct UnknownState(String);

/// `--state S` of `outbox list`.
fn parse_state(s: &str) -> std::result::Result<OutboxState, UnknownState> {
    OutboxState::parse(s).ok_or_else(|| UnknownState(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bare_engine_is_run_with_its_options() {
        let cli = Cli::try_parse_from(["engine", "--dry-run", "--account", "3"]).expect("parse");
        assert!(cli.command.is_none());
        assert!(cli.run.dry_run);
        assert_eq!(cli.run.accounts, vec![3]);
        let cli = Cli::try_parse_from(["engine", "run", "--force", "--no-outbox"]).expect("parse");
        assert!(matches!(
            cli.command,
            Some(Command::Run(RunArgs {
                force: true,
                no_outbox: true,
                ..
            }))
        ));
    }

    #[test]
    fn no_password_flag_exists() {
        assert!(Cli::try_parse_from([
            "engine",
            "account",
            "add",
            "--email",
            "a@b",
            "--imap-host",
            "h",
            "--password",
            "x"
        ])
        .is_err());
    }
}
