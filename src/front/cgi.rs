//! Plain CGI: one request per process, meta-variables in the environment, body on stdin,
//! response on stdout.

use std::io::{self, Read, Write};

use super::request::{call_handler, Handler, Request, Response};

/// Largest request body a CGI request may carry; longer bodies get 413 (the exporter's own
/// forms are a few hundred bytes).
pub const MAX_CGI_BODY: usize = 1 << 20;

/// Answers the one request described by the environment and stdin, writing the CGI response
/// (always with an explicit `Content-Type`) to stdout. A handler panic becomes a 500. For a
/// process that exits next: the response is left to the exit to free.
pub fn run_cgi(handler: &dyn Handler) -> io::Result<()> {
    let params: Vec<(String, String)> = std::env::vars_os()
        .map(|(n, v)| {
            (
                n.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let (response, head_only) = answer(handler, params, io::stdin().lock(), MAX_CGI_BODY);
    // The header block, then the body from where it is (not copied behind the header: for a
    // 1 MB scrape that copy and its fresh pages cost a CGI process about a millisecond).
    let mut head = Vec::with_capacity(256);
    response.write_cgi_head(&mut head);
    let mut stdout = io::stdout().lock();
    stdout.write_all(&head)?;
    if !head_only {
        stdout.write_all(&response.body)?;
    }
    // The process exits next: unmapping the body first would only delay that.
    std::mem::forget(response);
    stdout.flush()
}

/// [`answer`], appending the whole CGI response to `out`.
#[cfg(test)]
fn respond(
    handler: &dyn Handler,
    params: Vec<(String, String)>,
    stdin: impl Read,
    max_body: usize,
    out: &mut Vec<u8>,
) {
    let (response, head_only) = answer(handler, params, stdin, max_body);
    response.write_cgi(out, head_only);
}

/// Reads the body named by `CONTENT_LENGTH` from `stdin` (at most `max_body` bytes) and runs
/// the handler; returns the response and whether only its header block is to be sent (HEAD).
fn answer(
    handler: &dyn Handler,
    params: Vec<(String, String)>,
    stdin: impl Read,
    max_body: usize,
) -> (Response, bool) {
    // Empty means no body (RFC 3875 4.1.2): nginx's fastcgi_params sends `CONTENT_LENGTH ""`
    // for a GET, and fcgiwrap hands it on to the CGI as is.
    let length = params
        .iter()
        .find(|(n, v)| n == "CONTENT_LENGTH" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().parse::<usize>());
    let body_result = match length {
        None => Ok(Vec::new()),
        Some(Err(_)) => Err(Response::text(400, "invalid CONTENT_LENGTH\n")),
        Some(Ok(n)) if n > max_body => Err(Response::text(
            413,
            format!("request body larger than {max_body} bytes\n"),
        )),
        Some(Ok(n)) => {
            let mut body = Vec::with_capacity(n);
            match stdin.take(n as u64).read_to_end(&mut body) {
                Ok(_) => Ok(body),
                Err(e) => Err(Response::text(400, format!("reading request body: {e}\n"))),
            }
        }
    };
    let req = Request::from_cgi_params(params, Vec::new());
    let head_only = req.method == "HEAD";
    let response = match body_result {
        Ok(body) => call_handler(handler, &Request { body, ..req }),
        Err(resp) => resp,
    };
    (response, head_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(req: &Request) -> Response {
        if req.path == "/panic" {
            panic!("test panic");
        }
        Response::text(
            200,
            format!("{} {} {}", req.method, req.path, req.body.len()),
        )
    }

    fn run(params: &[(&str, &str)], stdin: &[u8]) -> String {
        let p = params
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut out = Vec::new();
        respond(&echo, p, stdin, 10, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn body_is_bounded_by_content_length() {
        let out = run(
            &[
                ("REQUEST_METHOD", "POST"),
                ("SCRIPT_NAME", "/a"),
                ("CONTENT_LENGTH", "3"),
            ],
            b"abcdef",
        );
        assert!(out.ends_with("\r\n\r\nPOST /a 3"), "{out}");
        let out = run(&[("CONTENT_LENGTH", "11")], b"");
        assert!(out.starts_with("Status: 413 "), "{out}");
        let out = run(&[("CONTENT_LENGTH", "x")], b"");
        assert!(out.starts_with("Status: 400 "), "{out}");
        let out = run(&[("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "")], b"");
        assert!(out.starts_with("Status: 200 "), "empty = no body: {out}");
    }

    #[test]
    fn head_and_panic() {
        let out = run(&[("REQUEST_METHOD", "HEAD"), ("SCRIPT_NAME", "/a")], b"");
        assert!(out.ends_with("Content-Length: 9\r\n\r\n"), "{out}");
        let out = run(&[("SCRIPT_NAME", "/panic")], b"");
        assert!(out.starts_with("Status: 500 "), "{out}");
    }
}
