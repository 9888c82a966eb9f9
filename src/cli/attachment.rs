//! `engine attachment list|get` (SPEC §14): a message's attachments, and
//! one attachment's decoded bytes.

use super::args::AttachmentCmd;
use crate::error::{exit, Error, Result};
use crate::store::{Store, StoredAttachment};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// `engine attachment ...`
pub fn command(store: &Store, cmd: AttachmentCmd) -> Result<i32> {
    match cmd {
        AttachmentCmd::List { emmsid, json } => list(store, emmsid, json),
        AttachmentCmd::Get { emattid, output } => get(store, emattid, output.as_deref()),
    }
}

fn list(store: &Store, emmsid: i64, as_json: bool) -> Result<i32> {
    let found = store
        .attachments(emmsid)?
        .ok_or_else(|| Error::Input(format!("no message {emmsid}")))?;
    if found.partial {
        eprintln!(
            "engine: message {emmsid} is stored header-only (it is large): its attachments \
             are listed once a run has fetched it whole"
        );
    } else if found.pending {
        eprintln!(
            "engine: message {emmsid} was stored before attachments were recorded: the \
             next runs fill them in"
        );
    }
    if as_json {
        let rows: Vec<serde_json::Value> = found.attachments.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(exit::OK);
    }
    if !found.attachments.is_empty() {
        println!(
            "{:>8}  {:<8} {:>10}  {:<28} {:<10}  filename",
            "emattid", "part", "size", "type", "disposition"
        );
    }
    for a in &found.attachments {
        println!(
            "{:>8}  {:<8} {:>10}  {:<28} {:<10}  {}",
            a.emattid,
            a.part,
            a.size,
            a.content_type,
            a.disposition.as_deref().unwrap_or("-"),
            a.filename.as_deref().unwrap_or("-")
        );
    }
    Ok(exit::OK)
}

fn to_json(a: &StoredAttachment) -> serde_json::Value {
    json!({
        "emattid": a.emattid, "emmsid": a.emmsid, "part": a.part, "filename": a.filename,
        "content_type": a.content_type, "disposition": a.disposition,
        "content_id": a.content_id, "size": a.size, "sha256": a.sha256,
    })
}

/// Writes the decoded bytes to `output` (stdout when None), checking them
/// against the row's size and SHA-256 as they go.
fn get(store: &Store, emattid: i64, output: Option<&Path>) -> Result<i32> {
    let (row, raw) = store
        .attachment(emattid)?
        .ok_or_else(|| Error::Input(format!("no attachment {emattid}")))?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .map_err(|e| Error::other(format!("cannot create {}", path.display()), e))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let (mut hasher, mut size, mut failed) = (Sha256::new(), 0i64, None);
    let found = crate::mime::decode_attachment(&raw, &row.part, &mut |piece| {
        hasher.update(piece);
        size += piece.len() as i64;
        match out.write_all(piece) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed.or_else(|| out.flush().err()) {
        let to = output.map_or("stdout".to_string(), |p| p.display().to_string());
        return Err(Error::other(format!("cannot write to {to}"), e));
    }
    let sha: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !found || size != row.size || sha != row.sha256 {
        drop(out);
        if let Some(path) = output {
            let _ = std::fs::remove_file(path);
        }
        return Err(Error::Other {
            what: format!(
                "attachment {emattid}: part {} of message {} no longer decodes to the bytes \
                 its row describes (size {}, sha256 {}); the row was made by another \
                 version of the engine",
                row.part, row.emmsid, row.size, row.sha256
            ),
            source: None,
        });
    }
    Ok(exit::OK)
}
