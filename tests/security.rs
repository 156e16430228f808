//! What the security model (README "Security") enforces, through the real binary: FastCGI on
//! a non-loopback TCP address is refused unless forced; the Unix socket and the segment get
//! the configured restrictive modes and group; secrets (a canary password in Config.pm, in the
//! config file, in the environment, in a Redis URL) appear in no output of any command or
//! error path.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, BIN, METRICS};

const CANARY: &str = "Canary-Pw-9c41e7";

fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("OTRS_EXPORTER_CONFIG", config)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn all_output(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A group other than the current one that this (root) test process may give files to, or
/// `None` when not root.
fn other_group() -> Option<(String, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["daemon", "nogroup", "adm"].iter().find_map(|n| {
        nix::unistd::Group::from_name(n)
            .ok()
            .flatten()
            .map(|g| (g.name, g.gid.as_raw()))
    })
}

/// Kills the child on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fastcgi_on_a_non_loopback_address_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "otrs_home = \"/nonexistent\"\n[segment]\npath = \"{}\"\n",
            dir.path().join("seg").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let spec = format!("0.0.0.0:{port}");
    let out = run(&cfg, &["serve", "--listen", &spec], &[]);
    assert!(!out.status.success());
    let err = all_output(&out);
    assert!(
        err.contains("refusing to serve FastCGI on non-loopback address 0.0.0.0")
            && err.contains("REMOTE_USER")
            && err.contains("--allow-non-loopback"),
        "{err}"
    );
    // `serve` with `flags` and `--listen` at `listen(port)`, on a free port; it must answer
    // over loopback.
    let serves = |flags: &[&str], listen: fn(u16) -> String| {
        let (child, port) = common::spawn_on_free_port("serve", |port| {
            Command::new(BIN)
                .arg("serve")
                .args(flags)
                .args(["--listen", &listen(port)])
                .env("OTRS_EXPORTER_CONFIG", &cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let _server = Server(child);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    };
    // Forced: it serves (reachable over loopback, too).
    serves(&["--allow-non-loopback"], |port| format!("0.0.0.0:{port}"));
    // Loopback is fine without the flag.
    serves(&[], |port| format!("tcp:127.0.0.1:{port}"));
}

#[test]
fn unix_socket_and_segment_get_restrictive_modes_and_the_web_server_group() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fcgi.sock");
    let seg = dir.path().join("shm/segment");
    let group = other_group();
    let group_line = |key: &str| match &group {
        Some((name, _)) => format!("{key} = \"{name}\"\n"),
        None => String::new(),
    };
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "otrs_home = \"/nonexistent\"\n[segment]\npath = \"{}\"\n{}[web]\nlisten = \"unix:{}\"\n{}",
            seg.display(),
            group_line("group"),
            sock.display(),
            group_line("socket_group"),
        ),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let child = Command::new(BIN)
        .arg("serve")
        .env("OTRS_EXPORTER_CONFIG", &cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let server = Server(child);
    // The socket file exists (owner-only) before its mode and group are set; serve says it
    // serves once they are.
    wait_until("serve sets up the socket", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("serving FastCGI on"))
    });
    let m = std::fs::metadata(&sock).unwrap();
    assert_eq!(m.mode() & 0o777, 0o660, "socket mode");
    if let Some((_, gid)) = group {
        assert_eq!(m.gid(), gid, "socket group");
    }
    drop(server);

    // The segment: created with its directory by the first command that opens it.
    let out = run(&cfg, &["segment", "dump"], &[]);
    assert!(out.status.success(), "{}", all_output(&out));
    let d = std::fs::metadata(seg.parent().unwrap()).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o2770, "segment directory mode");
    let f = std::fs::metadata(&seg).unwrap();
    assert_eq!(f.mode() & 0o777, 0o660, "segment mode");
    if let Some((_, gid)) = group {
        assert_eq!((d.gid(), f.gid()), (gid, gid), "segment group");
    }

    // A narrower socket mode is applied as configured; modes with o+w are refused.
    std::fs::write(
        &cfg,
        format!(
            "otrs_home = \"/nonexistent\"\n[segment]\npath = \"{}\"\n[web]\nlisten = \"unix:{}\"\nsocket_mode = \"0600\"\n",
            seg.display(),
            sock.display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("serve")
        .env("OTRS_EXPORTER_CONFIG", &cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    wait_until("serve creates the socket", || {
        std::fs::metadata(&sock).is_ok_and(|m| m.mode() & 0o777 == 0o600)
    });
    drop(server);
    for (key, section) in [("socket_mode", "web"), ("mode", "segment")] {
        std::fs::write(&cfg, format!("[{section}]\n{key} = \"0666\"\n")).unwrap();
        let out = run(
            &cfg,
            &["serve", "--listen", "unix:/nonexistent/x.sock"],
            &[],
        );
        assert!(!out.status.success());
        let err = all_output(&out);
        assert!(
            err.contains(&format!("{section}.{key}")) && err.contains("write permission to others"),
            "{err}"
        );
    }
}

/// A CGI scrape with `config`: the whole response and stderr.
fn cgi_scrape(config: &Path) -> String {
    let out = Command::new(BIN)
        .env_clear()
        .env("OTRS_EXPORTER_CONFIG", config)
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", METRICS)
        .env("QUERY_STRING", "")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    all_output(&out)
}

#[test]
fn a_canary_password_appears_in_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("otrs");
    std::fs::create_dir_all(home.join("Kernel")).unwrap();
    // MariaDB checks passwords: this user does not exist, so every connection fails.
    std::fs::write(
        home.join("Kernel/Config.pm"),
        format!(
            "package Kernel::Config;\nsub Load {{\n    my $Self = shift;\n\
             \x20   $Self->{{DatabaseHost}} = '127.0.0.1';\n\
             \x20   $Self->{{Database}} = 'otrs_canary';\n\
             \x20   $Self->{{DatabaseUser}} = 'otrs_canary';\n\
             \x20   $Self->{{DatabasePw}} = '{CANARY}';\n\
             \x20   $Self->{{DatabaseDSN}} = \"DBI:mysql:database=$Self->{{Database}};host=$Self->{{DatabaseHost}};\";\n\
             \x20   return 1;\n}}\n1;\n"
        ),
    )
    .unwrap();
    let base = format!(
        "otrs_home = \"{}\"\nlog_level = \"debug\"\n[segment]\npath = \"{}\"\n[db]\nconnect_timeout_seconds = 2.0\n",
        home.display(),
        dir.path().join("seg/segment").display()
    );
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, &base).unwrap();
    let mut outputs: Vec<(String, String)> = Vec::new();
    macro_rules! record {
        ($what:expr, $text:expr $(,)?) => {
            outputs.push(($what.to_string(), $text))
        };
    }

    // Config.pm password, wrong for the server.
    for args in [
        &["check-config"][..],
        &["selftest"],
        &["selftest", "--json"],
        &["segment", "dump"],
        &["segment", "dump", "--json"],
    ] {
        record!(&args.join(" "), all_output(&run(&cfg, args, &[])));
    }
    let scrape = cgi_scrape(&cfg);
    assert!(
        scrape.contains("otrs_exporter_collector_success{collector=\"tickets\"} 0"),
        "the DB collectors ran and failed: {scrape}"
    );
    record!("CGI scrape", scrape);
    let selftest = &outputs[1].1;
    assert!(
        selftest.contains("FAIL db_connect") && selftest.contains("Access denied"),
        "{selftest}"
    );

    // The same password from the environment and in the config file.
    record!(
        "check-config with env password",
        all_output(&run(
            &cfg,
            &["check-config"],
            &[("OTRS_EXPORTER_DB_PASSWORD", CANARY)],
        )),
    );
    std::fs::write(&cfg, format!("{base}password = \"{CANARY}\"\n")).unwrap();
    record!(
        "check-config",
        all_output(&run(&cfg, &["check-config"], &[]))
    );
    record!("selftest", all_output(&run(&cfg, &["selftest"], &[])));
    record!("CGI scrape", cgi_scrape(&cfg));

    // Error paths: a password of the wrong type, a Redis URL with a bad port, an expression
    // OTRS' Config.pm reader cannot evaluate, a DSN that is not DBI.
    std::fs::write(&cfg, format!("{base}password = 917263548\n")).unwrap();
    let out = all_output(&run(&cfg, &["check-config"], &[]));
    assert!(out.contains("db.password: wrong type"), "{out}");
    assert!(!out.contains("917263548"), "{out}");
    std::fs::write(
        &cfg,
        format!("{base}[cache]\nredis_url = \"redis://:{CANARY}@127.0.0.1:notaport/0\"\n"),
    )
    .unwrap();
    let out = all_output(&run(&cfg, &["check-config"], &[]));
    assert!(out.contains("cache.redis_url"), "{out}");
    record!("bad redis_url", out);
    std::fs::write(
        &cfg,
        format!("{base}[cache]\nredis_url = \"redis://:{CANARY}@127.0.0.1:6390/0\"\n"),
    )
    .unwrap();
    record!(
        "check-config redis",
        all_output(&run(&cfg, &["check-config"], &[])),
    );
    std::fs::write(
        &cfg,
        format!("{base}dsn = \"DBI:Pg:dbname=x;password={CANARY};host=127.0.0.1\"\n"),
    )
    .unwrap();
    record!(
        "check-config dsn",
        all_output(&run(&cfg, &["check-config"], &[])),
    );
    std::fs::write(
        &cfg,
        format!("{base}dsn = \"postgres://u:{CANARY}@db/otrs\"\n"),
    )
    .unwrap();
    let out = all_output(&run(&cfg, &["check-config"], &[]));
    assert!(out.contains("not a DBI data source"), "{out}");
    record!("check-config URL dsn", out);
    std::fs::write(&cfg, &base).unwrap();
    std::fs::write(
        home.join("Kernel/Config.pm"),
        format!("$Self->{{DatabasePw}} = decrypt('{CANARY}');\n$Self->{{DatabaseHost}} = '127.0.0.1';\n"),
    )
    .unwrap();
    let out = all_output(&run(&cfg, &["selftest"], &[]));
    assert!(out.contains("cannot read DatabasePw without Perl"), "{out}");
    record!("selftest with an unreadable DatabasePw", out);
    record!("CGI scrape", cgi_scrape(&cfg));

    for (what, text) in &outputs {
        assert!(!text.contains(CANARY), "{what} shows the password:\n{text}");
        assert!(!text.is_empty(), "{what}: no output at all");
    }
}
