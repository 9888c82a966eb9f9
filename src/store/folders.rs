//! `email_folders`: the folders of each account, their sync progress and times.

use super::error::{Context, Result};
use super::sqlite::Sqlite;
use rusqlite::{params, OptionalExtension, Row, Transaction};

/// One folder as stored, with the sync state the engine keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub emfdid: i64,
    pub acntid: i64,
    /// UTF-8 path, for people.
    pub name: String,
    /// The wire name (modified UTF-7), the key on the server.
    pub imap_name: String,
    pub special: Option<String>,
    pub priority: String,
    /// The generation the stored progress refers to (NULL: never synced).
    pub uidvalidity: Option<u32>,
    /// The server's UIDNEXT when the folder was last examined.
    pub uidnext: Option<u32>,
    /// Every message of the generation with `backfill_below <= uid <= last_uid` is stored.
    pub last_uid: u32,
    pub highestmodseq: Option<u64>,
    /// The newest-first first sync is not complete: messages below this UID
    /// are still to be fetched. NULL when the folder is complete.
    pub backfill_below: Option<u32>,
    pub last_recent_sync_at: Option<i64>,
    pub last_full_sync_at: Option<i64>,
    pub removed_at: Option<i64>,
    pub last_error: Option<String>,
    /// Some message is stored header-only (`partial = 1`) and waits for its body.
    pub has_partial: bool,
}

/// A folder's priority as `folder priority` sets it (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Synced on the hi intervals, like the Inbox.
    Hi,
    /// Synced once a day, in the evening window.
    Lo,
}

impl Priority {
    /// `hi` or `lo`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Hi => "hi",
            Priority::Lo => "lo",
        }
    }
}

impl Folder {
    /// The Inbox or a folder marked `hi`.
    pub fn is_hi(&self) -> bool {
        self.special.as_deref() == Some("inbox") || self.priority == "hi"
    }
}

pub(super) const COLUMNS: &str = "f.emfdid, f.acntid, f.name, f.imap_name, f.special, f.priority, \
    f.uidvalidity, f.uidnext, f.last_uid, f.highestmodseq, f.backfill_below, \
    f.last_recent_sync_at, f.last_full_sync_at, f.removed_at, f.last_error, \
    EXISTS (SELECT 1 FROM email_messages m WHERE m.emfdid = f.emfdid AND m.partial = 1)";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Folder> {
    Ok(Folder {
        emfdid: r.get(0)?,
        acntid: r.get(1)?,
        name: r.get(2)?,
        imap_name: r.get(3)?,
        special: r.get(4)?,
        priority: r
            .get::<_, Option<String>>(5)?
            .unwrap_or_else(|| "lo".into()),
        uidvalidity: r.get::<_, Option<i64>>(6)?.map(clamp_u32),
        uidnext: r.get::<_, Option<i64>>(7)?.map(clamp_u32),
        last_uid: r.get::<_, Option<i64>>(8)?.map(clamp_u32).unwrap_or(0),
        highestmodseq: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        backfill_below: r.get::<_, Option<i64>>(10)?.map(clamp_u32),
        last_recent_sync_at: r.get(11)?,
        last_full_sync_at: r.get(12)?,
        removed_at: r.get(13)?,
        last_error: r.get(14)?,
        has_partial: r.get(15)?,
    })
}

pub(super) fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

/// A folder as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub imap_name: String,
    pub name: String,
    pub delimiter: Option<String>,
    pub special: Option<&'static str>,
}

/// A folder row as discovery compares it: id, IMAP name, `removed_at`,
/// `special`.
pub(super) type Known = (i64, String, Option<i64>, Option<String>);

/// What LIST's answer changes in an account's folder rows.
#[derive(Debug, PartialEq)]
pub(super) enum FolderChange<'a> {
    /// Back after it was removed, or its special use changed.
    Update {
        emfdid: i64,
        found: &'a Discovered,
        special: Option<&'static str>,
    },
    /// New (`priority` hi for the Inbox, lo for the rest).
    Add {
        found: &'a Discovered,
        special: Option<&'static str>,
        priority: &'static str,
    },
    /// No longer on the server.
    Remove { emfdid: i64 },
}

/// The changes LIST's answer `found` makes to `known` (both backends; none
/// in the common run, where the folders are what they were).
pub(super) fn discovery_changes<'a>(
    known: &[Known],
    found: &'a [Discovered],
) -> Vec<FolderChange<'a>> {
    let key = |name: &str| {
        if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            name.to_string()
        }
    };
    let mut changes = Vec::new();
    for d in found {
        let is_inbox = key(&d.imap_name) == "INBOX";
        let special = if is_inbox { Some("inbox") } else { d.special };
        match known.iter().find(|k| key(&k.1) == key(&d.imap_name)) {
            Some((emfdid, _, removed_at, old_special)) => {
                if removed_at.is_some() || old_special.as_deref() != special {
                    changes.push(FolderChange::Update {
                        emfdid: *emfdid,
                        found: d,
                        special,
                    });
                }
            }
            None => changes.push(FolderChange::Add {
                found: d,
                special,
                priority: if is_inbox { "hi" } else { "lo" },
            }),
        }
    }
    for (emfdid, imap_name, removed_at, _) in known {
        let gone = !found.iter().any(|d| key(&d.imap_name) == key(imap_name));
        if gone && removed_at.is_none() {
            changes.push(FolderChange::Remove { emfdid: *emfdid });
        }
    }
    changes
}

/// Whether LIST's answer `found` leaves an account's folder rows as they
/// are (`folders`: all of them, removed ones too). Then the discovery has
/// nothing to write, and the rows read are its result.
pub fn discovery_changes_nothing(folders: &[Folder], found: &[Discovered]) -> bool {
    let known: Vec<Known> = folders
        .iter()
        .map(|f| {
            (
                f.emfdid,
                f.imap_name.clone(),
                f.removed_at,
                f.special.clone(),
            )
        })
        .collect();
    discovery_changes(&known, found).is_empty()
}

/// Changes to a folder's sync state, applied together with a batch of
/// messages so progress and rows commit in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPatch {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub last_uid: Option<u32>,
    pub backfill_below: Option<Option<u32>>,
    pub highestmodseq: Option<Option<u64>>,
    pub recent_sync_at: Option<i64>,
    pub full_sync_at: Option<i64>,
    /// `Some(None)` clears `last_error`, `Some(Some(e))` sets it.
    pub error: Option<Option<String>>,
}

pub(super) fn insert_inbox(tx: &Transaction<'_>, acntid: i64) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO email_folders (acntid, name, imap_name, special, priority) \
         VALUES (?, 'INBOX', 'INBOX', 'inbox', 'hi')",
        [acntid],
    )
    .context(format!("add the Inbox of account {acntid}"))?;
    Ok(())
}

pub(super) fn apply_patch(
    tx: &Transaction<'_>,
    emfdid: i64,
    p: &FolderPatch,
    now: i64,
) -> Result<()> {
    let mut sets: Vec<&str> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    use rusqlite::types::Value;
    let opt_u32 = |v: Option<u32>| v.map_or(Value::Null, |v| Value::Integer(v as i64));
    if let Some(v) = p.uidvalidity {
        sets.push("uidvalidity = ?");
        values.push(Value::Integer(v as i64));
    }
    if let Some(v) = p.uidnext {
        sets.push("uidnext = ?");
        values.push(Value::Integer(v as i64));
    }
    if let Some(v) = p.last_uid {
        sets.push("last_uid = ?");
        values.push(Value::Integer(v as i64));
    }
    if let Some(v) = p.backfill_below {
        sets.push("backfill_below = ?");
        values.push(opt_u32(v));
    }
    if let Some(v) = p.highestmodseq {
        sets.push("highestmodseq = ?");
        values.push(v.map_or(Value::Null, |v| {
            Value::Integer(v.min(i64::MAX as u64) as i64)
        }));
    }
    if let Some(v) = p.recent_sync_at {
        sets.push("last_recent_sync_at = ?");
        values.push(Value::Integer(v));
    }
    if let Some(v) = p.full_sync_at {
        sets.push("last_full_sync_at = ?");
        values.push(Value::Integer(v));
    }
    if let Some(e) = &p.error {
        sets.push("last_error = ?");
        values.push(e.clone().map_or(Value::Null, Value::Text));
        if e.is_some() {
            sets.push("last_error_at = ?");
            values.push(Value::Integer(now));
        }
    }
    if sets.is_empty() {
        return Ok(());
    }
    values.push(Value::Integer(emfdid));
    let sql = format!(
        "UPDATE email_folders SET {} WHERE emfdid = ?",
        sets.join(", ")
    );
    tx.prepare_cached(&sql)
        .and_then(|mut s| s.execute(rusqlite::params_from_iter(values)))
        .context(format!("update folder {emfdid}"))?;
    Ok(())
}

impl Sqlite {
    /// Folders of active accounts (all of them, or of `acntid`), removed ones
    /// included when `with_removed`.
    pub fn folders(&self, acntid: Option<i64>, with_removed: bool) -> Result<Vec<Folder>> {
        // One account's by its index: `?1 IS NULL OR f.acntid = ?1` would
        // read every folder of the installation for each account.
        let which = match acntid {
            Some(_) => "f.acntid = ?1",
            None => "?1 IS NULL",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM email_folders f JOIN email_accounts a ON a.acntid = f.acntid \
             WHERE {which} AND (?2 OR f.removed_at IS NULL) ORDER BY f.acntid, f.emfdid"
        );
        let mut stmt = self.conn().prepare_cached(&sql).context("list folders")?;
        let rows = stmt
            .query_map(params![acntid, with_removed], from_row)
            .context("list folders")?
            .collect::<rusqlite::Result<Vec<_>>>()
            .context("list folders")?;
        Ok(rows)
    }

    /// One folder.
    pub fn folder(&self, emfdid: i64) -> Result<Option<Folder>> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM email_folders f WHERE f.emfdid = ?"),
                [emfdid],
                from_row,
            )
            .optional()
            .context(format!("read folder {emfdid}"))
    }

    /// Gives every active account without any folder its Inbox row (accounts
    /// the web app inserted itself), so the scheduler sees them.
    pub fn ensure_inboxes(&mut self) -> Result<()> {
        let missing: i64 = self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM email_accounts a WHERE NOT EXISTS \
                 (SELECT 1 FROM email_folders f WHERE f.acntid = a.acntid)",
                [],
                |r| r.get(0),
            )
            .context("find accounts without folders")?;
        if missing == 0 {
            return Ok(());
        }
        self.write(|tx| {
            let ids: Vec<i64> = tx
                .prepare(
                    "SELECT acntid FROM email_accounts a WHERE NOT EXISTS \
                     (SELECT 1 FROM email_folders f WHERE f.acntid = a.acntid)",
                )
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .context("find accounts without folders")?;
            for id in ids {
                insert_inbox(tx, id)?;
            }
            Ok(())
        })
    }

    /// Sets a folder's priority (`folder priority`). False when unknown.
    pub fn set_folder_priority(&mut self, emfdid: i64, priority: Priority) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE email_folders SET priority = ? WHERE emfdid = ?",
                    params![priority.as_str(), emfdid],
                )
                .context(format!("set the priority of folder {emfdid}"))?;
            Ok(n > 0)
        })
    }

    /// Applies what LIST found for one account: new folders are added (`lo`,
    /// the Inbox `hi`), returning ones lose `removed_at`, vanished ones get it
    /// (their messages stay). Returns the account's live folders afterwards.
    pub fn apply_discovery(
        &mut self,
        acntid: i64,
        found: &[Discovered],
        now: i64,
    ) -> Result<Vec<Folder>> {
        self.write(|tx| {
            let existing: Vec<Known> = tx
                .prepare(
                    "SELECT emfdid, imap_name, removed_at, special FROM email_folders WHERE acntid = ?",
                )
                .and_then(|mut s| {
                    s.query_map([acntid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                        .collect()
                })
                .context(format!("read the folders of account {acntid}"))?;
            for change in discovery_changes(&existing, found) {
                match change {
                    FolderChange::Update {
                        emfdid,
                        found: d,
                        special,
                    } => {
                        tx.execute(
                            "UPDATE email_folders SET removed_at = NULL, special = ?, \
                             delimiter = ?, name = ? WHERE emfdid = ?",
                            params![special, d.delimiter, d.name, emfdid],
                        )
                        .context(format!("update folder {emfdid}"))?;
                    }
                    FolderChange::Add {
                        found: d,
                        special,
                        priority,
                    } => {
                        tx.execute(
                            "INSERT INTO email_folders (acntid, name, imap_name, delimiter, special, priority) \
                             VALUES (?, ?, ?, ?, ?, ?)",
                            params![acntid, d.name, d.imap_name, d.delimiter, special, priority],
                        )
                        .context(format!("add folder '{}' of account {acntid}", d.name))?;
                    }
                    FolderChange::Remove { emfdid } => {
                        tx.execute(
                            "UPDATE email_folders SET removed_at = ? WHERE emfdid = ?",
                            params![now, emfdid],
                        )
                        .context(format!("mark folder {emfdid} removed"))?;
                    }
                }
            }
            Ok(())
        })?;
        self.folders(Some(acntid), false)
    }

    /// Applies several folders' patches in one transaction.
    pub fn patch_folders(&mut self, patches: &[(i64, FolderPatch)], now: i64) -> Result<()> {
        self.write(|tx| {
            for (emfdid, p) in patches {
                apply_patch(tx, *emfdid, p, now)?;
            }
            Ok(())
        })
    }

    /// Records a folder's error (or clears it).
    pub fn set_folder_error(&mut self, emfdid: i64, error: Option<&str>, now: i64) -> Result<()> {
        let patch = FolderPatch {
            error: Some(error.map(str::to_string)),
            ..FolderPatch::default()
        };
        self.write(|tx| apply_patch(tx, emfdid, &patch, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(imap_name: &str, special: Option<&'static str>) -> Discovered {
        Discovered {
            imap_name: imap_name.into(),
            name: imap_name.into(),
            delimiter: Some("/".into()),
            special,
        }
    }

    fn known(
        emfdid: i64,
        imap_name: &str,
        removed_at: Option<i64>,
        special: Option<&str>,
    ) -> Known {
        (
            emfdid,
            imap_name.into(),
            removed_at,
            special.map(str::to_string),
        )
    }

    #[test]
    fn discovery_changes_only_what_list_changed() {
        let rows = [
            known(1, "INBOX", None, Some("inbox")),
            known(2, "Sent", None, Some("sent")),
            known(3, "Old", Some(5), None),
            known(4, "Gone", None, None),
            known(5, "Long gone", Some(5), None),
        ];
        // The same folders as before: nothing.
        let same = [
            listed("inbox", None),
            listed("Sent", Some("sent")),
            listed("Gone", None),
        ];
        assert_eq!(discovery_changes(&rows, &same), vec![]);
        let found = [
            // The Inbox in any case is the Inbox (its special use kept).
            listed("Inbox", None),
            // Special use changed.
            listed("Sent", None),
            // Back after removal.
            listed("Old", None),
            listed("New", Some("trash")),
        ];
        assert_eq!(
            discovery_changes(&rows, &found),
            vec![
                FolderChange::Update {
                    emfdid: 2,
                    found: &found[1],
                    special: None
                },
                FolderChange::Update {
                    emfdid: 3,
                    found: &found[2],
                    special: None
                },
                FolderChange::Add {
                    found: &found[3],
                    special: Some("trash"),
                    priority: "lo"
                },
                // Gone now; "Long gone" was already marked.
                FolderChange::Remove { emfdid: 4 },
            ]
        );
        // A new account: its Inbox comes in at hi priority.
        let inbox = [listed("INBOX", None)];
        assert_eq!(
            discovery_changes(&[], &inbox),
            vec![FolderChange::Add {
                found: &inbox[0],
                special: Some("inbox"),
                priority: "hi"
            }]
        );
    }
}
