//! `segment dump`: everything in the segment, for people (`Display`) and tools (`serde`).

use std::fmt;

use serde::Serialize;

use super::layout::*;
use super::worker::{is_alive, read_slot, WorkerKind};
use super::{ReadOptions, Segment, SegmentError, Stats};
use crate::snapshot::Value;

/// One worker slot in use.
#[derive(Debug, Clone, Serialize)]
pub struct DumpWorker {
    /// Slot index.
    pub slot: u32,
    /// Process id.
    pub pid: u32,
    /// Process kind.
    pub kind: Option<WorkerKind>,
    /// Whether the process still runs (same PID and start time).
    pub alive: bool,
    /// When the slot was claimed (Unix seconds).
    pub claimed_unix: u64,
    /// When GC first saw the process gone (Unix seconds, 0 = not yet).
    pub dead_since_unix: u64,
}

/// One series.
#[derive(Debug, Clone, Serialize)]
pub struct DumpSeries {
    /// Family name.
    pub family: String,
    /// Label pairs, `worker` included.
    pub labels: Vec<(String, String)>,
    /// Counter or gauge value, or histogram sum.
    pub value: f64,
    /// Histogram observation count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The whole segment.
#[derive(Debug, Clone, Serialize)]
pub struct Dump {
    /// Segment file.
    pub path: String,
    /// Layout version of this build.
    pub layout_version: u32,
    /// Sizes and counts.
    pub stats: Stats,
    /// Worker slots in use.
    pub workers: Vec<DumpWorker>,
    /// Every series.
    pub series: Vec<DumpSeries>,
}

impl Segment {
    /// Collects everything for `segment dump`.
    pub fn dump(&self) -> Result<Dump, SegmentError> {
        let m = self.map();
        let workers = (FIRST_PROCESS_SLOT..self.worker_slots())
            .map(|i| read_slot(m, i))
            .filter(|s| s.state == SLOT_LIVE)
            .map(|s| DumpWorker {
                slot: s.index,
                pid: s.pid,
                kind: WorkerKind::from_code(s.kind),
                alive: is_alive(s.pid, s.start),
                claimed_unix: s.claimed,
                dead_since_unix: s.dead_since,
            })
            .collect();
        let mut families = self.read(&ReadOptions { worker_label: true })?;
        families.sort_by(|a, b| a.name.cmp(&b.name));
        let mut series = Vec::new();
        for fam in families {
            let mut rows: Vec<_> = fam
                .series
                .into_iter()
                .map(|s| {
                    let (value, count) = match s.value {
                        Value::Scalar(v) => (v, None),
                        Value::Histogram { sum, count, .. } => (sum, Some(count)),
                    };
                    DumpSeries {
                        family: fam.name.clone(),
                        labels: s
                            .labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        value,
                        count,
                    }
                })
                .collect();
            rows.sort_by(|a, b| a.labels.cmp(&b.labels));
            series.extend(rows);
        }
        Ok(Dump {
            path: self.path().display().to_string(),
            layout_version: LAYOUT_VERSION,
            stats: self.stats(),
            workers,
            series,
        })
    }
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(f, "segment {} (layout v{})", self.path, self.layout_version)?;
        writeln!(
            f,
            "  size {} of {} bytes reserved, {} used; {} families, {} series",
            s.size_bytes, s.max_bytes, s.used_bytes, s.families, s.series
        )?;
        writeln!(
            f,
            "  workers {} of {} slots; {} series folded into worker=\"exited\"; {} recoveries; {} dropped writes",
            s.workers, s.worker_slots, s.folded_total, s.recoveries, s.write_failures
        )?;
        writeln!(f, "\nworkers:")?;
        if self.workers.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for w in &self.workers {
            let kind = w
                .kind
                .map(|k| format!("{k:?}").to_lowercase())
                .unwrap_or_else(|| "?".into());
            let state = if w.alive {
                "alive".to_owned()
            } else if w.dead_since_unix > 0 {
                format!("dead since {}", w.dead_since_unix)
            } else {
                "dead".to_owned()
            };
            writeln!(
                f,
                "  slot {:>5}  pid {:>8}  {:<8}  {}",
                w.slot, w.pid, kind, state
            )?;
        }
        writeln!(f, "\nseries:")?;
        if self.series.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for row in &self.series {
            let labels: Vec<String> = row
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            match row.count {
                Some(c) => writeln!(
                    f,
                    "  {}{{{}}} count={} sum={}",
                    row.family,
                    labels.join(","),
                    c,
                    row.value
                )?,
                None => writeln!(f, "  {}{{{}}} {}", row.family, labels.join(","), row.value)?,
            }
        }
        Ok(())
    }
}
