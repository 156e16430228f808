//! Corruption and resource exhaustion with the real binary: random byte flips and truncations
//! of the segment file under CGI scrapes, a long-running FastCGI worker and `segment dump`; the
//! segment on a full filesystem (a small tmpfs), at its `segment.max_bytes` limit, in a
//! directory the exporter may not write, and on a read-only filesystem. The scrape must always
//! answer 200, within its deadline, and say what failed.
//!
//! `FLIP_SEEDS` sets the number of damaged files (default 100; `bench/soak.sh` runs more).

mod common;

use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fcgi, figures, sample, wait_timeout, Rng, BIN, METRICS};

const BOUND: Duration = Duration::from_secs(20);
const SEGMENT_OK: &str = "otrs_exporter_collector_success{collector=\"segment\"}";

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    segment: PathBuf,
}

fn env_at(segment: &Path, extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "log_level = \"info\"\n[segment]\npath = \"{}\"\n{extra}\n[gc]\ngrace_seconds = 3600\n",
            segment.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    Env {
        dir,
        config,
        segment: segment.to_owned(),
    }
}

/// What a process did: exit status (or `None`: had to be killed after [`BOUND`]), stdout,
/// stderr and how long it took.
struct Run {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn run(mut cmd: Command, input: Option<String>) -> Run {
    let t = Instant::now();
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let o = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let e = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = wait_timeout(&mut child, BOUND);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Run {
        status,
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
        took: t.elapsed(),
    }
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("OTRS_EXPORTER_CONFIG", &self.config);
        c
    }

    fn cgi_cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", "GET")
            .env("SCRIPT_NAME", METRICS)
            .env("QUERY_STRING", "collect[]=segment&collect[]=exporter")
            .env("SERVER_PROTOCOL", "HTTP/1.1");
        c
    }

    /// A CGI scrape: (HTTP status, body, the run).
    fn cgi(&self) -> (u16, String, Run) {
        cgi_result(run(self.cgi_cmd(), None))
    }

    fn ingest(&self, text: String) -> Run {
        run(self.cmd(&["ingest", "--wait"]), Some(text))
    }
}

fn cgi_result(r: Run) -> (u16, String, Run) {
    let (status, body) = match r.stdout.split_once("\r\n\r\n") {
        Some((head, body)) => (
            head.lines()
                .find_map(|l| l.strip_prefix("Status: "))
                .and_then(|s| s.get(..3)?.parse().ok())
                .unwrap_or(200),
            body.to_owned(),
        ),
        None => (0, String::new()),
    };
    (status, body, r)
}

fn access_line(uri: &str) -> String {
    format!(
        "otrs-exporter:1\tapache\t{}\t2500\t1234\tGET\t{uri}\t200\t-\n",
        std::process::id()
    )
}

fn lines(action: &str, n: usize) -> String {
    (0..n)
        .map(|i| access_line(&format!("/otrs/index.pl?Action={action};TicketID={i}")))
        .collect()
}

/// Distinct routes (each a few new series).
fn distinct_routes(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| access_line(&format!("/otrs/index.pl?Action={prefix}{i}")))
        .collect()
}

fn requests_of(body: &str, route: &str) -> f64 {
    common::samples_of(body, "otrs_http_requests_total")
        .iter()
        .filter(|l| l.contains(&format!("route=\"{route}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn crashed(st: &Option<std::process::ExitStatus>) -> Option<String> {
    match st {
        None => Some("did not finish within the bound (killed)".into()),
        Some(s) if s.signal().is_some() => Some(format!("killed by signal {:?}", s.signal())),
        _ => None,
    }
}

#[derive(Default, Debug)]
struct Outcomes {
    /// Damage the scrape did not notice (value cells, unused bytes): the segment collector
    /// succeeded.
    unnoticed: u32,
    /// Recreated on open (header, sizes) with a logged error.
    recreated_on_open: u32,
    /// Found during the read: `collector_success{collector="segment"} 0` and a logged error.
    reported_in_scrape: u32,
    /// Failures: crash, hang, non-200, or a failed collector without a logged reason.
    bad: Vec<String>,
}

impl Outcomes {
    fn judge(&mut self, what: &str, status: u16, body: &str, r: &Run) {
        if let Some(c) = crashed(&r.status) {
            self.bad.push(format!("{what}: scrape {c}: {}", r.stderr));
            return;
        }
        if status != 200 {
            self.bad
                .push(format!("{what}: status {status}: {}", r.stderr));
            return;
        }
        let recreated = r.stderr.contains("recreating it");
        match sample(body, SEGMENT_OK) {
            Some(1.0) if recreated => self.recreated_on_open += 1,
            Some(1.0) => self.unnoticed += 1,
            Some(0.0) if r.stderr.contains("corrupt") => self.reported_in_scrape += 1,
            other => self.bad.push(format!(
                "{what}: segment collector {other:?} without a logged reason: {}",
                r.stderr
            )),
        }
    }
}

/// Where to flip bytes: the header, the family directory, the worker table or the arena.
fn flip(path: &Path, rng: &mut Rng) -> String {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let n = rng.range(1, 17);
    let region = rng.range(0, 4);
    let (lo, hi) = match region {
        0 => (0, 4096),
        1 => (4096, 8192),
        2 => (8192, 8192 + 64 * 1024),
        _ => (8192 + 64 * 1024, len),
    };
    for _ in 0..n {
        let at = rng.range(lo, hi.min(len));
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        b[0] ^= rng.range(1, 256) as u8;
        f.write_all_at(&b, at).unwrap();
    }
    format!(
        "{n} bytes in {}",
        ["header", "families", "workers", "arena"][region as usize]
    )
}

/// Puts a copy of `pristine` at `path` by rename (a new file: processes reopen it).
fn restore(pristine: &[u8], path: &Path) {
    let tmp = path.with_extension("restore");
    std::fs::write(&tmp, pristine).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn random_byte_flips_and_truncations_never_crash_or_hang_a_scrape() {
    let seeds: u64 = std::env::var("FLIP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let base = tempfile::tempdir().unwrap();
    let e = env_at(&base.path().join("seg"), "worker_slots = 64\n");
    // Content: web request series from the piped logger, scrape counters, cursors.
    let r = e.ingest(distinct_routes("Flip", 300) + &lines("AgentTicketZoom", 500));
    assert!(r.status.unwrap().success(), "{}", r.stderr);
    for _ in 0..3 {
        assert_eq!(e.cgi().0, 200);
    }
    let pristine = std::fs::read(&e.segment).unwrap();
    // A FastCGI worker that keeps running through all of it.
    let sock = e.dir.path().join("fcgi.sock");
    let mut serve = e
        .cmd(&["serve", "--listen", &format!("unix:{}", sock.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(e.dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    assert!(common::wait_listening(&sock, BOUND), "serve did not listen");
    let serve_log = || std::fs::read_to_string(e.dir.path().join("serve.log")).unwrap_or_default();
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let (mut cgi, mut live, mut dump) = (
        Outcomes::default(),
        Outcomes::default(),
        (0u32, 0u32, Vec::<String>::new()),
    );
    let mut slowest = Duration::ZERO;
    let mut truncations = 0;
    for seed in 0..seeds {
        restore(&pristine, &e.segment);
        let truncate = seed % 5 == 4;
        let what = if truncate {
            // Before any process maps the new file (truncating a mapped file is the documented
            // SIGBUS limit of shared mappings).
            truncations += 1;
            let len = pristine.len() as u64;
            let to = rng.range(0, len);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&e.segment)
                .unwrap();
            f.set_len(to).unwrap();
            format!("seed {seed}: truncated to {to} of {len} bytes")
        } else if seed % 2 == 0 {
            format!("seed {seed}: {} before open", flip(&e.segment, &mut rng))
        } else {
            // The FastCGI worker maps the fresh copy first, then bytes flip under it.
            let r = fcgi::get(&sock, METRICS, "collect[]=segment", BOUND);
            assert!(matches!(r, Ok((200, _))), "{r:?}{}", serve_log());
            format!("seed {seed}: {} while mapped", flip(&e.segment, &mut rng))
        };
        // The long-running worker (the damaged file is kept to reproduce a failure).
        let kept = e.dir.path().join("damaged.seg");
        let _ = std::fs::copy(&e.segment, &kept);
        let before = serve_log().len();
        let t = Instant::now();
        match fcgi::get(
            &sock,
            METRICS,
            "collect[]=segment&collect[]=exporter",
            BOUND,
        ) {
            Ok((status, body)) => {
                let r = Run {
                    status: Some(std::process::ExitStatus::from_raw(0)),
                    stdout: String::new(),
                    stderr: serve_log()[before..].to_owned(),
                    took: t.elapsed(),
                };
                slowest = slowest.max(r.took);
                live.judge(&format!("fastcgi {what}"), status, &body, &r);
            }
            Err(err) => live
                .bad
                .push(format!("fastcgi {what}: {err}\n{}", serve_log())),
        }
        if let Ok(Some(st)) = serve.try_wait() {
            let keep = std::env::temp_dir().join(format!("otrs-exporter-damaged-{seed}.seg"));
            let _ = std::fs::copy(&kept, &keep);
            panic!(
                "the FastCGI worker died ({st}) at {what} (file kept as {}):\n{}",
                keep.display(),
                serve_log()
            );
        }
        // A damaged file seen first by a CGI process (restore the damage, as the worker may
        // have recreated the segment).
        restore(&pristine, &e.segment);
        let mut again = Rng(seed ^ 0xabcdef);
        if truncate {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&e.segment)
                .unwrap();
            f.set_len(again.range(0, pristine.len() as u64)).unwrap();
        } else {
            flip(&e.segment, &mut again);
        }
        // The console first (it must not crash on it either), then a CGI scrape.
        let d = run(e.cmd(&["segment", "dump"]), None);
        match crashed(&d.status) {
            Some(c) => dump.2.push(format!("dump {what}: {c}: {}", d.stderr)),
            None if d.status.unwrap().success() => dump.0 += 1,
            None => dump.1 += 1,
        }
        restore(&pristine, &e.segment);
        let mut again = Rng(seed ^ 0xabcdef);
        if truncate {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&e.segment)
                .unwrap();
            f.set_len(again.range(0, pristine.len() as u64)).unwrap();
        } else {
            flip(&e.segment, &mut again);
        }
        let (status, body, r) = e.cgi();
        slowest = slowest.max(r.took);
        cgi.judge(&format!("cgi {what}"), status, &body, &r);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = serve.wait();
    let report = format!(
        "segment damage: {seeds} damaged files ({truncations} truncations, the rest 1-16 flipped \
         bytes in header / family directory / worker table / arena)\n\
         CGI scrape: {} unnoticed (value cells, unused bytes), {} recreated on open, {} reported \
         in the scrape (collector_success 0), {} failures\n\
         FastCGI worker (one process throughout): {} unnoticed, {} recreated, {} reported, {} \
         failures\n\
         segment dump: {} read, {} refused with an error, {} crashes; slowest scrape {:.0} ms",
        cgi.unnoticed,
        cgi.recreated_on_open,
        cgi.reported_in_scrape,
        cgi.bad.len(),
        live.unnoticed,
        live.recreated_on_open,
        live.reported_in_scrape,
        live.bad.len(),
        dump.0,
        dump.1,
        dump.2.len(),
        slowest.as_secs_f64() * 1000.0
    );
    figures("segment-damage", &report);
    let bad: Vec<_> = cgi.bad.iter().chain(&live.bad).chain(&dump.2).collect();
    assert!(bad.is_empty(), "{report}\n{:#?}", &bad[..bad.len().min(5)]);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "2m"); `None` with a printed reason if not permitted.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); run as root to test a full filesystem",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with a junk file until it is full.
    fn fill(&self) -> PathBuf {
        let junk = self.path().join("junk");
        let mut f = std::fs::File::create(&junk).unwrap();
        let block = vec![0xEEu8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        junk
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_filesystem_refuses_growth_clearly_and_existing_series_keep_counting() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let e = env_at(
        &fs.path().join("seg"),
        "initial_bytes = 1048576\nmax_bytes = 67108864\n",
    );
    std::fs::write(
        &e.config,
        std::fs::read_to_string(&e.config).unwrap() + "[ingest]\nroute_cap = 100000\n",
    )
    .unwrap();
    // A known route exists before the filesystem fills up.
    let r = e.ingest(lines("AgentTicketZoom", 100));
    assert!(r.status.unwrap().success(), "{}", r.stderr);
    let junk = fs.fill();
    // Thousands of new routes need a bigger file: growth fails, nothing crashes, the known
    // route keeps counting in between.
    let text = distinct_routes("Full", 4000) + &lines("AgentTicketZoom", 100);
    let r = e.ingest(text);
    assert!(crashed(&r.status).is_none(), "{}", r.stderr);
    assert!(
        r.status.unwrap().success(),
        "ingest exits normally: {}",
        r.stderr
    );
    let refusals = r.stderr.matches("No space left on device").count();
    assert!(
        r.stderr.contains("cannot grow") && refusals > 0,
        "the log says growth failed and why: {}",
        &r.stderr[..r.stderr.len().min(3000)]
    );
    let log_lines = r.stderr.lines().count();
    let (status, body, s) = e.cgi();
    assert_eq!(status, 200, "{}", s.stderr);
    assert_eq!(sample(&body, SEGMENT_OK), Some(1.0), "{body}");
    assert_eq!(requests_of(&body, "agent:AgentTicketZoom"), 200.0, "{body}");
    let failures = sample(&body, "otrs_exporter_segment_write_failures_total").unwrap_or(0.0);
    assert!(failures >= 1.0, "write failures counted: {body}");
    let size = sample(&body, "otrs_exporter_segment_size_bytes").unwrap();
    // A segment that does not exist yet cannot be created on the full filesystem: the scrape
    // answers and says why.
    let e2 = env_at(&fs.path().join("other-seg"), "");
    let (status2, body2, s2) = e2.cgi();
    assert_eq!(status2, 200, "{}", s2.stderr);
    assert_eq!(sample(&body2, SEGMENT_OK), Some(0.0), "{body2}");
    assert!(
        s2.stderr.contains("No space left on device"),
        "the reason is logged: {}",
        s2.stderr
    );
    // Space again: growth works without a restart of anything.
    std::fs::remove_file(junk).unwrap();
    let r = e.ingest(distinct_routes("After", 50) + &lines("AgentTicketZoom", 1));
    assert!(r.status.unwrap().success(), "{}", r.stderr);
    let (_, body, _) = e.cgi();
    assert_eq!(requests_of(&body, "agent:AgentTicketZoom"), 201.0);
    assert_eq!(requests_of(&body, "agent:After49"), 1.0, "{body}");
    figures(
        "full-filesystem",
        &format!(
            "full filesystem (tmpfs 3 MiB): segment stuck at {size} bytes, {failures} writes \
             refused and counted, {refusals} log lines name ENOSPC ({log_lines} lines for 4000 \
             new routes), existing route counted exactly (200), new segment on the full \
             filesystem: scrape 200 with collector_success 0; after freeing space new routes \
             counted again"
        ),
    );
}

#[test]
fn the_max_bytes_limit_is_a_clear_counted_refusal() {
    let base = tempfile::tempdir().unwrap();
    let e = env_at(
        &base.path().join("seg"),
        "initial_bytes = 262144\nmax_bytes = 1048576\nworker_slots = 16\n",
    );
    std::fs::write(
        &e.config,
        std::fs::read_to_string(&e.config).unwrap() + "[ingest]\nroute_cap = 100000\n",
    )
    .unwrap();
    let r = e.ingest(
        lines("AgentTicketZoom", 10)
            + &distinct_routes("Max", 3000)
            + &lines("AgentTicketZoom", 10),
    );
    assert!(r.status.unwrap().success(), "{}", r.stderr);
    assert!(
        r.stderr.contains("segment.max_bytes"),
        "the refusal names the setting: {}",
        &r.stderr[..r.stderr.len().min(2000)]
    );
    let (status, body, _) = e.cgi();
    assert_eq!(status, 200);
    assert_eq!(sample(&body, SEGMENT_OK), Some(1.0));
    assert_eq!(requests_of(&body, "agent:AgentTicketZoom"), 20.0);
    let failures = sample(&body, "otrs_exporter_segment_write_failures_total").unwrap_or(0.0);
    assert!(failures >= 1.0, "{body}");
    figures(
        "max-bytes",
        &format!(
            "segment.max_bytes = 1 MiB: {failures} writes refused and counted, {} log lines for \
             3000 new routes, existing route exact",
            r.stderr.lines().count()
        ),
    );
}

#[test]
fn an_unwritable_segment_directory_or_filesystem_is_reported_not_fatal() {
    // A directory the web server's user may not write (as root, run the scrape as www-data).
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let locked = base.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = env_at(&locked.join("seg"), "");
    let www = nix::unistd::User::from_name("www-data").ok().flatten();
    let mut figs = Vec::new();
    if nix::unistd::geteuid().is_root() {
        if let Some(www) = www {
            let mut c = e.cgi_cmd();
            c.uid(www.uid.as_raw()).gid(www.gid.as_raw());
            let (status, body, r) = cgi_result(run(c, None));
            assert_eq!(status, 200, "{}", r.stderr);
            assert_eq!(sample(&body, SEGMENT_OK), Some(0.0), "{body}");
            assert!(
                r.stderr.contains("Permission denied") && r.stderr.contains("locked"),
                "the path and the reason are logged: {}",
                r.stderr
            );
            figs.push(format!(
                "directory not writable for the scrape's user: 200, collector_success 0, logged: {}",
                r.stderr.lines().next().unwrap_or("")
            ));
        }
    }
    // A read-only filesystem (as root too): the existing segment cannot be opened for writing.
    if let Some(fs) = Tmpfs::mount("2m") {
        let e = env_at(&fs.path().join("seg"), "");
        assert_eq!(e.cgi().0, 200);
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(fs.path())
            .status()
            .unwrap();
        assert!(st.success());
        let (status, body, r) = e.cgi();
        assert_eq!(status, 200, "{}", r.stderr);
        assert_eq!(sample(&body, SEGMENT_OK), Some(0.0), "{body}");
        assert!(
            r.stderr.contains("Read-only file system") && !r.stderr.contains("recreating"),
            "the reason is logged, and an unopenable file is not taken for damage: {}",
            r.stderr
        );
        let d = run(e.cmd(&["segment", "dump"]), None);
        assert!(crashed(&d.status).is_none());
        assert!(
            !d.status.unwrap().success() && d.stderr.contains("Read-only file system"),
            "{}",
            d.stderr
        );
        figs.push(format!(
            "read-only filesystem: 200, collector_success 0, logged: {}; segment dump: {}",
            r.stderr.lines().next().unwrap_or(""),
            d.stderr.lines().last().unwrap_or("")
        ));
        let _ = Command::new("mount")
            .args(["-o", "remount,rw"])
            .arg(fs.path())
            .status();
    }
    figures("unwritable", &figs.join("\n"));
}

/// Private memory of a `serve` worker: (KiB after the first third of the scrapes, at the end).
fn serve_memory(e: &Env, env: Option<(&str, &str)>, scrapes: usize) -> (u64, u64) {
    let sock = e
        .dir
        .path()
        .join(format!("mem{}.sock", env.is_some() as u8));
    let mut cmd = e.cmd(&["serve", "--listen", &format!("unix:{}", sock.display())]);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_listening(&sock, BOUND));
    let anon = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let batch = |n: usize| {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..n / 4 {
                        let r = fcgi::get(&sock, METRICS, "", BOUND).unwrap();
                        assert_eq!(r.0, 200);
                    }
                });
            }
        })
    };
    batch(scrapes / 3);
    let first = anon();
    batch(scrapes - scrapes / 3);
    let end = anon();
    let _ = child.kill();
    let _ = child.wait();
    (first, end)
}

#[test]
fn a_long_running_worker_keeps_its_memory_level_over_many_scrapes() {
    use otrs_exporter::segment::{Segment, SegmentOptions, WorkerKind, Writer};
    let base = tempfile::tempdir().unwrap();
    let e = env_at(&base.path().join("seg"), "worker_slots = 64\n");
    let mut o = SegmentOptions::new(&e.segment);
    o.worker_slots = 64;
    let seg = Segment::open(&o).unwrap();
    let def = otrs_exporter::ingest::families::WebFamilies::default().requests;
    // `WORKER_SERIES` and `WORKER_SCRAPES` scale it up (bench/soak.sh).
    let param = |name: &str, default: usize| -> usize {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let series = param("WORKER_SERIES", 2_000);
    let scrapes = param("WORKER_SCRAPES", 120);
    for w in 0..5u32 {
        let slot = seg
            .claim_worker_for(4_100_000 + w, 1, WorkerKind::Test)
            .unwrap();
        let mut wr = Writer::for_slot(&seg, WorkerKind::Test, slot);
        for i in 0..series / 5 {
            let route = format!("agent:Action{i}");
            wr.inc(
                &def,
                &[
                    ("method", "GET"),
                    ("route", &route),
                    ("status_class", "2xx"),
                ],
            )
            .unwrap();
        }
    }
    // Every scrape on a new connection, i.e. a new thread: what a web server does.
    let (first, end) = serve_memory(&e, None, scrapes);
    // For comparison: glibc's default arena limit on an 8-core machine.
    let (first_many, end_many) = serve_memory(&e, Some(("MALLOC_ARENA_MAX", "64")), scrapes);
    figures(
        "worker-memory",
        &format!(
            "FastCGI worker, {series} series, {scrapes} scrapes from 4 clients on new connections: \
             private memory {first} KiB after {} scrapes, {end} KiB at the end; with up to 64 \
             malloc arenas (glibc's default on 8 cores): {first_many} KiB -> {end_many} KiB",
            scrapes / 3
        ),
    );
    assert!(end < first + 16 * 1024, "{first} -> {end} KiB");
}
