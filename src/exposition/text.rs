//! Prometheus text format 0.0.4, laid out as `client_golang` writes it.
//!
//! Counters get `_total` on their HELP, TYPE and sample lines; info families become gauges
//! named `<name>_info` with value 1; histograms get cumulative `_bucket` lines ending in
//! `le="+Inf"` (= count), then `_sum` and `_count`. No timestamps, no `_created`.

use super::escape::{write_f64_text, write_help_text, write_u64};
use super::{
    family_key, family_ok, finite_buckets, prepare_series, write_plain_prefix, FamilyPart,
    LinesView, PartOutcome, Scratch,
};
use crate::snapshot::{MetricKind, Value};

/// Writes `parts` (whole families, or a share's part of them) to `out`.
pub(crate) fn render(
    parts: &[FamilyPart],
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> PartOutcome {
    let mut outcome = PartOutcome::default();
    for (i, part) in parts.iter().enumerate() {
        let fam = part.fam;
        if !family_ok(fam) {
            continue;
        }
        let suffix: &[u8] = match fam.kind {
            MetricKind::Counter => b"_total",
            MetricKind::Info => b"_info",
            MetricKind::Gauge | MetricKind::Histogram => b"",
        };
        let type_name = match fam.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge | MetricKind::Info => "gauge",
            MetricKind::Histogram => "histogram",
        };
        let mark = out.len();
        let name = fam.name.as_bytes();
        if part.head {
            if !fam.help.is_empty() {
                out.extend_from_slice(b"# HELP ");
                out.extend_from_slice(name);
                out.extend_from_slice(suffix);
                out.push(b' ');
                write_help_text(out, &fam.help);
                out.push(b'\n');
            }
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name);
            out.extend_from_slice(suffix);
            out.push(b' ');
            out.extend_from_slice(type_name.as_bytes());
            out.push(b'\n');
        }

        let fkey = family_key(fam, false);
        scratch.begin_family(fam, fkey);
        let mut written = 0usize;
        // Label sets are prefetched only without a cache: a warm render compares them by
        // address, never reading them, and prefetching would pull 10k of them in for nothing.
        let cold = scratch.is_cold();
        for (k, series) in part.series.iter().enumerate() {
            if cold {
                crate::prefetch::labels_ahead(part.series, k);
            }
            if cold && fam.kind != MetricKind::Histogram {
                // (A histogram value is refused there: the prefix is only written for scalars.)
                if let (true, Value::Scalar(v)) = (
                    write_plain_prefix(out, series, name, suffix, scratch),
                    &series.value,
                ) {
                    written += 1;
                    write_scalar(out, fam.kind, *v);
                }
                continue;
            }
            let Some(lines) =
                prepare_series(
                    fam.kind,
                    series,
                    fkey,
                    false,
                    scratch,
                    |l, le, p| match fam.kind {
                        MetricKind::Histogram => {
                            p.buckets(name, l, le);
                            p.sample(name, b"_sum", l);
                            p.sample(name, b"_count", l);
                        }
                        _ => p.sample(name, suffix, l),
                    },
                )
            else {
                continue;
            };
            written += 1;
            match &series.value {
                Value::Scalar(v) => {
                    out.extend_from_slice(lines.get(0));
                    write_scalar(out, fam.kind, *v);
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let buckets = finite_buckets(buckets);
                    write_buckets(out, lines, buckets, *count);
                    out.extend_from_slice(lines.get(buckets.len() + 1));
                    write_f64_text(out, *sum);
                    out.push(b'\n');
                    out.extend_from_slice(lines.get(buckets.len() + 2));
                    write_u64(out, *count);
                    out.push(b'\n');
                }
            }
        }
        scratch.end_family();
        outcome.end_part(i == 0, part, written, out, mark);
    }
    outcome
}

/// Writes a counter, gauge or info sample's value (1 for info) and the line end.
#[inline]
fn write_scalar(out: &mut Vec<u8>, kind: MetricKind, v: f64) {
    if kind == MetricKind::Info {
        out.push(b'1');
    } else {
        write_f64_text(out, v);
    }
    out.push(b'\n');
}

/// Writes `name suffix{labels} ` (braces only when there are labels).
#[inline]
pub(crate) fn sample_start(out: &mut Vec<u8>, name: &[u8], suffix: &[u8], labels: &[u8]) {
    sample_start_with(out, name, suffix, !labels.is_empty(), |o| {
        o.extend_from_slice(labels)
    });
}

/// [`sample_start`] with the label pairs written by `labels` (called only if `has_labels`).
#[inline]
pub(crate) fn sample_start_with(
    out: &mut Vec<u8>,
    name: &[u8],
    suffix: &[u8],
    has_labels: bool,
    labels: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(name);
    out.extend_from_slice(suffix);
    if has_labels {
        out.push(b'{');
        labels(out);
        out.push(b'}');
    }
    out.push(b' ');
}

/// Writes the `_bucket` lines of a histogram series from its line prefixes (one per finite
/// bound, then `+Inf`): cumulative counts, and the total count on `+Inf`. Shared by both
/// formats.
pub(crate) fn write_buckets(
    out: &mut Vec<u8>,
    lines: LinesView,
    buckets: &[(f64, u64)],
    count: u64,
) {
    for (i, (_, cumulative)) in buckets.iter().enumerate() {
        out.extend_from_slice(lines.get(i));
        write_u64(out, *cumulative);
        out.push(b'\n');
    }
    out.extend_from_slice(lines.get(buckets.len()));
    write_u64(out, count);
    out.push(b'\n');
}

/// Writes `name_bucket{labels,le="` (the bound follows).
pub(crate) fn bucket_start(out: &mut Vec<u8>, name: &[u8], labels: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b"_bucket{");
    if !labels.is_empty() {
        out.extend_from_slice(labels);
        out.push(b',');
    }
    out.extend_from_slice(b"le=\"");
}

#[cfg(test)]
mod tests {
    use crate::exposition::{render, Format};
    use crate::snapshot::{Family, MetricKind, Series, Snapshot, Value};

    fn text(families: Vec<Family>) -> String {
        let mut snap = Snapshot { families };
        snap.normalize();
        let mut out = Vec::new();
        render(&snap, Format::Text, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counter_gauge_info() {
        let mut c = Family::new(
            "otrs_http_requests",
            "Requests.\nSecond \\ line \"q\"",
            MetricKind::Counter,
        );
        c.push(&[("code", "200")], 12.0);
        let mut g = Family::new("otrs_queue_tickets", "", MetricKind::Gauge);
        g.push(&[], f64::NAN);
        let mut i = Family::new("otrs_exporter_build", "Build.", MetricKind::Info);
        i.push(&[("version", "1.0")], 1.0);
        assert_eq!(
            text(vec![c, g, i]),
            "# HELP otrs_exporter_build_info Build.\n\
             # TYPE otrs_exporter_build_info gauge\n\
             otrs_exporter_build_info{version=\"1.0\"} 1\n\
             # HELP otrs_http_requests_total Requests.\\nSecond \\\\ line \"q\"\n\
             # TYPE otrs_http_requests_total counter\n\
             otrs_http_requests_total{code=\"200\"} 12\n\
             # TYPE otrs_queue_tickets gauge\n\
             otrs_queue_tickets NaN\n"
        );
    }

    #[test]
    fn histogram_without_labels() {
        let mut h = Family::new("otrs_x_seconds", "X.", MetricKind::Histogram);
        h.series.push(Series {
            labels: vec![].into(),
            value: Value::Histogram {
                buckets: vec![(0.005, 1), (1.0, 2), (2.5, 2)],
                sum: 0.25,
                count: 4,
            },
            created: Some(1.0),
        });
        assert_eq!(
            text(vec![h]),
            "# HELP otrs_x_seconds X.\n# TYPE otrs_x_seconds histogram\n\
             otrs_x_seconds_bucket{le=\"0.005\"} 1\n\
             otrs_x_seconds_bucket{le=\"1\"} 2\n\
             otrs_x_seconds_bucket{le=\"2.5\"} 2\n\
             otrs_x_seconds_bucket{le=\"+Inf\"} 4\n\
             otrs_x_seconds_sum 0.25\n\
             otrs_x_seconds_count 4\n"
        );
    }
}
