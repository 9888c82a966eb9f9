//! The reader of the web application's PHP `config.inc` (SPEC §3).
//!
//! The file is PHP source; we take only the `define('NAME', VALUE);` calls of
//! the names we know, where VALUE is a literal (boolean, integer, quoted
//! integer or string). A small lexer over bytes skips `<?php`/`?>`, comments,
//! strings, heredocs and every other statement, so a `define(` inside a
//! comment or string, or a define of an unknown name with an arbitrary
//! expression, changes nothing. The file may be in any 8-bit encoding.
//!
//! It must not execute or evaluate PHP (expressions for our names are
//! errors, not guesses), must not read the clock or the environment, and
//! never panics on any input: a bad value of a known name is a
//! [`ConfigError`] with the line of its `define`.

use std::collections::HashMap;
use std::fmt;
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
        }
    }
}

/// A `config.inc` that cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The path as given by the caller.
    pub path: String,
    /// 1-based line of the offending `define`; 0 when the file as a whole failed.
    pub line: usize,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

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
    let err = |line: usize, message: String| ConfigError {
        path: path.to_string(),
        line,
        message,
    };
    let tokens = Lexer::new(text).run();
    let mut config = Config::default();
    // PHP keeps the first define of a constant: later ones are ignored.
    let mut seen: HashMap<&'static str, usize> = HashMap::new();
    for i in 0..tokens.len() {
        if !is_define_call(&tokens, i, text) {
            continue;
        }
        // Only the first define of one of our names needs its arguments
        // scanned (its name is then one plain string): scanning every define
        // to its ')' made a file of unclosed `define(` quadratic.
        let ours = match (tokens.get(i + 2), tokens.get(i + 3).map(|t| &t.tok)) {
            (
                Some(Token {
                    tok:
                        Tok::Str {
                            value,
                            interpolated: false,
                        },
                    ..
                }),
                None | Some(Tok::Punct(b',' | b')' | b';') | Tok::Unterminated),
            ) => KNOWN
                .iter()
                .any(|k| k.name.as_bytes() == value.as_slice() && !seen.contains_key(k.name)),
            _ => false,
        };
        if !ours {
            continue;
        }
        let call = scan_call(&tokens, i + 1);
        let Some(name) = call
            .args
            .first()
            .and_then(|r| plain_string(&tokens[r.clone()]))
        else {
            continue; // a computed or missing name: not one of ours as far as we can tell
        };
        let Some(known) = KNOWN.iter().find(|k| k.name.as_bytes() == name.as_slice()) else {
            continue;
        };
        if seen.contains_key(known.name) {
            continue;
        }
        let line = tokens[i].line;
        seen.insert(known.name, line);
        let expects =
            |found: &str| format!("{} expects {}, got {found}", known.name, known.slot.what());
        match call.end {
            CallEnd::Closed => {}
            CallEnd::Unterminated => {
                return Err(err(line, expects("an unterminated define")));
            }
            CallEnd::Semicolon => {
                return Err(err(
                    line,
                    expects("a define without its closing parenthesis"),
                ));
            }
        }
        let value_toks = call.args.get(1).map(|r| &tokens[r.clone()]).unwrap_or(&[]);
        if value_toks.is_empty() {
            return Err(err(line, expects("no value")));
        }
        let src = source_text(text, value_toks);
        let value = classify(value_toks, text);
        known
            .slot
            .assign(&mut config, &value)
            .map_err(|what| err(line, format!("{} expects {what}, got {src}", known.name)))?;
    }
    if config.outbox_retry_max < config.outbox_retry_min {
        return Err(match seen.get("EMAIL_OUTBOX_RETRY_MAX") {
            Some(&line) => err(
                line,
                format!(
                    "EMAIL_OUTBOX_RETRY_MAX expects an integer >= EMAIL_OUTBOX_RETRY_MIN ({}), got {}",
                    config.outbox_retry_min, config.outbox_retry_max
                ),
            ),
            None => err(
                seen.get("EMAIL_OUTBOX_RETRY_MIN").copied().unwrap_or(0),
                format!(
                    "EMAIL_OUTBOX_RETRY_MIN expects an integer <= EMAIL_OUTBOX_RETRY_MAX ({}, the default), got {}",
                    config.outbox_retry_max, config.outbox_retry_min
                ),
            ),
        });
    }
    Ok(config)
}

// ---------------------------------------------------------------------------
// Known names and their types

struct Known {
    name: &'static str,
    slot: Slot,
}

/// Where a known name goes and what it accepts (lower bound for integers).
enum Slot {
    Bool(fn(&mut Config) -> &mut bool),
    U32(fn(&mut Config) -> &mut u32, u32),
    U64(fn(&mut Config) -> &mut u64, u64),
    I64(fn(&mut Config) -> &mut i64, i64),
    Time(fn(&mut Config) -> &mut LocalTime),
    Path(fn(&mut Config) -> &mut Option<PathBuf>),
}

static KNOWN: &[Known] = &[
    Known {
        name: "EMAIL_BACKGROUND_SYNC_ENABLED",
        slot: Slot::Bool(|c| &mut c.sync_enabled),
    },
    Known {
        name: "EMAIL_OUTBOX_ENABLED",
        slot: Slot::Bool(|c| &mut c.outbox_enabled),
    },
    Known {
        name: "BG_MAX_THREADS",
        slot: Slot::U32(|c| &mut c.max_threads, 1),
    },
    Known {
        name: "BG_MAX_TASKS_PER_THREAD",
        slot: Slot::U32(|c| &mut c.max_tasks_per_thread, 1),
    },
    Known {
        name: "EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL",
        slot: Slot::I64(|c| &mut c.hi_recent_interval, 0),
    },
    Known {
        name: "EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL_NL",
        slot: Slot::I64(|c| &mut c.hi_recent_interval_nl, 0),
    },
    Known {
        name: "EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL",
        slot: Slot::I64(|c| &mut c.hi_full_interval, 0),
    },
    Known {
        name: "EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL",
        slot: Slot::I64(|c| &mut c.hi_full_interval_nl, 0),
    },
    Known {
        name: "EMAIL_BG_LO_FOLDERS_SYNC_START",
        slot: Slot::Time(|c| &mut c.lo_sync_start),
    },
    Known {
        name: "BG_SESSION_TIMEOUT",
        slot: Slot::I64(|c| &mut c.session_timeout, 0),
    },
    Known {
        name: "BG_MAX_CONNECTIONS_PER_ACCOUNT",
        slot: Slot::U32(|c| &mut c.max_connections_per_account, 1),
    },
    Known {
        name: "BG_IO_TIMEOUT",
        slot: Slot::U64(|c| &mut c.io_timeout, 1),
    },
    Known {
        name: "BG_MAX_RUN_TIME",
        slot: Slot::I64(|c| &mut c.max_run_time, 1),
    },
    Known {
        name: "BG_SCHEDULE_GRACE",
        slot: Slot::I64(|c| &mut c.schedule_grace, 0),
    },
    Known {
        name: "EMAIL_OUTBOX_RETRY_MIN",
        slot: Slot::I64(|c| &mut c.outbox_retry_min, 1),
    },
    Known {
        name: "EMAIL_OUTBOX_RETRY_MAX",
        slot: Slot::I64(|c| &mut c.outbox_retry_max, 1),
    },
    Known {
        name: "EMAIL_OUTBOX_LIFETIME",
        slot: Slot::I64(|c| &mut c.outbox_lifetime, 0),
    },
    Known {
        name: "BG_TLS_CA_FILE",
        slot: Slot::Path(|c| &mut c.tls_ca_file),
    },
    Known {
        name: "BG_MAX_MESSAGE_SIZE",
        slot: Slot::U64(|c| &mut c.max_message_size, 0),
    },
];

impl Slot {
    /// What the name expects, for messages about a value of the wrong type.
    fn what(&self) -> String {
        match self {
            Slot::Bool(_) => "a boolean (TRUE or FALSE)".to_string(),
            Slot::U32(_, min) => format!("an integer >= {min}"),
            Slot::U64(_, min) => format!("an integer >= {min}"),
            Slot::I64(_, min) => format!("an integer >= {min}"),
            Slot::Time(_) => TIME_WHAT.to_string(),
            Slot::Path(_) => "a string (a file path, or '' for none)".to_string(),
        }
    }

    /// Store `value`, or say what was expected instead.
    fn assign(&self, config: &mut Config, value: &Value) -> Result<(), String> {
        // PHP coerces a numeric string ('14') where an integer is used.
        let int = || match value {
            Value::Int(n) => Ok(*n),
            Value::Str(s) => numeric_string(s).ok_or_else(|| self.what()),
            _ => Err(self.what()),
        };
        match (self, value) {
            (Slot::Bool(field), Value::Bool(b)) => *field(config) = *b,
            (Slot::U32(field, min), _) => *field(config) = ranged(int()?, *min)?,
            (Slot::U64(field, min), _) => *field(config) = ranged(int()?, *min)?,
            (Slot::I64(field, min), _) => *field(config) = ranged(int()?, *min)?,
            (Slot::Time(field), Value::Str(s)) => {
                *field(config) = parse_hhmm(s).ok_or_else(|| TIME_WHAT.to_string())?;
            }
            (Slot::Path(field), Value::Str(s)) => *field(config) = to_path(s)?,
            _ => return Err(self.what()),
        }
        Ok(())
    }
}

const TIME_WHAT: &str = "a time 'HH:MM' (00:00 to 23:59)";

/// `n` as the field's type if it is within `min..=T::MAX`.
fn ranged<T>(n: Option<i128>, min: T) -> Result<T, String>
where
    T: TryFrom<i128> + Into<i128> + Copy + fmt::Display + Bounded,
{
    let min_wide: i128 = min.into();
    match n {
        Some(n) if n < min_wide => Err(format!("an integer >= {min}")),
        Some(n) => T::try_from(n).map_err(|_| format!("an integer <= {}", T::MAX_VALUE)),
        // Too large to even hold: beyond any field's range.
        None => Err(format!("an integer <= {}", T::MAX_VALUE)),
    }
}

trait Bounded {
    const MAX_VALUE: Self;
}
impl Bounded for u32 {
    const MAX_VALUE: Self = u32::MAX;
}
impl Bounded for u64 {
    const MAX_VALUE: Self = u64::MAX;
}
impl Bounded for i64 {
    const MAX_VALUE: Self = i64::MAX;
}

/// `H:MM` or `HH:MM`, hour 0-23, minute 00-59.
fn parse_hhmm(s: &[u8]) -> Option<LocalTime> {
    let colon = s.iter().position(|&b| b == b':')?;
    let (h, m) = (&s[..colon], &s[colon + 1..]);
    if !(1..=2).contains(&h.len()) || m.len() != 2 {
        return None;
    }
    if !h.iter().chain(m).all(u8::is_ascii_digit) {
        return None;
    }
    let num = |d: &[u8]| {
        d.iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
    };
    let (hour, minute) = (num(h), num(m));
    (hour <= 23 && minute <= 59).then_some(LocalTime { hour, minute })
}

fn to_path(s: &[u8]) -> Result<Option<PathBuf>, String> {
    use std::os::unix::ffi::OsStrExt;
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains(&0) {
        return Err("a file path without NUL bytes".to_string());
    }
    Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(s))))
}

// ---------------------------------------------------------------------------
// Values

/// A define's value as far as we understand it.
#[derive(Debug, PartialEq)]
enum Value {
    Bool(bool),
    /// An integer; `None` when it does not fit in an i128.
    Int(Option<i128>),
    /// A string without interpolation (an integer slot coerces a numeric one).
    Str(Vec<u8>),
    /// Anything else: floats, null, constants, expressions, interpolation.
    Other,
}

fn classify(toks: &[Token], src: &[u8]) -> Value {
    let text = |t: &Token| &src[t.start..t.end];
    match toks {
        [t]
        | [Token {
            tok: Tok::Punct(b'\\'),
            ..
        }, t]
            if t.tok == Tok::Ident =>
        {
            match text(t).to_ascii_lowercase().as_slice() {
                b"true" => Value::Bool(true),
                b"false" => Value::Bool(false),
                _ => Value::Other,
            }
        }
        [t] if t.tok == Tok::Num => int_literal(text(t)).map_or(Value::Other, Value::Int),
        [sign, t] if t.tok == Tok::Num && matches!(sign.tok, Tok::Punct(b'-' | b'+')) => {
            match int_literal(text(t)) {
                Some(n) if sign.tok == Tok::Punct(b'-') => Value::Int(n.map(|n| -n)),
                Some(n) => Value::Int(n),
                None => Value::Other,
            }
        }
        [Token {
            tok:
                Tok::Str {
                    value,
                    interpolated: false,
                },
            ..
        }] => Value::Str(value.clone()),
        _ => Value::Other,
    }
}

/// A PHP integer literal (decimal, 0x, 0b, 0o or leading-0 octal, `_` separators).
/// `None` when it is not an integer literal (a float); `Some(None)` on overflow.
fn int_literal(lit: &[u8]) -> Option<Option<i128>> {
    let digits: Vec<u8> = lit.iter().copied().filter(|&b| b != b'_').collect();
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix(b"0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix(b"0b") {
        (2, rest)
    } else if let Some(rest) = lower.strip_prefix(b"0o") {
        (8, rest)
    } else if lower.len() > 1 && lower[0] == b'0' {
        (8, &lower[1..])
    } else {
        (10, lower.as_slice())
    };
    digits_value(body, radix)
}

fn digits_value(body: &[u8], radix: u32) -> Option<Option<i128>> {
    if body.is_empty() {
        return None;
    }
    let mut acc: Option<i128> = Some(0);
    for &b in body {
        let d = char::from(b).to_digit(radix)?;
        acc = acc
            .and_then(|a| a.checked_mul(i128::from(radix)))
            .and_then(|a| a.checked_add(i128::from(d)));
    }
    Some(acc)
}

/// A string PHP would coerce to an integer: optional whitespace, sign, decimal digits.
fn numeric_string(s: &[u8]) -> Option<Option<i128>> {
    let s = s.trim_ascii();
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits_value(digits, 10)?;
    Some(if neg { n.map(|n| -n) } else { n })
}

/// The value's source text for messages: whitespace collapsed, shortened.
fn source_text(src: &[u8], toks: &[Token]) -> String {
    let (Some(first), Some(last)) = (toks.first(), toks.last()) else {
        return String::new();
    };
    let raw = String::from_utf8_lossy(&src[first.start..last.end]);
    let collapsed: Vec<&str> = raw.split_whitespace().collect();
    let text = collapsed.join(" ");
    const MAX: usize = 60;
    if text.chars().count() > MAX {
        let short: String = text.chars().take(MAX).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// The bytes of a single non-interpolated string literal.
fn plain_string(toks: &[Token]) -> Option<Vec<u8>> {
    match toks {
        [Token {
            tok:
                Tok::Str {
                    value,
                    interpolated: false,
                },
            ..
        }] => Some(value.clone()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// define( ... ) calls

/// Whether token `i` starts a call of the global function `define`.
fn is_define_call(toks: &[Token], i: usize, src: &[u8]) -> bool {
    let t = &toks[i];
    if t.tok != Tok::Ident || !src[t.start..t.end].eq_ignore_ascii_case(b"define") {
        return false;
    }
    if toks.get(i + 1).map(|n| &n.tok) != Some(&Tok::Punct(b'(')) {
        return false;
    }
    let Some(prev) = i.checked_sub(1).map(|p| &toks[p]) else {
        return true;
    };
    match prev.tok {
        // $obj->define(, Foo::define(
        Tok::Arrow | Tok::DoubleColon => false,
        // function define(, new define(
        Tok::Ident => {
            let word = src[prev.start..prev.end].to_ascii_lowercase();
            !matches!(word.as_slice(), b"function" | b"fn" | b"new" | b"const")
        }
        // \define( is the global function; Ns\define( is not.
        Tok::Punct(b'\\') => !matches!(i.checked_sub(2).map(|p| &toks[p].tok), Some(Tok::Ident)),
        _ => true,
    }
}

enum CallEnd {
    Closed,
    /// End of file (or an unterminated string/comment) before `)`.
    Unterminated,
    /// A `;` at the call's own level before `)`.
    Semicolon,
}

struct Call {
    /// Token index ranges of the arguments (empty ranges for empty arguments).
    args: Vec<std::ops::Range<usize>>,
    end: CallEnd,
}

/// Split the arguments of a call whose `(` is token `open`.
fn scan_call(toks: &[Token], open: usize) -> Call {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut arg_start = open + 1;
    for (j, t) in toks.iter().enumerate().skip(open + 1) {
        match t.tok {
            Tok::Unterminated => break,
            Tok::Punct(b'(' | b'[' | b'{') => depth += 1,
            Tok::Punct(b')' | b']' | b'}') if depth > 0 => depth -= 1,
            Tok::Punct(b')') => {
                args.push(arg_start..j);
                return Call {
                    args,
                    end: CallEnd::Closed,
                };
            }
            Tok::Punct(b',') if depth == 0 => {
                args.push(arg_start..j);
                arg_start = j + 1;
            }
            Tok::Punct(b';') if depth == 0 => {
                args.push(arg_start..j);
                return Call {
                    args,
                    end: CallEnd::Semicolon,
                };
            }
            _ => {}
        }
    }
    let stop = toks
        .iter()
        .skip(arg_start)
        .position(|t| t.tok == Tok::Unterminated)
        .map_or(toks.len(), |p| arg_start + p);
    args.push(arg_start..stop.max(arg_start));
    Call {
        args,
        end: CallEnd::Unterminated,
    }
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident,
    Num,
    Str {
        value: Vec<u8>,
        interpolated: bool,
    },
    Heredoc,
    Var,
    Arrow,
    DoubleColon,
    Punct(u8),
    /// A string, heredoc or comment that runs to the end of the file.
    Unterminated,
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
    /// 1-based line where the token starts.
    line: usize,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    out: Vec<Token>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

impl<'a> Lexer<'a> {
    fn new(src: &'a [u8]) -> Self {
        Lexer {
            src,
            pos: 0,
            line: 1,
            out: Vec::new(),
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    fn starts_with_ci(&self, s: &[u8]) -> bool {
        self.src
            .get(self.pos..self.pos + s.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(s))
    }

    /// Consume one byte, counting lines.
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek(0)?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    fn push(&mut self, tok: Tok, start: usize, line: usize) {
        self.out.push(Token {
            tok,
            start,
            end: self.pos,
            line,
        });
    }

    fn run(mut self) -> Vec<Token> {
        while let Some(b) = self.peek(0) {
            let (start, line) = (self.pos, self.line);
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c => {
                    self.bump();
                }
                b'#' => self.line_comment(),
                b'/' if self.peek(1) == Some(b'/') => self.line_comment(),
                b'/' if self.peek(1) == Some(b'*') => {
                    if !self.block_comment() {
                        self.push(Tok::Unterminated, start, line);
                        break;
                    }
                }
                b'\'' => self.single_quoted(),
                b'"' | b'`' => self.double_quoted(b),
                b'<' if self.starts_with_ci(b"<?php") => self.pos += 5,
                b'<' if self.starts_with_ci(b"<?=") => self.pos += 3,
                b'<' if self.starts_with_ci(b"<<<") && self.heredoc() => {}
                b'?' if self.peek(1) == Some(b'>') => {
                    self.pos += 2;
                    // `?>` ends a statement like `;`, then inline HTML follows.
                    self.push(Tok::Punct(b';'), start, line);
                    self.inline_html();
                }
                b'?' if self.starts_with_ci(b"?->") => {
                    self.pos += 3;
                    self.push(Tok::Arrow, start, line);
                }
                b'-' if self.peek(1) == Some(b'>') => {
                    self.pos += 2;
                    self.push(Tok::Arrow, start, line);
                }
                b':' if self.peek(1) == Some(b':') => {
                    self.pos += 2;
                    self.push(Tok::DoubleColon, start, line);
                }
                b'$' if self.peek(1).is_some_and(is_ident_start) => {
                    self.pos += 1;
                    self.ident_tail();
                    self.push(Tok::Var, start, line);
                }
                b'0'..=b'9' => self.number(),
                b'.' if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => self.number(),
                _ if is_ident_start(b) => {
                    self.ident_tail();
                    self.push(Tok::Ident, start, line);
                }
                _ => {
                    self.pos += 1;
                    self.push(Tok::Punct(b), start, line);
                }
            }
            if self.out.last().is_some_and(|t| t.tok == Tok::Unterminated) {
                break;
            }
        }
        self.out
    }

    fn ident_tail(&mut self) {
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
    }

    fn number(&mut self) {
        let (start, line) = (self.pos, self.line);
        let hex = self.starts_with_ci(b"0x");
        while let Some(c) = self.peek(0) {
            let exp_sign = !hex
                && matches!(c, b'+' | b'-')
                && matches!(self.src.get(self.pos.wrapping_sub(1)), Some(b'e' | b'E'));
            if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.push(Tok::Num, start, line);
    }

    /// `//` or `#` to the end of the line; `?>` also ends it (PHP's rule).
    fn line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            if c == b'\n' || (c == b'?' && self.peek(1) == Some(b'>')) {
                return;
            }
            self.pos += 1;
        }
    }

    /// `/* ... */`; false if it runs to the end of the file.
    fn block_comment(&mut self) -> bool {
        self.pos += 2;
        while self.peek(0).is_some() {
            if self.peek(0) == Some(b'*') && self.peek(1) == Some(b'/') {
                self.pos += 2;
                return true;
            }
            self.bump();
        }
        false
    }

    /// After `?>`: skip output text until the next `<?php`, `<?=` or `<?`.
    fn inline_html(&mut self) {
        while self.peek(0).is_some() {
            if self.starts_with_ci(b"<?php") {
                self.pos += 5;
                return;
            }
            if self.starts_with_ci(b"<?=") {
                self.pos += 3;
                return;
            }
            if self.starts_with_ci(b"<?") {
                self.pos += 2;
                return;
            }
            self.bump();
        }
    }

    /// `'...'`: only `\'` and `\\` are escapes.
    fn single_quoted(&mut self) {
        let (start, line) = (self.pos, self.line);
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(c) = self.bump() {
            match c {
                b'\'' => {
                    self.push(
                        Tok::Str {
                            value,
                            interpolated: false,
                        },
                        start,
                        line,
                    );
                    return;
                }
                b'\\' if matches!(self.peek(0), Some(b'\'' | b'\\')) => {
                    value.extend(self.bump());
                }
                _ => value.push(c),
            }
        }
        self.push(Tok::Unterminated, start, line);
    }

    /// `"..."` (or a backtick command): PHP's escapes; `$name`/`${`/`{$` is interpolation.
    fn double_quoted(&mut self, quote: u8) {
        let (start, line) = (self.pos, self.line);
        self.pos += 1;
        let mut value = Vec::new();
        let mut interpolated = quote == b'`';
        while let Some(c) = self.bump() {
            match c {
                _ if c == quote => {
                    self.push(
                        Tok::Str {
                            value,
                            interpolated,
                        },
                        start,
                        line,
                    );
                    return;
                }
                b'$' if self.peek(0).is_some_and(|n| is_ident_start(n) || n == b'{') => {
                    interpolated = true;
                    value.push(c);
                }
                b'\\' => self.escape(quote, &mut value),
                _ => value.push(c),
            }
        }
        self.push(Tok::Unterminated, start, line);
    }

    /// One escape sequence after `\` in a double-quoted string.
    fn escape(&mut self, quote: u8, value: &mut Vec<u8>) {
        let Some(e) = self.peek(0) else {
            value.push(b'\\');
            return;
        };
        let simple = match e {
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'v' => Some(0x0b),
            b'e' => Some(0x1b),
            b'f' => Some(0x0c),
            b'\\' | b'$' => Some(e),
            _ if e == quote => Some(e),
            _ => None,
        };
        if let Some(v) = simple {
            self.pos += 1;
            value.push(v);
            return;
        }
        let radix_digits = |lexer: &Self, from: usize, radix: u32, max: usize| {
            lexer.src[from.min(lexer.src.len())..]
                .iter()
                .take(max)
                .take_while(|b| char::from(**b).is_digit(radix))
                .count()
        };
        match e {
            b'0'..=b'7' => {
                let n = radix_digits(self, self.pos, 8, 3);
                let v = self.src[self.pos..self.pos + n]
                    .iter()
                    .fold(0u32, |a, &b| a * 8 + u32::from(b - b'0'));
                value.push((v & 0xff) as u8);
                self.pos += n;
            }
            b'x' if radix_digits(self, self.pos + 1, 16, 2) > 0 => {
                let n = radix_digits(self, self.pos + 1, 16, 2);
                let v = self.src[self.pos + 1..self.pos + 1 + n]
                    .iter()
                    .fold(0u32, |a, &b| {
                        a * 16 + char::from(b).to_digit(16).unwrap_or(0)
                    });
                value.push((v & 0xff) as u8);
                self.pos += 1 + n;
            }
            b'u' if self.peek(1) == Some(b'{') => {
                let from = self.pos + 2;
                let n = radix_digits(self, from, 16, 8);
                let closed = self.src.get(from + n) == Some(&b'}');
                let cp = self.src[from..from + n].iter().fold(0u32, |a, &b| {
                    a.saturating_mul(16)
                        .saturating_add(char::from(b).to_digit(16).unwrap_or(0))
                });
                match char::from_u32(cp).filter(|_| closed && n > 0) {
                    Some(ch) => {
                        let mut buf = [0u8; 4];
                        value.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        self.pos = from + n + 1;
                    }
                    // PHP refuses to parse this; keep the text, the value is unusable anyway.
                    None => value.push(b'\\'),
                }
            }
            _ => value.push(b'\\'),
        }
    }

    /// `<<<ID`, `<<<"ID"` or `<<<'ID'` up to a line starting (after indentation)
    /// with `ID`. Returns false, consuming nothing, if this is not a heredoc.
    fn heredoc(&mut self) -> bool {
        let (start, line) = (self.pos, self.line);
        let mut p = self.pos + 3;
        while matches!(self.src.get(p), Some(b' ' | b'\t')) {
            p += 1;
        }
        let quote = match self.src.get(p) {
            Some(&q @ (b'\'' | b'"')) => {
                p += 1;
                Some(q)
            }
            _ => None,
        };
        let id_start = p;
        if !self.src.get(p).copied().is_some_and(is_ident_start) {
            return false;
        }
        while self.src.get(p).copied().is_some_and(is_ident_char) {
            p += 1;
        }
        let id = &self.src[id_start..p];
        if let Some(q) = quote {
            if self.src.get(p) != Some(&q) {
                return false;
            }
            p += 1;
        }
        match self.src.get(p) {
            Some(b'\n') => {}
            Some(b'\r') if self.src.get(p + 1) == Some(&b'\n') => {}
            _ => return false,
        }
        // Consume the opening line, then look for the closing identifier.
        while self.pos < p {
            self.bump();
        }
        loop {
            // At the end of a line: step to the next one.
            while self.peek(0).is_some_and(|c| c != b'\n') {
                self.pos += 1;
            }
            if self.bump().is_none() {
                self.push(Tok::Unterminated, start, line);
                return true;
            }
            let mut q = self.pos;
            while matches!(self.src.get(q), Some(b' ' | b'\t')) {
                q += 1;
            }
            if self.src.get(q..q + id.len()) == Some(id)
                && !self
                    .src
                    .get(q + id.len())
                    .copied()
                    .is_some_and(is_ident_char)
            {
                self.pos = q + id.len();
                self.push(Tok::Heredoc, start, line);
                return true;
            }
        }
    }
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
