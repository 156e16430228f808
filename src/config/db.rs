//! `[db]`: the OTRS database the DB collectors query (see [`crate::db`]).
//!
//! Every key is optional: empty strings and zero mean "take it from `Kernel/Config.pm`" (see
//! [`super::otrs_pm`]); a value set here wins over Config.pm.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Names of the DB collectors, in the order they are registered.
pub const DB_COLLECTORS: [&str; 6] = [
    "tickets", "articles", "mail", "daemon", "sessions", "custom",
];

/// A secret string: serialized as itself (the config file needs it), but never shown by
/// `Debug` or `Display`; `check-config` prints it as `"***"`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself: pass it on, never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether no secret is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Per-collector cache lifetime of DB results, seconds (`[db.ttl_seconds]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbTtl {
    /// `tickets` (default 60).
    pub tickets: u64,
    /// `articles` (default 300).
    pub articles: u64,
    /// `mail` (default 60).
    pub mail: u64,
    /// `daemon` (default 30).
    pub daemon: u64,
    /// `sessions` (default 60).
    pub sessions: u64,
}

impl Default for DbTtl {
    fn default() -> Self {
        DbTtl {
            tickets: 60,
            articles: 300,
            mail: 60,
            daemon: 30,
            sessions: 60,
        }
    }
}

impl DbTtl {
    /// The TTL of collector `name` (60 s for names it does not know).
    pub fn of(&self, name: &str) -> u64 {
        match name {
            "tickets" => self.tickets,
            "articles" => self.articles,
            "mail" => self.mail,
            "daemon" => self.daemon,
            "sessions" => self.sessions,
            _ => 60,
        }
    }
}

/// `[db]`: connection settings (overriding Kernel/Config.pm) and the DB collectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DbConfig {
    /// A DBI data source as in Config.pm's `DatabaseDSN`, e.g. `DBI:Pg:dbname=otrs;host=db`
    /// (default empty: Config.pm's, or built from the keys below).
    pub dsn: String,
    /// `postgresql` or `mysql` (MySQL and MariaDB); empty = from the DSN.
    pub driver: String,
    /// Database server host name or address; empty = from the DSN / `DatabaseHost`.
    pub host: String,
    /// TCP port; 0 = from the DSN, else 5432 / 3306.
    pub port: u16,
    /// Unix socket (MySQL) or socket directory (PostgreSQL); empty = TCP.
    pub socket: String,
    /// Database name; empty = Config.pm `Database`.
    pub name: String,
    /// User; empty = Config.pm `DatabaseUser`.
    pub user: String,
    /// Password; empty = Config.pm `DatabasePw`. Never logged; `check-config` shows `"***"`.
    pub password: Secret,
    /// Connection timeout in seconds (default 3.0).
    pub connect_timeout_seconds: f64,
    /// Longest run time of one statement in seconds (default 5.0); never more than what is
    /// left of the scrape deadline.
    pub statement_timeout_seconds: f64,
    /// DB collectors to run (default all: tickets, articles, mail, daemon, sessions, custom); `[]`
    /// turns the database off.
    pub enabled: Vec<String>,
    /// Cache lifetime of each collector's result.
    pub ttl_seconds: DbTtl,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig {
            dsn: String::new(),
            driver: String::new(),
            host: String::new(),
            port: 0,
            socket: String::new(),
            name: String::new(),
            user: String::new(),
            password: Secret::default(),
            connect_timeout_seconds: 3.0,
            statement_timeout_seconds: 5.0,
            enabled: DB_COLLECTORS.map(String::from).to_vec(),
            ttl_seconds: DbTtl::default(),
        }
    }
}

impl DbConfig {
    /// Whether any connection setting is made here (then no Config.pm is needed).
    pub fn is_set(&self) -> bool {
        !self.dsn.is_empty() || !self.host.is_empty() || !self.socket.is_empty()
    }

    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if !matches!(self.driver.as_str(), "" | "postgresql" | "mysql") {
            return Err((
                "db.driver",
                "must be \"postgresql\", \"mysql\" (also for MariaDB) or \"\"".into(),
            ));
        }
        if !self.dsn.is_empty() {
            if let Err(e) = crate::config::otrs_pm::parse_dsn(&self.dsn) {
                return Err(("db.dsn", e));
            }
        }
        if !self.socket.is_empty() && !self.socket.starts_with('/') {
            return Err(("db.socket", "must be an absolute path or empty".into()));
        }
        for (key, v) in [
            ("db.connect_timeout_seconds", self.connect_timeout_seconds),
            (
                "db.statement_timeout_seconds",
                self.statement_timeout_seconds,
            ),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 300.0) {
                return Err((key, "must be greater than 0 and at most 300".into()));
            }
        }
        for name in &self.enabled {
            if !DB_COLLECTORS.contains(&name.as_str()) {
                return Err((
                    "db.enabled",
                    format!(
                        "unknown collector {name:?}; known: {}",
                        DB_COLLECTORS.join(", ")
                    ),
                ));
            }
        }
        let t = &self.ttl_seconds;
        for (key, v) in [
            ("db.ttl_seconds.tickets", t.tickets),
            ("db.ttl_seconds.articles", t.articles),
            ("db.ttl_seconds.mail", t.mail),
            ("db.ttl_seconds.daemon", t.daemon),
            ("db.ttl_seconds.sessions", t.sessions),
        ] {
            if !(1..=86_400).contains(&v) {
                return Err((key, "must be between 1 and 86400".into()));
            }
        }
        Ok(())
    }
}
