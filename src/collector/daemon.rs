//! The `daemon` DB collector: the OTRS daemon's task queue and cron jobs.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 (`scheduler_task`,
//! `scheduler_future_task`, `scheduler_recurrent_task`). All three tables are small (tasks
//! are deleted when done; one recurrent row per cron/GenericAgent job), so they are read
//! whole.

use std::collections::BTreeMap;

use super::db::{db_now, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::snapshot::{Family, MetricKind};

/// Tables this collector reads (`selftest` checks the SELECT grant on each).
pub const TABLES: &[&str] = &[
    "scheduler_task",
    "scheduler_future_task",
    "scheduler_recurrent_task",
];

/// Tasks by type, name and queued/running, with the oldest lock time.
pub const TASKS: &str = "SELECT task_type, COALESCE(name, ''), \
     CASE WHEN lock_key = 0 THEN 'queued' ELSE 'running' END, COUNT(*), MIN({lock_time}) \
     FROM scheduler_task GROUP BY task_type, COALESCE(name, ''), \
     CASE WHEN lock_key = 0 THEN 'queued' ELSE 'running' END";
/// Future tasks by type, and how many are overdue (with the oldest due time).
pub const FUTURE: &str = "SELECT task_type, COUNT(*), \
     SUM(CASE WHEN execution_time < LOCALTIMESTAMP THEN 1 ELSE 0 END), MIN({exec}) \
     FROM scheduler_future_task GROUP BY task_type";
/// Cron and GenericAgent jobs with their last run.
pub const RECURRENT: &str = "SELECT task_type, name, {last}, last_worker_status, \
     last_worker_running_time FROM scheduler_recurrent_task";

/// The `daemon` queries.
pub struct Daemon;

impl DbQuery for Daemon {
    fn name(&self) -> &'static str {
        "daemon"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        _: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        let now = db_now(db)?;
        let d = db.driver();
        let mut tasks = Family::new(
            "otrs_scheduler_tasks",
            "Daemon tasks waiting for (state=\"queued\") or being run by (\"running\") a worker, \
             by task type and name.",
            MetricKind::Gauge,
        );
        let mut longest: BTreeMap<String, i64> = BTreeMap::new();
        for r in db.query(&TASKS.replace("{lock_time}", &d.epoch_of("lock_time")))? {
            let (tt, state) = (rows::s(&r, 0), rows::s(&r, 2));
            tasks.push(
                &[
                    ("task_type", &tt),
                    ("name", &rows::s(&r, 1)),
                    ("state", &state),
                ],
                rows::i(&r, 3) as f64,
            );
            if state == "running" {
                if let Some(t) = rows::oi(&r, 4) {
                    let e = longest.entry(tt).or_insert(0);
                    *e = (*e).max(now - t);
                }
            }
        }
        let mut long = Family::new(
            "otrs_scheduler_task_longest_running_seconds",
            "How long the longest-running daemon task of each type has been running.",
            MetricKind::Gauge,
        )
        .with_unit("seconds");
        for (tt, secs) in &longest {
            long.push(&[("task_type", tt)], (*secs).max(0) as f64);
        }
        let mut future = Family::new(
            "otrs_scheduler_future_tasks",
            "Daemon tasks scheduled for later, by task type.",
            MetricKind::Gauge,
        );
        let mut overdue = Family::new(
            "otrs_scheduler_future_tasks_overdue",
            "Scheduled daemon tasks whose execution time has passed but which the future task \
             manager has not started yet, by task type.",
            MetricKind::Gauge,
        );
        let mut overdue_age = Family::new(
            "otrs_scheduler_future_task_max_overdue_seconds",
            "How long the most overdue scheduled daemon task has been due, by task type (0 = none \
             overdue).",
            MetricKind::Gauge,
        )
        .with_unit("seconds");
        for r in db.query(&FUTURE.replace("{exec}", &d.epoch_of("execution_time")))? {
            let tt = rows::s(&r, 0);
            future.push(&[("task_type", &tt)], rows::i(&r, 1) as f64);
            let n = rows::i(&r, 2);
            overdue.push(&[("task_type", &tt)], n as f64);
            let age = if n > 0 {
                rows::oi(&r, 3).map(|t| (now - t).max(0)).unwrap_or(0)
            } else {
                0
            };
            overdue_age.push(&[("task_type", &tt)], age as f64);
        }
        let mut last = Family::new(
            "otrs_recurrent_task_last_execution_timestamp_seconds",
            "When the daemon last scheduled each cron / GenericAgent job (the cron slot), Unix \
             time.",
            MetricKind::Gauge,
        )
        .with_unit("seconds");
        let mut success = Family::new(
            "otrs_recurrent_task_last_success",
            "Whether the last run of each cron / GenericAgent job succeeded (1), failed (0) or \
             has not finished yet (-1, last_worker_status NULL).",
            MetricKind::Gauge,
        );
        let mut dur = Family::new(
            "otrs_recurrent_task_last_duration_seconds",
            "How long the last finished run of each cron / GenericAgent job took (absent until \
             one finished).",
            MetricKind::Gauge,
        )
        .with_unit("seconds");
        let sql = RECURRENT.replace("{last}", &d.epoch_of("last_execution_time"));
        for r in db.query(&sql)? {
            let labels = [("task_type", rows::s(&r, 0)), ("name", rows::s(&r, 1))];
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            last.push(&l, rows::i(&r, 2) as f64);
            success.push(&l, rows::oi(&r, 3).map(|s| s as f64).unwrap_or(-1.0));
            if let Some(t) = rows::oi(&r, 4) {
                dur.push(&l, t as f64);
            }
        }
        Ok(Refreshed {
            families: vec![
                tasks,
                long,
                future,
                overdue,
                overdue_age,
                last,
                success,
                dur,
            ],
            state: None,
        })
    }
}
