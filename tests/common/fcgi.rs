//! A minimal FastCGI client for tests that talk to a real `otrs-exporter serve` process: one
//! responder request per connection, STDOUT collected until END_REQUEST.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

fn rec(t: u8, content: &[u8], out: &mut Vec<u8>) {
    for chunk in content.chunks(65535) {
        push_rec(t, chunk, out);
    }
    push_rec(t, &[], out);
}

fn push_rec(t: u8, content: &[u8], out: &mut Vec<u8>) {
    let pad = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[1, t, 0, 1]);
    out.extend_from_slice(&(content.len() as u16).to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0, pad));
}

fn nv_len(v: &mut Vec<u8>, len: usize) {
    if len < 128 {
        v.push(len as u8);
    } else {
        v.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// The bytes of a whole GET request (request id 1, connection closed after it).
pub fn get_request(path: &str, query: &str) -> Vec<u8> {
    let mut params = Vec::new();
    for (n, v) in [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", path),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
    ] {
        nv_len(&mut params, n.len());
        nv_len(&mut params, v.len());
        params.extend_from_slice(n.as_bytes());
        params.extend_from_slice(v.as_bytes());
    }
    let mut out = Vec::new();
    push_rec(1, &[0, 1, 0, 0, 0, 0, 0, 0], &mut out);
    rec(4, &params, &mut out);
    rec(5, &[], &mut out);
    out
}

/// Reads records until END_REQUEST; returns the HTTP status (from the `Status:` line, 200 when
/// absent) and the body.
pub fn read_response(r: &mut impl Read) -> io::Result<(u16, String)> {
    let mut stdout = Vec::new();
    loop {
        let mut h = [0u8; 8];
        r.read_exact(&mut h)?;
        let len = u16::from_be_bytes([h[4], h[5]]) as usize;
        let mut body = vec![0; len + h[6] as usize];
        r.read_exact(&mut body)?;
        body.truncate(len);
        match h[1] {
            6 => stdout.extend(body),
            3 => break,
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no header end"))?;
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .and_then(|s| s.get(..3)?.parse().ok())
        .unwrap_or(200);
    Ok((status, body.to_owned()))
}

/// One GET over a fresh unix-socket connection, with a read timeout.
pub fn get(socket: &Path, path: &str, query: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(&get_request(path, query))?;
    read_response(&mut s)
}
