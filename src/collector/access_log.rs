//! The `access_log` collector: advances the followed nginx access log (see
//! [`crate::ingest::follow`]) before the segment is read, so each scrape includes every line
//! written up to it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::config::IngestConfig;
use crate::ingest::follow::Follower;
use crate::snapshot::{Family, MetricKind};

/// Reads new lines of `ingest.access_log` on every scrape.
pub struct AccessLogCollector {
    source: Arc<SegmentSource>,
    cfg: IngestConfig,
    path: PathBuf,
    follower: Mutex<Option<Follower>>,
}

impl AccessLogCollector {
    /// A collector following `cfg.access_log`.
    pub fn new(source: Arc<SegmentSource>, cfg: &IngestConfig) -> AccessLogCollector {
        AccessLogCollector {
            source,
            path: PathBuf::from(&cfg.access_log),
            cfg: cfg.clone(),
            follower: Mutex::new(None),
        }
    }
}

impl Collector for AccessLogCollector {
    fn name(&self) -> &'static str {
        "access_log"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let mut guard = self.follower.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let seg = self.source.get().map_err(CollectError::new)?;
            *guard = Some(
                Follower::new(&seg, &self.cfg, &self.path, "nginx").map_err(CollectError::new)?,
            );
        }
        let follower = guard.as_mut().expect("set above");
        // Leave most of the scrape's time to the other collectors.
        let budget = ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .mul_f64(0.5)
            .min(Duration::from_secs(3));
        let advance = follower
            .advance(budget)
            .map_err(|e| CollectError::new(format!("{}: {e}", self.path.display())))?;
        let (_, offset) = follower.cursor();
        let path = self.path.to_string_lossy();
        let mut off = Family::new(
            "otrs_exporter_access_log_offset_bytes",
            "Position up to which the followed access log has been read.",
            MetricKind::Gauge,
        )
        .with_unit("bytes");
        off.push(&[("path", &path)], offset as f64);
        let mut skipped = Family::new(
            "otrs_exporter_access_log_busy",
            "1 if another exporter process was reading the access log during this scrape.",
            MetricKind::Gauge,
        );
        skipped.push(&[("path", &path)], f64::from(u8::from(advance.skipped)));
        Ok(vec![off, skipped])
    }
}
