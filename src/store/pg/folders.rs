//! `email_folders` on PostgreSQL: the same operations as on SQLite.

use super::super::error::Result;
use super::super::folders::{clamp_u32, COLUMNS};
use super::super::{Discovered, Folder, FolderPatch, Priority};
use super::{get, opt_text, text, Postgres, Tx};
use postgres::types::ToSql;
use postgres::Row;

fn from_row(r: &Row) -> Result<Folder> {
    Ok(Folder {
        emfdid: get(r, 0)?,
        acntid: get(r, 1)?,
        name: get(r, 2)?,
        imap_name: get(r, 3)?,
        special: get(r, 4)?,
        priority: get::<Option<String>>(r, 5)?.unwrap_or_else(|| "lo".into()),
        uidvalidity: get::<Option<i64>>(r, 6)?.map(clamp_u32),
        uidnext: get::<Option<i64>>(r, 7)?.map(clamp_u32),
        last_uid: get::<Option<i64>>(r, 8)?.map(clamp_u32).unwrap_or(0),
        highestmodseq: get::<Option<i64>>(r, 9)?.map(|v| v.max(0) as u64),
        backfill_below: get::<Option<i64>>(r, 10)?.map(clamp_u32),
        last_recent_sync_at: get(r, 11)?,
        last_full_sync_at: get(r, 12)?,
        removed_at: get(r, 13)?,
        last_error: get(r, 14)?,
        has_partial: get(r, 15)?,
    })
}

pub(super) fn insert_inbox(tx: &mut Tx<'_>, acntid: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO email_folders (acntid, name, imap_name, special, priority) \
         VALUES ($1, 'INBOX', 'INBOX', 'inbox', 'hi') ON CONFLICT DO NOTHING",
        &[&acntid],
        format!("add the Inbox of account {acntid}"),
    )?;
    Ok(())
}

pub(super) fn apply_patch(tx: &mut Tx<'_>, emfdid: i64, p: &FolderPatch, now: i64) -> Result<()> {
    let mut sets: Vec<&str> = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let u32_ = |v: u32| Box::new(i64::from(v)) as Box<dyn ToSql + Sync>;
    if let Some(v) = p.uidvalidity {
        sets.push("uidvalidity");
        values.push(u32_(v));
    }
    if let Some(v) = p.uidnext {
        sets.push("uidnext");
        values.push(u32_(v));
    }
    if let Some(v) = p.last_uid {
        sets.push("last_uid");
        values.push(u32_(v));
    }
    if let Some(v) = p.backfill_below {
        sets.push("backfill_below");
        values.push(Box::new(v.map(i64::from)));
    }
    if let Some(v) = p.highestmodseq {
        sets.push("highestmodseq");
        values.push(Box::new(v.map(|v| v.min(i64::MAX as u64) as i64)));
    }
    if let Some(v) = p.recent_sync_at {
        sets.push("last_recent_sync_at");
        values.push(Box::new(v));
    }
    if let Some(v) = p.full_sync_at {
        sets.push("last_full_sync_at");
        values.push(Box::new(v));
    }
    if let Some(e) = &p.error {
        sets.push("last_error");
        values.push(Box::new(e.as_deref().map(|e| text(e).into_owned())));
        if e.is_some() {
            sets.push("last_error_at");
            values.push(Box::new(now));
        }
    }
    if sets.is_empty() {
        return Ok(());
    }
    let assignments: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE email_folders SET {} WHERE emfdid = ${}",
        assignments.join(", "),
        sets.len() + 1
    );
    values.push(Box::new(emfdid));
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    tx.execute(&sql, &params, format!("update folder {emfdid}"))?;
    Ok(())
}

impl Postgres {
    /// Folders of active accounts (all, or of `acntid`), removed ones too
    /// when `with_removed`.
    pub fn folders(&self, acntid: Option<i64>, with_removed: bool) -> Result<Vec<Folder>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM email_folders f JOIN email_accounts a ON a.acntid = f.acntid \
             WHERE ($1::int8 IS NULL OR f.acntid = $1) AND ($2 OR f.removed_at IS NULL) \
             ORDER BY f.acntid, f.emfdid"
        );
        self.rows(&sql, &[&acntid, &with_removed], "list folders")?
            .iter()
            .map(from_row)
            .collect()
    }

    /// One folder.
    pub fn folder(&self, emfdid: i64) -> Result<Option<Folder>> {
        let sql = format!("SELECT {COLUMNS} FROM email_folders f WHERE f.emfdid = $1");
        self.row(&sql, &[&emfdid], format!("read folder {emfdid}"))?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// Gives every account without any folder its Inbox row.
    pub fn ensure_inboxes(&mut self) -> Result<()> {
        const MISSING: &str = "SELECT acntid FROM email_accounts a WHERE NOT EXISTS \
             (SELECT 1 FROM email_folders f WHERE f.acntid = a.acntid)";
        if self
            .rows(MISSING, &[], "find accounts without folders")?
            .is_empty()
        {
            return Ok(());
        }
        self.write(|tx| {
            for r in tx.rows(MISSING, &[], "find accounts without folders")? {
                insert_inbox(tx, get(&r, 0)?)?;
            }
            Ok(())
        })
    }

    /// `folder priority`. False when unknown.
    pub fn set_folder_priority(&mut self, emfdid: i64, priority: Priority) -> Result<bool> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE email_folders SET priority = $1 WHERE emfdid = $2",
                &[&priority.as_str(), &emfdid],
                format!("set the priority of folder {emfdid}"),
            )?;
            Ok(n > 0)
        })
    }

    /// What LIST found for one account; returns its live folders.
    pub fn apply_discovery(
        &mut self,
        acntid: i64,
        found: &[Discovered],
        now: i64,
    ) -> Result<Vec<Folder>> {
        self.write(|tx| {
            let mut existing: Vec<(i64, String, Option<i64>, Option<String>)> = Vec::new();
            for r in tx.rows(
                "SELECT emfdid, imap_name, removed_at, special FROM email_folders WHERE acntid = $1",
                &[&acntid],
                format!("read the folders of account {acntid}"),
            )? {
                existing.push((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?, get(&r, 3)?));
            }
            let key = |name: &str| {
                if name.eq_ignore_ascii_case("INBOX") {
                    "INBOX".to_string()
                } else {
                    name.to_string()
                }
            };
            for d in found {
                let is_inbox = key(&d.imap_name) == "INBOX";
                let special = if is_inbox { Some("inbox") } else { d.special };
                let (name, imap_name) = (text(&d.name), text(&d.imap_name));
                let delimiter = opt_text(d.delimiter.as_deref());
                match existing.iter().find(|e| key(&e.1) == key(&d.imap_name)) {
                    Some((emfdid, _, removed_at, old_special)) => {
                        if removed_at.is_some() || old_special.as_deref() != special {
                            tx.execute(
                                "UPDATE email_folders SET removed_at = NULL, special = $1, \
                                 delimiter = $2, name = $3 WHERE emfdid = $4",
                                &[&special, &delimiter, &name, emfdid],
                                format!("update folder {emfdid}"),
                            )?;
                        }
                    }
                    None => {
                        let priority = if is_inbox { "hi" } else { "lo" };
                        tx.execute(
                            "INSERT INTO email_folders (acntid, name, imap_name, delimiter, special, priority) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                            &[&acntid, &name, &imap_name, &delimiter, &special, &priority],
                            format!("add folder '{}' of account {acntid}", d.name),
                        )?;
                    }
                }
            }
            for (emfdid, imap_name, removed_at, _) in &existing {
                let gone = !found.iter().any(|d| key(&d.imap_name) == key(imap_name));
                if gone && removed_at.is_none() {
                    tx.execute(
                        "UPDATE email_folders SET removed_at = $1 WHERE emfdid = $2",
                        &[&now, emfdid],
                        format!("mark folder {emfdid} removed"),
                    )?;
                }
            }
            Ok(())
        })?;
        self.folders(Some(acntid), false)
    }

    /// Several folders' patches in one transaction.
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
