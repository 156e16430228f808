//! A minimal built-in HTTP listener (the `demo` command's fallback when no web server is
//! installed). It has no authentication and no TLS: it binds to loopback only unless told
//! otherwise. Production deployments run behind Apache or nginx via FastCGI or CGI.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::request::{Handler, Request};

/// Serves `handler` over plain HTTP on `addr` with `threads` worker threads until the process
/// ends. Refuses non-loopback addresses unless `allow_non_loopback`.
pub fn serve(
    addr: SocketAddr,
    handler: Arc<dyn Handler>,
    threads: usize,
    allow_non_loopback: bool,
) -> io::Result<()> {
    let server = bind(addr, allow_non_loopback)?;
    run(Arc::new(server), handler, threads);
    Ok(())
}

/// Binds the listener (see [`serve`]); separate so callers can report the bound port.
pub fn bind(addr: SocketAddr, allow_non_loopback: bool) -> io::Result<tiny_http::Server> {
    if !allow_non_loopback && !is_loopback(addr.ip()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to listen on {addr}: the built-in HTTP listener has no authentication; use a loopback address"),
        ));
    }
    let listener = std::net::TcpListener::bind(addr)?;
    // Accepted connections inherit TCP_NODELAY from the listener (tiny_http does not set it):
    // without it the last small segment of a response waits for the client's delayed ACK,
    // 40 ms on Linux.
    nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)
        .map_err(io::Error::from)?;
    tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// Answers requests from `server` on `threads` threads; returns when the server is unblocked.
pub fn run(server: Arc<tiny_http::Server>, handler: Arc<dyn Handler>, threads: usize) {
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let server = server.clone();
            let handler = handler.clone();
            std::thread::spawn(move || {
                while let Ok(req) = server.recv() {
                    answer(req, handler.as_ref());
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

/// Turns an HTTP request into CGI meta-variables, as a web server would.
fn to_request(req: &mut tiny_http::Request) -> Request {
    let url = req.url().to_owned();
    let query = url
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default();
    let mut params = vec![
        ("GATEWAY_INTERFACE".to_owned(), "CGI/1.1".to_owned()),
        (
            "REQUEST_METHOD".to_owned(),
            req.method().as_str().to_owned(),
        ),
        ("REQUEST_URI".to_owned(), url),
        ("QUERY_STRING".to_owned(), query),
        ("SERVER_PROTOCOL".to_owned(), "HTTP/1.1".to_owned()),
    ];
    if let Some(peer) = req.remote_addr() {
        params.push(("REMOTE_ADDR".into(), peer.ip().to_string()));
    }
    for h in req.headers() {
        let name = h
            .field
            .as_str()
            .as_str()
            .to_ascii_uppercase()
            .replace('-', "_");
        if name == "AUTHORIZATION" {
            continue; // never handed to the application, as web servers do by default
        }
        params.push((format!("HTTP_{name}"), h.value.as_str().to_owned()));
    }
    let mut body = Vec::new();
    let _ = io::Read::read_to_end(&mut io::Read::take(req.as_reader(), 1 << 20), &mut body);
    Request::from_cgi_params(params, body)
}

fn answer(mut req: tiny_http::Request, handler: &dyn Handler) {
    let request = to_request(&mut req);
    let response =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.handle(&request)))
            .unwrap_or_else(|_| super::request::Response::text(500, "internal error\n"));
    let head_only = request.method == "HEAD";
    let length = response.body.len();
    let (status, headers, body) = (response.status, response.headers, response.body);
    // The body is whole: always send its Content-Length (tiny_http would switch to chunked
    // encoding from 32 KiB on, dropping it for every real scrape).
    let mut out = tiny_http::Response::from_data(if head_only { Vec::new() } else { body })
        .with_status_code(status)
        .with_chunked_threshold(usize::MAX);
    for (k, v) in &headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
    if head_only {
        if let Ok(h) =
            tiny_http::Header::from_bytes(&b"Content-Length"[..], length.to_string().as_bytes())
        {
            out.add_header(h);
        }
    }
    if let Err(e) = req.respond(out) {
        log::debug!("client went away: {e}");
    }
}
