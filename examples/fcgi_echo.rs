//! A FastCGI/CGI echo responder exercising `otrs_exporter::front` end to end; the integration
//! tests in `tests/fastcgi.rs` run it in fd-0, systemd and CGI mode.
//!
//! Usage: as a CGI, under a FastCGI process manager (listener on fd 0), with systemd socket
//! activation, or `fcgi_echo --listen unix:/path|tcp:127.0.0.1:port`.
//!
//! Paths: `/sleep` answers after 300 ms, `/panic` panics, anything else echoes the request.

use std::sync::Arc;
use std::time::Duration;

use otrs_exporter::front::cgi::run_cgi;
use otrs_exporter::front::detect::{detect, Launch};
use otrs_exporter::front::fcgi::{serve, Listener, ServeOptions};
use otrs_exporter::front::request::{Request, Response};

/// Logs warnings and errors to stderr (the web server's error log).
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "fcgi_echo[{}] {}: {}",
                std::process::id(),
                r.level(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn echo(req: &Request) -> Response {
    match req.path.as_str() {
        "/sleep" => std::thread::sleep(Duration::from_millis(300)),
        "/panic" => panic!("requested panic"),
        _ => {}
    }
    Response::text(
        200,
        format!(
            "method={} path={} query={} user={} body={}\n",
            req.method,
            req.path,
            req.query,
            req.remote_user().unwrap_or("-"),
            String::from_utf8_lossy(&req.body)
        ),
    )
}

fn main() -> std::io::Result<()> {
    static LOGGER: StderrLog = StderrLog;
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Info));
    let opts = ServeOptions::default();
    let listener = match detect() {
        Launch::Cgi => return run_cgi(&echo),
        Launch::FastCgiFd0 => Listener::from_stdin()?,
        Launch::SystemdFds(fds) => Listener::from_systemd(&fds)?,
        Launch::Standalone => {
            let args: Vec<String> = std::env::args().collect();
            match args.get(1..3) {
                Some([flag, spec]) if flag == "--listen" => Listener::bind(spec)?,
                _ => {
                    eprintln!("usage: {} --listen unix:/path|tcp:127.0.0.1:port", args[0]);
                    std::process::exit(2);
                }
            }
        }
    };
    serve(listener, Arc::new(echo), opts)
}
