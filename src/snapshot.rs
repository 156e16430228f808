//! The aggregated, format-neutral view of one scrape.
//!
//! Collectors produce [`Family`] values; the exposition writers turn a [`Snapshot`] into bytes.
//! Nothing here knows about OTRS, HTTP or the shared segment: it is the contract between the
//! collector side and the exposition side.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The type of a metric family, as written on its `# TYPE` line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum MetricKind {
    /// A monotonically increasing value. The family name carries no `_total` suffix; the
    /// writers add it where each format wants it.
    Counter,
    /// A value that can go up and down.
    Gauge,
    /// Cumulative buckets plus sum and count.
    Histogram,
    /// An info metric: value 1, the information is in the labels. The family name carries no
    /// `_info` suffix; the writers add it.
    Info,
}

impl MetricKind {
    /// Lower-case name as used in `# TYPE` lines of the OpenMetrics format.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Info => "info",
        }
    }
}

/// A label name or value: shared, so the many series that repeat a value (`method="GET"`, the
/// same `worker`) hold one allocation between them.
pub type Text = Arc<str>;

/// One label pair. Names are validated by [`is_valid_label_name`] before they reach a family.
pub type Label = (Text, Text);

/// A series' label pairs, shared: a process that scrapes repeatedly keeps them between scrapes
/// and hands each scrape the same allocation.
pub type Labels = Arc<[Label]>;

/// The value of one series.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// A counter or gauge value, or 1 for info metrics.
    Scalar(f64),
    /// A histogram: `buckets` are `(upper bound, cumulative count)` in ascending bound order and
    /// do **not** include `+Inf`; the writers emit `+Inf` from `count`.
    Histogram {
        /// Upper bound and cumulative count per finite bucket.
        buckets: Vec<(f64, u64)>,
        /// Sum of all observed values.
        sum: f64,
        /// Number of observations (the `+Inf` bucket).
        count: u64,
    },
}

/// One series of a family: its labels, its value and, for counters and histograms, an optional
/// creation time (Unix seconds) that OpenMetrics writes as `_created`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// Label pairs, in the order they will be written.
    pub labels: Labels,
    /// The value.
    pub value: Value,
    /// When the series started counting, in Unix seconds (OpenMetrics `_created`).
    pub created: Option<f64>,
}

impl Series {
    /// A series with a scalar value and no creation time.
    pub fn scalar(labels: Vec<Label>, value: f64) -> Self {
        Series {
            labels: labels.into(),
            value: Value::Scalar(value),
            created: None,
        }
    }
}

/// A metric family: name, help, type, optional unit and its series.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Family {
    /// Family name without type suffixes (`otrs_http_requests`, not `otrs_http_requests_total`).
    pub name: String,
    /// One-line help text (may contain any characters; writers escape it).
    pub help: String,
    /// Metric type.
    pub kind: MetricKind,
    /// Unit for OpenMetrics `# UNIT`; must be a suffix of `name` (e.g. `seconds`).
    pub unit: Option<String>,
    /// The series of this family.
    pub series: Vec<Series>,
    /// Set by a producer that checked `series` to be in strictly ascending label order
    /// (sorted, no two alike), so [`Snapshot::normalize`] need not walk them again. Whoever
    /// adds or reorders series afterwards clears it. Not part of equality or serialization.
    #[serde(skip)]
    pub ordered: bool,
}

impl PartialEq for Family {
    fn eq(&self, other: &Family) -> bool {
        self.name == other.name
            && self.help == other.help
            && self.kind == other.kind
            && self.unit == other.unit
            && self.series == other.series
    }
}

impl Family {
    /// A family with no series yet.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            unit: None,
            series: Vec::new(),
            ordered: false,
        }
    }

    /// Sets the unit (builder style).
    pub fn with_unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.to_owned());
        self
    }

    /// Adds a scalar series from borrowed label pairs (builder style helper for collectors).
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        self.ordered = false;
        self.series.push(Series::scalar(
            labels
                .iter()
                .map(|(k, v)| (Text::from(*k), Text::from(*v)))
                .collect(),
            value,
        ));
    }
}

/// Everything one scrape produced, ready to be written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Families in any order; [`Snapshot::normalize`] sorts and merges them.
    pub families: Vec<Family>,
}

impl Snapshot {
    /// Sorts families by name and series by labels, and merges families of the same name and
    /// kind so that every family appears once. Families that share a name but not a kind keep
    /// the first one and drop the others (a collector bug); the number dropped is returned so the
    /// caller can report it.
    pub fn normalize(&mut self) -> usize {
        let mut merged: BTreeMap<String, Family> = BTreeMap::new();
        let mut dropped = 0;
        for fam in self.families.drain(..) {
            match merged.get_mut(&fam.name) {
                Some(existing) if existing.kind == fam.kind => {
                    existing.series.extend(fam.series);
                    existing.ordered = false;
                }
                Some(_) => dropped += 1,
                None => {
                    merged.insert(fam.name.clone(), fam);
                }
            }
        }
        self.families = merged.into_values().collect();
        for fam in &mut self.families {
            // Strictly ascending (the segment's usual output) means sorted and unique; a
            // family its producer checked is not walked again, and one whose sort found no
            // repeats needs no merging.
            let unique = fam.ordered
                || strictly_ascending(&fam.series, |s| &s.labels)
                || sort_by_labels(&mut fam.series, |s| &s.labels);
            fam.ordered = true;
            if unique {
                continue;
            }
            // Two series with identical labels would make the output invalid; sum them.
            fam.series.dedup_by(|later, earlier| {
                if cmp_labels(&later.labels, &earlier.labels).is_ne() {
                    return false;
                }
                merge_value(&mut earlier.value, &later.value);
                true
            });
        }
        dropped
    }

    /// Total number of series over all families.
    pub fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }
}

/// Whether `items` are in strictly ascending [`cmp_labels`] order of their labels: sorted, no
/// two alike.
pub fn strictly_ascending<T>(items: &[T], labels: impl Fn(&T) -> &[Label]) -> bool {
    items.is_sorted_by(|a, b| cmp_labels(labels(a), labels(b)).is_lt())
}

/// Orders label sets lexicographically, like `Vec::cmp`, but skips comparing the bytes of
/// names and values that are the same shared allocation (the common case after interning).
pub fn cmp_labels(a: &[Label], b: &[Label]) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    let text = |x: &Text, y: &Text| {
        if Arc::ptr_eq(x, y) {
            Equal
        } else {
            x.cmp(y)
        }
    };
    for (x, y) in a.iter().zip(b) {
        let o = text(&x.0, &y.0).then_with(|| text(&x.1, &y.1));
        if o != Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Sorts `items` by their label sets in [`cmp_labels`] order (not stable).
///
/// Sorting 10k series by comparing strings is most of a cold scrape's sort time, so larger
/// inputs are sorted on integer keys instead: each distinct text (by allocation) is ranked
/// once among all texts, each item's labels become a run of `(name rank, value rank)`, and the
/// runs compare as integer slices (usually packed into one `u128`), which orders exactly as
/// [`cmp_labels`] does.
///
/// Returns whether no two items have the same labels, that is, whether `items` are now in
/// strictly ascending order (see [`Family::ordered`]): the keys tell without another walk.
pub fn sort_by_labels<T>(items: &mut [T], labels: impl Fn(&T) -> &[Label]) -> bool {
    const BY_STRINGS_BELOW: usize = 64;
    if items.len() < BY_STRINGS_BELOW {
        items.sort_unstable_by(|a, b| cmp_labels(labels(a), labels(b)));
        return strictly_ascending(items, labels);
    }
    let (order, distinct) = label_order_checked(items, labels);
    apply_order(items, order);
    distinct
}

/// The order [`sort_by_labels`] would put `items` in, as indices: position `k` of the sorted
/// sequence holds `items[order[k]]`. Lets a caller sort parallel vectors the same way.
pub fn label_order<T>(items: &[T], labels: impl Fn(&T) -> &[Label]) -> Vec<u32> {
    label_order_checked(items, labels).0
}

/// [`label_order`], and whether no two items have the same labels (two items have equal keys
/// exactly when their label sets are equal).
fn label_order_checked<T>(items: &[T], labels: impl Fn(&T) -> &[Label]) -> (Vec<u32>, bool) {
    let n = items.len();
    let (keys, spans) = {
        let mut ids: rustc_hash::FxHashMap<*const u8, u32> = Default::default();
        let mut texts: Vec<&str> = Vec::new();
        let mut keys: Vec<u32> = Vec::with_capacity(n * 8);
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(n);
        // The text and id last seen at each position of a label set: the names, and often
        // values, repeat from one item to the next, and comparing addresses skips the lookup.
        let mut recent: Vec<(*const u8, u32)> = Vec::new();
        for item in items.iter() {
            let start = keys.len() as u32;
            for (pos, t) in labels(item).iter().flat_map(|(n, v)| [n, v]).enumerate() {
                let p = t.as_ptr();
                let id = match recent.get(pos) {
                    Some(&(q, id)) if q == p => id,
                    _ => {
                        let next = texts.len() as u32;
                        let id = *ids.entry(p).or_insert_with(|| {
                            texts.push(t);
                            next
                        });
                        match recent.get_mut(pos) {
                            Some(r) => *r = (p, id),
                            None => recent.push((p, id)),
                        }
                        id
                    }
                };
                keys.push(id);
            }
            spans.push((start, keys.len() as u32 - start));
        }
        // Rank of each distinct text; equal strings in different allocations rank equal.
        let mut order: Vec<u32> = (0..texts.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| texts[a as usize].cmp(texts[b as usize]));
        let mut rank = vec![0u32; texts.len()];
        for (i, &id) in order.iter().enumerate().skip(1) {
            let prev = order[i - 1] as usize;
            rank[id as usize] = rank[prev] + u32::from(texts[prev] != texts[id as usize]);
        }
        for k in &mut keys {
            *k = rank[*k as usize];
        }
        (keys, spans)
    };
    let key = |i: usize| {
        let (start, len) = spans[i];
        &keys[start as usize..(start + len) as usize]
    };
    // Usually every run fits in 128 bits: pack it (rank + 1 per field, so a run that is a
    // prefix of another is smaller, as in slice order) and sort plain integers. Fields that
    // are the same in every run (the label names, mostly) decide nothing and are left out.
    let fields = spans.iter().map(|s| s.1).max().unwrap_or(0) as usize;
    let field = |i: usize, f: usize| key(i).get(f).map_or(0, |r| r + 1);
    let varying: Vec<usize> = (0..fields)
        .filter(|&f| (1..n).any(|i| field(i, f) != field(0, f)))
        .collect();
    let top = keys.iter().copied().max().unwrap_or(0) + 1;
    let bits = u32::BITS - top.leading_zeros();
    let pack = |i: usize| {
        varying
            .iter()
            .fold(0u128, |k, &f| (k << bits) | u128::from(field(i, f)))
    };
    let key_bits = varying.len() as u32 * bits;
    let index_bits = u32::BITS - (n as u32).leading_zeros();
    if key_bits + index_bits <= 64 {
        // Key and index in one word: the sort moves 8 bytes per item.
        let mut packed: Vec<u64> = (0..n)
            .map(|i| ((pack(i) as u64) << index_bits) | i as u64)
            .collect();
        packed.sort_unstable();
        let distinct = packed
            .windows(2)
            .all(|w| w[0] >> index_bits != w[1] >> index_bits);
        let mask = (1u64 << index_bits) - 1;
        (
            packed.into_iter().map(|k| (k & mask) as u32).collect(),
            distinct,
        )
    } else if key_bits <= 128 {
        let mut packed: Vec<(u128, u32)> = (0..n).map(|i| (pack(i), i as u32)).collect();
        packed.sort_unstable();
        let distinct = packed.windows(2).all(|w| w[0].0 != w[1].0);
        (packed.into_iter().map(|(_, i)| i).collect(), distinct)
    } else {
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.sort_unstable_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
        let distinct = perm
            .windows(2)
            .all(|w| key(w[0] as usize) != key(w[1] as usize));
        (perm, distinct)
    }
}

/// Rearranges `items` so that position `k` holds what was at `order[k]` (a permutation of
/// `0..items.len()`, as from [`label_order`]), in place: one swap per moved item, no copy of
/// the vector.
pub fn apply_order<T>(items: &mut [T], mut order: Vec<u32>) {
    assert_eq!(items.len(), order.len(), "an order for every item");
    for start in 0..order.len() {
        // Follow the cycle through `start`; a placed position gets `order[k] == k`. The items
        // a few steps further along the cycle are prefetched: the steps jump about `items`,
        // and each waited for memory.
        let mut k = start;
        let mut ahead = start;
        for _ in 0..4 {
            ahead = order[ahead] as usize;
        }
        loop {
            crate::prefetch::line(items.as_ptr().wrapping_add(ahead));
            ahead = order[ahead] as usize;
            let from = order[k] as usize;
            order[k] = k as u32;
            if from == start || from == k {
                break;
            }
            items.swap(k, from);
            k = from;
        }
    }
}

/// Adds `other` into `into` (scalar sum, or bucket-wise histogram sum when bounds agree).
pub(crate) fn merge_value(into: &mut Value, other: &Value) {
    match (into, other) {
        (Value::Scalar(a), Value::Scalar(b)) => *a += b,
        (
            Value::Histogram {
                buckets,
                sum,
                count,
            },
            Value::Histogram {
                buckets: ob,
                sum: os,
                count: oc,
            },
        ) if buckets.len() == ob.len() => {
            for (b, o) in buckets.iter_mut().zip(ob) {
                b.1 += o.1;
            }
            *sum += os;
            *count += oc;
        }
        _ => {}
    }
}

/// Whether `name` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid, non-reserved label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    !name.starts_with("__") && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repeatable pseudo-random source: each call gives a number below `m`.
    fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |m| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        }
    }

    #[test]
    fn sort_by_labels_orders_as_cmp_labels() {
        // Label sets from a small alphabet (so many share texts), some texts equal but in
        // separate allocations, sets of different lengths, duplicates: above and below the
        // size where integer keys take over.
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let shared: Vec<Text> = ["", "a", "ab", "b", "é", "a\n"].map(Text::from).to_vec();
        let mut seen_distinct = [false; 2];
        // Up to 3 labels pack into one u128; up to 40 take the slice comparison.
        for (n, most) in [0, 1, 5, 63, 64, 65, 500, 3000, 64, 700]
            .into_iter()
            .zip([4; 8].into_iter().chain([41, 41]))
        {
            let mut items: Vec<Labels> = (0..n)
                .map(|_| {
                    let len = next(most) as usize;
                    let mut l: Vec<Label> = (0..len)
                        .map(|i| {
                            let name = Text::from(["code", "method", "route"][i % 3]);
                            let v = shared[next(shared.len() as u64) as usize].clone();
                            let v = if next(3) == 0 { Text::from(&*v) } else { v };
                            (name, v)
                        })
                        .collect();
                    l.sort();
                    l.into()
                })
                .collect();
            let mut want = items.clone();
            want.sort_by(|a, b| cmp_labels(a, b));
            let distinct = sort_by_labels(&mut items, |l| l);
            assert_eq!(distinct, strictly_ascending(&items, |l| l), "n={n}");
            seen_distinct[usize::from(distinct)] = true;
            assert_eq!(items.len(), want.len());
            for (got, want) in items.iter().zip(&want) {
                assert_eq!(cmp_labels(got, want), std::cmp::Ordering::Equal, "n={n}");
            }
            assert!(items.is_sorted_by(|a, b| cmp_labels(a, b).is_le()));
        }
        assert_eq!(seen_distinct, [true, true], "both answers were checked");
    }

    #[test]
    fn sort_by_labels_with_fixed_names_and_constant_values() {
        // As a family's series are: the same names in every set, some values the same in
        // every set (left out of the integer keys), the others from alphabets small and large
        // enough to take each of the three ways (one word, u128 and index, slice order).
        let mut next = xorshift(0x6a09_e667_f3bc_c908);
        for (fields, alphabet, n) in [
            (3, 4, 3000),
            (4, 60, 10_000),
            (6, 5000, 4000),
            (12, 5000, 2000),
        ] {
            let names: Vec<Text> = (0..fields)
                .map(|f| Text::from(format!("l{f:02}")))
                .collect();
            let constant = Text::from("same");
            let mut items: Vec<Labels> = (0..n)
                .map(|_| {
                    names
                        .iter()
                        .enumerate()
                        .map(|(f, name)| {
                            let v = if f % 3 == 1 {
                                constant.clone()
                            } else {
                                Text::from(format!("v{}", next(alphabet)))
                            };
                            (name.clone(), v)
                        })
                        .collect()
                })
                .collect();
            let mut want = items.clone();
            want.sort_by(|a, b| cmp_labels(a, b));
            let distinct = sort_by_labels(&mut items, |l| l);
            assert_eq!(items, want, "fields={fields} alphabet={alphabet}");
            // Small alphabets give duplicates, 5000 values in 4 or more fields none.
            assert_eq!(distinct, strictly_ascending(&items, |l| l));
            assert_eq!(
                distinct,
                alphabet == 5000,
                "fields={fields} alphabet={alphabet}"
            );
            // One duplicate among otherwise distinct sets is found.
            if distinct {
                let mut with_twin = items.clone();
                with_twin.push(items[n / 2].clone());
                assert!(!sort_by_labels(&mut with_twin, |l| l));
            }
        }
    }

    #[test]
    fn apply_order_places_every_item_once() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for n in [0usize, 1, 2, 3, 10, 257, 4000] {
            // A random permutation (Fisher-Yates), and the identity.
            let mut order: Vec<u32> = (0..n as u32).collect();
            for i in (1..n).rev() {
                order.swap(i, next(i as u64 + 1) as usize);
            }
            for order in [order, (0..n as u32).collect()] {
                let items: Vec<String> = (0..n).map(|i| format!("item{i}")).collect();
                let want: Vec<String> = order.iter().map(|&i| items[i as usize].clone()).collect();
                let mut got = items;
                apply_order(&mut got, order);
                assert_eq!(got, want, "n={n}");
            }
        }
    }

    #[test]
    fn normalize_sorts_merges_and_sums_duplicates() {
        let mut a = Family::new("b_metric", "B", MetricKind::Gauge);
        a.push(&[("x", "2")], 1.0);
        a.push(&[("x", "1")], 1.0);
        let mut b = Family::new("b_metric", "B", MetricKind::Gauge);
        b.push(&[("x", "1")], 2.0);
        let c = Family::new("a_metric", "A", MetricKind::Counter);
        let d = Family::new("a_metric", "A", MetricKind::Gauge);
        let mut snap = Snapshot {
            families: vec![a, b, c, d],
        };
        assert_eq!(snap.normalize(), 1);
        assert_eq!(snap.families.len(), 2);
        assert_eq!(snap.families[0].name, "a_metric");
        let s = &snap.families[1].series;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].value, Value::Scalar(3.0));
    }

    #[test]
    fn normalize_trusts_a_checked_order_until_series_are_added() {
        let mut a = Family::new("m", "M", MetricKind::Gauge);
        a.push(&[("x", "2")], 1.0);
        a.push(&[("x", "1")], 1.0);
        assert!(!a.ordered, "push clears the mark");
        // Marked ordered by its producer: normalize does not walk (or sort) it.
        a.ordered = true;
        let mut snap = Snapshot {
            families: vec![a.clone()],
        };
        snap.normalize();
        assert_eq!(snap.families[0].series, a.series);
        // Merged with another family of the same name, it is checked (and sorted) again.
        let mut b = Family::new("m", "M", MetricKind::Gauge);
        b.push(&[("x", "0")], 1.0);
        b.ordered = true;
        let mut snap = Snapshot {
            families: vec![a, b],
        };
        snap.normalize();
        let fam = &snap.families[0];
        assert!(
            strictly_ascending(&fam.series, |s| &s.labels),
            "{:?}",
            fam.series
        );
        assert!(fam.ordered, "normalize marks what it sorted");
        // A family normalize found in order is marked too.
        let mut c = Family::new("c", "C", MetricKind::Gauge);
        c.push(&[("x", "1")], 1.0);
        c.push(&[("x", "2")], 1.0);
        let mut snap = Snapshot { families: vec![c] };
        snap.normalize();
        assert!(snap.families[0].ordered);
    }

    #[test]
    fn names() {
        assert!(is_valid_metric_name("otrs_x:y_1"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("queue"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("a-b"));
    }
}
