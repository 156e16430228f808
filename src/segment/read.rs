//! Reading the segment into snapshot families, without taking the semaphore.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::family::{FamilyRec, GaugeAgg};
use super::index::{decode_labels_with, EntryHead};
use super::layout::*;
use super::mem::Mapping;
use super::{Segment, SegmentError};
use crate::snapshot::{Family, Label, MetricKind, Series, Text, Value};

/// Shares one allocation between equal label names and values within a read, so series that
/// repeat a value (`method="GET"`, a worker) hold one `Arc` and later stages can compare by
/// pointer. Keyed by FNV hash; a colliding different string just gets its own allocation, and
/// only strings not seen before are checked for UTF-8.
#[derive(Default)]
struct Interner {
    map: HashMap<u64, Text, std::hash::BuildHasherDefault<PassThrough>>,
}

/// The interner's keys are already FNV hashes: use them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Interner {
    fn get(&mut self, bytes: &[u8]) -> Result<Text, SegmentError> {
        let h = super::layout::fnv1a(super::layout::FNV_SEED, bytes);
        if let Some(t) = self.map.get(&h) {
            if t.as_bytes() == bytes {
                return Ok(t.clone());
            }
        }
        let s =
            std::str::from_utf8(bytes).map_err(|_| SegmentError::corrupt("label is not UTF-8"))?;
        let t = Text::from(s);
        self.map.entry(h).or_insert_with(|| t.clone());
        Ok(t)
    }
}

/// Series of one family combined over workers: value and earliest creation time.
type Merged = HashMap<Vec<Label>, (Value, Option<f64>)>;

/// How to present the segment's series.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Add a `worker` label to per-worker families; when false, series of all workers that
    /// share the other labels are combined (counters and histograms summed, gauges by the
    /// family's aggregation).
    pub worker_label: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { worker_label: true }
    }
}

/// The unit OpenMetrics should announce for a family name, from its suffix.
pub(crate) fn unit_of(name: &str) -> Option<&'static str> {
    ["seconds", "bytes", "ratio"]
        .into_iter()
        .find(|u| name.strip_suffix(u).is_some_and(|rest| rest.ends_with('_')))
}

fn read_value(m: &Mapping, entry: u64, head: &EntryHead, fam: &FamilyRec) -> Value {
    let cell = |k: u64| {
        m.u64_unchecked(entry + E_VALUES + 8 * k)
            .load(Ordering::Relaxed)
    };
    match fam.def.kind {
        MetricKind::Histogram => {
            let nb = fam.def.buckets.len().min(head.cells as usize - 2);
            let sum = f64::from_bits(cell(0));
            let mut cumulative = 0u64;
            let mut buckets = Vec::with_capacity(nb);
            for (b, bound) in fam.def.buckets.iter().take(nb).enumerate() {
                cumulative = cumulative.wrapping_add(cell(1 + b as u64));
                buckets.push((*bound, cumulative));
            }
            let count = cumulative.wrapping_add(cell(1 + nb as u64));
            Value::Histogram {
                buckets,
                sum,
                count,
            }
        }
        MetricKind::Counter if head.cells >= 2 => {
            Value::Scalar(f64::from_bits(cell(0)) + cell(1) as f64)
        }
        _ => Value::Scalar(f64::from_bits(cell(0))),
    }
}

fn merge(into: &mut Value, other: Value, kind: MetricKind, agg: GaugeAgg) {
    match (into, other) {
        (Value::Scalar(a), Value::Scalar(b)) => {
            if kind == MetricKind::Gauge && agg == GaugeAgg::Max {
                *a = a.max(b);
            } else {
                *a += b;
            }
        }
        (
            Value::Histogram {
                buckets,
                sum,
                count,
            },
            Value::Histogram {
                buckets: ob,
                sum: os,
                count: oc,
            },
        ) => {
            for (b, o) in buckets.iter_mut().zip(ob) {
                b.1 += o.1;
            }
            *sum += os;
            *count += oc;
        }
        _ => {}
    }
}

impl Segment {
    /// Reads every series into families (one per registered family that has series).
    pub fn read(&self, opts: &ReadOptions) -> Result<Vec<Family>, SegmentError> {
        self.with_seq(|| self.read_once(opts))
    }

    fn read_once(&self, opts: &ReadOptions) -> Result<Vec<Family>, SegmentError> {
        let m = self.map();
        let nfam = self.family_count() as u32;
        let fams = (0..nfam)
            .map(|i| self.family_at(i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Family> = fams
            .iter()
            .map(|f| {
                let mut fam = Family::new(&f.def.name, &f.def.help, f.def.kind);
                fam.unit = unit_of(&f.def.name).map(str::to_owned);
                fam
            })
            .collect();
        let mut merged: Vec<Merged> =
            vec![HashMap::new(); if opts.worker_label { 0 } else { fams.len() }];
        let mut worker_names: Vec<Option<Text>> = vec![None; self.worker_slots() as usize];
        let mut interner = Interner::default();
        let worker_key: Text = Text::from("worker");
        let mut bytes = Vec::new();
        self.for_each_entry(|_, entry, head| {
            let Some(fam) = fams.get(head.family as usize) else {
                return Err(SegmentError::corrupt(format!(
                    "entry {entry} names family {}",
                    head.family
                )));
            };
            if fam.def.hidden {
                return Ok(());
            }
            m.read_bytes(head.labels_off(entry), head.labels_len as usize, &mut bytes)?;
            let mut labels = decode_labels_with(&bytes, |b, _| interner.get(b))?;
            let value = read_value(m, entry, &head, fam);
            let created = match fam.def.kind {
                MetricKind::Gauge => None,
                _ => Some(f64::from_bits(
                    m.u64_unchecked(entry + E_CREATED).load(Ordering::Relaxed),
                )),
            };
            if opts.worker_label {
                if fam.def.per_worker && head.worker != WORKER_NONE {
                    let name = match worker_names.get_mut(head.worker as usize) {
                        Some(Some(t)) => t.clone(),
                        Some(slot) => slot
                            .insert(Text::from(self.worker_label(head.worker)))
                            .clone(),
                        None => Text::from(self.worker_label(head.worker)),
                    };
                    let pos = labels.partition_point(|(k, _)| &**k < "worker");
                    labels.insert(pos, (worker_key.clone(), name));
                }
                out[head.family as usize].series.push(Series {
                    labels,
                    value,
                    created,
                });
            } else {
                let slot = merged[head.family as usize].entry(labels);
                use std::collections::hash_map::Entry;
                match slot {
                    Entry::Vacant(v) => {
                        v.insert((value, created));
                    }
                    Entry::Occupied(mut o) => {
                        let (v, c) = o.get_mut();
                        merge(v, value, fam.def.kind, fam.def.gauge_agg);
                        *c = match (*c, created) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
            Ok(())
        })?;
        if !opts.worker_label {
            for (i, map) in merged.into_iter().enumerate() {
                out[i].series = map
                    .into_iter()
                    .map(|(labels, (value, created))| Series {
                        labels,
                        value,
                        created,
                    })
                    .collect();
            }
        }
        out.retain(|f| !f.series.is_empty());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn units() {
        assert_eq!(super::unit_of("x_duration_seconds"), Some("seconds"));
        assert_eq!(super::unit_of("x_bytes"), Some("bytes"));
        assert_eq!(super::unit_of("xbytes"), None);
        assert_eq!(super::unit_of("x_total"), None);
    }
}
