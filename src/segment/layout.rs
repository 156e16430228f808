//! Byte layout of the segment file: header fields, regions and record shapes.
//!
//! Everything in the file is addressed by byte offsets from the start of the file, never by
//! pointers, and every shared field is an aligned 32- or 64-bit word accessed with atomics.
//!
//! ```text
//! 0        header (one page): identity, sizes, bump pointer, free lists, GC journal
//! 4096     family directory: FAMILY_CAPACITY offsets of immutable family records
//! 8192     worker table: worker_slots × WORKER_SLOT_BYTES
//! ...      arena: blocks handed out by the allocator (series entries, hash index, families)
//! ```

/// File magic: the first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"OTRSXSEG";
/// Layout version; a file with another version is recreated.
pub const LAYOUT_VERSION: u32 = 2;
/// Size of the header page.
pub const HEADER_BYTES: u64 = 4096;

// Static header fields (written once at creation, covered by the checksum).
/// `[u8; 8]` magic.
pub const H_MAGIC: u64 = 0;
/// `u32` layout version.
pub const H_VERSION: u64 = 8;
/// `u32` header size.
pub const H_HEADER_SIZE: u64 = 12;
/// `u64` bytes reserved in every process' address space; the file never grows beyond it.
pub const H_MAX_BYTES: u64 = 16;
/// `u64` creation time, Unix seconds.
pub const H_CREATED: u64 = 24;
/// `u32` number of worker slots.
pub const H_WORKER_SLOTS: u64 = 32;
/// `u32` SysV semaphore key used by the creator (diagnostics only).
pub const H_SEM_KEY: u64 = 36;
/// `u64` checksum of bytes `0..H_CHECKSUM`.
pub const H_CHECKSUM: u64 = 40;

// Dynamic header fields (atomics).
/// Committed file size: every offset below it is backed by the file.
pub const H_FILE_SIZE: u64 = 64;
/// Non-zero once a newer file has replaced this one at the same path.
pub const H_SUPERSEDED: u64 = 72;
/// Sequence counter; odd while a structural change that reuses memory is in progress.
pub const H_SEQ: u64 = 80;
/// Next unallocated byte of the arena.
pub const H_BUMP: u64 = 88;
/// Offset of the current hash index block (payload start).
pub const H_INDEX_OFF: u64 = 96;
/// Capacity (slots) of the current hash index; a power of two.
pub const H_INDEX_CAP: u64 = 104;
/// Series currently linked in the index.
pub const H_SERIES_LIVE: u64 = 112;
/// Tombstones in the current index.
pub const H_SERIES_TOMB: u64 = 120;
/// Number of families in the directory.
pub const H_FAMILIES: u64 = 128;
/// Unix seconds of the last completed GC.
pub const H_LAST_GC: u64 = 136;
/// Series folded into `worker="exited"` since creation.
pub const H_FOLDED_TOTAL: u64 = 144;
/// Bytes currently on free lists.
pub const H_FREE_BYTES: u64 = 152;
/// Writes that were dropped because the segment was full.
pub const H_WRITE_FAILURES: u64 = 160;
/// Journal recoveries performed (a holder died mid-change).
pub const H_RECOVERIES: u64 = 168;
/// Free list heads, one per size class.
pub const H_FREE_HEADS: u64 = 256;
/// Number of allocator size classes (64 B << class).
pub const SIZE_CLASSES: u64 = 24;

/// GC journal (undo/redo record of one fold), see `gc.rs`.
pub const H_JOURNAL: u64 = 512;
/// Journal state word: 0 idle, [`JOURNAL_FOLD`] while folding one series.
pub const J_STATE: u64 = H_JOURNAL;
/// Offset of the series being folded.
pub const J_SRC: u64 = H_JOURNAL + 8;
/// Offset of the index slot that links the source series.
pub const J_SLOT: u64 = H_JOURNAL + 16;
/// Offset of the destination (`exited`) series.
pub const J_DST: u64 = H_JOURNAL + 24;
/// Number of cells folded.
pub const J_CELLS: u64 = H_JOURNAL + 32;
/// Offset of the block being linked by an insert (freed on recovery if unlinked).
pub const J_PENDING_BLOCK: u64 = H_JOURNAL + 40;
/// Index slot the pending block is meant for.
pub const J_PENDING_SLOT: u64 = H_JOURNAL + 48;
/// Old destination cell values.
pub const J_OLD: u64 = H_JOURNAL + 64;
/// Source cell values.
pub const J_ADD: u64 = J_OLD + 8 * MAX_CELLS;
/// Journal state while a fold is in progress.
pub const JOURNAL_FOLD: u64 = 1;

/// Maximum cells of one series (histogram: sum + buckets + `+Inf`).
pub const MAX_CELLS: u64 = 48;
/// Maximum finite histogram buckets.
pub const MAX_BUCKETS: usize = (MAX_CELLS - 2) as usize;

/// Start of the family directory.
pub const FAMILY_DIR: u64 = HEADER_BYTES;
/// Families the directory can hold.
pub const FAMILY_CAPACITY: u64 = 512;
/// Start of the worker table.
pub const WORKERS: u64 = FAMILY_DIR + FAMILY_CAPACITY * 8;

/// Bytes per worker slot.
pub const WORKER_SLOT_BYTES: u64 = 48;
/// Worker slot: `u32` state ([`SLOT_FREE`], [`SLOT_LIVE`]).
pub const W_STATE: u64 = 0;
/// Worker slot: `u32` kind.
pub const W_KIND: u64 = 4;
/// Worker slot: `u64` pid.
pub const W_PID: u64 = 8;
/// Worker slot: `u64` process start time in clock ticks since boot.
pub const W_START: u64 = 16;
/// Worker slot: `u64` Unix seconds when claimed.
pub const W_CLAIMED: u64 = 24;
/// Worker slot: `u64` Unix seconds when GC first saw the process gone (0 = alive).
pub const W_DEAD_SINCE: u64 = 32;
/// Slot is free.
pub const SLOT_FREE: u32 = 0;
/// Slot belongs to a process (alive, or dead but not yet folded).
pub const SLOT_LIVE: u32 = 1;
/// Slot index reserved for series folded from exited workers.
pub const WORKER_EXITED: u32 = 0;
/// Slot index shared by processes that found the worker table full.
pub const WORKER_OVERFLOW: u32 = 1;
/// First slot index handed to processes.
pub const FIRST_PROCESS_SLOT: u32 = 2;
/// Worker id of series that belong to no worker (no `worker` label).
pub const WORKER_NONE: u32 = u32::MAX;

/// Allocator block header: `u64` size class; the payload starts after it.
pub const BLOCK_HEADER: u64 = 8;
/// Smallest block, header included.
pub const MIN_BLOCK: u64 = 64;

/// Series entry: `u32` family index.
pub const E_FAMILY: u64 = 0;
/// Series entry: `u32` worker slot (or [`WORKER_NONE`]).
pub const E_WORKER: u64 = 4;
/// Series entry: `u32` number of value cells.
pub const E_CELLS: u64 = 8;
/// Series entry: `u32` length of the encoded labels.
pub const E_LABELS_LEN: u64 = 12;
/// Series entry: `u64` key hash.
pub const E_HASH: u64 = 16;
/// Series entry: `u64` creation time (f64 Unix seconds, as bits).
pub const E_CREATED: u64 = 24;
/// Series entry: first value cell.
pub const E_VALUES: u64 = 32;

/// Index slot value of an empty slot.
pub const SLOT_EMPTY: u64 = 0;
/// Index slot value of a deleted entry.
pub const SLOT_TOMBSTONE: u64 = 1;

/// Family record: `u8` kind, `u8` gauge aggregation, `u8` flags, `u8` bucket count,
/// `u16` name length, `u16` help length, then bounds (f64) and name and help bytes.
pub const F_META: u64 = 0;
/// Family record: first bucket bound.
pub const F_BOUNDS: u64 = 8;
/// Family flag: series carry a `worker` label.
pub const FLAG_PER_WORKER: u8 = 1;
/// Family flag: internal state, never rendered (log cursors, label registries).
pub const FLAG_HIDDEN: u8 = 2;

/// Longest label value stored; longer values are cut at a character boundary.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Most labels on one series.
pub const MAX_LABELS: usize = 16;

/// 64-bit FNV-1a: a fixed hash that every build of the exporter computes the same way, so
/// processes running different binaries agree on where a series lives.
pub fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a offset basis.
pub const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Rounds `n` up to a multiple of 8.
pub fn align8(n: u64) -> u64 {
    (n + 7) & !7
}
