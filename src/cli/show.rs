//! What `plan`, `status` and `folder` print, as a table or as JSON.

use super::args::{FolderCmd, PriorityArg};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::layout::Layout;
use crate::lock::Liveness;
use crate::schedule::{self, FolderInput, Settings, Task};
use crate::store::{Account, Folder, OutboxState, Priority, Store};
use chrono::TimeZone;
use serde_json::json;

/// A Unix time as local time, or "never".
pub(super) fn local(t: Option<i64>) -> String {
    match t.and_then(|t| chrono::Local.timestamp_opt(t, 0).earliest()) {
        Some(d) => d.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "never".to_string(),
    }
}

/// Prints the plan as a table or as JSON (`plan --json`, SPEC §2).
pub fn plan(store: &Store, tasks: &[Task], as_json: bool) -> Result<()> {
    let folders = store.folders(None, false)?;
    // Accounts another engine host holds now (PostgreSQL, SPEC §13).
    let holders = store.holders()?;
    let name_of = |emfdid: Option<i64>| {
        emfdid
            .and_then(|id| folders.iter().find(|f| f.emfdid == id))
            .map(|f| f.name.clone())
    };
    if as_json {
        let items: Vec<serde_json::Value> = tasks
            .iter()
            .map(|t| {
                json!({
                    "acntid": t.acntid,
                    "emfdid": t.emfdid,
                    "folder": name_of(t.emfdid),
                    "kind": t.kind.as_str(),
                    "class": match t.class {
                        schedule::Class::HiLoggedIn => "hi-logged-in",
                        schedule::Class::Hi => "hi",
                        schedule::Class::Lo => "lo",
                    },
                    "overdue": t.overdue,
                    "reason": t.reason,
                    "deferred": t.deferred,
                    "held_by": holders.get(&t.acntid),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(());
    }
    if tasks.is_empty() {
        println!("nothing is due");
        return Ok(());
    }
    println!(
        "{:>6} {:>6}  {:<6}  {:<24}  reason",
        "acntid", "emfdid", "kind", "folder"
    );
    for t in tasks {
        println!(
            "{:>6} {:>6}  {:<6}  {:<24}  {}{}{}",
            t.acntid,
            t.emfdid.map_or("-".to_string(), |e| e.to_string()),
            t.kind.as_str(),
            name_of(t.emfdid).unwrap_or_else(|| "(all)".into()),
            t.reason,
            if t.deferred {
                " [deferred to the next run]"
            } else {
                ""
            },
            holders
                .get(&t.acntid)
                .map(|h| format!(" [held by {h}]"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// What `status` shows, gathered at `now`.
struct Status {
    now: i64,
    live: Liveness,
    accounts: Vec<Account>,
    /// Each live folder with when it is next due.
    folders: Vec<(Folder, i64)>,
    outbox: Vec<(OutboxState, i64)>,
    /// Accounts an engine run holds now, with its `HOSTNAME:PID`.
    holders: std::collections::HashMap<i64, String>,
}

impl Status {
    fn gather(layout: &Layout, config: &Config, store: &Store, now: i64) -> Result<Status> {
        let settings = Settings::from(config);
        let sessions = store.sessions()?;
        let accounts = store.accounts()?;
        let folders = store
            .folders(None, false)?
            .into_iter()
            .map(|f| {
                let usrid = accounts
                    .iter()
                    .find(|a| a.acntid == f.acntid)
                    .and_then(|a| a.usrid);
                let logged_in = schedule::logged_in(usrid, &sessions, &settings, now);
                let input = FolderInput::of(&f, usrid);
                let next = schedule::next_due(&input, logged_in, &settings, now, &chrono::Local);
                (f, next)
            })
            .collect();
        Ok(Status {
            now,
            live: crate::lock::probe(&layout.pid_file()),
            accounts,
            folders,
            outbox: store.outbox_counts()?,
            holders: store.holders()?,
        })
    }

    fn folders_of(&self, acntid: i64) -> impl Iterator<Item = &(Folder, i64)> {
        self.folders.iter().filter(move |(f, _)| f.acntid == acntid)
    }

    fn to_json(&self) -> serde_json::Value {
        let accounts: Vec<serde_json::Value> = self
            .accounts
            .iter()
            .map(|a| {
                let folders: Vec<serde_json::Value> = self
                    .folders_of(a.acntid)
                    .map(|(f, next)| {
                        json!({
                            "emfdid": f.emfdid,
                            "name": f.name,
                            "priority": f.priority,
                            "special": f.special,
                            "last_recent_sync_at": f.last_recent_sync_at,
                            "last_full_sync_at": f.last_full_sync_at,
                            "next_due_at": next,
                            "complete": f.uidvalidity.is_some() && f.backfill_below.is_none(),
                            "last_error": f.last_error,
                        })
                    })
                    .collect();
                json!({
                    "acntid": a.acntid,
                    "email": a.email,
                    "active": a.active,
                    "imap_auth": a.imap_auth.as_str(),
                    "smtp_auth": a.smtp_auth.as_str(),
                    "oauth_token_held": a.oauth.refresh_token.is_some(),
                    "oauth_expires_at": a.oauth.expires_at,
                    "oauth_needs_consent": a.oauth.needs_consent,
                    "login_failures": a.login_failures,
                    "login_retry_at": a.login_retry_at,
                    "waits": crate::auth::hold(a, self.now),
                    "last_error": a.last_error,
                    "last_error_at": a.last_error_at,
                    "held_by": self.holders.get(&a.acntid),
                    "folders": folders,
                })
            })
            .collect();
        let outbox: serde_json::Map<String, serde_json::Value> = self
            .outbox
            .iter()
            .map(|(state, n)| (state.as_str().to_string(), json!(n)))
            .collect();
        json!({
            "run": {"live": self.live.live, "pid": self.live.pid, "since": self.live.since},
            "accounts": accounts,
            "outbox": outbox,
        })
    }

    fn print_text(&self, now: i64) {
        if self.live.live {
            println!(
                "run: live (pid {}, since {})",
                self.live.pid.map_or("?".into(), |p| p.to_string()),
                local(self.live.since)
            );
        } else {
            println!("run: none live");
        }
        for a in &self.accounts {
            println!(
                "account {} {}{}{}{}{}{}",
                a.acntid,
                a.email,
                if a.active { "" } else { " (inactive)" },
                self.holders
                    .get(&a.acntid)
                    .map(|h| format!(" [held by {h}]"))
                    .unwrap_or_default(),
                oauth_line(a),
                crate::auth::hold(a, now)
                    .map(|w| format!("\n  waits: {w}"))
                    .unwrap_or_default(),
                a.last_error
                    .as_deref()
                    .map(|e| format!("\n  last error ({}): {e}", local(a.last_error_at)))
                    .unwrap_or_default()
            );
            for (f, next) in self.folders_of(a.acntid) {
                println!(
                    "  {:>5} {:<28} {:<2} recent {}  full {}  next {}{}",
                    f.emfdid,
                    f.name,
                    if f.is_hi() { "hi" } else { "lo" },
                    local(f.last_recent_sync_at),
                    local(f.last_full_sync_at),
                    if *next <= now {
                        "now".to_string()
                    } else {
                        local(Some(*next))
                    },
                    f.last_error
                        .as_deref()
                        .map(|e| format!("\n        last error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        let counts: Vec<String> = self
            .outbox
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        println!("outbox: {}", counts.join(", "));
    }
}

/// `engine status`
pub fn status(layout: &Layout, config: &Config, as_json: bool, now: i64) -> Result<i32> {
    let store = Store::open(&super::location(layout)?)?;
    let status = Status::gather(layout, config, &store, now)?;
    if as_json {
        println!("{}", status.to_json());
    } else {
        status.print_text(now);
    }
    Ok(exit::OK)
}

/// `engine folder ...`
pub fn folder(store: &mut Store, cmd: FolderCmd) -> Result<i32> {
    match cmd {
        FolderCmd::List {
            account,
            json: as_json,
        } => {
            let folders = store.folders(account, true)?;
            if as_json {
                let v: Vec<_> = folders.iter().map(folder_json).collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                for f in &folders {
                    println!(
                        "{:>5} {:>5}  {:<2} {:<8} {}{}",
                        f.emfdid,
                        f.acntid,
                        if f.is_hi() { "hi" } else { "lo" },
                        f.special.as_deref().unwrap_or(""),
                        f.name,
                        if f.removed_at.is_some() {
                            "  (removed on the server)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Ok(exit::OK)
        }
        FolderCmd::Priority { emfdid, priority } => {
            let priority = match priority {
                PriorityArg::Hi => Priority::Hi,
                PriorityArg::Lo => Priority::Lo,
            };
            if !store.set_folder_priority(emfdid, priority)? {
                return Err(Error::Input(format!("no folder {emfdid}")));
            }
            Ok(exit::OK)
        }
    }
}

/// How an OAuth 2.0 account logs in, for `status`: the token held and
/// when the access token expires (never a token).
fn oauth_line(a: &Account) -> String {
    if !a.uses_oauth() {
        return String::new();
    }
    let token = match (&a.oauth.refresh_token, a.oauth.expires_at) {
        (None, _) => "no token held".to_string(),
        (Some(_), Some(t)) => format!("token held, access token expires {}", local(Some(t))),
        (Some(_), None) => "token held".to_string(),
    };
    format!(
        "\n  oauth2 (imap {}, smtp {}): {token}{}",
        a.imap_auth.as_str(),
        a.smtp_auth.as_str(),
        if a.oauth.needs_consent {
            ", needs consent"
        } else {
            ""
        }
    )
}

fn folder_json(f: &Folder) -> serde_json::Value {
    json!({
        "emfdid": f.emfdid,
        "acntid": f.acntid,
        "name": f.name,
        "imap_name": f.imap_name,
        "special": f.special,
        "priority": f.priority,
        "uidvalidity": f.uidvalidity,
        "last_uid": f.last_uid,
        "complete": f.uidvalidity.is_some() && f.backfill_below.is_none(),
        "last_recent_sync_at": f.last_recent_sync_at,
        "last_full_sync_at": f.last_full_sync_at,
        "removed_at": f.removed_at,
        "last_error": f.last_error,
    })
}
