//! The decisions of a folder sync, as pure functions: whether to select the
//! folder at all, what to read of it, and — from what was read — the steps
//! that bring the store to the server's state, each batch with its
//! operations and the folder's progress; then what changed in flags and
//! expunges. Every rule about progress and generations lives here, once;
//! `sync::mod` only reads the server and carries the steps out. No I/O.

use crate::imap::MailboxStatus;
use crate::schedule::Kind;
use crate::store::{Folder, FolderPatch, OldRow, Op};
use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

/// Whether a task needs the folder selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The server's status shows nothing to do.
    Skip,
    /// Select it and sync.
    Select,
}

/// Decides from the status LIST-STATUS/STATUS gave, before selecting: a
/// folder whose UIDVALIDITY and UIDNEXT are unchanged needs no recent sync;
/// with HIGHESTMODSEQ unchanged as well, no full sync either. A folder in the
/// middle of its first sync, or with messages waiting for their bodies,
/// always needs work.
pub fn decide(folder: &Folder, kind: Kind, status: Option<&MailboxStatus>) -> Decision {
    let Some(st) = status else {
        return Decision::Select;
    };
    let same_generation = folder.uidvalidity.is_some() && st.uidvalidity == folder.uidvalidity;
    if !same_generation || folder.backfill_below.is_some() || folder.has_partial {
        return Decision::Select;
    }
    let nothing_new = st.uidnext.is_some() && st.uidnext == folder.uidnext;
    let flags_same = st.highestmodseq.is_some() && st.highestmodseq == folder.highestmodseq;
    match (kind, nothing_new, flags_same) {
        (Kind::Recent, true, _) => Decision::Skip,
        (Kind::Full, true, true) => Decision::Skip,
        _ => Decision::Select,
    }
}

/// A message of the index: UID and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sized {
    pub uid: u32,
    pub size: u32,
}

impl Sized {
    fn of(m: &Indexed) -> Sized {
        Sized {
            uid: m.uid,
            size: m.size,
        }
    }
}

/// One fetch: messages fetched whole, and ones above the size limit fetched
/// header-only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub whole: Vec<u32>,
    pub header_only: Vec<u32>,
}

impl Batch {
    /// Every UID of the batch.
    pub fn uids(&self) -> impl Iterator<Item = u32> + '_ {
        self.whole.iter().chain(self.header_only.iter()).copied()
    }
    /// The lowest UID of the batch.
    pub fn min(&self) -> Option<u32> {
        self.uids().min()
    }
    /// The highest UID of the batch.
    pub fn max(&self) -> Option<u32> {
        self.uids().max()
    }
}

/// Cuts `items` (in the order to fetch them) into batches of at most
/// `max_bytes` and `max_count` messages. A message above `size_limit`
/// (0 = none) is fetched header-only and weighs what a header does; a
/// message larger than `max_bytes` gets a batch of its own.
pub fn batches(items: &[Sized], max_bytes: u64, max_count: usize, size_limit: u64) -> Vec<Batch> {
    const HEADER_WEIGHT: u64 = 16 * 1024;
    let mut out = Vec::new();
    let mut cur = Batch::default();
    let mut bytes = 0u64;
    let mut count = 0usize;
    for it in items {
        let large = size_limit > 0 && u64::from(it.size) > size_limit;
        let weight = if large {
            HEADER_WEIGHT
        } else {
            u64::from(it.size)
        };
        if count > 0 && (bytes + weight > max_bytes || count >= max_count) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
            count = 0;
        }
        if large {
            cur.header_only.push(it.uid);
        } else {
            cur.whole.push(it.uid);
        }
        bytes += weight;
        count += 1;
    }
    if count > 0 {
        out.push(cur);
    }
    out
}

/// A message of the server's index: from `UID FETCH (UID RFC822.SIZE
/// FLAGS)`, with the Message-ID when re-mapping asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub uid: u32,
    pub size: u32,
    pub flags: String,
    pub message_id: Option<String>,
}

/// What EXAMINE said, and what the connection offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Examined {
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    /// The server offers CONDSTORE (flag changes since a modseq).
    pub condstore: bool,
    /// QRESYNC is enabled on the connection (expunges since a modseq too).
    pub qresync: bool,
}

/// What to read of the server (and of the store) before planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// A new generation (first sync, or UIDVALIDITY changed): the whole
    /// index, and the rows of older generations to re-map.
    pub generation: bool,
    /// Resume a backfill a previous run did not finish: the index below
    /// this UID, and the UIDs stored already.
    pub backfill_below: Option<u32>,
    /// New mail: the index from this UID up.
    pub new_from: Option<u32>,
}

/// What to read: a new generation reads everything at once; otherwise the
/// unfinished backfill and the mail above `last_uid` (when UIDNEXT shows
/// any, or the server does not say).
pub fn reads(folder: &Folder, ex: &Examined) -> Reads {
    if folder.uidvalidity != Some(ex.uidvalidity) {
        return Reads {
            generation: true,
            backfill_below: None,
            new_from: None,
        };
    }
    let from = folder.last_uid.saturating_add(1);
    Reads {
        generation: false,
        backfill_below: folder.backfill_below.filter(|b| *b > 1),
        new_from: ex.uidnext.is_none_or(|n| n > from).then_some(from),
    }
}

/// What was read, as [`Reads`] asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The whole index and the rows of older generations.
    pub generation: Option<(Vec<Indexed>, Vec<OldRow>)>,
    /// The index below the backfill mark, and the UIDs stored.
    pub backfill: Option<(Vec<Indexed>, Vec<u32>)>,
    /// The index from `last_uid + 1` up.
    pub new: Vec<Indexed>,
}

/// One step of a folder sync: fetch a batch (or nothing), then commit what
/// it brought with `ops` and `patch` in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub fetch: Option<Batch>,
    pub ops: Vec<Op>,
    pub patch: FolderPatch,
}

/// How flags and expunges are compared after the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconcile {
    /// QRESYNC: one FETCH of the changes since `since`, with VANISHED.
    Qresync { since: u64 },
    /// CONDSTORE: the changes since `since`, and the UIDs that still exist.
    Condstore { since: u64 },
    /// Neither: every message's flags.
    Everything,
}

/// The sync of one folder, start to finish.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In order; the run stops before a fetching step once past its
    /// deadline, and each step's patch is the progress up to it.
    pub steps: Vec<Step>,
    /// After every step: compare flags and expunges of `1:last_uid`.
    pub reconcile: Option<(Reconcile, u32)>,
    /// The folder's state once everything due is done.
    pub done: FolderPatch,
}

/// Where a folder's progress stands as the steps go (the planner's
/// picture of the row after each commit).
#[derive(Debug, Clone, Copy)]
struct Progress {
    last_uid: u32,
    backfill_below: Option<u32>,
    highestmodseq: Option<u64>,
}

/// The steps of a folder sync. Order: a new generation's re-mapping first;
/// mail above `last_uid`, oldest first, so `last_uid` only grows; the
/// backfill, newest first, its mark following each batch down; then, for a
/// full sync of a complete folder whose modseq moved, the reconcile.
pub fn plan(
    folder: &Folder,
    kind: Kind,
    ex: &Examined,
    read: &Read,
    now: i64,
    limits: &Limits,
) -> Plan {
    let mut steps = Vec::new();
    let mut at = Progress {
        last_uid: folder.last_uid,
        backfill_below: folder.backfill_below,
        highestmodseq: folder.highestmodseq,
    };
    let fresh = read.generation.is_some();
    let mut backfill: Vec<Sized> = Vec::new();
    if let Some((index, old)) = &read.generation {
        let (step, rest, top) = generation_step(index, old, ex);
        backfill = rest;
        at = Progress {
            last_uid: top,
            backfill_below: step.patch.backfill_below.flatten(),
            highestmodseq: step.patch.highestmodseq.flatten(),
        };
        steps.push(step);
    } else {
        if let Some((index, stored)) = &read.backfill {
            let below = at.backfill_below.unwrap_or(0);
            let stored: HashSet<u32> = stored.iter().copied().collect();
            backfill = index
                .iter()
                .filter(|m| m.uid < below && !stored.contains(&m.uid))
                .map(Sized::of)
                .collect();
        }
        steps.extend(new_mail_steps(&read.new, &mut at, limits));
    }
    if at.backfill_below.is_some() {
        steps.extend(backfill_steps(backfill, ex.highestmodseq, limits));
        at.backfill_below = None;
        at.highestmodseq = ex.highestmodseq;
    }
    let unchanged = ex.highestmodseq.is_some() && ex.highestmodseq == at.highestmodseq;
    let reconcile = (kind == Kind::Full && !fresh && at.last_uid > 0 && !unchanged)
        .then(|| (reconcile_how(at.highestmodseq, ex), at.last_uid));
    Plan {
        steps,
        reconcile,
        done: done_patch(now, kind, ex.uidnext),
    }
}

/// Mail above `last_uid`, oldest first, each batch moving `last_uid` up.
/// (`UID FETCH n:*` returns the last message even when nothing is new:
/// filtered here.)
fn new_mail_steps(index: &[Indexed], at: &mut Progress, limits: &Limits) -> Vec<Step> {
    let mut new: Vec<Sized> = index
        .iter()
        .filter(|m| m.uid > at.last_uid)
        .map(Sized::of)
        .collect();
    new.sort_by_key(|m| m.uid);
    limits
        .batches(&new)
        .into_iter()
        .map(|batch| {
            at.last_uid = batch.max().unwrap_or(at.last_uid).max(at.last_uid);
            Step {
                fetch: Some(batch),
                ops: Vec::new(),
                patch: FolderPatch {
                    last_uid: Some(at.last_uid),
                    ..FolderPatch::default()
                },
            }
        })
        .collect()
}

/// The backfill, newest first: each batch moves the mark down to its
/// lowest UID; the last one completes the generation (a step of its own
/// when nothing is left to fetch).
fn backfill_steps(mut left: Vec<Sized>, highestmodseq: Option<u64>, limits: &Limits) -> Vec<Step> {
    left.sort_by_key(|m| std::cmp::Reverse(m.uid));
    let mut steps: Vec<Step> = limits
        .batches(&left)
        .into_iter()
        .map(|batch| Step {
            patch: FolderPatch {
                backfill_below: Some(batch.min()),
                ..FolderPatch::default()
            },
            fetch: Some(batch),
            ops: Vec::new(),
        })
        .collect();
    if steps.is_empty() {
        steps.push(Step::default());
    }
    if let Some(last) = steps.last_mut() {
        complete_generation(last, highestmodseq);
    }
    steps
}

/// How flags and expunges are compared: since the stored modseq when the
/// server keeps modseqs, else every message.
fn reconcile_how(stored_modseq: Option<u64>, ex: &Examined) -> Reconcile {
    let since = stored_modseq.filter(|_| ex.highestmodseq.is_some() && ex.condstore);
    match since {
        Some(since) if ex.qresync => Reconcile::Qresync { since },
        Some(since) => Reconcile::Condstore { since },
        None => Reconcile::Everything,
    }
}

/// A generation is complete: the rows of older ones that were not
/// re-mapped are gone from the server, the backfill has reached the
/// bottom, and the folder's modseq is the server's.
fn complete_generation(step: &mut Step, highestmodseq: Option<u64>) {
    step.ops.push(Op::DropOldGenerations);
    step.patch.backfill_below = Some(None);
    step.patch.highestmodseq = Some(highestmodseq);
}

/// The first step of a new generation: rows of older generations that are
/// messages of this one are re-mapped (no download); the rest is to be
/// fetched newest first from the top. Returns the step, the messages left
/// to fetch, and the top UID.
fn generation_step(index: &[Indexed], old: &[OldRow], ex: &Examined) -> (Step, Vec<Sized>, u32) {
    let remapped = remap(index, old);
    let mapped: HashSet<u32> = remapped.iter().map(|(_, uid, _)| *uid).collect();
    let top = index
        .iter()
        .map(|m| m.uid)
        .max()
        .unwrap_or(0)
        .max(ex.uidnext.unwrap_or(1).saturating_sub(1));
    let rest: Vec<Sized> = index
        .iter()
        .filter(|m| !mapped.contains(&m.uid))
        .map(Sized::of)
        .collect();
    let mut step = Step {
        fetch: None,
        ops: remapped
            .into_iter()
            .map(|(emmsid, uid, flags)| Op::Remap { emmsid, uid, flags })
            .collect(),
        patch: FolderPatch {
            uidvalidity: Some(ex.uidvalidity),
            uidnext: ex.uidnext,
            last_uid: Some(top),
            backfill_below: Some(Some(top.saturating_add(1))),
            highestmodseq: Some(None),
            ..FolderPatch::default()
        },
    };
    if rest.is_empty() {
        complete_generation(&mut step, ex.highestmodseq);
    }
    (step, rest, top)
}

/// The folder's state after a complete task: sync times (the run's plan
/// time), the server's UIDNEXT, no error.
pub fn done_patch(now: i64, kind: Kind, uidnext: Option<u32>) -> FolderPatch {
    FolderPatch {
        uidnext,
        recent_sync_at: Some(now),
        full_sync_at: (kind == Kind::Full).then_some(now),
        error: Some(None),
        ..FolderPatch::default()
    }
}

/// How fetches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

impl Limits {
    /// [`batches`] with these limits.
    pub fn batches(&self, items: &[Sized]) -> Vec<Batch> {
        batches(
            items,
            self.batch_bytes,
            self.batch_count,
            self.max_message_size,
        )
    }
}

/// Pairs rows of older generations with messages of the new one by
/// Message-ID and size (each row used once): those need no download.
/// Returns (emmsid, uid, flags) for each pair.
pub fn remap(new: &[Indexed], old: &[OldRow]) -> Vec<(i64, u32, String)> {
    let mut pool: HashMap<(&str, u32), Vec<i64>> = HashMap::new();
    for row in old {
        if let (Some(id), Some(size)) = (row.message_id.as_deref(), row.size) {
            if !id.is_empty() {
                pool.entry((id, size)).or_default().push(row.emmsid);
            }
        }
    }
    let mut out = Vec::new();
    for m in new {
        let Some(id) = m.message_id.as_deref() else {
            continue;
        };
        if let Some(rows) = pool.get_mut(&(id, m.size)) {
            if let Some(emmsid) = rows.pop() {
                out.push((emmsid, m.uid, m.flags.clone()));
            }
        }
    }
    out
}

/// What the server said about flags and expunges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFlags {
    /// Flags the server reported: every message's, or only those changed.
    pub flags: Vec<(u32, String)>,
    /// What shows which stored messages are gone.
    pub gone: Gone,
}

/// The evidence of expunges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Gone {
    /// `flags` lists every message: a stored UID missing from it is gone.
    Unlisted,
    /// The VANISHED ranges of QRESYNC.
    Vanished(Vec<RangeInclusive<u32>>),
    /// The UIDs that still exist (CONDSTORE's UID SEARCH).
    Present(Vec<u32>),
    /// Nothing can be concluded (answers came without their UID).
    #[default]
    Unknown,
}

impl Gone {
    /// Whether [`changes`] needs every stored UID of the folder (else the
    /// stored flags of the reported span are enough).
    pub fn needs_stored_uids(&self) -> bool {
        match self {
            Gone::Vanished(ranges) => !ranges.is_empty(),
            Gone::Present(_) => true,
            Gone::Unlisted | Gone::Unknown => false,
        }
    }
}

/// What a flag reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Stored messages whose flags changed: (uid, new flags).
    pub flags: Vec<(u32, String)>,
    /// Stored messages the server no longer has, ascending.
    pub expunged: Vec<u32>,
}

impl Changes {
    /// As operations on the store.
    pub fn into_ops(self) -> Vec<Op> {
        let mut ops: Vec<Op> = self
            .flags
            .into_iter()
            .map(|(uid, flags)| Op::SetFlags { uid, flags })
            .collect();
        if !self.expunged.is_empty() {
            ops.push(Op::Expunge {
                uids: self.expunged,
            });
        }
        ops
    }
}

/// Compares stored flags (`stored`: every stored message's, or those of
/// the span the server reported) with the server's; `stored_uids` (all of
/// the folder's, ascending) when [`Gone::needs_stored_uids`].
pub fn changes(stored: &[(u32, String)], stored_uids: &[u32], server: &ServerFlags) -> Changes {
    let reported: HashMap<u32, &str> = server.flags.iter().map(|(u, f)| (*u, f.as_str())).collect();
    let flags = stored
        .iter()
        .filter_map(|(uid, flags)| match reported.get(uid) {
            Some(new) if *new != flags.as_str() => Some((*uid, (*new).to_string())),
            _ => None,
        })
        .collect();
    let expunged = match &server.gone {
        Gone::Unlisted => stored
            .iter()
            .map(|(uid, _)| *uid)
            .filter(|uid| !reported.contains_key(uid))
            .collect(),
        Gone::Vanished(ranges) => vanished(stored_uids, ranges),
        Gone::Present(present) => {
            let present: HashSet<u32> = present.iter().copied().collect();
            stored_uids
                .iter()
                .copied()
                .filter(|u| !present.contains(u))
                .collect()
        }
        Gone::Unknown => Vec::new(),
    };
    Changes { flags, expunged }
}

/// The stored UIDs (ascending) that fall in the VANISHED ranges; a range
/// like `1:4000000000` costs a binary search, not a walk.
pub fn vanished(stored: &[u32], ranges: &[std::ops::RangeInclusive<u32>]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for r in ranges {
        let lo = stored.partition_point(|u| u < r.start());
        let hi = stored.partition_point(|u| u <= r.end());
        out.extend_from_slice(&stored[lo..hi.max(lo)]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The server's flags as stored: space-separated as sent, without `\Recent`
/// (a per-session flag, not a property of the message).
pub fn flags_string(flags: &[&[u8]]) -> String {
    let mut out = String::new();
    for f in flags {
        if f.eq_ignore_ascii_case(b"\\Recent") {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&String::from_utf8_lossy(f));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> Folder {
        Folder {
            emfdid: 1,
            acntid: 1,
            name: "INBOX".into(),
            imap_name: "INBOX".into(),
            special: Some("inbox".into()),
            priority: "hi".into(),
            uidvalidity: Some(7),
            uidnext: Some(100),
            last_uid: 99,
            highestmodseq: Some(500),
            backfill_below: None,
            last_recent_sync_at: Some(1),
            last_full_sync_at: Some(1),
            removed_at: None,
            last_error: None,
            has_partial: false,
        }
    }

    fn st(v: u32, next: u32, modseq: Option<u64>) -> MailboxStatus {
        MailboxStatus {
            messages: Some(10),
            uidnext: Some(next),
            uidvalidity: Some(v),
            highestmodseq: modseq,
        }
    }

    #[test]
    fn decide_table() {
        let f = folder();
        let cases: &[(&str, Folder, Kind, Option<MailboxStatus>, Decision)] = &[
            ("no_status", f.clone(), Kind::Recent, None, Decision::Select),
            (
                "recent_unchanged",
                f.clone(),
                Kind::Recent,
                Some(st(7, 100, Some(900))),
                Decision::Skip,
            ),
            (
                "recent_new_mail",
                f.clone(),
                Kind::Recent,
                Some(st(7, 101, Some(500))),
                Decision::Select,
            ),
            (
                "full_unchanged",
                f.clone(),
                Kind::Full,
                Some(st(7, 100, Some(500))),
                Decision::Skip,
            ),
            (
                "full_flags_changed",
                f.clone(),
                Kind::Full,
                Some(st(7, 100, Some(501))),
                Decision::Select,
            ),
            (
                "full_without_condstore",
                f.clone(),
                Kind::Full,
                Some(st(7, 100, None)),
                Decision::Select,
            ),
            (
                "uidvalidity_changed",
                f.clone(),
                Kind::Recent,
                Some(st(8, 100, Some(500))),
                Decision::Select,
            ),
            (
                "never_synced",
                Folder {
                    uidvalidity: None,
                    ..f.clone()
                },
                Kind::Full,
                Some(st(7, 100, Some(500))),
                Decision::Select,
            ),
            (
                "backfill_in_progress",
                Folder {
                    backfill_below: Some(50),
                    ..f.clone()
                },
                Kind::Recent,
                Some(st(7, 100, Some(500))),
                Decision::Select,
            ),
            (
                "large_pending",
                Folder {
                    has_partial: true,
                    ..f.clone()
                },
                Kind::Recent,
                Some(st(7, 100, Some(500))),
                Decision::Select,
            ),
        ];
        for (name, folder, kind, status, want) in cases {
            assert_eq!(decide(folder, *kind, status.as_ref()), *want, "{name}");
        }
    }

    fn sized(v: &[(u32, u32)]) -> Vec<Sized> {
        v.iter().map(|&(uid, size)| Sized { uid, size }).collect()
    }

    #[test]
    fn batches_by_bytes_count_and_limit() {
        let items = sized(&[(9, 400), (8, 400), (7, 400), (6, 2000), (5, 10), (4, 10)]);
        let b = batches(&items, 1000, 10, 0);
        let whole: Vec<Vec<u32>> = b.iter().map(|b| b.whole.clone()).collect();
        assert_eq!(whole, vec![vec![9, 8], vec![7], vec![6], vec![5, 4]]);
        let b = batches(&items, 1_000_000, 2, 0);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].max(), Some(9));
        assert_eq!(b[0].min(), Some(8));
        // size limit: uid 6 header-only, weighs a header
        let b = batches(&items, 1_000_000, 100, 1000);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].header_only, vec![6]);
        assert_eq!(b[0].whole, vec![9, 8, 7, 5, 4]);
        assert!(batches(&[], 10, 10, 0).is_empty());
    }

    #[test]
    fn remap_by_message_id_and_size() {
        let idx = |uid, size, id: Option<&str>| Indexed {
            uid,
            size,
            flags: "\\Seen".into(),
            message_id: id.map(str::to_string),
        };
        let old = |emmsid, id: Option<&str>, size| OldRow {
            emmsid,
            message_id: id.map(str::to_string),
            size: Some(size),
        };
        let new = vec![
            idx(1, 100, Some("a@x")),
            idx(2, 100, Some("b@x")),
            idx(3, 200, Some("a@x")), // same id, other size: not a match
            idx(4, 50, None),
            idx(5, 100, Some("d@x")),
            idx(6, 100, Some("d@x")), // duplicate id: two old rows, two matches
        ];
        let rows = vec![
            old(10, Some("a@x"), 100),
            old(11, Some("c@x"), 100),
            old(12, None, 50),
            old(13, Some("d@x"), 100),
            old(14, Some("d@x"), 100),
        ];
        let mut pairs: Vec<(i64, u32)> = remap(&new, &rows)
            .into_iter()
            .map(|(e, u, _)| (e, u))
            .collect();
        pairs.sort();
        assert_eq!(pairs, vec![(10, 1), (13, 6), (14, 5)]);
    }

    fn flags(v: &[(u32, &str)]) -> Vec<(u32, String)> {
        v.iter().map(|(u, f)| (*u, f.to_string())).collect()
    }

    #[test]
    fn changes_table() {
        let stored = flags(&[(1, ""), (2, "\\Seen"), (3, "")]);
        let uids = [1, 2, 3];
        let server = |f: &[(u32, &str)], gone: Gone| ServerFlags {
            flags: flags(f),
            gone,
        };
        let cases: Vec<(&str, ServerFlags, Vec<(u32, String)>, Vec<u32>)> = vec![
            (
                "every_message_listed_missing_one_is_gone",
                server(&[(1, "\\Flagged"), (2, "\\Seen")], Gone::Unlisted),
                flags(&[(1, "\\Flagged")]),
                vec![3],
            ),
            (
                "condstore_changes_and_the_uids_present",
                server(&[(2, "")], Gone::Present(vec![1, 2])),
                flags(&[(2, "")]),
                vec![3],
            ),
            (
                "qresync_vanished_ranges",
                server(&[], Gone::Vanished(vec![2..=2, 7..=9])),
                vec![],
                vec![2],
            ),
            (
                "answers_without_uid_prove_no_expunge",
                server(&[(1, "\\Seen")], Gone::Unknown),
                flags(&[(1, "\\Seen")]),
                vec![],
            ),
            (
                "unchanged_flags_are_no_change",
                server(&[(1, ""), (2, "\\Seen"), (3, "")], Gone::Unlisted),
                vec![],
                vec![],
            ),
        ];
        for (name, server, want_flags, want_gone) in cases {
            let got = changes(&stored, &uids, &server);
            assert_eq!(got.flags, want_flags, "{name}");
            assert_eq!(got.expunged, want_gone, "{name}");
        }
    }

    fn ix(uid: u32, size: u32, id: Option<&str>) -> Indexed {
        Indexed {
            uid,
            size,
            flags: String::new(),
            message_id: id.map(str::to_string),
        }
    }

    fn ex(uidvalidity: u32, uidnext: u32, modseq: Option<u64>) -> Examined {
        Examined {
            uidvalidity,
            uidnext: Some(uidnext),
            highestmodseq: modseq,
            condstore: modseq.is_some(),
            qresync: modseq.is_some(),
        }
    }

    /// Batches of at most two messages, to see the steps.
    const TWO: Limits = Limits {
        batch_bytes: 1 << 20,
        batch_count: 2,
        max_message_size: 0,
    };

    /// A step as (fetched UIDs, ops, patch) in short.
    fn shape(p: &Plan) -> Vec<(Vec<u32>, usize, FolderPatch)> {
        p.steps
            .iter()
            .map(|s| {
                let uids = s.fetch.as_ref().map_or(Vec::new(), |b| b.uids().collect());
                (uids, s.ops.len(), s.patch.clone())
            })
            .collect()
    }

    fn patch(f: impl FnOnce(&mut FolderPatch)) -> FolderPatch {
        let mut p = FolderPatch::default();
        f(&mut p);
        p
    }

    #[test]
    fn reads_table() {
        let f = folder(); // uidvalidity 7, last_uid 99, complete
        let cases: &[(&str, Folder, Examined, Reads)] = &[
            (
                "nothing_new",
                f.clone(),
                ex(7, 100, Some(500)),
                Reads {
                    generation: false,
                    backfill_below: None,
                    new_from: None,
                },
            ),
            (
                "new_mail",
                f.clone(),
                ex(7, 120, Some(500)),
                Reads {
                    generation: false,
                    backfill_below: None,
                    new_from: Some(100),
                },
            ),
            (
                "uidvalidity_changed",
                f.clone(),
                ex(8, 120, Some(500)),
                Reads {
                    generation: true,
                    backfill_below: None,
                    new_from: None,
                },
            ),
            (
                "resume_backfill_after_kill",
                Folder {
                    backfill_below: Some(40),
                    ..f.clone()
                },
                ex(7, 100, Some(500)),
                Reads {
                    generation: false,
                    backfill_below: Some(40),
                    new_from: None,
                },
            ),
            (
                "backfill_at_the_bottom_reads_nothing_below",
                Folder {
                    backfill_below: Some(1),
                    ..f.clone()
                },
                ex(7, 100, Some(500)),
                Reads {
                    generation: false,
                    backfill_below: None,
                    new_from: None,
                },
            ),
            (
                "no_uidnext_looks_for_new_mail",
                f.clone(),
                Examined {
                    uidnext: None,
                    ..ex(7, 0, None)
                },
                Reads {
                    generation: false,
                    backfill_below: None,
                    new_from: Some(100),
                },
            ),
        ];
        for (name, folder, examined, want) in cases {
            assert_eq!(reads(folder, examined), *want, "{name}");
        }
    }

    #[test]
    fn plan_table() {
        let now = 1_000;
        let f = folder(); // uidvalidity 7, uidnext 100, last_uid 99, modseq 500
        let never = Folder {
            uidvalidity: None,
            uidnext: None,
            last_uid: 0,
            highestmodseq: None,
            ..f.clone()
        };
        let old = |emmsid, id: &str, size| OldRow {
            emmsid,
            message_id: Some(id.to_string()),
            size: Some(size),
        };
        let gen = |p: &mut FolderPatch, top: u32, below: Option<u32>, modseq: Option<u64>| {
            p.uidvalidity = Some(8);
            p.uidnext = Some(top + 1);
            p.last_uid = Some(top);
            p.backfill_below = Some(below);
            p.highestmodseq = Some(modseq);
        };
        let read = |generation, backfill, new| Read {
            generation,
            backfill,
            new,
        };
        type Case = (
            &'static str,
            Folder,
            Kind,
            Examined,
            Read,
            Vec<(Vec<u32>, usize, FolderPatch)>,
            Option<(Reconcile, u32)>,
        );
        let cases: Vec<Case> = vec![
            (
                "first_sync_newest_first",
                never.clone(),
                Kind::Full,
                Examined {
                    uidvalidity: 8,
                    ..ex(8, 6, Some(50))
                },
                read(
                    Some(((1..=5).map(|u| ix(u, 10, None)).collect(), vec![])),
                    None,
                    vec![],
                ),
                vec![
                    (vec![], 0, patch(|p| gen(p, 5, Some(6), None))),
                    (vec![5, 4], 0, patch(|p| p.backfill_below = Some(Some(4)))),
                    (vec![3, 2], 0, patch(|p| p.backfill_below = Some(Some(2)))),
                    (
                        vec![1],
                        1,
                        patch(|p| {
                            p.backfill_below = Some(None);
                            p.highestmodseq = Some(Some(50));
                        }),
                    ),
                ],
                None,
            ),
            (
                "uidvalidity_changed_all_remapped",
                f.clone(),
                Kind::Full,
                ex(8, 3, Some(60)),
                read(
                    Some((
                        vec![ix(1, 10, Some("a@x")), ix(2, 20, Some("b@x"))],
                        vec![old(11, "a@x", 10), old(12, "b@x", 20)],
                    )),
                    None,
                    vec![],
                ),
                // two re-maps and the end of the old generation, at once
                vec![(vec![], 3, patch(|p| gen(p, 2, None, Some(60))))],
                None,
            ),
            (
                "uidvalidity_changed_some_remapped",
                f.clone(),
                Kind::Recent,
                ex(8, 4, Some(60)),
                read(
                    Some((
                        vec![ix(1, 10, Some("a@x")), ix(2, 20, None), ix(3, 30, None)],
                        vec![old(11, "a@x", 10)],
                    )),
                    None,
                    vec![],
                ),
                vec![
                    (vec![], 1, patch(|p| gen(p, 3, Some(4), None))),
                    (
                        vec![3, 2],
                        1,
                        patch(|p| {
                            p.backfill_below = Some(None);
                            p.highestmodseq = Some(Some(60));
                        }),
                    ),
                ],
                None,
            ),
            (
                "resume_backfill_after_kill",
                Folder {
                    backfill_below: Some(4),
                    highestmodseq: None,
                    ..f.clone()
                },
                Kind::Full,
                ex(7, 100, Some(500)),
                // 2 is stored already (a batch committed before the kill)
                read(
                    None,
                    Some(((1..=3).map(|u| ix(u, 10, None)).collect(), vec![2, 4, 99])),
                    vec![],
                ),
                vec![(
                    vec![3, 1],
                    1,
                    patch(|p| {
                        p.backfill_below = Some(None);
                        p.highestmodseq = Some(Some(500));
                    }),
                )],
                None,
            ),
            (
                "interrupted_after_new_mail_new_first_then_backfill",
                Folder {
                    backfill_below: Some(3),
                    highestmodseq: None,
                    ..f.clone()
                },
                Kind::Recent,
                ex(7, 102, Some(510)),
                read(
                    None,
                    Some((vec![ix(1, 10, None), ix(2, 10, None)], vec![])),
                    vec![ix(99, 10, None), ix(100, 10, None), ix(101, 10, None)],
                ),
                vec![
                    (vec![100, 101], 0, patch(|p| p.last_uid = Some(101))),
                    (
                        vec![2, 1],
                        1,
                        patch(|p| {
                            p.backfill_below = Some(None);
                            p.highestmodseq = Some(Some(510));
                        }),
                    ),
                ],
                None,
            ),
            (
                "backfill_with_nothing_left_completes_the_generation",
                Folder {
                    backfill_below: Some(1),
                    highestmodseq: None,
                    ..f.clone()
                },
                Kind::Recent,
                ex(7, 100, None),
                read(None, None, vec![]),
                vec![(
                    vec![],
                    1,
                    patch(|p| {
                        p.backfill_below = Some(None);
                        p.highestmodseq = Some(None);
                    }),
                )],
                None,
            ),
            (
                "full_sync_with_qresync_reconciles_since_the_stored_modseq",
                f.clone(),
                Kind::Full,
                ex(7, 101, Some(510)),
                read(None, None, vec![ix(100, 10, None)]),
                vec![(vec![100], 0, patch(|p| p.last_uid = Some(100)))],
                Some((Reconcile::Qresync { since: 500 }, 100)),
            ),
            (
                "full_sync_modseq_unchanged_needs_no_reconcile",
                f.clone(),
                Kind::Full,
                ex(7, 100, Some(500)),
                read(None, None, vec![]),
                vec![],
                None,
            ),
            (
                "full_sync_condstore_without_qresync",
                f.clone(),
                Kind::Full,
                Examined {
                    qresync: false,
                    ..ex(7, 100, Some(501))
                },
                read(None, None, vec![]),
                vec![],
                Some((Reconcile::Condstore { since: 500 }, 99)),
            ),
            (
                "full_sync_without_condstore_compares_everything",
                Folder {
                    highestmodseq: None,
                    ..f.clone()
                },
                Kind::Full,
                ex(7, 100, None),
                read(None, None, vec![]),
                vec![],
                Some((Reconcile::Everything, 99)),
            ),
            (
                "recent_sync_never_reconciles",
                f.clone(),
                Kind::Recent,
                ex(7, 100, Some(900)),
                read(None, None, vec![]),
                vec![],
                None,
            ),
            (
                "uid_fetch_n_star_returns_the_last_message_filtered",
                f.clone(),
                Kind::Recent,
                ex(7, 101, Some(500)),
                read(None, None, vec![ix(99, 10, None)]),
                vec![],
                None,
            ),
        ];
        for (name, folder, kind, examined, read, want, want_reconcile) in cases {
            let p = plan(&folder, kind, &examined, &read, now, &TWO);
            assert_eq!(shape(&p), want, "{name}");
            assert_eq!(p.reconcile, want_reconcile, "{name}");
            assert_eq!(p.done, done_patch(now, kind, examined.uidnext), "{name}");
        }
    }

    #[test]
    fn vanished_and_flags() {
        assert_eq!(vanished(&[1, 5, 9, 12], &[4..=9, 100..=200]), vec![5, 9]);
        assert_eq!(
            vanished(&[1, 5, 9, 12], &[9..=12, 1..=5, 5..=9]),
            vec![1, 5, 9, 12]
        );
        assert_eq!(vanished(&[3, 7], &[1..=u32::MAX]), vec![3, 7]);
        assert!(vanished(&[], &[1..=10]).is_empty());
        assert_eq!(
            flags_string(&[b"\\Seen", b"\\Recent", b"$Label1"]),
            "\\Seen $Label1"
        );
        assert_eq!(flags_string(&[]), "");
    }
}
