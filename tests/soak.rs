//! Crash soak: writers of every kind SIGKILLed at random points while others write and scrape.
//!
//! Lanes run at once against one segment, each restarting its kind of process after every
//! kill: plain writer processes (this test binary re-executed, counting into their own series
//! and creating new ones, so kills land inside structural changes), the Apache piped logger
//! (`otrs-exporter ingest`), FastCGI workers (`otrs-exporter serve --listen unix:…`) answering
//! scrapes, and console GC (`delete-dead-worker-values`, `segment gc --grace 0`, `gc`). Checked:
//! no process wedges (every wait is bounded), surviving writers count exactly what they wrote,
//! killed ones a value between what was acknowledged and what was attempted, counter sums in
//! scrapes never decrease, and the segment stays valid (`segment dump` and every scrape).
//!
//! `SOAK_KILLS` sets the number of SIGKILLs (default 1000); `bench/soak.sh` runs longer soaks.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{fcgi, figures, sigkill, sum_of, wait_timeout, Rng, BIN, METRICS};
use otrs_exporter::segment::{FamilyDef, ReadOptions, Segment, SegmentOptions, WorkerKind, Writer};
use otrs_exporter::snapshot::{Family, Value};

/// How long any process may take to do what it was asked (start, finish, exit) before it
/// counts as wedged. Generous: a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(20);

fn events() -> FamilyDef {
    FamilyDef::counter("soak_events", "Increments of soak writer processes")
}

fn churn() -> FamilyDef {
    FamilyDef::counter("soak_churn", "New series created by soak writers")
}

fn seg_opts(path: &Path) -> SegmentOptions {
    SegmentOptions::new(path)
}

/// Entry point of the writer processes; a no-op in normal test runs.
#[test]
#[ignore = "entry point for the child processes of the soak"]
fn child_entry() {
    let Ok(path) = std::env::var("SOAK_SEGMENT") else {
        return;
    };
    let inst = std::env::var("SOAK_INST").unwrap();
    let n: u64 = std::env::var("SOAK_N").unwrap().parse().unwrap();
    let seg = Segment::open(&seg_opts(Path::new(&path))).unwrap();
    let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
    let h = w.handle(&events(), &[("inst", &inst)]).unwrap();
    println!("ready");
    for i in 0..n {
        if i > 0 && i % 1000 == 0 {
            // Exactly `i` increments are done. Then a new series of this worker (a structural
            // change under the semaphore; after GC they fold into 64 `exited` series).
            println!("acked {i}");
            w.inc(&churn(), &[("b", &(i / 1000 % 64).to_string())])
                .unwrap();
        }
        h.inc();
    }
    println!("acked {n}");
}

#[derive(Default)]
struct Tally {
    kills: AtomicU64,
    kills_by: Mutex<BTreeMap<&'static str, u64>>,
    survivors_by: Mutex<BTreeMap<&'static str, u64>>,
    wedged: Mutex<Vec<String>>,
    lost: Mutex<Vec<String>>,
    decreases: Mutex<Vec<String>>,
    invalid: Mutex<Vec<String>>,
    scrapes: AtomicU64,
    dumps: AtomicU64,
    gc_completed: AtomicU64,
}

impl Tally {
    fn killed(&self, kind: &'static str) {
        self.kills.fetch_add(1, Ordering::SeqCst);
        *self.kills_by.lock().unwrap().entry(kind).or_default() += 1;
    }
    fn survived(&self, kind: &'static str) {
        *self.survivors_by.lock().unwrap().entry(kind).or_default() += 1;
    }
    fn wedge(&self, what: String) {
        self.wedged.lock().unwrap().push(what);
    }
}

struct Soak {
    dir: tempfile::TempDir,
    config: PathBuf,
    segment: PathBuf,
    target: u64,
    tally: Tally,
    /// (instance, lowest acceptable value, highest acceptable value) per writer process.
    writers: Mutex<Vec<(String, f64, f64)>>,
    /// The same per ingester process (its own route).
    ingesters: Mutex<Vec<(String, f64, f64)>>,
    /// Scrapes answered / sent by FastCGI workers (all of them).
    scrapes_acked: AtomicU64,
    scrapes_sent: AtomicU64,
}

impl Soak {
    fn done(&self) -> bool {
        self.tally.kills.load(Ordering::SeqCst) >= self.target
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Reads the segment in this process (a reader never takes the semaphore).
    fn read(&self) -> Vec<Family> {
        let seg = Segment::open(&seg_opts(&self.segment)).expect("segment opens");
        seg.read(&ReadOptions::default()).expect("segment reads")
    }

    /// `segment dump --json` must succeed, within the bound, without finding damage.
    fn check_dump(&self, when: &str) {
        let mut child = self
            .cmd(&["segment", "dump", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out_pipe = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut BufReader::new(out_pipe), &mut s);
            s
        });
        let Some(status) = wait_timeout(&mut child, BOUND) else {
            sigkill(&child);
            let _ = child.wait();
            self.tally.wedge(format!("segment dump {when}"));
            return;
        };
        let stdout = reader.join().unwrap();
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
        self.tally.dumps.fetch_add(1, Ordering::Relaxed);
        let parsed = serde_json::from_str::<serde_json::Value>(&stdout).is_ok();
        if !status.success() || !parsed || stderr.contains("corrupt") || stderr.contains("unusable")
        {
            self.tally
                .invalid
                .lock()
                .unwrap()
                .push(format!("dump {when}: {status} {stderr}"));
        }
    }
}

fn label<'a>(labels: &'a [(std::sync::Arc<str>, std::sync::Arc<str>)], k: &str) -> Option<&'a str> {
    labels.iter().find(|(n, _)| &**n == k).map(|(_, v)| &**v)
}

/// Sum of a counter family over the series whose label `k` is `v`.
fn sum_where(fams: &[Family], family: &str, k: &str, v: &str) -> f64 {
    fams.iter()
        .filter(|f| f.name == family)
        .flat_map(|f| f.series.iter())
        .filter(|s| label(&s.labels, k) == Some(v))
        .map(|s| match s.value {
            Value::Scalar(x) => x,
            Value::Histogram { count, .. } => count as f64,
        })
        .sum()
}

fn sum_all(fams: &[Family], family: &str) -> f64 {
    fams.iter()
        .filter(|f| f.name == family)
        .flat_map(|f| f.series.iter())
        .map(|s| match s.value {
            Value::Scalar(x) => x,
            Value::Histogram { count, .. } => count as f64,
        })
        .sum()
}

/// Plain writer processes: count into `soak_events{inst}`, a new series every 1000.
fn writer_lane(s: &Soak, lane: u64) {
    let mut rng = Rng(0x51_7cc1_b727_220a ^ ((lane + 1) * 0x9e37_79b9));
    let mut k = 0;
    while !s.done() {
        k += 1;
        let inst = format!("w{lane}-{k}");
        let n = rng.range(20_000, 300_000);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_entry",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("SOAK_SEGMENT", &s.segment)
            .env("SOAK_INST", &inst)
            .env("SOAK_N", n.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill = rng.chance(0.7);
        if kill {
            std::thread::sleep(Duration::from_micros(rng.range(500, 40_000)));
            let alive = child.try_wait().unwrap().is_none();
            sigkill(&child);
            if alive {
                s.tally.killed("writer");
            }
        }
        if wait_timeout(&mut child, BOUND).is_none() {
            s.tally.wedge(format!("writer {inst}"));
            sigkill(&child);
            let _ = child.wait();
        }
        // What the process said it had done (line-buffered, so every line it wrote is here).
        let mut acked = None;
        let mut finished = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = line.strip_prefix("acked ") {
                let v: u64 = v.trim().parse().unwrap();
                finished = v == n;
                acked = Some(v);
            }
        }
        match acked {
            // Killed before its first series existed: nothing to check (value 0 or absent).
            None => s.writers.lock().unwrap().push((inst, 0.0, 1000.0)),
            Some(v) if finished => {
                s.tally.survived("writer");
                s.writers.lock().unwrap().push((inst, v as f64, v as f64));
            }
            Some(v) => {
                let hi = (v + 1000).min(n);
                s.writers.lock().unwrap().push((inst, v as f64, hi as f64));
            }
        }
    }
}

fn access_line(pid: u32, uri: &str) -> String {
    format!("otrs-exporter:1\tapache\t{pid}\t2500\t1234\tGET\t{uri}\t200\t-\n")
}

/// Apache's piped logger: each process gets its own route, killed mid-stream or closed.
fn ingest_lane(s: &Soak) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let me = std::process::id();
    let mut k = 0;
    while !s.done() {
        k += 1;
        let action = format!("SoakI{k}");
        let route = format!("agent:{action}");
        let n = rng.range(200, 3_000);
        let text: String = (0..n)
            .map(|i| access_line(me, &format!("/otrs/index.pl?Action={action};TicketID={i}")))
            .collect();
        let mut child = s
            .cmd(&["ingest", "--wait"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
            // Dropping stdin closes the pipe: a survivor finishes and exits.
        });
        if rng.chance(0.7) {
            std::thread::sleep(Duration::from_micros(rng.range(1_000, 30_000)));
            // Acknowledged: what a reader sees counted before the kill.
            let seen = sum_where(&s.read(), "otrs_http_requests", "route", &route);
            let alive = child.try_wait().unwrap().is_none();
            sigkill(&child);
            if alive {
                s.tally.killed("ingest");
            }
            let _ = child.wait();
            let _ = feeder.join();
            s.ingesters.lock().unwrap().push((route, seen, n as f64));
        } else {
            let _ = feeder.join();
            match wait_timeout(&mut child, BOUND) {
                Some(st) if st.success() => {
                    s.tally.survived("ingest");
                    s.ingesters
                        .lock()
                        .unwrap()
                        .push((route, n as f64, n as f64));
                }
                Some(st) => s
                    .tally
                    .invalid
                    .lock()
                    .unwrap()
                    .push(format!("ingest {route} exited {st}")),
                None => {
                    s.tally.wedge(format!("ingest {route}"));
                    sigkill(&child);
                    let _ = child.wait();
                }
            }
        }
    }
}

/// FastCGI workers answering scrapes; this lane is also the scraper that checks sums never
/// decrease and the segment collector always succeeds.
fn serve_lane(s: &Soak) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut k = 0;
    let mut last: BTreeMap<&str, f64> = BTreeMap::new();
    let query = "collect[]=segment&collect[]=exporter";
    while !s.done() {
        k += 1;
        let sock = s.dir.path().join(format!("f{k}.sock"));
        let log = s.dir.path().join(format!("f{k}.log"));
        let mut child = s
            .cmd(&["serve", "--listen", &format!("unix:{}", sock.display())])
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if !common::wait_listening(&sock, BOUND) {
            s.tally.wedge(format!("serve {k} never listened"));
            sigkill(&child);
            let _ = child.wait();
            continue;
        }
        let pid = child.id().to_string();
        let mut acked = 0u64;
        let scrapes = rng.range(1, 6);
        for _ in 0..scrapes {
            s.scrapes_sent.fetch_add(1, Ordering::SeqCst);
            match fcgi::get(&sock, METRICS, query, BOUND) {
                Ok((200, body)) => {
                    acked += 1;
                    s.scrapes_acked.fetch_add(1, Ordering::SeqCst);
                    s.tally.scrapes.fetch_add(1, Ordering::Relaxed);
                    if common::sample(
                        &body,
                        "otrs_exporter_collector_success{collector=\"segment\"}",
                    ) != Some(1.0)
                    {
                        s.tally
                            .invalid
                            .lock()
                            .unwrap()
                            .push(format!("scrape: segment collector failed\n{body:.2000}"));
                    }
                    for name in [
                        "soak_events_total",
                        "otrs_http_requests_total",
                        "otrs_exporter_scrapes_total",
                    ] {
                        let now = sum_of(&body, name);
                        let before = last.get(name).copied().unwrap_or(0.0);
                        if now < before {
                            s.tally
                                .decreases
                                .lock()
                                .unwrap()
                                .push(format!("{name}: {before} -> {now}"));
                        }
                        last.insert(name, now);
                    }
                }
                Ok((status, body)) => s
                    .tally
                    .invalid
                    .lock()
                    .unwrap()
                    .push(format!("scrape status {status}: {body:.500}")),
                Err(e) => s.tally.wedge(format!(
                    "scrape of serve {k}: {e}; exited: {:?}; log: {}",
                    child.try_wait(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                )),
            }
        }
        if rng.chance(0.75) {
            // Killed idle or in the middle of a scrape.
            let sent_one = rng.chance(0.7);
            let mut conn = None;
            if sent_one {
                if let Ok(mut c) = std::os::unix::net::UnixStream::connect(&sock) {
                    if c.write_all(&fcgi::get_request(METRICS, query)).is_ok() {
                        s.scrapes_sent.fetch_add(1, Ordering::SeqCst);
                    }
                    conn = Some(c);
                }
            }
            std::thread::sleep(Duration::from_micros(rng.range(0, 15_000)));
            let alive = child.try_wait().unwrap().is_none();
            sigkill(&child);
            if alive {
                s.tally.killed("fastcgi");
            }
            let _ = child.wait();
            drop(conn);
        } else {
            // A survivor: its own counter is exactly the scrapes it answered.
            let mine = sum_where(&s.read(), "otrs_exporter_scrapes", "worker", &pid);
            if mine != acked as f64 {
                s.tally
                    .lost
                    .lock()
                    .unwrap()
                    .push(format!("serve {pid}: counted {mine}, answered {acked}"));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            match wait_timeout(&mut child, BOUND) {
                Some(_) => s.tally.survived("fastcgi"),
                None => {
                    s.tally.wedge(format!("serve {pid} ignored SIGTERM"));
                    sigkill(&child);
                    let _ = child.wait();
                }
            }
        }
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&log);
    }
}

/// Console GC, killed at random points; every 20 rounds the segment is dumped and checked.
fn gc_lane(s: &Soak) {
    let mut rng = Rng(0x0dde_c0de_5eed_0001);
    let commands: [&[&str]; 3] = [
        &["delete-dead-worker-values"],
        &["segment", "gc", "--grace", "0"],
        &["gc"],
    ];
    let mut k = 0u64;
    while !s.done() {
        k += 1;
        let args = commands[(k % 3) as usize];
        let mut child = s.cmd(args).stderr(Stdio::piped()).spawn().unwrap();
        std::thread::sleep(Duration::from_micros(rng.range(0, 50_000)));
        match child.try_wait().unwrap() {
            Some(st) => {
                s.tally.gc_completed.fetch_add(1, Ordering::Relaxed);
                if !st.success() {
                    let mut e = String::new();
                    let _ =
                        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut e);
                    s.tally
                        .invalid
                        .lock()
                        .unwrap()
                        .push(format!("{args:?} failed: {e}"));
                }
            }
            None => {
                sigkill(&child);
                s.tally.killed("gc");
                if wait_timeout(&mut child, BOUND).is_none() {
                    s.tally.wedge(format!("{args:?} survived SIGKILL"));
                }
            }
        }
        if k % 20 == 0 {
            s.check_dump(&format!("after GC round {k}"));
        }
    }
}

#[test]
fn random_sigkills_of_every_writer_kind_lose_nothing_and_wedge_nothing() {
    let target: u64 = std::env::var("SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("shm").join("segment");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "log_level = \"warn\"\n[segment]\npath = \"{}\"\n[gc]\ngrace_seconds = 3600\n\
             [ingest]\nroute_cap = 20000\n",
            segment.display()
        ),
    )
    .unwrap();
    let soak = Soak {
        dir,
        config,
        segment,
        target,
        tally: Tally::default(),
        writers: Mutex::new(Vec::new()),
        ingesters: Mutex::new(Vec::new()),
        scrapes_acked: AtomicU64::new(0),
        scrapes_sent: AtomicU64::new(0),
    };
    let started = Instant::now();
    std::thread::scope(|sc| {
        let s = &soak;
        sc.spawn(move || writer_lane(s, 0));
        sc.spawn(move || writer_lane(s, 1));
        sc.spawn(move || ingest_lane(s));
        sc.spawn(move || serve_lane(s));
        sc.spawn(move || gc_lane(s));
    });
    let soak_time = started.elapsed();

    // A last GC that is not killed, then everything is checked against the segment.
    let st = soak.cmd(&["delete-dead-worker-values"]).status().unwrap();
    assert!(st.success(), "final GC");
    soak.check_dump("at the end");
    let fams = soak.read();
    let t = &soak.tally;
    let check = |kind: &str, list: &[(String, f64, f64)], family: &str, label: &str| {
        let mut exact = 0;
        for (inst, lo, hi) in list {
            let v = sum_where(&fams, family, label, inst);
            if v < *lo || v > *hi {
                t.lost.lock().unwrap().push(format!(
                    "{kind} {inst}: value {v}, expected between {lo} and {hi}"
                ));
            }
            if lo == hi {
                exact += 1;
            }
        }
        exact
    };
    let writers = soak.writers.lock().unwrap().clone();
    let ingesters = soak.ingesters.lock().unwrap().clone();
    let exact_w = check("writer", &writers, "soak_events", "inst");
    let exact_i = check("ingest", &ingesters, "otrs_http_requests", "route");
    let scrapes = sum_all(&fams, "otrs_exporter_scrapes");
    let (acked, sent) = (
        soak.scrapes_acked.load(Ordering::SeqCst) as f64,
        soak.scrapes_sent.load(Ordering::SeqCst) as f64,
    );
    if scrapes < acked || scrapes > sent {
        t.lost.lock().unwrap().push(format!(
            "scrapes counted {scrapes}, answered {acked}, sent {sent}"
        ));
    }
    let stats = Segment::open(&seg_opts(&soak.segment)).unwrap().stats();
    let kills = t.kills.load(Ordering::SeqCst);
    let report = format!(
        "crash soak: {kills} SIGKILLs in {:.1} s (by kind {:?}); survivors checked exactly {:?} \
         (writers {exact_w}, ingesters {exact_i}); {} writer and {} ingester processes; \
         {} scrapes answered ({} sent, {scrapes} counted); {} completed console GCs; {} segment \
         dumps\nwedged processes: {}; lost or excess increments: {}; sums decreased: {}; \
         invalid segment/scrape: {}\nsegment after: {} series, {} workers, {} recoveries of a \
         killed lock holder, {} series folded, {} bytes",
        soak_time.as_secs_f64(),
        t.kills_by.lock().unwrap(),
        t.survivors_by.lock().unwrap(),
        writers.len(),
        ingesters.len(),
        t.scrapes.load(Ordering::Relaxed),
        sent,
        t.gc_completed.load(Ordering::Relaxed),
        t.dumps.load(Ordering::Relaxed),
        t.wedged.lock().unwrap().len(),
        t.lost.lock().unwrap().len(),
        t.decreases.lock().unwrap().len(),
        t.invalid.lock().unwrap().len(),
        stats.series,
        stats.workers,
        stats.recoveries,
        stats.folded_total,
        stats.size_bytes,
    );
    figures("soak", &report);
    assert!(kills >= target, "{report}");
    for (what, list) in [
        ("wedged", &t.wedged),
        ("lost", &t.lost),
        ("decreased", &t.decreases),
        ("invalid", &t.invalid),
    ] {
        let list = list.lock().unwrap();
        assert!(
            list.is_empty(),
            "{what}: {:#?}\n{report}",
            &list[..list.len().min(10)]
        );
    }
}
