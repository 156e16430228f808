//! A small but complete OTRS monitoring stack for the dashboard and rule tests: a PostgreSQL
//! database with demo data, a fake OTRS installation (daemon process tree, PID file, heartbeat
//! cache entry, FileStorable cache, log file), a throwaway Apache with the shipped mod_fcgid and
//! access-log snippets and basic auth, traffic to stand-in OTRS scripts, and a real Prometheus
//! scraping the exporter every second with the shipped multi-node scrape config and rule files.

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use otrs_exporter::config::Config;
use otrs_exporter::db::demo_data::{self, Variant};
use otrs_exporter::db::{DbHandle, Driver};

use crate::common::{free_port, http_get, BIN};

/// Basic-auth user of the test Apache.
pub const USER: (&str, &str) = ("prometheus", "dashboards-test-pw");
/// The repository's `dashboards/` directory.
pub const DASHBOARDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards");
const SNIPPETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/apache");

/// The running stack; everything is stopped and removed on drop.
pub struct Stack {
    dir: tempfile::TempDir,
    /// Port of the Apache that serves OTRS stand-ins and the exporter.
    pub apache_port: u16,
    /// Port of Prometheus' web API.
    pub prom_port: u16,
    db_name: String,
    children: Vec<Child>,
    daemon_main: Option<i32>,
    stop: Arc<AtomicBool>,
    background: Vec<JoinHandle<()>>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn www_data() -> Option<nix::unistd::User> {
    if is_root() {
        nix::unistd::User::from_name("www-data").ok().flatten()
    } else {
        None
    }
}

fn pg_exec(db: Option<&str>, sql: &[String]) {
    crate::common::testdb::admin_exec(otrs_exporter::db::Driver::Postgres, db, sql);
}

fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn chown_www(path: &Path) {
    if let Some(w) = www_data() {
        chown(path, Some(w.uid.as_raw()), Some(w.gid.as_raw())).unwrap();
    }
}

/// A stand-in for `bin/otrs.Daemon.pl`: the real daemon's process tree (main, five modules, a
/// task worker under SchedulerTaskWorker), its PID file, and the DaemonRunning heartbeat that
/// SchedulerTaskWorker renews.
const FAKE_DAEMON: &str = r#"
use strict;
use warnings;
use POSIX ();
use File::Basename qw(dirname);
my $Home = dirname(dirname(__FILE__));
exit 0 if fork;
POSIX::setsid();
open my $FH, '>', "$Home/var/run/Daemon-NodeID-1.pid" or die;
print $FH $$;
close $FH;
for my $Name (qw(SchedulerCronTaskManager SchedulerFutureTaskManager
                 SchedulerGenericAgentTaskManager SchedulerTaskWorker SystemConfigurationSyncManager)) {
    next if fork;
    open STDERR, '>>', "$Home/var/log/Daemon/${Name}ERR.log" or die;
    if ($Name eq 'SchedulerTaskWorker') {
        if (!fork) { sleep 1000 while 1; }
        my $Beat = "$Home/var/tmp/CacheFileStorable/DaemonRunning/c/4/c4ca4238a0b923820dcc509a6f75849b";
        while (1) { utime undef, undef, $Beat; sleep 1; }
    }
    sleep 1000 while 1;
}
sleep 1000 while 1;
"#;

/// An OTRS-like CGI script: logs nothing, answers by Action (`Fail` → 500, `Slow` → 1.2 s).
const OTRS_SCRIPT: &str = "#!/bin/sh\n\
case \"$QUERY_STRING\" in\n\
  *Fail*) printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nerror\\n'; exit 0;;\n\
  *Slow*) sleep 1.2;;\n\
esac\n\
printf 'Content-Type: text/html\\r\\n\\r\\n<html>OTRS</html>\\n'\n";

impl Stack {
    /// Starts everything and returns once Apache answers; Prometheus starts scraping at once.
    pub fn start() -> Stack {
        for (path, pkg) in [
            ("/usr/sbin/apache2", "apache2"),
            ("/usr/bin/htpasswd", "apache2-utils"),
            (
                "/usr/lib/apache2/modules/mod_fcgid.so",
                "libapache2-mod-fcgid",
            ),
            ("/usr/bin/prometheus", "prometheus"),
            ("/usr/bin/perl", "perl"),
        ] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: apt-get install {pkg} (scripts/setup.sh does)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("otrs-exporter-dashboards-")
            .tempdir()
            .unwrap();
        let d = dir.path().to_owned();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut stack = Stack {
            dir,
            apache_port: 0,
            prom_port: 0,
            db_name: format!("otrsexp_dash_{}", std::process::id()),
            children: Vec::new(),
            daemon_main: None,
            stop: Arc::new(AtomicBool::new(false)),
            background: Vec::new(),
        };
        let ds = stack.database();
        let home = stack.otrs_home(&d);
        let config = stack.config(&d, &home);
        stack.apache(&d, &config);
        stack.prometheus(&d);
        stack.traffic(&home, ds);
        stack
    }

    /// Creates the database with the Znuny 7 schema and demo data; returns the data set.
    fn database(&self) -> demo_data::DataSet {
        pg_exec(
            None,
            &[format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )],
        );
        pg_exec(None, &[format!("CREATE DATABASE {}", self.db_name)]);
        pg_exec(
            Some(&self.db_name),
            &demo_data::statements(&demo_data::schema(Driver::Postgres, Variant::Znuny7)),
        );
        let mut c = Config::default();
        c.db.driver = "postgresql".into();
        c.db.host = "127.0.0.1".into();
        c.db.port = 5432;
        c.db.user = "postgres".into();
        c.db.name = self.db_name.clone();
        let settings = otrs_exporter::db::settings::resolve_with(&c, None).unwrap();
        let h = DbHandle::new(Ok(settings));
        let now = h
            .run(Instant::now() + Duration::from_secs(10), |db| {
                otrs_exporter::collector::db::db_now(db)
            })
            .unwrap();
        let ds = demo_data::generate(300, 8, now);
        pg_exec(Some(&self.db_name), &ds.sql);
        ds
    }

    /// The fake OTRS installation with a running fake daemon.
    fn otrs_home(&mut self, d: &Path) -> PathBuf {
        let home = d.join("otrs");
        for sub in ["bin", "var/run", "var/log/Daemon", "Kernel"] {
            std::fs::create_dir_all(home.join(sub)).unwrap();
        }
        let cache = home.join("var/tmp/CacheFileStorable");
        write(
            &cache.join("DaemonRunning/c/4/c4ca4238a0b923820dcc509a6f75849b"),
            "heartbeat",
        );
        for (ty, n) in [("Ticket", 40), ("User", 12), ("Queue", 5)] {
            for i in 0..n {
                write(
                    &cache.join(format!("{ty}/{}/{i:032x}", i % 16)),
                    &"x".repeat(100 + i * 37),
                );
            }
        }
        write(&home.join("var/log/otrs.log"), "");
        // The daemon runs as the exporter's user, so /proc/<pid>/fd is readable for it.
        for sub in [
            "var/run",
            "var/log/Daemon",
            "var/tmp/CacheFileStorable/DaemonRunning/c/4/c4ca4238a0b923820dcc509a6f75849b",
        ] {
            chown_www(&home.join(sub));
        }
        let script = home.join("bin/otrs.Daemon.pl");
        write(&script, FAKE_DAEMON);
        let mut cmd = Command::new("/usr/bin/perl");
        cmd.arg(&script)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(w) = www_data() {
            cmd.uid(w.uid.as_raw()).gid(w.gid.as_raw());
        }
        assert!(cmd.status().unwrap().success(), "fake daemon did not start");
        let pid_file = home.join("var/run/Daemon-NodeID-1.pid");
        wait_for("the fake daemon's PID file", || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .map(|p| self.daemon_main = Some(p))
                .is_some()
        });
        home
    }

    /// The exporter's config (read by the FastCGI workers and the piped ingester).
    fn config(&self, d: &Path, home: &Path) -> PathBuf {
        let shm = d.join("shm");
        std::fs::create_dir(&shm).unwrap();
        std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o2770)).unwrap();
        let group = match www_data() {
            Some(w) => {
                chown(&shm, None, Some(w.gid.as_raw())).unwrap();
                "group = \"www-data\"\n"
            }
            None => "",
        };
        let config = d.join("config.toml");
        write(
            &config,
            &format!(
                "otrs_home = \"{home}\"\n\
                 [segment]\npath = \"{seg}\"\n{group}worker_slots = 128\n\
                 [gc]\ngrace_seconds = 3600\n\
                 [otrs_log]\nfile = \"{home}/var/log/otrs.log\"\n\
                 [cache]\nttl_seconds = 1\n\
                 [db]\ndriver = \"postgresql\"\nhost = \"127.0.0.1\"\nport = 5432\nuser = \"postgres\"\nname = \"{db}\"\n\
                 [db.ttl_seconds]\ntickets = 1\narticles = 1\nmail = 1\ndaemon = 1\nsessions = 1\n",
                home = home.display(),
                seg = shm.join("segment").display(),
                db = self.db_name,
            ),
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        config
    }

    /// Apache with the shipped fcgid and access-log snippets, OTRS stand-in scripts and
    /// static files.
    fn apache(&mut self, d: &Path, config: &Path) {
        let p = |s: &str| d.join(s);
        let bin = p("otrs-exporter");
        std::fs::copy(BIN, &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let htpasswd = p("htpasswd");
        assert!(Command::new("htpasswd")
            .arg("-bc")
            .arg(&htpasswd)
            .args([USER.0, USER.1])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success());
        std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cgi = p("cgi-bin");
        for name in ["index.pl", "customer.pl", "public.pl"] {
            write(&cgi.join(name), OTRS_SCRIPT);
            std::fs::set_permissions(cgi.join(name), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let web = p("otrs-web");
        write(&web.join("js/Core.js"), &"// js\n".repeat(300));
        write(&web.join("skin/default.css"), "body{}\n");
        std::fs::create_dir(p("htdocs")).unwrap();
        let base = crate::common::apache_base_conf(
            d,
            www_data().is_some(),
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
            ],
        );
        write(
            &p("httpd.conf"),
            &format!(
                "{base}\
                 Define OTRS_EXPORTER_BIN {bin}\n\
                 Define OTRS_EXPORTER_CONFIG_FILE {config}\n\
                 Define OTRS_EXPORTER_HTPASSWD {htpasswd}\n\
                 ScriptAlias /otrs/ \"{cgi}/\"\n\
                 <Directory \"{cgi}/\">\n    Options +ExecCGI\n    Require all granted\n</Directory>\n\
                 Alias /otrs-web/ \"{web}/\"\n\
                 <Directory \"{web}/\">\n    Require all granted\n</Directory>\n\
                 Include {SNIPPETS}/otrs-exporter-fcgid.conf\n\
                 Include {SNIPPETS}/otrs-exporter-accesslog.conf\n",
                bin = bin.display(),
                config = config.display(),
                htpasswd = htpasswd.display(),
                cgi = cgi.display(),
                web = web.display(),
            ),
        );
        let (child, port) = crate::common::start_apache(d);
        self.children.push(child);
        self.apache_port = port;
    }

    /// Prometheus with the shipped multi-node example config, pointed at the test Apache:
    /// both jobs (otrs-node, otrs-cluster) scrape it every second, all three rule files are
    /// evaluated every second.
    fn prometheus(&mut self, d: &Path) {
        let example = std::fs::read_to_string(format!(
            "{DASHBOARDS}/prometheus/examples/prometheus-multinode.yml"
        ))
        .unwrap();
        let target = format!("127.0.0.1:{}", self.apache_port);
        let rules = format!("{DASHBOARDS}/prometheus/rules");
        let mut conf = example.clone();
        for (from, to) in [
            ("scrape_interval: 30s", "scrape_interval: 1s".to_owned()),
            (
                "evaluation_interval: 30s",
                "evaluation_interval: 1s".to_owned(),
            ),
            ("scrape_interval: 60s", "scrape_interval: 1s".to_owned()),
            ("scrape_timeout: 20s", "scrape_timeout: 1s".to_owned()),
            ("scheme: https", "scheme: http".to_owned()),
            (
                "# - ../rules/otrs-seed-compat.yml",
                format!("- {rules}/otrs-seed-compat.yml"),
            ),
            ("../rules/", format!("{rules}/")),
            ("otrs1.example.com:443", target.clone()),
            ("- otrs2.example.com:443\n", String::new()),
            ("- otrs3.example.com:443\n", String::new()),
            (
                "password_file: otrs-exporter.password",
                format!("password_file: {}", d.join("prom-password").display()),
            ),
        ] {
            assert!(
                conf.contains(from),
                "the multi-node example no longer contains {from:?}; update tests/dashboards/stack.rs"
            );
            conf = conf.replace(from, &to);
        }
        // Remove the now-empty lines left by the removed targets' indentation.
        conf = conf
            .lines()
            .filter(|l| !l.trim().is_empty() || l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        write(&d.join("prom-password"), USER.1);
        write(&d.join("prometheus.yml"), &conf);
        self.prom_port = free_port();
        let child = Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                d.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.prom_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("prometheus.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    /// Background traffic: OTRS screens (some failing, some slow, static files, a 404), OTRS
    /// log lines and new articles, until the stack is dropped.
    fn traffic(&mut self, home: &Path, mut ds: demo_data::DataSet) {
        let port = self.apache_port;
        let stop = self.stop.clone();
        self.background.push(std::thread::spawn(move || {
            let paths = [
                "/otrs/index.pl?Action=AgentDashboard",
                "/otrs/index.pl?Action=AgentTicketZoom;TicketID=12",
                "/otrs/index.pl?Action=AgentTicketQueue",
                "/otrs-web/js/Core.js",
                "/otrs/customer.pl?Action=CustomerTicketOverview",
                "/otrs/index.pl?Action=AgentTicketFail",
                "/otrs-web/skin/default.css",
                "/otrs/public.pl?Action=PublicFAQZoom",
                "/otrs/missing.pl",
                "/otrs/index.pl?Action=AgentTicketSlow",
            ];
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = http_get(port, paths[i % paths.len()], None);
                i += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
        }));
        let log = home.join("var/log/otrs.log");
        let db = self.db_name.clone();
        let stop = self.stop.clone();
        self.background.push(std::thread::spawn(move || {
            use std::io::Write;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                let t = "Fri Nov 27 19:00:00 2026";
                let _ = write!(
                    f,
                    "[{t}][Error][Kernel::System::Ticket::TicketGet][1123] No such TicketID ({n})!\n\
                     [{t}][Error][Kernel::System::MailAccount::IMAP::_Fetch][201] Could not connect\n\
                     [{t}][Notice][Kernel::System::Auth::DB::Auth] User: jdoe authentication with wrong Pw!!!\n\
                     [{t}][Info][Kernel::System::Ticket::TicketCreate] New Ticket [2026112710000{n}] created\n"
                );
                // New articles every other second (the articles collector counts id ranges).
                if n % 2 == 0 {
                    let (sql, _) = demo_data::more_articles(&ds, n, 5, 1_795_885_565);
                    ds.max_article += 5;
                    let mut c = postgres::Config::new();
                    c.host("127.0.0.1").port(5432).user("postgres").dbname(&db);
                    if let Ok(mut client) = c.connect(postgres::NoTls) {
                        for s in &sql {
                            let _ = client.batch_execute(s);
                        }
                    }
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(1000));
            }
        }));
    }

    /// The logs of Apache and Prometheus, for failure messages.
    pub fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "\n--- apache error.log\n{}\n--- prometheus.log\n{}",
            tail(read("error.log")),
            tail(read("prometheus.log"))
        )
    }

    /// Scrapes the exporter through Apache (for direct checks).
    pub fn scrape(&self, query: &str) -> String {
        let path = format!("{}?{query}", crate::common::METRICS);
        let r = http_get(self.apache_port, &path, Some(USER)).unwrap();
        assert_eq!(r.status, 200, "{r:?}{}", self.logs());
        r.body
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.background.drain(..) {
            let _ = h.join();
        }
        for c in self.children.iter_mut().rev() {
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
        if let Some(main) = self.daemon_main {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(main),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pg_exec(
            None,
            &[format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )],
        );
    }
}

/// Waits (at most 15 s) until `ok`.
pub fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
