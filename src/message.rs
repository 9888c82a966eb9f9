//! The decoded columns of a raw message (SPEC §5 `email_messages`): Message-ID,
//! subject, from, to/cc and date, as UTF-8 text for the web application.
//!
//! It runs for every message of a sync, so it reads only the header block
//! (never the body: the cost does not grow with attachments) through
//! mail-parser's `parse_headers`. It is pure and best effort: any bytes give
//! a [`Summary`] (fields it cannot make sense of are `None`), and it must
//! never panic, fail, or alter what is stored as `raw`.
//!
//! Choices for what the RFCs leave open:
//! - Raw 8-bit header fields that are valid UTF-8 are kept as they are. A
//!   field that is not valid UTF-8 is decoded as a whole as Windows-1250 or
//!   ISO-8859-2 (the mail this application sees is Polish), chosen once per
//!   message: Windows-1250 if any non-UTF-8 field has a byte 0x80-0x9F (C1
//!   controls in ISO-8859-2, never text) or more of its `ą`/`Ą` bytes than of
//!   ISO-8859-2's `ąĄśŚźŹ` bytes; ISO-8859-2 otherwise.
//! - Control characters (C0, DEL, C1; e.g. NUL, or a CR/LF smuggled in an
//!   encoded word) become spaces; values are trimmed; an empty value is `None`.
//! - The first mailbox of the From field(s) is the sender; To then Cc list every
//!   mailbox of every such field (group members included, group names
//!   dropped). A display name containing RFC 5322 specials other than `.` is
//!   quoted, so `to_addrs` stays a parseable address list; a name equal to
//!   its address is dropped.

use std::borrow::Cow;

use mail_parser::{Addr, Address, HeaderName, HeaderValue, MessageParser};

/// The decoded columns of one message; `None` when absent or unusable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Message-ID without angle brackets, trimmed.
    pub message_id: Option<String>,
    /// Subject decoded to UTF-8 (RFC 2047).
    pub subject: Option<String>,
    /// The first From mailbox: `Name <addr>`, or `addr` without a display name.
    pub from_addr: Option<String>,
    /// To then Cc mailboxes, each `Name <addr>` or `addr`, joined with `, `.
    pub to_addrs: Option<String>,
    /// The Date field as Unix seconds (UTC).
    pub date_at: Option<i64>,
}

/// Decode the summary columns of a raw message. Never panics; best effort on any bytes.
pub fn summarize(raw: &[u8]) -> Summary {
    let mut head = to_utf8_fields(header_block(raw));
    if !head.ends_with(b"\n") {
        // No header/body separator: mail-parser drops a last field that has no line end.
        head.to_mut().extend_from_slice(b"\r\n");
    }
    // mail-parser is third-party code fed hostile input: a panic in it must
    // cost this message its columns, not the worker its folder.
    std::panic::catch_unwind(|| summarize_header(&head)).unwrap_or_default()
}

fn summarize_header(head: &[u8]) -> Summary {
    let Some(msg) = MessageParser::new().parse_headers(head) else {
        return Summary::default();
    };
    let headers = msg.headers();
    let first = |name: HeaderName<'static>| headers.iter().find(|h| h.name == name);
    let addresses = |name: HeaderName<'static>| {
        headers
            .iter()
            .filter(move |h| h.name == name)
            .filter_map(|h| h.value.as_address())
            .flat_map(mailboxes)
    };

    let message_id = first(HeaderName::MessageId)
        .and_then(|h| match &h.value {
            HeaderValue::Text(id) => Some(id.as_ref()),
            HeaderValue::TextList(ids) => ids.first().map(|id| id.as_ref()),
            _ => None,
        })
        .and_then(|id| clean(id.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace())));
    let subject = first(HeaderName::Subject)
        .and_then(|h| h.value.as_text())
        .and_then(clean);
    let from_addr = addresses(HeaderName::From).find_map(format_addr);
    let to: Vec<String> = addresses(HeaderName::To)
        .chain(addresses(HeaderName::Cc))
        .filter_map(format_addr)
        .collect();
    let date_at = first(HeaderName::Date)
        .and_then(|h| h.value.as_datetime())
        .filter(|d| d.is_valid())
        .map(|d| d.to_timestamp());
    Summary {
        message_id,
        subject,
        from_addr,
        to_addrs: (!to.is_empty()).then(|| to.join(", ")),
        date_at,
    }
}

/// Every mailbox of an address field, group members included.
fn mailboxes<'a, 'x>(address: &'a Address<'x>) -> Box<dyn Iterator<Item = &'a Addr<'x>> + 'a> {
    match address {
        Address::List(list) => Box::new(list.iter()),
        Address::Group(groups) => Box::new(groups.iter().flat_map(|g| g.addresses.iter())),
    }
}

/// `Name <addr>`, `addr`, or the bare name when there is no address.
fn format_addr(addr: &Addr<'_>) -> Option<String> {
    let name = addr.name.as_deref().and_then(clean);
    let address = addr
        .address
        .as_deref()
        .and_then(|a| clean(a.trim_matches(|c: char| c == '<' || c == '>' || c.is_whitespace())));
    match (name, address) {
        (Some(name), Some(address)) if !name.eq_ignore_ascii_case(&address) => {
            Some(format!("{} <{address}>", quote_name(&name)))
        }
        (_, Some(address)) => Some(address),
        (Some(name), None) => Some(quote_name(&name)),
        (None, None) => None,
    }
}

/// Quote a display name that would otherwise not read back as one name.
fn quote_name(name: &str) -> String {
    const SPECIALS: &[char] = &['(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '"'];
    if !name.contains(SPECIALS) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Control characters to spaces, trimmed; `None` if nothing is left.
pub(crate) fn clean(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// The header block: everything up to and including the empty line that
/// ends it (CRLF or bare LF), or the whole message when there is none.
fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..header_end(raw).1]
}

/// Where the header block ends: (end of the header, start of the body).
/// The blank line between them may be CRLF or a bare LF; a message without
/// one is all header.
pub fn header_end(raw: &[u8]) -> (usize, usize) {
    let mut i = 0;
    while i < raw.len() {
        // at the start of a line
        if raw[i..].starts_with(b"\r\n") {
            return (i, i + 2);
        }
        if raw[i] == b'\n' {
            return (i, i + 1);
        }
        match raw[i..].iter().position(|b| *b == b'\n') {
            Some(p) => i += p + 1,
            None => return (raw.len(), raw.len()),
        }
    }
    (raw.len(), raw.len())
}

/// The header block with every field that is not valid UTF-8 transcoded to
/// UTF-8 from the message's guessed 8-bit charset (see the module doc).
fn to_utf8_fields(head: &[u8]) -> Cow<'_, [u8]> {
    if std::str::from_utf8(head).is_ok() {
        return Cow::Borrowed(head);
    }
    let fields = split_fields(head);
    let bad: Vec<&[u8]> = fields
        .iter()
        .copied()
        .filter(|f| std::str::from_utf8(f).is_err())
        .collect();
    let decode = legacy_decoder(&bad);
    let mut out = Vec::with_capacity(head.len() + head.len() / 4);
    for field in fields {
        if std::str::from_utf8(field).is_ok() {
            out.extend_from_slice(field);
            continue;
        }
        // Raw 8-bit bytes inside an encoded word belong to the word's own
        // charset (mail-parser decodes them so): copy words verbatim.
        let mut rest = field;
        while !rest.is_empty() {
            let (plain, word) = match find_encoded_word(rest) {
                Some((start, end)) => (&rest[..start], &rest[start..end]),
                None => (rest, &rest[rest.len()..]),
            };
            out.extend_from_slice(decode(plain).as_bytes());
            out.extend_from_slice(word);
            rest = &rest[plain.len() + word.len()..];
        }
    }
    Cow::Owned(out)
}

/// The first `=?charset?E?text?=` in `s` (on one line), as a byte range.
///
/// Linear in the length of `s`, however many `=?` it holds: no scan starts
/// over from each candidate (a 1 MB line of `=?` took minutes that way).
pub(crate) fn find_encoded_word(s: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(p) = s.get(from..)?.windows(2).position(|w| w == b"=?") {
        let start = from + p;
        let word = &s[start + 2..];
        // charset ? encoding ? text ?= (on one line); the charset ends at
        // the next '?', which is at latest the next candidate's "=?".
        let q1 = word.iter().position(|&b| b == b'?' || b == b'\n');
        let Some(q1) = q1.filter(|&q| word[q] == b'?') else {
            from = start + 2;
            continue;
        };
        let enc = word.get(q1 + 1);
        if word.get(q1 + 2) != Some(&b'?') || !matches!(enc, Some(b'q' | b'Q' | b'b' | b'B')) {
            from = start + 2;
            continue;
        }
        // The first "?=" after the text starts, unless the line ends first.
        let mut k = start + 2 + q1 + 3;
        let close = loop {
            match s[k..].iter().position(|&b| b == b'?' || b == b'\n') {
                None => break Err(s.len()),
                Some(i) if s[k + i] == b'\n' => break Err(k + i),
                Some(i) if s.get(k + i + 1) == Some(&b'=') => break Ok(k + i),
                Some(i) => k += i + 1,
            }
        };
        match close {
            Ok(at) => return Some((start, at + 2)),
            // No "?=" before the line ends: no later candidate of this line
            // can close either.
            Err(line_end) => from = line_end,
        }
    }
    None
}

/// Split a header block into fields (a line plus its folded continuations).
pub(crate) fn split_fields(head: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    while pos < head.len() {
        let line_end = head[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |p| pos + p + 1);
        let continues = matches!(head.get(line_end), Some(b' ' | b'\t'));
        if !continues {
            fields.push(&head[start..line_end]);
            start = line_end;
        }
        pos = line_end;
    }
    if start < head.len() {
        fields.push(&head[start..]);
    }
    fields
}

/// Windows-1250 or ISO-8859-2 for the non-UTF-8 fields of one message.
pub(crate) fn legacy_decoder(bad_fields: &[&[u8]]) -> fn(&[u8]) -> String {
    let bytes = || bad_fields.iter().flat_map(|f| f.iter().copied());
    let c1 = bytes().any(|b| (0x80..=0x9f).contains(&b));
    // ą Ą in Windows-1250 / ą Ą ś Ś ź Ź in ISO-8859-2 (the others coincide).
    let cp1250_only = bytes().filter(|b| matches!(b, 0xb9 | 0xa5)).count();
    let latin2_only = bytes()
        .filter(|b| matches!(b, 0xb1 | 0xa1 | 0xb6 | 0xa6 | 0xbc | 0xac))
        .count();
    let charset: &[u8] = if c1 || cp1250_only > latin2_only {
        b"windows-1250"
    } else {
        b"iso-8859-2"
    };
    mail_parser::decoders::charsets::map::charset_decoder(charset).unwrap_or(lossy_utf8)
}

fn lossy_utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn subjects_decode() {
        let cases: &[(&str, &[u8], Option<&str>)] = &[
            ("plain_ascii", b"Subject: Hello\r\n\r\n", Some("Hello")),
            (
                "iso_8859_2_q",
                b"Subject: =?ISO-8859-2?Q?Za=BF=F3=B3=E6_g=EA=B6l=B1_ja=BC=F1?=\r\n\r\n",
                Some("Zażółć gęślą jaźń"),
            ),
            (
                "windows_1250_q",
                b"Subject: =?windows-1250?Q?Za=BF=F3=B3=E6_g=EA=9Cl=B9_ja=9F=F1?=\r\n\r\n",
                Some("Zażółć gęślą jaźń"),
            ),
            (
                "iso_8859_2_b",
                b"Subject: =?iso-8859-2?B?WmG/87PmIGfqtmyxIGphvPE=?=\r\n\r\n",
                Some("Zażółć gęślą jaźń"),
            ),
            (
                "utf8_b",
                b"Subject: =?UTF-8?B?WmHFvMOzxYLEhyBnxJnFm2zEhSBqYcW6xYQ=?=\r\n\r\n",
                Some("Zażółć gęślą jaźń"),
            ),
            (
                "utf8_q_lowercase_charset",
                b"Subject: =?utf-8?q?Faktura_nr_1=2F2024?=\r\n\r\n",
                Some("Faktura nr 1/2024"),
            ),
            (
                "adjacent_encoded_words_join",
                b"Subject: =?UTF-8?Q?Za=C5=BC?= =?UTF-8?Q?=C3=B3=C5=82=C4=87?=\r\n\r\n",
                Some("Zażółć"),
            ),
            (
                "folded_subject",
                b"Subject: Re: a long\r\n subject line\r\n\r\n",
                Some("Re: a long subject line"),
            ),
            (
                "raw_utf8_kept",
                "Subject: Zażółć\r\n\r\n".as_bytes(),
                Some("Zażółć"),
            ),
            (
                "raw_latin2_bytes",
                b"Subject: Za\xbf\xf3\xb3\xe6 g\xea\xb6l\xb1\r\n\r\n",
                Some("Zażółć gęślą"),
            ),
            (
                "raw_cp1250_bytes",
                b"Subject: Za\xbf\xf3\xb3\xe6 g\xea\x9cl\xb9\r\n\r\n",
                Some("Zażółć gęślą"),
            ),
            (
                "raw_cp1250_bytes_without_c1",
                b"Subject: \xb9\xb9 ma\xb3pa\r\n\r\n",
                Some("ąą małpa"),
            ),
            (
                "nul_and_cr_become_spaces",
                b"Subject: a\0b =?utf-8?Q?c=0D=0Ad?=\r\n\r\n",
                Some("a b c  d"),
            ),
            (
                "raw_8bit_inside_encoded_word_uses_its_charset",
                b"Subject: =?iso-8859-1?Q?Fr\xf6sche?= und Fr\xf6sche\r\n\r\n",
                Some("Frösche und Frösche"),
            ),
            (
                "raw_latin2_next_to_encoded_word",
                b"Subject: \xa3\xf3d\xbc =?utf-8?Q?=C5=81=C3=B3d=C5=BA?= =? x\r\n\r\n",
                Some("Łódź Łódź =? x"),
            ),
            ("empty_subject", b"Subject: \r\n\r\n", None),
            ("absent_subject", b"From: a@b.pl\r\n\r\n", None),
            (
                "first_subject_wins",
                b"Subject: one\r\nSubject: two\r\n\r\n",
                Some("one"),
            ),
            (
                "bare_lf",
                b"Subject: lf only\nFrom: a@b.pl\n\nbody",
                Some("lf only"),
            ),
            (
                "no_separator",
                b"From: a@b.pl\r\nSubject: no body",
                Some("no body"),
            ),
            (
                "body_not_read",
                b"From: a@b.pl\r\n\r\nSubject: in body\r\n",
                None,
            ),
            (
                "unknown_charset",
                b"Subject: =?x-unknown?Q?abc?=\r\n\r\n",
                Some("abc"),
            ),
        ];
        for (case, raw, want) in cases {
            assert_eq!(summarize(raw).subject.as_deref(), *want, "{case}");
        }
    }

    #[test]
    fn addresses_format() {
        type Case = (
            &'static str,
            &'static [u8],
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                "name_and_addr",
                b"From: Jan Kowalski <jan@firma.pl>\r\nTo: anna@firma.pl\r\n\r\n",
                Some("Jan Kowalski <jan@firma.pl>"),
                Some("anna@firma.pl"),
            ),
            (
                "encoded_name",
                b"From: =?ISO-8859-2?Q?=A3ukasz_=AFak?= <l@x.pl>\r\n\r\n",
                Some("Łukasz Żak <l@x.pl>"),
                None,
            ),
            (
                "quoted_name_with_comma",
                b"From: \"Kowalski, Jan\" <jan@x.pl>\r\n\r\n",
                Some("\"Kowalski, Jan\" <jan@x.pl>"),
                None,
            ),
            (
                "to_then_cc",
                b"Cc: c@x.pl\r\nTo: A <a@x.pl>, b@x.pl\r\n\r\n",
                None,
                Some("A <a@x.pl>, b@x.pl, c@x.pl"),
            ),
            (
                "several_to_fields",
                b"To: a@x.pl\r\nTo: b@x.pl\r\nCc: c@x.pl, D <d@x.pl>\r\n\r\n",
                None,
                Some("a@x.pl, b@x.pl, c@x.pl, D <d@x.pl>"),
            ),
            (
                "group",
                b"To: Zarzad: a@x.pl, B <b@x.pl>;, c@x.pl\r\n\r\n",
                None,
                Some("a@x.pl, B <b@x.pl>, c@x.pl"),
            ),
            (
                "empty_group",
                b"To: undisclosed-recipients:;\r\n\r\n",
                None,
                None,
            ),
            (
                "first_from_mailbox",
                b"From: a@x.pl, b@x.pl\r\nFrom: c@x.pl\r\n\r\n",
                Some("a@x.pl"),
                None,
            ),
            (
                "name_equal_to_addr",
                b"From: \"jan@x.pl\" <jan@x.pl>\r\n\r\n",
                Some("jan@x.pl"),
                None,
            ),
            (
                "raw_latin2_name",
                b"From: \xa3ukasz <l@x.pl>\r\n\r\n",
                Some("Łukasz <l@x.pl>"),
                None,
            ),
            ("empty_from", b"From: \r\n\r\n", None, None),
            ("missing_everything", b"\r\n\r\nbody", None, None),
        ];
        for (case, raw, from, to) in cases {
            let got = summarize(raw);
            assert_eq!(got.from_addr.as_deref(), *from, "{case} from");
            assert_eq!(got.to_addrs.as_deref(), *to, "{case} to");
        }
    }

    #[test]
    fn message_ids_and_dates() {
        type Case = (
            &'static str,
            &'static [u8],
            Option<&'static str>,
            Option<i64>,
        );
        let cases: &[Case] = &[
            (
                "bracketed_id_and_utc_date",
                b"Message-ID: <abc.123@x.pl>\r\nDate: Sun, 12 Jan 2014 22:28:05 +0000\r\n\r\n",
                Some("abc.123@x.pl"),
                Some(1_389_565_685),
            ),
            (
                "id_with_spaces_and_offset_date",
                b"Message-Id:   < abc@x.pl >  \r\nDate: Sun, 12 Jan 2014 23:28:05 +0100\r\n\r\n",
                Some("abc@x.pl"),
                Some(1_389_565_685),
            ),
            (
                "negative_offset",
                b"Date: Sun, 12 Jan 2014 17:28:05 -0500\r\n\r\n",
                None,
                Some(1_389_565_685),
            ),
            (
                "id_without_brackets",
                b"Message-ID: abc@x.pl\r\n\r\n",
                Some("abc@x.pl"),
                None,
            ),
            ("empty_id", b"Message-ID: \r\n\r\n", None, None),
            ("unparsable_date", b"Date: yesterday\r\n\r\n", None, None),
            (
                "date_day_32",
                b"Date: 32 Jan 2014 22:28:05 +0000\r\n\r\n",
                None,
                None,
            ),
            (
                "date_hour_25",
                b"Date: 12 Jan 2014 25:28:05 +0000\r\n\r\n",
                None,
                None,
            ),
            ("absent_date", b"Subject: x\r\n\r\n", None, None),
        ];
        for (case, raw, id, date) in cases {
            let got = summarize(raw);
            assert_eq!(got.message_id.as_deref(), *id, "{case} id");
            assert_eq!(got.date_at, *date, "{case} date");
        }
    }

    #[test]
    fn full_message() {
        let raw = b"Return-Path: <jan@firma.pl>\r\n\
Received: from mx.firma.pl by mail.firma.pl; Sun, 12 Jan 2014 22:28:06 +0000\r\n\
Message-ID: <20140112.1@firma.pl>\r\n\
Date: Sun, 12 Jan 2014 23:28:05 +0100\r\n\
From: =?UTF-8?Q?Jan_Kowalski?= <jan@firma.pl>\r\n\
To: Anna Nowak <anna@firma.pl>\r\n\
Cc: biuro@firma.pl\r\n\
Subject: =?ISO-8859-2?Q?Faktura_za_stycze=F1?=\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Subject: not this one\r\n";
        assert_eq!(
            summarize(raw),
            Summary {
                message_id: s("20140112.1@firma.pl"),
                subject: s("Faktura za styczeń"),
                from_addr: s("Jan Kowalski <jan@firma.pl>"),
                to_addrs: s("Anna Nowak <anna@firma.pl>, biuro@firma.pl"),
                date_at: Some(1_389_565_685),
            }
        );
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let many_lines: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("X-Header-{i}: value {i}\r\n").into_bytes())
            .chain(b"Subject: last\r\n\r\nbody".iter().copied())
            .collect();
        let cases: &[(&str, &[u8])] = &[
            ("empty", b""),
            ("only_crlf", b"\r\n"),
            ("only_lf", b"\n"),
            ("nul_bytes", b"\0\0\0Subject: \0\r\n\0\r\n\0"),
            ("binary", &[0xff, 0xfe, 0x00, 0x80, 0x0a, 0x0d, 0x0a]),
            ("colon_only", b":\r\n:\r\n\r\n"),
            ("no_colon_lines", b"garbage line\r\nmore garbage\r\n\r\n"),
            (
                "continuation_first",
                b" folded\r\n\tmore\r\nSubject: x\r\n\r\n",
            ),
            ("bare_cr", b"Subject: a\rFrom: b\r\r"),
            (
                "malformed_addresses",
                b"From: <<<@>>>, \"unterminated, @@, (comment\r\nTo: ;;;,,,<>\r\n\r\n",
            ),
            ("nested_groups", b"To: a: b: c@x;;, d:;\r\n\r\n"),
            (
                "broken_encoded_words",
                b"Subject: =?utf-8?B?###?= =?iso-8859-2?Q?=ZZ?= =?\r\n\r\n",
            ),
            ("long_line", &[b'A'; 100_000]),
            (
                "huge_date_fields",
                b"Date: 99999999999 Jan 99999999999 99:99:99 +9999\r\n\r\n",
            ),
            ("many_lines", &many_lines),
        ];
        for (case, raw) in cases {
            let _ = summarize(raw);
            // Also every prefix of the short ones: truncation at any byte.
            if raw.len() < 200 {
                for end in 0..raw.len() {
                    let _ = summarize(&raw[..end]);
                }
            }
            let _ = case;
        }
        assert_eq!(summarize(&many_lines).subject.as_deref(), Some("last"));
    }

    #[test]
    fn large_body_is_not_parsed() {
        // 50 MB body: only the header block is looked at. (Timing is not
        // asserted; on a debug build this still finishes in well under a second.)
        let mut raw = b"Subject: big\r\nFrom: a@x.pl\r\n\r\n".to_vec();
        raw.resize(50 * 1024 * 1024, b'x');
        let got = summarize(&raw);
        assert_eq!(got.subject.as_deref(), Some("big"));
        assert_eq!(header_block(&raw).len(), 30);
    }

    #[test]
    fn header_block_ends() {
        let cases: &[(&str, &[u8], usize)] = &[
            ("crlf", b"A: b\r\n\r\nbody", 8),
            ("lf", b"A: b\n\nbody", 6),
            ("lf_then_crlf", b"A: b\n\r\nbody", 7),
            ("no_separator", b"A: b\r\nC: d", 10),
            ("starts_blank_crlf", b"\r\nbody", 2),
            ("starts_blank_lf", b"\nbody", 1),
            ("empty", b"", 0),
        ];
        for (case, raw, len) in cases {
            assert_eq!(header_block(raw).len(), *len, "{case}");
        }
    }

    #[test]
    fn encoded_word_spans() {
        type Case = (&'static str, &'static [u8], Option<(usize, usize)>);
        let cases: &[Case] = &[
            ("simple", b"a =?x?Q?y?= b", Some((2, 11))),
            ("b_encoding", b"=?utf-8?B?QQ==?=", Some((0, 16))),
            (
                "bad_encoding_letter_skipped",
                b"=?x?Z?y?= =?x?q?y?=",
                Some((10, 19)),
            ),
            ("unterminated", b"=?x?Q?y", None),
            ("not_across_lines", b"=?x?Q?y\n?=", None),
            ("empty_text", b"=?x?Q??=", Some((0, 8))),
            ("lone_marker", b"=?", None),
            ("none", b"plain", None),
        ];
        for (case, s, want) in cases {
            assert_eq!(find_encoded_word(s), *want, "{case}");
        }
    }

    #[test]
    fn corpus_never_panics() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("eml") {
                continue;
            }
            let raw = std::fs::read(&path).expect("read eml");
            let _ = summarize(&raw);
            seen += 1;
        }
        assert!(seen > 0, "no .eml files in {}", dir.display());
    }
}
