//! The pure decisions of a folder sync: whether to select the folder at all,
//! how to cut fetches into batches, which old rows are the new generation's
//! messages, and what changed in flags and expunges. No I/O here.

use crate::imap::MailboxStatus;
use crate::schedule::Kind;
use crate::store::{Folder, OldRow};
use std::collections::HashMap;

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

/// A message of a new generation's index, for re-mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub uid: u32,
    pub size: u32,
    pub flags: String,
    pub message_id: Option<String>,
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

/// What a flag reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconcile {
    /// Stored messages whose flags changed: (uid, new flags).
    pub flags: Vec<(u32, String)>,
    /// Stored messages the server no longer has.
    pub expunged: Vec<u32>,
}

/// Compares stored flags with the server's. `server` holds the messages the
/// server reported; when `complete`, a stored UID it lacks was expunged
/// (otherwise `server` holds only changes, and `present` — when given — the
/// UIDs that still exist).
pub fn reconcile(
    stored: &[(u32, String)],
    server: &[(u32, String)],
    complete: bool,
    present: Option<&[u32]>,
) -> Reconcile {
    let reported: HashMap<u32, &str> = server.iter().map(|(u, f)| (*u, f.as_str())).collect();
    let mut out = Reconcile::default();
    let present: Option<std::collections::HashSet<u32>> =
        present.map(|p| p.iter().copied().collect());
    for (uid, flags) in stored {
        match reported.get(uid) {
            Some(new) if *new != flags.as_str() => out.flags.push((*uid, (*new).to_string())),
            Some(_) => {}
            None => {
                let gone = if complete {
                    true
                } else {
                    present.as_ref().is_some_and(|p| !p.contains(uid))
                };
                if gone {
                    out.expunged.push(*uid);
                }
            }
        }
    }
    out
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

    #[test]
    fn reconcile_table() {
        let stored = vec![
            (1, "".to_string()),
            (2, "\\Seen".to_string()),
            (3, "".to_string()),
        ];
        let full = vec![(1, "\\Flagged".to_string()), (2, "\\Seen".to_string())];
        let r = reconcile(&stored, &full, true, None);
        assert_eq!(r.flags, vec![(1, "\\Flagged".to_string())]);
        assert_eq!(r.expunged, vec![3]);
        // CHANGEDSINCE: only changes reported; expunges from the UID list
        let changed = vec![(2, "".to_string())];
        let r = reconcile(&stored, &changed, false, Some(&[1, 2]));
        assert_eq!(r.flags, vec![(2, "".to_string())]);
        assert_eq!(r.expunged, vec![3]);
        let r = reconcile(&stored, &changed, false, None);
        assert!(r.expunged.is_empty());
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
