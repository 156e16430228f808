//! The `demo` command: a self-contained exporter on loopback with synthetic OTRS web traffic,
//! so a newcomer sees real output in one command.
//!
//! It creates a throwaway segment in a temporary directory, starts a few traffic-generator
//! processes (real processes with real PIDs, recycled now and then like mod_fcgid recycles
//! FastCGI workers, so `worker="exited"` shows up after GC), and serves the metrics until
//! Ctrl-C: through a throwaway Apache with mod_fcgid and basic auth when Apache is installed
//! ([`apache`]), otherwise on the built-in HTTP listener.

pub mod apache;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::families;
use crate::segment::{Segment, SegmentOptions, WorkerKind, Writer};

/// OTRS-shaped routes with their relative weight, typical latency (s) and size (bytes).
const ROUTES: &[(&str, &str, u32, f64, f64)] = &[
    ("GET", "agent:AgentDashboard", 20, 0.35, 60_000.0),
    ("GET", "agent:AgentTicketZoom", 25, 0.45, 120_000.0),
    ("POST", "agent:AgentTicketZoom", 8, 0.25, 8_000.0),
    ("GET", "agent:AgentTicketQueue", 10, 0.30, 90_000.0),
    ("POST", "agent:AgentTicketSearch", 4, 1.8, 150_000.0),
    ("GET", "customer:CustomerTicketOverview", 8, 0.20, 40_000.0),
    (
        "POST",
        "genericinterface:GenericTicketConnectorREST/Ticket",
        6,
        0.15,
        2_000.0,
    ),
    ("GET", "static", 30, 0.004, 15_000.0),
];

/// A small xorshift generator: the demo needs variety, not cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes synthetic requests into the segment at `path` for `lifetime`, as a worker would.
pub fn traffic(path: &Path, lifetime: Duration) -> Result<(), crate::segment::SegmentError> {
    let seg = Segment::open(&SegmentOptions::new(path))?;
    let mut w = Writer::new(&seg, WorkerKind::Demo)?;
    let fams = families::WebFamilies::default();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id()));
    let total: u32 = ROUTES.iter().map(|r| r.2).sum();
    let start = Instant::now();
    while start.elapsed() < lifetime {
        let mut pick = (rng.next() % u64::from(total)) as u32;
        let &(method, route, _, latency, size) = ROUTES
            .iter()
            .find(|r| {
                let hit = pick < r.2;
                pick = pick.saturating_sub(r.2);
                hit
            })
            .unwrap_or(&ROUTES[0]);
        let status = match rng.next() % 100 {
            0 => "5xx",
            1..=3 => "4xx",
            4..=8 if route != "static" => "3xx",
            _ => "2xx",
        };
        // Long-tailed latency: mostly near the typical value, sometimes much slower.
        let d = latency * (0.3 + 1.4 * rng.unit()) * if rng.next() % 50 == 0 { 8.0 } else { 1.0 };
        let bytes = size * (0.5 + rng.unit());
        w.inc(
            &fams.requests,
            &[
                ("method", method),
                ("route", route),
                ("status_class", status),
            ],
        )?;
        w.observe(&fams.duration, &[("method", method), ("route", route)], d)?;
        w.observe(&fams.size, &[("route", route)], bytes)?;
        w.handle(&fams.last_seen, &[])?
            .set_max(crate::segment::now_unix());
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 60));
    }
    Ok(())
}

/// The demo's child processes, Apache and temporary directory; cleaned up on drop.
pub struct Demo {
    dir: PathBuf,
    segment: PathBuf,
    workers: Vec<Child>,
    apache: Option<apache::DemoApache>,
    rng: Rng,
}

impl Demo {
    /// Creates the temporary directory and the segment, and starts `n` traffic workers.
    pub fn start(n: usize) -> std::io::Result<Demo> {
        Demo::start_with_group(n, None)
    }

    /// Like [`Demo::start`], with the segment (in a `shm/` subdirectory) and its semaphore
    /// owned by group `gid`, so web-server workers of that group can write it.
    pub fn start_with_group(n: usize, gid: Option<u32>) -> std::io::Result<Demo> {
        let dir = std::env::temp_dir().join(format!("otrs-exporter-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let segment = dir.join("shm").join("segment");
        let opts = SegmentOptions {
            gid,
            ..SegmentOptions::new(&segment)
        };
        Segment::open(&opts).map_err(std::io::Error::other)?;
        let mut demo = Demo {
            dir,
            segment,
            workers: Vec::new(),
            apache: None,
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id())),
        };
        for _ in 0..n {
            let child = demo.spawn_worker()?;
            demo.workers.push(child);
        }
        Ok(demo)
    }

    /// The segment file the demo writes.
    pub fn segment_path(&self) -> &Path {
        &self.segment
    }

    fn spawn_worker(&mut self) -> std::io::Result<Child> {
        let lifetime = 20 + self.rng.next() % 40;
        Command::new(std::env::current_exe()?)
            .args(["demo-traffic", "--segment"])
            .arg(&self.segment)
            .args(["--seconds", &lifetime.to_string()])
            .stdin(Stdio::null())
            .spawn()
    }

    /// Replaces workers that finished their lifetime (as mod_fcgid recycles processes).
    pub fn recycle(&mut self) {
        for i in 0..self.workers.len() {
            if matches!(self.workers[i].try_wait(), Ok(Some(_))) {
                match self.spawn_worker() {
                    Ok(c) => self.workers[i] = c,
                    Err(e) => log::warn!("cannot restart a demo worker: {e}"),
                }
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // Apache first: its FastCGI processes use files in the directory.
        drop(self.apache.take());
        for w in &mut self.workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How the demo serves the metrics.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the built-in HTTP listener (used when Apache is not).
    pub listen: std::net::SocketAddr,
    /// Loopback port for the demo's Apache (0 = any free port).
    pub apache_port: u16,
    /// Use the built-in listener even if Apache is installed.
    pub no_apache: bool,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    pub duration: Option<Duration>,
}

/// Runs the demo: traffic, and the exporter behind Apache (or on the built-in listener) until
/// SIGINT/SIGTERM or `opts.duration`.
pub fn run(mut config: crate::config::Config, opts: Options) -> anyhow::Result<()> {
    let duration = opts.duration;
    let addr = opts.listen;
    use nix::sys::signal::{SigSet, Signal};
    // Block the stop signals before any thread starts, then wait for them here.
    let mut stop = SigSet::empty();
    stop.add(Signal::SIGINT);
    stop.add(Signal::SIGTERM);
    stop.thread_block()?;

    let why_not_apache = if opts.no_apache {
        Some("--no-apache given".to_owned())
    } else {
        apache::unavailable()
    };
    // Under root, Apache's workers run as www-data: the segment belongs to its group.
    let root = nix::unistd::geteuid().is_root();
    let web_group = (why_not_apache.is_none() && root)
        .then(apache::web_user)
        .flatten();
    let mut demo = Demo::start_with_group(3, web_group.as_ref().map(|u| u.gid.as_raw()))?;
    config.segment.path = demo.segment_path().to_owned();
    config.gc.grace_seconds = 10;
    config.gc.interval_seconds = 5;
    let metrics = config.metrics_path();
    let mut fallback = why_not_apache;
    if fallback.is_none() {
        let group = web_group.as_ref().map(|_| "www-data");
        match apache::DemoApache::start(&demo.dir, opts.apache_port, demo.segment_path(), group) {
            Ok(a) => demo.apache = Some(a),
            Err(e) => fallback = Some(format!("Apache did not start: {e}")),
        }
    }
    let mut http = None;
    if let Some(a) = &demo.apache {
        let url = format!("http://127.0.0.1:{}{metrics}", a.port);
        println!(
            "otrs-exporter demo: serving through a throwaway Apache with mod_fcgid and basic auth,"
        );
        println!("configured with apache/otrs-exporter-fcgid.conf (loopback only).");
        println!();
        println!("  scrape URL:  {url}");
        println!("  user:        {}", apache::DEMO_USER);
        println!("  password:    {}", a.password);
        println!("  segment:     {}", demo.segment_path().display());
        println!("  Apache log:  {}", a.error_log.display());
        println!(
            "  try:         curl -s -u {}:{} {url}",
            apache::DEMO_USER,
            a.password
        );
    } else {
        let seg_opts = crate::service::segment_options(&config).map_err(anyhow::Error::msg)?;
        let service = Arc::new(crate::service::Service::new(config.clone(), seg_opts));
        let server = Arc::new(crate::front::http::bind(addr, false)?);
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        println!(
            "otrs-exporter demo: not using Apache ({});",
            fallback.as_deref().unwrap_or("unknown reason")
        );
        println!("serving with the built-in HTTP listener (no authentication, loopback only).");
        println!();
        println!("  scrape URL:  http://{bound}{metrics}");
        println!("  segment:     {}", demo.segment_path().display());
        println!("  try:         curl -s http://{bound}{metrics}");
        let srv = server.clone();
        let handler: Arc<dyn crate::front::request::Handler> = service;
        http = Some(std::thread::spawn(move || {
            crate::front::http::run(srv, handler, 4)
        }));
    }
    println!();
    println!("Synthetic OTRS traffic from 3 worker processes; press Ctrl-C to stop.");

    let start = Instant::now();
    loop {
        if duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        // Wake up every second to recycle workers; stop on a signal.
        if let Some(sig) = wait_signal(&stop, Duration::from_secs(1)) {
            println!("\nreceived {sig:?}, stopping");
            break;
        }
        demo.recycle();
    }
    // The listener threads end with the process; only the children and files need cleaning.
    drop(http);
    drop(demo);
    println!("demo stopped; its processes and files are gone");
    Ok(())
}

/// Waits up to `timeout` for one of `set` (blocked) signals.
fn wait_signal(
    set: &nix::sys::signal::SigSet,
    timeout: Duration,
) -> Option<nix::sys::signal::Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid sigset for the duration of the call, `ts` too; the info pointer
    // may be null.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (sig > 0)
        .then(|| nix::sys::signal::Signal::try_from(sig).ok())
        .flatten()
}
