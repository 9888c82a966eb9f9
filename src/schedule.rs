//! The scheduler: which folders a run syncs, of what kind, in what order, and
//! why (SPEC §6). A pure function of the folders' state, the users' sessions,
//! the configuration and `now`; it reads no clock and touches no database.
//!
//! Hi folders (the Inbox and those marked `hi`) run on intervals that depend
//! on whether their owner is logged in; lo folders get one full sync a day,
//! after the local time `EMAIL_BG_LO_FOLDERS_SYNC_START`. What does not fit in
//! the run's capacity is deferred, most overdue first.

use crate::config::{Config, LocalTime};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone};
use std::cmp::Ordering;

/// What the scheduler knows of one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInput {
    /// `None` for an account without any folder yet (to be discovered).
    pub emfdid: Option<i64>,
    pub acntid: i64,
    /// The account owner's web-app user.
    pub usrid: Option<i64>,
    /// The Inbox or a folder marked `hi`.
    pub hi: bool,
    pub last_recent_sync_at: Option<i64>,
    pub last_full_sync_at: Option<i64>,
    /// A message is stored header-only and waits for its body.
    pub pending_large: bool,
}

impl FolderInput {
    /// A stored folder of an account owned by `usrid`.
    pub fn of(f: &crate::store::Folder, usrid: Option<i64>) -> FolderInput {
        FolderInput {
            emfdid: Some(f.emfdid),
            acntid: f.acntid,
            usrid,
            hi: f.is_hi(),
            last_recent_sync_at: f.last_recent_sync_at,
            last_full_sync_at: f.last_full_sync_at,
            pending_large: f.has_partial,
        }
    }

    /// An account without any folder yet: one task to discover them.
    pub fn undiscovered(acntid: i64, usrid: Option<i64>) -> FolderInput {
        FolderInput {
            emfdid: None,
            acntid,
            usrid,
            hi: true,
            last_recent_sync_at: None,
            last_full_sync_at: None,
            pending_large: false,
        }
    }
}

/// The settings of `config.inc` that scheduling uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub hi_recent: i64,
    pub hi_recent_nl: i64,
    pub hi_full: i64,
    pub hi_full_nl: i64,
    pub grace: i64,
    pub session_timeout: i64,
    pub lo_start: LocalTime,
    /// Most tasks a run takes: threads × tasks per thread.
    pub capacity: usize,
}

impl From<&Config> for Settings {
    fn from(c: &Config) -> Settings {
        Settings {
            hi_recent: c.hi_recent_interval,
            hi_recent_nl: c.hi_recent_interval_nl,
            hi_full: c.hi_full_interval,
            hi_full_nl: c.hi_full_interval_nl,
            grace: c.schedule_grace,
            session_timeout: c.session_timeout,
            lo_start: c.lo_sync_start,
            capacity: (c.max_threads as usize).saturating_mul(c.max_tasks_per_thread as usize),
        }
    }
}

/// What kind of sync a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// New mail only.
    Recent,
    /// New mail, flags and expunges.
    Full,
}

impl Kind {
    /// `recent` or `full`, as `plan --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Recent => "recent",
            Kind::Full => "full",
        }
    }
}

/// The priority class of a task; runs go in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Hi folder whose owner is logged in.
    HiLoggedIn,
    /// Other hi folder.
    Hi,
    /// Lo folder.
    Lo,
}

/// One due folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub acntid: i64,
    pub emfdid: Option<i64>,
    pub kind: Kind,
    pub class: Class,
    /// Seconds since the task became due; `None` for a never-synced folder
    /// (the most overdue of all).
    pub overdue: Option<i64>,
    /// Why it is due, for people.
    pub reason: String,
    /// It does not fit in this run and waits for the next.
    pub deferred: bool,
}

/// Whether `usrid` counts as logged in at `now`.
pub fn logged_in(
    usrid: Option<i64>,
    sessions: &[crate::store::Session],
    s: &Settings,
    now: i64,
) -> bool {
    usrid.is_some_and(|u| {
        sessions.iter().any(|x| {
            x.usrid == u
                && x.last_activity_at
                    .is_some_and(|t| t >= now.saturating_sub(s.session_timeout))
        })
    })
}

/// The intervals that apply to a hi folder, by whether its owner is logged
/// in, and the suffix of their constants' names.
fn intervals(s: &Settings, logged_in: bool) -> (i64, i64, &'static str) {
    if logged_in {
        (s.hi_recent, s.hi_full, "")
    } else {
        (s.hi_recent_nl, s.hi_full_nl, "_NL")
    }
}

/// When a synced folder's syncs fall due: the instants at or after which a
/// run takes them (the grace applied to the hi intervals; a lo folder's
/// full sync at the window it waits for). The one place of the interval
/// and window rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DueAt {
    /// The recent sync of a hi folder (lo folders have none).
    recent: Option<i64>,
    full: i64,
}

fn due_at<Tz: TimeZone>(
    f: &FolderInput,
    last_full: i64,
    logged_in: bool,
    s: &Settings,
    now: i64,
    tz: &Tz,
) -> DueAt {
    if f.hi {
        let (recent_int, full_int, _) = intervals(s, logged_in);
        DueAt {
            recent: Some(last_recent(f, last_full) + recent_int - s.grace),
            full: last_full + full_int - s.grace,
        }
    } else {
        let window = window_start(tz, now, s.lo_start);
        let full = if last_full < window {
            window
        } else {
            window_start(tz, window + 25 * 3600, s.lo_start)
        };
        DueAt { recent: None, full }
    }
}

/// The last sync that fetched new mail: a full sync counts as one.
fn last_recent(f: &FolderInput, last_full: i64) -> i64 {
    f.last_recent_sync_at.unwrap_or(last_full).max(last_full)
}

/// When the folder is next due (the moment a run at or after it syncs it);
/// `now` or earlier when it is due already.
pub fn next_due<Tz: TimeZone>(
    f: &FolderInput,
    logged_in: bool,
    s: &Settings,
    now: i64,
    tz: &Tz,
) -> i64 {
    let Some(last_full) = f.last_full_sync_at else {
        return now;
    };
    let at = due_at(f, last_full, logged_in, s, now, tz);
    at.recent.map_or(at.full, |r| r.min(at.full))
}

/// The due tasks, in run order (deferred ones last). With `force`, every
/// folder is due for a full sync.
pub fn plan<Tz: TimeZone>(
    folders: &[FolderInput],
    sessions: &[crate::store::Session],
    s: &Settings,
    now: i64,
    tz: &Tz,
    force: bool,
) -> Vec<Task> {
    let mut tasks: Vec<Task> = folders
        .iter()
        .filter_map(|f| due(f, logged_in(f.usrid, sessions, s, now), s, now, tz, force))
        .collect();
    tasks.sort_by(|a, b| {
        a.class
            .cmp(&b.class)
            .then_with(|| match (a.overdue, b.overdue) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => y.cmp(&x),
            })
            .then_with(|| a.acntid.cmp(&b.acntid))
            .then_with(|| a.emfdid.cmp(&b.emfdid))
    });
    for t in tasks.iter_mut().skip(s.capacity) {
        t.deferred = true;
    }
    tasks
}

fn due<Tz: TimeZone>(
    f: &FolderInput,
    logged_in: bool,
    s: &Settings,
    now: i64,
    tz: &Tz,
    force: bool,
) -> Option<Task> {
    let class = match (f.hi, logged_in) {
        (true, true) => Class::HiLoggedIn,
        (true, false) => Class::Hi,
        (false, _) => Class::Lo,
    };
    let who = match class {
        Class::HiLoggedIn => "hi folder, owner logged in",
        Class::Hi => "hi folder, owner not logged in",
        Class::Lo => "lo folder",
    };
    let (kind, overdue, reason) = if f.emfdid.is_none() {
        (Kind::Full, None, "new account: discover its folders".into())
    } else if let Some(last_full) = f.last_full_sync_at {
        if force {
            (Kind::Full, Some(now - last_full), format!("{who}: --force"))
        } else if let Some((kind, overdue, why)) = interval_due(f, last_full, logged_in, s, now, tz)
        {
            (kind, Some(overdue), format!("{who}: {why}"))
        } else if f.pending_large {
            let why = "large messages wait for their bodies";
            (Kind::Recent, Some(0), format!("{who}: {why}"))
        } else {
            return None;
        }
    } else {
        (Kind::Full, None, format!("{who}: never synced"))
    };
    Some(Task {
        acntid: f.acntid,
        emfdid: f.emfdid,
        kind,
        class,
        overdue,
        reason,
        deferred: false,
    })
}

/// Whether a synced folder is due by its intervals (hi) or its daily
/// window (lo): the kind, how overdue, and why.
fn interval_due<Tz: TimeZone>(
    f: &FolderInput,
    last_full: i64,
    logged_in: bool,
    s: &Settings,
    now: i64,
    tz: &Tz,
) -> Option<(Kind, i64, String)> {
    let at = due_at(f, last_full, logged_in, s, now, tz);
    let Some(recent_at) = at.recent else {
        let window = at.full;
        return (now >= window).then(|| {
            let why = format!(
                "daily window {:02}:{:02} began {}, last full sync {}",
                s.lo_start.hour,
                s.lo_start.minute,
                local(tz, window),
                local(tz, last_full)
            );
            (Kind::Full, now - window, why)
        });
    };
    let (recent_int, full_int, suffix) = intervals(s, logged_in);
    // Overdue counts from when the interval elapsed, without the grace.
    let full_over = now - (at.full + s.grace);
    let recent_over = now - (recent_at + s.grace);
    let recent_due = now >= recent_at;
    if now >= at.full {
        let why = format!(
            "full sync interval {full_int}s (FULL_SYNC_INTERVAL{suffix}) elapsed, last full sync {} ({}s ago)",
            local(tz, last_full),
            now - last_full
        );
        let overdue = full_over.max(if recent_due { recent_over } else { full_over });
        return Some((Kind::Full, overdue, why));
    }
    recent_due.then(|| {
        let last_recent = last_recent(f, last_full);
        let why = format!(
            "recent sync interval {recent_int}s (RECENT_SYNC_INTERVAL{suffix}) elapsed, last sync {} ({}s ago)",
            local(tz, last_recent),
            now - last_recent
        );
        (Kind::Recent, recent_over, why)
    })
}

fn local<Tz: TimeZone>(tz: &Tz, t: i64) -> String {
    match tz.timestamp_opt(t, 0) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => {
            d.naive_local().format("%Y-%m-%d %H:%M:%S").to_string()
        }
        chrono::LocalResult::None => t.to_string(),
    }
}

/// The latest instant `<= now` at which the local clock read `start`
/// (HH:MM:00). A start time skipped by a DST change counts at the first
/// instant after the gap; one that occurs twice counts at its first
/// occurrence.
pub fn window_start<Tz: TimeZone>(tz: &Tz, now: i64, start: LocalTime) -> i64 {
    let today = match tz.timestamp_opt(now, 0) {
        chrono::LocalResult::Single(d) | chrono::LocalResult::Ambiguous(d, _) => {
            d.naive_local().date()
        }
        chrono::LocalResult::None => chrono::DateTime::from_timestamp(now, 0)
            .map(|d| d.naive_utc().date())
            .unwrap_or_default(),
    };
    let at = |date: NaiveDate| {
        date.and_hms_opt(start.hour, start.minute, 0)
            .map(|n| resolve_local(tz, n).timestamp())
    };
    match at(today) {
        Some(t) if t <= now => t,
        _ => today.pred_opt().and_then(at).unwrap_or(now - 86_400),
    }
}

/// The instant a local wall-clock time denotes: an ambiguous time means its
/// first occurrence, a nonexistent one (in a DST gap) the first instant
/// after the gap.
pub fn resolve_local<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(d) => d,
        chrono::LocalResult::Ambiguous(a, b) => {
            if a.timestamp() <= b.timestamp() {
                a
            } else {
                b
            }
        }
        chrono::LocalResult::None => {
            // In a gap: the smallest instant whose local reading is >= naive.
            // Local readings only move forward this close to a spring-forward gap.
            let guess = naive.and_utc().timestamp();
            let (mut lo, mut hi) = (guess - 26 * 3600, guess + 26 * 3600);
            let reads = |t: i64| {
                let utc = DateTime::from_timestamp(t, 0)
                    .unwrap_or_default()
                    .naive_utc();
                let offset = tz.offset_from_utc_datetime(&utc).fix().local_minus_utc();
                utc + chrono::Duration::seconds(offset as i64)
            };
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if reads(mid) >= naive {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let utc = DateTime::from_timestamp(lo, 0)
                .unwrap_or_default()
                .naive_utc();
            tz.from_utc_datetime(&utc)
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` (the `plan --at` argument) as local time in `tz`.
pub fn parse_at<Tz: TimeZone>(tz: &Tz, text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(resolve_local(tz, naive).timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Session;
    use chrono_tz::Europe::Warsaw;

    fn t(tz: &chrono_tz::Tz, s: &str) -> i64 {
        parse_at(tz, s).expect("valid time")
    }

    fn settings() -> Settings {
        Settings::from(&Config::default())
    }

    fn hi(emfdid: i64, recent: Option<i64>, full: Option<i64>) -> FolderInput {
        FolderInput {
            emfdid: Some(emfdid),
            acntid: 1,
            usrid: Some(10),
            hi: true,
            last_recent_sync_at: recent,
            last_full_sync_at: full,
            pending_large: false,
        }
    }

    fn lo(emfdid: i64, full: Option<i64>) -> FolderInput {
        FolderInput {
            hi: false,
            ..hi(emfdid, full, full)
        }
    }

    fn logged_in(now: i64) -> Vec<Session> {
        vec![Session {
            usrid: 10,
            last_activity_at: Some(now - 100),
        }]
    }

    fn kinds(tasks: &[Task]) -> Vec<(Option<i64>, &'static str)> {
        tasks.iter().map(|t| (t.emfdid, t.kind.as_str())).collect()
    }

    #[test]
    fn hi_intervals_table() {
        let now = 1_800_000_000;
        let s = settings();
        // (name, recent ago, full ago, logged in, expected kind)
        let cases: &[(&str, i64, i64, bool, Option<&str>)] = &[
            ("recent_not_due", 500, 1000, true, None),
            ("recent_due_exact", 600, 1000, true, Some("recent")),
            ("recent_due_in_grace", 540, 1000, true, Some("recent")),
            ("recent_just_before_grace", 539, 1000, true, None),
            ("full_due_logged_in", 100, 3540, true, Some("full")),
            ("full_not_due_logged_in", 100, 3539, true, None),
            ("nl_recent_not_due_at_600", 600, 1000, false, None),
            ("nl_recent_due_at_1740", 1740, 2000, false, Some("recent")),
            ("nl_full_not_due_at_3600", 100, 3600, false, None),
            ("nl_full_due_at_4740", 100, 4740, false, Some("full")),
            ("full_wins_over_recent", 3600, 3600, true, Some("full")),
        ];
        for (name, recent_ago, full_ago, li, want) in cases {
            let f = hi(1, Some(now - recent_ago), Some(now - full_ago));
            let sessions = if *li { logged_in(now) } else { vec![] };
            let tasks = plan(&[f], &sessions, &s, now, &Warsaw, false);
            assert_eq!(tasks.first().map(|t| t.kind.as_str()), *want, "{name}");
        }
    }

    #[test]
    fn session_timeout_edge() {
        let now = 1_800_000_000;
        let s = settings();
        let f = hi(1, Some(now - 700), Some(now - 1000));
        let at_edge = vec![Session {
            usrid: 10,
            last_activity_at: Some(now - 1440),
        }];
        let past_edge = vec![Session {
            usrid: 10,
            last_activity_at: Some(now - 1441),
        }];
        assert_eq!(
            plan(std::slice::from_ref(&f), &at_edge, &s, now, &Warsaw, false).len(),
            1
        );
        assert!(plan(&[f], &past_edge, &s, now, &Warsaw, false).is_empty());
    }

    #[test]
    fn cron_jitter_every_second_run_at_600() {
        // cron every 300 s with a few seconds of jitter; the plan time is written.
        let s = settings();
        let mut last = t(&Warsaw, "2026-06-01 12:00:03");
        let mut synced = vec![];
        for (i, jitter) in [1, 4, 0, 3, 2, 5, 1, 0].iter().enumerate() {
            let now = t(&Warsaw, "2026-06-01 12:00:00") + 300 * (i as i64 + 1) + jitter;
            let f = hi(1, Some(last), Some(last));
            if !plan(&[f], &logged_in(now), &s, now, &Warsaw, false).is_empty() {
                synced.push(i + 1);
                last = now;
            }
        }
        assert_eq!(synced, vec![2, 4, 6, 8]);
    }

    #[test]
    fn lo_window_table() {
        let s = settings();
        // (name, now, last full, due)
        let cases: &[(&str, &str, &str, bool)] = &[
            (
                "before_window_synced_yesterday_evening",
                "2026-06-02 19:59:59",
                "2026-06-01 20:05:00",
                false,
            ),
            (
                "window_opens",
                "2026-06-02 20:00:00",
                "2026-06-01 20:05:00",
                true,
            ),
            (
                "already_synced_tonight",
                "2026-06-02 20:10:00",
                "2026-06-02 20:00:30",
                false,
            ),
            (
                "window_crossed_midnight_missed",
                "2026-06-03 00:30:00",
                "2026-06-02 19:00:00",
                true,
            ),
            (
                "window_crossed_midnight_done",
                "2026-06-03 00:30:00",
                "2026-06-02 20:01:00",
                false,
            ),
            (
                "missed_evening_caught_up_next_morning",
                "2026-06-03 08:00:00",
                "2026-06-01 20:01:00",
                true,
            ),
            (
                "synced_exactly_at_window",
                "2026-06-02 21:00:00",
                "2026-06-02 20:00:00",
                false,
            ),
        ];
        for (name, now, last, want) in cases {
            let now = t(&Warsaw, now);
            let f = lo(1, Some(t(&Warsaw, last)));
            let tasks = plan(&[f], &[], &s, now, &Warsaw, false);
            assert_eq!(!tasks.is_empty(), *want, "{name}");
            if let Some(task) = tasks.first() {
                assert_eq!(task.kind, Kind::Full, "{name}");
            }
        }
    }

    #[test]
    fn lo_window_ignores_grace() {
        let s = settings();
        let now = t(&Warsaw, "2026-06-02 19:59:30");
        let f = lo(1, Some(t(&Warsaw, "2026-06-01 20:05:00")));
        assert!(plan(&[f], &[], &s, now, &Warsaw, false).is_empty());
    }

    #[test]
    fn window_start_dst_table() {
        // Warsaw: 2026-03-29 02:00 -> 03:00 (spring), 2026-10-25 03:00 -> 02:00 (fall).
        let hm = |hour, minute| LocalTime { hour, minute };
        let utc = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .expect("valid")
                .and_utc()
                .timestamp()
        };
        let cases: &[(&str, i64, LocalTime, i64)] = &[
            (
                "plain_evening",
                utc("2026-06-02 17:30:00"),
                hm(20, 0),
                utc("2026-06-01 18:00:00"),
            ),
            (
                "after_window_same_day",
                utc("2026-06-02 18:00:00"),
                hm(20, 0),
                utc("2026-06-02 18:00:00"),
            ),
            (
                "dst_spring_forward_gap",
                utc("2026-03-29 05:00:00"),
                hm(2, 30),
                utc("2026-03-29 01:00:00"),
            ),
            (
                "dst_spring_day_before_gap_instant",
                utc("2026-03-29 00:59:59"),
                hm(2, 30),
                utc("2026-03-28 01:30:00"),
            ),
            (
                "dst_fall_back_first_occurrence",
                utc("2026-10-25 00:30:00"),
                hm(2, 30),
                utc("2026-10-25 00:30:00"),
            ),
            (
                "dst_fall_back_counts_once",
                utc("2026-10-25 01:45:00"),
                hm(2, 30),
                utc("2026-10-25 00:30:00"),
            ),
            (
                "dst_spring_evening_window",
                utc("2026-03-29 17:30:00"),
                hm(20, 0),
                utc("2026-03-28 19:00:00"),
            ),
            (
                "dst_spring_evening_window_open",
                utc("2026-03-29 18:00:00"),
                hm(20, 0),
                utc("2026-03-29 18:00:00"),
            ),
            (
                "midnight_window",
                utc("2026-06-02 21:59:59"),
                hm(0, 0),
                utc("2026-06-01 22:00:00"),
            ),
        ];
        for (name, now, start, want) in cases {
            assert_eq!(window_start(&Warsaw, *now, *start), *want, "{name}");
        }
    }

    #[test]
    fn parse_at_table() {
        let utc = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .expect("valid")
                .and_utc()
                .timestamp()
        };
        assert_eq!(
            parse_at(&Warsaw, "2026-06-02 20:05:00"),
            Some(utc("2026-06-02 18:05:00"))
        );
        // nonexistent: the first instant after the gap
        assert_eq!(
            parse_at(&Warsaw, "2026-03-29 02:30:00"),
            Some(utc("2026-03-29 01:00:00"))
        );
        // ambiguous: first occurrence
        assert_eq!(
            parse_at(&Warsaw, "2026-10-25 02:30:00"),
            Some(utc("2026-10-25 00:30:00"))
        );
        for bad in [
            "2026-02-30 10:00:00",
            "2026-06-02 25:00:00",
            "2026-06-02",
            "yesterday",
            "",
        ] {
            assert_eq!(parse_at(&Warsaw, bad), None, "{bad}");
        }
    }

    #[test]
    fn next_due_table() {
        let s = settings();
        let now = t(&Warsaw, "2026-06-02 12:00:00");
        let f = hi(1, Some(now - 100), Some(now - 1000));
        assert_eq!(next_due(&f, true, &s, now, &Warsaw), now - 100 + 600 - 60);
        assert_eq!(next_due(&f, false, &s, now, &Warsaw), now - 100 + 1800 - 60);
        let f = lo(2, Some(t(&Warsaw, "2026-06-01 20:10:00")));
        assert_eq!(
            next_due(&f, false, &s, now, &Warsaw),
            t(&Warsaw, "2026-06-02 20:00:00")
        );
        let f = lo(2, Some(t(&Warsaw, "2026-05-30 20:10:00")));
        assert_eq!(
            next_due(&f, false, &s, now, &Warsaw),
            t(&Warsaw, "2026-06-01 20:00:00")
        );
        assert_eq!(next_due(&hi(3, None, None), true, &s, now, &Warsaw), now);
    }

    #[test]
    fn order_and_capacity() {
        let now = 1_800_000_000;
        let s = Settings {
            capacity: 3,
            ..settings()
        };
        let other_user = |mut f: FolderInput| {
            f.usrid = Some(99);
            f.acntid = 2;
            f
        };
        let folders = vec![
            lo(1, None),                                           // lo, never synced
            other_user(hi(2, Some(now - 4000), Some(now - 4000))), // hi not logged in, recent due
            hi(3, Some(now - 700), Some(now - 1000)),              // hi logged in, 100 s overdue
            hi(4, Some(now - 2000), Some(now - 2000)),             // hi logged in, 1400 s overdue
            hi(5, None, None),                                     // hi logged in, never synced
            lo(6, Some(now - 3 * 86_400)),                         // lo, missed evenings
        ];
        let tasks = plan(&folders, &logged_in(now), &s, now, &Warsaw, false);
        let order: Vec<i64> = tasks.iter().filter_map(|t| t.emfdid).collect();
        assert_eq!(order, vec![5, 4, 3, 2, 1, 6]);
        let deferred: Vec<bool> = tasks.iter().map(|t| t.deferred).collect();
        assert_eq!(deferred, vec![false, false, false, true, true, true]);
        assert_eq!(tasks[0].overdue, None);
        assert_eq!(tasks[1].overdue, Some(1400));
    }

    #[test]
    fn never_synced_and_force_and_new_account() {
        let now = 1_800_000_000;
        let s = settings();
        let mut fresh = hi(1, None, None);
        let done = hi(2, Some(now - 10), Some(now - 10));
        let newacct = FolderInput {
            emfdid: None,
            ..hi(0, None, None)
        };
        let tasks = plan(
            &[fresh.clone(), done.clone(), newacct],
            &[],
            &s,
            now,
            &Warsaw,
            false,
        );
        assert_eq!(kinds(&tasks), vec![(None, "full"), (Some(1), "full")]);
        let tasks = plan(&[fresh.clone(), done], &[], &s, now, &Warsaw, true);
        assert_eq!(kinds(&tasks), vec![(Some(1), "full"), (Some(2), "full")]);
        fresh.last_full_sync_at = Some(now - 10);
        fresh.last_recent_sync_at = Some(now - 10);
        fresh.pending_large = true;
        let tasks = plan(&[fresh], &[], &s, now, &Warsaw, false);
        assert_eq!(kinds(&tasks), vec![(Some(1), "recent")]);
        assert!(tasks[0].reason.contains("large"));
    }
}
