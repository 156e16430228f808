//! Follows a log file incrementally, from any process: nginx access logs (nginx has no piped
//! logs) and the OTRS log (File backend or a syslog file). What happens to each complete line
//! is up to a [`LineSink`]; the mechanics below are the same for every kind of log.
//!
//! The cursor — inode and byte offset — lives in the shared segment, so whichever FastCGI
//! worker or CGI process scrapes next continues where the last one stopped. An exclusive
//! `flock` on a lock file next to the segment makes sure only one process advances at a time
//! (others skip; the lock dies with its holder). Before counting a chunk, the new offset is
//! stored: a process killed mid-chunk loses the rest of that chunk but never counts a line
//! twice.
//!
//! Rotation: when the path has a new inode, the rest of the old file is read from its rotated
//! name (`<path>.1`, logrotate's default) if that still is the old inode, then the new file from
//! its start. A file that shrank below the cursor, or whose bytes just before the cursor changed
//! (copytruncate followed by new writes), was truncated: read from 0. The offset and a 24-bit
//! fingerprint of the 64 bytes before it share one atomic word, so they never disagree after a
//! crash (offsets up to 1 TiB). A file that does not exist yet is fine. A partial last line
//! waits for its newline. On first sight of a file (no cursor yet) reading starts at its end,
//! unless the follower was built [`Follower::from_start`] (replays, monthly log files).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::record::Recorder;
use crate::config::IngestConfig;
use crate::segment::{fnv1a_hex, FamilyDef, Handle, Segment, SegmentError, WorkerKind, Writer};

/// Bytes read and counted per claimed chunk.
const CHUNK: u64 = 1 << 20;
/// Bits of the cursor word holding the offset; the rest hold the fingerprint.
const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
/// Bytes before the cursor that the fingerprint covers.
const PRINT: u64 = 64;

fn fingerprint(bytes: &[u8]) -> u64 {
    crate::segment::layout::fnv1a(crate::segment::layout::FNV_SEED, bytes) & 0xff_ffff
}

fn pack(off: u64, print: u64) -> u64 {
    (off & OFFSET_MASK) | (print << OFFSET_BITS)
}

fn cursor_family() -> FamilyDef {
    FamilyDef::internal(
        "otrs_exporter_internal_follow_cursor",
        "Inode and offset of followed log files (internal).",
    )
}

/// What one advance did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Advance {
    /// Whether another process held the lock (nothing was read).
    pub skipped: bool,
    /// Bytes consumed.
    pub bytes: u64,
    /// Whether a rotation or truncation was seen.
    pub rotated: bool,
}

/// Where a [`Follower`] delivers what it reads.
pub trait LineSink {
    /// One complete line, without its newline; never empty.
    fn line(&mut self, line: &[u8]);
    /// A "line" longer than a chunk (1 MiB) was skipped.
    fn overlong(&mut self);
    /// Called before the lines of each chunk (e.g. to read the clock once per batch).
    fn batch(&mut self) {}
    /// Called once per advance, under the follower's lock, before reading: reopen a segment
    /// that was replaced.
    fn refresh(&mut self) -> Result<(), SegmentError> {
        Ok(())
    }
}

impl LineSink for Recorder {
    fn line(&mut self, line: &[u8]) {
        self.record_line(line);
    }
    fn overlong(&mut self) {
        self.record_line(&[0x01]);
    }
    fn batch(&mut self) {
        self.tick();
    }
    fn refresh(&mut self) -> Result<(), SegmentError> {
        Recorder::refresh(self)
    }
}

/// A followed log file whose lines go to a [`LineSink`] (by default the access-log
/// [`Recorder`]).
pub struct Follower<S: LineSink = Recorder> {
    path: PathBuf,
    lock_path: PathBuf,
    inode: Handle,
    offset: Handle,
    from_start: bool,
    recorder: S,
}

impl Follower<Recorder> {
    /// Follows the access log `path`, keeping the cursor in `seg` and recording lines as
    /// `source`.
    pub fn new(
        seg: &Segment,
        cfg: &IngestConfig,
        path: &Path,
        source: &str,
    ) -> Result<Follower, SegmentError> {
        Follower::with_sink(seg, path, Recorder::new(seg, cfg, source)?)
    }
}

impl<S: LineSink> Follower<S> {
    /// Follows `path`, keeping the cursor in `seg` and handing lines to `sink`.
    pub fn with_sink(seg: &Segment, path: &Path, sink: S) -> Result<Follower<S>, SegmentError> {
        let key = path.to_string_lossy().into_owned();
        let mut w = Writer::new(seg, WorkerKind::Ingest)?;
        let inode = w.handle(&cursor_family(), &[("path", &key), ("field", "inode")])?;
        let offset = w.handle(&cursor_family(), &[("path", &key), ("field", "offset")])?;
        let lock_path = seg
            .path()
            .with_file_name(format!("follow-{}.lock", fnv1a_hex(key.as_bytes())));
        Ok(Follower {
            path: path.to_owned(),
            lock_path,
            inode,
            offset,
            from_start: false,
            recorder: sink,
        })
    }

    /// On first sight (no cursor stored yet), read the file from its start instead of its end.
    pub fn from_start(mut self) -> Self {
        self.from_start = true;
        self
    }

    /// The sink lines go to.
    pub fn sink(&self) -> &S {
        &self.recorder
    }

    /// The sink lines go to, mutably.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.recorder
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current cursor: (inode, offset).
    pub fn cursor(&self) -> (u64, u64) {
        (
            self.inode.raw().load(Ordering::Acquire),
            self.offset.raw().load(Ordering::Acquire) & OFFSET_MASK,
        )
    }

    fn stored_print(&self) -> u64 {
        self.offset.raw().load(Ordering::Acquire) >> OFFSET_BITS
    }

    /// Fingerprint of the (up to) [`PRINT`] bytes of `file` that end at `off`.
    fn print_at(file: &File, off: u64) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let start = off.saturating_sub(PRINT);
        let mut tail = vec![0u8; (off - start) as usize];
        file.read_exact_at(&mut tail, start)?;
        Ok(fingerprint(&tail))
    }

    /// Moves the offset to `off` of `file`, with the fingerprint of the bytes before it.
    fn set_offset(&self, file: &File, off: u64) -> std::io::Result<()> {
        let print = Self::print_at(file, off)?;
        self.offset.raw().store(pack(off, print), Ordering::Release);
        Ok(())
    }

    /// Whether the bytes before `off` in `file` still match the stored fingerprint.
    fn same_content(&self, file: &File, off: u64) -> std::io::Result<bool> {
        Ok(Self::print_at(file, off)? == self.stored_print())
    }

    /// Reads what was appended since the last advance (by any process), for at most `budget`.
    pub fn advance(&mut self, budget: Duration) -> std::io::Result<Advance> {
        // flock works on a read-only descriptor, so any process that can read the lock file
        // (web-server user, root, an admin) can take it, whoever created it.
        let lock_file = match File::open(&self.lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o664)
                    .open(&self.lock_path)?
            }
            Err(e) => return Err(e),
        };
        let _lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Ok(Advance {
                    skipped: true,
                    ..Advance::default()
                })
            }
            Err((_, e)) => return Err(e.into()),
        };
        if let Err(e) = self.recorder.refresh() {
            log::warn!("cannot reopen the segment: {e}");
        }
        let deadline = Instant::now() + budget;
        let mut out = Advance::default();
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Rotated away and not recreated yet: finish the old file if we can find it.
                self.drain_rotated(&mut out, deadline)?;
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let (ino, mut off) = self.cursor();
        if ino == 0 && !self.from_start {
            // First sight: start at the end (history before the exporter is not replayed),
            // unless the file is new and empty.
            self.inode.raw().store(meta.ino(), Ordering::Release);
            self.set_offset(&file, meta.len())?;
            return Ok(out);
        }
        if ino == 0 {
            self.inode.raw().store(meta.ino(), Ordering::Release);
            self.set_offset(&file, 0)?;
            off = 0;
        } else if meta.ino() != ino {
            out.rotated = true;
            self.drain_rotated(&mut out, deadline)?;
            // Inode first, then offset: a crash in between leaves an offset that the next run
            // treats as truncation or a skip, never as a reason to count lines twice.
            self.inode.raw().store(meta.ino(), Ordering::Release);
            self.set_offset(&file, 0)?;
            off = 0;
        } else if meta.len() < off || !self.same_content(&file, off)? {
            out.rotated = true;
            self.set_offset(&file, 0)?;
            off = 0;
        }
        self.read_from(file, off, &mut out, deadline)?;
        Ok(out)
    }

    /// Reads the rest of the old file from its rotated name, if it is still the old inode.
    fn drain_rotated(&mut self, out: &mut Advance, deadline: Instant) -> std::io::Result<()> {
        let (ino, off) = self.cursor();
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        if let Ok(f) = File::open(&rotated) {
            if f.metadata()?.ino() == ino && ino != 0 {
                self.read_from(f, off, out, deadline)?;
            }
        }
        Ok(())
    }

    /// Reads complete lines of `file` from `off`, moving the cursor's offset along.
    fn read_from(
        &mut self,
        mut file: File,
        mut off: u64,
        out: &mut Advance,
        deadline: Instant,
    ) -> std::io::Result<()> {
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(off))?;
        let mut buf = Vec::with_capacity(CHUNK as usize);
        while off < len && Instant::now() < deadline {
            buf.clear();
            (&mut file).take(CHUNK).read_to_end(&mut buf)?;
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                if buf.len() as u64 >= CHUNK {
                    // A "line" longer than a chunk: skip it as malformed.
                    off += buf.len() as u64;
                    self.set_offset(&file, off)?;
                    self.recorder.overlong();
                    continue;
                }
                break; // partial last line: wait for its newline
            };
            let used = (last_nl + 1) as u64;
            // Claim the chunk before counting it (at most once).
            off += used;
            self.set_offset(&file, off)?;
            self.recorder.batch();
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                if !line.is_empty() {
                    self.recorder.line(line);
                }
            }
            out.bytes += used;
            file.seek(SeekFrom::Start(off))?;
        }
        Ok(())
    }
}
