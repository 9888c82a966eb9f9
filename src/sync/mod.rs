//! The sync of one folder (SPEC §7): read the server into plain data,
//! decide with the pure functions of [`plan`], commit through the writer.
//!
//! Order of work in a task: new mail above `last_uid` first (ascending), then
//! the newest-first backfill of a first sync (or of a new UIDVALIDITY
//! generation), then, for a full sync, flags and expunges. Every batch's rows
//! and the folder's progress go in one transaction, so a killed run resumes
//! where it stopped. Read-only throughout: EXAMINE and BODY.PEEK.

pub mod discover;
pub mod plan;

use crate::error::Error as StoreError;
use crate::imap::{self, uid_set, Client, Fetched, MailboxStatus};
use crate::message::summarize;
use crate::schedule::Kind;
use crate::store::{Folder, FolderPatch, NewMessage, Op, Store};
use crate::writer::{Pending, Writer};
use plan::{Batch, Decision, Indexed, Sized};
use std::collections::HashSet;
use std::fmt;
use std::time::Instant;

/// How fetches are cut.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of messages in one batch.
    pub batch_bytes: u64,
    /// Most messages in one batch.
    pub batch_count: usize,
    /// Larger messages are stored header-only first (0 = no limit).
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            batch_bytes: 4 << 20,
            batch_count: 1000,
            max_message_size: 25 << 20,
        }
    }
}

/// What a folder sync needs besides the connection.
pub struct Ctx<'a> {
    /// The run's plan time, written as the sync time.
    pub now: i64,
    /// No new batch starts after this (BG_MAX_RUN_TIME).
    pub deadline: Instant,
    pub limits: Limits,
    pub writer: &'a Writer,
    /// This worker's read connection.
    pub store: &'a Store,
    /// QRESYNC is enabled on the connection.
    pub qresync: bool,
    /// Called with the number of messages each committed batch added.
    pub progress: &'a (dyn Fn(usize) + Sync),
}

/// Why a folder sync failed.
#[derive(Debug)]
pub enum SyncError {
    Imap(imap::Error),
    Store(StoreError),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Imap(e) => write!(f, "{e}"),
            SyncError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<imap::Error> for SyncError {
    fn from(e: imap::Error) -> Self {
        SyncError::Imap(e)
    }
}

impl From<StoreError> for SyncError {
    fn from(e: StoreError) -> Self {
        SyncError::Store(e)
    }
}

/// What a folder sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// New messages stored.
    pub received: usize,
    /// Everything due was done (false: stopped by the run's time limit).
    pub complete: bool,
    /// Messages wait header-only for their bodies: a large-message task follows.
    pub large_pending: bool,
    /// Nothing changed on the server; the folder was not selected.
    pub skipped: bool,
}

/// Commits batches through the writer, one in flight at a time.
struct Committer<'a> {
    ctx: &'a Ctx<'a>,
    emfdid: i64,
    pending: Option<Pending<crate::store::Applied>>,
    received: usize,
}

impl<'a> Committer<'a> {
    fn push(
        &mut self,
        uidvalidity: u32,
        ops: Vec<Op>,
        patch: FolderPatch,
    ) -> Result<(), SyncError> {
        crate::failpoint::hit("fetched");
        self.flush()?;
        let (emfdid, now) = (self.emfdid, self.ctx.now);
        self.pending = Some(
            self.ctx
                .writer
                .submit(move |s| s.apply(emfdid, uidvalidity, &ops, &patch, now)),
        );
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SyncError> {
        if let Some(p) = self.pending.take() {
            let applied = p.wait()?;
            crate::failpoint::hit("committed");
            self.received += applied.inserted;
            (self.ctx.progress)(applied.inserted);
        }
        Ok(())
    }
}

/// Syncs one folder: `kind` as the scheduler decided, `status` as LIST-STATUS
/// or STATUS reported it before selecting (if known).
pub fn sync_folder(
    client: &mut Client,
    ctx: &Ctx<'_>,
    folder: &Folder,
    kind: Kind,
    status: Option<&MailboxStatus>,
) -> Result<Synced, SyncError> {
    let emfdid = folder.emfdid;
    if plan::decide(folder, kind, status) == Decision::Skip {
        let patch = times_patch(ctx.now, kind, status.and_then(|s| s.uidnext));
        let uidvalidity = folder.uidvalidity.unwrap_or(0);
        let now = ctx.now;
        ctx.writer
            .call(move |s| s.apply(emfdid, uidvalidity, &[], &patch, now))?;
        return Ok(Synced {
            complete: true,
            skipped: true,
            ..Synced::default()
        });
    }

    let name = folder.imap_name.as_bytes();
    let ex = client.examine(name)?;
    let Some(uidvalidity) = ex.uidvalidity else {
        return Err(imap::Error::Protocol(format!(
            "{}: folder '{}' has no UIDVALIDITY",
            client.peer(),
            folder.name
        ))
        .into());
    };
    let mut f = folder.clone();
    let mut c = Committer {
        ctx,
        emfdid,
        pending: None,
        received: 0,
    };
    let mut fresh_generation = false;
    let mut backfill: Vec<Sized> = Vec::new();

    if f.uidvalidity != Some(uidvalidity) {
        // First sync, or the server renumbered the folder: a new generation.
        fresh_generation = true;
        let old = ctx.store.old_generation(emfdid, uidvalidity)?;
        let index = fetch_index(client, "1:*", !old.is_empty())?;
        let remapped = plan::remap(&index, &old);
        let mapped: HashSet<u32> = remapped.iter().map(|(_, uid, _)| *uid).collect();
        let top = index
            .iter()
            .map(|m| m.uid)
            .max()
            .unwrap_or(0)
            .max(ex.uidnext.unwrap_or(1).saturating_sub(1));
        backfill = index
            .iter()
            .filter(|m| !mapped.contains(&m.uid))
            .map(|m| Sized {
                uid: m.uid,
                size: m.size,
            })
            .collect();
        let ops: Vec<Op> = remapped
            .into_iter()
            .map(|(emmsid, uid, flags)| Op::Remap { emmsid, uid, flags })
            .collect();
        let mut patch = FolderPatch {
            uidvalidity: Some(uidvalidity),
            uidnext: ex.uidnext,
            last_uid: Some(top),
            backfill_below: Some(Some(top.saturating_add(1))),
            highestmodseq: Some(None),
            ..FolderPatch::default()
        };
        let mut ops = ops;
        if backfill.is_empty() {
            patch.backfill_below = Some(None);
            patch.highestmodseq = Some(ex.highestmodseq);
            ops.push(Op::DropOldGenerations);
        }
        c.push(uidvalidity, ops, patch)?;
        c.flush()?;
        f.uidvalidity = Some(uidvalidity);
        f.uidnext = ex.uidnext;
        f.last_uid = top;
        f.backfill_below = if backfill.is_empty() {
            None
        } else {
            Some(top.saturating_add(1))
        };
    } else if let Some(below) = f.backfill_below {
        // A first sync that a previous run did not finish: resume below its mark.
        if below > 1 {
            let have: HashSet<u32> = ctx
                .store
                .stored_uids(emfdid, uidvalidity)?
                .into_iter()
                .collect();
            backfill = fetch_index(client, &format!("1:{}", below - 1), false)?
                .into_iter()
                .filter(|m| m.uid < below && !have.contains(&m.uid))
                .map(|m| Sized {
                    uid: m.uid,
                    size: m.size,
                })
                .collect();
        }
    }

    // New mail above last_uid, oldest first so last_uid only grows.
    let mut interrupted = false;
    let has_new = ex.uidnext.is_none_or(|n| n > f.last_uid.saturating_add(1));
    if has_new && !fresh_generation {
        let from = f.last_uid.saturating_add(1);
        let mut new: Vec<Sized> = fetch_index(client, &format!("{from}:*"), false)?
            .into_iter()
            .filter(|m| m.uid > f.last_uid)
            .map(|m| Sized {
                uid: m.uid,
                size: m.size,
            })
            .collect();
        new.sort_by_key(|m| m.uid);
        for batch in plan::batches(
            &new,
            ctx.limits.batch_bytes,
            ctx.limits.batch_count,
            ctx.limits.max_message_size,
        ) {
            if Instant::now() >= ctx.deadline {
                interrupted = true;
                break;
            }
            let ops = fetch_batch(client, &batch)?;
            let last = batch.max().unwrap_or(f.last_uid).max(f.last_uid);
            c.push(
                uidvalidity,
                ops,
                FolderPatch {
                    last_uid: Some(last),
                    ..FolderPatch::default()
                },
            )?;
            f.last_uid = last;
        }
    }

    // The backfill, newest first.
    if !interrupted && f.backfill_below.is_some() {
        backfill.sort_by_key(|m| std::cmp::Reverse(m.uid));
        let batches = plan::batches(
            &backfill,
            ctx.limits.batch_bytes,
            ctx.limits.batch_count,
            ctx.limits.max_message_size,
        );
        let n = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            if Instant::now() >= ctx.deadline {
                interrupted = true;
                break;
            }
            let mut ops = fetch_batch(client, &batch)?;
            let last = i + 1 == n;
            let mut patch = FolderPatch {
                backfill_below: Some(if last { None } else { batch.min() }),
                ..FolderPatch::default()
            };
            if last {
                patch.highestmodseq = Some(ex.highestmodseq);
                ops.push(Op::DropOldGenerations);
            }
            c.push(uidvalidity, ops, patch)?;
        }
        if n == 0 {
            c.push(
                uidvalidity,
                vec![Op::DropOldGenerations],
                FolderPatch {
                    backfill_below: Some(None),
                    highestmodseq: Some(ex.highestmodseq),
                    ..FolderPatch::default()
                },
            )?;
        }
        if !interrupted {
            f.backfill_below = None;
            f.highestmodseq = ex.highestmodseq;
        }
    }
    // Flags and expunges. The last batch may still be being written: the
    // reconcile's FETCH goes out meanwhile, and waits for it only before it
    // reads the store.
    if !interrupted
        && kind == Kind::Full
        && !fresh_generation
        && f.backfill_below.is_none()
        && f.last_uid > 0
    {
        let unchanged = ex.highestmodseq.is_some() && ex.highestmodseq == f.highestmodseq;
        if !unchanged {
            let (ops, _) = reconcile(client, ctx, &mut c, &f, uidvalidity, &ex)?;
            c.push(
                uidvalidity,
                ops,
                FolderPatch {
                    highestmodseq: Some(ex.highestmodseq),
                    ..FolderPatch::default()
                },
            )?;
        }
    }

    if !interrupted {
        let patch = times_patch(ctx.now, kind, ex.uidnext);
        c.push(uidvalidity, Vec::new(), patch)?;
    }
    c.flush()?;
    let large_pending = !ctx.store.partial_uids(emfdid, uidvalidity)?.is_empty();
    Ok(Synced {
        received: c.received,
        complete: !interrupted,
        large_pending,
        skipped: false,
    })
}

/// Fetches the bodies of messages stored header-only, one at a time (each
/// may be as large as the server allows). Returns how many were completed.
pub fn fetch_large(
    client: &mut Client,
    ctx: &Ctx<'_>,
    folder: &Folder,
) -> Result<usize, SyncError> {
    let Some(uidvalidity) = folder.uidvalidity else {
        return Ok(0);
    };
    let uids = ctx.store.partial_uids(folder.emfdid, uidvalidity)?;
    if uids.is_empty() {
        return Ok(0);
    }
    let ex = client.examine(folder.imap_name.as_bytes())?;
    if ex.uidvalidity != Some(uidvalidity) {
        // Renumbered meanwhile: the next sync handles the new generation.
        return Ok(0);
    }
    let mut done = 0;
    for uid in uids {
        if Instant::now() >= ctx.deadline {
            break;
        }
        let mut raw: Option<Vec<u8>> = None;
        client.uid_fetch(
            &uid.to_string(),
            "(UID BODY.PEEK[])",
            None,
            &mut |f: Fetched<'_>| {
                if f.uid == Some(uid) {
                    if let Some(Some(body)) = f.body {
                        raw = Some(body.into_owned());
                    }
                }
                Ok(())
            },
            &mut |_| {},
        )?;
        if let Some(raw) = raw {
            let (emfdid, now) = (folder.emfdid, ctx.now);
            ctx.writer.call(move |s| {
                s.apply(
                    emfdid,
                    uidvalidity,
                    &[Op::Complete { uid, raw }],
                    &FolderPatch::default(),
                    now,
                )
            })?;
            done += 1;
        }
    }
    Ok(done)
}

/// The folder's state after a complete task: sync times (the run's plan
/// time), the server's UIDNEXT, no error.
pub fn times_patch(now: i64, kind: Kind, uidnext: Option<u32>) -> FolderPatch {
    FolderPatch {
        uidnext,
        recent_sync_at: Some(now),
        full_sync_at: (kind == Kind::Full).then_some(now),
        error: Some(None),
        ..FolderPatch::default()
    }
}

/// `UID FETCH range (UID RFC822.SIZE FLAGS [Message-ID])`.
fn fetch_index(
    client: &mut Client,
    range: &str,
    with_message_id: bool,
) -> Result<Vec<Indexed>, SyncError> {
    let items = if with_message_id {
        "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
    } else {
        "(UID RFC822.SIZE FLAGS)"
    };
    let mut out = Vec::new();
    let peer = client.peer().to_string();
    client.uid_fetch(
        range,
        items,
        None,
        &mut |f: Fetched<'_>| {
            if f.uid.is_none() && f.size.is_some() {
                // Not a flag update (those carry no size): a message we
                // would never fetch, and the folder would look complete.
                return Err(without_uid(&peer, f.seq));
            }
            if let (Some(uid), Some(size)) = (f.uid, f.size) {
                let message_id = match &f.header {
                    Some(Some(h)) => summarize(h).message_id,
                    _ => None,
                };
                out.push(Indexed {
                    uid,
                    size,
                    flags: plan::flags_string(f.flags.as_deref().unwrap_or(&[])),
                    message_id,
                });
            }
            Ok(())
        },
        &mut |_| {},
    )?;
    Ok(out)
}

/// A FETCH response of `UID FETCH` without the UID (RFC 3501 requires it).
fn without_uid(peer: &str, seq: u32) -> imap::Error {
    imap::Error::Protocol(format!(
        "{peer}: the server sent message number {seq} without its UID"
    ))
}

/// Fetches one batch: whole messages, and headers of the large ones.
fn fetch_batch(client: &mut Client, batch: &Batch) -> Result<Vec<Op>, SyncError> {
    let mut ops = Vec::with_capacity(batch.whole.len() + batch.header_only.len());
    for (uids, partial) in [(&batch.whole, false), (&batch.header_only, true)] {
        if uids.is_empty() {
            continue;
        }
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let items = if partial {
            "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[HEADER])"
        } else {
            "(UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[])"
        };
        let peer = client.peer().to_string();
        client.uid_fetch(
            &uid_set(uids),
            items,
            None,
            &mut |f: Fetched<'_>| {
                let Some(uid) = f.uid.filter(|u| wanted.contains(u)) else {
                    if f.uid.is_none() && (f.body.is_some() || f.header.is_some()) {
                        // Skipping it would commit the batch without it and
                        // move last_uid past it: lost for good.
                        return Err(without_uid(&peer, f.seq));
                    }
                    return Ok(()); // an unsolicited flag update
                };
                let data = if partial { f.header } else { f.body };
                let raw = match data {
                    Some(Some(d)) => d.into_owned(),
                    Some(None) => {
                        return Err(imap::Error::Protocol(format!(
                            "{peer}: the server returned no content (NIL) for message UID {uid}"
                        )))
                    }
                    None => return Ok(()), // a flag update for a message of the batch
                };
                ops.push(Op::Insert(NewMessage {
                    uid,
                    summary: summarize(&raw),
                    internal_date_at: f.internal_date.as_deref().and_then(internal_date),
                    size: f.size.unwrap_or(raw.len() as u32),
                    flags: plan::flags_string(f.flags.as_deref().unwrap_or(&[])),
                    partial,
                    raw,
                }));
                Ok(())
            },
            &mut |_| {},
        )?;
    }
    Ok(ops)
}

/// Flags and expunges since the last full sync: with QRESYNC one FETCH
/// (CHANGEDSINCE + VANISHED), with CONDSTORE the changes plus a UID list,
/// without either every message's flags. The batch `c` still has in flight
/// is waited for after the FETCH, before the store is read.
fn reconcile(
    client: &mut Client,
    ctx: &Ctx<'_>,
    c: &mut Committer<'_>,
    f: &Folder,
    uidvalidity: u32,
    ex: &MailboxStatus,
) -> Result<(Vec<Op>, usize), SyncError> {
    let range = format!("1:{}", f.last_uid);
    let mut server: Vec<(u32, String)> = Vec::new();
    let mut vanished_ranges = Vec::new();
    // A FETCH without its UID: some message's answer cannot be placed.
    let mut unplaced = false;
    let mut collect = |fe: Fetched<'_>| {
        if let (Some(uid), Some(flags)) = (fe.uid, fe.flags.as_deref()) {
            server.push((uid, plan::flags_string(flags)));
        } else if fe.uid.is_none() && fe.flags.is_some() {
            unplaced = true;
        }
        Ok(())
    };
    let since = f
        .highestmodseq
        .filter(|_| ex.highestmodseq.is_some() && client.caps().has("CONDSTORE"));
    let result = match since {
        Some(m) if ctx.qresync => {
            client.uid_fetch(
                &range,
                "(UID FLAGS)",
                Some(&format!("CHANGEDSINCE {m} VANISHED")),
                &mut collect,
                &mut |r| vanished_ranges.extend_from_slice(r),
            )?;
            c.flush()?;
            // Only real changes are written (new mail bumps the modseq
            // too): the stored flags of the reported UIDs, from a covering
            // index, over just the span the server reported.
            let stored = reported_span(ctx, f, uidvalidity, &server)?;
            log::debug!("flags and expunges by QRESYNC since modseq {m}");
            let mut r = plan::reconcile(&stored, &server, false, None);
            if !vanished_ranges.is_empty() {
                let uids = ctx.store.stored_uids(f.emfdid, uidvalidity)?;
                r.expunged = plan::vanished(&uids, &vanished_ranges);
            }
            r
        }
        Some(m) => {
            client.uid_fetch(
                &range,
                "(UID FLAGS)",
                Some(&format!("CHANGEDSINCE {m}")),
                &mut collect,
                &mut |_| {},
            )?;
            let present: HashSet<u32> = client
                .uid_search(&format!("UID {range}"))?
                .into_iter()
                .collect();
            c.flush()?;
            let stored = reported_span(ctx, f, uidvalidity, &server)?;
            log::debug!("flags by CONDSTORE since modseq {m}, expunges by UID list");
            let mut r = plan::reconcile(&stored, &server, false, None);
            r.expunged = ctx
                .store
                .stored_uids(f.emfdid, uidvalidity)?
                .into_iter()
                .filter(|u| !present.contains(u))
                .collect();
            r
        }
        None => {
            client.uid_fetch(&range, "(UID FLAGS)", None, &mut collect, &mut |_| {})?;
            c.flush()?;
            let stored = ctx.store.stored_flags(f.emfdid, uidvalidity)?;
            log::debug!("flags and expunges by comparing every message");
            if unplaced {
                // A message missing from the answer is not proof that it was
                // expunged when some answers came without their UID:
                // deleting would empty the store on a server's bug.
                log::warn!(
                    "{}: FETCH responses without UID; expunges of '{}' not checked this time",
                    client.peer(),
                    f.name
                );
            }
            plan::reconcile(&stored, &server, !unplaced, None)
        }
    };
    let n = result.flags.len() + result.expunged.len();
    let mut ops: Vec<Op> = result
        .flags
        .into_iter()
        .map(|(uid, flags)| Op::SetFlags { uid, flags })
        .collect();
    if !result.expunged.is_empty() {
        ops.push(Op::Expunge {
            uids: result.expunged,
        });
    }
    Ok((ops, n))
}

/// The stored flags of the UIDs between the lowest and the highest the
/// server reported (none when it reported none).
fn reported_span(
    ctx: &Ctx<'_>,
    f: &Folder,
    uidvalidity: u32,
    server: &[(u32, String)],
) -> Result<Vec<(u32, String)>, SyncError> {
    let lo = server.iter().map(|(u, _)| *u).min();
    let hi = server.iter().map(|(u, _)| *u).max();
    match (lo, hi) {
        (Some(lo), Some(hi)) => {
            Ok(ctx
                .store
                .stored_flags_between(f.emfdid, uidvalidity, lo, hi)?)
        }
        _ => Ok(Vec::new()),
    }
}

/// INTERNALDATE (`17-Jul-1996 02:44:25 -0700`) as Unix seconds.
pub fn internal_date(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.trim();
    let padded;
    let s = if s.find('-') == Some(1) {
        padded = format!("0{s}");
        padded.as_str()
    } else {
        s
    };
    chrono::DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates() {
        assert_eq!(
            internal_date(b"17-Jul-1996 02:44:25 -0700"),
            Some(837596665)
        );
        assert_eq!(
            internal_date(b" 7-Jul-1996 02:44:25 -0700"),
            Some(837596665 - 10 * 86400)
        );
        assert_eq!(
            internal_date(b"7-Jul-1996 02:44:25 +0000"),
            Some(837571465 - 10 * 86400)
        );
        assert_eq!(internal_date(b"garbage"), None);
        assert_eq!(internal_date(b"\xff"), None);
    }
}
