//! Exposition writers: Prometheus text format 0.0.4 and OpenMetrics 1.0.
//!
//! [`Format::negotiate`] picks the format from the scraper's `Accept` header and [`render`]
//! writes a normalised [`Snapshot`] into a byte buffer. Both writers skip what they cannot
//! write validly (bad names, duplicate label names, a value that does not fit the family's
//! type) instead of failing the whole scrape.

mod escape;
mod openmetrics;
mod text;

use std::sync::Arc;

use crate::snapshot::{
    is_valid_label_name, Family, Label, Labels, MetricKind, Series, Snapshot, Text, Value,
};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text format.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for responses in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// Chooses the format for an HTTP `Accept` header.
    ///
    /// OpenMetrics is chosen only when `application/openmetrics-text` (version `1.0.0`, `0.0.1`
    /// or none) has a non-zero q-value higher than the text format's (ties go to whichever the
    /// header lists first). The text format is matched by `text/plain`, `text/*` and `*/*`,
    /// the most specific range deciding its q-value. Other types are ignored; a missing or
    /// malformed header yields [`Format::Text`].
    pub fn negotiate(accept: Option<&str>) -> Format {
        accept.and_then(negotiate_header).unwrap_or(Format::Text)
    }
}

/// How well one media range matched an offered format: `(specificity, q in thousandths,
/// position in the header)`.
type Match = (u8, u16, usize);

/// Parses the header; `None` when it is malformed.
fn negotiate_header(header: &str) -> Option<Format> {
    let mut om: Option<Match> = None;
    let mut text: Option<Match> = None;
    for (pos, range) in header.split(',').enumerate() {
        let range = range.trim_matches(|c| c == ' ' || c == '\t');
        if range.is_empty() {
            continue; // RFC 9110 allows empty list elements.
        }
        let mut parts = range.split(';');
        let media = parts.next()?.trim_matches(|c| c == ' ' || c == '\t');
        let (ty, sub) = media.split_once('/')?;
        if !is_token(ty) || !is_token(sub) {
            return None;
        }
        let mut q: u16 = 1000;
        let mut version: Option<&str> = None;
        for param in parts {
            let (k, v) = param.split_once('=')?;
            let k = k.trim_matches(|c| c == ' ' || c == '\t');
            let v = v.trim_matches(|c| c == ' ' || c == '\t');
            let v = match v.strip_prefix('"') {
                Some(rest) => rest.strip_suffix('"')?,
                None => v,
            };
            if !is_token(k) {
                return None;
            }
            if k.eq_ignore_ascii_case("q") {
                q = parse_qvalue(v)?;
            } else if k.eq_ignore_ascii_case("version") {
                version = Some(v);
            }
        }
        let om_spec = if ty.eq_ignore_ascii_case("application")
            && sub.eq_ignore_ascii_case("openmetrics-text")
        {
            match version {
                None => Some(2),
                Some("1.0.0" | "0.0.1") => Some(3),
                Some(_) => None,
            }
        } else {
            None
        };
        let text_spec = if ty == "*" && sub == "*" {
            Some(0)
        } else if ty.eq_ignore_ascii_case("text") && sub == "*" {
            Some(1)
        } else if ty.eq_ignore_ascii_case("text") && sub.eq_ignore_ascii_case("plain") {
            Some(if version.is_some() { 3 } else { 2 })
        } else {
            None
        };
        if let Some(spec) = om_spec {
            better(&mut om, (spec, q, pos));
        }
        if let Some(spec) = text_spec {
            better(&mut text, (spec, q, pos));
        }
    }
    let Some((_, om_q, om_pos)) = om else {
        return Some(Format::Text);
    };
    if om_q == 0 {
        return Some(Format::Text);
    }
    Some(match text {
        Some((_, text_q, text_pos)) if text_q > om_q || (text_q == om_q && text_pos < om_pos) => {
            Format::Text
        }
        _ => Format::OpenMetrics,
    })
}

/// Keeps the most specific range; among equally specific ones the highest q, then the first.
fn better(best: &mut Option<Match>, cand: Match) {
    let replace = match *best {
        None => true,
        Some((spec, q, _)) => cand.0 > spec || (cand.0 == spec && cand.1 > q),
    };
    if replace {
        *best = Some(cand);
    }
}

/// An RFC 9110 token (also accepts `*`).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses an RFC 9110 qvalue (`0`, `0.5`, `1.000`) into thousandths.
fn parse_qvalue(v: &str) -> Option<u16> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Writes `snapshot` in `format`, appending to `out`.
///
/// The snapshot should be [`Snapshot::normalize`]d (families sorted and unique, series sorted
/// and unique). Families with invalid names and series with invalid or duplicate label names,
/// or with a value that does not fit the family's type, are skipped; families left without
/// series are omitted.
///
/// A large snapshot is written by one thread per core (see [`crate::shares`]), each
/// taking an equal share of the series into a buffer of its own: without a cache (a CGI
/// process), escaping and formatting is a third of a scrape.
pub fn render(snapshot: &Snapshot, format: Format, out: &mut Vec<u8>) {
    let shares = crate::shares::count(snapshot.series_count(), SHARED_RENDER_FROM);
    render_in_shares(snapshot, format, out, shares, &mut Scratch::default());
}

/// [`render`] by `shares` threads, this one with `scratch`. More than one share cuts the
/// series into chunks that this thread renders into `out` from the front and helpers into
/// buffers of their own from the back (see [`crate::shares::from_both_ends`]).
fn render_in_shares(
    snapshot: &Snapshot,
    format: Format,
    out: &mut Vec<u8>,
    shares: usize,
    scratch: &mut Scratch,
) {
    let total = snapshot.series_count();
    if shares <= 1 || total == 0 {
        render_parts(&whole(snapshot), format, out, scratch);
    } else {
        let chunks = split(snapshot, total, shares * crate::shares::CHUNKS_PER_SHARE);
        let per_series = out.capacity() / total;
        let mut front = FrontChunks::default();
        let (_, back) = crate::shares::from_both_ends(
            chunks.len(),
            shares - 1,
            |i| front.render(&chunks[i], format, out, scratch),
            || (),
            |_, i| render_alone(&chunks[i], format, per_series),
        );
        join_parts(out, front.then(back));
    }
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}

/// Renders one chunk into a buffer of its own, sized from `per_series` bytes a series.
fn render_alone(parts: &[FamilyPart], format: Format, per_series: usize) -> (Vec<u8>, PartOutcome) {
    let n: usize = parts.iter().map(|p| p.series.len()).sum();
    let mut buf = Vec::with_capacity(per_series * n);
    let outcome = render_parts(parts, format, &mut buf, &mut Scratch::default());
    (buf, outcome)
}

/// The chunks rendered one after the other into the same buffer, from the first on, taken
/// together as one share for [`join_parts`].
#[derive(Default)]
struct FrontChunks {
    /// The metadata lines at the end of the buffer of a family none of whose series were
    /// written yet, which goes on in the next chunk: (start, end).
    open: Option<(usize, usize)>,
}

impl FrontChunks {
    /// Renders the next chunk after the earlier ones in `out`. The metadata lines of a family
    /// left open by the chunk before go if this chunk ends the family without writing one of
    /// its series, as a whole render leaves them out.
    fn render(
        &mut self,
        parts: &[FamilyPart],
        format: Format,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) {
        let start = out.len();
        let mut outcome = render_parts(parts, format, out, scratch);
        if let (Some((from, to)), Some((written, ends))) = (self.open, outcome.lead) {
            if written > 0 {
                self.open = None;
            } else if ends {
                // Nothing of the family was written between those lines and this chunk.
                debug_assert_eq!(to, start);
                out.drain(from..to);
                outcome.open_head = outcome.open_head.map(|m| m - (to - from));
                self.open = None;
            }
        }
        if let Some(mark) = outcome.open_head {
            self.open = Some((mark, out.len()));
        }
    }

    /// The chunks rendered here as the first share, followed by the `back` shares.
    fn then(self, back: Vec<(Vec<u8>, PartOutcome)>) -> Vec<(Vec<u8>, PartOutcome)> {
        let first = PartOutcome {
            open_head: self.open.map(|(from, _)| from),
            lead: None,
        };
        std::iter::once((Vec::new(), first)).chain(back).collect()
    }
}

/// A render of at least this many series is shared out over threads.
const SHARED_RENDER_FROM: usize = 4096;

/// A family, or the part of its series that one share of a render writes.
pub(crate) struct FamilyPart<'s> {
    pub fam: &'s Family,
    pub series: &'s [Series],
    /// The part holds the family's first series: it writes the metadata lines.
    pub head: bool,
    /// The part holds the family's last series.
    pub tail: bool,
}

/// What the joining of shares needs to know of one share's output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartOutcome {
    /// Where the metadata lines of a family that goes on in the next share begin, when no
    /// series of the family was written in this share: they are removed if no later share
    /// writes one either.
    pub open_head: Option<usize>,
    /// When the share begins inside a family: the series it wrote of that family, and
    /// whether the family ends in this share.
    pub lead: Option<(usize, bool)>,
}

impl PartOutcome {
    /// Notes the end of `part` (`first` in its share), of which `written` series were written
    /// after its metadata lines at `mark` in `out`: a family without series loses those lines
    /// when it ends here, and keeps them open when it goes on in the next share.
    pub(crate) fn end_part(
        &mut self,
        first: bool,
        part: &FamilyPart,
        written: usize,
        out: &mut Vec<u8>,
        mark: usize,
    ) {
        if first && !part.head {
            self.lead = Some((written, part.tail));
        }
        if written == 0 && part.head {
            if part.tail {
                out.truncate(mark);
            } else {
                self.open_head = Some(mark);
            }
        }
    }
}

/// Every family of `snapshot`, whole.
fn whole(snapshot: &Snapshot) -> Vec<FamilyPart<'_>> {
    snapshot
        .families
        .iter()
        .map(|fam| FamilyPart {
            fam,
            series: &fam.series,
            head: true,
            tail: true,
        })
        .collect()
}

/// `snapshot`'s `total` series cut into `shares` runs of (nearly) equal length, in order.
/// Families without series are left out (they would write nothing).
fn split(snapshot: &Snapshot, total: usize, shares: usize) -> Vec<Vec<FamilyPart<'_>>> {
    let bound = |k: usize| total * k / shares;
    let mut out: Vec<Vec<FamilyPart>> = (0..shares).map(|_| Vec::new()).collect();
    let mut base = 0;
    for fam in &snapshot.families {
        let n = fam.series.len();
        for (k, part) in out.iter_mut().enumerate() {
            let (lo, hi) = (bound(k).max(base), bound(k + 1).min(base + n));
            if lo < hi {
                part.push(FamilyPart {
                    fam,
                    series: &fam.series[lo - base..hi - base],
                    head: lo == base,
                    tail: hi == base + n,
                });
            }
        }
        base += n;
    }
    out
}

/// Appends the shares after the first (already in `out`) to it, removing the metadata lines
/// of a family cut over shares none of which wrote one of its series (as a whole render does).
fn join_parts(out: &mut Vec<u8>, mut shares: Vec<(Vec<u8>, PartOutcome)>) {
    // (share, offset) of metadata lines still waiting for a series of their family.
    let mut open: Option<(usize, usize)> = None;
    for k in 0..shares.len() {
        let outcome = shares[k].1;
        if let (Some((at, mark)), Some((written, ends))) = (open, outcome.lead) {
            if written > 0 {
                open = None;
            } else if ends {
                // Those lines end their share's buffer: nothing was written after them.
                match at {
                    0 => out.truncate(mark),
                    _ => shares[at].0.truncate(mark),
                }
                open = None;
            }
        }
        if let Some(mark) = outcome.open_head {
            open = Some((k, mark));
        }
    }
    for (buf, _) in shares.iter_mut().skip(1) {
        out.append(buf);
    }
}

/// Writes `parts` in `format` (without OpenMetrics' `# EOF`).
fn render_parts(
    parts: &[FamilyPart],
    format: Format,
    out: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> PartOutcome {
    match format {
        Format::Text => text::render(parts, out, scratch),
        Format::OpenMetrics => openmetrics::render(parts, out, scratch),
    }
}

/// Sample-line text remembered between renders, for label sets that are shared between
/// scrapes (see [`crate::segment::ReadCache`]): a warm render writes each sample line as one
/// copy of its cached `name_suffix{labels} ` prefix plus the value, instead of validating,
/// escaping and assembling the line again. Keep one per process.
#[derive(Default)]
pub struct RenderCache {
    map: rustc_hash::FxHashMap<usize, CachedSeries>,
    /// Per family (by [`family_key`]), its last render's line prefixes in series order.
    runs: rustc_hash::FxHashMap<u64, Run>,
    renders: u64,
    /// Series served from runs, over all renders.
    replayed: u64,
}

/// A run's mark for a series it skipped because of its labels (invalid or repeated names,
/// `le` on a histogram): the same labels are skipped in the same family every time.
const RUN_SKIPPED: u64 = 0;
/// A run's mark for a series whose prefixes it does not hold (its value was refused); line
/// keys are odd, so this never matches one.
const RUN_UNKNOWN: u64 = 2;

/// One family's sample-line prefixes from a render, all in one buffer in series order. While
/// the family's series come again in the same order with the same label sets (a FastCGI
/// worker whose segment read replayed), a render walks the buffer front to back instead of
/// looking up each series in the map: no hashing, and memory read in order.
struct Run {
    name: String,
    /// Per series: its label set (kept, so its address stays unique), the line key its
    /// prefixes were built for (or [`RUN_SKIPPED`] / [`RUN_UNKNOWN`]), and the index of its
    /// first prefix in `lines`.
    series: Vec<(Labels, u64, u32)>,
    lines: Lines,
    /// The last render that used or built it.
    used: u64,
}

/// Renders after which a run nobody used is dropped (a scraper alternating between the two
/// formats keeps both).
const RUN_KEEP_RENDERS: u64 = 4;

/// Where the family being rendered stands against its run.
#[derive(Default)]
enum RunState {
    /// No cache, or no family begun.
    #[default]
    Off,
    /// The family's series are its run's (taken out of the cache meanwhile): series `next`
    /// is served from it. `dirty` when a series needed other prefixes (a new bucket layout):
    /// the run is then dropped at the end.
    Replay {
        key: u64,
        next: usize,
        dirty: bool,
        run: Run,
    },
    /// A new run is built from the map as the family's series are prepared.
    Build { key: u64, run: Run },
}

struct CachedSeries {
    /// Holds the label set, so its address cannot be reused by another one while cached.
    _labels: Labels,
    escaped: Vec<u8>,
    ok_plain: bool,
    ok_histogram: bool,
    /// What `lines` was built for ([`Scratch::line_key`]); 0 = not built.
    lines_key: u64,
    lines: Lines,
    seen: u64,
}

impl RenderCache {
    /// An empty cache.
    pub fn new() -> RenderCache {
        RenderCache::default()
    }

    /// Label sets whose text is kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no label set's text is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many series were written from a family's run (its series came in the same order
    /// as in a previous render) instead of being looked up one by one.
    pub fn replayed(&self) -> u64 {
        self.replayed
    }
}

/// [`render`] with a cache of sample-line text that persists between calls.
pub fn render_cached(
    snapshot: &Snapshot,
    format: Format,
    out: &mut Vec<u8>,
    cache: &mut RenderCache,
) {
    cache.renders += 1;
    let mut scratch = Scratch {
        cache: Some(cache),
        ..Scratch::default()
    };
    // One share: the cache keeps the lines of whole families.
    render_in_shares(snapshot, format, out, 1, &mut scratch);
    let replayed = scratch.replayed;
    if let Some(cache) = scratch.cache {
        cache.replayed += replayed as u64;
        let renders = cache.renders;
        cache
            .runs
            .retain(|_, r| renders - r.used < RUN_KEEP_RENDERS);
        if cache.map.len() > 1024 {
            // Series served from runs did not touch their map entries: they count as seen,
            // and entries a run still holds stay.
            let seen = cache.map.values().filter(|c| c.seen == renders).count() + replayed;
            if cache.map.len() > 2 * seen {
                let held: rustc_hash::FxHashSet<usize> = cache
                    .runs
                    .values()
                    .flat_map(|r| r.series.iter())
                    .map(|(l, _, _)| Arc::as_ptr(l) as *const () as usize)
                    .collect();
                cache
                    .map
                    .retain(|k, c| c.seen == renders || held.contains(k));
            }
        }
    }
}

/// The fixed part of each sample line of one series, in the order the writer emits them:
/// `name_suffix{labels} ` (or `name_bucket{labels,le="…"} `), without value or newline.
#[derive(Default)]
pub(crate) struct Lines {
    text: Vec<u8>,
    ends: Vec<u32>,
}

impl Lines {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Number of prefixes.
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Appends every prefix of `other`.
    fn append(&mut self, other: &Lines) {
        let base = self.text.len() as u32;
        self.text.extend_from_slice(&other.text);
        self.ends.extend(other.ends.iter().map(|e| base + e));
    }

    /// Appends the prefix `name suffix{labels} ` (braces only when there are labels).
    pub(crate) fn sample(&mut self, name: &[u8], suffix: &[u8], labels: &[u8]) {
        text::sample_start(&mut self.text, name, suffix, labels);
        self.ends.push(self.text.len() as u32);
    }

    /// Appends one `_bucket` prefix per finite bound of `le`, then the `+Inf` one.
    pub(crate) fn buckets(&mut self, name: &[u8], labels: &[u8], le: &LeCache) {
        for i in 0..le.len() {
            text::bucket_start(&mut self.text, name, labels);
            self.text.extend_from_slice(le.get(i));
            self.text.extend_from_slice(b"\"} ");
            self.ends.push(self.text.len() as u32);
        }
        text::bucket_start(&mut self.text, name, labels);
        self.text.extend_from_slice(b"+Inf\"} ");
        self.ends.push(self.text.len() as u32);
    }

    /// Prefix `i`, in the order they were appended.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

/// One series' prefixes within a [`Lines`] that may hold other series' too.
#[derive(Clone, Copy)]
pub(crate) struct LinesView<'a> {
    lines: &'a Lines,
    first: usize,
}

impl<'a> LinesView<'a> {
    /// All of `lines`.
    fn all(lines: &'a Lines) -> LinesView<'a> {
        LinesView { lines, first: 0 }
    }

    /// The series' prefix `i`, in the order they were built.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        self.lines.get(self.first + i)
    }
}

/// Buffers reused across families and series while rendering.
#[derive(Default)]
pub(crate) struct Scratch<'c> {
    /// Sample-line text kept between renders, when the caller keeps one.
    cache: Option<&'c mut RenderCache>,
    /// The current series' escaped label pairs, without braces.
    labels: Vec<u8>,
    /// The current series' line prefixes, when there is no cache.
    lines: Lines,
    /// Cached `le` values of the last bucket layout.
    le: LeCache,
    /// Label names checked already.
    names: NameCheck,
    /// The current family against its run (with a cache).
    run: RunState,
    /// Series served from runs in this render.
    replayed: usize,
}

/// The label names of the last series whose names were valid, so consecutive series with the
/// same names are not validated again.
#[derive(Default)]
struct NameCheck {
    valid_names: Vec<Text>,
    valid_for_histogram: bool,
}

impl NameCheck {
    /// [`labels_ok`], skipped when the names are those of the last valid series (consecutive
    /// series of a family usually share them: the same allocations, or equal texts where
    /// parts of a read were decoded apart).
    fn ok(&mut self, labels: &[Label], histogram: bool) -> bool {
        let same_names = self.valid_for_histogram == histogram
            && self.valid_names.len() == labels.len()
            && self
                .valid_names
                .iter()
                .zip(labels.iter())
                .all(|(p, (n, _))| Arc::ptr_eq(p, n) || p == n);
        if !same_names {
            if !labels_ok(labels, histogram) {
                return false;
            }
            self.valid_names.clear();
            self.valid_names
                .extend(labels.iter().map(|(n, _)| n.clone()));
            self.valid_for_histogram = histogram;
        }
        true
    }
}

impl Scratch<'_> {
    /// Starts rendering `fam` (identified by `key`, from [`family_key`]): its series are served
    /// from its run if they are the run's, in the same order, else a new run is built.
    pub(crate) fn begin_family(&mut self, fam: &Family, key: u64) {
        let Some(cache) = self.cache.as_deref_mut() else {
            self.run = RunState::Off;
            return;
        };
        let renders = cache.renders;
        if let Some(mut run) = cache.runs.remove(&key) {
            let same = run.name == fam.name
                && run.series.len() == fam.series.len()
                && run
                    .series
                    .iter()
                    .zip(&fam.series)
                    .all(|((l, _, _), s)| Arc::ptr_eq(l, &s.labels));
            if same {
                run.used = renders;
                self.run = RunState::Replay {
                    key,
                    next: 0,
                    dirty: false,
                    run,
                };
                return;
            }
        }
        self.run = RunState::Build {
            key,
            run: Run {
                name: fam.name.clone(),
                series: Vec::with_capacity(fam.series.len()),
                lines: Lines::default(),
                used: renders,
            },
        };
    }

    /// Ends the family begun last: keeps the run built for it, or drops one that no longer
    /// fits.
    pub(crate) fn end_family(&mut self) {
        let state = std::mem::take(&mut self.run);
        let Some(cache) = self.cache.as_deref_mut() else {
            return;
        };
        match state {
            RunState::Build { key, run }
            | RunState::Replay {
                key,
                dirty: false,
                run,
                ..
            } => {
                cache.runs.insert(key, run);
            }
            RunState::Replay { dirty: true, .. } | RunState::Off => {}
        }
    }

    /// Keeps the family's run in step for a series whose value was refused.
    fn note_refused(&mut self, series: &Series) {
        match &mut self.run {
            RunState::Replay { next, .. } => *next += 1,
            RunState::Build { run, .. } => {
                let first = run.lines.len() as u32;
                run.series.push((series.labels.clone(), RUN_UNKNOWN, first));
            }
            RunState::Off => {}
        }
    }

    /// Whether rendering keeps nothing between renders (each line is written once).
    pub(crate) fn is_cold(&self) -> bool {
        self.cache.is_none()
    }

    /// What a series' line prefixes depend on besides its labels: the family (`family_key`,
    /// from [`family_key`]) and, for histograms, the bucket layout. Never 0.
    fn line_key(&self, family_key: u64, histogram: bool) -> u64 {
        let k = if histogram {
            family_key ^ self.le.hash.rotate_left(17)
        } else {
            family_key
        };
        k | 1
    }
}

/// 64-bit FNV-1a.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Identifies a family's line text: name, kind and format.
pub(crate) fn family_key(fam: &Family, om: bool) -> u64 {
    let h = fnv(fam.name.as_bytes());
    h ^ ((fam.kind as u64) << 1 | u64::from(om)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Formatted `le` label values for one bucket layout, reused while consecutive series share
/// it (they normally all do within a family).
#[derive(Default)]
pub(crate) struct LeCache {
    bounds: Vec<u64>,
    text: Vec<u8>,
    ends: Vec<usize>,
    om: bool,
    valid: bool,
    /// Hash of the bounds and format, for [`Scratch::line_key`].
    hash: u64,
}

impl LeCache {
    /// Makes the cache hold `buckets`' bounds formatted for the given format.
    pub(crate) fn prepare(&mut self, buckets: &[(f64, u64)], om: bool) {
        if self.valid
            && self.om == om
            && self.bounds.len() == buckets.len()
            && self
                .bounds
                .iter()
                .zip(buckets)
                .all(|(b, (f, _))| *b == f.to_bits())
        {
            return;
        }
        self.bounds.clear();
        self.text.clear();
        self.ends.clear();
        for (f, _) in buckets {
            self.bounds.push(f.to_bits());
            if om {
                escape::write_f64_om(&mut self.text, *f);
            } else {
                escape::write_f64_text(&mut self.text, *f);
            }
            self.ends.push(self.text.len());
        }
        self.om = om;
        self.valid = true;
        self.hash = fnv(&self.text)
            ^ (self.bounds.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(om);
    }

    /// Number of bounds.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The formatted bound of bucket `i`.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// Whether the family can be written at all.
pub(crate) fn family_ok(fam: &Family) -> bool {
    crate::snapshot::is_valid_metric_name(&fam.name)
}

/// Returns the series' line prefixes (built by `build` from the escaped label pairs and the
/// `le` texts, or taken from the cache), or `None` if the series must be skipped: an invalid
/// or duplicate label name, a reserved `le` label on a histogram, or a value of the wrong
/// shape for the family's kind. For histograms the `le` texts are prepared here first.
pub(crate) fn prepare_series<'s>(
    kind: MetricKind,
    series: &Series,
    family_key: u64,
    om: bool,
    scratch: &'s mut Scratch,
    build: impl FnOnce(&[u8], &LeCache, &mut Lines),
) -> Option<LinesView<'s>> {
    let value_ok = match (kind, &series.value) {
        (MetricKind::Histogram, Value::Histogram { buckets, .. }) => buckets_ok(buckets),
        (MetricKind::Histogram, _) | (_, Value::Histogram { .. }) => false,
        _ => true,
    };
    if !value_ok {
        scratch.note_refused(series);
        return None;
    }
    let histogram = kind == MetricKind::Histogram;
    if let Value::Histogram { buckets, .. } = &series.value {
        scratch.le.prepare(finite_buckets(buckets), om);
    }
    let line_key = scratch.line_key(family_key, histogram);
    let Scratch {
        cache,
        labels: scratch_labels,
        lines: scratch_lines,
        le,
        names,
        run,
        replayed,
    } = scratch;
    // A label set nothing but this snapshot holds (a collector built it for this scrape, as
    // the process collectors do) never comes again: caching it would only grow the map until
    // a sweep, and its family gets no run. A run holds its label sets, so a replayed one is
    // never fresh, and is not asked: that would touch 10k separate allocations per scrape.
    let fresh = !matches!(run, RunState::Replay { .. }) && Arc::strong_count(&series.labels) == 1;
    if fresh && matches!(run, RunState::Build { .. }) {
        *run = RunState::Off;
    }
    if let (Some(cache), false) = (cache.as_deref_mut(), fresh) {
        let mut hit = None;
        if let RunState::Replay {
            next,
            dirty,
            run: r,
            ..
        } = &mut *run
        {
            let i = *next;
            *next += 1;
            match r.series.get(i) {
                Some(&(_, k, first)) if k == line_key || k == RUN_SKIPPED => hit = Some((k, first)),
                // Other prefixes than the run holds (a new bucket layout): from the map
                // below, and the run is dropped when the family ends.
                _ => *dirty = true,
            }
        }
        if let Some((k, first)) = hit {
            *replayed += 1;
            if let (RunState::Replay { run: r, .. }, true) = (&*run, k == line_key) {
                return Some(LinesView {
                    lines: &r.lines,
                    first: first as usize,
                });
            }
            return None;
        }
        let key = Arc::as_ptr(&series.labels) as *const () as usize;
        let renders = cache.renders;
        let entry = cache.map.entry(key).or_insert_with(|| {
            let mut escaped = Vec::new();
            write_labels(&series.labels, &mut escaped);
            CachedSeries {
                _labels: series.labels.clone(),
                escaped,
                ok_plain: labels_ok(&series.labels, false),
                ok_histogram: labels_ok(&series.labels, true),
                lines_key: 0,
                lines: Lines::default(),
                seen: renders,
            }
        });
        entry.seen = renders;
        let ok = if histogram {
            entry.ok_histogram
        } else {
            entry.ok_plain
        };
        if ok && entry.lines_key != line_key {
            entry.lines.clear();
            build(&entry.escaped, le, &mut entry.lines);
            entry.lines_key = line_key;
        }
        if let RunState::Build { run, .. } = run {
            let first = run.lines.len() as u32;
            if ok {
                run.lines.append(&entry.lines);
            }
            let mark = if ok { line_key } else { RUN_SKIPPED };
            run.series.push((series.labels.clone(), mark, first));
        }
        return ok.then_some(LinesView::all(&entry.lines));
    }
    if !names.ok(&series.labels, histogram) {
        return None;
    }
    scratch_labels.clear();
    write_labels(&series.labels, scratch_labels);
    scratch_lines.clear();
    build(scratch_labels, le, scratch_lines);
    Some(LinesView::all(scratch_lines))
}

/// Without a cache, writes a counter, gauge or info series' line prefix `name suffix{labels} `
/// straight to `out` (no intermediate copies: a one-off render writes each prefix once), or
/// returns false if the series must be skipped, as [`prepare_series`] would.
pub(crate) fn write_plain_prefix(
    out: &mut Vec<u8>,
    series: &Series,
    name: &[u8],
    suffix: &[u8],
    scratch: &mut Scratch,
) -> bool {
    if matches!(series.value, Value::Histogram { .. }) || !scratch.names.ok(&series.labels, false) {
        return false;
    }
    text::sample_start_with(out, name, suffix, !series.labels.is_empty(), |o| {
        write_labels(&series.labels, o)
    });
    true
}

/// Writes label pairs escaped, comma separated, without braces.
fn write_labels(labels: &[Label], buf: &mut Vec<u8>) {
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"=\"");
        escape::write_label_value(buf, value);
        buf.push(b'"');
    }
}

/// Label names valid and unique (and no `le` when `histogram`).
fn labels_ok(labels: &[Label], histogram: bool) -> bool {
    for (i, (name, _)) in labels.iter().enumerate() {
        if !is_valid_label_name(name) || (histogram && &**name == "le") {
            return false;
        }
        if labels[..i].iter().any(|(other, _)| other == name) {
            return false;
        }
    }
    true
}

/// Bucket bounds strictly increasing and not NaN; a trailing `+Inf` bound is tolerated (the
/// writers skip it and emit `+Inf` from the count).
fn buckets_ok(buckets: &[(f64, u64)]) -> bool {
    let finite = finite_buckets(buckets);
    if finite
        .iter()
        .any(|(b, _)| b.is_nan() || *b == f64::INFINITY)
    {
        return false;
    }
    finite.windows(2).all(|w| w[0].0 < w[1].0)
}

/// The buckets without a trailing `+Inf` bound.
pub(crate) fn finite_buckets(buckets: &[(f64, u64)]) -> &[(f64, u64)] {
    match buckets.last() {
        Some((b, _)) if *b == f64::INFINITY => &buckets[..buckets.len() - 1],
        _ => buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Family, Text};

    const PROM2: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROM3: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

    /// Families that shares cut in every way: long ones over several shares, one whose
    /// series are all refused (its metadata lines must go), one refused only in its first
    /// part, histograms, info, `_created`, a family without series.
    fn cut_snapshot() -> Snapshot {
        let labels = |pairs: &[(&str, String)]| -> Labels {
            pairs
                .iter()
                .map(|(k, v)| (Text::from(*k), Text::from(v.as_str())))
                .collect()
        };
        let series = |n: usize, make: &dyn Fn(usize) -> (Labels, Value)| -> Vec<Series> {
            (0..n)
                .map(|i| {
                    let (labels, value) = make(i);
                    Series {
                        labels,
                        value,
                        created: (i % 3 == 0).then_some(1.7e9 + i as f64),
                    }
                })
                .collect()
        };
        let family = |name: &str, kind, series| Family {
            series,
            ..Family::new(name, "Help \\ with \n escapes.", kind)
        };
        let hist = |i: usize| Value::Histogram {
            buckets: vec![(0.1, i as u64 % 5), (1.0, i as u64 % 7 + 5)],
            sum: i as f64 / 8.0,
            count: i as u64 % 7 + 6,
        };
        let refused = |i: usize| labels(&[("a", i.to_string()), ("a", "again".into())]);
        let families = vec![
            family(
                "t_requests",
                MetricKind::Counter,
                series(3001, &|i| {
                    (
                        labels(&[("route", format!("r\"{i}\""))]),
                        Value::Scalar(i as f64),
                    )
                }),
            ),
            family(
                "t_refused",
                MetricKind::Counter,
                series(1700, &|i| (refused(i), Value::Scalar(1.0))),
            ),
            family("t_empty", MetricKind::Gauge, Vec::new()),
            family(
                "t_latency_seconds",
                MetricKind::Histogram,
                series(2100, &|i| {
                    let l = if i < 1200 {
                        labels(&[("le", i.to_string())])
                    } else {
                        labels(&[("route", format!("r{i}"))])
                    };
                    (l, hist(i))
                }),
            ),
            family(
                "t_build",
                MetricKind::Info,
                series(3, &|i| {
                    (labels(&[("version", i.to_string())]), Value::Scalar(1.0))
                }),
            ),
            family(
                "t_inflight",
                MetricKind::Gauge,
                series(900, &|i| {
                    (
                        labels(&[("w", format!("{}", i % 40))]),
                        Value::Scalar(-(i as f64)),
                    )
                }),
            ),
        ];
        Snapshot { families }
    }

    #[test]
    fn a_render_shared_over_threads_equals_a_whole_render() {
        let snap = cut_snapshot();
        for format in [Format::Text, Format::OpenMetrics] {
            let mut want = Vec::new();
            render_in_shares(&snap, format, &mut want, 1, &mut Scratch::default());
            let text = String::from_utf8(want.clone()).unwrap();
            assert!(
                !text.contains("t_refused"),
                "a family without written series"
            );
            assert!(text.contains("t_latency_seconds_bucket{route=\"r1200\",le=\"0.1\"}"));
            for shares in [2, 3, 4, 5, 8, 13, 64] {
                let mut got = Vec::with_capacity(1 << 20);
                render_in_shares(&snap, format, &mut got, shares, &mut Scratch::default());
                assert!(
                    got == want,
                    "{format:?} in {shares} shares:\n{}",
                    String::from_utf8_lossy(&got)
                );
            }
        }
    }

    /// The render of `snap` cut into `chunks`, the first `k` rendered at the front and the
    /// others alone, as [`render_in_shares`] joins them when the ends meet after `k`.
    fn render_meeting_at(snap: &Snapshot, format: Format, chunks: usize, k: usize) -> Vec<u8> {
        let parts = split(snap, snap.series_count(), chunks);
        let (mut out, mut front, mut scratch) =
            (Vec::new(), FrontChunks::default(), Scratch::default());
        for part in &parts[..k] {
            front.render(part, format, &mut out, &mut scratch);
        }
        let back = parts[k..]
            .iter()
            .map(|part| render_alone(part, format, 64))
            .collect();
        join_parts(&mut out, front.then(back));
        if format == Format::OpenMetrics {
            out.extend_from_slice(b"# EOF\n");
        }
        out
    }

    #[test]
    fn a_render_in_chunks_equals_a_whole_render_wherever_the_ends_meet() {
        let snap = cut_snapshot();
        for format in [Format::Text, Format::OpenMetrics] {
            let mut want = Vec::new();
            render_in_shares(&snap, format, &mut want, 1, &mut Scratch::default());
            for chunks in [2, 3, 5, 8, 13, 64] {
                for k in 0..=chunks {
                    let got = render_meeting_at(&snap, format, chunks, k);
                    assert!(
                        got == want,
                        "{format:?} in {chunks} chunks meeting after {k}:\n{}",
                        String::from_utf8_lossy(&got)
                    );
                }
            }
        }
    }

    fn neg(h: &str) -> Format {
        Format::negotiate(Some(h))
    }

    #[test]
    fn content_types() {
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    #[test]
    fn negotiation_real_scrapers() {
        assert_eq!(neg(PROM2), Format::OpenMetrics);
        assert_eq!(neg(PROM3), Format::OpenMetrics);
        // Prometheus 3 with OpenMetrics disabled in scrape_protocols.
        assert_eq!(
            neg("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
            Format::Text
        );
        // Prometheus < 2.5 / curl / browsers.
        assert_eq!(neg("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Text);
        assert_eq!(neg("*/*"), Format::Text);
        assert_eq!(
            neg("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            Format::Text
        );
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(neg(""), Format::Text);
    }

    #[test]
    fn negotiation_weights_and_versions() {
        assert_eq!(neg("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(
            neg("application/openmetrics-text; version=\"1.0.0\"; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            neg("Application/OpenMetrics-Text;Version=0.0.1"),
            Format::OpenMetrics
        );
        assert_eq!(
            neg("application/openmetrics-text;version=2.0.0"),
            Format::Text
        );
        assert_eq!(neg("application/openmetrics-text;q=0"), Format::Text);
        assert_eq!(
            neg("text/plain;q=0.9,application/openmetrics-text;q=0.8"),
            Format::Text
        );
        assert_eq!(
            neg("text/plain;q=0.8,application/openmetrics-text;q=0.9"),
            Format::OpenMetrics
        );
        // Ties go to the first listed.
        assert_eq!(
            neg("application/openmetrics-text,text/plain"),
            Format::OpenMetrics
        );
        assert_eq!(neg("text/plain,application/openmetrics-text"), Format::Text);
        // The most specific range decides text/plain's q.
        assert_eq!(
            neg("*/*;q=1,text/plain;q=0,application/openmetrics-text;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(
            neg("text/*;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Text
        );
        // Wildcards alone never select OpenMetrics.
        assert_eq!(neg("application/*"), Format::Text);
        // Whitespace and empty elements are fine.
        assert_eq!(
            neg(" , application/openmetrics-text ; q=0.5 ,, text/plain ; q=0.25 ,"),
            Format::OpenMetrics
        );
    }

    #[test]
    fn negotiation_malformed_is_text() {
        for h in [
            "application/openmetrics-text;q=2",
            "application/openmetrics-text;q=0.5000",
            "application/openmetrics-text;q=abc",
            "application/openmetrics-text;q=-1",
            "application/openmetrics-text;q=",
            "application/openmetrics-text;version",
            "application/openmetrics-text;version=\"1.0.0",
            "openmetrics",
            "application/",
            "/openmetrics-text",
            "application/openmetrics text",
            "application/openmetrics-text;=1",
            "\u{fc}/x, application/openmetrics-text",
        ] {
            assert_eq!(neg(h), Format::Text, "{h:?}");
        }
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0."), Some(0));
        assert_eq!(parse_qvalue("0.75"), Some(750));
        assert_eq!(parse_qvalue("0.001"), Some(1));
        assert_eq!(parse_qvalue("1"), Some(1000));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.001"), None);
        assert_eq!(parse_qvalue(".5"), None);
    }

    fn render_str(snap: &Snapshot, format: Format) -> String {
        let mut out = Vec::new();
        render(snap, format, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn skips_invalid_names_and_labels() {
        let mut bad_name = Family::new("1bad", "x", MetricKind::Gauge);
        bad_name.push(&[], 1.0);
        let mut fam = Family::new("good", "Good.", MetricKind::Gauge);
        fam.push(&[("a", "1")], 1.0);
        fam.push(&[("a-b", "2")], 2.0);
        fam.push(&[("__name__", "3")], 3.0);
        fam.push(&[("a", "4"), ("a", "5")], 4.0);
        fam.push(&[("b", "6"), ("c", "7")], 5.0);
        let mut empty = Family::new("empty", "No valid series.", MetricKind::Gauge);
        empty.push(&[("x y", "1")], 1.0);
        let mut hist_scalar = Family::new("h", "Histogram with scalar.", MetricKind::Histogram);
        hist_scalar.push(&[], 1.0);
        let snap = Snapshot {
            families: vec![bad_name, empty, fam, hist_scalar],
        };
        assert_eq!(
            render_str(&snap, Format::Text),
            "# HELP good Good.\n# TYPE good gauge\ngood{a=\"1\"} 1\ngood{b=\"6\",c=\"7\"} 5\n"
        );
        assert_eq!(
            render_str(&snap, Format::OpenMetrics),
            "# TYPE good gauge\n# HELP good Good.\ngood{a=\"1\"} 1.0\ngood{b=\"6\",c=\"7\"} 5.0\n# EOF\n"
        );
        assert_eq!(render_str(&Snapshot::default(), Format::Text), "");
        assert_eq!(
            render_str(&Snapshot::default(), Format::OpenMetrics),
            "# EOF\n"
        );
    }

    #[test]
    fn histogram_edge_cases() {
        let mut fam = Family::new("d_seconds", "D.", MetricKind::Histogram);
        let hist = |buckets: Vec<(f64, u64)>| Value::Histogram {
            buckets,
            sum: 1.5,
            count: 3,
        };
        let mut s = |labels: &[(&str, &str)], v: Value| {
            fam.series.push(Series {
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                value: v,
                created: None,
            })
        };
        s(&[("k", "inf")], hist(vec![(1.0, 2), (f64::INFINITY, 3)]));
        s(&[("k", "le")], hist(vec![(1.0, 2)]));
        s(&[("k", "nan")], hist(vec![(f64::NAN, 2)]));
        s(&[("k", "none")], hist(vec![]));
        s(&[("k", "order")], hist(vec![(2.0, 1), (1.0, 2)]));
        s(&[("k", "x"), ("le", "1")], hist(vec![(1.0, 2)]));
        s(&[("k", "z")], Value::Scalar(1.0));
        let snap = Snapshot {
            families: vec![fam],
        };
        assert_eq!(
            render_str(&snap, Format::Text),
            "# HELP d_seconds D.\n# TYPE d_seconds histogram\n\
             d_seconds_bucket{k=\"inf\",le=\"1\"} 2\nd_seconds_bucket{k=\"inf\",le=\"+Inf\"} 3\n\
             d_seconds_sum{k=\"inf\"} 1.5\nd_seconds_count{k=\"inf\"} 3\n\
             d_seconds_bucket{k=\"le\",le=\"1\"} 2\nd_seconds_bucket{k=\"le\",le=\"+Inf\"} 3\n\
             d_seconds_sum{k=\"le\"} 1.5\nd_seconds_count{k=\"le\"} 3\n\
             d_seconds_bucket{k=\"none\",le=\"+Inf\"} 3\n\
             d_seconds_sum{k=\"none\"} 1.5\nd_seconds_count{k=\"none\"} 3\n"
        );
    }

    #[test]
    fn le_cache_reuses_and_refreshes() {
        let mut c = LeCache::default();
        c.prepare(&[(0.5, 0), (1.0, 0)], false);
        assert_eq!(c.get(0), b"0.5");
        assert_eq!(c.get(1), b"1");
        c.prepare(&[(0.5, 0), (1.0, 0)], true);
        assert_eq!(c.get(1), b"1.0");
        c.prepare(&[(0.25, 0)], true);
        assert_eq!(c.get(0), b"0.25");
    }

    /// A warm render (cached line prefixes) writes exactly what a cold one does, whatever
    /// changed in between: values, bucket layouts, the format, or a label set that moved to
    /// another family.
    #[test]
    fn cached_render_matches_cold_render() {
        let shared: Labels = vec![(Text::from("route"), Text::from("a\"b"))].into();
        let other: Labels = vec![(Text::from("route"), Text::from("c"))].into();
        let middle: Labels = vec![(Text::from("route"), Text::from("b"))].into();
        let hist = |bounds: &[f64], n: u64| Value::Histogram {
            buckets: bounds.iter().map(|b| (*b, n)).collect(),
            sum: n as f64 * 0.5,
            count: n + 1,
        };
        let snap = |round: u64| {
            let series = |labels: &Labels, value: Value| Series {
                labels: labels.clone(),
                value,
                created: Some(1.5),
            };
            let bounds: &[f64] = if round % 2 == 0 { &[0.1, 1.0] } else { &[0.5] };
            let mut c = Family::new("x_requests", "R.", MetricKind::Counter);
            c.series = vec![
                series(&shared, Value::Scalar(round as f64)),
                series(&other, Value::Scalar(0.25)),
            ];
            // A series that comes and goes between the others (a family whose run no longer
            // fits), on some rounds only.
            if round % 3 == 1 {
                c.series.push(series(&middle, Value::Scalar(3.0)));
            }
            let mut h = Family::new("x_seconds", "S.", MetricKind::Histogram);
            h.series = vec![series(&shared, hist(bounds, round))];
            // The same label set in a third family every other round.
            let mut g = Family::new("x_gauge", "", MetricKind::Gauge);
            if round % 2 == 1 {
                g.series = vec![series(&shared, Value::Scalar(-1.0))];
            }
            // Series both writers must skip (invalid or repeated name, wrong value shape) next
            // to ones they must write (no labels, info).
            let mut bad = Family::new("x_mixed", "M.", MetricKind::Counter);
            let dup: Labels = vec![
                (Text::from("a"), Text::from("1")),
                (Text::from("a"), Text::from("2")),
            ]
            .into();
            bad.series = vec![
                series(
                    &vec![(Text::from("1bad"), Text::from("v"))].into(),
                    Value::Scalar(1.0),
                ),
                series(&dup, Value::Scalar(2.0)),
                series(&other, hist(bounds, 1)),
                series(&vec![].into(), Value::Scalar(round as f64 / 3.0)),
                series(&shared, Value::Scalar(f64::NAN)),
            ];
            let mut info = Family::new("x_build", "B.", MetricKind::Info);
            info.series = vec![series(&other, Value::Scalar(7.0))];
            let mut s = Snapshot {
                families: vec![c, h, g, bad, info],
            };
            s.normalize();
            s
        };
        let mut cache = RenderCache::new();
        for round in 0..9u64 {
            // Each format twice in a row: the second render of a family replays its run.
            for format in [
                Format::Text,
                Format::Text,
                Format::OpenMetrics,
                Format::OpenMetrics,
            ] {
                let s = snap(round);
                let (mut cold, mut warm) = (Vec::new(), Vec::new());
                render(&s, format, &mut cold);
                render_cached(&s, format, &mut warm, &mut cache);
                assert_eq!(
                    String::from_utf8(warm).unwrap(),
                    String::from_utf8(cold).unwrap(),
                    "round {round} {format:?}"
                );
            }
        }
        assert!(cache.replayed() > 0, "runs were replayed");
    }

    #[test]
    fn label_sets_built_for_one_scrape_are_not_cached() {
        let kept: Vec<Labels> = (0..50)
            .map(|i| vec![(Text::from("route"), Text::from(format!("/r{i}")))].into())
            .collect();
        let mut cache = RenderCache::new();
        for round in 0..40 {
            let mut seg = Family::new("x_requests", "R.", MetricKind::Counter);
            seg.series = kept
                .iter()
                .map(|l| Series {
                    labels: l.clone(),
                    value: Value::Scalar(round as f64),
                    created: None,
                })
                .collect();
            // Built anew each scrape, as the process collectors do, in a family of its own
            // and beside kept label sets.
            let mut procs = Family::new("x_process_threads", "T.", MetricKind::Gauge);
            let mut mixed = Family::new("x_mixed", "M.", MetricKind::Gauge);
            for i in 0..30 {
                let pid = (round * 100 + i).to_string();
                procs.push(&[("worker", &pid)], 1.0);
                mixed.push(&[("worker", &pid)], 2.0);
            }
            mixed.series.push(Series {
                labels: kept[0].clone(),
                value: Value::Scalar(3.0),
                created: None,
            });
            let mut s = Snapshot {
                families: vec![seg, procs, mixed],
            };
            s.normalize();
            for format in [Format::Text, Format::OpenMetrics] {
                let (mut cold, mut warm) = (Vec::new(), Vec::new());
                render(&s, format, &mut cold);
                render_cached(&s, format, &mut warm, &mut cache);
                assert_eq!(warm, cold, "round {round} {format:?}");
            }
            assert!(
                cache.len() <= kept.len(),
                "round {round}: {} kept",
                cache.len()
            );
        }
        assert!(cache.replayed() > 0, "the kept family is replayed");
    }
}
