//! Property tests of the pure parsers and codecs that see hostile input:
//! the `config.inc` reader, the modified UTF-7 codec, header decoding
//! (`summarize`), the IMAP response parser, and the outgoing-message check
//! and wire form. A small deterministic generator (xorshift64*, no crates):
//! every property runs on arbitrary bytes (no panic, no hang) and on
//! structured input, where it checks a real property (round trips,
//! idempotence, no bare LF and no Bcc on the wire, ...).
//!
//! Iterations: `BACKPROC_FUZZ_ITERATIONS` per property (default 1,500, a
//! few seconds for the whole file in release); a longer run, e.g.
//! `BACKPROC_FUZZ_ITERATIONS=200000 cargo test --release --test properties`,
//! is the fuzzing variant. `BACKPROC_FUZZ_SEED` changes the seed (default
//! fixed, so CI is reproducible). A failure prints the seed, the case number
//! and the input (hex), which is all it takes to replay it.
//!
//! `cargo fuzz` would need a nightly toolchain; these run in `cargo test`.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use backproc::config::{self, Config, LocalTime};
use backproc::imap::parse::{self, literal_announced, Response, Untagged, Value};
use backproc::imap::utf7;
use backproc::message::summarize;
use backproc::outbox::message::{check, wire};
use support::{header_of, hex_brief};

// ---------------------------------------------------------------------------
// The generator

/// xorshift64*: deterministic and good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn new(salt: u64) -> Rng {
        let seed = std::env::var("BACKPROC_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0x5eed_2026);
        Rng((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Pieces from `alphabet` glued together, with some random bytes mixed in.
    fn tokens(&mut self, alphabet: &[&[u8]], max_pieces: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.below(max_pieces + 1) {
            if self.chance(12) {
                out.push(self.next() as u8);
            } else {
                out.extend_from_slice(self.pick(alphabet));
            }
        }
        out
    }
    /// Any Unicode scalar value, biased towards the interesting ranges.
    fn char(&mut self) -> char {
        const PICKS: &[char] = &[
            '&',
            '-',
            '/',
            '"',
            '\\',
            ' ',
            'A',
            'z',
            '~',
            'ą',
            'ż',
            'Ł',
            '台',
            '📧',
            '\u{7f}',
            '\0',
            '\n',
            '\u{ffff}',
            '\u{10ffff}',
        ];
        let c = match self.below(6) {
            0 => Some(self.pick(PICKS)),
            1 => char::from_u32(0x20 + self.below(0x5f) as u32),
            2 => char::from_u32(self.below(0x800) as u32),
            3 => char::from_u32(self.below(0x1_0000) as u32),
            4 => char::from_u32(0xd000 + self.below(0x3000) as u32),
            _ => char::from_u32(0x1_0000 + self.below(0x10_0000) as u32),
        };
        c.unwrap_or('x')
    }
    fn string(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        (0..n).map(|_| self.char()).collect()
    }
    /// Printable ASCII without the characters in `except`.
    fn ascii(&mut self, min: usize, max: usize, except: &str) -> String {
        let n = min + self.below(max - min + 1);
        let mut s = String::new();
        while s.len() < n {
            let c = char::from(0x20 + self.below(0x5f) as u8);
            if !except.contains(c) {
                s.push(c);
            }
        }
        s
    }
    fn word(&mut self, max: usize) -> String {
        let n = 1 + self.below(max);
        (0..n)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }
}

/// Iterations per property.
fn iterations() -> usize {
    std::env::var("BACKPROC_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500)
}

/// Runs `f` on `input`; a panic becomes a failure that names the case.
fn case<R>(what: &str, i: usize, input: &[u8], f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!(
                "{what}: case {i} (BACKPROC_FUZZ_SEED={}) failed: {msg}\ninput: {}",
                std::env::var("BACKPROC_FUZZ_SEED").unwrap_or_else(|_| "default".into()),
                hex_brief(input)
            )
        }
    }
}

/// Mutations of a valid input: truncation, a flipped, inserted or deleted byte.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(5) {
            0 => v.truncate(rng.below(v.len() + 1)),
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let b = rng.pick(b"\r\n\0 (){}\"\\*[]<>:,;=?\xff");
                v.insert(i, b);
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.remove(i);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                let j = i + rng.below(v.len() - i + 1);
                let chunk = v[i..j].to_vec();
                v.splice(j..j, chunk);
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------
// config.inc

const CONFIG_TOKENS: &[&[u8]] = &[
    b"define",
    b"DEFINE",
    b"Define",
    b"(",
    b")",
    b",",
    b";",
    b"'",
    b"\"",
    b"\\",
    b"'BG_MAX_THREADS'",
    b"'EMAIL_BG_LO_FOLDERS_SYNC_START'",
    b"\"BG_TLS_CA_FILE\"",
    b"'BG_IO_TIMEOUT'",
    b"'14'",
    b"'20:00'",
    b"TRUE",
    b"false",
    b"3",
    b"-",
    b"0x1F",
    b"0b101",
    b"1_000",
    b"99999999999999999999999999999999999999999",
    b"1.5",
    b"/*",
    b"*/",
    b"//",
    b"#",
    b"\n",
    b"\r\n",
    b"<<<",
    b"<<<'EOT'\n",
    b"EOT",
    b"?>",
    b"<?php",
    b"<?=",
    b"$x",
    b"->",
    b"::",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\\u{",
    b"\\x4",
    b"\\0",
    b"\\101",
    b"${",
    b"\xff",
    b" ",
    b"\t",
    b"function",
    b"new",
];

#[test]
fn config_parse_never_panics_on_arbitrary_bytes() {
    let mut rng = Rng::new(1);
    for i in 0..iterations() * 4 {
        let text = if rng.chance(4) {
            rng.bytes(300)
        } else {
            rng.tokens(CONFIG_TOKENS, 60)
        };
        case("config::parse", i, &text, || {
            if let Err(e) = config::parse(&text, "fuzz.inc") {
                // Errors name the file and a real line of it.
                let lines = text.iter().filter(|b| **b == b'\n').count() + 1;
                assert_eq!(e.path, "fuzz.inc");
                assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
                assert!(e.to_string().starts_with("fuzz.inc"), "{e}");
            }
        });
    }
}

/// A random valid configuration and a `config.inc` that says it, in one of
/// the many ways PHP allows, among unrelated statements and comments.
fn random_config(rng: &mut Rng) -> (Config, String) {
    let mut c = Config::default();
    let mut lines: Vec<String> = vec!["<?php".into()];
    let noise = |rng: &mut Rng, lines: &mut Vec<String>| {
        for _ in 0..rng.below(3) {
            let w = rng.word(8).to_uppercase();
            let n = rng.below(1000);
            lines.push(match rng.below(8) {
                0 => format!("define('APP_{w}', '{n}');"),
                1 => format!("// define('BG_MAX_THREADS', 0); {w}"),
                2 => "# define('BG_IO_TIMEOUT', 'x');".to_string(),
                3 => format!("/* define('BG_MAX_RUN_TIME', -1);\n   {w} */"),
                4 => format!("$cfg['{w}'] = \"define('BG_MAX_THREADS', 0);\";"),
                5 => format!("if (!defined('{w}')) {{ define('{w}', {n} * 2); }}"),
                6 => "$t = <<<EOT\ndefine('BG_MAX_THREADS', 0);\nEOT;".to_string(),
                _ => format!("define('X_{w}', array({n}, '{w}'));"),
            });
        }
    };
    let int = |rng: &mut Rng, n: i128| -> String {
        match rng.below(6) {
            0 => format!("'{n}'"),
            1 => format!("\"{n}\""),
            2 if n >= 0 => format!("0x{n:x}"),
            3 if n >= 0 => format!("0{n:o}"),
            4 if n > 0 => format!("+{n}"),
            _ => n.to_string(),
        }
    };
    let boolean = |rng: &mut Rng, b: bool| -> String {
        let s = if b { "true" } else { "false" };
        match rng.below(3) {
            0 => s.to_uppercase(),
            1 => s.to_string(),
            _ => format!("\\{}", s.to_uppercase()),
        }
    };
    let define =
        |rng: &mut Rng| -> &'static str { rng.pick(&["define", "DEFINE", "Define", "\\define"]) };
    noise(rng, &mut lines);
    let push = |rng: &mut Rng, lines: &mut Vec<String>, name: &str, value: String| {
        let q = if rng.chance(2) { '\'' } else { '"' };
        let sp = if rng.chance(3) { " " } else { "" };
        let nl = if rng.chance(5) { "\n" } else { "" };
        let d = define(rng);
        let tail = if rng.chance(6) { " // comment" } else { "" };
        lines.push(format!(
            "{d}{sp}({nl}{q}{name}{q},{sp}{nl}{value}{sp}){sp};{tail}"
        ));
        noise(rng, lines);
    };
    if rng.chance(2) {
        c.sync_enabled = rng.chance(2);
        let v = boolean(rng, c.sync_enabled);
        push(rng, &mut lines, "EMAIL_BACKGROUND_SYNC_ENABLED", v);
    }
    if rng.chance(2) {
        c.outbox_enabled = rng.chance(2);
        let v = boolean(rng, c.outbox_enabled);
        push(rng, &mut lines, "EMAIL_OUTBOX_ENABLED", v);
    }
    if rng.chance(2) {
        c.max_threads = 1 + rng.below(64) as u32;
        let v = int(rng, c.max_threads.into());
        push(rng, &mut lines, "BG_MAX_THREADS", v);
    }
    if rng.chance(2) {
        c.hi_recent_interval = rng.below(100_000) as i64;
        let v = int(rng, c.hi_recent_interval.into());
        push(
            rng,
            &mut lines,
            "EMAIL_BG_HI_FOLDERS_RECENT_SYNC_INTERVAL",
            v,
        );
    }
    if rng.chance(2) {
        c.hi_full_interval_nl = rng.below(100_000) as i64;
        let v = int(rng, c.hi_full_interval_nl.into());
        push(
            rng,
            &mut lines,
            "EMAIL_BG_HI_FOLDERS_FOLDERS_FULL_SYNC_INTERVAL_NL",
            v,
        );
    }
    if rng.chance(2) {
        let (h, m) = (rng.below(24) as u32, rng.below(60) as u32);
        c.lo_sync_start = LocalTime { hour: h, minute: m };
        let v = if h < 10 && rng.chance(2) {
            format!("'{h}:{m:02}'")
        } else {
            format!("\"{h:02}:{m:02}\"")
        };
        push(rng, &mut lines, "EMAIL_BG_LO_FOLDERS_SYNC_START", v);
    }
    if rng.chance(2) {
        c.io_timeout = 1 + rng.below(600) as u64;
        let v = int(rng, c.io_timeout.into());
        push(rng, &mut lines, "BG_IO_TIMEOUT", v);
    }
    if rng.chance(2) {
        c.max_message_size = rng.next() >> 1;
        let v = int(rng, c.max_message_size.into());
        push(rng, &mut lines, "BG_MAX_MESSAGE_SIZE", v);
    }
    if rng.chance(2) {
        let path = format!("/etc/{}/ca {}.pem", rng.word(6), rng.word(3));
        c.tls_ca_file = Some(path.clone().into());
        push(rng, &mut lines, "BG_TLS_CA_FILE", format!("'{path}'"));
    }
    if rng.chance(2) {
        c.outbox_retry_min = 1 + rng.below(4000) as i64;
        let v = int(rng, c.outbox_retry_min.into());
        push(rng, &mut lines, "EMAIL_OUTBOX_RETRY_MIN", v);
    }
    if rng.chance(3) {
        lines.push("?>".into());
    }
    (c, lines.join(if rng.chance(4) { "\r\n" } else { "\n" }))
}

#[test]
fn config_parse_reads_back_every_generated_config() {
    let mut rng = Rng::new(2);
    for i in 0..iterations() {
        let (want, text) = random_config(&mut rng);
        let got = case("config round trip", i, text.as_bytes(), || {
            config::parse(text.as_bytes(), "config.inc")
        });
        assert_eq!(got.as_ref(), Ok(&want), "case {i}:\n{text}");
        // Defines of known names after the first change nothing (PHP keeps
        // the first), and neither does anything unknown after the file.
        let more = format!(
            "{text}\n<?php define('BG_MAX_THREADS', 0); define('UNKNOWN', $x . f(1));\n\
             define('BG_IO_TIMEOUT', 'x'); /* unterminated"
        );
        let again = config::parse(more.as_bytes(), "config.inc");
        if want.max_threads != 14 && want.io_timeout != 60 {
            assert_eq!(
                again.as_ref(),
                Ok(&want),
                "case {i}: later defines:\n{more}"
            );
        }
    }
}

#[test]
fn config_parse_names_the_line_of_a_bad_value() {
    let mut rng = Rng::new(3);
    let bad = [
        ("BG_MAX_THREADS", "'many'"),
        ("BG_MAX_THREADS", "0"),
        ("BG_IO_TIMEOUT", "1.5"),
        ("EMAIL_OUTBOX_ENABLED", "'TRUE'"),
        ("EMAIL_BG_LO_FOLDERS_SYNC_START", "'24:00'"),
        ("BG_MAX_MESSAGE_SIZE", "-1"),
        ("BG_TLS_CA_FILE", "0"),
        ("BG_SCHEDULE_GRACE", "SOME_CONSTANT"),
    ];
    for i in 0..iterations() {
        let (_, mut text) = random_config(&mut rng);
        text = text.replace("?>", "");
        // A first define of the name, so ours is not shadowed: put it first.
        let (name, value) = rng.pick(&bad);
        let pre = rng.below(5);
        let bad_text = format!(
            "<?php\n{}define('{name}', {value});\n{}",
            "// filler\n".repeat(pre),
            text.trim_start_matches("<?php")
        );
        let err = case("config bad value", i, bad_text.as_bytes(), || {
            config::parse(bad_text.as_bytes(), "c.inc")
        })
        .expect_err(&bad_text);
        assert_eq!(err.line, pre + 2, "case {i}: {err}\n{bad_text}");
        assert!(
            err.message.starts_with(&format!("{name} expects ")),
            "case {i}: {err}"
        );
        assert!(err.message.ends_with(&format!("got {value}")), "{err}");
    }
}

#[test]
fn config_parse_takes_linear_time_on_unclosed_defines() {
    // Regression: every `define(` was scanned to its closing parenthesis,
    // so 50,000 unclosed ones (350 kB) took 9 s, 100,000 four times that.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unclosed_defines", b"define(".repeat(100_000)),
        (
            "unclosed_known_defines",
            b"define('BG_MAX_THREADS', ".repeat(30_000),
        ),
        (
            "nested_parens",
            [b"define('X', ".as_slice(), &b"(".repeat(500_000)].concat(),
        ),
        (
            "many_closed_defines",
            b"define('APP_X', 1);\n".repeat(100_000),
        ),
    ];
    for (name, text) in cases {
        let t0 = Instant::now();
        let _ = config::parse(&text, "c.inc");
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(3), "{name}: {took:?}");
    }
    // The first define of ours still decides, even after many others.
    let mut text = b"define('APP_X', 1);\n".repeat(10_000);
    text.extend_from_slice(b"define('BG_MAX_THREADS', 5); define('BG_MAX_THREADS', 0);");
    assert_eq!(config::parse(&text, "c.inc").map(|c| c.max_threads), Ok(5));
    let err = config::parse(b"define('BG_MAX_THREADS', 3", "c.inc").expect_err("unterminated");
    assert!(err.message.contains("unterminated define"), "{err}");
}

// ---------------------------------------------------------------------------
// modified UTF-7

#[test]
fn utf7_round_trips_any_unicode_name() {
    let mut rng = Rng::new(4);
    for i in 0..iterations() * 10 {
        let name = rng.string(24);
        let wire = case("utf7::encode", i, name.as_bytes(), || utf7::encode(&name));
        assert!(
            wire.bytes().all(|b| (0x20..=0x7e).contains(&b)),
            "case {i}: {wire:?}"
        );
        assert_eq!(utf7::decode(&wire).as_deref(), Ok(name.as_str()), "{wire}");
        assert_eq!(utf7::decode_lossy(&wire), name);
        // Idempotent on its own output's alphabet: a second encoding of an
        // ASCII-only wire form changes only '&'.
        let twice = utf7::encode(&wire);
        assert_eq!(twice, wire.replace('&', "&-"), "case {i}");
    }
}

#[test]
fn utf7_decode_of_arbitrary_wire_strings_is_canonical_or_an_error() {
    let mut rng = Rng::new(5);
    const WIRE: &[&[u8]] = &[
        b"&",
        b"-",
        b"&-",
        b"A",
        b"AXw",
        b"AXwA8wFCAQc",
        b"2D3c5w",
        b"+",
        b",",
        b"/",
        b"=",
        b"z",
        b"0",
        b" ",
        b"\xc5\xbc",
        b"\x7f",
        b"\t",
        b"&AEE-",
    ];
    let mut valid = 0;
    for i in 0..iterations() * 10 {
        let bytes = if rng.chance(3) {
            rng.bytes(20)
        } else {
            rng.tokens(WIRE, 10)
        };
        let wire = String::from_utf8_lossy(&bytes).into_owned();
        case("utf7::decode", i, wire.as_bytes(), || {
            match utf7::decode(&wire) {
                Ok(name) => {
                    valid += 1;
                    assert_eq!(utf7::encode(&name), wire, "not canonical");
                    assert_eq!(utf7::decode_lossy(&wire), name);
                }
                Err(e) => {
                    assert!(e.position < wire.len().max(1), "{e}");
                    assert_eq!(utf7::decode_lossy(&wire), wire);
                }
            }
        });
    }
    assert!(valid > iterations(), "too few valid samples: {valid}");
}

// ---------------------------------------------------------------------------
// header decoding (`summarize`)

const HEADER_TOKENS: &[&[u8]] = &[
    b"Subject: ",
    b"From: ",
    b"To: ",
    b"Cc: ",
    b"Date: ",
    b"Message-ID: ",
    b"Content-Type: multipart/mixed; boundary=x",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n ",
    b"\r\n\r\n",
    b"=?",
    b"?=",
    b"=?utf-8?B?",
    b"=?iso-8859-2?Q?",
    b"=?x-unknown?Q?",
    b"?Q?",
    b"=C5=BC",
    b"=ZZ",
    b"###",
    b"QUJD",
    b"<",
    b">",
    b"@",
    b",",
    b";",
    b":",
    b"\"",
    b"(",
    b")",
    b"\\",
    b"a@b.pl",
    b"Jan <jan@x.pl>",
    b"Sun, 12 Jan 2014 22:28:05 +0000",
    b"99 Foo 99999 99:99:99 -9999",
    b"\0",
    b"\xff",
    b"\xb1\xbf",
    b"\xc5\xbc",
    b" ",
    b"\t",
    b"body",
];

/// Fails the test when a panic (caught or not) happens on this thread.
fn count_panics_on_this_thread() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let count = Arc::new(AtomicUsize::new(0));
    let me = std::thread::current().id();
    let c = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == me {
            c.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    count
}

fn assert_clean(field: &Option<String>, what: &str, input: &[u8]) {
    if let Some(v) = field {
        assert!(!v.is_empty(), "{what}: Some(\"\") for {}", hex_brief(input));
        assert_eq!(v.trim(), v, "{what}: untrimmed for {}", hex_brief(input));
        assert!(
            !v.chars().any(char::is_control),
            "{what}: control character in {v:?} for {}",
            hex_brief(input)
        );
    }
}

#[test]
fn summarize_never_panics_and_gives_clean_text_on_arbitrary_bytes() {
    let panics = count_panics_on_this_thread();
    let mut rng = Rng::new(6);
    for i in 0..iterations() * 4 {
        let raw = if rng.chance(4) {
            rng.bytes(400)
        } else {
            rng.tokens(HEADER_TOKENS, 80)
        };
        let s = case("summarize", i, &raw, || summarize(&raw));
        assert_clean(&s.subject, "subject", &raw);
        assert_clean(&s.from_addr, "from", &raw);
        assert_clean(&s.to_addrs, "to", &raw);
        assert_clean(&s.message_id, "message_id", &raw);
        assert_eq!(
            panics.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a panic inside summarize (caught) for {}",
            hex_brief(&raw)
        );
    }
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn q_encode(data: &[u8]) -> String {
    data.iter()
        .map(|b| match b {
            b' ' => "_".to_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => char::from(*b).to_string(),
            _ => format!("={b:02X}"),
        })
        .collect()
}

/// Text a subject can hold and read back unchanged: no controls, single
/// spaces between words, no leading or trailing space.
fn subject_text(rng: &mut Rng) -> String {
    let mut words = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let w: String = (0..1 + rng.below(8))
            .map(|_| loop {
                let c = rng.char();
                if !c.is_control() && !c.is_whitespace() && c != '\u{feff}' {
                    break c;
                }
            })
            .collect();
        words.push(w);
    }
    words.join(" ")
}

fn rfc2822_date(ts: i64, offset_min: i32) -> String {
    let tz = chrono::FixedOffset::east_opt(offset_min * 60).expect("offset");
    chrono::DateTime::from_timestamp(ts, 0)
        .expect("timestamp")
        .with_timezone(&tz)
        .format("%a, %d %b %Y %H:%M:%S %z")
        .to_string()
}

#[test]
fn summarize_decodes_generated_headers_whatever_the_line_ends_and_body() {
    let mut rng = Rng::new(7);
    for i in 0..iterations() {
        let subject = subject_text(&mut rng);
        let encoded = match rng.below(3) {
            0 => format!("=?UTF-8?B?{}?=", base64(subject.as_bytes())),
            1 => format!("=?utf-8?q?{}?=", q_encode(subject.as_bytes())),
            _ => subject.clone(),
        };
        let name = format!("{} {}", rng.word(8), rng.word(10));
        let addr = format!("{}@{}.pl", rng.word(8), rng.word(6));
        let to: Vec<String> = (0..1 + rng.below(4))
            .map(|_| format!("{}@{}.com", rng.word(6), rng.word(5)))
            .collect();
        let id = format!("{}.{}@{}", rng.word(10), rng.below(1 << 30), rng.word(6));
        let ts = 946_684_800 + rng.below(1_000_000_000) as i64;
        let offset = (rng.below(27 * 4) as i32 - 12 * 4) * 15;
        let mut fields = [
            format!("Subject: {encoded}"),
            format!("From: {name} <{addr}>"),
            format!("To: {}", to.join(", ")),
            format!("Message-ID: <{id}>"),
            format!("Date: {}", rfc2822_date(ts, offset)),
            format!("X-Noise-{}: {}", rng.word(5), rng.ascii(0, 40, "\r\n")),
        ];
        // order does not matter
        for k in (1..fields.len()).rev() {
            fields.swap(k, rng.below(k + 1));
        }
        let body = rng.tokens(HEADER_TOKENS, 30);
        for eol in ["\r\n", "\n"] {
            let mut raw = fields.join(eol).into_bytes();
            raw.extend_from_slice(eol.as_bytes());
            raw.extend_from_slice(eol.as_bytes());
            raw.extend_from_slice(&body);
            let s = case("summarize generated", i, &raw, || summarize(&raw));
            assert_eq!(
                s.subject.as_deref(),
                Some(subject.as_str()),
                "{}",
                hex_brief(&raw)
            );
            assert_eq!(
                s.from_addr.as_deref(),
                Some(format!("{name} <{addr}>").as_str())
            );
            assert_eq!(s.to_addrs, Some(to.join(", ")));
            assert_eq!(s.message_id.as_deref(), Some(id.as_str()));
            assert_eq!(s.date_at, Some(ts), "{}", rfc2822_date(ts, offset));
            // The body is never read: another body gives the same summary.
            let cut = raw.len() - body.len();
            let mut other = raw[..cut].to_vec();
            other.extend_from_slice(b"Subject: not this\r\nFrom: x@y.z\r\n\r\n\0\xff");
            assert_eq!(
                summarize(&other),
                s,
                "case {i}: the body changed the summary"
            );
        }
    }
}

#[test]
fn summarize_takes_linear_time_on_pathological_headers() {
    // Regression: find_encoded_word scanned to the end of the line for every
    // "=?" of a field that is not UTF-8, so one 1 MB header line of "=?"
    // (or of "=?a?q?") kept a worker busy for hours.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "many_markers_8bit",
            [
                b"Subject: \xff ".as_slice(),
                &b"=?".repeat(500_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "many_open_words_8bit",
            [
                b"Subject: \xff ".as_slice(),
                &b"=?a?q?".repeat(170_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "many_open_words_utf8",
            [
                b"Subject: ".as_slice(),
                &b"=?a?q?".repeat(170_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "many_words",
            [
                b"Subject: ".as_slice(),
                &b"=?a?q?b?= ".repeat(100_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "many_addresses",
            [
                b"To: ".as_slice(),
                &b"a <b@c.pl>, ".repeat(80_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
        (
            "many_parens",
            [b"To: ".as_slice(), &b"(".repeat(1_000_000), b"\r\n\r\n"].concat(),
        ),
        (
            "many_quotes",
            [b"From: ".as_slice(), &b"\"".repeat(1_000_000), b"\r\n\r\n"].concat(),
        ),
        (
            "megabyte_subject",
            [b"Subject: ".as_slice(), &b"x".repeat(1 << 20), b"\r\n\r\n"].concat(),
        ),
        ("ten_thousand_lines", b"Received: x\r\n".repeat(10_000)),
        (
            "hundred_thousand_folds",
            [
                b"Subject: a".as_slice(),
                &b"\r\n b".repeat(100_000),
                b"\r\n\r\n",
            ]
            .concat(),
        ),
    ];
    for (name, raw) in cases {
        let t0 = Instant::now();
        // A thread with the workers' stack size: a recursion that would
        // overflow it fails here too.
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || summarize(&raw))
            .expect("spawn");
        let s = handle.join();
        assert!(s.is_ok(), "{name}: summarize panicked or overflowed");
        let took = t0.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{name}: summarize took {took:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// the IMAP response parser

const IMAP_TOKENS: &[&[u8]] = &[
    b"* ",
    b"a1 ",
    b"+ ",
    b"OK ",
    b"NO ",
    b"BYE ",
    b"1 ",
    b"4294967296 ",
    b"99999999999999999999999 ",
    b"FETCH ",
    b"EXISTS",
    b"LIST ",
    b"STATUS ",
    b"SEARCH ",
    b"VANISHED ",
    b"(EARLIER) ",
    b"CAPABILITY ",
    b"(",
    b")",
    b"[",
    b"]",
    b"<0>",
    b"{",
    b"}",
    b"{3}\r\n",
    b"{0}\r\n",
    b"{5+}\r\n",
    b"~{2}\r\n",
    b"{18446744073709551615}\r\n",
    b"\"",
    b"\\",
    b"NIL",
    b"UID ",
    b"FLAGS ",
    b"BODY[] ",
    b"BODY[HEADER.FIELDS (MESSAGE-ID)] ",
    b"RFC822.SIZE ",
    b"MODSEQ ",
    b"\\Seen",
    b"1:3,7",
    b"*",
    b" ",
    b"\r\n",
    b"\n",
    b"\0",
    b"\xff",
];

#[test]
fn imap_parse_never_panics_on_arbitrary_bytes_and_mutations() {
    let valid: &[&[u8]] = &[
        b"* 3 FETCH (UID 5 RFC822.SIZE 3 FLAGS (\\Seen $X) INTERNALDATE \" 7-Jul-2026 02:44:25 -0700\" MODSEQ (9) BODY[] {3}\r\nabc)\r\n",
        b"* LIST (\\HasNoChildren \\Sent) \"/\" {5}\r\na\"b\\c\r\n",
        b"* STATUS \"Za&AXw-\" (MESSAGES 3 UIDNEXT 44 UIDVALIDITY 9 HIGHESTMODSEQ 120)\r\n",
        b"* VANISHED (EARLIER) 300:310,405\r\n",
        b"* SEARCH 1 5 9 (MODSEQ 3)\r\n",
        b"a7 OK [READ-ONLY] Examine completed.\r\n",
        b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
        b"* 1 FETCH (UID 9 BODY[HEADER.FIELDS (MESSAGE-ID)] {4}\r\nab\r\n BODY[TEXT]<0> NIL)\r\n",
    ];
    let mut rng = Rng::new(8);
    for i in 0..iterations() * 10 {
        let input = match rng.below(3) {
            0 => rng.tokens(IMAP_TOKENS, 40),
            1 => rng.bytes(200),
            _ => {
                let base = rng_pick_bytes(&mut rng, valid);
                mutate(&mut rng, base)
            }
        };
        case("imap parse", i, &input, || {
            let _ = parse::parse(&input);
            let _ = literal_announced(&input);
            for line in input.split_inclusive(|b| *b == b'\n') {
                if let Some(n) = literal_announced(line) {
                    let t = line.strip_suffix(b"\n").unwrap_or(line);
                    let t = t.strip_suffix(b"\r").unwrap_or(t);
                    assert!(t.ends_with(b"}"), "announced {n} without '}}'");
                }
            }
        });
    }
}

fn rng_pick_bytes<'a>(rng: &mut Rng, items: &[&'a [u8]]) -> &'a [u8] {
    items[rng.below(items.len())]
}

/// An IMAP string for `b` as a server may send it: quoted (escaped) when
/// it can be, else a literal.
fn imap_string(rng: &mut Rng, b: &[u8]) -> Vec<u8> {
    let quotable = b.iter().all(|c| (0x20..0x7f).contains(c));
    if quotable && rng.chance(2) {
        let mut out = vec![b'"'];
        for c in b {
            if *c == b'"' || *c == b'\\' {
                out.push(b'\\');
            }
            out.push(*c);
        }
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}}}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out
    }
}

#[test]
fn imap_parse_reads_back_generated_fetch_list_and_status_responses() {
    let mut rng = Rng::new(9);
    const BODY: &[&[u8]] = &[
        b")\r\n",
        b"{5}\r\n",
        b"* 1 FETCH (",
        b"\0",
        b"\r",
        b"\n",
        b"\"",
        b"\xff",
        b"From: a\r\n\r\n",
        b"NIL",
    ];
    for i in 0..iterations() * 2 {
        let seq = 1 + rng.below(1 << 20) as u32;
        let uid = 1 + (rng.next() as u32 >> 1);
        let body = if rng.chance(2) {
            rng.bytes(300)
        } else {
            rng.tokens(BODY, 20)
        };
        let flags: Vec<String> = (0..rng.below(4))
            .map(|_| format!("{}{}", rng.pick(&["\\", "$", "X"]), rng.word(7)))
            .collect();
        let modseq = rng.next() >> 1;
        let mut items: Vec<Vec<u8>> = vec![
            format!("UID {uid}").into_bytes(),
            format!("RFC822.SIZE {}", body.len()).into_bytes(),
            format!("FLAGS ({})", flags.join(" ")).into_bytes(),
            format!("MODSEQ ({modseq})").into_bytes(),
            b"INTERNALDATE \"17-Jul-1996 02:44:25 -0700\"".to_vec(),
            [b"BODY[] ".as_slice(), &imap_string(&mut rng, &body)].concat(),
        ];
        for k in (1..items.len()).rev() {
            items.swap(k, rng.below(k + 1));
        }
        let mut resp = format!("* {seq} FETCH (").into_bytes();
        resp.extend_from_slice(&items.join(&b' '));
        resp.extend_from_slice(b")\r\n");
        let parsed = case("fetch round trip", i, &resp, || parse::parse(&resp));
        let Ok(Response::Untagged(Untagged::Fetch { seq: s, items: got })) = parsed else {
            panic!("case {i}: {parsed:?} for {}", hex_brief(&resp));
        };
        assert_eq!(s, seq);
        let get = |k: &[u8]| {
            got.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(b"UID").and_then(|v| v.number()), Some(u64::from(uid)));
        assert_eq!(
            get(b"BODY[]").and_then(|v| v.bytes().map(<[u8]>::to_vec)),
            Some(body.clone()),
            "case {i}: {}",
            hex_brief(&resp)
        );
        assert_eq!(
            get(b"MODSEQ"),
            Some(Value::List(vec![Value::Atom(
                modseq.to_string().as_bytes()
            )]))
        );
        let Some(Value::List(fl)) = get(b"FLAGS") else {
            panic!("flags")
        };
        let fl: Vec<String> = fl
            .iter()
            .filter_map(|v| v.bytes().map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect();
        assert_eq!(fl, flags);

        // LIST with any name bytes, and STATUS of it
        let name: Vec<u8> = if rng.chance(2) {
            rng.bytes(30)
        } else {
            rng.string(12).into_bytes()
        };
        let mut list = b"* LIST (\\HasNoChildren) \"/\" ".to_vec();
        list.extend_from_slice(&imap_string(&mut rng, &name));
        list.extend_from_slice(b"\r\n");
        match case("list round trip", i, &list, || parse::parse(&list)) {
            Ok(Response::Untagged(Untagged::List { name: n, .. })) => {
                assert_eq!(
                    n.as_ref(),
                    name.as_slice(),
                    "case {i}: {}",
                    hex_brief(&list)
                )
            }
            other => panic!("case {i}: {other:?} for {}", hex_brief(&list)),
        }
        let (uidnext, uidvalidity) = (rng.next() as u32, rng.next() as u32);
        let mut status = b"* STATUS ".to_vec();
        status.extend_from_slice(&imap_string(&mut rng, &name));
        status.extend_from_slice(
            format!(" (MESSAGES 3 UIDNEXT {uidnext} UIDVALIDITY {uidvalidity})\r\n").as_bytes(),
        );
        match case("status round trip", i, &status, || parse::parse(&status)) {
            Ok(Response::Untagged(Untagged::MailboxStatus { name: n, items })) => {
                assert_eq!(n.as_ref(), name.as_slice());
                assert!(items.contains(&(b"UIDNEXT".as_slice(), u64::from(uidnext))));
                assert!(items.contains(&(b"UIDVALIDITY".as_slice(), u64::from(uidvalidity))));
            }
            other => panic!("case {i}: {other:?} for {}", hex_brief(&status)),
        }
    }
}

#[test]
fn imap_literal_announcement_is_found_exactly_at_the_line_end() {
    let mut rng = Rng::new(10);
    for i in 0..iterations() * 4 {
        let prefix = rng.tokens(IMAP_TOKENS, 10);
        let n = rng.next() >> rng.below(64);
        let plus = if rng.chance(2) { "+" } else { "" };
        let eol: &[u8] = if rng.chance(4) { b"\n" } else { b"\r\n" };
        let line = [prefix.as_slice(), format!("{{{n}{plus}}}").as_bytes(), eol].concat();
        let got = case("literal_announced", i, &line, || literal_announced(&line));
        assert_eq!(got, Some(n), "case {i}: {}", hex_brief(&line));
        // Anything after the brace on the line: not an announcement.
        let mut tail = line[..line.len() - eol.len()].to_vec();
        tail.extend_from_slice(b" x");
        tail.extend_from_slice(eol);
        assert_eq!(
            literal_announced(&tail),
            None,
            "case {i}: {}",
            hex_brief(&tail)
        );
        // Without the line end: not a complete line, not an announcement.
        assert_eq!(literal_announced(&line[..line.len() - eol.len()]), None);
    }
}

#[test]
fn imap_parse_refuses_deep_nesting_without_overflowing_the_stack() {
    // Regression: the parser recursed once per '(' and a server sending a
    // long run of them overflowed a worker's stack, killing the whole run
    // (SIGSEGV, no panic to catch). A worker has the default 2 MiB stack.
    let inputs: Vec<Vec<u8>> = vec![
        [
            b"* 1 FETCH (UID 1 X ".as_slice(),
            &b"(".repeat(1_000_000),
            b"\r\n",
        ]
        .concat(),
        [
            b"* 1 FETCH (UID 1 FLAGS ".as_slice(),
            &b"(".repeat(100_000),
            &b")".repeat(100_000),
            b")\r\n",
        ]
        .concat(),
        [b"* LIST ".as_slice(), &b"(".repeat(1_000_000), b"\r\n"].concat(),
        [b"* STATUS x ".as_slice(), &b"(".repeat(1_000_000), b"\r\n"].concat(),
    ];
    for input in inputs {
        let len = input.len();
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse::parse(&input).is_err())
            .expect("spawn")
            .join();
        assert_eq!(r.ok(), Some(true), "{len} bytes: not refused");
    }
    // Nesting a real server sends (BODYSTRUCTURE of nested multiparts) is fine.
    let ok = [
        b"* 1 FETCH (UID 1 X ".as_slice(),
        &b"(".repeat(50),
        &b")".repeat(50),
        b")\r\n",
    ]
    .concat();
    assert!(parse::parse(&ok).is_ok());
}

// ---------------------------------------------------------------------------
// the outgoing message: check and wire

const MAIL_TOKENS: &[&[u8]] = &[
    b"From: a@example.com",
    b"To: b@example.com",
    b"Cc: C <c@example.com>",
    b"Bcc: d@example.com",
    b"BCC:e@example.com",
    b"bcc: f@example.com,\r\n g@example.com",
    b"Sender: s@example.com",
    b"Subject: hi",
    b"Message-ID: <x@y>",
    b"X-A: b",
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b"\n\n",
    b" ",
    b"\t",
    b":",
    b"\0",
    b"\xff",
    b".",
    b"\r\n.\r\n",
    b"body",
    b"undisclosed-recipients:;",
    b"<>",
    b"@",
    b",",
];

/// Every LF is preceded by a CR.
fn no_bare_lf(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .all(|(i, c)| *c != b'\n' || (i > 0 && b[i - 1] == b'\r'))
}

/// Names of the header fields (lines not starting with white space).
fn field_names(header: &[u8]) -> Vec<String> {
    header
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b' ' && l[0] != b'\t')
        .filter_map(|l| {
            let colon = l.iter().position(|b| *b == b':')?;
            Some(
                String::from_utf8_lossy(&l[..colon])
                    .trim()
                    .to_ascii_lowercase(),
            )
        })
        .collect()
}

#[test]
fn outbox_check_and_wire_on_arbitrary_bytes() {
    let mut rng = Rng::new(11);
    let mut accepted = 0;
    for i in 0..iterations() * 4 {
        let mut raw = Vec::new();
        if rng.chance(2) {
            raw.extend_from_slice(b"From: a@example.com\r\nTo: b@example.com\r\n");
        }
        if rng.chance(4) {
            raw.extend(rng.bytes(300));
        } else {
            raw.extend(rng.tokens(MAIL_TOKENS, 25));
        }
        case("outbox check/wire", i, &raw, || {
            let verdict = check(&raw, "acct@example.com");
            for strip in [false, true] {
                let w = wire(&raw, Some("id@example.com"), strip);
                assert!(no_bare_lf(&w), "bare LF on the wire");
                assert_eq!(wire(&w, None, strip), w, "wire is not idempotent");
            }
            if let Ok(env) = verdict {
                accepted += 1;
                let (hend, _) = backproc::message::header_end(&raw);
                let head = &raw[..hend];
                assert!(!head.contains(&0), "NUL accepted in the header");
                assert!(
                    head.iter()
                        .enumerate()
                        .all(|(k, b)| *b != b'\r' || head.get(k + 1) == Some(&b'\n')),
                    "a bare CR accepted in the header"
                );
                assert!(!env.rcpt_to.is_empty());
                let w = wire(&raw, None, true);
                assert!(
                    !field_names(header_of(&w)).iter().any(|n| n == "bcc"),
                    "Bcc on the wire: {}",
                    hex_brief(&w)
                );
            }
        });
    }
    assert!(accepted > 0, "the generator never made a valid message");
}

#[test]
fn outbox_wire_keeps_the_envelope_drops_only_bcc_and_injection_is_refused() {
    let mut rng = Rng::new(12);
    for i in 0..iterations() {
        let addr = |rng: &mut Rng| format!("{}@{}.example.com", rng.word(8), rng.word(5));
        let from = addr(&mut rng);
        let to: Vec<String> = (0..1 + rng.below(3)).map(|_| addr(&mut rng)).collect();
        let cc: Vec<String> = (0..rng.below(3)).map(|_| addr(&mut rng)).collect();
        let bcc: Vec<String> = (0..rng.below(3)).map(|_| addr(&mut rng)).collect();
        let bcc_name = rng.pick(&["Bcc", "BCC", "bcc", "bCC"]);
        let mut fields = vec![
            format!("From: {} <{from}>", rng.word(6)),
            format!("To: {}", to.join(", ")),
            format!("Subject: {}", rng.ascii(0, 60, "\r\n")),
        ];
        if !cc.is_empty() {
            fields.push(format!("Cc: {}", cc.join(",\r\n\t")));
        }
        if !bcc.is_empty() {
            // folded over several lines at random
            let sep = if rng.chance(2) { ",\r\n " } else { ", " };
            fields.push(format!("{bcc_name}: {}", bcc.join(sep)));
        }
        for _ in 0..rng.below(4) {
            fields.push(format!("X-{}: {}", rng.word(6), rng.ascii(0, 50, "\r\n")));
        }
        for k in (1..fields.len()).rev() {
            fields.swap(k, rng.below(k + 1));
        }
        let lf = rng.chance(4);
        let mut raw = fields.join("\r\n").into_bytes();
        raw.extend_from_slice(b"\r\n\r\n");
        raw.extend_from_slice(&rng.tokens(MAIL_TOKENS, 20));
        if lf {
            // a message written on Unix: bare LF throughout the header
            let (hend, _) = backproc::message::header_end(&raw);
            let head = String::from_utf8_lossy(&raw[..hend]).replace("\r\n", "\n");
            raw = [head.as_bytes(), b"\n", &raw[hend + 2..]].concat();
        }
        let env = case("outbox generated", i, &raw, || {
            check(&raw, "acct@example.com")
        })
        .unwrap_or_else(|e| panic!("case {i}: refused: {e}\n{}", String::from_utf8_lossy(&raw)));
        assert_eq!(env.mail_from, from);
        // Each recipient once, in the order of the fields.
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let want: Vec<String> = to.iter().chain(&cc).chain(&bcc).cloned().collect();
        assert_eq!(sorted(&env.rcpt_to), sorted(&want), "case {i}");
        // On the wire: no Bcc, CRLF only, and the same envelope without Bcc.
        let w = wire(&raw, None, true);
        assert!(no_bare_lf(&w));
        assert!(!field_names(header_of(&w)).iter().any(|n| n == "bcc"));
        let again = check(&w, "acct@example.com").expect("the wire form is a valid message");
        assert_eq!(again.mail_from, from);
        let no_bcc: Vec<String> = to.iter().chain(&cc).cloned().collect();
        assert_eq!(sorted(&again.rcpt_to), sorted(&no_bcc), "case {i}");
        // The body is not touched beyond line ends.
        let body_in = &raw[backproc::message::header_end(&raw).1..];
        let body_out = &w[backproc::message::header_end(&w).1..];
        assert_eq!(
            String::from_utf8_lossy(body_out).replace("\r\n", "\n"),
            String::from_utf8_lossy(body_in).replace("\r\n", "\n"),
            "case {i}"
        );

        // Any CR, LF+name or NUL smuggled into a header value is refused.
        let inject: &[u8] = rng.pick(&[
            b"\rBcc: evil@example.org".as_slice(),
            b"\nBcc: evil@example.org",
            b"\0",
            b"\r",
        ]);
        if lf && inject == b"\nBcc: evil@example.org" {
            continue; // in a bare-LF header that is just another field
        }
        let subj = raw
            .windows(9)
            .position(|w| w == b"Subject: ")
            .expect("subject")
            + 9;
        let mut bad = raw.clone();
        bad.splice(subj..subj, inject.iter().copied());
        let err = check(&bad, "acct@example.com");
        assert!(
            err.is_err(),
            "case {i}: injection accepted: {}",
            hex_brief(&bad)
        );
    }
}
