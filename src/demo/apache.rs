//! The demo's Apache front end: a throwaway Apache with mod_fcgid on a loopback port, configured
//! with the shipped `apache/otrs-exporter-fcgid.conf` (embedded here, so an installed binary
//! needs no source tree) and basic auth for user `prometheus` with a generated password.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `apache/otrs-exporter-fcgid.conf`, included unchanged by the demo's Apache.
pub const FCGID_SNIPPET: &str = include_str!("../../apache/otrs-exporter-fcgid.conf");

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const HTPASSWD: &str = "/usr/bin/htpasswd";
/// Modules the demo loads (the event MPM, basic auth from a file, mod_alias, mod_fcgid).
const LOAD: &[&str] = &[
    "mpm_event",
    "authn_core",
    "authn_file",
    "authz_core",
    "authz_user",
    "auth_basic",
    "alias",
    "fcgid",
];

/// The user the demo's Apache asks for.
pub const DEMO_USER: &str = "prometheus";

/// Why the demo cannot use Apache on this machine, or `None` if it can.
pub fn unavailable() -> Option<String> {
    if !Path::new(APACHE).exists() {
        return Some(format!(
            "{APACHE} not found (apt-get install apache2 libapache2-mod-fcgid)"
        ));
    }
    if !Path::new(HTPASSWD).exists() {
        return Some(format!(
            "{HTPASSWD} not found (apt-get install apache2-utils)"
        ));
    }
    for m in LOAD {
        let so = format!("{MODULES}/mod_{m}.so");
        if !Path::new(&so).exists() {
            let hint = if *m == "fcgid" {
                " (apt-get install libapache2-mod-fcgid)"
            } else {
                ""
            };
            return Some(format!("{so} not found{hint}"));
        }
    }
    if nix::unistd::geteuid().is_root() && web_user().is_none() {
        return Some("running as root but there is no user www-data for Apache's workers".into());
    }
    None
}

/// `www-data`, the user (and group) Apache's workers run as when it is started by root.
pub fn web_user() -> Option<nix::unistd::User> {
    nix::unistd::User::from_name("www-data").ok().flatten()
}

/// A running throwaway Apache; stopped (with its FastCGI processes) on drop.
pub struct DemoApache {
    child: Child,
    /// The loopback port Apache listens on.
    pub port: u16,
    /// The generated basic-auth password of [`DEMO_USER`].
    pub password: String,
    /// Apache's error log (the exporter's stderr lands there too).
    pub error_log: PathBuf,
}

impl DemoApache {
    /// Writes an Apache configuration, the snippet, a copy of this binary, an exporter config
    /// for `segment` and an htpasswd file into `dir`, then starts Apache in the foreground on
    /// 127.0.0.1:`port` (0 = any free port) and waits until it accepts connections.
    pub fn start(
        dir: &Path,
        port: u16,
        segment: &Path,
        group: Option<&str>,
    ) -> io::Result<DemoApache> {
        let p = |s: &str| dir.join(s);
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        // The running binary may live where www-data cannot reach it (e.g. under /root).
        let bin = p("otrs-exporter");
        std::fs::copy(std::env::current_exe()?, &bin)?;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
        let config = p("config.toml");
        let group_line = group.map_or(String::new(), |g| format!("group = {g:?}\n"));
        std::fs::write(
            &config,
            format!(
                "[segment]\npath = {:?}\n{group_line}\n[gc]\ngrace_seconds = 10\ninterval_seconds = 5\n",
                segment.display().to_string()
            ),
        )?;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644))?;
        let password = random_password()?;
        let htpasswd = p("htpasswd");
        let mut hp = Command::new(HTPASSWD)
            .args(["-i", "-c", "-B"])
            .arg(&htpasswd)
            .arg(DEMO_USER)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        hp.stdin
            .take()
            .expect("piped")
            .write_all(password.as_bytes())?;
        if !hp.wait()?.success() {
            return Err(io::Error::other("htpasswd failed"));
        }
        std::fs::set_permissions(&htpasswd, std::fs::Permissions::from_mode(0o644))?;
        std::fs::write(p("otrs-exporter-fcgid.conf"), FCGID_SNIPPET)?;
        std::fs::create_dir_all(p("htdocs"))?;
        let port = match port {
            0 => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            p => p,
        };
        let user = if nix::unistd::geteuid().is_root() {
            "User www-data\nGroup www-data\n"
        } else {
            // Not root: Apache runs as the calling user (it ignores User/Group then anyway).
            ""
        };
        let mut conf = format!(
            "# Throwaway Apache of `otrs-exporter demo`.\n\
             ServerRoot {d}\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nMutex file:{d}\n\
             ErrorLog {d}/error.log\nLogLevel warn\nListen 127.0.0.1:{port}\nServerName 127.0.0.1\n\
             {user}",
            d = dir.display()
        );
        for m in LOAD {
            conf.push_str(&format!("LoadModule {m}_module {MODULES}/mod_{m}.so\n"));
        }
        conf.push_str(&format!(
            "FcgidIPCDir {d}/fcgid\nFcgidProcessTableFile {d}/fcgid_shm\n\
             DocumentRoot {d}/htdocs\n\
             <Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n\
             Define OTRS_EXPORTER_BIN {bin}\nDefine OTRS_EXPORTER_CONFIG_FILE {config}\n\
             Define OTRS_EXPORTER_HTPASSWD {htpasswd}\n\
             Include {d}/otrs-exporter-fcgid.conf\n",
            d = dir.display(),
            bin = bin.display(),
            config = config.display(),
            htpasswd = htpasswd.display(),
        ));
        std::fs::write(p("httpd.conf"), conf)?;
        let error_log = p("error.log");
        let mut cmd = Command::new(APACHE);
        cmd.arg("-f")
            .arg(p("httpd.conf"))
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p("apache-stderr.log"))?);
        // The demo blocks SIGINT/SIGTERM to wait for them; a blocked mask is inherited across
        // exec, and Apache's children would then ignore the SIGTERM that stops them.
        // SAFETY: the closure only calls sigprocmask, which is async-signal-safe, on a local
        // empty set; it allocates nothing and touches no locks.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&nix::sys::signal::SigSet::empty()),
                    None,
                )
                .map_err(io::Error::from)
            });
        }
        let mut child = cmd.spawn()?;
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let failed = match child.try_wait()? {
                Some(st) => Some(format!("apache2 exited ({st})")),
                None if start.elapsed() > Duration::from_secs(10) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Some("apache2 did not start listening within 10 s".into())
                }
                None => None,
            };
            if let Some(why) = failed {
                let log = |n| std::fs::read_to_string(p(n)).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "{why}: {}{}",
                    log("apache-stderr.log").trim(),
                    log("error.log").trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(DemoApache {
            child,
            port,
            password,
            error_log,
        })
    }
}

impl Drop for DemoApache {
    fn drop(&mut self) {
        // SIGTERM makes Apache stop its workers and mod_fcgid's processes, then exit.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while !matches!(self.child.try_wait(), Ok(Some(_))) {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// 24 random hex digits from the kernel.
fn random_password() -> io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}
