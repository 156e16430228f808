//! Times one collector (`web_processes`, `daemon_processes`, `cache`, `otrs_log`) with the
//! settings of `$OTRS_EXPORTER_CONFIG`: `collect_bench <collector> <iterations>` prints the
//! series count and the mean, p50 and p99 time per collect. Used by bench/proc.sh.

use std::time::{Duration, Instant};

use otrs_exporter::collector::cache::CacheCollector;
use otrs_exporter::collector::daemon_processes::DaemonProcessCollector;
use otrs_exporter::collector::otrs_log::OtrsLogCollector;
use otrs_exporter::collector::segment::SegmentSource;
use otrs_exporter::collector::web_processes::WebProcessCollector;
use otrs_exporter::collector::{Collector, Context};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("web_processes", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let cfg = otrs_exporter::config::load(None)?.config;
    let source = SegmentSource::new(
        otrs_exporter::service::segment_options(&cfg).map_err(anyhow::Error::msg)?,
    );
    let c: Box<dyn Collector> = match name {
        "web_processes" => Box::new(WebProcessCollector::new(&cfg.processes)),
        "daemon_processes" => Box::new(DaemonProcessCollector::new(&cfg)),
        "cache" => Box::new(CacheCollector::new(source, &cfg)),
        "otrs_log" => Box::new(OtrsLogCollector::new(source, &cfg.otrs_log)),
        other => anyhow::bail!("unknown collector {other}"),
    };
    let mut times = Vec::with_capacity(n);
    let mut series = 0;
    for _ in 0..n {
        let ctx = Context::new(Instant::now() + Duration::from_secs(10));
        let t = Instant::now();
        let fams = c.collect(&ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(t.elapsed());
        series = fams.iter().map(|f| f.series.len()).sum();
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    println!(
        "{name}: {series} series, mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms over {n} collects",
        mean.as_secs_f64() * 1e3,
        times[n / 2].as_secs_f64() * 1e3,
        times[(n * 99 / 100).min(n - 1)].as_secs_f64() * 1e3
    );
    Ok(())
}
