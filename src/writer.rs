//! The one thread that writes the database during a run.
//!
//! Workers fetch from IMAP in parallel and hand their batches here; one
//! writer with one connection commits them in order, each batch in one
//! transaction. A worker keeps at most one batch in flight (it fetches the
//! next while this one is written), which bounds memory and keeps the
//! pipeline full. A panic in a job fails that job only. How the database
//! absorbs a run's bulk writing (SQLite's WAL checkpoints) is the store's
//! business ([`Store::start_bulk`]).

use crate::store::{self, Store};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, OnceLock};

/// A job: run on the writer's connection, or told why there is none.
type Job = Box<dyn FnOnce(Result<&mut Store, &str>) + Send>;

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Job>,
    /// Set once the database stayed locked by another program past the
    /// busy timeout (`Store::locked_out`): the run stops.
    /// With whether a pooler moved the connection to another session
    /// (`Store::pooled`).
    locked_out: Arc<OnceLock<(String, bool)>>,
}

/// A job being prepared on a thread of its own ([`Writer::prepare`]);
/// dropped unreleased, it is never queued.
pub struct Prepared<T> {
    go: SyncSender<()>,
    pending: Pending<T>,
}

impl<T> Prepared<T> {
    /// Queues the job as soon as its preparation is done: jobs released one
    /// after another's commit are committed in that order.
    pub fn release(self) -> Pending<T> {
        let _ = self.go.send(());
        self.pending
    }
}

/// The result of a submitted job, to wait for later.
pub struct Pending<T>(Receiver<store::Result<T>>);

impl<T> Pending<T> {
    /// A job done elsewhere, with its result.
    pub fn ready(result: store::Result<T>) -> Pending<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let _ = tx.send(result);
        Pending(rx)
    }

    /// A job that failed before it could be queued.
    fn failed(e: store::Error) -> Pending<T> {
        Pending::ready(Err(e))
    }

    /// Waits for the job to be committed (or to fail).
    pub fn wait(self) -> store::Result<T> {
        self.0.recv().unwrap_or(Err(store::Error::WriterGone))
    }
}

impl Writer {
    /// Starts the writer; it runs until every handle is dropped. It opens
    /// its connection with `open` when the first job comes (on PostgreSQL
    /// a run that finds nothing new writes nothing here, and so opens no
    /// session for it); if that fails, every job fails with the reason and
    /// the run stops ([`Writer::locked_out`]).
    pub fn spawn(
        open: impl FnOnce() -> store::Result<Store> + Send + 'static,
    ) -> std::io::Result<(Writer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel::<Job>(64);
        let locked_out = Arc::new(OnceLock::new());
        let flag = locked_out.clone();
        let handle = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                // No job, no connection.
                let Ok(first) = rx.recv() else {
                    return;
                };
                let jobs = std::iter::once(first).chain(rx);
                let mut store = match open() {
                    Ok(store) => store,
                    Err(e) => {
                        let why = crate::logging::chain(&e);
                        let pooled = matches!(e, store::Error::Pooled { .. });
                        flag.get_or_init(|| (why.clone(), pooled));
                        jobs.for_each(|job| job(Err(&why)));
                        return;
                    }
                };
                let bulk = store.start_bulk();
                if let Err(e) = &bulk {
                    log::warn!("cannot start the checkpointer: {e}");
                }
                for job in jobs {
                    let _ = catch_unwind(AssertUnwindSafe(|| job(Ok(&mut store))));
                    if let Some(why) = store.locked_out() {
                        flag.get_or_init(|| (why.to_string(), store.pooled()));
                    }
                }
                if let Ok(bulk) = bulk {
                    store.finish_bulk(bulk);
                }
            })?;
        Ok((Writer { tx, locked_out }, handle))
    }

    /// Queues `f`; its result arrives through the returned `Pending`.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> store::Result<T> + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |store| {
            let _ = tx.send(match store {
                Ok(store) => f(store),
                Err(why) => Err(store::Error::Lost(why.to_string())),
            });
        });
        if self.tx.send(job).is_err() {
            return Pending::failed(store::Error::WriterGone);
        }
        Pending(rx)
    }

    /// Starts `prepare` on a thread of its own at once; `f` is queued with
    /// what it made when the returned job is [released](Prepared::release)
    /// and `prepare` is done. The CPU work a job needs (parsing the
    /// messages a worker fetched) so overlaps the writer's current job and
    /// the worker's next fetch instead of lengthening either, while the
    /// worker still decides when its job joins the queue (after its
    /// previous one is committed: a folder's batches go in in order).
    pub fn prepare<P: Send + 'static, T: Send + 'static>(
        &self,
        prepare: impl FnOnce() -> P + Send + 'static,
        f: impl FnOnce(&mut Store, P) -> store::Result<T> + Send + 'static,
    ) -> Prepared<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let (go, released) = mpsc::sync_channel::<()>(1);
        let writer = self.clone();
        let spawned = std::thread::Builder::new()
            .name("prepare".into())
            .spawn(move || {
                let prepared = prepare();
                // Dropped unreleased (its worker failed): nothing is queued.
                if released.recv().is_ok() {
                    let _ = tx.send(writer.call(move |s| f(s, prepared)));
                }
            });
        let pending = match spawned {
            Ok(_) => Pending(rx),
            Err(e) => Pending::failed(store::Error::Unusable(format!(
                "cannot start a thread to prepare a batch: {e}"
            ))),
        };
        Prepared { go, pending }
    }

    /// Why the database cannot be written this run (locked by another
    /// program past the busy timeout), once a write found out.
    pub fn locked_out(&self) -> Option<String> {
        self.locked_out.get().map(|(why, _)| why.clone())
    }

    /// Whether it cannot because a pooler moved the writer's connection to
    /// another PostgreSQL session (`store::Error::Pooled`, exit 78).
    pub fn pooled(&self) -> bool {
        self.locked_out.get().is_some_and(|(_, pooled)| *pooled)
    }

    /// Runs `f` on the writer and waits for it.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store) -> store::Result<T> + Send + 'static,
    ) -> store::Result<T> {
        self.submit(f).wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer on a new SQLite database (gone with the directory).
    fn writer_on_a_new_database() -> (tempfile::TempDir, Writer, std::thread::JoinHandle<()>) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let at = store::Location::sqlite(tmp.path().join("db"));
        let store = Store::open(&at).expect("open");
        let (writer, handle) = Writer::spawn(move || Ok(store)).expect("spawn");
        (tmp, writer, handle)
    }

    #[test]
    fn jobs_run_in_order_and_a_panic_fails_only_its_job() {
        let (_tmp, writer, handle) = writer_on_a_new_database();
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
    fn prepared_jobs_go_in_as_released_and_never_unreleased() {
        let (_tmp, writer, handle) = writer_on_a_new_database();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let job = |n: i64, prep_ms: u64| {
            let order = order.clone();
            writer.prepare(
                move || {
                    std::thread::sleep(std::time::Duration::from_millis(prep_ms));
                    n
                },
                move |s, n| {
                    order.lock().expect("order").push(n);
                    s.touch_session(n, 100)
                },
            )
        };
        // The first takes longest to prepare; each is released after the
        // one before is committed, as a folder's batches are.
        let (first, second) = (job(1, 200), job(2, 0));
        let dropped = job(3, 0);
        first.release().wait().expect("first");
        second.release().wait().expect("second");
        drop(dropped);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let sessions = writer.call(|s| s.sessions()).expect("sessions");
        assert_eq!(*order.lock().expect("order"), vec![1, 2]);
        assert_eq!(sessions.len(), 2, "the unreleased job never ran");
        drop(writer);
        handle.join().expect("join");
    }
}
