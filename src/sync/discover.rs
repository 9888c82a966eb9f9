//! Discovering an account's folders with LIST (special-use attributes and
//! statuses in the same round trip where the server offers them).

use crate::imap::{self, utf7, Client, MailboxStatus};
use crate::store::Discovered;
use std::collections::HashMap;

/// What LIST found: the selectable folders and, when the server sent them,
/// their statuses by wire name.
pub fn list(
    client: &mut Client,
) -> Result<(Vec<Discovered>, HashMap<String, MailboxStatus>), imap::Error> {
    let mut found = Vec::new();
    let mut statuses = HashMap::new();
    for e in client.list()? {
        if e.attributes
            .iter()
            .any(|a| a == "\\noselect" || a == "\\nonexistent")
        {
            continue;
        }
        let Ok(wire) = String::from_utf8(e.name.clone()) else {
            // Say which one, escaped: the administrator must find it.
            log::warn!(
                "{}: skipped folder \"{}\": its name is not valid UTF-8 (nor modified UTF-7)",
                client.peer(),
                e.name.escape_ascii()
            );
            continue;
        };
        let special = e.attributes.iter().find_map(|a| match a.as_str() {
            "\\sent" => Some("sent"),
            "\\drafts" => Some("drafts"),
            "\\trash" => Some("trash"),
            "\\junk" => Some("junk"),
            "\\archive" => Some("archive"),
            _ => None,
        });
        let name = if wire.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            utf7::decode_lossy(&wire)
        };
        if let Some(st) = e.status {
            statuses.insert(wire.clone(), st);
        }
        found.push(Discovered {
            imap_name: wire,
            name,
            delimiter: e.delimiter,
            special,
        });
    }
    Ok((found, statuses))
}
