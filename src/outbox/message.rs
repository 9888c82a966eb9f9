//! The checks and transformations of an outgoing message (pure).
//!
//! `check` decides whether a raw RFC 5322 message may be queued and derives
//! its envelope: it must have a header block of well-formed `Name: value`
//! lines (folded continuations allowed), no NUL and no CR outside CRLF in
//! the header, a From, at least one recipient, and addresses that parse.
//! `wire` makes the bytes that go out: line ends normalised to CRLF, the
//! Bcc field removed, a Message-ID added when missing. The stored `raw` is
//! never changed.

use crate::message::header_end;
use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};
use std::str::FromStr;

/// The envelope and identity of a message that may be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope sender: Sender, else the first From address.
    pub mail_from: String,
    /// To, Cc and Bcc, each once (compared case-insensitively).
    pub rcpt_to: Vec<String>,
    /// The Message-ID without angle brackets, when the message has one.
    pub message_id: Option<String>,
}

/// Why a message cannot be queued, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused(why)
    }
}

impl From<&str> for Refused {
    fn from(why: &str) -> Refused {
        Refused(why.to_string())
    }
}

/// Checks a message for queueing. The error says what is wrong, for people.
/// A panic of the header parser on some odd input refuses that message
/// instead of taking the outbox down with it (a row that crashed every run
/// would block the queue for good).
pub fn check(raw: &[u8], account_email: &str) -> Result<Envelope, Refused> {
    std::panic::catch_unwind(|| check_unguarded(raw, account_email))
        .unwrap_or_else(|_| Err("the header cannot be parsed (the parser failed)".into()))
}

fn check_unguarded(raw: &[u8], account_email: &str) -> Result<Envelope, Refused> {
    if raw.is_empty() {
        return Err("the message is empty".into());
    }
    let (hend, _) = header_end(raw);
    let header = &raw[..hend];
    if header.is_empty() {
        return Err("the message has no header".into());
    }
    check_header_lines(header)?;
    let Some(msg) = MessageParser::new().parse_headers(header) else {
        return Err("the header cannot be parsed".into());
    };
    let mut from = Vec::new();
    let mut sender = Vec::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut message_id = None;
    for h in msg.headers() {
        let list = match &h.name {
            HeaderName::From => Some(&mut from),
            HeaderName::Sender => Some(&mut sender),
            HeaderName::To | HeaderName::Cc | HeaderName::Bcc => Some(&mut rcpts),
            HeaderName::MessageId => {
                if let HeaderValue::Text(t) = h.value() {
                    message_id = Some(t.trim().trim_matches(['<', '>']).to_string());
                }
                None
            }
            _ => None,
        };
        let Some(list) = list else { continue };
        let field = h.name().to_string();
        let addrs = addresses(h.value())
            .map_err(|BadAddress(bad)| format!("{field}: '{bad}' is not an address"))?;
        if addrs.is_empty() && !is_group_only(h.value()) {
            let text = String::from_utf8_lossy(
                raw.get(h.offset_start() as usize..h.offset_end() as usize)
                    .unwrap_or_default(),
            )
            .trim()
            .to_string();
            return Err(format!("{field}: no address in '{text}'").into());
        }
        list.extend(addrs);
    }
    if from.is_empty() {
        return Err("the message has no From".into());
    }
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|a| seen.insert(a.to_ascii_lowercase()));
    if rcpts.is_empty() {
        return Err("the message has no recipient (To, Cc or Bcc)".into());
    }
    let mail_from = sender
        .first()
        .or(from.first())
        .cloned()
        .unwrap_or_else(|| account_email.to_string());
    Ok(Envelope {
        mail_from,
        rcpt_to: rcpts,
        message_id: message_id.filter(|m| !m.is_empty()),
    })
}

/// Every header line is a `Name: value` field or a folded continuation; no
/// NUL, no CR outside CRLF, and one kind of line end: a bare LF inside a
/// CRLF header is how a value smuggles in a field of its own (`Subject:
/// hi\nBcc: ...`), while a header of bare LFs throughout is only a message
/// written on Unix (normalised on the wire).
fn check_header_lines(header: &[u8]) -> Result<(), Refused> {
    let (mut crlf, mut bare_lf) = (false, false);
    for (i, b) in header.iter().enumerate() {
        if *b == 0 {
            return Err("the header contains a NUL byte".into());
        }
        if *b == b'\r' && header.get(i + 1) != Some(&b'\n') {
            return Err(
                "the header contains a CR that does not end a line (header injection?)".into(),
            );
        }
        if *b == b'\n' {
            if i > 0 && header[i - 1] == b'\r' {
                crlf = true;
            } else {
                bare_lf = true;
            }
        }
    }
    if crlf && bare_lf {
        return Err("the header has a bare LF among CRLF line ends (header injection?)".into());
    }
    for (n, line) in header.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue; // the final split piece
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if n == 0 {
                return Err("the message starts with a continuation line".into());
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err(format!(
                "header line {} is not 'Name: value': '{}'",
                n + 1,
                shown(line)
            )
            .into());
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
            return Err(format!(
                "header line {} has a bad field name: '{}'",
                n + 1,
                shown(line)
            )
            .into());
        }
    }
    Ok(())
}

fn shown(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s: String = s.chars().take(80).collect();
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn is_group_only(v: &HeaderValue<'_>) -> bool {
    matches!(v, HeaderValue::Address(Address::Group(_)))
}

/// An address that does not parse, as written.
struct BadAddress(String);

/// The addresses of an address field, or the first that does not parse.
fn addresses(v: &HeaderValue<'_>) -> Result<Vec<String>, BadAddress> {
    let mut out = Vec::new();
    let mut push = |addr: Option<&str>, name: Option<&str>| -> Result<(), BadAddress> {
        match addr {
            Some(a) if valid_address(a) => {
                out.push(a.trim().to_string());
                Ok(())
            }
            Some(a) => Err(BadAddress(a.to_string())),
            None => Err(BadAddress(name.unwrap_or("").to_string())),
        }
    };
    match v {
        HeaderValue::Address(Address::List(list)) => {
            for a in list {
                push(a.address.as_deref(), a.name.as_deref())?;
            }
        }
        HeaderValue::Address(Address::Group(groups)) => {
            for g in groups {
                for a in &g.addresses {
                    push(a.address.as_deref(), a.name.as_deref())?;
                }
            }
        }
        HeaderValue::Text(t) => return Err(BadAddress(t.to_string())),
        HeaderValue::TextList(l) => return Err(BadAddress(l.join(", "))),
        _ => {}
    }
    Ok(out)
}

/// Whether `a` is a usable envelope address (lettre's syntax check).
pub fn valid_address(a: &str) -> bool {
    let a = a.trim();
    !a.is_empty()
        && !a
            .bytes()
            .any(|b| b.is_ascii_control() || b == b' ' || b == b'<' || b == b'>')
        && lettre::Address::from_str(a).is_ok()
}

/// The bytes sent over SMTP: CRLF line ends (bare LF normalised), the Bcc
/// field removed (with its continuation lines), `Message-ID: <id>` prepended
/// when `add_message_id` is given.
pub fn wire(raw: &[u8], add_message_id: Option<&str>, strip_bcc: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 64);
    if let Some(id) = add_message_id {
        out.extend_from_slice(format!("Message-ID: <{id}>\r\n").as_bytes());
    }
    let (hend, _) = header_end(raw);
    let mut in_bcc = false;
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(raw.len(), |p| pos + p + 1);
        let line = &raw[pos..end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        let in_header = pos < hend;
        if in_header && strip_bcc {
            let continuation = content.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            if !continuation {
                in_bcc = content.len() >= 4 && content[..4].eq_ignore_ascii_case(b"bcc:");
            }
            if in_bcc {
                pos = end;
                continue;
            }
        }
        out.extend_from_slice(content);
        if line.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        pos = end;
    }
    out
}

/// A Message-ID for a message that has none: stable for the message, so a
/// retry and the Sent copy carry the same one.
pub fn made_message_id(emoid: i64, created_at: i64, mail_from: &str) -> String {
    let domain = mail_from
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("localhost");
    format!("backproc.{emoid}.{created_at}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"From: Jan <jan@example.com>\r\nTo: a@example.com, \"B, X\" <b@example.com>\r\nCc: c@example.com\r\nBcc: d@example.com,\r\n  e@example.com\r\nSubject: hi\r\nMessage-ID: <id1@example.com>\r\n\r\nbody\r\n";

    #[test]
    fn envelope_from_headers() {
        let env = check(OK, "acct@example.com").expect("valid");
        assert_eq!(env.mail_from, "jan@example.com");
        assert_eq!(
            env.rcpt_to,
            vec![
                "a@example.com",
                "b@example.com",
                "c@example.com",
                "d@example.com",
                "e@example.com"
            ]
        );
        assert_eq!(env.message_id.as_deref(), Some("id1@example.com"));
    }

    #[test]
    fn sender_wins_and_duplicates_go() {
        let m =
            b"From: a@example.com\nSender: s@example.com\nTo: x@example.com, X@EXAMPLE.com\n\nb";
        let env = check(m, "acct@example.com").expect("valid");
        assert_eq!(env.mail_from, "s@example.com");
        assert_eq!(env.rcpt_to, vec!["x@example.com"]);
        assert_eq!(env.message_id, None);
    }

    #[test]
    fn refusals_table() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("empty", b"", "empty"),
            ("no_header", b"\r\nbody", "no header"),
            ("no_from", b"To: a@example.com\r\n\r\nb", "no From"),
            (
                "no_recipient",
                b"From: a@example.com\r\n\r\nb",
                "no recipient",
            ),
            (
                "bare_cr_injection",
                b"From: a@example.com\r\nTo: b@example.com\rBcc: evil@example.com\r\n\r\nb",
                "CR",
            ),
            (
                "bare_lf_injection_in_a_crlf_header",
                b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\nBcc: evil@example.com\r\n\r\nb",
                "bare LF",
            ),
            (
                "nul_in_header",
                b"From: a@example.com\r\nTo: b@exa\0mple.com\r\n\r\nb",
                "NUL",
            ),
            (
                "line_without_colon",
                b"From: a@example.com\r\nTo: b@example.com\r\nthis is not a header\r\n\r\nb",
                "not 'Name: value'",
            ),
            (
                "starts_with_continuation",
                b" From: a@example.com\r\nTo: b@example.com\r\n\r\nb",
                "continuation",
            ),
            (
                "bad_name",
                b"From: a@example.com\r\nT o: b@example.com\r\n\r\nb",
                "bad field name",
            ),
            (
                "unparsable_to",
                b"From: a@example.com\r\nTo: not an address\r\n\r\nb",
                "To",
            ),
            (
                "unparsable_from",
                b"From: nobody\r\nTo: b@example.com\r\n\r\nb",
                "From",
            ),
            ("not_a_message", b"hello world\n", "not 'Name: value'"),
        ];
        for (name, raw, want) in cases {
            let err = check(raw, "acct@example.com").expect_err(name);
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn group_syntax_without_members_is_fine_with_other_recipients() {
        let m =
            b"From: a@example.com\r\nTo: undisclosed-recipients:;\r\nBcc: x@example.com\r\n\r\nb";
        let env = check(m, "acct@example.com").expect("valid");
        assert_eq!(env.rcpt_to, vec!["x@example.com"]);
    }

    #[test]
    fn body_may_hold_anything() {
        let m = b"From: a@example.com\nTo: b@example.com\n\nline\rwith\0odd bytes\n";
        assert!(check(m, "acct@example.com").is_ok());
    }

    #[test]
    fn wire_strips_bcc_normalises_and_adds_id() {
        let w = wire(OK, None, true);
        let text = String::from_utf8(w).expect("utf8");
        assert!(!text.to_lowercase().contains("bcc"), "{text}");
        assert!(
            !text.contains("e@example.com"),
            "continuation of Bcc left: {text}"
        );
        assert!(text.contains("Cc: c@example.com\r\nSubject: hi\r\n"));
        let lf = b"From: a@x.com\nTo: b@x.com\n\nline1\nline2\n.\n";
        let w = wire(lf, Some("m1@x.com"), true);
        assert_eq!(
            w,
            b"Message-ID: <m1@x.com>\r\nFrom: a@x.com\r\nTo: b@x.com\r\n\r\nline1\r\nline2\r\n.\r\n".to_vec()
        );
        // a Bcc: line in the body is body text, not a header
        let body_bcc = b"From: a@x.com\r\nTo: b@x.com\r\n\r\nBcc: stays\r\n";
        assert_eq!(wire(body_bcc, None, true), body_bcc.to_vec());
        // no trailing newline: kept as is
        assert_eq!(
            wire(b"From: a@x.com\n\nx", None, false),
            b"From: a@x.com\r\n\r\nx".to_vec()
        );
    }

    #[test]
    fn made_ids() {
        assert_eq!(
            made_message_id(7, 100, "jan@example.com"),
            "backproc.7.100@example.com"
        );
        assert_eq!(made_message_id(7, 100, "weird"), "backproc.7.100@localhost");
    }
}
