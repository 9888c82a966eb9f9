//! The command line (SPEC §2) and the dispatch of each command.
//!
//! Parsing is clap's; every command returns an exit code or an [`Error`]
//! whose code is documented. Passwords are never taken from argv (visible in
//! `ps`): only stdin or an environment variable named on the command line.

use crate::config::{self, Config};
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::run::{self, plan_tasks};
use crate::schedule::{self, FolderInput, Settings, Task};
use crate::store::{NewAccount, Store};
use chrono::TimeZone;
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use std::io::{BufRead, IsTerminal};
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
    /// line IMAP, second SMTP; one line means both) or --password-env
    Add(Box<AddAccount>),
    /// List accounts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one account (never its passwords)
    Show {
        acntid: i64,
        #[arg(long)]
        json: bool,
    },
    /// Remove an account with its folders and stored mail
    Remove { acntid: i64 },
    /// Log in to IMAP and SMTP and report the capabilities
    Test { acntid: i64 },
}

/// `account add`
#[derive(Debug, Args)]
pub struct AddAccount {
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub usrid: Option<i64>,
    #[arg(long)]
    pub imap_host: String,
    #[arg(long)]
    pub imap_port: Option<u16>,
    #[arg(long, default_value = "tls", value_parser = ["tls", "starttls", "plain"])]
    pub imap_security: String,
    /// Defaults to the email
    #[arg(long)]
    pub imap_login: Option<String>,
    #[arg(long)]
    pub smtp_host: Option<String>,
    #[arg(long)]
    pub smtp_port: Option<u16>,
    #[arg(long, default_value = "starttls", value_parser = ["tls", "starttls", "plain"])]
    pub smtp_security: String,
    /// Defaults to the email
    #[arg(long)]
    pub smtp_login: Option<String>,
    /// Read the password (IMAP and SMTP) from this environment variable instead of stdin
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
}

/// `folder ...`
#[derive(Debug, Subcommand)]
pub enum FolderCmd {
    /// List folders
    List {
        #[arg(long = "account", value_name = "ID")]
        account: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Set a folder's priority
    Priority {
        emfdid: i64,
        #[arg(value_parser = ["hi", "lo"])]
        priority: String,
    },
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
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make a failed or queued message due now
    Retry { emoid: i64 },
    /// Cancel a queued message
    Cancel { emoid: i64 },
}

/// Runs the parsed command line; returns the exit code.
pub fn dispatch(cli: Cli) -> i32 {
    let home = cli
        .home
        .clone()
        .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
    let layout = Layout::new(home, cli.config.clone());
    let now = chrono::Utc::now().timestamp();
    match execute(cli, &layout, now) {
        Ok(code) => code,
        // `PATH:LINE: NAME expects ...` stands alone, like a compiler's
        // diagnostic, so editors and scripts can jump to the line.
        Err(e @ Error::Config(_)) => {
            eprintln!("{e}");
            e.exit_code()
        }
        Err(e) => {
            eprintln!("engine: {e}");
            e.exit_code()
        }
    }
}

/// Reads `config.inc`. A relative `BG_TLS_CA_FILE` is taken relative to the
/// directory of `config.inc`, not to wherever cron happens to start us.
fn load_config(layout: &Layout) -> Result<Config> {
    let mut config = config::load(&layout.config)?;
    if let Some(ca) = config.tls_ca_file.take() {
        config.tls_ca_file = Some(match layout.config.parent() {
            Some(dir) if ca.is_relative() => dir.join(ca),
            _ => ca,
        });
    }
    Ok(config)
}

fn open_store(layout: &Layout) -> Result<Store> {
    layout.ensure_dirs()?;
    Store::open(&layout.db_path())
}

fn execute(cli: Cli, layout: &Layout, now: i64) -> Result<i32> {
    let r = &cli.run;
    let run_options_given =
        r.dry_run || r.force || r.no_sync || r.no_outbox || !r.accounts.is_empty();
    if cli.command.is_some() && run_options_given {
        return Err(Error::Usage(
            "run options (--dry-run, --force, --account, --no-sync, --no-outbox) go after `run`"
                .into(),
        ));
    }
    // The install directories come first: a home that is not a directory
    // is a layout error (73), not an unreadable HOME/config.inc (78).
    layout.ensure_dirs()?;
    match cli.command {
        None => run_cmd(layout, &cli.run, now),
        Some(Command::Run(args)) => run_cmd(layout, &args, now),
        Some(Command::Plan(args)) => plan_cmd(layout, &args, now),
        Some(Command::Status { json }) => status_cmd(layout, json, now),
        Some(Command::Account(cmd)) => account_cmd(layout, cmd, now),
        Some(Command::Folder(cmd)) => folder_cmd(layout, cmd),
        Some(Command::Session(cmd)) => {
            let mut store = open_store(layout)?;
            match cmd {
                SessionCmd::Touch { usrid } => store.touch_session(usrid, now)?,
                SessionCmd::End { usrid } => store.end_session(usrid)?,
            }
            Ok(exit::OK)
        }
        Some(Command::Outbox(cmd)) => crate::outbox::command(layout, cmd, now),
    }
}

fn run_cmd(layout: &Layout, args: &RunArgs, now: i64) -> Result<i32> {
    let config = load_config(layout)?;
    let opts = run::Options {
        dry_run: args.dry_run,
        force: args.force,
        accounts: args.accounts.clone(),
        no_sync: args.no_sync,
        no_outbox: args.no_outbox,
    };
    run::run(layout, &config, &opts, now)
}

fn plan_cmd(layout: &Layout, args: &PlanArgs, now: i64) -> Result<i32> {
    let config = load_config(layout)?;
    let at = match &args.at {
        None => now,
        Some(text) => schedule::parse_at(&chrono::Local, text).ok_or_else(|| {
            Error::Usage(format!(
                "--at '{text}': expected local time as 'YYYY-MM-DD HH:MM:SS'"
            ))
        })?,
    };
    let store = open_store(layout)?;
    run::check_accounts(&store, &args.accounts)?;
    let (tasks, _) = plan_tasks(&store, &config, at, args.force, &args.accounts)?;
    print_plan(&store, &tasks, args.json)?;
    Ok(exit::OK)
}

fn local(t: Option<i64>) -> String {
    match t.and_then(|t| chrono::Local.timestamp_opt(t, 0).earliest()) {
        Some(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "never".to_string(),
    }
}

/// Prints the plan as a table or as JSON (`plan --json`, SPEC §2).
pub fn print_plan(store: &Store, tasks: &[Task], as_json: bool) -> Result<()> {
    let folders = store.folders(None, false)?;
    let name_of = |emfdid: Option<i64>| {
        emfdid
            .and_then(|id| folders.iter().find(|f| f.emfdid == id))
            .map(|f| f.name.clone())
    };
    if as_json {
        let items: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                json!({
                    "acntid": t.acntid,
                    "emfdid": t.emfdid,
                    "folder": name_of(t.emfdid),
                    "kind": t.kind.as_str(),
                    "class": match t.class {
                        schedule::Class::HiLoggedIn => "hi-logged-in",
                        schedule::Class::Hi => "hi",
                        schedule::Class::Lo => "lo",
                    },
                    "overdue": t.overdue,
                    "reason": t.reason,
                    "deferred": t.deferred,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    if tasks.is_empty() {
        println!("nothing is due");
        return Ok(());
    }
    println!(
        "{:>6} {:>6}  {:<6}  {:<24}  reason",
        "acntid", "emfdid", "kind", "folder"
    );
    for t in tasks {
        println!(
            "{:>6} {:>6}  {:<6}  {:<24}  {}{}",
            t.acntid,
            t.emfdid.map_or("-".to_string(), |e| e.to_string()),
            t.kind.as_str(),
            name_of(t.emfdid).unwrap_or_else(|| "(all)".into()),
            t.reason,
            if t.deferred {
                " [deferred to the next run]"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn status_cmd(layout: &Layout, as_json: bool, now: i64) -> Result<i32> {
    let config = load_config(layout)?;
    let store = open_store(layout)?;
    let live = crate::lock::probe(&layout.pid_file());
    let settings = Settings::from(&config);
    let sessions = store.sessions()?;
    let accounts = store.accounts()?;
    let folders = store.folders(None, false)?;
    let counts = store.outbox_counts()?;
    let count_of = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let next_of = |f: &crate::store::Folder, usrid: Option<i64>| {
        let input = FolderInput {
            emfdid: Some(f.emfdid),
            acntid: f.acntid,
            usrid,
            hi: f.is_hi(),
            last_recent_sync_at: f.last_recent_sync_at,
            last_full_sync_at: f.last_full_sync_at,
            pending_large: f.has_partial,
        };
        let li = schedule::logged_in(usrid, &sessions, &settings, now);
        schedule::next_due(&input, li, &settings, now, &chrono::Local)
    };
    if as_json {
        let accts: Vec<serde_json::Value> = accounts
            .iter()
            .map(|a| {
                let fs: Vec<serde_json::Value> = folders
                    .iter()
                    .filter(|f| f.acntid == a.acntid)
                    .map(|f| {
                        json!({
                            "emfdid": f.emfdid,
                            "name": f.name,
                            "priority": f.priority,
                            "special": f.special,
                            "last_recent_sync_at": f.last_recent_sync_at,
                            "last_full_sync_at": f.last_full_sync_at,
                            "next_due_at": next_of(f, a.usrid),
                            "complete": f.uidvalidity.is_some() && f.backfill_below.is_none(),
                            "last_error": f.last_error,
                        })
                    })
                    .collect();
                json!({
                    "acntid": a.acntid,
                    "email": a.email,
                    "active": a.active,
                    "last_error": a.last_error,
                    "last_error_at": a.last_error_at,
                    "folders": fs,
                })
            })
            .collect();
        let out = json!({
            "run": {"live": live.live, "pid": live.pid, "since": live.since},
            "accounts": accts,
            "outbox": {
                "queued": count_of("queued"),
                "sending": count_of("sending"),
                "sent": count_of("sent"),
                "failed": count_of("failed"),
                "cancelled": count_of("cancelled"),
            },
        });
        println!("{out}");
        return Ok(exit::OK);
    }
    if live.live {
        println!(
            "run: live (pid {}, since {})",
            live.pid.map_or("?".into(), |p| p.to_string()),
            local(live.since)
        );
    } else {
        println!("run: none live");
    }
    for a in &accounts {
        println!(
            "account {} {}{}{}",
            a.acntid,
            a.email,
            if a.active { "" } else { " (inactive)" },
            a.last_error
                .as_deref()
                .map(|e| format!("\n  last error ({}): {e}", local(a.last_error_at)))
                .unwrap_or_default()
        );
        for f in folders.iter().filter(|f| f.acntid == a.acntid) {
            let next = next_of(f, a.usrid);
            println!(
                "  {:>5} {:<28} {:<2} recent {}  full {}  next {}{}",
                f.emfdid,
                f.name,
                if f.is_hi() { "hi" } else { "lo" },
                local(f.last_recent_sync_at),
                local(f.last_full_sync_at),
                if next <= now {
                    "now".to_string()
                } else {
                    local(Some(next))
                },
                f.last_error
                    .as_deref()
                    .map(|e| format!("\n        last error: {e}"))
                    .unwrap_or_default()
            );
        }
    }
    println!(
        "outbox: {} queued, {} sending, {} sent, {} failed, {} cancelled",
        count_of("queued"),
        count_of("sending"),
        count_of("sent"),
        count_of("failed"),
        count_of("cancelled")
    );
    Ok(exit::OK)
}

/// Reads the IMAP and SMTP passwords: from `env` when named, else stdin
/// (first line IMAP, second SMTP; one line means both).
fn read_passwords(env: Option<&str>) -> Result<(String, String)> {
    if let Some(var) = env {
        let value = std::env::var(var)
            .map_err(|_| Error::Input(format!("environment variable {var} is not set")))?;
        if value.is_empty() {
            return Err(Error::Input(format!("environment variable {var} is empty")));
        }
        return Ok((value.clone(), value));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password: IMAP on the first line, SMTP on the second (empty: the same)");
    }
    let mut lines = Vec::new();
    for line in stdin.lock().lines().take(2) {
        let line = line.map_err(|e| Error::Input(format!("cannot read the password: {e}")))?;
        lines.push(line.trim_end_matches('\r').to_string());
    }
    let imap = lines.first().cloned().unwrap_or_default();
    if imap.is_empty() {
        return Err(Error::Input(
            "no password on stdin (first line IMAP, second SMTP), and no --password-env".into(),
        ));
    }
    let smtp = lines
        .get(1)
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| imap.clone());
    Ok((imap, smtp))
}

fn account_json(a: &crate::store::Account) -> serde_json::Value {
    json!({
        "acntid": a.acntid,
        "usrid": a.usrid,
        "email": a.email,
        "imap_host": a.imap_host,
        "imap_port": a.imap_port,
        "imap_security": a.imap_security,
        "imap_login": a.imap_login(),
        "imap_password_set": a.imap_password.as_deref().is_some_and(|p| !p.is_empty()),
        "smtp_host": a.smtp_host,
        "smtp_port": a.smtp_port,
        "smtp_security": a.smtp_security,
        "smtp_login": a.smtp_login(),
        "smtp_password_set": a.smtp_password.as_deref().is_some_and(|p| !p.is_empty()),
        "active": a.active,
        "last_error": a.last_error,
        "last_error_at": a.last_error_at,
    })
}

fn account_cmd(layout: &Layout, cmd: AccountCmd, now: i64) -> Result<i32> {
    match cmd {
        AccountCmd::Add(a) => {
            if !a.email.contains('@')
                || a.email.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::Input(format!(
                    "--email '{}' is not an address",
                    a.email
                )));
            }
            if a.imap_host.trim().is_empty() {
                return Err(Error::Input("--imap-host is empty".into()));
            }
            let (imap_password, smtp_password) = read_passwords(a.password_env.as_deref())?;
            let mut store = open_store(layout)?;
            let twins: Vec<String> = store
                .accounts()?
                .iter()
                .filter(|b| b.email.eq_ignore_ascii_case(&a.email))
                .map(|b| b.acntid.to_string())
                .collect();
            let email = a.email.clone();
            let acntid = store.add_account(
                &NewAccount {
                    usrid: a.usrid,
                    email: a.email,
                    imap_host: a.imap_host,
                    imap_port: a.imap_port,
                    imap_security: a.imap_security,
                    imap_login: a.imap_login,
                    imap_password,
                    smtp_host: a.smtp_host,
                    smtp_port: a.smtp_port,
                    smtp_security: a.smtp_security,
                    smtp_login: a.smtp_login,
                    smtp_password: Some(smtp_password),
                },
                now,
            )?;
            println!("{acntid}");
            if !twins.is_empty() {
                // Added all the same (two accounts may share an address on
                // purpose), but both would receive the same mail.
                eprintln!(
                    "engine: note: account {} has the same address ({email}); \
                     both will receive its mail (`engine account remove ID` removes one)",
                    twins.join(", ")
                );
            }
            Ok(exit::OK)
        }
        AccountCmd::List { json: as_json } => {
            let store = open_store(layout)?;
            let accounts = store.accounts()?;
            if as_json {
                let v: Vec<_> = accounts.iter().map(account_json).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for a in &accounts {
                    println!(
                        "{:>5}  {:<32} imap {}:{} ({}){}{}",
                        a.acntid,
                        a.email,
                        a.imap_host.as_deref().unwrap_or("-"),
                        a.imap_port.map_or("default".into(), |p| p.to_string()),
                        a.imap_security,
                        if a.active { "" } else { "  inactive" },
                        a.last_error
                            .as_deref()
                            .map(|e| format!("  error: {e}"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Show {
            acntid,
            json: as_json,
        } => {
            let store = open_store(layout)?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            let v = account_json(&a);
            if as_json {
                println!("{v}");
            } else if let Some(map) = v.as_object() {
                for (k, val) in map {
                    println!(
                        "{k}: {}",
                        val.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| val.to_string())
                    );
                }
            }
            Ok(exit::OK)
        }
        AccountCmd::Remove { acntid } => {
            let mut store = open_store(layout)?;
            if !store.remove_account(acntid)? {
                return Err(Error::Input(format!("no account {acntid}")));
            }
            Ok(exit::OK)
        }
        AccountCmd::Test { acntid } => {
            let config = load_config(layout)?;
            let store = open_store(layout)?;
            let a = store
                .account(acntid)?
                .ok_or_else(|| Error::Input(format!("no account {acntid}")))?;
            crate::outbox::test_account(&a, &config)
        }
    }
}

fn folder_cmd(layout: &Layout, cmd: FolderCmd) -> Result<i32> {
    match cmd {
        FolderCmd::List {
            account,
            json: as_json,
        } => {
            let store = open_store(layout)?;
            let folders = store.folders(account, true)?;
            if as_json {
                let v: Vec<_> = folders
                    .iter()
                    .map(|f| {
                        json!({
                            "emfdid": f.emfdid,
                            "acntid": f.acntid,
                            "name": f.name,
                            "imap_name": f.imap_name,
                            "special": f.special,
                            "priority": f.priority,
                            "uidvalidity": f.uidvalidity,
                            "last_uid": f.last_uid,
                            "complete": f.uidvalidity.is_some() && f.backfill_below.is_none(),
                            "last_recent_sync_at": f.last_recent_sync_at,
                            "last_full_sync_at": f.last_full_sync_at,
                            "removed_at": f.removed_at,
                            "last_error": f.last_error,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for f in &folders {
                    println!(
                        "{:>5} {:>5}  {:<2} {:<8} {}{}",
                        f.emfdid,
                        f.acntid,
                        if f.is_hi() { "hi" } else { "lo" },
                        f.special.as_deref().unwrap_or(""),
                        f.name,
                        if f.removed_at.is_some() {
                            "  (removed on the server)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(exit::OK)
        }
        FolderCmd::Priority { emfdid, priority } => {
            let mut store = open_store(layout)?;
            if !store.set_folder_priority(emfdid, &priority)? {
                return Err(Error::Input(format!("no folder {emfdid}")));
            }
            Ok(exit::OK)
        }
    }
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
