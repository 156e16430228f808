//! The cache collector against a FileStorable-like tree (entries and bytes per type, the type
//! cap, the shared walk result, the daemon heartbeat) and the real Redis on 127.0.0.1:6379
//! (a database of its own, emptied before and after).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use otrs_exporter::collector::cache::{file_storable_path, CacheCollector};
use otrs_exporter::collector::segment::SegmentSource;
use otrs_exporter::collector::{Collector, Context};
use otrs_exporter::config::Config;
use otrs_exporter::service::segment_options;
use otrs_exporter::snapshot::{Family, Value};

/// The Redis database this test owns.
const DB: u32 = 13;

fn ctx() -> Context {
    Context::new(Instant::now() + Duration::from_secs(5))
}

fn get(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let f = fams.iter().find(|f| f.name == name)?;
    let s = f.series.iter().find(|s| {
        labels
            .iter()
            .all(|(k, v)| s.labels.iter().any(|(n, x)| &**n == *k && &**x == *v))
    })?;
    match s.value {
        Value::Scalar(v) => Some(v),
        _ => None,
    }
}

fn collector(dir: &Path, edit: impl FnOnce(&mut Config)) -> CacheCollector {
    let mut cfg = Config::default();
    cfg.segment.path = dir.join("seg");
    cfg.cache.dir = dir.join("cache").to_string_lossy().into();
    edit(&mut cfg);
    CacheCollector::new(SegmentSource::new(segment_options(&cfg).unwrap()), &cfg)
}

fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379", "-n", &DB.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn file_storable_tree_and_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let mut want = Vec::new();
    for (t, n, size) in [
        ("Ticket", 120, 100),
        ("User", 30, 7),
        ("Queue", 5, 1),
        ("Link", 2, 3),
    ] {
        for i in 0..n {
            let p = file_storable_path(&cache, t, &format!("key-{i}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![b'x'; size]).unwrap();
        }
        want.push((t, n as f64, (n * size) as f64));
    }
    // NodeID 1's heartbeat, written 5 s ago.
    let hb = file_storable_path(&cache, "DaemonRunning", "1");
    assert!(hb.ends_with("DaemonRunning/c/4/c4ca4238a0b923820dcc509a6f75849b"));
    std::fs::create_dir_all(hb.parent().unwrap()).unwrap();
    std::fs::write(&hb, b"pst0").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&hb)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(5))
        .unwrap();

    let c = collector(dir.path(), |c| c.cache.type_cap = 3);
    let fams = c.collect(&ctx()).unwrap();
    // DaemonRunning (1 entry) and Link (2) are beyond the cap of 3 types by entries.
    for (t, n, bytes) in &want[..3] {
        assert_eq!(
            get(&fams, "otrs_cache_entries", &[("type", t)]),
            Some(*n),
            "{t}"
        );
        assert_eq!(
            get(&fams, "otrs_cache_bytes", &[("type", t)]),
            Some(*bytes),
            "{t}"
        );
    }
    assert_eq!(
        get(&fams, "otrs_cache_entries", &[("type", "__overflow__")]),
        Some(3.0)
    );
    assert_eq!(
        get(&fams, "otrs_cache_bytes", &[("type", "__overflow__")]),
        Some(6.0 + 4.0)
    );
    let age = get(&fams, "otrs_daemon_heartbeat_age_seconds", &[]).unwrap();
    assert!((4.0..10.0).contains(&age), "{age}");

    // Another process within the TTL reuses the walk: a new file is not seen yet.
    let p = file_storable_path(&cache, "Ticket", "new");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, b"y").unwrap();
    let other = collector(dir.path(), |c| c.cache.type_cap = 3);
    let fams = other.collect(&ctx()).unwrap();
    assert_eq!(
        get(&fams, "otrs_cache_entries", &[("type", "Ticket")]),
        Some(120.0)
    );
    // With a TTL of 1 s it is walked again.
    std::thread::sleep(Duration::from_millis(1100));
    let fresh = collector(dir.path(), |c| {
        c.cache.type_cap = 3;
        c.cache.ttl_seconds = 1;
    });
    let fams = fresh.collect(&ctx()).unwrap();
    assert_eq!(
        get(&fams, "otrs_cache_entries", &[("type", "Ticket")]),
        Some(121.0)
    );

    // No cache directory, no heartbeat: no series, no failure.
    let empty = tempfile::tempdir().unwrap();
    let fams = collector(empty.path(), |_| {}).collect(&ctx()).unwrap();
    assert_eq!(
        get(&fams, "otrs_cache_entries", &[("type", "Ticket")]),
        None
    );
    assert_eq!(get(&fams, "otrs_daemon_heartbeat_age_seconds", &[]), None);
}

#[test]
fn redis_keys_and_memory_from_info() {
    redis_cli(&["FLUSHDB"]);
    for i in 0..7 {
        redis_cli(&["SET", &format!("otrs-exporter-test:{i}"), "v"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let c = collector(dir.path(), |c| {
        c.cache.redis_url = format!("redis://127.0.0.1:6379/{DB}");
    });
    let fams = c.collect(&ctx()).unwrap();
    redis_cli(&["FLUSHDB"]);
    assert_eq!(get(&fams, "otrs_cache_redis_up", &[]), Some(1.0));
    assert_eq!(
        get(&fams, "otrs_cache_redis_keys", &[("db", &DB.to_string())]),
        Some(7.0)
    );
    let info = redis_cli(&["INFO", "memory"]);
    let used: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let got = get(&fams, "otrs_cache_redis_used_memory_bytes", &[]).unwrap();
    assert!((got - used).abs() < used * 0.2, "{got} vs {used}");

    // Empty database: 0 keys (INFO leaves the db line out).
    let fams = c.collect(&ctx()).unwrap();
    assert_eq!(
        get(&fams, "otrs_cache_redis_keys", &[("db", &DB.to_string())]),
        Some(0.0)
    );

    // Nobody listening: up 0, the collector still succeeds.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = collector(dir.path(), |c| {
        c.cache.redis_url = format!("redis://127.0.0.1:{port}/{DB}");
    });
    let fams = down.collect(&ctx()).unwrap();
    assert_eq!(get(&fams, "otrs_cache_redis_up", &[]), Some(0.0));
}
