//! Configuration errors.

use std::io;
use std::path::PathBuf;

use super::Source;

/// Why the configuration could not be loaded.
///
/// Every variant's message says where the problem is: the file and 1-based line (or the
/// environment variable, for overrides) and the dotted key, e.g.
/// `/etc/otrs-exporter/config.toml:7: segment.worker_slots: wrong type: expected an integer,
/// found a string ("many")`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file was named explicitly (`--config` or `OTRS_EXPORTER_CONFIG`) but does
    /// not exist.
    #[error(
        "config file {} not found (named explicitly by --config or OTRS_EXPORTER_CONFIG): {source}",
        path.display()
    )]
    NotFound {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The config file exists but cannot be read (permission denied, is a directory, not
    /// UTF-8, ...).
    #[error("cannot read config file {}: {source}", path.display())]
    Unreadable {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },

    /// The file is not valid TOML.
    #[error(
        "{at}: TOML syntax error at column {column}{}: {message}",
        key_hint(key)
    )]
    Syntax {
        /// File and line of the error.
        at: Source,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The dotted key on the offending line, if one could be identified.
        key: Option<String>,
        /// What the TOML parser says.
        message: String,
    },

    /// A key that the configuration does not know.
    #[error("{at}: unknown key `{key}` in {table}; allowed keys there: {}", allowed.join(", "))]
    UnknownKey {
        /// File and line of the key, or the environment variable.
        at: Source,
        /// The dotted key, e.g. `segment.bogus`.
        key: String,
        /// The table it appeared in, e.g. `[segment]` or `the top level`.
        table: String,
        /// The keys that are allowed in that table.
        allowed: Vec<String>,
    },

    /// A value of the wrong TOML type, e.g. a string where an integer belongs.
    #[error("{at}: {key}: wrong type: expected {expected}, found {found}")]
    WrongType {
        /// File and line of the key, or the environment variable.
        at: Source,
        /// The dotted key.
        key: String,
        /// The type the key takes, e.g. `an integer`.
        expected: String,
        /// What was given instead.
        found: String,
    },

    /// A value of the right type that is not acceptable (out of range, unknown enum name,
    /// unsafe mode, ...).
    #[error("{at}: {key} = {value}: invalid value: {reason}")]
    InvalidValue {
        /// File and line of the key, or the environment variable.
        at: Source,
        /// The dotted key.
        key: String,
        /// The offending value as written (TOML syntax for file values, raw for env values).
        value: String,
        /// Why it is rejected and what is allowed.
        reason: String,
    },
}

fn key_hint(key: &Option<String>) -> String {
    match key {
        Some(k) => format!(" (key `{k}`)"),
        None => String::new(),
    }
}

impl ConfigError {
    /// Where the error is, if it is tied to a file line or an environment variable.
    pub fn source_location(&self) -> Option<&Source> {
        match self {
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::InvalidValue { at, .. } => Some(at),
            ConfigError::NotFound { .. } | ConfigError::Unreadable { .. } => None,
        }
    }

    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Syntax { key, .. } => key.as_deref(),
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::InvalidValue { key, .. } => Some(key),
            ConfigError::NotFound { .. } | ConfigError::Unreadable { .. } => None,
        }
    }
}
