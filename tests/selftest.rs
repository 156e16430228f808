//! `otrs-exporter selftest` on real installations: an OTRS home with Kernel/Config.pm, a real
//! PostgreSQL or MariaDB database from the schema fixtures with a read-only user, a segment
//! created by the binary — then broken in one way at a time (wrong password, a table without
//! the SELECT grant, a superuser, a world-writable segment directory, a corrupt segment, no
//! Config.pm), each of which must show up as WARN or FAIL with a fix, and FAIL as exit status 1.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::testdb::admin_exec;
use common::BIN;
use otrs_exporter::db::demo_data::{self, Variant};
use otrs_exporter::db::Driver;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A database from the fixtures and a user with SELECT on all its tables (dropped at the end).
struct TestDb {
    driver: Driver,
    name: String,
    user: String,
}

const PASSWORD: &str = "Ro-pass-4711";

impl TestDb {
    fn new(driver: Driver) -> TestDb {
        let name = format!(
            "otrsexp_self_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let user = format!("{name}_ro");
        admin_exec(driver, None, &[format!("CREATE DATABASE {name}")]);
        let db = TestDb { driver, name, user };
        db.exec(&demo_data::statements(&demo_data::schema(
            driver,
            Variant::Znuny7,
        )));
        let (u, n) = (&db.user, &db.name);
        match driver {
            Driver::Postgres => db.exec(&[
                format!("CREATE ROLE {u} LOGIN PASSWORD '{PASSWORD}'"),
                format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {u}"),
            ]),
            Driver::Mysql => admin_exec(
                driver,
                None,
                &[
                    format!("CREATE USER '{u}'@'%' IDENTIFIED BY '{PASSWORD}'"),
                    format!("CREATE USER '{u}'@'localhost' IDENTIFIED BY '{PASSWORD}'"),
                    format!("GRANT SELECT ON {n}.* TO '{u}'@'%'"),
                    format!("GRANT SELECT ON {n}.* TO '{u}'@'localhost'"),
                ],
            ),
        }
        db
    }

    fn exec(&self, sql: &[String]) {
        admin_exec(self.driver, Some(&self.name), sql);
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (u, n) = (&self.user, &self.name);
        match self.driver {
            Driver::Postgres => admin_exec(
                self.driver,
                None,
                &[
                    format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"),
                    format!("DROP ROLE IF EXISTS {u}"),
                ],
            ),
            Driver::Mysql => admin_exec(
                self.driver,
                None,
                &[
                    format!("DROP DATABASE IF EXISTS {n}"),
                    format!("DROP USER IF EXISTS '{u}'@'%'"),
                    format!("DROP USER IF EXISTS '{u}'@'localhost'"),
                ],
            ),
        }
    }
}

/// An installation in a temporary directory: OTRS home with Config.pm, the exporter's
/// config, the segment under `seg/`.
struct Install {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Install {
    fn new(db: &TestDb, user: &str, password: &str) -> Install {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("otrs");
        std::fs::create_dir_all(home.join("Kernel")).unwrap();
        let dsn = match db.driver {
            Driver::Postgres => format!("DBI:Pg:dbname={};host=127.0.0.1;", db.name),
            Driver::Mysql => format!("DBI:mysql:database={};host=127.0.0.1;", db.name),
        };
        std::fs::write(
            home.join("Kernel/Config.pm"),
            format!(
                "package Kernel::Config;\nsub Load {{\n    my $Self = shift;\n\
                 \x20   $Self->{{DatabaseHost}} = '127.0.0.1';\n\
                 \x20   $Self->{{Database}} = '{}';\n\
                 \x20   $Self->{{DatabaseUser}} = '{user}';\n\
                 \x20   $Self->{{DatabasePw}} = '{password}';\n\
                 \x20   $Self->{{DatabaseDSN}} = \"{dsn}\";\n\
                 \x20   $Self->{{Home}} = '{}';\n    return 1;\n}}\n1;\n",
                db.name,
                home.display()
            ),
        )
        .unwrap();
        // As OTRS installs it: not readable by others (it holds the password).
        std::fs::set_permissions(
            home.join("Kernel/Config.pm"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "otrs_home = \"{}\"\n[segment]\npath = \"{}\"\n[web]\nlisten = \"unix:{}\"\n\
                 [db]\nconnect_timeout_seconds = 2.0\n",
                home.display(),
                dir.path().join("seg/segment").display(),
                dir.path().join("fcgi.sock").display()
            ),
        )
        .unwrap();
        let inst = Install { dir, config };
        // The segment as the exporter creates it.
        let out = Command::new(BIN)
            .args(["segment", "dump"])
            .env("OTRS_EXPORTER_CONFIG", &inst.config)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        inst
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `selftest` and `selftest --json`: exit code, text, and the JSON checks.
    fn selftest(&self) -> (i32, String, Vec<serde_json::Value>) {
        let run = |json: bool| {
            let mut c = Command::new(BIN);
            c.arg("selftest").env("OTRS_EXPORTER_CONFIG", &self.config);
            if json {
                c.arg("--json");
            }
            c.output().unwrap()
        };
        let text = run(false);
        let json = run(true);
        assert_eq!(text.status.code(), json.status.code());
        let v: serde_json::Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
        (
            text.status.code().unwrap(),
            String::from_utf8_lossy(&text.stdout).into_owned()
                + &String::from_utf8_lossy(&text.stderr),
            v["checks"].as_array().unwrap().clone(),
        )
    }
}

/// The status of `check` in the JSON (the worst one when it reported several lines).
fn status(checks: &[serde_json::Value], check: &str) -> String {
    let all: Vec<&str> = checks
        .iter()
        .filter(|c| c["check"] == check)
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    for s in ["FAIL", "WARN", "PASS"] {
        if all.contains(&s) {
            return s.into();
        }
    }
    panic!("no {check} check in {checks:?}")
}

fn line_with<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in\n{text}"))
}

#[test]
fn a_good_install_passes_on_postgres_and_mariadb() {
    for driver in [Driver::Postgres, Driver::Mysql] {
        let db = TestDb::new(driver);
        let inst = Install::new(&db, &db.user, PASSWORD);
        let (code, text, checks) = inst.selftest();
        assert_eq!(code, 0, "{driver:?}:\n{text}");
        for check in [
            "config",
            "config_pm",
            "db_connect",
            "db_grants",
            "db_read_only",
            "segment",
            "access_log",
        ] {
            assert_eq!(
                status(&checks, check),
                "PASS",
                "{driver:?} {check}:\n{text}"
            );
        }
        assert!(
            line_with(&text, "PASS config_pm").contains("Config.pm:"),
            "{text}"
        );
        assert!(
            line_with(&text, "PASS db_grants").contains("all 16 tables"),
            "{text}"
        );
        // Config.pm readable by everyone: its password is exposed.
        let pm = inst.path("otrs/Kernel/Config.pm");
        std::fs::set_permissions(&pm, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, text, _) = inst.selftest();
        assert_eq!(code, 0, "{text}");
        assert!(
            line_with(&text, "WARN config_pm")
                .contains("holds DatabasePw and is readable by every user"),
            "{text}"
        );
        std::fs::set_permissions(&pm, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (code, text, checks) = inst.selftest();
        assert_eq!(
            (code, status(&checks, "config_pm")),
            (0, "PASS".into()),
            "{text}"
        );
        // The socket is not there (no `serve` running): a warning with what to do.
        assert_eq!(status(&checks, "fastcgi_socket"), "WARN", "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn broken_database_access_fails_or_warns_with_a_fix() {
    // MariaDB checks passwords (the test PostgreSQL trusts 127.0.0.1).
    let db = TestDb::new(Driver::Mysql);
    let inst = Install::new(&db, &db.user, "Wrong-pass-0815");
    let (code, text, checks) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert_eq!(status(&checks, "db_connect"), "FAIL", "{text}");
    assert!(
        line_with(&text, "FAIL db_connect").contains("Access denied"),
        "{text}"
    );
    assert!(!text.contains("Wrong-pass-0815"), "{text}");

    // A table without the SELECT grant, on both servers.
    for driver in [Driver::Postgres, Driver::Mysql] {
        let db = TestDb::new(driver);
        match driver {
            Driver::Postgres => {
                db.exec(&[format!("REVOKE SELECT ON ticket_state FROM {}", db.user)])
            }
            Driver::Mysql => admin_exec(
                driver,
                None,
                &[
                    format!("REVOKE SELECT ON {}.* FROM '{}'@'%'", db.name, db.user),
                    format!(
                        "REVOKE SELECT ON {}.* FROM '{}'@'localhost'",
                        db.name, db.user
                    ),
                    format!("GRANT SELECT ON {}.ticket TO '{}'@'%'", db.name, db.user),
                    format!(
                        "GRANT SELECT ON {}.ticket TO '{}'@'localhost'",
                        db.name, db.user
                    ),
                ],
            ),
        }
        let inst = Install::new(&db, &db.user, PASSWORD);
        let (code, text, checks) = inst.selftest();
        assert_eq!(code, 1, "{driver:?}\n{text}");
        assert_eq!(status(&checks, "db_grants"), "FAIL", "{text}");
        let line = line_with(&text, "FAIL db_grants");
        assert!(line.contains("ticket_state (tickets)"), "{text}");
        assert!(
            !line.contains("ticket (tickets, articles)"),
            "ticket is granted: {text}"
        );
        assert!(
            text.contains("fix: grant read access, e.g. GRANT SELECT ON"),
            "{text}"
        );
    }

    // The superuser can write: works, but warned about.
    let db = TestDb::new(Driver::Postgres);
    let inst = Install::new(&db, "postgres", "");
    let (code, text, checks) = inst.selftest();
    assert_eq!(code, 0, "{text}");
    assert_eq!(status(&checks, "db_read_only"), "WARN", "{text}");
    assert!(
        line_with(&text, "WARN db_read_only").contains("superuser"),
        "{text}"
    );
    let db = TestDb::new(Driver::Mysql);
    let inst = Install::new(&db, "root", "");
    let (_, text, checks) = inst.selftest();
    assert_eq!(status(&checks, "db_read_only"), "WARN", "{text}");
    assert!(
        line_with(&text, "WARN db_read_only").contains("all databases"),
        "{text}"
    );
}

#[test]
fn broken_files_fail_with_a_fix() {
    let db = TestDb::new(Driver::Postgres);
    let inst = Install::new(&db, &db.user, PASSWORD);
    let seg = inst.path("seg/segment");
    let set_mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();

    // A segment directory every user can write to.
    set_mode(&inst.path("seg"), 0o777);
    let (code, text, _) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert!(
        line_with(&text, "FAIL segment").contains("writable by every user (mode 777)"),
        "{text}"
    );
    set_mode(&inst.path("seg"), 0o2770);

    // A world-writable segment.
    set_mode(&seg, 0o666);
    let (code, text, _) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("fix: chmod o-w"), "{text}");
    set_mode(&seg, 0o660);
    let (code, text, _) = inst.selftest();
    assert_eq!(code, 0, "{text}");

    // A corrupt segment.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[..8].copy_from_slice(b"garbage!");
    std::fs::write(&seg, &bytes).unwrap();
    let (code, text, _) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("is not a valid segment"), "{text}");

    // The segment's directory cannot exist: its parent is a file.
    let cfg = std::fs::read_to_string(&inst.config).unwrap();
    std::fs::write(inst.path("plainfile"), "").unwrap();
    std::fs::write(
        &inst.config,
        cfg.replace("seg/segment", "plainfile/segment"),
    )
    .unwrap();
    let (code, text, _) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert!(
        line_with(&text, "FAIL segment").contains("is not a directory"),
        "{text}"
    );
    std::fs::write(&inst.config, &cfg).unwrap();

    // No Config.pm (and no [db]).
    std::fs::remove_file(inst.path("otrs/Kernel/Config.pm")).unwrap();
    let (code, text, checks) = inst.selftest();
    assert_eq!(code, 1, "{text}");
    assert_eq!(status(&checks, "config_pm"), "FAIL", "{text}");
    assert!(text.contains("fix: set otrs_home"), "{text}");

    // An unreadable OTRS log.
    std::fs::write(
        &inst.config,
        format!("{cfg}[otrs_log]\nfile = \"/nonexistent/otrs.log\"\n"),
    )
    .unwrap();
    let (_, text, _) = inst.selftest();
    assert!(
        line_with(&text, "FAIL otrs_log").contains("/nonexistent/otrs.log"),
        "{text}"
    );

    // A config that does not load: one FAIL, nothing else.
    std::fs::write(&inst.config, "[segment]\nmode = \"0666\"\n").unwrap();
    let (code, text, checks) = inst.selftest();
    assert_eq!((code, checks.len()), (1, 1), "{text}");
    assert!(text.contains("segment.mode"), "{text}");
}
