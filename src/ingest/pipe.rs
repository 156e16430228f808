//! `otrs-exporter ingest`: Apache's piped logger.
//!
//! Apache writes every access-log line into our stdin (`CustomLog "|/usr/bin/otrs-exporter
//! ingest" otrs_exporter`). If we stopped reading, Apache's writes would block and requests
//! would stall, so reading never waits for processing: a reader thread moves complete lines in
//! batches into a bounded queue, and when the queue is full it drops the batch and counts its
//! lines in `otrs_exporter_ingest_dropped_lines_total`. Every processed line is written into
//! the segment at once, so when Apache restarts the logger (or it is killed) nothing already
//! counted is lost; lines still queued are.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::families;
use super::line::MAX_LINE;
use super::record::Recorder;
use crate::config::IngestConfig;
use crate::segment::{Segment, SegmentError};

/// Bytes read from the pipe at a time (one batch holds at most this plus a partial line).
const CHUNK: usize = 64 * 1024;

/// Complete lines, newline-separated.
struct Batch {
    data: Vec<u8>,
}

impl Batch {
    /// Number of lines (counted only when a batch is dropped).
    fn lines(&self) -> u64 {
        memchr::memchr_iter(b'\n', &self.data).count() as u64
    }
}

/// What a run of the ingester did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PipeReport {
    /// Lines handed to the recorder.
    pub processed: u64,
    /// Lines dropped because the queue was full.
    pub dropped: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Splits `buf` after its last newline: complete lines go into a batch, the rest stays. A
/// partial line longer than [`MAX_LINE`] is discarded up to its end and counted as overlong.
fn take_lines(buf: &mut Vec<u8>, overlong: &mut bool) -> Option<Batch> {
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            buf.clear();
            *overlong = true;
        }
        return None;
    };
    let rest = buf.split_off(last_nl + 1);
    let mut data = std::mem::replace(buf, rest);
    if *overlong {
        // The first line is the tail of an overlong one: drop it, keep it counted as one line.
        let first_nl = data.iter().position(|&b| b == b'\n').unwrap_or(0);
        data[..first_nl].fill(b'\x01');
        *overlong = false;
    }
    Some(Batch { data })
}

/// Reads lines from `input` until EOF (or SIGTERM) and records them into `seg`. With `wait`,
/// a full queue makes the reader wait instead of dropping lines (replaying a file, benchmarks);
/// never use it behind a live web server.
pub fn run(
    seg: &Segment,
    cfg: &IngestConfig,
    source: &str,
    mut input: impl Read + Send + 'static,
    wait: bool,
) -> Result<PipeReport, SegmentError> {
    let mut recorder = Recorder::new(seg, cfg, source)?;
    let dropped_handle = recorder
        .own_writer()
        .handle(&families::dropped(), &[("source", source)])?;
    // A queue of batches holding about `queue_lines` lines of ~200 bytes.
    let slots = ((cfg.queue_lines as usize * 200) / CHUNK).max(4);
    let (tx, rx) = sync_channel::<Batch>(slots);
    let dropped = Arc::new(AtomicU64::new(0));
    let dropped_reader = dropped.clone();
    // SIGTERM (Apache stopping the logger): finish what is queued, then exit.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
    let slow = std::env::var("OTRS_EXPORTER_TEST_SLOW_INGEST_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    std::thread::Builder::new()
        .name("ingest-reader".into())
        .spawn(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
            let mut chunk = vec![0u8; CHUNK];
            let mut overlong = false;
            loop {
                let n = match input.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::error!("reading the access log pipe failed: {e}");
                        break;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                if let Some(batch) = take_lines(&mut buf, &mut overlong) {
                    if wait {
                        if tx.send(batch).is_err() {
                            break;
                        }
                        continue;
                    }
                    match tx.try_send(batch) {
                        Ok(()) => {}
                        Err(TrySendError::Full(batch)) => {
                            dropped_reader.fetch_add(batch.lines(), Ordering::Relaxed);
                        }
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
            }
            // A last line without newline still counts.
            if !buf.is_empty() && !overlong {
                buf.push(b'\n');
                let _ = tx.send(Batch { data: buf });
            }
        })
        .map_err(|e| SegmentError::Invalid(format!("cannot start the reader thread: {e}")))?;

    let mut report = PipeReport::default();
    let mut flushed_drops = 0;
    let mut last_refresh = Instant::now();
    loop {
        let batch = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let idle = batch.is_none();
        if let Some(batch) = batch {
            recorder.tick();
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &batch.data) {
                let line = &batch.data[start..end];
                start = end + 1;
                if line.is_empty() {
                    continue;
                }
                recorder.record_line(line);
                report.processed += 1;
                if let Some(us) = slow {
                    std::thread::sleep(Duration::from_micros(us));
                }
            }
        }
        let d = dropped.load(Ordering::Relaxed);
        if d > flushed_drops {
            dropped_handle.add((d - flushed_drops) as f64);
            flushed_drops = d;
        }
        if last_refresh.elapsed() > Duration::from_secs(5) {
            last_refresh = Instant::now();
            if let Err(e) = recorder.refresh() {
                log::warn!("cannot reopen the segment: {e}");
            }
        }
        if STOP.load(Ordering::Relaxed) && idle {
            break;
        }
    }
    report.dropped = dropped.load(Ordering::Relaxed);
    if report.dropped > flushed_drops {
        dropped_handle.add((report.dropped - flushed_drops) as f64);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_lines_and_drops_overlong_ones() {
        let mut buf = b"a\nb\npart".to_vec();
        let mut over = false;
        let b = take_lines(&mut buf, &mut over).unwrap();
        assert_eq!((b.data.as_slice(), b.lines()), (&b"a\nb\n"[..], 2));
        assert_eq!(buf, b"part");
        let mut buf = vec![b'x'; MAX_LINE + 10];
        assert!(take_lines(&mut buf, &mut over).is_none());
        assert!(over && buf.is_empty());
        buf.extend_from_slice(b"tail\nnext\n");
        let b = take_lines(&mut buf, &mut over).unwrap();
        assert_eq!(b.lines(), 2);
        assert!(
            b.data.starts_with(b"\x01\x01\x01\x01\n"),
            "overlong tail is junk, counted as malformed"
        );
    }
}
