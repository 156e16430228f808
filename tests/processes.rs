//! Process collectors against real processes: a throwaway Apache (prefork, 3 children) and
//! nginx (master + 2 workers), and a fake OTRS daemon — a Perl script really named
//! `bin/otrs.Daemon.pl`, run as `perl …/bin/otrs.Daemon.pl start` like the real one, that
//! forks 5 module children (in the real daemon's order) and a task-worker grandchild, writes
//! the PID file without newline and sets no process title. Scraped PIDs must equal `/proc`'s
//! process tree exactly; values within tolerance; series vanish with the processes.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otrs_exporter::collector::daemon_processes::DaemonProcessCollector;
use otrs_exporter::collector::web_processes::WebProcessCollector;
use otrs_exporter::collector::{Collector, Context};
use otrs_exporter::config::{Config, ProcessesConfig};
use otrs_exporter::snapshot::{Family, Value};

mod common;

fn ctx() -> Context {
    Context::new(Instant::now() + Duration::from_secs(5))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split(' ').map(String::from).collect())
}

/// Children of `pid` per /proc (not zombies).
fn proc_children(pid: i32) -> BTreeSet<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_fields(p).is_some_and(|f| f[1] == pid.to_string() && f[0] != "Z"))
        .collect()
}

fn label<'a>(s: &'a otrs_exporter::snapshot::Series, name: &str) -> Option<&'a str> {
    s.labels
        .iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, v)| &**v)
}

fn family<'a>(fams: &'a [Family], name: &str) -> &'a Family {
    fams.iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn scalar(v: &Value) -> f64 {
    match v {
        Value::Scalar(x) => *x,
        _ => panic!("not a scalar"),
    }
}

/// (worker pid, other label) of every series of `name` whose `filter_label` is `filter_value`.
fn workers(
    fams: &[Family],
    name: &str,
    filter: (&str, &str),
    key: &str,
) -> BTreeSet<(i32, String)> {
    family(fams, name)
        .series
        .iter()
        .filter(|s| label(s, filter.0) == Some(filter.1))
        .map(|s| {
            (
                label(s, "worker").unwrap().parse().unwrap(),
                label(s, key).unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn value_of(fams: &[Family], name: &str, worker: i32, extra: Option<(&str, &str)>) -> f64 {
    let w = worker.to_string();
    let s = family(fams, name)
        .series
        .iter()
        .find(|s| {
            label(s, "worker") == Some(&w) && extra.is_none_or(|(k, v)| label(s, k) == Some(v))
        })
        .unwrap_or_else(|| panic!("{name} has no series for worker {worker}"));
    scalar(&s.value)
}

/// Checks every per-process value of `pid` against /proc right now.
fn check_values(fams: &[Family], prefix: &str, pid: i32) {
    let f = stat_fields(pid).unwrap();
    let tps = 100.0; // USER_HZ on Linux
    let page = 4096.0;
    let rss = f[21].parse::<f64>().unwrap() * page;
    let got = value_of(fams, &format!("{prefix}_resident_memory_bytes"), pid, None);
    assert!((got - rss).abs() <= rss * 0.2 + 1e6, "rss {got} vs {rss}");
    let vsz = f[20].parse::<f64>().unwrap();
    let got = value_of(fams, &format!("{prefix}_virtual_memory_bytes"), pid, None);
    assert!((got - vsz).abs() <= vsz * 0.1 + 1e6, "vsize {got} vs {vsz}");
    let user = f[11].parse::<f64>().unwrap() / tps;
    let got = value_of(
        fams,
        &format!("{prefix}_cpu_seconds"),
        pid,
        Some(("mode", "user")),
    );
    assert!((got - user).abs() <= 0.5, "user cpu {got} vs {user}");
    let threads = f[17].parse::<f64>().unwrap();
    assert_eq!(
        value_of(fams, &format!("{prefix}_threads"), pid, None),
        threads
    );
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap();
    let start = btime + f[19].parse::<f64>().unwrap() / tps;
    let got = value_of(fams, &format!("{prefix}_start_time_seconds"), pid, None);
    assert!((got - start).abs() < 0.02, "start {got} vs {start}");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let got = value_of(fams, &format!("{prefix}_open_fds"), pid, None);
    assert!((got - fds).abs() <= 2.0, "fds {got} vs {fds}");
    assert!(value_of(fams, &format!("{prefix}_max_fds"), pid, None) >= 64.0);
}

struct Killed(Child);

impl Drop for Killed {
    /// SIGTERM first: Apache and nginx stop their children on it (SIGKILL would orphan them).
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A prefork Apache with 3 children, in the foreground (its PID is the parent's), on a free
/// port (see `common::serve_on_free_port`).
fn start_apache(dir: &Path) -> (Killed, Vec<String>) {
    let d = dir.display();
    let conf = format!(
        "ServerRoot {d}\nServerName localhost\nInclude {d}/listen.conf\nPidFile {d}/apache.pid\n\
         ErrorLog {d}/error.log\nLoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n\
         LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so\n\
         StartServers 3\nMinSpareServers 3\nMaxSpareServers 3\nUser www-data\nGroup www-data\n\
         DocumentRoot {d}\n"
    );
    std::fs::write(dir.join("apache.conf"), conf).unwrap();
    let args: Vec<String> = [
        "/usr/sbin/apache2",
        "-f",
        &format!("{d}/apache.conf"),
        "-D",
        "FOREGROUND",
    ]
    .map(String::from)
    .to_vec();
    let (child, _) = common::serve_on_free_port(
        "apache2",
        dir,
        |port| format!("Listen 127.0.0.1:{port}\n"),
        &dir.join("apache.pid"),
        || {
            Command::new(&args[0])
                .args(&args[1..])
                .env("APACHE_RUN_DIR", dir)
                // Apache signals its whole process group on shutdown: not ours.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
                .spawn()
                .expect("apache2 (scripts/setup.sh installs it)")
        },
        || common::apache_logs(dir),
    );
    let child = Killed(child);
    let pid = child.0.id() as i32;
    wait_for("3 apache children", || proc_children(pid).len() == 3);
    (child, args)
}

/// nginx with 2 workers, in the foreground, on a free port; its files in `dir/nginx` (its
/// `listen.conf` apart from Apache's).
fn start_nginx(dir: &Path) -> Killed {
    let dir = &dir.join("nginx");
    std::fs::create_dir_all(dir).unwrap();
    let d = dir.display();
    let conf = format!(
        "user root;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\nhttp {{ access_log off; client_body_temp_path {d}/cb; \
         proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft; uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st; \
         server {{ include {d}/listen.conf; }} }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Killed(common::start_nginx(dir).0);
    let pid = child.0.id() as i32;
    wait_for("2 nginx workers", || proc_children(pid).len() == 2);
    child
}

fn web(cmdline: &str) -> Vec<Family> {
    web_with(cmdline, 30)
}

fn web_with(cmdline: &str, rescan_seconds: u64) -> Vec<Family> {
    WebProcessCollector::new(&ProcessesConfig {
        server_cmdline: cmdline.into(),
        rescan_seconds,
    })
    .collect(&ctx())
    .unwrap()
}

/// PIDs of every `otrs_web_process_resident_memory_bytes` series (parents and children).
fn web_pids(fams: &[Family]) -> BTreeSet<i32> {
    family(fams, "otrs_web_process_resident_memory_bytes")
        .series
        .iter()
        .map(|s| label(s, "worker").unwrap().parse().unwrap())
        .collect()
}

/// Between full scans a long-running process reads only new processes and the servers' and
/// daemons' trees: a server started after the last scan, and children it forks later, are
/// found at once; a process that was uninteresting and then `exec`s into a server (same PID)
/// is found at the next full scan, `rescan_seconds` later.
#[test]
fn scans_between_full_scans_find_new_servers_and_children() {
    let dir = tempfile::tempdir().unwrap();
    // Uninteresting until it execs `<dir>/apache2` (a copy of sleep named like the server).
    let fake = dir.path().join("apache2");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let go = dir.path().join("go");
    let mut late = Killed(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "while [ ! -e {} ]; do sleep 0.02; done; exec {} 30",
                go.display(),
                fake.display()
            ))
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let late_pid = late.0.id() as i32;
    // A scan that sees the shell (uninteresting), then, within the interval, a new Apache.
    let before = web_with("", 2);
    assert!(!web_pids(&before).contains(&late_pid));
    let started = Instant::now();
    let (apache, _) = start_apache(dir.path());
    let a = apache.0.id() as i32;
    let mut want: BTreeSet<i32> = proc_children(a);
    want.insert(a);
    let fams = web_with("", 2);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "slow start: test inconclusive"
    );
    let found = web_pids(&fams);
    assert!(want.is_subset(&found), "{want:?} not all in {found:?}");

    // The shell execs into "apache2" under its old PID: found by the next full scan at the
    // latest (a scan in between may or may not have been full).
    std::fs::write(&go, "").unwrap();
    wait_for("the exec", || {
        stat_fields(late_pid).is_some()
            && std::fs::read_to_string(format!("/proc/{late_pid}/comm"))
                .is_ok_and(|c| c.trim() == "apache2")
    });
    let end = Instant::now() + Duration::from_secs(5);
    while !web_pids(&web_with("", 2)).contains(&late_pid) {
        assert!(
            Instant::now() < end,
            "exec'd server not found by a full scan"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // With rescan_seconds = 0 every scan is full: found at once.
    assert!(web_pids(&web_with("", 0)).contains(&late_pid));
    let _ = late.0.kill();
    let _ = late.0.wait();
    drop(apache);
}

#[test]
fn web_processes_of_real_apache_and_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let (mut apache, args) = start_apache(dir.path());
    let nginx = start_nginx(dir.path());
    let a = apache.0.id() as i32;
    let n = nginx.0.id() as i32;

    // By command line (the seed's ServerCMND): exactly this Apache.
    let fams = web(&args.join(" "));
    let rss = "otrs_web_process_resident_memory_bytes";
    let parents = workers(&fams, rss, ("level", "parent"), "server_pid");
    assert_eq!(parents, BTreeSet::from([(a, a.to_string())]));
    let kids: BTreeSet<i32> = workers(&fams, rss, ("level", "child"), "server_pid")
        .into_iter()
        .map(|(p, i)| {
            assert_eq!(i, a.to_string());
            p
        })
        .collect();
    assert_eq!(kids, proc_children(a));
    for pid in std::iter::once(a).chain(kids.iter().copied()) {
        check_values(&fams, "otrs_web_process", pid);
    }
    let server = label(&family(&fams, rss).series[0], "server")
        .unwrap()
        .to_owned();
    assert_eq!(server, "apache2");

    // Detected by name: both servers, each instance with its own children.
    let fams = web("");
    let by_instance = |inst: i32, level: &str| -> BTreeSet<i32> {
        family(&fams, rss)
            .series
            .iter()
            .filter(|s| {
                label(s, "server_pid") == Some(&inst.to_string())
                    && label(s, "level") == Some(level)
            })
            .map(|s| label(s, "worker").unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(by_instance(a, "parent"), BTreeSet::from([a]));
    assert_eq!(by_instance(a, "child"), proc_children(a));
    assert_eq!(by_instance(n, "parent"), BTreeSet::from([n]));
    assert_eq!(by_instance(n, "child"), proc_children(n));
    for pid in proc_children(n) {
        check_values(&fams, "otrs_web_process", pid);
    }
    let counted = family(&fams, "otrs_web_processes")
        .series
        .iter()
        .find(|s| {
            label(s, "server_pid") == Some(&n.to_string()) && label(s, "level") == Some("child")
        })
        .map(|s| scalar(&s.value));
    assert_eq!(counted, Some(2.0));

    // Apache stopped (SIGTERM: the parent stops its children, then exits): its series go.
    let kids_before = proc_children(a);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    apache.0.wait().unwrap();
    wait_for("apache children to exit", || {
        kids_before
            .iter()
            .all(|&p| stat_fields(p).is_none_or(|f| f[0] == "Z"))
    });
    let fams = web(&args.join(" "));
    assert!(family(&fams, rss).series.is_empty());
    let fams = web("");
    assert!(by_instance_in(&fams, a).is_empty());
    drop(nginx);
}

fn by_instance_in(fams: &[Family], inst: i32) -> Vec<String> {
    family(fams, "otrs_web_process_resident_memory_bytes")
        .series
        .iter()
        .filter(|s| label(s, "server_pid") == Some(&inst.to_string()))
        .map(|s| label(s, "worker").unwrap().to_owned())
        .collect()
}

const FAKE_DAEMON: &str = r#"
# A stand-in for bin/otrs.Daemon.pl: same process tree, no process titles.
use strict;
use warnings;
use POSIX ();
use File::Basename qw(dirname);
my $Home = dirname(dirname(__FILE__));
exit 0 if fork;                      # `start` returns, the daemon lives on
POSIX::setsid();
open my $FH, '>', "$Home/var/run/Daemon-NodeID-1.pid" or die;
print $FH $$;                        # no newline, like the real one
close $FH;
my %Log = map { $_ => 1 } split /,/, ($ENV{FAKE_DAEMON_LOG} || '');
for my $Name (qw(SchedulerCronTaskManager SchedulerFutureTaskManager
                 SchedulerGenericAgentTaskManager SchedulerTaskWorker SystemConfigurationSyncManager)) {
    my $Pid = fork;
    next if $Pid;
    if ($Log{$Name}) { open STDERR, '>>', "$Home/var/log/Daemon/${Name}ERR.log" or die; }
    if ($Name eq 'SchedulerTaskWorker') {
        if (!fork) { sleep 1000 while 1; }   # a task worker
    }
    sleep 1000 while 1;
}
sleep 1000 while 1;
"#;

struct FakeDaemon {
    home: PathBuf,
    main: i32,
}

impl FakeDaemon {
    fn start(home: &Path, log_for: &str) -> FakeDaemon {
        for d in ["bin", "var/run", "var/log/Daemon"] {
            std::fs::create_dir_all(home.join(d)).unwrap();
        }
        let script = home.join("bin/otrs.Daemon.pl");
        std::fs::write(&script, FAKE_DAEMON).unwrap();
        let st = Command::new("/usr/bin/perl")
            .arg(&script)
            .arg("start")
            .env("FAKE_DAEMON_LOG", log_for)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let pid_file = home.join("var/run/Daemon-NodeID-1.pid");
        let mut main = 0;
        wait_for("the fake daemon's tree", || {
            main = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            main > 0
                && proc_children(main).len() == 5
                && proc_children(main)
                    .iter()
                    .any(|&m| proc_children(m).len() == 1)
        });
        FakeDaemon {
            home: home.to_owned(),
            main,
        }
    }

    fn kill(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.main),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn daemon(home: &Path) -> Vec<Family> {
    let cfg = Config {
        otrs_home: home.to_owned(),
        ..Config::default()
    };
    DaemonProcessCollector::new(&cfg).collect(&ctx()).unwrap()
}

fn up(fams: &[Family]) -> f64 {
    scalar(&family(fams, "otrs_daemon_up").series[0].value)
}

#[test]
fn fake_daemon_tree_is_named_and_measured() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("otrs");
    // Two modules redirect stderr to their log file (named from fd 2), the rest are named by
    // start order.
    let d = FakeDaemon::start(
        &home,
        "SchedulerCronTaskManager,SystemConfigurationSyncManager",
    );
    let fams = daemon(&home);
    assert_eq!(up(&fams), 1.0);
    let cmd = std::fs::read_to_string(format!("/proc/{}/cmdline", d.main)).unwrap();
    assert!(cmd.starts_with("/usr/bin/perl\0") && cmd.contains("/bin/otrs.Daemon.pl\0start"));
    let rss = "otrs_daemon_process_resident_memory_bytes";
    let all = |role: &str| workers(&fams, rss, ("role", role), "name");
    assert_eq!(
        all("main"),
        BTreeSet::from([(d.main, "MainDaemon".to_string())])
    );
    let mut modules: Vec<i32> = proc_children(d.main).into_iter().collect();
    modules.sort_by_key(|&p| (stat_fields(p).unwrap()[19].parse::<u64>().unwrap(), p));
    let names = [
        "SchedulerCronTaskManager",
        "SchedulerFutureTaskManager",
        "SchedulerGenericAgentTaskManager",
        "SchedulerTaskWorker",
        "SystemConfigurationSyncManager",
    ];
    let want: BTreeSet<(i32, String)> = modules
        .iter()
        .zip(names)
        .map(|(&p, n)| (p, n.to_string()))
        .collect();
    assert_eq!(all("module"), want);
    let tw = modules[3];
    let task_workers: BTreeSet<(i32, String)> = proc_children(tw)
        .into_iter()
        .map(|p| (p, "TaskWorker".to_string()))
        .collect();
    assert_eq!(task_workers.len(), 1);
    assert_eq!(all("task_worker"), task_workers);
    for &pid in std::iter::once(&d.main).chain(&modules) {
        check_values(&fams, "otrs_daemon_process", pid);
    }

    // No PID file: the processes are still found by command line, but the daemon is not up.
    std::fs::rename(
        home.join("var/run/Daemon-NodeID-1.pid"),
        home.join("var/run/moved"),
    )
    .unwrap();
    let fams = daemon(&home);
    assert_eq!(up(&fams), 0.0);
    assert!(workers(&fams, rss, ("role", "main"), "name").contains(&(d.main, "MainDaemon".into())));
    std::fs::rename(
        home.join("var/run/moved"),
        home.join("var/run/Daemon-NodeID-1.pid"),
    )
    .unwrap();

    // Killed: the PID file is stale, nothing of it is reported.
    d.kill();
    let gone: Vec<i32> = std::iter::once(d.main)
        .chain(modules.iter().copied())
        .collect();
    wait_for("the daemon to die", || {
        gone.iter()
            .all(|&p| stat_fields(p).is_none_or(|f| f[0] == "Z"))
    });
    let fams = daemon(&home);
    assert_eq!(up(&fams), 0.0);
    let left = workers(&fams, rss, ("role", "module"), "name");
    assert!(left.iter().all(|(p, _)| !gone.contains(p)), "{left:?}");
    assert!(d.home.exists());
}

#[test]
fn pid_file_of_another_process_is_not_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::create_dir_all(home.join("var/run")).unwrap();
    std::fs::write(
        home.join("var/run/Daemon-NodeID-1.pid"),
        std::process::id().to_string(),
    )
    .unwrap();
    let fams = daemon(home);
    assert_eq!(up(&fams), 0.0);
    let me = std::process::id().to_string();
    assert!(family(&fams, "otrs_daemon_process_resident_memory_bytes")
        .series
        .iter()
        .all(|s| label(s, "worker") != Some(&me)));
}

/// The open-files limit is read once per process between full scans (the kernel formats the
/// whole `limits` file on every read); a full scan reads it again, so a changed limit shows.
/// Runs in a process of its own: the remembered limits are process-wide, and other tests'
/// full scans would forget them at any moment.
#[test]
fn open_files_limit_is_remembered_until_the_next_full_scan() {
    use otrs_exporter::collector::process::{sample, ProcTable, Sampled};
    const NAME: &str = "open_files_limit_is_remembered_until_the_next_full_scan";
    if std::env::var_os("LIMITS_ALONE").is_none() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env("LIMITS_ALONE", "1")
            .output()
            .unwrap();
        let text = common::output_text(&out);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    // A process the scans between full scans read: one named like a web server.
    let dir = tempfile::tempdir().unwrap();
    let nginx = dir.path().join("nginx");
    std::fs::copy("/bin/sleep", &nginx).unwrap();
    let kid = Command::new(&nginx)
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = kid.id() as i32;
    let mut kid = Killed(kid);
    let max_fds = |table: &ProcTable| match sample(table, pid) {
        Sampled::Full(s) | Sampled::Partial(s) => s.max_fds.expect("limits readable"),
        Sampled::Gone => panic!("the child is gone"),
    };
    let hour = Duration::from_secs(3600);
    // The first scan of the process is a full one.
    let before = max_fds(&ProcTable::scan_shared(u64::MAX - 3, false, hour).unwrap());
    assert!(before > 64.0, "soft limit {before}");
    let lower = libc::rlimit {
        rlim_cur: 64,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit only reads `lower` and writes `old`, both valid for the call.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "reading the child's limit");
    let lower = libc::rlimit {
        rlim_max: old.rlim_max,
        ..lower
    };
    // SAFETY: as above.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lower, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "lowering the child's limit");
    // Between full scans: the limit read before.
    let between = max_fds(&ProcTable::scan_shared(u64::MAX - 2, false, hour).unwrap());
    assert_eq!(between, before);
    // A full scan (as `every` asks for) reads it again.
    let after = max_fds(&ProcTable::scan_shared(u64::MAX - 1, true, hour).unwrap());
    assert_eq!(after, 64.0);
    kid.0.kill().unwrap();
}
