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

/// Exposition escaping round trip: any label value rendered in the text format parses back to
/// exactly the original, help text stays on one line, and OpenMetrics ends with `# EOF`.
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
}

/// A property check over one input.
pub type Check = fn(&[u8]);

/// The checks by fuzz target name.
pub const TARGETS: &[(&str, Check)] = &[
    ("fcgi_records", fcgi_records),
    ("access_line", access_line),
    ("route", route),
    ("label_escaping", label_escaping),
];
