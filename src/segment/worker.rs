//! Worker slots: which process owns which series, identified by PID and start time.
//!
//! A PID alone is not an identity: PIDs are reused. Each slot stores the PID and the process'
//! start time (clock ticks since boot, `/proc/<pid>/stat` field 22); a slot whose PID now
//! belongs to a process with another start time is dead.

use std::sync::atomic::Ordering;

use super::layout::*;
use super::mem::Mapping;
use super::{now_unix, Locked, Segment, SegmentError};

/// What kind of process owns a worker slot (shown by `segment dump`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerKind {
    /// A FastCGI or CGI exporter process answering scrapes.
    Exporter,
    /// An access-log or OTRS-log ingester.
    Ingest,
    /// A console command.
    Cli,
    /// The demo's traffic generator.
    Demo,
    /// Tests and benchmarks.
    Test,
    /// A web-server worker (Apache child, nginx worker) whose requests an ingester records.
    WebWorker,
}

impl WorkerKind {
    fn code(self) -> u32 {
        match self {
            WorkerKind::Exporter => 1,
            WorkerKind::Ingest => 2,
            WorkerKind::Cli => 3,
            WorkerKind::Demo => 4,
            WorkerKind::Test => 5,
            WorkerKind::WebWorker => 6,
        }
    }

    pub(crate) fn from_code(c: u32) -> Option<WorkerKind> {
        Some(match c {
            1 => WorkerKind::Exporter,
            2 => WorkerKind::Ingest,
            3 => WorkerKind::Cli,
            4 => WorkerKind::Demo,
            5 => WorkerKind::Test,
            6 => WorkerKind::WebWorker,
            _ => return None,
        })
    }
}

/// Start time of `pid` in clock ticks since boot, or `None` if it is gone or a zombie.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    Some(stat.starttime)
}

/// Whether the process that claimed a slot with (`pid`, `start`) still runs.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    process_start_ticks(pid) == Some(start)
}

pub(crate) fn slot_off(i: u32) -> u64 {
    WORKERS + u64::from(i) * WORKER_SLOT_BYTES
}

/// A worker slot as read from the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotInfo {
    pub index: u32,
    pub state: u32,
    pub kind: u32,
    pub pid: u32,
    pub start: u64,
    pub claimed: u64,
    pub dead_since: u64,
}

pub(crate) fn read_slot(m: &Mapping, i: u32) -> SlotInfo {
    let o = slot_off(i);
    SlotInfo {
        index: i,
        state: m.u32_unchecked(o + W_STATE).load(Ordering::Acquire),
        kind: m.u32_unchecked(o + W_KIND).load(Ordering::Relaxed),
        pid: m.u64_unchecked(o + W_PID).load(Ordering::Relaxed) as u32,
        start: m.u64_unchecked(o + W_START).load(Ordering::Relaxed),
        claimed: m.u64_unchecked(o + W_CLAIMED).load(Ordering::Relaxed),
        dead_since: m.u64_unchecked(o + W_DEAD_SINCE).load(Ordering::Relaxed),
    }
}

pub(crate) fn live_count(m: &Mapping, slots: u32) -> u32 {
    (FIRST_PROCESS_SLOT..slots)
        .filter(|&i| read_slot(m, i).state == SLOT_LIVE)
        .count() as u32
}

impl Segment {
    /// The `worker` label value of slot `i`: the PID, `exited` or `overflow`.
    pub(crate) fn worker_label(&self, i: u32) -> String {
        match i {
            WORKER_EXITED => "exited".into(),
            WORKER_OVERFLOW => "overflow".into(),
            _ if i < self.worker_slots() => read_slot(self.map(), i).pid.to_string(),
            _ => "unknown".into(),
        }
    }

    /// Claims a worker slot for the calling process. When the table is full even after folding
    /// the dead, returns the shared overflow slot.
    pub fn claim_worker(&self, kind: WorkerKind) -> Result<u32, SegmentError> {
        let pid = std::process::id();
        let start = process_start_ticks(pid)
            .ok_or_else(|| SegmentError::Invalid("cannot read own /proc/self/stat".into()))?;
        let locked = self.lock()?;
        locked.claim(pid, start, kind)
    }

    /// The (pid, start ticks) that owns slot `slot`, if it is in use.
    pub fn slot_owner(&self, slot: u32) -> Option<(u32, u64)> {
        if !(FIRST_PROCESS_SLOT..self.worker_slots()).contains(&slot) {
            return None;
        }
        let s = read_slot(self.map(), slot);
        (s.state == SLOT_LIVE).then_some((s.pid, s.start))
    }

    /// Claims a slot on behalf of another process (an ingester recording a web-server worker's
    /// requests, or tests and benchmarks simulating workers): the slot is keyed by that
    /// process' PID and start time, so GC folds it when that process exits.
    pub fn claim_worker_for(
        &self,
        pid: u32,
        start_ticks: u64,
        kind: WorkerKind,
    ) -> Result<u32, SegmentError> {
        let locked = self.lock()?;
        locked.claim(pid, start_ticks, kind)
    }
}

impl Locked<'_> {
    pub(crate) fn claim(
        &self,
        pid: u32,
        start: u64,
        kind: WorkerKind,
    ) -> Result<u32, SegmentError> {
        let m = self.seg.map();
        let slots = self.seg.worker_slots();
        let mut free = None;
        for i in FIRST_PROCESS_SLOT..slots {
            let s = read_slot(m, i);
            if s.state == SLOT_LIVE && s.pid == pid {
                if s.start == start {
                    // Already ours (claimed again after a reopen, say): reuse it.
                    return Ok(i);
                }
                // The PID was reused: the old owner is gone. Fold it now so that two slots never
                // share one `worker` label.
                self.fold_worker(i)?;
            }
            if free.is_none() && read_slot(m, i).state == SLOT_FREE {
                free = Some(i);
            }
        }
        if free.is_none() {
            // Full: fold whatever is dead regardless of the grace period.
            self.gc_locked(0, None)?;
            free = (FIRST_PROCESS_SLOT..slots).find(|&i| read_slot(m, i).state == SLOT_FREE);
        }
        let Some(i) = free else {
            log::warn!("all {slots} worker slots are in use; pid {pid} shares the overflow slot");
            return Ok(WORKER_OVERFLOW);
        };
        let o = slot_off(i);
        m.u64_unchecked(o + W_PID)
            .store(u64::from(pid), Ordering::Relaxed);
        m.u64_unchecked(o + W_START).store(start, Ordering::Relaxed);
        m.u64_unchecked(o + W_CLAIMED)
            .store(now_unix() as u64, Ordering::Relaxed);
        m.u64_unchecked(o + W_DEAD_SINCE)
            .store(0, Ordering::Relaxed);
        m.u32_unchecked(o + W_KIND)
            .store(kind.code(), Ordering::Relaxed);
        // Commit point.
        m.u32_unchecked(o + W_STATE)
            .store(SLOT_LIVE, Ordering::Release);
        Ok(i)
    }
}
