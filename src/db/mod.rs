//! Read-only access to the OTRS database for the DB collectors.
//!
//! [`Db`] is the one small trait the collectors use: statements run inside a read-only
//! transaction with a statement timeout, rows come back as [`Cell`]s. [`pg`] and [`mysql`]
//! implement it. [`DbHandle`] holds at most one connection per exporter process (FastCGI
//! workers keep it between scrapes, CGI processes connect when they refresh), reconnects
//! after any error, and never shows the password ([`settings`]).

pub mod demo_data;
pub mod mysql;
pub mod pg;
pub mod settings;

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::config::otrs_pm::Driver;
pub use settings::{resolve, DbSettings};

/// A database failure, with the server it concerns (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError(pub String);

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl DbError {
    /// An error from anything printable.
    pub fn new(msg: impl fmt::Display) -> DbError {
        DbError(msg.to_string())
    }
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// Text (PostgreSQL's simple protocol returns everything as text).
    Text(String),
}

impl Cell {
    /// The value as an integer (text is parsed; floats are truncated); `None` for NULL.
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Null => None,
            Cell::Int(i) => Some(*i),
            Cell::Float(f) => Some(*f as i64),
            Cell::Text(t) => t
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| t.trim().parse::<f64>().ok().map(|f| f as i64)),
        }
    }

    /// The value as a float; `None` for NULL or non-numeric text.
    pub fn float(&self) -> Option<f64> {
        match self {
            Cell::Null => None,
            Cell::Int(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Text(t) => t.trim().parse().ok(),
        }
    }

    /// The value as text (`""` for NULL).
    pub fn text(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Text(t) => t.clone(),
        }
    }

    /// Whether the value is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }
}

/// A result row.
pub type Row = Vec<Cell>;

/// A result with its column names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// The error for a result longer than `max_rows`.
pub(crate) fn too_many_rows(max_rows: usize) -> DbError {
    DbError(format!(
        "the query returned more than {max_rows} rows; aggregate it (GROUP BY) so it returns \
         one row per series"
    ))
}

/// An open database connection.
///
/// The collectors call [`Db::begin_read_only`], then [`Db::query`] any number of times, then
/// [`Db::end`]. Statements carry no parameters: all SQL is static or formatted with integers
/// the exporter computed itself, never with outside text. The one exception is
/// [`Db::query_one`], which runs an admin's custom-metric SQL as written: exactly one
/// statement, inside the read-only transaction, with the row cap.
pub trait Db: Send {
    /// The protocol (for the few statements whose SQL differs).
    fn driver(&self) -> Driver;
    /// Server version string (e.g. `10.11.6-MariaDB`, `15.4`).
    fn version(&self) -> &str;
    /// Starts a read-only transaction in which each statement may run for at most `timeout`.
    fn begin_read_only(&mut self, timeout: Duration) -> Result<(), DbError>;
    /// Runs one statement and returns all its rows.
    fn query(&mut self, sql: &str) -> Result<Vec<Row>, DbError>;
    /// Runs `sql`, which must be exactly one statement (the server refuses several), and
    /// returns its column names and at most `max_rows` rows; more rows are an error. For
    /// admin-written SQL (custom metrics).
    fn query_one(&mut self, sql: &str, max_rows: usize) -> Result<Table, DbError>;
    /// Ends the transaction (rolls back: nothing was written).
    fn end(&mut self) -> Result<(), DbError>;
}

/// SQL that differs between the two dialects.
impl Driver {
    /// An expression for the database's current Unix time in whole seconds.
    pub fn now_epoch(self) -> &'static str {
        match self {
            Driver::Postgres => "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
            Driver::Mysql => "UNIX_TIMESTAMP()",
        }
    }

    /// An expression converting the naive DATETIME column `col` to Unix seconds, read in the
    /// database session's time zone (the zone OTRS' `current_timestamp` writes in).
    pub fn epoch_of(self, col: &str) -> String {
        match self {
            Driver::Postgres => {
                format!("CAST(EXTRACT(EPOCH FROM CAST({col} AS timestamptz)) AS BIGINT)")
            }
            Driver::Mysql => format!("UNIX_TIMESTAMP({col})"),
        }
    }
}

/// The per-process connection to the OTRS database, shared by the DB collectors.
pub struct DbHandle {
    settings: Result<DbSettings, String>,
    conn: Mutex<Option<Box<dyn Db>>>,
}

impl DbHandle {
    /// A handle for `settings` (or for the reason there are none: then every use fails with it).
    pub fn new(settings: Result<DbSettings, String>) -> DbHandle {
        DbHandle {
            settings,
            conn: Mutex::new(None),
        }
    }

    /// Closes the connection, if there is one and no collector is using it (one that ran past
    /// the scrape deadline may be), so the server sees a proper goodbye.
    pub fn close(&self) {
        if let Ok(mut conn) = self.conn.try_lock() {
            conn.take();
        }
    }

    /// The settings, or why there are none.
    pub fn settings(&self) -> Result<&DbSettings, DbError> {
        self.settings.as_ref().map_err(|e| DbError(e.clone()))
    }

    /// Runs `f` in a read-only transaction on this process' connection (connecting first if
    /// needed), giving up at `deadline`. Each statement's timeout is the configured one or
    /// what is left until the deadline, whichever is shorter. Any error drops the connection,
    /// so the next use reconnects.
    pub fn run<T>(
        &self,
        deadline: Instant,
        f: impl FnOnce(&mut dyn Db) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let s = self.settings()?;
        let mut guard = loop {
            match self.conn.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        return Err(DbError::new(
                            "the database connection stayed busy until the scrape deadline",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let left = |margin: Duration| {
            deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(margin)
        };
        if guard.is_none() {
            let t = left(Duration::ZERO).min(s.connect_timeout);
            if t < Duration::from_millis(10) {
                return Err(DbError::new("no time left in this scrape to connect"));
            }
            *guard = Some(s.connect(t)?);
        }
        let conn = guard.as_mut().expect("connected above");
        let timeout = left(Duration::from_millis(20)).min(s.statement_timeout);
        if timeout < Duration::from_millis(5) {
            return Err(DbError::new("no time left in this scrape for a query"));
        }
        let result = conn
            .begin_read_only(timeout)
            .and_then(|_| f(conn.as_mut()))
            .and_then(|v| conn.end().map(|_| v));
        if result.is_err() {
            // Whatever went wrong, start from a fresh connection next time.
            *guard = None;
        }
        result.map_err(|e| DbError(format!("{}: {e}", s.describe())))
    }
}
