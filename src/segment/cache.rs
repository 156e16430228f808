//! A small shared cache of byte blobs (serialized collector results) with single-flight
//! refresh, so N FastCGI workers and CGI processes share one database query per TTL.
//!
//! Each key has two internal cells: the offset of its current blob block (length, store time,
//! bytes) and a refresh lease (Unix milliseconds until which one process owns the refresh).
//! Storing allocates a new block under the semaphore, publishes it with one store and frees the
//! old one inside a sequence-counter window, so lock-free readers either see the old blob or
//! the new one, never a torn one. Taking the lease is one compare-and-swap.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::family::FamilyDef;
use super::layout::*;
use super::writer::Handle;
use super::{now_unix, Segment, SegmentError, WorkerKind, Writer};

fn cache_family() -> FamilyDef {
    FamilyDef::internal(
        "otrs_exporter_internal_cache",
        "Cached collector results: blob offsets and refresh leases (internal).",
    )
}

/// Largest blob stored.
pub const MAX_BLOB: usize = 16 << 20;

/// A cached blob and when it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The bytes as stored.
    pub bytes: Vec<u8>,
    /// Unix seconds of the store.
    pub stored_at: f64,
}

impl Cached {
    /// Seconds since the blob was stored.
    pub fn age(&self) -> f64 {
        (now_unix() - self.stored_at).max(0.0)
    }
}

/// The cells of one cache key in one segment.
pub struct CacheSlot {
    seg: Segment,
    blob: Handle,
    lease: Handle,
}

impl Segment {
    /// The cache cells for `key` (created on first use).
    pub fn cache_slot(&self, key: &str) -> Result<CacheSlot, SegmentError> {
        let mut w = Writer::for_slot(self, WorkerKind::Cli, WORKER_NONE);
        let blob = w.handle(&cache_family(), &[("key", key), ("field", "blob")])?;
        let lease = w.handle(&cache_family(), &[("key", key), ("field", "lease")])?;
        Ok(CacheSlot {
            seg: self.clone(),
            blob,
            lease,
        })
    }
}

impl CacheSlot {
    /// The current blob, if any was stored.
    pub fn get(&self) -> Result<Option<Cached>, SegmentError> {
        let m = self.seg.map();
        self.seg.with_seq(|| {
            let off = self.blob.raw().load(Ordering::Acquire);
            if off == 0 {
                return Ok(None);
            }
            let len = m.u64(off)?.load(Ordering::Relaxed) as usize;
            if len > MAX_BLOB {
                return Err(SegmentError::corrupt(format!("cached blob of {len} bytes")));
            }
            let stored_at = f64::from_bits(m.u64(off + 8)?.load(Ordering::Relaxed));
            let mut bytes = Vec::new();
            m.read_bytes(off + 16, len, &mut bytes)?;
            Ok(Some(Cached { bytes, stored_at }))
        })
    }

    /// Stores `bytes` as the current blob (replacing and freeing the previous one).
    pub fn put(&self, bytes: &[u8]) -> Result<(), SegmentError> {
        if bytes.len() > MAX_BLOB {
            return Err(SegmentError::Invalid(format!(
                "cached result of {} bytes exceeds {MAX_BLOB}",
                bytes.len()
            )));
        }
        let locked = self.seg.lock()?;
        let m = self.seg.map();
        let block = locked.alloc(16 + align8(bytes.len() as u64))?;
        m.u64(block)?.store(bytes.len() as u64, Ordering::Relaxed);
        m.u64(block + 8)?
            .store(now_unix().to_bits(), Ordering::Relaxed);
        m.write_bytes(block + 16, bytes)?;
        // Publish, then retire the old block inside a sequence window (readers retry).
        let seq = m.u64_unchecked(H_SEQ);
        seq.fetch_add(1, Ordering::AcqRel);
        let old = self.blob.raw().swap(block, Ordering::AcqRel);
        let freed = if old != 0 { locked.free(old) } else { Ok(()) };
        seq.fetch_add(1, Ordering::AcqRel);
        freed
    }

    /// Tries to become the one process that refreshes this key for up to `lease`; true if it
    /// did. A lease that expired (its holder died or hung) can be taken over.
    pub fn try_lease(&self, lease: Duration) -> bool {
        let now = (now_unix() * 1000.0) as u64;
        let cell = self.lease.raw();
        let cur = cell.load(Ordering::Acquire);
        if cur > now {
            return false;
        }
        cell.compare_exchange(
            cur,
            now + lease.as_millis() as u64,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
    }

    /// Gives the lease back (after storing a fresh result, or failing).
    pub fn release(&self) {
        self.lease.raw().store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::SegmentOptions;

    #[test]
    fn put_get_replace_and_lease() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Segment::open(&SegmentOptions::new(dir.path().join("seg"))).unwrap();
        let slot = seg.cache_slot("tickets").unwrap();
        assert_eq!(slot.get().unwrap(), None);
        slot.put(b"first").unwrap();
        assert_eq!(slot.get().unwrap().unwrap().bytes, b"first");
        let used = seg.stats().used_bytes;
        for i in 0..100 {
            slot.put(format!("value {i}").as_bytes()).unwrap();
        }
        let got = seg.cache_slot("tickets").unwrap().get().unwrap().unwrap();
        assert_eq!(got.bytes, b"value 99");
        assert!(got.age() < 5.0);
        assert!(seg.stats().used_bytes <= used + 256, "old blobs are freed");
        let other = seg.cache_slot("tickets").unwrap();
        assert!(slot.try_lease(Duration::from_secs(10)));
        assert!(!other.try_lease(Duration::from_secs(10)), "single flight");
        slot.release();
        assert!(other.try_lease(Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            slot.try_lease(Duration::from_secs(1)),
            "an expired lease is taken over"
        );
        // Hidden: never rendered.
        assert!(seg.read(&Default::default()).unwrap().is_empty());
    }
}
