//! Custom SQL metrics: definitions written by OTRS admins, checked here, stored in the OTRS
//! database ([`store`]), published to every exporter process by a deploy ([`deploy`]) and
//! evaluated by the `custom` collector ([`crate::collector::custom`]).
//!
//! A definition's query returns one row per series: the last column is the value, the
//! columns before it are the labels (named after the columns unless the definition names
//! them). Queries run in a read-only transaction with the definition's statement timeout and
//! may return at most [`MAX_SERIES`] rows.

pub mod deploy;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError, Table};
use crate::snapshot::{is_valid_label_name, is_valid_metric_name, Family, MetricKind};

/// Most rows (= series) one custom metric may return: the label cardinality cap.
pub const MAX_SERIES: usize = 1000;
/// Longest label value accepted from a query.
pub const MAX_LABEL_VALUE: usize = 500;
/// Longest metric name.
pub const MAX_NAME: usize = 200;

/// Name prefixes the exporter's own metric families use; a custom metric may not start with
/// one of them (a custom family must never clash with, or be mistaken for, a built-in one).
pub const RESERVED_PREFIXES: &[&str] = &[
    "otrs_exporter_",
    "otrs_custom_metric",
    "otrs_http_",
    "otrs_web_",
    "otrs_daemon_",
    "otrs_log_",
    "otrs_cache_",
    "otrs_db",
    "otrs_ticket",
    "otrs_article",
    "otrs_mail_",
    "otrs_scheduler_",
    "otrs_recurrent_task_",
    "otrs_session",
    "process_",
];

/// The metric type of a custom metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A value that goes up and down (e.g. tickets per queue now).
    Gauge,
    /// A value that only grows (e.g. all articles ever created); rendered with `_total`.
    Counter,
}

impl Kind {
    /// `gauge` or `counter`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }

    /// Parses `gauge` / `counter`.
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s.trim() {
            "gauge" => Ok(Kind::Gauge),
            "counter" => Ok(Kind::Counter),
            other => Err(format!(
                "type {other:?} is not supported; use \"gauge\" or \"counter\""
            )),
        }
    }
}

/// One custom metric as the admin defined it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// Metric family name (for a counter without `_total`).
    pub name: String,
    /// `# HELP` text.
    pub help: String,
    /// Gauge or counter.
    pub kind: Kind,
    /// One SELECT statement: label columns, then the value column.
    pub sql: String,
    /// Label names overriding the column names (empty = use the column names).
    pub label_names: Vec<String>,
    /// Seconds a result is cached and shared by all exporter processes.
    pub ttl_seconds: u32,
    /// Statement timeout in seconds.
    pub timeout_seconds: u32,
    /// Whether deploys publish it.
    pub enabled: bool,
    /// Incremented on every change (the cache key includes it).
    pub revision: i64,
}

impl Definition {
    /// A new, enabled gauge with default TTL (60 s) and timeout (5 s).
    pub fn new(name: &str, help: &str, sql: &str) -> Definition {
        Definition {
            name: name.trim().to_string(),
            help: help.trim().to_string(),
            kind: Kind::Gauge,
            sql: sql.trim().to_string(),
            label_names: Vec::new(),
            ttl_seconds: 60,
            timeout_seconds: 5,
            enabled: true,
            revision: 1,
        }
    }

    /// Checks everything that can be checked without running the query. The message says
    /// what to change.
    pub fn check(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty() {
            return Err("the name is empty".into());
        }
        if n.len() > MAX_NAME || !is_valid_metric_name(n) || n.contains(':') {
            return Err(format!(
                "{n:?} is not a valid metric name: use letters, digits and '_' (not first a \
                 digit), at most {MAX_NAME} characters, e.g. otrs_site_open_changes"
            ));
        }
        if let Some(p) = RESERVED_PREFIXES.iter().find(|p| n.starts_with(*p)) {
            return Err(format!(
                "{n:?} clashes with the exporter's built-in metrics (names starting with \
                 {p:?} are reserved); choose another name, e.g. otrs_site_{}",
                n.trim_start_matches("otrs_")
            ));
        }
        if n.ends_with("_total") {
            return Err(format!(
                "{n:?}: leave off \"_total\"; counters get it added when rendered, and gauges \
                 must not carry it"
            ));
        }
        if self.help.trim().is_empty() {
            return Err("the help text is empty: say what the value means".into());
        }
        if self.help.len() > 1000 {
            return Err("the help text is longer than 1000 characters".into());
        }
        if self.sql.trim().is_empty() {
            return Err("the SQL is empty".into());
        }
        if self.sql.len() > 20_000 {
            return Err("the SQL is longer than 20000 characters".into());
        }
        check_label_names(&self.label_names)?;
        if !(1..=86_400).contains(&self.ttl_seconds) {
            return Err("the TTL must be between 1 and 86400 seconds".into());
        }
        if !(1..=300).contains(&self.timeout_seconds) {
            return Err("the timeout must be between 1 and 300 seconds".into());
        }
        Ok(())
    }

    /// The label names for a result with `columns`: the override, or the column names.
    pub fn labels_for(&self, columns: &[String]) -> Result<Vec<String>, String> {
        if columns.is_empty() {
            return Err("the query returns no columns; the last column must be the value".into());
        }
        let wanted = columns.len() - 1;
        let names: Vec<String> = if self.label_names.is_empty() {
            columns[..wanted].to_vec()
        } else {
            if self.label_names.len() != wanted {
                return Err(format!(
                    "the query returns {wanted} label column(s) before the value, but {} label \
                     name(s) are set ({}); make them match or clear the label names",
                    self.label_names.len(),
                    self.label_names.join(", ")
                ));
            }
            self.label_names.clone()
        };
        for (i, l) in names.iter().enumerate() {
            if !is_valid_label_name(l) {
                return Err(format!(
                    "column {} is named {l:?}, which is not a valid label name (letters, \
                     digits, '_', not starting with a digit or \"__\"): give it an alias \
                     (... AS queue) or set the label names",
                    i + 1
                ));
            }
        }
        check_label_names(&names)?;
        Ok(names)
    }

    /// Turns a query result into this metric's family. Rows whose value is NULL are left out;
    /// a value that is not a number, two rows with the same labels or an over-long label
    /// value are errors.
    pub fn evaluate(&self, table: &Table) -> Result<Family, String> {
        let labels = self.labels_for(&table.columns)?;
        let kind = match self.kind {
            Kind::Gauge => MetricKind::Gauge,
            Kind::Counter => MetricKind::Counter,
        };
        let mut fam = Family::new(self.name.clone(), self.help.clone(), kind);
        let mut seen = std::collections::HashSet::new();
        for (r, row) in table.rows.iter().enumerate() {
            let Some(cell) = row.last() else { continue };
            if cell.is_null() {
                continue;
            }
            let value = cell.float().ok_or_else(|| {
                format!(
                    "row {}: the value (last column) {:?} is not a number",
                    r + 1,
                    cell.text()
                )
            })?;
            let values: Vec<String> = row[..row.len() - 1].iter().map(|c| c.text()).collect();
            if let Some(v) = values.iter().find(|v| v.len() > MAX_LABEL_VALUE) {
                return Err(format!(
                    "row {}: a label value is longer than {MAX_LABEL_VALUE} bytes ({:.40}...)",
                    r + 1,
                    v
                ));
            }
            if !seen.insert(values.clone()) {
                return Err(format!(
                    "row {}: two rows have the same labels ({}); GROUP BY the label columns",
                    r + 1,
                    values.join(", ")
                ));
            }
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(String::as_str)
                .zip(values.iter().map(String::as_str))
                .collect();
            fam.push(&pairs, value);
        }
        Ok(fam)
    }

    /// Runs the query on `db` (in its own read-only transaction with this metric's timeout,
    /// at most `max_time`) and evaluates it. `Err` carries the database's message or why the
    /// result cannot be a metric.
    pub fn run(&self, db: &mut dyn Db, max_time: std::time::Duration) -> Result<Family, String> {
        let timeout = max_time.min(std::time::Duration::from_secs(self.timeout_seconds.into()));
        let table = run_read_only(db, &self.sql, timeout).map_err(|e| e.0)?;
        self.evaluate(&table)
    }
}

/// Runs `sql` as exactly one statement in a fresh read-only transaction with `timeout`, on a
/// connection that may be inside another transaction (ended first), and ends it again.
pub fn run_read_only(
    db: &mut dyn Db,
    sql: &str,
    timeout: std::time::Duration,
) -> Result<Table, DbError> {
    db.end()?;
    db.begin_read_only(timeout)?;
    let r = db.query_one(sql, MAX_SERIES);
    // A failed statement leaves PostgreSQL's transaction aborted: end it either way.
    let ended = db.end();
    let table = r?;
    ended?;
    // The caller's transaction (if any) continues as a read-only one.
    db.begin_read_only(timeout)?;
    Ok(table)
}

/// Parses the comma-separated label-name list of the form and the database column.
pub fn parse_label_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

fn check_label_names(names: &[String]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for l in names {
        if !is_valid_label_name(l) {
            return Err(format!(
                "{l:?} is not a valid label name (letters, digits, '_', not starting with a \
                 digit or \"__\")"
            ));
        }
        if !seen.insert(l) {
            return Err(format!("the label name {l:?} appears twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Cell;

    #[test]
    fn names_are_checked() {
        let ok = Definition::new("otrs_site_changes", "Changes.", "SELECT 1");
        assert_eq!(ok.check(), Ok(()));
        for bad in [
            "",
            "1abc",
            "a-b",
            "a:b",
            "<script>",
            "otrs_tickets_by_service",
            "otrs_exporter_x",
            "process_x",
            "site_total",
        ] {
            let d = Definition {
                name: bad.into(),
                ..ok.clone()
            };
            assert!(d.check().is_err(), "{bad} accepted");
        }
        let d = Definition {
            label_names: vec!["<script>".into()],
            ..ok.clone()
        };
        assert!(d.check().unwrap_err().contains("not a valid label name"));
    }

    #[test]
    fn labels_from_columns_or_override() {
        let d = Definition::new("x", "h", "q");
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(d.labels_for(&cols(&["queue", "n"])).unwrap(), ["queue"]);
        let e = d.labels_for(&cols(&["COUNT(*)", "n"])).unwrap_err();
        assert!(e.contains("alias"), "{e}");
        let d2 = Definition {
            label_names: vec!["q".into()],
            ..d.clone()
        };
        assert_eq!(d2.labels_for(&cols(&["COUNT(*)", "n"])).unwrap(), ["q"]);
        assert!(d2.labels_for(&cols(&["n"])).is_err());
        let t = Table {
            columns: cols(&["queue", "n"]),
            rows: vec![
                vec![Cell::Text("Raw".into()), Cell::Int(3)],
                vec![Cell::Text("Junk".into()), Cell::Null],
            ],
        };
        let f = d.evaluate(&t).unwrap();
        assert_eq!(f.series.len(), 1);
        let dup = Table {
            rows: vec![t.rows[0].clone(), t.rows[0].clone()],
            ..t.clone()
        };
        assert!(d.evaluate(&dup).unwrap_err().contains("same labels"));
        let nan = Table {
            rows: vec![vec![Cell::Text("a".into()), Cell::Text("x".into())]],
            ..t
        };
        assert!(d.evaluate(&nan).unwrap_err().contains("not a number"));
    }
}
