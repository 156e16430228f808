//! Finding, reading and checking the config file; environment overrides; provenance.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::{Config, ConfigError, CONFIG_ENV, DEFAULT_PATH, ENV_PREFIX};

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A line of the config file.
    File {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the key.
        line: usize,
    },
    /// An environment variable (its name).
    Env(String),
}

impl fmt::Display for Source {
    /// `default`, `/etc/x.toml:12` or `env OTRS_EXPORTER_SEGMENT_PATH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// A loaded, checked configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective configuration.
    pub config: Config,
    /// The file that was read; `None` when the default path did not exist.
    pub path: Option<PathBuf>,
    /// Source of every key, by dotted key (`"segment.path"`, `"otrs_home"`); every key of
    /// [`Config`] is present.
    pub sources: BTreeMap<String, Source>,
}

impl Loaded {
    /// The `check-config` report: a header naming the file used, then one line per key,
    /// sorted by key, as `key = value    # source` with TOML-syntax values and aligned
    /// comments.
    pub fn describe(&self) -> String {
        let mut out = match &self.path {
            Some(p) => format!("# config file: {}\n", p.display()),
            None => "# config file: none found; built-in defaults and environment overrides\n"
                .to_string(),
        };
        let values = flatten_config(&self.config);
        let lines: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| {
                let src = self.sources.get(k).cloned().unwrap_or(Source::Default);
                // Never print a password.
                (redact(k, format!("{k} = {v}")), src.to_string())
            })
            .collect();
        let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (l, src) in lines {
            out.push_str(&format!("{l:<width$}    # {src}\n"));
        }
        out
    }
}

/// Keys whose values are secrets or may embed one (`redis://:password@host`, a DSN's
/// `password=`).
pub const SECRET_KEYS: &[&str] = &["db.password", "db.dsn", "cache.redis_url"];

/// `text` (a value, or a line showing one) with the secret in it replaced by `***` if `key`
/// is one of [`SECRET_KEYS`]: the whole value for `db.password`; for `db.dsn` and
/// `cache.redis_url` the value of `password=` and the password of a `scheme://user:password@`
/// part. Other keys pass unchanged.
pub fn redact(key: &str, text: String) -> String {
    match key {
        "db.password" => match text.split_once(" = ") {
            Some((k, v)) if v != "\"\"" => format!("{k} = \"***\""),
            Some(_) => text,
            None if text.is_empty() || text == "\"\"" => text,
            None => "\"***\"".into(),
        },
        "db.dsn" | "cache.redis_url" => {
            let text = match text.to_ascii_lowercase().find("password=") {
                Some(i) => {
                    let from = i + "password=".len();
                    let end = text[from..]
                        .find([';', '"'])
                        .map_or(text.len(), |e| from + e);
                    format!("{}***{}", &text[..from], &text[end..])
                }
                None => text,
            };
            // `scheme://user:password@host`.
            match (text.find("://"), text.rfind('@')) {
                (Some(s), Some(at)) if at > s => {
                    let auth = &text[s + 3..at];
                    let user = auth.split_once(':').map_or("", |(u, _)| u);
                    format!("{}{user}:***{}", &text[..s + 3], &text[at..])
                }
                _ => text,
            }
        }
        _ => text,
    }
}

/// The override variable for a dotted key: `segment.path` → `OTRS_EXPORTER_SEGMENT_PATH`,
/// `otrs_home` → `OTRS_EXPORTER_OTRS_HOME`.
pub fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Which config file to use: the `--config` flag if given, else `OTRS_EXPORTER_CONFIG` if set
/// and not empty, else [`DEFAULT_PATH`]. The flag is `true` when the file was named
/// explicitly (then a missing file is an error).
pub fn resolve_path(cli: Option<&Path>) -> (PathBuf, bool) {
    resolve_path_with(cli, &|k| std::env::var(k).ok())
}

/// [`resolve_path`] with the environment supplied by the caller (for tests).
pub fn resolve_path_with(
    cli: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (PathBuf, bool) {
    if let Some(p) = cli {
        return (p.to_path_buf(), true);
    }
    match env(CONFIG_ENV) {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_PATH), false),
    }
}

/// Resolves the file ([`resolve_path`]) and loads it with the process environment.
pub fn load(cli: Option<&Path>) -> Result<Loaded, ConfigError> {
    let (path, explicit) = resolve_path(cli);
    load_from(&path, explicit, &|k| std::env::var(k).ok())
}

/// Loads `path` and applies overrides from `env` (a lookup by variable name).
///
/// A missing file is an error only when `explicit`; otherwise the defaults are used and
/// [`Loaded::path`] is `None`.
pub fn load_from(
    path: &Path,
    explicit: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound {
                path: path.to_path_buf(),
                source: e,
            })
        }
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };

    let schema = flatten_config(&Config::default());
    let mut sources: BTreeMap<String, Source> = schema
        .keys()
        .map(|k| (k.clone(), Source::Default))
        .collect();

    let (mut config, mut table) = match &text {
        Some(text) => {
            let (config, table) = parse_file(path, text, &schema, &mut sources)?;
            (config, table)
        }
        None => (Config::default(), toml::Table::new()),
    };

    for (key, default) in &schema {
        let var = env_var_name(key);
        let Some(raw) = env(&var) else { continue };
        let value = env_value(key, &var, &raw, default)?;
        insert_dotted(&mut table, key, value);
        config = Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            ConfigError::InvalidValue {
                at: Source::Env(var.clone()),
                key: key.clone(),
                value: redact(key, format!("{raw:?}")),
                reason: tidy_reason(e.message()),
            }
        })?;
        sources.insert(key.clone(), Source::Env(var));
    }

    if let Err((key, reason)) = config.check() {
        return Err(invalid(&config, &sources, key, reason));
    }

    Ok(Loaded {
        config,
        path: text.map(|_| path.to_path_buf()),
        sources,
    })
}

/// Keys whose constraint involves a second key: blame whichever of the two the user set.
const PARTNERS: &[(&str, &str)] = &[
    ("segment.initial_bytes", "segment.max_bytes"),
    ("web.admin_route", "web.metrics_route"),
];

fn invalid(
    config: &Config,
    sources: &BTreeMap<String, Source>,
    key: &str,
    reason: String,
) -> ConfigError {
    let mut key = key;
    if sources.get(key) == Some(&Source::Default) {
        if let Some((_, partner)) = PARTNERS.iter().find(|(k, _)| *k == key) {
            key = partner;
        }
    }
    let value = flatten_config(config)
        .get(key)
        .map(|v| v.to_string())
        .unwrap_or_default();
    ConfigError::InvalidValue {
        at: sources.get(key).cloned().unwrap_or(Source::Default),
        key: key.to_string(),
        value: redact(key, value),
        reason,
    }
}

/// Parses the file text into a typed config (errors with file:line:key) and a plain table
/// (for merging env overrides), and records the line of every key in `sources`.
fn parse_file(
    path: &Path,
    text: &str,
    schema: &BTreeMap<String, toml::Value>,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(Config, toml::Table), ConfigError> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let at = |pos: usize| Source::File {
        path: path.to_path_buf(),
        line: line_of(text, pos),
    };
    if let Some(err) = errors.into_iter().next() {
        let pos = err.span().map(|s| s.start).unwrap_or(0);
        let line = line_of(text, pos);
        let mut leaves = Vec::new();
        collect_leaves(doc.get_ref(), "", &mut leaves);
        let key = leaves
            .into_iter()
            .find(|(_, span)| line_of(text, span.start) == line)
            .map(|(k, _)| k);
        return Err(ConfigError::Syntax {
            at: at(pos),
            column: column_of(text, pos),
            key,
            message: err.message().to_string(),
        });
    }

    let config: Config =
        toml::from_str(text).map_err(|e| serde_error(text, doc.get_ref(), &e, schema, &at))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| serde_error(text, doc.get_ref(), &e, schema, &at))?;

    let mut leaves = Vec::new();
    collect_leaves(doc.get_ref(), "", &mut leaves);
    for (key, span) in leaves {
        if schema.contains_key(&key) {
            sources.insert(key, at(span.start));
        }
    }
    Ok((config, table))
}

/// Turns a serde error from deserializing the file into a [`ConfigError`] naming the key.
fn serde_error(
    text: &str,
    doc: &DeTable<'_>,
    e: &toml::de::Error,
    schema: &BTreeMap<String, toml::Value>,
    at: &dyn Fn(usize) -> Source,
) -> ConfigError {
    let msg = e.message();
    let pos = e.span().map(|s| s.start).unwrap_or(0);
    let found = e.span().and_then(|s| key_at(doc, s.start, ""));
    let key = match &found {
        Some((k, _)) => k.clone(),
        // Not expected: every serde error from toml carries a span inside some key.
        None => backticked(msg).unwrap_or_else(|| "?".into()),
    };
    if msg.starts_with("unknown field") {
        let parent = key.rsplit_once('.').map(|(p, _)| p).unwrap_or("");
        let table = if parent.is_empty() {
            "the top level".to_string()
        } else {
            format!("[{parent}]")
        };
        let allowed = allowed_keys(schema, parent);
        return ConfigError::UnknownKey {
            at: at(pos),
            key,
            table,
            allowed,
        };
    }
    if msg.starts_with("invalid type") {
        let found = match &found {
            Some((_, v)) => describe_found(text, v),
            None => msg.to_string(),
        };
        // The kind only, never a password's text.
        let found = if SECRET_KEYS.contains(&key.as_str()) {
            match found.split_once(" (") {
                Some((kind, _)) if !kind.starts_with("invalid type") => kind.to_string(),
                _ => "a value of another type".to_string(),
            }
        } else {
            found
        };
        return ConfigError::WrongType {
            at: at(pos),
            expected: expected_type(schema, &key),
            key,
            found,
        };
    }
    let value = match &found {
        Some((_, v)) => text[v.span()].to_string(),
        None => e.span().map(|s| text[s].to_string()).unwrap_or_default(),
    };
    ConfigError::InvalidValue {
        at: at(pos),
        value: redact(&key, value),
        key,
        reason: tidy_reason(msg),
    }
}

/// Makes serde's wording fit after `invalid value:` (no repeated prefix, no Rust type names).
fn tidy_reason(msg: &str) -> String {
    msg.strip_prefix("invalid value: ")
        .unwrap_or(msg)
        .replace("expected u64", "expected a non-negative integer")
        .replace("expected u32", "expected an integer from 0 to 4294967295")
}

fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// The keys allowed directly in table `parent` ("" for the top level).
fn allowed_keys(schema: &BTreeMap<String, toml::Value>, parent: &str) -> Vec<String> {
    let mut out: Vec<String> = schema
        .keys()
        .filter_map(|k| {
            if parent.is_empty() {
                Some(k.split('.').next().unwrap_or(k).to_string())
            } else {
                k.strip_prefix(parent)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(str::to_string)
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn expected_type(schema: &BTreeMap<String, toml::Value>, key: &str) -> String {
    if key == "segment.mode" || key == "web.socket_mode" {
        return "a string (an octal mode in quotes, e.g. \"0660\")".into();
    }
    match schema.get(key) {
        Some(toml::Value::String(_)) => "a string".into(),
        Some(toml::Value::Integer(_)) => "an integer".into(),
        Some(toml::Value::Float(_)) => "a number".into(),
        Some(toml::Value::Boolean(_)) => "a boolean (true or false)".into(),
        Some(other) => format!("a {}", other.type_str()),
        None => format!("a table ([{key}])"),
    }
}

fn describe_found(text: &str, v: &toml::Spanned<DeValue<'_>>) -> String {
    let kind = match v.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => return "a table".into(),
    };
    let raw = &text[v.span()];
    let raw: String = if raw.chars().count() > 40 {
        raw.chars().take(40).chain("...".chars()).collect()
    } else {
        raw.to_string()
    };
    format!("{kind} ({raw})")
}

/// The innermost key whose key or value span contains `pos`, with its value.
fn key_at<'a, 'i>(
    table: &'a DeTable<'i>,
    pos: usize,
    prefix: &str,
) -> Option<(String, &'a toml::Spanned<DeValue<'i>>)> {
    for (k, v) in table.iter() {
        let dotted = join_key(prefix, k.get_ref());
        if let DeValue::Table(t) = v.get_ref() {
            if let Some(found) = key_at(t, pos, &dotted) {
                return Some(found);
            }
        }
        if k.span().contains(&pos) || v.span().contains(&pos) {
            return Some((dotted, v));
        }
    }
    None
}

/// Every non-table key with the span of the key itself.
fn collect_leaves(
    table: &DeTable<'_>,
    prefix: &str,
    out: &mut Vec<(String, std::ops::Range<usize>)>,
) {
    for (k, v) in table.iter() {
        let dotted = join_key(prefix, k.get_ref());
        match v.get_ref() {
            DeValue::Table(t) => collect_leaves(t, &dotted, out),
            _ => out.push((dotted, k.span())),
        }
    }
}

fn join_key(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn column_of(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let line_start = text[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    text[line_start..pos].chars().count() + 1
}

/// Converts an environment value to the TOML type of the key's default.
fn env_value(
    key: &str,
    var: &str,
    raw: &str,
    default: &toml::Value,
) -> Result<toml::Value, ConfigError> {
    let wrong = |expected: &str| ConfigError::WrongType {
        at: Source::Env(var.to_string()),
        key: key.to_string(),
        expected: expected.to_string(),
        found: format!("{raw:?}"),
    };
    let t = raw.trim();
    Ok(match default {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            t.replace('_', "")
                .parse::<i64>()
                .map_err(|_| wrong("an integer"))?,
        ),
        toml::Value::Float(_) => {
            toml::Value::Float(t.parse::<f64>().map_err(|_| wrong("a number"))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(wrong("a boolean (true/false, 1/0, yes/no, on/off)")),
        }),
        toml::Value::Array(items) => {
            // Comma-separated, typed like the default's elements.
            let parts = t.split(',').map(str::trim).filter(|p| !p.is_empty());
            let floats = matches!(items.first(), Some(toml::Value::Float(_)));
            let list: Result<Vec<toml::Value>, _> = parts
                .map(|p| {
                    if floats {
                        p.parse::<f64>()
                            .map(toml::Value::Float)
                            .map_err(|_| wrong("a comma-separated list of numbers"))
                    } else {
                        Ok(toml::Value::String(p.to_string()))
                    }
                })
                .collect();
            toml::Value::Array(list?)
        }
        other => return Err(wrong(other.type_str())),
    })
}

fn insert_dotted(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                insert_dotted(t, rest, value);
            }
        }
    }
}

/// Every key of a config as dotted key → TOML value.
pub(super) fn flatten_config(config: &Config) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(config) {
        flatten(&t, "", &mut out);
    }
    out
}

fn flatten(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in table {
        let dotted = join_key(prefix, k);
        match v {
            toml::Value::Table(t) => flatten(t, &dotted, out),
            _ => {
                out.insert(dotted, v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("db.password", "db.password = \"canary\"".into()),
            "db.password = \"***\""
        );
        assert_eq!(redact("db.password", "\"canary\"".into()), "\"***\"");
        assert_eq!(redact("db.password", "\"\"".into()), "\"\"");
        assert_eq!(
            redact("cache.redis_url", "\"redis://u:canary@h:6379/0\"".into()),
            "\"redis://u:***@h:6379/0\""
        );
        assert_eq!(
            redact(
                "db.dsn",
                "\"DBI:Pg:dbname=o;password=canary;host=h\"".into()
            ),
            "\"DBI:Pg:dbname=o;password=***;host=h\""
        );
        assert_eq!(
            redact("db.dsn", "db.dsn = \"postgres://u:canary@db/otrs\"".into()),
            "db.dsn = \"postgres://u:***@db/otrs\""
        );
        assert_eq!(redact("db.user", "otrs".into()), "otrs");
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn schema_has_every_key() {
        let keys: Vec<String> = flatten_config(&Config::default()).into_keys().collect();
        assert_eq!(keys.len(), 59, "{keys:?}");
        assert!(keys.contains(&"segment.mode".to_string()));
        assert!(keys.contains(&"otrs_home".to_string()));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_name("segment.path"), "OTRS_EXPORTER_SEGMENT_PATH");
        assert_eq!(env_var_name("otrs_home"), "OTRS_EXPORTER_OTRS_HOME");
    }

    #[test]
    fn line_and_column() {
        let t = "a\nbc\né = 1";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 3), 2);
        assert_eq!(line_of(t, 5), 3);
        assert_eq!(column_of(t, 9), 4);
    }

    #[test]
    fn dotted_keys_and_inline_tables_get_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "segment.path = \"/x/seg\"\n\nweb = { listen = \"[::1]:1\" }\n",
        );
        let l = load_from(&p, true, &no_env).unwrap();
        assert_eq!(
            l.sources["segment.path"],
            Source::File {
                path: p.clone(),
                line: 1
            }
        );
        assert_eq!(
            l.sources["web.listen"],
            Source::File {
                path: p.clone(),
                line: 3
            }
        );
        assert_eq!(l.config.web.listen, "[::1]:1");
    }

    #[test]
    fn unknown_key_in_inline_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "\nweb = { bogus = 1 }\n");
        let e = load_from(&p, true, &no_env).unwrap_err();
        assert_eq!(e.key(), Some("web.bogus"), "{e}");
        assert!(
            e.to_string().starts_with(&format!("{}:2:", p.display())),
            "{e}"
        );
    }

    #[test]
    fn partner_key_is_blamed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[web]\nmetrics_route = \"admin\"\n");
        let e = load_from(&p, true, &no_env).unwrap_err();
        assert_eq!(e.key(), Some("web.metrics_route"), "{e}");
        assert!(e.to_string().contains(":2:"), "{e}");
    }

    #[test]
    fn env_bool_and_float_forms() {
        let env = |k: &str| match k {
            "OTRS_EXPORTER_WEB_WORKER_LABEL" => Some("no".to_string()),
            "OTRS_EXPORTER_WEB_SCRAPE_TIMEOUT_SECONDS" => Some("5".to_string()),
            _ => None,
        };
        let l = load_from(Path::new("/nonexistent/x.toml"), false, &env).unwrap();
        assert!(!l.config.web.worker_label);
        assert_eq!(l.config.web.scrape_timeout_seconds, 5.0);
        assert_eq!(l.path, None);
    }

    #[test]
    fn env_value_rejected_by_serde_names_variable() {
        let env = |k: &str| (k == "OTRS_EXPORTER_LOG_LEVEL").then(|| "verbose".to_string());
        let e = load_from(Path::new("/nonexistent/x.toml"), false, &env).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("env OTRS_EXPORTER_LOG_LEVEL: log_level"),
            "{s}"
        );
        assert!(s.contains("unknown variant"), "{s}");
    }
}
