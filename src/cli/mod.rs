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
mod manual;
mod outbox;
mod progress;
mod search;
mod show;

pub use args::{
    AccountArgs, AccountCmd, AttachmentCmd, AuthArg, Cli, Command, FolderCmd, OutboxCmd, PlanArgs,
    PriorityArg, ProviderArg, RunArgs, SearchArgs, SessionCmd, ShellArg,
};

use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::logging::chain;
use crate::metrics;
use crate::run;
use crate::schedule;
use crate::store::{Location, Store};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

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
    // Completions and the manual need no install: nothing is created.
    match cli.command {
        Some(Command::Completions { shell }) => return manual::completions(shell),
        Some(Command::Man) => return manual::man(),
        _ => {}
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
        Some(Command::Folder(cmd)) => show::folder(&mut Store::open(&location(layout)?)?, cmd),
        Some(Command::Session(cmd)) => {
            let mut store = Store::open(&location(layout)?)?;
            match cmd {
                SessionCmd::Touch { usrid } => store.touch_session(usrid, now)?,
                SessionCmd::End { usrid } => store.end_session(usrid)?,
            }
            Ok(exit::OK)
        }
        Some(Command::Outbox(cmd)) => {
            outbox::command(&mut Store::open(&location(layout)?)?, cmd, now)
        }
        Some(Command::Attachment(cmd)) => {
            attachment::command(&Store::open(&location(layout)?)?, cmd)
        }
        Some(Command::Search(args)) => search::command(&Store::open(&location(layout)?)?, &args),
        Some(Command::Completions { .. } | Command::Man) => Ok(exit::OK),
    }
}

/// The install's database (`BG_DATABASE_URL` of its `config.inc`).
fn location(layout: &Layout) -> Result<Location> {
    Ok(Location::of(layout, &layout.read_config()?)?)
}

fn run_cmd(layout: &Layout, args: &RunArgs, now: i64) -> Result<i32> {
    let config = layout.read_config()?;
    if args.dry_run {
        let store = Store::open(&location(layout)?)?;
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
    let started = Instant::now();
    let report = run::run(layout, &config, &opts, now, &progress);
    progress.done();
    let failed = match &report {
        Ok(run::Report::Completed(summary)) => summary.failed_jobs(),
        _ => 0,
    };
    let code = match &report {
        Ok(_) if failed > 0 => exit::TEMPFAIL,
        Ok(_) => exit::OK,
        Err(e) => e.exit_code(),
    };
    if let Some(path) = &config.metrics_file {
        // Written here, once the exit code is known: the file says how the
        // whole command ended, a run stopped by an error included.
        let run = metrics::Run {
            end: chrono::Utc::now().timestamp(),
            duration: started.elapsed().as_secs_f64(),
            exit_code: code,
            another_live: matches!(report, Ok(run::Report::AnotherLive)),
            summary: match &report {
                Ok(run::Report::Completed(summary)) => Some(summary),
                _ => None,
            },
        };
        let published = match Location::of(layout, &config) {
            Ok(at) => metrics::publish(path, &at, &run).map_err(|e| chain(&e)),
            Err(e) => Err(chain(&e)),
        };
        if let Err(why) = published {
            log::error!("{why}");
            eprintln!("engine: {why}");
        }
    }
    report?;
    if failed > 0 {
        eprintln!(
            "engine: {failed} job(s) failed; see {}/l-info.log and `engine status`",
            layout.logs_dir().display()
        );
    }
    Ok(code)
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
    let store = Store::open(&location(layout)?)?;
    run::check_accounts(&store, &args.accounts)?;
    let (tasks, _) = run::plan_tasks(&store, &config, at, args.force, &args.accounts)?;
    show::plan(&store, &tasks, args.json)?;
    Ok(exit::OK)
}
