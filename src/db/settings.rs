//! Effective connection settings: `[db]` over `Kernel/Config.pm` over Defaults.pm.

use std::time::Duration;

use super::{Db, DbError, Driver};
use crate::config::otrs_pm::{self, parse_dsn, OtrsConfig};
use crate::config::{Config, Secret};

/// Everything needed to connect, plus the OTRS settings the collectors use.
#[derive(Debug, Clone)]
pub struct DbSettings {
    /// Protocol.
    pub driver: Driver,
    /// TCP host (`None` when a socket is used).
    pub host: Option<String>,
    /// TCP port.
    pub port: u16,
    /// Unix socket (MySQL) or socket directory (PostgreSQL).
    pub socket: Option<String>,
    /// Database name.
    pub name: String,
    /// User name.
    pub user: String,
    /// Password (never printed; `Debug` shows `***`).
    pub password: Secret,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Longest statement run time.
    pub statement_timeout: Duration,
    /// OTRS `SessionMaxIdleTime`, seconds.
    pub session_max_idle_time: u64,
    /// OTRS `SessionModule`.
    pub session_module: String,
    /// Where the connection settings came from, for messages (e.g. `/opt/otrs/Kernel/Config.pm`).
    pub origin: String,
}

impl DbSettings {
    /// `PostgreSQL otrs@127.0.0.1:5432/otrs` (for log lines; no password).
    pub fn describe(&self) -> String {
        let kind = match self.driver {
            Driver::Postgres => "PostgreSQL",
            Driver::Mysql => "MySQL/MariaDB",
        };
        let at = match (&self.socket, &self.host) {
            (Some(s), _) => s.clone(),
            (None, Some(h)) => format!("{h}:{}", self.port),
            (None, None) => "?".into(),
        };
        format!("{kind} {}@{at}/{}", self.user, self.name)
    }

    /// Opens a connection within `timeout`.
    pub fn connect(&self, timeout: Duration) -> Result<Box<dyn Db>, DbError> {
        let r: Result<Box<dyn Db>, DbError> = match self.driver {
            Driver::Postgres => super::pg::PgDb::connect(self, timeout).map(|c| Box::new(c) as _),
            Driver::Mysql => {
                super::mysql::MysqlDb::connect(self, timeout).map(|c| Box::new(c) as _)
            }
        };
        r.map_err(|e| DbError(format!("cannot connect: {e}")))
    }
}

/// Works out the connection settings from `[db]` and, where it leaves keys empty,
/// `<otrs_home>/Kernel/Config.pm`.
///
/// `Ok(None)`: the database is not configured here and there is no Config.pm (the DB
/// collectors are then not registered). `Err`: it is configured but unusable (the message
/// says why and what to set).
pub fn resolve(cfg: &Config) -> Result<Option<DbSettings>, String> {
    let pm = match otrs_pm::read(&cfg.otrs_home) {
        Ok(pm) => pm,
        Err(e) if cfg.db.is_set() => {
            log::debug!("ignoring Config.pm: {e}");
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    if pm.is_none() && !cfg.db.is_set() {
        return Ok(None);
    }
    resolve_with(cfg, pm.as_ref()).map(Some)
}

/// [`resolve`] with an already read Config.pm (or none).
pub fn resolve_with(cfg: &Config, pm: Option<&OtrsConfig>) -> Result<DbSettings, String> {
    let d = &cfg.db;
    let pm_get = |key: &str| -> Result<Option<String>, String> {
        match pm {
            Some(pm) => pm.get(key).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    };
    let origin = if !d.dsn.is_empty() || d.is_set() {
        "the exporter's [db] settings".to_string()
    } else {
        pm.map(|p| p.config_pm.display().to_string())
            .unwrap_or_else(|| "defaults".into())
    };
    let dsn_text = if !d.dsn.is_empty() {
        Some(d.dsn.clone())
    } else {
        pm_get("DatabaseDSN")?
    };
    let dsn = match &dsn_text {
        Some(t) => match parse_dsn(t) {
            Ok(x) => Some(x),
            // Unusable DSN (e.g. Oracle) but [db] names the driver: use [db] alone.
            Err(_) if !d.driver.is_empty() => None,
            Err(e) => return Err(format!("{origin}: DatabaseDSN: {e}")),
        },
        None => None,
    };
    let driver = match d.driver.as_str() {
        "postgresql" => Driver::Postgres,
        "mysql" => Driver::Mysql,
        _ => match &dsn {
            Some(x) => x.driver,
            None => {
                return Err(
                    "db.driver is not set and there is no DSN to take it from; set db.driver \
                     to \"postgresql\" or \"mysql\""
                        .into(),
                )
            }
        },
    };
    let mut host = non_empty(&d.host)
        .or_else(|| dsn.as_ref().and_then(|x| x.host.clone()))
        .filter(|h| !h.is_empty());
    if host.is_none() && dsn.is_none() {
        host = pm_get("DatabaseHost")?;
    }
    let mut socket = non_empty(&d.socket).or_else(|| dsn.as_ref().and_then(|x| x.socket.clone()));
    if driver == Driver::Postgres && socket.is_none() {
        match &host {
            // DBD::Pg: a host starting with '/' is the socket directory; no host = socket.
            Some(h) if h.starts_with('/') => socket = host.take(),
            None => socket = Some("/var/run/postgresql".into()),
            _ => {}
        }
    }
    if driver == Driver::Mysql && socket.is_none() && host.is_none() {
        host = Some("localhost".into());
    }
    let port = if d.port != 0 {
        d.port
    } else {
        dsn.as_ref()
            .and_then(|x| x.port)
            .unwrap_or(driver.default_port())
    };
    let name = match non_empty(&d.name).or_else(|| dsn.as_ref().and_then(|x| x.database.clone())) {
        Some(n) => n,
        None => pm_get("Database")?
            .ok_or_else(|| format!("no database name: set db.name or Database in {origin}"))?,
    };
    let user = match non_empty(&d.user) {
        Some(u) => u,
        None => pm_get("DatabaseUser")?
            .ok_or_else(|| format!("no database user: set db.user or DatabaseUser in {origin}"))?,
    };
    let password = if !d.password.is_empty() {
        d.password.clone()
    } else {
        let pw = pm_get("DatabasePw")?.unwrap_or_default();
        if pw.starts_with('{') {
            let at = pm.map(|p| p.origin("DatabasePw")).unwrap_or_default();
            return Err(format!(
                "DatabasePw at {at} is encrypted (Maint::Database::PasswordCrypt), which the \
                 exporter cannot decrypt: set db.password in the exporter's config (or \
                 OTRS_EXPORTER_DB_PASSWORD)"
            ));
        }
        Secret::new(pw)
    };
    let idle = pm_get("SessionMaxIdleTime")
        .ok()
        .flatten()
        .or_else(|| Some("7200".into()))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(7200);
    let session_module = pm_get("SessionModule")
        .ok()
        .flatten()
        .unwrap_or_else(|| "Kernel::System::AuthSession::DB".into());
    Ok(DbSettings {
        driver,
        host,
        port,
        socket,
        name,
        user,
        password,
        connect_timeout: Duration::from_secs_f64(d.connect_timeout_seconds),
        statement_timeout: Duration::from_secs_f64(d.statement_timeout_seconds),
        session_max_idle_time: idle,
        session_module,
        origin,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn pm(text: &str) -> OtrsConfig {
        let mut settings = BTreeMap::new();
        otrs_pm::parse_into(
            text,
            Path::new("/opt/otrs/Kernel/Config.pm"),
            &|_| None,
            &mut settings,
        );
        OtrsConfig {
            settings,
            config_pm: PathBuf::from("/opt/otrs/Kernel/Config.pm"),
        }
    }

    const PG: &str = "$Self->{DatabaseHost} = 'db1';\n$Self->{Database} = 'otrs';\n\
        $Self->{DatabaseUser} = 'otrs';\n$Self->{DatabasePw} = 'pw';\n\
        $Self->{DatabaseDSN} = \"DBI:Pg:dbname=$Self->{Database};host=$Self->{DatabaseHost};\";\n\
        $Self->{SessionMaxIdleTime} = 600;\n";

    #[test]
    fn from_config_pm_and_overrides() {
        let cfg = Config::default();
        let s = resolve_with(&cfg, Some(&pm(PG))).unwrap();
        assert_eq!(s.driver, Driver::Postgres);
        assert_eq!(s.host.as_deref(), Some("db1"));
        assert_eq!(s.port, 5432);
        assert_eq!((s.name.as_str(), s.user.as_str()), ("otrs", "otrs"));
        assert_eq!(s.password.expose(), "pw");
        assert_eq!(s.session_max_idle_time, 600);
        assert_eq!(s.describe(), "PostgreSQL otrs@db1:5432/otrs");
        assert!(!format!("{s:?}").contains("pw\""), "{s:?}");
        let mut cfg = Config::default();
        cfg.db.host = "127.0.0.1".into();
        cfg.db.port = 5433;
        cfg.db.user = "ro".into();
        cfg.db.password = Secret::new("x");
        let s = resolve_with(&cfg, Some(&pm(PG))).unwrap();
        assert_eq!(s.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.port, 5433);
        assert_eq!(s.user, "ro");
        assert_eq!(s.password.expose(), "x");
        assert_eq!(
            s.driver,
            Driver::Postgres,
            "driver still from Config.pm? no DSN used"
        );
    }

    #[test]
    fn socket_forms_and_encrypted_password() {
        let s = resolve_with(
            &Config::default(),
            Some(&pm(
                "$Self->{Database}='o';$Self->{DatabaseUser}='u';\
                      $Self->{DatabaseDSN} = \"DBI:Pg:dbname=$Self->{Database};\";",
            )),
        )
        .unwrap();
        assert_eq!(s.socket.as_deref(), Some("/var/run/postgresql"));
        let e = resolve_with(
            &Config::default(),
            Some(&pm("$Self->{Database}='o';$Self->{DatabaseUser}='u';\n\
                      $Self->{DatabasePw} = '{1a2b3c}';\n")),
        )
        .unwrap_err();
        assert!(
            e.contains("Config.pm:2") && e.contains("db.password"),
            "{e}"
        );
    }
}
