//! Properties checked by the fuzz targets (`fuzz/`, `cargo +nightly fuzz run <name>`), here so
//! that the same checks also run on committed reproducers and seed inputs in the ordinary
//! test suite (`tests/fuzz_regressions.rs`). Each function panics when its property fails.

use crate::exposition::{render, Format};
use crate::front::fcgi::record::{decode_pairs, parse_stream, Limits, RecordReader};
use crate::ingest::line::parse;
use crate::ingest::route::RouteRules;
use crate::snapshot::{Family, MetricKind, Snapshot};

/// The FastCGI record parser (one-shot and streaming) and pair decoding on arbitrary bytes:
/// never panic, always end with records or an error.
pub fn fcgi_records(data: &[u8]) {
    let _ = parse_stream(data);
    let _ = decode_pairs(data, &Limits::default());
    let mut reader = RecordReader::new(std::io::Cursor::new(data), Limits::default());
    for _ in 0..data.len() / 8 + 1 {
        match reader.next_record() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
}

/// The access-log line parser on arbitrary lines: an accepted line has a sane duration and
/// yields a bounded route label.
pub fn access_line(data: &[u8]) {
    if let Ok(l) = parse(data) {
        assert!(l.duration >= 0.0 && l.duration.is_finite());
        let route = RouteRules::default().route(l.method, l.uri, l.referer);
        assert!(route.len() <= 400, "{route}");
    }
}

/// Route normalization on arbitrary URI, Referer and method (newline separated): labels are
/// short and built only from identifier characters, so hostile input cannot inject values.
pub fn route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let uri = parts.next().unwrap_or("");
    let referer = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("GET");
    for rules in [
        RouteRules::default(),
        RouteRules {
            subaction: true,
            ..RouteRules::default()
        },
    ] {
        let route = rules.route(method, uri, referer);
        assert!(route.len() <= 400, "{route}");
        assert!(
            route
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/_.-".contains(&b)),
            "{route:?}"
        );
    }
}

/// Reads the first quoted label value of a sample line, undoing `\\`, `\"` and `\n`
/// (independently of the writer's own escaping code).
fn first_label_value(line: &str) -> Option<String> {
    let start = line.find("=\"")? + 2;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                'n' => out.push('\n'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
}

/// Exposition escaping round trip: any label value rendered in the text format and in
/// OpenMetrics parses back to exactly the original, help text stays on one line, every line
/// is a comment or the sample, and OpenMetrics ends with `# EOF`.
pub fn label_escaping(data: &[u8]) {
    let value = String::from_utf8_lossy(data).into_owned();
    let mut fam = Family::new("fuzz_value", value.clone(), MetricKind::Gauge);
    fam.push(&[("v", &value)], 1.0);
    let snap = Snapshot {
        families: vec![fam],
    };
    let mut out = Vec::new();
    render(&snap, Format::Text, &mut out);
    let text = String::from_utf8(out).expect("UTF-8 output");
    let sample = text
        .lines()
        .find(|l| l.starts_with("fuzz_value{"))
        .expect("the sample line");
    assert_eq!(first_label_value(sample).as_deref(), Some(value.as_str()));
    let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
    assert_eq!(
        helps,
        usize::from(!value.is_empty()),
        "help stays on one line"
    );
    let mut om = Vec::new();
    render(&snap, Format::OpenMetrics, &mut om);
    assert!(om.ends_with(b"# EOF\n"));
    // OpenMetrics escapes label values the same way: the value reads back there too, and no
    // value or help text can start a line of its own.
    let om = String::from_utf8(om).expect("UTF-8 output");
    let sample = om
        .lines()
        .find(|l| l.starts_with("fuzz_value{"))
        .expect("the OpenMetrics sample line");
    assert_eq!(first_label_value(sample).as_deref(), Some(value.as_str()));
    for l in text.lines().chain(om.lines()) {
        assert!(
            l.starts_with("# ") || l.starts_with("fuzz_value{"),
            "stray line {l:?}"
        );
    }
}

/// Removes the characters a generated field cannot hold (control characters, and `extra`).
fn field(s: &str, extra: &[char]) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !extra.contains(c))
        .collect()
}

/// The OTRS log parsers (File and SysLog backend) on arbitrary lines: never panic, and a
/// message's module and prefix are taken from the line itself. Then a round trip: a line
/// written in the backend's format from fields taken from the input (priority, module,
/// LogPrefix, line number, message) parses back to exactly those fields.
pub fn otrs_log(data: &[u8]) {
    use crate::ingest::otrs_log::{parse_file_line, parse_syslog_line, Message, Parsed, Priority};
    let within = |s: &str| s.is_empty() || memchr::memmem::find(data, s.as_bytes()).is_some();
    for parsed in [parse_file_line(data), parse_syslog_line(data)] {
        if let Ok(Parsed::Message(m)) = parsed {
            assert!(within(m.module), "module {:?} not from the line", m.module);
            assert!(within(m.prefix), "prefix {:?} not from the line", m.prefix);
        }
    }
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((num, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let priority = [
        Priority::Debug,
        Priority::Info,
        Priority::Notice,
        Priority::Error,
    ][usize::from(flags & 3)];
    let number = u32::from_le_bytes(*num) % 1_000_000_000;
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let module = field(parts.next().unwrap_or(""), &[']']);
    let prefix = field(parts.next().unwrap_or(""), &['[', ']'])
        .trim()
        .to_string();
    let message = field(parts.next().unwrap_or(""), &[]);
    let with_line = matches!(priority, Priority::Debug | Priority::Error);
    let word = match priority {
        Priority::Debug => "Debug",
        Priority::Info => "Info",
        Priority::Notice => "Notice",
        Priority::Error => "Error",
    };
    let expect = |prefix: &'static str| -> Message<'static> {
        Message {
            priority,
            module: "",
            prefix,
            line: with_line.then_some(number),
        }
    };
    // File backend.
    let line_part = if with_line {
        format!("[{number}]")
    } else {
        String::new()
    };
    let file_line = format!("[Tue Mar  4 14:22:07 2025][{word}][{module}]{line_part} {message}");
    match parse_file_line(file_line.as_bytes()) {
        Ok(Parsed::Message(m)) => {
            assert_eq!(m.module, module, "{file_line:?}");
            assert_eq!(Message { module: "", ..m }, expect(""), "{file_line:?}");
        }
        other => panic!("{file_line:?} parsed as {other:?}"),
    }
    // SysLog backend as rsyslog writes it, with either timestamp format.
    let header = match priority {
        Priority::Debug => format!("[{number}]"),
        Priority::Error => format!("[Line:{number}]:"),
        _ => String::new(),
    };
    let time = if flags & 4 == 0 {
        "Mar  4 14:22:07"
    } else {
        "2025-03-04T14:22:07.123456+01:00"
    };
    let sys_line = format!("{time} helpdesk {prefix}[12345]: [{word}][{module}]{header} {message}");
    match parse_syslog_line(sys_line.as_bytes()) {
        Ok(Parsed::Message(m)) => {
            assert_eq!(m.module, module, "{sys_line:?}");
            assert_eq!(m.prefix, prefix, "{sys_line:?}");
            assert_eq!(
                Message {
                    module: "",
                    prefix: "",
                    ..m
                },
                expect(""),
                "{sys_line:?}"
            );
        }
        other => panic!("{sys_line:?} parsed as {other:?}"),
    }
}

/// Writes `value` as a Perl string literal: single-quoted (`\\` and `\'` escaped) or
/// double-quoted (`\\ \" \$ \@`, newline and tab escaped).
fn perl_literal(value: &str, double: bool) -> String {
    if !double {
        return format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '\\' | '"' | '$' | '@' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Config.pm reader on arbitrary text: never panics, and reading every key it found (with
/// placeholders) and the DSN parser on the text end with a value or an error. Then a round
/// trip: a Config.pm generated from key/value pairs taken from the input — keys bare,
/// single- or double-quoted, values as single- or double-quoted strings or a concatenation of
/// both, among comments, POD and non-scalar assignments — reads back exactly those values
/// (the last assignment of a key wins).
pub fn config_pm(data: &[u8]) {
    use crate::config::otrs_pm::{parse_dsn, parse_into, OtrsConfig};
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    let file = Path::new("/opt/otrs/Kernel/Config.pm");
    let env = |k: &str| (k == "OTRS_FUZZ").then(|| "from-env".to_string());
    let text = String::from_utf8_lossy(data);
    let mut settings = BTreeMap::new();
    parse_into(&text, file, &env, &mut settings);
    let cfg = OtrsConfig {
        settings,
        config_pm: PathBuf::from(file),
    };
    for key in cfg.settings.keys() {
        let _ = cfg.get(key);
    }
    let _ = cfg.get("DatabaseDSN");
    let _ = parse_dsn(&text);

    let mut perl = String::from("package Kernel::Config;\nsub Load {\n    my $Self = shift;\n");
    let mut expected = BTreeMap::new();
    for (n, chunk) in data.split(|&b| b == 0).enumerate() {
        let Some((&style, rest)) = chunk.split_first() else {
            continue;
        };
        let pair = String::from_utf8_lossy(rest);
        let (key, value) = pair.split_once('=').unwrap_or((&pair, ""));
        let key: String = key
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .take(40)
            .collect();
        if key.is_empty() {
            continue;
        }
        let lhs = match style & 3 {
            0 | 3 => format!("$Self->{{{key}}}"),
            1 => format!("$Self->{{'{key}'}}"),
            _ => format!("$Self->{{\"{key}\"}}"),
        };
        let rhs = if style & 16 != 0 && value.chars().count() > 1 {
            let cut = value.char_indices().nth(1).map_or(0, |(i, _)| i);
            let (a, b) = value.split_at(cut);
            format!(
                "{} . {}",
                perl_literal(a, style & 4 != 0),
                perl_literal(b, style & 8 == 0)
            )
        } else {
            perl_literal(value, style & 4 != 0)
        };
        let pad = " ".repeat(usize::from(style >> 5));
        perl.push_str(&format!("    # entry {n}: {lhs} = 'commented out';\n"));
        perl.push_str(&format!("    {lhs}{pad} = {rhs};\n"));
        if style & 32 != 0 {
            perl.push_str("=pod\n$Self->{Home} = 'in pod';\n=cut\n");
            perl.push_str(&format!(
                "    $Self->{{'{key}-Sub'}} = {{ 'a' => 'b; c', 'd' => [1, 2] }};\n"
            ));
        }
        expected.insert(key, value.to_string());
    }
    perl.push_str("    return 1;\n}\n1;\n");
    let mut settings = BTreeMap::new();
    parse_into(&perl, file, &env, &mut settings);
    for (key, value) in &expected {
        let got = settings.get(key).map(|s| &s.value);
        assert_eq!(got, Some(&Ok(value.clone())), "{key} in\n{perl}");
    }
}

/// A property check over one input.
pub type Check = fn(&[u8]);

/// The checks by fuzz target name.
pub const TARGETS: &[(&str, Check)] = &[
    ("fcgi_records", fcgi_records),
    ("access_line", access_line),
    ("route", route),
    ("label_escaping", label_escaping),
    ("otrs_log", otrs_log),
    ("config_pm", config_pm),
];
