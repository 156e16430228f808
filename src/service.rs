//! The exporter service: routes a request from any front end (FastCGI, CGI, demo HTTP) to a
//! scrape, runs the collectors, records per-worker figures in the segment and renders the
//! answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::collector::access_log::AccessLogCollector;
use crate::collector::cache::CacheCollector;
use crate::collector::daemon_processes::DaemonProcessCollector;
use crate::collector::exporter::ExporterCollector;
use crate::collector::otrs_log::OtrsLogCollector;
use crate::collector::segment::{SegmentCollector, SegmentSource, Spent};
use crate::collector::web_processes::WebProcessCollector;
use crate::collector::{Runner, Scrape, Selection};
use crate::config::Config;
use crate::exposition::{render, render_cached, Format, RenderCache};
use crate::front::request::{Handler, Request, Response};
use crate::segment::{FamilyDef, SegmentOptions, WorkerKind, Writer};
use crate::snapshot::Snapshot;

/// Seconds kept free of Prometheus' scrape timeout for rendering and transport.
const TIMEOUT_OFFSET: f64 = 0.5;

/// `otrs_exporter_scrapes_total{worker}`: scrapes answered by each exporter process.
pub fn scrapes_family() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_scrapes",
        "Scrapes answered, by exporter process (worker).",
    )
}

/// `otrs_exporter_scrape_errors_total{collector}`: collector failures over all workers.
pub fn scrape_errors_family() -> FamilyDef {
    FamilyDef::counter(
        "otrs_exporter_scrape_errors",
        "Collector failures and timeouts, by collector, over all exporter processes.",
    )
    .shared()
}

/// Turns the `[segment]` settings into segment options (resolving the group name).
pub fn segment_options(cfg: &Config) -> Result<SegmentOptions, String> {
    let s = &cfg.segment;
    let gid = if s.group.is_empty() {
        None
    } else {
        match nix::unistd::Group::from_name(&s.group) {
            Ok(Some(g)) => Some(g.gid.as_raw()),
            Ok(None) => return Err(format!("segment.group: no group named {:?}", s.group)),
            Err(e) => return Err(format!("segment.group {:?}: {e}", s.group)),
        }
    };
    Ok(SegmentOptions {
        path: s.path.clone(),
        max_bytes: s.max_bytes,
        initial_bytes: s.initial_bytes,
        worker_slots: s.worker_slots,
        gid,
        mode: s.mode.bits(),
        lock_timeout: Duration::from_millis(s.lock_timeout_ms),
    })
}

/// One exporter process' state: settings, the segment, the collectors and its worker slot.
pub struct Service {
    config: Config,
    source: Arc<SegmentSource>,
    runner: Runner,
    writer: Mutex<Option<Writer>>,
    /// Escaped label text kept between scrapes of this process (FastCGI).
    render_cache: Mutex<RenderCache>,
    /// Scrapes answered by this process.
    scrapes: std::sync::atomic::AtomicU64,
    /// Size of the last scrape's body, to size the next one's buffer.
    last_body: std::sync::atomic::AtomicUsize,
    /// The admin page.
    admin: crate::admin::Admin,
    /// The process answers one request and exits (CGI): what a scrape built is left for the
    /// exit to reclaim instead of being freed piece by piece.
    one_shot: bool,
    /// A sent scrape's families, for the segment collector to refill.
    spent: Arc<Spent>,
    /// The database connection of the DB collectors, if any are enabled.
    db: Option<Arc<crate::db::DbHandle>>,
}

/// A scrape's families, kept by its response and handed to the segment collector when the
/// front end drops the response after sending it.
struct SentFamilies {
    families: Vec<crate::snapshot::Family>,
    spent: Arc<Spent>,
}

impl Drop for SentFamilies {
    fn drop(&mut self) {
        self.spent.put(std::mem::take(&mut self.families));
    }
}

impl Service {
    /// Builds the service. Nothing is opened yet: a segment that cannot be opened makes the
    /// collectors that need it fail, never the scrape.
    pub fn new(config: Config, segment: SegmentOptions) -> Service {
        let source = SegmentSource::new(segment);
        let spent = Spent::new();
        let mut runner = Runner::new()
            .with(ExporterCollector::new(source.clone()))
            .with(SegmentCollector::new(
                source.clone(),
                config.web.worker_label,
                spent.clone(),
            ))
            .with(WebProcessCollector::new(&config.processes))
            .with(DaemonProcessCollector::new(&config))
            .with(CacheCollector::new(source.clone(), &config));
        if !config.ingest.access_log.is_empty() {
            runner = runner.with_first(AccessLogCollector::new(source.clone(), &config.ingest));
        }
        let (mut runner, db) = with_db_collectors(runner, &config, &source);
        if OtrsLogCollector::is_enabled(&config.otrs_log) {
            runner = runner.with_first(OtrsLogCollector::new(source.clone(), &config.otrs_log));
        }
        Service {
            admin: crate::admin::Admin::new(config.clone(), source.clone()),
            config,
            source,
            runner,
            writer: Mutex::new(None),
            render_cache: Mutex::new(RenderCache::new()),
            scrapes: std::sync::atomic::AtomicU64::new(0),
            last_body: std::sync::atomic::AtomicUsize::new(0),
            one_shot: false,
            spent,
            db,
        }
    }

    /// Marks a service that answers one request in a process that then exits (CGI). Its
    /// scrape does not free the snapshot: 10k series are 30,000 allocations, whose frees cost
    /// a cold scrape about 5% of its instructions, for memory the exit returns anyway.
    pub fn one_shot(mut self) -> Service {
        self.one_shot = true;
        self
    }

    /// Ends a one-request process once its response is out: closes the database connection
    /// (the server would log a dropped client otherwise) and exits with status 0, leaving the
    /// rest (collector threads, the segment's mapping, caches) to the exit. Tearing those
    /// down first took a cold CGI scrape about 0.6 ms.
    pub fn exit(self) -> ! {
        if let Some(db) = &self.db {
            db.close();
        }
        std::process::exit(0)
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The shared segment.
    pub fn segment(&self) -> &Arc<SegmentSource> {
        &self.source
    }

    /// Names of the collectors (for `collect[]`).
    pub fn collectors(&self) -> Vec<&'static str> {
        self.runner.names()
    }

    /// The scrape deadline: the configured timeout, shortened to Prometheus' own timeout (from
    /// `X-Prometheus-Scrape-Timeout-Seconds`) minus a small offset.
    pub fn timeout(&self, header: Option<&str>) -> Duration {
        let mut secs = self.config.web.scrape_timeout_seconds;
        if let Some(h) = header.and_then(|h| h.trim().parse::<f64>().ok()) {
            if h.is_finite() && h > 0.0 {
                secs = secs.min((h - TIMEOUT_OFFSET).max(h / 2.0));
            }
        }
        Duration::from_secs_f64(secs.max(0.05))
    }

    /// Runs one scrape and renders it.
    pub fn scrape(&self, req: &Request) -> Response {
        let selection = match Selection::from_query(&req.query, &self.collectors()) {
            Ok(s) => s,
            Err(e) => return Response::text(400, format!("{e}\n")),
        };
        let timeout = self.timeout(req.header("X-Prometheus-Scrape-Timeout-Seconds"));
        let scrape = self.runner.run(&selection, timeout);
        self.record(&scrape);
        let format = Format::negotiate(req.header("Accept"));
        let mut snapshot = Snapshot {
            families: scrape.families,
        };
        let dropped = snapshot.normalize();
        if dropped > 0 {
            log::error!("{dropped} metric families had conflicting types and were dropped");
        }
        // Sized for the whole body up front: growing a 1 MB buffer by doubling copies it and
        // faults in fresh pages each time. The last body's size is the best guess; a first
        // scrape guesses from the series count (untouched capacity costs no memory).
        let last = self.last_body.load(std::sync::atomic::Ordering::Relaxed);
        let guess = if last > 0 {
            last + last / 8
        } else {
            snapshot.series_count() * 128
        };
        let mut body = Vec::with_capacity(guess.clamp(16 * 1024, 64 << 20));
        // A process that scrapes more than once (FastCGI) keeps escaped label text between
        // scrapes; a CGI process renders once, where building the cache would be wasted.
        let warm = self
            .scrapes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            > 0;
        match self.render_cache.try_lock() {
            Ok(mut cache) if warm => render_cached(&snapshot, format, &mut body, &mut cache),
            _ => render(&snapshot, format, &mut body),
        }
        self.last_body
            .store(body.len(), std::sync::atomic::Ordering::Relaxed);
        let response = Response::new(200, format.content_type(), body);
        if self.one_shot {
            std::mem::forget(snapshot);
            return response;
        }
        // Handed back after the front end sent the body, not before: the next scrape's
        // segment read refills the segment's families, and the others are freed then.
        response.retaining(SentFamilies {
            families: snapshot.families,
            spent: self.spent.clone(),
        })
    }

    /// Counts the scrape and its failures in this worker's slot, and lets GC run if due.
    fn record(&self, scrape: &Scrape) {
        let seg = match self.source.get() {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot record scrape in the segment: {e}");
                return;
            }
        };
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| {
            match guard.as_mut() {
                Some(w) => {
                    w.refresh()?;
                }
                None => *guard = Some(Writer::new(&seg, WorkerKind::Exporter)?),
            }
            let w = guard.as_mut().expect("writer set above");
            w.inc(&scrapes_family(), &[])?;
            for o in scrape.outcomes.iter().filter(|o| o.result.is_err()) {
                w.inc(&scrape_errors_family(), &[("collector", o.name)])?;
            }
            Ok::<(), crate::segment::SegmentError>(())
        })();
        if let Err(e) = result {
            log::warn!("cannot record scrape in the segment: {e}");
        }
        drop(guard);
        let gc = &self.config.gc;
        if let Err(e) = seg.maybe_gc(
            Duration::from_secs(gc.grace_seconds),
            Duration::from_secs(gc.interval_seconds),
        ) {
            log::warn!("segment GC failed: {e}");
        }
    }

    fn landing(&self) -> Response {
        let path = self.config.metrics_path();
        let body = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>otrs-exporter</title></head>\
             <body><h1>otrs-exporter {}</h1><p><a href=\"{}\">Metrics</a></p></body></html>\n",
            env!("CARGO_PKG_VERSION"),
            html_escape(&path)
        );
        Response::new(200, "text/html; charset=utf-8", body)
    }
}

/// Adds the DB collectors (`db` plus those in `db.enabled`) when a database is configured in
/// `[db]` or `<otrs_home>/Kernel/Config.pm` exists. Without either they are absent (an
/// exporter for web metrics only); with a Config.pm that cannot be used they are registered
/// and fail with the reason, so the admin sees it in `otrs_exporter_collector_success` and
/// the log. Returns the runner and the collectors' shared connection handle, if they were
/// added.
pub fn with_db_collectors(
    mut runner: Runner,
    config: &Config,
    source: &Arc<SegmentSource>,
) -> (Runner, Option<Arc<crate::db::DbHandle>>) {
    use crate::collector::db::{DbCollector, DbUpCollector, Ping};
    use crate::collector::{articles, daemon, mail, sessions, tickets};
    let d = &config.db;
    if d.enabled.is_empty() {
        return (runner, None);
    }
    let settings = match crate::db::resolve(config) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            log::debug!(
                "no database collectors: no {} and no [db] settings",
                config.otrs_home.join("Kernel/Config.pm").display()
            );
            return (runner, None);
        }
        Err(e) => {
            log::error!("database collectors cannot run: {e}");
            Err(e)
        }
    };
    let handle = Arc::new(crate::db::DbHandle::new(settings));
    let ttl = |name: &str| Duration::from_secs(d.ttl_seconds.of(name));
    let ping_ttl = d
        .enabled
        .iter()
        .map(|n| d.ttl_seconds.of(n))
        .min()
        .unwrap_or(15)
        .min(15);
    runner = runner.with(DbUpCollector(DbCollector::new(
        Ping,
        handle.clone(),
        source.clone(),
        Duration::from_secs(ping_ttl),
    )));
    for name in &d.enabled {
        let (h, s) = (handle.clone(), source.clone());
        runner = match name.as_str() {
            "tickets" => runner.with(DbCollector::new(tickets::Tickets, h, s, ttl(name))),
            "articles" => runner.with(DbCollector::new(articles::Articles, h, s, ttl(name))),
            "mail" => runner.with(DbCollector::new(mail::Mail, h, s, ttl(name))),
            "daemon" => runner.with(DbCollector::new(daemon::Daemon, h, s, ttl(name))),
            "sessions" => runner.with(DbCollector::new(sessions::Sessions, h, s, ttl(name))),
            "custom" => runner.with(crate::collector::custom::CustomCollector::new(h, s)),
            _ => runner,
        };
    }
    (runner, Some(handle))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Handler for Service {
    fn handle(&self, req: &Request) -> Response {
        // At debug level: what the web server passed, so a deployment can check that
        // authentication reaches the exporter (nginx needs `fastcgi_param REMOTE_USER`) and
        // that the credentials themselves do not (they should not).
        log::debug!(
            "request: {} {} remote_user={} authorization_header={}",
            req.method,
            req.path,
            req.remote_user().unwrap_or("-"),
            if req.header("Authorization").is_some() {
                "passed"
            } else {
                "absent"
            }
        );
        let metrics = self.config.metrics_path();
        let base = format!(
            "{}/{}",
            self.config.web.base_path.trim_end_matches('/'),
            self.config.web.webservice
        );
        let is_read = req.method == "GET" || req.method == "HEAD";
        if req.path == metrics {
            if !is_read {
                let mut r = Response::text(405, "only GET and HEAD are allowed here\n");
                r.headers.push(("Allow".into(), "GET, HEAD".into()));
                return r;
            }
            return self.scrape(req);
        }
        let admin = self.config.admin_path();
        if req.path == admin || req.path.starts_with(&format!("{admin}/")) {
            return self.admin.handle(req);
        }
        if is_read && (req.path == "/" || req.path == base || req.path == format!("{base}/")) {
            return self.landing();
        }
        Response::text(404, format!("not found; metrics are at {metrics}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &std::path::Path) -> Service {
        let cfg = Config::default();
        Service::new(cfg, SegmentOptions::new(dir.join("seg")))
    }

    fn get(path: &str, query: &str) -> Request {
        Request::from_cgi_params(
            vec![
                ("REQUEST_METHOD".into(), "GET".into()),
                ("SCRIPT_NAME".into(), path.into()),
                ("QUERY_STRING".into(), query.into()),
            ],
            Vec::new(),
        )
    }

    #[test]
    fn warm_scrapes_show_fresh_values_in_handed_back_families() {
        use crate::segment::{FamilyDef, Segment, WorkerKind};
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let m = s.config().metrics_path();
        let seg = Segment::open(&SegmentOptions::new(dir.path().join("seg"))).unwrap();
        let mut w = Writer::new(&seg, WorkerKind::Test).unwrap();
        let events = FamilyDef::counter("t_events", "Events.");
        let value = |body: &str, prefix: &str| -> f64 {
            let line = body.lines().find(|l| l.starts_with(prefix));
            let v = line.and_then(|l| l.rsplit(' ').next());
            v.unwrap_or_else(|| panic!("no {prefix} in {body}"))
                .parse()
                .unwrap()
        };
        for round in 1..=6u32 {
            w.add(&events, &[("k", "v")], 1.0).unwrap();
            let response = s.handle(&get(&m, ""));
            let body = String::from_utf8(response.body.clone()).unwrap();
            assert_eq!(value(&body, "t_events_total{"), f64::from(round));
            if round > 1 {
                let scrapes = value(&body, "otrs_exporter_scrapes_total{");
                assert_eq!(scrapes, f64::from(round - 1));
            }
            // Dropped as a front end does once it is sent: the segment's families go back
            // to the collector, whose next read refills them.
            drop(response);
        }
    }

    #[test]
    fn routes_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let m = s.config().metrics_path();
        assert_eq!(s.handle(&get(&m, "")).status, 200);
        assert_eq!(s.handle(&get("/elsewhere", "")).status, 404);
        assert_eq!(s.handle(&get(&m, "collect[]=nope")).status, 400);
        let mut post = get(&m, "");
        post.method = "POST".into();
        assert_eq!(s.handle(&post).status, 405);
        assert_eq!(s.timeout(None), Duration::from_secs(9));
        assert_eq!(s.timeout(Some("5")), Duration::from_secs_f64(4.5));
        assert_eq!(s.timeout(Some("0.4")), Duration::from_secs_f64(0.2));
        assert_eq!(s.timeout(Some("junk")), Duration::from_secs(9));
    }
}
