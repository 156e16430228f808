//! The `exporter` collector: build information and the state of the shared segment.

use std::sync::Arc;

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::snapshot::{Family, MetricKind};

/// Reports the exporter's own build and segment figures.
pub struct ExporterCollector {
    source: Arc<SegmentSource>,
}

impl ExporterCollector {
    /// A collector for the segment behind `source`.
    pub fn new(source: Arc<SegmentSource>) -> ExporterCollector {
        ExporterCollector { source }
    }
}

fn gauge(name: &str, help: &str, v: f64) -> Family {
    let mut f = Family::new(name, help, MetricKind::Gauge);
    f.push(&[], v);
    f
}

fn counter(name: &str, help: &str, v: f64) -> Family {
    let mut f = Family::new(name, help, MetricKind::Counter);
    f.push(&[], v);
    f
}

impl Collector for ExporterCollector {
    fn name(&self) -> &'static str {
        "exporter"
    }

    /// Build figures and the segment's header: as [`SegmentCollector`](super::segment::SegmentCollector).
    fn inline(&self, ctx: &Context) -> bool {
        self.source.in_time_for(ctx)
    }

    fn collect(&self, _ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let mut build = Family::new(
            "otrs_exporter_build",
            "Version of the otrs-exporter binary that answered.",
            MetricKind::Info,
        );
        build.push(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        let mut out = vec![build];
        let seg = self.source.get().map_err(CollectError::new)?;
        let s = seg.stats();
        out.extend([
            gauge(
                "otrs_exporter_segment_size_bytes",
                "Current size of the shared segment file.",
                s.size_bytes as f64,
            )
            .with_unit("bytes"),
            gauge(
                "otrs_exporter_segment_max_bytes",
                "Maximum size of the shared segment (segment.max_bytes when it was created).",
                s.max_bytes as f64,
            )
            .with_unit("bytes"),
            gauge(
                "otrs_exporter_segment_used_bytes",
                "Bytes of the shared segment in use.",
                s.used_bytes as f64,
            )
            .with_unit("bytes"),
            gauge(
                "otrs_exporter_segment_series",
                "Series stored in the shared segment.",
                s.series as f64,
            ),
            gauge(
                "otrs_exporter_segment_workers",
                "Worker slots of the shared segment in use (live or awaiting GC).",
                f64::from(s.workers),
            ),
            gauge(
                "otrs_exporter_segment_worker_slots",
                "Worker slots of the shared segment (segment.worker_slots when it was created).",
                f64::from(s.worker_slots),
            ),
            gauge(
                "otrs_exporter_segment_last_gc_timestamp_seconds",
                "When dead-worker GC last ran (Unix time; 0 = never).",
                s.last_gc_unix as f64,
            )
            .with_unit("seconds"),
            counter(
                "otrs_exporter_segment_folded_series",
                "Series of exited workers folded into worker=\"exited\" since the segment was created.",
                s.folded_total as f64,
            ),
            counter(
                "otrs_exporter_segment_write_failures",
                "Writes dropped because the shared segment was full.",
                s.write_failures as f64,
            ),
            counter(
                "otrs_exporter_segment_recoveries",
                "Times a process repaired a change that a killed process left half done.",
                s.recoveries as f64,
            ),
        ]);
        Ok(out)
    }
}
