//! The definitions table in the OTRS database, read and written by the admin page and the
//! `custom` / `deploy` / `db-init` commands.
//!
//! This is the exporter's only **writable** database connection, and it is kept apart from
//! the collectors' read-only one ([`crate::db::Db`]): it touches nothing but the two tables of
//! `sql/custom_metrics.*.sql`, and every value it writes travels as a bound parameter, never
//! inside SQL text. Nothing here runs an admin's metric query; that happens only on the
//! read-only connection.

use std::time::Duration;

use mysql::prelude::Queryable;

use super::deploy::Deployment;
use super::{parse_label_names, Definition, Kind};
use crate::db::{DbError, DbSettings, Driver};

/// DDL for PostgreSQL (`sql/custom_metrics.postgresql.sql`).
pub const DDL_POSTGRES: &str = include_str!("../../sql/custom_metrics.postgresql.sql");
/// DDL for MySQL and MariaDB (`sql/custom_metrics.mysql.sql`).
pub const DDL_MYSQL: &str = include_str!("../../sql/custom_metrics.mysql.sql");

/// A stored definition with its bookkeeping columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The definition.
    pub def: Definition,
    /// Revision the last deploy published (0 = never deployed).
    pub deployed_revision: i64,
    /// When and by whom it was created (`YYYY-MM-DD HH:MM:SS`, database time).
    pub created: (String, String),
    /// When and by whom it was last changed.
    pub changed: (String, String),
}

impl Stored {
    /// Whether the served (deployed) version differs from this one.
    pub fn undeployed(&self) -> bool {
        self.deployed_revision != self.def.revision
    }
}

enum Conn {
    Pg(Box<postgres::Client>),
    My(mysql::Conn),
}

/// A bound parameter.
#[derive(Clone, Copy)]
enum P<'a> {
    S(&'a str),
    I(i32),
    /// SMALLINT (PostgreSQL checks the width).
    Small(i16),
}

/// The definition's columns in the order INSERT and UPDATE name them: name, help, type, SQL,
/// label names (`labels`, comma-joined), TTL, timeout, enabled.
fn definition_params<'a>(def: &'a Definition, labels: &'a str) -> [P<'a>; 8] {
    [
        P::S(&def.name),
        P::S(&def.help),
        P::S(def.kind.as_str()),
        P::S(&def.sql),
        P::S(labels),
        P::I(def.ttl_seconds as i32),
        P::I(def.timeout_seconds as i32),
        P::Small(def.enabled.into()),
    ]
}

/// A writable connection to the definitions table.
pub struct Store {
    conn: Conn,
}

/// The statements of a DDL file (comment lines dropped, split at `;`).
pub fn ddl_statements(ddl: &str) -> Vec<String> {
    let text: String = ddl
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| match l.find(" -- ") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

const COLUMNS: &str = "name, help, metric_type, query_sql, label_names, ttl_seconds, \
    timeout_seconds, enabled, revision, deployed_revision, create_by, change_by";

fn missing_table_hint(e: DbError) -> DbError {
    let m = e.0.to_ascii_lowercase();
    if m.contains("otrs_exporter_custom")
        && (m.contains("does not exist") || m.contains("doesn't exist"))
    {
        DbError(format!(
            "{e}; create the tables with `otrs-exporter db-init` (see sql/custom_metrics.*.sql)"
        ))
    } else {
        e
    }
}

impl Store {
    /// Connects to the database of `settings` (writable; see the module docs).
    pub fn connect(settings: &DbSettings) -> Result<Store, DbError> {
        let timeout = settings.connect_timeout.max(Duration::from_secs(1));
        let conn = match settings.driver {
            Driver::Postgres => Conn::Pg(Box::new(
                crate::db::pg::config(settings, timeout)
                    .connect(postgres::NoTls)
                    .map_err(crate::db::pg::pg_err)?,
            )),
            Driver::Mysql => Conn::My(
                mysql::Conn::new(crate::db::mysql::opts(settings, timeout))
                    .map_err(crate::db::mysql::my_err)?,
            ),
        };
        Ok(Store { conn })
    }

    /// The protocol of this connection.
    pub fn driver(&self) -> Driver {
        match self.conn {
            Conn::Pg(_) => Driver::Postgres,
            Conn::My(_) => Driver::Mysql,
        }
    }

    /// Creates the tables if they do not exist (idempotent). `progress` is called with each
    /// statement's first line before it runs.
    pub fn init(&mut self, mut progress: impl FnMut(&str)) -> Result<(), DbError> {
        let ddl = match self.driver() {
            Driver::Postgres => DDL_POSTGRES,
            Driver::Mysql => DDL_MYSQL,
        };
        for stmt in ddl_statements(ddl) {
            progress(stmt.lines().next().unwrap_or(""));
            self.exec(&stmt, &[])?;
        }
        Ok(())
    }

    fn exec(&mut self, sql: &str, params: &[P]) -> Result<u64, DbError> {
        let r = match &mut self.conn {
            Conn::Pg(c) => {
                let sql = numbered(sql);
                let owned: Vec<Box<dyn postgres::types::ToSql + Sync>> =
                    params.iter().map(pg_param).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    owned.iter().map(|b| b.as_ref()).collect();
                c.execute(sql.as_str(), &refs)
                    .map_err(crate::db::pg::pg_err)
            }
            Conn::My(c) => c
                .exec_drop(sql, my_params(params))
                .map(|_| c.affected_rows())
                .map_err(crate::db::mysql::my_err),
        };
        r.map_err(missing_table_hint)
    }

    /// All definitions, by name.
    pub fn list(&mut self) -> Result<Vec<Stored>, DbError> {
        self.select("ORDER BY name", &[])
    }

    /// The definition named `name`.
    pub fn get(&mut self, name: &str) -> Result<Option<Stored>, DbError> {
        Ok(self.select("WHERE name = ?", &[P::S(name)])?.pop())
    }

    fn select(&mut self, tail: &str, params: &[P]) -> Result<Vec<Stored>, DbError> {
        let times = match self.driver() {
            Driver::Postgres => {
                "to_char(create_time, 'YYYY-MM-DD HH24:MI:SS'), \
                 to_char(change_time, 'YYYY-MM-DD HH24:MI:SS')"
            }
            Driver::Mysql => {
                "DATE_FORMAT(create_time, '%Y-%m-%d %H:%i:%s'), \
                 DATE_FORMAT(change_time, '%Y-%m-%d %H:%i:%s')"
            }
        };
        let sql = format!("SELECT {COLUMNS}, {times} FROM otrs_exporter_custom_metric {tail}");
        // (text columns, integer columns) per row, in COLUMNS order.
        let raw: Vec<(Vec<String>, Vec<i64>)> = match &mut self.conn {
            Conn::Pg(c) => {
                let owned: Vec<Box<dyn postgres::types::ToSql + Sync>> =
                    params.iter().map(pg_param).collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    owned.iter().map(|b| b.as_ref()).collect();
                let rows = c
                    .query(numbered(&sql).as_str(), &refs)
                    .map_err(crate::db::pg::pg_err)
                    .map_err(missing_table_hint)?;
                rows.iter()
                    .map(|r| {
                        let s = |i: usize| r.get::<_, String>(i);
                        let n4 = |i: usize| i64::from(r.get::<_, i32>(i));
                        (
                            vec![s(0), s(1), s(2), s(3), s(4), s(10), s(11), s(12), s(13)],
                            vec![n4(5), n4(6), i64::from(r.get::<_, i16>(7)), n4(8), n4(9)],
                        )
                    })
                    .collect()
            }
            Conn::My(c) => {
                let rows: Vec<mysql::Row> = c
                    .exec(sql.as_str(), my_params(params))
                    .map_err(crate::db::mysql::my_err)
                    .map_err(missing_table_hint)?;
                rows.iter()
                    .map(|r| {
                        let s = |i: usize| r.get::<String, _>(i).unwrap_or_default();
                        let n = |i: usize| r.get::<i64, _>(i).unwrap_or_default();
                        (
                            vec![s(0), s(1), s(2), s(3), s(4), s(10), s(11), s(12), s(13)],
                            vec![n(5), n(6), n(7), n(8), n(9)],
                        )
                    })
                    .collect()
            }
        };
        raw.into_iter()
            .map(|(s, n)| {
                let def = Definition {
                    name: s[0].clone(),
                    help: s[1].clone(),
                    kind: Kind::parse(&s[2]).map_err(DbError)?,
                    sql: s[3].clone(),
                    label_names: parse_label_names(&s[4]),
                    ttl_seconds: n[0].clamp(0, u32::MAX.into()) as u32,
                    timeout_seconds: n[1].clamp(0, u32::MAX.into()) as u32,
                    enabled: n[2] != 0,
                    revision: n[3],
                };
                Ok(Stored {
                    def,
                    deployed_revision: n[4],
                    created: (s[7].clone(), s[5].clone()),
                    changed: (s[8].clone(), s[6].clone()),
                })
            })
            .collect()
    }

    /// Adds a definition (checked first) created by `user`.
    pub fn create(&mut self, def: &Definition, user: &str) -> Result<(), DbError> {
        def.check().map_err(DbError)?;
        if self.get(&def.name)?.is_some() {
            return Err(DbError(format!(
                "a custom metric named {:?} exists already; edit it or choose another name",
                def.name
            )));
        }
        let labels = def.label_names.join(",");
        self.exec(
            "INSERT INTO otrs_exporter_custom_metric (name, help, metric_type, query_sql, \
             label_names, ttl_seconds, timeout_seconds, enabled, revision, deployed_revision, \
             create_by, change_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?)",
            &[
                &definition_params(def, &labels)[..],
                &[P::S(user), P::S(user)],
            ]
            .concat(),
        )?;
        Ok(())
    }

    /// Replaces the definition named `old_name` with `def` (which may rename it), counting a
    /// new revision. An unchanged definition is left alone (same revision).
    pub fn update(&mut self, old_name: &str, def: &Definition, user: &str) -> Result<(), DbError> {
        def.check().map_err(DbError)?;
        let Some(cur) = self.get(old_name)? else {
            return Err(DbError(format!(
                "there is no custom metric named {old_name:?} (deleted meanwhile?)"
            )));
        };
        if def.name != old_name && self.get(&def.name)?.is_some() {
            return Err(DbError(format!(
                "a custom metric named {:?} exists already",
                def.name
            )));
        }
        let same = Definition {
            revision: cur.def.revision,
            ..def.clone()
        };
        if same == cur.def {
            return Ok(());
        }
        let labels = def.label_names.join(",");
        let sql = "UPDATE otrs_exporter_custom_metric SET name = ?, help = ?, metric_type = ?, \
             query_sql = ?, label_names = ?, ttl_seconds = ?, timeout_seconds = ?, enabled = ?, \
             revision = revision + 1, change_time = CURRENT_TIMESTAMP, change_by = ? \
             WHERE name = ?";
        self.exec(
            sql,
            &[
                &definition_params(def, &labels)[..],
                &[P::S(user), P::S(old_name)],
            ]
            .concat(),
        )?;
        Ok(())
    }

    /// Deletes the definition named `name`; false if there was none. A deployed metric is
    /// served until the next deploy.
    pub fn delete(&mut self, name: &str) -> Result<bool, DbError> {
        let n = self.exec(
            "DELETE FROM otrs_exporter_custom_metric WHERE name = ?",
            &[P::S(name)],
        )?;
        Ok(n > 0)
    }

    /// Records a deploy of every enabled definition by `user` and returns it (the caller
    /// publishes it to the shared segment).
    pub fn deploy(&mut self, user: &str) -> Result<Deployment, DbError> {
        let metrics: Vec<Definition> = self
            .list()?
            .into_iter()
            .filter(|s| s.def.enabled)
            .map(|s| s.def)
            .collect();
        let json = serde_json::to_string(&metrics).map_err(DbError::new)?;
        self.exec(
            "INSERT INTO otrs_exporter_custom_deploy (deploy_by, definitions) VALUES (?, ?)",
            &[P::S(user), P::S(&json)],
        )?;
        self.exec(
            "UPDATE otrs_exporter_custom_metric SET deployed_revision = revision",
            &[],
        )?;
        self.latest_deployment()?
            .ok_or_else(|| DbError::new("the deploy just recorded cannot be read back"))
    }

    /// The most recent deploy, if any.
    pub fn latest_deployment(&mut self) -> Result<Option<Deployment>, DbError> {
        let sql = super::deploy::latest_sql(self.driver());
        let row: Option<(i64, String, String, String)> = match &mut self.conn {
            Conn::Pg(c) => c
                .query(sql.as_str(), &[])
                .map_err(crate::db::pg::pg_err)
                .map_err(missing_table_hint)?
                .first()
                .map(|r| {
                    (
                        r.get::<_, String>(0).parse().unwrap_or(0),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                    )
                }),
            Conn::My(c) => {
                let rows: Vec<mysql::Row> = c
                    .query(sql.as_str())
                    .map_err(crate::db::mysql::my_err)
                    .map_err(missing_table_hint)?;
                rows.first().map(|r| {
                    (
                        r.get::<String, _>(0)
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        r.get(1).unwrap_or_default(),
                        r.get(2).unwrap_or_default(),
                        r.get(3).unwrap_or_default(),
                    )
                })
            }
        };
        row.map(|(id, at, by, json)| Deployment::from_row(id, at, by, &json).map_err(DbError))
            .transpose()
    }
}

/// `?` placeholders → PostgreSQL's `$1, $2, …`.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_param(p: &P) -> Box<dyn postgres::types::ToSql + Sync> {
    match p {
        P::S(s) => Box::new(s.to_string()),
        P::I(i) => Box::new(*i),
        P::Small(i) => Box::new(*i),
    }
}

fn my_params(params: &[P]) -> mysql::Params {
    if params.is_empty() {
        return mysql::Params::Empty;
    }
    mysql::Params::Positional(
        params
            .iter()
            .map(|p| match p {
                P::S(s) => mysql::Value::from(*s),
                P::I(i) => mysql::Value::Int((*i).into()),
                P::Small(i) => mysql::Value::Int((*i).into()),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_splits_into_statements() {
        for ddl in [DDL_POSTGRES, DDL_MYSQL] {
            let s = ddl_statements(ddl);
            assert_eq!(s.len(), 2, "{s:?}");
            assert!(s
                .iter()
                .all(|x| x.starts_with("CREATE TABLE IF NOT EXISTS")));
            assert!(!s[0].contains("--"));
        }
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
