//! The access-log line format the exporter ships for Apache and nginx, and its parser.
//!
//! Tab-separated, tagged with a version and the server, so a line from another format is
//! rejected instead of misread:
//!
//! ```text
//! otrs-exporter:1 <TAB> apache|nginx <TAB> worker pid <TAB> duration <TAB> body bytes
//!   <TAB> method <TAB> path?query <TAB> status <TAB> referer
//! ```
//!
//! Apache writes the duration in microseconds (`%{us}T`), nginx in seconds with millisecond
//! resolution (`$request_time`). Both servers escape tabs and control characters inside fields,
//! so a tab always separates fields.

/// Apache `LogFormat` for `CustomLog "|/usr/bin/otrs-exporter ingest" otrs_exporter`.
pub const APACHE_LOG_FORMAT: &str = r#"LogFormat "otrs-exporter:1\tapache\t%P\t%{us}T\t%B\t%m\t%U%q\t%>s\t%{Referer}i" otrs_exporter"#;

/// nginx `log_format` for the file the exporter follows.
pub const NGINX_LOG_FORMAT: &str = "log_format otrs_exporter 'otrs-exporter:1\\tnginx\\t$pid\\t$request_time\\t$body_bytes_sent\\t$request_method\\t$request_uri\\t$status\\t$http_referer';";

/// Longest line accepted; longer lines are malformed (and skipped whole).
pub const MAX_LINE: usize = 16 * 1024;

/// One parsed access-log line. Borrowed from the input line.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine<'a> {
    /// PID of the web-server worker that served the request.
    pub pid: u32,
    /// Time to serve the request, in seconds.
    pub duration: f64,
    /// Response body bytes.
    pub bytes: u64,
    /// Request method (`GET`, `POST`, …).
    pub method: &'a str,
    /// Path and query string as logged (still percent-encoded).
    pub uri: &'a str,
    /// HTTP status code.
    pub status: u16,
    /// Referer header, or empty.
    pub referer: &'a str,
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Not produced by the shipped log format (tag, field count).
    Format,
    /// A numeric field does not parse.
    Field(&'static str),
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// Not valid UTF-8.
    Encoding,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Format => write!(f, "not an otrs-exporter:1 access log line"),
            LineError::Field(name) => write!(f, "bad {name} field"),
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            LineError::Encoding => write!(f, "not UTF-8"),
        }
    }
}

/// Parses one line (without its newline).
pub fn parse(raw: &[u8]) -> Result<AccessLine<'_>, LineError> {
    if raw.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // Split on tabs first (bytes), then check UTF-8 per field.
    let mut fields = [&raw[..0]; 9];
    let mut n = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\t', raw).chain(std::iter::once(raw.len())) {
        if n == fields.len() {
            return Err(LineError::Format);
        }
        fields[n] = &raw[start..end];
        n += 1;
        start = end + 1;
    }
    if n != fields.len() {
        return Err(LineError::Format);
    }
    fn text(b: &[u8]) -> Result<&str, LineError> {
        std::str::from_utf8(b).map_err(|_| LineError::Encoding)
    }
    let mut f = fields.iter().copied();
    let mut next = || text(f.next().ok_or(LineError::Format)?);
    if next()? != "otrs-exporter:1" {
        return Err(LineError::Format);
    }
    let server = next()?;
    let pid = next()?
        .parse::<u32>()
        .map_err(|_| LineError::Field("pid"))?;
    let dur = next()?;
    let duration = match server {
        "apache" => {
            dur.parse::<u64>()
                .map_err(|_| LineError::Field("duration"))? as f64
                / 1e6
        }
        "nginx" => dur
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0)
            .ok_or(LineError::Field("duration"))?,
        _ => return Err(LineError::Format),
    };
    let bytes = match next()? {
        "-" => 0,
        b => b.parse::<u64>().map_err(|_| LineError::Field("bytes"))?,
    };
    let method = next()?;
    if method.is_empty() || method.len() > 32 {
        return Err(LineError::Field("method"));
    }
    let uri = next()?;
    let status = next()?
        .parse::<u16>()
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or(LineError::Field("status"))?;
    let referer = next()?;
    Ok(AccessLine {
        pid,
        duration,
        bytes,
        method,
        uri,
        status,
        referer: if referer == "-" { "" } else { referer },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_and_nginx_lines() {
        let a = parse(b"otrs-exporter:1\tapache\t4242\t153000\t5120\tGET\t/otrs/index.pl?Action=AgentTicketZoom;TicketID=1\t200\thttp://h/otrs/index.pl").unwrap();
        assert_eq!(a.pid, 4242);
        assert_eq!(a.duration, 0.153);
        assert_eq!((a.bytes, a.method, a.status), (5120, "GET", 200));
        assert_eq!(a.uri, "/otrs/index.pl?Action=AgentTicketZoom;TicketID=1");
        let n =
            parse(b"otrs-exporter:1\tnginx\t77\t0.004\t-\tPOST\t/otrs/index.pl\t302\t-\r").unwrap();
        assert_eq!((n.pid, n.duration, n.bytes, n.referer), (77, 0.004, 0, ""));
    }

    #[test]
    fn shipped_web_server_configs_use_these_formats() {
        let apache = include_str!("../../apache/otrs-exporter-accesslog.conf");
        assert!(
            apache.lines().any(|l| l == APACHE_LOG_FORMAT),
            "apache/ drifted from APACHE_LOG_FORMAT"
        );
        let nginx = include_str!("../../nginx/otrs-exporter-log.conf");
        assert!(
            nginx.lines().any(|l| l == NGINX_LOG_FORMAT),
            "nginx/ drifted from NGINX_LOG_FORMAT"
        );
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(parse(b""), Err(LineError::Format));
        assert_eq!(
            parse(b"127.0.0.1 - - [x] \"GET / HTTP/1.1\" 200 5"),
            Err(LineError::Format)
        );
        assert_eq!(
            parse(b"otrs-exporter:1\tapache\tx\t1\t1\tGET\t/\t200\t-"),
            Err(LineError::Field("pid"))
        );
        assert_eq!(
            parse(b"otrs-exporter:1\tnginx\t1\tNaN\t1\tGET\t/\t200\t-"),
            Err(LineError::Field("duration"))
        );
        assert_eq!(
            parse(b"otrs-exporter:1\tapache\t1\t1\t1\tGET\t/\t999\t-"),
            Err(LineError::Field("status"))
        );
        assert_eq!(
            parse(b"otrs-exporter:1\tapache\t1\t1\t1\tGET\t/\t200\t-\textra"),
            Err(LineError::Format)
        );
        assert_eq!(
            parse(b"otrs-exporter:1\tapache\t1\t1\t1\tGET\t/\t200"),
            Err(LineError::Format)
        );
        assert_eq!(parse(&[0xff, 0xfe]), Err(LineError::Format));
        assert_eq!(
            parse(b"otrs-exporter:1\tapache\t1\t1\t1\tGET\t/\xff\t200\t-"),
            Err(LineError::Encoding)
        );
        assert_eq!(parse(&vec![b'a'; MAX_LINE + 1]), Err(LineError::TooLong));
    }
}
