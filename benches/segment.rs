//! Hot-path cost of the shared segment against the in-process `prometheus` crate.
//!
//! What is compared:
//! - `Handle::inc()` on a resolved segment counter against `prometheus::IntCounter::inc()`
//!   (one `fetch_add` on an `AtomicU64`) and `prometheus::Counter::inc()` (an f64
//!   compare-and-swap loop, which is what a segment counter does too);
//! - `Handle::observe(v)` on a 12-bucket segment histogram against
//!   `prometheus::Histogram::observe(v)` with the same bounds and the same values;
//! - the same operations while a second core hammers the very same cell: for the segment a
//!   second **process** (this binary re-executed with `OTRS_BENCH_CHILD` set) that opens the
//!   segment file and updates the same shared-family series in a tight loop; for the
//!   `prometheus` crate a second **thread** on a clone of the same metric, the closest
//!   in-process equivalent (the crate cannot share a metric between processes at all).
//!
//! Why it is fair: both sides are measured after resolution (a resolved `Handle` against a
//! metric object; no label lookup on either side), on the same machine, in the same run, with
//! the same observation values, and with the contending party doing the same operation on the
//! same cache line. The contended case is the worst case for the segment: per-worker series
//! (the normal case) are never written by two processes.
//!
//! Besides criterion's report, the bench times its own loops (`Instant` around a few million
//! iterations, median of several rounds) so it can print ratios and write
//! `target/bench-summary/segment.json` for `bench/run.sh`. Without `--bench` (e.g. under
//! `cargo test --all-targets`) it only smoke-tests every path with a few iterations.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use otrs_exporter::segment::{FamilyDef, Handle, Segment, SegmentOptions, WorkerKind, Writer};
use serde_json::json;

/// Set in the re-executed child: `inc:<segment path>` or `observe:<segment path>`.
const CHILD_ENV: &str = "OTRS_BENCH_CHILD";

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0,
];

/// Observation values, cycled through by every observe loop (spread over the buckets).
const VALUES: [f64; 16] = [
    0.003, 0.007, 0.02, 0.04, 0.09, 0.2, 0.4, 0.8, 2.0, 4.0, 8.0, 20.0, 30.0, 0.06, 0.3, 1.5,
];

fn counter_def() -> FamilyDef {
    FamilyDef::counter(
        "bench_hot_requests",
        "Benchmark counter shared by all processes.",
    )
    .shared()
}

fn histogram_def() -> FamilyDef {
    FamilyDef::histogram(
        "bench_hot_duration_seconds",
        "Benchmark histogram shared by all processes.",
        &BUCKETS,
    )
    .shared()
}

fn open_segment(path: &Path) -> Segment {
    let mut opts = SegmentOptions::new(path);
    opts.max_bytes = 64 << 20;
    Segment::open(&opts).expect("open segment")
}

fn resolve(seg: &Segment) -> (Handle, Handle) {
    let mut w = Writer::new(seg, WorkerKind::Test).expect("claim worker");
    let c = w
        .handle(&counter_def(), &[("route", "/hot")])
        .expect("counter");
    let h = w
        .handle(&histogram_def(), &[("route", "/hot")])
        .expect("histogram");
    (c, h)
}

/// The re-executed child: hammers the shared series until killed (or orphaned).
fn child_main(spec: &str) -> ! {
    let (what, path) = spec
        .split_once(':')
        .expect("OTRS_BENCH_CHILD=inc|observe:<path>");
    let seg = open_segment(Path::new(path));
    let (c, h) = resolve(&seg);
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let mut i = 0usize;
    loop {
        for _ in 0..(1 << 16) {
            match what {
                "inc" => c.inc(),
                _ => h.observe(VALUES[i & 15]),
            }
            i = i.wrapping_add(1);
        }
        // SAFETY: as above.
        if unsafe { libc::getppid() } != parent {
            std::process::exit(0);
        }
    }
}

/// A contending child process, killed on drop.
struct Contender(Child);

impl Contender {
    fn spawn(what: &str, path: &Path, seg_handle: &Handle) -> Contender {
        let exe = std::env::current_exe().expect("current exe");
        let child = Command::new(exe)
            .env(CHILD_ENV, format!("{what}:{}", path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn contending process");
        let guard = Contender(child);
        // Wait until the child is actually writing the cell.
        let read = |h: &Handle| {
            if what == "inc" {
                h.get()
            } else {
                h.count() as f64
            }
        };
        let before = read(seg_handle);
        let deadline = Instant::now() + Duration::from_secs(20);
        while read(seg_handle) <= before + 1000.0 {
            assert!(
                Instant::now() < deadline,
                "contending process did not start"
            );
            thread::sleep(Duration::from_millis(5));
        }
        guard
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A contending thread running `f` in a loop, stopped and joined on drop.
struct ThreadContender {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl ThreadContender {
    fn spawn(mut f: impl FnMut(usize) + Send + 'static) -> ThreadContender {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let (s, st) = (stop.clone(), started.clone());
        let handle = thread::spawn(move || {
            let mut i = 0usize;
            while !s.load(Ordering::Relaxed) {
                for _ in 0..(1 << 12) {
                    f(i);
                    i = i.wrapping_add(1);
                }
                st.store(true, Ordering::Relaxed);
            }
        });
        while !started.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        ThreadContender {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for ThreadContender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Nanoseconds per call of `f`: median over `rounds` rounds of `iters` calls.
fn time_ns(iters: u64, rounds: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut per_op: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for i in 0..iters as usize {
                f(black_box(i));
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per_op.sort_by(|a, b| a.total_cmp(b));
    per_op[per_op.len() / 2]
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    seg: Segment,
    seg_counter: Handle,
    seg_hist: Handle,
    int_counter: prometheus::IntCounter,
    counter: prometheus::Counter,
    hist: prometheus::Histogram,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bench.seg");
        let seg = open_segment(&path);
        let (seg_counter, seg_hist) = resolve(&seg);
        let int_counter = prometheus::IntCounter::new("bench_int", "int counter").unwrap();
        let counter = prometheus::Counter::new("bench_f64", "f64 counter").unwrap();
        let hist = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("bench_hist", "histogram").buckets(BUCKETS.to_vec()),
        )
        .unwrap();
        Fixture {
            _dir: dir,
            path,
            seg,
            seg_counter,
            seg_hist,
            int_counter,
            counter,
            hist,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Do not leak the SysV semaphore of the temporary segment.
        let key = otrs_exporter::segment::semaphore::key_for_path(self.seg.path());
        if let Ok(sem) = otrs_exporter::segment::semaphore::Semaphore::open(key, 0o660, None) {
            let _ = sem.remove();
        }
    }
}

/// Own timings, in ns per operation.
#[derive(Default)]
struct Figures {
    rows: Vec<(&'static str, f64)>,
}

impl Figures {
    fn get(&self, name: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.0 == name)
            .map(|r| r.1)
            .unwrap_or(f64::NAN)
    }
}

fn bench_inc(c: &mut Criterion, fx: &Fixture, suffix: &str) {
    let mut g = c.benchmark_group(format!("inc{suffix}"));
    let h = &fx.seg_counter;
    g.bench_function("segment_handle_inc", |b| b.iter(|| black_box(h).inc()));
    if suffix.is_empty() {
        let ic = &fx.int_counter;
        g.bench_function("prometheus_intcounter_inc", |b| {
            b.iter(|| black_box(ic).inc())
        });
        let fc = &fx.counter;
        g.bench_function("prometheus_counter_f64_inc", |b| {
            b.iter(|| black_box(fc).inc())
        });
    } else {
        let ic = fx.int_counter.clone();
        let _t = ThreadContender::spawn(move |_| ic.inc());
        let ic = &fx.int_counter;
        g.bench_function("prometheus_intcounter_inc", |b| {
            b.iter(|| black_box(ic).inc())
        });
        drop(_t);
        let fc = fx.counter.clone();
        let _t = ThreadContender::spawn(move |_| fc.inc());
        let fc = &fx.counter;
        g.bench_function("prometheus_counter_f64_inc", |b| {
            b.iter(|| black_box(fc).inc())
        });
    }
    g.finish();
}

fn bench_observe(c: &mut Criterion, fx: &Fixture, suffix: &str) {
    let mut g = c.benchmark_group(format!("observe{suffix}"));
    let h = &fx.seg_hist;
    let mut i = 0usize;
    g.bench_function("segment_handle_observe", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(h).observe(VALUES[i & 15])
        })
    });
    let _t = (!suffix.is_empty()).then(|| {
        let ph = fx.hist.clone();
        ThreadContender::spawn(move |i| ph.observe(VALUES[i & 15]))
    });
    let ph = &fx.hist;
    g.bench_function("prometheus_histogram_observe", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(ph).observe(VALUES[i & 15])
        })
    });
    g.finish();
}

/// The same operations timed with `Instant`, for the ratios.
fn own_inc(fx: &Fixture, fig: &mut Figures, contended: bool, iters: u64, rounds: usize) {
    let (a, b, c) = if contended {
        (
            "segment_inc_contended",
            "prometheus_intcounter_inc_contended",
            "prometheus_counter_f64_inc_contended",
        )
    } else {
        (
            "segment_inc",
            "prometheus_intcounter_inc",
            "prometheus_counter_f64_inc",
        )
    };
    let h = &fx.seg_counter;
    fig.rows
        .push((a, time_ns(iters, rounds, |_| black_box(h).inc())));
    let _t = contended.then(|| {
        let ic = fx.int_counter.clone();
        ThreadContender::spawn(move |_| ic.inc())
    });
    let ic = &fx.int_counter;
    fig.rows
        .push((b, time_ns(iters, rounds, |_| black_box(ic).inc())));
    drop(_t);
    let _t = contended.then(|| {
        let fc = fx.counter.clone();
        ThreadContender::spawn(move |_| fc.inc())
    });
    let fc = &fx.counter;
    fig.rows
        .push((c, time_ns(iters, rounds, |_| black_box(fc).inc())));
}

fn own_observe(fx: &Fixture, fig: &mut Figures, contended: bool, iters: u64, rounds: usize) {
    let (a, b) = if contended {
        (
            "segment_observe_contended",
            "prometheus_histogram_observe_contended",
        )
    } else {
        ("segment_observe", "prometheus_histogram_observe")
    };
    let h = &fx.seg_hist;
    fig.rows.push((
        a,
        time_ns(iters, rounds, |i| black_box(h).observe(VALUES[i & 15])),
    ));
    let _t = contended.then(|| {
        let ph = fx.hist.clone();
        ThreadContender::spawn(move |i| ph.observe(VALUES[i & 15]))
    });
    let ph = &fx.hist;
    fig.rows.push((
        b,
        time_ns(iters, rounds, |i| black_box(ph).observe(VALUES[i & 15])),
    ));
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
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not (criterion then runs
    // each benchmark once as a test, and we keep our own loops tiny).
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test");
    let (iters, rounds) = if full { (5_000_000, 5) } else { (1_000, 1) };

    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
        .configure_from_args();
    let fx = Fixture::new();
    let mut fig = Figures::default();

    // (a) one process, nobody else touching the cells.
    bench_inc(&mut c, &fx, "");
    bench_observe(&mut c, &fx, "");
    own_inc(&fx, &mut fig, false, iters, rounds);
    own_observe(&fx, &mut fig, false, iters, rounds);

    // (b) a second process (segment) or thread (prometheus crate) hammering the same cell.
    {
        let _child = Contender::spawn("inc", &fx.path, &fx.seg_counter);
        bench_inc(&mut c, &fx, "_contended");
        own_inc(&fx, &mut fig, true, iters / 2, rounds);
    }
    {
        let hc = fx.seg_counter.clone();
        let _t = ThreadContender::spawn(move |_| hc.inc());
        let h = &fx.seg_counter;
        fig.rows.push((
            "segment_inc_contended_by_thread",
            time_ns(iters / 2, rounds, |_| black_box(h).inc()),
        ));
    }
    {
        let _child = Contender::spawn("observe", &fx.path, &fx.seg_hist);
        bench_observe(&mut c, &fx, "_contended");
        own_observe(&fx, &mut fig, true, iters / 2, rounds);
    }
    {
        let hh = fx.seg_hist.clone();
        let _t = ThreadContender::spawn(move |i| hh.observe(VALUES[i & 15]));
        let h = &fx.seg_hist;
        fig.rows.push((
            "segment_observe_contended_by_thread",
            time_ns(iters / 2, rounds, |i| black_box(h).observe(VALUES[i & 15])),
        ));
    }
    c.final_summary();

    println!();
    println!("own timing loops ({iters} iterations, median of {rounds} rounds; contended: half):");
    for (name, ns) in &fig.rows {
        println!("  {name:<42} {ns:8.2} ns/op");
    }
    let ratios = [
        ("segment_inc", "prometheus_intcounter_inc"),
        ("segment_inc", "prometheus_counter_f64_inc"),
        ("segment_observe", "prometheus_histogram_observe"),
        (
            "segment_inc_contended",
            "prometheus_intcounter_inc_contended",
        ),
        (
            "segment_inc_contended",
            "prometheus_counter_f64_inc_contended",
        ),
        (
            "segment_observe_contended",
            "prometheus_histogram_observe_contended",
        ),
    ];
    let mut ratio_json = serde_json::Map::new();
    for (a, b) in ratios {
        let r = fig.get(a) / fig.get(b);
        println!("ratio {a}/{b} = {r:.2}");
        ratio_json.insert(format!("{a}/{b}"), json!(r));
    }
    if full {
        let ns: serde_json::Map<String, serde_json::Value> = fig
            .rows
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let out =
            json!({ "ns_per_op": ns, "ratios": ratio_json, "iterations": iters, "rounds": rounds });
        let dir = summary_dir();
        std::fs::create_dir_all(&dir).expect("create summary dir");
        let file = dir.join("segment.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&out).unwrap()).expect("write summary");
        println!("summary written to {}", file.display());
    }
}
