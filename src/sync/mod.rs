//! The sync of one folder (SPEC §7): read the server into plain data,
//! let [`plan`] decide the steps, carry them out through the writer.
//!
//! A task reads EXAMINE and the UID indexes it needs, plans, then runs the
//! steps: each fetches a batch (whole messages, and headers of the ones
//! above the size limit) and commits its rows with the folder's progress in
//! one transaction, so a killed run resumes where it stopped. No step
//! starts past the run's deadline. A full sync then compares flags and
//! expunges the same way: read, decide ([`plan::changes`]), commit.
//! Read-only throughout: EXAMINE and BODY.PEEK.

pub mod discover;
pub mod plan;

use crate::imap::{self, uid_set, Client, Fetched, MailboxStatus};
use crate::message::summarize;
use crate::mime::Content;
use crate::schedule::Kind;
use crate::store::{self, Folder, FolderPatch, NewMessage, Op, Store};
use crate::writer::{Pending, Writer};
use plan::{Batch, Decision, Examined, Gone, Indexed, Limits, Read, Reconcile, ServerFlags};
use std::collections::HashSet;
use std::time::Instant;

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
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Imap(#[from] imap::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
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
}

/// Commits batches through the writer, one at a time, in order; the next
/// is parsed meanwhile and released to the writer once this one is in.
struct Committer<'a> {
    ctx: &'a Ctx<'a>,
    emfdid: i64,
    uidvalidity: u32,
    pending: Option<Pending<store::Applied>>,
    received: usize,
}

impl Committer<'_> {
    fn push(&mut self, ops: Vec<Op>, patch: FolderPatch) -> Result<(), SyncError> {
        crate::failpoint::hit("fetched");
        let (emfdid, uidvalidity, now) = (self.emfdid, self.uidvalidity, self.ctx.now);
        // Each message's attachments and text are made on a thread of its
        // own (SPEC §14), starting now: while the batch before is committed
        // and while this worker fetches the next. A commit without new
        // messages needs no such thread.
        let whole = ops
            .iter()
            .any(|op| matches!(op, Op::Insert(m) if !m.partial));
        let next = if whole {
            let make = self.ctx.store.make_content();
            Ok(self.ctx.writer.prepare(
                move || with_content(ops, make),
                move |s, ops| s.apply(emfdid, uidvalidity, &ops, &patch, now),
            ))
        } else {
            Err((ops, patch))
        };
        self.flush()?;
        self.pending = Some(match next {
            Ok(prepared) => prepared.release(),
            Err((ops, patch)) => self
                .ctx
                .writer
                .submit(move |s| s.apply(emfdid, uidvalidity, &ops, &patch, now)),
        });
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

/// `ops` with the content (attachments, readable text) of every message
/// stored whole, made by `make` ([`Store::make_content`]).
fn with_content(mut ops: Vec<Op>, make: fn(&[u8]) -> Content) -> Vec<Op> {
    for op in &mut ops {
        if let Op::Insert(m) = op {
            if !m.partial {
                m.content = make(&m.raw);
            }
        }
    }
    ops
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
        let patch = plan::done_patch(ctx.now, kind, status.and_then(|s| s.uidnext));
        let uidvalidity = folder.uidvalidity.unwrap_or(0);
        let now = ctx.now;
        ctx.writer
            .call(move |s| s.apply(emfdid, uidvalidity, &[], &patch, now))?;
        return Ok(Synced {
            complete: true,
            ..Synced::default()
        });
    }
    let ex = examine(client, folder, ctx.qresync)?;
    let read = read_indexes(client, ctx.store, folder, &ex)?;
    let plan = plan::plan(folder, kind, &ex, &read, ctx.now, &ctx.limits);
    drop(read);
    let mut c = Committer {
        ctx,
        emfdid,
        uidvalidity: ex.uidvalidity,
        pending: None,
        received: 0,
    };
    let mut complete = true;
    for step in plan.steps {
        let mut ops = match &step.fetch {
            Some(_) if Instant::now() >= ctx.deadline => {
                complete = false;
                break;
            }
            Some(batch) => fetch_batch(client, batch)?,
            None => Vec::new(),
        };
        ops.extend(step.ops);
        c.push(ops, step.patch)?;
    }
    if complete {
        if let Some((how, last_uid)) = plan.reconcile {
            let ops = reconcile(client, &mut c, folder, how, last_uid)?;
            let patch = FolderPatch {
                highestmodseq: Some(ex.highestmodseq),
                ..FolderPatch::default()
            };
            c.push(ops, patch)?;
        }
        c.push(Vec::new(), plan.done)?;
    }
    c.flush()?;
    let large_pending = !ctx.store.partial_uids(emfdid, ex.uidvalidity)?.is_empty();
    Ok(Synced {
        received: c.received,
        complete,
        large_pending,
    })
}

/// EXAMINE, as the plan needs it.
fn examine(client: &mut Client, folder: &Folder, qresync: bool) -> Result<Examined, SyncError> {
    let ex = client.examine(folder.imap_name.as_bytes())?;
    let Some(uidvalidity) = ex.uidvalidity else {
        return Err(imap::Error::Protocol(format!(
            "{}: folder '{}' has no UIDVALIDITY",
            client.peer(),
            folder.name
        ))
        .into());
    };
    Ok(Examined {
        uidvalidity,
        uidnext: ex.uidnext,
        highestmodseq: ex.highestmodseq,
        condstore: client.caps().has("CONDSTORE"),
        qresync,
    })
}

/// Reads what [`plan::reads`] asks for: UID indexes from the server, and
/// what the store holds of older generations or of an unfinished backfill.
fn read_indexes(
    client: &mut Client,
    store: &Store,
    folder: &Folder,
    ex: &Examined,
) -> Result<Read, SyncError> {
    let want = plan::reads(folder, ex);
    let mut read = Read::default();
    if want.generation {
        let old = store.old_generation(folder.emfdid, ex.uidvalidity)?;
        let index = fetch_index(client, "1:*", !old.is_empty())?;
        read.generation = Some((index, old));
    }
    if let Some(below) = want.backfill_below {
        let stored = store.stored_uids(folder.emfdid, ex.uidvalidity)?;
        let index = fetch_index(client, &format!("1:{}", below - 1), false)?;
        read.backfill = Some((index, stored));
    }
    if let Some(from) = want.new_from {
        read.new = fetch_index(client, &format!("{from}:*"), false)?;
    }
    Ok(read)
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
            // Parsed here, on the worker, not on the writer every worker waits for.
            let content = ctx.store.make_content()(&raw);
            let (emfdid, now) = (folder.emfdid, ctx.now);
            ctx.writer.call(move |s| {
                s.apply(
                    emfdid,
                    uidvalidity,
                    &[Op::Complete { uid, raw, content }],
                    &FolderPatch::default(),
                    now,
                )
            })?;
            done += 1;
        }
    }
    Ok(done)
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
                    // Made when the batch is handed over (`with_content`).
                    content: Content::default(),
                    raw,
                }));
                Ok(())
            },
            &mut |_| {},
        )?;
    }
    Ok(ops)
}

/// Flags and expunges of `1:last_uid`, as `how` says. The batch still in
/// flight is waited for after the server's answer, before the store is read.
fn reconcile(
    client: &mut Client,
    c: &mut Committer<'_>,
    f: &Folder,
    how: Reconcile,
    last_uid: u32,
) -> Result<Vec<Op>, SyncError> {
    let server = server_flags(client, f, how, last_uid)?;
    c.flush()?;
    let (store, emfdid, uidvalidity) = (c.ctx.store, f.emfdid, c.uidvalidity);
    // Only real changes are written (new mail bumps the modseq too): with
    // the changes alone, the stored flags of just the span the server
    // reported, from a covering index; every stored UID only when needed.
    let stored = if how == Reconcile::Everything {
        store.stored_flags(emfdid, uidvalidity)?
    } else {
        let lo = server.flags.iter().map(|(u, _)| *u).min();
        let hi = server.flags.iter().map(|(u, _)| *u).max();
        match (lo, hi) {
            (Some(lo), Some(hi)) => store.stored_flags_between(emfdid, uidvalidity, lo, hi)?,
            _ => Vec::new(),
        }
    };
    let stored_uids = if server.gone.needs_stored_uids() {
        store.stored_uids(emfdid, uidvalidity)?
    } else {
        Vec::new()
    };
    Ok(plan::changes(&stored, &stored_uids, &server).into_ops())
}

/// What the server says of flags and expunges: with QRESYNC one FETCH
/// (CHANGEDSINCE + VANISHED), with CONDSTORE the changes plus a UID list,
/// without either every message's flags.
fn server_flags(
    client: &mut Client,
    f: &Folder,
    how: Reconcile,
    last_uid: u32,
) -> Result<ServerFlags, SyncError> {
    let range = format!("1:{last_uid}");
    let mut server = ServerFlags::default();
    let mut vanished = Vec::new();
    // A FETCH without its UID: some message's answer cannot be placed.
    let mut unplaced = false;
    let mut collect = |fe: Fetched<'_>| {
        if let (Some(uid), Some(flags)) = (fe.uid, fe.flags.as_deref()) {
            server.flags.push((uid, plan::flags_string(flags)));
        } else if fe.uid.is_none() && fe.flags.is_some() {
            unplaced = true;
        }
        Ok(())
    };
    let gone = match how {
        Reconcile::Qresync { since } => {
            let modifiers = format!("CHANGEDSINCE {since} VANISHED");
            client.uid_fetch(
                &range,
                "(UID FLAGS)",
                Some(&modifiers),
                &mut collect,
                &mut |r| vanished.extend_from_slice(r),
            )?;
            log::debug!("flags and expunges by QRESYNC since modseq {since}");
            Gone::Vanished(vanished)
        }
        Reconcile::Condstore { since } => {
            let modifiers = format!("CHANGEDSINCE {since}");
            client.uid_fetch(
                &range,
                "(UID FLAGS)",
                Some(&modifiers),
                &mut collect,
                &mut |_| {},
            )?;
            log::debug!("flags by CONDSTORE since modseq {since}, expunges by UID list");
            Gone::Present(client.uid_search(&format!("UID {range}"))?)
        }
        Reconcile::Everything => {
            client.uid_fetch(&range, "(UID FLAGS)", None, &mut collect, &mut |_| {})?;
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
                Gone::Unknown
            } else {
                Gone::Unlisted
            }
        }
    };
    server.gone = gone;
    Ok(server)
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
