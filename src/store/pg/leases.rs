//! Accounts handed out to the engine hosts sharing one PostgreSQL database
//! (SPEC §13): a run takes an account with a session-level advisory lock
//! (`pg_try_advisory_lock(LOCK_CLASS, acntid)`) on one connection it keeps
//! for the whole run, skips the accounts another session holds, and
//! unlocks each as soon as it is done with it. A host that dies loses its
//! session, and its locks with it, at once: no timeout to wait out.
//!
//! The sync workers and the outbox of one run may hold an account at once:
//! the run counts its holds and unlocks when the last is given back. For
//! people, the holder writes `lease_owner` (`HOSTNAME:PID`) and
//! `lease_until`; they mean nothing once the lock is gone (the lock
//! decides, and `plan` reads the holders from `pg_locks`).
//!
//! On SQLite there is one host (its `pid/` lock): every account is the
//! run's, and nothing is written.

use super::super::error::{Context, Error, Result};
use super::super::{Db, Store};
use super::Postgres;
use std::collections::HashMap;
use std::sync::Mutex;

/// The first key of the engine's advisory locks (`'bpac'`): the second is
/// the `acntid` (0 for the schema migrations).
pub const LOCK_CLASS: i32 = 0x6270_6163;

/// `HOSTNAME:PID` of this process.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The second key of an account's lock (the function takes int4 values).
fn key(acntid: i64) -> i32 {
    acntid as i32
}

/// The accounts this run holds.
pub struct Leases {
    /// None on SQLite.
    held: Option<Mutex<Held>>,
    owner: String,
}

struct Held {
    /// The lock connection; between takes it also reads an account's state
    /// for the pool's new plan of it ([`Leases::with_store`]).
    store: Store,
    /// Holds of this run per account (the lock itself is taken once).
    counts: HashMap<i64, u32>,
    /// `lease_until` written with each account.
    until: i64,
    /// Set once the lock connection failed: the run holds nothing any more.
    lost: Option<String>,
    /// It failed because it was moved to another session (a pooler in
    /// transaction mode): `BG_DATABASE_URL` is at fault (exit 78).
    pooled: bool,
    /// The value of `backproc.session` in the connection's own session.
    marker: String,
    target: String,
}

impl Leases {
    /// The run's leases. On PostgreSQL the run's own connection (`store`,
    /// migrated and planned from) becomes the lock connection: a second
    /// session would cost the server another backend start-up in every
    /// run, and the run reads its plan while no account is held. The run
    /// reaches it through [`Leases::with_store`] and gets it back with
    /// [`Leases::into_store`]. On SQLite the store stays the caller's
    /// (returned as is); `until` is when the run expects to be done.
    pub fn for_run(store: Store, until: i64) -> Result<(Leases, Option<Store>)> {
        let owner = owner();
        let Db::Postgres(pg) = &store.0 else {
            return Ok((Leases { held: None, owner }, Some(store)));
        };
        // (Opened relaxed: never timed out when idle between accounts.)
        // Each take reads back the mark of the connection's session: a
        // pooler in transaction mode would hand the statements to any
        // session, and the locks with them.
        let marker = pg.mark.clone();
        let target = pg.describe();
        let held = Held {
            store,
            counts: HashMap::new(),
            until,
            lost: None,
            pooled: false,
            marker,
            target,
        };
        Ok((
            Leases {
                held: Some(Mutex::new(held)),
                owner,
            },
            None,
        ))
    }

    /// The lock connection back, for the end of the run (PostgreSQL; None
    /// on SQLite or once the connection failed). Whatever is still held is
    /// given back first.
    pub fn into_store(mut self) -> Option<Store> {
        let held = self.held.take()?;
        let mut h = held.into_inner().unwrap_or_else(|p| p.into_inner());
        if h.lost.is_some() {
            return None;
        }
        h.release_all(&self.owner);
        Some(h.store)
    }

    /// No other host can exist (SQLite): every account is the run's.
    pub fn sole() -> Leases {
        Leases {
            held: None,
            owner: owner(),
        }
    }

    /// Whether other hosts may share the work (PostgreSQL).
    pub fn shared(&self) -> bool {
        self.held.is_some()
    }

    /// `HOSTNAME:PID` of this run.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Held>> {
        self.held
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` on the lock connection (PostgreSQL; None on SQLite): the
    /// pool's new plan of an account it has just taken, without waiting for
    /// a connection of its own.
    pub fn with_store<R>(&self, f: impl FnOnce(&Store) -> R) -> Option<R> {
        let h = self.lock()?;
        if h.lost.is_some() {
            return None;
        }
        Some(f(&h.store))
    }

    /// Runs `f`, a write, on the lock connection (PostgreSQL; None on
    /// SQLite, or once the connection failed): the folder times of an
    /// account with nothing new, so that a run that finds nothing new needs
    /// no writer's session. The write is a transaction of its own; the
    /// locks, held by the session, do not mind it. A write that finds the
    /// connection gone, or moved to another session, ends the leases as a
    /// failed take does.
    pub fn with_store_mut<T>(&self, f: impl FnOnce(&mut Store) -> Result<T>) -> Option<Result<T>> {
        let mut h = self.lock()?;
        if h.lost.is_some() {
            return None;
        }
        Some(f(&mut h.store).map_err(|e| h.failed(e)))
    }

    /// Takes account `acntid` for this run; false when another session
    /// holds it. An error when the lock connection failed: the run must
    /// stop writing for its accounts.
    pub fn take(&self, acntid: i64) -> Result<bool> {
        let Some(mut h) = self.lock() else {
            return Ok(true);
        };
        if let Some(why) = &h.lost {
            return Err(Error::Lost(why.clone()));
        }
        if let Some(n) = h.counts.get_mut(&acntid) {
            *n += 1;
            return Ok(true);
        }
        let what = format!("take account {acntid}");
        // One round trip: the lock, the holder's name with it (written only
        // when the lock was given), and the session the statement ran in.
        let until = h.until;
        let got: Result<(bool, Option<String>)> = h
            .query(
                "WITH l AS (SELECT pg_try_advisory_lock($1::int4, $2::int4) AS got, \
                 current_setting('backproc.session', true) AS session), \
                 noted AS (UPDATE email_accounts SET lease_owner = $3, lease_until = $4 \
                 WHERE acntid = $5 AND (SELECT got FROM l) RETURNING 1) \
                 SELECT got, session FROM l",
                &[&LOCK_CLASS, &key(acntid), &self.owner, &until, &acntid],
                what.clone(),
            )
            .and_then(|rows| match rows.first() {
                Some(r) => Ok((super::get(r, 0)?, super::get(r, 1)?)),
                None => Err(Error::Unusable(
                    "pg_try_advisory_lock returned no row".into(),
                )),
            });
        let got = match got {
            Ok((got, session)) if session.as_deref() == Some(h.marker.as_str()) => got,
            // Whatever was taken, it was in another client's session.
            Ok(_) => {
                return Err(h.failed(Error::Pooled {
                    what: format!("{what}: {}", super::super::error::SHARED_SESSIONS),
                    source: None,
                }))
            }
            Err(e) => return Err(h.failed(e)),
        };
        if !got {
            return Ok(false);
        }
        h.counts.insert(acntid, 1);
        Ok(true)
    }

    /// Gives back one hold of `acntid`; the last one unlocks it.
    pub fn release(&self, acntid: i64) {
        let Some(mut h) = self.lock() else {
            return;
        };
        match h.counts.get_mut(&acntid) {
            Some(n) if *n > 1 => {
                *n -= 1;
                return;
            }
            Some(_) => {
                h.counts.remove(&acntid);
            }
            None => return,
        }
        if h.lost.is_some() {
            return;
        }
        // One round trip: the holder's name cleared (unless another
        // holder's is there), then the lock given back.
        let done = h.query(
            "WITH cleared AS (UPDATE email_accounts SET lease_owner = NULL, lease_until = NULL \
             WHERE acntid = $1 AND lease_owner = $2 RETURNING 1) \
             SELECT pg_advisory_unlock($3::int4, $4::int4) FROM (SELECT COUNT(*) FROM cleared) c",
            &[&acntid, &self.owner, &LOCK_CLASS, &key(acntid)],
            format!("give back account {acntid}"),
        );
        if let Err(e) = done {
            let e = h.failed(e);
            log::warn!("{}", crate::logging::chain(&e));
        }
    }

    /// Why the run holds nothing any more (the lock connection failed).
    pub fn lost(&self) -> Option<String> {
        self.lock().and_then(|h| h.lost.clone())
    }

    /// Whether it failed because a pooler moved it to another session
    /// ([`Error::Pooled`]: `BG_DATABASE_URL` is at fault, exit 78).
    pub fn pooled(&self) -> bool {
        self.lock().is_some_and(|h| h.pooled)
    }
}

impl Held {
    /// Gives back every account still held (the end of a run).
    fn release_all(&mut self, owner: &str) {
        if self.lost.is_some() || self.counts.is_empty() {
            return;
        }
        let ids: Vec<i64> = self.counts.drain().map(|(id, _)| id).collect();
        let Ok(mut c) = self.client() else {
            return;
        };
        let _ = c.execute(
            "UPDATE email_accounts SET lease_owner = NULL, lease_until = NULL \
             WHERE acntid = ANY($1) AND lease_owner = $2",
            &[&ids, &owner],
        );
        let _ = c.batch_execute("SELECT pg_advisory_unlock_all()");
    }

    /// The lock connection (Held exists on PostgreSQL only).
    fn pg(&self) -> Result<&Postgres> {
        match &self.store.0 {
            Db::Postgres(pg) => Ok(pg),
            Db::Sqlite(_) => Err(Error::Unusable("account leases need PostgreSQL".into())),
        }
    }

    /// The lock connection's client.
    fn client(&self) -> Result<std::cell::RefMut<'_, postgres::Client>> {
        Ok(self.pg()?.client.borrow_mut())
    }

    /// Runs a statement on the lock connection (prepared once per run when
    /// it comes again: each account takes and gives back the same few).
    fn query(
        &self,
        sql: &str,
        params: super::Params<'_>,
        what: impl Into<String>,
    ) -> Result<Vec<postgres::Row>> {
        let pg = self.pg()?;
        let c = &mut *pg.client.borrow_mut();
        super::query(c, &pg.cache, sql, params).context(what)
    }

    /// A failed statement on the lock connection: if the connection is
    /// gone, so are the locks.
    fn failed(&mut self, e: Error) -> Error {
        if let Error::Pooled { .. } = e {
            // Its locks are in whichever sessions the statements went to.
            self.lost = Some(crate::logging::chain(&e));
            self.pooled = true;
            self.counts.clear();
            return e;
        }
        if self.client().map_or(true, |c| c.is_closed()) {
            let why = format!(
                "lost the connection to PostgreSQL ({}) that holds this run's accounts",
                self.target
            );
            self.lost = Some(why.clone());
            self.counts.clear();
            return Error::Lost(why);
        }
        e
    }
}

impl Drop for Leases {
    /// The run is over: its accounts go back at once (closing the
    /// connection would do it too; this also clears `lease_owner`).
    fn drop(&mut self) {
        let owner = std::mem::take(&mut self.owner);
        if let Some(mut h) = self.lock() {
            h.release_all(&owner);
        }
    }
}

impl super::Postgres {
    /// Accounts whose lock a session holds, with the holder's
    /// `HOSTNAME:PID` (from its `application_name`): read from `pg_locks`,
    /// never by trying a lock. Advisory locks are the database's: another
    /// installation's database on the same server holds its own.
    pub fn holders(&self) -> Result<HashMap<i64, String>> {
        self.rows(
            "SELECT l.objid::int8, a.application_name, a.pid FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.classid::int8 = $1 AND l.objsubid = 2 \
             AND l.granted AND l.objid::int8 != 0 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&i64::from(LOCK_CLASS)],
            "read the holders of accounts",
        )?
        .iter()
        .map(|r| {
            let (acntid, name, pid): (i64, Option<String>, i32) =
                (super::get(r, 0)?, super::get(r, 1)?, super::get(r, 2)?);
            let who = name
                .as_deref()
                .and_then(|n| n.strip_prefix("backproc "))
                .map(str::to_string)
                .unwrap_or_else(|| format!("PostgreSQL session {pid}"));
            Ok((acntid, who))
        })
        .collect()
    }
}
