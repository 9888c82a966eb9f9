//! The copy of a sent message in the account's Sent folder (IMAP APPEND),
//! a step of its own after SMTP acceptance: retried alone when it fails,
//! and skipped when the server already stored a copy (Gmail and Microsoft
//! 365 do), found by Message-ID.

use crate::imap::{self, utf7, Client, Part};
use crate::store::Store;

/// Names a Sent folder goes by when the server marks none with `\Sent`.
const USUAL_NAMES: &[&str] = &[
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "INBOX/Sent",
    "INBOX.Sent",
    "Wysłane",
    "Elementy wysłane",
];

/// Finds the account's Sent folder (special-use first, then the usual
/// names); creates `Sent` when there is none. Returns its wire name.
pub fn sent_folder(
    client: &mut Client,
    store: &Store,
    acntid: i64,
) -> Result<Vec<u8>, imap::Error> {
    if let Ok(folders) = store.folders(Some(acntid), false) {
        if let Some(f) = folders
            .iter()
            .find(|f| f.special.as_deref() == Some("sent"))
        {
            return Ok(f.imap_name.clone().into_bytes());
        }
    }
    let entries = client.list()?;
    if let Some(e) = entries
        .iter()
        .find(|e| e.attributes.iter().any(|a| a == "\\sent"))
    {
        return Ok(e.name.clone());
    }
    for usual in USUAL_NAMES {
        let wire = utf7::encode(usual);
        if let Some(e) = entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(wire.as_bytes()))
        {
            return Ok(e.name.clone());
        }
    }
    client.run_ok(
        "CREATE",
        &[Part::Raw("CREATE"), Part::Str(b"Sent")],
        &mut |_| Ok(()),
    )?;
    Ok(b"Sent".to_vec())
}

/// Stores `wire` in `folder` with `\Seen` unless a message with
/// `message_id` is there already. Returns true when it appended.
pub fn store_copy(
    client: &mut Client,
    folder: &[u8],
    message_id: &str,
    wire: &[u8],
) -> Result<bool, imap::Error> {
    client.examine(folder)?;
    let found = client.uid_search_header("Message-ID", &format!("<{message_id}>"))?;
    if !found.is_empty() {
        return Ok(false);
    }
    client.append(folder, "\\Seen", wire)?;
    Ok(true)
}
