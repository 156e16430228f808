//! The scrape path over a large shared segment: `Segment::read` → `Snapshot::normalize` →
//! `render(Text)`.
//!
//! Shape (mirrored exactly by `bench/peer_prometheus_client.py`, the Python peer):
//! 100,000 series written by 200 worker processes (500 each), 80 % counters in 8 families
//! with 2 or 3 labels and 20 % histograms with 10 buckets in 2 families (a histogram counts as
//! one series). Label values are unique per series, so both exporters emit every one of the
//! 100,000 series (Python's multiprocess collector sums identical label sets across processes
//! but has nothing to sum here; we add the `worker` label, which only makes our output larger).
//! The workers are simulated from this one process with the `claim_worker_for`,
//! which writes exactly the slot a real process would claim.
//!
//! Why it is fair against `prometheus_client`'s `MultiProcessCollector`: both read every
//! value from files shared by the processes (our one segment, its 400 per-process `.db`
//! files), merge them, and write the complete text exposition; both are timed from "registry
//! or segment already open" to "bytes in a buffer", excluding the writes that set up the data.
//!
//! A second part shows that scrape time does not grow with the number of workers that have
//! exited: 200 live workers (real thread IDs of parked threads, so GC sees them alive) hold the
//! 100,000 series; each cycle claims 200 more slots for PIDs that cannot exist, writes series
//! for them, and folds them with `gc(Duration::ZERO)` into `worker="exited"`. Exited workers
//! write label sets that repeat from worker to worker, as real ones do (same routes), so
//! folding leaves a bounded set of `exited` series however many workers came and went.
//!
//! Own timings (median of several scrapes) are printed after criterion's report and written to
//! `target/bench-summary/render.json` for `bench/run.sh`. Without `--bench` the bench only
//! smoke-tests a small segment.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use otrs_exporter::exposition::{render, render_cached, Format, RenderCache};
use otrs_exporter::segment::{
    process_start_ticks, FamilyDef, ReadCache, ReadOptions, Segment, SegmentOptions, WorkerKind,
    Writer,
};
use otrs_exporter::snapshot::Snapshot;
use serde_json::json;

/// The histogram bounds (10 finite buckets), as in the Python peer.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const STATUSES: [&str; 5] = ["200", "201", "304", "404", "500"];
const COUNTER_FAMILIES: usize = 8;
const HISTOGRAM_FAMILIES: usize = 2;

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Shape {
    workers: u32,
    series_per_worker: u32,
    gc_cycles: u32,
    dead_series_per_worker: u32,
    scrapes: usize,
}

const FULL: Shape = Shape {
    workers: 200,
    series_per_worker: 500,
    gc_cycles: 20,
    dead_series_per_worker: 100,
    scrapes: 7,
};

const SMOKE: Shape = Shape {
    workers: 10,
    series_per_worker: 50,
    gc_cycles: 2,
    dead_series_per_worker: 10,
    scrapes: 1,
};

struct Defs {
    counters: Vec<FamilyDef>,
    histograms: Vec<FamilyDef>,
}

fn defs() -> Defs {
    Defs {
        counters: (0..COUNTER_FAMILIES)
            .map(|k| {
                FamilyDef::counter(
                    &format!("bench_http_requests_{k}"),
                    "Benchmark counter family.",
                )
            })
            .collect(),
        histograms: (0..HISTOGRAM_FAMILIES)
            .map(|k| {
                FamilyDef::histogram(
                    &format!("bench_http_request_duration_seconds_{k}"),
                    "Benchmark histogram family.",
                    &BUCKETS,
                )
            })
            .collect(),
    }
}

/// Writes one worker's series: 80 % counters (2 or 3 labels), 20 % histograms.
/// `tag` makes the label values unique to this worker; `None` gives label sets that repeat
/// from worker to worker.
fn write_worker(w: &mut Writer, d: &Defs, n: u32, tag: Option<u32>) {
    let prefix = match tag {
        Some(t) => format!("/api/w{t}"),
        None => "/api/shared".to_owned(),
    };
    let counters = n * 4 / 5;
    for j in 0..n {
        let route = format!("{prefix}/r{j}");
        if j < counters {
            let k = j as usize % COUNTER_FAMILIES;
            let status = STATUSES[j as usize % STATUSES.len()];
            let method = METHODS[j as usize % METHODS.len()];
            let h = if k % 2 == 0 {
                w.handle(&d.counters[k], &[("route", &route), ("status", status)])
            } else {
                w.handle(
                    &d.counters[k],
                    &[("route", &route), ("status", status), ("method", method)],
                )
            }
            .expect("counter series");
            h.add(f64::from(j % 17 + 1));
        } else {
            let k = j as usize % HISTOGRAM_FAMILIES;
            let method = METHODS[j as usize % METHODS.len()];
            let h = w
                .handle(&d.histograms[k], &[("route", &route), ("method", method)])
                .expect("histogram series");
            for v in [0.003, 0.07, 0.4, 3.0] {
                h.observe(v * f64::from(j % 3 + 1));
            }
        }
    }
}

fn open_segment(path: &Path) -> Segment {
    let mut opts = SegmentOptions::new(path);
    opts.max_bytes = 1 << 30;
    opts.initial_bytes = 64 << 20;
    Segment::open(&opts).expect("open segment")
}

fn remove_semaphore(seg: &Segment) {
    use otrs_exporter::segment::semaphore::{key_for_path, Semaphore};
    if let Ok(sem) = Semaphore::open(key_for_path(seg.path()), 0o660, None) {
        let _ = sem.remove();
    }
}

/// One scrape: read, normalise, render. Returns the output size.
fn scrape(seg: &Segment, out: &mut Vec<u8>) -> usize {
    let families = seg
        .read(&ReadOptions { worker_label: true })
        .expect("read segment");
    let mut snap = Snapshot { families };
    snap.normalize();
    out.clear();
    render(&snap, Format::Text, out);
    out.len()
}

/// Median time of warm scrapes in milliseconds: as a FastCGI worker scrapes, keeping its read
/// and render caches between scrapes (the first, cold one is not counted).
fn time_warm_scrapes(seg: &Segment, n: usize) -> f64 {
    let mut read_cache = ReadCache::new();
    let mut render_cache = RenderCache::new();
    let mut out = Vec::new();
    let mut one = |out: &mut Vec<u8>| {
        let families = seg
            .read_cached(&ReadOptions { worker_label: true }, &mut read_cache)
            .expect("read segment");
        let mut snap = Snapshot { families };
        snap.normalize();
        out.clear();
        render_cached(&snap, Format::Text, out, &mut render_cache);
        out.len()
    };
    one(&mut out);
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(one(&mut out));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[ms.len() / 2]
}

/// Median scrape time in milliseconds, and the output size and series count.
fn time_scrapes(seg: &Segment, n: usize) -> (f64, usize, usize) {
    let mut out = Vec::new();
    let mut ms: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(scrape(seg, &mut out));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let series = Snapshot {
        families: seg.read(&ReadOptions { worker_label: true }).unwrap(),
    }
    .series_count();
    (ms[ms.len() / 2], out.len(), series)
}

/// Parked threads whose thread IDs stand in for live worker processes: `/proc/<tid>/stat`
/// exists and keeps its start time for as long as the thread runs, so GC sees them alive.
struct LiveThreads {
    ids: Vec<(u32, u64)>,
    stop: Vec<mpsc::Sender<()>>,
    joins: Vec<thread::JoinHandle<()>>,
}

impl LiveThreads {
    fn spawn(n: u32) -> LiveThreads {
        let (mut ids, mut stop, mut joins) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (id_tx, id_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            joins.push(
                thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        // SAFETY: gettid has no preconditions.
                        let tid = unsafe { libc::gettid() } as u32;
                        id_tx.send(tid).unwrap();
                        let _ = stop_rx.recv();
                    })
                    .expect("spawn thread"),
            );
            let tid = id_rx.recv().unwrap();
            let start = process_start_ticks(tid).expect("thread start time from /proc");
            ids.push((tid, start));
            stop.push(stop_tx);
        }
        LiveThreads { ids, stop, joins }
    }
}

impl Drop for LiveThreads {
    fn drop(&mut self) {
        self.stop.clear();
        for j in self.joins.drain(..) {
            let _ = j.join();
        }
    }
}

/// Builds the live part: `shape.workers` workers with `shape.series_per_worker` series each.
fn populate(seg: &Segment, d: &Defs, shape: Shape, pids: &[(u32, u64)]) {
    for (w, &(pid, start)) in pids.iter().enumerate() {
        let slot = seg
            .claim_worker_for(pid, start, WorkerKind::Test)
            .expect("claim slot");
        let mut wr = Writer::for_slot(seg, WorkerKind::Test, slot);
        write_worker(&mut wr, d, shape.series_per_worker, Some(w as u32));
    }
}

/// One exited-worker cycle: claim slots for PIDs that cannot exist (above Linux's maximum
/// `pid_max`, 2^22), write series, fold them.
fn exited_cycle(seg: &Segment, d: &Defs, shape: Shape, cycle: u32) -> Duration {
    for i in 0..shape.workers {
        let pid = 5_000_000 + i;
        let slot = seg
            .claim_worker_for(pid, u64::from(cycle) + 1, WorkerKind::Test)
            .expect("claim slot");
        let mut wr = Writer::for_slot(seg, WorkerKind::Test, slot);
        write_worker(&mut wr, d, shape.dead_series_per_worker, None);
    }
    let t = Instant::now();
    let report = seg.gc(Duration::ZERO).expect("gc");
    let took = t.elapsed();
    assert_eq!(report.workers_folded, shape.workers, "GC folded {report:?}");
    took
}

fn summary_dir() -> PathBuf {
    if let Ok(d) = std::env::var("OTRS_BENCH_SUMMARY_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").to_owned());
    Path::new(&target).join("bench-summary")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let shape = if full { FULL } else { SMOKE };
    let total = shape.workers * shape.series_per_worker;
    let d = defs();
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
        .configure_from_args();
    let dir = tempfile::tempdir().expect("tempdir");

    // Part 1: 100k series over 200 workers with fake PIDs.
    let seg = open_segment(&dir.path().join("render.seg"));
    let t = Instant::now();
    let fake: Vec<(u32, u64)> = (0..shape.workers).map(|i| (1_000_000 + i, 1)).collect();
    populate(&seg, &d, shape, &fake);
    let setup = t.elapsed();
    let (scrape_ms, bytes, series_out) = time_scrapes(&seg, shape.scrapes);
    let warm_ms = time_warm_scrapes(&seg, shape.scrapes);
    {
        let mut g = c.benchmark_group("render");
        g.sampling_mode(SamplingMode::Flat);
        let mut out = Vec::new();
        g.bench_function(
            format!("scrape_text_{total}_series_{}_workers", shape.workers),
            |b| b.iter(|| scrape(&seg, &mut out)),
        );
        g.finish();
    }
    remove_semaphore(&seg);
    drop(seg);

    // Part 2: scrape time against the number of exited workers folded so far.
    let seg = open_segment(&dir.path().join("exited.seg"));
    let live = LiveThreads::spawn(shape.workers);
    populate(&seg, &d, shape, &live.ids);
    let checkpoints = [0, shape.gc_cycles / 2, shape.gc_cycles];
    let mut cycles_done = 0;
    let mut gc_times = Vec::new();
    let mut points = Vec::new();
    {
        let mut g = c.benchmark_group("render_after_exited_workers");
        g.sampling_mode(SamplingMode::Flat);
        for &cp in &checkpoints {
            while cycles_done < cp {
                gc_times.push(exited_cycle(&seg, &d, shape, cycles_done).as_secs_f64() * 1e3);
                cycles_done += 1;
            }
            let (ms, b, s) = time_scrapes(&seg, shape.scrapes);
            points.push((cp, ms, b, s));
            let mut out = Vec::new();
            g.bench_function(
                format!("cycles_{cp}_exited_workers_{}", cp * shape.workers),
                |bch| bch.iter(|| scrape(&seg, &mut out)),
            );
        }
        g.finish();
    }
    let stats = seg.stats();
    remove_semaphore(&seg);
    drop(seg);
    drop(live);
    c.final_summary();

    println!();
    println!(
        "setup: {total} series over {} workers written in {:.0} ms",
        shape.workers,
        setup.as_secs_f64() * 1e3
    );
    println!(
        "scrape (read+normalize+render text), median of {}: {scrape_ms:.1} ms cold, {warm_ms:.1} ms warm (FastCGI worker caches), {bytes} bytes, {series_out} series",
        shape.scrapes
    );
    for (cp, ms, b, s) in &points {
        println!(
            "after {cp:>2} exited-worker cycles ({:>5} workers folded): scrape {ms:.1} ms, {b} bytes, {s} series",
            cp * shape.workers
        );
    }
    let base = points[0].1;
    for (cp, ms, _, _) in &points[1..] {
        println!(
            "ratio scrape_after_{cp}_cycles/scrape_after_0_cycles = {:.2}",
            ms / base
        );
    }
    let gc_mean = gc_times.iter().sum::<f64>() / gc_times.len().max(1) as f64;
    println!(
        "gc(ZERO) folding {} workers x {} series: mean {gc_mean:.0} ms per cycle; segment now {} series, {} MiB used",
        shape.workers,
        shape.dead_series_per_worker,
        stats.series,
        stats.used_bytes >> 20
    );
    if full {
        let out = json!({
            "series": total,
            "workers": shape.workers,
            "scrape_ms_median": scrape_ms,
            "scrape_warm_ms_median": warm_ms,
            "bytes": bytes,
            "series_out": series_out,
            "setup_ms": setup.as_secs_f64() * 1e3,
            "exited": points.iter().map(|(cp, ms, b, s)| json!({
                "cycles": cp,
                "exited_workers": cp * shape.workers,
                "scrape_ms_median": ms,
                "bytes": b,
                "series_out": s,
            })).collect::<Vec<_>>(),
            "dead_series_per_worker": shape.dead_series_per_worker,
            "gc_ms_per_cycle_mean": gc_mean,
        });
        let dir = summary_dir();
        std::fs::create_dir_all(&dir).expect("create summary dir");
        let file = dir.join("render.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&out).unwrap()).expect("write summary");
        println!("summary written to {}", file.display());
    }
}
