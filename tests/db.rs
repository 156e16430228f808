//! DB collectors against the real PostgreSQL (127.0.0.1:5432, postgres, trust) and MariaDB
//! (127.0.0.1:3306, root, no password) that `scripts/setup.sh` starts. Each test creates
//! uniquely named databases from the fixtures and drops them afterwards.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::testdb::admin_exec;
use common::{promtool_check, sample, BIN, METRICS};
use otrs_exporter::collector::db::{DbQuery, Refreshed};
use otrs_exporter::collector::{articles, daemon, mail, sessions, tickets};
use otrs_exporter::config::Config;
use otrs_exporter::db::demo_data::{self, Variant};
use otrs_exporter::db::{Db, DbError, DbHandle, DbSettings, Driver};
use otrs_exporter::snapshot::{Family, MetricKind, Value};

/// Tests that read server-wide counters take this exclusively; the others share it.
static SERVER: RwLock<()> = RwLock::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

struct TestDb {
    driver: Driver,
    name: String,
}

impl TestDb {
    fn new(driver: Driver, variant: Variant) -> TestDb {
        let name = format!(
            "otrsexp_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            variant.as_str()
        );
        admin_exec(driver, None, &[format!("CREATE DATABASE {name}")]);
        let db = TestDb { driver, name };
        db.exec(&demo_data::statements(&demo_data::schema(driver, variant)));
        db
    }

    fn exec(&self, sql: &[String]) {
        admin_exec(self.driver, Some(&self.name), sql);
    }

    fn config(&self) -> Config {
        let mut c = Config {
            otrs_home: "/nonexistent-otrs".into(),
            ..Default::default()
        };
        c.db.driver = self.driver.as_str().into();
        c.db.host = "127.0.0.1".into();
        c.db.port = self.driver.default_port();
        c.db.user = match self.driver {
            Driver::Postgres => "postgres".into(),
            Driver::Mysql => "root".into(),
        };
        c.db.name = self.name.clone();
        c
    }

    fn settings(&self) -> DbSettings {
        otrs_exporter::db::settings::resolve_with(&self.config(), None).unwrap()
    }

    fn now(&self) -> i64 {
        let h = DbHandle::new(Ok(self.settings()));
        h.run(deadline(5), |db| otrs_exporter::collector::db::db_now(db))
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = match self.driver {
            Driver::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Driver::Mysql => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        admin_exec(self.driver, None, &[sql]);
    }
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// `name{labels sorted}` → value, counters with `_total`, like [`demo_data::key`].
fn series(fams: &[Family]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in fams {
        let name = match f.kind {
            MetricKind::Counter => format!("{}_total", f.name),
            _ => f.name.clone(),
        };
        for s in &f.series {
            let labels: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
            let Value::Scalar(v) = s.value else { panic!() };
            out.insert(demo_data::key(&name, &labels), v);
        }
    }
    out
}

/// Every expected series has its value (ages may have grown by a few seconds since the data
/// were generated), and the families named in `expected` have no other series.
fn compare(what: &str, actual: &BTreeMap<String, f64>, expected: &BTreeMap<String, f64>) {
    for (k, want) in expected {
        let got = actual
            .get(k)
            .unwrap_or_else(|| panic!("{what}: missing {k}\nactual: {actual:#?}"));
        if k.contains("age_seconds")
            || k.contains("running_seconds")
            || k.contains("overdue_seconds")
        {
            assert!(
                *got >= *want && *got <= want + 15.0,
                "{what}: {k} = {got}, want {want} (+15 s)"
            );
        } else {
            assert_eq!(got, want, "{what}: {k}");
        }
    }
    let names: std::collections::BTreeSet<&str> = expected
        .keys()
        .map(|k| k.split('{').next().unwrap())
        .collect();
    for k in actual.keys() {
        if names.contains(k.split('{').next().unwrap()) {
            assert!(expected.contains_key(k), "{what}: unexpected series {k}");
        }
    }
}

fn refresh(
    h: &DbHandle,
    s: &DbSettings,
    q: &dyn DbQuery,
    state: Option<serde_json::Value>,
) -> Result<Refreshed, DbError> {
    h.run(deadline(10), |db| q.refresh(db, s, state))
}

const TICKETS: u64 = 300;

#[test]
fn every_collector_on_every_schema_variant() {
    let _g = SERVER.read().unwrap();
    let mut threads = Vec::new();
    for driver in [Driver::Postgres, Driver::Mysql] {
        for variant in Variant::ALL {
            threads.push(std::thread::spawn(move || check_variant(driver, variant)));
        }
    }
    for t in threads {
        t.join().unwrap();
    }
}

fn check_variant(driver: Driver, variant: Variant) {
    let what = format!("{} {}", driver.as_str(), variant.as_str());
    let db = TestDb::new(driver, variant);
    let now = db.now();
    let ds = demo_data::generate(TICKETS, 42, now);
    db.exec(&ds.sql);
    let s = db.settings();
    let h = DbHandle::new(Ok(s.clone()));
    let queries: [(&str, &dyn DbQuery); 4] = [
        ("tickets", &tickets::Tickets),
        ("mail", &mail::Mail),
        ("daemon", &daemon::Daemon),
        ("sessions", &sessions::Sessions),
    ];
    for (name, q) in queries {
        let r = refresh(&h, &s, q, None).unwrap_or_else(|e| panic!("{what} {name}: {e}"));
        compare(
            &format!("{what} {name}"),
            &series(&r.families),
            &ds.expected[name],
        );
    }
    // Articles: the first refresh notes MAX(id), counting starts with the next ids and lags
    // one refresh.
    let a = articles::Articles;
    let r1 = refresh(&h, &s, &a, None).unwrap();
    assert!(
        series(&r1.families).is_empty(),
        "{what}: nothing counted yet"
    );
    let (more, want) = demo_data::more_articles(&ds, 9, 120, now);
    db.exec(&more);
    let r2 = refresh(&h, &s, &a, r1.state).unwrap();
    assert!(series(&r2.families).is_empty(), "{what}: lags one refresh");
    let r3 = refresh(&h, &s, &a, r2.state).unwrap();
    compare(&format!("{what} articles"), &series(&r3.families), &want);
    let r4 = refresh(&h, &s, &a, r3.state).unwrap();
    assert_eq!(
        series(&r4.families),
        series(&r3.families),
        "{what}: no new articles"
    );
    // Mail counters do not drop when OTRS purges the communication log.
    let m = mail::Mail;
    let m1 = refresh(&h, &s, &m, None).unwrap();
    db.exec(&[
        "DELETE FROM communication_log_object WHERE status <> 'Processing'".into(),
        "DELETE FROM communication_log WHERE status <> 'Processing'".into(),
    ]);
    let m2 = refresh(&h, &s, &m, m1.state).unwrap();
    let (s1, s2) = (series(&m1.families), series(&m2.families));
    for (k, v) in s1.iter().filter(|(k, _)| k.contains("_total{")) {
        assert_eq!(s2.get(k), Some(v), "{what}: {k} survives the purge");
    }
}

/// Runs `sql` through the `Db` trait (to test timeouts and read-only).
struct Raw(&'static str);
impl DbQuery for Raw {
    fn name(&self) -> &'static str {
        "raw"
    }
    fn refresh(
        &self,
        db: &mut dyn Db,
        _: &DbSettings,
        _: Option<serde_json::Value>,
    ) -> Result<Refreshed, DbError> {
        db.query(self.0)?;
        Ok(Refreshed {
            families: vec![],
            state: None,
        })
    }
}

#[test]
fn failures_timeouts_read_only_and_missing_tables() {
    let _g = SERVER.read().unwrap();
    for driver in [Driver::Postgres, Driver::Mysql] {
        let db = TestDb::new(driver, Variant::Otrs6);
        let mut s = db.settings();
        let h = DbHandle::new(Ok(s.clone()));
        // Writing inside the collectors' transaction is refused.
        let e = refresh(&h, &s, &Raw("INSERT INTO valid (name, create_time, create_by, change_time, change_by) VALUES ('x', '2026-01-01 00:00:00', 1, '2026-01-01 00:00:00', 1)"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.to_ascii_lowercase().contains("read"),
            "{}: {e}",
            driver.as_str()
        );
        // A statement running past the timeout is cancelled by the server.
        s.statement_timeout = Duration::from_millis(300);
        let h = DbHandle::new(Ok(s.clone()));
        let sleep = match driver {
            Driver::Postgres => "SELECT pg_sleep(5)",
            Driver::Mysql => "SELECT SLEEP(5) FROM valid",
        };
        let t = Instant::now();
        let r = refresh(&h, &s, &Raw(sleep), None);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        let e = r.expect_err("timed out").to_string();
        assert!(
            e.contains("statement timeout") || e.contains("max_statement_time"),
            "{}: {e}",
            driver.as_str()
        );
        // And the connection is usable again afterwards.
        refresh(&h, &s, &Raw("SELECT 1"), None).unwrap();
        // A table of a newer version missing (OTRS 5 has no communication_log).
        db.exec(&["DROP TABLE communication_log".into()]);
        let e = refresh(&h, &s, &mail::Mail, None).unwrap_err().to_string();
        assert!(e.contains("communication_log"), "{e}");
        assert!(e.contains(&db.name), "names the database: {e}");
        // Wrong port: connection refused, quickly, with the server named.
        let mut bad = s.clone();
        bad.port = common::free_port();
        let h = DbHandle::new(Ok(bad));
        let e = refresh(&h, &s, &tickets::Tickets, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot connect"), "{e}");
    }
    // Wrong password (PostgreSQL here trusts local TCP, so only MariaDB can refuse it).
    let db = TestDb::new(Driver::Mysql, Variant::Otrs6);
    let mut s = db.settings();
    s.password = otrs_exporter::config::Secret::new("wrong-password");
    let e = refresh(&DbHandle::new(Ok(s.clone())), &s, &tickets::Tickets, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Access denied") && !e.contains("wrong-password"),
        "{e}"
    );
}

#[test]
fn queries_use_the_indexes() {
    let _g = SERVER.read().unwrap();
    for driver in [Driver::Postgres, Driver::Mysql] {
        let db = TestDb::new(driver, Variant::Znuny7);
        let now = db.now();
        let ds = demo_data::generate(3000, 1, now);
        db.exec(&ds.sql);
        let analyze = match driver {
            Driver::Postgres => "ANALYZE",
            Driver::Mysql => {
                "ANALYZE TABLE article, ticket, communication_log, communication_log_object"
            }
        };
        db.exec(&[analyze.into()]);
        let s = db.settings();
        let h = DbHandle::new(Ok(s.clone()));
        // The last 50 ids of each table: what a refresh reads.
        let last50 = |q: &str, table: &str| {
            let max = h
                .run(deadline(10), |db| {
                    db.query(&format!("SELECT MAX(id) FROM {table}"))
                })
                .unwrap()[0][0]
                .int()
                .unwrap();
            q.replace("{from}", &(max - 50).to_string())
                .replace("{to}", &max.to_string())
        };
        let checks = [
            (articles::MAX_ID.to_string(), "article"),
            (last50(articles::NEW, "article"), "article"),
            (
                last50(mail::COMMS, "communication_log"),
                "communication_log",
            ),
            (
                last50(mail::MESSAGES, "communication_log_object"),
                "communication_log_object",
            ),
        ];
        for (sql, table) in checks {
            let plan = h
                .run(deadline(10), |db| db.query(&format!("EXPLAIN {sql}")))
                .unwrap();
            let text: Vec<String> = plan
                .iter()
                .map(|r| r.iter().map(|c| c.text()).collect::<Vec<_>>().join(" | "))
                .collect();
            let text = text.join("\n");
            match driver {
                Driver::Postgres => assert!(
                    !text.contains(&format!("Seq Scan on {table}")),
                    "sequential scan of {table}:\n{sql}\n{text}"
                ),
                // No full table scan anywhere in the plan (joins go by primary key).
                Driver::Mysql => assert!(
                    !text.contains("| ALL |"),
                    "full scan in the plan of {table}:\n{sql}\n{text}"
                ),
            }
        }
    }
}

/// Writes a config for the binary that points at `db` and a private segment.
fn binary_config(dir: &std::path::Path, db: &TestDb, port: u16) -> std::path::PathBuf {
    let cfg = format!(
        "otrs_home = \"/nonexistent-otrs\"\n[segment]\npath = \"{}\"\n[web]\nscrape_timeout_seconds = 4.0\n\
         [db]\ndriver = \"{}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\nname = \"{}\"\n\
         password = \"s3cret-pw\"\nconnect_timeout_seconds = 1.0\n",
        dir.join("seg").display(),
        db.driver.as_str(),
        if db.driver == Driver::Postgres { "postgres" } else { "root" },
        db.name
    );
    let p = dir.join("config.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn cgi(config: &std::path::Path) -> (String, String, Duration) {
    let t = Instant::now();
    let out = Command::new(BIN)
        .env_clear()
        .env("OTRS_EXPORTER_CONFIG", config)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", METRICS)
        .env("QUERY_STRING", "")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("CGI headers");
    assert!(
        head.contains("Status: 200") || !head.contains("Status:"),
        "{head}"
    );
    (
        body.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t.elapsed(),
    )
}

/// Sum of `xact_rollback` of `db` (each collector refresh ends with one ROLLBACK).
fn pg_rollbacks(name: &str) -> i64 {
    let mut c = postgres::Client::connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
        postgres::NoTls,
    )
    .unwrap();
    c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    c.query_one(
        "SELECT xact_rollback FROM pg_stat_database WHERE datname = $1",
        &[&name],
    )
    .unwrap()
    .get::<_, i64>(0)
}

/// MariaDB's count of clients that went away without saying goodbye (`COM_QUIT`).
fn mariadb_aborted_clients() -> u64 {
    use mysql::prelude::Queryable;
    let opts = mysql::OptsBuilder::new()
        .ip_or_hostname(Some("127.0.0.1"))
        .tcp_port(3306)
        .user(Some("root"))
        .prefer_socket(false);
    let mut c = mysql::Conn::new(opts).expect("MariaDB on 127.0.0.1:3306");
    let row: Option<(String, u64)> = c
        .query_first("SHOW GLOBAL STATUS LIKE 'Aborted_clients'")
        .unwrap();
    row.expect("Aborted_clients").1
}

#[test]
fn a_cgi_process_closes_its_database_connection_before_it_exits() {
    // A CGI process exits without tearing its service down (that took a cold scrape ~0.6 ms),
    // but it still closes the database connection properly: MariaDB counts a client that
    // just disappears in Aborted_clients (and logs it with log_warnings >= 2).
    let _g = SERVER.write().unwrap();
    let db = TestDb::new(Driver::Mysql, Variant::Otrs6);
    db.exec(&demo_data::generate(20, 2, db.now()).sql);
    let dir = tempfile::tempdir().unwrap();
    let cfg = binary_config(dir.path(), &db, 3306);
    // MariaDB's root here has no password.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"s3cret-pw\"", "\"\"")).unwrap();
    let before = mariadb_aborted_clients();
    for _ in 0..3 {
        let (body, stderr, _) = cgi(&cfg);
        assert_eq!(sample(&body, "otrs_db_up"), Some(1.0), "{body}\n{stderr}");
    }
    assert_eq!(
        mariadb_aborted_clients(),
        before,
        "a CGI scrape left its MariaDB connection without COM_QUIT"
    );
}

#[test]
fn cgi_processes_share_one_query_per_ttl_and_survive_a_dead_database() {
    let _g = SERVER.write().unwrap();
    let db = TestDb::new(Driver::Postgres, Variant::Otobo11);
    let now = db.now();
    db.exec(&demo_data::generate(200, 3, now).sql);
    let dir = tempfile::tempdir().unwrap();
    let cfg = binary_config(dir.path(), &db, 5432);
    let before = pg_rollbacks(&db.name);
    let cfg = Arc::new(cfg);
    let procs: Vec<_> = (0..8)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || cgi(&cfg))
        })
        .collect();
    let mut bodies = Vec::new();
    for p in procs {
        let (body, stderr, _) = p.join().unwrap();
        assert!(!stderr.contains("s3cret-pw") && !body.contains("s3cret-pw"));
        bodies.push(body);
    }
    for body in &bodies {
        assert_eq!(sample(body, "otrs_db_up"), Some(1.0), "{body}");
        for c in [
            "db", "tickets", "articles", "mail", "daemon", "sessions", "custom",
        ] {
            assert_eq!(
                sample(
                    body,
                    &format!("otrs_exporter_collector_success{{collector=\"{c}\"}}")
                ),
                Some(1.0),
                "{c}:\n{body}"
            );
        }
    }
    promtool_check(&bodies[0]);
    // Then more scrapes within the TTL: served from the cache.
    for _ in 0..3 {
        let (body, _, _) = cgi(&cfg);
        assert!(body.contains("otrs_tickets{"), "{body}");
    }
    let after = pg_rollbacks(&db.name);
    assert_eq!(
        after - before,
        7,
        "one refresh per collector (db + 5, plus custom's deploy check) for 11 scrapes from 11 \
         processes"
    );

    // The database goes away (wrong port): still 200 within the deadline, DB collectors failed.
    let dead = tempfile::tempdir().unwrap();
    let cfg = binary_config(dead.path(), &db, common::free_port());
    let (body, stderr, took) = cgi(&cfg);
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(sample(&body, "otrs_db_up"), Some(0.0), "{body}");
    assert_eq!(
        sample(
            &body,
            "otrs_exporter_collector_success{collector=\"tickets\"}"
        ),
        Some(0.0)
    );
    assert!(
        stderr.contains("tickets: database query failed"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot connect"), "{stderr}");
    promtool_check(&body);
}

#[test]
fn check_config_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[db]\npassword = \"s3cret-pw\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .env("OTRS_EXPORTER_CONFIG", &p)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db.password = \"***\""), "{text}");
    assert!(!text.contains("s3cret-pw"));
}
