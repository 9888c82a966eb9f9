//! The readable text of a message, for the search index (SPEC §14): its
//! text/plain parts, or its HTML turned into text where a part offers no
//! plain text; transfer-decoded and converted to UTF-8; at most
//! [`TEXT_LIMIT`] bytes.
//!
//! Within a `multipart/alternative` one version is read: its text/plain
//! part when it has one, else its richest (last) readable version, e.g. the
//! HTML inside a `multipart/related`. Everything else that is body (see
//! [`super::is_body`]) is read in order, parts separated by a line break.
//! Attachments and attached messages are not part of the text. A multipart
//! with no parts (its boundary never came) reads as the text it holds.

use super::decode::{self, Encoding};
use super::header::{decode_charset, to_text};
use super::tree::{Part, Shape};
use std::borrow::Cow;

/// The most text kept for one message, in bytes of UTF-8.
pub const TEXT_LIMIT: usize = 1 << 20;

/// HTML is read up to this many times the text still wanted (markup
/// shrinks to text), so a huge HTML part is not decoded whole.
const HTML_FACTOR: usize = 4;

/// What SQLite's `unicode61` tokenizer does not fold, folded (SPEC §14):
/// in the search index's text ([`super::Content::folded`], and the
/// triggers' `fold_sql!` in `store::content`) and in a query
/// (`store::search`).
pub const FOLDS: &[(char, &str)] = &[
    ('ł', "l"),
    ('Ł', "L"),
    ('đ', "d"),
    ('Đ', "D"),
    ('ø', "o"),
    ('Ø', "O"),
    ('ß', "ss"),
    ('ẞ', "SS"),
];

/// `text` with [`FOLDS`] applied (borrowed when there is nothing to fold,
/// the common case: found by looking for the letters' first bytes).
pub fn fold(text: &str) -> Cow<'_, str> {
    // All but ẞ start with byte C3, C4 or C5: found at memchr speed, and
    // most such letters (ż, ó, ś, ...) are left as they are.
    let mut out = String::new();
    let mut copied = 0;
    for i in memchr::memchr3_iter(0xC3, 0xC4, 0xC5, text.as_bytes()) {
        let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
            continue;
        };
        if let Some((_, to)) = FOLDS.iter().find(|(from, _)| *from == c) {
            out.push_str(&text[copied..i]);
            out.push_str(to);
            copied = i + c.len_utf8();
        }
    }
    let folded = if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    };
    if folded.contains('ẞ') {
        Cow::Owned(folded.replace('ẞ', "SS"))
    } else {
        folded
    }
}

/// The readable text of the message whose parts are `parts` (from `raw`).
pub fn readable(raw: &[u8], parts: &[Part]) -> String {
    let mut out = String::new();
    let mut todo: Vec<usize> = if parts.is_empty() { vec![] } else { vec![0] };
    while let Some(i) = todo.pop() {
        if out.len() >= TEXT_LIMIT {
            break;
        }
        let part = &parts[i];
        match &part.shape {
            Shape::Multipart(children) if children.is_empty() => {
                add(&mut out, raw, part, false);
            }
            Shape::Multipart(children) if part.content_type == "multipart/alternative" => {
                todo.extend(choose(parts, children));
            }
            Shape::Multipart(children) => todo.extend(children.iter().rev()),
            Shape::Leaf if super::is_body(part) => {
                add(&mut out, raw, part, part.content_type == "text/html");
            }
            _ => {}
        }
    }
    out
}

/// The version of an alternative to read: the first plain text part, else
/// the last version that has readable text (HTML, a multipart).
fn choose(parts: &[Part], children: &[usize]) -> Option<usize> {
    let readable = |&&i: &&usize| {
        let p = &parts[i];
        matches!(p.shape, Shape::Multipart(_)) || (p.shape == Shape::Leaf && super::is_body(p))
    };
    children
        .iter()
        .filter(readable)
        .find(|&&i| parts[i].shape == Shape::Leaf && parts[i].content_type == "text/plain")
        .or_else(|| children.iter().rfind(readable))
        .copied()
}

/// Appends the text of `part` (HTML turned into text when `html`).
fn add(out: &mut String, raw: &[u8], part: &Part, html: bool) {
    let wanted = TEXT_LIMIT.saturating_sub(out.len());
    let cap = if html {
        wanted.saturating_mul(HTML_FACTOR)
    } else {
        wanted
    };
    let mut bytes = Vec::new();
    let encoding = if part.fields.encoding_unknown {
        Encoding::Identity
    } else {
        part.fields.encoding
    };
    decode::decode(encoding, &raw[part.body.clone()], &mut |piece| {
        let take = piece.len().min(cap - bytes.len());
        bytes.extend_from_slice(&piece[..take]);
        bytes.len() < cap
    });
    let mut text = match &part.fields.charset {
        Some(charset) => decode_charset(charset.as_bytes(), &bytes),
        None => to_text(&bytes).into_owned(),
    };
    if html {
        text = mail_parser::decoders::html::html_to_text(&text);
    }
    let text = text.trim_matches(|c: char| c.is_whitespace());
    if text.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    let room = TEXT_LIMIT.saturating_sub(out.len());
    out.push_str(&text[..floor_char_boundary(text, room)]);
}

/// The largest char boundary of `s` at or below `at`.
fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::super::tree::parts;
    use super::*;

    fn text(raw: &str) -> String {
        let raw = raw.replace('\n', "\r\n").into_bytes();
        readable(&raw, &parts(&raw))
    }

    #[test]
    fn readable_text_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("single_plain", "Subject: x\n\nZażółć gęślą\n", "Zażółć gęślą"),
            (
                "alternative_prefers_plain",
                "Content-Type: multipart/alternative; boundary=a\n\n--a\n\
                 Content-Type: text/plain\n\nplain words\n--a\nContent-Type: text/html\n\n\
                 <p>html words</p>\n--a--\n",
                "plain words",
            ),
            (
                "html_only_turned_into_text",
                "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head>\
                 <body><p>Faktura &oacute;</p><script>x()</script></body></html>\n",
                "Faktura ó",
            ),
            (
                "alternative_with_related_html",
                "Content-Type: multipart/alternative; boundary=a\n\n--a\n\
                 Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n\
                 <b>rich</b>\n--r\nContent-Type: image/png\nContent-ID: <i>\n\npng\n--r--\n\
                 --a\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--a--\n",
                "rich",
            ),
            (
                "mixed_reads_every_body_part_not_attachments",
                "Content-Type: multipart/mixed; boundary=m\n\n--m\n\nfirst\n--m\n\
                 Content-Type: text/plain; name=notes.txt\n\nnot body\n--m\n\
                 Content-Type: message/rfc822\n\nSubject: in\n\nattached message\n--m\n\nsecond\n--m--\n",
                "first\nsecond",
            ),
            (
                "quoted_printable_iso_8859_2",
                "Content-Type: text/plain; charset=iso-8859-2\n\
                 Content-Transfer-Encoding: quoted-printable\n\nZa=BF=F3=B3=E6 g=EA=B6l=B1\n",
                "Zażółć gęślą",
            ),
            (
                "base64_utf8",
                "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
                 WmHFvMOzxYLEhw==\n",
                "Zażółć",
            ),
            (
                "multipart_whose_boundary_never_comes",
                "Content-Type: multipart/mixed; boundary=zz\n\nlost text\n",
                "lost text",
            ),
            ("attachment_only", "Content-Type: application/pdf\n\n%PDF\n", ""),
        ];
        for (case, raw, want) in cases {
            assert_eq!(text(raw), *want, "{case}");
        }
    }

    #[test]
    fn raw_8bit_without_charset_is_guessed() {
        let raw = b"Subject: x\r\n\r\nZa\xbf\xf3\xb3\xe6\r\n";
        assert_eq!(readable(raw, &parts(raw)), "Zażółć");
    }

    #[test]
    fn text_stops_at_the_limit_on_a_char_boundary() {
        let body = "ż".repeat(TEXT_LIMIT);
        let raw = format!("Content-Type: text/plain; charset=utf-8\n\n{body}\n");
        let got = text(&raw);
        assert!(
            got.len() <= TEXT_LIMIT && got.len() > TEXT_LIMIT - 4,
            "{}",
            got.len()
        );
        assert!(got.chars().all(|c| c == 'ż'));
        assert_eq!(floor_char_boundary("aż", 2), 1);
    }
}
