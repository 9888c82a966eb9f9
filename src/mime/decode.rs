//! Content-Transfer-Encoding decoding (RFC 2045): base64 and
//! quoted-printable, and nothing else (no charset conversion, line ends as
//! they came). Streaming: the decoded bytes go to a sink in pieces of at
//! most [`CHUNK`] bytes, so an attachment is hashed without ever being held
//! whole, and the sink can stop the decoding early.
//!
//! Both decoders take any bytes. Base64 skips what is not in its alphabet
//! and reads on after `=` padding (blobs glued together by broken mailers
//! decode whole); a last group of 2 or 3 characters gives its 1 or 2
//! bytes, a lone character nothing. Quoted-printable follows RFC 2045 as
//! Dovecot does: trailing white space of a line is transport padding and
//! goes, `=` at the end of a line (white space after it allowed) is a soft
//! break, and `=` not followed by two hex digits stays as it is.

/// A part's transfer encoding, as far as decoding goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// 7bit, 8bit, binary, absent, or one we do not know: the bytes as they are.
    #[default]
    Identity,
    Base64,
    QuotedPrintable,
}

/// Largest piece handed to a sink.
pub const CHUNK: usize = 16 * 1024;

/// Decodes `body` and hands the bytes to `sink`, which returns false to stop.
pub fn decode(encoding: Encoding, body: &[u8], sink: &mut dyn FnMut(&[u8]) -> bool) {
    match encoding {
        Encoding::Identity => {
            for piece in body.chunks(CHUNK) {
                if !sink(piece) {
                    return;
                }
            }
        }
        Encoding::Base64 => base64(body, sink),
        Encoding::QuotedPrintable => quoted_printable(body, sink),
    }
}

const INVALID: u8 = 0xff;

static BASE64: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn base64(body: &[u8], sink: &mut dyn FnMut(&[u8]) -> bool) {
    let mut out = Vec::with_capacity(CHUNK + 3);
    let (mut acc, mut n) = (0u32, 0u8);
    let flush_group = |acc: u32, n: u8, out: &mut Vec<u8>| match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    };
    let mut i = 0;
    while i < body.len() {
        // Whole groups of four valid characters, the bulk of any body.
        if n == 0 {
            while let Some(&[a, b, c, d]) = body.get(i..i + 4) {
                let (a, b, c, d) = (
                    BASE64[a as usize],
                    BASE64[b as usize],
                    BASE64[c as usize],
                    BASE64[d as usize],
                );
                if (a | b | c | d) & 0xc0 != 0 {
                    break;
                }
                let w = (a as u32) << 18 | (b as u32) << 12 | (c as u32) << 6 | d as u32;
                out.extend_from_slice(&[(w >> 16) as u8, (w >> 8) as u8, w as u8]);
                i += 4;
                if out.len() >= CHUNK {
                    if !sink(&out) {
                        return;
                    }
                    out.clear();
                }
            }
            if i >= body.len() {
                break;
            }
        }
        let b = body[i];
        i += 1;
        let v = BASE64[b as usize];
        if v != INVALID {
            acc = acc << 6 | v as u32;
            n += 1;
            if n == 4 {
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                (acc, n) = (0, 0);
                if out.len() >= CHUNK {
                    if !sink(&out) {
                        return;
                    }
                    out.clear();
                }
            }
        } else if b == b'=' {
            flush_group(acc, n, &mut out);
            (acc, n) = (0, 0);
        }
    }
    flush_group(acc, n, &mut out);
    if !out.is_empty() {
        sink(&out);
    }
}

fn quoted_printable(body: &[u8], sink: &mut dyn FnMut(&[u8]) -> bool) {
    let mut out = Vec::with_capacity(CHUNK + 256);
    let mut rest = body;
    while !rest.is_empty() {
        let (line, eol, next) = match memchr::memchr(b'\n', rest) {
            Some(p) if p > 0 && rest[p - 1] == b'\r' => (&rest[..p - 1], &b"\r\n"[..], p + 1),
            Some(p) => (&rest[..p], &b"\n"[..], p + 1),
            None => (rest, &b""[..], rest.len()),
        };
        rest = &rest[next..];
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |p| p + 1);
        let line = &line[..end];
        let (line, soft) = match line.strip_suffix(b"=") {
            Some(l) => (l, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if b == b'=' {
                if let (Some(h), Some(l)) = (
                    line.get(i + 1).and_then(|&c| super::header::hex(c)),
                    line.get(i + 2).and_then(|&c| super::header::hex(c)),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
        if out.len() >= CHUNK {
            if !sink(&out) {
                return;
            }
            out.clear();
        }
    }
    if !out.is_empty() {
        sink(&out);
    }
}

/// The whole of `body` decoded, for tests and small parts.
#[cfg(test)]
pub fn decode_all(encoding: Encoding, body: &[u8]) -> Vec<u8> {
    let mut all = Vec::new();
    decode(encoding, body, &mut |piece| {
        assert!(piece.len() <= CHUNK + 256, "piece of {}", piece.len());
        all.extend_from_slice(piece);
        true
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_table() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("padded", b"aGVsbG8=", b"hello"),
            ("unpadded", b"aGVsbG8", b"hello"),
            ("folded_crlf", b"aGVs\r\nbG8=\r\n", b"hello"),
            ("garbage_skipped", b"aGV$sbG8*gd29y!bGQ", b"hello world"),
            ("glued_blobs", b"aGVsbA==IQ==", b"hell!"),
            ("lone_last_character_dropped", b"aGVsb", b"hel"),
            ("padding_first", b"=aGVs", b"hel"),
            ("empty", b"", b""),
            ("only_garbage", b"!!!\r\n", b""),
            ("nul_and_8bit", b"aG\0V\xffsbG8=", b"hello"),
        ];
        for (case, input, want) in cases {
            assert_eq!(decode_all(Encoding::Base64, input), *want, "{case}");
        }
    }

    #[test]
    fn quoted_printable_table() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("hex_either_case", b"a=3Db=3dc", b"a=b=c"),
            ("soft_break_crlf", b"ab=\r\ncd\r\n", b"abcd\r\n"),
            ("soft_break_lf", b"ab=\ncd\n", b"abcd\n"),
            ("soft_break_then_spaces", b"ab= \t\r\ncd", b"abcd"),
            (
                "trailing_space_is_padding",
                b"ab  \r\ncd\t\r\n",
                b"ab\r\ncd\r\n",
            ),
            ("encoded_space_kept", b"ab=20\r\n", b"ab \r\n"),
            ("bad_escape_kept", b"a=XYb=4", b"a=XYb=4"),
            ("equals_at_end_of_body", b"abc=", b"abc"),
            ("utf8_bytes", b"=C5=BC=C3=B3", "żó".as_bytes()),
            ("no_final_line_end", b"a\r\nb", b"a\r\nb"),
            ("bare_cr_kept", b"a\rb\r\n", b"a\rb\r\n"),
            ("empty", b"", b""),
        ];
        for (case, input, want) in cases {
            assert_eq!(
                decode_all(Encoding::QuotedPrintable, input),
                *want,
                "{case}: {:?}",
                String::from_utf8_lossy(&decode_all(Encoding::QuotedPrintable, input))
            );
        }
    }

    #[test]
    fn identity_keeps_every_byte() {
        let body: Vec<u8> = (0..=255u8).cycle().take(3 * CHUNK + 7).collect();
        assert_eq!(decode_all(Encoding::Identity, &body), body);
    }

    #[test]
    fn large_input_streams_in_pieces_and_can_stop() {
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let encoded = base64_encode_lines(&plain);
        assert_eq!(decode_all(Encoding::Base64, &encoded), plain);
        let mut pieces = 0;
        decode(Encoding::Base64, &encoded, &mut |_| {
            pieces += 1;
            pieces < 2
        });
        assert_eq!(pieces, 2, "stops when the sink says so");
    }

    /// Test-only base64 encoder with 76-character lines.
    fn base64_encode_lines(data: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let text = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::new();
        for line in text.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}
