//! The `cache` collector (seed: `cache_operations{operation}`). Cache operations happen inside
//! the Perl processes and leave no trace outside them, so the seed's Get/Set/Delete counters
//! cannot be had without patching OTRS. What can be observed from outside is reported
//! instead:
//!
//! - `Cache::FileStorable`: entries and bytes per cache type, from a walk of
//!   `<Home>/var/tmp/CacheFileStorable/<Type>/<x>/<y>/<md5>`. The walk is shared: its result
//!   is kept in the segment's blob cache for `cache.ttl_seconds`, and one process at a time
//!   (a lease) refreshes it, spending at most a third of its scrape deadline per scrape and
//!   continuing where it stopped on the next one (progress is stored in the blob too), so a
//!   cache of millions of files never makes a scrape time out.
//! - The daemon's heartbeat: SchedulerTaskWorker rewrites the `DaemonRunning` entry of its
//!   NodeID every ~10 s (TTL 30 s); with FileStorable its file's age is
//!   `otrs_daemon_heartbeat_age_seconds`.
//! - `Cache::Redis`: keys of the configured database and the server's memory, from `INFO`
//!   over a minimal RESP client (one command; the `redis` crate would add a dependency tree
//!   and a connection manager for that).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::segment::SegmentSource;
use super::{CollectError, Collector, Context};
use crate::config::{Config, RedisUrl};
use crate::segment::now_unix;
use crate::snapshot::{Family, MetricKind};

/// Label value that sums the cache types beyond the cap.
pub const OVERFLOW: &str = "__overflow__";

/// MD5 of `data` as lower-case hex (OTRS names FileStorable entries by the MD5 of the key).
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        h = [
            h[0].wrapping_add(a),
            h[1].wrapping_add(b),
            h[2].wrapping_add(c),
            h[3].wrapping_add(d),
        ];
    }
    h.iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The FileStorable file of cache `type_` and `key` under `dir` (two levels of single hex
/// characters from the MD5 of the key).
pub fn file_storable_path(dir: &Path, type_: &str, key: &str) -> PathBuf {
    let md5 = md5_hex(key.as_bytes());
    dir.join(type_).join(&md5[0..1]).join(&md5[1..2]).join(md5)
}

/// Entries and bytes of one cache type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeUsage {
    /// Files.
    pub entries: u64,
    /// Sum of their sizes.
    pub bytes: u64,
}

/// The shared walk state kept in the blob cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalkState {
    /// The last complete walk: usage by type.
    pub complete: Option<BTreeMap<String, TypeUsage>>,
    /// When the last complete walk finished (Unix seconds).
    pub finished_at: f64,
    /// How long the last complete walk took, summed over its slices (seconds).
    pub walk_seconds: f64,
    /// The walk in progress: usage so far.
    pub partial: BTreeMap<String, TypeUsage>,
    /// The walk in progress: the last (type, first-level directory) done.
    pub after: Option<(String, String)>,
    /// The walk in progress: time spent so far.
    pub partial_seconds: f64,
}

fn sorted_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Counts the files (and their bytes) anywhere below `dir`.
fn count_files(dir: &Path, u: &mut TypeUsage) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            count_files(&e.path(), u);
        } else if t.is_file() {
            u.entries += 1;
            u.bytes += e.metadata().map_or(0, |m| m.len());
        }
    }
}

impl WalkState {
    /// Continues the walk of `dir` until it completes or `deadline` passes; returns whether it
    /// completed. Work is done in units of one first-level directory of one type.
    pub fn advance(&mut self, dir: &Path, deadline: Instant) -> bool {
        let start = Instant::now();
        let done = self.walk(dir, deadline);
        self.partial_seconds += start.elapsed().as_secs_f64();
        if done {
            self.complete = Some(std::mem::take(&mut self.partial));
            self.finished_at = now_unix();
            self.walk_seconds = self.partial_seconds;
            self.partial_seconds = 0.0;
            self.after = None;
        }
        done
    }

    fn walk(&mut self, dir: &Path, deadline: Instant) -> bool {
        // At least one unit per call, so that every slice makes progress.
        let mut did_one = false;
        for t in sorted_dirs(dir) {
            if self.after.as_ref().is_some_and(|(at, _)| t < *at) {
                continue;
            }
            let tdir = dir.join(&t);
            let mut units = sorted_dirs(&tdir);
            // Files directly in the type directory (other SubdirLevels) count as a unit "".
            units.insert(0, String::new());
            for x in units {
                if let Some((at, ax)) = &self.after {
                    if t == *at && x <= *ax {
                        continue;
                    }
                }
                if did_one && Instant::now() >= deadline {
                    return false;
                }
                did_one = true;
                let u = self.partial.entry(t.clone()).or_default();
                if x.is_empty() {
                    if let Ok(rd) = std::fs::read_dir(&tdir) {
                        for e in rd.flatten() {
                            if e.file_type().is_ok_and(|ft| ft.is_file()) {
                                u.entries += 1;
                                u.bytes += e.metadata().map_or(0, |m| m.len());
                            }
                        }
                    }
                } else {
                    count_files(&tdir.join(&x), u);
                }
                self.after = Some((t.clone(), x));
            }
        }
        true
    }
}

/// Reads `INFO` from Redis: (`used_memory` bytes, keys of database `db`).
pub fn redis_info(url: &RedisUrl, timeout: Duration) -> std::io::Result<(f64, f64)> {
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let timeout = timeout.max(Duration::from_millis(10));
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let cmd = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    let mut req = String::new();
    if let Some(pw) = &url.password {
        req.push_str(&cmd(&["AUTH", pw]));
    }
    req.push_str(&cmd(&["INFO"]));
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if url.password.is_some() {
        r.read_line(&mut line)?;
        if !line.starts_with('+') {
            return Err(std::io::Error::other(format!("AUTH: {}", line.trim())));
        }
        line.clear();
    }
    r.read_line(&mut line)?;
    let len: usize = match line.strip_prefix('$') {
        Some(n) => n
            .trim()
            .parse()
            .map_err(|_| std::io::Error::other("bad INFO reply"))?,
        None => return Err(std::io::Error::other(format!("INFO: {}", line.trim()))),
    };
    let mut body = vec![0u8; len + 2];
    std::io::Read::read_exact(&mut r, &mut body)?;
    let text = String::from_utf8_lossy(&body[..len]);
    let mut memory = None;
    let mut keys = 0.0;
    let db = format!("db{}:", url.db);
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("used_memory:") {
            memory = v.trim().parse::<f64>().ok();
        } else if let Some(v) = l.strip_prefix(&db) {
            keys = v
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0.0);
        }
    }
    let memory = memory.ok_or_else(|| std::io::Error::other("INFO without used_memory"))?;
    Ok((memory, keys))
}

/// Reports what can be seen of the OTRS cache.
pub struct CacheCollector {
    source: Arc<SegmentSource>,
    dir: PathBuf,
    type_cap: usize,
    ttl: Duration,
    heartbeat: PathBuf,
    redis: Option<RedisUrl>,
}

impl CacheCollector {
    /// A collector with the `[cache]` and `[daemon]` settings.
    pub fn new(source: Arc<SegmentSource>, cfg: &Config) -> CacheCollector {
        let dir = cfg.cache_dir();
        CacheCollector {
            source,
            heartbeat: file_storable_path(&dir, "DaemonRunning", &cfg.daemon.node_id.to_string()),
            dir,
            type_cap: cfg.cache.type_cap as usize,
            ttl: Duration::from_secs(cfg.cache.ttl_seconds),
            redis: RedisUrl::parse(&cfg.cache.redis_url).ok(),
        }
    }

    /// The walk result, refreshed if stale and this process gets the lease.
    fn usage(&self, ctx: &Context) -> Result<WalkState, CollectError> {
        if !self.dir.is_dir() {
            // No FileStorable cache here: nothing to walk, nothing stored in the segment.
            return Ok(WalkState::default());
        }
        let seg = self.source.get().map_err(CollectError::new)?;
        let key = format!("cache_walk:{}", self.dir.display());
        let slot = seg.cache_slot(&key).map_err(CollectError::new)?;
        let cached = slot.get().map_err(CollectError::new)?;
        let mut state: WalkState = cached
            .as_ref()
            .and_then(|c| serde_json::from_slice(&c.bytes).ok())
            .unwrap_or_default();
        let fresh = state.complete.is_some()
            && now_unix() - state.finished_at < self.ttl.as_secs_f64()
            && state.after.is_none();
        if fresh {
            return Ok(state);
        }
        let budget = ctx.deadline.saturating_duration_since(Instant::now()) / 3;
        if !slot.try_lease(budget + Duration::from_secs(1)) {
            return Ok(state); // another process is walking; use the last result
        }
        state.advance(&self.dir, Instant::now() + budget);
        let result = serde_json::to_vec(&state)
            .map_err(CollectError::new)
            .and_then(|b| slot.put(&b).map_err(CollectError::new));
        slot.release();
        result.map(|_| state)
    }
}

impl Collector for CacheCollector {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let mut out = Vec::new();
        let state = self.usage(ctx)?;
        if let Some(complete) = &state.complete {
            let mut entries = Family::new(
                "otrs_cache_entries",
                "Files in the Cache::FileStorable directory by cache type (walked at most every cache.ttl_seconds, shared by all exporter processes).",
                MetricKind::Gauge,
            );
            let mut bytes = Family::new(
                "otrs_cache_bytes",
                "Bytes of the files in the Cache::FileStorable directory by cache type.",
                MetricKind::Gauge,
            )
            .with_unit("bytes");
            let mut types: Vec<(&String, &TypeUsage)> = complete.iter().collect();
            types.sort_by(|a, b| b.1.entries.cmp(&a.1.entries).then(a.0.cmp(b.0)));
            let mut over = TypeUsage::default();
            for (i, (t, u)) in types.iter().enumerate() {
                if i < self.type_cap {
                    entries.push(&[("type", t)], u.entries as f64);
                    bytes.push(&[("type", t)], u.bytes as f64);
                } else {
                    over.entries += u.entries;
                    over.bytes += u.bytes;
                }
            }
            if types.len() > self.type_cap {
                entries.push(&[("type", OVERFLOW)], over.entries as f64);
                bytes.push(&[("type", OVERFLOW)], over.bytes as f64);
            }
            let mut age = Family::new(
                "otrs_cache_walk_age_seconds",
                "Seconds since the cache directory walk behind otrs_cache_entries finished.",
                MetricKind::Gauge,
            )
            .with_unit("seconds");
            age.push(&[], (now_unix() - state.finished_at).max(0.0));
            let mut took = Family::new(
                "otrs_cache_walk_duration_seconds",
                "Time the last complete cache directory walk took (summed over the scrapes it was spread across).",
                MetricKind::Gauge,
            )
            .with_unit("seconds");
            took.push(&[], state.walk_seconds);
            out.extend([entries, bytes, age, took]);
        }
        if let Ok(meta) = std::fs::metadata(&self.heartbeat) {
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let age = SystemTime::now()
                .duration_since(mtime)
                .unwrap_or(Duration::ZERO);
            let mut hb = Family::new(
                "otrs_daemon_heartbeat_age_seconds",
                "Age of the daemon's DaemonRunning cache entry (FileStorable file mtime); SchedulerTaskWorker renews it every ~10 s, older than 30 s means the daemon is not working. Absent when the file does not exist.",
                MetricKind::Gauge,
            )
            .with_unit("seconds");
            hb.push(&[], age.as_secs_f64());
            out.push(hb);
        }
        if let Some(url) = &self.redis {
            let db = url.db.to_string();
            let timeout = ctx.deadline.saturating_duration_since(Instant::now()) / 2;
            let mut up = Family::new(
                "otrs_cache_redis_up",
                "1 if the Redis of Cache::Redis answered INFO in this scrape.",
                MetricKind::Gauge,
            );
            match redis_info(url, timeout) {
                Ok((memory, keys)) => {
                    up.push(&[], 1.0);
                    let mut k = Family::new(
                        "otrs_cache_redis_keys",
                        "Keys in the Redis database of Cache::Redis (INFO keyspace).",
                        MetricKind::Gauge,
                    );
                    k.push(&[("db", &db)], keys);
                    let mut m = Family::new(
                        "otrs_cache_redis_used_memory_bytes",
                        "Memory used by the Redis server of Cache::Redis (INFO used_memory; all databases).",
                        MetricKind::Gauge,
                    )
                    .with_unit("bytes");
                    m.push(&[], memory);
                    out.extend([up, k, m]);
                }
                Err(e) => {
                    log::warn!("redis {}:{}: {e}", url.host, url.port);
                    up.push(&[], 0.0);
                    out.push(up);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"1"), "c4ca4238a0b923820dcc509a6f75849b");
        assert_eq!(
            md5_hex(b"The quick brown fox jumps over the lazy dog"),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
        assert_eq!(md5_hex(&[b'a'; 200]), "887f30b43b2867f4a9accceee7d16e6c");
        let p = file_storable_path(Path::new("/c"), "DaemonRunning", "1");
        assert_eq!(
            p,
            Path::new("/c/DaemonRunning/c/4/c4ca4238a0b923820dcc509a6f75849b")
        );
    }

    #[test]
    fn walk_in_slices_equals_walk_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = BTreeMap::new();
        for (t, n) in [("Ticket", 40), ("User", 7), ("Queue", 1)] {
            let mut u = TypeUsage::default();
            for i in 0..n {
                let p = file_storable_path(dir.path(), t, &format!("k{i}"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, vec![0u8; i + 1]).unwrap();
                u.entries += 1;
                u.bytes += i as u64 + 1;
            }
            want.insert(t.to_string(), u);
        }
        let mut once = WalkState::default();
        assert!(once.advance(dir.path(), Instant::now() + Duration::from_secs(60)));
        assert_eq!(once.complete.as_ref(), Some(&want));
        let mut sliced = WalkState::default();
        let mut rounds = 0;
        // A deadline already passed still does one unit per call: slices always progress.
        while !sliced.advance(dir.path(), Instant::now()) {
            rounds += 1;
            assert!(rounds < 1000);
        }
        assert!(rounds >= 3, "{rounds} slices");
        assert_eq!(sliced.complete.as_ref(), Some(&want));
    }
}
