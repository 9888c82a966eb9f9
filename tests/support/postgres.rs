//! [`PgCluster`]: a private PostgreSQL 15 cluster on loopback (Debian's
//! `postgresql`), for the store tests of SPEC §13.
//!
//! PostgreSQL refuses to run as root: `initdb` and `pg_ctl` run as the
//! `postgres` system user (`runuser`) in a temp dir that user owns. The
//! superuser `postgres` logs in without a password from 127.0.0.1; the
//! engine's role [`ENGINE_ROLE`] with a password (scram-sha-256), so the
//! URL's password is exercised; [`NO_RIGHTS_ROLE`] may log in and nothing
//! else. Each [`TempHome`](super::TempHome) on PostgreSQL gets a database
//! of its own ([`PgCluster::new_database`]) in the one cluster of the test
//! process ([`shared`]); a test that restarts or stops the server starts a
//! cluster of its own ([`PgCluster::start`]).
//!
//! The shared cluster outlives the statics of the test process: a watcher
//! process stops it (`pg_ctl stop -m immediate`) and removes its dir when
//! the test process is gone, however it ended.

use super::process;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The newest PostgreSQL's programs under `/usr/lib/postgresql/N/bin`
/// (Debian 12: 15).
fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let newest = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .max()
            })
            .ok()
            .flatten()
            .expect("PostgreSQL is not installed (run tests/install-deps.sh)");
        format!("/usr/lib/postgresql/{newest}/bin")
    })
}
/// The engine's role and its password.
pub const ENGINE_ROLE: &str = "engine";
pub const ENGINE_PASSWORD: &str = "pg-s3cret-engine";
/// A role that may log in and do nothing else.
pub const NO_RIGHTS_ROLE: &str = "nobody_pg";
pub const NO_RIGHTS_PASSWORD: &str = "pg-s3cret-nobody";

/// A running cluster.
pub struct PgCluster {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    port: u16,
}

/// The cluster every test of this process shares (started at first use).
pub fn shared() -> &'static PgCluster {
    static SHARED: OnceLock<PgCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut c = PgCluster::start();
        // Never dropped (a static): the watcher stops it after the process.
        let dir = c.dir.take().expect("dir").keep();
        watch(&dir);
        c
    })
}

/// Stops the cluster in `dir` once this process is gone.
fn watch(dir: &Path) {
    once_gone(&format!(
        "runuser -u postgres -- {bin}/pg_ctl -D {data} stop -m immediate >/dev/null 2>&1; \
         rm -rf {dir}",
        bin = bin(),
        data = dir.join("data").display(),
        dir = dir.display()
    ));
}

/// Runs the shell command `then` once this process is gone, however it
/// ended (a watcher forked off with `setsid -f`, which returns at once).
fn once_gone(then: &str) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {then}",
        pid = std::process::id()
    );
    Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("start a watcher of the test process");
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{}/{program}", bin())]);
    c
}

impl PgCluster {
    /// initdb, then pg_ctl start on a free loopback port. About 1-2 s.
    pub fn start() -> PgCluster {
        let dir = super::server_temp_dir("bp-postgres-");
        let root = dir.path().to_path_buf();
        process::reap_orphans();
        process::write_owner(&root);
        let owner = process::user_id("postgres");
        let group = process::group_id("postgres");
        std::os::unix::fs::chown(&root, Some(owner), Some(group)).expect("chown the cluster dir");
        let data = root.join("data");
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, "postgres\n").expect("write pw");
        std::os::unix::fs::chown(&pwfile, Some(owner), Some(group)).expect("chown pw");
        process::run_ok(as_postgres("initdb").args([
            "-D",
            &data.display().to_string(),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--pwfile",
            &pwfile.display().to_string(),
            "-N",
        ]));
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        let mut last = String::new();
        for _ in 0..10 {
            let mut cluster = PgCluster {
                dir: None,
                root: root.clone(),
                port: super::free_ports(1)[0],
            };
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    cluster.dir = Some(dir);
                    cluster.create_roles();
                    return cluster;
                }
                Err(e) if e.contains("already in use") || e.contains("could not bind") => last = e,
                Err(e) => panic!("postgres failed to start: {e}"),
            }
        }
        panic!("postgres: no free port after 10 attempts: {last}");
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c full_page_writes=off \
             -c max_connections=300 -c shared_buffers=64MB",
            self.port,
            self.root.display()
        );
        let out = as_postgres("pg_ctl")
            .args(["-D", &self.data().display().to_string(), "-w", "-t", "30"])
            .args(["-l", &self.root.join("server.log").display().to_string()])
            .args(["-o", &opts, "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e} (run tests/install-deps.sh)"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
            ))
        }
    }

    fn create_roles(&self) {
        let mut c = self.admin();
        c.batch_execute(&format!(
            "CREATE ROLE {ENGINE_ROLE} LOGIN PASSWORD '{ENGINE_PASSWORD}'; \
             CREATE ROLE {NO_RIGHTS_ROLE} LOGIN PASSWORD '{NO_RIGHTS_PASSWORD}';"
        ))
        .expect("create the roles");
    }

    /// The data directory.
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser connection to database `postgres`.
    pub fn admin(&self) -> postgres::Client {
        self.admin_of("postgres")
    }

    /// A superuser connection to database `db`.
    pub fn admin_of(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname={db}",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"))
    }

    /// A new, empty database owned by [`ENGINE_ROLE`]; its name.
    pub fn create_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bp_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name} OWNER {ENGINE_ROLE}"))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        name
    }

    /// The URL of database `db` for `role` with `password`.
    pub fn url_for(&self, role: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{role}:{password}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A new database and the engine's URL for it.
    pub fn new_database(&self) -> String {
        let db = self.create_database();
        self.url_for(ENGINE_ROLE, ENGINE_PASSWORD, &db)
    }

    /// The server's master process.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// `pg_ctl stop -m immediate`: the server dies at once (its clients'
    /// connections break).
    pub fn kill(&self) {
        let _ = as_postgres("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
    }

    /// Starts the server again after [`PgCluster::kill`] (same port).
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("postgres did not start again: {e}");
        }
    }

    /// `pg_ctl restart -m fast`: connections break, the server is back.
    pub fn restart(&self) {
        let out = as_postgres("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "fast",
                "-w",
                "restart",
            ])
            .args(["-l", &self.root.join("server.log").display().to_string()])
            .output()
            .expect("pg_ctl restart");
        assert!(
            out.status.success(),
            "pg_ctl restart: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.dir.is_some() {
            self.kill();
            if let Some(pid) = self.pid() {
                process::wait_gone(&[pid], Duration::from_secs(5));
            }
        }
    }
}

/// A PgBouncer (Debian's `pgbouncer`) on loopback in front of a cluster:
/// what an installation puts between its engine hosts and PostgreSQL to
/// keep server sessions warm. The engine's role logs in with its password
/// (SCRAM, from the pooler's user list); the pooler logs in to the cluster
/// with it. It runs as the `postgres` user (PgBouncer refuses root) and is
/// stopped when dropped, or by a watcher once the test process is gone.
pub struct Pooler {
    child: std::process::Child,
    port: u16,
    cluster_port: u16,
    dir: tempfile::TempDir,
}

impl Pooler {
    /// Starts one with `settings` (lines of its `[pgbouncer]` section, such
    /// as `pool_mode = session`) added to the defaults.
    pub fn start(cluster: &PgCluster, settings: &str) -> Pooler {
        let dir = super::server_temp_dir("bp-pgbouncer-");
        let root = dir.path();
        let owner = process::user_id("postgres");
        let group = process::group_id("postgres");
        std::os::unix::fs::chown(root, Some(owner), Some(group)).expect("chown the pooler dir");
        std::fs::write(
            root.join("users.txt"),
            format!("\"{ENGINE_ROLE}\" \"{ENGINE_PASSWORD}\"\n"),
        )
        .expect("write the pooler's user list");
        let port = super::free_ports(1)[0];
        let ini = root.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={cluster_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {users}\n\
                 logfile = {log}\nmax_client_conn = 500\n{settings}\n",
                cluster_port = cluster.port(),
                users = root.join("users.txt").display(),
                log = root.join("pgbouncer.log").display(),
            ),
        )
        .expect("write pgbouncer.ini");
        let child = Command::new("pgbouncer")
            .args(["-u", "postgres"])
            .arg(&ini)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pgbouncer (run tests/install-deps.sh)");
        once_gone(&format!("kill {} 2>/dev/null", child.id()));
        let pooler = Pooler {
            child,
            port,
            cluster_port: cluster.port(),
            dir,
        };
        assert!(
            super::wait_port(port, Duration::from_secs(10)),
            "pgbouncer did not listen on {port}: {}",
            pooler.log()
        );
        pooler
    }

    /// `url` (a database of the cluster) through this pooler.
    pub fn url(&self, url: &str) -> String {
        let direct = format!("@127.0.0.1:{}/", self.cluster_port);
        assert!(url.contains(&direct), "not a URL of this cluster: {url}");
        url.replace(&direct, &format!("@127.0.0.1:{}/", self.port))
    }

    /// The pooler's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
