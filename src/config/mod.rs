//! Exporter settings.
//!
//! All settings live in ONE TOML file. Which file is used:
//!
//! 1. the `--config` command line flag, else
//! 2. the `OTRS_EXPORTER_CONFIG` environment variable (if set and not empty), else
//! 3. [`DEFAULT_PATH`] (`/etc/otrs-exporter/config.toml`).
//!
//! A missing file at the default path is fine (every key has a default); a missing file that
//! was named explicitly (flag or env) is an error.
//!
//! Every key can also be set with an environment variable `OTRS_EXPORTER_<SECTION>_<KEY>`
//! (upper case; top-level keys have no section, e.g. `OTRS_EXPORTER_OTRS_HOME`), see
//! [`env_var_name`]. Environment overrides win over the file: under CGI the environment is
//! what administrators control.
//!
//! [`load`] returns a [`Loaded`] that remembers where each value came from ([`Source`]);
//! [`Loaded::describe`] renders that for the `check-config` command. Errors
//! ([`ConfigError`]) name the file, the 1-based line and the key, or the environment variable.
//!
//! The shipped `config.example.toml` at the repository root documents every key with its
//! default; a test keeps it equal to [`Config::default()`].

mod db;
mod error;
mod load;
pub mod otrs_pm;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use db::{DbConfig, DbTtl, Secret, DB_COLLECTORS};
pub use error::ConfigError;
pub use load::{env_var_name, load, load_from, resolve_path, resolve_path_with, Loaded, Source};

/// Config file used when neither `--config` nor `OTRS_EXPORTER_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/otrs-exporter/config.toml";

/// Environment variable that names the config file (overridden by `--config`).
pub const CONFIG_ENV: &str = "OTRS_EXPORTER_CONFIG";

/// Prefix of the per-key override variables, e.g. `OTRS_EXPORTER_SEGMENT_PATH`.
pub const ENV_PREFIX: &str = "OTRS_EXPORTER_";

const MIB: u64 = 1024 * 1024;
const KIB: u64 = 1024;

/// The complete exporter configuration.
///
/// Every field has a default ([`Config::default`]); a file only needs the keys it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OTRS/Znuny/OTOBO installation directory (`otrs_home`, default `/opt/otrs`).
    pub otrs_home: PathBuf,
    /// Log verbosity (`log_level`, default `info`).
    pub log_level: LogLevel,
    /// The shared memory segment (`[segment]`).
    pub segment: SegmentConfig,
    /// Garbage collection of exited workers (`[gc]`).
    pub gc: GcConfig,
    /// Web front end (`[web]`).
    pub web: WebConfig,
    /// Web request metrics from access logs (`[ingest]`).
    pub ingest: IngestConfig,
    /// Web-server processes (`[processes]`).
    pub processes: ProcessesConfig,
    /// The OTRS daemon's processes (`[daemon]`).
    pub daemon: DaemonConfig,
    /// OTRS log messages (`[otrs_log]`).
    pub otrs_log: OtrsLogConfig,
    /// The OTRS cache backends (`[cache]`).
    pub cache: CacheConfig,
    /// The OTRS database (`[db]`).
    pub db: DbConfig,
    /// The admin page (`[admin]`).
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            otrs_home: PathBuf::from("/opt/otrs"),
            log_level: LogLevel::Info,
            segment: SegmentConfig::default(),
            gc: GcConfig::default(),
            web: WebConfig::default(),
            ingest: IngestConfig::default(),
            processes: ProcessesConfig::default(),
            daemon: DaemonConfig::default(),
            otrs_log: OtrsLogConfig::default(),
            cache: CacheConfig::default(),
            db: DbConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Config {
    /// Path of the metrics endpoint: `base_path/webservice/metrics_route`, with exactly one
    /// `/` between the parts (default `/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics`).
    pub fn metrics_path(&self) -> String {
        join_path(
            &self.web.base_path,
            &self.web.webservice,
            &self.web.metrics_route,
        )
    }

    /// Path of the admin endpoint: `base_path/webservice/admin_route`, with exactly one `/`
    /// between the parts (default `/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin`).
    pub fn admin_path(&self) -> String {
        join_path(
            &self.web.base_path,
            &self.web.webservice,
            &self.web.admin_route,
        )
    }

    /// Checks the value constraints that types alone do not express (ranges, modes, paths).
    ///
    /// Returns the dotted key of the first offending value and why it is rejected.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let s = &self.segment;
        if !self.otrs_home.is_absolute() {
            return Err(("otrs_home", "must be an absolute path".into()));
        }
        if !s.path.is_absolute() {
            return Err(("segment.path", "must be an absolute path".into()));
        }
        if s.path.as_os_str().to_string_lossy().ends_with('/') {
            return Err(("segment.path", "must name a file, not a directory".into()));
        }
        if s.max_bytes < MIB {
            return Err((
                "segment.max_bytes",
                "must be at least 1048576 (1 MiB)".into(),
            ));
        }
        if s.initial_bytes < 64 * KIB {
            return Err((
                "segment.initial_bytes",
                "must be at least 65536 (64 KiB)".into(),
            ));
        }
        if s.initial_bytes > s.max_bytes {
            return Err((
                "segment.initial_bytes",
                format!(
                    "must not exceed segment.max_bytes ({}); the file can only grow up to max_bytes",
                    s.max_bytes
                ),
            ));
        }
        if !(16..=65536).contains(&s.worker_slots) {
            return Err((
                "segment.worker_slots",
                "must be between 16 and 65536".into(),
            ));
        }
        if s.group.chars().any(|c| c.is_whitespace() || c == ':') {
            return Err((
                "segment.group",
                "must be a group name (no whitespace or ':'), or \"\" for the creator's group"
                    .into(),
            ));
        }
        let m = s.mode.bits();
        if m & 0o002 != 0 {
            return Err((
                "segment.mode",
                "grants write permission to others (o+w): any local user could corrupt the \
                 shared metrics; use e.g. \"0660\" and set segment.group"
                    .into(),
            ));
        }
        if m & 0o600 != 0o600 {
            return Err((
                "segment.mode",
                "must give the owner read and write permission (u+rw), e.g. \"0660\"".into(),
            ));
        }
        if !(1..=60_000).contains(&s.lock_timeout_ms) {
            return Err((
                "segment.lock_timeout_ms",
                "must be between 1 and 60000 milliseconds".into(),
            ));
        }
        if self.gc.interval_seconds == 0 {
            return Err(("gc.interval_seconds", "must be at least 1".into()));
        }
        let w = &self.web;
        if w.socket_mode.bits() & 0o002 != 0 {
            return Err((
                "web.socket_mode",
                "grants write permission to others (o+w): any local user could connect and \
                 claim any REMOTE_USER; use e.g. \"0660\" and set web.socket_group"
                    .into(),
            ));
        }
        if w.socket_group
            .chars()
            .any(|c| c.is_whitespace() || c == ':')
        {
            return Err((
                "web.socket_group",
                "must be a group name (no whitespace or ':'), or \"\" for the creator's group"
                    .into(),
            ));
        }
        if !w.base_path.starts_with('/') {
            return Err(("web.base_path", "must start with '/'".into()));
        }
        if w.base_path.contains("//") || has_bad_url_chars(&w.base_path) {
            return Err((
                "web.base_path",
                "must be a plain URL path (no '//', whitespace, '?' or '#')".into(),
            ));
        }
        for (key, v) in [
            ("web.webservice", &w.webservice),
            ("web.metrics_route", &w.metrics_route),
            ("web.admin_route", &w.admin_route),
        ] {
            let t = v.trim_matches('/');
            if t.is_empty() || t.contains("//") || has_bad_url_chars(t) {
                return Err((
                    key,
                    "must be a non-empty URL path segment (no '//', whitespace, '?' or '#')".into(),
                ));
            }
        }
        if w.metrics_route.trim_matches('/') == w.admin_route.trim_matches('/') {
            return Err((
                "web.admin_route",
                "must differ from web.metrics_route".into(),
            ));
        }
        if !valid_listen(&w.listen) {
            return Err((
                "web.listen",
                "must be HOST:PORT, e.g. \"127.0.0.1:9646\" or \"[::1]:9646\", or (for `serve`) \
                 unix:/absolute/path"
                    .into(),
            ));
        }
        let t = w.scrape_timeout_seconds;
        if !(t.is_finite() && t > 0.0 && t <= 300.0) {
            return Err((
                "web.scrape_timeout_seconds",
                "must be greater than 0 and at most 300".into(),
            ));
        }
        self.ingest.check()?;
        self.processes.check()?;
        self.db.check()?;
        self.daemon.check()?;
        self.otrs_log.check()?;
        self.admin.check()?;
        self.cache.check()
    }

    /// The daemon's PID file: `daemon.pid_file`, or
    /// `<otrs_home>/var/run/Daemon-NodeID-<daemon.node_id>.pid`.
    pub fn daemon_pid_file(&self) -> PathBuf {
        if self.daemon.pid_file.is_empty() {
            self.otrs_home
                .join("var/run")
                .join(format!("Daemon-NodeID-{}.pid", self.daemon.node_id))
        } else {
            PathBuf::from(&self.daemon.pid_file)
        }
    }

    /// The FileStorable cache directory: `cache.dir`, or
    /// `<otrs_home>/var/tmp/CacheFileStorable`.
    pub fn cache_dir(&self) -> PathBuf {
        if self.cache.dir.is_empty() {
            self.otrs_home.join("var/tmp/CacheFileStorable")
        } else {
            PathBuf::from(&self.cache.dir)
        }
    }
}

fn has_bad_url_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
}

fn valid_listen(s: &str) -> bool {
    // `serve`'s unix socket.
    if let Some(path) = s.strip_prefix("unix:") {
        return path.starts_with('/') && !path.contains('\0');
    }
    let s = s.strip_prefix("tcp:").unwrap_or(s);
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return true;
    }
    // A host name: `name:port`.
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

fn join_path(base: &str, webservice: &str, route: &str) -> String {
    let mut out = base.trim_end_matches('/').to_string();
    for part in [webservice, route] {
        out.push('/');
        out.push_str(part.trim_matches('/'));
    }
    out
}

/// Log verbosity, as written in the file: `error`, `warn`, `info`, `debug` or `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// Errors, warnings and informational messages (the default).
    Info,
    /// Also debugging output.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name as written in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// The matching filter for the `log` crate.
    pub fn to_level_filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// File permission bits of the segment, written in the file as an octal string like `"0660"`.
///
/// Only the nine permission bits are accepted (no setuid/setgid/sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMode(u32);

impl FileMode {
    /// Wraps permission bits; `None` if bits outside `0o777` are set.
    pub fn new(bits: u32) -> Option<FileMode> {
        (bits <= 0o777).then_some(FileMode(bits))
    }

    /// The permission bits, e.g. `0o660`.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Parses an octal string of 3 or 4 digits such as `"660"` or `"0660"`.
    pub fn parse(s: &str) -> Result<FileMode, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        if !(3..=4).contains(&digits.len()) || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!(
                "`{s}` is not an octal file mode; write 3 or 4 octal digits in quotes, e.g. \"0660\""
            ));
        }
        let bits = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
        FileMode::new(bits).ok_or_else(|| {
            format!("`{s}` sets setuid/setgid/sticky bits; only permission bits (up to 0777) are allowed")
        })
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FileMode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// `[segment]`: the shared memory segment the OTRS workers write into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// The segment file (default `/dev/shm/otrs-exporter/segment`).
    pub path: PathBuf,
    /// Address space reserved; the file can grow up to this many bytes
    /// (default 268435456 = 256 MiB, at least 1 MiB).
    pub max_bytes: u64,
    /// Initial file size in bytes (default 1048576 = 1 MiB; at least 64 KiB, at most `max_bytes`).
    pub initial_bytes: u64,
    /// Maximum number of concurrently tracked worker processes (default 1024; 16..=65536).
    pub worker_slots: u32,
    /// Group owning the segment and its semaphore, e.g. `www-data`; empty means the creator's
    /// group (default empty).
    pub group: String,
    /// File mode of the segment (default `"0660"`); may not grant write permission to others.
    pub mode: FileMode,
    /// Maximum wait for the semaphore in milliseconds (default 1000; 1..=60000).
    pub lock_timeout_ms: u64,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            path: PathBuf::from("/dev/shm/otrs-exporter/segment"),
            max_bytes: 256 * MIB,
            initial_bytes: MIB,
            worker_slots: 1024,
            group: String::new(),
            mode: FileMode(0o660),
            lock_timeout_ms: 1000,
        }
    }
}

/// `[gc]`: folding the series of exited workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Seconds after which a dead worker's series are folded into `worker="exited"`
    /// (default 300).
    pub grace_seconds: u64,
    /// Automatic GC runs at most this often, in seconds (default 60; at least 1).
    pub interval_seconds: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace_seconds: 300,
            interval_seconds: 60,
        }
    }
}

/// `[web]`: URLs and the HTTP/FastCGI front end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// GenericInterface-style URL prefix (default `/otrs/nph-genericinterface.pl/Webservice`).
    pub base_path: String,
    /// Webservice name, the path part after `base_path` (default `Prometheus`).
    pub webservice: String,
    /// Route of the metrics endpoint (default `metrics`).
    pub metrics_route: String,
    /// Route of the admin endpoint (default `admin`).
    pub admin_route: String,
    /// Address of the standalone/demo HTTP listener and the default of the FastCGI `--listen`
    /// flag (default `127.0.0.1:9646`); `serve` also takes `unix:/path`.
    pub listen: String,
    /// Scrape deadline in seconds (default 9.0; greater than 0, at most 300).
    pub scrape_timeout_seconds: f64,
    /// Whether per-worker series carry a `worker` label; `false` aggregates them over workers
    /// (default `true`).
    pub worker_label: bool,
    /// File mode of the Unix socket `serve` creates (default `"0660"`): only the owner and
    /// [`WebConfig::socket_group`] may connect; never writable by others.
    pub socket_mode: FileMode,
    /// Group of the Unix socket `serve` creates, the web server's (e.g. `www-data`); empty
    /// means the creator's group (default empty).
    pub socket_group: String,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            base_path: "/otrs/nph-genericinterface.pl/Webservice".into(),
            webservice: "Prometheus".into(),
            metrics_route: "metrics".into(),
            admin_route: "admin".into(),
            listen: "127.0.0.1:9646".into(),
            scrape_timeout_seconds: 9.0,
            worker_label: true,
            socket_mode: FileMode(0o660),
            socket_group: String::new(),
        }
    }
}

/// `[ingest]`: web request metrics from the web server's access log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most distinct `route` values per segment; further routes are counted as
    /// `route="__overflow__"` (default 500).
    pub route_cap: u64,
    /// Append OTRS `Subaction` to agent/customer/public routes (default false).
    pub subaction: bool,
    /// URL prefixes of the OTRS CGI scripts (`ScriptAlias`), with leading and trailing slash.
    pub script_prefixes: Vec<String>,
    /// URL prefixes of OTRS static files (`Frontend::WebPath`).
    pub static_prefixes: Vec<String>,
    /// Request duration histogram bucket bounds, seconds.
    pub duration_buckets: Vec<f64>,
    /// Response size histogram bucket bounds, bytes.
    pub size_buckets: Vec<f64>,
    /// nginx access log (in the shipped `otrs_exporter` format) read on every scrape; empty =
    /// none (Apache uses the piped `ingest` command instead).
    pub access_log: String,
    /// Lines the piped ingester buffers before it drops (and counts) lines rather than make
    /// Apache wait (default 65536).
    pub queue_lines: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            route_cap: 500,
            subaction: false,
            script_prefixes: ["/otrs/", "/znuny/", "/otobo/"].map(String::from).to_vec(),
            static_prefixes: ["/otrs-web/", "/znuny-web/", "/otobo-web/"]
                .map(String::from)
                .to_vec(),
            duration_buckets: crate::ingest::families::DURATION_BUCKETS.to_vec(),
            size_buckets: crate::ingest::families::SIZE_BUCKETS.to_vec(),
            access_log: String::new(),
            queue_lines: 65536,
        }
    }
}

impl IngestConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100_000).contains(&self.route_cap) {
            return Err(("ingest.route_cap", "must be between 1 and 100000".into()));
        }
        for (key, list) in [
            ("ingest.script_prefixes", &self.script_prefixes),
            ("ingest.static_prefixes", &self.static_prefixes),
        ] {
            if list
                .iter()
                .any(|p| !p.starts_with('/') || !p.ends_with('/') || has_bad_url_chars(p))
            {
                return Err((key, "each prefix must start and end with '/'".into()));
            }
        }
        for (key, b) in [
            ("ingest.duration_buckets", &self.duration_buckets),
            ("ingest.size_buckets", &self.size_buckets),
        ] {
            if b.is_empty()
                || b.len() > 46
                || b.iter().any(|x| !x.is_finite() || *x <= 0.0)
                || !b.windows(2).all(|w| w[0] < w[1])
            {
                return Err((
                    key,
                    "must be 1 to 46 positive bounds in strictly ascending order".into(),
                ));
            }
        }
        if !self.access_log.is_empty() && !self.access_log.starts_with('/') {
            return Err((
                "ingest.access_log",
                "must be an absolute path or empty".into(),
            ));
        }
        if !(1024..=16 << 20).contains(&self.queue_lines) {
            return Err((
                "ingest.queue_lines",
                "must be between 1024 and 16777216".into(),
            ));
        }
        Ok(())
    }
}

fn absolute_or_empty(key: &'static str, v: &str) -> Result<(), (&'static str, String)> {
    if v.is_empty() || v.starts_with('/') {
        Ok(())
    } else {
        Err((key, "must be an absolute path or empty".into()))
    }
}

/// `[processes]`: finding the web server's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessesConfig {
    /// Command line of the web server's main process, arguments joined by single spaces, e.g.
    /// `/usr/sbin/apache2 -k start` (seed: `ServerCMND`). Empty (default) = detect Apache
    /// (`apache2`, `httpd`) and nginx by process name.
    pub server_cmdline: String,
    /// Seconds between full `/proc` scans of a long-running exporter process (default 30; 0 =
    /// every scrape). In between, a process that was neither a web server, an OTRS daemon
    /// process nor a descendant of one is not read again while it keeps its `/proc` entry;
    /// new processes always are. Only a process that `exec`s into a web server or daemon
    /// under an old PID waits for the next full scan.
    pub rescan_seconds: u64,
}

impl Default for ProcessesConfig {
    fn default() -> Self {
        ProcessesConfig {
            server_cmdline: String::new(),
            rescan_seconds: 30,
        }
    }
}

impl ProcessesConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.rescan_seconds > 3600 {
            return Err((
                "processes.rescan_seconds",
                "must be between 0 and 3600".into(),
            ));
        }
        Ok(())
    }
}

/// `[daemon]`: the OTRS daemon (`bin/otrs.Daemon.pl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Cluster node id of this host (OTRS `NodeID`, default 1): names the PID file and the
    /// `DaemonRunning` heartbeat cache entry.
    pub node_id: u32,
    /// The daemon's PID file; empty (default) = `<otrs_home>/var/run/Daemon-NodeID-<node_id>.pid`.
    pub pid_file: String,
    /// Names of the daemon modules (SysConfig `DaemonModules###<Name>`) in the order the daemon
    /// forks them (sorted by module class), used to name module processes by start order when
    /// nothing better is known.
    pub modules: Vec<String>,
}

/// The daemon modules of a stock OTRS 6 / Znuny / OTOBO, in fork order.
pub const DEFAULT_DAEMON_MODULES: [&str; 5] = [
    "SchedulerCronTaskManager",
    "SchedulerFutureTaskManager",
    "SchedulerGenericAgentTaskManager",
    "SchedulerTaskWorker",
    "SystemConfigurationSyncManager",
];

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            node_id: 1,
            pid_file: String::new(),
            modules: DEFAULT_DAEMON_MODULES.map(String::from).to_vec(),
        }
    }
}

impl DaemonConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=999).contains(&self.node_id) {
            return Err(("daemon.node_id", "must be between 1 and 999".into()));
        }
        absolute_or_empty("daemon.pid_file", &self.pid_file)?;
        if self
            .modules
            .iter()
            .any(|m| m.is_empty() || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err((
                "daemon.modules",
                "each name must be a non-empty word (letters, digits, '_')".into(),
            ));
        }
        Ok(())
    }
}

/// `[otrs_log]`: counting OTRS log messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtrsLogConfig {
    /// Log file of the File backend (`LogModule::LogFile`; OTRS' own default is
    /// `/tmp/otrs.log`, packaged installs often use `<Home>/var/log/otrs.log`). Empty (default)
    /// = off: OTRS logs to syslog unless `LogModule` is set to the File backend.
    pub file: String,
    /// `LogModule::LogFile::Date` is on: the file name carries a `.YYYY-MM` suffix (default
    /// false).
    pub date_suffix: bool,
    /// A syslog file that receives the SysLog backend's messages (e.g. `/var/log/syslog`);
    /// empty (default) = off.
    pub syslog_file: String,
    /// Most distinct `module` label values; further modules count as `__overflow__`
    /// (default 200).
    pub module_cap: u64,
    /// Most distinct `prefix` label values (default 50).
    pub prefix_cap: u64,
}

impl Default for OtrsLogConfig {
    fn default() -> Self {
        OtrsLogConfig {
            file: String::new(),
            date_suffix: false,
            syslog_file: String::new(),
            module_cap: 200,
            prefix_cap: 50,
        }
    }
}

impl OtrsLogConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        absolute_or_empty("otrs_log.file", &self.file)?;
        absolute_or_empty("otrs_log.syslog_file", &self.syslog_file)?;
        for (key, cap) in [
            ("otrs_log.module_cap", self.module_cap),
            ("otrs_log.prefix_cap", self.prefix_cap),
        ] {
            if !(1..=10_000).contains(&cap) {
                return Err((key, "must be between 1 and 10000".into()));
            }
        }
        Ok(())
    }
}

/// `[cache]`: what can be observed of the OTRS cache from outside Perl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// The `Cache::FileStorable` directory; empty (default) =
    /// `<otrs_home>/var/tmp/CacheFileStorable`.
    pub dir: String,
    /// Most cache types reported; the rest are summed as `type="__overflow__"` (default 200).
    pub type_cap: u64,
    /// Seconds a walk of the cache directory is reused by all exporter processes (default 60).
    pub ttl_seconds: u64,
    /// Redis of `Cache::Redis`, e.g. `redis://127.0.0.1:6379/0`; empty (default) = off.
    pub redis_url: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: String::new(),
            type_cap: 200,
            ttl_seconds: 60,
            redis_url: String::new(),
        }
    }
}

impl CacheConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        absolute_or_empty("cache.dir", &self.dir)?;
        if !(1..=10_000).contains(&self.type_cap) {
            return Err(("cache.type_cap", "must be between 1 and 10000".into()));
        }
        if !(1..=86_400).contains(&self.ttl_seconds) {
            return Err(("cache.ttl_seconds", "must be between 1 and 86400".into()));
        }
        if !self.redis_url.is_empty() {
            if let Err(e) = RedisUrl::parse(&self.redis_url) {
                return Err(("cache.redis_url", e));
            }
        }
        Ok(())
    }
}

/// `[admin]`: the admin page (custom SQL metrics, clearing the shared memory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Users (as the web server authenticated them: `REMOTE_USER`) allowed on the admin page;
    /// empty (default) = the page answers 403 to everyone.
    pub users: Vec<String>,
}

impl AdminConfig {
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self
            .users
            .iter()
            .any(|u| u.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err((
                "admin.users",
                "each user must be a non-empty name without whitespace, as the web server \
                 authenticates it (REMOTE_USER)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A parsed `redis://[:password@]host[:port][/db]` URL (`Debug` hides the password).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// Database number (default 0).
    pub db: u32,
    /// Password for `AUTH`, if any.
    pub password: Option<String>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RedisUrl {
    /// Parses `redis://[[user]:password@]host[:port][/db]`.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or("must start with redis://")?;
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((hp, d)) if !d.is_empty() => (
                hp,
                d.parse::<u32>()
                    .map_err(|_| format!("database `{d}` is not a number"))?,
            ),
            Some((hp, _)) => (hp, 0),
            None => (hostpart, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("port `{p}` is not a number"))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("needs a host, e.g. redis://127.0.0.1:6379/0".into());
        }
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            db,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls() {
        let u = RedisUrl::parse("redis://127.0.0.1:6379/3").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.db), ("127.0.0.1", 6379, 3));
        assert_eq!(u.password, None);
        let u = RedisUrl::parse("redis://:pw@cache").unwrap();
        assert!(!format!("{u:?}").contains("pw"), "{u:?}");
        assert_eq!((u.host.as_str(), u.port, u.db), ("cache", 6379, 0));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("redis://x:y").is_err());
        assert!(RedisUrl::parse("redis:///0").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().check(), Ok(()));
    }

    #[test]
    fn default_paths() {
        let c = Config::default();
        assert_eq!(
            c.metrics_path(),
            "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics"
        );
        assert_eq!(
            c.admin_path(),
            "/otrs/nph-genericinterface.pl/Webservice/Prometheus/admin"
        );
    }

    #[test]
    fn path_join_uses_exactly_one_slash() {
        let mut c = Config::default();
        c.web.base_path = "/x/".into();
        c.web.webservice = "/WS/".into();
        c.web.metrics_route = "/m".into();
        c.web.admin_route = "a/".into();
        assert_eq!(c.metrics_path(), "/x/WS/m");
        assert_eq!(c.admin_path(), "/x/WS/a");
        c.web.base_path = "/".into();
        assert_eq!(c.metrics_path(), "/WS/m");
    }

    #[test]
    fn file_mode_parse() {
        assert_eq!(FileMode::parse("0660").unwrap().bits(), 0o660);
        assert_eq!(FileMode::parse("640").unwrap().bits(), 0o640);
        assert_eq!(FileMode::parse("0o600").unwrap().bits(), 0o600);
        assert!(FileMode::parse("0668").is_err());
        assert!(FileMode::parse("66").is_err());
        assert!(FileMode::parse("4660").is_err());
        assert_eq!(FileMode(0o660).to_string(), "0660");
    }

    #[test]
    fn check_rejects_out_of_range() {
        let mut c = Config::default();
        c.segment.worker_slots = 8;
        assert_eq!(c.check().unwrap_err().0, "segment.worker_slots");
        let mut c = Config::default();
        c.segment.mode = FileMode(0o666);
        let (k, why) = c.check().unwrap_err();
        assert_eq!(k, "segment.mode");
        assert!(why.contains("o+w"), "{why}");
        let mut c = Config::default();
        c.segment.initial_bytes = c.segment.max_bytes + 1;
        assert_eq!(c.check().unwrap_err().0, "segment.initial_bytes");
        let mut c = Config::default();
        c.web.scrape_timeout_seconds = 0.0;
        assert_eq!(c.check().unwrap_err().0, "web.scrape_timeout_seconds");
        c.web.scrape_timeout_seconds = 300.0;
        assert_eq!(c.check(), Ok(()));
        c.web.scrape_timeout_seconds = f64::NAN;
        assert!(c.check().is_err());
        let mut c = Config::default();
        c.processes.rescan_seconds = 3601;
        assert_eq!(c.check().unwrap_err().0, "processes.rescan_seconds");
        c.processes.rescan_seconds = 0;
        assert_eq!(c.check(), Ok(()));
        let mut c = Config::default();
        c.web.listen = "nope".into();
        assert_eq!(c.check().unwrap_err().0, "web.listen");
        c.web.listen = "localhost:9646".into();
        assert_eq!(c.check(), Ok(()));
        c.web.listen = "[::1]:9646".into();
        assert_eq!(c.check(), Ok(()));
        c.web.listen = "unix:/run/otrs-exporter/fcgi.sock".into();
        assert_eq!(c.check(), Ok(()));
        c.web.listen = "unix:relative.sock".into();
        assert!(c.check().is_err());
    }

    #[test]
    fn log_level_names() {
        assert_eq!(LogLevel::Warn.to_string(), "warn");
        assert_eq!(LogLevel::Trace.to_level_filter(), log::LevelFilter::Trace);
    }
}
