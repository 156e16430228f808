//! Checked atomic access to the mapped segment.
//!
//! The file is mapped once with the segment's full reservation (`max_bytes`), so growing the
//! file never moves a mapping; only offsets below the header's committed size are touched, and
//! those are always backed by the file. All shared words are read and written with atomics;
//! no Rust reference to a plain byte of shared memory is ever created.

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

use super::layout::*;
use super::SegmentError;

/// A mapped segment file.
pub(crate) struct Mapping {
    map: MmapRaw,
    len: u64,
    /// The mapped file, to check its size.
    file: File,
    /// A size the file was seen to have (it never shrinks unless damaged from outside).
    backed: AtomicU64,
}

impl Mapping {
    /// Maps `len` bytes of `file` shared and writable. `len` may exceed the current file size.
    pub fn new(file: &File, len: u64) -> std::io::Result<Mapping> {
        let map = MmapOptions::new().len(len as usize).map_raw(file)?;
        let file = file.try_clone()?;
        let backed = AtomicU64::new(file.metadata()?.len());
        Ok(Mapping {
            map,
            len,
            file,
            backed,
        })
    }

    /// Length of the mapping (the segment's reservation).
    pub fn len(&self) -> u64 {
        self.len
    }

    fn ptr(&self, off: u64) -> *mut u8 {
        // Offsets are checked by the callers against `len`.
        self.map.as_mut_ptr().wrapping_add(off as usize)
    }

    /// The 64-bit word at `off` without checking it against the committed size. Only for header
    /// fields and offsets already validated.
    pub fn u64_unchecked(&self, off: u64) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "segment offset {off} out of mapping"
        );
        // SAFETY: the offset is 8-aligned (the mapping itself is page-aligned) and inside the
        // mapping, which lives as long as `self`. Callers only pass offsets below the committed
        // file size, so the page is backed by the file. AtomicU64 has the layout of u64 and all
        // processes access this word only through atomics.
        unsafe { &*(self.ptr(off) as *const AtomicU64) }
    }

    /// The 32-bit word at `off` without checking it against the committed size.
    pub fn u32_unchecked(&self, off: u64) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "segment offset {off} out of mapping"
        );
        // SAFETY: as in `u64_unchecked`, with 4-byte alignment.
        unsafe { &*(self.ptr(off) as *const AtomicU32) }
    }

    /// Committed file size as published in the header, but never more than the file was seen
    /// to have: a damaged header word must not let a bounds check pass for pages beyond the end
    /// of the file (touching them raises SIGBUS). When the header names more than was seen
    /// (another process grew the file), the file's size is checked once.
    pub fn committed(&self) -> u64 {
        let header = self
            .u64_unchecked(H_FILE_SIZE)
            .load(Ordering::Acquire)
            .min(self.len);
        let backed = self.backed.load(Ordering::Acquire);
        if header <= backed {
            return header;
        }
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        self.backed.fetch_max(size, Ordering::AcqRel);
        header.min(size)
    }

    /// The 64-bit word at `off`, checked against the committed size and alignment. Use this for
    /// every offset read out of the file.
    pub fn u64(&self, off: u64) -> Result<&AtomicU64, SegmentError> {
        if off % 8 != 0 || off.checked_add(8).is_none_or(|end| end > self.committed()) {
            return Err(SegmentError::corrupt(format!(
                "word offset {off} out of bounds"
            )));
        }
        Ok(self.u64_unchecked(off))
    }

    /// Checks that `len` bytes starting at 8-aligned `off` lie below the committed size.
    pub fn check_range(&self, off: u64, len: u64) -> Result<(), SegmentError> {
        if off % 8 != 0
            || off
                .checked_add(len)
                .is_none_or(|end| end > self.committed())
        {
            return Err(SegmentError::corrupt(format!(
                "range {off}+{len} out of bounds"
            )));
        }
        Ok(())
    }

    /// Copies `len` bytes from 8-aligned `off` into `out`, reading whole words atomically.
    pub fn read_bytes(&self, off: u64, len: usize, out: &mut Vec<u8>) -> Result<(), SegmentError> {
        let padded = align8(len as u64);
        self.check_range(off, padded)?;
        out.clear();
        out.resize(padded as usize, 0);
        for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
            let word = self
                .u64_unchecked(off + 8 * i as u64)
                .load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out.truncate(len);
        Ok(())
    }

    /// Writes `bytes` at 8-aligned `off` word by word (zero-padding the last word).
    pub fn write_bytes(&self, off: u64, bytes: &[u8]) -> Result<(), SegmentError> {
        self.check_range(off, align8(bytes.len() as u64))?;
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.u64_unchecked(off + 8 * i as u64)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Zeroes `len` bytes (rounded up to words) at 8-aligned `off`.
    pub fn zero(&self, off: u64, len: u64) -> Result<(), SegmentError> {
        self.check_range(off, align8(len))?;
        let mut i = 0;
        while i < len {
            self.u64_unchecked(off + i).store(0, Ordering::Relaxed);
            i += 8;
        }
        Ok(())
    }

    /// Adds `v` to the f64 stored as bits in `cell` (compare-and-swap loop).
    pub fn add_f64(cell: &AtomicU64, v: f64) {
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(cur) + v).to_bits();
            match cell.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Stores `max(current, v)` into the f64 stored as bits in `cell`.
    pub fn max_f64(cell: &AtomicU64, v: f64) {
        let mut cur = cell.load(Ordering::Relaxed);
        while f64::from_bits(cur) < v || f64::from_bits(cur).is_nan() {
            match cell.compare_exchange_weak(cur, v.to_bits(), Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}
