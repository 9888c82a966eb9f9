//! The one HTTP request the engine makes: a form POST to an OAuth 2.0
//! endpoint, answered with a small JSON body.
//!
//! Written on [`crate::net`] rather than with an HTTP crate so that it
//! trusts exactly what IMAP and SMTP trust (the system's roots plus
//! `BG_TLS_CA_FILE`; ureq's native-tls setup takes one or the other, not
//! both) and is bounded the same way: every connect, read and write by the
//! I/O timeout, and the whole exchange (TLS handshake included) by a limit
//! on a helper thread, so a server that trickles cannot hold the run. Plain
//! `http` only to loopback addresses (tests). HTTP/1.1, one request per
//! connection, no redirects, the body capped at [`MAX_BODY`].

use crate::net::Tls;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// Largest body read from an endpoint: a token answer is a few KiB.
pub const MAX_BODY: usize = 64 << 10;
/// Largest status line plus headers.
const MAX_HEAD: usize = 64 << 10;

/// Why a request got no answer to judge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one the engine sends secrets to.
    #[error("{0}")]
    Url(String),
    /// Connecting, TLS, writing or reading failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (an untrusted certificate, a wrong host).
    #[error("TLS with {host} failed: {why}")]
    Tls { host: String, why: String },
    /// The whole exchange took longer than its limit.
    #[error("no complete answer from {host} within {secs} s (timed out)")]
    Timeout { host: String, secs: u64 },
    /// The answer is not HTTP, or too large.
    #[error("{0}")]
    Bad(String),
}

/// An endpoint's answer: the status code and the body (at most [`MAX_BODY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// A URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, from the `/` on.
    pub target: String,
}

impl Url {
    /// Parses `https://host[:port]/path` (or `http://` to a loopback host).
    pub fn parse(url: &str) -> Result<Url, Error> {
        let bad = |why: &str| Error::Url(format!("{url}: {why}"));
        let (https, rest) = if let Some(rest) = strip_prefix_ci(url, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(url, "http://") {
            (false, rest)
        } else {
            return Err(bad("not an https URL"));
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        if host.is_empty() || target.contains(char::is_whitespace) {
            return Err(bad("bad host or path"));
        }
        if !https && !is_loopback(&host) {
            return Err(bad(
                "plain http is refused (only https, or http to a loopback address for tests)",
            ));
        }
        Ok(Url {
            https,
            host,
            port,
            target,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), Some(port.parse().ok()?))),
        None => Some((authority.to_string(), None)),
    }
}

/// Whether `host` names this machine only.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

/// POSTs `body` (form-encoded) to `url`, asking for JSON. Every socket
/// operation is bounded by `timeout`, the whole exchange by twice that
/// plus a second.
pub fn post_form(url: &Url, body: &str, tls: &Tls, timeout: Duration) -> Result<Answer, Error> {
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: backproc\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        url.target,
        host_header(url),
        body.len()
    );
    let connector = if url.https {
        Some(tls.connector().map_err(|e| Error::Tls {
            host: url.host.clone(),
            why: e.to_string(),
        })?)
    } else {
        None
    }
    .cloned();
    let (tx, rx) = mpsc::channel();
    let (u, limit) = (
        url.clone(),
        timeout.saturating_mul(2) + Duration::from_secs(1),
    );
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let _ = tx.send(exchange(&u, &request, connector.as_ref(), timeout));
        })
        .map_err(|source| Error::Io {
            what: "cannot start a thread".into(),
            source,
        })?;
    match rx.recv_timeout(limit) {
        Ok(answer) => answer,
        // The thread ends when the server closes, at the latest with the process.
        Err(_) => Err(Error::Timeout {
            host: url.host.clone(),
            secs: limit.as_secs(),
        }),
    }
}

fn host_header(url: &Url) -> String {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let default = if url.https { 443 } else { 80 };
    if url.port == default {
        host
    } else {
        format!("{host}:{}", url.port)
    }
}

/// Connects, writes the request and reads the answer (on the helper thread).
fn exchange(
    url: &Url,
    request: &str,
    connector: Option<&native_tls::TlsConnector>,
    timeout: Duration,
) -> Result<Answer, Error> {
    let peer = format!("{}:{}", url.host, url.port);
    let io = |what: &str| {
        let what = format!("{what} {peer}");
        move |source| Error::Io { what, source }
    };
    let tcp = crate::net::connect(&url.host, url.port, timeout).map_err(io("cannot connect to"))?;
    let mut stream: Box<dyn ReadWrite> = match connector {
        Some(c) => Box::new(c.connect(&url.host, tcp).map_err(|e| Error::Tls {
            host: url.host.clone(),
            why: match e {
                native_tls::HandshakeError::Failure(e) => e.to_string(),
                native_tls::HandshakeError::WouldBlock(_) => "no answer (timed out)".into(),
            },
        })?),
        None => Box::new(tcp),
    };
    stream
        .write_all(request.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(io("cannot send to"))?;
    read_answer(BufReader::new(stream)).map_err(|e| match e {
        // A timed-out read surfaces as EAGAIN: said plainly.
        Unread::Io(source) if crate::net::is_timeout(&source) => Error::Timeout {
            host: url.host.clone(),
            secs: timeout.as_secs(),
        },
        Unread::Io(source) => Error::Io {
            what: format!("cannot read the answer of {peer}"),
            source,
        },
        Unread::Bad(why) => Error::Bad(format!("{peer}: {why}")),
    })
}

trait ReadWrite: io::Read + io::Write + Send {}
impl<T: io::Read + io::Write + Send> ReadWrite for T {}

/// Why an answer could not be read.
#[derive(Debug)]
enum Unread {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for Unread {
    fn from(e: io::Error) -> Unread {
        Unread::Io(e)
    }
}

/// Reads an HTTP/1.1 answer: status line, headers, and a body by
/// Content-Length, chunks, or up to the close.
fn read_answer(mut r: impl BufRead) -> Result<Answer, Unread> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = (&mut r)
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(Unread::Bad(
                "the server closed the connection without an answer".into(),
            ));
        }
        if head.len() > MAX_HEAD {
            return Err(Unread::Bad("the answer's header is too large".into()));
        }
        if head[start..].iter().all(|b| *b == b'\r' || *b == b'\n') && start > 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let status_line = lines.next().unwrap_or("");
    let status = parse_status(status_line)
        .ok_or_else(|| Unread::Bad(format!("not an HTTP answer: '{}'", printable(status_line))))?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| Unread::Bad("bad Content-Length".into()))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let too_large = || Unread::Bad(format!("the answer is larger than {} KiB", MAX_BODY >> 10));
    let body = if chunked {
        read_chunked(&mut r)?
    } else if let Some(len) = length {
        if len > MAX_BODY {
            return Err(too_large());
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        let mut body = Vec::new();
        (&mut r).take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
        body
    };
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(Answer { status, body })
}

fn parse_status(line: &str) -> Option<u16> {
    let mut words = line.split_whitespace();
    let version = words.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = words.next()?.parse().ok()?;
    (100..600).contains(&code).then_some(code)
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, Unread> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.take(1024).read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| Unread::Bad("bad chunk in the answer".into()))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(Unread::Bad(format!(
                "the answer is larger than {} KiB",
                MAX_BODY >> 10
            )));
        }
        let at = body.len();
        body.resize(at + size, 0);
        r.read_exact(&mut body[at..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// At most 80 characters of `s`, control characters shown as `?`.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_table() {
        let ok = |https, host: &str, port, target: &str| {
            Ok::<Url, String>(Url {
                https,
                host: host.into(),
                port,
                target: target.into(),
            })
        };
        let cases: &[(&str, &str, Result<Url, String>)] = &[
            (
                "microsoft",
                "https://login.microsoftonline.com/common/oauth2/v2.0/token",
                ok(
                    true,
                    "login.microsoftonline.com",
                    443,
                    "/common/oauth2/v2.0/token",
                ),
            ),
            (
                "port_and_query",
                "https://h:8443/t?a=b",
                ok(true, "h", 8443, "/t?a=b"),
            ),
            ("no_path", "https://h", ok(true, "h", 443, "/")),
            (
                "query_without_path",
                "https://h?x",
                ok(true, "h", 443, "/?x"),
            ),
            (
                "http_loopback",
                "http://127.0.0.1:9/token",
                ok(false, "127.0.0.1", 9, "/token"),
            ),
            (
                "http_localhost",
                "HTTP://localhost/t",
                ok(false, "localhost", 80, "/t"),
            ),
            (
                "http_v6_loopback",
                "http://[::1]:8080/t",
                ok(false, "::1", 8080, "/t"),
            ),
            (
                "http_elsewhere_refused",
                "http://example.com/token",
                Err("plain http".into()),
            ),
            (
                "http_lookalike_refused",
                "http://127.0.0.1.example.com/t",
                Err("plain http".into()),
            ),
            ("ftp_refused", "ftp://h/t", Err("not an https URL".into())),
            (
                "credentials_refused",
                "https://u:p@h/t",
                Err("credentials".into()),
            ),
            ("bad_port", "https://h:99999/t", Err("bad host".into())),
            ("empty_host", "https:///t", Err("bad host".into())),
        ];
        for (name, url, want) in cases {
            match (Url::parse(url), want) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{name}"),
                (Err(e), Err(words)) => {
                    assert!(e.to_string().contains(words.as_str()), "{name}: {e}")
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form(&[("grant_type", "refresh_token"), ("scope", "a b/c&d=é")]),
            "grant_type=refresh_token&scope=a+b%2Fc%26d%3D%C3%A9"
        );
    }

    #[test]
    fn answers_table() {
        let read = |raw: &[u8]| read_answer(raw).map_err(|e| format!("{e:?}"));
        let cases: Vec<(&str, Vec<u8>, Result<(u16, Vec<u8>), &str>)> = vec![
            (
                "content_length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}\r\nextra".to_vec(),
                Ok((200, b"{}\r\n".to_vec())),
            ),
            (
                "chunked",
                b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2;x=y\r\n\"}\r\n0\r\n\r\n"
                    .to_vec(),
                Ok((400, b"{\"a\"}".to_vec())),
            ),
            (
                "to_the_close",
                b"HTTP/1.0 500 Oops\nServer: x\n\nsorry".to_vec(),
                Ok((500, b"sorry".to_vec())),
            ),
            ("not_http", b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), Err("not an HTTP answer")),
            ("nothing", Vec::new(), Err("without an answer")),
            (
                "too_large_by_length",
                b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_vec(),
                Err("larger than 64 KiB"),
            ),
            (
                "too_large_to_the_close",
                [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), vec![b'x'; MAX_BODY + 10]].concat(),
                Err("larger than 64 KiB"),
            ),
            (
                "too_large_chunked",
                [
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n".to_vec(),
                    vec![b'x'; 0x20000],
                ]
                .concat(),
                Err("larger than 64 KiB"),
            ),
            (
                "header_without_end",
                [b"HTTP/1.1 200 OK\r\nX: ".to_vec(), vec![b'y'; MAX_HEAD + 10]].concat(),
                Err("too large"),
            ),
        ];
        for (name, raw, want) in cases {
            match (read(&raw), want) {
                (Ok(a), Ok((status, body))) => {
                    assert_eq!((a.status, a.body), (status, body), "{name}")
                }
                (Err(e), Err(words)) => assert!(e.contains(words), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
