//! Records parsed access-log lines into the segment, in the slot of the web-server worker that
//! served each request.

use rustc_hash::FxHashMap as HashMap;
use std::time::{Duration, Instant};

use super::families::{self, WebFamilies};
use super::line;
use super::route::{method_label, status_class, RouteRules};
use crate::config::IngestConfig;
use crate::segment::{
    now_unix, process_start_ticks, Handle, Segment, SegmentError, WorkerKind, Writer,
};

/// How often a cached worker slot is checked to still belong to its web-server worker.
const RECHECK: Duration = Duration::from_secs(10);
/// Per-process memory of route admissions, cleared when it grows past this.
const ROUTE_MEMORY: usize = 20_000;

/// Label value that replaces routes beyond the cap.
pub const OVERFLOW: &str = "__overflow__";

/// Handles of one route of one worker, resolved once.
struct RouteHandles {
    requests: HashMap<(&'static str, &'static str), Handle>,
    duration: HashMap<&'static str, Handle>,
    size: Handle,
}

struct WebWorker {
    slot: u32,
    pid: u32,
    start: u64,
    writer: Writer,
    checked: Instant,
    last_seen: Handle,
    routes: HashMap<String, RouteHandles>,
}

/// The slot of web-server worker `pid`, claimed on first sight (keyed by its PID and start time)
/// and re-checked every [`RECHECK`] in case GC folded it meanwhile.
fn worker_slot<'a>(
    seg: &Segment,
    workers: &'a mut HashMap<u32, WebWorker>,
    fams: &WebFamilies,
    pid: u32,
) -> Result<&'a mut WebWorker, SegmentError> {
    let stale = match workers.get(&pid) {
        None => true,
        Some(w) if w.checked.elapsed() >= RECHECK => {
            seg.slot_owner(w.slot) != Some((w.pid, w.start))
        }
        Some(_) => false,
    };
    if stale {
        // A worker that already exited gets start 0: GC sees it dead and folds it.
        let start = process_start_ticks(pid).unwrap_or(0);
        let slot = seg.claim_worker_for(pid, start, WorkerKind::WebWorker)?;
        let mut writer = Writer::for_slot(seg, WorkerKind::WebWorker, slot);
        let last_seen = writer.handle(&fams.last_seen, &[])?;
        workers.insert(
            pid,
            WebWorker {
                slot,
                pid,
                start,
                writer,
                checked: Instant::now(),
                last_seen,
                routes: HashMap::default(),
            },
        );
    }
    let w = workers.get_mut(&pid).expect("inserted above");
    if w.checked.elapsed() >= RECHECK {
        w.checked = Instant::now();
    }
    Ok(w)
}

/// Turns access-log lines into per-worker web request series.
pub struct Recorder {
    seg: Segment,
    source: String,
    rules: RouteRules,
    route_cap: u64,
    fams: WebFamilies,
    workers: HashMap<u32, WebWorker>,
    routes: HashMap<String, bool>,
    route_buf: String,
    now: f64,
    lines: Handle,
    errors: Handle,
    overflow: Handle,
    own: Writer,
    /// Rate limit for warnings about lines that could not be recorded (a full segment would
    /// otherwise write a line into the web server's error log for every request).
    warn: WarnLimit,
}

/// At most one warning per [`WarnLimit::EVERY`], saying how many were held back.
#[derive(Default)]
struct WarnLimit {
    last: Option<Instant>,
    held: u64,
}

impl WarnLimit {
    const EVERY: Duration = Duration::from_secs(10);

    fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            self.held += 1;
            return;
        }
        if self.held > 0 {
            log::warn!(
                "{msg} ({} similar messages in the last {}s not shown)",
                self.held,
                Self::EVERY.as_secs()
            );
        } else {
            log::warn!("{msg}");
        }
        self.last = Some(Instant::now());
        self.held = 0;
    }
}

impl Recorder {
    /// A recorder writing into `seg`; `source` labels its own counters (`apache`, `nginx`).
    pub fn new(seg: &Segment, cfg: &IngestConfig, source: &str) -> Result<Recorder, SegmentError> {
        let mut own = Writer::new(seg, WorkerKind::Ingest)?;
        let lines = own.handle(&families::lines_read(), &[("source", source)])?;
        let errors = own.handle(&families::parse_errors(), &[("source", source)])?;
        let overflow = own.handle(&families::overflow(), &[("label", "route")])?;
        Ok(Recorder {
            seg: seg.clone(),
            source: source.to_owned(),
            rules: RouteRules {
                script_prefixes: cfg.script_prefixes.clone(),
                static_prefixes: cfg.static_prefixes.clone(),
                subaction: cfg.subaction,
            },
            route_cap: cfg.route_cap,
            fams: WebFamilies::new(cfg),
            workers: HashMap::default(),
            routes: HashMap::default(),
            route_buf: String::new(),
            now: now_unix(),
            lines,
            errors,
            overflow,
            own,
            warn: WarnLimit::default(),
        })
    }

    /// The recorder's own writer (for extra counters of its front end).
    pub fn own_writer(&mut self) -> &mut Writer {
        &mut self.own
    }

    /// Records one raw line (without newline). Malformed lines are counted, never fatal.
    pub fn record_line(&mut self, raw: &[u8]) {
        self.lines.inc();
        match line::parse(raw) {
            Ok(l) => {
                if let Err(e) = self.record(&l) {
                    let source = &self.source;
                    self.warn
                        .warn(format_args!("{source}: cannot record a request: {e}"));
                }
            }
            Err(e) => {
                self.errors.inc();
                log::debug!("{}: skipped a malformed line: {e}", self.source);
            }
        }
    }

    /// Whether `route` may be used as a label value (else `__overflow__`).
    fn admit(&mut self, route: &str) -> bool {
        if let Some(&ok) = self.routes.get(route) {
            return ok;
        }
        let ok = match self.seg.admit_label_value("route", route, self.route_cap) {
            Ok(ok) => ok,
            Err(e) => {
                // Not remembered: the segment may have room again for the next line.
                self.warn.warn(format_args!("route cap check failed: {e}"));
                return false;
            }
        };
        if self.routes.len() >= ROUTE_MEMORY {
            self.routes.clear();
        }
        self.routes.insert(route.to_owned(), ok);
        ok
    }

    /// Refreshes the clock used for "last seen" (once per batch, not per line).
    pub fn tick(&mut self) {
        self.now = now_unix();
    }

    fn record(&mut self, l: &line::AccessLine<'_>) -> Result<(), SegmentError> {
        let mut buf = std::mem::take(&mut self.route_buf);
        self.rules.route_into(l.method, l.uri, l.referer, &mut buf);
        if !self.admit(&buf) {
            self.overflow.inc();
            buf.clear();
            buf.push_str(OVERFLOW);
        }
        let result = self.record_route(l, &buf);
        self.route_buf = buf;
        result
    }

    fn record_route(&mut self, l: &line::AccessLine<'_>, route: &str) -> Result<(), SegmentError> {
        let method = method_label(l.method);
        let class = status_class(l.status);
        let fams = &self.fams;
        let w = worker_slot(&self.seg, &mut self.workers, fams, l.pid)?;
        let rh = match w.routes.get_mut(route) {
            Some(rh) => rh,
            None => {
                let size = w.writer.handle(&fams.size, &[("route", route)])?;
                w.routes.entry(route.to_owned()).or_insert(RouteHandles {
                    requests: HashMap::default(),
                    duration: HashMap::default(),
                    size,
                })
            }
        };
        let requests = match rh.requests.get(&(method, class)) {
            Some(h) => h,
            None => {
                let h = w.writer.handle(
                    &fams.requests,
                    &[
                        ("method", method),
                        ("route", route),
                        ("status_class", class),
                    ],
                )?;
                rh.requests.entry((method, class)).or_insert(h)
            }
        };
        requests.inc();
        let duration = match rh.duration.get(method) {
            Some(h) => h,
            None => {
                let h = w
                    .writer
                    .handle(&fams.duration, &[("method", method), ("route", route)])?;
                rh.duration.entry(method).or_insert(h)
            }
        };
        duration.observe(l.duration);
        rh.size.observe(l.bytes as f64);
        w.last_seen.set_max(self.now);
        Ok(())
    }

    /// Reopens the segment if it was replaced (clear); call now and then.
    pub fn refresh(&mut self) -> Result<(), SegmentError> {
        if self.seg.is_stale() {
            let seg = self.seg.reopen()?;
            *self = Recorder::new(
                &seg,
                &IngestConfig {
                    route_cap: self.route_cap,
                    subaction: self.rules.subaction,
                    script_prefixes: self.rules.script_prefixes.clone(),
                    static_prefixes: self.rules.static_prefixes.clone(),
                    duration_buckets: self.fams.duration.buckets.clone(),
                    size_buckets: self.fams.size.buckets.clone(),
                    ..IngestConfig::default()
                },
                &self.source.clone(),
            )?;
        }
        Ok(())
    }
}
