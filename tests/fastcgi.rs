//! The FastCGI and CGI front ends over real sockets and real processes.
//!
//! The client helpers below are written from the FastCGI 1.0 spec independently of
//! `front::fcgi::record`, so a bug shared by encoder and parser cannot hide. One test drives the
//! server with libfcgi's `cgi-fcgi` (Debian package `libfcgi-bin`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otrs_exporter::front::fcgi::{serve, Listener, ServeOptions};
use otrs_exporter::front::request::{Request, Response};

// ---------- a minimal FastCGI client ----------

const BEGIN: u8 = 1;
const ABORT: u8 = 2;
const END: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const GET_VALUES: u8 = 9;
const GET_VALUES_RESULT: u8 = 10;
const UNKNOWN_TYPE: u8 = 11;

fn rec(t: u8, id: u16, content: &[u8]) -> Vec<u8> {
    assert!(content.len() <= 65535);
    let pad = (8 - content.len() % 8) % 8;
    let mut v = vec![1, t, (id >> 8) as u8, id as u8];
    v.extend_from_slice(&(content.len() as u16).to_be_bytes());
    v.extend_from_slice(&[pad as u8, 0]);
    v.extend_from_slice(content);
    v.extend(std::iter::repeat_n(0, pad));
    v
}

fn nv_len(v: &mut Vec<u8>, len: usize) {
    if len < 128 {
        v.push(len as u8);
    } else {
        v.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (n, val) in list {
        nv_len(&mut v, n.len());
        nv_len(&mut v, val.len());
        v.extend_from_slice(n.as_bytes());
        v.extend_from_slice(val.as_bytes());
    }
    v
}

fn stream(t: u8, id: u16, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for chunk in data.chunks(65535) {
        v.extend(rec(t, id, chunk));
    }
    v.extend(rec(t, id, &[]));
    v
}

fn begin(id: u16, keep: bool) -> Vec<u8> {
    rec(BEGIN, id, &[0, 1, keep as u8, 0, 0, 0, 0, 0])
}

/// A whole responder request.
fn request(id: u16, keep: bool, params: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut v = begin(id, keep);
    v.extend(stream(PARAMS, id, &pairs(params)));
    v.extend(stream(STDIN, id, body));
    v
}

fn get(id: u16, keep: bool, path: &str, query: &str) -> Vec<u8> {
    request(
        id,
        keep,
        &[
            ("REQUEST_METHOD", "GET"),
            ("SCRIPT_NAME", path),
            ("QUERY_STRING", query),
            ("REMOTE_USER", "alice"),
        ],
        b"",
    )
}

/// Reads one record; `None` on clean EOF.
fn read_rec(r: &mut impl Read) -> io::Result<Option<(u8, u16, Vec<u8>)>> {
    let mut h = [0u8; 8];
    match r.read(&mut h[..1])? {
        0 => return Ok(None),
        _ => r.read_exact(&mut h[1..])?,
    }
    assert_eq!(h[0], 1, "server sent version {}", h[0]);
    let len = u16::from_be_bytes([h[4], h[5]]) as usize;
    let mut body = vec![0; len + h[6] as usize];
    r.read_exact(&mut body)?;
    body.truncate(len);
    Ok(Some((h[1], u16::from_be_bytes([h[2], h[3]]), body)))
}

#[derive(Debug)]
struct Reply {
    stdout: String,
    protocol_status: u8,
}

/// Reads records until END_REQUEST for `id`, collecting its STDOUT.
fn read_reply(r: &mut impl Read, id: u16) -> Reply {
    let mut out = Vec::new();
    loop {
        let (t, rid, body) = read_rec(r)
            .expect("read reply")
            .expect("server closed before END_REQUEST");
        assert_eq!(rid, id, "record type {t} for unexpected request {rid}");
        match t {
            STDOUT => out.extend(body),
            END => {
                assert_eq!(body.len(), 8);
                return Reply {
                    stdout: String::from_utf8(out).unwrap(),
                    protocol_status: body[4],
                };
            }
            other => panic!("unexpected record type {other}"),
        }
    }
}

/// True once the server has closed the connection (EOF or reset).
fn closed_by_server(r: &mut impl Read) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
}

fn body_of(reply: &Reply) -> &str {
    assert!(
        reply.stdout.starts_with("Status: "),
        "no Status line: {:?}",
        reply.stdout
    );
    reply.stdout.split_once("\r\n\r\n").expect("header end").1
}

// ---------- servers under test ----------

fn echo(req: &Request) -> Response {
    match req.path.as_str() {
        "/panic" => panic!("requested panic"),
        "/big" => return Response::text(200, "x".repeat(5 << 20)),
        _ => {}
    }
    Response::text(
        200,
        format!(
            "method={} path={} query_len={} query={} user={} body={}",
            req.method,
            req.path,
            req.query.len(),
            &req.query[..req.query.len().min(20)],
            req.remote_user().unwrap_or("-"),
            String::from_utf8_lossy(&req.body)
        ),
    )
}

fn test_opts() -> ServeOptions {
    ServeOptions {
        handle_signals: false,
        web_server_addrs: None,
        read_timeout: Duration::from_secs(10),
        ..ServeOptions::default()
    }
}

struct UnixServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl UnixServer {
    fn start(opts: ServeOptions) -> UnixServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fcgi.sock");
        let listener = Listener::bind(&format!("unix:{}", path.display())).unwrap();
        std::thread::spawn(move || serve(listener, Arc::new(echo), opts).unwrap());
        UnixServer { _dir: dir, path }
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }
}

fn start_tcp(opts: ServeOptions) -> SocketAddr {
    let listener = Listener::bind("tcp:127.0.0.1:0").unwrap();
    let addr = match &listener {
        Listener::Tcp(l) => l.local_addr().unwrap(),
        _ => unreachable!(),
    };
    std::thread::spawn(move || serve(listener, Arc::new(echo), opts).unwrap());
    addr
}

fn roundtrip(c: &mut (impl Read + Write), id: u16, keep: bool, path: &str, query: &str) -> Reply {
    c.write_all(&get(id, keep, path, query)).unwrap();
    read_reply(c, id)
}

fn assert_served(server: &UnixServer) {
    let mut c = server.connect();
    let reply = roundtrip(&mut c, 1, false, "/ok", "");
    assert_eq!(
        body_of(&reply),
        "method=GET path=/ok query_len=0 query= user=alice body="
    );
}

// ---------- tests ----------

#[test]
fn simple_get_over_unix_and_tcp() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    let reply = roundtrip(&mut c, 1, false, "/x", "a=1");
    assert_eq!(reply.protocol_status, 0);
    assert!(
        reply
            .stdout
            .starts_with("Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"),
        "{:?}",
        reply.stdout
    );
    assert_eq!(
        body_of(&reply),
        "method=GET path=/x query_len=3 query=a=1 user=alice body="
    );
    assert!(closed_by_server(&mut c), "no KEEP_CONN: server must close");

    let addr = start_tcp(test_opts());
    let mut t = TcpStream::connect(addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = roundtrip(&mut t, 7, false, "/tcp", "");
    assert_eq!(
        body_of(&reply),
        "method=GET path=/tcp query_len=0 query= user=alice body="
    );
}

#[test]
fn post_body_head_and_request_uri() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    c.write_all(&request(
        3,
        true,
        &[
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/index.fcgi"),
            ("PATH_INFO", "/admin"),
            ("REQUEST_URI", "/admin?x=1"),
            ("CONTENT_LENGTH", "5"),
        ],
        b"hello",
    ))
    .unwrap();
    assert_eq!(
        body_of(&read_reply(&mut c, 3)),
        "method=POST path=/admin query_len=0 query= user=- body=hello"
    );
    c.write_all(&request(
        4,
        false,
        &[("REQUEST_METHOD", "HEAD"), ("SCRIPT_NAME", "/h")],
        b"",
    ))
    .unwrap();
    let reply = read_reply(&mut c, 4);
    let (head, body) = reply.stdout.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Length: 51"), "{head}");
    assert_eq!(body, "", "HEAD has no body");
}

#[test]
fn keep_alive_serves_three_requests_on_one_connection() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    for (i, id) in [1u16, 2, 1].into_iter().enumerate() {
        let reply = roundtrip(&mut c, id, true, &format!("/r{i}"), "");
        assert!(body_of(&reply).contains(&format!("path=/r{i} ")));
    }
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        !closed_by_server(&mut c),
        "KEEP_CONN: server must keep the connection"
    );
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = roundtrip(&mut c, 9, false, "/last", "");
    assert!(body_of(&reply).contains("path=/last"));
    assert!(closed_by_server(&mut c));
}

#[test]
fn large_params_and_params_over_the_limit() {
    let server = UnixServer::start(test_opts());
    let query = "a".repeat(1_000_000);
    let mut c = server.connect();
    let reply = roundtrip(&mut c, 1, false, "/big-query", &query);
    assert!(
        body_of(&reply).contains("query_len=1000000 "),
        "{}",
        body_of(&reply)
    );
    let query = "a".repeat(2 << 20);
    let mut c = server.connect();
    let reply = roundtrip(&mut c, 1, false, "/too-big", &query);
    assert!(reply.stdout.starts_with("Status: 431 "), "{}", reply.stdout);
    assert_served(&server);
}

#[test]
fn clients_vanishing_mid_request_or_mid_response_do_not_hurt() {
    let server = UnixServer::start(test_opts());
    // Mid-request: half a PARAMS stream, then gone.
    {
        let mut c = server.connect();
        let full = get(1, false, "/x", "a=1");
        c.write_all(&full[..30]).unwrap();
    }
    // Mid-record header.
    {
        let mut c = server.connect();
        c.write_all(&[1, BEGIN, 0]).unwrap();
    }
    // Mid-response: ask for 5 MiB, read a little, hang up.
    for _ in 0..3 {
        let mut c = server.connect();
        c.write_all(&get(1, false, "/big", "")).unwrap();
        let mut buf = [0u8; 100];
        c.read_exact(&mut buf).unwrap();
    }
    // Over TCP, the reset path.
    let addr = start_tcp(test_opts());
    {
        let mut t = TcpStream::connect(addr).unwrap();
        t.write_all(&get(1, false, "/big", "")).unwrap();
        let mut buf = [0u8; 100];
        t.read_exact(&mut buf).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_served(&server);
    let mut t = TcpStream::connect(addr).unwrap();
    assert!(body_of(&roundtrip(&mut t, 1, false, "/after", "")).contains("path=/after"));
}

#[test]
fn malformed_input_closes_that_connection_only() {
    let server = UnixServer::start(test_opts());
    let bad_version = {
        let mut v = get(1, false, "/x", "");
        v[0] = 2;
        v
    };
    let begin_too_short = rec(BEGIN, 1, &[0, 1]);
    let app_record_from_server = rec(STDOUT, 1, b"hi");
    for bad in [
        bad_version,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        begin_too_short,
        app_record_from_server,
        vec![0xff; 64],
    ] {
        let mut c = server.connect();
        c.write_all(&bad).unwrap();
        assert!(closed_by_server(&mut c), "input {:?}", &bad[..8]);
        assert_served(&server);
    }
}

#[test]
fn get_values_and_unknown_management_records() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    let mut query = Vec::new();
    for name in [
        "FCGI_MAX_CONNS",
        "FCGI_MAX_REQS",
        "FCGI_MPXS_CONNS",
        "X_UNKNOWN",
    ] {
        query.extend(pairs(&[(name, "")]));
    }
    c.write_all(&rec(GET_VALUES, 0, &query)).unwrap();
    let (t, id, body) = read_rec(&mut c).unwrap().unwrap();
    assert_eq!((t, id), (GET_VALUES_RESULT, 0));
    assert_eq!(
        body,
        pairs(&[
            ("FCGI_MAX_CONNS", "64"),
            ("FCGI_MAX_REQS", "64"),
            ("FCGI_MPXS_CONNS", "0")
        ])
    );
    c.write_all(&rec(99, 0, b"whatever")).unwrap();
    let (t, id, body) = read_rec(&mut c).unwrap().unwrap();
    assert_eq!((t, id, body[0], body.len()), (UNKNOWN_TYPE, 0, 99, 8));
    // The connection is still good for a request.
    assert!(body_of(&roundtrip(&mut c, 1, false, "/after", "")).contains("path=/after"));
}

#[test]
fn second_concurrent_request_gets_cant_mpx_conn() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    let first = get(1, true, "/first", "");
    let cut = first.len() - 8; // all but the empty STDIN record
    c.write_all(&first[..cut]).unwrap();
    c.write_all(&get(2, true, "/second", "")).unwrap();
    let (t, id, body) = read_rec(&mut c).unwrap().unwrap();
    assert_eq!(
        (t, id, body[4]),
        (END, 2, 1),
        "FCGI_CANT_MPX_CONN for request 2"
    );
    c.write_all(&first[cut..]).unwrap();
    let reply = read_reply(&mut c, 1);
    assert!(body_of(&reply).contains("path=/first"));
    // An abort of an open request ends it; the connection stays usable.
    c.write_all(&begin(5, true)).unwrap();
    c.write_all(&rec(ABORT, 5, &[])).unwrap();
    let (t, id, _) = read_rec(&mut c).unwrap().unwrap();
    assert_eq!((t, id), (END, 5));
    assert!(body_of(&roundtrip(&mut c, 6, false, "/after", "")).contains("path=/after"));
}

#[test]
fn handler_panic_becomes_500_and_server_lives_on() {
    let server = UnixServer::start(test_opts());
    let mut c = server.connect();
    let reply = roundtrip(&mut c, 1, true, "/panic", "");
    assert!(reply.stdout.starts_with("Status: 500 "), "{}", reply.stdout);
    assert!(body_of(&roundtrip(&mut c, 2, false, "/ok", "")).contains("path=/ok"));
}

#[test]
fn two_hundred_concurrent_clients_are_all_answered() {
    let server = Arc::new(UnixServer::start(test_opts()));
    let addr = start_tcp(test_opts());
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                let path = format!("/c{i}");
                let reply = if i % 2 == 0 {
                    roundtrip(&mut server.connect(), 1, false, &path, "")
                } else {
                    let mut t = TcpStream::connect(addr).unwrap();
                    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    roundtrip(&mut t, 1, false, &path, "")
                };
                assert!(body_of(&reply).contains(&format!("path={path} ")));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn slow_clients_hit_the_read_timeout() {
    let server = UnixServer::start(ServeOptions {
        read_timeout: Duration::from_millis(200),
        ..test_opts()
    });
    // Idle connection.
    let start = Instant::now();
    let mut idle = server.connect();
    assert!(closed_by_server(&mut idle));
    // Dripping one byte every 50 ms: each read succeeds, the request deadline still fires.
    let mut drip = server.connect();
    let req = get(1, false, "/x", "");
    let mut closed = false;
    for b in &req {
        if drip.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(
        closed || closed_by_server(&mut drip),
        "drip-fed request must be cut off"
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_served(&server);
}

#[test]
fn cgi_fcgi_from_libfcgi_talks_to_us() {
    let server = UnixServer::start(test_opts());
    let out = Command::new("cgi-fcgi")
        .args(["-bind", "-connect"])
        .arg(&server.path)
        .env_clear()
        .env("REQUEST_METHOD", "GET")
        .env("SCRIPT_NAME", "/x")
        .env("QUERY_STRING", "a=1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run cgi-fcgi ({e}); install it with `apt-get install libfcgi-bin` \
                 (CI needs this package)"
            )
        });
    assert!(out.status.success(), "cgi-fcgi failed: {out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("Status: 200 OK\r\n"), "{stdout}");
    assert!(stdout.ends_with("\r\n\r\nmethod=GET path=/x query_len=3 query=a=1 user=- body="));
}

// ---------- the example binary in fd-0, systemd and CGI mode ----------

/// Path of `examples/fcgi_echo`, built next to this test binary (`cargo test` builds
/// examples; with `--test fastcgi` alone they are built here on demand).
fn echo_example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>
    let path = profile_dir.join("examples").join("fcgi_echo");
    if !path.exists() {
        let target_dir = profile_dir.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", "fcgi_echo", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --example fcgi_echo");
        assert!(
            status.success() && path.exists(),
            "could not build {}",
            path.display()
        );
    }
    path
}

fn listening_socket() -> (tempfile::TempDir, PathBuf, OwnedFd) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("child.sock");
    let l = UnixListener::bind(&path).unwrap();
    (dir, path, OwnedFd::from(l))
}

fn connect_retry(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn sigterm(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "child ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fd0_mode_serves_and_stops_gracefully_on_sigterm() {
    let (_dir, path, fd) = listening_socket();
    let mut child = Command::new(echo_example())
        .stdin(Stdio::from(fd))
        .env_remove("LISTEN_FDS")
        .env_remove("GATEWAY_INTERFACE")
        .spawn()
        .unwrap();
    let mut c = connect_retry(&path);
    let reply = roundtrip(&mut c, 1, true, "/fd0", "q");
    assert!(body_of(&reply).starts_with("method=GET path=/fd0 query=q user=alice"));
    // An idle kept-alive connection plus a request in flight when SIGTERM arrives: the
    // in-flight one is answered, then the child exits 0.
    let mut busy = connect_retry(&path);
    busy.write_all(&get(1, false, "/sleep", "")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&child);
    let reply = read_reply(&mut busy, 1);
    assert!(
        body_of(&reply).contains("path=/sleep"),
        "in-flight request finished"
    );
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    assert!(closed_by_server(&mut c), "idle connection closed on stop");
}

#[test]
fn systemd_socket_activation_mode() {
    let (_dir, path, fd) = listening_socket();
    // Like systemd: the socket at fd 3, LISTEN_PID naming the exec'd process itself.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0""#)
        .arg(echo_example())
        .stdin(Stdio::from(fd))
        .env_remove("GATEWAY_INTERFACE")
        .spawn()
        .unwrap();
    let mut c = connect_retry(&path);
    let reply = roundtrip(&mut c, 1, false, "/systemd", "");
    assert!(body_of(&reply).contains("path=/systemd"));
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
}

#[test]
fn cgi_mode_answers_one_request() {
    let mut child = Command::new(echo_example())
        .env_clear()
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("REQUEST_METHOD", "POST")
        .env("SCRIPT_NAME", "/cgi-bin/echo")
        .env("PATH_INFO", "/metrics")
        .env("QUERY_STRING", "x=1")
        .env("REMOTE_USER", "bob")
        .env("CONTENT_LENGTH", "5")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello, and more")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 69\r\n\r\n\
         method=POST path=/cgi-bin/echo/metrics query=x=1 user=bob body=hello\n"
    );
}

#[test]
fn standalone_without_listen_is_a_usage_error() {
    let out = Command::new(echo_example())
        .env_remove("GATEWAY_INTERFACE")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

/// Slowloris against the FastCGI socket: more slow connections than the connection cap, each
/// trickling its request a byte at a time and reconnecting when closed. A real web server's
/// requests (complete at once) must still be answered promptly, with the default settings
/// (64 connections, 30 s to send a request).
#[test]
fn slowloris_connections_beyond_the_cap_cannot_starve_the_web_server() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let server = UnixServer::start(ServeOptions {
        handle_signals: false,
        web_server_addrs: None,
        ..ServeOptions::default()
    });
    let cap = ServeOptions::default().max_connections;
    let attackers = cap + 40;
    let stop = Arc::new(AtomicBool::new(false));
    let reconnects = Arc::new(AtomicU64::new(0));
    let path = server.path.clone();
    let slow = {
        let (stop, reconnects) = (stop.clone(), reconnects.clone());
        std::thread::spawn(move || {
            let req = get(1, true, "/slow", "");
            let open = |p: &Path| {
                let s = UnixStream::connect(p).ok()?;
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut conns: Vec<(Option<UnixStream>, usize)> =
                (0..attackers).map(|_| (open(&path), 0)).collect();
            while !stop.load(Ordering::Relaxed) {
                for (c, sent) in conns.iter_mut() {
                    let alive = match c {
                        Some(s) => {
                            let mut probe = [0u8; 1];
                            let closed = matches!(s.read(&mut probe), Ok(0))
                                || s.write(&req[*sent % req.len()..][..1]).is_err();
                            *sent += 1;
                            !closed
                        }
                        None => false,
                    };
                    if !alive {
                        // Closed by the server: come back at once, like an attacker would.
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        *c = open(&path);
                        *sent = 0;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // The attackers hold every connection slot.
    std::thread::sleep(Duration::from_millis(1500));
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let mut c = server.connect();
        c.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let reply = roundtrip(&mut c, 1, false, "/ok", "");
        assert!(body_of(&reply).starts_with("method=GET path=/ok"));
        latencies.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    slow.join().unwrap();
    let worst = latencies.iter().max().unwrap();
    let text = format!(
        "slowloris: {attackers} slow connections (cap {cap}), {} reconnects; 10 complete \
         requests answered in {:?} (worst {worst:?})",
        reconnects.load(Ordering::Relaxed),
        latencies
            .iter()
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
    );
    eprintln!("{text}");
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-slowloris.txt"),
        format!("== slowloris\n{text}\n"),
    );
    // Generous: far below the 30 s a slow connection may take to send its request.
    assert!(*worst < Duration::from_secs(10), "{text}");
}
