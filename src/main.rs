//! `engine`: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = backproc::cli::Cli::parse();
    std::process::exit(backproc::cli::dispatch(cli));
}
