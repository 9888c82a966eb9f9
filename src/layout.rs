//! The install directory: `pid/`, `data/`, `logs/` and `config.inc` under the home.
//!
//! The engine creates what is missing with the seed's permissions (directories
//! 2770, files 0660 through umask 007): they hold passwords and mail, so nothing
//! here is ever world-readable. This module decides paths and modes; it does not
//! open the database or the logs.

use crate::config::{Config, ConfigError};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory or file of the install cannot be created or opened (exit 73).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Error {
    what: String,
    #[source]
    source: Option<std::io::Error>,
}

impl Error {
    /// `what` failed because of `source`.
    pub fn new(what: impl Into<String>, source: std::io::Error) -> Error {
        Error {
            what: what.into(),
            source: Some(source),
        }
    }
}

/// Mode of `pid/`, `data/`, `logs/`: `u+rwX,g+rwXs,o-rwx`.
pub const DIR_MODE: u32 = 0o2770;
/// Mode of the files the engine creates.
pub const FILE_MODE: u32 = 0o660;

/// Where everything of one install lives.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory holding `pid/ data/ logs/` (and by default `config.inc`).
    pub home: PathBuf,
    /// The `config.inc` to read.
    pub config: PathBuf,
}

impl Layout {
    /// A layout for `home`; `config` defaults to `home/config.inc`.
    pub fn new(home: PathBuf, config: Option<PathBuf>) -> Layout {
        let config = config.unwrap_or_else(|| home.join("config.inc"));
        Layout { home, config }
    }

    /// `pid/`
    pub fn pid_dir(&self) -> PathBuf {
        self.home.join("pid")
    }
    /// `data/`
    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }
    /// `logs/`
    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }
    /// `pid/engine.pid`
    pub fn pid_file(&self) -> PathBuf {
        self.pid_dir().join("engine.pid")
    }
    /// `data/engine.sqlite`
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("engine.sqlite")
    }

    /// Reads `config.inc` (defaults when it is missing). A relative
    /// `BG_TLS_CA_FILE` or `BG_METRICS_FILE` is taken relative to the
    /// directory of `config.inc`, not to wherever cron happens to start us.
    pub fn read_config(&self) -> Result<Config, ConfigError> {
        let mut config = crate::config::load(&self.config)?;
        let dir = self.config.parent();
        for path in [&mut config.tls_ca_file, &mut config.metrics_file] {
            if let (Some(p), Some(dir)) = (path.as_mut(), dir) {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        Ok(config)
    }

    /// Creates `pid/`, `data/` and `logs/` when missing (mode 2770) and takes
    /// world access away from existing ones. Fails with exit 73 when a
    /// directory cannot be created or is not a directory.
    pub fn ensure_dirs(&self) -> Result<(), Error> {
        set_umask();
        for dir in [self.pid_dir(), self.data_dir(), self.logs_dir()] {
            ensure_dir(&dir)?;
        }
        Ok(())
    }
}

fn ensure_dir(dir: &Path) -> Result<(), Error> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o007 != 0 {
                // A fresh git checkout makes these 0755; they must not stay so.
                fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(|e| {
                    Error::new(
                        format!(
                            "{}: is world-accessible (mode {mode:o}) and cannot be fixed",
                            dir.display()
                        ),
                        e,
                    )
                })?;
            }
            Ok(())
        }
        Ok(_) => Err(Error {
            what: format!("{}: exists but is not a directory", dir.display()),
            source: None,
        }),
        Err(_) => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| Error::new(format!("cannot create {}", dir.display()), e))?;
            // mkdir drops the setgid bit from the requested mode: set it explicitly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| Error::new(format!("cannot chmod {}", dir.display()), e))
        }
    }
}

/// Sets the file mode of `path` to 0660 when it exists and differs (SQLite
/// creates its files 0644 & ~umask).
pub fn restrict_file(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o777 != FILE_MODE {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE));
        }
    }
}

/// umask 007: group-writable, never world-readable (the seed's `o-rwx`).
#[allow(unsafe_code)]
pub fn set_umask() {
    // SAFETY: umask only swaps the process's file-creation mask; it has no
    // memory-safety preconditions.
    unsafe {
        libc::umask(0o007);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_dirs_with_setgid_and_no_world_access() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(tmp.path().join("home"), None);
        layout.ensure_dirs().expect("ensure_dirs");
        for dir in [layout.pid_dir(), layout.data_dir(), layout.logs_dir()] {
            let mode = fs::metadata(&dir).expect("meta").permissions().mode() & 0o7777;
            assert_eq!(mode, DIR_MODE, "{}", dir.display());
        }
        assert_eq!(layout.config, tmp.path().join("home/config.inc"));
    }

    #[test]
    fn fixes_world_readable_existing_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(tmp.path().to_path_buf(), None);
        fs::create_dir(layout.data_dir()).expect("mkdir");
        fs::set_permissions(layout.data_dir(), fs::Permissions::from_mode(0o755)).expect("chmod");
        layout.ensure_dirs().expect("ensure_dirs");
        let mode = fs::metadata(layout.data_dir())
            .expect("meta")
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode & 0o007, 0);
    }

    #[test]
    fn a_file_in_place_of_a_dir_is_a_layout_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(tmp.path().to_path_buf(), None);
        fs::write(layout.logs_dir(), b"x").expect("write");
        let err = crate::error::Error::from(layout.ensure_dirs().expect_err("must fail"));
        assert_eq!(err.exit_code(), 73);
    }
}
