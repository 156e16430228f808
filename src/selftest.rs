//! `otrs-exporter selftest`: checks an installation end to end — the exporter's config,
//! OTRS' Config.pm, the database (reachable, SELECT grant on every table the enabled
//! collectors read, no write privileges), the shared segment and its permissions, the web
//! server, the log files and the FastCGI socket — and says for each check what is wrong and
//! how to fix it. Read-only: it creates, locks and changes nothing.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, otrs_pm, Config};
use crate::db::{Db, DbError, DbSettings, Driver};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but is risky or incomplete.
    Warn,
    /// Broken: the exporter (or part of it) will not work.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name, e.g. `db_grants`.
    pub check: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (empty when it passed).
    pub fix: String,
}

/// All checks, in the order they ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The results.
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, check: &'static str, status: Status, detail: String, fix: &str) {
        self.checks.push(Check {
            check,
            status,
            detail,
            fix: fix.to_string(),
        });
    }

    fn pass(&mut self, check: &'static str, detail: String) {
        self.add(check, Status::Pass, detail, "");
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// One `STATUS check: detail` line per check, with an indented `fix:` line where needed.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "{} {:<15} {}\n",
                c.status.as_str(),
                c.check,
                c.detail
            ));
            if !c.fix.is_empty() {
                out.push_str(&format!("     {:<15} fix: {}\n", "", c.fix));
            }
        }
        let count = |s| self.checks.iter().filter(|c| c.status == s).count();
        out.push_str(&format!(
            "\n{} passed, {} warnings, {} failed\n",
            count(Status::Pass),
            count(Status::Warn),
            count(Status::Fail)
        ));
        out
    }
}

/// Runs every check with the config at `path` (the usual lookup when `None`).
pub fn run(path: Option<&Path>) -> Report {
    let mut r = Report::default();
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            r.add(
                "config",
                Status::Fail,
                e.to_string(),
                "correct the config file (`otrs-exporter check-config` shows every setting and \
                 where it comes from); the other checks need it",
            );
            return r;
        }
    };
    let (mut in_file, mut in_env) = (0, 0);
    for src in loaded.sources.values() {
        match src {
            config::Source::File { .. } => in_file += 1,
            config::Source::Env(_) => in_env += 1,
            config::Source::Default => {}
        }
    }
    let file = match &loaded.path {
        Some(p) => p.display().to_string(),
        None => "no config file (built-in defaults)".into(),
    };
    r.pass(
        "config",
        format!(
            "{file}: {in_file} keys from the file, {in_env} from the environment, the rest \
             defaults"
        ),
    );
    let cfg = &loaded.config;
    if let Some(p) = &loaded.path {
        secret_file(
            &mut r,
            "config",
            p,
            !cfg.db.password.is_empty(),
            "db.password",
        );
    }
    if let Ok(Some(pm)) = otrs_pm::read(&cfg.otrs_home) {
        secret_file(&mut r, "config_pm", &pm.config_pm, true, "DatabasePw");
    }
    config_pm(&mut r, cfg);
    database(&mut r, cfg);
    segment(&mut r, cfg);
    web_server(&mut r, cfg);
    logs(&mut r, cfg);
    socket(&mut r, cfg);
    r
}

fn config_pm(r: &mut Report, cfg: &Config) {
    const CHECK: &str = "config_pm";
    match otrs_pm::read(&cfg.otrs_home) {
        Ok(Some(pm)) => {
            let mut bad = Vec::new();
            let mut origins = Vec::new();
            for key in ["DatabaseDSN", "DatabaseUser", "DatabasePw"] {
                match pm.get(key) {
                    Ok(Some(v)) if key == "DatabasePw" && v.starts_with('{') => bad.push(format!(
                        "DatabasePw at {} is encrypted (PasswordCrypt)",
                        pm.origin(key)
                    )),
                    Ok(_) => origins.push(format!("{key} from {}", pm.origin(key))),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            if bad.is_empty() {
                r.pass(
                    CHECK,
                    format!("{}: {}", pm.config_pm.display(), origins.join(", ")),
                );
            } else {
                r.add(
                    CHECK,
                    if cfg.db.is_set() {
                        Status::Warn
                    } else {
                        Status::Fail
                    },
                    bad.join("; "),
                    "set the connection in the exporter's [db] section (db.password or \
                     OTRS_EXPORTER_DB_PASSWORD for the password)",
                );
            }
        }
        Ok(None) if cfg.db.is_set() => r.pass(
            CHECK,
            format!(
                "no Kernel/Config.pm under {}; [db] gives the connection",
                cfg.otrs_home.display()
            ),
        ),
        Ok(None) => r.add(
            CHECK,
            Status::Fail,
            format!(
                "no Kernel/Config.pm under otrs_home = {}",
                cfg.otrs_home.display()
            ),
            "set otrs_home to the OTRS/Znuny/OTOBO directory (e.g. /opt/otrs), or the \
             connection in [db]",
        ),
        Err(e) => r.add(
            CHECK,
            Status::Fail,
            e.to_string(),
            "give the exporter's user read access to Kernel/Config.pm (e.g. group of the web \
             server), or set [db]",
        ),
    }
}

/// Warns if `path`, which holds the secret `what`, is readable by every user.
fn secret_file(r: &mut Report, check: &'static str, path: &Path, holds: bool, what: &str) {
    let Ok(m) = fs::metadata(path) else { return };
    if holds && m.mode() & 0o004 != 0 {
        r.add(
            check,
            Status::Warn,
            format!(
                "{} holds {what} and is readable by every user (mode {:o})",
                path.display(),
                m.mode() & 0o777
            ),
            &format!(
                "chmod o-rwx {}; give the web server's group read access (chgrp)",
                path.display()
            ),
        );
    }
}

/// The tables the enabled DB collectors read, by collector.
fn needed_tables(cfg: &Config, s: &DbSettings) -> Vec<(&'static str, &'static [&'static str])> {
    use crate::collector::{articles, daemon, mail, sessions, tickets};
    let all: [(&str, &[&str]); 5] = [
        ("tickets", tickets::TABLES),
        ("articles", articles::TABLES),
        ("mail", mail::TABLES),
        ("daemon", daemon::TABLES),
        ("sessions", sessions::TABLES),
    ];
    all.into_iter()
        .filter(|(c, _)| cfg.db.enabled.iter().any(|e| e == c))
        .filter(|(c, _)| *c != "sessions" || s.session_module.ends_with("AuthSession::DB"))
        .collect()
}

/// Runs `sql` in its own read-only transaction (a failed statement aborts a PostgreSQL
/// transaction, so each probe gets a fresh one).
fn probe(db: &mut dyn Db, timeout: Duration, sql: &str) -> Result<Vec<crate::db::Row>, DbError> {
    db.begin_read_only(timeout)?;
    let rows = db.query(sql);
    let _ = db.end();
    rows
}

fn database(r: &mut Report, cfg: &Config) {
    let s = match crate::db::resolve(cfg) {
        Ok(Some(s)) => s,
        Ok(None) => {
            r.add(
                "db_connect",
                Status::Warn,
                "no database configured (no Config.pm, no [db]): the ticket, article, mail, \
                 daemon and session metrics are off"
                    .into(),
                "set otrs_home or [db] to get them",
            );
            return;
        }
        Err(e) => {
            r.add(
                "db_connect",
                Status::Fail,
                e,
                "fix the connection settings named in the message ([db] overrides Config.pm)",
            );
            return;
        }
    };
    if cfg.db.enabled.is_empty() {
        r.pass("db_connect", "db.enabled = [] (database off)".into());
        return;
    }
    let mut db = match s.connect(s.connect_timeout) {
        Ok(db) => db,
        Err(e) => {
            r.add(
                "db_connect",
                Status::Fail,
                format!("{} (settings from {}): {e}", s.describe(), s.origin),
                "check that the server runs and accepts this user from this host (pg_hba.conf \
                 / CREATE USER ... @host), and the password in Config.pm or db.password",
            );
            return;
        }
    };
    r.pass(
        "db_connect",
        format!(
            "{} (settings from {}), server {}",
            s.describe(),
            s.origin,
            db.version()
        ),
    );
    let timeout = s.statement_timeout.max(Duration::from_secs(1));
    // Each table once, with the collectors that read it.
    let mut users: Vec<(&str, Vec<&str>)> = Vec::new();
    for (collector, ts) in needed_tables(cfg, &s) {
        for t in ts {
            match users.iter_mut().find(|(name, _)| name == t) {
                Some((_, cs)) => cs.push(collector),
                None => users.push((t, vec![collector])),
            }
        }
    }
    let mut missing = Vec::new();
    for (t, collectors) in &users {
        if let Err(e) = probe(
            db.as_mut(),
            timeout,
            &format!("SELECT 1 FROM {t} WHERE 1 = 0"),
        ) {
            missing.push(format!("{t} ({}): {e}", collectors.join(", ")));
        }
    }
    let tables: Vec<&str> = users.iter().map(|(t, _)| *t).collect();
    if missing.is_empty() {
        r.pass(
            "db_grants",
            format!(
                "SELECT works on all {} tables the enabled collectors read",
                tables.len()
            ),
        );
    } else {
        r.add(
            "db_grants",
            Status::Fail,
            missing.join("; "),
            &format!(
                "grant read access, e.g. GRANT SELECT ON {} TO {}; or remove the collector \
                 from db.enabled",
                tables.join(", "),
                s.user
            ),
        );
    }
    match can_write(db.as_mut(), timeout, &tables) {
        Ok(w) if w.is_empty() => r.pass(
            "db_read_only",
            format!("{} has no write privileges on these tables", s.user),
        ),
        Ok(w) => r.add(
            "db_read_only",
            Status::Warn,
            format!("{} can write: {}", s.user, w.join(", ")),
            "the exporter only reads (in read-only transactions); give it its own user with \
             SELECT only, e.g. CREATE USER otrs_exporter ...; GRANT SELECT ON <tables> TO \
             otrs_exporter; and set db.user / db.password",
        ),
        Err(e) => r.add(
            "db_read_only",
            Status::Warn,
            format!("could not read the privileges of {}: {e}", s.user),
            "check by hand that the exporter's database user has SELECT only",
        ),
    }
}

/// What the connected user may write: superuser/global privileges or write privileges on
/// `tables`.
fn can_write(db: &mut dyn Db, timeout: Duration, tables: &[&str]) -> Result<Vec<String>, DbError> {
    let mut out = Vec::new();
    match db.driver() {
        Driver::Postgres => {
            let su = probe(
                db,
                timeout,
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            )?;
            if su.first().and_then(|r| r.first()).map(|c| c.text()) == Some("t".into()) {
                out.push("superuser".into());
            }
            for t in tables {
                let sql = format!(
                    "SELECT has_table_privilege('{t}', 'INSERT, UPDATE, DELETE, TRUNCATE') \
                     WHERE to_regclass('{t}') IS NOT NULL"
                );
                let rows = probe(db, timeout, &sql)?;
                if rows.first().and_then(|r| r.first()).map(|c| c.text()) == Some("t".into()) {
                    out.push(t.to_string());
                }
            }
        }
        Driver::Mysql => {
            let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                           SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
            let w = "privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'DROP', 'ALTER')";
            let sql = format!(
                "SELECT 'global', privilege_type FROM information_schema.user_privileges \
                 WHERE grantee = {grantee} AND {w} \
                 UNION SELECT table_schema, privilege_type FROM information_schema.schema_privileges \
                 WHERE grantee = {grantee} AND {w} AND table_schema = DATABASE() \
                 UNION SELECT table_name, privilege_type FROM information_schema.table_privileges \
                 WHERE grantee = {grantee} AND {w} AND table_schema = DATABASE()"
            );
            let mut seen: Vec<String> = Vec::new();
            for row in probe(db, timeout, &sql)? {
                let on = row.first().map(|c| c.text()).unwrap_or_default();
                let on = if on == "global" {
                    "all databases".to_string()
                } else {
                    on
                };
                if !seen.contains(&on) {
                    seen.push(on);
                }
            }
            out.extend(seen);
        }
    }
    Ok(out)
}

/// `o+w` without the sticky bit: anyone can replace files in it.
fn world_writable(mode: u32) -> bool {
    mode & 0o002 != 0
}

fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => g.name,
        _ => gid.to_string(),
    }
}

fn segment(r: &mut Report, cfg: &Config) {
    const CHECK: &str = "segment";
    let s = &cfg.segment;
    let path = &s.path;
    let want_gid = match crate::service::segment_options(cfg) {
        Ok(o) => o.gid,
        Err(e) => {
            r.add(
                CHECK,
                Status::Fail,
                e,
                "create the group or correct segment.group",
            );
            return;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut problems: Vec<(Status, String, String)> = Vec::new();
    match fs::metadata(dir) {
        Ok(m) if !m.is_dir() => problems.push((
            Status::Fail,
            format!("{} is not a directory", dir.display()),
            "set segment.path to a file in a directory the web server's user may write, e.g. \
             /dev/shm/otrs-exporter/segment"
                .into(),
        )),
        Ok(m) if world_writable(m.mode()) => problems.push((
            if m.mode() & 0o1000 != 0 {
                Status::Warn
            } else {
                Status::Fail
            },
            format!(
                "directory {} is writable by every user (mode {:o})",
                dir.display(),
                m.mode() & 0o7777
            ),
            format!(
                "use a directory of its own, e.g. segment.path = \"/dev/shm/otrs-exporter/segment\" \
                 (created mode 2770), or chmod o-w {}",
                dir.display()
            ),
        )),
        Ok(_) => {}
        Err(_) => problems.push((
            Status::Warn,
            format!("directory {} does not exist yet", dir.display()),
            "it is created (mode 2770, group segment.group) by the first process that opens \
             the segment; make sure its parent is writable by the web server's user"
                .into(),
        )),
    }
    match fs::metadata(path) {
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            if world_writable(mode) {
                problems.push((
                    Status::Fail,
                    format!(
                        "{} is writable by every user (mode {mode:o})",
                        path.display()
                    ),
                    format!(
                        "chmod o-w {} (segment.mode = \"{}\")",
                        path.display(),
                        s.mode
                    ),
                ));
            } else if mode != s.mode.bits() {
                problems.push((
                    Status::Warn,
                    format!(
                        "{} has mode {mode:o}, segment.mode is {}",
                        path.display(),
                        s.mode
                    ),
                    format!("chmod {} {}", s.mode, path.display()),
                ));
            }
            if let Some(gid) = want_gid {
                if m.gid() != gid {
                    problems.push((
                        Status::Fail,
                        format!(
                            "{} belongs to group {}, segment.group is {}",
                            path.display(),
                            group_name(m.gid()),
                            s.group
                        ),
                        format!("chgrp {} {}", s.group, path.display()),
                    ));
                }
            }
            if let Err(e) = crate::segment::Segment::validate(path) {
                problems.push((
                    Status::Fail,
                    format!("{} is not a valid segment: {e}", path.display()),
                    "the next process that opens it recreates it (values so far are lost); \
                     `otrs-exporter segment clear` does it now"
                        .into(),
                ));
            }
            if fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .is_err()
            {
                problems.push((
                    Status::Warn,
                    format!("this user cannot write {}", path.display()),
                    "run selftest as the web server's user (e.g. sudo -u www-data \
                     otrs-exporter selftest), or set segment.group to a group both share"
                        .into(),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push((
            Status::Warn,
            format!("{} does not exist yet", path.display()),
            "it is created on the first scrape or log line; nothing to do unless it stays \
             missing while the web server runs"
                .into(),
        )),
        Err(e) => problems.push((
            Status::Fail,
            format!("{}: {e}", path.display()),
            "give the web server's user access (segment.group)".into(),
        )),
    }
    if problems.is_empty() {
        let m = fs::metadata(path).map(|m| (m.mode() & 0o7777, m.gid()));
        let (mode, gid) = m.unwrap_or_default();
        r.pass(
            CHECK,
            format!(
                "{}: valid, mode {mode:o}, group {}",
                path.display(),
                group_name(gid)
            ),
        );
    }
    for (status, detail, fix) in problems {
        r.add(CHECK, status, detail, &fix);
    }
}

fn web_server(r: &mut Report, cfg: &Config) {
    use crate::collector::process::ProcTable;
    use crate::collector::web_processes::find_servers;
    let table = match ProcTable::scan() {
        Ok(t) => t,
        Err(e) => {
            r.add(
                "web_server",
                Status::Warn,
                format!("cannot read /proc: {e}"),
                "run selftest on the web server's host",
            );
            return;
        }
    };
    let servers = find_servers(&table, &cfg.processes.server_cmdline);
    if servers.is_empty() {
        r.add(
            "web_server",
            Status::Warn,
            "no Apache (apache2/httpd) or nginx main process found".into(),
            "the exporter answers behind the web server OTRS runs on: start it, or set \
             processes.server_cmdline if it runs under another name",
        );
    } else {
        let list: Vec<String> = servers
            .iter()
            .map(|s| format!("{} (pid {})", s.server, s.pid))
            .collect();
        r.pass("web_server", list.join(", "));
    }
}

fn readable(r: &mut Report, check: &'static str, what: &str, path: &Path) {
    match fs::File::open(path) {
        Ok(_) => r.pass(check, format!("{what} {} is readable", path.display())),
        Err(e) => r.add(
            check,
            Status::Fail,
            format!("{what} {}: {e}", path.display()),
            "correct the path, or give the exporter's user read access (e.g. the adm group for \
             /var/log files)",
        ),
    }
}

fn logs(r: &mut Report, cfg: &Config) {
    if cfg.ingest.access_log.is_empty() {
        r.pass(
            "access_log",
            "ingest.access_log not set (Apache pipes lines to `otrs-exporter ingest`)".into(),
        );
    } else {
        readable(
            r,
            "access_log",
            "ingest.access_log",
            Path::new(&cfg.ingest.access_log),
        );
    }
    let o = &cfg.otrs_log;
    if !o.file.is_empty() {
        let p = if o.date_suffix {
            crate::collector::otrs_log::current_path(&o.file)
        } else {
            o.file.clone().into()
        };
        readable(r, "otrs_log", "otrs_log.file", &p);
    }
    if !o.syslog_file.is_empty() {
        readable(
            r,
            "otrs_log",
            "otrs_log.syslog_file",
            Path::new(&o.syslog_file),
        );
    }
    if o.file.is_empty() && o.syslog_file.is_empty() {
        // Say where OTRS writes, if Config.pm tells.
        let hint = otrs_pm::read(&cfg.otrs_home).ok().flatten().and_then(|pm| {
            let module = pm.get("LogModule").ok().flatten()?;
            module
                .ends_with("Log::File")
                .then(|| pm.get("LogModule::LogFile").ok().flatten())
                .flatten()
        });
        match hint {
            Some(f) => r.add(
                "otrs_log",
                Status::Warn,
                format!("OTRS logs to {f} (Config.pm), but otrs_log.file is not set"),
                &format!("set otrs_log.file = \"{f}\" to count OTRS log messages"),
            ),
            None => r.pass(
                "otrs_log",
                "otrs_log.file and syslog_file not set (OTRS log messages not counted)".into(),
            ),
        }
    }
}

fn socket(r: &mut Report, cfg: &Config) {
    const CHECK: &str = "fastcgi_socket";
    let w = &cfg.web;
    let spec = w.listen.as_str();
    if let Some(path) = spec
        .strip_prefix("unix:")
        .or(spec.starts_with('/').then_some(spec))
    {
        let m = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                r.add(
                    CHECK,
                    Status::Warn,
                    format!("web.listen = {spec}: {e}"),
                    "start `otrs-exporter serve` (or ignore this when the web server spawns \
                     the exporter itself: mod_fcgid, CGI)",
                );
                return;
            }
        };
        let mode = m.mode() & 0o777;
        if !m.file_type().is_socket() {
            r.add(
                CHECK,
                Status::Fail,
                format!("{path} is not a socket"),
                "point web.listen at the socket `serve` creates",
            );
        } else if world_writable(mode) {
            r.add(
                CHECK,
                Status::Fail,
                format!("{path} has mode {mode:o}: every local user can connect and claim any REMOTE_USER"),
                &format!("chmod o-rwx {path}; restart `serve` (it applies web.socket_mode = \"{}\")", w.socket_mode),
            );
        } else {
            r.pass(
                CHECK,
                format!("{path}: mode {mode:o}, group {}", group_name(m.gid())),
            );
        }
        return;
    }
    let addr = spec.strip_prefix("tcp:").unwrap_or(spec);
    let Ok(sa) = addr.parse::<SocketAddr>() else {
        r.add(
            CHECK,
            Status::Fail,
            format!("web.listen = {spec:?} is neither unix:/path nor IP:port"),
            "write web.listen as unix:/run/otrs-exporter/fcgi.sock or 127.0.0.1:9000",
        );
        return;
    };
    if !sa.ip().to_canonical().is_loopback() {
        r.add(
            CHECK,
            Status::Fail,
            format!("web.listen = {spec} is not a loopback address"),
            "the exporter trusts REMOTE_USER from whoever connects: listen on a unix socket or \
             127.0.0.1 (serve refuses other addresses unless --allow-non-loopback)",
        );
    } else if TcpStream::connect_timeout(&sa, Duration::from_millis(300)).is_ok() {
        r.add(
            CHECK,
            Status::Warn,
            format!("something listens on loopback TCP {sa}: every local user can connect"),
            "prefer a unix socket (web.listen = \"unix:/run/otrs-exporter/fcgi.sock\", \
             web.socket_group = the web server's group) so only the web server can claim a \
             REMOTE_USER",
        );
    } else {
        r.pass(
            CHECK,
            format!("web.listen = {spec} (loopback; nothing listens there now)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_report_has_a_line_per_check_and_fixes() {
        let mut r = Report::default();
        r.pass("config", "ok".into());
        r.add("segment", Status::Fail, "bad".into(), "chmod o-w x");
        let t = r.text();
        assert!(t.starts_with("PASS config          ok\n"), "{t}");
        assert!(t.contains("FAIL segment         bad\n"), "{t}");
        assert!(t.contains("fix: chmod o-w x"), "{t}");
        assert!(t.ends_with("1 passed, 0 warnings, 1 failed\n"), "{t}");
        assert!(r.failed());
    }
}
