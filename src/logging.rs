//! The three log files of `logs/` and the seed's line format (SPEC §9).
//!
//! `[2014-01-12 22:28:05][#13817.t12] received 31468 new messages in 432s [53,824]`:
//! local time, `#pid.tN` (N the worker number, `t0` the main thread), the
//! message, and `[acntid,emfdid]` when the line concerns an account or folder.
//! Every run reopens the files in append mode, so logrotate needs no
//! copytruncate. fern is named nowhere else. Nothing here ever sees a password
//! or a message body: callers log ids, counts and server replies only.

use crate::layout::{self, restrict_file, Layout};
use log::LevelFilter;
use std::fmt;

/// Log target for failures of worker threads (also written to `l-threading-error.txt`).
pub const THREADING: &str = "backproc::threading";

/// The account/folder a log line concerns: `[53,824]`, `[53,]` or `[,824]`.
#[derive(Debug, Clone, Copy)]
pub struct At(pub Option<i64>, pub Option<i64>);

/// `[acntid,emfdid]`
pub fn at(acntid: i64, emfdid: i64) -> At {
    At(Some(acntid), Some(emfdid))
}

/// `[acntid,]`
pub fn at_account(acntid: i64) -> At {
    At(Some(acntid), None)
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        if let Some(a) = self.0 {
            write!(f, "{a}")?;
        }
        f.write_str(",")?;
        if let Some(b) = self.1 {
            write!(f, "{b}")?;
        }
        f.write_str("]")
    }
}

/// The `tN` of the current thread: worker threads are named `t1`.. by the
/// pool; the main thread (and any unnamed one) is `t0`.
pub fn thread_tag() -> String {
    match std::thread::current().name() {
        Some(name)
            if name.len() > 1
                && name.starts_with('t')
                && name[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            name.to_string()
        }
        _ => "t0".to_string(),
    }
}

/// Formats one line as the seed does (without the trailing newline). A
/// message is always one line: line breaks inside it (a multi-line server
/// reply, an error's cause chain) become spaces, so `tail` and `grep` see
/// one entry per line and a server cannot forge log lines.
pub fn format_line(
    local_time: &chrono::NaiveDateTime,
    pid: u32,
    thread: &str,
    message: &fmt::Arguments<'_>,
) -> String {
    let mut text = message.to_string();
    if text.contains(['\n', '\r']) {
        text = text
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
    }
    format!(
        "[{}][#{pid}.{thread}] {text}",
        local_time.format("%Y-%m-%d %H:%M:%S")
    )
}

/// An error with its causes on one line, `what: why: why` (as anyhow's
/// `{:#}` says it): for stderr, the logs and `last_error`, where the cause
/// is what an administrator acts on.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut last = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            // A `transparent` layer repeats its source: say it once.
            if !text.is_empty() && text != last {
                write!(f, ": {text}")?;
            }
            last = text;
            cause = c.source();
        }
        Ok(())
    }
}

/// [`Chain`] as a `String`.
pub fn chain(e: &dyn std::error::Error) -> String {
    Chain(e).to_string()
}

/// Opens the three files under `logs/` and installs the logger. Fails with
/// exit 73 when a file cannot be opened.
pub fn init(layout: &Layout) -> Result<(), layout::Error> {
    let dir = layout.logs_dir();
    let open = |name: &str| {
        let path = dir.join(name);
        let file = fern::log_file(&path)
            .map_err(|e| layout::Error::new(format!("cannot open {}", path.display()), e))?;
        restrict_file(&path);
        Ok::<_, layout::Error>(file)
    };
    let pid = std::process::id();
    let dispatch = fern::Dispatch::new()
        .format(move |out, message, _record| {
            let now = chrono::Local::now().naive_local();
            out.finish(format_args!(
                "{}",
                format_line(&now, pid, &thread_tag(), message)
            ))
        })
        .level(LevelFilter::Warn)
        .level_for("backproc", LevelFilter::Debug)
        .chain(
            fern::Dispatch::new()
                .level(LevelFilter::Debug)
                .chain(open("l-debug.log")?),
        )
        .chain(
            fern::Dispatch::new()
                .level(LevelFilter::Info)
                .chain(open("l-info.log")?),
        )
        .chain(
            fern::Dispatch::new()
                .filter(|meta| meta.target() == THREADING)
                .chain(open("l-threading-error.txt")?),
        );
    // A second init in one process (tests) keeps the first logger.
    let _ = dispatch.apply();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_line_format() {
        let t = chrono::NaiveDate::from_ymd_opt(2014, 1, 12)
            .and_then(|d| d.and_hms_opt(22, 28, 5))
            .expect("valid date");
        let line = format_line(
            &t,
            13817,
            "t12",
            &format_args!(
                "received {} new messages in {}s {}",
                31468,
                432,
                at(53, 824)
            ),
        );
        assert_eq!(
            line,
            "[2014-01-12 22:28:05][#13817.t12] received 31468 new messages in 432s [53,824]"
        );
    }

    #[test]
    fn a_message_is_always_one_line() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 11, 29)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .expect("valid date");
        let line = format_line(
            &t,
            1,
            "t2",
            &format_args!(
                "send failed: {} {}",
                "451 4.3.0 first\r\n451 4.3.0 second\r\n",
                at_account(3)
            ),
        );
        assert_eq!(
            line,
            "[2026-11-29 09:00:00][#1.t2] send failed: 451 4.3.0 first 451 4.3.0 second [3,]"
        );
        let forged = format_line(
            &t,
            1,
            "t1",
            &format_args!("x\n[2026-11-29 09:00:00][#1.t0] forged"),
        );
        assert!(!forged.contains('\n'), "{forged}");
    }

    #[test]
    fn at_forms() {
        assert_eq!(at(1, 2).to_string(), "[1,2]");
        assert_eq!(at_account(7).to_string(), "[7,]");
        assert_eq!(At(None, Some(3)).to_string(), "[,3]");
    }

    #[test]
    fn thread_tags() {
        let tag = std::thread::Builder::new()
            .name("t12".into())
            .spawn(thread_tag)
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(tag, "t12");
        let tag = std::thread::Builder::new()
            .name("writer".into())
            .spawn(thread_tag)
            .expect("spawn")
            .join()
            .expect("join");
        assert_eq!(tag, "t0");
    }
}
