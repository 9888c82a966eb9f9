//! TCP connections with timeouts on every operation, and TLS with verified
//! certificates (plus the CAs of `BG_TLS_CA_FILE`). Shared by IMAP and SMTP.
//!
//! Nothing here ever downgrades: `tls` and `starttls` accounts get TLS or an
//! error, `plain` only when an account says so.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

/// How an account's connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Implicit TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connect, then STARTTLS before anything else; refused if not offered.
    StartTls,
    /// No TLS at all: only when configured explicitly.
    Plain,
}

impl FromStr for Security {
    type Err = String;
    fn from_str(s: &str) -> Result<Security, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            "plain" => Ok(Security::Plain),
            other => Err(format!(
                "unknown security '{other}' (expected tls, starttls or plain)"
            )),
        }
    }
}

impl Security {
    /// `tls`, `starttls` or `plain`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::StartTls => "starttls",
            Security::Plain => "plain",
        }
    }
    /// The usual IMAP port.
    pub fn default_imap_port(self) -> u16 {
        match self {
            Security::Tls => 993,
            Security::StartTls | Security::Plain => 143,
        }
    }
    /// The usual SMTP port.
    pub fn default_smtp_port(self) -> u16 {
        match self {
            Security::Tls => 465,
            Security::StartTls => 587,
            Security::Plain => 25,
        }
    }
}

/// The TLS set-up of a run, made on first use: loading the system's root
/// certificates costs tens of milliseconds, wasted on a run that needs no TLS.
pub struct Tls {
    ca_file: Option<std::path::PathBuf>,
    connector: std::sync::OnceLock<Result<native_tls::TlsConnector, String>>,
}

impl Tls {
    /// Checks `ca_file` now (so a bad BG_TLS_CA_FILE stops the run at once);
    /// the connector itself is built when first needed.
    pub fn new(ca_file: Option<&Path>) -> Result<Tls, String> {
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("BG_TLS_CA_FILE {}: {e}", path.display()))?;
            if pem_blocks(&pem).is_empty() {
                return Err(format!(
                    "BG_TLS_CA_FILE {}: no PEM certificate found",
                    path.display()
                ));
            }
        }
        Ok(Tls {
            ca_file: ca_file.map(Path::to_path_buf),
            connector: std::sync::OnceLock::new(),
        })
    }

    /// The connector (built on the first call).
    pub fn connector(&self) -> Result<&native_tls::TlsConnector, String> {
        self.connector
            .get_or_init(|| tls_connector(self.ca_file.as_deref()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// A TLS connector that verifies certificates against the system roots and
/// the PEM certificates of `ca_file`.
pub fn tls_connector(ca_file: Option<&Path>) -> Result<native_tls::TlsConnector, String> {
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("BG_TLS_CA_FILE {}: {e}", path.display()))?;
        let certs = pem_blocks(&pem);
        if certs.is_empty() {
            return Err(format!(
                "BG_TLS_CA_FILE {}: no PEM certificate found",
                path.display()
            ));
        }
        for block in certs {
            let cert = native_tls::Certificate::from_pem(block)
                .map_err(|e| format!("BG_TLS_CA_FILE {}: {e}", path.display()))?;
            builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up TLS: {e}"))
}

/// Splits a PEM file into its CERTIFICATE blocks.
fn pem_blocks(pem: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = find(rest, BEGIN) {
        let Some(len) = find(&rest[start..], END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Resolves `host:port`, giving up after `timeout` (the system resolver has no
/// timeout of its own).
pub fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = format!("{host}:{port}");
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("looking up {host} took longer than {} s", timeout.as_secs()),
        )),
    }
}

/// Connects to `host:port` with `timeout` on the connect and on every later
/// read and write of the socket.
pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addrs = resolve(host, port, timeout)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether an I/O error means a socket timeout (a timed-out read surfaces as
/// `WouldBlock`/EAGAIN on Linux, not only `TimedOut`).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_names() {
        assert_eq!("TLS".parse::<Security>(), Ok(Security::Tls));
        assert_eq!("starttls".parse::<Security>(), Ok(Security::StartTls));
        assert_eq!("plain".parse::<Security>(), Ok(Security::Plain));
        assert!("ssl".parse::<Security>().is_err());
        assert_eq!(Security::Tls.default_imap_port(), 993);
        assert_eq!(Security::StartTls.default_smtp_port(), 587);
    }

    #[test]
    fn pem_splitting() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let blocks = pem_blocks(pem);
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].windows(3).any(|w| w == b"BBB"));
        assert!(pem_blocks(b"nothing").is_empty());
    }

    #[test]
    fn connect_refused_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        assert!(connect("127.0.0.1", port, Duration::from_secs(2)).is_err());
    }
}
