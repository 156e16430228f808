//! OpenMetrics 1.0.0 text format.
//!
//! Metadata lines come in the spec's order `TYPE`, `UNIT`, `HELP`. Counters are typed under the
//! bare family name with `_total` samples, info families are `info` with `_info` samples of
//! value 1, and counters and histograms get `_created` samples when the series has a creation
//! time. Floats use the canonical rendering (`1.0`, `0.005`, `1e+06`, `+Inf`); counts are
//! integers. The output always ends with `# EOF\n`.

use super::escape::{write_f64_om, write_label_value, write_u64};
use super::text::write_buckets;
use super::{
    family_key, family_ok, finite_buckets, prepare_series, FamilyPart, PartOutcome, Scratch,
};
use crate::snapshot::{Family, MetricKind, Value};

/// Writes `parts` (whole families, or a share's part of them) to `out`; the caller ends the
/// output with `# EOF`.
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
        let mark = out.len();
        let name = fam.name.as_bytes();
        if part.head {
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name);
            out.push(b' ');
            out.extend_from_slice(fam.kind.as_str().as_bytes());
            out.push(b'\n');
            if let Some(unit) = unit_of(fam) {
                out.extend_from_slice(b"# UNIT ");
                out.extend_from_slice(name);
                out.push(b' ');
                out.extend_from_slice(unit.as_bytes());
                out.push(b'\n');
            }
            if !fam.help.is_empty() {
                out.extend_from_slice(b"# HELP ");
                out.extend_from_slice(name);
                out.push(b' ');
                write_label_value(out, &fam.help);
                out.push(b'\n');
            }
        }

        let fkey = family_key(fam, true);
        scratch.begin_family(fam, fkey);
        let created_ok = matches!(fam.kind, MetricKind::Counter | MetricKind::Histogram);
        let mut written = 0usize;
        // Label sets are prefetched only without a cache: a warm render compares them by
        // address, never reading them, and prefetching would pull 10k of them in for nothing.
        let cold = scratch.is_cold();
        for (k, series) in part.series.iter().enumerate() {
            if cold {
                crate::prefetch::labels_ahead(part.series, k);
            }
            // Prefixes: scalar `[sample, _created]`; histogram `[buckets…, +Inf, _sum, _count,
            // _created]`.
            let Some(lines) = prepare_series(fam.kind, series, fkey, true, scratch, |l, le, p| {
                match fam.kind {
                    MetricKind::Counter => p.sample(name, b"_total", l),
                    MetricKind::Info => p.sample(name, b"_info", l),
                    MetricKind::Gauge => p.sample(name, b"", l),
                    MetricKind::Histogram => {
                        p.buckets(name, l, le);
                        p.sample(name, b"_sum", l);
                        p.sample(name, b"_count", l);
                    }
                }
                p.sample(name, b"_created", l);
            }) else {
                continue;
            };
            written += 1;
            let created_line = match &series.value {
                Value::Scalar(v) => {
                    out.extend_from_slice(lines.get(0));
                    if fam.kind == MetricKind::Info {
                        out.push(b'1');
                    } else {
                        write_f64_om(out, *v);
                    }
                    out.push(b'\n');
                    1
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    let buckets = finite_buckets(buckets);
                    write_buckets(out, lines, buckets, *count);
                    // The spec forbids a sum when there are negative buckets.
                    if buckets.first().is_none_or(|(b, _)| *b >= 0.0) {
                        out.extend_from_slice(lines.get(buckets.len() + 1));
                        write_f64_om(out, *sum);
                        out.push(b'\n');
                    }
                    out.extend_from_slice(lines.get(buckets.len() + 2));
                    write_u64(out, *count);
                    out.push(b'\n');
                    buckets.len() + 3
                }
            };
            if let Some(created) = series.created {
                if created_ok && created.is_finite() {
                    out.extend_from_slice(lines.get(created_line));
                    write_f64_om(out, created);
                    out.push(b'\n');
                }
            }
        }
        scratch.end_family();
        outcome.end_part(i == 0, part, written, out, mark);
    }
    outcome
}

/// The family's unit if it may be written: non-empty, made of metric-name characters, and
/// `_<unit>` a suffix of the name.
fn unit_of(fam: &Family) -> Option<&str> {
    let unit = fam.unit.as_deref()?;
    let ok = !unit.is_empty()
        && unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        && fam
            .name
            .strip_suffix(unit)
            .is_some_and(|rest| rest.ends_with('_'));
    ok.then_some(unit)
}

#[cfg(test)]
mod tests {
    use crate::exposition::{render, Format};
    use crate::snapshot::{Family, MetricKind, Series, Snapshot, Value};

    fn om(families: Vec<Family>) -> String {
        let mut snap = Snapshot { families };
        snap.normalize();
        let mut out = Vec::new();
        render(&snap, Format::OpenMetrics, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counter_created_unit_info() {
        let mut c = Family::new("otrs_cpu_seconds", "CPU \"time\".", MetricKind::Counter)
            .with_unit("seconds");
        c.series.push(Series {
            labels: vec![("mode".into(), "user".into())].into(),
            value: Value::Scalar(4.5),
            created: Some(1_700_000_000.25),
        });
        c.push(&[("mode", "system")], 3.0);
        let mut g =
            Family::new("otrs_queue_tickets", "Tickets.", MetricKind::Gauge).with_unit("seconds");
        g.push(&[], 7.0);
        let mut i = Family::new("otrs_exporter_build", "", MetricKind::Info);
        i.push(&[("version", "1.0")], 0.0);
        assert_eq!(
            om(vec![c, g, i]),
            "# TYPE otrs_cpu_seconds counter\n\
             # UNIT otrs_cpu_seconds seconds\n\
             # HELP otrs_cpu_seconds CPU \\\"time\\\".\n\
             otrs_cpu_seconds_total{mode=\"system\"} 3.0\n\
             otrs_cpu_seconds_total{mode=\"user\"} 4.5\n\
             otrs_cpu_seconds_created{mode=\"user\"} 1.70000000025e+09\n\
             # TYPE otrs_exporter_build info\n\
             otrs_exporter_build_info{version=\"1.0\"} 1\n\
             # TYPE otrs_queue_tickets gauge\n\
             # HELP otrs_queue_tickets Tickets.\n\
             otrs_queue_tickets 7.0\n\
             # EOF\n"
        );
    }

    #[test]
    fn histogram_with_created_and_negative_bucket() {
        let mut h = Family::new("otrs_x_seconds", "X.", MetricKind::Histogram).with_unit("bytes");
        h.series.push(Series {
            labels: vec![("a".into(), "1".into())].into(),
            value: Value::Histogram {
                buckets: vec![(0.005, 1), (1.0, 2), (1e6, 2)],
                sum: 0.25,
                count: 4,
            },
            created: Some(10.0),
        });
        h.series.push(Series {
            labels: vec![("a".into(), "2".into())].into(),
            value: Value::Histogram {
                buckets: vec![(-1.0, 1)],
                sum: -3.0,
                count: 1,
            },
            created: None,
        });
        assert_eq!(
            om(vec![h]),
            "# TYPE otrs_x_seconds histogram\n# HELP otrs_x_seconds X.\n\
             otrs_x_seconds_bucket{a=\"1\",le=\"0.005\"} 1\n\
             otrs_x_seconds_bucket{a=\"1\",le=\"1.0\"} 2\n\
             otrs_x_seconds_bucket{a=\"1\",le=\"1e+06\"} 2\n\
             otrs_x_seconds_bucket{a=\"1\",le=\"+Inf\"} 4\n\
             otrs_x_seconds_sum{a=\"1\"} 0.25\n\
             otrs_x_seconds_count{a=\"1\"} 4\n\
             otrs_x_seconds_created{a=\"1\"} 10.0\n\
             otrs_x_seconds_bucket{a=\"2\",le=\"-1.0\"} 1\n\
             otrs_x_seconds_bucket{a=\"2\",le=\"+Inf\"} 1\n\
             otrs_x_seconds_count{a=\"2\"} 1\n\
             # EOF\n"
        );
    }
}
