//! What all DB collectors share: the cached, single-flight refresh and the `db` collector
//! (`otrs_db_up`).
//!
//! A DB collector's result is a [`Record`] (its families, plus the state its counters need)
//! kept in the shared segment under `db:<collector>`. On a scrape:
//!
//! 1. a record younger than the collector's TTL is served as is (no query);
//! 2. otherwise the process that wins the refresh lease ([`CacheSlot::try_lease`]) queries
//!    (statement timeout = what is left of the scrape), stores the new record and releases
//!    the lease;
//! 3. every other process meanwhile serves the previous record (with its age), or, if
//!    there is none yet, waits for the first one until the deadline.
//!
//! So however many FastCGI workers and CGI processes scrape, the database sees one refresh
//! per TTL. A failed refresh is stored too (with the previous state, so counters survive)
//! and is retried after `min(TTL, 15 s)`; until then every process reports the same error
//! (collector failed) without touching the database.
//!
//! [`CacheSlot::try_lease`]: crate::segment::CacheSlot::try_lease

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::db::{Db, DbError, DbHandle, DbSettings};
use crate::segment::now_unix;
use crate::snapshot::{Family, MetricKind};

/// Longest time a failed refresh is served before it is retried.
const FAILURE_BACKOFF: f64 = 15.0;

/// What one refresh produced.
#[derive(Debug)]
pub struct Refreshed {
    /// The metric families.
    pub families: Vec<Family>,
    /// State the next refresh gets back (counters kept by the exporter), if any.
    pub state: Option<serde_json::Value>,
}

/// The queries of one DB collector.
pub trait DbQuery: Send + Sync + 'static {
    /// Collector name (also the cache key `db:<name>`).
    fn name(&self) -> &'static str;
    /// Runs the queries in the open read-only transaction. `state` is what the previous
    /// successful refresh returned.
    fn refresh(
        &self,
        db: &mut dyn Db,
        settings: &DbSettings,
        state: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError>;
}

/// A cached collector result, as stored (JSON) in the segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Whether the last refresh succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix time of the last successful refresh (0 = never).
    pub data_at: f64,
    /// Seconds the last successful refresh took.
    pub query_seconds: f64,
    /// Families of the last successful refresh.
    pub families: Vec<Family>,
    /// State of the last successful refresh.
    pub state: Option<serde_json::Value>,
}

/// A record and how old its blob is.
struct Found {
    record: Record,
    stored_age: f64,
}

/// A DB collector: a [`DbQuery`] behind the shared cache.
pub struct DbCollector<Q: DbQuery> {
    query: Q,
    db: Arc<DbHandle>,
    source: Arc<SegmentSource>,
    ttl: Duration,
}

impl<Q: DbQuery> DbCollector<Q> {
    /// A collector running `query` on `db`, caching for `ttl` in the segment of `source`.
    pub fn new(query: Q, db: Arc<DbHandle>, source: Arc<SegmentSource>, ttl: Duration) -> Self {
        DbCollector {
            query,
            db,
            source,
            ttl,
        }
    }

    /// The current record: cached, refreshed by this process, or waited for.
    pub fn record(&self, ctx: &Context) -> Result<Record, CollectError> {
        let name = self.query.name();
        let settings = self.db.settings().map_err(CollectError::new)?;
        let seg = match self.source.get() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{name}: no shared cache ({e}); querying without it");
                return self.refresh(ctx, None, settings);
            }
        };
        let slot = seg
            .cache_slot(&format!("db:{name}"))
            .map_err(CollectError::new)?;
        let read = || -> Option<Found> {
            let c = slot.get().ok()??;
            let record = serde_json::from_slice(&c.bytes).ok()?;
            Some(Found {
                record,
                stored_age: c.age(),
            })
        };
        let ttl = self.ttl.as_secs_f64();
        let fresh = |f: &Found| {
            let max = if f.record.ok {
                ttl
            } else {
                ttl.min(FAILURE_BACKOFF)
            };
            f.stored_age < max
        };
        let found = read();
        if let Some(f) = found.as_ref().filter(|f| fresh(f)) {
            return served(name, f.record.clone());
        }
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        if slot.try_lease(left + Duration::from_secs(2)) {
            // Someone may have stored a fresh record between our read and the lease.
            let found = read();
            if let Some(f) = found.as_ref().filter(|f| fresh(f)) {
                slot.release();
                return served(name, f.record.clone());
            }
            let result = self.refresh(ctx, found.map(|f| f.record), settings);
            slot.release();
            return result;
        }
        // Another process is refreshing.
        if let Some(f) = found {
            return served(name, f.record);
        }
        loop {
            if Instant::now() + Duration::from_millis(30) >= ctx.deadline {
                return Err(CollectError::new(format!(
                    "{name}: another exporter process is querying the database and has no \
                     result yet"
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
            if let Some(f) = read() {
                return served(name, f.record);
            }
        }
    }

    /// Queries now and stores the outcome (if there is a segment).
    fn refresh(
        &self,
        ctx: &Context,
        prev: Option<Record>,
        settings: &DbSettings,
    ) -> Result<Record, CollectError> {
        let name = self.query.name();
        let state = prev.as_ref().and_then(|r| r.state.clone());
        let t = Instant::now();
        let result = self
            .db
            .run(ctx.deadline, |db| self.query.refresh(db, settings, state));
        let record = match result {
            Ok(r) => Record {
                ok: true,
                error: None,
                data_at: now_unix(),
                query_seconds: t.elapsed().as_secs_f64(),
                families: r.families,
                state: r.state,
            },
            Err(e) => {
                log::error!("{name}: database query failed: {e}");
                let mut r = prev.unwrap_or(Record {
                    ok: false,
                    error: None,
                    data_at: 0.0,
                    query_seconds: 0.0,
                    families: Vec::new(),
                    state: None,
                });
                r.ok = false;
                r.error = Some(e.0);
                r
            }
        };
        if let Ok(seg) = self.source.get() {
            let stored = serde_json::to_vec(&record)
                .map_err(CollectError::new)
                .and_then(|bytes| {
                    seg.cache_slot(&format!("db:{name}"))
                        .and_then(|s| s.put(&bytes))
                        .map_err(CollectError::new)
                });
            if let Err(e) = stored {
                log::warn!("{name}: cannot cache the result: {e}");
            }
        }
        served(name, record)
    }
}

/// A record as served: failed → the error; else its families plus age and duration.
fn served(name: &'static str, mut r: Record) -> Result<Record, CollectError> {
    if !r.ok {
        return Err(CollectError::new(format!(
            "{name}: {}",
            r.error.as_deref().unwrap_or("database query failed")
        )));
    }
    let mut age = Family::new(
        "otrs_db_cache_age_seconds",
        "Age of the database result served, by collector (results are cached for the \
         collector's TTL and shared by all exporter processes).",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    age.push(&[("collector", name)], (now_unix() - r.data_at).max(0.0));
    let mut dur = Family::new(
        "otrs_db_query_duration_seconds",
        "Time the last database refresh of a collector took.",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    dur.push(&[("collector", name)], r.query_seconds);
    r.families.push(age);
    r.families.push(dur);
    Ok(r)
}

impl<Q: DbQuery> Collector for DbCollector<Q> {
    fn name(&self) -> &'static str {
        self.query.name()
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        self.record(ctx).map(|r| r.families)
    }
}

/// `SELECT 1`, the query behind `otrs_db_up`.
pub struct Ping;

impl DbQuery for Ping {
    fn name(&self) -> &'static str {
        "db"
    }

    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        _: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        db.query("SELECT 1")?;
        let mut info = Family::new(
            "otrs_db",
            "The OTRS database server (driver and version); value 1.",
            MetricKind::Info,
        );
        let version = db.version().to_string();
        info.push(
            &[("driver", db.driver().as_str()), ("version", &version)],
            1.0,
        );
        Ok(Refreshed {
            families: vec![info],
            state: None,
        })
    }
}

/// The `db` collector: `otrs_db_up`, from a cached `SELECT 1`. It fails only when the
/// database is not configured correctly (then the message says what to set).
pub struct DbUpCollector(pub DbCollector<Ping>);

impl Collector for DbUpCollector {
    fn name(&self) -> &'static str {
        "db"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        self.0.db.settings().map_err(CollectError::new)?;
        let mut up = Family::new(
            "otrs_db_up",
            "Whether the OTRS database answered the exporter's last check (1) or not (0); \
             checked at most every few seconds by one exporter process.",
            MetricKind::Gauge,
        );
        match self.0.record(ctx) {
            Ok(r) => {
                up.push(&[], 1.0);
                let mut fams = r.families;
                fams.push(up);
                Ok(fams)
            }
            Err(e) => {
                log::warn!("database is down: {e}");
                up.push(&[], 0.0);
                Ok(vec![up])
            }
        }
    }
}

/// Helpers for building the collectors' families from rows.
pub mod rows {
    use crate::db::Row;

    /// Column `i` of `row` as text.
    pub fn s(row: &Row, i: usize) -> String {
        row.get(i).map(|c| c.text()).unwrap_or_default()
    }

    /// Column `i` of `row` as an integer (NULL → 0).
    pub fn i(row: &Row, i: usize) -> i64 {
        row.get(i).and_then(|c| c.int()).unwrap_or(0)
    }

    /// Column `i` of `row` as an optional integer.
    pub fn oi(row: &Row, i: usize) -> Option<i64> {
        row.get(i).and_then(|c| c.int())
    }
}

/// Lookup of `id → name` from a two-column query.
pub fn id_names(
    db: &mut dyn Db,
    sql: &str,
) -> Result<std::collections::HashMap<i64, String>, DbError> {
    Ok(db
        .query(sql)?
        .iter()
        .map(|r| (rows::i(r, 0), rows::s(r, 1)))
        .collect())
}

/// The database's current Unix time.
pub fn db_now(db: &mut dyn Db) -> Result<i64, DbError> {
    let sql = format!("SELECT {}", db.driver().now_epoch());
    let rows = db.query(&sql)?;
    rows.first()
        .and_then(|r| r.first())
        .and_then(|c| c.int())
        .ok_or_else(|| DbError::new("SELECT now returned nothing"))
}
