//! The shared segment under real processes: concurrent writers, writers and lock holders killed
//! with SIGKILL (at random and at every step of a structural change), corruption, PID reuse and
//! dead-worker GC.
//!
//! Child processes are this test binary re-executed with `SEG_CHILD=<role>`; the `child_entry`
//! function (ignored in normal runs) dispatches them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otrs_exporter::segment::{
    FamilyDef, ReadOptions, Segment, SegmentError, SegmentOptions, WorkerKind, Writer,
};
use otrs_exporter::snapshot::{Family, Series, Value};

fn shared_counter() -> FamilyDef {
    FamilyDef::counter(
        "t_shared_events",
        "Events counted by every process in one series",
    )
    .shared()
}
fn own_counter() -> FamilyDef {
    FamilyDef::counter("t_worker_events", "Events counted per worker")
}
fn latency() -> FamilyDef {
    FamilyDef::histogram("t_latency_seconds", "Latency", &[0.005, 0.05, 0.5, 5.0])
}
fn gauge() -> FamilyDef {
    FamilyDef::gauge("t_inflight", "In flight per worker")
}

fn opts(path: &Path) -> SegmentOptions {
    let mut o = SegmentOptions::new(path);
    o.max_bytes = 64 << 20;
    o.worker_slots = 256;
    o
}

fn open(path: &Path) -> Segment {
    Segment::open(&opts(path)).expect("open segment")
}

fn child(role: &str, path: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_entry",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env("SEG_CHILD", role)
    .env("SEG_PATH", path)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A child in `role` doing its `n` steps in `pace` chunks, each let go by [`pace_on`]: a
/// fixed number of reads overlaps its writes however the machine schedules the two.
fn paced(role: &str, path: &Path, n: u64, pace: u64) -> Child {
    child(
        role,
        path,
        &[("SEG_N", n.to_string()), ("SEG_PACE", pace.to_string())],
    )
    .stdin(Stdio::piped())
    .spawn()
    .unwrap()
}

/// In a child started by [`paced`] (`SEG_PACE` = k): before step `i` of `n` that starts one
/// of k chunks, waits for a line on stdin, which the parent sends once per read it finished.
fn wait_turn(i: u64, n: u64) {
    let pace: u64 = std::env::var("SEG_PACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    if pace > 1 && i % n.div_ceil(pace) == 0 {
        std::io::stdin().read_line(&mut String::new()).unwrap();
    }
}

/// Lets a [`paced`] child do its next chunk (nothing once it has exited).
fn pace_on(child: &mut Child) {
    let _ = child.stdin.as_mut().unwrap().write_all(b"\n");
}

fn wait_for_line(child: &mut Child, want: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "child exited before printing {want:?}");
        if line.trim() == want {
            return;
        }
    }
}

fn sigkill(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
}

fn family<'a>(fams: &'a [Family], name: &str) -> Option<&'a Family> {
    fams.iter().find(|f| f.name == name)
}

/// Sum of a scalar family over all series (all workers).
fn total(fams: &[Family], name: &str) -> f64 {
    family(fams, name)
        .map(|f| {
            f.series
                .iter()
                .map(|s| match s.value {
                    Value::Scalar(v) => v,
                    Value::Histogram { count, .. } => count as f64,
                })
                .sum()
        })
        .unwrap_or(0.0)
}

fn worker_values(fams: &[Family], name: &str) -> Vec<(String, f64)> {
    let mut v: Vec<_> = family(fams, name)
        .map(|f| {
            f.series
                .iter()
                .map(|s| {
                    let w = s
                        .labels
                        .iter()
                        .find(|(k, _)| &**k == "worker")
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default();
                    let x = match s.value {
                        Value::Scalar(x) => x,
                        Value::Histogram { count, .. } => count as f64,
                    };
                    (w, x)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Entry point of child processes; a no-op in normal test runs.
#[test]
#[ignore = "entry point for the child processes of the other tests"]
fn child_entry() {
    let Ok(role) = std::env::var("SEG_CHILD") else {
        return;
    };
    let path = PathBuf::from(std::env::var("SEG_PATH").unwrap());
    let n: u64 = std::env::var("SEG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seg = open(&path);
    match role.as_str() {
        "incr" => {
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            let shared = w.handle(&shared_counter(), &[("k", "v")]).unwrap();
            let own = w.handle(&own_counter(), &[("k", "v")]).unwrap();
            let hist = w.handle(&latency(), &[]).unwrap();
            w.set(&gauge(), &[], 1.0).unwrap();
            println!("ready");
            for _ in 0..n {
                shared.inc();
                own.inc();
                hist.observe(0.01);
            }
            println!("done");
        }
        "spin" => {
            // Increments until killed; prints progress so the parent knows it runs.
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            let own = w.handle(&own_counter(), &[("k", "spin")]).unwrap();
            println!("ready");
            loop {
                own.inc();
            }
        }
        "hold" => {
            seg.with_lock_held(|| {
                println!("locked");
                std::thread::sleep(Duration::from_secs(30));
            })
            .unwrap();
        }
        "gc" => {
            // Folds every dead worker (crash points may kill us mid-way).
            seg.gc(Duration::ZERO).unwrap();
            println!("done");
        }
        "grow" => {
            // Many new series: the file doubles again and again.
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            println!("ready");
            for i in 0..n {
                wait_turn(i, n);
                w.inc(&own_counter(), &[("n", &i.to_string())]).unwrap();
            }
            println!("done");
        }
        "families" => {
            // New families, each with a series, as fast as possible.
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            println!("ready");
            for i in 0..n {
                wait_turn(i, n);
                let def = FamilyDef::counter(&format!("t_dyn_{i}"), "A family registered late");
                w.inc(&def, &[]).unwrap();
            }
            println!("done");
        }
        "churn" => {
            // Structural churn: new series (inserts, rehashes, growth) and GC, until killed.
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            println!("ready");
            let mut i = 0u64;
            loop {
                let label = format!("l{}-{i}", std::process::id());
                w.inc(&own_counter(), &[("churn", &label)]).unwrap();
                if i % 64 == 0 {
                    seg.gc(Duration::ZERO).unwrap();
                }
                i += 1;
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn processes_incrementing_concurrently_get_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    const PROCS: usize = 4;
    const N: u64 = 200_000;
    let mut kids: Vec<Child> = (0..PROCS)
        .map(|_| {
            child("incr", &path, &[("SEG_N", N.to_string())])
                .spawn()
                .unwrap()
        })
        .collect();
    // Scrape while they write: sums never decrease.
    let mut last = 0.0;
    let start = Instant::now();
    while kids.iter_mut().any(|k| k.try_wait().unwrap().is_none()) {
        let fams = seg.read(&ReadOptions::default()).unwrap();
        let now = total(&fams, "t_shared_events");
        assert!(now >= last, "shared counter went from {last} to {now}");
        last = now;
        assert!(start.elapsed() < Duration::from_secs(60), "children hang");
    }
    for k in &mut kids {
        assert!(k.wait().unwrap().success());
    }
    let expected = (PROCS as u64 * N) as f64;
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(total(&fams, "t_shared_events"), expected);
    assert_eq!(total(&fams, "t_worker_events"), expected);
    assert_eq!(total(&fams, "t_latency_seconds"), expected);
    let per_worker = worker_values(&fams, "t_worker_events");
    assert_eq!(per_worker.len(), PROCS, "{per_worker:?}");
    assert!(per_worker.iter().all(|(_, v)| *v == N as f64));
    // Histogram sum: 0.01 added 800k times in f64 by CAS; exact to float rounding.
    let hist = family(&fams, "t_latency_seconds").unwrap();
    assert_eq!(hist.series.len(), PROCS);
    let mut sum_all = 0.0;
    for s in &hist.series {
        let Value::Histogram {
            sum,
            buckets,
            count,
        } = &s.value
        else {
            panic!("not a histogram")
        };
        assert_eq!(*count, N);
        assert_eq!(buckets[0].1, 0, "0.01 is above the 5 ms bucket");
        assert_eq!(buckets[1].1, *count);
        sum_all += sum;
    }
    // 0.01 added 800k times by CAS: exact up to float rounding.
    assert!(
        (sum_all - expected * 0.01).abs() < 1e-6 * expected,
        "{sum_all}"
    );
    // Without the worker label, workers combine into one series.
    let merged = seg
        .read(&ReadOptions {
            worker_label: false,
        })
        .unwrap();
    assert_eq!(worker_values(&merged, "t_worker_events").len(), 1);
    assert_eq!(total(&merged, "t_worker_events"), expected);
}

#[test]
fn a_lock_holder_killed_never_wedges_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut worst = Duration::ZERO;
    for _ in 0..100 {
        let mut holder = child("hold", &path, &[]).spawn().unwrap();
        wait_for_line(&mut holder, "locked");
        // While it is held, the semaphore is really taken.
        assert!(matches!(
            Segment::open(&SegmentOptions {
                lock_timeout: Duration::from_millis(20),
                ..opts(&path)
            })
            .unwrap()
            .gc(Duration::ZERO),
            Err(SegmentError::Lock(_))
        ));
        sigkill(&mut holder);
        let t = Instant::now();
        seg.gc(Duration::ZERO)
            .expect("semaphore must be free after the holder died");
        worst = worst.max(t.elapsed());
    }
    eprintln!("worst time to take the semaphore after killing its holder: {worst:?}");
    assert!(worst < Duration::from_secs(1));
}

/// Writes `value` into `n` series of dead simulated workers (pids that cannot exist).
fn dead_workers(seg: &Segment, n: u32, first_pid: u32, value: f64) {
    for i in 0..n {
        let slot = seg
            .claim_worker_for(first_pid + i, 12345, WorkerKind::Test)
            .unwrap();
        let mut w = Writer::for_slot(seg, WorkerKind::Test, slot);
        w.add(&own_counter(), &[("k", "dead")], value).unwrap();
        w.observe(&latency(), &[("k", "dead")], 0.1).unwrap();
        w.set(&gauge(), &[], 3.0).unwrap();
    }
}

#[test]
fn a_holder_killed_at_every_step_of_a_change_loses_nothing() {
    let points = [
        "insert:journaled",
        "insert:linked",
        "alloc:popped",
        "rehash:built",
        "rehash:published",
        "fold:journaled",
        "fold:applied",
        "fold:unlinked",
        "fold:before-free-slot",
        "grow:reserved",
    ];
    use std::os::unix::process::ExitStatusExt;
    for point in points {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut o = opts(&path);
        o.initial_bytes = 128 << 10;
        let seg = Segment::open(&o).unwrap();
        // Enough dead workers that folding needs exited twins, reuses freed blocks, rehashes
        // the index and grows the file.
        dead_workers(&seg, 60, 4_100_000, 2.0);
        let before = seg.read(&ReadOptions::default()).unwrap();
        assert_eq!(total(&before, "t_worker_events"), 120.0);
        // Fill the index to just below its rehash threshold (load 1/2), so the GC must rehash;
        // the bigger index does not fit in the file, so it must grow too.
        let mut filler = Writer::new(&seg, WorkerKind::Test).unwrap();
        let mut i = 0;
        // (Room for the one insert and fold below, which must not rehash yet.)
        while (seg.stats().series + 4) * 2 <= seg.stats().index_capacity {
            filler
                .inc(&shared_counter(), &[("n", &i.to_string())])
                .unwrap();
            i += 1;
        }
        // Right before the GC, fold one gauge-only worker through the PID-reuse path (which
        // folds exactly that slot): it leaves a freed block of the size an exited twin needs.
        let slot = seg
            .claim_worker_for(4_099_999, 1, WorkerKind::Test)
            .unwrap();
        Writer::for_slot(&seg, WorkerKind::Test, slot)
            .set(&gauge(), &[("k", "dead")], 1.0)
            .unwrap();
        seg.claim_worker_for(4_099_999, 2, WorkerKind::Test)
            .unwrap();
        let mut kid = child(
            "gc",
            &path,
            &[("OTRS_EXPORTER_CRASH_AT", point.to_string())],
        )
        .spawn()
        .unwrap();
        let status = kid.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "crash point {point} was never reached"
        );
        // The next holder repairs whatever was left; then everything is conserved.
        let t = Instant::now();
        seg.gc(Duration::ZERO).unwrap();
        assert!(t.elapsed() < Duration::from_secs(1));
        let after = seg.read(&ReadOptions::default()).unwrap();
        assert_eq!(
            total(&after, "t_worker_events"),
            120.0,
            "counter not conserved after a crash at {point} (child {status:?})"
        );
        assert_eq!(
            total(&after, "t_latency_seconds"),
            60.0,
            "histogram at {point}"
        );
        assert_eq!(
            worker_values(&after, "t_worker_events"),
            vec![("exited".to_string(), 120.0)],
            "at {point}"
        );
        assert!(
            family(&after, "t_inflight").is_none(),
            "dead gauges dropped"
        );
        // And the segment keeps working.
        filler.inc(&own_counter(), &[("k", "after")]).unwrap();
        assert_eq!(
            total(
                &seg.read(&ReadOptions::default()).unwrap(),
                "t_worker_events"
            ),
            121.0
        );
    }
}

#[test]
fn random_kills_during_structural_churn_keep_the_segment_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut conserved = 0.0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..100u32 {
        // Dead workers whose values must survive whatever happens to the GC that folds them.
        dead_workers(&seg, 3, 4_200_000 + round * 10, 1.0);
        conserved += 3.0;
        let mut kid = child("churn", &path, &[]).spawn().unwrap();
        wait_for_line(&mut kid, "ready");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(500 + rng % 15_000));
        sigkill(&mut kid);
        let fams = seg
            .read(&ReadOptions::default())
            .expect("readable after a kill");
        let dead_total: f64 = family(&fams, "t_worker_events")
            .map(|f| {
                f.series
                    .iter()
                    .filter(|s| s.labels.iter().any(|(k, v)| &**k == "k" && &**v == "dead"))
                    .map(|s| match s.value {
                        Value::Scalar(v) => v,
                        _ => 0.0,
                    })
                    .sum()
            })
            .unwrap_or(0.0);
        assert_eq!(dead_total, conserved, "round {round}");
    }
    let stats = seg.stats();
    eprintln!("after 100 random kills: {stats:?}");
}

#[test]
fn dead_workers_fold_into_exited_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    for _ in 0..3 {
        let mut kid = child("incr", &path, &[("SEG_N", "1000".into())])
            .spawn()
            .unwrap();
        assert!(kid.wait().unwrap().success());
    }
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(worker_values(&fams, "t_worker_events").len(), 3);
    assert_eq!(total(&fams, "t_inflight"), 3.0);
    // Inside the grace period nothing moves.
    let r = seg.gc(Duration::from_secs(3600)).unwrap();
    assert_eq!((r.workers_pending, r.workers_folded), (3, 0));
    // With no grace left they fold; the sum stays.
    let r = seg.gc(Duration::ZERO).unwrap();
    assert_eq!(r.workers_folded, 3);
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(
        worker_values(&fams, "t_worker_events"),
        vec![("exited".to_string(), 3000.0)]
    );
    assert_eq!(total(&fams, "t_latency_seconds"), 3000.0);
    assert_eq!(total(&fams, "t_shared_events"), 3000.0);
    assert!(family(&fams, "t_inflight").is_none());
    assert_eq!(seg.stats().workers, 0);
    // Another generation of workers adds to the same exited series.
    let mut kid = child("incr", &path, &[("SEG_N", "10".into())])
        .spawn()
        .unwrap();
    assert!(kid.wait().unwrap().success());
    seg.gc(Duration::ZERO).unwrap();
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(
        worker_values(&fams, "t_worker_events"),
        vec![("exited".to_string(), 3010.0)]
    );
}

#[test]
fn pid_reuse_is_detected_by_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let me = std::process::id();
    // An earlier process with our PID but another start time left values behind.
    let old = seg.claim_worker_for(me, 1, WorkerKind::Test).unwrap();
    let mut w = Writer::for_slot(&seg, WorkerKind::Test, old);
    w.add(&own_counter(), &[("k", "v")], 5.0).unwrap();
    let before = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(
        worker_values(&before, "t_worker_events"),
        vec![(me.to_string(), 5.0)]
    );
    // We claim our own slot: the stale one is folded at once, so one label never means two
    // processes, and the sum does not drop.
    let mut mine = Writer::new(&seg, WorkerKind::Test).unwrap();
    mine.add(&own_counter(), &[("k", "v")], 1.0).unwrap();
    let after = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(
        worker_values(&after, "t_worker_events"),
        vec![(me.to_string(), 1.0), ("exited".to_string(), 5.0)]
    );
}

#[test]
fn a_writer_keeps_counting_while_the_file_grows_and_the_index_rehashes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let size0 = seg.stats().size_bytes;
    let mut kid = child("incr", &path, &[("SEG_N", "300000".into())])
        .spawn()
        .unwrap();
    wait_for_line(&mut kid, "ready");
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    for i in 0..30_000 {
        w.inc(&own_counter(), &[("n", &i.to_string())]).unwrap();
    }
    assert!(kid.wait().unwrap().success());
    let stats = seg.stats();
    assert!(stats.size_bytes > size0, "file grew: {stats:?}");
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(total(&fams, "t_shared_events"), 300_000.0);
    assert_eq!(total(&fams, "t_worker_events"), 330_000.0);
}

#[test]
fn a_full_segment_refuses_writes_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let mut o = opts(&path);
    o.max_bytes = 1 << 20;
    o.initial_bytes = 256 << 10;
    o.worker_slots = 16;
    let seg = Segment::open(&o).unwrap();
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    let mut err = None;
    for i in 0..100_000 {
        if let Err(e) = w.inc(&own_counter(), &[("n", &i.to_string())]) {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("a 1 MiB segment cannot hold 100k series");
    assert!(matches!(err, SegmentError::Full(_)), "{err}");
    assert!(err.to_string().contains("max_bytes"), "{err}");
    assert!(seg.stats().write_failures >= 1);
    // Existing series still work and the segment still reads.
    w.inc(&own_counter(), &[("n", "1")]).unwrap();
    assert!(seg.read(&ReadOptions::default()).is_ok());
}

#[test]
fn corrupt_truncated_and_foreign_segments_are_recreated() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("bad magic", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.write_all_at(b"garbage!", 0).unwrap();
        }),
        ("truncated", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(5000).unwrap();
        }),
        ("wrong version", |p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.write_all_at(&99u32.to_le_bytes(), 8).unwrap();
        }),
        ("empty file", |p| {
            std::fs::write(p, b"").unwrap();
        }),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        {
            let seg = open(&path);
            let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
            w.inc(&own_counter(), &[]).unwrap();
        }
        damage(&path);
        let seg = open(&path);
        let fams = seg.read(&ReadOptions::default()).unwrap();
        assert!(fams.is_empty(), "{what}: recreated empty");
        let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
        w.inc(&own_counter(), &[]).unwrap();
        assert_eq!(
            total(
                &seg.read(&ReadOptions::default()).unwrap(),
                "t_worker_events"
            ),
            1.0
        );
    }
}

#[test]
fn damage_inside_the_arena_is_reported_not_crashed_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    for i in 0..500 {
        w.inc(&own_counter(), &[("n", &i.to_string())]).unwrap();
    }
    let used = seg.stats();
    // Overwrite the whole arena (after the worker table) with a byte pattern.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let arena = 8192 + 4096 + 256 * 48;
    let junk = vec![0xA5u8; (used.size_bytes as usize) - arena];
    f.write_all_at(&junk, arena as u64).unwrap();
    match seg.read(&ReadOptions::default()) {
        Err(SegmentError::Corrupt(msg)) => {
            let fresh = seg.recreate(&msg).unwrap();
            assert!(fresh.read(&ReadOptions::default()).unwrap().is_empty());
            assert!(seg.is_stale(), "old mapping is flagged");
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn clear_replaces_the_file_and_writers_follow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    w.add(&own_counter(), &[], 7.0).unwrap();
    let fresh = seg.clear().unwrap();
    assert!(seg.is_stale());
    assert!(fresh.read(&ReadOptions::default()).unwrap().is_empty());
    assert!(w.refresh().unwrap(), "writer notices and reopens");
    w.inc(&own_counter(), &[]).unwrap();
    assert_eq!(
        total(
            &fresh.read(&ReadOptions::default()).unwrap(),
            "t_worker_events"
        ),
        1.0
    );
}

#[test]
fn file_and_semaphore_permissions_follow_the_settings() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("seg");
    let mut o = opts(&path);
    o.mode = 0o640;
    let _seg = Segment::open(&o).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    o.mode = 0o666;
    let err = Segment::open(&o).err().expect("world-writable refused");
    assert!(err.to_string().contains("any user"), "{err}");
}

#[test]
fn a_warm_read_cache_never_serves_stale_labels() {
    use otrs_exporter::segment::ReadCache;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut cache = ReadCache::new();
    let opts = ReadOptions::default();
    let same = |seg: &Segment, cache: &mut ReadCache| {
        let warm = seg.read_cached(&opts, cache).unwrap();
        let cold = seg.read(&opts).unwrap();
        assert_eq!(warm, cold, "warm and cold reads differ");
        // Full reads check their order once and replays keep it, so no scrape's normalize
        // walks these series again; the mark never claims an order that is not there.
        for f in &warm {
            assert!(f.ordered, "{} not marked ordered", f.name);
            assert!(otrs_exporter::snapshot::strictly_ascending(
                &f.series,
                |s| &s.labels
            ));
        }
        // Handed back as a service does once the scrape is sent: the next replay refills it.
        cache.give_back(warm.clone());
        warm
    };
    // A dead worker's series, cached.
    let slot = seg
        .claim_worker_for(4_300_001, 1, WorkerKind::Test)
        .unwrap();
    Writer::for_slot(&seg, WorkerKind::Test, slot)
        .add(&own_counter(), &[("k", "v")], 2.0)
        .unwrap();
    same(&seg, &mut cache);
    same(&seg, &mut cache);
    // It is folded, its slot and entry memory are reused by another PID with the same labels:
    // the cached labels at that offset must not show the old PID.
    seg.gc(Duration::ZERO).unwrap();
    let slot2 = seg
        .claim_worker_for(4_300_002, 1, WorkerKind::Test)
        .unwrap();
    assert_eq!(slot2, slot, "the freed slot is reused");
    Writer::for_slot(&seg, WorkerKind::Test, slot2)
        .add(&own_counter(), &[("k", "v")], 5.0)
        .unwrap();
    let fams = same(&seg, &mut cache);
    assert_eq!(
        worker_values(&fams, "t_worker_events"),
        vec![("4300002".to_string(), 5.0), ("exited".to_string(), 2.0)]
    );
    // Churn: new series and folds between warm reads, always equal to a cold read.
    for round in 0..20u32 {
        let s = seg
            .claim_worker_for(4_310_000 + round, 1, WorkerKind::Test)
            .unwrap();
        let mut w = Writer::for_slot(&seg, WorkerKind::Test, s);
        for i in 0..(round * 7) % 50 {
            w.inc(&own_counter(), &[("n", &i.to_string())]).unwrap();
        }
        same(&seg, &mut cache);
        if round % 3 == 0 {
            seg.gc(Duration::ZERO).unwrap();
        }
        same(&seg, &mut cache);
    }
    assert!(!cache.is_empty());
    // Nothing structural changes now, only values: warm reads replay the last full read's
    // entries, and still show every new value.
    let slot3 = seg
        .claim_worker_for(4_400_001, 1, WorkerKind::Test)
        .unwrap();
    let mut w = Writer::for_slot(&seg, WorkerKind::Test, slot3);
    w.add(&own_counter(), &[("k", "v")], 1.0).unwrap();
    same(&seg, &mut cache);
    let before = cache.replays();
    for round in 1..=5u32 {
        w.add(&own_counter(), &[("k", "v")], 1.0).unwrap();
        let fams = same(&seg, &mut cache);
        let mine = worker_values(&fams, "t_worker_events")
            .into_iter()
            .find(|(k, _)| k == "4400001")
            .map(|(_, v)| v);
        assert_eq!(mine, Some(f64::from(round + 1)));
    }
    assert_eq!(
        cache.replays(),
        before + 5,
        "value-only changes are replayed"
    );
    // A new series ends the replays; the read that follows shows it.
    w.add(&own_counter(), &[("k", "new")], 1.0).unwrap();
    let fams = same(&seg, &mut cache);
    assert_eq!(
        cache.replays(),
        before + 5,
        "a new series forces a full read"
    );
    assert!(fams.iter().any(|f| f
        .series
        .iter()
        .any(|s| s.labels.iter().any(|(k, v)| &**k == "k" && &**v == "new"))));
    same(&seg, &mut cache);
    assert_eq!(cache.replays(), before + 6);
}

#[test]
fn handed_back_families_are_refilled_in_place_only_as_they_were_left() {
    use otrs_exporter::segment::ReadCache;
    let dir = tempfile::tempdir().unwrap();
    let seg = open(&dir.path().join("seg"));
    let mut writers: Vec<Writer> = (0..3u32)
        .map(|i| {
            let slot = seg
                .claim_worker_for(4_500_001 + i, 1, WorkerKind::Test)
                .unwrap();
            Writer::for_slot(&seg, WorkerKind::Test, slot)
        })
        .collect();
    let write = |writers: &mut Vec<Writer>, round: u32| {
        for (i, w) in writers.iter_mut().enumerate() {
            for k in 0..20 {
                w.add(
                    &own_counter(),
                    &[("k", &k.to_string())],
                    f64::from(round + 1),
                )
                .unwrap();
            }
            w.observe(
                &latency(),
                &[("route", "a")],
                0.01 * f64::from(round) + i as f64,
            )
            .unwrap();
            w.set(&gauge(), &[], f64::from(round)).unwrap();
        }
    };
    let opts = ReadOptions::default();
    let mut cache = ReadCache::new();
    write(&mut writers, 0);
    seg.read_cached(&opts, &mut cache).unwrap(); // the full read that plans
    let mut last = seg.read_cached(&opts, &mut cache).unwrap(); // a replay, built anew
    assert_eq!(cache.refills(), 0, "nothing was handed back yet");
    let families = last.len() as u64;
    assert_eq!(families, 3);
    for round in 1..=4 {
        write(&mut writers, round);
        let storage: Vec<*const Series> = last.iter().map(|f| f.series.as_ptr()).collect();
        cache.give_back(last);
        let now = seg.read_cached(&opts, &mut cache).unwrap();
        assert_eq!(
            now,
            seg.read(&opts).unwrap(),
            "round {round}: refilled != cold read"
        );
        assert_eq!(cache.refills(), families, "round {round}");
        let mut reused: Vec<*const Series> = now.iter().map(|f| f.series.as_ptr()).collect();
        reused.sort();
        let mut storage = storage;
        storage.sort();
        assert_eq!(
            reused, storage,
            "round {round}: the same series storage, refilled"
        );
        last = now;
    }
    // What a scrape changed is not refilled: a family that got another series (merged with a
    // collector's family of the same name), one whose label set is an equal copy, one
    // renamed. The read still equals a cold read.
    write(&mut writers, 5);
    let mut back = last.clone();
    let extra = back[0].series[0].clone();
    back[0].series.push(extra);
    let copy: Vec<_> = back[1].series[0].labels.iter().cloned().collect();
    back[1].series[0].labels = copy.into();
    back[2].name.push_str("_other");
    cache.give_back(back);
    let now = seg.read_cached(&opts, &mut cache).unwrap();
    assert_eq!(now, seg.read(&opts).unwrap());
    assert_eq!(cache.refills(), 0, "none of them is as the replay left it");
    // A new series ends the replays: the full read refills nothing and shows it.
    write(&mut writers, 6);
    writers[0].inc(&own_counter(), &[("k", "new")]).unwrap();
    cache.give_back(now);
    let now = seg.read_cached(&opts, &mut cache).unwrap();
    assert_eq!(cache.refills(), 0);
    assert_eq!(now, seg.read(&opts).unwrap());
}

#[test]
fn warm_reads_during_another_process_inserts_miss_nothing_afterwards() {
    use otrs_exporter::segment::ReadCache;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut cache = ReadCache::new();
    let opts = ReadOptions::default();
    let n = 20_000u64;
    let pace = 20;
    let mut kid = paced("grow", &path, n, pace);
    let count = |fams: &[otrs_exporter::snapshot::Family]| {
        fams.iter()
            .filter(|f| f.name == "t_worker_events")
            .map(|f| f.series.len())
            .sum::<usize>()
    };
    let (mut reads, mut last) = (0u64, 0usize);
    while kid.try_wait().unwrap().is_none() {
        let fams = seg.read_cached(&opts, &mut cache).expect("a warm read");
        let now = count(&fams);
        assert!(now >= last, "series went missing: {now} after {last}");
        last = now;
        reads += 1;
        pace_on(&mut kid);
    }
    assert!(kid.wait().unwrap().success());
    assert!(reads >= pace, "{reads} reads");
    // Every insert the reads raced with is in the next read, and in the replays after it.
    for _ in 0..3 {
        let warm = seg.read_cached(&opts, &mut cache).unwrap();
        assert_eq!(count(&warm), n as usize);
        assert_eq!(warm, seg.read(&opts).unwrap());
    }
    assert!(cache.replays() >= 2, "{} replays", cache.replays());
}

#[test]
fn a_large_one_off_read_shared_over_threads_equals_a_full_read() {
    use otrs_exporter::segment::ReadCache;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    // Well above the size where a one-off read takes a thread per core: several workers
    // (`worker` labels, sorted among the others), a shared family, a histogram, a gauge.
    for worker in 0..6u32 {
        let slot = seg
            .claim_worker_for(4_500_000 + worker, 1, WorkerKind::Test)
            .unwrap();
        let mut w = Writer::for_slot(&seg, WorkerKind::Test, slot);
        for i in 0..900u32 {
            let route = format!("r{:03}", (i * 7 + worker) % 211);
            let method = ["GET", "POST", "HEAD"][(i % 3) as usize];
            w.add(
                &own_counter(),
                &[("method", method), ("route", &route)],
                f64::from(i),
            )
            .unwrap();
            if i % 4 == 0 {
                w.observe(&latency(), &[("route", &route)], f64::from(i) / 1000.0)
                    .unwrap();
                w.set(&gauge(), &[("z", &i.to_string())], f64::from(worker))
                    .unwrap();
            }
            if i % 9 == 0 {
                w.inc(&shared_counter(), &[("route", &route)]).unwrap();
            }
        }
    }
    let opts = ReadOptions::default();
    let cold = seg.read(&opts).unwrap();
    let series: usize = cold.iter().map(|f| f.series.len()).sum();
    assert!(series > 6000, "{series} series");
    // A process that keeps a cache reads on one thread: the same families, series and order.
    let full = seg.read_cached(&opts, &mut ReadCache::new()).unwrap();
    assert_eq!(cold, full);
    for fam in &cold {
        assert!(otrs_exporter::snapshot::strictly_ascending(
            &fam.series,
            |s| &s.labels
        ));
    }
    // One-off reads racing another process's inserts, rehashes, growth and GC (which folds
    // the dead workers above into `exited`, keeping their sums): each read whole, its total
    // never below the one before, and the reads see the other process's series arrive.
    let before = total(&cold, "t_worker_events");
    let mut kid = child("churn", &path, &[]).spawn().unwrap();
    wait_for_line(&mut kid, "ready");
    let mut last = before;
    for _ in 0..8 {
        let fams = seg.read(&opts).expect("a one-off read");
        let now = total(&fams, "t_worker_events");
        assert!(now >= last, "counts went missing: {now} after {last}");
        last = now;
    }
    kid.kill().unwrap();
    kid.wait().unwrap();
    assert!(last > before, "the reads overlapped none of the inserts");
    assert_eq!(
        seg.read(&opts).unwrap(),
        seg.read_cached(&opts, &mut ReadCache::new()).unwrap()
    );
}

#[test]
fn validating_while_another_process_grows_the_file_never_recreates_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let mut o = opts(&path);
    o.initial_bytes = 64 << 10;
    o.max_bytes = 256 << 20;
    let seg = Segment::open(&o).unwrap();
    let n = 150_000u64;
    let pace = 100;
    let mut kid = paced("grow", &path, n, pace);
    let mut checks = 0u64;
    while kid.try_wait().unwrap().is_none() {
        // What every scrape does: validate the open segment, and open it anew (CGI).
        seg.check().expect("a growing segment is not corrupt");
        let again = Segment::open(&o).unwrap();
        assert!(
            !again.is_stale() && !seg.is_stale(),
            "the segment was recreated"
        );
        checks += 1;
        pace_on(&mut kid);
    }
    assert!(kid.wait().unwrap().success());
    assert!(checks >= pace, "{checks} checks");
    assert!(
        seg.stats().size_bytes >= 16 << 20,
        "the file grew: {:?}",
        seg.stats()
    );
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(total(&fams, "t_worker_events"), n as f64);
}

#[test]
fn reading_while_another_process_registers_families_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let pace = 20;
    let mut kid = paced("families", &path, 400, pace);
    let mut reads = 0;
    while kid.try_wait().unwrap().is_none() {
        // A family registered after a read listed the families must not look like damage.
        seg.read(&ReadOptions::default())
            .expect("a read racing a family registration succeeds");
        reads += 1;
        pace_on(&mut kid);
    }
    assert!(kid.wait().unwrap().success());
    assert!(reads >= pace, "{reads} reads");
    let fams = seg.read(&ReadOptions::default()).unwrap();
    assert_eq!(
        fams.iter().filter(|f| f.name.starts_with("t_dyn_")).count(),
        400
    );
}

#[test]
fn a_damaged_series_count_in_the_header_is_not_trusted_for_memory() {
    // Found by tests/faults.rs: the live-series counter is a hint for the reader's label
    // table; a flipped byte there made a cold read try to allocate terabytes and abort.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    w.inc(&own_counter(), &[("k", "v")]).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(
        &(1u64 << 44).to_le_bytes(),
        otrs_exporter::segment::layout::H_SERIES_LIVE,
    )
    .unwrap();
    let fresh = open(&path);
    let fams = fresh.read(&ReadOptions::default()).unwrap();
    assert_eq!(total(&fams, "t_worker_events"), 1.0);
}

#[test]
fn a_damaged_committed_size_never_lets_a_mapped_process_touch_pages_past_the_file() {
    // Found by tests/faults.rs (a FastCGI worker killed by SIGBUS): header words flipped while
    // the file is mapped claimed more committed bytes than the file has, and the allocation
    // pointer beyond its end; the next new series was written past the end of the file.
    use otrs_exporter::segment::layout::{H_BUMP, H_FILE_SIZE};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    w.inc(&own_counter(), &[("k", "v")]).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&(size + (8 << 20)).to_le_bytes(), H_FILE_SIZE)
        .unwrap();
    f.write_all_at(&(size + (4 << 20)).to_le_bytes(), H_BUMP)
        .unwrap();
    // Either refused or done after a real growth; never a fault.
    let r = w.inc(&own_counter(), &[("k", "new")]);
    let grown = std::fs::metadata(&path).unwrap().len();
    assert!(r.is_err() || grown > size, "{r:?}, file {size} -> {grown}");
    let _ = seg.read(&ReadOptions::default());
}

#[test]
fn a_damaged_worker_slot_count_in_a_mapped_segment_is_not_followed() {
    // Found by tests/faults.rs (a FastCGI worker killed by SIGBUS at seed 928 of 1000): the
    // slot count was re-read from shared memory on every use, so a damaged header word made
    // `stats()` walk "worker slots" far past the end of the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let seg = open(&path);
    Writer::new(&seg, WorkerKind::Test)
        .unwrap()
        .inc(&own_counter(), &[])
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(
        &10_747_968u32.to_le_bytes(),
        otrs_exporter::segment::layout::H_WORKER_SLOTS,
    )
    .unwrap();
    assert_eq!(seg.stats().worker_slots, 256);
    assert_eq!(
        total(
            &seg.read(&ReadOptions::default()).unwrap(),
            "t_worker_events"
        ),
        1.0
    );
    let _ = seg.dump();
    let _ = seg.gc(Duration::ZERO);
}
