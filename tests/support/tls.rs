//! [`TestCa`]: a throwaway certificate authority and a server certificate for
//! `localhost` / `127.0.0.1` signed by it, made with the `openssl` command.
//! EC P-256 keys: two openssl runs take about 20 ms in all (RSA takes far longer).
//!
//! Trust it in the engine with `define('BG_TLS_CA_FILE', '<ca_file>');` so
//! that certificate verification stays on in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::run_ok;

/// A CA (`ca.pem`, `ca.key`) and a server cert (`cert.pem`, `key.pem`,
/// CN=localhost, SAN DNS:localhost and IP:127.0.0.1) in one directory. Only
/// paths: cloning is cheap and the files live as long as that directory.
#[derive(Clone, Debug)]
pub struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA and the server cert in `dir` (created if missing).
    pub fn new(dir: &Path) -> TestCa {
        Self::generate(dir, "backproc test CA")
    }

    /// A second CA, unrelated to any other, with its own server cert: a
    /// server using it fails verification against [`TestCa::new`]'s CA
    /// ("certificate not signed by the trusted CA" tests).
    pub fn untrusted(dir: &Path) -> TestCa {
        Self::generate(dir, "backproc UNTRUSTED test CA")
    }

    fn generate(dir: &Path, ca_name: &str) -> TestCa {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run_ok(
            Command::new("openssl")
                .current_dir(dir)
                .args(["req", "-x509"])
                .args(ec)
                .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "3650"])
                .args(["-subj", &format!("/CN={ca_name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        );
        run_ok(
            Command::new("openssl")
                .current_dir(dir)
                .args(["req", "-x509", "-CA", "ca.pem", "-CAkey", "ca.key"])
                .args(ec)
                .args(["-keyout", "key.pem", "-out", "cert.pem", "-days", "825"])
                .args(["-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-addext", "keyUsage=critical,digitalSignature"])
                .args(["-addext", "extendedKeyUsage=serverAuth"]),
        );
        // Server processes running as other users (dovecot, postfix) read
        // the key through their root master, but keep it readable anyway:
        // it protects nothing.
        TestCa {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA certificate (PEM): what a client should trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The server certificate (PEM), signed by [`TestCa::ca_file`].
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The server certificate's private key (PEM, unencrypted).
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// The CA certificate's bytes (e.g. for `native_tls::Certificate::from_pem`).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.ca_file()).expect("read ca.pem")
    }
}
