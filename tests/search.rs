//! `engine search` (SPEC §14) on mail synced from a real Dovecot: the FTS5
//! query language, the folding of letters `unicode61` leaves alone, the
//! account and folder filters, newest first, snippets of the original
//! text, expunged mail gone, malformed queries refused with exit 65.

mod support;

use serde_json::Value;
use support::engine::*;
use support::{text, Dovecot, TempHome};

fn mail(date: &str, from: &str, subject: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: alice@example.com\r\nSubject: {subject}\r\nDate: {date}\r\n\
         MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The hits of `engine search ARGS --json`: (emmsid, subject).
fn search(home: &TempHome, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = expect_code(home, &all, &[], 0);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("json")
        .as_array()
        .expect("array")
        .clone()
}

fn subjects(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["subject"].as_str().unwrap_or("").to_string())
        .collect()
}

both_stores!(search_finds_words_phrases_prefixes_and_columns_newest_first);

fn search_finds_words_phrases_prefixes_and_columns_newest_first() {
    let dovecot = Dovecot::start();
    let home = TempHome::new();
    config(&home, &dovecot, "");
    let alice = dovecot.imap("alice");
    alice.create_folder("Faktury");
    let plain = "text/plain; charset=utf-8";
    alice.append_many(
        "INBOX",
        &[
            mail(
                "Sat, 10 Jan 2026 10:00:00 +0100",
                "Jan <jan@firma.pl>",
                "Zażółć gęślą jaźń",
                plain,
                "Proszę o fakturę za styczeń.",
            ),
            mail(
                "Fri, 10 Apr 2026 10:00:00 +0200",
                "Ewa <ewa@firma.pl>",
                "Spotkanie",
                "text/html; charset=utf-8",
                "<html><body><p>Spotkanie w <b>Gdańsku</b> o 10:00</p></body></html>",
            ),
            mail(
                "Mon, 01 Dec 2025 10:00:00 +0100",
                "Biuro <biuro@firma.pl>",
                "Korekta",
                plain,
                "W załączeniu faktura korygująca.",
            ),
        ],
    );
    let uid = alice.append(
        "Faktury",
        &mail(
            "Tue, 10 Feb 2026 10:00:00 +0100",
            "Księgowość <ksiegowosc@firma.pl>",
            "Faktura 2/2026",
            plain,
            "Faktura VAT w załączniku.\r\nŁódź, ul. Piotrkowska 1.",
        ),
        "",
    );
    let bob = dovecot.imap("bob");
    bob.append(
        "INBOX",
        &mail(
            "Tue, 10 Mar 2026 10:00:00 +0100",
            "Paweł <pawel@firma.pl>",
            "Straße und Øre",
            plain,
            "Kraków i Łódź.",
        ),
        "",
    );
    let a = add_account(&home, &dovecot, "alice");
    let b = add_account(&home, &dovecot, "bob");
    run(&home, &[], 0);
    // Faktury is a lo folder: a forced run syncs it too.
    run(&home, &["--force"], 0);
    let faktury = emfdid(&home, a, "Faktury");

    // ł, Ł, ß, ø folded like ż, ó, ć: typed without diacritics, found.
    let hits = search(&home, &["zazolc"]);
    assert_eq!(subjects(&hits), ["Zażółć gęślą jaźń"]);
    let snippet = hits[0]["snippet"].as_str().expect("snippet");
    assert!(snippet.contains("[Zażółć]"), "the original text: {snippet}");
    for key in [
        "emmsid", "acntid", "emfdid", "folder", "date", "from", "subject", "snippet",
    ] {
        assert!(hits[0].get(key).is_some(), "{key} in {}", hits[0]);
    }
    assert_eq!(hits[0]["folder"], "INBOX");
    assert_eq!(hits[0]["acntid"], a);
    assert_eq!(
        subjects(&search(&home, &["lodz"])),
        ["Straße und Øre", "Faktura 2/2026"],
        "newest first"
    );
    assert_eq!(subjects(&search(&home, &["ŁÓDŹ"])).len(), 2);
    assert_eq!(
        subjects(&search(&home, &["strasse", "ore"])),
        ["Straße und Øre"]
    );
    // A phrase, a prefix, a column, the operators.
    assert_eq!(
        subjects(&search(&home, &["\"faktura vat\""])),
        ["Faktura 2/2026"]
    );
    assert_eq!(
        subjects(&search(&home, &["faktur*"])),
        ["Faktura 2/2026", "Zażółć gęślą jaźń", "Korekta"]
    );
    assert_eq!(
        subjects(&search(&home, &["subject:faktura"])),
        ["Faktura 2/2026"]
    );
    assert_eq!(
        subjects(&search(&home, &["from_addr:ksiegowosc"])),
        ["Faktura 2/2026"]
    );
    assert_eq!(
        subjects(&search(&home, &["faktur* NOT vat"])),
        ["Zażółć gęślą jaźń", "Korekta"]
    );
    assert_eq!(
        subjects(&search(&home, &["zazolc OR gdansku"])),
        ["Spotkanie", "Zażółć gęślą jaźń"]
    );
    // HTML turned into text.
    assert_eq!(subjects(&search(&home, &["gdansku"])), ["Spotkanie"]);
    // The filters and the limit.
    assert_eq!(
        subjects(&search(&home, &["lodz", "--account", &b.to_string()])),
        ["Straße und Øre"]
    );
    assert_eq!(
        subjects(&search(
            &home,
            &["faktur*", "--folder", &faktury.to_string()]
        )),
        ["Faktura 2/2026"]
    );
    assert_eq!(
        subjects(&search(&home, &["faktur*", "--limit", "1"])),
        ["Faktura 2/2026"]
    );
    assert!(search(&home, &["nothingmatches"]).is_empty());
    let out = expect_code(&home, &["search", "lodz"], &[], 0);
    let shown = text(&out.stdout);
    assert!(
        shown.contains("Faktura 2/2026") && shown.contains("[Łódź]"),
        "{shown}"
    );

    // Malformed: exit 65 with FTS5's reason, nothing on stdout.
    for bad in [
        "faktura AND",
        "\"unterminated",
        "nosuchcolumn:x",
        "jan@firma.pl",
        "(a OR",
    ] {
        let out = expect_code(&home, &["search", bad], &[], 65);
        assert!(out.stdout.is_empty());
        assert!(
            text(&out.stderr).contains("search: "),
            "{bad}: {}",
            text(&out.stderr)
        );
    }
    expect_code(&home, &["search", "x", "--account", "9999"], &[], 65);
    expect_code(&home, &["search", "x", "--folder", "9999"], &[], 65);

    // Expunged on the server: gone after the next full sync.
    alice.expunge("Faktury", &[uid]);
    run(&home, &["--force"], 0);
    assert_eq!(subjects(&search(&home, &["lodz"])), ["Straße und Øre"]);
    assert!(search(&home, &["\"faktura vat\""]).is_empty());
    let store = db(&home);
    let orphans: i64 = store
        .query_row(
            &format!(
                "SELECT (SELECT COUNT(*) FROM {} WHERE emmsid NOT IN (SELECT emmsid FROM email_messages)) \
                 + (SELECT COUNT(*) FROM email_attachments WHERE emmsid NOT IN (SELECT emmsid FROM email_messages))",
                store.search_text_table()
            ),
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(orphans, 0);
    store.search_index_consistent();
    integrity_ok(&home);
}
