//! Attachments (SPEC §14) on real messages: the corpus through the parser
//! alone, against Python's `email` package, and through a real Dovecot and
//! `engine run` into the store, each row's bytes checked against the
//! server's own decoding of that part (`BINARY[part]`), and `engine
//! attachment list/get` on what was stored.
//!
//! Where the parsers disagree, the case is listed below with the reason;
//! an unlisted disagreement fails the test, and so does a listed one that
//! no longer happens.

mod support;

use backproc::mime::{self, Attachment};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::process::Command;
use support::engine::*;
use support::{corpus, text, Dovecot, TempHome, PYTHON};

/// Python's `email` (policy.default) against ours, on the corpus files as
/// they are: (file number, part, what differs, why). "row" means the part
/// is an attachment for one parser only.
const PYTHON_DISAGREES: &[(&str, &str, &str, &str)] = &[
    ("009", "1", "filename",
     "an RFC 2047 word as an unquoted parameter value (name==?koi8-r?B?...?=): Python reads no name, we read 'Список.doc'"),
    ("029", "2", "size sha256", MESSAGE_STAR),
    ("029", "3", "size sha256", MESSAGE_STAR),
    ("032", "2", "size sha256", MESSAGE_STAR),
    ("037", "2", "size sha256", MESSAGE_STAR),
    ("041", "1", "size sha256", MESSAGE_STAR),
    ("059", "2", "size sha256", MESSAGE_STAR),
    ("067", "2", "size sha256", MESSAGE_STAR),
    ("097", "2", "size sha256", MESSAGE_STAR),
    ("039", "2", "row", BOM),
    ("039", "3", "row", BOM),
    ("058", "1", "row",
     "boundary=----=_Part_... unquoted with '=' in it: Python does not read the boundary (RFC 2045 wants it quoted) and sees no parts; Dovecot and we do"),
    ("089", "2", "size sha256", UUENCODE),
    ("089", "3", "size sha256", UUENCODE),
    ("110", "2", "size sha256", UUENCODE),
    ("110", "3", "size sha256", UUENCODE),
    ("110", "4", "size sha256", UUENCODE),
    ("110", "4", "filename",
     "a raw 8-bit ISO-8859-1 name: Python makes U+FFFD of the byte, we read it as the header fields are read (Windows-1250/ISO-8859-2, where ö is the same byte)"),
];

const MESSAGE_STAR: &str = "a message/* part other than an attached message (delivery status, \
    disposition notification, message/global, message/partial): Python parses it into \
    sub-messages and keeps no bytes of it; ours are the part's bytes (Dovecot's BINARY agrees)";
const BOM: &str = "a UTF-8 byte-order mark before the first header: Python takes the whole \
    file for body and sees no MIME structure; Dovecot and we read the header after it";
const UUENCODE: &str = "Content-Transfer-Encoding: x-uuencode: Python decodes it; SPEC §14 \
    decodes base64 and quoted-printable only, so the bytes are as sent (Dovecot refuses \
    BINARY[] of it: UNKNOWN-CTE)";

/// Dovecot's `BINARY[part]` (or `BODY[part]` for an attached message)
/// against our size and SHA-256, on the stored bytes: (file, part, why).
const DOVECOT_DISAGREES: &[(&str, &str, &str)] = &[
    ("015", "3", CLOSE_CRLF),
    ("050", "11", CLOSE_CRLF),
    ("050", "12", CLOSE_CRLF),
    ("096", "3", CLOSE_CRLF),
    ("099", "2", CLOSE_CRLF),
    ("099", "3", CLOSE_CRLF),
    ("042", "2",
     "NUL bytes: Dovecot stores and returns them as 0x80 in BODY[] (what the engine stores) but gives the original NUL back in BINARY[]"),
    ("050", "10",
     "quoted-printable with '=' not followed by two hex digits: Dovecot fails the FETCH (\"Invalid quoted-printable input trailer\") and hangs up; we keep the '=' as RFC 2045 suggests"),
    ("089", "2", UUENCODE),
    ("089", "3", UUENCODE),
    ("110", "2", UUENCODE),
    ("110", "3", UUENCODE),
    ("110", "4", UUENCODE),
];

const CLOSE_CRLF: &str = "an attached message ending in its multipart's closing boundary line, \
    the enclosing boundary right after: Dovecot's BODY[part] keeps that line's CRLF, which \
    RFC 2046 gives to the enclosing boundary (ours is 2 bytes shorter)";

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn number(file: &str) -> &str {
    &file[..3]
}

/// The sanity every row must have, whatever the input.
fn check_row(file: &str, a: &Attachment) {
    let at = format!("{file} part {}", a.part);
    assert!(
        !a.part.is_empty()
            && a.part
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && n != "0"),
        "{at}: part"
    );
    assert!(
        a.content_type.contains('/') && a.content_type == a.content_type.to_lowercase(),
        "{at}: content type {:?}",
        a.content_type
    );
    assert!(
        matches!(a.disposition, None | Some("attachment") | Some("inline")),
        "{at}"
    );
    assert!(
        a.content_id
            .as_deref()
            .is_none_or(|c| !c.contains(['<', '>']) && !c.is_empty()),
        "{at}: content id"
    );
    assert!(
        a.filename
            .as_deref()
            .is_none_or(|f| !f.is_empty() && !f.contains(|c: char| c.is_control())),
        "{at}: filename {:?}",
        a.filename
    );
    assert!(
        a.sha256.len() == 64
            && a.sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{at}: sha256"
    );
}

#[test]
fn every_corpus_message_gives_sane_rows_the_same_every_time() {
    let all = corpus();
    assert!(all.len() >= 100, "corpus");
    let mut rows = 0;
    for (file, raw) in &all {
        let first = mime::content(raw);
        assert_eq!(first, mime::content(raw), "{file}: not deterministic");
        assert!(first.text.len() <= mime::TEXT_LIMIT, "{file}: text");
        for a in &first.attachments {
            check_row(file, a);
        }
        rows += first.attachments.len();
        // What a server does to it (CRLF line ends) changes no row's shape.
        let crlf: Vec<u8> = String::from_utf8_lossy(raw)
            .replace("\r\n", "\n")
            .replace('\n', "\r\n")
            .into_bytes();
        let again = mime::content(&crlf);
        for a in &again.attachments {
            check_row(file, a);
        }
        // Cut anywhere: still rows, never a panic.
        for cut in [raw.len() / 3, raw.len() / 2, raw.len() * 9 / 10] {
            for a in &mime::content(&raw[..cut]).attachments {
                check_row(file, a);
            }
        }
    }
    assert!(rows > 50, "only {rows} attachments in the corpus");
}

#[test]
fn corpus_rows_agree_with_python_email_where_not_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    let all = corpus();
    let out = Command::new(PYTHON)
        .arg(support::support_dir().join("mime_reference.py"))
        .args(all.iter().map(|(f, _)| dir.join(f)))
        .output()
        .expect("run mime_reference.py");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(reference.len(), all.len());

    let mut found: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut report = String::new();
    for ((file, raw), py) in all.iter().zip(&reference) {
        let n = number(file).to_string();
        if let Some(e) = py["error"].as_str() {
            found.insert((n, "*".into(), "python-error".into()));
            report.push_str(&format!("{file}: Python failed: {e}\n"));
            continue;
        }
        let ours = mime::content(raw).attachments;
        let theirs = py["rows"].as_array().expect("rows");
        let parts: BTreeSet<&str> = ours
            .iter()
            .map(|a| a.part.as_str())
            .chain(theirs.iter().filter_map(|r| r["part"].as_str()))
            .collect();
        for part in parts {
            let a = ours.iter().find(|a| a.part == part);
            let p = theirs.iter().find(|r| r["part"] == part);
            let (Some(a), Some(p)) = (a, p) else {
                found.insert((n.clone(), part.into(), "row".into()));
                report.push_str(&format!(
                    "{file} part {part}: an attachment for {} only\n",
                    if a.is_some() { "us" } else { "Python" }
                ));
                continue;
            };
            let fields: [(&str, Value, &Value); 6] = [
                ("filename", a.filename.clone().into(), &p["filename"]),
                (
                    "content_type",
                    a.content_type.clone().into(),
                    &p["content_type"],
                ),
                ("disposition", a.disposition.into(), &p["disposition"]),
                ("content_id", a.content_id.clone().into(), &p["content_id"]),
                ("size", a.size.into(), &p["size"]),
                ("sha256", a.sha256.clone().into(), &p["sha256"]),
            ];
            for (field, ours, theirs) in fields {
                // Python keeps no bytes of an attached message.
                if theirs.is_null() && matches!(field, "size" | "sha256") {
                    continue;
                }
                if &ours != theirs {
                    found.insert((n.clone(), part.into(), field.into()));
                    report.push_str(&format!(
                        "{file} part {part} {field}: ours {ours} Python {theirs}\n"
                    ));
                }
            }
        }
    }
    let listed: BTreeSet<(String, String, String)> = PYTHON_DISAGREES
        .iter()
        .flat_map(|(n, part, fields, _)| {
            fields
                .split_whitespace()
                .filter(|f| *f != "-")
                .map(move |f| (n.to_string(), part.to_string(), f.to_string()))
        })
        .collect();
    let unlisted: Vec<_> = found.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&found).collect();
    assert!(
        unlisted.is_empty() && gone.is_empty(),
        "disagreements not listed: {unlisted:?}\nlisted but gone: {gone:?}\nall:\n{report}"
    );
    eprintln!("Python's email and ours disagree on:\n{report}");
}

/// Appends the corpus to alice's INBOX, syncs it, and returns the home,
/// the account and the stored (corpus file, uid, raw) in corpus order.
fn synced_corpus(dovecot: &Dovecot) -> (TempHome, i64, Vec<(String, u32, Vec<u8>)>) {
    let home = TempHome::new();
    config(&home, dovecot, "");
    let all = corpus();
    let imap = dovecot.imap("alice");
    let uids = imap.append_many(
        "INBOX",
        &all.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
    );
    let acntid = add_account(&home, dovecot, "alice");
    run(&home, &[], 0);
    let inbox = emfdid(&home, acntid, "INBOX");
    let stored = stored(&home, inbox);
    assert_eq!(stored.len(), all.len());
    let files = all
        .into_iter()
        .zip(uids)
        .zip(stored)
        .map(|(((file, _), uid), (suid, raw, _))| {
            assert_eq!(uid, suid);
            (file, uid, raw)
        })
        .collect();
    (home, acntid, files)
}

/// (emattid, part, filename, content_type, disposition, content_id, size, sha256)
/// of a message's rows, as `attachment list --json` prints them.
fn listed(home: &TempHome, emmsid: i64) -> Vec<Value> {
    let out = expect_code(
        home,
        &["attachment", "list", &emmsid.to_string(), "--json"],
        &[],
        0,
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

fn emmsid_of(home: &TempHome, uid: u32) -> i64 {
    db(home)
        .query_row(
            "SELECT emmsid FROM email_messages WHERE uid = ?",
            [uid],
            |r| r.get(0),
        )
        .expect("emmsid")
}

both_stores!(
    synced_corpus_rows_are_the_servers_parts_and_get_returns_their_bytes,
    broken_messages_give_sensible_rows_and_get_returns_the_exact_bytes,
);

fn synced_corpus_rows_are_the_servers_parts_and_get_returns_their_bytes() {
    let dovecot = Dovecot::start();
    let (home, _, files) = synced_corpus(&dovecot);
    let mut items = Vec::new();
    let mut rows: Vec<(String, u32, Value)> = Vec::new();
    for (file, uid, raw) in &files {
        let emmsid = emmsid_of(&home, *uid);
        let stored = listed(&home, emmsid);
        // What the sync wrote is what the parser makes of the stored bytes.
        let expected = mime::content(raw).attachments;
        assert_eq!(stored.len(), expected.len(), "{file}: rows");
        for (s, e) in stored.iter().zip(&expected) {
            assert_eq!(s["part"], e.part.as_str(), "{file}");
            assert_eq!(s["filename"], serde_json::json!(e.filename), "{file}");
            assert_eq!(s["content_type"], e.content_type.as_str(), "{file}");
            assert_eq!(s["disposition"], serde_json::json!(e.disposition), "{file}");
            assert_eq!(s["size"], e.size, "{file}");
            assert_eq!(s["sha256"], e.sha256.as_str(), "{file}");
            let item = if e.content_type == "message/rfc822" {
                format!("BODY.PEEK[{}]", e.part)
            } else {
                format!("BINARY.PEEK[{}]", e.part)
            };
            items.push((*uid, item));
            rows.push((file.clone(), *uid, s.clone()));
        }
        // Every message is in the search index.
        let store = db(&home);
        let indexed: i64 = store
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM {} WHERE emmsid = ?",
                    store.search_text_table()
                ),
                [emmsid],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(indexed, 1, "{file}: search text");
    }
    assert!(rows.len() > 50, "{} rows", rows.len());

    let server = dovecot.imap("alice").fetch_items("INBOX", &items);
    let mut found = BTreeSet::new();
    let mut report = String::new();
    for ((file, _, row), got) in rows.iter().zip(&server) {
        let part = row["part"].as_str().expect("part");
        let same = match got {
            Ok(bytes) => row["size"] == bytes.len() && row["sha256"] == sha256(bytes).as_str(),
            Err(_) => false,
        };
        if !same {
            found.insert((number(file).to_string(), part.to_string()));
            report.push_str(&format!(
                "{file} part {part}: ours {} bytes, Dovecot {}\n",
                row["size"],
                match got {
                    Ok(b) => format!("{} bytes", b.len()),
                    Err(e) => format!("refused: {e}"),
                }
            ));
        }
    }
    let listed: BTreeSet<(String, String)> = DOVECOT_DISAGREES
        .iter()
        .map(|(n, p, _)| (n.to_string(), p.to_string()))
        .collect();
    assert_eq!(found, listed, "Dovecot's decoding of the parts:\n{report}");
    eprintln!("Dovecot and ours disagree on:\n{report}");

    // `attachment get` gives exactly the bytes the row describes, every one.
    let out_dir = tempfile::tempdir().expect("tempdir");
    for (file, _, row) in &rows {
        let id = row["emattid"].as_i64().expect("emattid").to_string();
        let path = out_dir.path().join(&id);
        expect_code(
            &home,
            &["attachment", "get", &id, "-o", path.to_str().expect("utf8")],
            &[],
            0,
        );
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(
            bytes.len() as u64,
            row["size"].as_u64().expect("size"),
            "{file}"
        );
        assert_eq!(
            sha256(&bytes),
            row["sha256"].as_str().expect("sha"),
            "{file}"
        );
    }
    let (_, _, first) = &rows[0];
    let id = first["emattid"].to_string();
    let out = expect_code(&home, &["attachment", "get", &id], &[], 0);
    assert_eq!(
        sha256(&out.stdout),
        first["sha256"].as_str().expect("sha"),
        "stdout"
    );
    expect_code(&home, &["attachment", "get", "999999"], &[], 65);
    expect_code(&home, &["attachment", "list", "999999"], &[], 65);
    integrity_ok(&home);
}

/// A message with a base64 attachment of `data` named by `disposition`.
fn with_attachment(subject: &str, disposition: &str, data: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut body = String::new();
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).expect("ascii"));
        body.push_str("\r\n");
    }
    format!(
        "From: a@example.com\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nW załączniku.\r\n--b1\r\n\
         Content-Type: application/octet-stream\r\n{disposition}\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b1--\r\n"
    )
    .into_bytes()
}

fn broken_messages_give_sensible_rows_and_get_returns_the_exact_bytes() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    // Bytes of every value, so any decoding slip shows.
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let deep = {
        let mut raw =
            b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0x\r\n\r\n".to_vec();
        for i in 1..500 {
            raw.extend(
                format!(
                    "--b{}x\r\nContent-Type: multipart/mixed; boundary=b{i}x\r\n\r\n",
                    i - 1
                )
                .bytes(),
            );
        }
        raw.extend(
            b"--b499x\r\nContent-Type: application/pdf; name=deep.pdf\r\n\
              Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n",
        );
        for i in (0..500).rev() {
            raw.extend(format!("--b{i}x--\r\n").bytes());
        }
        raw
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "rfc2231 charset and continuations",
            with_attachment(
                "rfc2231",
                "Content-Disposition: attachment;\r\n filename*0*=iso-8859-2''Faktura%20%BF%F3;\r\n \
                 filename*1*=%B3%E6%20nr%201;\r\n filename*2=\".pdf\"",
                &data,
            ),
        ),
        (
            "raw 8-bit name",
            with_attachment("raw", "Content-Disposition: attachment; filename=\"Za\u{bf}.pdf\"", &data),
        ),
        (
            "rfc2047 split inside a character",
            with_attachment(
                "words",
                "Content-Disposition: attachment; filename=\"=?UTF-8?B?xYHDs2TF?= =?UTF-8?B?ui5wZGY=?=\"",
                &data,
            ),
        ),
        ("500 levels deep", deep),
        (
            "no closing boundary",
            with_attachment("unclosed", "Content-Disposition: attachment; filename=open.bin", &data)
                .strip_suffix(b"--b1--\r\n")
                .expect("suffix")
                .to_vec(),
        ),
        (
            "boundary never comes",
            b"Subject: lost\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n\
              Tekst bez granic.\r\n--yy\r\nContent-Type: image/png\r\n\r\npng\r\n"
                .to_vec(),
        ),
        (
            "bad base64",
            b"Subject: bad\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\n\
              Content-Type: image/png; name=bad.png\r\nContent-Transfer-Encoding: base64\r\n\r\n\
              aGV$sbG8*gd29y!bGQ\r\n--b--\r\n"
                .to_vec(),
        ),
    ];
    let imap = dovecot.imap("alice");
    // The raw 8-bit name: ISO-8859-2 bytes, not UTF-8.
    let raw_case = &cases[1].1;
    let mut raw8 = raw_case.clone();
    let at = raw8
        .windows(2)
        .position(|w| w == "\u{bf}".as_bytes())
        .expect("marker");
    raw8.splice(at..at + 2, [0xbf, 0xf3, 0xb3, 0xe6]);
    let mut messages: Vec<Vec<u8>> = cases.iter().map(|(_, m)| m.clone()).collect();
    messages[1] = raw8;
    let uids = imap.append_many("INBOX", &messages);
    add_account(&home, &dovecot, "alice");
    run(&home, &[], 0);

    let rows = |i: usize| listed(&home, emmsid_of(&home, uids[i]));
    let names: Vec<Vec<Option<String>>> = (0..cases.len())
        .map(|i| {
            rows(i)
                .iter()
                .map(|r| r["filename"].as_str().map(String::from))
                .collect()
        })
        .collect();
    let want: Vec<Vec<Option<&str>>> = vec![
        vec![Some("Faktura żółć nr 1.pdf")],
        vec![Some("Zażółć.pdf")],
        vec![Some("Łódź.pdf")],
        vec![Some("deep.pdf")],
        vec![Some("open.bin")],
        vec![],
        vec![Some("bad.png")],
    ];
    for (i, (case, _)) in cases.iter().enumerate() {
        let want: Vec<Option<String>> = want[i].iter().map(|n| n.map(String::from)).collect();
        assert_eq!(names[i], want, "{case}");
    }
    assert_eq!(
        rows(3)[0]["part"].as_str().map(|p| p.split('.').count()),
        Some(500)
    );
    assert_eq!(
        rows(6)[0]["size"],
        11,
        "bad base64: the good characters decoded"
    );
    // The exact bytes back, where they were sent whole.
    for i in [0, 1, 2, 4] {
        let id = rows(i)[0]["emattid"].to_string();
        let out = expect_code(&home, &["attachment", "get", &id], &[], 0);
        assert!(out.stdout == data, "{}: bytes differ", cases[i].0);
    }
    // The text of the multipart whose boundary never came is searchable.
    let out = expect_code(&home, &["search", "granic", "--json"], &[], 0);
    let hits: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits}");
    integrity_ok(&home);
}
