//! A small blocking IMAP client for the engine's needs: read-only sync
//! (LIST/STATUS, EXAMINE, UID FETCH/SEARCH with CONDSTORE/QRESYNC) and APPEND.
//!
//! Responses are parsed by our own parser ([`parse`]) one at a time as they
//! arrive, so a FETCH of a batch never holds more than one message beyond
//! what the caller keeps. Every socket operation is bounded by the I/O timeout, and a server
//! that trickles bytes to dodge it is cut off too. The client never logs
//! what it sends: the LOGIN line carries the password.

mod client;
mod error;
mod login;
/// Public for the property tests (`tests/properties.rs`); the engine itself
/// reaches it only through [`Client`].
pub mod parse;
pub mod utf7;

pub use client::{Capabilities, Client, Done, Fetched, ListEntry, MailboxStatus, Part};
pub use error::Error;
pub use login::login;
pub use parse::Status;

/// Formats UIDs (any order, no duplicates needed) as a compact UID set: `1:5,7,9:12`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[3, 1, 2, 7, 9, 10, 11, 9]), "1:3,7,9:11");
        assert_eq!(
            uid_set(&[u32::MAX, u32::MAX - 1]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
}
