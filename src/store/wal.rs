//! The run's bulk writing on SQLite: the WAL and its checkpoints.
//!
//! Copying the WAL back into the database (checkpointing) costs about twice
//! what writing the WAL does; a checkpointer thread with its own connection
//! does it while the writer goes on, on the other core, and while workers
//! wait on their servers. It does not hold up the end of a run that stored
//! some new mail: what it has not folded back by then waits in the WAL for
//! the next run (the end of the run folds the WAL back itself only when it
//! has grown large). Should it fall behind, the writer checkpoints itself
//! once the WAL passes `WAL_MAX`.
//!
//! The run's writer (`crate::writer`) only says where bulk writing starts
//! and ends (`Store::start_bulk`, `Store::finish_bulk`); everything
//! about WAL frames and checkpoints stays here.

use super::error::{Context, Result};
use super::sqlite::Sqlite;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};

/// Above this size the WAL is folded back into the database at the end of a
/// run (and truncated to it after a checkpoint).
const WAL_LIMIT: u64 = 16 << 20;

/// Past this (about one batch) the checkpointer thread folds the WAL back
/// during the run, while the worker fetches the next batch: the copying
/// and the fsyncs overlap the network instead of following it. A run that
/// writes less leaves its frames for a later run.
const WAL_BACKGROUND: u64 = 4 << 20;

/// Beyond this the writer checkpoints (and restarts the WAL) itself.
const WAL_MAX: u64 = 256 << 20;

/// Bulk writing under way: the checkpointer thread and how to stop it.
pub struct Bulk {
    checkpointer: Option<std::thread::JoinHandle<()>>,
    stop: Arc<Stop>,
}

/// Stops the checkpointer short at the end of a run: it starts no further
/// checkpoint, and the one under way is cut short. A background checkpoint
/// only ever saves later work, so a run that stored some new mail need not
/// wait for it: the frames it did not fold back stay in the WAL, and the
/// next run's checkpointer folds them while that run waits on its servers.
/// After quiet and large runs it is not used (see
/// [`Sqlite::end_waits_for_checkpoint`]): the checkpointer then works
/// through the nudges left and so folds back the whole WAL, which lets the
/// next run's first commit start the WAL over.
#[derive(Default)]
struct Stop {
    stopping: AtomicBool,
    interrupt: Mutex<Option<rusqlite::InterruptHandle>>,
}

impl Stop {
    fn now(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let handle = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = handle.as_ref() {
            h.interrupt();
        }
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// The checkpointer thread: a passive checkpoint per nudge, on a connection
/// of its own opened at the first one, until `stop` or the writer is gone.
fn checkpointer(path: &Path, nudges: &Receiver<()>, stop: &Stop) {
    let mut conn: Option<Sqlite> = None;
    for () in nudges {
        if stop.stopping() {
            break;
        }
        if conn.is_none() {
            match Sqlite::connect(path) {
                Ok(s) => {
                    let mut slot = stop.interrupt.lock().unwrap_or_else(|p| p.into_inner());
                    *slot = Some(s.conn().get_interrupt_handle());
                    conn = Some(s);
                }
                Err(e) => log::debug!("background checkpoint: {}", crate::logging::chain(&e)),
            }
        }
        if let Some(ck) = &conn {
            match ck.checkpoint_passive() {
                Err(_) if stop.stopping() => break,
                Err(e) => log::debug!("background checkpoint: {}", crate::logging::chain(&e)),
                Ok(()) => {}
            }
        }
    }
}

impl Sqlite {
    /// Makes this connection the run's only bulk writer until
    /// [`Sqlite::finish_bulk`]: a page cache that holds a whole batch (no
    /// spilling mid-transaction), and checkpoints by a thread of their own
    /// instead of by the commits.
    pub fn start_bulk(&mut self) -> std::io::Result<Bulk> {
        let (nudge_tx, nudge_rx) = mpsc::sync_channel::<()>(1);
        let stop = Arc::new(Stop::default());
        let path: PathBuf = self.path.clone();
        let checkpointer = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("checkpointer".into())
                .spawn(move || checkpointer(&path, &nudge_rx, &stop))?
        };
        // A full channel means a checkpoint is pending anyway.
        let nudge = move || {
            let _ = nudge_tx.try_send(());
        };
        if let Err(e) = self.set_bulk_writer(WAL_MAX, nudge) {
            log::warn!("{}", crate::logging::chain(&e));
        }
        Ok(Bulk {
            checkpointer: Some(checkpointer),
            stop,
        })
    }

    /// Ends bulk writing: the checkpointer finishes or is cut short (see
    /// [`Stop`]), and a WAL that has grown large is folded back.
    pub fn finish_bulk(&mut self, mut bulk: Bulk) {
        // Dropping the hook's sender ends the checkpointer's loop.
        if let Err(e) = self.clear_hooks() {
            log::warn!("{}", crate::logging::chain(&e));
        }
        if !self.end_waits_for_checkpoint() {
            bulk.stop.now();
        }
        if let Some(h) = bulk.checkpointer.take() {
            let _ = h.join();
        }
        // Locked out, a checkpoint would wait the busy timeout again.
        if self.locked_out().is_none() {
            if let Err(e) = self.checkpoint_if_large() {
                log::warn!("{}", crate::logging::chain(&e));
            }
        }
    }

    /// At the end of a run: folds the WAL back into the database when it has
    /// grown past `WAL_LIMIT`; a small one waits for the next run (no fsync
    /// for a run that changed little).
    fn checkpoint_if_large(&self) -> Result<()> {
        // What the WAL holds, as the last commit saw it; else the file's
        // size (which does not shrink when the WAL starts over).
        let holds = match &self.wal_bytes {
            Some(b) => b.load(Ordering::Relaxed),
            None => self.wal_size(),
        };
        if holds > WAL_LIMIT {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// A page cache that holds a batch and no checkpoints of its own.
    /// After a commit that leaves more than `WAL_BACKGROUND` bytes in the
    /// WAL, `nudge` is called (a run that changes little never checkpoints
    /// meanwhile); when the WAL holds more than `wal_max` bytes the writer
    /// checkpoints itself (RESTART), which bounds the WAL should the
    /// checkpointer fall behind.
    fn set_bulk_writer(
        &mut self,
        wal_max: u64,
        mut nudge: impl FnMut() + Send + 'static,
    ) -> Result<()> {
        self.conn
            .pragma_update(None, "cache_size", -8192)
            .context("set cache_size")?;
        let page: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .context("read the page size")?;
        let page = page.max(512) as u64;
        let max_pages = (wal_max / page).min(i32::MAX as u64) as i32;
        let wal_bytes = Arc::new(AtomicU64::new(0));
        let seen = wal_bytes.clone();
        let written = Arc::new(AtomicU64::new(0));
        let adds = written.clone();
        // What the WAL held after the previous commit (none before the
        // first: what earlier runs left is not this run's).
        let mut last: Option<u64> = None;
        // The hook replaces SQLite's own auto-checkpoint.
        self.conn
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
                let bytes = pages.max(0) as u64 * page;
                seen.store(bytes, Ordering::Relaxed);
                if let Some(before) = last {
                    // A WAL that shrank has started over from its beginning.
                    let grew = bytes.checked_sub(before).unwrap_or(bytes);
                    adds.fetch_add(grew, Ordering::Relaxed);
                }
                last = Some(bytes);
                if pages > max_pages {
                    // Busy when the checkpointer is at it: the next commit
                    // tries again. A failed checkpoint never fails the commit.
                    let _ = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::RESTART);
                } else if bytes > WAL_BACKGROUND {
                    nudge();
                }
                Ok(())
            }))
            .context("install the WAL hook")?;
        self.wal_bytes = Some(wal_bytes);
        self.written = Some(written);
        Ok(())
    }

    /// Whether the end of the run lets a background checkpoint under way
    /// finish rather than cut it short: after a quiet run (bulk writes under
    /// a batch), so that quiet runs fold back what busier ones left; and
    /// after a large one (over `WAL_LIMIT`), whose end folds the WAL back
    /// anyway and would only redo the work cut short. A new-mail run in
    /// between ends at once: the next run folds its frames back while it
    /// waits on its servers.
    fn end_waits_for_checkpoint(&self) -> bool {
        let written = self
            .written
            .as_ref()
            .map_or(0, |w| w.load(Ordering::Relaxed));
        written <= WAL_BACKGROUND || written > WAL_LIMIT
    }

    /// Removes the WAL hook of `set_bulk_writer` (and what it holds); the
    /// WAL size it last saw is still used by `checkpoint_if_large`.
    fn clear_hooks(&mut self) -> Result<()> {
        self.conn
            .wal_hook(None::<fn(&mut rusqlite::hooks::Wal, i32) -> rusqlite::Result<()>>)
            .context("remove the WAL hook")
    }

    /// The size of the WAL file now.
    fn wal_size(&self) -> u64 {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(Path::new(&wal))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Copies what it can from the WAL into the database without blocking
    /// the writer (`PASSIVE`).
    fn checkpoint_passive(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .context("checkpoint the WAL")
    }

    /// Folds the WAL back into the database and truncates it.
    fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .context("checkpoint the WAL")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> Sqlite {
        let store = Sqlite::connect(path).expect("open");
        store.migrate().expect("migrate");
        store
    }

    #[test]
    fn the_end_waits_for_a_checkpoint_after_quiet_and_large_runs_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        let mut store = open(&path);
        // What an earlier run left in the WAL is not this run's.
        store
            .conn
            .execute_batch("CREATE TABLE t(b BLOB); INSERT INTO t VALUES (zeroblob(8388608))")
            .expect("earlier run");
        store.set_bulk_writer(WAL_MAX, || {}).expect("bulk");
        let insert = |s: &Sqlite, mib: i64| {
            s.conn
                .execute("INSERT INTO t VALUES (zeroblob(?1))", [mib << 20])
                .expect("insert");
        };
        insert(&store, 1); // the first commit sets the baseline
        assert!(store.end_waits_for_checkpoint(), "nothing written yet");
        insert(&store, 2);
        assert!(store.end_waits_for_checkpoint(), "2 MiB: a quiet run");
        insert(&store, 3);
        assert!(!store.end_waits_for_checkpoint(), "5 MiB: new mail");
        insert(&store, 12);
        assert!(store.end_waits_for_checkpoint(), "17 MiB: a large run");
    }

    #[test]
    fn a_background_checkpoint_cut_short_at_the_end_loses_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        let mut store = open(&path);
        store
            .conn
            .execute_batch("CREATE TABLE t(n INTEGER, b BLOB)")
            .expect("create");
        let bulk = store.start_bulk().expect("bulk");
        // 48 commits of 1 MiB: the checkpointer is nudged from the fifth
        // on, and is most likely busy when the writing ends.
        for n in 0..48 {
            store
                .conn
                .execute("INSERT INTO t VALUES (?1, zeroblob(1048576))", [n])
                .expect("insert");
        }
        store.finish_bulk(bulk);
        drop(store);
        let store = open(&path);
        assert_eq!(store.integrity_check().expect("check"), "ok");
        let (rows, sum): (i64, i64) = store
            .conn
            .query_row("SELECT count(*), sum(n) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert_eq!((rows, sum), (48, (0..48).sum()));
    }
}
