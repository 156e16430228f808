//! The real `otrs-exporter` binary: CGI scrapes from many processes, scrapes over a damaged
//! segment, console commands (and the seed module's command names), and `check-config`.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{http_get, promtool_check, sample, samples_of, BIN, METRICS};

struct Env {
    _dir: tempfile::TempDir,
    config: PathBuf,
    segment: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("shm").join("segment");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[segment]\npath = \"{}\"\nworker_slots = 64\n\n[gc]\ngrace_seconds = 3600\n",
            segment.display()
        ),
    )
    .unwrap();
    Env {
        _dir: dir,
        config,
        segment,
    }
}

impl Env {
    /// The binary with `args` on this environment's config.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("OTRS_EXPORTER_CONFIG", &self.config);
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// One CGI request, as Apache's mod_cgi would run it (a fresh process each time).
    fn cgi(&self, method: &str, path: &str, query: &str, accept: &str) -> (u16, String, String) {
        let out = Command::new(BIN)
            .env_clear()
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", method)
            .env("SCRIPT_NAME", path)
            .env("QUERY_STRING", query)
            .env("HTTP_ACCEPT", accept)
            .env("SERVER_PROTOCOL", "HTTP/1.1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("CGI headers");
        let status = head
            .lines()
            .find_map(|l| l.strip_prefix("Status: "))
            .and_then(|s| s[..3].parse().ok())
            .expect("Status header");
        let ctype = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Type: "))
            .expect("explicit Content-Type (Prometheus 3 requires it)")
            .to_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        if method == "HEAD" {
            assert!(body.is_empty() && len > 0, "HEAD: GET's length, no body");
        } else {
            assert_eq!(len, body.len(), "Content-Length matches the body");
        }
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .all(|l| l.starts_with("otrs-exporter[")),
            "stderr lines are prefixed for the web server's error log: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (status, ctype, body.to_owned())
    }
}

#[test]
fn cgi_scrapes_from_many_processes_count_per_worker_and_fold_when_they_exit() {
    let e = env();
    for _ in 0..5 {
        let (status, ctype, body) = e.cgi("GET", METRICS, "", "");
        assert_eq!(status, 200);
        assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
        promtool_check(&body);
    }
    let (_, _, body) = e.cgi("GET", METRICS, "", "");
    // Each CGI process claimed its own worker slot and counted its scrape there.
    let workers = samples_of(&body, "otrs_exporter_scrapes_total");
    assert_eq!(workers.len(), 5, "{workers:?}");
    assert!(workers
        .iter()
        .all(|l| l.contains("worker=\"") && l.ends_with(" 1")));
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_collector_success{collector=\"segment\"}"
        ),
        Some(1.0)
    );
    // Those processes are gone: folding keeps the total in worker="exited".
    let out = e.cmd(&["delete-dead-worker-values"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("folded 6"), "{said}");
    let (_, _, body) = e.cgi("GET", METRICS, "", "");
    assert_eq!(
        sample(&body, "otrs_exporter_scrapes_total{worker=\"exited\"}"),
        Some(6.0),
        "{body}"
    );
    assert_eq!(samples_of(&body, "otrs_exporter_scrapes_total").len(), 1);
}

#[test]
fn cgi_routing_collect_and_openmetrics() {
    let e = env();
    let (status, _, body) = e.cgi("GET", METRICS, "collect%5B%5D=exporter", "");
    assert_eq!(status, 200);
    assert!(body.contains("otrs_exporter_build_info{version="));
    assert!(
        !body.contains("collector=\"segment\""),
        "segment collector not selected"
    );
    let (status, _, body) = e.cgi("GET", METRICS, "collect[]=bogus", "");
    assert_eq!(status, 400);
    assert!(
        body.contains("known collectors: exporter, segment"),
        "{body}"
    );
    assert_eq!(e.cgi("POST", METRICS, "", "").0, 405);
    assert_eq!(e.cgi("GET", "/otrs/index.pl", "", "").0, 404);
    let (status, _, body) = e.cgi("HEAD", METRICS, "", "");
    assert_eq!((status, body.as_str()), (200, ""));
    let (status, ctype, body) = e.cgi(
        "GET",
        METRICS,
        "",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert_eq!(status, 200);
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE otrs_exporter_build info"));
}

#[test]
fn a_damaged_segment_is_reported_in_the_scrape_and_recreated() {
    let e = env();
    for _ in 0..3 {
        e.cgi("GET", METRICS, "", "");
    }
    // Scribble over the arena (everything after the header, family directory and workers).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&e.segment)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let arena = 4096 + 4096 + 64 * 48;
    f.write_all_at(&vec![0x5Au8; (len - arena) as usize], arena)
        .unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("OTRS_EXPORTER_CONFIG", &e.config)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", METRICS)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Status: 200"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    promtool_check(body);
    assert_eq!(
        sample(
            body,
            "otrs_exporter_collector_success{collector=\"segment\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            body,
            "otrs_exporter_collector_success{collector=\"exporter\"}"
        ),
        Some(1.0)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt"), "error logged: {stderr}");
    // The next scrape works on the fresh segment.
    let (_, _, body) = e.cgi("GET", METRICS, "", "");
    assert_eq!(
        sample(
            body.as_str(),
            "otrs_exporter_collector_success{collector=\"segment\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_segment_of_another_layout_is_recreated_with_a_logged_error() {
    let e = env();
    e.cgi("GET", METRICS, "", "");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&e.segment)
        .unwrap();
    f.write_all_at(&7u32.to_le_bytes(), 8).unwrap();
    let out = e.cmd(&["segment", "dump"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layout version 7"), "{stderr}");
    assert!(stderr.contains("recreating"), "{stderr}");
}

#[test]
fn segment_commands_and_seed_aliases() {
    let e = env();
    e.cgi("GET", METRICS, "", "");
    e.cgi("GET", METRICS, "", "");
    let out = e.cmd(&["segment", "dump"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("workers:") && text.contains("otrs_exporter_scrapes{"),
        "{text}"
    );
    let out = e.cmd(&["segment", "dump", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["stats"]["series"], 2);
    assert_eq!(json["series"].as_array().unwrap().len(), 2);
    let out = e.cmd(&["segment", "gc", "--grace", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("folded 2"));
    for clear in ["clear-memory", "Maint::Prometheus::ClearMemory"] {
        e.cgi("GET", METRICS, "", "");
        let out = e.cmd(&[clear]);
        assert!(out.status.success(), "{clear}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Done."));
        let out = e.cmd(&["segment", "dump", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["stats"]["series"], 0, "{clear} emptied the segment");
    }
    for gc in [
        "delete-dead-worker-values",
        "Maint::Prometheus::DeleteValuesWithDiedPIDs",
        "Maint::Prometheus::DeleteDiedPIDs",
        "delete-dead-process-collectors",
        "Maint::Prometheus::DeleteDiedProcessCollectors",
    ] {
        let out = e.cmd(&[gc]);
        assert!(out.status.success(), "{gc}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Done."),
            "{gc}"
        );
    }
    let out = e.cmd(&["delete-dead-process-collectors"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("read from /proc on every scrape") && said.contains("Checked"),
        "{said}"
    );
}

#[test]
fn check_config_shows_sources_and_errors_point_at_the_line() {
    let e = env();
    let out = e.cmd(&["check-config"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("segment.path"), "{text}");
    assert!(
        text.contains(&format!("{}:2", e.config.display())),
        "file:line provenance: {text}"
    );
    assert!(text.contains("# default"));
    assert!(text.contains(&format!("metrics path: {METRICS}")));
    std::fs::write(
        &e.config,
        "otrs_home = \"/opt/otrs\"\n[segment]\nworker_slots = \"many\"\n",
    )
    .unwrap();
    let out = e.cmd(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3", e.config.display())), "{err}");
    assert!(err.contains("segment.worker_slots"), "{err}");
}

#[test]
fn without_a_command_or_web_server_it_explains_itself() {
    let out = Command::new(BIN)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not started by a web server"));
}

/// Starts `demo` with `args`, reads its banner up to the Ctrl-C line and returns the child,
/// the banner and the demo's PID.
fn start_demo(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(args)
        .env_remove("OTRS_EXPORTER_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    while !banner.contains("press Ctrl-C") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("demo ended early: {banner}");
        }
        banner.push_str(&line);
    }
    // Keep draining stdout so the demo never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, banner)
}

/// The loopback port of the banner's scrape URL (`http://127.0.0.1:PORT/…/metrics`).
fn scrape_port(banner: &str) -> u16 {
    let url = banner_value(banner, "scrape URL:").expect("a scrape URL");
    assert!(url.ends_with(METRICS), "{banner}");
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no loopback port in {url}"))
}

fn banner_value<'a>(banner: &'a str, key: &str) -> Option<&'a str> {
    banner
        .lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .map(str::trim)
}

/// Scrapes until the demo's traffic shows up, then checks the body with promtool.
fn scrape_demo(port: u16, auth: Option<(&str, &str)>) {
    let mut body = String::new();
    for _ in 0..40 {
        if let Ok(r) = http_get(port, METRICS, auth) {
            assert_eq!(r.status, 200, "{r:?}");
            body = r.body;
            if body.contains("otrs_http_requests_total{") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    assert!(
        body.contains("otrs_http_request_duration_seconds_bucket{"),
        "{body}"
    );
    promtool_check(&body);
    // A whole scrape is sent with its length, not chunked.
    let r = http_get(port, METRICS, auth).unwrap();
    assert_eq!(r.header("Transfer-Encoding"), None, "{:?}", r.headers);
    assert_eq!(
        r.header("Content-Length"),
        Some(r.body.len().to_string().as_str()),
        "{:?}",
        r.headers
    );
}

#[test]
fn demo_serves_valid_metrics_and_cleans_up() {
    // Port 0 for either front: the demo binds any free port and prints it (no other test can
    // take it first).
    let (mut child, banner) =
        start_demo(&["--listen", "127.0.0.1:0", "--port", "0", "--seconds", "6"]);
    let pid = child.id();
    let apache = std::path::Path::new("/usr/sbin/apache2").exists()
        && std::path::Path::new("/usr/lib/apache2/modules/mod_fcgid.so").exists();
    if apache {
        // Through the throwaway Apache, with the printed credentials.
        assert!(
            banner.contains("throwaway Apache with mod_fcgid"),
            "{banner}"
        );
        let aport = scrape_port(&banner);
        let url = banner_value(&banner, "scrape URL:").unwrap();
        assert_eq!(banner_value(&banner, "user:"), Some("prometheus"));
        let password = banner_value(&banner, "password:").unwrap().to_owned();
        assert!(password.len() >= 16, "{banner}");
        assert!(banner.contains(&format!("curl -s -u prometheus:{password} {url}")));
        scrape_demo(aport, Some(("prometheus", &password)));
        let wrong = http_get(aport, METRICS, Some(("prometheus", "wrong"))).unwrap();
        assert_eq!(wrong.status, 401);
        assert_eq!(http_get(aport, METRICS, None).unwrap().status, 401);
    } else {
        assert!(banner.contains("not using Apache"), "{banner}");
        scrape_demo(scrape_port(&banner), None);
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(!Path::new(&format!("/tmp/otrs-exporter-demo-{pid}")).exists());
    // Nothing the demo started is left behind (Apache and its FastCGI processes included).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let marker = format!("otrs-exporter-demo-{pid}");
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&marker),
            "left running: {}",
            String::from_utf8_lossy(&cmdline)
        );
    }
}

#[test]
fn demo_without_apache_uses_the_builtin_listener_and_says_so() {
    let (mut child, banner) =
        start_demo(&["--listen", "127.0.0.1:0", "--no-apache", "--seconds", "4"]);
    assert!(
        banner.contains("not using Apache (--no-apache given)"),
        "{banner}"
    );
    let port = scrape_port(&banner);
    assert_ne!(port, 0, "the port bound is printed, not the one asked for");
    scrape_demo(port, None);
    assert!(child.wait().unwrap().success());
}

/// `common::spawn_on_free_port` waits for the child's own listening socket: another process
/// listening on the port does not count, nor does a socket of the child's that only connects.
#[test]
fn the_port_check_tells_whose_socket_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let me = std::process::id();
    assert!(common::listens(me, port));
    let mut other = Command::new("sleep").arg("5").spawn().unwrap();
    assert!(
        !common::listens(other.id(), port),
        "another process's socket"
    );
    let _ = other.kill();
    let _ = other.wait();
    // A connected socket of ours on its own (ephemeral) port is not listening there.
    let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    assert!(!common::listens(me, client_port), "a connecting socket");
    drop((client, listener));
    assert!(!common::listens(me, port), "closed");
}

/// The built-in listener sends a scrape of any size with its `Content-Length` (tiny_http
/// switches to chunked encoding from 32 KiB unless told otherwise), and HEAD the same length
/// without a body.
#[test]
fn builtin_listener_sends_a_large_scrape_with_its_length() {
    use std::io::Write;
    let e = env();
    // 80 routes of web requests, as Apache's piped access log hands them over: well over
    // 32 KiB of histogram lines.
    let me = std::process::id();
    let lines: String = (0..80)
        .map(|i| {
            format!(
                "otrs-exporter:1\tapache\t{me}\t{}\t1234\tGET\t/otrs/index.pl?Action=AgentTest{i}\t200\t-\n",
                1000 + i
            )
        })
        .collect();
    let mut ingest = e
        .command(&["ingest"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    ingest
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(ingest.wait().unwrap().success());
    let (mut server, port) = common::spawn_on_free_port("serve-http", |port| {
        e.command(&["serve-http", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    });
    let get = http_get(port, METRICS, None).ok();
    let head = common::http_request(port, "HEAD", METRICS, None);
    let _ = server.kill();
    let _ = server.wait();
    let get = get.expect("serve-http answers");
    assert_eq!(get.status, 200);
    assert!(
        get.body.matches("route=\"agent:AgentTest").count() >= 80,
        "every route is in the scrape"
    );
    assert!(get.body.len() > 32 << 10, "{} bytes", get.body.len());
    assert_eq!(get.header("Transfer-Encoding"), None, "{:?}", get.headers);
    assert_eq!(
        get.header("Content-Length"),
        Some(get.body.len().to_string().as_str())
    );
    let head = head.unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body: {head:?}");
    assert_eq!(head.header("Transfer-Encoding"), None, "{head:?}");
    let len: usize = head.header("Content-Length").unwrap().parse().unwrap();
    // The HEAD scrape is another scrape: the exporter's own figures may differ in length.
    assert!(
        len.abs_diff(get.body.len()) < 1024,
        "{len} vs {}",
        get.body.len()
    );
}
