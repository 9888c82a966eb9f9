//! The MIME fields of one part's header (RFC 2045, 2183): its type, its
//! transfer encoding, its disposition, its Content-ID and its file name.
//!
//! File names come in every form mailers have produced: RFC 2231 (`*`
//! parameters with a charset, percent-encoding and continuations, decoded
//! as one byte string so a character split across two pieces survives),
//! RFC 2047 encoded words where they do not belong (inside a quoted string,
//! across continuations), values left unquoted with spaces in them, and raw
//! 8-bit bytes (UTF-8 kept, anything else read as Windows-1250 or
//! ISO-8859-2 like the summary's header fields: see `message`). mail-parser
//! decodes the charsets; the parameter grammar is ours, because its parser
//! decodes every RFC 2231 piece on its own (a character split across two
//! pieces becomes U+FFFD, a piece after the first loses its charset).

use super::decode::{self, Encoding};
use crate::message::{clean, find_encoded_word, legacy_decoder, split_fields};
use std::borrow::Cow;

/// The MIME fields of a part, as far as they can be read. Absent or
/// unreadable fields are `None` (the defaults are the caller's: they depend
/// on the parent, e.g. `message/rfc822` in a `multipart/digest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// `type/subtype`, lowercase, when Content-Type has both.
    pub content_type: Option<String>,
    /// The multipart boundary, as its bytes (lines are compared bytewise).
    pub boundary: Option<Vec<u8>>,
    /// The charset of a text part, lowercase.
    pub charset: Option<String>,
    /// The file name: Content-Disposition's `filename`, else Content-Type's `name`.
    pub filename: Option<String>,
    /// Content-Disposition's type.
    pub disposition: Option<Disposition>,
    /// Content-ID without angle brackets.
    pub content_id: Option<String>,
    /// Content-Transfer-Encoding.
    pub encoding: Encoding,
    /// The Content-Transfer-Encoding named one we do not decode (x-uuencode, ...).
    pub encoding_unknown: bool,
}

/// Content-Disposition's type (RFC 2183).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    Attachment,
    /// Any other type: RFC 2183 says to treat it as `attachment`.
    Other,
}

impl Disposition {
    /// The column's value: `attachment`, `inline`, or NULL for another type.
    pub fn as_column(self) -> Option<&'static str> {
        match self {
            Disposition::Inline => Some("inline"),
            Disposition::Attachment => Some("attachment"),
            Disposition::Other => None,
        }
    }
}

impl Fields {
    /// Reads the MIME fields of a header block (the first of each field counts).
    pub fn parse(header: &[u8]) -> Fields {
        let mut fields = Fields::default();
        let (mut seen_type, mut seen_disposition, mut seen_encoding, mut seen_id) =
            (false, false, false, false);
        let mut name_param: Option<String> = None;
        for field in split_fields(header) {
            let Some(colon) = field.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = trim(&field[..colon]);
            let value = unfold(&field[colon + 1..]);
            if name.eq_ignore_ascii_case(b"content-type") && !seen_type {
                seen_type = true;
                let (head, params) = split_value(&value);
                fields.content_type = media_type(&head);
                fields.boundary = param_raw(&params, "boundary").map(|b| trim_end(&b).to_vec());
                fields.charset = param_raw(&params, "charset")
                    .map(|c| first_token(&c).to_ascii_lowercase())
                    .and_then(|c| String::from_utf8(c).ok())
                    .filter(|c| !c.is_empty());
                name_param = extended_param(&params, "name");
            } else if name.eq_ignore_ascii_case(b"content-disposition") && !seen_disposition {
                seen_disposition = true;
                let (head, params) = split_value(&value);
                let kind = first_token(&head).to_ascii_lowercase();
                fields.disposition = match kind.as_slice() {
                    b"" => None,
                    b"inline" => Some(Disposition::Inline),
                    b"attachment" => Some(Disposition::Attachment),
                    _ => Some(Disposition::Other),
                };
                fields.filename = extended_param(&params, "filename");
            } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") && !seen_encoding {
                seen_encoding = true;
                let token = first_token(&value).to_ascii_lowercase();
                (fields.encoding, fields.encoding_unknown) = match token.as_slice() {
                    b"base64" => (Encoding::Base64, false),
                    b"quoted-printable" => (Encoding::QuotedPrintable, false),
                    b"" | b"7bit" | b"8bit" | b"binary" => (Encoding::Identity, false),
                    _ => (Encoding::Identity, true),
                };
            } else if name.eq_ignore_ascii_case(b"content-id") && !seen_id {
                seen_id = true;
                let text = to_text(trim(&value));
                fields.content_id =
                    clean(text.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace()));
            }
        }
        if fields.filename.is_none() {
            fields.filename = name_param;
        }
        fields
    }
}

/// The bytes of a field value with its line breaks removed (RFC 5322 unfolding).
fn unfold(v: &[u8]) -> Vec<u8> {
    v.iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect()
}

fn trim(b: &[u8]) -> &[u8] {
    trim_end(trim_start(b))
}

fn trim_start(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    &b[start..]
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &b[..end]
}

/// The first word of a value: up to whitespace, `;` or a comment.
fn first_token(v: &[u8]) -> Vec<u8> {
    let v = trim_start(v);
    let end = v
        .iter()
        .position(|&c| c.is_ascii_whitespace() || c == b';' || c == b'(')
        .unwrap_or(v.len());
    let token = &v[..end];
    // A quoted token (`charset="utf-8"`) is the same token.
    token
        .strip_prefix(b"\"")
        .map(|t| t.strip_suffix(b"\"").unwrap_or(t))
        .unwrap_or(token)
        .to_vec()
}

/// `type/subtype`, lowercase, or None when the value is not one (RFC 2045:
/// an invalid Content-Type counts as absent).
fn media_type(head: &[u8]) -> Option<String> {
    let text: Vec<u8> = strip_comments(head)
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let text = String::from_utf8(text).ok()?.to_ascii_lowercase();
    let (kind, sub) = text.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    (token(kind) && token(sub)).then(|| format!("{kind}/{sub}"))
}

/// `v` without RFC 5322 comments (nested parentheses) outside quoted strings.
fn strip_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for &b in v {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => escaped = true,
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    out
}

/// One `name=value` of a field, the name lowercase, the value unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Param {
    name: String,
    value: Vec<u8>,
}

/// Splits a field value into what comes before the first `;` and its
/// parameters. Lenient: an unterminated quote runs to the end, an unquoted
/// value runs to the next `;` (names with spaces left unquoted), a
/// parameter without `=` is skipped.
fn split_value(v: &[u8]) -> (Vec<u8>, Vec<Param>) {
    let head_end = find_unquoted(v, b';').unwrap_or(v.len());
    let head = v[..head_end].to_vec();
    let mut params = Vec::new();
    let mut i = head_end;
    while i < v.len() {
        // at a ';' or between parameters
        while i < v.len() && (v[i] == b';' || v[i].is_ascii_whitespace()) {
            i += 1;
        }
        let name_start = i;
        while i < v.len() && v[i] != b'=' && v[i] != b';' {
            i += 1;
        }
        if i >= v.len() || v[i] == b';' {
            continue; // no value
        }
        let name = String::from_utf8_lossy(trim(&v[name_start..i])).to_ascii_lowercase();
        i += 1; // '='
        while i < v.len() && (v[i] == b' ' || v[i] == b'\t') {
            i += 1;
        }
        let mut value = Vec::new();
        if v.get(i) == Some(&b'"') {
            i += 1;
            while i < v.len() && v[i] != b'"' {
                // Only \" and \\ are escapes: a Windows path keeps its backslashes.
                if v[i] == b'\\' && matches!(v.get(i + 1), Some(b'"' | b'\\')) {
                    i += 1;
                }
                value.push(v[i]);
                i += 1;
            }
            // Whatever follows the closing quote up to the next ';' is dropped.
            i = v[i.min(v.len())..]
                .iter()
                .position(|&b| b == b';')
                .map_or(v.len(), |p| i + p);
        } else {
            let end = v[i..]
                .iter()
                .position(|&b| b == b';')
                .map_or(v.len(), |p| i + p);
            value.extend_from_slice(trim(&v[i..end]));
            i = end;
        }
        if !name.is_empty() {
            params.push(Param { name, value });
        }
    }
    (head, params)
}

/// The position of `needle` in `v` outside quoted strings.
fn find_unquoted(v: &[u8], needle: u8) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in v.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' && quoted {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == needle && !quoted {
            return Some(i);
        }
    }
    None
}

/// The value of the plain parameter `name` (the first one), as bytes.
fn param_raw(params: &[Param], name: &str) -> Option<Vec<u8>> {
    params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.clone())
}

/// The parameter `name` decoded to text, in whichever form it came:
/// RFC 2231 pieces (`name*0*`, `name*1`, ...) or extended value (`name*`)
/// before the plain `name`, which may hold RFC 2047 encoded words.
fn extended_param(params: &[Param], name: &str) -> Option<String> {
    let mut pieces: Vec<(u32, bool, &[u8])> = Vec::new();
    let mut extended: Option<&[u8]> = None;
    let mut plain: Option<&[u8]> = None;
    for p in params {
        let Some(rest) = p.name.strip_prefix(name) else {
            continue;
        };
        match rest {
            "" => {
                plain.get_or_insert(&p.value);
            }
            "*" => {
                extended.get_or_insert(&p.value);
            }
            _ => {
                let Some(rest) = rest.strip_prefix('*') else {
                    continue;
                };
                let (index, encoded) = match rest.strip_suffix('*') {
                    Some(i) => (i, true),
                    None => (rest, false),
                };
                if let Ok(n) = index.parse::<u32>() {
                    if !pieces.iter().any(|(m, _, _)| *m == n) {
                        pieces.push((n, encoded, &p.value));
                    }
                }
            }
        }
    }
    let text = if !pieces.is_empty() {
        pieces.sort_by_key(|(n, _, _)| *n);
        let mut charset: Option<Vec<u8>> = None;
        let mut bytes = Vec::new();
        for (i, (_, encoded, value)) in pieces.iter().enumerate() {
            let mut value: &[u8] = value;
            if *encoded && i == 0 {
                if let Some((cs, rest)) = split_charset(value) {
                    charset = Some(cs.to_vec());
                    value = rest;
                }
            }
            if *encoded {
                bytes.extend(percent_decode(value));
            } else {
                bytes.extend_from_slice(value);
            }
        }
        let text = match &charset {
            Some(cs) => decode_charset(cs, &bytes),
            None => to_text(&bytes).into_owned(),
        };
        // Encoded words cut into pieces (a common broken form) join here.
        decode_words(&text)
    } else if let Some(value) = extended {
        match split_charset(value) {
            Some((cs, rest)) => decode_charset(cs, &percent_decode(rest)),
            None => to_text(&percent_decode(value)).into_owned(),
        }
    } else {
        decode_words(&to_text(plain?))
    };
    clean(&text)
}

/// `charset'language'rest` of an RFC 2231 value: (charset, rest).
fn split_charset(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let q1 = v.iter().position(|&b| b == b'\'')?;
    let q2 = q1 + 1 + v[q1 + 1..].iter().position(|&b| b == b'\'')?;
    Some((&v[..q1], &v[q2 + 1..]))
}

/// `%XX` to bytes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            if let (Some(h), Some(l)) = (
                v.get(i + 1).and_then(|&c| hex(c)),
                v.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

pub(super) fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Bytes as text: UTF-8 as it is, anything else read as Windows-1250 or
/// ISO-8859-2 (the guess the summary makes for raw 8-bit header fields).
pub(super) fn to_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(legacy_decoder(&[bytes])(bytes)),
    }
}

/// `bytes` in the named charset, as text. UTF-8 that is not valid keeps
/// what is valid; an unknown charset reads as [`to_text`] does.
pub(super) fn decode_charset(charset: &[u8], bytes: &[u8]) -> String {
    let label = trim(charset);
    if label.eq_ignore_ascii_case(b"utf-8") || label.eq_ignore_ascii_case(b"utf8") {
        return match std::str::from_utf8(bytes) {
            Ok(s) => s.to_string(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        };
    }
    match mail_parser::decoders::charsets::map::charset_decoder(label) {
        Some(decode) => decode(bytes),
        None => to_text(bytes).into_owned(),
    }
}

/// Decodes the RFC 2047 encoded words in `text`. White space between two
/// adjacent encoded words goes (RFC 2047 §6.2), and adjacent words of one
/// charset are decoded as one byte string, so a character split across
/// two words (a common mailer bug) survives. Everything else stays.
pub(super) fn decode_words(text: &str) -> String {
    let bytes = text.as_bytes();
    if find_encoded_word(bytes).is_none() {
        return text.to_string();
    }
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out = String::with_capacity(text.len());
    // The run of adjacent decoded words not yet converted: (charset, bytes).
    let mut run: Option<(Vec<u8>, Vec<u8>)> = None;
    let flush = |run: &mut Option<(Vec<u8>, Vec<u8>)>, out: &mut String| {
        if let Some((charset, data)) = run.take() {
            out.push_str(&decode_charset(&charset, &data));
        }
    };
    let mut rest = bytes;
    while let Some((start, end)) = find_encoded_word(rest) {
        let (between, word) = (&rest[..start], &rest[start..end]);
        match word_bytes(word) {
            Some((charset, data)) => {
                let adjacent = run.is_some() && between.iter().all(|b| b.is_ascii_whitespace());
                match &mut run {
                    Some((c, d)) if adjacent && c.eq_ignore_ascii_case(&charset) => {
                        d.extend_from_slice(&data)
                    }
                    _ => {
                        flush(&mut run, &mut out);
                        if !adjacent {
                            out.push_str(&lossy(between));
                        }
                        run = Some((charset, data));
                    }
                }
            }
            None => {
                flush(&mut run, &mut out);
                out.push_str(&lossy(between));
                out.push_str(&lossy(word));
            }
        }
        rest = &rest[end..];
    }
    flush(&mut run, &mut out);
    out.push_str(&lossy(rest));
    out
}

/// One `=?charset?B|Q?text?=`: its charset and its decoded bytes, or None
/// when it is not one.
fn word_bytes(word: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let inner = word.strip_prefix(b"=?")?.strip_suffix(b"?=")?;
    let q1 = inner.iter().position(|&b| b == b'?')?;
    let charset = &inner[..q1];
    // RFC 2231 §5: `charset*language`.
    let charset = charset.split(|&b| b == b'*').next().unwrap_or(charset);
    let enc = *inner.get(q1 + 1)?;
    if inner.get(q1 + 2) != Some(&b'?') {
        return None;
    }
    let payload = &inner[q1 + 3..];
    let mut bytes = Vec::with_capacity(payload.len());
    match enc {
        b'b' | b'B' => decode::decode(Encoding::Base64, payload, &mut |chunk| {
            bytes.extend_from_slice(chunk);
            true
        }),
        b'q' | b'Q' => {
            let mut i = 0;
            while i < payload.len() {
                match payload[i] {
                    b'_' => bytes.push(b' '),
                    b'=' => {
                        if let (Some(h), Some(l)) = (
                            payload.get(i + 1).and_then(|&c| hex(c)),
                            payload.get(i + 2).and_then(|&c| hex(c)),
                        ) {
                            bytes.push(h << 4 | l);
                            i += 3;
                            continue;
                        }
                        bytes.push(b'=');
                    }
                    c => bytes.push(c),
                }
                i += 1;
            }
        }
        _ => return None,
    }
    Some((charset.to_vec(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filename(header: &[u8]) -> Option<String> {
        Fields::parse(header).filename
    }

    #[test]
    fn file_names_decode() {
        type Case = (&'static str, &'static [u8], Option<&'static str>);
        let cases: &[Case] = &[
            (
                "quoted",
                b"Content-Disposition: attachment; filename=\"faktura 1.pdf\"\r\n",
                Some("faktura 1.pdf"),
            ),
            (
                "token",
                b"Content-Disposition: attachment; filename=faktura.pdf\r\n",
                Some("faktura.pdf"),
            ),
            (
                "unquoted_with_spaces",
                b"Content-Disposition: attachment; filename=Raport (1).pdf; size=3\r\n",
                Some("Raport (1).pdf"),
            ),
            (
                "name_of_content_type_when_no_filename",
                b"Content-Type: application/pdf; name=\"a.pdf\"\r\n",
                Some("a.pdf"),
            ),
            (
                "filename_before_name",
                b"Content-Type: application/pdf; name=\"a.pdf\"\r\n\
                  Content-Disposition: attachment; filename=\"b.pdf\"\r\n",
                Some("b.pdf"),
            ),
            (
                "rfc2231_utf8",
                b"Content-Disposition: attachment; filename*=UTF-8''Za%C5%BC%C3%B3%C5%82%C4%87.pdf\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "rfc2231_language",
                b"Content-Disposition: attachment; filename*=iso-8859-2'pl'%A3%F3d%BC.txt\r\n",
                Some("Łódź.txt"),
            ),
            (
                "rfc2231_continuations_split_inside_a_character",
                b"Content-Disposition: attachment;\r\n filename*0*=utf-8''%C5%BC%C3%B3%C5;\r\n filename*1*=%82%C4%87.pdf\r\n",
                Some("żółć.pdf"),
            ),
            (
                "rfc2231_continuations_keep_the_first_charset",
                b"Content-Disposition: attachment; filename*0*=iso-8859-2''%BF%F3; filename*1*=%B3%E6.pdf\r\n",
                Some("żółć.pdf"),
            ),
            (
                "rfc2231_continuations_out_of_order_mixed_encoding",
                b"Content-Disposition: attachment; filename*1=\" two.pdf\"; filename*0*=UTF-8''part%20one\r\n",
                Some("part one two.pdf"),
            ),
            (
                "rfc2231_plain_continuations",
                b"Content-Disposition: attachment; filename*0=\"long name \"; filename*1=\"part two.pdf\"\r\n",
                Some("long name part two.pdf"),
            ),
            (
                "rfc2231_preferred_over_plain",
                b"Content-Disposition: attachment; filename=\"fallback.pdf\"; filename*=UTF-8''na%20me.pdf\r\n",
                Some("na me.pdf"),
            ),
            (
                "rfc2231_bad_percent_kept",
                b"Content-Disposition: attachment; filename*=UTF-8''100%.pdf\r\n",
                Some("100%.pdf"),
            ),
            (
                "rfc2231_unknown_charset",
                b"Content-Disposition: attachment; filename*=x-nonsense''a%C5%BC.pdf\r\n",
                Some("aż.pdf"),
            ),
            (
                "rfc2047_in_quotes",
                b"Content-Disposition: attachment; filename=\"=?UTF-8?B?WmHFvMOzxYLEhy5wZGY=?=\"\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "rfc2047_unquoted",
                b"Content-Type: application/pdf; name==?UTF-8?B?WmHFvMOzxYLEhy5wZGY=?=\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "rfc2047_iso_8859_2_q",
                b"Content-Type: application/pdf; name=\"=?iso-8859-2?Q?=A3=F3d=BC.pdf?=\"\r\n",
                Some("Łódź.pdf"),
            ),
            (
                "rfc2047_windows_1250",
                b"Content-Disposition: attachment; filename=\"=?windows-1250?Q?Faktura_=B9.pdf?=\"\r\n",
                Some("Faktura ą.pdf"),
            ),
            (
                "rfc2047_adjacent_words_join",
                b"Content-Disposition: attachment; filename=\"=?UTF-8?Q?a?= =?UTF-8?Q?b?=.pdf\"\r\n",
                Some("ab.pdf"),
            ),
            (
                "rfc2047_split_across_continuations",
                b"Content-Disposition: attachment;\r\n filename*0=\"=?UTF-8?B?WmHFvMOz\";\r\n filename*1=\"xYLEhy5wZGY=?=\"\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "rfc2047_folded_value",
                b"Content-Disposition: attachment; filename=\"=?UTF-8?Q?Za=C5=BC?=\r\n =?UTF-8?Q?=C3=B3=C5=82=C4=87.pdf?=\"\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "raw_utf8",
                "Content-Disposition: attachment; filename=\"Zażółć.pdf\"\r\n".as_bytes(),
                Some("Zażółć.pdf"),
            ),
            (
                "raw_iso_8859_2",
                b"Content-Disposition: attachment; filename=\"Za\xbf\xf3\xb3\xe6.pdf\"\r\n",
                Some("Zażółć.pdf"),
            ),
            (
                "raw_windows_1250",
                b"Content-Disposition: attachment; filename=\"\x9cmieci \xb9.pdf\"\r\n",
                Some("śmieci ą.pdf"),
            ),
            (
                "escaped_quote",
                b"Content-Disposition: attachment; filename=\"a\\\"b.pdf\"\r\n",
                Some("a\"b.pdf"),
            ),
            (
                "windows_path_backslashes_kept",
                b"Content-Disposition: attachment; filename=\"C:\\Dokumenty\\a.pdf\"\r\n",
                Some("C:\\Dokumenty\\a.pdf"),
            ),
            (
                "unterminated_quote",
                b"Content-Disposition: attachment; filename=\"open.pdf\r\n",
                Some("open.pdf"),
            ),
            (
                "name_case_insensitive",
                b"CONTENT-DISPOSITION: Attachment; FileName=x.pdf\r\n",
                Some("x.pdf"),
            ),
            (
                "control_characters_become_spaces",
                b"Content-Disposition: attachment; filename=\"=?UTF-8?Q?a=0Ab.pdf?=\"\r\n",
                Some("a b.pdf"),
            ),
            (
                "empty_name",
                b"Content-Disposition: attachment; filename=\"\"\r\n",
                None,
            ),
            (
                "semicolon_inside_quotes",
                b"Content-Disposition: attachment; filename=\"a;b.pdf\"; size=1\r\n",
                Some("a;b.pdf"),
            ),
            ("no_parameters", b"Content-Disposition: attachment\r\n", None),
        ];
        for (case, header, want) in cases {
            assert_eq!(filename(header).as_deref(), *want, "{case}");
        }
    }

    #[test]
    fn types_dispositions_encodings_ids() {
        let f = Fields::parse(
            b"Content-Type: Multipart/Mixed;\r\n\tboundary=\"=_b 1 \"; charset=US-ASCII (plain)\r\n\
              Content-Transfer-Encoding: Base64 \r\n\
              Content-Disposition: INLINE\r\n\
              Content-ID: < part1@x.pl >\r\n\
              Content-Type: text/html\r\n",
        );
        assert_eq!(f.content_type.as_deref(), Some("multipart/mixed"));
        assert_eq!(f.boundary.as_deref(), Some(&b"=_b 1"[..]));
        assert_eq!(f.charset.as_deref(), Some("us-ascii"));
        assert_eq!(f.encoding, Encoding::Base64);
        assert_eq!(f.disposition, Some(Disposition::Inline));
        assert_eq!(f.content_id.as_deref(), Some("part1@x.pl"));

        type Case = (&'static str, &'static [u8], Option<&'static str>);
        let types: &[Case] = &[
            (
                "comment",
                b"Content-Type: text/plain (body); x=1\r\n",
                Some("text/plain"),
            ),
            (
                "spaces",
                b"Content-Type: image / png\r\n",
                Some("image/png"),
            ),
            ("no_subtype", b"Content-Type: text\r\n", None),
            ("empty_subtype", b"Content-Type: text/\r\n", None),
            ("garbage", b"Content-Type: ;;;\r\n", None),
            ("absent", b"Subject: x\r\n", None),
        ];
        for (case, header, want) in types {
            assert_eq!(
                Fields::parse(header).content_type.as_deref(),
                *want,
                "{case}"
            );
        }
        let dispositions: &[(&str, &[u8], Option<Disposition>)] = &[
            (
                "attachment",
                b"Content-Disposition: attachment; x=1\r\n",
                Some(Disposition::Attachment),
            ),
            (
                "other_type",
                b"Content-Disposition: form-data\r\n",
                Some(Disposition::Other),
            ),
            ("empty", b"Content-Disposition: ; filename=a\r\n", None),
        ];
        for (case, header, want) in dispositions {
            assert_eq!(Fields::parse(header).disposition, *want, "{case}");
        }
        let encodings: &[(&str, &[u8], Encoding, bool)] = &[
            (
                "qp",
                b"Content-Transfer-Encoding: Quoted-Printable\r\n",
                Encoding::QuotedPrintable,
                false,
            ),
            (
                "8bit",
                b"Content-Transfer-Encoding: 8bit\r\n",
                Encoding::Identity,
                false,
            ),
            (
                "uuencode",
                b"Content-Transfer-Encoding: x-uuencode\r\n",
                Encoding::Identity,
                true,
            ),
            ("absent", b"X: y\r\n", Encoding::Identity, false),
        ];
        for (case, header, enc, unknown) in encodings {
            let f = Fields::parse(header);
            assert_eq!((f.encoding, f.encoding_unknown), (*enc, *unknown), "{case}");
        }
    }

    #[test]
    fn encoded_words_outside_names() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("=?utf-8?q?a_b?=", "a b"),
            ("x =?UTF-8?Q?a?=  =?UTF-8?Q?b?= y", "x ab y"),
            ("=?utf-8?b?broken", "=?utf-8?b?broken"),
            ("=?UTF-8?B?0J/RgNC40LLQtdGC?=", "Привет"),
            ("=?UTF-8*pl?Q?=C5=BC?=", "ż"),
            ("=?x?Z?abc?=", "=?x?Z?abc?="),
            ("=?utf-8?B?0LTQ?= =?utf-8?B?tdC7?=", "дел"),
            ("=?utf-8?B?0LTQ?= x", "д\u{fffd} x"),
            ("=?utf-8?q?a?= =?iso-8859-2?q?=B1?=", "aą"),
        ];
        for (input, want) in cases {
            assert_eq!(decode_words(input), *want, "{input}");
        }
    }
}
