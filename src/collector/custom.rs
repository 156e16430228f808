//! The `custom` collector: the admins' SQL metrics of the current deployment
//! ([`crate::custom`]).
//!
//! Like the built-in DB collectors, each metric's result is cached in the shared segment
//! (key `custom:metric:<name>`, with the definition's revision) for the definition's TTL and
//! refreshed by one process at a time (refresh lease), inside a read-only transaction with the
//! definition's statement timeout. A failing metric never fails the scrape: it is reported as
//! `otrs_custom_metric_success{metric} 0` and its error is shown on the admin page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::custom::deploy::{self, Deployment};
use crate::custom::Definition;
use crate::db::{Db, DbError, DbHandle};
use crate::segment::{now_unix, CacheSlot, Segment};
use crate::snapshot::{Family, MetricKind};

/// Seconds between checks whether the database has a newer deploy (another node deployed, or
/// the segment was cleared).
const RECHECK_SECONDS: f64 = 30.0;
/// Longest time a failed refresh is served before it is retried.
const FAILURE_BACKOFF: f64 = 15.0;

/// The cached outcome of one metric's last refresh, as stored (JSON) in the segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Revision of the definition that produced it.
    pub revision: i64,
    /// Whether the last refresh succeeded.
    pub ok: bool,
    /// Why it failed (the database's message, or why the rows are not a metric).
    pub error: Option<String>,
    /// Unix time of the refresh.
    pub data_at: f64,
    /// Seconds the query took.
    pub query_seconds: f64,
    /// The family (when it succeeded).
    pub family: Option<Family>,
}

/// Segment cache key of a metric's result.
pub fn slot_key(name: &str) -> String {
    format!("custom:metric:{name}")
}

/// The last cached outcome of metric `name`, for the admin page.
pub fn last_record(seg: &Segment, name: &str) -> Option<MetricRecord> {
    let c = seg.cache_slot(&slot_key(name)).ok()?.get().ok()??;
    serde_json::from_slice(&c.bytes).ok()
}

/// The `custom` collector.
pub struct CustomCollector {
    db: Arc<DbHandle>,
    source: Arc<SegmentSource>,
}

impl CustomCollector {
    /// A collector querying `db`, caching in the segment of `source`.
    pub fn new(db: Arc<DbHandle>, source: Arc<SegmentSource>) -> CustomCollector {
        CustomCollector { db, source }
    }

    /// The deployment to serve: the one published in the segment, checked against the
    /// database every [`RECHECK_SECONDS`] by one process.
    fn deployment(&self, seg: &Segment, ctx: &Context) -> Result<Deployment, CollectError> {
        let published = Deployment::published(seg).map_err(CollectError::new)?;
        if let Some((d, age)) = &published {
            if *age < RECHECK_SECONDS {
                return Ok(d.clone());
            }
        }
        let slot = seg.cache_slot(deploy::SLOT).map_err(CollectError::new)?;
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        if !slot.try_lease(left + Duration::from_secs(2)) {
            return Ok(published.map(|p| p.0).unwrap_or_default());
        }
        let known = published.as_ref().map(|p| p.0.id);
        let r = self.db.run(ctx.deadline, |db| {
            if !deploy_table_exists(db)? {
                return Ok(Some(Deployment::default()));
            }
            let id = deploy::latest_id_read_only(db)?;
            if Some(id) == known {
                return Ok(None);
            }
            deploy::latest_read_only(db).map(Some)
        });
        let out = match r {
            Ok(fresh) => {
                let d = fresh.unwrap_or_else(|| published.map(|p| p.0).unwrap_or_default());
                if let Err(e) = d.publish(seg) {
                    log::warn!("custom: cannot publish the deployment: {e}");
                }
                Ok(d)
            }
            Err(e) => match published {
                Some((d, _)) => {
                    log::warn!("custom: cannot check for a newer deploy: {e}");
                    Ok(d)
                }
                None => Err(CollectError::new(format!(
                    "custom: cannot load the deployed custom metrics: {e}"
                ))),
            },
        };
        slot.release();
        out
    }
}

fn deploy_table_exists(db: &mut dyn Db) -> Result<bool, DbError> {
    let schema = match db.driver() {
        crate::db::Driver::Postgres => "current_schema()",
        crate::db::Driver::Mysql => "DATABASE()",
    };
    let rows = db.query(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {schema} \
         AND table_name = 'otrs_exporter_custom_deploy'"
    ))?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.int())
        .unwrap_or(0)
        > 0)
}

/// One metric in this scrape.
struct Item<'a> {
    def: &'a Definition,
    slot: CacheSlot,
    record: Option<MetricRecord>,
    /// This process holds the refresh lease.
    refresh: bool,
}

impl Collector for CustomCollector {
    fn name(&self) -> &'static str {
        "custom"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        self.db.settings().map_err(CollectError::new)?;
        let seg = self.source.get().map_err(CollectError::new)?;
        let dep = self.deployment(&seg, ctx)?;
        let left = ctx.deadline.saturating_duration_since(Instant::now());
        let mut items = Vec::new();
        for def in dep.metrics.iter().filter(|d| d.enabled) {
            let slot = seg
                .cache_slot(&slot_key(&def.name))
                .map_err(CollectError::new)?;
            let cached = slot.get().ok().flatten();
            let record = cached.as_ref().and_then(|c| {
                serde_json::from_slice::<MetricRecord>(&c.bytes)
                    .ok()
                    .filter(|r| r.revision == def.revision)
            });
            let fresh = match (&record, &cached) {
                (Some(r), Some(c)) => {
                    let ttl = f64::from(def.ttl_seconds);
                    c.age() < if r.ok { ttl } else { ttl.min(FAILURE_BACKOFF) }
                }
                _ => false,
            };
            let refresh = !fresh && slot.try_lease(left + Duration::from_secs(2));
            items.push(Item {
                def,
                slot,
                record,
                refresh,
            });
        }
        if items.iter().any(|i| i.refresh) {
            self.refresh(ctx, &mut items);
        }
        Ok(families(&dep, &items))
    }
}

impl CustomCollector {
    /// Runs the queries of the items this process leased, stores and releases them.
    fn refresh(&self, ctx: &Context, items: &mut [Item]) {
        let defs: Vec<Definition> = items
            .iter()
            .filter(|i| i.refresh)
            .map(|i| i.def.clone())
            .collect();
        let results = self.db.run(ctx.deadline, |db| {
            Ok(defs
                .iter()
                .map(|d| {
                    let t = Instant::now();
                    let left = ctx
                        .deadline
                        .saturating_duration_since(t)
                        .saturating_sub(Duration::from_millis(20));
                    let r = if left < Duration::from_millis(5) {
                        Err("no time left in this scrape".to_string())
                    } else {
                        d.run(db, left)
                    };
                    (r, t.elapsed().as_secs_f64())
                })
                .collect::<Vec<_>>())
        });
        let mut results = match results {
            Ok(v) => v.into_iter(),
            Err(e) => defs
                .iter()
                .map(|_| (Err(e.0.clone()), 0.0))
                .collect::<Vec<_>>()
                .into_iter(),
        };
        for item in items.iter_mut().filter(|i| i.refresh) {
            let (r, secs) = results.next().unwrap_or((Err("not run".into()), 0.0));
            let record = match r {
                Ok(f) => MetricRecord {
                    revision: item.def.revision,
                    ok: true,
                    error: None,
                    data_at: now_unix(),
                    query_seconds: secs,
                    family: Some(f),
                },
                Err(e) => {
                    log::warn!("custom metric {}: {e}", item.def.name);
                    MetricRecord {
                        revision: item.def.revision,
                        ok: false,
                        error: Some(e),
                        data_at: now_unix(),
                        query_seconds: secs,
                        family: None,
                    }
                }
            };
            match serde_json::to_vec(&record) {
                Ok(bytes) => {
                    if let Err(e) = item.slot.put(&bytes) {
                        log::warn!("custom metric {}: cannot cache: {e}", item.def.name);
                    }
                }
                Err(e) => log::warn!("custom metric {}: {e}", item.def.name),
            }
            item.slot.release();
            item.record = Some(record);
        }
    }
}

/// The metrics that succeeded, plus success, age and duration per metric.
fn families(dep: &Deployment, items: &[Item]) -> Vec<Family> {
    let mut ok = Family::new(
        "otrs_custom_metric_success",
        "Whether the last refresh of a deployed custom SQL metric succeeded (1) or failed (0; \
         the admin page shows why).",
        MetricKind::Gauge,
    );
    let mut age = Family::new(
        "otrs_custom_metric_cache_age_seconds",
        "Age of the custom metric's result served (cached for its TTL, shared by all \
         exporter processes).",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    let mut dur = Family::new(
        "otrs_custom_metric_query_duration_seconds",
        "Time the last refresh of a custom metric's query took.",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    let mut deployment = Family::new(
        "otrs_custom_metric_deployment",
        "Id of the custom-metric deploy served (0 = none); the number of its metrics is the \
         value of otrs_custom_metric_deployed.",
        MetricKind::Gauge,
    );
    deployment.push(&[], dep.id as f64);
    let mut deployed = Family::new(
        "otrs_custom_metric_deployed",
        "Custom SQL metrics in the deploy served.",
        MetricKind::Gauge,
    );
    deployed.push(&[], items.len() as f64);
    let mut out = Vec::new();
    for i in items {
        let Some(r) = &i.record else { continue };
        let name = i.def.name.as_str();
        ok.push(&[("metric", name)], if r.ok { 1.0 } else { 0.0 });
        age.push(&[("metric", name)], (now_unix() - r.data_at).max(0.0));
        dur.push(&[("metric", name)], r.query_seconds);
        if let Some(f) = r.family.as_ref().filter(|_| r.ok) {
            out.push(f.clone());
        }
    }
    out.extend([ok, age, dur, deployment, deployed]);
    out
}
