//! Database faults against private, throwaway PostgreSQL and MariaDB servers (started here on
//! free ports in temporary directories, so they can be stopped and restarted without touching
//! the shared servers other tests use): server stopped (connection refused), restarted in the
//! middle of a scrape, a table locked by another transaction, a server that hangs (SIGSTOP).
//! One long-running FastCGI worker (`otrs-exporter serve`) scrapes throughout: every scrape
//! answers 200 within its deadline, failed collectors are marked 0, and it recovers when the
//! database does, without a restart. Timings are printed, not asserted (except the deadline).

mod common;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fcgi, figures, free_port, sample, METRICS};
use otrs_exporter::db::demo_data::{self, Variant};
use otrs_exporter::db::Driver;

const BIN: &str = env!("CARGO_BIN_EXE_otrs-exporter");
/// The scrape deadline configured for the exporter.
const DEADLINE: f64 = 2.0;

fn user(name: &str) -> nix::unistd::User {
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("user {name} exists (installed with the server)"))
}

/// A private database server.
struct Server {
    driver: Driver,
    dir: tempfile::TempDir,
    port: u16,
    /// mariadbd (PostgreSQL runs under pg_ctl).
    child: Option<Child>,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.pop().unwrap().join(name)
}

fn as_user(cmd: &mut Command, name: &str) {
    let u = user(name);
    cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
}

impl Server {
    fn new(driver: Driver) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("otrs-exporter-dbfault-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let owner = match driver {
            Driver::Postgres => user("postgres"),
            Driver::Mysql => user("mysql"),
        };
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown(&data, Some(owner.uid.as_raw()), Some(owner.gid.as_raw())).unwrap();
        chown(
            dir.path(),
            Some(owner.uid.as_raw()),
            Some(owner.gid.as_raw()),
        )
        .unwrap();
        let out = match driver {
            Driver::Postgres => {
                let mut c = Command::new(pg_bin("initdb"));
                c.args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data);
                as_user(&mut c, "postgres");
                c.output().unwrap()
            }
            Driver::Mysql => Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--user=mysql",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .arg(format!("--datadir={}", data.display()))
                .output()
                .unwrap(),
        };
        assert!(out.status.success(), "{}", common::output_text(&out));
        let mut s = Server {
            driver,
            dir,
            port: free_port(),
            child: None,
        };
        s.start();
        s
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn start(&mut self) {
        match self.driver {
            Driver::Postgres => {
                let mut c = Command::new(pg_bin("pg_ctl"));
                c.arg("-D")
                    .arg(self.data())
                    .arg("-l")
                    .arg(self.dir.path().join("pg.log"))
                    .arg("-o")
                    .arg(format!(
                        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB",
                        self.port,
                        self.dir.path().display()
                    ))
                    .args(["-w", "-t", "30", "start"])
                    .stdout(Stdio::null());
                as_user(&mut c, "postgres");
                assert!(c.status().unwrap().success(), "pg_ctl start");
            }
            Driver::Mysql => {
                let d = self.dir.path();
                let child = Command::new("/usr/sbin/mariadbd")
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.data().display()))
                    .arg(format!("--port={}", self.port))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", d.join("mysql.sock").display()))
                    .arg(format!("--pid-file={}", d.join("mysql.pid").display()))
                    .arg(format!("--log-error={}", d.join("mysql.err").display()))
                    .args([
                        "--user=mysql",
                        "--skip-grant-tables",
                        "--innodb-buffer-pool-size=16M",
                        "--innodb-log-file-size=8M",
                        "--skip-log-bin",
                        "--innodb-flush-log-at-trx-commit=0",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                self.child = Some(child);
            }
        }
        let t = Instant::now();
        while !self.answers() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        match self.driver {
            Driver::Postgres => postgres::Client::connect(
                &format!(
                    "host=127.0.0.1 port={} user=postgres dbname=postgres",
                    self.port
                ),
                postgres::NoTls,
            )
            .is_ok(),
            Driver::Mysql => mysql::Conn::new(self.my_opts(None)).is_ok(),
        }
    }

    fn my_opts(&self, db: Option<&str>) -> mysql::OptsBuilder {
        mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.port)
            .user(Some("root"))
            .db_name(db)
            .prefer_socket(false)
    }

    /// Stops the server at once (connections are cut, new ones refused).
    fn stop(&mut self) {
        match self.driver {
            Driver::Postgres => {
                let mut c = Command::new(pg_bin("pg_ctl"));
                c.arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null());
                as_user(&mut c, "postgres");
                assert!(c.status().unwrap().success(), "pg_ctl stop");
            }
            Driver::Mysql => {
                let mut c = self.child.take().expect("running");
                common::sigkill(&c);
                c.wait().unwrap();
            }
        }
    }

    /// The postmaster / mariadbd PID.
    fn pid(&self) -> i32 {
        match self.driver {
            Driver::Postgres => std::fs::read_to_string(self.data().join("postmaster.pid"))
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap(),
            Driver::Mysql => self.child.as_ref().unwrap().id() as i32,
        }
    }

    /// Signals the server: mariadbd, or the postmaster and every backend it forked.
    fn signal(&self, sig: nix::sys::signal::Signal) {
        let main = self.pid();
        let mut pids = vec![main];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(main) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }

    /// An admin connection that runs `sql` (each statement in order) and stays open.
    fn admin(&self, db: &str) -> Admin {
        match self.driver {
            Driver::Postgres => Admin::Pg(Box::new(
                postgres::Client::connect(
                    &format!(
                        "host=127.0.0.1 port={} user=postgres dbname={db}",
                        self.port
                    ),
                    postgres::NoTls,
                )
                .unwrap(),
            )),
            Driver::Mysql => Admin::My(mysql::Conn::new(self.my_opts(Some(db))).unwrap()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(match self.driver {
                Driver::Postgres => std::fs::read_to_string(self.data().join("postmaster.pid"))
                    .ok()
                    .and_then(|t| t.lines().next()?.trim().parse().ok())
                    .unwrap_or(0),
                Driver::Mysql => self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0),
            }),
            nix::sys::signal::Signal::SIGCONT,
        );
        match self.driver {
            Driver::Postgres => {
                let mut c = Command::new(pg_bin("pg_ctl"));
                c.arg("-D")
                    .arg(self.data())
                    .args(["-m", "immediate", "-w", "stop"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                as_user(&mut c, "postgres");
                let _ = c.status();
            }
            Driver::Mysql => {
                if let Some(mut c) = self.child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
    }
}

enum Admin {
    Pg(Box<postgres::Client>),
    My(mysql::Conn),
}

impl Admin {
    fn exec(&mut self, sql: &str) {
        match self {
            Admin::Pg(c) => c
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{e}: {sql:.200}")),
            Admin::My(c) => {
                use mysql::prelude::Queryable;
                c.query_drop(sql)
                    .unwrap_or_else(|e| panic!("{e}: {sql:.200}"))
            }
        }
    }
}

/// The exporter: one `serve` FastCGI process for the whole test.
struct Exporter {
    dir: tempfile::TempDir,
    child: Child,
    sock: PathBuf,
}

impl Exporter {
    fn start(server: &Server) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let (driver, user) = match server.driver {
            Driver::Postgres => ("postgresql", "postgres"),
            Driver::Mysql => ("mysql", "root"),
        };
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "otrs_home = \"/nonexistent-otrs\"\n[segment]\npath = \"{seg}\"\n[web]\n\
                 scrape_timeout_seconds = {DEADLINE}\n[db]\ndriver = \"{driver}\"\n\
                 host = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\nname = \"otrs\"\n\
                 connect_timeout_seconds = 1.0\nstatement_timeout_seconds = 30.0\n\
                 [db.ttl_seconds]\ntickets = 1\narticles = 1\nmail = 1\ndaemon = 1\nsessions = 1\n",
                seg = dir.path().join("seg").display(),
                port = server.port,
            ),
        )
        .unwrap();
        let sock = dir.path().join("fcgi.sock");
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("unix:{}", sock.display())])
            .env("OTRS_EXPORTER_CONFIG", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        assert!(
            common::wait_listening(&sock, Duration::from_secs(20)),
            "serve did not listen"
        );
        Exporter { dir, child, sock }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// One scrape: (time taken, `otrs_db_up`, `collector_success` of tickets and sessions).
    fn scrape(&mut self) -> Scraped {
        let t = Instant::now();
        let r = fcgi::get(&self.sock, METRICS, "", Duration::from_secs(30));
        let took = t.elapsed();
        let (status, body) = r.unwrap_or_else(|e| panic!("scrape failed: {e}\n{}", self.log()));
        assert_eq!(status, 200, "{body}");
        assert!(
            took.as_secs_f64() < DEADLINE + 2.0,
            "scrape took {took:?}, deadline {DEADLINE} s\n{}",
            self.log()
        );
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the worker died\n{}",
            self.log()
        );
        let ok = |c: &str| {
            sample(
                &body,
                &format!("otrs_exporter_collector_success{{collector=\"{c}\"}}"),
            )
        };
        Scraped {
            took,
            db_up: sample(&body, "otrs_db_up"),
            tickets: ok("tickets"),
            sessions: ok("sessions"),
            segment: ok("segment"),
        }
    }

    /// Scrapes until `want` holds (at most `limit`); returns how long that took.
    fn until(&mut self, limit: Duration, want: impl Fn(&Scraped) -> bool, what: &str) -> Duration {
        let t = Instant::now();
        loop {
            let s = self.scrape();
            if want(&s) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "{what}: still {s:?} after {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Scraped {
    took: Duration,
    db_up: Option<f64>,
    tickets: Option<f64>,
    sessions: Option<f64>,
    segment: Option<f64>,
}

fn healthy(s: &Scraped) -> bool {
    s.db_up == Some(1.0) && s.tickets == Some(1.0) && s.sessions == Some(1.0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn faults(driver: Driver) -> String {
    let mut server = Server::new(driver);
    let mut admin = server.admin(match driver {
        Driver::Postgres => "postgres",
        Driver::Mysql => "mysql",
    });
    admin.exec("CREATE DATABASE otrs");
    drop(admin);
    let mut db = server.admin("otrs");
    for s in demo_data::statements(&demo_data::schema(driver, Variant::Znuny7)) {
        db.exec(&s);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for s in demo_data::generate(200, 7, now).sql {
        db.exec(&s);
    }
    drop(db);
    let mut ex = Exporter::start(&server);
    let mut figs = Vec::new();
    let first = ex.until(Duration::from_secs(30), healthy, "first scrape");
    figs.push(format!("healthy first scrape after {}", ms(first)));

    // 1. Server stopped: connection refused.
    server.stop();
    let mut worst = Duration::ZERO;
    let down = ex.until(
        Duration::from_secs(20),
        |s| s.db_up == Some(0.0) && s.tickets == Some(0.0),
        "collectors marked failed with the server stopped",
    );
    for _ in 0..3 {
        let s = ex.scrape();
        worst = worst.max(s.took);
        assert_eq!(s.tickets, Some(0.0));
        assert_eq!(s.segment, Some(1.0), "other collectors unaffected");
    }
    server.start();
    let back = ex.until(Duration::from_secs(30), healthy, "recovery after a restart");
    figs.push(format!(
        "server stopped: marked failed within {}, scrapes meanwhile <= {}; back to healthy {} \
         after the server answered again (same worker process)",
        ms(down),
        ms(worst),
        ms(back)
    ));

    // 2. A table locked by another transaction: the tickets query waits until the scrape
    //    deadline, the other collectors are served.
    let mut locker = server.admin("otrs");
    match driver {
        Driver::Postgres => locker.exec("BEGIN; LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE"),
        Driver::Mysql => locker.exec("LOCK TABLES ticket WRITE"),
    }
    std::thread::sleep(Duration::from_millis(1100)); // the cached result expires (TTL 1 s)
    let s = ex.scrape();
    let locked = s;
    assert_eq!(s.tickets, Some(0.0), "{s:?}\n{}", ex.log());
    let s2 = ex.scrape();
    match driver {
        Driver::Postgres => locker.exec("ROLLBACK"),
        Driver::Mysql => locker.exec("UNLOCK TABLES"),
    }
    let unlocked = ex.until(Duration::from_secs(30), healthy, "recovery after the lock");
    figs.push(format!(
        "ticket table locked: scrape {} (tickets 0, sessions {:?}), next {}, healthy {} after \
         the lock was released",
        ms(locked.took),
        locked.sessions,
        ms(s2.took),
        ms(unlocked)
    ));

    // 3. Restart in the middle of a scrape: the scrape waits on the lock, the server goes down
    //    and comes back.
    match driver {
        Driver::Postgres => locker.exec("BEGIN; LOCK TABLE ticket IN ACCESS EXCLUSIVE MODE"),
        Driver::Mysql => locker.exec("LOCK TABLES ticket WRITE"),
    }
    std::thread::sleep(Duration::from_millis(1100));
    let sock = ex.sock.clone();
    let mid = std::thread::spawn(move || {
        let t = Instant::now();
        let r = fcgi::get(&sock, METRICS, "", Duration::from_secs(30));
        (t.elapsed(), r)
    });
    std::thread::sleep(Duration::from_millis(800));
    // Stopped while the lock is still held (closing the locker first would let it finish).
    server.stop();
    drop(locker);
    let (took, r) = mid.join().unwrap();
    let (status, body) = r.expect("the scrape in flight is answered");
    assert_eq!(status, 200);
    assert!(took.as_secs_f64() < DEADLINE + 2.0, "{took:?}");
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_collector_success{collector=\"tickets\"}"
        ),
        Some(0.0)
    );
    std::thread::sleep(Duration::from_millis(500));
    server.start();
    let back = ex.until(
        Duration::from_secs(30),
        healthy,
        "recovery after a restart mid-scrape",
    );
    figs.push(format!(
        "restart mid-scrape: that scrape answered in {} with tickets 0; healthy {} after the \
         server came back",
        ms(took),
        ms(back)
    ));

    // 4. A server that hangs (SIGSTOP: connections stay open, nothing answers).
    std::thread::sleep(Duration::from_millis(1100));
    server.signal(nix::sys::signal::Signal::SIGSTOP);
    let mut hung = Vec::new();
    for _ in 0..3 {
        let s = ex.scrape();
        hung.push(s);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert!(hung.iter().all(|s| s.segment == Some(1.0)), "{hung:?}");
    assert!(
        hung.iter().any(|s| s.tickets == Some(0.0)),
        "a hung server is a failure: {hung:?}"
    );
    server.signal(nix::sys::signal::Signal::SIGCONT);
    let back = ex.until(Duration::from_secs(60), healthy, "recovery after SIGCONT");
    figs.push(format!(
        "server hung (SIGSTOP): scrapes {}; healthy {} after SIGCONT",
        hung.iter()
            .map(|s| ms(s.took))
            .collect::<Vec<_>>()
            .join(", "),
        ms(back)
    ));
    let log = ex.log();
    assert!(
        log.contains("database query failed"),
        "failures are logged: {log}"
    );
    format!(
        "{}: {}",
        match driver {
            Driver::Postgres => "PostgreSQL",
            Driver::Mysql => "MariaDB",
        },
        figs.join("; ")
    )
}

fn root_or_skip() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: starting private database servers needs root (CI runs as root)");
        return false;
    }
    true
}

#[test]
fn postgresql_stopped_restarted_locked_and_hung() {
    if root_or_skip() {
        let f = faults(Driver::Postgres);
        figures("db-faults-postgresql", &f);
    }
}

#[test]
fn mariadb_stopped_restarted_locked_and_hung() {
    if root_or_skip() {
        let f = faults(Driver::Mysql);
        figures("db-faults-mariadb", &f);
    }
}
