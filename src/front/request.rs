//! The protocol-neutral request and response shared by the FastCGI and CGI front ends.
//!
//! Both front ends deliver the CGI/1.1 meta-variables (RFC 3875) as `params` and expect a CGI
//! response (`Status:` line, headers, blank line, body), so handlers never see which one
//! carried the request.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A request as the web server described it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `REQUEST_METHOD`, e.g. `GET`.
    pub method: String,
    /// The request path, not percent-decoded. Taken from the first that is non-empty:
    /// 1. the path part (before `?`) of `REQUEST_URI`, which Apache (mod_fcgid, mod_proxy_fcgi,
    ///    CGI) and nginx's stock `fastcgi_params` always send, and which is the path the client
    ///    asked for whatever `SCRIPT_NAME`/`PATH_INFO` split the server chose;
    /// 2. `SCRIPT_NAME` + `PATH_INFO` (plain CGI/1.1, e.g. `cgi-fcgi` without `REQUEST_URI`);
    /// 3. `DOCUMENT_URI` (nginx).
    pub path: String,
    /// `QUERY_STRING`, not decoded.
    pub query: String,
    /// All meta-variables in the order received. Bytes that are not UTF-8 are replaced with
    /// U+FFFD.
    pub params: Vec<(String, String)>,
    /// The request body (`CONTENT_LENGTH` bytes of stdin).
    pub body: Vec<u8>,
}

impl Request {
    /// Builds a request from CGI meta-variables and a body, deriving `method`, `path` and
    /// `query` as documented on the fields.
    pub fn from_cgi_params(params: Vec<(String, String)>, body: Vec<u8>) -> Request {
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let method = get("REQUEST_METHOD").to_owned();
        let query = get("QUERY_STRING").to_owned();
        let path = match uri_path(get("REQUEST_URI")) {
            p if !p.is_empty() => p.to_owned(),
            _ => match format!("{}{}", get("SCRIPT_NAME"), get("PATH_INFO")) {
                p if !p.is_empty() => p,
                _ => get("DOCUMENT_URI").to_owned(),
            },
        };
        Request {
            method,
            path,
            query,
            params,
            body,
        }
    }

    /// The value of the meta-variable `name` (exact, case-sensitive match), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of HTTP request header `name` (case-insensitive): `Accept` is looked up as
    /// `HTTP_ACCEPT`, and `Content-Type`/`Content-Length` as the unprefixed CGI variables.
    pub fn header(&self, name: &str) -> Option<&str> {
        let var: String = name
            .chars()
            .map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        match var.as_str() {
            "CONTENT_TYPE" | "CONTENT_LENGTH" => self.param(&var),
            _ => self.param(&format!("HTTP_{var}")),
        }
    }

    /// `REMOTE_USER` if set and non-empty: the user the web server authenticated. The exporter
    /// trusts it, which is why the FastCGI socket must only be reachable by the web server.
    pub fn remote_user(&self) -> Option<&str> {
        self.param("REMOTE_USER").filter(|u| !u.is_empty())
    }
}

/// The path part of a `REQUEST_URI`: an absolute-form URI loses scheme and authority, and the
/// query (from `?`) and fragment (from `#`) are cut off.
fn uri_path(uri: &str) -> &str {
    let uri = match uri.find("://") {
        Some(i) if !uri[..i].contains('/') => {
            let rest = &uri[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        _ => uri,
    };
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    &uri[..end]
}

/// A response in CGI terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers other than `Status` and `Content-Length` (which [`Response::write_cgi`] writes
    /// itself). Without a `Content-Type`, `text/plain; charset=utf-8` is sent: Prometheus 3
    /// rejects scrapes that lack one.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Kept only to be dropped with the response, after it was sent.
    retained: Retained,
}

/// What a [`Response`] keeps only to drop it after the front end sent the response (see
/// [`Response::retaining`]). Clones hold nothing, and it never takes part in comparisons.
#[derive(Default)]
struct Retained(Option<Box<dyn std::any::Any + Send>>);

impl Clone for Retained {
    fn clone(&self) -> Retained {
        Retained(None)
    }
}

impl PartialEq for Retained {
    fn eq(&self, _: &Retained) -> bool {
        true
    }
}

impl Eq for Retained {}

impl std::fmt::Debug for Retained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Retained(..)"
        } else {
            "Retained"
        })
    }
}

/// Content type used when a response names none.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

impl Response {
    /// A response with the given status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            retained: Retained::default(),
        }
    }

    /// Keeps `what` (say, the snapshot a scrape rendered) until the response is dropped,
    /// which every front end does after sending it: freeing it is then off the reply's path.
    pub fn retaining(mut self, what: impl Send + 'static) -> Response {
        self.retained = Retained(Some(Box::new(what)));
        self
    }

    /// A `text/plain` response, e.g. for errors.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, DEFAULT_CONTENT_TYPE, body.into())
    }

    /// Appends the CGI form of the response to `out`: `Status: 200 OK`, the headers (with
    /// CR/LF stripped from names and values so a value cannot inject headers), an explicit
    /// `Content-Type` and `Content-Length`, a blank line and — unless `head_only` (HEAD
    /// requests) — the body. `Content-Length` always gives the body's length.
    pub fn write_cgi(&self, out: &mut Vec<u8>, head_only: bool) {
        out.reserve(256 + if head_only { 0 } else { self.body.len() });
        self.write_cgi_head(out);
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }

    /// Appends the CGI header block of [`Response::write_cgi`] (ending in the empty line),
    /// without the body: a front end that sends the body from where it is.
    pub fn write_cgi_head(&self, out: &mut Vec<u8>) {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        // Writing to a Vec cannot fail.
        let _ = write!(out, "Status: {} {}\r\n", self.status, reason(self.status));
        let mut has_type = false;
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("status") {
                continue;
            }
            has_type |= name.eq_ignore_ascii_case("content-type");
            let _ = write!(out, "{}: {}\r\n", clean(name), clean(value));
        }
        if !has_type {
            let _ = write!(out, "Content-Type: {DEFAULT_CONTENT_TYPE}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
    }
}

/// Reason phrase for the status codes an exporter plausibly sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Something that answers requests; one instance serves all connections concurrently.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. A panic is caught by the front end and turned into a 500.
    fn handle(&self, req: &Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: &Request) -> Response {
        self(req)
    }
}

/// Runs the handler, turning a panic into a 500 (the panic message itself goes to stderr via
/// the panic hook, i.e. into the web server's error log).
pub(crate) fn call_handler(handler: &dyn Handler, req: &Request) -> Response {
    catch_unwind(AssertUnwindSafe(|| handler.handle(req))).unwrap_or_else(|_| {
        log::error!("handler panicked on {} {}", req.method, req.path);
        Response::text(500, "internal error\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_retained_value_lives_as_long_as_the_response_and_no_clone_holds_it() {
        let probe = std::sync::Arc::new(());
        let r = Response::text(200, "x").retaining(probe.clone());
        assert_eq!(std::sync::Arc::strong_count(&probe), 2);
        let copy = r.clone();
        assert_eq!(copy, r, "what a response retains is not part of it");
        assert_eq!(std::sync::Arc::strong_count(&probe), 2);
        drop(copy);
        assert_eq!(std::sync::Arc::strong_count(&probe), 2);
        drop(r);
        assert_eq!(std::sync::Arc::strong_count(&probe), 1);
    }

    #[test]
    fn path_prefers_request_uri() {
        let r = Request::from_cgi_params(
            params(&[
                ("REQUEST_METHOD", "GET"),
                ("SCRIPT_NAME", "/cgi-bin/exporter.fcgi"),
                ("PATH_INFO", "/metrics"),
                ("REQUEST_URI", "/metrics%2Fx?collect%5B%5D=db"),
                ("QUERY_STRING", "collect%5B%5D=db"),
            ]),
            vec![],
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics%2Fx");
        assert_eq!(r.query, "collect%5B%5D=db");
    }

    #[test]
    fn path_fallbacks() {
        let r = Request::from_cgi_params(
            params(&[("SCRIPT_NAME", "/x"), ("PATH_INFO", "/y")]),
            vec![],
        );
        assert_eq!(r.path, "/x/y");
        let r = Request::from_cgi_params(params(&[("DOCUMENT_URI", "/metrics")]), vec![]);
        assert_eq!(r.path, "/metrics");
        let r = Request::from_cgi_params(
            params(&[("REQUEST_URI", "http://h:1/p?q"), ("SCRIPT_NAME", "/x")]),
            vec![],
        );
        assert_eq!(r.path, "/p");
        assert_eq!(uri_path("https://host"), "/");
        assert_eq!(uri_path("/a#frag"), "/a");
        assert_eq!(uri_path("/a/b://c"), "/a/b://c");
    }

    #[test]
    fn headers_params_and_user() {
        let r = Request::from_cgi_params(
            params(&[
                ("HTTP_ACCEPT", "text/plain"),
                ("HTTP_X_FORWARDED_FOR", "1.2.3.4"),
                ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
                ("REMOTE_USER", ""),
            ]),
            vec![],
        );
        assert_eq!(r.header("accept"), Some("text/plain"));
        assert_eq!(r.header("X-Forwarded-For"), Some("1.2.3.4"));
        assert_eq!(
            r.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.header("Host"), None);
        assert_eq!(r.remote_user(), None, "empty REMOTE_USER is no user");
        assert_eq!(r.param("REMOTE_USER"), Some(""));
    }

    #[test]
    fn cgi_output() {
        let mut out = Vec::new();
        let mut resp = Response::new(200, "text/plain; version=0.0.4", "abc");
        resp.headers.push(("Content-Length".into(), "999".into()));
        resp.headers
            .push(("X-Evil".into(), "a\r\nSet-Cookie: x".into()));
        resp.write_cgi(&mut out, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
             X-Evil: a  Set-Cookie: x\r\nContent-Length: 3\r\n\r\nabc"
        );
        let mut head = Vec::new();
        Response {
            status: 404,
            headers: vec![],
            body: b"nope".to_vec(),
            retained: Retained::default(),
        }
        .write_cgi(&mut head, true);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "Status: 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 4\r\n\r\n"
        );
    }
}
