//! TCP connections with timeouts on every operation, and TLS with verified
//! certificates (plus the CAs of `BG_TLS_CA_FILE`). Shared by IMAP and SMTP.
//!
//! Nothing here ever downgrades: `tls` and `starttls` accounts get TLS or an
//! error, `plain` only when an account says so.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
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

/// A security setting that is none of `tls`, `starttls`, `plain`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown security '{0}' (expected tls, starttls or plain)")]
pub struct UnknownSecurity(String);

impl FromStr for Security {
    type Err = UnknownSecurity;
    fn from_str(s: &str) -> Result<Security, UnknownSecurity> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tls" => Ok(Security::Tls),
            "starttls" => Ok(Security::StartTls),
            "plain" => Ok(Security::Plain),
            other => Err(UnknownSecurity(other.to_string())),
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

/// `BG_TLS_CA_FILE` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("BG_TLS_CA_FILE {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("BG_TLS_CA_FILE {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: native_tls::Error,
    },
    #[error("BG_TLS_CA_FILE {}: no PEM certificate found", path.display())]
    Empty { path: PathBuf },
}

/// The TLS connector cannot be built (the system's TLS library refused).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct TlsSetupError(String);

/// The TLS set-up of a run: the extra CAs of `BG_TLS_CA_FILE`, read once,
/// and a connector made on first use (loading the system's root
/// certificates costs tens of milliseconds, wasted on a run that needs no
/// TLS). IMAP and SMTP both take their trust from here.
pub struct Tls {
    extra_cas: Vec<native_tls::Certificate>,
    connector: std::sync::OnceLock<Result<native_tls::TlsConnector, TlsSetupError>>,
}

impl Tls {
    /// Reads `ca_file` now, so a bad BG_TLS_CA_FILE stops the run at once.
    pub fn new(ca_file: Option<&Path>) -> Result<Tls, CaFileError> {
        let extra_cas = match ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let certs = native_tls::Certificate::stack_from_pem(&pem).map_err(|source| {
                    CaFileError::Parse {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                if certs.is_empty() {
                    return Err(CaFileError::Empty {
                        path: path.to_path_buf(),
                    });
                }
                certs
            }
        };
        Ok(Tls {
            extra_cas,
            connector: std::sync::OnceLock::new(),
        })
    }

    /// The connector (built on the first call): the system roots and the
    /// extra CAs, TLS 1.2 at least.
    pub fn connector(&self) -> Result<&native_tls::TlsConnector, TlsSetupError> {
        self.connector
            .get_or_init(|| {
                let mut builder = native_tls::TlsConnector::builder();
                builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
                for cert in &self.extra_cas {
                    builder.add_root_certificate(cert.clone());
                }
                builder.build().map_err(|e| TlsSetupError(e.to_string()))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The extra CAs in DER, for a TLS library of its own (lettre's).
    pub fn extra_cas_der(&self) -> Vec<Vec<u8>> {
        self.extra_cas
            .iter()
            .filter_map(|c| c.to_der().ok())
            .collect()
    }
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
    fn ca_file_errors_name_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("missing.pem");
        let err = Tls::new(Some(&missing)).err().expect("missing file");
        assert!(matches!(err, CaFileError::Read { .. }), "{err:?}");
        assert!(crate::logging::chain(&err).contains("missing.pem"));
        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let err = Tls::new(Some(&junk)).err().expect("no certificate");
        assert!(
            crate::logging::chain(&err).contains("junk.pem"),
            "{}",
            crate::logging::chain(&err)
        );
        assert!(Tls::new(None).is_ok());
    }

    #[test]
    fn connect_refused_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        assert!(connect("127.0.0.1", port, Duration::from_secs(2)).is_err());
    }
}
