//! The shared memory segment: per-worker counters, gauges and histograms shared by every
//! process of the exporter (FastCGI workers, CGI invocations, log ingesters, console commands).
//!
//! Design, in short (see `README.md`, "Shared segment"):
//! - one file, mapped by every process with the segment's full reservation, so growth never
//!   moves a mapping; the file grows by `fallocate` and only ever grows;
//! - offsets, never pointers; every shared word is atomic; hot-path updates are lock-free
//!   atomic operations on cells a process has resolved once;
//! - a SysV semaphore with `SEM_UNDO` serializes structural changes (allocating a series,
//!   growing, GC, clear); every change commits with one atomic store, and the one multi-step
//!   change (folding a dead worker's series) keeps an undo/redo journal, so a holder killed at
//!   any instant leaves either the old or the new state, never a torn one;
//! - readers never lock: a sequence counter tells them to retry when memory was reused under
//!   them;
//! - series are keyed by worker slot, and a slot by PID *and* process start time; GC folds the
//!   counters and histograms of exited workers into `worker="exited"` so sums never decrease.

mod alloc;
mod cache;
mod dump;
mod family;
mod gc;
mod index;
pub mod layout;
mod mem;
mod read;
mod registry;
pub mod semaphore;
mod worker;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use cache::{CacheSlot, Cached, MAX_BLOB};
pub use dump::{Dump, DumpSeries, DumpWorker};
pub use family::{FamilyDef, GaugeAgg};
pub use gc::GcReport;
pub use read::{ReadCache, ReadOptions};
pub use worker::{process_start_ticks, WorkerKind};
pub use writer::{Handle, Writer};

use layout::*;
use mem::Mapping;
use semaphore::{LockError, SemGuard, Semaphore};

/// Where the segment lives and how big it may get.
#[derive(Debug, Clone)]
pub struct SegmentOptions {
    /// Path of the segment file (its directory is created if missing).
    pub path: PathBuf,
    /// Bytes reserved in every process' address space; the file never grows beyond this.
    pub max_bytes: u64,
    /// Initial file size.
    pub initial_bytes: u64,
    /// Number of worker slots.
    pub worker_slots: u32,
    /// Group that should own the file and the semaphore.
    pub gid: Option<u32>,
    /// Permission bits of the file and semaphore (never world-writable).
    pub mode: u32,
    /// How long to wait for the semaphore.
    pub lock_timeout: Duration,
}

impl SegmentOptions {
    /// Options with defaults for everything but the path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SegmentOptions {
            path: path.into(),
            max_bytes: 256 << 20,
            initial_bytes: 1 << 20,
            worker_slots: 1024,
            gid: None,
            mode: 0o660,
            lock_timeout: Duration::from_secs(1),
        }
    }
}

/// Errors of the segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The file's contents are inconsistent; the segment must be recreated.
    #[error("segment is corrupt: {0}")]
    Corrupt(String),
    /// The segment reached its maximum size or the filesystem is full.
    #[error("segment is full: {0}")]
    Full(String),
    /// The semaphore could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A metric family was registered with another type or other buckets.
    #[error("metric family {0} is already registered with a different type or buckets; run `otrs-exporter segment clear` after changing buckets")]
    FamilyConflict(String),
    /// Invalid input from the caller (bad label names, too many buckets...).
    #[error("{0}")]
    Invalid(String),
    /// A file system or mapping error.
    #[error("segment {}: {}{}", .path.display(), .source, io_hint(.source))]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What to do about a file system error, appended to its message.
fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "; the exporter's user needs read and write access to the segment file and its \
             directory: set segment.group to the web server's group (and the directory's group)"
        }
        Some(libc::EROFS) => "; segment.path must be on a writable filesystem (e.g. /dev/shm)",
        Some(libc::ENOSPC) => "; free space on that filesystem or lower segment.max_bytes",
        _ => "",
    }
}

impl SegmentError {
    pub(crate) fn corrupt(msg: impl Into<String>) -> Self {
        SegmentError::Corrupt(msg.into())
    }
}

/// An open segment. Cheap to clone; clones share the mapping and the semaphore.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    map: Arc<Mapping>,
    file: File,
    dev_ino: (u64, u64),
    opts: SegmentOptions,
    sem: Mutex<Semaphore>,
    /// Decoded family records, by directory index (immutable once published).
    families: Mutex<Vec<Arc<family::FamilyRec>>>,
    /// Worker slots, read once when the file was validated: the header word in shared memory
    /// could be damaged later, and loops over the worker table must stay inside it.
    worker_slots: u32,
}

/// Holding this means holding the semaphore; structural changes take a `&Locked`.
pub(crate) struct Locked<'a> {
    seg: &'a Segment,
    _guard: SemGuard,
}

/// The current time in Unix seconds.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Why an existing file cannot be used.
enum Unusable {
    Missing,
    Invalid(String),
    /// The file exists but cannot be opened (permissions, read-only filesystem): not damage,
    /// so it is reported and never replaced.
    Io(io::Error),
}

impl Segment {
    /// Opens the segment at `opts.path`, creating it if missing and recreating it (with a
    /// logged error) if it is corrupt, truncated or of another layout version.
    pub fn open(opts: &SegmentOptions) -> Result<Segment, SegmentError> {
        if opts.mode & 0o002 != 0 {
            return Err(SegmentError::Invalid(format!(
                "segment mode {:o} would let any user write the segment",
                opts.mode
            )));
        }
        if let Some(dir) = opts.path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                fs::create_dir_all(dir).map_err(io_err(dir))?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o2770 & !0o002));
                if let Some(gid) = opts.gid {
                    let _ = std::os::unix::fs::chown(dir, None, Some(gid));
                }
            }
        }
        let mut sem = Semaphore::open(semaphore::key_for_path(&opts.path), opts.mode, opts.gid)?;
        // Fast path: a valid file exists.
        match Self::try_existing(opts) {
            Ok((file, max)) => return Self::attach(file, max, opts, sem),
            Err(Unusable::Missing) => {}
            Err(Unusable::Invalid(_)) => {}
            Err(Unusable::Io(e)) => return Err(io_err(&opts.path)(e)),
        }
        // Slow path under the semaphore: check again, then create or recreate.
        let guard = sem.lock(opts.lock_timeout)?;
        let result = match Self::try_existing(opts) {
            Ok((file, max)) => Ok((file, max)),
            Err(Unusable::Io(e)) => Err(io_err(&opts.path)(e)),
            Err(why) => {
                if let Unusable::Invalid(reason) = &why {
                    log::error!(
                        "segment {} is unusable ({reason}); recreating it, previous values are lost",
                        opts.path.display()
                    );
                    mark_superseded(&opts.path);
                }
                Self::create_file(opts, sem.key()).map(|f| (f, opts.max_bytes))
            }
        };
        drop(guard);
        let (file, max) = result?;
        Self::attach(file, max, opts, sem)
    }

    /// Validates the file at the path without mapping it (reads with `pread`, so a truncated
    /// file cannot fault).
    /// Checks the segment file at `path` without creating, locking or changing anything (for
    /// `selftest`): `Ok` with its reserved size if it is a valid segment of this version.
    pub fn validate(path: &Path) -> Result<u64, String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        validate_file(&file)
    }

    fn try_existing(opts: &SegmentOptions) -> Result<(File, u64), Unusable> {
        let file = match OpenOptions::new().read(true).write(true).open(&opts.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Io(e)),
        };
        let max = validate_file(&file).map_err(Unusable::Invalid)?;
        Ok((file, max))
    }

    fn attach(
        file: File,
        max: u64,
        opts: &SegmentOptions,
        sem: Semaphore,
    ) -> Result<Segment, SegmentError> {
        let meta = file.metadata().map_err(io_err(&opts.path))?;
        let map = Mapping::new(&file, max).map_err(io_err(&opts.path))?;
        let worker_slots = map.u32_unchecked(H_WORKER_SLOTS).load(Ordering::Relaxed);
        if !(16..=65536).contains(&worker_slots)
            || WORKERS + u64::from(worker_slots) * WORKER_SLOT_BYTES > map.committed()
        {
            return Err(SegmentError::corrupt(format!(
                "implausible worker slot count {worker_slots}"
            )));
        }
        Ok(Segment {
            inner: Arc::new(Inner {
                map: Arc::new(map),
                file,
                dev_ino: (meta.dev(), meta.ino()),
                opts: opts.clone(),
                sem: Mutex::new(sem),
                families: Mutex::new(Vec::new()),
                worker_slots,
            }),
        })
    }

    /// Writes a fresh segment next to the path and renames it into place.
    fn create_file(opts: &SegmentOptions, sem_key: libc::key_t) -> Result<File, SegmentError> {
        let slots = opts.worker_slots.clamp(16, 65536) as u64;
        let arena = align_up(WORKERS + slots * WORKER_SLOT_BYTES, 64);
        let max = opts.max_bytes.max(1 << 20);
        let initial = align_up(
            opts.initial_bytes.max(64 << 10).max(arena + (64 << 10)),
            4096,
        )
        .min(max);
        if initial > max || arena + (16 << 10) > max {
            return Err(SegmentError::Invalid(format!(
                "segment max_bytes {max} is too small for {slots} worker slots"
            )));
        }
        let tmp = opts
            .path
            .with_extension(format!("new.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(opts.mode)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let cleanup = |e: SegmentError| {
            let _ = fs::remove_file(&tmp);
            e
        };
        // Exact mode regardless of umask, and the configured group.
        file.set_permissions(fs::Permissions::from_mode(opts.mode))
            .map_err(io_err(&tmp))
            .map_err(cleanup)?;
        if let Some(gid) = opts.gid {
            std::os::unix::fs::fchown(&file, None, Some(gid))
                .map_err(io_err(&tmp))
                .map_err(cleanup)?;
        }
        alloc::reserve(&file, initial)
            .map_err(|e| SegmentError::Full(format!("{}: {e}", tmp.display())))
            .map_err(cleanup)?;
        // Static header.
        let mut hdr = [0u8; 64];
        hdr[0..8].copy_from_slice(&MAGIC);
        hdr[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
        hdr[12..16].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        hdr[16..24].copy_from_slice(&max.to_le_bytes());
        hdr[24..32].copy_from_slice(&(now_unix() as u64).to_le_bytes());
        hdr[32..36].copy_from_slice(&(slots as u32).to_le_bytes());
        hdr[36..40].copy_from_slice(&(sem_key as u32).to_le_bytes());
        let sum = fnv1a(FNV_SEED, &hdr[..H_CHECKSUM as usize]);
        hdr[40..48].copy_from_slice(&sum.to_le_bytes());
        file.write_all_at(&hdr, 0)
            .map_err(io_err(&tmp))
            .map_err(cleanup)?;
        let map = Mapping::new(&file, max)
            .map_err(io_err(&tmp))
            .map_err(cleanup)?;
        map.u64_unchecked(H_FILE_SIZE)
            .store(initial, Ordering::Release);
        map.u64_unchecked(H_BUMP).store(arena, Ordering::Release);
        index::init(&map).map_err(cleanup)?;
        drop(map);
        fs::rename(&tmp, &opts.path)
            .map_err(io_err(&opts.path))
            .map_err(cleanup)?;
        Ok(file)
    }

    /// The options this segment was opened with.
    pub fn options(&self) -> &SegmentOptions {
        &self.inner.opts
    }

    pub(crate) fn map(&self) -> &Arc<Mapping> {
        &self.inner.map
    }

    /// Whether another process replaced the file (clear, or recovery from corruption); a stale
    /// segment should be reopened with [`Segment::reopen`].
    pub fn is_stale(&self) -> bool {
        if self
            .inner
            .map
            .u64_unchecked(H_SUPERSEDED)
            .load(Ordering::Acquire)
            != 0
        {
            return true;
        }
        match fs::metadata(&self.inner.opts.path) {
            Ok(m) => (m.dev(), m.ino()) != self.inner.dev_ino,
            Err(_) => true,
        }
    }

    /// Opens the segment at the same path again.
    pub fn reopen(&self) -> Result<Segment, SegmentError> {
        Segment::open(&self.inner.opts)
    }

    /// Checks the file against its header (size not shrunk under us, header intact). Call before
    /// reading a segment that has been open for a while.
    pub fn check(&self) -> Result<(), SegmentError> {
        let max = validate_file(&self.inner.file).map_err(SegmentError::Corrupt)?;
        if max != self.inner.map.len() {
            return Err(SegmentError::corrupt("reservation size changed"));
        }
        Ok(())
    }

    /// Replaces a corrupt segment with a fresh one (under the semaphore) and returns it.
    pub fn recreate(&self, reason: &str) -> Result<Segment, SegmentError> {
        self.replace_file(Some(reason))
    }

    /// Empties the segment: a fresh file replaces the current one, every process reopens it on
    /// its next access. Counters restart from zero (Prometheus handles the reset).
    pub fn clear(&self) -> Result<Segment, SegmentError> {
        self.replace_file(None)
    }

    /// Under the semaphore (taken raw: the current file may be too damaged for the usual
    /// repair on locking), writes a fresh file at the path, then flags the old mapping so the
    /// processes still using it reopen. For a corrupt segment (`reason`), nothing is replaced
    /// when another process already did it.
    fn replace_file(&self, reason: Option<&str>) -> Result<Segment, SegmentError> {
        let opts = &self.inner.opts;
        let key = self.sem_key();
        let guard = self
            .inner
            .sem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lock(opts.lock_timeout)?;
        let replace = match reason {
            None => true,
            Some(reason) if !self.is_stale() => {
                log::error!(
                    "segment {} is corrupt ({reason}); recreating it, previous values are lost",
                    opts.path.display()
                );
                true
            }
            Some(_) => false,
        };
        if replace {
            Self::create_file(opts, key)?;
            self.inner
                .map
                .u64_unchecked(H_SUPERSEDED)
                .store(1, Ordering::Release);
        }
        drop(guard);
        self.reopen()
    }

    fn sem_key(&self) -> libc::key_t {
        self.inner
            .sem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .key()
    }

    /// Takes the semaphore and repairs what a holder that died may have left half done.
    pub(crate) fn lock(&self) -> Result<Locked<'_>, SegmentError> {
        let guard = self
            .inner
            .sem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lock(self.inner.opts.lock_timeout)?;
        let locked = Locked {
            seg: self,
            _guard: guard,
        };
        gc::recover(&locked)?;
        Ok(locked)
    }

    /// Takes the semaphore if it is free right now.
    pub(crate) fn try_lock(&self) -> Result<Option<Locked<'_>>, SegmentError> {
        let guard = self
            .inner
            .sem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_lock()?;
        match guard {
            Some(g) => {
                let locked = Locked {
                    seg: self,
                    _guard: g,
                };
                gc::recover(&locked)?;
                Ok(Some(locked))
            }
            None => Ok(None),
        }
    }

    /// Sizes and counts, for self metrics.
    pub fn stats(&self) -> Stats {
        let m = &self.inner.map;
        let load = |off| m.u64_unchecked(off).load(Ordering::Relaxed);
        Stats {
            size_bytes: m.committed(),
            max_bytes: m.len(),
            used_bytes: load(H_BUMP).saturating_sub(load(H_FREE_BYTES)),
            series: load(H_SERIES_LIVE),
            index_capacity: index::geometry(m).map(|(_, cap)| cap).unwrap_or(0),
            families: load(H_FAMILIES),
            workers: worker::live_count(m, self.worker_slots()),
            worker_slots: self.worker_slots(),
            folded_total: load(H_FOLDED_TOTAL),
            write_failures: load(H_WRITE_FAILURES),
            recoveries: load(H_RECOVERIES),
            last_gc_unix: load(H_LAST_GC),
        }
    }

    pub(crate) fn worker_slots(&self) -> u32 {
        self.inner.worker_slots
    }

    pub(crate) fn note_write_failure(&self) {
        self.inner
            .map
            .u64_unchecked(H_WRITE_FAILURES)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.inner.opts.path
    }
}

/// Sizes and counts of a segment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Current file size.
    pub size_bytes: u64,
    /// Reservation (maximum file size).
    pub max_bytes: u64,
    /// Bytes allocated and not on a free list.
    pub used_bytes: u64,
    /// Series currently stored.
    pub series: u64,
    /// Slots of the series index (kept at most half full).
    pub index_capacity: u64,
    /// Registered metric families.
    pub families: u64,
    /// Worker slots in use.
    pub workers: u32,
    /// Worker slot capacity.
    pub worker_slots: u32,
    /// Series folded into `worker="exited"` so far.
    pub folded_total: u64,
    /// Writes dropped because the segment was full.
    pub write_failures: u64,
    /// Times a process repaired what a killed lock holder left behind.
    pub recoveries: u64,
    /// When GC last ran (Unix seconds, 0 = never).
    pub last_gc_unix: u64,
}

fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Validates the static header and sizes of `file`; returns the reservation size.
fn validate_file(file: &File) -> Result<u64, String> {
    // Header first, size second: other processes grow the file concurrently (never shrink
    // it), so a size read after the header is at least the committed size it names. In the
    // other order a growth in between looks like truncation and would wipe a good segment.
    let mut hdr = [0u8; 176];
    if let Err(e) = file.read_exact_at(&mut hdr, 0) {
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        return Err(if size < HEADER_BYTES {
            format!("truncated: {size} bytes, smaller than the header")
        } else {
            format!("cannot read header: {e}")
        });
    }
    let size = file
        .metadata()
        .map_err(|e| format!("cannot stat: {e}"))?
        .len();
    if size < HEADER_BYTES {
        return Err(format!("truncated: {size} bytes, smaller than the header"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(hdr[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(hdr[o..o + 8].try_into().unwrap());
    if hdr[0..8] != MAGIC {
        return Err("bad magic (not an otrs-exporter segment)".into());
    }
    let version = u32_at(H_VERSION as usize);
    if version != LAYOUT_VERSION {
        return Err(format!(
            "layout version {version}, this build uses {LAYOUT_VERSION}"
        ));
    }
    let sum = fnv1a(FNV_SEED, &hdr[..H_CHECKSUM as usize]);
    if sum != u64_at(H_CHECKSUM as usize) {
        return Err("header checksum mismatch".into());
    }
    if u32_at(H_HEADER_SIZE as usize) as u64 != HEADER_BYTES {
        return Err("unexpected header size".into());
    }
    let max = u64_at(H_MAX_BYTES as usize);
    if !(1 << 20..=1 << 40).contains(&max) || max % 4096 != 0 {
        return Err(format!("implausible reservation size {max}"));
    }
    let slots = u32_at(H_WORKER_SLOTS as usize) as u64;
    if !(16..=65536).contains(&slots) {
        return Err(format!("implausible worker slot count {slots}"));
    }
    let committed = u64_at(H_FILE_SIZE as usize);
    let arena = align_up(WORKERS + slots * WORKER_SLOT_BYTES, 64);
    if committed > size {
        return Err(format!(
            "truncated: header says {committed} bytes, file has {size}"
        ));
    }
    if committed > max || committed < arena {
        return Err(format!("implausible committed size {committed}"));
    }
    let bump = u64_at(H_BUMP as usize);
    if bump < arena || bump > committed {
        return Err(format!("allocation pointer {bump} outside the arena"));
    }
    Ok(max)
}

/// Best effort: flag the file at `path` as superseded so processes mapping it reopen.
fn mark_superseded(path: &Path) {
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        if f.metadata()
            .map(|m| m.len() >= HEADER_BYTES)
            .unwrap_or(false)
        {
            let _ = f.write_all_at(&1u64.to_le_bytes(), H_SUPERSEDED);
        }
    }
}

/// A stable short hash of `bytes` as 16 hex digits (file names derived from paths).
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(FNV_SEED, bytes))
}

/// Test hook: if `OTRS_EXPORTER_CRASH_AT` names this point, the process SIGKILLs itself here.
/// Lets tests kill a lock holder at every step of a structural change, deterministically.
pub(crate) fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("OTRS_EXPORTER_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

impl Segment {
    /// Runs `f` while holding the semaphore (tests use it to be killed while holding it).
    #[doc(hidden)]
    pub fn with_lock_held<T>(&self, f: impl FnOnce() -> T) -> Result<T, SegmentError> {
        let _locked = self.lock()?;
        Ok(f())
    }
}
