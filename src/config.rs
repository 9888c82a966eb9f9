//! The reader of the web application's PHP `config.inc` (SPEC §3).
//!
//! We take the `define('NAME', VALUE);` calls of the names in `KNOWN`, where
//! VALUE is TRUE/FALSE, an integer (also quoted, as PHP coerces it) or a
//! quoted string. The scanner knows just enough PHP to skip the rest: `<?php`,
//! comments, strings, heredocs and every other statement, so a commented-out
//! define or a `define(` inside a string counts for nothing, and nor do the
//! hundreds of other names, whatever their values. The file is bytes, in any
//! 8-bit encoding.
//!
//! It must not execute or evaluate PHP (an expression for one of our names is
//! an error, not a guess), nor read the clock or the environment, and must
//! never panic nor take more than linear time, whatever the input.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The engine's settings, each from a `define` of `config.inc` or its default.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `EMAIL_BACKGROUND_SYNC_ENABLED`: run IMAP sync at all.
    pub sync_enabled: bool,
    /// `EMAIL_OUTBOX_ENABLED`: drain the outbox at all.
    pub outbox_enabled: bool,
    /// `BG_MAX_THREADS`: most worker threads a run starts.
    pub max_threads: u32,
    /// `BG_MAX_TASKS_PER_THREAD`: most tasks queued on one worker in a run.
    pub max_tasks_per_thread: u32,
    /// `EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL` (s), owner logged in.
    pub hi_recent_interval: i64,
    /// `EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL` (s), owner not logged in.
    pub hi_recent_interval_nl: i64,
    /// `EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL` (s; the seed's doubled FOLDERS).
    pub hi_full_interval: i64,
    /// `EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL` (s).
    pub hi_full_interval_nl: i64,
    /// `EMAIL_BG_LO_FOLDERS_SYNC_START`: local time of the daily lo-folder sync.
    pub lo_sync_start: LocalTime,
    /// `BG_SESSION_TIMEOUT` (s): how recent activity must be to count as logged in.
    pub session_timeout: i64,
    /// `BG_MAX_CONNECTIONS_PER_ACCOUNT`: concurrent IMAP connections per account.
    pub max_connections_per_account: u32,
    /// `BG_IO_TIMEOUT` (s): longest any one network operation may block.
    pub io_timeout: u64,
    /// `BG_MAX_RUN_TIME` (s): after this a run starts no new batch.
    pub max_run_time: i64,
    /// `BG_SCHEDULE_GRACE` (s): a hi sync counts as due this much early.
    pub schedule_grace: i64,
    /// `EMAIL_OUTBOX_RETRY_MIN` (s): shortest backoff after a temporary failure.
    pub outbox_retry_min: i64,
    /// `EMAIL_OUTBOX_RETRY_MAX` (s): longest backoff.
    pub outbox_retry_max: i64,
    /// `EMAIL_OUTBOX_LIFETIME` (s): temporary failures become final after this.
    pub outbox_lifetime: i64,
    /// `BG_TLS_CA_FILE`: extra PEM CAs to trust; `''` means none. Kept as written
    /// (a relative path is the caller's to resolve).
    pub tls_ca_file: Option<PathBuf>,
    /// `BG_MAX_MESSAGE_SIZE` (bytes): larger messages are fetched apart; 0 = no limit.
    pub max_message_size: u64,
    /// `BG_LOGIN_RETRY_MIN` (s): the wait after a first refused login.
    pub login_retry_min: i64,
    /// `BG_LOGIN_RETRY_MAX` (s): the longest wait after refused logins.
    pub login_retry_max: i64,
    /// `BG_DATABASE_URL`: `''` for SQLite (`data/engine.sqlite`), else a
    /// `postgresql://` URL (checked where it is used, never printed whole).
    pub database_url: String,
    /// `BG_METRICS_FILE`: the Prometheus textfile every run writes; `''`
    /// means none. Kept as written, like `tls_ca_file`.
    pub metrics_file: Option<PathBuf>,
}

/// A local wall-clock time of day, `HH:MM` (seconds are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0..=23
    pub hour: u32,
    /// 0..=59
    pub minute: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sync_enabled: true,
            outbox_enabled: true,
            max_threads: 14,
            max_tasks_per_thread: 200,
            hi_recent_interval: 600,
            hi_recent_interval_nl: 1800,
            hi_full_interval: 3600,
            hi_full_interval_nl: 4800,
            lo_sync_start: LocalTime {
                hour: 20,
                minute: 0,
            },
            session_timeout: 1440,
            max_connections_per_account: 2,
            io_timeout: 60,
            max_run_time: 3300,
            schedule_grace: 60,
            outbox_retry_min: 300,
            outbox_retry_max: 4000,
            outbox_lifetime: 432_000,
            tls_ca_file: None,
            max_message_size: 26_214_400,
            login_retry_min: 900,
            login_retry_max: 86_400,
            database_url: String::new(),
            metrics_file: None,
        }
    }
}

/// A `config.inc` that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}: {message}", if *.line == 0 { String::new() } else { format!(":{}", .line) })]
pub struct ConfigError {
    /// The path as given by the caller.
    pub path: String,
    /// 1-based line of the offending `define`; 0 when the file as a whole failed.
    pub line: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// Read and parse a file; a missing file means defaults.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match std::fs::read(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(ConfigError {
            path: path.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
        }),
    }
}

/// Parse the text of a config.inc. `path` is only used in error messages, shown as given.
pub fn parse(text: &[u8], path: &str) -> Result<Config, ConfigError> {
    let error = |line, message| ConfigError {
        path: path.to_string(),
        line,
        message,
    };
    let toks = tokens(text);
    let mut config = Config::default();
    // The line of each known name's first define. PHP ignores the later ones,
    // and so do we before scanning their arguments: scanning those of every
    // define made a file of unclosed `define(` quadratic.
    let mut lines: HashMap<&str, usize> = HashMap::new();
    for i in 0..toks.len() {
        let Some((name, slot)) = known_define(&toks, i, text) else {
            continue;
        };
        if lines.contains_key(name) {
            continue;
        }
        let line = line_of(text, toks[i].start);
        lines.insert(name, line);
        // A missing value is no literal either: refused as an expression is.
        let (value, found) = match define_value(&toks, i + 1) {
            Ok(value) => (classify(value, text), source_text(value, text)),
            Err(found) => (Value::Other, found.to_string()),
        };
        slot.assign(&mut config, &value)
            .map_err(|expected| error(line, format!("{name} expects {expected}, got {found}")))?;
    }
    for &(least, most, get) in ORDERED {
        let (min, max) = get(&config);
        if min <= max {
            continue;
        }
        // Blame MOST's define, or LEAST's if MOST is left at its default.
        return Err(match lines.get(most) {
            Some(&line) => error(
                line,
                format!("{most} expects an integer >= {least} ({min}), got {max}"),
            ),
            None => error(
                lines.get(least).copied().unwrap_or(0),
                format!("{least} expects an integer <= {most} ({max}, the default), got {min}"),
            ),
        });
    }
    Ok(config)
}

// ---------------------------------------------------------------------------
// Our names and their types

/// Every name we read, its field and what it takes (an integer's least value).
/// A new constant is a row here and its field in [`Config`].
#[rustfmt::skip]
static KNOWN: &[(&str, Slot)] = &[
    ("EMAIL_BACKGROUND_SYNC_ENABLED", Slot::Bool(|c| &mut c.sync_enabled)),
    ("EMAIL_OUTBOX_ENABLED", Slot::Bool(|c| &mut c.outbox_enabled)),
    ("BG_MAX_THREADS", Slot::U32(|c| &mut c.max_threads, 1)),
    ("BG_MAX_TASKS_PER_THREAD", Slot::U32(|c| &mut c.max_tasks_per_thread, 1)),
    ("EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL", Slot::I64(|c| &mut c.hi_recent_interval, 0)),
    ("EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL", Slot::I64(|c| &mut c.hi_recent_interval_nl, 0)),
    ("EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL", Slot::I64(|c| &mut c.hi_full_interval, 0)),
    ("EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL", Slot::I64(|c| &mut c.hi_full_interval_nl, 0)),
    ("EMAIL_BG_LO_FOLDERS_SYNC_START", Slot::Time(|c| &mut c.lo_sync_start)),
    ("BG_SESSION_TIMEOUT", Slot::I64(|c| &mut c.session_timeout, 0)),
    ("BG_MAX_CONNECTIONS_PER_ACCOUNT", Slot::U32(|c| &mut c.max_connections_per_account, 1)),
    ("BG_IO_TIMEOUT", Slot::U64(|c| &mut c.io_timeout, 1)),
    ("BG_MAX_RUN_TIME", Slot::I64(|c| &mut c.max_run_time, 1)),
    ("BG_SCHEDULE_GRACE", Slot::I64(|c| &mut c.schedule_grace, 0)),
    ("EMAIL_OUTBOX_RETRY_MIN", Slot::I64(|c| &mut c.outbox_retry_min, 1)),
    ("EMAIL_OUTBOX_RETRY_MAX", Slot::I64(|c| &mut c.outbox_retry_max, 1)),
    ("EMAIL_OUTBOX_LIFETIME", Slot::I64(|c| &mut c.outbox_lifetime, 0)),
    ("BG_TLS_CA_FILE", Slot::Path(|c| &mut c.tls_ca_file)),
    ("BG_MAX_MESSAGE_SIZE", Slot::U64(|c| &mut c.max_message_size, 0)),
    ("BG_LOGIN_RETRY_MIN", Slot::I64(|c| &mut c.login_retry_min, 1)),
    ("BG_LOGIN_RETRY_MAX", Slot::I64(|c| &mut c.login_retry_max, 1)),
    ("BG_DATABASE_URL", Slot::Text(|c| &mut c.database_url)),
    ("BG_METRICS_FILE", Slot::Path(|c| &mut c.metrics_file)),
];

/// Names whose values must be in order: (least, most, both values).
#[rustfmt::skip]
static ORDERED: &[(&str, &str, fn(&Config) -> (i64, i64))] = &[
    ("EMAIL_OUTBOX_RETRY_MIN", "EMAIL_OUTBOX_RETRY_MAX", |c| (c.outbox_retry_min, c.outbox_retry_max)),
    ("BG_LOGIN_RETRY_MIN", "BG_LOGIN_RETRY_MAX", |c| (c.login_retry_min, c.login_retry_max)),
];

/// A field of [`Config`], by the type of value it takes.
enum Slot {
    Bool(fn(&mut Config) -> &mut bool),
    U32(fn(&mut Config) -> &mut u32, u32),
    U64(fn(&mut Config) -> &mut u64, u64),
    I64(fn(&mut Config) -> &mut i64, i64),
    Time(fn(&mut Config) -> &mut LocalTime),
    Path(fn(&mut Config) -> &mut Option<PathBuf>),
    Text(fn(&mut Config) -> &mut String),
}

impl Slot {
    /// Store `value`, or say what was expected instead.
    fn assign(&self, config: &mut Config, value: &Value) -> Result<(), Expected> {
        match (self, value) {
            (Slot::Bool(field), Value::Bool(b)) => *field(config) = *b,
            (Slot::Bool(_), _) => return Err(Expected::Bool),
            (Slot::U32(field, min), _) => *field(config) = integer(value, *min, u32::MAX)?,
            (Slot::U64(field, min), _) => *field(config) = integer(value, *min, u64::MAX)?,
            (Slot::I64(field, min), _) => *field(config) = integer(value, *min, i64::MAX)?,
            (Slot::Time(field), Value::Str(s)) => *field(config) = time(s)?,
            (Slot::Path(field), Value::Str(s)) => *field(config) = path(s)?,
            (Slot::Text(field), Value::Str(s)) => {
                *field(config) = String::from_utf8(s.clone()).map_err(|_| Expected::Utf8)?
            }
            (Slot::Time(_), _) => return Err(Expected::Time),
            (Slot::Path(_), _) => return Err(Expected::Path),
            (Slot::Text(_), _) => return Err(Expected::Text),
        }
        Ok(())
    }
}

/// What a name expects, said when its value is not that.
#[derive(Debug, thiserror::Error)]
enum Expected {
    #[error("a boolean (TRUE or FALSE)")]
    Bool,
    #[error("an integer >= {0}")]
    AtLeast(i128),
    #[error("an integer <= {0}")]
    AtMost(i128),
    #[error("a time 'HH:MM' (00:00 to 23:59)")]
    Time,
    #[error("a string (a file path, or '' for none)")]
    Path,
    #[error("a file path without NUL bytes")]
    PathWithoutNul,
    #[error("a string")]
    Text,
    #[error("a string of UTF-8 text")]
    Utf8,
}

/// An integer within `min..=max` (`max` is `T`'s own); PHP coerces a numeric
/// string ('14') where an integer is used.
fn integer<T>(value: &Value, min: T, max: T) -> Result<T, Expected>
where
    T: Copy + Into<i128> + TryFrom<i128>,
{
    let n = match value {
        Value::Int(n) => Some(*n),
        Value::Str(s) => parse_int(s.trim_ascii(), 10),
        _ => None,
    };
    match n {
        Some(n) if n >= min.into() => T::try_from(n).map_err(|_| Expected::AtMost(max.into())),
        _ => Err(Expected::AtLeast(min.into())),
    }
}

/// `H:MM` or `HH:MM`, 00:00 to 23:59.
fn time(s: &[u8]) -> Result<LocalTime, Expected> {
    let number = |d: &[u8]| {
        d.iter()
            .try_fold(0, |n, &b| Some(n * 10 + char::from(b).to_digit(10)?))
    };
    match s {
        [h @ .., b':', m1, m2] if (1..=2).contains(&h.len()) => {
            match (number(h), number(&[*m1, *m2])) {
                (Some(hour @ 0..=23), Some(minute @ 0..=59)) => Ok(LocalTime { hour, minute }),
                _ => Err(Expected::Time),
            }
        }
        _ => Err(Expected::Time),
    }
}

/// A file path, or none for `''`.
fn path(s: &[u8]) -> Result<Option<PathBuf>, Expected> {
    match s {
        [] => Ok(None),
        _ if s.contains(&0) => Err(Expected::PathWithoutNul),
        _ => Ok(Some(OsStr::from_bytes(s).into())),
    }
}

// ---------------------------------------------------------------------------
// Values

/// A define's value, as far as a literal goes.
enum Value {
    Bool(bool),
    /// Saturated at the bounds of an i128, beyond those of any field.
    Int(i128),
    /// A quoted string without interpolation.
    Str(Vec<u8>),
    /// Anything else: floats, NULL, constants, expressions, interpolation, nothing.
    Other,
}

fn classify(toks: &[Token], src: &[u8]) -> Value {
    let (sign, t) = match toks {
        [t] => (None, t),
        [sign, t] => (Some(sign.kind), t),
        _ => return Value::Other,
    };
    let lit = &src[t.start..t.end];
    // `\FALSE` is the same constant, fully qualified.
    let constant = matches!(sign, None | Some(Kind::Punct(b'\\'))) && t.kind == Kind::Word;
    let negative = sign == Some(Kind::Punct(b'-'));
    match (sign, t.kind) {
        (None, Kind::Str) => string_value(lit).map_or(Value::Other, Value::Str),
        _ if constant && lit.eq_ignore_ascii_case(b"true") => Value::Bool(true),
        _ if constant && lit.eq_ignore_ascii_case(b"false") => Value::Bool(false),
        (None | Some(Kind::Punct(b'+' | b'-')), Kind::Number) => match int_literal(lit) {
            Some(n) => Value::Int(if negative { -n } else { n }),
            None => Value::Other,
        },
        _ => Value::Other,
    }
}

/// A PHP integer literal: decimal, `0x`, `0b`, `0o` or `0` (octal), `_` between
/// digits. `None` if it is no integer (a float, say).
fn int_literal(lit: &[u8]) -> Option<i128> {
    let mut lit = lit.to_ascii_lowercase();
    lit.retain(|&b| b != b'_');
    match lit.as_slice() {
        [b'0', b'x', hex @ ..] => parse_int(hex, 16),
        [b'0', b'b', bin @ ..] => parse_int(bin, 2),
        [b'0', b'o', oct @ ..] => parse_int(oct, 8),
        [b'0', oct @ ..] if !oct.is_empty() => parse_int(oct, 8),
        dec => parse_int(dec, 10),
    }
}

/// Digits in `radix` after an optional sign, saturated at the bounds of an i128.
fn parse_int(s: &[u8], radix: u32) -> Option<i128> {
    let (sign, digits) = match s {
        [b'-', digits @ ..] => (-1, digits),
        [b'+', digits @ ..] | digits => (1, digits),
    };
    let n = digits.iter().try_fold(0i128, |n, &b| {
        let digit = char::from(b).to_digit(radix)?;
        Some(n.saturating_mul(radix.into()).saturating_add(digit.into()))
    });
    n.filter(|_| !digits.is_empty()).map(|n| sign * n)
}

/// The value's source text for messages: white space collapsed, shortened.
fn source_text(toks: &[Token], src: &[u8]) -> String {
    let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
        return String::new();
    };
    let raw = String::from_utf8_lossy(&src[first.start..last.end]);
    let text = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The bytes of a quoted string literal, PHP's escapes decoded; `None` for one
/// we do not take: interpolating a variable (`$x`, `{$`, `${`), a heredoc or a
/// backtick command.
fn string_value(lit: &[u8]) -> Option<Vec<u8>> {
    let (&quote, body) = lit.split_first()?;
    let mut rest = body.strip_suffix(&[quote])?;
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&c, tail)) = rest.split_first() {
        // The byte, and how many bytes after `c` said it.
        let (byte, used) = match (quote, c, tail.first().copied()) {
            (b'"', b'$', Some(n)) if n == b'{' || is_ident_start(n) => return None,
            (b'\'', b'\\', Some(e @ (b'\'' | b'\\'))) => (e, 1),
            // An unknown escape keeps its backslash.
            (b'"', b'\\', Some(e)) => escape(e, tail).unwrap_or((b'\\', 0)),
            (b'\'' | b'"', _, _) => (c, 0),
            _ => return None,
        };
        out.push(byte);
        rest = &tail[used..];
    }
    Some(out)
}

/// The escape `\e...` of a double-quoted string (`tail` starts at `e`): its
/// byte and length. `\u{...}` is left undecoded: no value of ours needs it.
fn escape(e: u8, tail: &[u8]) -> Option<(u8, usize)> {
    match e {
        b'n' => Some((b'\n', 1)),
        b't' => Some((b'\t', 1)),
        b'r' => Some((b'\r', 1)),
        b'v' => Some((0x0b, 1)),
        b'e' => Some((0x1b, 1)),
        b'f' => Some((0x0c, 1)),
        b'\\' | b'$' | b'"' => Some((e, 1)),
        // `\x41`: 1 or 2 hex digits.
        b'x' => code(&tail[1..], 16, 2).map(|(byte, len)| (byte, len + 1)),
        // `\101`: 1 to 3 octal digits.
        _ => code(tail, 8, 3),
    }
}

/// A byte written as 1 to `max` digits in `radix`, and how many digits; of
/// `\777` PHP keeps the low byte.
fn code(digits: &[u8], radix: u32, max: usize) -> Option<(u8, usize)> {
    let digits = &digits[..max.min(digits.len())];
    let len = run(digits, |b| char::from(b).is_digit(radix));
    let n = u32::from_str_radix(std::str::from_utf8(&digits[..len]).ok()?, radix).ok()?;
    Some(((n & 0xff) as u8, len))
}

// ---------------------------------------------------------------------------
// define( ... ) calls

/// The known name defined by the call at token `i`, if it is one: of the global
/// function `define` (not `$o->define(`, `C::define(`, `Ns\define(` or
/// `$define(`), with a string literal as its whole first argument (not
/// `'BG_' . $x`).
fn known_define(toks: &[Token], i: usize, src: &[u8]) -> Option<&'static (&'static str, Slot)> {
    let kind = |j: usize| toks.get(j).map(|t| t.kind);
    let call = matches!(
        (kind(i), kind(i + 1), kind(i + 2), kind(i + 3)),
        (
            Some(Kind::Word),
            Some(Kind::Punct(b'(')),
            Some(Kind::Str),
            None | Some(Kind::Punct(b',' | b')' | b';'))
        )
    );
    let before = |back: usize| i.checked_sub(back).map(|j| &toks[j]);
    let member = match (before(2), before(1)) {
        (_, Some(b)) if b.kind == Kind::Punct(b'$') => b.end == toks[i].start,
        (Some(a), Some(b)) if a.end == b.start => matches!(
            (a.kind, b.kind),
            (Kind::Punct(b'-'), Kind::Punct(b'>'))
                | (Kind::Punct(b':'), Kind::Punct(b':'))
                | (Kind::Word, Kind::Punct(b'\\'))
        ),
        _ => false,
    };
    let text = |j: usize| &src[toks[j].start..toks[j].end];
    if !call || member || !text(i).eq_ignore_ascii_case(b"define") {
        return None;
    }
    let name = string_value(text(i + 2))?;
    KNOWN.iter().find(|(known, _)| known.as_bytes() == name)
}

/// The tokens of the second argument of the call whose `(` is token `open`,
/// or what was found instead (for the message).
fn define_value(toks: &[Token], open: usize) -> Result<&[Token], &'static str> {
    let mut depth = 0usize;
    // Where the arguments end: each `,` at the call's level, then its `)`.
    let mut ends = Vec::new();
    for (j, t) in toks.iter().enumerate().skip(open + 1) {
        match t.kind {
            Kind::Punct(b'(' | b'[' | b'{') => depth += 1,
            Kind::Punct(b')' | b']' | b'}') if depth > 0 => depth -= 1,
            Kind::Punct(b',') if depth == 0 => ends.push(j),
            Kind::Punct(b';') if depth == 0 => {
                return Err("a define without its closing parenthesis")
            }
            Kind::Punct(b')') => {
                ends.push(j);
                return match ends[..] {
                    [first, second, ..] if second > first + 1 => Ok(&toks[first + 1..second]),
                    _ => Err("no value"),
                };
            }
            _ => {}
        }
    }
    Err("an unterminated define")
}

fn line_of(src: &[u8], at: usize) -> usize {
    1 + src[..at].iter().filter(|&&b| b == b'\n').count()
}

// ---------------------------------------------------------------------------
// The scanner

/// What the scanner tells apart; white space and comments leave no token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A name or keyword (the `$` of a variable is a `Punct`).
    Word,
    /// A number, integer or not (the `.` of a float is a `Punct`).
    Number,
    /// A quoted string, a backtick command or a heredoc.
    Str,
    /// Any other byte of code.
    Punct(u8),
}

struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// The tokens of `src`, up to a string, heredoc or comment left open (which
/// leaves a define around it unterminated).
fn tokens(src: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some((kind, len)) = src.get(start..).and_then(token) {
        let end = start + len;
        out.extend(kind.map(|kind| Token { kind, start, end }));
        start = end;
    }
    out
}

/// The token at the start of `rest` (`None` for white space or a comment) and
/// its length; `None` at the end of the file or at what stays open to it.
fn token(rest: &[u8]) -> Option<(Option<Kind>, usize)> {
    let b = *rest.first()?;
    Some(match b {
        b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => (None, 1),
        // A line comment also ends at `?>` (PHP's rule).
        _ if b == b'#' || rest.starts_with(b"//") => {
            let end = (0..rest.len()).find(|&i| rest[i] == b'\n' || rest[i..].starts_with(b"?>"));
            (None, end.unwrap_or(rest.len()))
        }
        _ if rest.starts_with(b"/*") => (None, find(&rest[2..], b"*/")? + 4),
        b'\'' | b'"' | b'`' => (Some(Kind::Str), string_len(rest)?),
        b'<' => match heredoc_len(rest) {
            Some(len) => (Some(Kind::Str), len?),
            None => (Some(Kind::Punct(b'<')), 1),
        },
        // `?>` ends a statement, as `;` does; up to the next `<?` is HTML.
        _ if rest.starts_with(b"?>") => (
            Some(Kind::Punct(b';')),
            find(rest, b"<?").unwrap_or(rest.len()),
        ),
        b'0'..=b'9' => (Some(Kind::Number), run(rest, is_ident_char)),
        _ if is_ident_char(b) => (Some(Kind::Word), run(rest, is_ident_char)),
        _ => (Some(Kind::Punct(b)), 1),
    })
}

/// A quoted string's length. A backslash escapes the next byte, whatever it
/// is: enough to find the end without decoding.
fn string_len(rest: &[u8]) -> Option<usize> {
    let mut i = 1;
    while let Some(&c) = rest.get(i) {
        if c == rest[0] {
            return Some(i + 1);
        }
        i += if c == b'\\' { 2 } else { 1 };
    }
    None
}

/// `<<<ID`, `<<<'ID'` or `<<<"ID"` and a line end open a heredoc; the first
/// line holding ID after its indentation closes it. `None`: no heredoc here;
/// `Some(None)`: open to the end of the file.
fn heredoc_len(rest: &[u8]) -> Option<Option<usize>> {
    let blank = |c: u8| c == b' ' || c == b'\t';
    let opener = rest.strip_prefix(b"<<<")?;
    let opener = &opener[run(opener, blank)..];
    let (quote, opener) = match opener {
        [q @ (b'\'' | b'"'), tail @ ..] => (std::slice::from_ref(q), tail),
        _ => (&[][..], opener),
    };
    let label = &opener[..run(opener, is_ident_char)];
    if !label.first().copied().is_some_and(is_ident_start) {
        return None;
    }
    let opener = opener[label.len()..].strip_prefix(quote)?;
    let body = opener
        .strip_prefix(b"\r")
        .unwrap_or(opener)
        .strip_prefix(b"\n")?;
    let mut line = rest.len() - body.len();
    loop {
        let at = line + run(&rest[line..], blank);
        let end = at + label.len();
        if rest[at..].starts_with(label) && !rest.get(end).copied().is_some_and(is_ident_char) {
            return Some(Some(end));
        }
        match find(&rest[line..], b"\n") {
            Some(nl) => line += nl + 1,
            None => return Some(None),
        }
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// How many bytes at the start of `s` satisfy `f`.
fn run(s: &[u8], f: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|&&b| f(b)).count()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text.as_bytes(), "config.inc")
    }

    /// A config.inc in the style of the real web application's: hundreds of
    /// other constants, every kind of comment and statement, and ours
    /// scattered in between. Line numbers matter to the error tests below.
    fn big_config(ours: &str) -> String {
        let mut s = String::from(
            "<?php\n\
             /**\n\
              * Konfiguracja aplikacji.\n\
              * define('BG_MAX_THREADS', 99);  <- inside a doc comment: ignored\n\
              */\n\
             require_once(dirname(__FILE__) . '/config.local.inc');\n\
             require_once 'lib/defaults.php';\n\
             error_reporting(E_ALL & ~E_NOTICE);\n\
             date_default_timezone_set('Europe/Warsaw');\n\
             $db_config = array('host' => 'localhost', 'user' => 'crm', 'pass' => \"p@ss;'\\\"\");\n\
             $modules = ['crm', 'docs', 'email'];\n\
             # define('EMAIL_OUTBOX_ENABLED', FALSE); shell-style comment\n\
             // define('BG_IO_TIMEOUT', 0); C++-style comment\n\
             define('APP_NAME', 'Obieg dokumentów');\n\
             define('APP_ROOT', dirname(__FILE__) . '/');\n\
             define('APP_URL', 'https://' . $_SERVER['HTTP_HOST'] . '/');\n\
             define(\"DB_CHARSET\", \"utf8\");\n\
             define('SOME_LIST', array(1, 2, 3));\n\
             define('SOME_SHORT_LIST', [4, 5, 'six' => 6]);\n\
             define('UPLOAD_MAX', 20 * 1024 * 1024);\n\
             define('HELP_TEXT', 'It\\'s a define(\\'BG_MAX_THREADS\\', 1) in a string');\n\
             $x = \"define('BG_MAX_THREADS', 2);\";\n\
             if (!defined('LANG')) { define('LANG', 'pl'); }\n\
             if (file_exists('/etc/crm/debug')) {\n\
             \x20   define('DEBUG', TRUE);\n\
             } else {\n\
             \x20   define('DEBUG', false);\n\
             }\n\
             $tmpl = <<<EOT\n\
             define('BG_MAX_THREADS', 3);\n\
             EOT;\n\
             $obj->define('BG_MAX_THREADS', 4);\n\
             Config::define('BG_MAX_THREADS', 5);\n\
             function define_all() { return 1; }\n",
        );
        // Lines 35..=94: 60 other defines, with Latin-2 bytes in comments.
        for i in 0..60 {
            s.push_str(&format!(
                "define('MODULE_{i}_ENABLED', {}); // moduł\n",
                i % 2 == 0
            ));
        }
        s.push_str("/* multi-line\n   comment with define('BG_MAX_THREADS', 7);\n*/\n");
        s.push_str(ours);
        s.push_str("\n?>\n");
        s
    }

    #[test]
    fn big_config_without_our_names_gives_defaults() {
        let mut text = big_config("").into_bytes();
        // A Latin-2 comment (not UTF-8): "zażółć" in ISO-8859-2.
        text.extend_from_slice(b"<?php // za\xbf\xf3\xb3\xe6\n");
        assert_eq!(parse(&text, "config.inc"), Ok(Config::default()));
    }

    #[test]
    fn big_config_finds_every_known_name() {
        let ours = "\
define('EMAIL_BACKGROUND_SYNC_ENABLED', FALSE);
DEFINE ( \"EMAIL_OUTBOX_ENABLED\" , false ) ;
define('BG_MAX_THREADS', '4');
define('BG_MAX_TASKS_PER_THREAD', \"50\");
define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL', 300);
define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL',
       900);
define('EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL', 1_800);
define('EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL', 0x12C0, true);
define('EMAIL_BG_LO_FOLDERS_SYNC_START', '7:05');
define('BG_SESSION_TIMEOUT', 3600); # an hour
define('BG_MAX_CONNECTIONS_PER_ACCOUNT', 1 /* a strict server */);
define('BG_IO_TIMEOUT', 30);
define('BG_MAX_RUN_TIME', 600);
define('BG_SCHEDULE_GRACE', 0);
define('EMAIL_OUTBOX_RETRY_MIN', 60);
define('EMAIL_OUTBOX_RETRY_MAX', 60);
define('EMAIL_OUTBOX_LIFETIME', 86400);
\\define('BG_TLS_CA_FILE', \"/etc/ssl/firma\\x2Dca.pem\");
define('BG_MAX_MESSAGE_SIZE', 0);
define('BG_LOGIN_RETRY_MIN', '120');
define('BG_LOGIN_RETRY_MAX', 7200);
define('BG_DATABASE_URL', 'postgresql://engine@db.example.com/mail?sslmode=verify-full');
define('BG_METRICS_FILE', '/var/lib/prometheus/node-exporter/backproc.prom');
define('BG_MAX_THREADS', 9); // second define: PHP keeps the first
";
        let got = parse_str(&big_config(ours)).expect("valid");
        let want = Config {
            sync_enabled: false,
            outbox_enabled: false,
            max_threads: 4,
            max_tasks_per_thread: 50,
            hi_recent_interval: 300,
            hi_recent_interval_nl: 900,
            hi_full_interval: 1800,
            hi_full_interval_nl: 4800,
            lo_sync_start: LocalTime { hour: 7, minute: 5 },
            session_timeout: 3600,
            max_connections_per_account: 1,
            io_timeout: 30,
            max_run_time: 600,
            schedule_grace: 0,
            outbox_retry_min: 60,
            outbox_retry_max: 60,
            outbox_lifetime: 86400,
            tls_ca_file: Some(PathBuf::from("/etc/ssl/firma-ca.pem")),
            max_message_size: 0,
            login_retry_min: 120,
            login_retry_max: 7200,
            database_url: "postgresql://engine@db.example.com/mail?sslmode=verify-full".into(),
            metrics_file: Some(PathBuf::from(
                "/var/lib/prometheus/node-exporter/backproc.prom",
            )),
        };
        assert_eq!(got, want);
    }

    #[test]
    #[rustfmt::skip]
    fn single_values_parse() {
        let d = Config::default();
        let cases: &[(&str, &str, Config)] = &[
            ("bool_lowercase", "define('EMAIL_OUTBOX_ENABLED', false);", Config { outbox_enabled: false, ..d.clone() }),
            ("bool_mixed_case", "define('EMAIL_OUTBOX_ENABLED', FaLsE);", Config { outbox_enabled: false, ..d.clone() }),
            ("bool_fully_qualified", "define('EMAIL_OUTBOX_ENABLED', \\FALSE);", Config { outbox_enabled: false, ..d.clone() }),
            ("define_mixed_case", "Define('BG_MAX_THREADS', 3);", Config { max_threads: 3, ..d.clone() }),
            ("double_quoted_name", "define(\"BG_MAX_THREADS\", 3);", Config { max_threads: 3, ..d.clone() }),
            ("quoted_int_single", "define('BG_MAX_THREADS', '3');", Config { max_threads: 3, ..d.clone() }),
            ("quoted_int_double", "define('BG_MAX_THREADS', \"3\");", Config { max_threads: 3, ..d.clone() }),
            ("quoted_int_spaces", "define('BG_MAX_THREADS', ' 3 ');", Config { max_threads: 3, ..d.clone() }),
            ("quoted_int_leading_zero_is_decimal", "define('BG_MAX_THREADS', '010');", Config { max_threads: 10, ..d.clone() }),
            ("octal_literal", "define('BG_MAX_THREADS', 010);", Config { max_threads: 8, ..d.clone() }),
            ("binary_literal", "define('BG_MAX_THREADS', 0b11);", Config { max_threads: 3, ..d.clone() }),
            ("plus_sign", "define('BG_MAX_THREADS', +3);", Config { max_threads: 3, ..d.clone() }),
            ("no_whitespace", "define('BG_MAX_THREADS',3);", Config { max_threads: 3, ..d.clone() }),
            ("whitespace_everywhere", "define \t(\n'BG_MAX_THREADS'\n,\n3\n)\n;", Config { max_threads: 3, ..d.clone() }),
            ("third_argument_ignored", "define('BG_MAX_THREADS', 3, TRUE);", Config { max_threads: 3, ..d.clone() }),
            ("no_semicolon_before_close_tag", "define('BG_MAX_THREADS', 3) ?>", Config { max_threads: 3, ..d.clone() }),
            ("name_is_case_sensitive", "define('bg_max_threads', 3);", d.clone()),
            ("time_two_digit_hour", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '23:59');", Config { lo_sync_start: LocalTime { hour: 23, minute: 59 }, ..d.clone() }),
            ("time_midnight", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', \"00:00\");", Config { lo_sync_start: LocalTime { hour: 0, minute: 0 }, ..d.clone() }),
            ("empty_ca_file_is_none", "define('BG_TLS_CA_FILE', '');", d.clone()),
            ("empty_metrics_file_is_off", "define('BG_METRICS_FILE', '');", d.clone()),
            ("ca_file_single_quote_escapes", "define('BG_TLS_CA_FILE', 'C:\\\\x\\'y\\n');", Config { tls_ca_file: Some(PathBuf::from("C:\\x'y\\n")), ..d.clone() }),
            ("ca_file_double_quote_escapes", "define('BG_TLS_CA_FILE', \"/a\\tb\\$c\\\"\\101\");", Config { tls_ca_file: Some(PathBuf::from("/a\tb$c\"A")), ..d.clone() }),
            ("ca_file_unknown_escape_kept", "define('BG_TLS_CA_FILE', \"/a\\qb\");", Config { tls_ca_file: Some(PathBuf::from("/a\\qb")), ..d.clone() }),
            ("ca_file_numeric_string_is_a_path", "define('BG_TLS_CA_FILE', '123');", Config { tls_ca_file: Some(PathBuf::from("123")), ..d.clone() }),
            ("zero_grace_allowed", "define('BG_SCHEDULE_GRACE', 0);", Config { schedule_grace: 0, ..d.clone() }),
            ("zero_size_means_unlimited", "define('BG_MAX_MESSAGE_SIZE', 0);", Config { max_message_size: 0, ..d.clone() }),
            ("retry_max_equal_min", "define('EMAIL_OUTBOX_RETRY_MIN', 4000);", Config { outbox_retry_min: 4000, ..d.clone() }),
            ("unknown_name_unterminated", "define('OTHER', 'abc", d.clone()),
            ("unknown_name_expression", "define('X', FOO . 'bar'); define('Y', f(1, [2, 3]));", d.clone()),
            ("computed_name_ignored", "define('BG_' . 'MAX_THREADS', 0);", d.clone()),
            ("inline_html_ignored", "<?php ?>define('BG_MAX_THREADS', 0);<?php", d.clone()),
            ("comment_ends_at_close_tag", "<?php // x ?>define('BG_MAX_THREADS', 0);", d.clone()),
            ("namespaced_function_ignored", "Foo\\define('BG_MAX_THREADS', 0);", d.clone()),
            ("function_named_define_ignored", "function define($a, $b) {}", d.clone()),
            ("nullsafe_method_ignored", "$a?->define('BG_MAX_THREADS', 0);", d.clone()),
            ("nowdoc_ignored", "$a = <<<'EOT'\n  define('BG_MAX_THREADS', 0);\n  EOT;\n", d.clone()),
            ("unterminated_comment", "/* define('BG_MAX_THREADS', 0);", d.clone()),
            ("empty_file", "", d.clone()),
        ];
        for (case, text, want) in cases {
            assert_eq!(parse_str(text).as_ref(), Ok(want), "{case}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn errors_name_the_line_and_what_was_found() {
        let cases: &[(&str, &str, usize, &str)] = &[
            ("bool_from_string", "define('EMAIL_OUTBOX_ENABLED', 'many');", 1, "EMAIL_OUTBOX_ENABLED expects a boolean (TRUE or FALSE), got 'many'"),
            ("bool_from_int", "\ndefine('EMAIL_OUTBOX_ENABLED', 1);", 2, "EMAIL_OUTBOX_ENABLED expects a boolean (TRUE or FALSE), got 1"),
            ("bool_from_quoted_true", "define('EMAIL_BACKGROUND_SYNC_ENABLED', 'TRUE');", 1, "EMAIL_BACKGROUND_SYNC_ENABLED expects a boolean (TRUE or FALSE), got 'TRUE'"),
            ("bool_from_null", "define('EMAIL_OUTBOX_ENABLED', NULL);", 1, "EMAIL_OUTBOX_ENABLED expects a boolean (TRUE or FALSE), got NULL"),
            ("int_from_word", "define('BG_MAX_THREADS', 'many');", 1, "BG_MAX_THREADS expects an integer >= 1, got 'many'"),
            ("int_from_bool", "define('BG_MAX_THREADS', TRUE);", 1, "BG_MAX_THREADS expects an integer >= 1, got TRUE"),
            ("int_from_float", "define('BG_IO_TIMEOUT', 1.5);", 1, "BG_IO_TIMEOUT expects an integer >= 1, got 1.5"),
            ("int_from_exponent", "define('BG_IO_TIMEOUT', 1e3);", 1, "BG_IO_TIMEOUT expects an integer >= 1, got 1e3"),
            ("int_from_float_string", "define('BG_IO_TIMEOUT', '60.0');", 1, "BG_IO_TIMEOUT expects an integer >= 1, got '60.0'"),
            ("int_from_expression", "define('BG_MAX_RUN_TIME', 55 * 60);", 1, "BG_MAX_RUN_TIME expects an integer >= 1, got 55 * 60"),
            ("int_from_constant", "define('BG_MAX_RUN_TIME', OTHER_CONST);", 1, "BG_MAX_RUN_TIME expects an integer >= 1, got OTHER_CONST"),
            ("int_from_interpolated_string", "define('BG_MAX_RUN_TIME', \"$n\");", 1, "BG_MAX_RUN_TIME expects an integer >= 1, got \"$n\""),
            ("zero_threads", "define('BG_MAX_THREADS', 0);", 1, "BG_MAX_THREADS expects an integer >= 1, got 0"),
            ("zero_tasks", "define('BG_MAX_TASKS_PER_THREAD', '0');", 1, "BG_MAX_TASKS_PER_THREAD expects an integer >= 1, got '0'"),
            ("zero_connections", "define('BG_MAX_CONNECTIONS_PER_ACCOUNT', 0);", 1, "BG_MAX_CONNECTIONS_PER_ACCOUNT expects an integer >= 1, got 0"),
            ("negative_interval", "define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL', -600);", 1, "EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL expects an integer >= 0, got -600"),
            ("negative_interval_spaced", "define('EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL', - 1);", 1, "EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL expects an integer >= 0, got - 1"),
            ("negative_quoted_interval", "define('EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL', '-1');", 1, "EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL expects an integer >= 0, got '-1'"),
            ("negative_full_interval", "define('EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL', -1);", 1, "EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL expects an integer >= 0, got -1"),
            ("negative_grace", "define('BG_SCHEDULE_GRACE', -5);", 1, "BG_SCHEDULE_GRACE expects an integer >= 0, got -5"),
            ("negative_session_timeout", "define('BG_SESSION_TIMEOUT', -1);", 1, "BG_SESSION_TIMEOUT expects an integer >= 0, got -1"),
            ("negative_lifetime", "define('EMAIL_OUTBOX_LIFETIME', -1);", 1, "EMAIL_OUTBOX_LIFETIME expects an integer >= 0, got -1"),
            ("negative_size", "define('BG_MAX_MESSAGE_SIZE', -1);", 1, "BG_MAX_MESSAGE_SIZE expects an integer >= 0, got -1"),
            ("zero_io_timeout", "define('BG_IO_TIMEOUT', 0);", 1, "BG_IO_TIMEOUT expects an integer >= 1, got 0"),
            ("zero_run_time", "define('BG_MAX_RUN_TIME', 0);", 1, "BG_MAX_RUN_TIME expects an integer >= 1, got 0"),
            ("zero_retry_min", "define('EMAIL_OUTBOX_RETRY_MIN', 0);", 1, "EMAIL_OUTBOX_RETRY_MIN expects an integer >= 1, got 0"),
            ("threads_above_u32", "define('BG_MAX_THREADS', 4294967296);", 1, "BG_MAX_THREADS expects an integer <= 4294967295, got 4294967296"),
            ("int_overflowing_everything", "define('BG_MAX_RUN_TIME', 999999999999999999999999999999999999999999);", 1, "BG_MAX_RUN_TIME expects an integer <= 9223372036854775807, got 999999999999999999999999999999999999999999"),
            ("retry_max_below_min", "define('EMAIL_OUTBOX_RETRY_MIN', 600);\n\ndefine('EMAIL_OUTBOX_RETRY_MAX', 500);", 3, "EMAIL_OUTBOX_RETRY_MAX expects an integer >= EMAIL_OUTBOX_RETRY_MIN (600), got 500"),
            ("retry_min_above_default_max", "\ndefine('EMAIL_OUTBOX_RETRY_MIN', 5000);", 2, "EMAIL_OUTBOX_RETRY_MIN expects an integer <= EMAIL_OUTBOX_RETRY_MAX (4000, the default), got 5000"),
            ("zero_login_retry_min", "define('BG_LOGIN_RETRY_MIN', 0);", 1, "BG_LOGIN_RETRY_MIN expects an integer >= 1, got 0"),
            ("login_retry_max_below_min", "define('BG_LOGIN_RETRY_MIN', 600);\ndefine('BG_LOGIN_RETRY_MAX', 60);", 2, "BG_LOGIN_RETRY_MAX expects an integer >= BG_LOGIN_RETRY_MIN (600), got 60"),
            ("time_hour_25", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '25:00');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '25:00'"),
            ("time_minute_60", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '12:60');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '12:60'"),
            ("time_hour_only_string", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '7');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '7'"),
            ("time_one_digit_minute", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '7:5');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '7:5'"),
            ("time_with_seconds", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '20:00:00');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '20:00:00'"),
            ("time_from_int", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', 20);", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got 20"),
            ("time_from_bool", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', TRUE);", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got TRUE"),
            ("time_empty", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '');", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got ''"),
            ("ca_file_from_int", "define('BG_TLS_CA_FILE', 0);", 1, "BG_TLS_CA_FILE expects a string (a file path, or '' for none), got 0"),
            ("ca_file_with_nul", "define('BG_TLS_CA_FILE', \"/a\\0b\");", 1, "BG_TLS_CA_FILE expects a file path without NUL bytes, got \"/a\\0b\""),
            ("metrics_file_from_bool", "define('BG_METRICS_FILE', TRUE);", 1, "BG_METRICS_FILE expects a string (a file path, or '' for none), got TRUE"),
            ("empty_value", "define('BG_MAX_THREADS', );", 1, "BG_MAX_THREADS expects an integer >= 1, got no value"),
            ("missing_value", "define('BG_MAX_THREADS');", 1, "BG_MAX_THREADS expects an integer >= 1, got no value"),
            ("missing_close_paren", "define('BG_MAX_THREADS', 3;\n", 1, "BG_MAX_THREADS expects an integer >= 1, got a define without its closing parenthesis"),
            ("unterminated_at_eof", "\n\ndefine('BG_MAX_THREADS',\n 3", 3, "BG_MAX_THREADS expects an integer >= 1, got an unterminated define"),
            ("unterminated_string_value", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '20:00);\n", 1, "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got an unterminated define"),
            ("multiline_define_reports_first_line", "// a\n/* b\n c */\ndefine(\n  'BG_MAX_THREADS',\n  0\n);", 4, "BG_MAX_THREADS expects an integer >= 1, got 0"),
            ("first_definition_wins_even_if_bad", "define('BG_MAX_THREADS', 0);\ndefine('BG_MAX_THREADS', 4);", 1, "BG_MAX_THREADS expects an integer >= 1, got 0"),
            ("long_value_shortened", "define('BG_MAX_THREADS', aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa);", 1, "BG_MAX_THREADS expects an integer >= 1, got aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."),
        ];
        for (case, text, line, message) in cases {
            let err = parse_str(text).expect_err(case);
            assert_eq!(
                (err.line, err.message.as_str(), err.path.as_str()),
                (*line, *message, "config.inc"),
                "{case}"
            );
        }
    }

    #[test]
    #[rustfmt::skip]
    fn calls_and_values_at_the_edges() {
        let d = Config::default();
        let ok: &[(&str, &str, Config)] = &[
            ("global_define_after_a_word", "echo \\define('BG_MAX_THREADS', 3);", Config { max_threads: 3, ..d.clone() }),
            ("variable_function_ignored", "$define('BG_MAX_THREADS', 0);", d.clone()),
            ("method_call_with_spaces_ignored", "$o -> define('BG_MAX_THREADS', 0);", d.clone()),
            ("static_call_ignored", "Config::define('BG_MAX_THREADS', 0);", d.clone()),
            ("close_tag_comment_string", "?><p>'</p><?php define('BG_MAX_THREADS', 3);", Config { max_threads: 3, ..d.clone() }),
            ("heredoc_closed_by_indented_label", "$a = <<<\"EOT\"\r\ndefine('BG_MAX_THREADS', 0);\r\n\tEOT;\ndefine('BG_MAX_THREADS', 3);", Config { max_threads: 3, ..d.clone() }),
        ];
        for (case, text, want) in ok {
            assert_eq!(parse_str(text).as_ref(), Ok(want), "{case}");
        }
        let err: &[(&str, &str, &str)] = &[
            ("ca_file_interpolated", "define('BG_TLS_CA_FILE', \"$dir/ca.pem\");", "BG_TLS_CA_FILE expects a string (a file path, or '' for none), got \"$dir/ca.pem\""),
            ("ca_file_from_backticks", "define('BG_TLS_CA_FILE', `cat x`);", "BG_TLS_CA_FILE expects a string (a file path, or '' for none), got `cat x`"),
            ("ca_file_from_heredoc", "define('BG_TLS_CA_FILE', <<<EOT\n/ca.pem\nEOT);", "BG_TLS_CA_FILE expects a string (a file path, or '' for none), got <<<EOT /ca.pem EOT"),
            ("int_underflowing_everything", "define('BG_MAX_RUN_TIME', -999999999999999999999999999999999999999999);", "BG_MAX_RUN_TIME expects an integer >= 1, got -999999999999999999999999999999999999999999"),
            ("time_with_sign", "define('EMAIL_BG_LO_FOLDERS_SYNC_START', '+7:00');", "EMAIL_BG_LO_FOLDERS_SYNC_START expects a time 'HH:MM' (00:00 to 23:59), got '+7:00'"),
            ("numeric_string_with_two_signs", "define('BG_MAX_THREADS', '+-3');", "BG_MAX_THREADS expects an integer >= 1, got '+-3'"),
        ];
        for (case, text, message) in err {
            let e = parse_str(text).expect_err(case);
            assert_eq!((e.line, e.message.as_str()), (1, *message), "{case}");
        }
    }

    #[test]
    fn errors_in_the_big_config_have_its_line_numbers() {
        // Line 98 is the first line after the 97 lines of big_config's preamble.
        let text = big_config("\n\ndefine('BG_MAX_THREADS', 'many');");
        let err = parse_str(&text).expect_err("bad value");
        assert_eq!(
            err.to_string(),
            "config.inc:100: BG_MAX_THREADS expects an integer >= 1, got 'many'"
        );
        let expected_line = text
            .lines()
            .position(|l| l.starts_with("define('BG_MAX_THREADS', 'many')"))
            .map(|p| p + 1);
        assert_eq!(Some(err.line), expected_line);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed: u64 = 7;
        let pieces: &[&[u8]] = &[
            b"define",
            b"DEFINE",
            b"(",
            b")",
            b",",
            b";",
            b"'",
            b"\"",
            b"\\",
            b"BG_MAX_THREADS",
            b"'BG_MAX_THREADS'",
            b"3",
            b"-",
            b"0x",
            b"/*",
            b"*/",
            b"//",
            b"#",
            b"\n",
            b"<<<",
            b"EOT",
            b"?>",
            b"<?php",
            b"$",
            b"{",
            b"}",
            b"\\u{",
            b"\\x",
            b"\\0",
            b"\xff",
            b" ",
        ];
        for _ in 0..20_000 {
            let mut text = Vec::new();
            for _ in 0..(seed % 17) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.extend_from_slice(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = parse(&text, "fuzz");
        }
    }

    #[test]
    fn display_formats() {
        let e = ConfigError {
            path: "/srv/app/config.inc".into(),
            line: 12,
            message: "BG_MAX_THREADS expects an integer >= 1, got 0".into(),
        };
        assert_eq!(
            e.to_string(),
            "/srv/app/config.inc:12: BG_MAX_THREADS expects an integer >= 1, got 0"
        );
        let io = ConfigError {
            path: "x".into(),
            line: 0,
            message: "cannot read: Is a directory (os error 21)".into(),
        };
        assert_eq!(
            io.to_string(),
            "x: cannot read: Is a directory (os error 21)"
        );
    }

    #[test]
    fn load_missing_file_gives_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.inc");
        assert_eq!(load(&path), Ok(Config::default()));
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.inc");
        std::fs::write(&path, "<?php\ndefine('BG_MAX_THREADS', 3);\n").expect("write");
        assert_eq!(load(&path).map(|c| c.max_threads), Ok(3));
        std::fs::write(&path, "<?php\ndefine('BG_MAX_THREADS', 0);\n").expect("write");
        let err = load(&path).expect_err("zero threads");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: BG_MAX_THREADS expects an integer >= 1, got 0",
                path.display()
            )
        );
    }

    #[test]
    fn load_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path()).expect_err("a directory");
        assert_eq!(err.line, 0);
        assert_eq!(err.path, dir.path().display().to_string());
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read: ", dir.path().display())),
            "{err}"
        );
    }
}
