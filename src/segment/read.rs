//! Reading the segment into snapshot families, without taking the semaphore.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::family::{FamilyRec, GaugeAgg};
use super::index::{decode_labels_into, EntryHead};
use super::layout::*;
use super::mem::Mapping;
use super::{worker, Segment, SegmentError};
use crate::snapshot::{Family, Label, Labels, MetricKind, Series, Text, Value};

/// Shares one allocation between equal label names and values within a read, so series that
/// repeat a value (`method="GET"`, a worker) hold one `Arc` and later stages can compare by
/// pointer. Keyed by hash; a colliding different string just gets its own allocation, and
/// only strings not seen before are checked for UTF-8.
#[derive(Default)]
struct Interner {
    map: HashMap<u64, Text, std::hash::BuildHasherDefault<PassThrough>>,
    /// The text last returned for each position in a label set: names, and often values,
    /// repeat from one series to the next, and comparing with that text skips the hashing.
    recent: Vec<Text>,
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
    fn len(&self) -> usize {
        self.map.len()
    }

    fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }

    /// [`Interner::get`] for the string at `pos` in a label set.
    fn get_at(&mut self, pos: usize, bytes: &[u8]) -> Result<Text, SegmentError> {
        if let Some(t) = self.recent.get(pos) {
            if t.as_bytes() == bytes {
                return Ok(t.clone());
            }
        }
        let t = self.get(bytes)?;
        if pos < self.recent.len() {
            self.recent[pos] = t.clone();
        } else if pos == self.recent.len() {
            self.recent.push(t.clone());
        }
        Ok(t)
    }

    fn get(&mut self, bytes: &[u8]) -> Result<Text, SegmentError> {
        use std::hash::Hasher;
        // FxHash takes a word at a time (FNV, the segment's own hash, a byte at a time).
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(bytes);
        let h = hasher.finish();
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

/// A one-off read of at least this many series is shared out over threads.
const COLD_SHARE_FROM: usize = 2048;

/// Series of one family combined over workers: value and earliest creation time.
type Merged = HashMap<Labels, (Value, Option<f64>)>;

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

fn read_value(m: &Mapping, entry: u64, cells: u64, fam: &FamilyRec) -> Value {
    let mut value = Value::Scalar(0.0);
    read_value_into(m, entry, cells, fam, &mut value);
    value
}

/// [`read_value`] into `into`, reusing the bucket vector of a histogram value it holds.
fn read_value_into(m: &Mapping, entry: u64, cells: u64, fam: &FamilyRec, into: &mut Value) {
    let cell = |k: u64| {
        m.u64_unchecked(entry + E_VALUES + 8 * k)
            .load(Ordering::Relaxed)
    };
    *into = match fam.def.kind {
        MetricKind::Histogram => {
            let nb = fam
                .def
                .buckets
                .len()
                .min((cells as usize).saturating_sub(2));
            let sum = f64::from_bits(cell(0));
            let mut cumulative = 0u64;
            let mut buckets = match into {
                Value::Histogram { buckets, .. } => std::mem::take(buckets),
                Value::Scalar(_) => Vec::with_capacity(nb),
            };
            buckets.clear();
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
        MetricKind::Counter if cells >= 2 => {
            Value::Scalar(f64::from_bits(cell(0)) + cell(1) as f64)
        }
        _ => Value::Scalar(f64::from_bits(cell(0))),
    };
}

/// Removes from `spare` the family a replay of `pf` built, if it is as that replay left it: the
/// same name, type, help and unit, and the planned label sets (the same allocations) in the
/// planned order, nothing added or merged. Only pointers are compared, no label set is touched.
fn take_as_left(spare: &mut Vec<Family>, pf: &PlannedFamily) -> Option<Family> {
    let def = &pf.rec.def;
    let i = spare.iter().position(|f| {
        f.name == def.name
            && f.kind == def.kind
            && f.help == def.help
            && f.unit.as_deref() == unit_of(&def.name)
            && f.series.len() == pf.rows.len()
            && f.series
                .iter()
                .zip(&pf.rows)
                .all(|(s, (_, _, labels))| Arc::ptr_eq(&s.labels, labels))
    })?;
    Some(spare.swap_remove(i))
}

/// A family named, described and typed as the segment's record, without series yet.
fn empty_family(rec: &FamilyRec) -> Family {
    let mut fam = Family::new(&rec.def.name, &rec.def.help, rec.def.kind);
    fam.unit = unit_of(&rec.def.name).map(str::to_owned);
    fam
}

/// The creation time of a counter's or histogram's entry (gauges have none).
fn read_created(m: &Mapping, entry: u64, fam: &FamilyRec) -> Option<f64> {
    match fam.def.kind {
        MetricKind::Gauge => None,
        _ => Some(f64::from_bits(
            m.u64_unchecked(entry + E_CREATED).load(Ordering::Relaxed),
        )),
    }
}

/// The order the last read's ranks give `rows` ((entry, rank, cells) each): position `k`
/// holds the row ranked `k`. `None` unless the ranks are a permutation of `0..rows.len()`
/// (a series came or went, or one is new and has no rank yet).
fn order_by_rank(rows: &[(u64, u32, u64)]) -> Option<Vec<u32>> {
    if rows.is_empty() {
        return None;
    }
    let mut order = vec![u32::MAX; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        let slot = order.get_mut(r.1 as usize)?;
        if *slot != u32::MAX {
            return None;
        }
        *slot = i as u32;
    }
    Some(order)
}

fn merge(into: &mut Value, other: Value, kind: MetricKind, agg: GaugeAgg) {
    match (into, &other) {
        (Value::Scalar(a), Value::Scalar(b))
            if kind == MetricKind::Gauge && agg == GaugeAgg::Max =>
        {
            *a = a.max(*b);
        }
        (into, _) => crate::snapshot::merge_value(into, &other),
    }
}

/// A decoded label set remembered between reads, valid while the entry at the same offset
/// still has the same hash, family, worker slot and worker PID.
struct CachedEntry {
    hash: u64,
    family: u32,
    worker: u32,
    pid: u32,
    labels: Labels,
    seen: u64,
    /// Position in its family's sorted output at the last read (`u32::MAX` = not known yet).
    rank: u32,
}

/// What makes the segment's set of series change, read before a full read walks the index.
/// Inserting a series raises the live count; unlinking one (GC folds) and rehashing happen
/// inside a sequence window; replacing the file changes the cache identity. While the stamp
/// is unchanged, the same entries hold the same series: only their values move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    seq: u64,
    live: u64,
    index: u64,
    families: u64,
}

/// The output of the last full read, replayed while its [`Stamp`] and the PIDs behind its
/// `worker` labels hold: a warm read then reads each series' value at its known entry, in the
/// known order, without walking the index, decoding, looking up or sorting anything.
struct Plan {
    stamp: Stamp,
    /// Worker slots whose PIDs went into `worker` labels, with those PIDs.
    pids: Vec<(u32, u32)>,
    families: Vec<PlannedFamily>,
}

/// One family of a [`Plan`]: its record and its series in output order as (entry offset,
/// value cells, labels).
struct PlannedFamily {
    rec: Arc<FamilyRec>,
    rows: Vec<(u64, u64, Labels)>,
    /// The rows were checked to be in strictly ascending label order (see
    /// [`Family::ordered`]): a replay, which keeps the order, is not checked again.
    ordered: bool,
}

/// What a process that reads the segment repeatedly (a FastCGI worker) keeps between reads:
/// decoded label sets by entry offset, the interner, and the `worker` label texts. With it, a
/// warm read does not copy, decode or allocate labels at all. An empty cache is a cold read.
#[derive(Default)]
pub struct ReadCache {
    /// A one-off read: remember nothing (no point building what nobody reuses).
    cold: bool,
    identity: Option<(u64, u64, u64, bool)>,
    interner: Interner,
    entries: rustc_hash::FxHashMap<u64, CachedEntry>,
    workers: Vec<Option<(u32, Text)>>,
    /// Series per family at the last read, to size the next read's buffers.
    family_sizes: Vec<usize>,
    reads: u64,
    /// The last full read's output, to replay (none for one-off reads and merged workers).
    plan: Option<Plan>,
    /// Reads answered by replaying the plan.
    replays: u64,
    /// Families of an earlier read handed back once their scrape was sent (see
    /// [`ReadCache::give_back`]): a replay refills their values instead of building them.
    spare: Vec<Family>,
    /// Families the last read refilled in place (see [`ReadCache::refills`]).
    refills: u64,
}

impl ReadCache {
    /// An empty cache.
    pub fn new() -> ReadCache {
        ReadCache::default()
    }

    /// Label sets currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many reads were answered by replaying the previous read's entries (the segment's
    /// set of series had not changed) instead of walking the index.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Hands back the families a read returned (after their scrape was sent, and whatever
    /// `normalize` did to them). The next replay takes those it finds as it left them (the
    /// same label sets in the same order) and overwrites their values in place, instead of
    /// building 10k series anew and dropping the old ones: both touch every label set's
    /// allocation. Families it cannot use are dropped then.
    pub fn give_back(&mut self, families: Vec<Family>) {
        self.spare = families;
    }

    /// How many families the last replay refilled in place (0 when it built them all).
    pub fn refills(&self) -> u64 {
        self.refills
    }
}

impl Segment {
    /// Reads every series into families (one per registered family that has series).
    pub fn read(&self, opts: &ReadOptions) -> Result<Vec<Family>, SegmentError> {
        let mut cold = ReadCache::new();
        cold.cold = true;
        self.read_cached(opts, &mut cold)
    }

    /// [`Segment::read`] that reuses and refreshes `cache` (keep one per process).
    pub fn read_cached(
        &self,
        opts: &ReadOptions,
        cache: &mut ReadCache,
    ) -> Result<Vec<Family>, SegmentError> {
        let created = self.map().u64_unchecked(H_CREATED).load(Ordering::Relaxed);
        let identity = (
            self.inner.dev_ino.0,
            self.inner.dev_ino.1,
            created,
            opts.worker_label,
        );
        if cache.identity != Some(identity) {
            let cold = cache.cold;
            *cache = ReadCache::default();
            cache.cold = cold;
            cache.identity = Some(identity);
        }
        let mut replayed = false;
        let result = self.with_seq(|| {
            if let Some(out) = self.replay(cache) {
                replayed = true;
                return Ok(out);
            }
            replayed = false;
            cache.reads += 1;
            self.read_once(opts, cache)
        });
        if replayed && result.is_ok() {
            cache.replays += 1;
            return result;
        }
        if result.is_err() {
            // Whatever was cached during a failed or torn read is suspect.
            let cold = cache.cold;
            *cache = ReadCache::default();
            cache.cold = cold;
        } else if cache.entries.len() > 1024 {
            let reads = cache.reads;
            let seen = cache.entries.values().filter(|e| e.seen == reads).count();
            if cache.entries.len() > 2 * seen {
                cache.entries.retain(|_, e| e.seen == reads);
            }
            if cache.interner.len() > 4 * seen + 4096 {
                cache.interner = Interner::default();
            }
        }
        result
    }

    /// The `worker` label text of slot `w` for a process with `pid`, cached per slot.
    fn worker_text(&self, cache: &mut ReadCache, w: u32, pid: u32) -> Text {
        if cache.workers.len() <= w as usize && (w as usize) < self.worker_slots() as usize {
            cache.workers.resize(self.worker_slots() as usize, None);
        }
        match cache.workers.get_mut(w as usize) {
            Some(Some((p, t))) if *p == pid => t.clone(),
            Some(slot) => slot
                .insert((pid, Text::from(self.worker_label(w))))
                .1
                .clone(),
            None => Text::from(self.worker_label(w)),
        }
    }

    /// The segment's current [`Stamp`]. Read before walking the index: an insert that the
    /// walk misses then shows up as a changed live count at the next read. (The live count is
    /// raised with release ordering after the entry is linked.)
    fn stamp(&self) -> Stamp {
        let m = self.map();
        Stamp {
            seq: m.u64_unchecked(H_SEQ).load(Ordering::Acquire),
            live: m.u64_unchecked(H_SERIES_LIVE).load(Ordering::Acquire),
            index: m.u64_unchecked(H_INDEX_OFF).load(Ordering::Acquire),
            families: self.family_count(),
        }
    }

    /// The families of the last full read with fresh values, or `None` when the segment's
    /// series may have changed since (then a full read is needed). Runs inside
    /// [`Segment::with_seq`], which retries it if a structural change overlaps it.
    fn replay(&self, cache: &mut ReadCache) -> Option<Vec<Family>> {
        let ReadCache {
            plan,
            spare,
            refills,
            ..
        } = cache;
        // Reset and taken whatever happens (this runs first in every read, and again when
        // the read is retried): families that cannot be refilled now never will be.
        *refills = 0;
        let mut spare = std::mem::take(spare);
        let plan = plan.as_ref()?;
        if self.stamp() != plan.stamp {
            return None;
        }
        let m = self.map();
        if plan
            .pids
            .iter()
            .any(|&(w, pid)| worker::read_slot(m, w).pid != pid)
        {
            return None;
        }
        let out = plan
            .families
            .iter()
            .map(|pf| {
                if let Some(mut fam) = take_as_left(&mut spare, pf) {
                    *refills += 1;
                    for (s, (entry, cells, _)) in fam.series.iter_mut().zip(&pf.rows) {
                        read_value_into(m, *entry, *cells, &pf.rec, &mut s.value);
                        s.created = read_created(m, *entry, &pf.rec);
                    }
                    fam.ordered = pf.ordered;
                    return fam;
                }
                Family {
                    series: pf
                        .rows
                        .iter()
                        .map(|(entry, cells, labels)| Series {
                            labels: labels.clone(),
                            value: read_value(m, *entry, *cells, &pf.rec),
                            created: read_created(m, *entry, &pf.rec),
                        })
                        .collect(),
                    ordered: pf.ordered,
                    ..empty_family(&pf.rec)
                }
            })
            .collect();
        Some(out)
    }

    /// The record of the family an entry belongs to; `None` for entries a read skips (hidden
    /// families, and families registered after the read listed them: those series are newer
    /// than the scrape and show up in the next one). Only an index beyond every registered
    /// family is damage.
    fn entry_family<'f>(
        &self,
        fams: &'f [Arc<FamilyRec>],
        entry: u64,
        head: &EntryHead,
    ) -> Result<Option<&'f FamilyRec>, SegmentError> {
        match fams.get(head.family as usize) {
            Some(fam) if fam.def.hidden => Ok(None),
            Some(fam) => Ok(Some(fam)),
            None if u64::from(head.family) < self.family_count() => Ok(None),
            None => Err(SegmentError::corrupt(format!(
                "entry {entry} names family {}",
                head.family
            ))),
        }
    }

    /// An entry's label set, decoded with `interner` (by way of the `bytes` and `pairs`
    /// buffers) and with `worker` (the `worker` label) in its sorted place.
    fn entry_labels(
        &self,
        entry: u64,
        head: &EntryHead,
        interner: &mut Interner,
        (bytes, pairs): (&mut Vec<u8>, &mut Vec<Label>),
        worker: Option<Label>,
    ) -> Result<Labels, SegmentError> {
        self.map()
            .read_bytes(head.labels_off(entry), head.labels_len as usize, bytes)?;
        pairs.clear();
        decode_labels_into(bytes, pairs, |b, pos| interner.get_at(pos, b))?;
        if let Some(worker) = worker {
            let pos = pairs.partition_point(|(k, _)| **k < *worker.0);
            pairs.insert(pos, worker);
        }
        // Moved into one allocation of the exact size.
        Ok(pairs.drain(..).collect())
    }

    /// A one-off read's series with `worker` labels, per family and unsorted. A large segment
    /// is read by one thread per core (see [`crate::shares::from_both_ends`]) in chunks, each
    /// the entries of one stretch of the file, each thread with an interner of its own: a CGI
    /// process has nothing cached, and decoding is most of its scrape.
    fn read_cold(&self, fams: &[Arc<FamilyRec>]) -> Result<Vec<Vec<Series>>, SegmentError> {
        let series = self.series_hint();
        let threads = crate::shares::count(series, COLD_SHARE_FROM);
        let chunks = if threads > 1 {
            threads * crate::shares::CHUNKS_PER_SHARE
        } else {
            1
        };
        let buckets = self.entries_by_address(chunks)?;
        let hint = series / threads;
        let mut all: Vec<Vec<Series>> = vec![Vec::new(); fams.len()];
        let mut reader = ChunkReader::new(self, hint);
        let mut failed = None;
        let (_, rest) = crate::shares::from_both_ends(
            chunks,
            threads - 1,
            |i| {
                if failed.is_none() {
                    if let Err(e) = reader.read(fams, &buckets[i], &mut all) {
                        failed = Some(e);
                    }
                }
            },
            || ChunkReader::new(self, hint),
            |reader, i| {
                let mut out = vec![Vec::new(); fams.len()];
                reader.read(fams, &buckets[i], &mut out).map(|()| out)
            },
        );
        if let Some(e) = failed {
            return Err(e);
        }
        let rest = rest.into_iter().collect::<Result<Vec<_>, _>>()?;
        for (i, into) in all.iter_mut().enumerate() {
            // Grown once to its final length (10k series would be moved again otherwise).
            into.reserve_exact(rest.iter().map(|chunk| chunk[i].len()).sum());
        }
        for chunk in rest {
            for (into, more) in all.iter_mut().zip(chunk) {
                into.extend(more);
            }
        }
        Ok(all)
    }

    /// The number of series the header counts, as a hint for sizing: a header word that
    /// damage can make huge is never taken for more entries than fit in the file.
    fn series_hint(&self) -> usize {
        let fit = self.map().committed() / super::layout::MIN_BLOCK;
        self.stats().series.min(fit) as usize
    }
}

/// What one thread of a cold read keeps from chunk to chunk (see [`Segment::read_cold`]): its
/// interner, decoding buffers and `worker` label texts.
struct ChunkReader<'s> {
    seg: &'s Segment,
    interner: Interner,
    bytes: Vec<u8>,
    pairs: Vec<Label>,
    worker_key: Text,
    workers: Vec<Option<Text>>,
}

impl<'s> ChunkReader<'s> {
    /// A reader for `seg`; `hint` sizes the interner.
    fn new(seg: &'s Segment, hint: usize) -> ChunkReader<'s> {
        let mut interner = Interner::default();
        interner.reserve(hint);
        ChunkReader {
            seg,
            interner,
            bytes: Vec::new(),
            pairs: Vec::with_capacity(8),
            worker_key: Text::from("worker"),
            workers: vec![None; seg.worker_slots() as usize],
        }
    }

    /// Appends the series of the entries at `chunk` (offsets, visited in offset order) to
    /// their families in `out`.
    fn read(
        &mut self,
        fams: &[Arc<FamilyRec>],
        chunk: &[u64],
        out: &mut [Vec<Series>],
    ) -> Result<(), SegmentError> {
        let seg = self.seg;
        let m = seg.map();
        let mut entries = chunk.to_vec();
        seg.for_each_entry_at(&mut entries, |entry, head| {
            let Some(fam) = seg.entry_family(fams, entry, &head)? else {
                return Ok(());
            };
            let worker = (fam.def.per_worker && head.worker != WORKER_NONE).then(|| {
                let name = match self.workers.get_mut(head.worker as usize) {
                    Some(slot) => slot
                        .get_or_insert_with(|| Text::from(seg.worker_label(head.worker)))
                        .clone(),
                    None => Text::from(seg.worker_label(head.worker)),
                };
                (self.worker_key.clone(), name)
            });
            let labels = seg.entry_labels(
                entry,
                &head,
                &mut self.interner,
                (&mut self.bytes, &mut self.pairs),
                worker,
            )?;
            out[head.family as usize].push(Series {
                labels,
                value: read_value(m, entry, head.cells, fam),
                created: read_created(m, entry, fam),
            });
            Ok(())
        })
    }
}

impl Segment {
    fn read_once(
        &self,
        opts: &ReadOptions,
        cache: &mut ReadCache,
    ) -> Result<Vec<Family>, SegmentError> {
        let m = self.map();
        let stamp = self.stamp();
        let nfam = stamp.families as u32;
        let fams = (0..nfam)
            .map(|i| self.family_at(i))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out: Vec<Family> = fams.iter().map(|f| empty_family(f)).collect();
        if cache.cold && opts.worker_label {
            for (fam, series) in out.iter_mut().zip(self.read_cold(&fams)?) {
                fam.series = series;
                fam.ordered = crate::snapshot::sort_by_labels(&mut fam.series, |s| &s.labels);
            }
            out.retain(|f| !f.series.is_empty());
            return Ok(out);
        }
        let mut merged: Vec<Merged> =
            vec![HashMap::new(); if opts.worker_label { 0 } else { fams.len() }];
        // PID of each worker slot, read once per read.
        let slots = self.worker_slots();
        let mut pids: Vec<Option<u32>> = vec![None; slots as usize];
        let worker_key: Text = Text::from("worker");
        let reads = cache.reads;
        // Left here only for a one-off read that combines workers (one that labels them
        // returned above).
        let cold = cache.cold;
        if cold {
            cache.interner.reserve(self.series_hint());
        }
        let mut bytes = Vec::new();
        let mut pairs: Vec<Label> = Vec::with_capacity(8);
        // Series go straight into their family; beside them, for a process that keeps the
        // cache, each one's (entry offset, rank at the last read, value cells).
        for (i, f) in out.iter_mut().enumerate() {
            f.series
                .reserve(cache.family_sizes.get(i).copied().unwrap_or(0));
        }
        let mut meta: Vec<Vec<(u64, u32, u64)>> = (0..fams.len())
            .map(|i| Vec::with_capacity(cache.family_sizes.get(i).copied().unwrap_or(0)))
            .collect();
        self.for_each_entry(|_, entry, head| {
            let Some(fam) = self.entry_family(&fams, entry, &head)? else {
                return Ok(());
            };
            let labelled = opts.worker_label && fam.def.per_worker && head.worker != WORKER_NONE;
            let pid = if labelled {
                match pids.get_mut(head.worker as usize) {
                    Some(Some(p)) => *p,
                    Some(p) => *p.insert(worker::read_slot(m, head.worker).pid),
                    None => 0,
                }
            } else {
                0
            };
            let mut rank = u32::MAX;
            let labels = match cache.entries.get_mut(&entry) {
                Some(c)
                    if c.hash == head.hash
                        && c.family == head.family
                        && c.worker == head.worker
                        && c.pid == pid =>
                {
                    c.seen = reads;
                    rank = c.rank;
                    c.labels.clone()
                }
                _ => {
                    let worker = labelled.then(|| {
                        (
                            worker_key.clone(),
                            self.worker_text(cache, head.worker, pid),
                        )
                    });
                    let labels = self.entry_labels(
                        entry,
                        &head,
                        &mut cache.interner,
                        (&mut bytes, &mut pairs),
                        worker,
                    )?;
                    if !cold {
                        cache.entries.insert(
                            entry,
                            CachedEntry {
                                hash: head.hash,
                                family: head.family,
                                worker: head.worker,
                                pid,
                                labels: labels.clone(),
                                seen: reads,
                                rank: u32::MAX,
                            },
                        );
                    }
                    labels
                }
            };
            let value = read_value(m, entry, head.cells, fam);
            let created = read_created(m, entry, fam);
            if opts.worker_label {
                out[head.family as usize].series.push(Series {
                    labels,
                    value,
                    created,
                });
                meta[head.family as usize].push((entry, rank, head.cells));
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
        // Sorted output: placed by the ranks of the last read when every series has one and
        // they are still a permutation (nothing came or went), else sorted by labels (and
        // ranks are renewed).
        cache.family_sizes.clear();
        // Only a process that keeps the cache replays, and only per-worker output (merged
        // series have no single entry).
        let planning = !cold && opts.worker_label;
        let mut planned: Vec<PlannedFamily> = Vec::new();
        for (i, (fam, mut meta)) in out.iter_mut().zip(meta).enumerate() {
            let n = fam.series.len();
            cache.family_sizes.push(n);
            let by_rank = order_by_rank(&meta);
            let ranked = by_rank.is_some();
            let order =
                by_rank.unwrap_or_else(|| crate::snapshot::label_order(&fam.series, |s| &s.labels));
            crate::snapshot::apply_order(&mut fam.series, order.clone());
            crate::snapshot::apply_order(&mut meta, order);
            if !ranked {
                for (rank, r) in meta.iter().enumerate() {
                    if let Some(c) = cache.entries.get_mut(&r.0) {
                        c.rank = rank as u32;
                    }
                }
            }
            if planning && n > 0 {
                // Checked once here instead of by every scrape's normalize.
                fam.ordered = crate::snapshot::strictly_ascending(&fam.series, |s| &s.labels);
                planned.push(PlannedFamily {
                    ordered: fam.ordered,
                    rec: fams[i].clone(),
                    rows: meta
                        .iter()
                        .zip(&fam.series)
                        .map(|(&(entry, _, cells), s)| (entry, cells, s.labels.clone()))
                        .collect(),
                });
            }
        }
        cache.plan = planning.then(|| Plan {
            stamp,
            pids: pids
                .iter()
                .enumerate()
                .filter_map(|(w, p)| p.map(|p| (w as u32, p)))
                .collect(),
            families: planned,
        });
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
