//! The `articles` DB collector: articles created, by the queue of their ticket, sender type
//! and communication channel — a counter kept by the exporter.
//!
//! Works on OTRS 6, Znuny 6.5/7 and OTOBO 10/11 (the OTRS 6 `article` meta-data table;
//! OTRS 5's layout is not supported).
//!
//! Why a counter and not the seed's gauge of all articles by queue and state: `article` is
//! the largest table and has no index that groups it by queue (`create_time` is not indexed
//! either), so any "all articles by X" query reads the whole table joined to `ticket` on
//! every refresh. Instead the first refresh only notes `MAX(id)` (primary key), and each later
//! refresh counts the articles with ids in (last counted, max id seen by the previous refresh]
//! — a primary-key range scan joined to `ticket` by primary key, touching only new rows. The
//! upper bound lags one refresh so that a transaction that took an id and committed late is
//! still counted. The counts live in the shared cache (they restart from zero when the
//! segment is cleared; Prometheus' `rate()` handles that). An article's queue is its ticket's
//! queue when it is counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::db::{id_names, rows, DbQuery, Refreshed};
use crate::db::{Db, DbError, DbSettings};
use crate::segment::now_unix;
use crate::snapshot::{Family, MetricKind, Series, Text, Value};

/// Tables this collector reads (`selftest` checks the SELECT grant on each).
pub const TABLES: &[&str] = &[
    "article",
    "article_sender_type",
    "communication_channel",
    "queue",
    "ticket",
];

/// Highest article id (primary key).
pub const MAX_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM article";
/// New articles in an id range, by ticket queue, sender type and channel.
pub const NEW: &str = "SELECT t.queue_id, a.article_sender_type_id, a.communication_channel_id, \
     COUNT(*) FROM article a JOIN ticket t ON t.id = a.ticket_id \
     WHERE a.id > {from} AND a.id <= {to} \
     GROUP BY t.queue_id, a.article_sender_type_id, a.communication_channel_id";

/// What the counter needs between refreshes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CountState {
    /// Rows with ids up to here are counted.
    pub counted_to: i64,
    /// The highest id seen by the previous refresh (counted by the next one).
    pub seen_max: i64,
    /// When counting started (Unix seconds; OpenMetrics `_created`).
    pub created: f64,
    /// Counts by label values (joined with `\u{1f}`).
    pub counts: BTreeMap<String, u64>,
}

impl CountState {
    /// Starts (or restarts, if ids went backwards) counting at `max`.
    pub fn advance(state: Option<serde_json::Value>, max: i64) -> (CountState, Option<(i64, i64)>) {
        let prev: Option<CountState> = state.and_then(|v| serde_json::from_value(v).ok());
        match prev {
            Some(s) if max >= s.seen_max && s.seen_max >= s.counted_to => {
                let range = (s.seen_max > s.counted_to).then_some((s.counted_to, s.seen_max));
                (s, range)
            }
            _ => (
                CountState {
                    counted_to: max,
                    seen_max: max,
                    created: now_unix(),
                    counts: BTreeMap::new(),
                },
                None,
            ),
        }
    }

    /// Adds `n` to the series with label values `values`.
    pub fn add(&mut self, values: &[&str], n: u64) {
        *self.counts.entry(values.join("\u{1f}")).or_default() += n;
    }

    /// The counter family with label names `names`.
    pub fn family(&self, name: &str, help: &str, names: &[&str]) -> Family {
        let mut f = Family::new(name, help, MetricKind::Counter);
        for (k, n) in &self.counts {
            let labels = names
                .iter()
                .zip(k.split('\u{1f}'))
                .map(|(a, b)| (Text::from(*a), Text::from(b)))
                .collect();
            f.series.push(Series {
                labels,
                value: Value::Scalar(*n as f64),
                created: Some(self.created),
            });
        }
        f
    }
}

/// The `articles` query.
pub struct Articles;

impl DbQuery for Articles {
    fn name(&self) -> &'static str {
        "articles"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        state: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        let max = db
            .query(MAX_ID)?
            .first()
            .map(|r| rows::i(r, 0))
            .unwrap_or(0);
        let (mut st, range) = CountState::advance(state, max);
        if let Some((from, to)) = range {
            let queues = id_names(db, "SELECT id, name FROM queue")?;
            let senders = id_names(db, "SELECT id, name FROM article_sender_type")?;
            let channels = id_names(db, "SELECT id, name FROM communication_channel")?;
            let name = |m: &std::collections::HashMap<i64, String>, id: i64| {
                m.get(&id).cloned().unwrap_or_else(|| id.to_string())
            };
            let sql = NEW
                .replace("{from}", &from.to_string())
                .replace("{to}", &to.to_string());
            for r in db.query(&sql)? {
                st.add(
                    &[
                        &name(&queues, rows::i(&r, 0)),
                        &name(&senders, rows::i(&r, 1)),
                        &name(&channels, rows::i(&r, 2)),
                    ],
                    rows::i(&r, 3).max(0) as u64,
                );
            }
            st.counted_to = to;
        }
        st.seen_max = max;
        let fam = st.family(
            "otrs_articles_created",
            "Articles created since the exporter started counting, by the queue of their ticket, \
             sender type and channel (kept by the exporter from article ids; lags one refresh).",
            &["queue", "sender_type", "channel"],
        );
        Ok(Refreshed {
            families: vec![fam],
            state: serde_json::to_value(&st).ok(),
        })
    }
}
