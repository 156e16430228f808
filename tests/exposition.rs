//! Exposition output checked three ways: byte-for-byte against golden files, by the real
//! `promtool check metrics`, and (for OpenMetrics, which promtool cannot parse) by a strict
//! line-grammar checker below. Set `UPDATE_GOLDEN=1` to rewrite the golden files.
//!
//! What `promtool check metrics` (2.x) can check: it parses the Prometheus text format only
//! and lints it; a parse error exits 1, lint findings exit 3. It rejects OpenMetrics input
//! (`# TYPE x info` is an unknown type; counters typed without `_total` are linted). For
//! OpenMetrics we therefore run the strict checker on the whole exposition and additionally
//! feed promtool the OpenMetrics *sample lines* (metadata removed), which share the text
//! format's label and number syntax, requiring that it finds no parse error.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use otrs_exporter::exposition::{render, Format};
use otrs_exporter::snapshot::{Family, MetricKind, Series, Snapshot, Value};

const PROMTOOL: &str = "/usr/bin/promtool";

/// Label values that have broken exporters before.
const HOSTILE: &[&str] = &[
    "back\\slash",
    "double \"quote\"",
    "new\nline",
    "Ünïcødé 日本語 🎫",
    "<script>alert(1)</script>",
    "",
    "trailing\\",
    "\\n is not a newline",
    "tab\tand\rcarriage",
    "{curly},comma=\"eq\"",
];

fn series(labels: &[(&str, &str)], value: Value, created: Option<f64>) -> Series {
    Series {
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        value,
        created,
    }
}

fn hist(bounds: &[f64], counts: &[u64], sum: f64, count: u64) -> Value {
    Value::Histogram {
        buckets: bounds.iter().copied().zip(counts.iter().copied()).collect(),
        sum,
        count,
    }
}

/// A snapshot covering every kind and the awkward values, deliberately out of order.
fn representative() -> Snapshot {
    let mut requests = Family::new(
        "otrs_http_requests",
        "HTTP requests handled, by interface and status code.",
        MetricKind::Counter,
    );
    requests.series.push(series(
        &[("interface", "agent"), ("code", "200")],
        Value::Scalar(1027.0),
        Some(1_700_000_000.5),
    ));
    requests.series.push(series(
        &[("interface", "customer"), ("code", "500")],
        Value::Scalar(3.0),
        None,
    ));

    let mut errors = Family::new(
        "otrs_scrape_errors",
        "Scrape errors since start.",
        MetricKind::Counter,
    );
    errors.push(&[], 0.0);

    let mut cpu = Family::new(
        "otrs_process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        MetricKind::Counter,
    )
    .with_unit("seconds");
    cpu.series
        .push(series(&[], Value::Scalar(12.34), Some(1_699_999_000.0)));

    let mut queue = Family::new(
        "otrs_queue_tickets",
        "Open tickets per queue. Help with \\ backslash, \"quotes\" and a\nnewline.",
        MetricKind::Gauge,
    );
    let values = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.5,
        -2.0,
        1e21,
        1.5e-7,
        123_456.0,
        1e6,
        0.1 + 0.2,
    ];
    for (v, value) in HOSTILE.iter().zip(values) {
        queue.push(&[("queue", v)], value);
    }

    let mut up = Family::new("otrs_up", "Whether OTRS answered.", MetricKind::Gauge);
    up.push(&[], 1.0);

    let mut memory = Family::new(
        "otrs_process_resident_memory_bytes",
        "Resident memory size in bytes.",
        MetricKind::Gauge,
    )
    .with_unit("seconds"); // Not a suffix of the name: UNIT must be omitted.
    memory.push(&[], 52_428_800.0);

    let mut duration = Family::new(
        "otrs_http_request_duration_seconds",
        "HTTP request latency.",
        MetricKind::Histogram,
    )
    .with_unit("seconds");
    let bounds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    duration.series.push(series(
        &[("interface", "agent")],
        hist(
            &bounds,
            &[1, 4, 9, 20, 41, 70, 90, 95, 98, 99, 99],
            61.875,
            100,
        ),
        Some(1_700_000_000.0),
    ));
    duration.series.push(series(
        &[("interface", "customer \"portal\"")],
        hist(&bounds, &[0; 11], 0.0, 0),
        None,
    ));

    let mut size = Family::new(
        "otrs_http_response_size_bytes",
        "HTTP response sizes.",
        MetricKind::Histogram,
    )
    .with_unit("bytes");
    size.series.push(series(
        &[],
        hist(
            &[100.0, 1000.0, 10_000.0, 100_000.0, 1e6],
            &[2, 10, 30, 31, 31],
            402_112.0,
            32,
        ),
        None,
    ));

    let mut build = Family::new(
        "otrs_exporter_build",
        "Build information.",
        MetricKind::Info,
    );
    build.push(
        &[
            ("version", "0.1.0"),
            ("revision", "efc0639"),
            ("note", "<b>\"x\"\\y\nz</b>"),
        ],
        1.0,
    );

    let mut snap = Snapshot {
        families: vec![
            queue, build, requests, size, up, errors, duration, memory, cpu,
        ],
    };
    assert_eq!(snap.normalize(), 0);
    snap
}

fn rendered(snap: &Snapshot, format: Format) -> String {
    let mut out = Vec::new();
    render(snap, format, &mut out);
    String::from_utf8(out).expect("output is UTF-8")
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "at the end".to_owned(), |i| format!("at line {}", i + 1));
        panic!(
            "{} differs from the rendered output {line} (run with UPDATE_GOLDEN=1 to accept)\n\
             --- rendered ---\n{actual}",
            path.display()
        );
    }
}

/// Runs `promtool check metrics` on `input`; returns exit code and combined output.
fn promtool(input: &str) -> (i32, String) {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Prometheus' promtool (Debian package `prometheus`) \
         to run the exposition tests"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PROMTOOL}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The text output must parse and be lint-clean.
fn assert_promtool_clean(input: &str) {
    let (code, output) = promtool(input);
    assert!(
        code == 0 && output.trim().is_empty(),
        "promtool check metrics exited {code}:\n{output}\n--- input ---\n{input}"
    );
}

/// OpenMetrics sample lines must parse as text-format samples (lint findings are expected:
/// without metadata every sample is untyped and has no help).
fn assert_promtool_parses_samples(om: &str) {
    let samples: String = om
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| [l, "\n"])
        .collect();
    let (code, output) = promtool(&samples);
    assert!(
        (code == 0 || code == 3) && !output.contains("error while linting"),
        "promtool could not parse the OpenMetrics samples (exit {code}):\n{output}\n\
         --- input ---\n{samples}"
    );
}

#[test]
fn golden_text() {
    let out = rendered(&representative(), Format::Text);
    check_golden("representative.prom", &out);
    assert!(out.ends_with('\n'));
    assert_promtool_clean(&out);
}

#[test]
fn golden_openmetrics() {
    let out = rendered(&representative(), Format::OpenMetrics);
    check_golden("representative.om", &out);
    if let Err(e) = check_openmetrics(&out) {
        panic!("invalid OpenMetrics: {e}\n{out}");
    }
    assert_promtool_parses_samples(&out);
}

#[test]
fn promtool_rejects_openmetrics_metadata() {
    // Documents why OpenMetrics is validated by our own checker: promtool's text parser does
    // not know the `info` type. If this starts passing, promtool learnt OpenMetrics.
    let out = rendered(&representative(), Format::OpenMetrics);
    let (code, output) = promtool(&out);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("unknown metric type \"info\""), "{output}");
}

#[test]
fn checker_rejects_broken_openmetrics() {
    for ok in [
        "# TYPE a counter\n# HELP a A.\na_total{x=\"1\"} 1.0\na_created{x=\"1\"} 2.0\n# EOF\n",
        "# TYPE a gauge\na 1.\n# EOF\n",
        "# TYPE a gauge\na{} -Inf\n# EOF\n",
        "# TYPE a gauge\na .5e-3\n# EOF\n",
        "# EOF\n",
    ] {
        check_openmetrics(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    for bad in [
        "# TYPE a counter\na_total 1.0\n",                            // no EOF
        "# TYPE a counter\na 1.0\n# EOF\n",                           // missing suffix
        "# TYPE a gauge\na{x=\"1\"} 1\n# EOF\n# EOF\n",               // after EOF
        "# TYPE a gauge\na{x=\"a\nb\"} 1\n# EOF\n",                   // raw newline
        "# TYPE a gauge\na{x=\"a\\qb\"} 1\n# EOF\n",                  // bad escape
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n# EOF\n",              // duplicate label
        "# TYPE a gauge\na .\n# EOF\n",                               // not a number
        "# TYPE a gauge\na 1e\n# EOF\n",                              // not a number
        "# TYPE a gauge\na 0x10\n# EOF\n",                            // not a number
        "# TYPE a gauge\n# TYPE a gauge\na 1\n# EOF\n",               // duplicate metadata
        "# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n",             // unit not a suffix
        "# TYPE a gauge\n# HELP a say \"hi\"\na 1\n# EOF\n",          // raw quote in help
        "# TYPE a info\na_info 2\n# EOF\n",                           // info value
        "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"1\"} 1\n# EOF\n", // interleaved
        "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_count 1\n# EOF\n", // no +Inf
        "# TYPE h histogram\nh_bucket{le=\"2.0\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n# EOF\n", // count mismatch
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\na 1\n# EOF\n", // family repeated
        "a 1\n# EOF\n",                                               // untyped (we always type)
        "# COMMENT x\n# EOF\n",
    ] {
        assert!(check_openmetrics(bad).is_err(), "accepted {bad:?}");
    }
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn label_value(&mut self) -> String {
        const POOL: &[char] = &[
            'a', 'Z', '0', ' ', '\\', '"', '\n', '\r', '\t', '\0', '{', '}', '=', ',', '#', 'n',
            'ü', '日', '🎫', '<', '>', '/', '\u{2028}', '\'', '\u{7f}', '\u{feff}',
        ];
        let len = self.below(24);
        (0..len).map(|_| POOL[self.below(POOL.len())]).collect()
    }
}

#[test]
fn random_label_values_round_trip() {
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    let mut fam = Family::new("otrs_roundtrip", "Round trip.", MetricKind::Gauge);
    let mut expected = Vec::new();
    for i in 0..500 {
        let a = rng.label_value();
        let b = rng.label_value();
        // The index label keeps label sets unique after normalize().
        fam.push(&[("a", &a), ("b", &b), ("i", &i.to_string())], i as f64);
        expected.push((a, b));
    }
    let mut snap = Snapshot {
        families: vec![fam],
    };
    snap.normalize();
    for format in [Format::Text, Format::OpenMetrics] {
        let out = rendered(&snap, format);
        let mut seen = 0;
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let sample = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert_eq!(sample.name, "otrs_roundtrip");
            let i: usize = sample.labels[2].1.parse().unwrap();
            assert_eq!(sample.labels[0], ("a".to_owned(), expected[i].0.clone()));
            assert_eq!(sample.labels[1], ("b".to_owned(), expected[i].1.clone()));
            assert_eq!(sample.value.parse::<f64>().unwrap(), i as f64);
            seen += 1;
        }
        assert_eq!(seen, 500, "{format:?}");
        match format {
            Format::Text => assert_promtool_clean(&out),
            Format::OpenMetrics => {
                check_openmetrics(&out).unwrap();
                assert_promtool_parses_samples(&out);
            }
        }
    }
}

// ---- A strict parser for sample lines and an OpenMetrics 1.0 checker ----

#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: String,
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Unescapes a quoted string body (`\\`, `\"`, `\n` only; raw `"`, `\` or LF are errors)
/// starting at `s`; returns the value and the rest after the closing quote.
fn unescape_quoted(s: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\n' => return Err("raw newline in label value".into()),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("bad escape {other:?}")),
            },
            c => value.push(c),
        }
    }
    Err("unterminated label value".into())
}

/// Parses `name[{labels}] value` with nothing after the value.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
        } else {
            loop {
                let eq = rest.find('=').ok_or("label without =")?;
                let lname = &rest[..eq];
                if !is_label_name(lname) {
                    return Err(format!("bad label name {lname:?}"));
                }
                if labels.iter().any(|(n, _)| n == lname) {
                    return Err(format!("duplicate label {lname:?}"));
                }
                let body = rest[eq + 1..]
                    .strip_prefix('"')
                    .ok_or("label value not quoted")?;
                let (value, after) = unescape_quoted(body)?;
                labels.push((lname.to_owned(), value));
                if let Some(r) = after.strip_prefix(',') {
                    rest = r;
                } else if let Some(r) = after.strip_prefix('}') {
                    rest = r;
                    break;
                } else {
                    return Err("expected , or } after label".into());
                }
            }
        }
    }
    let value = rest.strip_prefix(' ').ok_or("no space before value")?;
    if value.is_empty() || value.contains(' ') {
        return Err(format!("bad value field {value:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: value.to_owned(),
    })
}

/// OpenMetrics `number` (realnumber, ±inf/infinity, nan; case-insensitive words).
fn is_om_number(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return true;
    }
    if s.eq_ignore_ascii_case("nan") {
        return true;
    }
    let (mant, exp) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    let (int, frac) = match mant.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mant, None),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => digits(int) && digits(f) && !(int.is_empty() && f.is_empty()),
    }
}

#[derive(Default)]
struct FamilyState {
    name: String,
    kind: String,
    metadata: HashSet<&'static str>,
    sampled: bool,
    /// Label sets (without `le`) already finished, and the current one.
    done: HashSet<Vec<(String, String)>>,
    current: Option<Vec<(String, String)>>,
    /// Histogram state of the current label set: last bound, last count, +Inf count.
    last_le: Option<f64>,
    last_bucket: f64,
    inf_count: Option<f64>,
}

/// Checks an exposition against the OpenMetrics 1.0 ABNF plus the family/metric rules this
/// exporter relies on. Stricter than the spec where we never produce the construct
/// (timestamps, exemplars, untyped samples).
fn check_openmetrics(input: &str) -> Result<(), String> {
    let body = input
        .strip_suffix("# EOF\n")
        .ok_or("does not end with `# EOF\\n`")?;
    if !body.is_empty() && !body.ends_with('\n') {
        return Err("last line before EOF not terminated".into());
    }
    let mut seen_families: HashSet<String> = HashSet::new();
    let mut fam: Option<FamilyState> = None;
    for (n, line) in body.lines().enumerate() {
        let n = n + 1;
        let err = |e: String| format!("line {n}: {e}: {line:?}");
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let name = parts.next().ok_or_else(|| err("short metadata".into()))?;
            let arg = parts.next().ok_or_else(|| err("short metadata".into()))?;
            let key: &'static str = match keyword {
                "TYPE" => "TYPE",
                "UNIT" => "UNIT",
                "HELP" => "HELP",
                _ => return Err(err("unknown # line".into())),
            };
            if !is_metric_name(name) {
                return Err(err("bad family name".into()));
            }
            if fam.as_ref().is_none_or(|f| f.name != name) {
                if !seen_families.insert(name.to_owned()) {
                    return Err(err("family appears twice".into()));
                }
                fam = Some(FamilyState {
                    name: name.to_owned(),
                    ..Default::default()
                });
            }
            let f = fam.as_mut().unwrap();
            if f.sampled {
                return Err(err("metadata after samples".into()));
            }
            if !f.metadata.insert(key) {
                return Err(err("duplicate metadata".into()));
            }
            match key {
                "TYPE" => {
                    if ![
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "stateset",
                        "info",
                        "summary",
                        "unknown",
                    ]
                    .contains(&arg)
                    {
                        return Err(err("bad type".into()));
                    }
                    f.kind = arg.to_owned();
                }
                "UNIT" => {
                    if !name.ends_with(&format!("_{arg}")) || arg.is_empty() {
                        return Err(err("unit is not a suffix of the name".into()));
                    }
                }
                _ => {
                    let mut quoted = arg.to_owned();
                    quoted.push('"');
                    let (_, rest) = unescape_quoted(&quoted).map_err(err)?;
                    if !rest.is_empty() {
                        return Err(err("raw quote in HELP".into()));
                    }
                }
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(err("comment line".into()));
        }
        let s = parse_sample(line).map_err(err)?;
        if !is_om_number(&s.value) {
            return Err(err("bad number".into()));
        }
        let f = fam
            .as_mut()
            .ok_or_else(|| err("sample before any TYPE".into()))?;
        if f.kind.is_empty() {
            return Err(err("family without TYPE".into()));
        }
        let suffix = s
            .name
            .strip_prefix(&f.name)
            .ok_or_else(|| err("sample outside its family".into()))?;
        let allowed: &[&str] = match f.kind.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => return Err(err("type not produced by this exporter".into())),
        };
        if !allowed.contains(&suffix) {
            return Err(err(format!("suffix {suffix:?} not allowed for {}", f.kind)));
        }
        f.sampled = true;
        let value: f64 = s.value.parse().unwrap_or(f64::NAN);
        let mut labels = s.labels.clone();
        let mut le = None;
        if suffix == "_bucket" {
            let pos = labels
                .iter()
                .position(|(n, _)| n == "le")
                .ok_or_else(|| err("bucket without le".into()))?;
            let (_, v) = labels.remove(pos);
            if !is_om_number(&v) {
                return Err(err("le is not a number".into()));
            }
            le = Some(v.parse::<f64>().map_err(|e| err(e.to_string()))?);
        }
        if f.current.as_ref() != Some(&labels) {
            if let Some(prev) = f.current.take() {
                if f.kind == "histogram" && f.inf_count.is_none() {
                    return Err(err("previous histogram has no +Inf bucket".into()));
                }
                f.done.insert(prev);
            }
            if f.done.contains(&labels) {
                return Err(err("metric interleaved".into()));
            }
            f.current = Some(labels);
            f.last_le = None;
            f.last_bucket = 0.0;
            f.inf_count = None;
        }
        match (f.kind.as_str(), suffix) {
            ("info", _) if s.value != "1" && s.value != "1.0" => {
                return Err(err("info value must be 1".into()));
            }
            ("histogram", "_bucket") => {
                let le = le.unwrap();
                if f.inf_count.is_some() || f.last_le.is_some_and(|l| l >= le) {
                    return Err(err("le not increasing".into()));
                }
                if value < f.last_bucket || value.is_nan() {
                    return Err(err("bucket counts not cumulative".into()));
                }
                f.last_le = Some(le);
                f.last_bucket = value;
                if le == f64::INFINITY {
                    f.inf_count = Some(value);
                }
            }
            ("histogram", "_count") if f.inf_count != Some(value) => {
                return Err(err("count differs from the +Inf bucket".into()));
            }
            ("histogram", _) if f.inf_count.is_none() => {
                return Err(err("no +Inf bucket".into()));
            }
            _ => {}
        }
    }
    if let Some(f) = &fam {
        if f.kind == "histogram" && f.current.is_some() && f.inf_count.is_none() {
            return Err("last histogram has no +Inf bucket".into());
        }
    }
    Ok(())
}
