//! Access-log ingestion with the real binary: the Apache piped ingester (exact counts, malformed
//! lines, kill -9 and restart, never blocking the writer), the file follower (rotation by rename
//! and by copytruncate, missing file, partial lines, concurrent scrapers), and the route cap.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_otrs-exporter");

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn env(extra: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[segment]\npath = \"{}\"\n\n[ingest]\naccess_log = \"{}\"\n{extra}",
            dir.path().join("seg").display(),
            dir.path().join("access.log").display()
        ),
    )
    .unwrap();
    Env { dir, config }
}

impl Env {
    fn log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("OTRS_EXPORTER_CONFIG", &self.config);
        c
    }

    fn dump(&self) -> serde_json::Value {
        let out = self.cmd(&["segment", "dump", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A scrape as CGI (advances the followed log first).
    fn scrape(&self) -> String {
        let out = Command::new(BIN)
            .env_clear()
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", "GET")
            .env(
                "SCRIPT_NAME",
                "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics",
            )
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    }
}

/// Sum of the values of series of `family` whose labels include all of `want`.
fn sum(dump: &serde_json::Value, family: &str, want: &[(&str, &str)]) -> f64 {
    dump["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["family"] == family)
        .filter(|s| {
            let labels = s["labels"].as_array().unwrap();
            want.iter()
                .all(|(k, v)| labels.iter().any(|l| l[0] == *k && l[1] == *v))
        })
        .map(|s| {
            s["count"]
                .as_f64()
                .unwrap_or_else(|| s["value"].as_f64().unwrap())
        })
        .sum()
}

fn line(server: &str, pid: u32, uri: &str, status: u16) -> String {
    let dur = if server == "apache" { "2500" } else { "0.003" };
    format!("otrs-exporter:1\t{server}\t{pid}\t{dur}\t1234\tGET\t{uri}\t{status}\t-\n")
}

fn mix(server: &str, n: usize) -> String {
    mix_from(server, n, std::process::id())
}

fn mix_from(server: &str, n: usize, me: u32) -> String {
    let mut s = String::new();
    for i in 0..n {
        let uri = match i % 3 {
            0 => format!("/otrs/index.pl?Action=AgentTicketZoom;TicketID={i}"),
            1 => format!("/otrs/nph-genericinterface.pl/Webservice/REST/Ticket/{i}"),
            _ => format!("/otrs-web/js/thirdparty/{i}.js"),
        };
        s.push_str(&line(server, me, &uri, if i % 10 == 0 { 500 } else { 200 }));
    }
    s
}

#[test]
fn piped_lines_are_counted_exactly_per_worker_route_and_status() {
    let e = env("");
    let mut input = mix("apache", 3000);
    input.push_str("not a log line\n\u{0}\u{1}binary junk\n");
    input.push_str(&format!("{}\n", "x".repeat(20_000)));
    input.push_str("otrs-exporter:1\tapache\t1\t1\t1\tGET\t/\n"); // wrong field count
    let mut child = e.cmd(&["ingest"]).stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let d = e.dump();
    let me = std::process::id().to_string();
    let w = ("worker", me.as_str());
    assert_eq!(
        sum(
            &d,
            "otrs_http_requests",
            &[w, ("route", "agent:AgentTicketZoom")]
        ),
        1000.0
    );
    assert_eq!(
        sum(
            &d,
            "otrs_http_requests",
            &[w, ("route", "gi:REST/Ticket/:id")]
        ),
        1000.0
    );
    assert_eq!(
        sum(&d, "otrs_http_requests", &[w, ("route", "static")]),
        1000.0
    );
    assert_eq!(
        sum(&d, "otrs_http_requests", &[("status_class", "5xx")]),
        300.0
    );
    assert_eq!(sum(&d, "otrs_http_request_duration_seconds", &[w]), 3000.0);
    assert_eq!(
        sum(
            &d,
            "otrs_exporter_log_parse_errors",
            &[("source", "apache")]
        ),
        4.0
    );
    assert_eq!(sum(&d, "otrs_exporter_ingest_lines", &[]), 3004.0);
    // The worker slot is the web worker's (our PID), alive.
    let workers = d["workers"].as_array().unwrap();
    assert!(workers.iter().any(|w| w["pid"] == std::process::id()
        && w["kind"] == "web_worker"
        && w["alive"] == true));
}

#[test]
fn a_killed_ingester_loses_nothing_it_counted_and_counts_nothing_twice() {
    let e = env("");
    let mut before = 0.0;
    for round in 0..5 {
        let mut child = e.cmd(&["ingest"]).stdin(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(mix("apache", 2000).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30 + 20 * round));
        child.kill().unwrap(); // SIGKILL mid-stream
        child.wait().unwrap();
        drop(stdin);
        let now = sum(&e.dump(), "otrs_http_requests", &[]);
        assert!(now >= before, "counts went backwards: {before} -> {now}");
        assert!(
            now <= before + 2000.0,
            "a line was counted twice: {before} -> {now}"
        );
        before = now;
    }
    // A clean run afterwards adds exactly its lines.
    let mut child = e.cmd(&["ingest"]).stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(mix("apache", 999).as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(sum(&e.dump(), "otrs_http_requests", &[]), before + 999.0);
}

#[test]
fn a_slow_ingester_drops_and_counts_lines_instead_of_blocking_the_writer() {
    let e = env("queue_lines = 1024\n");
    let mut child = e
        .cmd(&["ingest"])
        .env("OTRS_EXPORTER_TEST_SLOW_INGEST_US", "200")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // 200k lines would take 40 s to process at 200 µs each; writing them must not wait for that.
    let data = mix("apache", 200_000);
    let t = Instant::now();
    stdin.write_all(data.as_bytes()).unwrap();
    let wrote = t.elapsed();
    drop(stdin);
    // Stop it: it finishes what is queued and writes the drop count.
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        wrote < Duration::from_secs(10),
        "the writer was blocked for {wrote:?}"
    );
    let d = e.dump();
    let dropped = sum(
        &d,
        "otrs_exporter_ingest_dropped_lines",
        &[("source", "apache")],
    );
    let counted = sum(&d, "otrs_http_requests", &[]);
    assert!(dropped > 100_000.0, "dropped {dropped}");
    assert!(
        counted > 0.0 && counted + dropped <= 200_000.0,
        "{counted} + {dropped}"
    );
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn the_follower_survives_rotation_truncation_missing_files_and_partial_lines() {
    let e = env("");
    let log = e.log();
    let total = |e: &Env| sum(&e.dump(), "otrs_http_requests", &[]);
    // The file does not exist yet: scrapes still answer.
    assert!(e
        .scrape()
        .contains("otrs_exporter_collector_success{collector=\"access_log\"} 1"));
    // Created empty, then written: everything after creation counts.
    append(&log, "");
    e.scrape();
    append(&log, &mix("nginx", 300));
    e.scrape();
    assert_eq!(total(&e), 300.0);
    // A partial last line waits for its newline.
    let full = line("nginx", 1, "/otrs/index.pl?Action=AgentDashboard", 200);
    let (head, tail) = full.split_at(20);
    append(&log, head);
    e.scrape();
    assert_eq!(total(&e), 300.0);
    append(&log, tail);
    e.scrape();
    assert_eq!(total(&e), 301.0);
    // logrotate rename + create: lines written to the old file after the last scrape still count.
    append(&log, &mix("nginx", 50));
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    append(&log, &mix("nginx", 20));
    e.scrape();
    assert_eq!(total(&e), 371.0);
    // Rotated away and not recreated yet.
    append(&log, &mix("nginx", 5));
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    e.scrape();
    assert_eq!(total(&e), 376.0);
    append(&log, &mix("nginx", 7));
    e.scrape();
    assert_eq!(total(&e), 383.0);
    // copytruncate, then more writes than before before the next scrape: the size alone does
    // not show it, the changed bytes before the cursor do.
    std::fs::write(&log, "").unwrap();
    append(&log, &mix_from("nginx", 9, 1));
    e.scrape();
    assert_eq!(total(&e), 392.0);
    // copytruncate that leaves the file shorter than the cursor.
    std::fs::write(&log, "").unwrap();
    append(&log, &mix("nginx", 2));
    e.scrape();
    assert_eq!(total(&e), 394.0);
    // Junk in the file is counted as malformed, never fatal.
    append(&log, "\u{0}\u{0}junk\n");
    e.scrape();
    assert_eq!(
        sum(
            &e.dump(),
            "otrs_exporter_log_parse_errors",
            &[("source", "nginx")]
        ),
        1.0
    );
}

#[test]
fn concurrent_scrapers_advance_the_log_exactly_once() {
    let e = env("");
    let log = e.log();
    append(&log, "");
    let first = e.scrape();
    assert!(
        first.contains("otrs_exporter_collector_success{collector=\"access_log\"} 1"),
        "{first}"
    );
    let mut expected = 0.0;
    for _ in 0..5 {
        append(&log, &mix("nginx", 4000));
        expected += 4000.0;
        let kids: Vec<_> = (0..4)
            .map(|_| {
                Command::new(BIN)
                    .env_clear()
                    .env("OTRS_EXPORTER_CONFIG", &e.config)
                    .env("GATEWAY_INTERFACE", "CGI/1.1")
                    .env("REQUEST_METHOD", "GET")
                    .env(
                        "SCRIPT_NAME",
                        "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics",
                    )
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert!(k.wait().unwrap().success());
        }
        e.scrape(); // whoever was skipped, this one catches up
        assert_eq!(sum(&e.dump(), "otrs_http_requests", &[]), expected);
    }
}

#[test]
fn hostile_urls_stay_under_the_route_cap() {
    let e = env("route_cap = 50\n");
    let me = std::process::id();
    let mut input = String::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in 0..100_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let uri = match i % 4 {
            0 => format!("/otrs/index.pl?Action=Agent{}", rng % 100_000),
            1 => format!("/otrs/nph-genericinterface.pl/Webservice/S{}/x", rng % 1000),
            2 => format!("/otrs/index.pl?Action=%3Cscript%3E{rng}"),
            _ => format!("/{rng:x}/../../etc/passwd"),
        };
        input.push_str(&line("apache", me, &uri, 200));
    }
    let mut child = e.cmd(&["ingest"]).stdin(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let d = e.dump();
    let routes: std::collections::BTreeSet<String> = d["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["family"] == "otrs_http_requests")
        .flat_map(|s| s["labels"].as_array().unwrap().clone())
        .filter(|l| l[0] == "route")
        .map(|l| l[1].as_str().unwrap().to_owned())
        .collect();
    assert!(routes.len() <= 51, "{} routes", routes.len());
    assert!(routes.contains("__overflow__"));
    assert!(routes.contains("agent:invalid"));
    assert!(routes.contains("other"));
    assert_eq!(sum(&d, "otrs_http_requests", &[]), 100_000.0);
    assert!(sum(&d, "otrs_exporter_label_overflow", &[("label", "route")]) > 0.0);
    assert!(
        d["stats"]["series"].as_u64().unwrap() < 400,
        "{}",
        d["stats"]
    );
}
