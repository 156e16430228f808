//! Throwaway databases on the real PostgreSQL (127.0.0.1:5432, postgres, trust) and MariaDB
//! (127.0.0.1:3306, root, no password): uniquely named, loaded from the OTRS fixtures, dropped
//! again when the value is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

use otrs_exporter::config::Config;
use otrs_exporter::db::demo_data::{self, Variant};
use otrs_exporter::db::{DbSettings, Driver};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A database that exists for one test.
pub struct TestDb {
    /// Which server.
    pub driver: Driver,
    /// Its name.
    pub name: String,
}

/// Runs `sql` as the server's superuser, in database `db` (or none).
pub fn admin_exec(driver: Driver, db: Option<&str>, sql: &[String]) {
    match driver {
        Driver::Postgres => {
            let mut c = postgres::Config::new();
            c.host("127.0.0.1").port(5432).user("postgres");
            if let Some(d) = db {
                c.dbname(d);
            }
            let mut client = c
                .connect(postgres::NoTls)
                .expect("PostgreSQL on 127.0.0.1:5432");
            for s in sql {
                client
                    .batch_execute(s)
                    .unwrap_or_else(|e| panic!("{e}: {s:.200}"));
            }
        }
        Driver::Mysql => {
            use mysql::prelude::Queryable;
            let opts = mysql::OptsBuilder::new()
                .ip_or_hostname(Some("127.0.0.1"))
                .tcp_port(3306)
                .user(Some("root"))
                .db_name(db)
                .prefer_socket(false);
            let mut c = mysql::Conn::new(opts).expect("MariaDB on 127.0.0.1:3306");
            for s in sql {
                c.query_drop(s).unwrap_or_else(|e| panic!("{e}: {s:.200}"));
            }
        }
    }
}

/// The first column of the first row of `sql`, as text, run as the superuser.
pub fn admin_query(driver: Driver, db: &str, sql: &str) -> String {
    match driver {
        Driver::Postgres => {
            let mut c = postgres::Config::new();
            c.host("127.0.0.1").port(5432).user("postgres").dbname(db);
            let mut client = c.connect(postgres::NoTls).unwrap();
            let rows = client.simple_query(sql).unwrap();
            rows.iter()
                .find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("").to_string())
                    }
                    _ => None,
                })
                .unwrap_or_default()
        }
        Driver::Mysql => {
            use mysql::prelude::Queryable;
            let opts = mysql::OptsBuilder::new()
                .ip_or_hostname(Some("127.0.0.1"))
                .tcp_port(3306)
                .user(Some("root"))
                .db_name(Some(db))
                .prefer_socket(false);
            let mut c = mysql::Conn::new(opts).unwrap();
            let v: Option<mysql::Value> = c.query_first(sql).unwrap();
            match v {
                Some(mysql::Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                Some(mysql::Value::Int(i)) => i.to_string(),
                Some(mysql::Value::UInt(i)) => i.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            }
        }
    }
}

impl TestDb {
    /// A new database with the OTRS 6 tables and `tickets` generated tickets.
    pub fn new(driver: Driver, tickets: u64) -> TestDb {
        let name = format!(
            "otrsexp_custom_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        admin_exec(driver, None, &[format!("CREATE DATABASE {name}")]);
        let db = TestDb { driver, name };
        db.exec(&demo_data::statements(&demo_data::schema(
            driver,
            Variant::Otrs6,
        )));
        if tickets > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            db.exec(&demo_data::generate(tickets, 7, now).sql);
        }
        db
    }

    /// Runs statements as the superuser in this database.
    pub fn exec(&self, sql: &[String]) {
        admin_exec(self.driver, Some(&self.name), sql);
    }

    /// First column of the first row of `sql`.
    pub fn query(&self, sql: &str) -> String {
        admin_query(self.driver, &self.name, sql)
    }

    /// The `[db]` settings of this database in a config (other keys default).
    pub fn config(&self) -> Config {
        let mut c = Config {
            otrs_home: "/nonexistent-otrs".into(),
            ..Default::default()
        };
        c.db.driver = self.driver.as_str().into();
        c.db.host = "127.0.0.1".into();
        c.db.port = self.driver.default_port();
        c.db.user = self.user().into();
        c.db.name = self.name.clone();
        c
    }

    /// The superuser the tests connect as.
    pub fn user(&self) -> &'static str {
        match self.driver {
            Driver::Postgres => "postgres",
            Driver::Mysql => "root",
        }
    }

    /// Resolved connection settings.
    pub fn settings(&self) -> DbSettings {
        otrs_exporter::db::settings::resolve_with(&self.config(), None).unwrap()
    }

    /// A `[db]` section for a config file.
    pub fn toml(&self) -> String {
        format!(
            "[db]\ndriver = \"{}\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nname = \"{}\"\n",
            self.driver.as_str(),
            self.driver.default_port(),
            self.user(),
            self.name
        )
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
