//! Fills a shared segment with synthetic web-request series, for benchmarks: `N` counter
//! series of `otrs_http_requests_total{worker,method,route,status_class}` spread over `W`
//! workers. Workers are attributed to the live processes named in `PIDS` (comma-separated; the
//! bench starts `sleep` processes), so they are never folded; without PIDs they are fake
//! (dead) PIDs, which GC folds into `worker="exited"` after `gc.grace_seconds`, or at once when
//! the worker table fills up.
//!
//! ```sh
//! cargo run --release --example fill_segment -- /tmp/seg 10000 20 [WORKER_SLOTS [PIDS]]
//! ```
//! `WORKER_SLOTS` must match the `segment.worker_slots` of the exporter that reads the file
//! (default 1024).

use otrs_exporter::ingest::families;
use otrs_exporter::segment::{process_start_ticks, Segment, SegmentOptions, WorkerKind, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, n, w, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fill_segment PATH SERIES WORKERS [WORKER_SLOTS]");
        std::process::exit(2);
    };
    let (n, w): (usize, u32) = (n.parse()?, w.parse()?);
    let mut opts = SegmentOptions::new(path);
    if let Some(slots) = rest.first() {
        opts.worker_slots = slots.parse()?;
    }
    let live: Vec<u32> = match rest.get(1) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let seg = Segment::open(&opts)?;
    let mut writers = (0..w)
        .map(|i| {
            let (pid, start) = match live.get(i as usize) {
                Some(&pid) => (pid, process_start_ticks(pid).ok_or("no such process")?),
                None => (4_000_000 + i, 1),
            };
            let slot = seg
                .claim_worker_for(pid, start, WorkerKind::Test)
                .map_err(|e| e.to_string())?;
            Ok(Writer::for_slot(&seg, WorkerKind::Test, slot))
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    const METHODS: [&str; 2] = ["GET", "POST"];
    const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
    for i in 0..n {
        let j = i / w as usize;
        let route = format!("AgentTicketAction{:04}", j / 8);
        writers[i % w as usize].add(
            &families::WebFamilies::default().requests,
            &[
                ("method", METHODS[j % 2]),
                ("route", &route),
                ("status_class", CLASSES[(j / 2) % 4]),
            ],
            (i % 977) as f64,
        )?;
    }
    let stats = seg.dump()?.stats;
    println!(
        "{}: {} series, {} workers, {} bytes used",
        path, stats.series, w, stats.used_bytes
    );
    Ok(())
}
