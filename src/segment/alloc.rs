//! Block allocator for the arena: power-of-two size classes, free lists, and file growth.
//!
//! Runs only under the semaphore. Each block starts with its size class; freed blocks are pushed
//! on a per-class free list whose head lives in the header. Every step commits with one store, so
//! a holder killed mid-way at worst leaks one block.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use super::layout::*;
use super::mem::Mapping;
use super::{Locked, SegmentError};

/// Makes sure `len` bytes of `file` are backed by storage (so later writes through the mapping
/// cannot fault on a full filesystem), growing the file if needed.
pub(crate) fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    // SAFETY: plain system call on a valid descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(len.max(file.metadata()?.len())),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

fn class_for(total: u64) -> Option<u64> {
    let mut class = 0;
    while (MIN_BLOCK << class) < total {
        class += 1;
        if class >= SIZE_CLASSES {
            return None;
        }
    }
    Some(class)
}

/// Size of a block of `class`, header included.
pub(crate) fn class_size(class: u64) -> u64 {
    MIN_BLOCK << class
}

impl Locked<'_> {
    /// Allocates a zeroed block with at least `payload` usable bytes; returns the payload offset.
    pub(crate) fn alloc(&self, payload: u64) -> Result<u64, SegmentError> {
        let m = self.seg.map();
        let class = class_for(payload + BLOCK_HEADER)
            .ok_or_else(|| SegmentError::Invalid(format!("allocation of {payload} bytes")))?;
        let size = class_size(class);
        let head_cell = m.u64_unchecked(H_FREE_HEADS + 8 * class);
        let head = head_cell.load(Ordering::Acquire);
        if head != 0 {
            if head < BLOCK_HEADER {
                return Err(SegmentError::corrupt(format!("free list head {head}")));
            }
            m.check_range(head - BLOCK_HEADER, size)?;
            if m.u64(head - BLOCK_HEADER)?.load(Ordering::Relaxed) != class {
                return Err(SegmentError::corrupt(format!(
                    "free block {head} has a wrong class"
                )));
            }
            let next = m.u64(head)?.load(Ordering::Relaxed);
            head_cell.store(next, Ordering::Release);
            m.u64_unchecked(H_FREE_BYTES)
                .fetch_sub(size, Ordering::Relaxed);
            m.zero(head, size - BLOCK_HEADER)?;
            return Ok(head);
        }
        let bump = m.u64_unchecked(H_BUMP).load(Ordering::Acquire);
        let start = bump.next_multiple_of(MIN_BLOCK);
        let end = start + size;
        if end > m.committed() {
            self.grow(end)?;
        }
        m.u64(start)?.store(class, Ordering::Relaxed);
        m.zero(start + BLOCK_HEADER, size - BLOCK_HEADER)?;
        m.u64_unchecked(H_BUMP).store(end, Ordering::Release);
        Ok(start + BLOCK_HEADER)
    }

    /// Returns a block to its free list.
    pub(crate) fn free(&self, payload: u64) -> Result<(), SegmentError> {
        let m = self.seg.map();
        let class = m.u64(payload - BLOCK_HEADER)?.load(Ordering::Relaxed);
        if class >= SIZE_CLASSES {
            return Err(SegmentError::corrupt(format!(
                "block {payload} has class {class}"
            )));
        }
        m.check_range(payload - BLOCK_HEADER, class_size(class))?;
        let head_cell = m.u64_unchecked(H_FREE_HEADS + 8 * class);
        m.u64(payload)?
            .store(head_cell.load(Ordering::Relaxed), Ordering::Relaxed);
        head_cell.store(payload, Ordering::Release);
        m.u64_unchecked(H_FREE_BYTES)
            .fetch_add(class_size(class), Ordering::Relaxed);
        Ok(())
    }

    /// Grows the file so that at least `needed` bytes are committed.
    fn grow(&self, needed: u64) -> Result<(), SegmentError> {
        let m: &Mapping = self.seg.map();
        let max = m.len();
        if needed > max {
            return Err(SegmentError::Full(format!(
                "{} needs {needed} bytes, the reservation (segment.max_bytes) is {max}",
                self.seg.path().display()
            )));
        }
        let current = m.committed();
        let target = (current * 2).max(needed).next_multiple_of(1 << 20).min(max);
        reserve(&self.seg.inner.file, target).map_err(|e| {
            SegmentError::Full(format!(
                "cannot grow {} to {target} bytes: {e}",
                self.seg.path().display()
            ))
        })?;
        m.u64_unchecked(H_FILE_SIZE)
            .store(target, Ordering::Release);
        log::debug!("segment grew from {current} to {target} bytes");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_for(1), Some(0));
        assert_eq!(class_for(64), Some(0));
        assert_eq!(class_for(65), Some(1));
        assert_eq!(
            class_for(MIN_BLOCK << (SIZE_CLASSES - 1)),
            Some(SIZE_CLASSES - 1)
        );
        assert_eq!(class_for((MIN_BLOCK << (SIZE_CLASSES - 1)) + 1), None);
    }
}
