//! Reading processes from `/proc` for the web-server and daemon process collectors: one scan
//! of every process' `stat` (parent, name, CPU, memory, threads, start), and per reported
//! process its open file descriptors and limit. Families follow the standard process metric
//! names (`process_resident_memory_bytes`, `process_cpu_seconds_total`, …) under a prefix.
//!
//! A process that exits mid-scan is skipped; one whose `fd` directory is not readable (another
//! user, without root) is reported without `open_fds`. Both are counted in
//! `otrs_exporter_processes_unreadable{collector,reason}`, never an error.

use std::collections::HashMap;

use procfs::process::{Process, Stat};

use crate::snapshot::{Family, MetricKind};

/// Every process on the system: stat by PID, children by parent PID.
pub struct ProcTable {
    /// `/proc/<pid>/stat` of each process that could be read.
    pub stats: HashMap<i32, Stat>,
    /// Child PIDs of each PID, ascending.
    pub children: HashMap<i32, Vec<i32>>,
    boot: f64,
    tps: f64,
    page: f64,
}

impl ProcTable {
    /// Scans every process in `/proc`. Zombies are left out.
    ///
    /// Each process costs one `open` + `read` + `close` of `/proc/<pid>/stat` (parsed by
    /// `procfs`), half the system calls of going through `procfs::process::Process`, which
    /// first opens the process directory: the scan is most of a scrape's `/proc` time.
    pub fn scan() -> std::io::Result<ProcTable> {
        ProcTable::scan_with(None)
    }

    /// [`ProcTable::scan`] that skips the processes `memo` marked uninteresting, unless the
    /// memo is older than its rescan interval, then marks them again: a process is
    /// interesting if [`may_be_reported`] or its parent is interesting (read again every
    /// time); an uninteresting one is skipped as long as its `/proc` entry has the same inode
    /// number. A process that exits loses its `/proc` dentries, so a reused PID comes back
    /// with another inode number and is read.
    fn scan_with(mut memo: Option<&mut ScanMemo>) -> std::io::Result<ProcTable> {
        use procfs::FromRead;
        use std::os::unix::fs::DirEntryExt;
        let now = std::time::Instant::now();
        let full = match memo.as_deref_mut() {
            Some(m) if m.full_at.is_some_and(|t| now.duration_since(t) < m.rescan) => false,
            Some(m) => {
                m.full_at = Some(now);
                true
            }
            None => true,
        };
        if full {
            forget_limits();
        }
        let mut stats = HashMap::new();
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        let mut inodes: Vec<(i32, u64)> = Vec::new();
        let mut skipped: Vec<(i32, u64)> = Vec::new();
        let mut path = String::with_capacity(32);
        let mut buf = vec![0u8; 4096];
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let ino = entry.ino();
            if let Some(m) = memo.as_deref() {
                if !full && m.boring.get(&pid) == Some(&ino) {
                    skipped.push((pid, ino));
                    continue;
                }
            }
            path.clear();
            path.push_str("/proc/");
            path.push_str(itoa::Buffer::new().format(pid));
            path.push_str("/stat");
            // Gone since the listing, or not readable: skipped like an exited process.
            let Ok(len) = read_proc_file(&path, &mut buf) else {
                continue;
            };
            let Ok(st) = Stat::from_read(&buf[..len]) else {
                continue;
            };
            if st.state == 'Z' || st.state == 'X' {
                continue;
            }
            children.entry(st.ppid).or_default().push(st.pid);
            inodes.push((st.pid, ino));
            stats.insert(st.pid, st);
        }
        for v in children.values_mut() {
            v.sort_unstable();
        }
        if let Some(m) = memo {
            // Interesting: candidates and everything below them. The rest (read now or
            // skipped again) is skipped next time.
            let mut keep: std::collections::HashSet<i32> = Default::default();
            let mut todo: Vec<i32> = stats
                .values()
                .filter(|s| may_be_reported(s))
                .map(|s| s.pid)
                .collect();
            while let Some(pid) = todo.pop() {
                if keep.insert(pid) {
                    todo.extend(children.get(&pid).into_iter().flatten().copied());
                }
            }
            m.boring.clear();
            m.boring.extend(skipped);
            m.boring
                .extend(inodes.into_iter().filter(|(p, _)| !keep.contains(p)));
        }
        Ok(ProcTable {
            stats,
            children,
            boot: boot_time(),
            tps: sysconf(nix::unistd::SysconfVar::CLK_TCK, 100.0),
            page: sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096.0),
        })
    }

    /// A scan shared by the collectors of one scrape (`scrape` = [`Context::scrape`]), so the
    /// web-server and daemon collectors running side by side read `/proc` once; the next
    /// scrape scans again. Unless `every` (a collector that looks at every process' command
    /// line, as `processes.server_cmdline` does) or `rescan` is zero, the scan skips what
    /// [`ProcTable::scan_with`] found uninteresting, with a full scan at least every `rescan`.
    ///
    /// [`Context::scrape`]: crate::collector::Context::scrape
    pub fn scan_shared(
        scrape: u64,
        every: bool,
        rescan: std::time::Duration,
    ) -> std::io::Result<std::sync::Arc<ProcTable>> {
        use std::sync::{Arc, Mutex};
        static LAST: Mutex<Option<(u64, bool, Arc<ProcTable>)>> = Mutex::new(None);
        static MEMO: Mutex<Option<ScanMemo>> = Mutex::new(None);
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, all, table)) = last.as_ref() {
            if *id == scrape && (*all || !every) {
                return Ok(table.clone());
            }
        }
        let all = every || rescan.is_zero();
        let mut memo = MEMO.lock().unwrap_or_else(|e| e.into_inner());
        let memo = if all {
            None
        } else {
            let m = memo.get_or_insert_with(ScanMemo::default);
            m.rescan = rescan;
            Some(m)
        };
        let table = Arc::new(ProcTable::scan_with(memo)?);
        *last = Some((scrape, all, table.clone()));
        Ok(table)
    }

    /// The children of `pid` (empty if none).
    pub fn children_of(&self, pid: i32) -> &[i32] {
        self.children.get(&pid).map_or(&[], Vec::as_slice)
    }

    /// The command line of `pid`, arguments joined by single spaces (trailing empty
    /// arguments of processes that rewrote their title dropped).
    pub fn cmdline(&self, pid: i32) -> Option<String> {
        let args = Process::new(pid).ok()?.cmdline().ok()?;
        Some(args.join(" ").trim().to_owned())
    }

    /// The arguments of `pid`.
    pub fn args(&self, pid: i32) -> Option<Vec<String>> {
        Process::new(pid).ok()?.cmdline().ok()
    }

    /// Unix start time of `pid` in seconds.
    pub fn start_time(&self, st: &Stat) -> f64 {
        self.boot + st.starttime as f64 / self.tps
    }
}

/// The boot time in Unix seconds (`btime` in `/proc/stat`), read once per process.
fn boot_time() -> f64 {
    static BOOT: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            })
            .unwrap_or(0.0)
    })
}

/// A `sysconf` value, or `default` if the system does not say. (Not `procfs`' helpers: they
/// parse the auxiliary vector by hand, which valgrind's tools cannot follow.)
fn sysconf(var: nix::unistd::SysconfVar, default: f64) -> f64 {
    match nix::unistd::sysconf(var) {
        Ok(Some(v)) if v > 0 => v as f64,
        _ => default,
    }
}

/// What a scan of a long-running process remembers for the next one.
#[derive(Default)]
struct ScanMemo {
    /// Uninteresting PIDs and the inode numbers of their `/proc` entries.
    boring: rustc_hash::FxHashMap<i32, u64>,
    /// When the last full scan ran.
    full_at: Option<std::time::Instant>,
    /// How often a full scan runs.
    rescan: std::time::Duration,
}

/// Whether a process may be reported by the web-server or daemon collector, or lead to
/// processes that are: a web server by name, or a Perl process / `*.Daemon.pl` script.
fn may_be_reported(st: &Stat) -> bool {
    super::web_processes::SERVER_NAMES.contains(&st.comm.as_str())
        || super::daemon_processes::may_be_daemon_comm(&st.comm)
}

/// One process' figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSample {
    /// PID.
    pub pid: i32,
    /// Resident set size in bytes.
    pub resident_bytes: f64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: f64,
    /// CPU time in user mode, seconds.
    pub user_seconds: f64,
    /// CPU time in kernel mode, seconds.
    pub system_seconds: f64,
    /// Threads.
    pub threads: f64,
    /// Unix start time, seconds.
    pub start_time: f64,
    /// Open file descriptors, if the `fd` directory was readable.
    pub open_fds: Option<f64>,
    /// Soft limit of open files (`+Inf` when unlimited), if readable.
    pub max_fds: Option<f64>,
}

/// Outcome of sampling one process.
pub enum Sampled {
    /// Everything was read.
    Full(ProcSample),
    /// Read, but without the open file descriptors (permission denied).
    Partial(ProcSample),
    /// The process exited before it could be read.
    Gone,
}

/// Open-files limits read since the last full scan, by (PID, start time). The kernel
/// formats `limits` line by line on every read (the costliest file a scan reads) and a
/// process' limit rarely changes: a full scan forgets them, so a change shows within
/// `processes.rescan_seconds` (at once where every scan is full).
static MAX_FDS: std::sync::Mutex<Option<rustc_hash::FxHashMap<(i32, u64), f64>>> =
    std::sync::Mutex::new(None);

fn forget_limits() {
    *MAX_FDS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// [`max_open_files`] of the process `st`, remembered until the next full scan.
fn max_open_files_of(st: &Stat) -> std::io::Result<f64> {
    let key = (st.pid, st.starttime);
    if let Some(v) = MAX_FDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(*v);
    }
    let v = max_open_files(st.pid)?;
    MAX_FDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(key, v);
    Ok(v)
}

/// Reads a small `/proc` file into `buf` (grown as needed) and returns its length. These
/// files are made by the kernel in one piece and handed out whole by one `read` when the
/// buffer holds them, so a read that ends in a newline is the whole file: that saves the
/// `read` that would return 0 (and `fs::read_to_string` would add a `statx` as well).
fn read_proc_file(path: &str, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => return Ok(len),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if len > 0 && buf[len - 1] == b'\n' {
            return Ok(len);
        }
    }
}

/// Soft limit of open files from `/proc/<pid>/limits` (`+Inf` when unlimited).
fn max_open_files(pid: i32) -> std::io::Result<f64> {
    let mut buf = vec![0u8; 4096];
    let len = read_proc_file(&format!("/proc/{pid}/limits"), &mut buf)?;
    let text = String::from_utf8_lossy(&buf[..len]);
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or_else(|| std::io::Error::other("no Max open files line"))?;
    let soft = line["Max open files".len()..]
        .split_whitespace()
        .next()
        .unwrap_or("");
    Ok(if soft == "unlimited" {
        f64::INFINITY
    } else {
        soft.parse().map_err(std::io::Error::other)?
    })
}

/// Open file descriptors of `pid`. Linux 6.2 and later report the count as the size of
/// `/proc/<pid>/fd` (one `statx`); older kernels report 0 there, and the directory is listed.
/// Only where this process may list the directory (as before: the size is visible to anyone
/// who may look up `/proc/<pid>`, but a process of another user keeps its fds to itself).
fn open_files(pid: i32) -> std::io::Result<f64> {
    use nix::unistd::{faccessat, AccessFlags};
    let dir = format!("/proc/{pid}/fd");
    faccessat(
        nix::fcntl::AT_FDCWD,
        dir.as_str(),
        AccessFlags::R_OK | AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    )
    .map_err(std::io::Error::from)?;
    let size = std::fs::metadata(&dir)?.len();
    if size > 0 {
        return Ok(size as f64);
    }
    Ok(std::fs::read_dir(&dir)?.count() as f64)
}

/// Reads `pid`'s figures: CPU, memory, threads and start from the scan's `stat` (read a few
/// milliseconds earlier), file descriptors and their limit now. A process whose `limits`
/// file is gone exited meanwhile.
pub fn sample(table: &ProcTable, pid: i32) -> Sampled {
    let Some(st) = table.stats.get(&pid) else {
        return Sampled::Gone;
    };
    let max_fds = match max_open_files_of(st) {
        Ok(v) => Some(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Sampled::Gone,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Sampled::Gone,
        Err(_) => None,
    };
    let open_fds = open_files(pid).map_err(|e| e.kind());
    let open_fds = match open_fds {
        Ok(n) => Some(n),
        Err(std::io::ErrorKind::NotFound) => return Sampled::Gone,
        Err(_) => None,
    };
    let s = ProcSample {
        pid,
        resident_bytes: st.rss as f64 * table.page,
        virtual_bytes: st.vsize as f64,
        user_seconds: st.utime as f64 / table.tps,
        system_seconds: st.stime as f64 / table.tps,
        threads: st.num_threads as f64,
        start_time: table.start_time(st),
        open_fds,
        max_fds,
    };
    if open_fds.is_none() {
        Sampled::Partial(s)
    } else {
        Sampled::Full(s)
    }
}

/// The per-process families under one prefix (`otrs_web_process`, `otrs_daemon_process`).
pub struct ProcFamilies {
    resident: Family,
    virt: Family,
    cpu: Family,
    open_fds: Family,
    max_fds: Family,
    start: Family,
    threads: Family,
    /// Processes skipped because they vanished mid-scan.
    pub gone: u64,
    /// Processes reported without open_fds (permission denied).
    pub denied: u64,
}

impl ProcFamilies {
    /// Empty families named `<prefix>_…`; `what` completes the help texts ("web-server
    /// process", "OTRS daemon process").
    pub fn new(prefix: &str, what: &str) -> ProcFamilies {
        let g = |suffix: &str, help: String| {
            Family::new(format!("{prefix}_{suffix}"), help, MetricKind::Gauge)
        };
        ProcFamilies {
            resident: g(
                "resident_memory_bytes",
                format!("Resident memory size of each {what}, in bytes."),
            )
            .with_unit("bytes"),
            virt: g(
                "virtual_memory_bytes",
                format!("Virtual memory size of each {what}, in bytes."),
            )
            .with_unit("bytes"),
            cpu: Family::new(
                format!("{prefix}_cpu_seconds"),
                format!("CPU time of each {what} by mode (user, system), in seconds."),
                MetricKind::Counter,
            )
            .with_unit("seconds"),
            open_fds: g(
                "open_fds",
                format!("Open file descriptors of each {what} (left out where /proc/<pid>/fd is not readable)."),
            ),
            max_fds: g(
                "max_fds",
                format!("Soft limit of open file descriptors of each {what}."),
            ),
            start: g(
                "start_time_seconds",
                format!("Start time of each {what}, in seconds since the Unix epoch."),
            )
            .with_unit("seconds"),
            threads: g("threads", format!("Threads of each {what}.")),
            gone: 0,
            denied: 0,
        }
    }

    /// Samples `pid` and adds its series with `labels`; returns whether it was reported.
    pub fn add(&mut self, table: &ProcTable, pid: i32, labels: &[(&str, &str)]) -> bool {
        let s = match sample(table, pid) {
            Sampled::Full(s) => s,
            Sampled::Partial(s) => {
                self.denied += 1;
                s
            }
            Sampled::Gone => {
                self.gone += 1;
                return false;
            }
        };
        self.push(&s, labels);
        true
    }

    /// Adds the series of one sample.
    pub fn push(&mut self, s: &ProcSample, labels: &[(&str, &str)]) {
        self.resident.push(labels, s.resident_bytes);
        self.virt.push(labels, s.virtual_bytes);
        let mut with_mode = labels.to_vec();
        with_mode.push(("mode", "user"));
        self.cpu.push(&with_mode, s.user_seconds);
        with_mode.pop();
        with_mode.push(("mode", "system"));
        self.cpu.push(&with_mode, s.system_seconds);
        if let Some(v) = s.open_fds {
            self.open_fds.push(labels, v);
        }
        if let Some(v) = s.max_fds {
            self.max_fds.push(labels, v);
        }
        self.start.push(labels, s.start_time);
        self.threads.push(labels, s.threads);
    }

    /// The families, plus `otrs_exporter_processes_unreadable{collector,reason}`.
    pub fn finish(self, collector: &str) -> Vec<Family> {
        let mut unreadable = Family::new(
            "otrs_exporter_processes_unreadable",
            "Processes a process collector could not fully read in this scrape: gone = exited mid-scan (skipped), denied = /proc/<pid>/fd not readable (open_fds left out).",
            MetricKind::Gauge,
        );
        unreadable.push(
            &[("collector", collector), ("reason", "gone")],
            self.gone as f64,
        );
        unreadable.push(
            &[("collector", collector), ("reason", "denied")],
            self.denied as f64,
        );
        vec![
            self.resident,
            self.virt,
            self.cpu,
            self.open_fds,
            self.max_fds,
            self.start,
            self.threads,
            unreadable,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let t = ProcTable::scan().unwrap();
        let me = std::process::id() as i32;
        assert!(t.stats.contains_key(&me));
        let ppid = t.stats[&me].ppid;
        assert!(t.children_of(ppid).contains(&me));
        let Sampled::Full(s) = sample(&t, me) else {
            panic!("own process is fully readable")
        };
        assert!(s.resident_bytes > 0.0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds.unwrap() >= 3.0);
        // A process whose descriptors stay put: counted from the directory's size or by
        // listing it, the same.
        let mut kid = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = kid.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(50));
        let listed = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as f64;
        let counted = open_files(pid).unwrap();
        kid.kill().unwrap();
        kid.wait().unwrap();
        assert_eq!(counted, listed);
        assert!(counted >= 3.0, "stdin, stdout, stderr at least");
        assert!(s.threads >= 1.0);
        let now = crate::segment::now_unix();
        assert!(s.start_time > now - 3600.0 && s.start_time <= now + 1.0);
        assert!(t.cmdline(me).unwrap().contains("otrs_exporter"));
        let mut f = ProcFamilies::new("x_process", "test process");
        assert!(f.add(&t, me, &[("worker", "1")]));
        assert!(!f.add(&t, i32::MAX - 1, &[("worker", "2")]));
        let fams = f.finish("t");
        assert_eq!(fams[2].series.len(), 2, "user and system");
        assert_eq!(fams[7].series[0].value, crate::snapshot::Value::Scalar(1.0));
    }
}
