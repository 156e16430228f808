//! Helpers shared by the integration tests that run the real binary: promtool, sample
//! lookups, free ports and a tiny HTTP client.
#![allow(dead_code)]

pub mod fcgi;
pub mod testdb;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What a finished command printed, standard output then standard error.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_otrs-exporter");
/// The default metrics route.
pub const METRICS: &str = "/otrs/nph-genericinterface.pl/Webservice/Prometheus/metrics";

/// Runs the real `promtool check metrics` on `body` and fails the test if it objects.
pub fn promtool_check(body: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup.sh (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejected the scrape: {}{}\n---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Value of the sample line that starts with `prefix` (name and labels), if present.
pub fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// All sample lines of the metric `name`.
pub fn samples_of<'a>(body: &'a str, name: &str) -> Vec<&'a str> {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .collect()
}

/// A loopback port that was free a moment ago.
/// Where Debian's Apache keeps its modules.
pub const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// The start of a throwaway Apache's `httpd.conf`: runtime files in `dir`, listening on
/// loopback `port`, children as www-data when `as_www_data` (root only), `modules` loaded, a
/// `htdocs` document root and everything else denied. Callers append their `Define`s and
/// `Include`s (the shipped snippets).
pub fn apache_base_conf(dir: &std::path::Path, as_www_data: bool, modules: &[&str]) -> String {
    let d = dir.display();
    let mut conf = format!(
        "ServerRoot /etc/apache2\nDefaultRuntimeDir {d}\nPidFile {d}/httpd.pid\nMutex file:{d}\n\
         ErrorLog {d}/error.log\nLogLevel warn\nInclude {d}/listen.conf\nServerName 127.0.0.1\n"
    );
    if as_www_data {
        conf.push_str("User www-data\nGroup www-data\n");
    }
    for m in modules {
        conf.push_str(&format!(
            "LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n"
        ));
    }
    conf.push_str("TypesConfig /dev/null\n");
    if modules.contains(&"cgid") {
        conf.push_str(&format!("ScriptSock {d}/cgisock\n"));
    }
    if modules.contains(&"fcgid") {
        conf.push_str(&format!(
            "FcgidIPCDir {d}/fcgid\nFcgidProcessTableFile {d}/fcgid_shm\n"
        ));
    }
    conf.push_str(&format!(
        "DocumentRoot {d}/htdocs\n\
         <Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n"
    ));
    conf
}

/// Starts `apache2 -f <dir>/httpd.conf` (written with [`apache_base_conf`]) in the foreground,
/// its stderr in `<dir>/stderr.log`, and waits until it serves (see [`serve_on_free_port`]):
/// returns the child and the port it listens on.
pub fn start_apache(dir: &std::path::Path) -> (std::process::Child, u16) {
    serve_on_free_port(
        "apache2",
        dir,
        |port| format!("Listen 127.0.0.1:{port}\n"),
        &dir.join("httpd.pid"),
        || {
            Command::new("/usr/sbin/apache2")
                .arg("-f")
                .arg(dir.join("httpd.conf"))
                .arg("-DFOREGROUND")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
                .spawn()
                .unwrap()
        },
        || apache_logs(dir),
    )
}

/// The nginx binary.
pub fn nginx_bin() -> std::path::PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("nginx is not installed: run `bash scripts/setup.sh` (or `apt-get install nginx`)");
}

/// Starts `nginx -p <dir> -c <dir>/nginx.conf` in the foreground (the config includes
/// `<dir>/listen.conf` and writes its pid to `<dir>/nginx.pid`), its error log in
/// `<dir>/error.log` and stderr in `<dir>/stderr.log`, and waits until it serves (see
/// [`serve_on_free_port`]): returns the child and the port it listens on.
pub fn start_nginx(dir: &std::path::Path) -> (std::process::Child, u16) {
    serve_on_free_port(
        "nginx",
        dir,
        |port| format!("listen 127.0.0.1:{port};\n"),
        &dir.join("nginx.pid"),
        || {
            Command::new(nginx_bin())
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
                .spawn()
                .unwrap()
        },
        || {
            let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
            format!("{}{}", read("error.log"), read("stderr.log"))
        },
    )
}

/// Starts a web server whose config includes `<dir>/listen.conf`, written as `listen(port)`
/// for a free port, with `spawn`, and waits (up to 15 s) until it serves: returns the child
/// and the port.
///
/// "Serves" means its `pid_file` names this child and its port accepts connections: a bare
/// connect could reach another test's server that took the same free port first, since a
/// port found free is free only until someone binds it. When that race makes the server fail
/// to bind ("Address already in use" in `logs()`), it is started again on another port.
/// Panics with its logs if it exits otherwise or never serves (the caller's guard stops it).
pub fn serve_on_free_port(
    name: &str,
    dir: &std::path::Path,
    listen: impl Fn(u16) -> String,
    pid_file: &std::path::Path,
    mut spawn: impl FnMut() -> std::process::Child,
    logs: impl Fn() -> String,
) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        std::fs::write(dir.join("listen.conf"), listen(port)).unwrap();
        let _ = std::fs::remove_file(pid_file);
        let mut child = spawn();
        let start = std::time::Instant::now();
        let ours = child.id().to_string();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                let logs = logs();
                if logs.contains("Address already in use") {
                    break;
                }
                panic!("{name} exited ({st}): {logs}");
            }
            let pid = std::fs::read_to_string(pid_file).unwrap_or_default();
            if pid.trim() == ours && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (child, port);
            }
            if start.elapsed() > std::time::Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not serve: {}", logs());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    panic!("{name} found its port taken five times: {}", logs());
}

/// The error log and stderr of the Apache in `dir`, for failure messages.
pub fn apache_logs(dir: &std::path::Path) -> String {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
    format!(
        "\n--- error.log\n{}\n--- stderr\n{}",
        read("error.log"),
        read("stderr.log")
    )
}

/// Starts a server of ours with `spawn(port)` on a free port and waits (up to 15 s) until the
/// child itself listens there: a listening socket on that port among the child's own file
/// descriptors (a bare connect could reach another test's server that took the same free port
/// first). A child that exits meanwhile (the port was taken) is started again on another port,
/// up to five times. Panics if it never listens.
pub fn spawn_on_free_port(
    name: &str,
    mut spawn: impl FnMut(u16) -> std::process::Child,
) -> (std::process::Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(port);
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if listens(child.id(), port) {
                return (child, port);
            }
            if start.elapsed() > std::time::Duration::from_secs(15) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} did not listen on port {port}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    panic!("{name} exited five times before it listened (ports taken?)");
}

/// Whether process `pid` holds a TCP socket listening on `port` (IPv4 or IPv6, any address).
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 9 && f[1].ends_with(&want) && f[3] == "0A" && inodes.contains(f[9])
            })
    })
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Standard base64 (for basic auth).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One `GET` over a fresh connection (`Connection: close`), with basic auth if given.
pub fn http_get(port: u16, path: &str, auth: Option<(&str, &str)>) -> std::io::Result<Resp> {
    http_request(port, "GET", path, auth)
}

/// [`http_get`] with another method (a `HEAD` response has an empty body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> std::io::Result<Resp> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{u}:{p}").as_bytes())
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no header end: {text:?}"),
        )
    })?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, head.to_owned()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Decodes a `Transfer-Encoding: chunked` body (Apache re-chunks CGI output for HTTP/1.1).
fn dechunk(mut rest: &str) -> std::io::Result<String> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or_else(bad)?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or_else(bad)?);
        rest = after.get(size + 2..).ok_or_else(bad)?;
    }
}

/// Prints a test's figures and keeps them in `target/tmp/reliability-<name>.txt`, which
/// `scripts/test.sh` shows after the run (cargo hides the output of passing tests).
pub fn figures(name: &str, text: &str) {
    eprintln!("{text}");
    let path =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("reliability-{name}.txt"));
    let _ = std::fs::write(path, format!("== {name}\n{text}\n"));
}

/// A small xorshift generator: reproducible randomness without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it did not (the caller decides).
pub fn wait_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends SIGKILL to `child` (no wait).
pub fn sigkill(child: &std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Sum of all samples of the metric `name` in a text-format body.
pub fn sum_of(body: &str, name: &str) -> f64 {
    samples_of(body, name)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until a unix socket accepts connections (the file exists from `bind()`, before
/// `listen()`); false after `limit`.
pub fn wait_listening(sock: &std::path::Path, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}
