//! Prints how long each stage of a scrape takes over a large segment (read, normalize,
//! render, drop), to see where scrape time goes: `cargo run --release --example scrape_stages`.

use std::time::Instant;

use otrs_exporter::exposition::{render, render_cached, Format, RenderCache};
use otrs_exporter::segment::{
    FamilyDef, ReadCache, ReadOptions, Segment, SegmentOptions, WorkerKind, Writer,
};
use otrs_exporter::snapshot::Snapshot;

fn main() {
    let dir = std::env::temp_dir().join(format!("scrape-stages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = SegmentOptions::new(dir.join("seg"));
    opts.max_bytes = 1 << 30;
    let seg = Segment::open(&opts).unwrap();
    let counters: Vec<FamilyDef> = (0..8)
        .map(|i| FamilyDef::counter(&format!("bench_requests_{i}"), "Requests."))
        .collect();
    let hists: Vec<FamilyDef> = (0..2)
        .map(|i| {
            FamilyDef::histogram(
                &format!("bench_latency_{i}_seconds"),
                "Latency.",
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0],
            )
        })
        .collect();
    let workers: u32 = std::env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for w in 0..workers {
        // PIDs that cannot exist: distinct workers (no GC runs here to fold them).
        let slot = seg
            .claim_worker_for(3_000_000 + w, 1, WorkerKind::Test)
            .unwrap();
        let mut wr = Writer::for_slot(&seg, WorkerKind::Test, slot);
        for i in 0..500u32 {
            let id = format!("w{w}-s{i}");
            if i % 5 == 0 {
                wr.observe(
                    &hists[(i as usize / 5) % 2],
                    &[("route", &id), ("method", "GET")],
                    0.1,
                )
                .unwrap();
            } else {
                wr.add(
                    &counters[i as usize % 8],
                    &[("route", &id), ("method", "GET"), ("code", "200")],
                    3.0,
                )
                .unwrap();
            }
        }
    }
    let mut out = Vec::new();
    // WARM=1 keeps the read and render caches between rounds, as a FastCGI worker does.
    let warm = std::env::var("WARM").is_ok_and(|v| v == "1");
    let mut read_cache = ReadCache::new();
    let mut render_cache = RenderCache::new();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for round in 0..rounds {
        let t0 = Instant::now();
        let fams = if warm {
            seg.read_cached(&ReadOptions::default(), &mut read_cache)
                .unwrap()
        } else {
            seg.read(&ReadOptions::default()).unwrap()
        };
        let t1 = Instant::now();
        let mut snap = Snapshot { families: fams };
        snap.normalize();
        let t2 = Instant::now();
        out.clear();
        if warm {
            render_cached(&snap, Format::Text, &mut out, &mut render_cache);
        } else {
            render(&snap, Format::Text, &mut out);
        }
        let t3 = Instant::now();
        let n = snap.series_count();
        drop(snap);
        let t4 = Instant::now();
        println!(
            "round {round}: {n} series, {} MB: read {:.1} ms, normalize {:.1} ms, render {:.1} ms, drop {:.1} ms, total {:.1} ms",
            out.len() / 1_000_000,
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3,
            (t4 - t3).as_secs_f64() * 1e3,
            (t4 - t0).as_secs_f64() * 1e3,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
