//! The PostgreSQL store (SPEC §13): the same tables and operations as the
//! SQLite one, for installations whose web application runs on PostgreSQL
//! or that run several engine hosts on one database.
//!
//! One `postgres::Client` (blocking) per connection, as the SQLite backend
//! has one `Connection`: a worker's reads, the writer, the outbox each have
//! their own. A statement goes unnamed, parsed and run in one round trip,
//! the first times a connection sends it (most go once per run), and is
//! prepared once it comes again ([`statement`]); a batch of messages is one
//! multi-row INSERT in the transaction of the folder's progress. Each
//! connection marks its session when it connects and refuses one that
//! carries another's mark (a pooler that shares sessions). Text the
//! servers sent cannot hold NUL in a PostgreSQL `TEXT`: it is replaced
//! (bytes go to `BYTEA` as they came).
//! The password never appears in an error or a log line: a connection is
//! described by host, port, user and database only.

mod accounts;
mod content;
mod folders;
mod fts;
mod leases;
mod messages;
mod outbox;
mod schema;
mod sessions;

pub use leases::{Leases, LOCK_CLASS};

use super::error::{Context, Error, Result};
use postgres::Row;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// A PostgreSQL database as `BG_DATABASE_URL` names it.
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    tls: TlsMode,
    /// Extra CAs to trust (`BG_TLS_CA_FILE`) with `verify-full`.
    ca_file: Option<PathBuf>,
}

// The password must never reach a log line through `{:?}`.
impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `sslmode` as libpq understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    /// TLS when the server offers it, not verified (libpq's default).
    Prefer,
    /// TLS always, not verified.
    Require,
    /// TLS always, the certificate and the host name verified (the system
    /// roots plus `BG_TLS_CA_FILE`).
    VerifyFull,
}

impl PgTarget {
    /// Parses `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...&options=...]`
    /// (also `postgres://`); the password may come from `PGPASSWORD`.
    pub fn parse(url: &str) -> Result<PgTarget> {
        let lower = url.to_ascii_lowercase();
        if !lower.starts_with("postgresql://") && !lower.starts_with("postgres://") {
            return Err(Error::BadUrl(
                "expected '' (SQLite) or a postgresql:// URL".into(),
            ));
        }
        // sslmode is libpq's; the crate knows only three of its values.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = TlsMode::Prefer;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", v)) => {
                    tls = match v {
                        "disable" => TlsMode::Disable,
                        "prefer" | "allow" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-full" | "verify-ca" => TlsMode::VerifyFull,
                        other => {
                            return Err(Error::BadUrl(format!(
                        "sslmode must be disable, prefer, require or verify-full, got '{other}'"
                    )))
                        }
                    }
                }
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config: postgres::Config = rebuilt.parse().map_err(|e: postgres::Error| {
            Error::BadUrl(format!("not a PostgreSQL URL the engine can use ({e})"))
        })?;
        if config.get_user().is_none_or(str::is_empty) {
            return Err(Error::BadUrl(
                "the URL names no user (postgresql://USER@HOST/DB)".into(),
            ));
        }
        if config.get_dbname().is_none_or(str::is_empty) {
            return Err(Error::BadUrl(
                "the URL names no database (postgresql://USER@HOST/DB)".into(),
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(Error::BadUrl(
                "the URL names no host (postgresql://USER@HOST/DB)".into(),
            ));
        }
        if config.get_password().is_none() {
            if let Ok(pw) = std::env::var("PGPASSWORD") {
                config.password(pw);
            }
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => postgres::config::SslMode::Disable,
            TlsMode::Prefer => postgres::config::SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => postgres::config::SslMode::Require,
        });
        // A host that vanishes is noticed within minutes, not hours.
        config.keepalives_idle(Duration::from_secs(60));
        Ok(PgTarget {
            config,
            tls,
            ca_file: None,
        })
    }

    /// The extra CAs (`BG_TLS_CA_FILE`) trusted with `sslmode=verify-full`,
    /// and the connect timeout (`BG_IO_TIMEOUT`).
    pub fn with(mut self, ca_file: Option<PathBuf>, timeout: Duration) -> PgTarget {
        self.ca_file = ca_file;
        self.config.connect_timeout(timeout);
        self
    }

    /// `user@host:port/db` — never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        )
    }

    /// Opens a connection named `backproc HOST:PID` (what `plan` and
    /// `status` show as an account's holder).
    fn open(&self) -> Result<postgres::Client> {
        let mut config = self.config.clone();
        config.application_name(&format!("backproc {}", leases::owner()));
        let connect_error = |source| Error::Connect {
            target: self.describe(),
            source,
        };
        match self.tls {
            TlsMode::Disable => config.connect(postgres::NoTls).map_err(connect_error),
            mode => {
                let mut b = native_tls::TlsConnector::builder();
                if mode == TlsMode::VerifyFull {
                    let trust = crate::net::Tls::new(self.ca_file.as_deref())
                        .map_err(|e| Error::BadUrl(crate::logging::chain(&e)))?;
                    for der in trust.extra_cas_der() {
                        if let Ok(cert) = native_tls::Certificate::from_der(&der) {
                            b.add_root_certificate(cert);
                        }
                    }
                } else {
                    // libpq's prefer and require encrypt without verifying.
                    b.danger_accept_invalid_certs(true);
                    b.danger_accept_invalid_hostnames(true);
                }
                let connector = b
                    .build()
                    .map_err(|e| Error::BadUrl(format!("cannot set up TLS for PostgreSQL: {e}")))?;
                config
                    .connect(postgres_native_tls::MakeTlsConnector::new(connector))
                    .map_err(connect_error)
            }
        }
    }
}

/// The parameters of a statement.
pub(super) type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

/// What a connection knows of a statement, by its SQL.
enum Known {
    /// Sent unnamed this many times (at most [`UNNAMED_USES`]).
    Seen(u8),
    /// Prepared on this connection.
    Prepared(postgres::Statement),
}

/// The statements of a connection ([`Known`]).
type Cache = RefCell<HashMap<String, Known>>;

/// One connection to a PostgreSQL database.
pub struct Postgres {
    client: RefCell<postgres::Client>,
    cache: Cache,
    target: PgTarget,
    /// Set once the server closed the connection (or the connection
    /// changed sessions): later writes fail at once, and the run stops.
    lost: Option<String>,
    /// The connection changed sessions: a pooler shares them (exit 78).
    pooled: bool,
    /// This connection's `backproc.session` ([`Postgres::connect`]).
    mark: String,
}

/// A value of `backproc.session` no other connection has: this host and
/// process, the clock's nanoseconds, and a count of the process's
/// connections.
fn session_mark() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CONNECTIONS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{} {nanos} {}",
        leases::owner(),
        CONNECTIONS.fetch_add(1, Ordering::Relaxed)
    )
}

/// How a statement goes to the server this time.
enum Way {
    /// Unnamed, its parameters' types given: parse, bind and execute in
    /// one round trip.
    Unnamed(Vec<postgres::types::Type>),
    /// Named, prepared on this connection.
    Named(postgres::Statement),
}

/// The types a parameter is sent as when a statement goes unnamed: the
/// first each value's Rust type accepts (those the store binds).
const PARAM_TYPES: &[postgres::types::Type] = {
    use postgres::types::Type;
    &[
        Type::INT8,
        Type::TEXT,
        Type::BOOL,
        Type::BYTEA,
        Type::INT4,
        Type::INT2,
        Type::FLOAT8,
        Type::INT8_ARRAY,
        Type::TEXT_ARRAY,
        Type::INT4_ARRAY,
        Type::TS_VECTOR,
    ]
};

/// The type each parameter is sent as unnamed; None when one takes none
/// of [`PARAM_TYPES`] (the statement is then prepared).
fn param_types(params: Params<'_>) -> Option<Vec<postgres::types::Type>> {
    let mut scratch = bytes::BytesMut::new();
    params
        .iter()
        .map(|p| {
            PARAM_TYPES.iter().find_map(|ty| {
                scratch.clear();
                p.to_sql_checked(ty, &mut scratch).ok().map(|_| ty.clone())
            })
        })
        .collect()
}

/// How often a statement goes unnamed before it is prepared.
const UNNAMED_USES: u8 = 2;

/// How `sql` goes to the server: the first [`UNNAMED_USES`] times
/// unnamed, in one round trip (a run sends most statements once or twice
/// per connection); from then on prepared, once per connection, and
/// executed by name (the server parses and plans it once: an account's
/// lease, a batch's INSERT).
fn statement(
    c: &mut impl postgres::GenericClient,
    cache: &Cache,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<Way, postgres::Error> {
    let uses = match cache.borrow().get(sql) {
        Some(Known::Prepared(s)) => return Ok(Way::Named(s.clone())),
        Some(Known::Seen(n)) => *n,
        None => 0,
    };
    if uses < UNNAMED_USES {
        if let Some(types) = param_types(params) {
            cache
                .borrow_mut()
                .insert(sql.to_string(), Known::Seen(uses + 1));
            return Ok(Way::Unnamed(types));
        }
    }
    let s = c.prepare(sql)?;
    cache
        .borrow_mut()
        .insert(sql.to_string(), Known::Prepared(s.clone()));
    Ok(Way::Named(s))
}

/// The parameters with the types [`statement`] chose.
fn typed<'a>(
    params: Params<'a>,
    types: Vec<postgres::types::Type>,
) -> Vec<(
    &'a (dyn postgres::types::ToSql + Sync),
    postgres::types::Type,
)> {
    params.iter().copied().zip(types).collect()
}

/// The rows of `sql` ([`statement`]).
fn query(
    c: &mut impl postgres::GenericClient,
    cache: &Cache,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<Vec<Row>, postgres::Error> {
    match statement(c, cache, sql, params)? {
        Way::Named(s) => c.query(&s, params),
        Way::Unnamed(types) => c.query_typed(sql, &typed(params, types)),
    }
}

/// The row of `sql`, which yields at most one ([`statement`]).
fn query_opt(
    c: &mut impl postgres::GenericClient,
    cache: &Cache,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<Option<Row>, postgres::Error> {
    match statement(c, cache, sql, params)? {
        Way::Named(s) => c.query_opt(&s, params),
        Way::Unnamed(types) => c.query_typed_opt(sql, &typed(params, types)),
    }
}

/// Runs `sql` ([`statement`]); the rows it changed.
fn execute(
    c: &mut impl postgres::GenericClient,
    cache: &Cache,
    sql: &str,
    params: Params<'_>,
) -> std::result::Result<u64, postgres::Error> {
    match statement(c, cache, sql, params)? {
        Way::Named(s) => c.execute(&s, params),
        Way::Unnamed(types) => c.execute_typed(sql, &typed(params, types)),
    }
}

impl Postgres {
    /// Connects. `relaxed` (a run's connections): commits do not wait for
    /// the disk; the sync writer commits each batch with the folder's
    /// progress, so a lost commit is only fetched again, and the outbox
    /// and the tokens make theirs durable ([`Postgres::set_durable`]).
    /// Every other command's commits are durable: a message `outbox add`
    /// reported queued is never lost to a crash of the server.
    ///
    /// In the same round trip the connection marks its session
    /// (`backproc.session`, a value no other connection has) and reads the
    /// mark it found: a session that carries another connection's mark was
    /// handed on by a pooler as that connection left it (in transaction
    /// mode, or in session mode without `server_reset_query`), with its
    /// settings and locks: [`Error::Pooled`]. A fresh session, or one a
    /// pooler reset, carries none. (A statement of its own, not the
    /// start-up packet's `options`: a connection pooler such as PgBouncer
    /// refuses a start-up parameter it does not track.)
    pub fn connect(target: &PgTarget, relaxed: bool) -> Result<Postgres> {
        let mut client = target.open()?;
        let mark = session_mark();
        // A run's connections may idle a while (the lock connection between
        // accounts, a worker's while the IMAP server answers): never time
        // them out (the setting exists from PostgreSQL 14 on).
        let run_settings = if relaxed {
            ", set_config('synchronous_commit', 'off', false), \
             CASE WHEN current_setting('server_version_num')::int >= 140000 \
             THEN set_config('idle_session_timeout', '0', false) END"
        } else {
            ""
        };
        let sql = format!(
            "SELECT current_setting('backproc.session', true), \
             set_config('backproc.session', $1, false){run_settings}"
        );
        let found: Option<String> = client
            .query_typed_one(&sql, &[(&mark, postgres::types::Type::TEXT)])
            .and_then(|row| row.try_get(0))
            .context("configure the connection")?;
        if let Some(other) = found.filter(|m| !m.is_empty()) {
            return Err(Error::Pooled {
                what: format!(
                    "PostgreSQL ({}): the session this connection was given carries \
                     another connection's mark ('{other}'): {}",
                    target.describe(),
                    super::error::SHARED_SESSIONS
                ),
                source: None,
            });
        }
        Ok(Postgres {
            client: RefCell::new(client),
            cache: RefCell::new(HashMap::new()),
            target: target.clone(),
            lost: None,
            pooled: false,
            mark,
        })
    }

    /// `user@host:port/db`.
    pub fn describe(&self) -> String {
        self.target.describe()
    }

    /// Why writes are refused: the server closed the connection, or it
    /// changed sessions ([`Postgres::pooled`]).
    pub fn locked_out(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// Whether writes are refused because the connection changed sessions
    /// (`BG_DATABASE_URL` leads through a pooler that shares them).
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Applies pending migrations under an advisory lock (hosts starting
    /// at once do not race).
    pub fn migrate(&self) -> Result<()> {
        // The first statements of every command: a role without rights on
        // the schema says so here, naming the database.
        schema::migrate(&mut self.client.borrow_mut()).map_err(|e| match e {
            Error::Pg { what, source } => Error::Pg {
                what: format!("PostgreSQL ({}): {what}", self.target.describe()),
                source,
            },
            Error::Pooled { what, source } => Error::Pooled {
                what: format!("PostgreSQL ({}): {what}", self.target.describe()),
                source,
            },
            e => e,
        })
    }

    /// Commits of this connection wait for the disk (the outbox: a "sent"
    /// mark must never be lost).
    pub fn set_durable(&self) -> Result<()> {
        self.client
            .borrow_mut()
            .batch_execute("SET synchronous_commit = on")
            .context("set synchronous_commit")
    }

    /// Runs `f` in one transaction; a connection the server closed is
    /// remembered (later writes fail at once).
    fn write<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.write_as(true, f)
    }

    /// Runs `f`, which issues exactly one statement, without BEGIN and
    /// COMMIT: a statement alone is a transaction of its own, and two round
    /// trips fewer (a run that finds nothing new writes each account's
    /// folders so).
    fn write_alone<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.write_as(false, f)
    }

    fn write_as<T>(&mut self, in_tx: bool, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        if let Some(why) = &self.lost {
            return Err(Error::Lost(why.clone()));
        }
        let client = self.client.get_mut();
        let result = if in_tx {
            client
                .transaction()
                .context("begin a transaction")
                .and_then(|tx| {
                    let mut tx = Tx {
                        tx: Conn::InTx(tx),
                        cache: &self.cache,
                    };
                    let out = f(&mut tx)?;
                    if let Conn::InTx(tx) = tx.tx {
                        tx.commit().context("commit")?;
                    }
                    Ok(out)
                })
        } else {
            f(&mut Tx {
                tx: Conn::Alone(&mut *client),
                cache: &self.cache,
            })
        };
        if result.is_err() && client.is_closed() {
            let why = format!(
                "lost the connection to PostgreSQL ({})",
                self.target.describe()
            );
            self.lost = Some(why.clone());
            return Err(Error::Lost(why));
        }
        if let Err(e @ Error::Pooled { .. }) = &result {
            self.lost = Some(crate::logging::chain(e));
            self.pooled = true;
        }
        result
    }

    /// The rows of a query.
    fn rows(&self, sql: &str, params: Params<'_>, what: impl Into<String>) -> Result<Vec<Row>> {
        let c = &mut *self.client.borrow_mut();
        query(c, &self.cache, sql, params).map_err(|e| self.failed(e, what))
    }

    /// The row of a query that yields at most one.
    fn row(&self, sql: &str, params: Params<'_>, what: impl Into<String>) -> Result<Option<Row>> {
        let c = &mut *self.client.borrow_mut();
        query_opt(c, &self.cache, sql, params).map_err(|e| self.failed(e, what))
    }

    /// A failed read: a closed connection says so.
    fn failed(&self, e: postgres::Error, what: impl Into<String>) -> Error {
        if e.is_closed() {
            Error::Lost(format!(
                "lost the connection to PostgreSQL ({})",
                self.target.describe()
            ))
        } else {
            Error::pg(what, e)
        }
    }
}

/// A transaction, with the connection's prepared statements.
pub(super) struct Tx<'a> {
    tx: Conn<'a>,
    cache: &'a Cache,
}

/// Where a [`Tx`]'s statements go: into a transaction, or straight to the
/// connection when the work is one statement ([`Postgres::write_alone`]).
enum Conn<'a> {
    InTx(postgres::Transaction<'a>),
    Alone(&'a mut postgres::Client),
}

/// Runs `$f` (one of [`query`], [`query_opt`], [`execute`]) with the
/// [`Tx`]'s client, whichever [`Conn`] it is.
macro_rules! on_conn {
    ($tx:expr, $f:ident, $sql:expr, $params:expr) => {
        match &mut $tx.tx {
            Conn::InTx(c) => $f(c, $tx.cache, $sql, $params),
            Conn::Alone(c) => $f(*c, $tx.cache, $sql, $params),
        }
    };
}

impl Tx<'_> {
    /// Runs a statement; returns the rows it changed.
    fn execute(&mut self, sql: &str, params: Params<'_>, what: impl Into<String>) -> Result<u64> {
        on_conn!(self, execute, sql, params).context(what)
    }

    /// The rows of a query.
    fn rows(&mut self, sql: &str, params: Params<'_>, what: impl Into<String>) -> Result<Vec<Row>> {
        on_conn!(self, query, sql, params).context(what)
    }

    /// The row of a query that yields at most one.
    fn row(
        &mut self,
        sql: &str,
        params: Params<'_>,
        what: impl Into<String>,
    ) -> Result<Option<Row>> {
        on_conn!(self, query_opt, sql, params).context(what)
    }

    /// Runs statements without parameters, unprepared.
    fn batch(&mut self, sql: &str, what: impl Into<String>) -> Result<()> {
        match &mut self.tx {
            Conn::InTx(c) => c.batch_execute(sql),
            Conn::Alone(c) => c.batch_execute(sql),
        }
        .context(what)
    }
}

/// Reads column `i` of a row.
fn get<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i).context(format!("read column {i}"))
}

/// Text for a `TEXT` column: PostgreSQL refuses NUL in text.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// [`text`] of an optional value.
fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_table() {
        std::env::remove_var("PGPASSWORD");
        let ok = |url: &str| PgTarget::parse(url).map(|t| t.describe());
        assert_eq!(
            ok("postgresql://engine:s3cret@db.example.com:5433/mail").expect("url"),
            "engine@db.example.com:5433/mail"
        );
        assert_eq!(
            ok("postgres://engine@127.0.0.1/mail?sslmode=verify-full&options=-csearch_path%3Dbackproc")
                .expect("url"),
            "engine@127.0.0.1:5432/mail"
        );
        let bad: &[(&str, &str)] = &[
            ("mysql://u@h/db", "postgresql:// URL"),
            ("postgresql://u@h/db?sslmode=sometimes", "sslmode"),
            ("postgresql://h/db", "no user"),
            ("postgresql://u@h", "no database"),
            ("postgresql://u:p@h:notaport/db", "not a PostgreSQL URL"),
        ];
        for (url, words) in bad {
            let e = PgTarget::parse(url).expect_err(url).to_string();
            assert!(e.contains(words), "{url}: {e}");
            assert!(e.starts_with("BG_DATABASE_URL"), "{e}");
            assert!(!e.contains(":p@"), "no password in {e}");
        }
        let t = PgTarget::parse("postgresql://u:hunter2@h/db").expect("url");
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn parameters_go_unnamed_with_the_type_their_rust_type_takes() {
        use postgres::types::Type;
        let none: Option<String> = None;
        let bytes: Vec<u8> = vec![1, 2];
        let ids: Vec<i64> = vec![1];
        let names: Vec<String> = vec!["a".into()];
        let params: Params<'_> = &[
            &1_i64,
            &"text",
            &none,
            &Some(3_i64),
            &true,
            &bytes,
            &7_i32,
            &ids,
            &names,
            &content::tsvector_of(b"\0\0\0\0"),
        ];
        assert_eq!(
            param_types(params),
            Some(vec![
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::BOOL,
                Type::BYTEA,
                Type::INT4,
                Type::INT8_ARRAY,
                Type::TEXT_ARRAY,
                Type::TS_VECTOR,
            ])
        );
        // A type outside the list: the statement is prepared instead.
        assert_eq!(param_types(&[&1_i64, &1.5_f32]), None);
        assert_eq!(param_types(&[]), Some(vec![]));
    }

    #[test]
    fn nul_in_text() {
        assert_eq!(text("a\0b"), "a\u{fffd}b");
        assert!(matches!(text("ab"), Cow::Borrowed(_)));
    }
}
