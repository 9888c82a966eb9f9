//! The engine's database as the tests read and write it, on either store
//! (SPEC §13): [`Db`] speaks to the SQLite file or to the PostgreSQL
//! database of a [`TempHome`](super::TempHome) with one API, shaped like
//! rusqlite's (`query_row`, `execute`, `prepare(..).query_map`, a
//! transaction), so a test's SQL and assertions are the same for both.
//!
//! SQL is written with SQLite's `?`/`?N` placeholders; on PostgreSQL they
//! become `$N`. Values go in and come out as [`Val`], converted to and
//! from whatever type the column has (an integer into an `INT4` or a
//! `TEXT` parameter, text into `BYTEA`), the way SQLite's dynamic typing
//! lets a test be loose.
//!
//! Which store a test runs on: [`both_stores!`](crate::both_stores) makes
//! each test twice, `on_sqlite::NAME` and `on_postgres::NAME`; inside, the
//! thread's store ([`current`]) decides what `TempHome::new` gives.
//! `BACKPROC_TEST_STORES=sqlite` (or `postgres`) runs one of them while
//! developing; both by default.

use postgres::types::{FromSql, IsNull, ToSql, Type};
use std::cell::{Cell, RefCell};
use std::fmt;

/// The two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

thread_local! {
    static CURRENT: Cell<Store> = const { Cell::new(Store::Sqlite) };
}

/// The store the current test runs on (SQLite unless [`on`] says otherwise).
pub fn current() -> Store {
    CURRENT.with(Cell::get)
}

/// Runs `test` on `store`, unless `BACKPROC_TEST_STORES` leaves it out.
pub fn on(store: Store, test: fn()) {
    let wanted = std::env::var("BACKPROC_TEST_STORES").unwrap_or_default();
    let name = match store {
        Store::Sqlite => "sqlite",
        Store::Postgres => "postgres",
    };
    if !wanted.is_empty() && !wanted.split(',').any(|w| w.trim() == name) {
        eprintln!("left out: BACKPROC_TEST_STORES={wanted}");
        return;
    }
    CURRENT.with(|c| c.set(store));
    test();
}

/// Each test function given twice: `on_sqlite::NAME` and
/// `on_postgres::NAME` (the functions themselves are written without
/// `#[test]`).
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[test]
                fn $name() {
                    $crate::support::db::on($crate::support::db::Store::Sqlite, super::$name)
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    $crate::support::db::on($crate::support::db::Store::Postgres, super::$name)
                }
            )*
        }
    };
}

/// A value of a row or a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What goes into a parameter.
pub trait ToVal {
    fn to_val(&self) -> Val;
}

impl ToVal for Val {
    fn to_val(&self) -> Val {
        self.clone()
    }
}
macro_rules! int_to_val {
    ($($t:ty),*) => {$(
        impl ToVal for $t {
            fn to_val(&self) -> Val {
                Val::Int(*self as i64)
            }
        }
    )*};
}
int_to_val!(i64, i32, u32, u16, u8, usize, u64);
impl ToVal for bool {
    fn to_val(&self) -> Val {
        Val::Int(i64::from(*self))
    }
}
impl ToVal for str {
    fn to_val(&self) -> Val {
        Val::Text(self.to_string())
    }
}
impl ToVal for String {
    fn to_val(&self) -> Val {
        Val::Text(self.clone())
    }
}
impl ToVal for [u8] {
    fn to_val(&self) -> Val {
        Val::Blob(self.to_vec())
    }
}
impl ToVal for Vec<u8> {
    fn to_val(&self) -> Val {
        Val::Blob(self.clone())
    }
}
impl ToVal for std::borrow::Cow<'_, str> {
    fn to_val(&self) -> Val {
        Val::Text(self.to_string())
    }
}
impl<T: ToVal> ToVal for Option<T> {
    fn to_val(&self) -> Val {
        self.as_ref().map_or(Val::Null, ToVal::to_val)
    }
}
impl<T: ToVal + ?Sized> ToVal for &T {
    fn to_val(&self) -> Val {
        (**self).to_val()
    }
}

/// The parameters of a statement: `[]`, `[a, b]` of one type, or
/// `params![a, b]` of any.
pub trait Params {
    fn vals(&self) -> Vec<Val>;
}
impl Params for [&dyn ToVal; 0] {
    fn vals(&self) -> Vec<Val> {
        Vec::new()
    }
}
macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToVal> Params for [T; $n] {
            fn vals(&self) -> Vec<Val> {
                self.iter().map(ToVal::to_val).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8);
impl Params for &[&dyn ToVal] {
    fn vals(&self) -> Vec<Val> {
        self.iter().map(|v| v.to_val()).collect()
    }
}

/// Parameters of mixed types, as rusqlite's `params!`.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        &[$(&$v as &dyn $crate::support::db::ToVal),*] as &[&dyn $crate::support::db::ToVal]
    };
}

/// What comes out of a column.
pub trait FromVal: Sized {
    fn from_val(v: Val) -> Result<Self, Error>;
}
impl FromVal for Val {
    fn from_val(v: Val) -> Result<Self, Error> {
        Ok(v)
    }
}
impl FromVal for i64 {
    fn from_val(v: Val) -> Result<Self, Error> {
        match v {
            Val::Int(n) => Ok(n),
            Val::Real(f) => Ok(f as i64),
            Val::Text(t) => t
                .trim()
                .parse()
                .map_err(|_| Error::new(format!("not a number: {t:?}"))),
            other => Err(Error::new(format!("expected an integer, got {other:?}"))),
        }
    }
}
macro_rules! int_from_val {
    ($($t:ty),*) => {$(
        impl FromVal for $t {
            fn from_val(v: Val) -> Result<Self, Error> {
                let n = i64::from_val(v)?;
                <$t>::try_from(n).map_err(|_| Error::new(format!("{n} out of range")))
            }
        }
    )*};
}
int_from_val!(i32, u32, u16, usize, u64);
impl FromVal for bool {
    fn from_val(v: Val) -> Result<Self, Error> {
        Ok(i64::from_val(v)? != 0)
    }
}
impl FromVal for f64 {
    fn from_val(v: Val) -> Result<Self, Error> {
        match v {
            Val::Real(f) => Ok(f),
            Val::Int(n) => Ok(n as f64),
            other => Err(Error::new(format!("expected a number, got {other:?}"))),
        }
    }
}
impl FromVal for String {
    fn from_val(v: Val) -> Result<Self, Error> {
        match v {
            Val::Text(t) => Ok(t),
            Val::Blob(b) => String::from_utf8(b).map_err(|_| Error::new("not UTF-8".into())),
            Val::Int(n) => Ok(n.to_string()),
            other => Err(Error::new(format!("expected text, got {other:?}"))),
        }
    }
}
impl FromVal for Vec<u8> {
    fn from_val(v: Val) -> Result<Self, Error> {
        match v {
            Val::Blob(b) => Ok(b),
            Val::Text(t) => Ok(t.into_bytes()),
            other => Err(Error::new(format!("expected bytes, got {other:?}"))),
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: Val) -> Result<Self, Error> {
        match v {
            Val::Null => Ok(None),
            v => T::from_val(v).map(Some),
        }
    }
}

/// A failed statement, or no row where one was wanted.
#[derive(Debug)]
pub struct Error {
    msg: String,
    no_rows: bool,
}

impl Error {
    fn new(msg: String) -> Error {
        Error {
            msg,
            no_rows: false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

/// `Ok(None)` for "no row", as rusqlite's `OptionalExtension`.
pub trait Optional<T> {
    fn optional(self) -> Result<Option<T>, Error>;
}
impl<T> Optional<T> for Result<T, Error> {
    fn optional(self) -> Result<Option<T>, Error> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.no_rows => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One row of a result.
pub struct Row(Vec<Val>);

impl Row {
    /// Column `i`, converted.
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T, Error> {
        let v = self
            .0
            .get(i)
            .cloned()
            .ok_or_else(|| Error::new(format!("no column {i}")))?;
        T::from_val(v).map_err(|e| Error::new(format!("column {i}: {e}")))
    }
}

/// A connection to the engine's database of one home.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(RefCell<postgres::Client>),
}

impl Db {
    /// The SQLite file at `path`.
    pub fn sqlite(path: &std::path::Path) -> Db {
        Db::Sqlite(rusqlite::Connection::open(path).expect("open the SQLite database"))
    }

    /// The SQLite database at `path`, waiting up to 30 s for a lock as a
    /// web application would.
    #[allow(dead_code)]
    pub fn sqlite_patient(path: &std::path::Path) -> Db {
        let c = rusqlite::Connection::open(path).expect("open the SQLite database");
        c.busy_timeout(std::time::Duration::from_secs(30))
            .expect("busy timeout");
        Db::Sqlite(c)
    }

    /// The PostgreSQL database at `url`.
    pub fn postgres(url: &str) -> Db {
        let client = postgres::Client::connect(url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test database: {e}"));
        Db::Postgres(RefCell::new(client))
    }

    /// The table holding the searched text as the message has it (SPEC
    /// §14): FTS5's content table on SQLite, `email_search` on PostgreSQL.
    #[allow(dead_code)]
    pub fn search_text_table(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "email_search_text",
            Db::Postgres(_) => "email_search",
        }
    }

    /// The search index agrees with its text (FTS5's integrity check; on
    /// PostgreSQL every text has its document).
    #[allow(dead_code)]
    pub fn search_index_consistent(&self) {
        match self {
            Db::Sqlite(_) => self
                .execute_batch(
                    "INSERT INTO email_search(email_search, rank) VALUES ('integrity-check', 0)",
                )
                .expect("the FTS5 index is consistent"),
            Db::Postgres(_) => {
                let bad: i64 = self
                    .query_row(
                        "SELECT COUNT(*) FROM email_search WHERE document IS NULL",
                        [],
                        |r| r.get(0),
                    )
                    .expect("count");
                assert_eq!(bad, 0, "search rows without a document");
            }
        }
    }

    /// Which store this is.
    pub fn store(&self) -> Store {
        match self {
            Db::Sqlite(_) => Store::Sqlite,
            Db::Postgres(_) => Store::Postgres,
        }
    }

    /// Every row of `sql`.
    pub fn rows(&self, sql: &str, params: impl Params) -> Result<Vec<Row>, Error> {
        let vals = params.vals();
        match self {
            Db::Sqlite(c) => {
                let mut s = c.prepare(sql).map_err(sqlite_error)?;
                let n = s.column_count();
                let bound: Vec<rusqlite::types::Value> = vals.iter().map(to_sqlite).collect();
                let mut rows = s
                    .query(rusqlite::params_from_iter(bound))
                    .map_err(sqlite_error)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(sqlite_error)? {
                    let mut row = Vec::with_capacity(n);
                    for i in 0..n {
                        row.push(from_sqlite(r.get_ref(i).map_err(sqlite_error)?));
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Db::Postgres(c) => {
                let sql = dollar_params(sql);
                let bound: Vec<PgVal> = vals.into_iter().map(PgVal).collect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    bound.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                let rows = c
                    .borrow_mut()
                    .query(sql.as_str(), &refs)
                    .map_err(|e| Error::new(format!("{sql}: {}", pg_error(&e))))?;
                rows.iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                r.try_get::<_, PgOut>(i)
                                    .map(|v| v.0)
                                    .map_err(|e| Error::new(format!("column {i}: {e}")))
                            })
                            .collect::<Result<Vec<Val>, Error>>()
                            .map(Row)
                    })
                    .collect()
            }
        }
    }

    /// The one row of `sql`, mapped by `f`; an error (see [`Optional`])
    /// when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let rows = self.rows(sql, params)?;
        match rows.first() {
            Some(r) => f(r),
            None => Err(Error {
                msg: format!("no row: {sql}"),
                no_rows: true,
            }),
        }
    }

    /// Runs a statement; the rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize, Error> {
        let vals = params.vals();
        match self {
            Db::Sqlite(c) => {
                let bound: Vec<rusqlite::types::Value> = vals.iter().map(to_sqlite).collect();
                c.execute(sql, rusqlite::params_from_iter(bound))
                    .map_err(sqlite_error)
            }
            Db::Postgres(c) => {
                let sql = dollar_params(sql);
                let bound: Vec<PgVal> = vals.into_iter().map(PgVal).collect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    bound.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
                c.borrow_mut()
                    .execute(sql.as_str(), &refs)
                    .map(|n| n as usize)
                    .map_err(|e| Error::new(format!("{sql}: {}", pg_error(&e))))
            }
        }
    }

    /// Runs statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), Error> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_error),
            Db::Postgres(c) => c
                .borrow_mut()
                .batch_execute(sql)
                .map_err(|e| Error::new(pg_error(&e))),
        }
    }

    /// The id the last INSERT of this connection gave its row.
    pub fn last_insert_rowid(&self) -> i64 {
        match self {
            Db::Sqlite(c) => c.last_insert_rowid(),
            Db::Postgres(_) => self
                .query_row("SELECT lastval()", [], |r| r.get(0))
                .expect("lastval()"),
        }
    }

    /// A statement to run with [`Stmt::query_map`].
    pub fn prepare<'a>(&'a self, sql: &str) -> Result<Stmt<'a>, Error> {
        Ok(Stmt {
            db: self,
            sql: sql.to_string(),
        })
    }

    /// Begins a transaction, committed by [`Tx::commit`] (rolled back if
    /// dropped without).
    pub fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        self.execute_batch("BEGIN")?;
        Ok(Tx {
            db: self,
            done: false,
        })
    }
}

/// A statement of [`Db::prepare`].
pub struct Stmt<'a> {
    db: &'a Db,
    sql: String,
}

impl Stmt<'_> {
    /// Every row mapped by `f`.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row) -> Result<T, Error>,
    ) -> Result<std::vec::IntoIter<Result<T, Error>>, Error> {
        let rows = self.db.rows(&self.sql, params)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }
}

/// A transaction of [`Db::transaction`].
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<(), Error> {
        self.done = true;
        self.db.execute_batch("COMMIT")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

fn sqlite_error(e: rusqlite::Error) -> Error {
    Error {
        no_rows: matches!(e, rusqlite::Error::QueryReturnedNoRows),
        msg: e.to_string(),
    }
}

fn pg_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn to_sqlite(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Null => Value::Null,
        Val::Int(n) => Value::Integer(*n),
        Val::Real(f) => Value::Real(*f),
        Val::Text(t) => Value::Text(t.clone()),
        Val::Blob(b) => Value::Blob(b.clone()),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(n) => Val::Int(n),
        ValueRef::Real(f) => Val::Real(f),
        ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
    }
}

/// `?` and `?N` as PostgreSQL's `$N` (not inside quotes), and SQLite's
/// `BLOB` type as `BYTEA`.
pub fn dollar_params(sql: &str) -> String {
    let sql = sql.replace(" AS BLOB)", " AS BYTEA)");
    let sql = sql.as_str();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0;
    let mut quoted = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
            out.push(c);
            continue;
        }
        if c != '?' || quoted {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        let n = if digits.is_empty() {
            next += 1;
            next
        } else {
            digits.parse().unwrap_or(0)
        };
        out.push_str(&format!("${n}"));
    }
    out
}

/// A parameter for PostgreSQL, converted to the type the statement wants.
#[derive(Debug)]
struct PgVal(Val);

impl ToSql for PgVal {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let text = |v: &Val| -> Option<String> {
            match v {
                Val::Int(n) => Some(n.to_string()),
                Val::Real(f) => Some(f.to_string()),
                Val::Text(t) => Some(t.clone()),
                Val::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Val::Null => None,
            }
        };
        let int = |v: &Val| -> Result<i64, Box<dyn std::error::Error + Sync + Send>> {
            match v {
                Val::Int(n) => Ok(*n),
                Val::Real(f) => Ok(*f as i64),
                Val::Text(t) => Ok(t.trim().parse()?),
                other => Err(format!("{other:?} is no integer").into()),
            }
        };
        if self.0 == Val::Null {
            return Ok(IsNull::Yes);
        }
        match *ty {
            Type::INT8 => int(&self.0)?.to_sql(ty, out),
            Type::INT4 => (int(&self.0)? as i32).to_sql(ty, out),
            Type::INT2 => (int(&self.0)? as i16).to_sql(ty, out),
            Type::BOOL => (int(&self.0)? != 0).to_sql(ty, out),
            Type::FLOAT8 => (int(&self.0)? as f64).to_sql(ty, out),
            Type::BYTEA => match &self.0 {
                Val::Blob(b) => b.as_slice().to_sql(ty, out),
                v => text(v).unwrap_or_default().as_bytes().to_sql(ty, out),
            },
            _ => text(&self.0).unwrap_or_default().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A column from PostgreSQL, whatever its type.
struct PgOut(Val);

impl<'a> FromSql<'a> for PgOut {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgOut(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Val::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::OID => Val::Int(i64::from(u32::from_sql(ty, raw)?)),
            Type::BOOL => Val::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::FLOAT8 => Val::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Val::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::BYTEA => Val::Blob(raw.to_vec()),
            _ => Val::Text(String::from_utf8_lossy(raw).into_owned()),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgOut(Val::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}
