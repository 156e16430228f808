//! Metric family records: name, help, type and buckets, registered once per segment.
//!
//! Records are immutable once published in the family directory, so every process can decode
//! them once and cache them for the lifetime of its mapping.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::layout::*;
use super::{Locked, Segment, SegmentError};
use crate::snapshot::{is_valid_metric_name, MetricKind};

/// How series of a gauge family from several workers combine when the `worker` label is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeAgg {
    /// Add them up (in-flight requests, open connections).
    Sum,
    /// Keep the largest (timestamps such as "last seen").
    Max,
}

/// The definition of a metric family stored in the segment.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDef {
    /// Family name without type suffix (`_total` is added by the writers for counters).
    pub name: String,
    /// Help text.
    pub help: String,
    /// Counter, gauge or histogram (info families are not stored in the segment).
    pub kind: MetricKind,
    /// Finite histogram bucket bounds, ascending; empty for other kinds.
    pub buckets: Vec<f64>,
    /// Whether series carry a `worker` label (the process that wrote them).
    pub per_worker: bool,
    /// Aggregation of gauges over workers when the `worker` label is switched off.
    pub gauge_agg: GaugeAgg,
    /// Internal state kept in the segment (never rendered).
    pub hidden: bool,
}

impl FamilyDef {
    fn new(name: &str, help: &str, kind: MetricKind) -> Self {
        FamilyDef {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            buckets: Vec::new(),
            per_worker: true,
            gauge_agg: GaugeAgg::Sum,
            hidden: false,
        }
    }

    /// A per-worker counter.
    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricKind::Counter)
    }

    /// A per-worker gauge.
    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, MetricKind::Gauge)
    }

    /// A per-worker histogram with the given finite bucket bounds.
    pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Self {
        let mut def = Self::new(name, help, MetricKind::Histogram);
        def.buckets = buckets.to_vec();
        def
    }

    /// Series of this family belong to no worker (no `worker` label).
    pub fn shared(mut self) -> Self {
        self.per_worker = false;
        self
    }

    /// Internal state: a shared gauge family whose cells hold raw `u64` words (see
    /// [`crate::segment::Handle::raw`]) and that scrapes never show.
    pub fn internal(name: &str, help: &str) -> Self {
        let mut def = Self::new(name, help, MetricKind::Gauge);
        def.per_worker = false;
        def.hidden = true;
        def
    }

    /// Gauges of this family combine by maximum over workers.
    pub fn agg_max(mut self) -> Self {
        self.gauge_agg = GaugeAgg::Max;
        self
    }

    /// Number of value cells a series of this family needs: counters have an f64 cell for
    /// fractional amounts and an integer cell that `inc()` bumps with one `fetch_add`;
    /// histograms have the sum and one count per bucket plus `+Inf`.
    pub(crate) fn cells(&self) -> u64 {
        match self.kind {
            MetricKind::Histogram => self.buckets.len() as u64 + 2,
            MetricKind::Counter => 2,
            _ => 1,
        }
    }

    fn validate(&self) -> Result<(), SegmentError> {
        let bad = |why: &str| {
            Err(SegmentError::Invalid(format!(
                "family {}: {why}",
                self.name
            )))
        };
        if !is_valid_metric_name(&self.name) || self.name.len() > 200 {
            return bad("invalid metric name");
        }
        if self.help.len() > 4000 {
            return bad("help text longer than 4000 bytes");
        }
        match self.kind {
            MetricKind::Info => return bad("info families are not stored in the segment"),
            MetricKind::Histogram => {
                if self.buckets.is_empty() || self.buckets.len() > MAX_BUCKETS {
                    return bad("histograms need 1 to 46 buckets");
                }
                if !self.buckets.windows(2).all(|w| w[0] < w[1])
                    || self.buckets.iter().any(|b| !b.is_finite())
                {
                    return bad("bucket bounds must be finite and strictly ascending");
                }
            }
            _ if !self.buckets.is_empty() => return bad("only histograms have buckets"),
            _ => {}
        }
        Ok(())
    }

    fn same_shape(&self, other: &FamilyDef) -> bool {
        self.kind == other.kind
            && self.buckets == other.buckets
            && self.per_worker == other.per_worker
            && self.hidden == other.hidden
    }
}

/// A family as stored: its directory index and definition.
#[derive(Debug)]
pub(crate) struct FamilyRec {
    pub index: u32,
    pub def: FamilyDef,
}

fn kind_code(k: MetricKind) -> u64 {
    match k {
        MetricKind::Counter => 1,
        MetricKind::Gauge => 2,
        MetricKind::Histogram => 3,
        MetricKind::Info => 4,
    }
}

fn kind_from(code: u64) -> Option<MetricKind> {
    Some(match code {
        1 => MetricKind::Counter,
        2 => MetricKind::Gauge,
        3 => MetricKind::Histogram,
        _ => return None,
    })
}

impl Segment {
    /// Decodes the family record at directory index `i`, using the per-process cache.
    pub(crate) fn family_at(&self, i: u32) -> Result<Arc<FamilyRec>, SegmentError> {
        {
            let cache = self
                .inner
                .families
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(rec) = cache.get(i as usize) {
                return Ok(rec.clone());
            }
        }
        let count = self.family_count();
        if i as u64 >= count {
            return Err(SegmentError::corrupt(format!(
                "family index {i} >= {count}"
            )));
        }
        let mut cache = self
            .inner
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while cache.len() <= i as usize {
            let idx = cache.len() as u32;
            let rec = Arc::new(self.decode_family(idx)?);
            cache.push(rec);
        }
        Ok(cache[i as usize].clone())
    }

    pub(crate) fn family_count(&self) -> u64 {
        self.map()
            .u64_unchecked(H_FAMILIES)
            .load(Ordering::Acquire)
            .min(FAMILY_CAPACITY)
    }

    fn decode_family(&self, idx: u32) -> Result<FamilyRec, SegmentError> {
        let m = self.map();
        let off = m
            .u64_unchecked(FAMILY_DIR + 8 * idx as u64)
            .load(Ordering::Acquire);
        let meta = m.u64(off + F_META)?.load(Ordering::Relaxed);
        let kind = kind_from(meta & 0xff)
            .ok_or_else(|| SegmentError::corrupt(format!("family {idx} has an unknown kind")))?;
        let agg = if (meta >> 8) & 0xff == 1 {
            GaugeAgg::Max
        } else {
            GaugeAgg::Sum
        };
        let flags = ((meta >> 16) & 0xff) as u8;
        let nb = ((meta >> 24) & 0xff) as usize;
        let name_len = ((meta >> 32) & 0xffff) as usize;
        let help_len = ((meta >> 48) & 0xffff) as usize;
        if nb > MAX_BUCKETS || name_len > 200 || help_len > 4000 {
            return Err(SegmentError::corrupt(format!(
                "family {idx} has implausible sizes"
            )));
        }
        let mut buckets = Vec::with_capacity(nb);
        for b in 0..nb as u64 {
            buckets.push(f64::from_bits(
                m.u64(off + F_BOUNDS + 8 * b)?.load(Ordering::Relaxed),
            ));
        }
        let name_off = off + F_BOUNDS + 8 * nb as u64;
        let mut buf = Vec::new();
        m.read_bytes(name_off, name_len, &mut buf)?;
        let name = String::from_utf8(buf.clone())
            .map_err(|_| SegmentError::corrupt(format!("family {idx} name is not UTF-8")))?;
        m.read_bytes(name_off + align8(name_len as u64), help_len, &mut buf)?;
        let help = String::from_utf8_lossy(&buf).into_owned();
        let def = FamilyDef {
            name,
            help,
            kind,
            buckets,
            per_worker: flags & FLAG_PER_WORKER != 0,
            gauge_agg: agg,
            hidden: flags & FLAG_HIDDEN != 0,
        };
        def.validate()
            .map_err(|e| SegmentError::corrupt(format!("family {idx}: {e}")))?;
        Ok(FamilyRec { index: idx, def })
    }

    /// Finds `name` among the published families without locking.
    fn find_family(&self, name: &str) -> Result<Option<Arc<FamilyRec>>, SegmentError> {
        for i in 0..self.family_count() as u32 {
            let rec = self.family_at(i)?;
            if rec.def.name == name {
                return Ok(Some(rec));
            }
        }
        Ok(None)
    }

    /// Returns the stored family for `def`, registering it if it is new.
    pub(crate) fn family(&self, def: &FamilyDef) -> Result<Arc<FamilyRec>, SegmentError> {
        def.validate()?;
        if let Some(rec) = self.find_family(&def.name)? {
            return check_shape(rec, def);
        }
        let locked = self.lock()?;
        if let Some(rec) = self.find_family(&def.name)? {
            return check_shape(rec, def);
        }
        locked.register_family(def)?;
        self.find_family(&def.name)?
            .ok_or_else(|| SegmentError::corrupt("family vanished after registration"))
    }
}

fn check_shape(rec: Arc<FamilyRec>, def: &FamilyDef) -> Result<Arc<FamilyRec>, SegmentError> {
    if rec.def.same_shape(def) {
        Ok(rec)
    } else {
        Err(SegmentError::FamilyConflict(def.name.clone()))
    }
}

impl Locked<'_> {
    fn register_family(&self, def: &FamilyDef) -> Result<(), SegmentError> {
        let m = self.seg.map();
        let count = self.seg.family_count();
        if count >= FAMILY_CAPACITY {
            return Err(SegmentError::Full(format!(
                "the family directory holds at most {FAMILY_CAPACITY} families"
            )));
        }
        let nb = def.buckets.len() as u64;
        let name = def.name.as_bytes();
        let help = def.help.as_bytes();
        let size = F_BOUNDS + 8 * nb + align8(name.len() as u64) + align8(help.len() as u64);
        let off = self.alloc(size)?;
        let agg = u64::from(def.gauge_agg == GaugeAgg::Max);
        let flags = (if def.per_worker { FLAG_PER_WORKER } else { 0 }
            | if def.hidden { FLAG_HIDDEN } else { 0 }) as u64;
        let meta = kind_code(def.kind)
            | agg << 8
            | flags << 16
            | nb << 24
            | (name.len() as u64) << 32
            | (help.len() as u64) << 48;
        m.u64(off + F_META)?.store(meta, Ordering::Relaxed);
        for (i, b) in def.buckets.iter().enumerate() {
            m.u64(off + F_BOUNDS + 8 * i as u64)?
                .store(b.to_bits(), Ordering::Relaxed);
        }
        let name_off = off + F_BOUNDS + 8 * nb;
        m.write_bytes(name_off, name)?;
        m.write_bytes(name_off + align8(name.len() as u64), help)?;
        // Publish: directory slot first, then the count (the commit point).
        m.u64_unchecked(FAMILY_DIR + 8 * count)
            .store(off, Ordering::Release);
        m.u64_unchecked(H_FAMILIES)
            .store(count + 1, Ordering::Release);
        Ok(())
    }
}
