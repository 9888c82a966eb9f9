//! `engine search` (SPEC §14): full-text search of stored mail, newest first.

use super::args::SearchArgs;
use super::show::local;
use crate::error::{exit, Error, Result};
use crate::store::{Hit, SearchQuery, Store};
use serde_json::json;

/// `engine search QUERY [--account ID] [--folder EMFDID] [--limit N] [--json]`
pub fn command(store: &Store, args: &SearchArgs) -> Result<i32> {
    crate::run::check_accounts(store, args.account.as_slice())?;
    if let Some(emfdid) = args.folder {
        if !store
            .folders(None, true)?
            .iter()
            .any(|f| f.emfdid == emfdid)
        {
            return Err(Error::Input(format!("--folder: no folder {emfdid}")));
        }
    }
    let text = args.query.join(" ");
    let hits = store
        .search(&SearchQuery {
            text: &text,
            account: args.account,
            folder: args.folder,
            limit: args.limit,
            marks: ("[", "]"),
        })?
        .map_err(|bad| {
            let hint = if bad.0.contains("syntax error") {
                "; words with punctuation go in double quotes (\"jan@firma.pl\")"
            } else {
                ""
            };
            Error::Input(format!("search: {bad} (in the query {text:?}){hint}"))
        })?;
    let backfill = store.backfill_state()?;
    if !backfill.finished() {
        eprintln!(
            "engine: {} of {} messages stored before search existed are indexed so far; \
             the next runs index the rest",
            backfill.done, backfill.total
        );
    }
    if args.json {
        let v: Vec<serde_json::Value> = hits.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(exit::OK);
    }
    for h in &hits {
        println!(
            "{:>8}  {}  {}  {}",
            h.emmsid,
            local(h.date_at),
            h.from_addr.as_deref().unwrap_or("-"),
            h.subject.as_deref().unwrap_or("(no subject)")
        );
        println!(
            "          {} ({}), account {}",
            h.folder, h.emfdid, h.acntid
        );
        println!("          {}", one_line(&h.snippet));
    }
    Ok(exit::OK)
}

fn to_json(h: &Hit) -> serde_json::Value {
    json!({
        "emmsid": h.emmsid, "acntid": h.acntid, "emfdid": h.emfdid, "folder": h.folder,
        "date": h.date_at, "from": h.from_addr, "subject": h.subject, "snippet": h.snippet,
    })
}

/// Line breaks and runs of white space as one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
