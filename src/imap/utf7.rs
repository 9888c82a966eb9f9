//! IMAP modified UTF-7 (RFC 3501 §5.1.3): the wire form of mailbox names.
//!
//! `email_folders.imap_name` stores the wire form exactly as the server sent
//! it (it is the key we send back); `name` is its decoding, for display.
//! This module is a pure codec: it does no I/O, never panics on any input,
//! and never guesses — [`decode`] accepts only the canonical form that
//! [`encode`] produces, so `encode(decode(w)?) == w` and
//! `decode(encode(s)) == Ok(s)`. [`decode_lossy`] is the display fallback.

/// Why a wire name is not valid modified UTF-7, and where (byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid modified UTF-7 at byte {position}: {reason}")]
pub struct Utf7Error {
    /// Byte offset in the wire string of the offending character or run.
    pub position: usize,
    /// What is wrong there.
    pub reason: &'static str,
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Characters that stand for themselves on the wire (printable US-ASCII).
fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn sextet(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Encode a UTF-8 mailbox name to its wire form.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_run(&mut out, &mut run);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

/// Append `&<base64 of the UTF-16BE units>-` for a pending run, if any.
fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for unit in run.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 0x3f) as usize]));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
}

/// Decode a wire name strictly; anything [`encode`] would not produce is an error.
pub fn decode(wire: &str) -> Result<String, Utf7Error> {
    let bytes = wire.as_bytes();
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    // End offset of the previous base64 run: two runs back to back are not
    // canonical (the encoder would have merged them).
    let mut prev_run_end: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(Utf7Error {
                    position: i,
                    reason: "character outside printable US-ASCII",
                });
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        if bytes.get(i) == Some(&b'-') {
            out.push('&');
            i += 1;
            continue;
        }
        if prev_run_end == Some(start) {
            return Err(Utf7Error {
                position: start,
                reason: "encoded run directly after another (not canonical)",
            });
        }
        i = decode_run(bytes, start, &mut out)?;
        prev_run_end = Some(i);
    }
    Ok(out)
}

/// Decode the base64 run that starts with `&` at `start`; returns the offset after its `-`.
fn decode_run(bytes: &[u8], start: usize, out: &mut String) -> Result<usize, Utf7Error> {
    let mut i = start + 1;
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    let mut units: Vec<u16> = Vec::new();
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(Utf7Error {
                position: start,
                reason: "unterminated encoded run (missing '-')",
            });
        };
        if b == b'-' {
            break;
        }
        let Some(v) = sextet(b) else {
            return Err(Utf7Error {
                position: i,
                reason: "invalid character in encoded run",
            });
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            units.push(((acc >> bits) & 0xffff) as u16);
            acc &= (1 << bits) - 1;
        }
        i += 1;
    }
    // Canonical padding: fewer than 6 leftover bits, all zero.
    if bits >= 6 {
        return Err(Utf7Error {
            position: i,
            reason: "encoded run has a superfluous base64 character",
        });
    }
    if acc != 0 {
        return Err(Utf7Error {
            position: i,
            reason: "encoded run has nonzero padding bits",
        });
    }
    let end = i + 1;
    let mut chars = Vec::with_capacity(units.len());
    for r in char::decode_utf16(units.iter().copied()) {
        match r {
            Ok(c) => chars.push(c),
            Err(_) => {
                return Err(Utf7Error {
                    position: start,
                    reason: "encoded run has an unpaired UTF-16 surrogate",
                })
            }
        }
    }
    if chars.is_empty() {
        return Err(Utf7Error {
            position: start,
            reason: "empty encoded run",
        });
    }
    if chars.iter().any(|&c| is_direct(c)) {
        return Err(Utf7Error {
            position: start,
            reason: "encoded run contains printable ASCII (not canonical)",
        });
    }
    out.extend(chars);
    Ok(end)
}

/// Decode for display: the decoding when valid, else the wire string unchanged.
pub fn decode_lossy(wire: &str) -> String {
    decode(wire).unwrap_or_else(|_| wire.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_pairs_round_trip() {
        let cases = [
            ("empty", "", ""),
            ("plain_ascii", "INBOX", "INBOX"),
            ("polish_word", "Zażółć", "Za&AXwA8wFCAQc-"),
            (
                "path_with_delimiter",
                "Faktury/Zażółć",
                "Faktury/Za&AXwA8wFCAQc-",
            ),
            ("ampersand_alone", "&", "&-"),
            ("ampersand_in_text", "Tom & Jerry", "Tom &- Jerry"),
            (
                "rfc3501_example",
                "~peter/mail/台北/日本語",
                "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
            ),
            ("emoji_surrogate_pair", "📧", "&2D3c5w-"),
            ("emoji_between_ascii", "a📧b", "a&2D3c5w-b"),
            ("ampersand_next_to_run", "&ż", "&-&AXw-"),
            ("control_char_encoded", "a\tb", "a&AAk-b"),
            ("del_encoded", "\u{7f}", "&AH8-"),
            ("nul_encoded", "\0", "&AAA-"),
            ("one_unit_two_bits_pad", "ł", "&AUI-"),
            ("two_units_four_bits_pad", "łł", "&AUIBQg-"),
            ("three_units_no_pad", "łłł", "&AUIBQgFC-"),
        ];
        for (case, name, wire) in cases {
            assert_eq!(encode(name), wire, "encode {case}");
            assert_eq!(decode(wire).as_deref(), Ok(name), "decode {case}");
            assert_eq!(decode_lossy(wire), name, "decode_lossy {case}");
        }
    }

    #[test]
    fn invalid_wire_forms_are_errors() {
        let cases = [
            ("unterminated_run", "Za&AXw", 2),
            ("unterminated_run_at_end", "&", 0),
            ("bad_base64_char", "&AX*-", 3),
            ("standard_base64_slash", "&U/BTFw-", 2),
            ("padding_char", "&AXw=-", 4),
            ("nonzero_padding_bits", "&AXx-", 4),
            ("superfluous_sextet", "&AXwA-", 5),
            ("empty_run_is_only_dash", "&-", usize::MAX), // valid, checked below
            ("encoded_printable_ascii", "&AEE-", 0),
            ("encoded_ampersand", "&ACY-", 0),
            ("lone_high_surrogate", "&2D0-", 0),
            ("lone_low_surrogate", "&3OY-", 0),
            ("reversed_surrogates", "&3OfYPQ-", 0),
            ("adjacent_runs", "&AXw-&APM-", 5),
            ("raw_non_ascii", "Zażółć", 2),
            ("raw_control", "a\tb", 1),
        ];
        for (case, wire, pos) in cases {
            if pos == usize::MAX {
                assert!(decode(wire).is_ok(), "{case}");
                continue;
            }
            let err = decode(wire).expect_err(case);
            assert_eq!(err.position, pos, "{case}: {err}");
            assert_eq!(decode_lossy(wire), wire, "{case}");
        }
    }

    #[test]
    fn error_display_names_position_and_reason() {
        let err = decode("&AXw").expect_err("unterminated");
        assert_eq!(
            err.to_string(),
            "invalid modified UTF-7 at byte 0: unterminated encoded run (missing '-')"
        );
    }

    /// xorshift64*: deterministic, no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_char(rng: &mut Rng) -> char {
        const PICKS: &[char] = &[
            '&', '-', '/', '.', ' ', 'A', 'z', '~', 'ą', 'ż', 'Ł', '台', '📧',
        ];
        match rng.below(5) {
            0 => PICKS[rng.below(PICKS.len() as u64) as usize],
            1 => char::from(0x20 + rng.below(0x5f) as u8),
            2 => char::from_u32(rng.below(0x800) as u32).unwrap_or('x'),
            3 => char::from_u32(rng.below(0x1_0000) as u32).unwrap_or('y'),
            _ => char::from_u32(0x1_0000 + rng.below(0x10_0000) as u32).unwrap_or('z'),
        }
    }

    #[test]
    fn property_random_names_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = rng.below(12) as usize;
            let name: String = (0..len).map(|_| random_char(&mut rng)).collect();
            let wire = encode(&name);
            assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire}");
            assert_eq!(decode(&wire).as_deref(), Ok(name.as_str()), "{name:?}");
        }
    }

    #[test]
    fn property_random_wire_strings_never_panic_and_valid_ones_are_canonical() {
        const WIRE: &[u8] = b"&&&---AZaz09+,/=.A";
        let mut rng = Rng(42);
        let mut valid = 0;
        for _ in 0..50_000 {
            let len = rng.below(14) as usize;
            let wire: String = (0..len)
                .map(|_| char::from(WIRE[rng.below(WIRE.len() as u64) as usize]))
                .collect();
            if let Ok(name) = decode(&wire) {
                valid += 1;
                assert_eq!(encode(&name), wire, "{wire:?} -> {name:?}");
            }
        }
        assert!(valid > 1000, "too few valid samples: {valid}");
    }
}
