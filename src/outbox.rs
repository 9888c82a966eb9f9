//! Outgoing mail (SPEC §8). Being written: see the outbox issue.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::writer::Writer;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Drains the outbox while the sync runs; returns the number of failures.
pub fn drain_during_run(
    _layout: &Layout,
    _config: &Config,
    _writer: &Writer,
    _now: i64,
    _deadline: Instant,
    _sync_done: &AtomicBool,
) -> Result<usize> {
    Ok(0)
}

/// `engine outbox ...`
pub fn command(_layout: &Layout, _cmd: crate::cli::OutboxCmd, _now: i64) -> Result<i32> {
    Err(Error::Other("the outbox is not implemented yet".into()))
}

/// `engine account test`
pub fn test_account(_a: &crate::store::Account, _config: &Config) -> Result<i32> {
    Err(Error::Other("not implemented yet".into()))
}
