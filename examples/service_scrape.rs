//! Times whole scrapes through [`Service::scrape`] (collectors, normalize, render) in one
//! process, as a FastCGI worker runs them, with the settings of `$OTRS_EXPORTER_CONFIG`:
//! `service_scrape [ITERATIONS] [QUERY]` prints the body size, mean/p50/p99 per scrape and each
//! collector's mean duration. Used to see where front-end latency goes (bench/scrape.sh) and
//! under `valgrind --tool=callgrind` for instruction counts.

use std::time::{Duration, Instant};

use otrs_exporter::front::request::Request;
use otrs_exporter::service::{segment_options, Service};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let query = args.get(2).cloned().unwrap_or_default();
    let cfg = otrs_exporter::config::load(None)?.config;
    let path = cfg.metrics_path();
    let seg = segment_options(&cfg).map_err(anyhow::Error::msg)?;
    let service = Service::new(cfg, seg);
    let req = Request::from_cgi_params(
        vec![
            ("REQUEST_METHOD".into(), "GET".into()),
            ("REQUEST_URI".into(), format!("{path}?{query}")),
            ("QUERY_STRING".into(), query),
        ],
        Vec::new(),
    );
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    let mut per_collector: std::collections::BTreeMap<String, f64> = Default::default();
    for i in 0..n {
        let t = Instant::now();
        let resp = service.scrape(&req);
        times.push(t.elapsed());
        size = resp.body.len();
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        if i == 0 {
            continue;
        }
        // Only the duration lines (found with memmem): a full pass over the 1 MB body would
        // cost more instructions than rendering it, spoiling callgrind counts.
        let key = b"\notrs_exporter_collector_duration_seconds{collector=\"";
        for at in memchr::memmem::find_iter(&resp.body, key) {
            let rest = &resp.body[at + key.len()..];
            let line = &rest[..memchr::memchr(b'\n', rest).unwrap_or(rest.len())];
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            if let Some((name, value)) = line.split_once("\"} ") {
                *per_collector.entry(name.to_owned()).or_default() +=
                    value.parse::<f64>().unwrap_or(0.0) / (n - 1).max(1) as f64;
            }
        }
    }
    let first = times[0];
    let mut warm: Vec<Duration> = times[1.min(n - 1)..].to_vec();
    warm.sort();
    let pct = |p: f64| warm[((warm.len() as f64 - 1.0) * p).round() as usize];
    let mean = warm.iter().sum::<Duration>() / warm.len() as u32;
    println!(
        "{size} bytes; first {first:?}; warm mean {mean:?} p50 {:?} p99 {:?}",
        pct(0.5),
        pct(0.99)
    );
    for (name, mean) in per_collector {
        println!("  {name:<20} {:.3} ms", mean * 1e3);
    }
    Ok(())
}
