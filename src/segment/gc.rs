//! Dead-worker GC and crash recovery.
//!
//! Folding moves a dead worker's counters and histograms into the `worker="exited"` twin of each
//! series and drops its gauges, so the sum over workers of every counter never decreases. A fold
//! touches several words, so it writes an undo/redo journal first: the destination's old cell
//! values and the source's values. Whoever takes the semaphore next finishes or rolls back a
//! fold that a killed holder left half done, decided by whether the source is still linked
//! (unlinking is the commit point).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::index::entry_head;
use super::layout::*;
use super::mem::Mapping;
use super::worker::{is_alive, read_slot, slot_off};
use super::{now_unix, Locked, Segment, SegmentError};
use crate::snapshot::MetricKind;

/// What one GC run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Worker slots in use when GC started.
    pub workers_checked: u32,
    /// Dead workers still inside their grace period.
    pub workers_pending: u32,
    /// Dead workers whose series were folded and whose slot was freed.
    pub workers_folded: u32,
    /// Counter and histogram series folded into `worker="exited"`.
    pub series_folded: u64,
    /// Gauge series of dead workers dropped.
    pub series_dropped: u64,
}

/// Combines a source cell into a destination cell: cell 0 of counters and histograms is an f64
/// (fractional amounts, or the sum), every other cell an integer count (a counter's whole
/// amounts, a histogram's buckets).
fn combine(kind: MetricKind, cell: u64, old: u64, add: u64) -> u64 {
    if cell == 0 || kind == MetricKind::Gauge {
        (f64::from_bits(old) + f64::from_bits(add)).to_bits()
    } else {
        old.wrapping_add(add)
    }
}

fn seq_begin(m: &Mapping) -> bool {
    let seq = m.u64_unchecked(H_SEQ);
    if seq.load(Ordering::Relaxed) & 1 == 0 {
        seq.fetch_add(1, Ordering::AcqRel);
        true
    } else {
        false
    }
}

fn seq_end(m: &Mapping, began: bool) {
    if began {
        m.u64_unchecked(H_SEQ).fetch_add(1, Ordering::AcqRel);
    }
}

/// Repairs what a holder that died left half done. Runs every time the semaphore is taken.
pub(crate) fn recover(locked: &Locked<'_>) -> Result<(), SegmentError> {
    let m = locked.seg.map();
    let mut repaired = Vec::new();
    let pending = m.u64_unchecked(J_PENDING_BLOCK).load(Ordering::Acquire);
    if pending != 0 {
        let slot = m.u64_unchecked(J_PENDING_SLOT).load(Ordering::Relaxed);
        let linked = m
            .u64(slot)
            .map(|c| c.load(Ordering::Acquire) == pending)
            .unwrap_or(false);
        if !linked {
            locked.free(pending)?;
        }
        m.u64_unchecked(J_PENDING_BLOCK).store(0, Ordering::Release);
        repaired.push(if linked {
            "insert (linked)"
        } else {
            "insert (freed)"
        });
    }
    if m.u64_unchecked(J_STATE).load(Ordering::Acquire) == JOURNAL_FOLD {
        let src = m.u64_unchecked(J_SRC).load(Ordering::Relaxed);
        let slot = m.u64_unchecked(J_SLOT).load(Ordering::Relaxed);
        let dst = m.u64_unchecked(J_DST).load(Ordering::Relaxed);
        let cells = m
            .u64_unchecked(J_CELLS)
            .load(Ordering::Relaxed)
            .min(MAX_CELLS);
        let unlinked = m.u64(slot)?.load(Ordering::Acquire) != src;
        let head = entry_head(m, dst)?;
        let kind = locked.seg.family_at(head.family)?.def.kind;
        for k in 0..cells {
            let old = m.u64_unchecked(J_OLD + 8 * k).load(Ordering::Relaxed);
            let add = m.u64_unchecked(J_ADD + 8 * k).load(Ordering::Relaxed);
            let v = if unlinked {
                combine(kind, k, old, add)
            } else {
                old
            };
            m.u64(dst + E_VALUES + 8 * k)?.store(v, Ordering::Relaxed);
        }
        m.u64_unchecked(J_STATE).store(0, Ordering::Release);
        repaired.push(if unlinked {
            "fold (redone)"
        } else {
            "fold (undone)"
        });
    }
    let seq = m.u64_unchecked(H_SEQ);
    if seq.load(Ordering::Acquire) & 1 == 1 {
        seq.fetch_add(1, Ordering::AcqRel);
        repaired.push("sequence");
    }
    if !repaired.is_empty() {
        recount(locked)?;
        m.u64_unchecked(H_RECOVERIES)
            .fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "segment {}: a process died while changing it; repaired: {}",
            locked.seg.path().display(),
            repaired.join(", ")
        );
    }
    Ok(())
}

/// Recomputes the live and tombstone counters from the index.
fn recount(locked: &Locked<'_>) -> Result<(), SegmentError> {
    let m = locked.seg.map();
    let (off, cap) = super::index::geometry(m)?;
    let (mut live, mut tomb) = (0, 0);
    for i in 0..cap {
        match m.u64_unchecked(off + 8 * i).load(Ordering::Relaxed) {
            SLOT_EMPTY => {}
            SLOT_TOMBSTONE => tomb += 1,
            _ => live += 1,
        }
    }
    m.u64_unchecked(H_SERIES_LIVE)
        .store(live, Ordering::Relaxed);
    m.u64_unchecked(H_SERIES_TOMB)
        .store(tomb, Ordering::Relaxed);
    Ok(())
}

impl Locked<'_> {
    /// Folds every series of worker slot `w` and frees the slot.
    pub(crate) fn fold_worker(&self, w: u32) -> Result<(u64, u64), SegmentError> {
        self.fold_workers(&[w])
    }

    /// Folds every series of the worker slots `ws` and frees the slots, in one pass over the
    /// index whatever the number of workers.
    pub(crate) fn fold_workers(&self, ws: &[u32]) -> Result<(u64, u64), SegmentError> {
        if ws.is_empty() {
            return Ok((0, 0));
        }
        let m = self.seg.map();
        let began = seq_begin(m);
        let result = self.fold_workers_inner(ws);
        seq_end(m, began);
        result
    }

    fn fold_workers_inner(&self, ws: &[u32]) -> Result<(u64, u64), SegmentError> {
        let m = self.seg.map();
        let mut mask = vec![false; self.seg.worker_slots() as usize];
        for &w in ws {
            if let Some(b) = mask.get_mut(w as usize) {
                *b = true;
            }
        }
        let doomed = |w: u32| mask.get(w as usize).copied().unwrap_or(false);
        let mut count = 0u64;
        self.seg.for_each_entry(|_, _, h| {
            count += u64::from(doomed(h.worker));
            Ok(())
        })?;
        // Reserve room for every twin first, so no rehash moves slots while we walk them.
        self.ensure_capacity(count)?;
        let mut victims = Vec::with_capacity(count as usize);
        self.seg.for_each_entry(|slot, entry, h| {
            if doomed(h.worker) {
                victims.push((slot, entry, h));
            }
            Ok(())
        })?;
        let (mut folded, mut dropped) = (0, 0);
        let mut labels = Vec::new();
        for (slot, entry, head) in victims {
            let fam = self.seg.family_at(head.family)?;
            if fam.def.kind == MetricKind::Gauge {
                self.unlink(slot, entry)?;
                dropped += 1;
                continue;
            }
            m.read_bytes(
                head.labels_off(entry),
                head.labels_len as usize,
                &mut labels,
            )?;
            let created = f64::from_bits(m.u64(entry + E_CREATED)?.load(Ordering::Relaxed));
            let dst = self.find_or_insert(&fam, WORKER_EXITED, &labels, created)?;
            let cells = head.cells.min(fam.def.cells());
            // Journal, then apply, then unlink (commit), then close the journal.
            for k in 0..cells {
                let old = m.u64(dst + E_VALUES + 8 * k)?.load(Ordering::Relaxed);
                let add = m.u64(entry + E_VALUES + 8 * k)?.load(Ordering::Relaxed);
                m.u64_unchecked(J_OLD + 8 * k).store(old, Ordering::Relaxed);
                m.u64_unchecked(J_ADD + 8 * k).store(add, Ordering::Relaxed);
            }
            m.u64_unchecked(J_SRC).store(entry, Ordering::Relaxed);
            m.u64_unchecked(J_SLOT).store(slot, Ordering::Relaxed);
            m.u64_unchecked(J_DST).store(dst, Ordering::Relaxed);
            m.u64_unchecked(J_CELLS).store(cells, Ordering::Relaxed);
            m.u64_unchecked(J_STATE)
                .store(JOURNAL_FOLD, Ordering::Release);
            super::crash_point("fold:journaled");
            for k in 0..cells {
                let old = m.u64_unchecked(J_OLD + 8 * k).load(Ordering::Relaxed);
                let add = m.u64_unchecked(J_ADD + 8 * k).load(Ordering::Relaxed);
                m.u64_unchecked(dst + E_VALUES + 8 * k)
                    .store(combine(fam.def.kind, k, old, add), Ordering::Relaxed);
            }
            super::crash_point("fold:applied");
            self.unlink(slot, entry)?;
            super::crash_point("fold:unlinked");
            m.u64_unchecked(J_STATE).store(0, Ordering::Release);
            folded += 1;
        }
        super::crash_point("fold:before-free-slot");
        for &w in ws {
            m.u32_unchecked(slot_off(w) + W_STATE)
                .store(SLOT_FREE, Ordering::Release);
        }
        m.u64_unchecked(H_FOLDED_TOTAL)
            .fetch_add(folded, Ordering::Relaxed);
        Ok((folded, dropped))
    }

    /// One GC pass: folds workers dead for at least `grace_secs`. `only` limits it to one slot.
    pub(crate) fn gc_locked(
        &self,
        grace_secs: u64,
        only: Option<u32>,
    ) -> Result<GcReport, SegmentError> {
        let m = self.seg.map();
        let now = now_unix() as u64;
        let mut report = GcReport::default();
        let mut due = Vec::new();
        for i in FIRST_PROCESS_SLOT..self.seg.worker_slots() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let s = read_slot(m, i);
            if s.state != SLOT_LIVE {
                continue;
            }
            report.workers_checked += 1;
            let dead_cell = m.u64_unchecked(slot_off(i) + W_DEAD_SINCE);
            if is_alive(s.pid, s.start) {
                if s.dead_since != 0 {
                    dead_cell.store(0, Ordering::Relaxed);
                }
                continue;
            }
            let since = if s.dead_since == 0 {
                dead_cell.store(now, Ordering::Relaxed);
                now
            } else {
                s.dead_since
            };
            if now.saturating_sub(since) < grace_secs {
                report.workers_pending += 1;
                continue;
            }
            due.push(i);
        }
        let (folded, dropped) = self.fold_workers(&due)?;
        report.workers_folded = due.len() as u32;
        report.series_folded = folded;
        report.series_dropped = dropped;
        // Compact the index when tombstones dominate, so scans stay proportional to live series.
        let live = m.u64_unchecked(H_SERIES_LIVE).load(Ordering::Relaxed);
        let tomb = m.u64_unchecked(H_SERIES_TOMB).load(Ordering::Relaxed);
        if tomb > 256 && tomb > live {
            self.rehash(live * 4)?;
        }
        m.u64_unchecked(H_LAST_GC).store(now, Ordering::Relaxed);
        Ok(report)
    }
}

impl Segment {
    /// Folds the series of workers that have been dead for at least `grace` into
    /// `worker="exited"` and frees their slots. A grace of zero folds every dead worker now
    /// (`delete-dead-worker-values`).
    pub fn gc(&self, grace: Duration) -> Result<GcReport, SegmentError> {
        let locked = self.lock()?;
        locked.gc_locked(grace.as_secs(), None)
    }

    /// Runs GC if the last run is at least `interval` ago and the semaphore is free right now;
    /// never waits. For scrapes, so that every worker helps keep the segment tidy.
    pub fn maybe_gc(
        &self,
        grace: Duration,
        interval: Duration,
    ) -> Result<Option<GcReport>, SegmentError> {
        let last = self.map().u64_unchecked(H_LAST_GC).load(Ordering::Relaxed);
        if (now_unix() as u64).saturating_sub(last) < interval.as_secs() {
            return Ok(None);
        }
        match self.try_lock()? {
            Some(locked) => locked.gc_locked(grace.as_secs(), None).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_cells() {
        let a = 1.5f64.to_bits();
        let b = 2.0f64.to_bits();
        assert_eq!(f64::from_bits(combine(MetricKind::Counter, 0, a, b)), 3.5);
        assert_eq!(combine(MetricKind::Counter, 1, 4, 5), 9);
        assert_eq!(f64::from_bits(combine(MetricKind::Histogram, 0, a, b)), 3.5);
        assert_eq!(combine(MetricKind::Histogram, 3, 4, 5), 9);
    }
}
