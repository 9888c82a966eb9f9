//! `email_folders` on PostgreSQL: the same operations as on SQLite.

use super::super::error::Result;
use super::super::folders::{clamp_u32, discovery_changes, FolderChange, Known, COLUMNS};
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

/// A value of a folder patch's column.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl Value {
    fn boxed(&self) -> Box<dyn ToSql + Sync + '_> {
        match self {
            Value::Int(v) => Box::new(*v),
            Value::Text(v) => Box::new(v.as_deref()),
        }
    }
}

/// The columns a patch sets (its shape) and their values.
fn assignments(p: &FolderPatch, now: i64) -> (Vec<&'static str>, Vec<Value>) {
    let mut sets: Vec<&'static str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut int = |c: &'static str, v: Option<i64>| {
        sets.push(c);
        values.push(Value::Int(v));
    };
    if let Some(v) = p.uidvalidity {
        int("uidvalidity", Some(i64::from(v)));
    }
    if let Some(v) = p.uidnext {
        int("uidnext", Some(i64::from(v)));
    }
    if let Some(v) = p.last_uid {
        int("last_uid", Some(i64::from(v)));
    }
    if let Some(v) = p.backfill_below {
        int("backfill_below", v.map(i64::from));
    }
    if let Some(v) = p.highestmodseq {
        int("highestmodseq", v.map(|v| v.min(i64::MAX as u64) as i64));
    }
    if let Some(v) = p.recent_sync_at {
        int("last_recent_sync_at", Some(v));
    }
    if let Some(v) = p.full_sync_at {
        int("last_full_sync_at", Some(v));
    }
    if let Some(e) = &p.error {
        sets.push("last_error");
        values.push(Value::Text(e.as_deref().map(|e| text(e).into_owned())));
        if e.is_some() {
            sets.push("last_error_at");
            values.push(Value::Int(Some(now)));
        }
    }
    (sets, values)
}

pub(super) fn apply_patch(tx: &mut Tx<'_>, emfdid: i64, p: &FolderPatch, now: i64) -> Result<()> {
    let (sets, values) = assignments(p, now);
    apply_one(tx, emfdid, &sets, &values)
}

/// One folder's patch.
fn apply_one(tx: &mut Tx<'_>, emfdid: i64, sets: &[&str], values: &[Value]) -> Result<()> {
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
    let mut boxed: Vec<Box<dyn ToSql + Sync + '_>> = values.iter().map(Value::boxed).collect();
    boxed.push(Box::new(emfdid));
    let params: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|v| v.as_ref()).collect();
    tx.execute(&sql, &params, format!("update folder {emfdid}"))?;
    Ok(())
}

/// Patches of one shape for distinct folders, in one statement (arrays
/// unnested side by side).
fn apply_alike(tx: &mut Tx<'_>, sets: &[&str], rows: &[(i64, Vec<Value>)]) -> Result<()> {
    let mut columns: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut types: Vec<&str> = Vec::new();
    for (j, _) in sets.iter().enumerate() {
        match rows.first().map(|(_, values)| &values[j]) {
            Some(Value::Text(_)) => {
                let column: Vec<Option<String>> = rows
                    .iter()
                    .map(|(_, values)| match &values[j] {
                        Value::Text(v) => v.clone(),
                        Value::Int(_) => None,
                    })
                    .collect();
                columns.push(Box::new(column));
                types.push("text[]");
            }
            _ => {
                let column: Vec<Option<i64>> = rows
                    .iter()
                    .map(|(_, values)| match &values[j] {
                        Value::Int(v) => *v,
                        Value::Text(_) => None,
                    })
                    .collect();
                columns.push(Box::new(column));
                types.push("int8[]");
            }
        }
    }
    columns.push(Box::new(
        rows.iter().map(|(id, _)| *id).collect::<Vec<i64>>(),
    ));
    types.push("int8[]");
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE email_folders f SET {} FROM unnest({}) AS v({}, emfdid) WHERE f.emfdid = v.emfdid",
        sets.iter()
            .map(|c| format!("{c} = v.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        arrays.join(", "),
        sets.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|v| v.as_ref()).collect();
    tx.execute(&sql, &params, format!("update {} folders", rows.len()))?;
    Ok(())
}

impl Postgres {
    /// Folders of active accounts (all, or of `acntid`), removed ones too
    /// when `with_removed`.
    pub fn folders(&self, acntid: Option<i64>, with_removed: bool) -> Result<Vec<Folder>> {
        // One account's by its index: a prepared statement's generic plan
        // for `$1 IS NULL OR f.acntid = $1` reads every folder of the
        // installation for each account (0.23 ms each at 3,000 folders).
        let which = match acntid {
            Some(_) => "f.acntid = $1",
            None => "$1::int8 IS NULL",
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM email_folders f JOIN email_accounts a ON a.acntid = f.acntid \
             WHERE {which} AND ($2 OR f.removed_at IS NULL) ORDER BY f.acntid, f.emfdid"
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
            let mut known: Vec<Known> = Vec::new();
            for r in tx.rows(
                "SELECT emfdid, imap_name, removed_at, special FROM email_folders WHERE acntid = $1",
                &[&acntid],
                format!("read the folders of account {acntid}"),
            )? {
                known.push((get(&r, 0)?, get(&r, 1)?, get(&r, 2)?, get(&r, 3)?));
            }
            for change in discovery_changes(&known, found) {
                match change {
                    FolderChange::Update {
                        emfdid,
                        found: d,
                        special,
                    } => {
                        let (name, delimiter) = (text(&d.name), opt_text(d.delimiter.as_deref()));
                        tx.execute(
                            "UPDATE email_folders SET removed_at = NULL, special = $1, \
                             delimiter = $2, name = $3 WHERE emfdid = $4",
                            &[&special, &delimiter, &name, &emfdid],
                            format!("update folder {emfdid}"),
                        )?;
                    }
                    FolderChange::Add {
                        found: d,
                        special,
                        priority,
                    } => {
                        let (name, imap_name) = (text(&d.name), text(&d.imap_name));
                        let delimiter = opt_text(d.delimiter.as_deref());
                        tx.execute(
                            "INSERT INTO email_folders (acntid, name, imap_name, delimiter, special, priority) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                            &[&acntid, &name, &imap_name, &delimiter, &special, &priority],
                            format!("add folder '{}' of account {acntid}", d.name),
                        )?;
                    }
                    FolderChange::Remove { emfdid } => {
                        tx.execute(
                            "UPDATE email_folders SET removed_at = $1 WHERE emfdid = $2",
                            &[&now, &emfdid],
                            format!("mark folder {emfdid} removed"),
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        self.folders(Some(acntid), false)
    }

    /// Several folders' patches in one transaction; those setting the same
    /// columns in one statement (a run that finds nothing new patches every
    /// folder of an account alike).
    pub fn patch_folders(&mut self, patches: &[(i64, FolderPatch)], now: i64) -> Result<()> {
        let distinct = patches
            .iter()
            .enumerate()
            .all(|(i, (id, _))| patches[..i].iter().all(|(other, _)| other != id));
        if !distinct {
            return self.write(|tx| {
                for (emfdid, p) in patches {
                    apply_patch(tx, *emfdid, p, now)?;
                }
                Ok(())
            });
        }
        let mut shapes: Vec<(Vec<&'static str>, Vec<(i64, Vec<Value>)>)> = Vec::new();
        for (emfdid, p) in patches {
            let (sets, values) = assignments(p, now);
            if sets.is_empty() {
                continue;
            }
            match shapes.iter_mut().find(|(s, _)| *s == sets) {
                Some((_, rows)) => rows.push((*emfdid, values)),
                None => shapes.push((sets, vec![(*emfdid, values)])),
            }
        }
        let apply = |tx: &mut Tx<'_>| {
            for (sets, rows) in &shapes {
                match rows.as_slice() {
                    [(emfdid, values)] => apply_one(tx, *emfdid, sets, values)?,
                    _ => apply_alike(tx, sets, rows)?,
                }
            }
            Ok(())
        };
        match shapes.len() {
            0 => Ok(()),
            // One statement: its own transaction.
            1 => self.write_alone(apply),
            _ => self.write(apply),
        }
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
