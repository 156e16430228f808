//! Integration tests of `otrs_exporter::config`: file, env and error behaviour.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use otrs_exporter::config::{
    self, load_from, resolve_path_with, Config, ConfigError, LogLevel, Source, DEFAULT_PATH,
};

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Writes `text` to a fresh config file; the directory lives as long as the returned guard.
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, text).unwrap();
    (dir, p)
}

fn err(text: &str) -> (String, ConfigError, PathBuf, tempfile::TempDir) {
    let (dir, p) = file(text);
    let e = load_from(&p, true, &no_env).expect_err("config should be rejected");
    (e.to_string(), e, p, dir)
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")
}

#[test]
fn defaults_when_default_file_is_missing() {
    let l = load_from(Path::new("/nonexistent/otrs-exporter.toml"), false, &no_env).unwrap();
    assert_eq!(l.config, Config::default());
    assert_eq!(l.path, None);
    assert_eq!(l.sources.len(), 59);
    assert!(l.sources.values().all(|s| *s == Source::Default));
    let c = &l.config;
    assert_eq!(c.otrs_home, Path::new("/opt/otrs"));
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.segment.max_bytes, 268_435_456);
    assert_eq!(c.segment.mode.bits(), 0o660);
    assert_eq!(c.web.scrape_timeout_seconds, 9.0);
}

#[test]
fn empty_file_gives_defaults() {
    let (_d, p) = file("# nothing\n");
    let l = load_from(&p, true, &no_env).unwrap();
    assert_eq!(l.config, Config::default());
    assert_eq!(l.path.as_deref(), Some(p.as_path()));
}

#[test]
fn resolve_path_precedence() {
    let env = env_of(&[("OTRS_EXPORTER_CONFIG", "/env/c.toml")]);
    assert_eq!(
        resolve_path_with(Some(Path::new("/cli/c.toml")), &env),
        (PathBuf::from("/cli/c.toml"), true)
    );
    assert_eq!(
        resolve_path_with(None, &env),
        (PathBuf::from("/env/c.toml"), true)
    );
    assert_eq!(
        resolve_path_with(None, &env_of(&[("OTRS_EXPORTER_CONFIG", "")])),
        (PathBuf::from(DEFAULT_PATH), false)
    );
    assert_eq!(
        resolve_path_with(None, &no_env),
        (PathBuf::from("/etc/otrs-exporter/config.toml"), false)
    );
}

#[test]
fn values_from_file_with_provenance() {
    let (_d, p) = file(
        "otrs_home = \"/opt/znuny\"\n\n[segment]\n# comment\nworker_slots = 64\nmode = \"0640\"\n\n[web]\nworker_label = false\n",
    );
    let l = load_from(&p, true, &no_env).unwrap();
    assert_eq!(l.config.otrs_home, Path::new("/opt/znuny"));
    assert_eq!(l.config.segment.worker_slots, 64);
    assert_eq!(l.config.segment.mode.bits(), 0o640);
    assert!(!l.config.web.worker_label);
    assert_eq!(
        l.sources["otrs_home"],
        Source::File {
            path: p.clone(),
            line: 1
        }
    );
    assert_eq!(
        l.sources["segment.worker_slots"],
        Source::File {
            path: p.clone(),
            line: 5
        }
    );
    assert_eq!(
        l.sources["web.worker_label"],
        Source::File {
            path: p.clone(),
            line: 9
        }
    );
    assert_eq!(l.sources["segment.path"], Source::Default);
}

#[test]
fn unknown_top_level_key() {
    let (msg, e, p, _d) = err("otrs_home = \"/opt/otrs\"\nlisten = \"0.0.0.0:1\"\n");
    assert_eq!(
        msg,
        format!(
            "{}:2: unknown key `listen` in the top level; allowed keys there: admin, cache, daemon, db, gc, ingest, log_level, otrs_home, otrs_log, processes, segment, web",
            p.display()
        )
    );
    assert!(matches!(e, ConfigError::UnknownKey { .. }));
}

#[test]
fn unknown_table_is_an_unknown_key() {
    let (msg, _, p, _d) = err("\n\n[segmnt]\npath = \"/x\"\n");
    assert!(
        msg.starts_with(&format!(
            "{}:3: unknown key `segmnt` in the top level",
            p.display()
        )),
        "{msg}"
    );
}

#[test]
fn unknown_key_in_segment() {
    let (msg, e, p, _d) = err("[segment]\npath = \"/dev/shm/x\"\n\n  max_size = 5\n");
    assert_eq!(
        msg,
        format!(
            "{}:4: unknown key `segment.max_size` in [segment]; allowed keys there: group, initial_bytes, lock_timeout_ms, max_bytes, mode, path, worker_slots",
            p.display()
        )
    );
    assert_eq!(e.key(), Some("segment.max_size"));
}

#[test]
fn wrong_type() {
    let (msg, e, p, _d) = err("[segment]\n\nworker_slots = \"many\"\n");
    assert_eq!(
        msg,
        format!(
            "{}:3: segment.worker_slots: wrong type: expected an integer, found a string (\"many\")",
            p.display()
        )
    );
    assert!(matches!(e, ConfigError::WrongType { .. }));
    let (msg, _, p, _d) = err("[web]\nworker_label = \"yes\"\n");
    assert_eq!(
        msg,
        format!(
            "{}:2: web.worker_label: wrong type: expected a boolean (true or false), found a string (\"yes\")",
            p.display()
        )
    );
    // An unquoted mode is a TOML integer (0o660): insist on the documented string form.
    let (msg, _, _, _d) = err("[segment]\nmode = 0o660\n");
    assert!(
        msg.contains(":2: segment.mode: wrong type: expected a string (an octal mode in quotes"),
        "{msg}"
    );
    let (msg, _, _, _d) = err("segment = 5\n");
    assert!(
        msg.contains(":1: segment: wrong type: expected a table ([segment]), found an integer (5)"),
        "{msg}"
    );
}

#[test]
fn out_of_range_value() {
    let (msg, e, p, _d) = err("[segment]\nworker_slots = 8\n");
    assert_eq!(
        msg,
        format!(
            "{}:2: segment.worker_slots = 8: invalid value: must be between 16 and 65536",
            p.display()
        )
    );
    assert!(matches!(e, ConfigError::InvalidValue { .. }));
    let (msg, _, p, _d) = err("[gc]\n\n[web]\nscrape_timeout_seconds = 301\n");
    assert_eq!(
        msg,
        format!(
            "{}:4: web.scrape_timeout_seconds = 301.0: invalid value: must be greater than 0 and at most 300",
            p.display()
        )
    );
    let (msg, _, p, _d) = err("[segment]\nlock_timeout_ms = -5\n");
    assert_eq!(
        msg,
        format!(
            "{}:2: segment.lock_timeout_ms = -5: invalid value: integer `-5`, expected a non-negative integer",
            p.display()
        )
    );
    // A cross-key constraint blames the key the file set.
    let (msg, _, p, _d) = err("[segment]\ninitial_bytes = 536870912\n");
    assert!(
        msg.starts_with(&format!(
            "{}:2: segment.initial_bytes = 536870912: invalid value:",
            p.display()
        )),
        "{msg}"
    );
}

#[test]
fn bad_enum_value() {
    let (msg, _, p, _d) = err("log_level = \"verbose\"\n");
    assert_eq!(
        msg,
        format!(
            "{}:1: log_level = \"verbose\": invalid value: unknown variant `verbose`, expected one of `error`, `warn`, `info`, `debug`, `trace`",
            p.display()
        )
    );
}

#[test]
fn bad_mode() {
    let (msg, e, p, _d) = err("[segment]\ngroup = \"www-data\"\nmode = \"0666\"\n");
    assert_eq!(
        msg,
        format!(
            "{}:3: segment.mode = \"0666\": invalid value: grants write permission to others (o+w): any local user could corrupt the shared metrics; use e.g. \"0660\" and set segment.group",
            p.display()
        )
    );
    assert_eq!(e.key(), Some("segment.mode"));
    let (msg, _, p, _d) = err("[segment]\nmode = \"rw-rw----\"\n");
    assert!(
        msg.starts_with(&format!("{}:2: segment.mode = \"rw-rw----\": invalid value: `rw-rw----` is not an octal file mode", p.display())),
        "{msg}"
    );
}

#[test]
fn syntax_error() {
    let (msg, e, p, _d) = err("[segment]\nworker_slots = 64\npath = /dev/shm/x\n");
    assert_eq!(
        msg,
        format!(
            "{}:3: TOML syntax error at column 8 (key `segment.path`): string values must be quoted, expected literal string",
            p.display()
        )
    );
    assert!(matches!(e, ConfigError::Syntax { .. }));
    let (msg, _, p, _d) = err("[web\nlisten = \"x\"\n");
    assert!(
        msg.starts_with(&format!("{}:1: TOML syntax error", p.display())),
        "{msg}"
    );
}

#[test]
fn explicit_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.toml");
    let e = load_from(&p, true, &no_env).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "config file {} not found (named explicitly by --config or OTRS_EXPORTER_CONFIG): No such file or directory (os error 2)",
            p.display()
        )
    );
}

#[test]
fn unreadable_directory() {
    let dir = tempfile::tempdir().unwrap();
    // A directory is unreadable as a file even for root; also when not named explicitly.
    for explicit in [true, false] {
        let e = load_from(dir.path(), explicit, &no_env).unwrap_err();
        assert!(matches!(e, ConfigError::Unreadable { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read config file {}: Is a directory (os error 21)",
                dir.path().display()
            )
        );
    }
}

#[test]
fn unreadable_permission_denied() {
    use std::os::unix::fs::PermissionsExt;
    // root reads files regardless of their mode, so chmod 000 proves nothing there (CI runs
    // as root); `unreadable_directory` covers the unreadable case in that setting.
    if nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running as root, chmod 000 does not prevent reading");
        return;
    }
    let (_d, p) = file("log_level = \"info\"\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let e = load_from(&p, false, &no_env).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "cannot read config file {}: Permission denied (os error 13)",
            p.display()
        )
    );
}

#[test]
fn env_override_wins() {
    let (_d, p) = file("[segment]\npath = \"/from/file\"\nworker_slots = 32\n");
    let env = env_of(&[
        ("OTRS_EXPORTER_SEGMENT_PATH", "/from/env"),
        ("OTRS_EXPORTER_OTRS_HOME", "/opt/otobo"),
        ("OTRS_EXPORTER_SEGMENT_GROUP", "www-data"),
    ]);
    let l = load_from(&p, true, &env).unwrap();
    assert_eq!(l.config.segment.path, Path::new("/from/env"));
    assert_eq!(l.config.otrs_home, Path::new("/opt/otobo"));
    assert_eq!(l.config.segment.group, "www-data");
    assert_eq!(l.config.segment.worker_slots, 32);
    assert_eq!(
        l.sources["segment.path"],
        Source::Env("OTRS_EXPORTER_SEGMENT_PATH".into())
    );
    assert_eq!(
        l.sources["otrs_home"].to_string(),
        "env OTRS_EXPORTER_OTRS_HOME"
    );
    assert_eq!(
        l.sources["segment.worker_slots"],
        Source::File {
            path: p.clone(),
            line: 3
        }
    );
}

#[test]
fn env_override_without_file() {
    let env = env_of(&[("OTRS_EXPORTER_SEGMENT_WORKER_SLOTS", "2048")]);
    let l = load_from(Path::new("/nonexistent/c.toml"), false, &env).unwrap();
    assert_eq!(l.config.segment.worker_slots, 2048);
}

#[test]
fn env_errors_name_the_variable() {
    let bad = |var: &str, val: &str| {
        load_from(
            Path::new("/nonexistent/c.toml"),
            false,
            &env_of(&[(var, val)]),
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        bad("OTRS_EXPORTER_SEGMENT_WORKER_SLOTS", "many"),
        "env OTRS_EXPORTER_SEGMENT_WORKER_SLOTS: segment.worker_slots: wrong type: expected an integer, found \"many\""
    );
    assert_eq!(
        bad("OTRS_EXPORTER_SEGMENT_WORKER_SLOTS", "8"),
        "env OTRS_EXPORTER_SEGMENT_WORKER_SLOTS: segment.worker_slots = 8: invalid value: must be between 16 and 65536"
    );
    assert!(bad("OTRS_EXPORTER_SEGMENT_MODE", "0606")
        .starts_with("env OTRS_EXPORTER_SEGMENT_MODE: segment.mode = \"0606\": invalid value: grants write permission to others (o+w)"));
}

#[test]
fn env_override_beats_invalid_file_value_only_if_file_parses() {
    // The file is checked on its own first: a malformed file is reported even when env
    // would override the key, so the file never silently rots.
    let (_d, p) = file("[segment]\nworker_slots = \"many\"\n");
    let env = env_of(&[("OTRS_EXPORTER_SEGMENT_WORKER_SLOTS", "64")]);
    assert!(load_from(&p, true, &env).is_err());
    // A range problem in the file is fine when env replaces the value.
    let (_d, p) = file("[segment]\nworker_slots = 8\n");
    let l = load_from(&p, true, &env).unwrap();
    assert_eq!(l.config.segment.worker_slots, 64);
}

#[test]
fn describe_shows_values_and_sources() {
    let (_d, p) = file("log_level = \"debug\"\n\n[segment]\ngroup = \"www-data\"\n");
    let env = env_of(&[("OTRS_EXPORTER_WEB_LISTEN", "127.0.0.1:9000")]);
    let l = load_from(&p, true, &env).unwrap();
    let d = l.describe();
    print!("{d}");
    let lines: Vec<&str> = d.lines().collect();
    assert_eq!(lines[0], format!("# config file: {}", p.display()));
    assert_eq!(lines.len(), 60);
    let body = &lines[1..];
    // Sorted by key.
    let keys: Vec<&str> = body.iter().map(|l| l.split(' ').next().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // Comments aligned.
    let col = body[0].find("    # ").unwrap();
    assert!(body.iter().all(|l| l.find("    # ") == Some(col)), "{d}");
    let line = |key: &str| {
        body.iter()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap()
    };
    assert_eq!(
        line("log_level"),
        format!("log_level = \"debug\" # {}:1", p.display())
    );
    assert_eq!(
        line("segment.group"),
        format!("segment.group = \"www-data\" # {}:4", p.display())
    );
    assert_eq!(
        line("web.listen"),
        "web.listen = \"127.0.0.1:9000\" # env OTRS_EXPORTER_WEB_LISTEN"
    );
    assert_eq!(
        line("segment.max_bytes"),
        "segment.max_bytes = 268435456 # default"
    );
    assert_eq!(line("segment.mode"), "segment.mode = \"0660\" # default");
    assert_eq!(
        line("web.scrape_timeout_seconds"),
        "web.scrape_timeout_seconds = 9.0 # default"
    );
    assert_eq!(
        line("web.worker_label"),
        "web.worker_label = true # default"
    );
}

#[test]
fn describe_without_file() {
    let l = load_from(Path::new("/nonexistent/c.toml"), false, &no_env).unwrap();
    assert!(l.describe().starts_with("# config file: none found"));
}

#[test]
fn example_file_equals_defaults() {
    let p = example_path();
    let l = load_from(&p, true, &no_env).unwrap();
    assert_eq!(l.config, Config::default());
}

#[test]
fn example_file_documents_every_key() {
    let p = example_path();
    let l = load_from(&p, true, &no_env).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (key, source) in &l.sources {
        let Source::File { line, .. } = source else {
            panic!("key {key} is missing from config.example.toml");
        };
        // The line before each key is its comment.
        let prev = lines[line - 2].trim_start();
        assert!(
            prev.starts_with('#'),
            "key {key} (line {line}) has no comment above it"
        );
    }
    assert_eq!(l.sources.len(), 59);
}

#[test]
fn paths_from_config() {
    let mut c = Config::default();
    assert_eq!(
        c.metrics_path(),
        "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics"
    );
    c.web.base_path = "/znuny/nph-genericinterface.pl/Webservice/".into();
    assert_eq!(
        c.admin_path(),
        "/znuny/nph-genericinterface.pl/Webservice/Prometheus/admin"
    );
}

#[test]
fn real_env_load_uses_explicit_path() {
    // `load` with an explicit missing path must fail without touching the default path.
    let e = config::load(Some(Path::new("/nonexistent/otrs-exporter/c.toml"))).unwrap_err();
    assert!(matches!(e, ConfigError::NotFound { .. }));
}
