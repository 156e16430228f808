//! The exporter behind a real Apache (Debian's apache2 with mod_fcgid, mod_proxy_fcgi and
//! mod_cgid), configured with the snippets in `apache/` included unchanged, next to an
//! OTRS-like `ScriptAlias /otrs/` mapping. Each test runs its own throwaway Apache on a free
//! loopback port in a temporary directory; Prometheus itself scrapes through one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, http_get, promtool_check, sample, samples_of, Resp};

const BIN: &str = env!("CARGO_BIN_EXE_otrs-exporter");
const METRICS: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics";
const ADMIN: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin";
const USER: (&str, &str) = ("prometheus", "s3cret-pass");
const SNIPPETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apache");

/// How the exporter is wired into Apache.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Front {
    Fcgid,
    ProxyFcgi,
    Cgi,
}

/// Where OTRS's own include sits relative to ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OtrsOrder {
    /// OTRS's ScriptAlias before our file, its `<Location /otrs>` after it: the worst case
    /// for both Alias precedence and section merging.
    Surrounding,
    /// The whole OTRS include after ours (Debian: `otrs-exporter-*.conf` < `zzz_otrs.conf`).
    After,
    /// The whole OTRS include before ours.
    Before,
}

fn require_apache() {
    for (path, pkg) in [
        ("/usr/sbin/apache2", "apache2"),
        ("/usr/bin/htpasswd", "apache2-utils"),
        (
            "/usr/lib/apache2/modules/mod_fcgid.so",
            "libapache2-mod-fcgid",
        ),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install it with `apt-get install {pkg}` (or run scripts/setup.sh)"
        );
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn www_data() -> nix::unistd::User {
    nix::unistd::User::from_name("www-data")
        .unwrap()
        .expect("user www-data exists (Debian's apache2 creates it)")
}

/// A throwaway Apache (and, for mod_proxy_fcgi, the `serve` process behind it).
struct Apache {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    serve: Option<Child>,
    bin: PathBuf,
    config: PathBuf,
}

impl Apache {
    fn start(front: Front, order: OtrsOrder) -> Apache {
        Self::start_with(front, order, false)
    }

    /// Starts Apache; with `access_log`, also with the shipped access-log snippet (piped
    /// `otrs-exporter ingest`) and OTRS-like static files under `/otrs-web/`.
    fn start_with(front: Front, order: OtrsOrder, access_log: bool) -> Apache {
        Self::start_with_config(front, order, access_log, "")
    }

    /// [`Apache::start_with`], with `extra` appended to the exporter's config file.
    fn start_with_config(front: Front, order: OtrsOrder, access_log: bool, extra: &str) -> Apache {
        require_apache();
        let dir = tempfile::Builder::new()
            .prefix("otrs-exporter-apache-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_owned();
        let p = |s: &str| d.join(s);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = is_root();
        let www = www_data();
        // The binary under target/ may not be reachable for www-data: use a copy.
        let bin = p("otrs-exporter");
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // The segment directory belongs to the group the web server runs in.
        let shm = p("shm");
        std::fs::create_dir(&shm).unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o2770)).unwrap();
        let group_line = if root {
            chown(&shm, None, Some(www.gid.as_raw())).unwrap();
            "group = \"www-data\"\n"
        } else {
            ""
        };
        let config = p("config.toml");
        std::fs::write(
            &config,
            format!(
                "log_level = \"debug\"\n[segment]\npath = \"{}\"\n{group_line}worker_slots = 64\n\n[gc]\ngrace_seconds = 3600\n{extra}",
                shm.join("segment").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let htpasswd = p("htpasswd");
        let st = Command::new("htpasswd")
            .arg("-bc")
            .arg(&htpasswd)
            .args([USER.0, USER.1])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).unwrap();
        // OTRS stand-in: its ScriptAlias, cgi-bin with nph-genericinterface.pl and index.pl
        // that log every hit, and the `<Location /otrs>` of its mod_perl setup (with the CGI
        // handler instead of perl-script, which needs mod_perl).
        let cgi_bin = p("cgi-bin");
        let hits = p("otrs-hits");
        std::fs::create_dir(&cgi_bin).unwrap();
        std::fs::create_dir(&hits).unwrap();
        if root {
            chown(&hits, Some(www.uid.as_raw()), Some(www.gid.as_raw())).unwrap();
        }
        for (name, status_line) in [
            ("nph-genericinterface.pl", "HTTP/1.1 200 OK\\r\\n"),
            ("index.pl", ""),
        ] {
            let script = cgi_bin.join(name);
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"$REQUEST_URI\" >> {hits}/log\nprintf '{status_line}Content-Type: text/plain\\r\\n\\r\\nOTRS-SCRIPT {name}\\n'\n",
                    hits = hits.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(
            p("otrs-alias.conf"),
            format!(
                "ScriptAlias /otrs/ \"{cgi}/\"\n<Directory \"{cgi}/\">\n    Options +ExecCGI\n    Require all granted\n</Directory>\n",
                cgi = cgi_bin.display()
            ),
        )
        .unwrap();
        std::fs::write(
            p("otrs-location.conf"),
            "<Location /otrs>\n    SetHandler cgi-script\n    Options +ExecCGI\n    Require all granted\n</Location>\n",
        )
        .unwrap();
        // The serve process runs as www-data and creates its socket in a directory of its own.
        let run = p("run");
        std::fs::create_dir(&run).unwrap();
        if root {
            chown(&run, Some(www.uid.as_raw()), Some(www.gid.as_raw())).unwrap();
        }
        let socket = run.join("exporter.sock");
        let snippet = match front {
            Front::Fcgid => "otrs-exporter-fcgid.conf",
            Front::ProxyFcgi => "otrs-exporter-proxy-fcgi.conf",
            Front::Cgi => "otrs-exporter-cgi.conf",
        };
        let mut ours = format!("Include {SNIPPETS}/{snippet}\n");
        if access_log {
            let web = p("otrs-web");
            std::fs::create_dir_all(web.join("js")).unwrap();
            std::fs::write(web.join("js/Core.js"), "// js\n").unwrap();
            std::fs::write(web.join("skin.css"), "body{}\n").unwrap();
            ours.push_str(&format!(
                "Alias /otrs-web/ \"{w}/\"\n<Directory \"{w}/\">\n    Require all granted\n</Directory>\n\
                 Include {SNIPPETS}/otrs-exporter-accesslog.conf\n",
                w = web.display()
            ));
        }
        let (alias, location) = (
            format!("Include {}\n", p("otrs-alias.conf").display()),
            format!("Include {}\n", p("otrs-location.conf").display()),
        );
        let includes = match order {
            OtrsOrder::Surrounding => format!("{alias}{ours}{location}"),
            OtrsOrder::After => format!("{ours}{alias}{location}"),
            OtrsOrder::Before => format!("{alias}{location}{ours}"),
        };
        std::fs::create_dir(p("htdocs")).unwrap();
        let base = common::apache_base_conf(
            &d,
            root,
            &[
                "mpm_event",
                "authn_core",
                "authn_file",
                "authz_core",
                "authz_user",
                "auth_basic",
                "alias",
                "mime",
                "env",
                "cgid",
                "fcgid",
                "proxy",
                "proxy_fcgi",
            ],
        );
        let conf = format!(
            "{base}\
             <Directory {d}/htdocs>\n    Require all granted\n</Directory>\n\
             Define OTRS_EXPORTER_BIN {bin}\n\
             Define OTRS_EXPORTER_CONFIG_FILE {config}\n\
             Define OTRS_EXPORTER_HTPASSWD {htpasswd}\n\
             Define OTRS_EXPORTER_SOCKET {socket}\n\
             {includes}",
            d = d.display(),
            bin = bin.display(),
            config = config.display(),
            htpasswd = htpasswd.display(),
            socket = socket.display(),
        );
        std::fs::write(p("httpd.conf"), conf).unwrap();
        let serve = (front == Front::ProxyFcgi).then(|| {
            // As the web server's user, so its socket is Apache's to connect to.
            let mut cmd = Command::new(&bin);
            cmd.args(["serve", "--listen", &format!("unix:{}", socket.display())])
                .env("OTRS_EXPORTER_CONFIG", &config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(p("serve.log")).unwrap());
            if root {
                cmd.uid(www.uid.as_raw()).gid(www.gid.as_raw());
            }
            let c = cmd.spawn().unwrap();
            wait_for(|| socket.exists(), "the serve socket");
            c
        });
        let (child, port) = match std::panic::catch_unwind(|| common::start_apache(&d)) {
            Ok(started) => started,
            Err(e) => {
                if let Some(mut s) = serve {
                    let _ = s.kill();
                    let _ = s.wait();
                }
                std::panic::resume_unwind(e)
            }
        };
        Apache {
            dir,
            port,
            child,
            serve,
            bin,
            config,
        }
    }

    fn logs(&self) -> String {
        common::apache_logs(self.dir.path())
    }

    fn get(&self, path: &str, auth: Option<(&str, &str)>) -> Resp {
        http_get(self.port, path, auth).unwrap_or_else(|e| {
            // Which Apache processes were there when it failed (a dead or restarting server
            // reads differently from a live one that reset the connection).
            let pid = self.child.id();
            let state = |p: u32| stat_field(p, 0).unwrap_or_else(|| "gone".into());
            let children: Vec<String> = proc_pids()
                .into_iter()
                .filter(|&c| ppid(c) == Some(pid))
                .map(|c| format!("{c} {} {}", comm(c), state(c)))
                .collect();
            panic!(
                "GET {path} on port {}: {e}\napache2 {pid}: {}; children: {children:?}{}",
                self.port,
                state(pid),
                self.logs()
            )
        })
    }

    fn scrape(&self, query: &str) -> Resp {
        let path = if query.is_empty() {
            METRICS.to_owned()
        } else {
            format!("{METRICS}?{query}")
        };
        let r = self.get(&path, Some(USER));
        assert_eq!(r.status, 200, "{r:?}{}", self.logs());
        r
    }

    fn dump(&self) -> serde_json::Value {
        let out = Command::new(&self.bin)
            .args(["segment", "dump", "--json"])
            .env("OTRS_EXPORTER_CONFIG", &self.config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// PIDs of running processes executing our binary copy.
    fn exporter_pids(&self) -> Vec<u32> {
        proc_pids()
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|x| x == self.bin))
            .collect()
    }

    fn otrs_hits(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("otrs-hits/log")).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        for c in [Some(&mut self.child), self.serve.as_mut()]
            .into_iter()
            .flatten()
        {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every PID in `/proc`.
fn proc_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Field `n` of `/proc/<pid>/stat` after the command name (0 = state, 1 = parent PID).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(n)?
            .to_owned(),
    )
}

fn ppid(pid: u32) -> Option<u32> {
    stat_field(pid, 1)?.parse().ok()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Worker labels of `otrs_exporter_scrapes_total` in a scrape.
fn scrape_workers(body: &str) -> BTreeSet<String> {
    samples_of(body, "otrs_exporter_scrapes_total")
        .iter()
        .filter_map(|l| l.split("worker=\"").nth(1)?.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn parallel_scrapes(a: &Apache, n: usize) -> Vec<u16> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    http_get(a.port, METRICS, Some(USER))
                        .map(|r| r.status)
                        .unwrap_or(0)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn fcgid_auth_scrape_collect_and_one_worker_series_per_fastcgi_process() {
    let a = Apache::start(Front::Fcgid, OtrsOrder::Surrounding);
    // Without or with wrong credentials Apache answers 401 and never starts the exporter.
    assert_eq!(a.get(METRICS, None).status, 401);
    assert_eq!(a.get(METRICS, Some((USER.0, "wrong"))).status, 401);
    assert_eq!(a.get(METRICS, Some(("nobody", USER.1))).status, 401);
    assert_eq!(
        a.get(ADMIN, None).status,
        401,
        "the admin route is protected too"
    );
    assert!(a.exporter_pids().is_empty(), "no exporter process started");
    let dump = a.dump();
    assert_eq!(dump["workers"].as_array().unwrap().len(), 0, "{dump}");
    assert_eq!(dump["series"].as_array().unwrap().len(), 0, "{dump}");
    assert_eq!(a.otrs_hits(), "", "OTRS's script was not run either");

    let r = a.scrape("");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&r.body);
    assert!(r.body.contains("otrs_exporter_build_info{version="));
    let r = a.scrape("collect%5B%5D=exporter");
    assert!(r.body.contains("otrs_exporter_build_info{"));
    assert!(!r.body.contains("collector=\"segment\""), "{}", r.body);
    assert_eq!(
        a.get(&format!("{METRICS}?collect[]=bogus"), Some(USER))
            .status,
        400
    );

    // Our routes win over OTRS's `ScriptAlias /otrs/` (before our file) and its
    // `<Location /otrs>` (after it); every other /otrs/ URL still reaches OTRS.
    let other = a.get(
        "/otrs/nph-genericinterface.pl/Webservice/Other/Ticket",
        None,
    );
    assert_eq!(other.status, 200);
    assert!(other.body.contains("OTRS-SCRIPT nph-genericinterface.pl"));
    let index = a.get("/otrs/index.pl?Action=AgentDashboard", None);
    assert!(index.body.contains("OTRS-SCRIPT index.pl"), "{index:?}");
    let hits = a.otrs_hits();
    assert!(!hits.contains("/Prometheus/"), "OTRS saw our route: {hits}");
    assert_eq!(hits.lines().count(), 2, "{hits}");

    // Concurrent scrapes make mod_fcgid start several processes; each counts in its own
    // worker series.
    let mut workers = BTreeSet::new();
    for _ in 0..6 {
        let statuses = parallel_scrapes(&a, 12);
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        workers = scrape_workers(&a.scrape("").body);
        if workers.len() >= 2 {
            break;
        }
    }
    assert!(workers.len() >= 2, "one worker only: {workers:?}");
    let body = a.scrape("").body;
    let apache_pid = a.child.id();
    let mut total = 0.0;
    for w in &workers {
        let pid: u32 = w.parse().expect("worker label is a PID");
        let count = sample(
            &body,
            &format!("otrs_exporter_scrapes_total{{worker=\"{w}\"}}"),
        );
        assert!(count.unwrap() >= 1.0);
        total += count.unwrap();
        // A real process of ours, started by mod_fcgid's process manager (a child of the
        // Apache we started).
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(),
            a.bin,
            "worker {pid}"
        );
        let pm = ppid(pid).expect("worker alive");
        assert_eq!(comm(pm), "apache2", "parent of {pid}");
        assert_eq!(
            ppid(pm),
            Some(apache_pid),
            "fcgid PM {pm} is Apache's child"
        );
    }
    assert!(total >= 1.0 + 2.0 + 6.0, "scrapes counted: {total}");
}

#[test]
fn proxy_fcgi_to_serve_passes_remote_user_but_not_the_password() {
    let a = Apache::start(Front::ProxyFcgi, OtrsOrder::After);
    assert_eq!(a.get(METRICS, None).status, 401);
    let r = a.scrape("");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&r.body);
    let log = std::fs::read_to_string(a.dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains(&format!(
            "request: GET {METRICS} remote_user={} authorization_header=absent",
            USER.0
        )),
        "{log}"
    );
    let other = a.get("/otrs/index.pl", None);
    assert!(other.body.contains("OTRS-SCRIPT index.pl"), "{other:?}");
    assert!(!a.otrs_hits().contains("/Prometheus/"));
}

#[test]
fn plain_cgi_under_mod_cgid() {
    let a = Apache::start(Front::Cgi, OtrsOrder::Before);
    assert_eq!(a.get(METRICS, None).status, 401);
    let r = a.scrape("");
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    promtool_check(&r.body);
    a.scrape("");
    // One process per request, each in its own worker series (a scrape reports the counts
    // from before itself): the third scrape sees the first two.
    let body = a.scrape("").body;
    assert_eq!(scrape_workers(&body).len(), 2, "{body}{}", a.logs());
    let other = a.get("/otrs/nph-genericinterface.pl/Webservice/Other/x", None);
    assert!(other.body.contains("OTRS-SCRIPT nph-genericinterface.pl"));
    assert!(!a.otrs_hits().contains("/Prometheus/"));
}

#[test]
fn prometheus_scrapes_through_apache_and_mod_fcgid() {
    let a = Apache::start(Front::Fcgid, OtrsOrder::After);
    assert!(
        Path::new("/usr/bin/prometheus").exists(),
        "/usr/bin/prometheus is missing: apt-get install prometheus"
    );
    let d = a.dir.path();
    let prom_port = free_port();
    std::fs::write(
        d.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: otrs\n    metrics_path: {METRICS}\n\
             \x20   basic_auth:\n      username: {}\n      password: {}\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            USER.0, USER.1, a.port
        ),
    )
    .unwrap();
    let mut prom = Command::new("/usr/bin/prometheus")
        .arg(format!(
            "--config.file={}",
            d.join("prometheus.yml").display()
        ))
        .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let query = |q: &str| -> Option<serde_json::Value> {
        let r = http_get(prom_port, &format!("/api/v1/query?query={q}"), None).ok()?;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["result"].as_array().cloned().map(Into::into)
    };
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        let up = query("up%7Bjob%3D%22otrs%22%7D");
        let info = query("otrs_exporter_build_info");
        let up_is_1 = up
            .as_ref()
            .and_then(|v| v.get(0))
            .is_some_and(|s| s["value"][1] == "1");
        let has_info = info
            .as_ref()
            .and_then(|v| v.as_array())
            .is_some_and(|v| !v.is_empty());
        if up_is_1 && has_info {
            ok = true;
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(prom.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = prom.wait();
    assert!(
        ok,
        "Prometheus never saw up==1 and build_info: {}{}",
        std::fs::read_to_string(d.join("prometheus.log")).unwrap_or_default(),
        a.logs()
    );
}

#[test]
fn robust_through_apache_long_uris_vanishing_clients_load_and_flat_memory() {
    use std::io::{Read, Write};
    let a = Apache::start(Front::Fcgid, OtrsOrder::Surrounding);
    a.scrape("");
    let scrapes = |a: &Apache| -> f64 {
        samples_of(&a.scrape("").body, "otrs_exporter_scrapes_total")
            .iter()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // A 1 MB query string: Apache refuses it itself (LimitRequestLine, 414) before any
    // module runs; the exporter never sees it and the next request works.
    let before = scrapes(&a);
    let long = format!("{METRICS}?collect[]={}", "x".repeat(1 << 20));
    let r = http_get(a.port, &long, Some(USER));
    match r {
        Ok(r) => assert_eq!(r.status, 414, "{r:?}"),
        Err(e) => panic!("Apache should answer 414, got {e}"),
    }
    assert_eq!(
        scrapes(&a),
        before + 1.0,
        "only our own check scrape was counted"
    );

    // A client that disconnects mid-response.
    for _ in 0..5 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", a.port)).unwrap();
        write!(
            s,
            "GET {METRICS} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
            common::base64(format!("{}:{}", USER.0, USER.1).as_bytes())
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        drop(s);
    }
    a.scrape("");

    // 200 concurrent scrapes: all answered, or a bounded number refused by Apache's own
    // limits (503); then the next one works.
    let statuses = parallel_scrapes(&a, 200);
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(
        ok + busy,
        200,
        "only 200s and Apache's own 503s: {statuses:?}"
    );
    // How many mod_fcgid turns away depends on the machine's load (MaxProcesses 8); most must
    // be served.
    assert!(ok >= 100, "only {ok} of 200 served, {busy} refused");
    a.scrape("");

    // Memory of the FastCGI processes stays flat over 500 scrapes.
    let rss = |a: &Apache| -> Vec<(u32, u64)> {
        a.exporter_pids()
            .into_iter()
            .filter_map(|p| Some((p, rss_kib(p)?)))
            .collect()
    };
    let start = rss(&a);
    assert!(!start.is_empty());
    for _ in 0..500 {
        a.scrape("");
    }
    let end = rss(&a);
    for (pid, kib) in &start {
        if let Some((_, after)) = end.iter().find(|(p, _)| p == pid) {
            assert!(
                after.saturating_sub(*kib) < 4096,
                "worker {pid} grew from {kib} KiB to {after} KiB"
            );
        }
    }
}

/// Web request metrics from Apache's own access stream: a known request mix through a real
/// Apache, counted by the shipped `CustomLog "||otrs-exporter ingest"` pipe, scraped through
/// mod_fcgid: exact counts per route, with `worker` = the real PID of the Apache child that
/// served each request.
#[test]
fn apache_piped_access_log_counts_every_request_per_worker_and_route() {
    let a = Apache::start_with(Front::Fcgid, OtrsOrder::Surrounding, true);
    let mix: [(&str, usize); 5] = [
        ("/otrs/index.pl?Action=AgentTicketZoom;TicketID=1", 7),
        ("/otrs/index.pl?Action=AgentTicketZoom&TicketID=2", 5),
        ("/otrs/nph-genericinterface.pl/Webservice/X/Ticket/123", 4),
        ("/otrs-web/js/Core.js", 6),
        ("/otrs-web/skin.css", 3),
    ];
    for (path, n) in mix {
        for _ in 0..n {
            let r = a.get(path, None);
            assert_eq!(r.status, 200, "{path}: {r:?}");
        }
    }
    let want = [
        ("agent:AgentTicketZoom", 12.0),
        ("gi:X/Ticket/:id", 4.0),
        ("static", 9.0),
    ];
    let route_total = |d: &serde_json::Value, route: &str| -> f64 {
        d["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["family"] == "otrs_http_requests")
            .filter(|s| {
                s["labels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l[0] == "route" && l[1] == route)
            })
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    // Lines reach the ingester through the pipe asynchronously.
    wait_for(
        || {
            let d = a.dump();
            want.iter().all(|(r, n)| route_total(&d, r) == *n)
        },
        "the piped ingester to count the request mix",
    );
    let d = a.dump();
    for (route, n) in want {
        assert_eq!(route_total(&d, route), n, "{route}");
    }
    // Every worker label is a real Apache child of the Apache we started.
    let apache_pid = a.child.id();
    let workers: BTreeSet<u32> = d["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["family"] == "otrs_http_requests")
        .flat_map(|s| s["labels"].as_array().unwrap().clone())
        .filter(|l| l[0] == "worker")
        .map(|l| l[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!workers.is_empty());
    for w in &workers {
        assert_eq!(comm(*w), "apache2", "worker {w} is an Apache process");
        assert_eq!(
            ppid(*w),
            Some(apache_pid),
            "worker {w} is a child of our Apache"
        );
    }
    // The scrape shows them with duration histograms and status classes, promtool-valid.
    let body = a.scrape("").body;
    promtool_check(&body);
    assert!(body.contains("otrs_http_request_duration_seconds_bucket{method=\"GET\",route=\"agent:AgentTicketZoom\",worker=\""));
    assert!(body.contains("status_class=\"2xx\""));
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_log_parse_errors_total{source=\"apache\"}"
        ),
        Some(0.0)
    );
}

/// A keep-alive HTTP/1.1 connection that sends raw requests and reads whole responses.
struct KeepAlive {
    port: u16,
    conn: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl KeepAlive {
    fn new(port: u16) -> KeepAlive {
        KeepAlive { port, conn: None }
    }

    /// Sends `req` (a whole request) and returns the status (0: the connection failed), and
    /// the body if it was read.
    fn send(&mut self, req: &[u8], head: bool) -> (u16, Vec<u8>) {
        use std::io::{BufRead, Read, Write};
        for attempt in 0..2 {
            if self.conn.is_none() {
                let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
                    return (0, Vec::new());
                };
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                self.conn = Some(std::io::BufReader::new(s));
            }
            let c = self.conn.as_mut().unwrap();
            if c.get_mut().write_all(req).is_err() {
                self.conn = None;
                continue;
            }
            let mut status_line = String::new();
            match c.read_line(&mut status_line) {
                Ok(0) | Err(_) if attempt == 0 => {
                    // A kept-alive connection the server had closed: once more on a new one.
                    self.conn = None;
                    continue;
                }
                Ok(0) | Err(_) => {
                    self.conn = None;
                    return (0, Vec::new());
                }
                Ok(_) => {}
            }
            let status: u16 = status_line
                .strip_prefix("HTTP/1.")
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if status == 0 {
                // Out of step with the server (a response framed in a way this small client
                // misread): start over on a new connection.
                self.conn = None;
                if attempt == 0 {
                    continue;
                }
                return (0, Vec::new());
            }
            let (mut len, mut chunked, mut close) = (None, false, false);
            loop {
                let mut l = String::new();
                if c.read_line(&mut l).unwrap_or(0) == 0 {
                    close = true;
                    break;
                }
                let l = l.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((n, v)) = l.split_once(':') {
                    let v = v.trim();
                    match n.to_ascii_lowercase().as_str() {
                        "content-length" => len = v.parse::<usize>().ok(),
                        "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                        "connection" => close = v.eq_ignore_ascii_case("close"),
                        _ => {}
                    }
                }
            }
            let mut body = Vec::new();
            if !head {
                if chunked {
                    loop {
                        let mut size = String::new();
                        if c.read_line(&mut size).unwrap_or(0) == 0 {
                            close = true;
                            break;
                        }
                        let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16)
                            .unwrap_or(0);
                        let mut chunk = vec![0; n + 2];
                        if c.read_exact(&mut chunk).is_err() {
                            close = true;
                            break;
                        }
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                } else if let Some(n) = len {
                    body.resize(n, 0);
                    if c.read_exact(&mut body).is_err() {
                        close = true;
                    }
                } else if status != 304 && status != 204 {
                    let _ = c.read_to_end(&mut body);
                    close = true;
                }
            }
            if close {
                self.conn = None;
            }
            return (status, body);
        }
        (0, Vec::new())
    }
}

fn percent_junk(rng: &mut common::Rng, n: usize) -> String {
    const SAFE: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/;=&?:@!$'()*+,";
    let mut s = String::new();
    for _ in 0..n {
        match rng.range(0, 10) {
            0..=5 => s.push(SAFE[rng.range(0, SAFE.len() as u64) as usize] as char),
            6..=8 => s.push_str(&format!("%{:02X}", rng.range(0, 256))),
            _ => {
                s.push_str(["..", "%2e%2e", "%00", "%u002e", "//", "%2f"][rng.range(0, 6) as usize])
            }
        }
    }
    s
}

/// Random URLs and methods through the real Apache with the shipped mod_fcgid and access-log
/// snippets: only documented statuses, bounded exporter memory, bounded route series. Then
/// oversized headers and path traversal on the admin route. `HOSTILE_REQUESTS` sets the count
/// (default 12,000, plus the second half again; the README has a run of 1,000,000).
#[test]
fn hostile_urls_methods_headers_and_traversal_through_apache() {
    let n: u64 = std::env::var("HOSTILE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    // A small route cap, so the cap is reached within the CI-sized run and memory can be seen
    // to level off after it.
    let a = Apache::start_with_config(
        Front::Fcgid,
        OtrsOrder::Surrounding,
        true,
        "[ingest]\nroute_cap = 100\n",
    );
    let auth = format!(
        "Authorization: Basic {}\r\n",
        common::base64(format!("{}:{}", USER.0, USER.1).as_bytes())
    );
    let base = a.scrape("").body;
    // Private (anonymous) memory of each exporter worker; the shared segment's pages are
    // file-backed and grow with the series (bounded by the cap), so they are reported apart.
    let rss_all = |a: &Apache| -> Vec<(u32, u64, u64)> {
        a.exporter_pids()
            .into_iter()
            .filter_map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
                let kib = |k: &str| -> Option<u64> {
                    status
                        .lines()
                        .find_map(|l| l.strip_prefix(k))?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                };
                Some((p, kib("RssAnon:")?, kib("VmRSS:")?))
            })
            .collect()
    };
    // Scrapes from several clients at once reach several workers (each reads every series).
    let settle = |a: &Apache| {
        for _ in 0..3 {
            parallel_scrapes(a, 6);
        }
    };
    settle(&a);
    let before = rss_all(&a);
    const METHODS: [&str; 12] = [
        "GET", "GET", "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
        "PROPFIND", "BREW",
    ];
    let threads = 4u64;
    let started = Instant::now();
    let phase = |seed: u64, count: u64| -> Vec<(BTreeMap<u16, u64>, Vec<String>)> {
        std::thread::scope(|s| {
            (0..threads)
            .map(|t| {
                let auth = auth.clone();
                let port = a.port;
                s.spawn(move || {
                    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1) ^ (seed << 32));
                    let mut ka = KeepAlive::new(port);
                    let mut statuses = BTreeMap::new();
                    let mut failed = Vec::new();
                    for _ in 0..count / threads {
                        let method = METHODS[rng.range(0, METHODS.len() as u64) as usize];
                        let junk_len = rng.range(0, 60) as usize;
                        let junk = percent_junk(&mut rng, junk_len);
                        let (path, with_auth) = match rng.range(0, 1000) {
                            // Scrapes with random query strings (collect[] typos, junk).
                            0..=2 => (format!("{METRICS}?collect[]={junk}"), true),
                            3..=5 => (format!("{METRICS}?{junk}"), true),
                            // The exporter's routes with random suffixes: its own 404/405.
                            6..=60 => (format!("{METRICS}/{junk}"), true),
                            61..=110 => (format!("{ADMIN}/{junk}"), true),
                            111..=130 => (format!("{ADMIN}/{junk}"), false),
                            // OTRS (the stand-in script), random Actions: the route cap.
                            131..=150 => (format!("/otrs/index.pl?Action=A{junk}"), false),
                            // Static files and everything else Apache answers itself.
                            151..=600 => (format!("/otrs-web/{junk}"), false),
                            _ => (format!("/{junk}"), false),
                        };
                        let req = format!(
                            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{}Content-Length: 0\r\n\r\n",
                            if with_auth { auth.as_str() } else { "" }
                        );
                        let (status, _) = ka.send(req.as_bytes(), method == "HEAD");
                        *statuses.entry(status).or_insert(0) += 1;
                        if (status == 0 || (status >= 500 && status != 501 && status != 503))
                            && failed.len() < 5
                        {
                            failed.push(format!("{status}: {}", req.lines().next().unwrap_or("")));
                        }
                    }
                    (statuses, failed)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect()
        })
    };

    let sample_lines = |a: &Apache| {
        a.scrape("")
            .body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    };
    // Two halves of new random requests, then the second half once more: the same requests
    // can make no new series, so memory must stay level (no growth per request).
    let mut results = phase(1, n / 2);
    settle(&a);
    let middle = rss_all(&a);
    let lines_half = sample_lines(&a);
    results.extend(phase(2, n - n / 2));
    settle(&a);
    let after = rss_all(&a);
    let lines_end = sample_lines(&a);
    results.extend(phase(2, n - n / 2));
    settle(&a);
    let again = rss_all(&a);
    let lines_again = sample_lines(&a);
    let took = started.elapsed();
    let n_sent = n + (n - n / 2);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut failed = Vec::new();
    for (r, f) in results {
        failed.extend(f);
        for (k, v) in r {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    // Documented: 503 is mod_fcgid refusing when all 8 processes are busy; 501 is Apache's
    // answer to methods it does not implement. Nothing else of 5xx, and no failed connection.
    let undocumented: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| **s == 0 || (**s >= 500 && **s != 501 && **s != 503))
        .collect();
    // The access log reached the ingester; route series stay under the cap.
    let mut routes = BTreeSet::new();
    let body = a.scrape("").body;
    for l in samples_of(&body, "otrs_http_requests_total") {
        if let Some(r) = l.split("route=\"").nth(1).and_then(|r| r.split('"').next()) {
            routes.insert(r.to_owned());
        }
    }
    let overflow =
        sample(&body, "otrs_exporter_label_overflow_total{label=\"route\"}").unwrap_or(0.0);
    let lines = sample(&body, "otrs_exporter_ingest_lines_total{source=\"apache\"}").unwrap_or(0.0);
    let base_series = base.lines().filter(|l| !l.starts_with('#')).count();
    // (pid, private KiB at the start / after each phase, total RSS at the end).
    let mut growth = Vec::new();
    for (pid, anon, _) in &before {
        let at = |v: &[(u32, u64, u64)]| v.iter().find(|(p, _, _)| p == pid).copied();
        if let (Some(m), Some(e), Some(g)) = (at(&middle), at(&after), at(&again)) {
            growth.push((*pid, *anon, m.1, e.1, g.1, g.2));
        }
    }
    let errors = a.logs();
    let report = format!(
        "hostile front: {n} random requests (12 methods, percent-junk paths, exporter routes \
         with and without auth), then the second half of them again, {n_sent} in all, through \
         Apache + mod_fcgid + piped access log in {:.1} s ({:.0} req/s, 4 keep-alive \
         connections)\nstatuses: {statuses:?}\nexporter workers' private memory KiB (pid, \
         start, after the first half, after the second, after repeating the second; total RSS \
         at the end incl. the shared segment): {growth:?}\nroute labels: {} (cap 100), \
         {overflow} requests counted as __overflow__, {lines} access lines ingested; sample \
         lines in a scrape: {base_series} at the start, {lines_half} after the first half, \
         {lines_end} after the second, {lines_again} after repeating it",
        took.as_secs_f64(),
        n_sent as f64 / took.as_secs_f64(),
        routes.len()
    );
    common::figures("hostile-front", &report);
    assert!(undocumented.is_empty(), "{report}\n{failed:#?}{errors}");
    // The cap plus `__overflow__` and `invalid`.
    assert!(routes.len() <= 102, "{report}");
    assert!(overflow > 0.0, "the cap was reached: {report}");
    assert!(!errors.contains("panicked"), "{errors}");
    // Repeating requests adds neither series nor memory.
    for (pid, _, _, end, rep, _) in &growth {
        assert!(
            rep.saturating_sub(*end) < 8 * 1024,
            "worker {pid} grew from {end} to {rep} KiB on repeated requests\n{report}"
        );
    }

    // Oversized headers: Apache's own limits (LimitRequestFieldSize 8190, LimitRequestFields
    // 100) answer 400 before the exporter runs; mod_fcgid answers 500 itself ("can't init env
    // request header") when the headers do not fit its FastCGI environment (~64 KiB), again
    // without the exporter; below that the exporter gets them all and answers.
    let big = |count: usize, size: usize| -> (u16, usize) {
        let mut req = format!("GET {METRICS} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n");
        for i in 0..count {
            req.push_str(&format!("X-Junk-{i}: {}\r\n", "v".repeat(size)));
        }
        req.push_str("\r\n");
        let (s, b) = KeepAlive::new(a.port).send(req.as_bytes(), false);
        (s, b.len())
    };
    let cases = [
        ("one 100 KB header", big(1, 100_000).0, 400),
        ("150 headers", big(150, 10).0, 400),
        ("7 headers of 8000 bytes", big(7, 8000).0, 200),
        ("90 headers of 8000 bytes", big(90, 8000).0, 500),
    ];
    for (what, got, want) in cases {
        assert_eq!(got, want, "{what}{}", a.logs());
    }
    a.scrape("");

    // Path traversal on the admin route: never a file, never a 5xx.
    let secrets = [
        std::fs::read_to_string("/etc/passwd").unwrap(),
        std::fs::read_to_string(a.dir.path().join("htpasswd")).unwrap(),
        std::fs::read_to_string(&a.config).unwrap(),
    ];
    let traversals = [
        "/admin/../../../../../../etc/passwd",
        "/admin/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/admin/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/admin/..%2f..%2f..%2f..%2fetc/passwd",
        "/admin%2f..%2f..%2fhtpasswd",
        "/admin/....//....//....//etc/passwd",
        "/admin/%252e%252e/%252e%252e/etc/passwd",
        "/admin/..;/..;/..;/etc/passwd",
        "/admin/.%00./.%00./etc/passwd",
        "/admin/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
        "/admin/..\\..\\..\\etc\\passwd",
        "/admin/../../../../../../../../../../../../../../../proc/self/environ",
        "/admin/../metrics",
        "/admin/./././",
        "/admin//",
        "/admin?file=../../../../etc/passwd",
        "/admin/?path=%2e%2e%2f%2e%2e%2fconfig.toml",
    ];
    let mut seen = Vec::new();
    for t in traversals {
        let path = format!("/otrs/nph-genericinterface.pl/Webservice/Prometheus{t}");
        for with_auth in [true, false] {
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
                if with_auth { auth.as_str() } else { "" }
            );
            let (status, body) = KeepAlive::new(a.port).send(req.as_bytes(), false);
            let body = String::from_utf8_lossy(&body);
            assert!(
                status != 0 && status < 500,
                "{t} (auth {with_auth}): {status}{}",
                a.logs()
            );
            for secret in &secrets {
                let first = secret.lines().next().unwrap_or("");
                assert!(
                    first.is_empty() || !body.contains(first),
                    "{t} served a file: {body:.300}"
                );
            }
            assert!(!body.contains("root:x:0"), "{t}: {body:.300}");
            seen.push(format!(
                "{t} {}→{status}",
                if with_auth { "auth" } else { "anon" }
            ));
        }
    }
    common::figures(
        "traversal",
        &format!(
            "admin route traversal attempts (status per attempt, no file served, no 5xx):\n{}",
            seen.join("\n")
        ),
    );
}
