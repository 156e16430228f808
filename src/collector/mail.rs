//! The `mail` DB collector: incoming and outgoing mail from the communication log, and the
//! outgoing mail queue.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 (`communication_log`,
//! `communication_log_object` and `mail_queue` were introduced in OTRS 6.0).
//!
//! `communication_log` is purged (successful communications after 7 days by default), so
//! counting its rows gives no counter. The exporter keeps the counters itself: like
//! [`super::articles`], it remembers the highest id counted and adds each refresh's new,
//! *finished* rows (a primary-key range scan). Rows still `Processing` hold the range back
//! until they finish, unless they started more than an hour ago (then they are counted as
//! `Processing`). On the very first refresh the rows present are counted (the table is
//! bounded by the purge). `mail_queue` is small (sent items are deleted) and read whole.

use super::articles::CountState;
use super::db::{db_now, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::snapshot::{Family, MetricKind};

/// Tables this collector reads (`selftest` checks the SELECT grant on each).
pub const TABLES: &[&str] = &[
    "mail_queue",
    "communication_log",
    "communication_log_object",
];

/// Communications in an id range by direction, transport and status.
pub const COMMS: &str = "SELECT direction, transport, status, COUNT(*) FROM communication_log \
     WHERE id > {from} AND id <= {to} GROUP BY direction, transport, status";
/// Message objects in an id range by their communication's direction, and status.
pub const MESSAGES: &str =
    "SELECT c.direction, o.status, COUNT(*) FROM communication_log_object o \
     JOIN communication_log c ON c.id = o.communication_id \
     WHERE o.object_type = 'Message' AND o.id > {from} AND o.id <= {to} \
     GROUP BY c.direction, o.status";
/// Communications in progress.
pub const PROCESSING: &str = "SELECT direction, transport, COUNT(*) FROM communication_log \
     WHERE status = 'Processing' GROUP BY direction, transport";
/// Mail queue depth and oldest item.
pub const QUEUE: &str = "SELECT COUNT(*), MIN({created}) FROM mail_queue";
/// Retried mail queue items by last SMTP code.
pub const QUEUE_CODES: &str = "SELECT last_smtp_code, COUNT(*) FROM mail_queue WHERE attempts > 0 \
     GROUP BY last_smtp_code";

/// Mail counters between refreshes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MailState {
    comms: CountState,
    messages: CountState,
}

/// The `mail` queries.
pub struct Mail;

/// The highest id in (from, max] that can be counted: below the first row still
/// `Processing` (started less than an hour ago).
fn barrier(db: &mut dyn Db, table: &str, from: i64, max: i64, now: i64) -> Result<i64, DbError> {
    let start = db.driver().epoch_of("start_time");
    let sql = format!(
        "SELECT MIN(id) FROM {table} WHERE id > {from} AND status = 'Processing' \
         AND {start} > {}",
        now - 3600
    );
    let first = db.query(&sql)?.first().and_then(|r| rows::oi(r, 0));
    Ok(match first {
        Some(p) => (p - 1).min(max),
        None => max,
    })
}

fn max_id(db: &mut dyn Db, table: &str) -> Result<i64, DbError> {
    Ok(db
        .query(&format!("SELECT COALESCE(MAX(id), 0) FROM {table}"))?
        .first()
        .map(|r| rows::i(r, 0))
        .unwrap_or(0))
}

/// Adds the rows with ids in (from, to] to a counter.
type CountRange = dyn Fn(&mut dyn Db, &mut CountState, i64, i64) -> Result<(), DbError>;

/// Advances one counter over `table`; `count` adds the rows of an id range.
fn advance(
    db: &mut dyn Db,
    table: &str,
    prev: Option<CountState>,
    now: i64,
    count: &CountRange,
) -> Result<CountState, DbError> {
    let max = max_id(db, table)?;
    let first = prev.is_none();
    let (mut st, _) = CountState::advance(
        prev.map(|p| serde_json::to_value(p).unwrap_or_default()),
        max,
    );
    if first || st.counted_to > max {
        // First refresh: count what is there.
        st.counted_to = 0;
        st.seen_max = max;
    }
    let upper = if first { max } else { st.seen_max.min(max) };
    let to = barrier(db, table, st.counted_to, upper, now)?;
    if to > st.counted_to {
        let from = st.counted_to;
        count(db, &mut st, from, to)?;
        st.counted_to = to;
    }
    st.seen_max = max;
    Ok(st)
}

impl DbQuery for Mail {
    fn name(&self) -> &'static str {
        "mail"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        state: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        let now = db_now(db)?;
        let prev: Option<MailState> = state.and_then(|v| serde_json::from_value(v).ok());
        let (pc, pm) = match prev {
            Some(p) => (Some(p.comms), Some(p.messages)),
            None => (None, None),
        };
        let comms = advance(db, "communication_log", pc, now, &|db, st, from, to| {
            let sql = COMMS
                .replace("{from}", &from.to_string())
                .replace("{to}", &to.to_string());
            for r in db.query(&sql)? {
                st.add(
                    &[&rows::s(&r, 0), &rows::s(&r, 1), &rows::s(&r, 2)],
                    rows::i(&r, 3) as u64,
                );
            }
            Ok(())
        })?;
        let messages = advance(
            db,
            "communication_log_object",
            pm,
            now,
            &|db, st, from, to| {
                let sql = MESSAGES
                    .replace("{from}", &from.to_string())
                    .replace("{to}", &to.to_string());
                for r in db.query(&sql)? {
                    st.add(&[&rows::s(&r, 0), &rows::s(&r, 1)], rows::i(&r, 2) as u64);
                }
                Ok(())
            },
        )?;
        let mut fams = vec![
            comms.family(
                "otrs_mail_communications",
                "Finished mail communications (connections) by direction, transport and status, \
                 counted by the exporter from the communication log (which OTRS purges; this \
                 counter does not drop when it does).",
                &["direction", "transport", "status"],
            ),
            messages.family(
                "otrs_mail_messages",
                "Mail messages received (direction=\"Incoming\") or sent (\"Outgoing\") by \
                 status, counted by the exporter from the communication log's Message objects.",
                &["direction", "status"],
            ),
        ];
        let mut processing = Family::new(
            "otrs_mail_communications_processing",
            "Mail communications in progress now, by direction and transport.",
            MetricKind::Gauge,
        );
        for r in db.query(PROCESSING)? {
            processing.push(
                &[
                    ("direction", &rows::s(&r, 0)),
                    ("transport", &rows::s(&r, 1)),
                ],
                rows::i(&r, 2) as f64,
            );
        }
        fams.push(processing);
        let sql = QUEUE.replace("{created}", &db.driver().epoch_of("create_time"));
        let q = db.query(&sql)?;
        let (items, oldest) = q
            .first()
            .map(|r| (rows::i(r, 0), rows::oi(r, 1)))
            .unwrap_or((0, None));
        let mut f = Family::new(
            "otrs_mail_queue_items",
            "Mails waiting in the outgoing mail queue.",
            MetricKind::Gauge,
        );
        f.push(&[], items as f64);
        fams.push(f);
        let mut f = Family::new(
            "otrs_mail_queue_oldest_age_seconds",
            "Age of the oldest mail in the outgoing mail queue (0 when empty).",
            MetricKind::Gauge,
        )
        .with_unit("seconds");
        f.push(&[], oldest.map(|o| (now - o).max(0)).unwrap_or(0) as f64);
        fams.push(f);
        let mut f = Family::new(
            "otrs_mail_queue_retrying_items",
            "Mails in the outgoing queue that failed at least once, by the last SMTP code \
             (\"none\" if there was none).",
            MetricKind::Gauge,
        );
        for r in db.query(QUEUE_CODES)? {
            let code = match rows::oi(&r, 0) {
                Some(c) => c.to_string(),
                None => "none".to_string(),
            };
            f.push(&[("last_smtp_code", &code)], rows::i(&r, 1) as f64);
        }
        fams.push(f);
        let st = MailState { comms, messages };
        Ok(Refreshed {
            families: fams,
            state: serde_json::to_value(&st).ok(),
        })
    }
}
