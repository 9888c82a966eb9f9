//! Attachments and search for the messages stored before them (the content migration,
//! SPEC §14): each `engine run`, once its sync and outbox are done, spends
//! up to [`PER_RUN`] on them (a run with `--no-sync --no-outbox` does
//! nothing else and works on until `BG_MAX_RUN_TIME`), oldest message first.
//!
//! Why there and not in the migration itself or a command of its own: every
//! command migrates first, and the web application's `outbox add` must not
//! wait minutes for a million messages to be parsed; cron runs `engine run`
//! anyway, so an upgraded install fills itself in without anyone doing
//! anything, a slice per run, while new mail keeps arriving (new messages
//! get their rows as they are stored). The run's lock keeps two passes from
//! overlapping.
//!
//! A batch is read, parsed outside any transaction, then written with the
//! backfill's bookmark in one short transaction ([`Store::backfill_write`]):
//! the write lock is held for milliseconds at a time, so the web
//! application's writes go on meanwhile, and a run killed at any moment
//! resumes after the last batch committed, with nothing missed or written
//! twice.

use crate::mime::Content;
use crate::store::{self, Store};
use std::time::{Duration, Instant};

/// The most a run that also syncs spends on the backfill.
pub const PER_RUN: Duration = Duration::from_secs(60);

/// A batch read: at most this many messages...
const BATCH_COUNT: usize = 200;
/// ...and no more once this many bytes of them are read.
const BATCH_BYTES: usize = 4 << 20;
/// A write transaction: at most this much text to index (what the time
/// under the write lock grows with), so it lasts milliseconds.
const WRITE_TEXT: usize = 256 << 10;
/// And at most this many messages.
const WRITE_COUNT: usize = 50;

/// Progress is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Messages processed in this pass.
    pub messages: usize,
    /// Nothing is left to do.
    pub finished: bool,
    /// The longest write transaction of the pass.
    pub longest_write: Duration,
    /// Time spent in write transactions, and parsing.
    pub writing: Duration,
    pub parsing: Duration,
}

/// Works on the backfill until it is finished or `until` passes; `now` is
/// the run's time, recorded as when it started and finished.
pub fn run(store: &mut Store, until: Instant, now: i64) -> store::Result<Pass> {
    let mut state = store.backfill_state()?;
    let mut pass = Pass {
        finished: state.finished(),
        ..Pass::default()
    };
    if pass.finished || Instant::now() >= until {
        return Ok(pass);
    }
    let started = Instant::now();
    log::info!(
        "filling in attachments and search for messages stored before them: {} of {} done",
        state.done,
        state.total
    );
    let mut logged = started;
    while Instant::now() < until {
        let batch = store.backfill_batch(state.after, BATCH_COUNT, BATCH_BYTES)?;
        let parsing = Instant::now();
        let Some(last) = batch.last().map(|m| m.emmsid) else {
            // Nothing left below the bookmark's end (the rest was deleted).
            store.backfill_write(&[], state.upto, now)?;
            break;
        };
        let make = store.make_content();
        let work: Vec<(i64, Content)> = batch
            .iter()
            .map(|m| {
                let content = if m.partial {
                    Content::default()
                } else {
                    make(&m.raw)
                };
                (m.emmsid, content)
            })
            .collect();
        drop(batch);
        pass.parsing += parsing.elapsed();
        for (i, chunk) in chunks(&work).into_iter().enumerate() {
            if i > 0 && Instant::now() >= until {
                break;
            }
            let upto = if chunk.end == work.len() {
                last
            } else {
                work[chunk.end - 1].0
            };
            let t = Instant::now();
            store.backfill_write(&work[chunk.clone()], upto, now)?;
            let held = t.elapsed();
            pass.longest_write = pass.longest_write.max(held);
            pass.writing += held;
            pass.messages += chunk.len();
            // Leave the lock free at least as long as it was held: a web
            // request waiting for it gets in (its busy handler polls).
            std::thread::sleep(held);
        }
        state = store.backfill_state()?;
        if state.finished() {
            break;
        }
        if logged.elapsed() >= LOG_EVERY {
            logged = Instant::now();
            log::info!(
                "filling in attachments and search: {} of {} done ({}%)",
                state.done,
                state.total,
                percent(state.done, state.total)
            );
        }
    }
    state = store.backfill_state()?;
    pass.finished = state.finished();
    let took = started.elapsed().as_secs_f64();
    if pass.finished {
        log::info!(
            "filled in attachments and search for all {} messages stored before them \
             ({} in {took:.1}s this run)",
            state.total,
            pass.messages
        );
    } else {
        log::info!(
            "filling in attachments and search: {} of {} done ({}%), {} in {took:.1}s \
             this run; the next run goes on",
            state.done,
            state.total,
            percent(state.done, state.total),
            pass.messages
        );
    }
    log::debug!(
        "backfill: longest write transaction {} ms; {} ms writing, {} ms reading and parsing",
        pass.longest_write.as_millis(),
        pass.writing.as_millis(),
        pass.parsing.as_millis()
    );
    Ok(pass)
}

/// `work` cut into write transactions: at most [`WRITE_COUNT`] messages
/// and [`WRITE_TEXT`] bytes of text each (a longer text goes alone).
fn chunks(work: &[(i64, Content)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut text) = (0, 0);
    for (i, (_, c)) in work.iter().enumerate() {
        let size = c.text.len() + c.attachments.len() * 128;
        if i > start && (i - start >= WRITE_COUNT || text + size > WRITE_TEXT) {
            out.push(start..i);
            (start, text) = (i, 0);
        }
        text += size;
    }
    if start < work.len() {
        out.push(start..work.len());
    }
    out
}

fn percent(done: i64, total: i64) -> i64 {
    if total <= 0 {
        100
    } else {
        (done.clamp(0, total) * 100) / total
    }
}
