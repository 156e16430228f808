//! OTRS log lines: the parser for both backends and the sink that counts messages in the
//! segment (`otrs_log_messages_total{priority,prefix,module}`).
//!
//! File backend (`Kernel::System::Log::File`), one message per line, continuation lines of
//! multi-line messages start with anything but `[`:
//!
//! ```text
//! [Tue Mar  4 14:22:07 2025][Error][Kernel::System::Ticket::TicketGet][1123] No such TicketID
//! [Tue Mar  4 14:22:09 2025][Notice][Kernel::System::Web::InterfaceAgent::Run] Session expired
//! ```
//!
//! Debug and Error carry the line number; Info and Notice do not (an Error for an undefined
//! priority has none either). The File backend writes no LogPrefix, so `prefix` is empty.
//!
//! SysLog backend as rsyslog writes it (RFC 3164 timestamp, or RFC 3339 with the high
//! precision template), ident = LogPrefix up to `[pid]:`:
//!
//! ```text
//! Mar  4 14:22:07 host OTRS-CGI-10[12345]: [Error][Kernel::System::Ticket::TicketGet][Line:1123]: No such TicketID
//! ```
//!
//! Lines of other programs in the syslog file are skipped (counted as foreign, not as errors).

use rustc_hash::FxHashMap as HashMap;

use super::families;
use super::follow::LineSink;
use crate::segment::{FamilyDef, Handle, Segment, SegmentError, WorkerKind, Writer};

/// Label value that replaces modules and prefixes beyond their cap.
pub const OVERFLOW: &str = "__overflow__";
/// Per-process memory of label admissions, cleared when it grows past this.
const ADMIT_MEMORY: usize = 20_000;

/// An OTRS log priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `error`
    Error,
}

impl Priority {
    /// The label value (OTRS' own lower-case priority name).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Notice => "notice",
            Priority::Error => "error",
        }
    }

    fn from_word(w: &[u8]) -> Option<Priority> {
        Some(match w {
            b"Debug" => Priority::Debug,
            b"Info" => Priority::Info,
            b"Notice" => Priority::Notice,
            b"Error" => Priority::Error,
            _ => return None,
        })
    }
}

/// One OTRS log message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Its priority.
    pub priority: Priority,
    /// The calling subroutine or script path.
    pub module: &'a str,
    /// The LogPrefix (SysLog backend only; empty for the File backend).
    pub prefix: &'a str,
    /// Line number of the `Log()` call, where the format carries it.
    pub line: Option<u32>,
}

/// What a line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The first line of a message.
    Message(Message<'a>),
    /// A further line of a multi-line message.
    Continuation,
    /// A syslog line of another program.
    Foreign,
}

/// Why a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub &'static str);

fn err<T>(why: &'static str) -> Result<T, ParseError> {
    Err(ParseError(why))
}

/// Text that may be a continuation line: valid UTF-8 without control characters but tab.
fn is_text(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|s| !s.chars().any(|c| c.is_control() && c != '\t'))
}

/// `[field]` at the start of `s`: the field and the rest after `]`.
fn bracket(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let s = s.strip_prefix(b"[")?;
    let end = memchr::memchr(b']', s)?;
    Some((&s[..end], &s[end + 1..]))
}

/// Perl's `scalar localtime`: `Www Mmm dd hh:mm:ss yyyy` (day padded with a space).
fn is_ctime(t: &[u8]) -> bool {
    if t.len() != 24 {
        return false;
    }
    let alpha = |r: std::ops::Range<usize>| t[r].iter().all(u8::is_ascii_alphabetic);
    let digit = |i: usize| t[i].is_ascii_digit();
    alpha(0..3)
        && t[3] == b' '
        && alpha(4..7)
        && t[7] == b' '
        && (t[8] == b' ' || digit(8))
        && digit(9)
        && t[10] == b' '
        && digit(11)
        && digit(12)
        && t[13] == b':'
        && digit(14)
        && digit(15)
        && t[16] == b':'
        && digit(17)
        && digit(18)
        && t[19] == b' '
        && (20..24).all(digit)
}

fn utf8(b: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(b).or(err("module is not UTF-8"))
}

fn number(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Parses one line of the File backend.
pub fn parse_file_line(line: &[u8]) -> Result<Parsed<'_>, ParseError> {
    if line.first() != Some(&b'[') {
        return if is_text(line) {
            Ok(Parsed::Continuation)
        } else {
            err("binary or control characters")
        };
    }
    let (ts, rest) = bracket(line).ok_or(ParseError("unterminated timestamp"))?;
    if !is_ctime(ts) {
        return err("bad timestamp");
    }
    let (prio, rest) = bracket(rest).ok_or(ParseError("no priority"))?;
    let priority = Priority::from_word(prio).ok_or(ParseError("unknown priority"))?;
    let (module, rest) = bracket(rest).ok_or(ParseError("no module"))?;
    let module = utf8(module)?;
    let (line_no, rest) = match (priority, bracket(rest)) {
        (Priority::Debug | Priority::Error, Some((n, r))) if number(n).is_some() => (number(n), r),
        (Priority::Debug, _) => return err("debug line without line number"),
        _ => (None, rest),
    };
    if rest.first() != Some(&b' ') {
        return err("no message after the header");
    }
    Ok(Parsed::Message(Message {
        priority,
        module,
        prefix: "",
        line: line_no,
    }))
}

/// Skips the syslog timestamp (`Mmm dd hh:mm:ss` or an RFC 3339 token) and its space.
fn skip_syslog_time(line: &[u8]) -> Option<&[u8]> {
    let first = *line.first()?;
    if first.is_ascii_digit() {
        // 2025-03-04T14:22:07.123456+01:00
        let sp = memchr::memchr(b' ', line)?;
        let t = &line[..sp];
        return (t.len() >= 19 && t[4] == b'-' && t[10] == b'T').then(|| &line[sp + 1..]);
    }
    if line.len() < 15 {
        return None;
    }
    let t = &line[..15];
    let ok = t[..3].iter().all(u8::is_ascii_alphabetic)
        && t[3] == b' '
        && (t[4] == b' ' || t[4].is_ascii_digit())
        && t[5].is_ascii_digit()
        && t[6] == b' '
        && t[9] == b':'
        && t[12] == b':';
    // A timestamp and nothing (or no space) after it: an empty rest, rejected as "no host".
    ok.then(|| line.get(16..).filter(|_| line[15] == b' ').unwrap_or(&[]))
}

/// Parses one line of a syslog file (rsyslog's traditional or high-precision file format).
pub fn parse_syslog_line(line: &[u8]) -> Result<Parsed<'_>, ParseError> {
    let Some(rest) = skip_syslog_time(line) else {
        // With control-character escaping off, rsyslog writes a message's newlines raw.
        return if is_text(line) && line.first() != Some(&b'[') {
            Ok(Parsed::Continuation)
        } else {
            err("no syslog timestamp")
        };
    };
    let sp = memchr::memchr(b' ', rest).ok_or(ParseError("no host"))?;
    let rest = &rest[sp + 1..];
    // The tag (ident, may contain spaces) ends at the first `[digits]: `.
    let mut from = 0;
    let (ident, body) = loop {
        let Some(i) = memchr::memmem::find(&rest[from..], b"]: ") else {
            return Ok(Parsed::Foreign);
        };
        let end = from + i;
        let open = rest[..end].iter().rposition(|&b| b == b'[');
        if let Some(o) = open {
            if number(&rest[o + 1..end]).is_some() {
                break (&rest[..o], &rest[end + 3..]);
            }
        }
        from = end + 1;
    };
    let Some((prio, after)) = bracket(body) else {
        return Ok(Parsed::Foreign);
    };
    let Some(priority) = Priority::from_word(prio) else {
        return Ok(Parsed::Foreign);
    };
    if after.first() != Some(&b'[') {
        return Ok(Parsed::Foreign);
    }
    let prefix = utf8(ident).map(str::trim)?;
    let (module, rest) = bracket(after).ok_or(ParseError("no module"))?;
    let module = utf8(module)?;
    let (line_no, rest) = match priority {
        Priority::Error => match bracket(rest) {
            Some((l, r)) if l.starts_with(b"Line:") && r.first() == Some(&b':') => {
                (number(&l[5..]), &r[1..])
            }
            _ => (None, rest),
        },
        Priority::Debug => match bracket(rest) {
            Some((l, r)) if number(l).is_some() => (number(l), r),
            _ => return err("debug line without line number"),
        },
        _ => (None, rest),
    };
    if priority == Priority::Error && line_no.is_none() && !rest.starts_with(b" Priority: ") {
        return err("error line without [Line:N]:");
    }
    if rest.first() != Some(&b' ') && !rest.is_empty() {
        return err("no message after the header");
    }
    Ok(Parsed::Message(Message {
        priority,
        module,
        prefix,
        line: line_no,
    }))
}

/// Which backend's format a sink parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `Kernel::System::Log::File`.
    File,
    /// `Kernel::System::Log::SysLog` in a syslog file.
    Syslog,
}

impl Format {
    /// The `source` label of the exporter's own counters.
    pub fn source(self) -> &'static str {
        match self {
            Format::File => "otrs_file",
            Format::Syslog => "otrs_syslog",
        }
    }
}

/// `otrs_log_messages_total{priority,prefix,module}`.
pub fn messages_family() -> FamilyDef {
    FamilyDef::counter(
        "otrs_log_messages",
        "OTRS log messages written since the exporter started following the log, by priority, \
         LogPrefix (SysLog backend only, empty for the File backend) and calling module.",
    )
    .shared()
}

/// `otrs_exporter_otrs_log_lines_total{source,kind}`.
pub fn lines_family() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_otrs_log_lines",
        "Lines read from the OTRS log, by source and kind (message, continuation, foreign = other programs in a syslog file, malformed).",
    )
    .shared()
}

/// Counts OTRS log lines into the segment.
pub struct OtrsLogSink {
    seg: Segment,
    format: Format,
    module_cap: u64,
    prefix_cap: u64,
    writer: Writer,
    kinds: [Handle; 4],
    errors: Handle,
    overflow_module: Handle,
    overflow_prefix: Handle,
    admitted: HashMap<(bool, String), bool>,
    series: HashMap<(Priority, String, String), Handle>,
}

impl OtrsLogSink {
    /// A sink writing into `seg`, parsing `format`, with the label caps.
    pub fn new(
        seg: &Segment,
        format: Format,
        module_cap: u64,
        prefix_cap: u64,
    ) -> Result<OtrsLogSink, SegmentError> {
        let mut writer = Writer::new(seg, WorkerKind::Ingest)?;
        let source = format.source();
        let lines = lines_family();
        let mut kind = |k: &str| writer.handle(&lines, &[("source", source), ("kind", k)]);
        let kinds = [
            kind("message")?,
            kind("continuation")?,
            kind("foreign")?,
            kind("malformed")?,
        ];
        let errors = writer.handle(&families::parse_errors(), &[("source", source)])?;
        let overflow_module =
            writer.handle(&families::overflow(), &[("label", "otrs_log_module")])?;
        let overflow_prefix =
            writer.handle(&families::overflow(), &[("label", "otrs_log_prefix")])?;
        Ok(OtrsLogSink {
            seg: seg.clone(),
            format,
            module_cap,
            prefix_cap,
            writer,
            kinds,
            errors,
            overflow_module,
            overflow_prefix,
            admitted: HashMap::default(),
            series: HashMap::default(),
        })
    }

    fn admit(&mut self, is_module: bool, value: &str) -> bool {
        if let Some(&ok) = self.admitted.get(&(is_module, value.to_owned())) {
            return ok;
        }
        let (label, cap) = if is_module {
            ("otrs_log_module", self.module_cap)
        } else {
            ("otrs_log_prefix", self.prefix_cap)
        };
        let ok = self
            .seg
            .admit_label_value(label, value, cap)
            .unwrap_or_else(|e| {
                log::warn!("{label} cap check failed: {e}");
                false
            });
        if self.admitted.len() >= ADMIT_MEMORY {
            self.admitted.clear();
        }
        self.admitted.insert((is_module, value.to_owned()), ok);
        ok
    }

    fn count(&mut self, m: &Message<'_>) -> Result<(), SegmentError> {
        let module = if self.admit(true, m.module) {
            m.module
        } else {
            self.overflow_module.inc();
            OVERFLOW
        };
        let prefix = if m.prefix.is_empty() || self.admit(false, m.prefix) {
            m.prefix
        } else {
            self.overflow_prefix.inc();
            OVERFLOW
        };
        let key = (m.priority, prefix.to_owned(), module.to_owned());
        if let Some(h) = self.series.get(&key) {
            h.inc();
            return Ok(());
        }
        if self.series.len() >= ADMIT_MEMORY {
            self.series.clear();
        }
        let h = self.writer.handle(
            &messages_family(),
            &[
                ("priority", m.priority.as_str()),
                ("prefix", prefix),
                ("module", module),
            ],
        )?;
        h.inc();
        self.series.insert(key, h);
        Ok(())
    }
}

impl LineSink for OtrsLogSink {
    fn line(&mut self, line: &[u8]) {
        let parsed = match self.format {
            Format::File => parse_file_line(line),
            Format::Syslog => parse_syslog_line(line),
        };
        match parsed {
            Ok(Parsed::Message(m)) => {
                self.kinds[0].inc();
                if let Err(e) = self.count(&m) {
                    log::warn!("cannot count an OTRS log message: {e}");
                }
            }
            Ok(Parsed::Continuation) => self.kinds[1].inc(),
            Ok(Parsed::Foreign) => self.kinds[2].inc(),
            Err(e) => {
                self.kinds[3].inc();
                self.errors.inc();
                log::debug!("{}: skipped a malformed line: {e}", self.format.source());
            }
        }
    }

    fn overlong(&mut self) {
        self.kinds[3].inc();
        self.errors.inc();
    }

    fn refresh(&mut self) -> Result<(), SegmentError> {
        if self.seg.is_stale() {
            let seg = self.seg.reopen()?;
            *self = OtrsLogSink::new(&seg, self.format, self.module_cap, self.prefix_cap)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(p: Result<Parsed<'_>, ParseError>) -> Message<'_> {
        match p {
            Ok(Parsed::Message(m)) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn file_lines() {
        let m = msg(parse_file_line(
            b"[Tue Mar  4 14:22:07 2025][Error][Kernel::System::Ticket::TicketGet][1123] No such TicketID (4711)!",
        ));
        assert_eq!(m.priority, Priority::Error);
        assert_eq!(m.module, "Kernel::System::Ticket::TicketGet");
        assert_eq!(m.line, Some(1123));
        assert_eq!(m.prefix, "");
        let m = msg(parse_file_line(
            b"[Fri Nov 27 17:19:34 2026][Notice][Kernel::System::Auth::DB::Auth] User: root@localhost authentication with wrong Pw!!!",
        ));
        assert_eq!((m.priority, m.line), (Priority::Notice, None));
        // Info text may start with a bracket: not a line number.
        let m = msg(parse_file_line(
            b"[Fri Nov 27 17:20:02 2026][Info][Kernel::System::Ticket::TicketCreate] [x] New Ticket",
        ));
        assert_eq!((m.priority, m.line), (Priority::Info, None));
        // The "Priority not defined" error has no line number.
        let m = msg(parse_file_line(
            b"[Fri Nov 27 17:20:02 2026][Error][main::x] Priority: 'warn' not defined! Message: y",
        ));
        assert_eq!((m.priority, m.line), (Priority::Error, None));
        let m = msg(parse_file_line(
            b"[Fri Nov 27 17:20:02 2026][Debug][/opt/otrs/bin/otrs.Console.pl][12] dbg",
        ));
        assert_eq!(m.module, "/opt/otrs/bin/otrs.Console.pl");
        assert_eq!(
            parse_file_line(b"  at /opt/otrs/Kernel/System/X.pm line 5."),
            Ok(Parsed::Continuation)
        );
        for bad in [
            &b"[Fri Nov 27 17:20:02 2026][Warning][X] y"[..],
            b"[yesterday][Error][X][1] y",
            b"[Fri Nov 27 17:20:02 2026][Debug][X] no line",
            b"[Fri Nov 27 17:20:02 2026][Error][X][1]",
            b"[Fri Nov 27 17:20:02 2026][Error",
            b"\x00\x01binary",
            b"\xff\xfe",
        ] {
            assert!(
                parse_file_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn syslog_lines() {
        let m = msg(parse_syslog_line(
            b"Mar  4 14:22:07 helpdesk OTRS-CGI-10[12345]: [Error][Kernel::System::Ticket::TicketGet][Line:1123]: No such TicketID (4711)!",
        ));
        assert_eq!(m.prefix, "OTRS-CGI-10");
        assert_eq!((m.priority, m.line), (Priority::Error, Some(1123)));
        let m = msg(parse_syslog_line(
            b"Mar 14 04:02:07 helpdesk OTRS-otrs.Daemon.pl - Daemon Kernel::System::Daemon::DaemonModules::SchedulerTaskWorker-10[99]: [Info][Kernel::System::Daemon::X::Run] started [ok]: yes",
        ));
        assert_eq!(
            m.prefix,
            "OTRS-otrs.Daemon.pl - Daemon Kernel::System::Daemon::DaemonModules::SchedulerTaskWorker-10"
        );
        assert_eq!(m.module, "Kernel::System::Daemon::X::Run");
        let m = msg(parse_syslog_line(
            b"2025-03-04T14:22:07.123456+01:00 h OTRS-otrs.Console.pl-Maint::Ticket::PendingCheck-10[7]: [Debug][main::x][42] d",
        ));
        assert_eq!((m.priority, m.line), (Priority::Debug, Some(42)));
        assert_eq!(
            parse_syslog_line(b"Mar  4 14:22:07 helpdesk CRON[5]: (root) CMD (x)"),
            Ok(Parsed::Foreign)
        );
        assert_eq!(
            parse_syslog_line(b"Mar  4 14:22:07 helpdesk kernel: [ 1.0] usb"),
            Ok(Parsed::Foreign)
        );
        assert_eq!(
            parse_syslog_line(b"Mar  4 14:22:07 helpdesk nginx[5]: [error] x"),
            Ok(Parsed::Foreign)
        );
        assert_eq!(
            parse_syslog_line(b"  second line of a message"),
            Ok(Parsed::Continuation)
        );
        for bad in [
            &b"Mar  4 14:22:07 h OTRS-CGI-10[1]: [Error][X] no line"[..],
            b"Mar  4 14:22:07 h OTRS-CGI-10[1]: [Debug][X] no line",
            b"Mar  4 14:22:07",
            b"\x00junk",
            b"[Error] no header",
        ] {
            assert!(
                parse_syslog_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
