//! PostgreSQL through the synchronous `postgres` crate (no TLS).

use std::time::Duration;

use super::{too_many_rows, Cell, Db, DbError, DbSettings, Driver, Row, Table};

/// A PostgreSQL connection.
pub struct PgDb {
    client: postgres::Client,
    version: String,
}

impl PgDb {
    /// Connects with the given settings within `timeout`.
    pub fn connect(s: &DbSettings, timeout: Duration) -> Result<PgDb, DbError> {
        let mut c = config(s, timeout);
        // Every transaction of this session is read-only unless it says otherwise, so even a
        // statement that ends the exporter's `BEGIN READ ONLY` (COMMIT) cannot write.
        c.options("-c default_transaction_read_only=on");
        let mut client = c.connect(postgres::NoTls).map_err(pg_err)?;
        let version = client
            .query_one("SHOW server_version", &[])
            .map_err(pg_err)?
            .get::<_, String>(0);
        Ok(PgDb { client, version })
    }
}

/// Connection settings for `s` (shared with the writable store of custom metrics).
pub(crate) fn config(s: &DbSettings, timeout: Duration) -> postgres::Config {
    let mut c = postgres::Config::new();
    match (&s.socket, &s.host) {
        (Some(dir), _) => c.host_path(dir),
        (None, Some(h)) => c.host(h),
        (None, None) => c.host_path("/var/run/postgresql"),
    };
    c.port(s.port)
        .dbname(&s.name)
        .user(&s.user)
        .application_name("otrs-exporter")
        .connect_timeout(timeout)
        // Give up on a server that stops answering (statement_timeout covers slow SQL).
        .tcp_user_timeout(s.statement_timeout + Duration::from_secs(5));
    if !s.password.is_empty() {
        c.password(s.password.expose());
    }
    c
}

/// The server's words for a PostgreSQL error.
pub(crate) fn pg_err(e: postgres::Error) -> DbError {
    // `db error: ERROR: ...` → keep the server's words.
    match e.as_db_error() {
        Some(db) => DbError(format!("{}: {}", db.severity(), db.message())),
        None => DbError(e.to_string()),
    }
}

impl Db for PgDb {
    fn driver(&self) -> Driver {
        Driver::Postgres
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn begin_read_only(&mut self, timeout: Duration) -> Result<(), DbError> {
        let ms = timeout.as_millis().max(1);
        self.client
            .batch_execute(&format!(
                "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {ms}"
            ))
            .map_err(pg_err)
    }

    fn query(&mut self, sql: &str) -> Result<Vec<Row>, DbError> {
        let msgs = self.client.simple_query(sql).map_err(pg_err)?;
        let mut rows = Vec::new();
        for m in msgs {
            if let postgres::SimpleQueryMessage::Row(r) = m {
                rows.push(
                    (0..r.len())
                        .map(|i| match r.get(i) {
                            Some(t) => Cell::Text(t.to_string()),
                            None => Cell::Null,
                        })
                        .collect(),
                );
            }
        }
        Ok(rows)
    }

    fn query_one(&mut self, sql: &str, max_rows: usize) -> Result<Table, DbError> {
        // Preparing refuses several statements ("cannot insert multiple commands into a
        // prepared statement") and names the columns; the simple protocol then returns every
        // type as text.
        let stmt = self.client.prepare(sql).map_err(pg_err)?;
        let columns = stmt
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        let rows = if is_query(sql) {
            // Through a cursor, so at most max_rows + 1 rows are ever fetched. (`sql` is one
            // statement, so nothing but comments can follow a `;` in it.)
            self.query(&format!(
                "DECLARE otrs_exporter_custom NO SCROLL CURSOR FOR {}",
                sql.trim_end().trim_end_matches(';')
            ))?;
            let rows = self.query(&format!(
                "FETCH FORWARD {} FROM otrs_exporter_custom",
                max_rows + 1
            ))?;
            self.query("CLOSE otrs_exporter_custom")?;
            rows
        } else {
            // Anything else (the server refuses writes in the read-only transaction).
            self.query(sql)?
        };
        if rows.len() > max_rows {
            return Err(too_many_rows(max_rows));
        }
        Ok(Table { columns, rows })
    }

    fn end(&mut self) -> Result<(), DbError> {
        self.client.batch_execute("ROLLBACK").map_err(pg_err)
    }
}

/// Whether `sql` starts (after blanks, comments and parentheses) with a keyword a cursor
/// can be declared for: SELECT, WITH, VALUES or TABLE.
fn is_query(sql: &str) -> bool {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.split_once('\n').map_or("", |x| x.1).trim_start();
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.split_once("*/").map_or("", |x| x.1).trim_start();
        } else if let Some(rest) = s.strip_prefix('(') {
            s = rest.trim_start();
        } else {
            break;
        }
    }
    let word: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(word.as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE")
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_that_take_a_cursor() {
        for q in [
            "SELECT 1",
            " -- c\n/* x */ (select 1)",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "values (1)",
        ] {
            assert!(super::is_query(q), "{q}");
        }
        for q in [
            "DELETE FROM t",
            "SHOW x",
            "-- only a comment",
            "EXPLAIN SELECT 1",
        ] {
            assert!(!super::is_query(q), "{q}");
        }
    }
}
