//! The `daemon_processes` collector (seed: `daemon_process_*{worker,name}`): the OTRS daemon
//! (`bin/otrs.Daemon.pl`, `znuny.Daemon.pl`, `otobo.Daemon.pl`), its module processes and
//! their task workers, from `/proc`, and `otrs_daemon_up`.
//!
//! The main process is the PID in `<otrs_home>/var/run/Daemon-NodeID-<NodeID>.pid` if that
//! process runs a `*.Daemon.pl` script; `otrs_daemon_up` is 1 exactly then. If the PID file is
//! missing, stale or not readable, processes running `*.Daemon.pl … start` whose parent does
//! not are reported instead (so the processes stay visible) — but `otrs_daemon_up` stays 0
//! unless the PID file could not be read for lack of permission and the search found the
//! daemon.
//!
//! Naming (the daemon sets no process titles; every process shows the start command line):
//! - `role="main"`, `name="MainDaemon"`: the main process.
//! - `role="module"`: its children, one per `DaemonModules###<Name>`. The name is read from
//!   the module's redirected stdout/stderr (`<Home>/var/log/Daemon/<Name>ERR.log` /
//!   `<Name>OUT.log`, open on fd 1/2 when `Daemon::Log::STDERR`/`STDOUT` are on and
//!   `/proc/<pid>/fd` is readable). Otherwise, the daemon forks its modules sorted by module
//!   class, so when the unnamed children are exactly as many as the not yet named entries of
//!   `daemon.modules` and were all started within 2 seconds of each other, they are named in
//!   start order. Failing that (a module was restarted, custom modules, unknown order), the
//!   only child that has children is `SchedulerTaskWorker`, and the rest are
//!   `name="unknown"`.
//! - `role="task_worker"`, `name="TaskWorker"`: grandchildren (short-lived task processes
//!   forked by `SchedulerTaskWorker`).

use std::path::{Path, PathBuf};

use super::process::{ProcFamilies, ProcTable};
use super::{CollectError, Collector, Context};
use crate::config::Config;
use crate::snapshot::{Family, MetricKind};

/// Seconds within which module children must have started to be named by start order.
const BURST_SECONDS: f64 = 2.0;

/// Whether a command line is an OTRS-style daemon: some argument's file name is
/// `<word>.Daemon.pl` (`otrs.`, `znuny.`, `otobo.`, …).
pub fn is_daemon_cmdline(args: &[String]) -> bool {
    args.iter().take(4).any(|a| {
        let name = a.rsplit('/').next().unwrap_or(a);
        name.strip_suffix(".Daemon.pl")
            .is_some_and(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric()))
    })
}

/// What the PID file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    /// It names this PID.
    Pid(i32),
    /// It does not exist.
    Missing,
    /// It exists but cannot be read (permissions).
    Denied,
    /// Its content is not a PID.
    Invalid,
}

/// Reads the daemon's PID file (its content is the PID, without newline).
pub fn read_pid_file(path: &Path) -> PidFile {
    match std::fs::read_to_string(path) {
        Ok(s) => match s.trim().parse::<i32>() {
            Ok(p) if p > 0 => PidFile::Pid(p),
            _ => PidFile::Invalid,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PidFile::Missing,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => PidFile::Denied,
        Err(_) => PidFile::Invalid,
    }
}

/// Whether a process name (`comm`) can be the daemon's: Perl, or the script itself
/// (`otrs.Daemon.pl`, started via its shebang).
pub fn may_be_daemon_comm(comm: &str) -> bool {
    comm.starts_with("perl") || comm.contains(".Daemon")
}

/// Main daemon processes found by command line: `*.Daemon.pl` with a `start` argument, whose
/// parent is not one.
pub fn search_daemons(table: &ProcTable) -> Vec<i32> {
    // Only Perl (or the script itself, started via its shebang) can be the daemon: skip
    // reading the command line of every other process.
    let may_be_daemon = |pid: i32| {
        table
            .stats
            .get(&pid)
            .is_some_and(|s| may_be_daemon_comm(&s.comm))
    };
    let is_main = |pid: i32| {
        may_be_daemon(pid)
            && table
                .args(pid)
                .is_some_and(|a| is_daemon_cmdline(&a) && a.iter().any(|x| x == "start"))
    };
    let mut out: Vec<i32> = table
        .stats
        .values()
        .filter(|s| is_main(s.pid) && !is_main(s.ppid))
        .map(|s| s.pid)
        .collect();
    out.sort_unstable();
    out
}

/// The module name a module process' stdout/stderr file reveals: `…/<Name>ERR.log`.
pub fn module_from_fds(pid: i32) -> Option<String> {
    for fd in [2, 1] {
        let Ok(target) = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) else {
            continue;
        };
        let t = target.to_string_lossy();
        let t = t.strip_suffix(" (deleted)").unwrap_or(&t);
        let file = t.rsplit('/').next().unwrap_or(t);
        let Some(stem) = file.strip_suffix(".log") else {
            continue;
        };
        let stem = stem.trim_end_matches(|c: char| c.is_ascii_digit());
        let stem = stem.strip_suffix('-').unwrap_or(stem);
        let name = stem
            .strip_suffix("ERR")
            .or_else(|| stem.strip_suffix("OUT"));
        if let Some(n) = name {
            if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Some(n.to_owned());
            }
        }
    }
    None
}

/// A daemon process and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonProcess {
    /// PID.
    pub pid: i32,
    /// `main`, `module` or `task_worker`.
    pub role: &'static str,
    /// `MainDaemon`, a module name, `TaskWorker` or `unknown`.
    pub name: String,
}

/// Names the process tree under the main daemon `main` (see the module documentation).
pub fn name_tree(
    table: &ProcTable,
    main: i32,
    modules: &[String],
    from_fds: &dyn Fn(i32) -> Option<String>,
) -> Vec<DaemonProcess> {
    let mut out = vec![DaemonProcess {
        pid: main,
        role: "main",
        name: "MainDaemon".into(),
    }];
    let kids = table.children_of(main);
    let mut names: Vec<Option<String>> = kids.iter().map(|&k| from_fds(k)).collect();
    let taken: Vec<&String> = names.iter().flatten().collect();
    let left: Vec<&String> = modules.iter().filter(|m| !taken.contains(m)).collect();
    let mut unnamed: Vec<(f64, i32, usize)> = kids
        .iter()
        .enumerate()
        .filter(|(i, _)| names[*i].is_none())
        .filter_map(|(i, k)| table.stats.get(k).map(|s| (table.start_time(s), *k, i)))
        .collect();
    unnamed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let burst = unnamed
        .first()
        .zip(unnamed.last())
        .is_some_and(|(a, b)| b.0 - a.0 <= BURST_SECONDS);
    if !unnamed.is_empty() && unnamed.len() == left.len() && burst {
        for ((_, _, i), name) in unnamed.iter().zip(&left) {
            names[*i] = Some((*name).clone());
        }
    } else if left.iter().any(|m| *m == "SchedulerTaskWorker") {
        let parents: Vec<usize> = unnamed
            .iter()
            .filter(|(_, k, _)| !table.children_of(*k).is_empty())
            .map(|u| u.2)
            .collect();
        if let [i] = parents[..] {
            names[i] = Some("SchedulerTaskWorker".into());
        }
    }
    for (i, &k) in kids.iter().enumerate() {
        out.push(DaemonProcess {
            pid: k,
            role: "module",
            name: names[i].clone().unwrap_or_else(|| "unknown".into()),
        });
        for &g in table.children_of(k) {
            out.push(DaemonProcess {
                pid: g,
                role: "task_worker",
                name: "TaskWorker".into(),
            });
        }
    }
    out
}

/// Reports the OTRS daemon's processes.
pub struct DaemonProcessCollector {
    pid_file: PathBuf,
    modules: Vec<String>,
    rescan: std::time::Duration,
}

impl DaemonProcessCollector {
    /// A collector with the `[daemon]` settings (and `otrs_home` for the PID file).
    pub fn new(cfg: &Config) -> DaemonProcessCollector {
        DaemonProcessCollector {
            pid_file: cfg.daemon_pid_file(),
            modules: cfg.daemon.modules.clone(),
            rescan: std::time::Duration::from_secs(cfg.processes.rescan_seconds),
        }
    }
}

impl Collector for DaemonProcessCollector {
    fn name(&self) -> &'static str {
        "daemon_processes"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let table = ProcTable::scan_shared(ctx.scrape, false, self.rescan)
            .map_err(|e| CollectError::new(format!("/proc: {e}")))?;
        let pid_file = read_pid_file(&self.pid_file);
        let from_file = match pid_file {
            PidFile::Pid(p) => table
                .args(p)
                .filter(|a| is_daemon_cmdline(a) && table.stats.contains_key(&p))
                .map(|_| p),
            _ => None,
        };
        let (mains, up) = match from_file {
            Some(p) => (vec![p], true),
            None => {
                let found = search_daemons(&table);
                let up = pid_file == PidFile::Denied && !found.is_empty();
                (found, up)
            }
        };
        let mut fams = ProcFamilies::new("otrs_daemon_process", "OTRS daemon process");
        let mut count = Family::new(
            "otrs_daemon_processes",
            "OTRS daemon processes found in this scrape, by role (main, module, task_worker).",
            MetricKind::Gauge,
        );
        let mut counts = [0u32; 3];
        for main in mains {
            for p in name_tree(&table, main, &self.modules, &module_from_fds) {
                let w = p.pid.to_string();
                if fams.add(
                    &table,
                    p.pid,
                    &[("name", &p.name), ("role", p.role), ("worker", &w)],
                ) {
                    counts[match p.role {
                        "main" => 0,
                        "module" => 1,
                        _ => 2,
                    }] += 1;
                }
            }
        }
        for (role, n) in ["main", "module", "task_worker"].iter().zip(counts) {
            count.push(&[("role", role)], f64::from(n));
        }
        let mut up_f = Family::new(
            "otrs_daemon_up",
            "1 if the daemon's PID file names a running *.Daemon.pl process (or, when the PID file is not readable, such a process was found), else 0.",
            MetricKind::Gauge,
        );
        up_f.push(&[], f64::from(u8::from(up)));
        let mut out = fams.finish(self.name());
        out.push(count);
        out.push(up_f);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn daemon_cmdlines() {
        assert!(is_daemon_cmdline(&args(
            "/usr/bin/perl /opt/otrs/bin/otrs.Daemon.pl start"
        )));
        assert!(is_daemon_cmdline(&args("perl bin/otobo.Daemon.pl start")));
        assert!(is_daemon_cmdline(&args(
            "/opt/znuny/bin/znuny.Daemon.pl start"
        )));
        assert!(!is_daemon_cmdline(&args("/usr/sbin/apache2 -k start")));
        assert!(!is_daemon_cmdline(&args("vim /opt/otrs/bin/.Daemon.pl")));
    }

    #[test]
    fn pid_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Daemon-NodeID-1.pid");
        assert_eq!(read_pid_file(&p), PidFile::Missing);
        std::fs::write(&p, "4242").unwrap();
        assert_eq!(read_pid_file(&p), PidFile::Pid(4242));
        std::fs::write(&p, "junk").unwrap();
        assert_eq!(read_pid_file(&p), PidFile::Invalid);
    }
}
