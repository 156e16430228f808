//! The exporter behind a real nginx, configured with the shipped snippet
//! `nginx/otrs-exporter.conf` included unchanged.
//!
//! Each test starts a throwaway nginx (`nginx -p <tmp> -c <tmp>/nginx.conf -g 'daemon off;'`,
//! its own pid file, logs and temp paths, a free loopback port) and the real binary
//! (`otrs-exporter serve --listen unix:<tmp>/x.sock`, or started by `systemd-socket-activate`),
//! both as children of the test. The test's nginx.conf plays the part of Debian's: it defines
//! what `nginx/otrs-exporter-http.conf` defines there (the `otrs_exporter` upstream and the
//! htpasswd path), and an OTRS-like `location /otrs/ { return 418; }` to prove precedence.
//!
//! nginx missing is a failure with an install hint, not a skip (scripts/setup.sh installs it).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{promtool_check, BIN, METRICS};
use otrs_exporter::ingest::families;
use otrs_exporter::segment::{Segment, SegmentOptions, WorkerKind, Writer};

const ADMIN: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin";
const USER: &str = "prometheus";
const PASSWORD: &str = "s3cret:with colon";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        common::base64(format!("{user}:{password}").as_bytes())
    )
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close` (as Prometheus speaks 1.1; nginx gzips only
/// for 1.1 by default).
fn http(port: u16, path: &str, auth: Option<&str>, extra: &[(&str, &str)]) -> Http {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: otrs.example\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let r = Http {
        status,
        headers,
        body: String::new(),
    };
    if r.header("Transfer-Encoding") == Some("chunked") {
        body = dechunk(&body);
    } else if let Some(len) = r.header("Content-Length") {
        assert_eq!(len.parse::<usize>().unwrap(), body.len(), "Content-Length");
    }
    Http {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..r
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..eol]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn scrape(port: u16) -> Http {
    http(port, METRICS, Some(&basic(USER, PASSWORD)), &[])
}

fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

fn stop(child: &mut Child) {
    sigterm(child);
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} not ready after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temp dir with the exporter's config, an htpasswd file, the exporter and nginx.
struct Stack {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    exporter: Option<Child>,
    nginx: Option<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in [self.nginx.as_mut(), self.exporter.as_mut()]
            .into_iter()
            .flatten()
        {
            stop(c);
        }
    }
}

impl Stack {
    /// Config, htpasswd (real `htpasswd`, apr1 hash) and nginx.conf; nothing started.
    fn new() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[segment]\npath = \"{}\"\nworker_slots = 64\n\n[gc]\ngrace_seconds = 3600\n",
                dir.path().join("shm").join("segment").display()
            ),
        )
        .unwrap();
        let out = Command::new("htpasswd")
            .args(["-nbm", USER, PASSWORD])
            .output()
            .expect("htpasswd is installed by scripts/setup.sh (Debian package apache2-utils)");
        assert!(out.status.success());
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
        Stack {
            dir,
            config,
            port: 0,
            exporter: None,
            nginx: None,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("x.sock")
    }

    /// `otrs-exporter serve --listen unix:<tmp>/x.sock`, debug log to `<tmp>/exporter.log`.
    fn start_exporter(&mut self) {
        let log = std::fs::File::create(self.path("exporter.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--listen"])
            .arg(format!("unix:{}", self.socket().display()))
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .env("OTRS_EXPORTER_LOG_LEVEL", "debug")
            .env_remove("LISTEN_FDS")
            .env_remove("GATEWAY_INTERFACE")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.exporter = Some(child);
        let sock = self.socket();
        wait_for("exporter socket", || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// nginx with the shipped snippet, the upstream pointing at `self.socket()`.
    /// `fastcgi_params` is Debian's file, or (with `stock_params`) that file without its
    /// REMOTE_USER line, which is what upstream nginx ships.
    fn start_nginx(&mut self, stock_params: bool) {
        self.start_nginx_with(stock_params, "", "");
    }

    /// As [`Stack::start_nginx`], with extra directives at http level and in the server block.
    fn start_nginx_with(&mut self, stock_params: bool, http_extra: &str, server_extra: &str) {
        let params = std::fs::read_to_string("/etc/nginx/fastcgi_params")
            .expect("/etc/nginx/fastcgi_params (Debian package nginx-common)");
        let params: String = params
            .lines()
            .filter(|l| !(stock_params && l.contains("REMOTE_USER")))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(self.path("fastcgi_params"), params).unwrap();
        let d = self.dir.path().display();
        let conf = format!(
            r#"
# As root the workers would run as nobody; root can reach the test's 0700 temp dir.
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {d}/client_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    access_log off;
    {http_extra}

    # What /etc/nginx/conf.d/otrs-exporter-http.conf defines on a real host.
    upstream otrs_exporter {{
        server unix:{sock};
        keepalive 4;
    }}
    map "" $otrs_exporter_htpasswd {{
        default {d}/htpasswd;
    }}

    server {{
        include {d}/listen.conf;
        server_name otrs.example;
        # OTRS' own location, e.g. /otrs/ -> fcgiwrap or a Perl app server.
        location /otrs/ {{
            return 418;
        }}
        include {snippet};
        {server_extra}
    }}
}}
"#,
            sock = self.socket().display(),
            snippet = repo_file("nginx/otrs-exporter.conf").display(),
        );
        std::fs::write(self.path("nginx.conf"), conf).unwrap();
        let (child, port) = common::start_nginx(self.dir.path());
        self.nginx = Some(child);
        self.port = port;
    }

    fn exporter_log(&self) -> String {
        std::fs::read_to_string(self.path("exporter.log")).unwrap()
    }

    fn segment_dump(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["segment", "dump", "--json"])
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Scrapes counted in the segment over all workers (0 if the family does not exist yet).
    fn scrapes_counted(&self) -> f64 {
        let dump = self.segment_dump();
        dump["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["family"] == "otrs_exporter_scrapes")
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    }
}

impl Stack {
    /// Writes `n` counter series for 10 simulated (dead, never folded: grace 3600 s) workers.
    fn fill_segment(&self, n: usize) {
        let opts = SegmentOptions {
            worker_slots: 64,
            ..SegmentOptions::new(self.path("shm").join("segment"))
        };
        let seg = Segment::open(&opts).unwrap();
        let writers: Vec<Writer> = (0..10)
            .map(|w| {
                let slot = seg
                    .claim_worker_for(4_000_000 + w, 1, WorkerKind::Test)
                    .unwrap();
                Writer::for_slot(&seg, WorkerKind::Test, slot)
            })
            .collect();
        let mut writers = writers;
        for i in 0..n {
            let route = format!("AgentTicketZoom{}", i / 10);
            writers[i % 10]
                .add(
                    &families::WebFamilies::default().requests,
                    &[
                        ("method", "GET"),
                        ("route", &route),
                        ("status_class", "2xx"),
                    ],
                    i as f64,
                )
                .unwrap();
        }
    }
}

fn running() -> Stack {
    let mut s = Stack::new();
    s.start_exporter();
    s.start_nginx(false);
    s
}

#[test]
fn scrape_through_nginx_with_basic_auth() {
    let s = running();
    let r = scrape(s.port);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&r.body);
    assert!(r.body.contains("otrs_exporter_build_info{version="));
    // OpenMetrics negotiation passes through nginx too.
    let r = http(
        s.port,
        METRICS,
        Some(&basic(USER, PASSWORD)),
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
    );
    assert_eq!(
        r.header("Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.body.ends_with("# EOF\n"));
    // collect[] reaches the exporter (raw and percent-encoded brackets).
    for q in ["collect[]=exporter", "collect%5B%5D=exporter"] {
        let r = http(
            s.port,
            &format!("{METRICS}?{q}"),
            Some(&basic(USER, PASSWORD)),
            &[],
        );
        assert_eq!(r.status, 200);
        assert!(r.body.contains("collector=\"exporter\""));
        assert!(!r.body.contains("collector=\"segment\""), "{q}: {}", r.body);
    }
    let r = http(
        s.port,
        &format!("{METRICS}?collect[]=bogus"),
        Some(&basic(USER, PASSWORD)),
        &[],
    );
    assert_eq!(r.status, 400);
    // Precedence: OTRS' /otrs/ location gets everything else, the exporter its two URLs.
    for other in [
        "/otrs/index.pl",
        "/otrs/nph-genericinterface.pl/Webservice/Other/metrics",
        "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics/",
    ] {
        assert_eq!(http(s.port, other, None, &[]).status, 418, "{other}");
    }
    // The admin route is protected and served by the exporter, which gets the user from nginx
    // (REMOTE_USER) and refuses it: admin.users is empty here.
    assert_eq!(http(s.port, ADMIN, None, &[]).status, 401);
    let r = http(s.port, ADMIN, Some(&basic(USER, PASSWORD)), &[]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin.users"), "{}", r.body);
    // gzip for Prometheus, which asks for it.
    let r = http(
        s.port,
        METRICS,
        Some(&basic(USER, PASSWORD)),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
}

#[test]
fn wrong_or_missing_credentials_never_reach_the_exporter() {
    let s = running();
    for auth in [
        None,
        Some(basic(USER, "wrong")),
        Some(basic("mallory", PASSWORD)),
        Some("Bearer abc".to_owned()),
    ] {
        let r = http(s.port, METRICS, auth.as_deref(), &[]);
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r
            .header("WWW-Authenticate")
            .is_some_and(|h| h.contains("Basic")));
    }
    // Nothing was counted: the segment holds no scrape at all, and the exporter logged no
    // request.
    assert_eq!(s.scrapes_counted(), 0.0);
    assert!(
        !s.exporter_log().contains("request:"),
        "{}",
        s.exporter_log()
    );
    assert_eq!(scrape(s.port).status, 200);
    assert_eq!(s.scrapes_counted(), 1.0);
}

#[test]
fn remote_user_reaches_the_exporter_even_with_upstream_fastcgi_params() {
    // fastcgi_params without REMOTE_USER, as upstream nginx ships it: the snippet's own
    // `fastcgi_param REMOTE_USER $remote_user;` must carry the user.
    let mut s = Stack::new();
    s.start_exporter();
    s.start_nginx(true);
    assert!(!std::fs::read_to_string(s.path("fastcgi_params"))
        .unwrap()
        .contains("REMOTE_USER"));
    assert_eq!(scrape(s.port).status, 200);
    let log = s.exporter_log();
    assert!(
        log.contains(&format!("request: GET {METRICS} remote_user={USER}")),
        "{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the password never reaches the exporter"
    );
}

#[test]
fn kept_alive_upstream_connection_serves_many_requests() {
    let s = running();
    // The test's readiness probe was one connection.
    assert_eq!(s.exporter_log().matches("accepted").count(), 1);
    for _ in 0..20 {
        assert_eq!(scrape(s.port).status, 200);
    }
    let log = s.exporter_log();
    let accepted = log.matches("accepted").count() - 1;
    assert_eq!(log.matches("request: GET").count(), 20);
    // One nginx worker, sequential requests: one FastCGI connection reused for all 20.
    assert_eq!(accepted, 1, "{log}");
    assert_eq!(s.scrapes_counted(), 20.0);
}

#[test]
fn two_hundred_concurrent_scrapes_all_answered() {
    let s = running();
    let port = s.port;
    let threads: Vec<_> = (0..200)
        .map(|_| std::thread::spawn(move || scrape(port)))
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.contains("otrs_exporter_scrape_duration_seconds "));
    }
    assert_eq!(s.scrapes_counted(), 200.0);
}

#[test]
fn clients_vanishing_mid_response_and_flat_memory() {
    let s = running();
    // A big response (2000 series, ~200 KB) so a client that reads 100 bytes leaves most.
    s.fill_segment(2000);
    let auth = basic(USER, PASSWORD);
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "GET {METRICS} HTTP/1.1\r\nHost: otrs.example\r\nAuthorization: {auth}\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 100];
        let _ = c.read(&mut buf);
        drop(c); // gone after 100 bytes
    }
    // Clients gone before the answer even started.
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "GET {METRICS} HTTP/1.1\r\nHost: otrs.example\r\nAuthorization: {auth}\r\n\r\n"
        )
        .unwrap();
        drop(c);
    }
    let r = scrape(s.port);
    assert_eq!(r.status, 200);
    promtool_check(&r.body);

    // Memory: VmRSS of the exporter after warm-up vs after 500 more scrapes.
    let pid = s.exporter.as_ref().unwrap().id();
    let rss = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap()
    };
    for _ in 0..50 {
        assert_eq!(scrape(s.port).status, 200);
    }
    let before = rss();
    for _ in 0..500 {
        assert_eq!(scrape(s.port).status, 200);
    }
    let after = rss();
    assert!(
        after < before + 4096,
        "VmRSS grew from {before} kB to {after} kB over 500 scrapes"
    );
    // The exporter is alive and its log shows no warning about the vanished clients.
    assert!(s.exporter.as_ref().map(|c| c.id()).is_some());
    let log = s.exporter_log();
    assert!(
        !log.lines().any(|l| l.contains(": error: ")),
        "errors logged: {log}"
    );
}

#[test]
fn systemd_socket_activation_behind_nginx() {
    let tool = Path::new("/usr/bin/systemd-socket-activate");
    assert!(
        tool.exists(),
        "systemd-socket-activate missing: run `bash scripts/setup.sh` (Debian package systemd)"
    );
    let mut s = Stack::new();
    // What otrs-exporter.socket + .service do: systemd owns the socket, starts the binary on
    // the first connection with the listener at fd 3, LISTEN_FDS=1 and LISTEN_PID = its PID.
    let log = std::fs::File::create(s.path("exporter.log")).unwrap();
    let child = Command::new(tool)
        .arg("-l")
        .arg(s.socket())
        .arg(format!(
            "--setenv=OTRS_EXPORTER_CONFIG={}",
            s.config.display()
        ))
        .arg("--setenv=OTRS_EXPORTER_LOG_LEVEL=debug")
        .arg(BIN)
        .env_remove("GATEWAY_INTERFACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    s.exporter = Some(child);
    let sock = s.socket();
    wait_for("systemd-socket-activate socket", || sock.exists());
    s.start_nginx(false);
    for _ in 0..3 {
        let r = scrape(s.port);
        assert_eq!(r.status, 200, "{r:?}");
        promtool_check(&r.body);
    }
    let log = s.exporter_log();
    assert!(
        log.contains(&format!("remote_user={USER}")),
        "served by the activated exporter: {log}"
    );
    assert_eq!(s.scrapes_counted(), 3.0);
    // The activated process is the exporter itself (exec'd, so LISTEN_PID matched).
    let pid = s.exporter.as_ref().unwrap().id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("otrs-exporter"),
        "systemd-socket-activate exec'd the binary: {}",
        exe.display()
    );
}

/// Web request metrics from nginx's access log: nginx writes the shipped `log_format` to a file,
/// each scrape reads what is new (the `access_log` collector) — exact counts per route, worker
/// labels that are real nginx worker PIDs, and a logrotate-style rename + USR1 reopen in the
/// middle loses nothing.
#[test]
fn nginx_access_log_is_followed_on_each_scrape() {
    let mut s = Stack::new();
    let log = s.path("otrs-access.log");
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        format!("{cfg}\n[ingest]\naccess_log = \"{}\"\n", log.display()),
    )
    .unwrap();
    s.start_exporter();
    s.start_nginx_with(
        false,
        &format!("include {};", repo_file("nginx/otrs-exporter-log.conf").display()),
        &format!(
            "access_log {} otrs_exporter;\n        location /otrs-web/ {{ return 200 \"static\\n\"; }}",
            log.display()
        ),
    );
    // The first scrape starts following the (fresh, empty) log.
    assert_eq!(scrape(s.port).status, 200);
    let mix: [(&str, usize); 3] = [
        ("/otrs/index.pl?Action=AgentTicketZoom;TicketID=1", 7),
        ("/otrs/nph-genericinterface.pl/Webservice/X/Ticket/123", 4),
        ("/otrs-web/js/Core.js", 6),
    ];
    let send = |times: usize| {
        for (path, n) in mix {
            for _ in 0..n * times {
                http(s.port, path, None, &[]);
            }
        }
    };
    send(1);
    // logrotate: rename, then tell nginx to reopen its logs.
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    let master: i32 = std::fs::read_to_string(s.path("nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    wait_for("nginx to reopen its log", || log.exists());
    send(2);
    let body = scrape(s.port).body;
    promtool_check(&body);
    let dump = s.segment_dump();
    let total = |route: &str, class: &str| -> f64 {
        dump["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["family"] == "otrs_http_requests")
            .filter(|x| {
                let l = x["labels"].as_array().unwrap();
                l.iter().any(|p| p[0] == "route" && p[1] == route)
                    && l.iter().any(|p| p[0] == "status_class" && p[1] == class)
            })
            .map(|x| x["value"].as_f64().unwrap())
            .sum()
    };
    // nginx answers OTRS' own /otrs/ location with 418 in this stand-in.
    assert_eq!(total("agent:AgentTicketZoom", "4xx"), 21.0);
    assert_eq!(total("gi:X/Ticket/:id", "4xx"), 12.0);
    assert_eq!(total("static", "2xx"), 18.0);
    // Worker labels are nginx worker processes of this nginx.
    let workers: std::collections::BTreeSet<i32> = dump["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["family"] == "otrs_http_requests")
        .flat_map(|x| x["labels"].as_array().unwrap().clone())
        .filter(|p| p[0] == "worker")
        .map(|p| p[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!workers.is_empty());
    for w in workers {
        let stat = std::fs::read_to_string(format!("/proc/{w}/stat")).unwrap();
        let ppid: i32 = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(ppid, master, "worker {w} is a child of our nginx master");
    }
    assert!(body.contains("otrs_exporter_collector_success{collector=\"access_log\"} 1"));
}
