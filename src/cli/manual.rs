//! `engine completions SHELL` and `engine man` (SPEC §15): shell completion
//! scripts (clap_complete) and the manual page (clap_mangen), both made from
//! the same clap `Command` that parses the command line, so they cannot
//! drift from it.
//!
//! clap_mangen writes one page per command and points to `engine-run(1)`
//! and the like; we print one page, `engine(1)`, with every command (nested
//! ones too) in a COMMANDS section, plus the exit codes and files.

use super::args::{Cli, ShellArg};
use crate::error::{exit, Error, Result};
use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use std::io::Write;

/// The exit codes (SPEC §2), for the page.
const EXIT_CODES: &[(&str, &str)] = &[
    (
        "0",
        "the run completed and every job succeeded, or another run was live",
    ),
    (
        "75",
        "the run completed but at least one job failed (see logs/ and engine status)",
    ),
    ("2", "usage error"),
    ("78", "configuration error (config.inc)"),
    ("73", "pid/, data/ or logs/ cannot be created or opened"),
    (
        "65",
        "bad input to a command (e.g. a message outbox add refuses)",
    ),
    ("1", "anything else"),
];

/// The files of an install, for the page.
const FILES: &[(&str, &str)] = &[
    (
        "HOME/config.inc",
        "the web application's PHP constants (BG_*, EMAIL_*)",
    ),
    (
        "HOME/data/engine.sqlite",
        "accounts, folders, received mail and the outbox",
    ),
    (
        "HOME/logs/",
        "l-debug.log, l-info.log, l-threading-error.txt",
    ),
    (
        "HOME/pid/engine.pid",
        "the lock that keeps runs from overlapping",
    ),
];

/// Prints the completion script for `shell`.
pub fn completions(shell: ShellArg) -> Result<i32> {
    let shell = match shell {
        ShellArg::Bash => clap_complete::Shell::Bash,
        ShellArg::Zsh => clap_complete::Shell::Zsh,
        ShellArg::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "engine", &mut out);
    emit(&out)
}

/// Prints the manual page.
pub fn man() -> Result<i32> {
    let page = page().map_err(|e| Error::other("cannot render the manual page", e))?;
    emit(&page)
}

fn emit(bytes: &[u8]) -> Result<i32> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::other("cannot write to stdout", e))?;
    Ok(exit::OK)
}

/// The page as roff.
fn page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = Man::new(cmd.clone()).manual("backproc");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    roff.text([roman(
        "Without a command, engine runs one cycle, as engine run does.",
    )]);
    roff.to_writer(&mut out)?;
    for sub in cmd.get_subcommands() {
        command_section(sub, &mut out)?;
    }
    let mut roff = Roff::new();
    for (heading, items) in [("EXIT STATUS", EXIT_CODES), ("FILES", FILES)] {
        roff.control("SH", [heading]);
        for (term, meaning) in items {
            roff.control("TP", [])
                .text([bold(*term)])
                .text([roman(*meaning)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]).text([roman(
        "README.md in the install directory; crontab(5), systemd.timer(5), logrotate(8)",
    )]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// A command's entry: its full name as a subsection, what it does, its
/// synopsis and options; then its own commands.
fn command_section(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    let mut roff = Roff::new();
    roff.control("SS", [name]);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        roff.text([roman(about.to_string())]);
    }
    roff.to_writer(out)?;
    // The global options and --help are said once, at the top.
    let own = cmd.clone().mut_args(|a| {
        let shared = a.is_global_set() || a.get_id() == "help";
        a.hide(shared)
    });
    let has_options = own.get_arguments().any(|a| !a.is_hide_set());
    let man = Man::new(own);
    // The synopsis and options, without their section headings: they
    // belong to this subsection.
    let mut body = Vec::new();
    man.render_synopsis_section(&mut body)?;
    if has_options {
        man.render_options_section(&mut body)?;
    }
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(_) => out.extend_from_slice(b".PP\n"),
            None => {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
    for sub in cmd.get_subcommands() {
        command_section(sub, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's full name, nested ones too (`engine account add`).
    fn names(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let name = format!("{prefix} {}", sub.get_name());
            out.push(name.clone());
            names(sub, &name, out);
        }
    }

    #[test]
    fn the_page_has_every_command_once_and_no_top_level_headings_inside() {
        let page = String::from_utf8(page().expect("page")).expect("utf-8");
        let mut all = Vec::new();
        names(&Cli::command(), "engine", &mut all);
        assert!(all.len() > 20, "{all:?}");
        for name in &all {
            let heading = format!(".SS \"{name}\"\n");
            let plain = format!(".SS {name}\n");
            let n = page.matches(&heading).count() + page.matches(&plain).count();
            assert_eq!(n, 1, "{name} in:\n{page}");
        }
        let sections: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH")).collect();
        assert_eq!(
            sections,
            vec![
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH DESCRIPTION",
                ".SH OPTIONS",
                ".SH COMMANDS",
                ".SH \"EXIT STATUS\"",
                ".SH FILES",
                ".SH \"SEE ALSO\"",
                ".SH VERSION"
            ]
        );
    }
}
