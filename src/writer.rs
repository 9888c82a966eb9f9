//! The one thread that writes the database during a run.
//!
//! Workers fetch from IMAP in parallel and hand their batches here; one
//! writer with one connection commits them in order, each batch in one
//! transaction. A worker keeps at most one batch in flight (it fetches the
//! next while this one is written), which bounds memory and keeps the
//! pipeline full. A panic in a job fails that job only.
//!
//! Copying the WAL back into the database (checkpointing) costs about twice
//! what writing the WAL does; a checkpointer thread with its own connection
//! does it while the writer goes on, on the other core, and while workers
//! wait on their servers. It does not hold up the end of a run that stored
//! some new mail: what it has not folded back by then waits in the WAL for
//! the next run (the end of the run folds the WAL back itself only when it
//! has grown large). Should it fall behind, the writer checkpoints itself
//! once the WAL passes `WAL_MAX`.

use crate::error::{Error, Result};
use crate::store::Store;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// Beyond this the writer checkpoints (and restarts the WAL) itself.
const WAL_MAX: u64 = 256 << 20;

/// Stops the checkpointer short at the end of a run: it starts no further
/// checkpoint, and the one under way is cut short. A background checkpoint
/// only ever saves later work, so a run that stored some new mail need not
/// wait for it: the frames it did not fold back stay in the WAL, and the
/// next run's checkpointer folds them while that run waits on its servers.
/// After quiet and large runs it is not used (see
/// `Store::end_waits_for_checkpoint`): the checkpointer then works through
/// the nudges left and so folds back the whole WAL, which lets the next
/// run's first commit start the WAL over.
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
fn checkpointer(path: &std::path::Path, nudges: &Receiver<()>, stop: &Stop) {
    let mut conn: Option<Store> = None;
    for () in nudges {
        if stop.stopping() {
            break;
        }
        if conn.is_none() {
            match Store::open_unmigrated(path) {
                Ok(s) => {
                    let mut slot = stop.interrupt.lock().unwrap_or_else(|p| p.into_inner());
                    *slot = Some(s.interrupt_handle());
                    conn = Some(s);
                }
                Err(e) => log::debug!("background checkpoint: {e}"),
            }
        }
        if let Some(ck) = &conn {
            match ck.checkpoint_passive() {
                Err(_) if stop.stopping() => break,
                Err(e) => log::debug!("background checkpoint: {e}"),
                Ok(()) => {}
            }
        }
    }
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
    /// Set once the database stayed locked by another program past the
    /// busy timeout (`Store::locked_out`): the run stops.
    locked_out: Arc<OnceLock<String>>,
}

/// The result of a submitted job, to wait for later.
pub struct Pending<T>(Receiver<Result<T>>);

impl<T> Pending<T> {
    /// Waits for the job to be committed (or to fail).
    pub fn wait(self) -> Result<T> {
        self.0
            .recv()
            .unwrap_or_else(|_| Err(Error::Store("the database writer stopped".into())))
    }
}

impl Writer {
    /// Starts the writer on `store`; it runs until every handle is dropped,
    /// then checkpoints the WAL.
    pub fn spawn(store: Store) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        Writer::spawn_with_checkpointer(store, None)
    }

    /// Like `spawn`, with a checkpointer thread folding the WAL back into
    /// the database at `checkpoint_db` meanwhile (its connection is opened
    /// when it is first needed: most runs never need it).
    pub fn spawn_with_checkpointer(
        store: Store,
        checkpoint_db: Option<std::path::PathBuf>,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel::<Job>(64);
        let (nudge_tx, nudge_rx) = mpsc::sync_channel::<()>(1);
        let stop = Arc::new(Stop::default());
        let ckpt = match checkpoint_db {
            Some(path) => {
                let stop = stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("checkpointer".into())
                        .spawn(move || checkpointer(&path, &nudge_rx, &stop))?,
                )
            }
            None => None,
        };
        let locked_out = Arc::new(OnceLock::new());
        let flag = locked_out.clone();
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut store = store;
                if ckpt.is_some() {
                    let nudge = nudge_tx.clone();
                    // A full channel means a checkpoint is pending anyway.
                    let hook = move || {
                        let _ = nudge.try_send(());
                    };
                    if let Err(e) = store.set_bulk_writer(WAL_MAX, hook) {
                        log::warn!("{e}");
                    }
                }
                drop(nudge_tx);
                for job in rx {
                    let _ = catch_unwind(AssertUnwindSafe(|| job(&mut store)));
                    if let Some(why) = store.locked_out() {
                        flag.get_or_init(|| why.to_string());
                    }
                }
                // Closing the hook's sender ends the checkpointer.
                if let Err(e) = store.clear_hooks() {
                    log::warn!("{e}");
                }
                if !store.end_waits_for_checkpoint() {
                    stop.now();
                }
                if let Some(h) = ckpt {
                    let _ = h.join();
                }
                // Locked out, a checkpoint would wait the busy timeout again.
                if store.locked_out().is_none() {
                    if let Err(e) = store.checkpoint_if_large() {
                        log::warn!("{e}");
                    }
                }
            })?;
        Ok((Writer { tx, locked_out }, handle))
    }

    /// Queues `f`; its result arrives through the returned `Pending`.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |store| {
            let _ = tx.send(f(store));
        });
        if self.tx.send(job).is_err() {
            let (tx, rx) = mpsc::sync_channel(1);
            let _ = tx.send(Err(Error::Store("the database writer stopped".into())));
            return Pending(rx);
        }
        Pending(rx)
    }

    /// Why the database cannot be written this run (locked by another
    /// program past the busy timeout), once a write found out.
    pub fn locked_out(&self) -> Option<String> {
        self.locked_out.get().cloned()
    }

    /// Runs `f` on the writer and waits for it.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(f).wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_in_order_and_a_panic_fails_only_its_job() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&tmp.path().join("db")).expect("open");
        let (writer, handle) = Writer::spawn(store).expect("spawn");
        let first = writer.submit(|s| s.touch_session(1, 100));
        let boom: Pending<()> = writer.submit(|_| panic!("boom"));
        let second = writer.call(|s| s.sessions());
        first.wait().expect("first");
        assert!(boom.wait().is_err());
        let sessions = second.expect("second");
        assert_eq!(sessions.len(), 1);
        drop(writer);
        handle.join().expect("join");
    }

    #[test]
    fn the_end_waits_for_a_checkpoint_after_quiet_and_large_runs_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("db");
        let mut store = Store::open(&path).expect("open");
        // What an earlier run left in the WAL is not this run's.
        store
            .conn()
            .execute_batch("CREATE TABLE t(b BLOB); INSERT INTO t VALUES (zeroblob(8388608))")
            .expect("earlier run");
        store.set_bulk_writer(WAL_MAX, || {}).expect("bulk");
        let insert = |s: &Store, mib: i64| {
            s.conn()
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
        let store = Store::open(&path).expect("open");
        let (writer, handle) =
            Writer::spawn_with_checkpointer(store, Some(path.clone())).expect("spawn");
        writer
            .call(|s| {
                s.conn()
                    .execute_batch("CREATE TABLE t(n INTEGER, b BLOB)")
                    .map_err(|e| Error::Store(e.to_string()))
            })
            .expect("create");
        // 48 commits of 1 MiB: the checkpointer is nudged from the fifth
        // on, and is most likely busy when the writer ends.
        for n in 0..48 {
            writer
                .call(move |s| {
                    s.conn()
                        .execute("INSERT INTO t VALUES (?1, zeroblob(1048576))", [n])
                        .map(|_| ())
                        .map_err(|e| Error::Store(e.to_string()))
                })
                .expect("insert");
        }
        drop(writer);
        handle.join().expect("join");
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.integrity_check().expect("check"), "ok");
        let (rows, sum): (i64, i64) = store
            .conn()
            .query_row("SELECT count(*), sum(n) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert_eq!((rows, sum), (48, (0..48).sum()));
    }
}
