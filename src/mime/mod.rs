//! What a stored message holds for the web application (SPEC §14): its
//! attachments — one row each, numbered as the IMAP server numbers the part,
//! with its decoded name, type, size and SHA-256 — and its readable text for
//! the search index. Pure: bytes in, rows out. Never fails and never panics
//! on any bytes (a panic in a dependency is caught and costs the message its
//! rows, not the worker its folder).
//!
//! Which parts are attachments ([`is_body`] is the rule): every leaf with a
//! file name or `Content-Disposition: attachment` (or a disposition type
//! RFC 2183 says to treat so), and every leaf that is not readable body
//! text — an inline image, a calendar invitation, a PDF without a name, a
//! signature. Readable body is text/plain or text/html without a name, so
//! an HTML alternative beside a text/plain body is body too. An attached
//! `message/rfc822` is one row (its own parts are its business).
//!
//! An attachment's `size` and `sha256` are of its transfer-decoded bytes
//! (base64, quoted-printable; no charset conversion, line ends as they
//! came), decoded from the raw part and hashed as they are decoded, never
//! held whole: a message of 50 MB costs a few kilobytes more here.
//!
//! - `tree`: the parts and their IMAP section numbers.
//! - `header`: a part's MIME fields, file names in every form.
//! - `decode`: base64 and quoted-printable, streaming.
//! - `text`: the readable text, at most 1 MiB, and its folding for the index.
//!
//! Why not mail-parser's part tree (it still reads the charsets, the
//! RFC 2047 words and the HTML here): it finds a boundary anywhere in a
//! line rather than at its start and ignores the enclosing multiparts'
//! boundaries, so its parts are not always the server's `BODY[section]`;
//! it decodes every part into memory; and it decodes each RFC 2231 piece of
//! a name on its own.

mod decode;
mod header;
mod text;
mod tree;

pub use header::Disposition;
pub use text::{fold, FOLDS, TEXT_LIMIT};

use decode::Encoding;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tree::{Part, Shape};

/// One attachment of a message: a row of `email_attachments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The IMAP section (`BODY[part]`): `1` for a message's only body, `2`, `2.1`.
    pub part: String,
    /// The file name, decoded to UTF-8.
    pub filename: Option<String>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// `attachment`, `inline`, or None (no Content-Disposition, or another type).
    pub disposition: Option<&'static str>,
    /// Content-ID without angle brackets.
    pub content_id: Option<String>,
    /// Bytes after transfer decoding.
    pub size: u64,
    /// SHA-256 of those bytes, lowercase hex.
    pub sha256: String,
}

/// Everything a message adds to the store besides its row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub attachments: Vec<Attachment>,
    /// The readable text (at most [`TEXT_LIMIT`] bytes).
    pub text: String,
    /// `text` [`fold`]ed, for SQLite's search index, if made already
    /// ([`Content::folded`]).
    pub folded: Folded,
}

/// The folded text of a [`Content`], made (or not yet) on the thread that
/// parses rather than on the writer every worker waits for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Folded {
    #[default]
    NotMade,
    /// Folding leaves the text as it is.
    Same,
    Text(String),
}

impl Content {
    /// This content with its text folded too ([`Content::indexed`]).
    pub fn folded(mut self) -> Content {
        self.folded = match fold(&self.text) {
            Cow::Owned(f) => Folded::Text(f),
            Cow::Borrowed(_) => Folded::Same,
        };
        self
    }

    /// The text as SQLite's search index takes it: [`fold`]ed (here, unless
    /// made already).
    pub fn indexed(&self) -> Cow<'_, str> {
        match &self.folded {
            Folded::Text(f) => Cow::Borrowed(f),
            Folded::Same => Cow::Borrowed(&self.text),
            Folded::NotMade => fold(&self.text),
        }
    }
}

/// The attachments and the readable text of a raw message.
pub fn content(raw: &[u8]) -> Content {
    catch_unwind(|| {
        let parts = tree::parts(raw);
        Content {
            attachments: parts
                .iter()
                .filter(|p| is_attachment(p))
                .map(|p| attachment(raw, p))
                .collect(),
            text: text::readable(raw, &parts),
            folded: Folded::NotMade,
        }
    })
    .unwrap_or_default()
}

/// Decodes the attachment at section `part` of `raw` into `sink` (which
/// returns false to stop). False when the message has no such attachment.
pub fn decode_attachment(raw: &[u8], part: &str, sink: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        let parts = tree::parts(raw);
        let Some(found) = parts
            .iter()
            .find(|p| is_attachment(p) && section(p) == part)
        else {
            return false;
        };
        decode::decode(encoding(found), &raw[found.body.clone()], sink);
        true
    }))
    .unwrap_or(false)
}

/// Whether `part` is readable body text rather than an attachment: a
/// text/plain or text/html leaf without a file name, not marked
/// `attachment` (nor with a disposition type RFC 2183 says to treat so).
pub fn is_body(part: &Part) -> bool {
    let f = &part.fields;
    matches!(part.content_type.as_str(), "text/plain" | "text/html")
        && f.filename.is_none()
        && matches!(f.disposition, None | Some(Disposition::Inline))
}

fn is_attachment(part: &Part) -> bool {
    match part.shape {
        Shape::Multipart(_) => false,
        Shape::Opaque => true,
        Shape::Leaf => !is_body(part),
    }
}

/// The section of a listed part: the message's only body is `1`.
fn section(part: &Part) -> String {
    if part.section.is_empty() {
        "1".to_string()
    } else {
        part.section_text()
    }
}

fn encoding(part: &Part) -> Encoding {
    if part.fields.encoding_unknown {
        Encoding::Identity
    } else {
        part.fields.encoding
    }
}

fn attachment(raw: &[u8], part: &Part) -> Attachment {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    decode::decode(encoding(part), &raw[part.body.clone()], &mut |piece| {
        hasher.update(piece);
        size += piece.len() as u64;
        true
    });
    let f = &part.fields;
    Attachment {
        part: section(part),
        filename: f.filename.clone(),
        content_type: part.content_type.clone(),
        disposition: f.disposition.and_then(Disposition::as_column),
        content_id: f.content_id.clone(),
        size,
        sha256: hex(&hasher.finalize()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    /// (part, filename, type, disposition, size) of each attachment.
    fn rows(raw: &[u8]) -> Vec<(String, Option<String>, String, Option<&'static str>, u64)> {
        content(raw)
            .attachments
            .into_iter()
            .map(|a| (a.part, a.filename, a.content_type, a.disposition, a.size))
            .collect()
    }

    fn r(
        part: &str,
        name: Option<&str>,
        ctype: &str,
        disp: Option<&'static str>,
        size: u64,
    ) -> (String, Option<String>, String, Option<&'static str>, u64) {
        (part.into(), name.map(Into::into), ctype.into(), disp, size)
    }

    #[test]
    fn the_indexed_text_is_folded_whether_made_ahead_or_not() {
        let raw = b"Subject: x\r\n\r\nZa\xc5\xbc\xc3\xb3\xc5\x82\xc4\x87 \xc5\x81\xc3\xb3d\xc5\xba Stra\xc3\x9fe\r\n";
        let plain = content(raw);
        assert_eq!(plain.text.trim_end(), "Zażółć Łódź Straße");
        assert_eq!(plain.folded, Folded::NotMade);
        assert_eq!(plain.indexed().trim_end(), "Zażólć Lódź Strasse");
        let ahead = content(raw).folded();
        assert!(matches!(&ahead.folded, Folded::Text(f) if f.trim_end() == "Zażólć Lódź Strasse"));
        assert_eq!(ahead.indexed(), plain.indexed());
        assert!(
            matches!(ahead.indexed(), Cow::Borrowed(_)),
            "made ahead: no folding now"
        );
        let nothing = content(b"Subject: x\r\n\r\nZa\xc5\xbc\xc3\xb3 \xc4\x87 plain\r\n").folded();
        assert_eq!(nothing.folded, Folded::Same, "nothing to fold: no copy");
        assert_eq!(nothing.indexed(), nothing.text);
    }

    #[test]
    fn which_parts_are_attachments() {
        type Row = (String, Option<String>, String, Option<&'static str>, u64);
        let cases: Vec<(&str, &str, Vec<Row>)> = vec![
            ("plain_message", "Subject: x\n\nhello\n", vec![]),
            ("html_message", "Content-Type: text/html\n\n<b>x</b>\n", vec![]),
            (
                "single_part_pdf_is_part_1",
                "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERg==\n",
                vec![r("1", None, "application/pdf", None, 4)],
            ),
            (
                "single_text_part_marked_attachment",
                "Content-Disposition: attachment; filename=a.txt\n\nabc\n",
                vec![r("1", Some("a.txt"), "text/plain", Some("attachment"), 5)],
            ),
            (
                "alternative_html_is_body_inline_image_and_named_text_are_not",
                "Content-Type: multipart/mixed; boundary=m\n\n--m\n\
                 Content-Type: multipart/alternative; boundary=a\n\n--a\n\nplain\n--a\n\
                 Content-Type: text/html\n\n<b>x</b>\n--a--\n--m\n\
                 Content-Type: image/png\nContent-Disposition: inline\nContent-ID: <img1@x>\n\
                 Content-Transfer-Encoding: base64\n\naGVsbG8=\n--m\n\
                 Content-Type: text/plain; name=notes.txt\n\nnotes\n--m\n\
                 Content-Type: text/calendar; method=REQUEST\n\nBEGIN:VCALENDAR\n--m\n\
                 Content-Type: application/x-weird\nContent-Disposition: form-data\n\nzz\n--m--\n",
                vec![
                    r("2", None, "image/png", Some("inline"), 5),
                    r("3", Some("notes.txt"), "text/plain", None, 5),
                    r("4", None, "text/calendar", None, 15),
                    r("5", None, "application/x-weird", None, 2),
                ],
            ),
            (
                "attached_message_is_one_row",
                "Content-Type: multipart/mixed; boundary=m\n\n--m\n\nsee attached\n--m\n\
                 Content-Type: message/rfc822\n\nSubject: in\nContent-Type: multipart/mixed; boundary=i\n\n\
                 --i\n\ninner\n--i\nContent-Type: application/pdf; name=in.pdf\n\n%PDF\n--i--\n--m--\n",
                vec![r("2", None, "message/rfc822", None, 134)],
            ),
            (
                "text_with_attachment_disposition_and_html_with_name",
                "Content-Type: multipart/mixed; boundary=m\n\n--m\n\nbody\n--m\n\
                 Content-Disposition: attachment\n\nplain attachment\n--m\n\
                 Content-Type: text/html; name=\"page.html\"\n\n<p>\n--m--\n",
                vec![
                    r("2", None, "text/plain", Some("attachment"), 16),
                    r("3", Some("page.html"), "text/html", None, 3),
                ],
            ),
        ];
        for (case, text, want) in cases {
            assert_eq!(rows(&crlf(text)), want, "{case}");
        }
    }

    #[test]
    fn sizes_and_hashes_are_of_the_transfer_decoded_bytes() {
        let raw = crlf(
            "Content-Type: multipart/mixed; boundary=m\n\n--m\n\nbody\n--m\n\
             Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n\
             aGVs\nbG8gd29y\nbGQ=\n--m\n\
             Content-Type: text/plain; charset=iso-8859-2; name=a.txt\n\
             Content-Transfer-Encoding: quoted-printable\n\nZa=BF=F3\nline=\n two\n--m\n\
             Content-Type: text/plain; charset=iso-8859-2; name=b.txt\n\
             Content-Transfer-Encoding: 8bit\n\nraw\nlines\n--m--\n",
        );
        let got = content(&raw).attachments;
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].size, got[0].sha256.clone()),
            (11, sha(b"hello world"))
        );
        // No charset conversion: the ISO-8859-2 bytes as sent; CRLF kept.
        let qp = b"Za\xbf\xf3\r\nline two";
        assert_eq!(
            (got[1].size, got[1].sha256.clone()),
            (qp.len() as u64, sha(qp))
        );
        let raw8 = b"raw\r\nlines";
        assert_eq!((got[2].size, got[2].sha256.clone()), (10, sha(raw8)));

        let mut bytes = Vec::new();
        assert!(decode_attachment(&raw, "2", &mut |p| {
            bytes.extend_from_slice(p);
            true
        }));
        assert_eq!(bytes, b"hello world");
        assert!(
            !decode_attachment(&raw, "1", &mut |_| true),
            "part 1 is body"
        );
        assert!(!decode_attachment(&raw, "9", &mut |_| true));
    }

    #[test]
    fn rows_are_deterministic_and_hostile_input_never_panics() {
        let deep: Vec<u8> = {
            let mut raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n".to_vec();
            for i in 1..500 {
                raw.extend(
                    format!(
                        "--b{}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n",
                        i - 1
                    )
                    .bytes(),
                );
            }
            raw.extend(b"--b499\r\nContent-Type: application/pdf; name=deep.pdf\r\n\r\nPDF\r\n");
            raw
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            (
                "no_header_end",
                b"Content-Type: multipart/mixed; boundary=b".to_vec(),
            ),
            (
                "bad_base64",
                crlf("Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n!!*&^\n"),
            ),
            ("binary_noise", (0..=255u8).cycle().take(5000).collect()),
            (
                "boundaries_only",
                b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n----\r\n".to_vec(),
            ),
            ("deep", deep.clone()),
        ];
        for (case, raw) in &cases {
            let a = content(raw);
            let b = content(raw);
            assert_eq!(a, b, "{case}");
            for end in (0..raw.len()).step_by(raw.len() / 200 + 1) {
                let _ = content(&raw[..end]);
            }
        }
        let deep_rows = content(&deep).attachments;
        assert_eq!(deep_rows.len(), 1);
        assert_eq!(deep_rows[0].filename.as_deref(), Some("deep.pdf"));
        assert_eq!(deep_rows[0].part.split('.').count(), 500);
    }
}
