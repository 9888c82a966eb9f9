//! [`TempHome`]: a temp directory used as the engine's `--home`, with
//! helpers to write `config.inc`, find the database and read the logs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty engine home. The engine creates `pid/ data/ logs/` itself.
/// Removed on drop.
pub struct TempHome {
    dir: tempfile::TempDir,
    /// The home's PostgreSQL database (`BACKPROC_DATABASE_URL` of every
    /// command), or None for SQLite.
    database_url: Option<String>,
}

impl Default for TempHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TempHome {
    /// A home on the store the current test runs on ([`super::db::current`]).
    pub fn new() -> TempHome {
        Self::on(super::db::current())
    }

    /// A home on `store`: on PostgreSQL with a database of its own in the
    /// shared cluster.
    pub fn on(store: super::Store) -> TempHome {
        let database_url = match store {
            super::Store::Sqlite => None,
            super::Store::Postgres => Some(super::postgres::shared().new_database()),
        };
        Self::with_database_url(database_url)
    }

    /// A home whose commands use `database_url` (None: SQLite).
    pub fn with_database_url(database_url: Option<String>) -> TempHome {
        TempHome {
            dir: tempfile::Builder::new()
                .prefix("bp-home-")
                .tempdir()
                .expect("create temp home"),
            database_url,
        }
    }

    /// The home's PostgreSQL URL, if it is on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// The store this home's engine uses.
    pub fn store(&self) -> super::Store {
        match self.database_url {
            Some(_) => super::Store::Postgres,
            None => super::Store::Sqlite,
        }
    }

    /// A connection to the home's database, whichever store.
    pub fn db(&self) -> super::Db {
        match &self.database_url {
            Some(url) => super::Db::postgres(url),
            None => super::Db::sqlite(&self.db_path()),
        }
    }

    /// The home directory (`--home`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `HOME/config.inc`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.inc")
    }

    /// Writes `HOME/config.inc` with exactly `content` (PHP `define(...)` lines;
    /// add `<?php` yourself if the test wants it).
    pub fn write_config(&self, content: &str) {
        std::fs::write(self.config_path(), content).expect("write config.inc");
    }

    /// `HOME/data/engine.sqlite`.
    pub fn db_path(&self) -> PathBuf {
        self.path().join("data").join("engine.sqlite")
    }

    /// `HOME/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.path().join("logs")
    }

    /// Contents of `HOME/logs/NAME` (e.g. `l-info.log`); empty if missing.
    pub fn log(&self, name: &str) -> String {
        std::fs::read(self.logs_dir().join(name))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `HOME/pid/engine.pid`.
    pub fn pid_path(&self) -> PathBuf {
        self.path().join("pid").join("engine.pid")
    }

    /// The engine binary (`CARGO_BIN_EXE_engine`) with `--home HOME` and the
    /// engine's own environment variables cleared, ready for more args.
    pub fn engine(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_engine"));
        cmd.env_remove("BACKPROC_HOME")
            .env_remove("BACKPROC_CONFIG")
            .env_remove("BACKPROC_DATABASE_URL")
            .env_remove("PGPASSWORD")
            .arg("--home")
            .arg(self.path());
        if let Some(url) = &self.database_url {
            cmd.env("BACKPROC_DATABASE_URL", url);
        }
        cmd
    }
}
