//! MySQL and MariaDB through the `mysql` crate (pure Rust, no TLS).
//!
//! Statement timeouts: MariaDB has `max_statement_time` (seconds, any statement); MySQL 5.7.8+
//! and 8 have `max_execution_time` (milliseconds, SELECT only, which is all we run). The
//! server kind is read from `VERSION()` when connecting.

use std::time::Duration;

use mysql::prelude::Queryable;

use super::{too_many_rows, Cell, Db, DbError, DbSettings, Driver, Row, Table};

/// A MySQL or MariaDB connection.
pub struct MysqlDb {
    conn: mysql::Conn,
    version: String,
    mariadb: bool,
}

impl MysqlDb {
    /// Connects with the given settings within `timeout`.
    pub fn connect(s: &DbSettings, timeout: Duration) -> Result<MysqlDb, DbError> {
        let mut conn = mysql::Conn::new(opts(s, timeout)).map_err(my_err)?;
        let version: String = conn
            .query_first("SELECT VERSION()")
            .map_err(my_err)?
            .unwrap_or_default();
        let mariadb = version.to_ascii_lowercase().contains("mariadb");
        Ok(MysqlDb {
            conn,
            version,
            mariadb,
        })
    }
}

/// Connection options for `s` (shared with the writable store of custom metrics).
pub(crate) fn opts(s: &DbSettings, timeout: Duration) -> mysql::OptsBuilder {
    let mut opts = mysql::OptsBuilder::new()
        .user(Some(&s.user))
        .db_name(Some(&s.name))
        .tcp_connect_timeout(Some(timeout))
        .read_timeout(Some(s.statement_timeout + Duration::from_secs(5)))
        .write_timeout(Some(s.statement_timeout + Duration::from_secs(5)))
        .prefer_socket(false);
    if !s.password.is_empty() {
        opts = opts.pass(Some(s.password.expose()));
    }
    opts = match (&s.socket, &s.host) {
        (Some(sock), _) => opts.socket(Some(sock)),
        (None, h) => opts
            .ip_or_hostname(Some(h.clone().unwrap_or_else(|| "localhost".into())))
            .tcp_port(s.port),
    };
    opts
}

/// The server's words for a MySQL error.
pub(crate) fn my_err(e: mysql::Error) -> DbError {
    DbError(e.to_string())
}

impl Db for MysqlDb {
    fn driver(&self) -> Driver {
        Driver::Mysql
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn begin_read_only(&mut self, timeout: Duration) -> Result<(), DbError> {
        let set = if self.mariadb {
            format!(
                "SET SESSION max_statement_time = {:.3}",
                timeout.as_secs_f64().max(0.001)
            )
        } else {
            format!(
                "SET SESSION max_execution_time = {}",
                timeout.as_millis().max(1)
            )
        };
        self.conn.query_drop(set).map_err(my_err)?;
        // `START TRANSACTION READ ONLY` alone does not stop DDL: CREATE/DROP commit implicitly
        // and then run outside it. With the session default read-only too they are refused.
        // Set on every transaction, so no earlier statement can have turned it off.
        self.conn
            .query_drop("SET SESSION TRANSACTION READ ONLY")
            .map_err(my_err)?;
        self.conn
            .query_drop("START TRANSACTION READ ONLY")
            .map_err(my_err)
    }

    fn query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let rows: Vec<mysql::Row> = self.conn.query(sql).map_err(my_err)?;
        Ok(rows
            .into_iter()
            .map(|r| r.unwrap().into_iter().map(cell).collect())
            .collect())
    }

    fn query_one(&mut self, sql: &str, max_rows: usize) -> Result<Table, DbError> {
        // A prepared statement is exactly one statement (the text protocol would run several).
        let mut result = self.conn.exec_iter(sql, ()).map_err(my_err)?;
        let columns = result
            .columns()
            .as_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let mut rows = Vec::new();
        for row in result.by_ref() {
            if rows.len() == max_rows {
                return Err(too_many_rows(max_rows));
            }
            rows.push(
                row.map_err(my_err)?
                    .unwrap()
                    .into_iter()
                    .map(cell)
                    .collect(),
            );
        }
        Ok(Table { columns, rows })
    }

    fn end(&mut self) -> Result<(), DbError> {
        self.conn.query_drop("ROLLBACK").map_err(my_err)
    }
}

fn cell(v: mysql::Value) -> Cell {
    use mysql::Value as V;
    match v {
        V::NULL => Cell::Null,
        V::Bytes(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
        V::Int(i) => Cell::Int(i),
        V::UInt(u) => Cell::Int(u as i64),
        V::Float(f) => Cell::Float(f as f64),
        V::Double(f) => Cell::Float(f),
        V::Date(y, mo, d, h, mi, s, _) => {
            Cell::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
        }
        V::Time(neg, d, h, m, s, _) => {
            let secs = ((d as i64 * 24 + h as i64) * 60 + m as i64) * 60 + s as i64;
            Cell::Int(if neg { -secs } else { secs })
        }
    }
}
