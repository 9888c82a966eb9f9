//! The command line (SPEC §2): parsing, the dispatch of each command, and
//! everything printed. The commands call the library and print what it
//! returns; nothing below `cli` prints.
//!
//! Parsing is clap's; every command returns an exit code or an [`Error`]
//! whose code is documented, printed with its causes. Passwords are never
//! taken from argv (visible in `ps`): only stdin or an environment variable
//! named on the command line.

mod account;
mod args;
mod attachment;
mod outbox;
mod progress;
mod search;
mod show;

pub use args::{
    AccountArgs, AccountCmd, AttachmentCmd, AuthArg, Cli, Command, FolderCmd, OutboxCmd, PlanArgs,
    PriorityArg, ProviderArg, RunArgs, SearchArgs, SessionCmd,
};

use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::logging::chain;
use crate::run;
use crate::schedule;
use crate::store::{Location, Store};
use std::io::IsTerminal;
use std::path::PathBuf;

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
        Err(e @ (Error::Config(_) | Error::CaFile { .. })) => {
            eprintln!("{}", chain(&e));
            e.exit_code()
        }
        Err(e) => {
            eprintln!("engine: {}", chain(&e));
            e.exit_code()
        }
    }
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
    // The install directories come first, for every command: a home that
    // is not a directory is a layout error (73), not an unreadable
    // HOME/config.inc (78).
    layout.ensure_dirs()?;
    match cli.command {
        None => run_cmd(layout, &cli.run, now),
        Some(Command::Run(args)) => run_cmd(layout, &args, now),
        Some(Command::Plan(args)) => plan_cmd(layout, &args, now),
        Some(Command::Status { json }) => show::status(layout, &layout.read_config()?, json, now),
        Some(Command::Account(cmd)) => account::command(layout, cmd, now),
        Some(Command::Folder(cmd)) => show::folder(&mut Store::open(&Location::of(layout))?, cmd),
        Some(Command::Session(cmd)) => {
            let mut store = Store::open(&Location::of(layout))?;
            match cmd {
                SessionCmd::Touch { usrid } => store.touch_session(usrid, now)?,
                SessionCmd::End { usrid } => store.end_session(usrid)?,
            }
            Ok(exit::OK)
        }
        Some(Command::Outbox(cmd)) => {
            outbox::command(&mut Store::open(&Location::of(layout))?, cmd, now)
        }
        Some(Command::Attachment(cmd)) => {
            attachment::command(&Store::open(&Location::of(layout))?, cmd)
        }
        Some(Command::Search(args)) => search::command(&Store::open(&Location::of(layout))?, &args),
    }
}

fn run_cmd(layout: &Layout, args: &RunArgs, now: i64) -> Result<i32> {
    let config = layout.read_config()?;
    if args.dry_run {
        let store = Store::open(&Location::of(layout))?;
        run::check_accounts(&store, &args.accounts)?;
        let (tasks, _) = run::plan_tasks(&store, &config, now, args.force, &args.accounts)?;
        show::plan(&store, &tasks, false)?;
        return Ok(exit::OK);
    }
    crate::logging::init(layout)?;
    let opts = run::Options {
        force: args.force,
        accounts: args.accounts.clone(),
        no_sync: args.no_sync,
        no_outbox: args.no_outbox,
    };
    let progress = progress::Terminal::new(std::io::stderr().is_terminal());
    let report = run::run(layout, &config, &opts, now, &progress);
    progress.done();
    match report? {
        run::Report::AnotherLive | run::Report::Completed { failed: 0 } => Ok(exit::OK),
        run::Report::Completed { failed } => {
            eprintln!(
                "engine: {failed} job(s) failed; see {}/l-info.log and `engine status`",
                layout.logs_dir().display()
            );
            Ok(exit::TEMPFAIL)
        }
    }
}

fn plan_cmd(layout: &Layout, args: &PlanArgs, now: i64) -> Result<i32> {
    let config = layout.read_config()?;
    let at = match &args.at {
        None => now,
        Some(text) => schedule::parse_at(&chrono::Local, text).ok_or_else(|| {
            Error::Usage(format!(
                "--at '{text}': expected local time as 'YYYY-MM-DD HH:MM:SS'"
            ))
        })?,
    };
    let store = Store::open(&Location::of(layout))?;
    run::check_accounts(&store, &args.accounts)?;
    let (tasks, _) = run::plan_tasks(&store, &config, at, args.force, &args.accounts)?;
    show::plan(&store, &tasks, args.json)?;
    Ok(exit::OK)
}
