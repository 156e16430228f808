//! The series index: an open-addressing hash table of entry offsets, plus series entries and
//! their label encoding.
//!
//! Lookups run without the semaphore under the sequence counter (see [`Segment::with_seq`]);
//! inserts, unlinks and rehashes run under it. The index location and capacity are packed in
//! one header word, so a rehash publishes the new table with a single store.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::family::FamilyRec;
use super::layout::*;
use super::mem::Mapping;
use super::{Locked, Segment, SegmentError};
use crate::snapshot::is_valid_label_name;

const INITIAL_CAP_LOG2: u64 = 10;

fn pack(off: u64, cap_log2: u64) -> u64 {
    off | (cap_log2 << 56)
}

/// Current index payload offset and capacity.
pub(crate) fn geometry(m: &Mapping) -> Result<(u64, u64), SegmentError> {
    let word = m.u64_unchecked(H_INDEX_OFF).load(Ordering::Acquire);
    let off = word & ((1 << 56) - 1);
    let log2 = word >> 56;
    if !(INITIAL_CAP_LOG2..=28).contains(&log2) {
        return Err(SegmentError::corrupt(format!("index capacity 2^{log2}")));
    }
    let cap = 1u64 << log2;
    m.check_range(off, cap * 8)?;
    Ok((off, cap))
}

/// Sets up the first index in a fresh file (no other process can see it yet).
pub(crate) fn init(m: &Mapping) -> Result<(), SegmentError> {
    let cap = 1u64 << INITIAL_CAP_LOG2;
    let total = cap * 8 + BLOCK_HEADER;
    let mut class = 0;
    while (MIN_BLOCK << class) < total {
        class += 1;
    }
    let start = m
        .u64_unchecked(H_BUMP)
        .load(Ordering::Relaxed)
        .next_multiple_of(MIN_BLOCK);
    let end = start + (MIN_BLOCK << class);
    if end > m.committed() {
        return Err(SegmentError::Full(
            "initial size too small for the index".into(),
        ));
    }
    m.u64(start)?.store(class, Ordering::Relaxed);
    m.zero(start + BLOCK_HEADER, cap * 8)?;
    m.u64_unchecked(H_BUMP).store(end, Ordering::Relaxed);
    m.u64_unchecked(H_INDEX_OFF).store(
        pack(start + BLOCK_HEADER, INITIAL_CAP_LOG2),
        Ordering::Release,
    );
    m.u64_unchecked(H_INDEX_CAP).store(cap, Ordering::Relaxed);
    Ok(())
}

/// Encodes a label set canonically (sorted by name): `u16 len, name, u16 len, value` per pair.
/// Values longer than [`MAX_LABEL_VALUE`] bytes are cut at a character boundary.
pub(crate) fn encode_labels(
    labels: &[(&str, &str)],
    reserved: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), SegmentError> {
    out.clear();
    if labels.len() > MAX_LABELS {
        return Err(SegmentError::Invalid(format!(
            "{} labels, at most {MAX_LABELS} allowed",
            labels.len()
        )));
    }
    let mut sorted: Vec<(&str, &str)> = labels.to_vec();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (i, (name, value)) in sorted.iter().enumerate() {
        if !is_valid_label_name(name) || name.len() > 100 || Some(*name) == reserved {
            return Err(SegmentError::Invalid(format!(
                "invalid label name {name:?}"
            )));
        }
        if i > 0 && sorted[i - 1].0 == *name {
            return Err(SegmentError::Invalid(format!(
                "duplicate label name {name:?}"
            )));
        }
        let mut cut = value.len().min(MAX_LABEL_VALUE);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(cut as u16).to_le_bytes());
        out.extend_from_slice(&value.as_bytes()[..cut]);
    }
    Ok(())
}

/// Decodes labels written by [`encode_labels`] onto the end of `out`, turning the raw bytes
/// of each name and value into a `T` with `make(bytes, position)` (which must check UTF-8, and
/// may intern); position counts the strings, names even and values odd. Inlined: a cold read
/// calls it per series with the interner as `make`, and the compiler stopped inlining it on
/// its own (1.5% more instructions per cold scrape).
#[inline(always)]
pub(crate) fn decode_labels_into<T>(
    mut bytes: &[u8],
    out: &mut Vec<(T, T)>,
    mut make: impl FnMut(&[u8], usize) -> Result<T, SegmentError>,
) -> Result<(), SegmentError> {
    fn take<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], SegmentError> {
        let bad = || SegmentError::corrupt("label encoding");
        if bytes.len() < 2 {
            return Err(bad());
        }
        let n = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
        if bytes.len() < 2 + n {
            return Err(bad());
        }
        let s = &bytes[2..2 + n];
        *bytes = &bytes[2 + n..];
        Ok(s)
    }
    let mut pos = 0;
    while !bytes.is_empty() {
        let (name, value) = {
            let mut rest = bytes;
            let name = take(&mut rest)?;
            let value = take(&mut rest)?;
            bytes = rest;
            (name, value)
        };
        out.push((make(name, pos)?, make(value, pos + 1)?));
        pos += 2;
    }
    Ok(())
}

/// Decodes labels written by [`encode_labels`] into owned strings.
#[cfg(test)]
pub(crate) fn decode_labels(bytes: &[u8]) -> Result<Vec<(String, String)>, SegmentError> {
    let mut out = Vec::new();
    decode_labels_into(bytes, &mut out, |b, _| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| SegmentError::corrupt("label encoding"))
    })?;
    Ok(out)
}

/// Hash of a series key.
pub(crate) fn key_hash(family: u32, worker: u32, labels: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&family.to_le_bytes());
    head[4..].copy_from_slice(&worker.to_le_bytes());
    fnv1a(fnv1a(FNV_SEED, &head), labels)
}

/// A decoded series entry header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHead {
    pub family: u32,
    pub worker: u32,
    pub cells: u64,
    pub labels_len: u64,
    pub hash: u64,
}

impl EntryHead {
    pub fn labels_off(&self, entry: u64) -> u64 {
        entry + E_VALUES + 8 * self.cells
    }
}

/// Reads and sanity-checks the entry at `off`.
pub(crate) fn entry_head(m: &Mapping, off: u64) -> Result<EntryHead, SegmentError> {
    m.check_range(off, E_VALUES)?;
    let fw = m.u64_unchecked(off + E_FAMILY).load(Ordering::Relaxed);
    let cl = m.u64_unchecked(off + E_CELLS).load(Ordering::Relaxed);
    let head = EntryHead {
        family: fw as u32,
        worker: (fw >> 32) as u32,
        cells: cl & 0xffff_ffff,
        labels_len: cl >> 32,
        hash: m.u64_unchecked(off + E_HASH).load(Ordering::Relaxed),
    };
    if head.cells == 0 || head.cells > MAX_CELLS || head.labels_len > 64 * 1024 {
        return Err(SegmentError::corrupt(format!(
            "entry {off} has implausible sizes"
        )));
    }
    m.check_range(off, E_VALUES + 8 * head.cells + align8(head.labels_len))?;
    Ok(head)
}

impl Segment {
    /// Runs `read` until it completes without a concurrent structural change. If a change stays
    /// in progress (a holder died mid-way, or churn never stops), takes the semaphore, which
    /// repairs a dead holder's leftovers, and reads under it.
    pub(crate) fn with_seq<T>(
        &self,
        mut read: impl FnMut() -> Result<T, SegmentError>,
    ) -> Result<T, SegmentError> {
        let seq = self.map().u64_unchecked(H_SEQ);
        let start = Instant::now();
        let mut attempts = 0u32;
        while start.elapsed() < Duration::from_millis(20) || attempts < 8 {
            attempts += 1;
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let result = read();
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) == s1 {
                    return result;
                }
            }
            if attempts > 4 {
                std::thread::sleep(Duration::from_micros(200));
            } else {
                std::hint::spin_loop();
            }
        }
        let _locked = self.lock()?;
        read()
    }

    /// Finds a series without locking. Call inside [`Segment::with_seq`].
    pub(crate) fn lookup(
        &self,
        family: u32,
        worker: u32,
        labels: &[u8],
        hash: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<(u64, u64)>, SegmentError> {
        let m = self.map();
        let (off, cap) = geometry(m)?;
        let mask = cap - 1;
        let mut i = hash & mask;
        for _ in 0..cap {
            let slot = off + 8 * i;
            let v = m.u64_unchecked(slot).load(Ordering::Acquire);
            if v == SLOT_EMPTY {
                return Ok(None);
            }
            if v != SLOT_TOMBSTONE {
                let head = entry_head(m, v)?;
                if head.hash == hash
                    && head.family == family
                    && head.worker == worker
                    && head.labels_len == labels.len() as u64
                {
                    m.read_bytes(head.labels_off(v), labels.len(), scratch)?;
                    if scratch.as_slice() == labels {
                        return Ok(Some((slot, v)));
                    }
                }
            }
            i = (i + 1) & mask;
        }
        Ok(None)
    }

    /// Visits every linked entry. Call inside [`Segment::with_seq`].
    pub(crate) fn for_each_entry(
        &self,
        mut f: impl FnMut(u64, u64, EntryHead) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        let m = self.map();
        let (off, cap) = geometry(m)?;
        for i in 0..cap {
            let slot = off + 8 * i;
            let v = m.u64_unchecked(slot).load(Ordering::Acquire);
            if v > SLOT_TOMBSTONE {
                f(slot, v, entry_head(m, v)?)?;
            }
        }
        Ok(())
    }

    /// The offsets of the live entries, bucketed into `chunks` equal address ranges of the
    /// committed file (each bucket in slot order), for a read cut into chunks that each visit
    /// one stretch of memory. Call inside [`Segment::with_seq`].
    pub(crate) fn entries_by_address(&self, chunks: usize) -> Result<Vec<Vec<u64>>, SegmentError> {
        let m = self.map();
        let (off, cap) = geometry(m)?;
        let chunks = chunks.max(1);
        let span = u128::from(m.committed().max(1));
        let mut out: Vec<Vec<u64>> = (0..chunks)
            .map(|_| Vec::with_capacity(cap as usize / chunks / 2 + 1))
            .collect();
        for i in 0..cap {
            let v = m.u64_unchecked(off + 8 * i).load(Ordering::Acquire);
            if v > SLOT_TOMBSTONE {
                // An offset past the end (damage) goes to the last bucket; its head check fails.
                let b = (u128::from(v) * chunks as u128 / span).min(chunks as u128 - 1);
                out[b as usize].push(v);
            }
        }
        Ok(out)
    }

    /// Calls `f` with each of `entries` (offsets from [`Segment::entries_by_address`]) and its
    /// head, in offset order: `entries` is sorted first. Call inside [`Segment::with_seq`].
    ///
    /// Slots are in hash order, so visiting entries slot by slot jumps about the whole data
    /// area: on a VM, where a TLB miss walks two page tables, those jumps were a tenth of a
    /// cold scrape. Entries are bump-allocated, so offset order reads them front to back.
    pub(crate) fn for_each_entry_at(
        &self,
        entries: &mut [u64],
        mut f: impl FnMut(u64, EntryHead) -> Result<(), SegmentError>,
    ) -> Result<(), SegmentError> {
        let m = self.map();
        entries.sort_unstable();
        for &v in entries.iter() {
            f(v, entry_head(m, v)?)?;
        }
        Ok(())
    }
}

impl Locked<'_> {
    /// Looks up or inserts a series; returns the entry offset.
    pub(crate) fn find_or_insert(
        &self,
        fam: &FamilyRec,
        worker: u32,
        labels: &[u8],
        created: f64,
    ) -> Result<u64, SegmentError> {
        let hash = key_hash(fam.index, worker, labels);
        let mut scratch = Vec::new();
        if let Some((_, e)) = self
            .seg
            .lookup(fam.index, worker, labels, hash, &mut scratch)?
        {
            return Ok(e);
        }
        self.ensure_capacity(1)?;
        let m = self.seg.map();
        let (off, cap) = geometry(m)?;
        let mask = cap - 1;
        let mut i = hash & mask;
        let slot = loop {
            let slot = off + 8 * i;
            let v = m.u64_unchecked(slot).load(Ordering::Acquire);
            if v == SLOT_EMPTY || v == SLOT_TOMBSTONE {
                break slot;
            }
            i = (i + 1) & mask;
        };
        let was_tomb = m.u64_unchecked(slot).load(Ordering::Relaxed) == SLOT_TOMBSTONE;
        let cells = fam.def.cells();
        let size = E_VALUES + 8 * cells + align8(labels.len() as u64);
        let entry = self.alloc(size)?;
        // Journal the pending insert so a successor can free the block if we die before linking.
        m.u64_unchecked(J_PENDING_SLOT)
            .store(slot, Ordering::Relaxed);
        m.u64_unchecked(J_PENDING_BLOCK)
            .store(entry, Ordering::Release);
        super::crash_point("insert:journaled");
        m.u64(entry + E_FAMILY)?.store(
            u64::from(fam.index) | u64::from(worker) << 32,
            Ordering::Relaxed,
        );
        m.u64(entry + E_CELLS)?
            .store(cells | (labels.len() as u64) << 32, Ordering::Relaxed);
        m.u64(entry + E_HASH)?.store(hash, Ordering::Relaxed);
        m.u64(entry + E_CREATED)?
            .store(created.to_bits(), Ordering::Relaxed);
        m.write_bytes(entry + E_VALUES + 8 * cells, labels)?;
        // Commit point: link the entry.
        m.u64_unchecked(slot).store(entry, Ordering::Release);
        super::crash_point("insert:linked");
        // Release: a reader that sees the new count also sees the linked slot (a replaying
        // reader relies on it, see `read::Stamp`).
        m.u64_unchecked(H_SERIES_LIVE)
            .fetch_add(1, Ordering::Release);
        if was_tomb {
            m.u64_unchecked(H_SERIES_TOMB)
                .fetch_sub(1, Ordering::Relaxed);
        }
        m.u64_unchecked(J_PENDING_BLOCK).store(0, Ordering::Release);
        Ok(entry)
    }

    /// Unlinks the entry in `slot` (leaving a tombstone) and frees it.
    pub(crate) fn unlink(&self, slot: u64, entry: u64) -> Result<(), SegmentError> {
        let m = self.seg.map();
        m.u64_unchecked(slot)
            .store(SLOT_TOMBSTONE, Ordering::Release);
        m.u64_unchecked(H_SERIES_LIVE)
            .fetch_sub(1, Ordering::Relaxed);
        m.u64_unchecked(H_SERIES_TOMB)
            .fetch_add(1, Ordering::Relaxed);
        self.free(entry)
    }

    /// Rehashes if adding `extra` series would push the load factor over one half.
    pub(crate) fn ensure_capacity(&self, extra: u64) -> Result<(), SegmentError> {
        let m = self.seg.map();
        let (_, cap) = geometry(m)?;
        let live = m.u64_unchecked(H_SERIES_LIVE).load(Ordering::Relaxed);
        let tomb = m.u64_unchecked(H_SERIES_TOMB).load(Ordering::Relaxed);
        if (live + tomb + extra) * 2 > cap {
            self.rehash((live + extra) * 4)?;
        }
        Ok(())
    }

    /// Rebuilds the index with room for `want` slots (at least), dropping tombstones.
    pub(crate) fn rehash(&self, want: u64) -> Result<(), SegmentError> {
        let m = self.seg.map();
        let (old_off, old_cap) = geometry(m)?;
        let log2 = want
            .max(1 << INITIAL_CAP_LOG2)
            .next_power_of_two()
            .trailing_zeros() as u64;
        if log2 > 28 {
            return Err(SegmentError::Full(
                "series index would exceed 2^28 slots".into(),
            ));
        }
        let cap = 1u64 << log2;
        let new_off = self.alloc(cap * 8)?;
        let mask = cap - 1;
        let mut live = 0;
        for i in 0..old_cap {
            let v = m.u64_unchecked(old_off + 8 * i).load(Ordering::Acquire);
            if v <= SLOT_TOMBSTONE {
                continue;
            }
            let head = entry_head(m, v)?;
            let mut j = head.hash & mask;
            while m.u64_unchecked(new_off + 8 * j).load(Ordering::Relaxed) != SLOT_EMPTY {
                j = (j + 1) & mask;
            }
            m.u64_unchecked(new_off + 8 * j).store(v, Ordering::Relaxed);
            live += 1;
        }
        // Commit: publish the new table in one store, then retire the old one. Readers that
        // may still walk the old table see the sequence change and retry.
        let seq = m.u64_unchecked(H_SEQ);
        let odd = seq.load(Ordering::Relaxed) & 1 == 1;
        if !odd {
            seq.fetch_add(1, Ordering::AcqRel);
        }
        super::crash_point("rehash:built");
        m.u64_unchecked(H_INDEX_OFF)
            .store(pack(new_off, log2), Ordering::Release);
        super::crash_point("rehash:published");
        m.u64_unchecked(H_INDEX_CAP).store(cap, Ordering::Relaxed);
        m.u64_unchecked(H_SERIES_LIVE)
            .store(live, Ordering::Relaxed);
        m.u64_unchecked(H_SERIES_TOMB).store(0, Ordering::Relaxed);
        self.free(old_off)?;
        if !odd {
            seq.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_sorted_and_cut() {
        let long = "é".repeat(600);
        let mut enc = Vec::new();
        encode_labels(&[("z", "1"), ("a", &long)], None, &mut enc).unwrap();
        let dec = decode_labels(&enc).unwrap();
        assert_eq!(dec[0].0, "a");
        assert!(dec[0].1.len() <= MAX_LABEL_VALUE);
        assert_eq!(dec[1], ("z".into(), "1".into()));
        assert!(encode_labels(&[("a", "1"), ("a", "2")], None, &mut enc).is_err());
        assert!(encode_labels(&[("worker", "1")], Some("worker"), &mut enc).is_err());
        assert!(encode_labels(&[("bad-name", "1")], None, &mut enc).is_err());
        assert!(decode_labels(&[5, 0, b'a']).is_err());
    }
}
