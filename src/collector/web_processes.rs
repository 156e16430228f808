//! The `web_processes` collector (seed: `http_process_*{level,worker}`): memory, CPU, file
//! descriptors, threads and start time of the web server's main processes and their
//! children, read from `/proc` on every scrape.
//!
//! Finding them: with `processes.server_cmdline` set, every process whose command line
//! (arguments joined by single spaces) equals it and whose parent's does not is a main
//! process (`level="parent"`). Otherwise Apache (`apache2`, `httpd`) and nginx are detected by
//! process name: a process with one of those names whose parent has another name. Every
//! instance found is reported, labelled `server` (its process name) and `server_pid` (its PID;
//! not `instance`, which Prometheus sets to the scrape target): several Apache instances (say a
//! reverse proxy and the OTRS backend) are told apart by that label rather than guessed
//! between. The children (`level="child"`) are all direct
//! children of a main process: Apache workers, nginx workers and cache managers, and anything
//! else the server started directly (mod_cgid's daemon, piped loggers, mod_fcgid's process
//! manager); FastCGI programs are grandchildren and not included.

use std::collections::HashSet;

use super::process::{ProcFamilies, ProcTable};
use super::{CollectError, Collector, Context};
use crate::config::ProcessesConfig;
use crate::snapshot::{Family, MetricKind};

/// Process names detected when no command line is configured.
pub const SERVER_NAMES: [&str; 3] = ["apache2", "httpd", "nginx"];

/// A web server's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerProcess {
    /// Its PID.
    pub pid: i32,
    /// Its process name (`apache2`, `httpd`, `nginx`, …).
    pub server: String,
}

/// Finds the main processes: by command line if `cmdline` is not empty, else by name.
pub fn find_servers(table: &ProcTable, cmdline: &str) -> Vec<ServerProcess> {
    let want = cmdline.trim();
    let matches: HashSet<i32> = if want.is_empty() {
        table
            .stats
            .values()
            .filter(|s| SERVER_NAMES.contains(&s.comm.as_str()))
            .map(|s| s.pid)
            .collect()
    } else {
        table
            .stats
            .keys()
            .copied()
            .filter(|&pid| table.cmdline(pid).as_deref() == Some(want))
            .collect()
    };
    let mut out: Vec<ServerProcess> = matches
        .iter()
        .filter_map(|pid| table.stats.get(pid))
        .filter(|s| {
            if !matches.contains(&s.ppid) {
                return true;
            }
            // By name, a parent of another server's name is a different server (nginx in
            // front of an Apache it started is unusual, but keep both).
            want.is_empty() && table.stats.get(&s.ppid).is_some_and(|p| p.comm != s.comm)
        })
        .map(|s| ServerProcess {
            pid: s.pid,
            server: s.comm.clone(),
        })
        .collect();
    out.sort_by_key(|s| s.pid);
    out
}

/// Reports the web server's processes.
pub struct WebProcessCollector {
    cfg: ProcessesConfig,
}

impl WebProcessCollector {
    /// A collector with the `[processes]` settings.
    pub fn new(cfg: &ProcessesConfig) -> WebProcessCollector {
        WebProcessCollector { cfg: cfg.clone() }
    }
}

impl Collector for WebProcessCollector {
    fn name(&self) -> &'static str {
        "web_processes"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let table = ProcTable::scan_shared(
            ctx.scrape,
            !self.cfg.server_cmdline.trim().is_empty(),
            std::time::Duration::from_secs(self.cfg.rescan_seconds),
        )
        .map_err(|e| CollectError::new(format!("/proc: {e}")))?;
        let servers = find_servers(&table, &self.cfg.server_cmdline);
        let mut fams = ProcFamilies::new("otrs_web_process", "web-server process");
        let mut count = Family::new(
            "otrs_web_processes",
            "Web-server processes found in this scrape, by server, main process (server_pid) and level (parent, child).",
            MetricKind::Gauge,
        );
        for s in &servers {
            let instance = s.pid.to_string();
            let base = [
                ("server", s.server.as_str()),
                ("server_pid", instance.as_str()),
            ];
            let mut found = [0u32; 2];
            if fams.add(
                &table,
                s.pid,
                &[base[0], base[1], ("level", "parent"), ("worker", &instance)],
            ) {
                found[0] += 1;
            }
            for &child in table.children_of(s.pid) {
                let w = child.to_string();
                if fams.add(
                    &table,
                    child,
                    &[base[0], base[1], ("level", "child"), ("worker", &w)],
                ) {
                    found[1] += 1;
                }
            }
            count.push(
                &[base[0], base[1], ("level", "parent")],
                f64::from(found[0]),
            );
            count.push(&[base[0], base[1], ("level", "child")], f64::from(found[1]));
        }
        let mut out = fams.finish(self.name());
        out.push(count);
        Ok(out)
    }
}
