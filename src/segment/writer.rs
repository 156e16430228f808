//! The write side: a process claims a worker slot once, resolves each series once to a
//! [`Handle`], and from then on updates it with single atomic operations (the hot path).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::family::{FamilyDef, FamilyRec};
use super::index::{encode_labels, key_hash};
use super::layout::*;
use super::mem::Mapping;
use super::worker::WorkerKind;
use super::{now_unix, Segment, SegmentError};
use crate::snapshot::MetricKind;

/// A resolved series: updates are lock-free atomic operations on the mapped cells.
#[derive(Clone)]
pub struct Handle {
    map: Arc<Mapping>,
    entry: u64,
    kind: MetricKind,
    bounds: Arc<[f64]>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("entry", &self.entry)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Handle {
    fn cell(&self, k: u64) -> &AtomicU64 {
        self.map.u64_unchecked(self.entry + E_VALUES + 8 * k)
    }

    /// Adds one to a counter: one atomic `fetch_add`.
    pub fn inc(&self) {
        if self.kind == MetricKind::Counter {
            self.cell(1).fetch_add(1, Ordering::Relaxed);
        } else {
            self.add(1.0);
        }
    }

    /// Adds `v` to a counter (negative values are ignored: counters never decrease) or a gauge.
    /// Whole amounts go to a counter's integer cell, fractions to its f64 cell.
    pub fn add(&self, v: f64) {
        if self.kind == MetricKind::Counter {
            if v.is_nan() || v < 0.0 {
                return;
            }
            if v.fract() == 0.0 && v < (1u64 << 53) as f64 {
                self.cell(1).fetch_add(v as u64, Ordering::Relaxed);
                return;
            }
        }
        Mapping::add_f64(self.cell(0), v);
    }

    /// Sets a gauge.
    pub fn set(&self, v: f64) {
        if self.kind == MetricKind::Gauge {
            self.cell(0).store(v.to_bits(), Ordering::Relaxed);
        }
    }

    /// Raises a gauge to `v` if it is lower (for timestamps such as "last seen").
    pub fn set_max(&self, v: f64) {
        if self.kind == MetricKind::Gauge {
            Mapping::max_f64(self.cell(0), v);
        }
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, v: f64) {
        if self.kind != MetricKind::Histogram || v.is_nan() {
            return;
        }
        let bucket = self.bounds.partition_point(|b| *b < v);
        self.cell(1 + bucket as u64).fetch_add(1, Ordering::Relaxed);
        Mapping::add_f64(self.cell(0), v);
    }

    /// The current value of a counter or gauge, or the sum of a histogram.
    pub fn get(&self) -> f64 {
        let v = f64::from_bits(self.cell(0).load(Ordering::Relaxed));
        if self.kind == MetricKind::Counter {
            v + self.cell(1).load(Ordering::Relaxed) as f64
        } else {
            v
        }
    }

    /// The raw 64-bit word of a gauge cell, for internal state (cursors, counts) that must
    /// not pass through floating point.
    pub fn raw(&self) -> &AtomicU64 {
        self.cell(0)
    }

    /// The number of observations of a histogram.
    pub fn count(&self) -> u64 {
        if self.kind != MetricKind::Histogram {
            return 0;
        }
        (1..=self.bounds.len() as u64 + 1)
            .map(|k| self.cell(k).load(Ordering::Relaxed))
            .sum()
    }
}

/// One process' write access: its worker slot and its resolved series.
pub struct Writer {
    seg: Segment,
    kind: WorkerKind,
    worker: u32,
    families: HashMap<String, Arc<FamilyRec>>,
    handles: HashMap<Vec<u8>, Handle>,
    key: Vec<u8>,
    scratch: Vec<u8>,
}

impl Writer {
    /// Claims a worker slot in `seg` for this process.
    pub fn new(seg: &Segment, kind: WorkerKind) -> Result<Writer, SegmentError> {
        let worker = seg.claim_worker(kind)?;
        Ok(Writer {
            seg: seg.clone(),
            kind,
            worker,
            families: HashMap::new(),
            handles: HashMap::new(),
            key: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// A writer for a slot claimed with [`Segment::claim_worker_as`] (tests and benchmarks).
    #[doc(hidden)]
    pub fn for_slot(seg: &Segment, kind: WorkerKind, worker: u32) -> Writer {
        Writer {
            seg: seg.clone(),
            kind,
            worker,
            families: HashMap::new(),
            handles: HashMap::new(),
            key: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The worker slot this process writes to.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The segment written to.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Reopens the segment if it was replaced (cleared or recreated); returns whether it was.
    /// Long-running writers call this now and then; handles resolved before are dropped.
    pub fn refresh(&mut self) -> Result<bool, SegmentError> {
        if !self.seg.is_stale() {
            return Ok(false);
        }
        let seg = self.seg.reopen()?;
        self.worker = seg.claim_worker(self.kind)?;
        self.seg = seg;
        self.families.clear();
        self.handles.clear();
        Ok(true)
    }

    /// Resolves (once) the series of `def` with `labels` for this worker.
    pub fn handle(
        &mut self,
        def: &FamilyDef,
        labels: &[(&str, &str)],
    ) -> Result<Handle, SegmentError> {
        let result = self.resolve(def, labels);
        if matches!(result, Err(SegmentError::Full(_))) {
            self.seg.note_write_failure();
        }
        result
    }

    fn resolve(
        &mut self,
        def: &FamilyDef,
        labels: &[(&str, &str)],
    ) -> Result<Handle, SegmentError> {
        let fam = match self.families.get(&def.name) {
            Some(f) => f.clone(),
            None => {
                let f = self.seg.family(def)?;
                self.families.insert(def.name.clone(), f.clone());
                f
            }
        };
        let worker = if fam.def.per_worker {
            self.worker
        } else {
            WORKER_NONE
        };
        let reserved = fam.def.per_worker.then_some("worker");
        encode_labels(labels, reserved, &mut self.scratch)?;
        self.key.clear();
        self.key.extend_from_slice(&fam.index.to_le_bytes());
        self.key.extend_from_slice(&self.scratch);
        if let Some(h) = self.handles.get(self.key.as_slice()) {
            return Ok(h.clone());
        }
        let hash = key_hash(fam.index, worker, &self.scratch);
        let mut tmp = Vec::new();
        let found = self.seg.with_seq(|| {
            self.seg
                .lookup(fam.index, worker, &self.scratch, hash, &mut tmp)
                .map(|r| r.map(|(_, e)| e))
        })?;
        let entry = match found {
            Some(e) => e,
            None => {
                let locked = self.seg.lock()?;
                locked.find_or_insert(&fam, worker, &self.scratch, now_unix())?
            }
        };
        let handle = Handle {
            map: self.seg.map().clone(),
            entry,
            kind: fam.def.kind,
            bounds: fam.def.buckets.clone().into(),
        };
        self.handles.insert(self.key.clone(), handle.clone());
        Ok(handle)
    }

    /// Adds one to a counter.
    pub fn inc(&mut self, def: &FamilyDef, labels: &[(&str, &str)]) -> Result<(), SegmentError> {
        self.handle(def, labels).map(|h| h.inc())
    }

    /// Adds `v` to a counter or gauge.
    pub fn add(
        &mut self,
        def: &FamilyDef,
        labels: &[(&str, &str)],
        v: f64,
    ) -> Result<(), SegmentError> {
        self.handle(def, labels).map(|h| h.add(v))
    }

    /// Sets a gauge.
    pub fn set(
        &mut self,
        def: &FamilyDef,
        labels: &[(&str, &str)],
        v: f64,
    ) -> Result<(), SegmentError> {
        self.handle(def, labels).map(|h| h.set(v))
    }

    /// Records a histogram observation.
    pub fn observe(
        &mut self,
        def: &FamilyDef,
        labels: &[(&str, &str)],
        v: f64,
    ) -> Result<(), SegmentError> {
        self.handle(def, labels).map(|h| h.observe(v))
    }
}
