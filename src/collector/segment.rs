//! The `segment` collector: everything processes wrote into the shared segment (web requests
//! per worker, log counters, the exporter's own per-worker counters).

use std::sync::{Arc, Mutex};

use super::{CollectError, Collector, Context};
use crate::segment::{ReadCache, ReadOptions, Segment, SegmentError, SegmentOptions};
use crate::snapshot::Family;

/// The process' handle on the shared segment: opened lazily, reopened when another process
/// replaced the file, recreated when it turns out to be corrupt.
pub struct SegmentSource {
    opts: SegmentOptions,
    current: Mutex<Option<Segment>>,
}

impl SegmentSource {
    /// A source for the segment described by `opts` (nothing is opened yet).
    pub fn new(opts: SegmentOptions) -> Arc<SegmentSource> {
        Arc::new(SegmentSource {
            opts,
            current: Mutex::new(None),
        })
    }

    /// The options of the segment.
    pub fn options(&self) -> &SegmentOptions {
        &self.opts
    }

    /// Whether the scrape `ctx` has time left for two of the segment's lock waits (each
    /// bounded by `segment.lock_timeout_ms`, 1 s by default): a read, and the retry of one
    /// that found damage. Memory is all a segment collector waits on besides the lock, so
    /// it may then run on the scraping thread ([`Collector::inline`]).
    pub fn in_time_for(&self, ctx: &Context) -> bool {
        let left = ctx
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        left > 2 * self.opts.lock_timeout + std::time::Duration::from_millis(100)
    }

    /// The open segment, (re)opening it when needed.
    pub fn get(&self) -> Result<Segment, SegmentError> {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seg) = cur.as_ref() {
            if !seg.is_stale() {
                return Ok(seg.clone());
            }
        }
        let seg = Segment::open(&self.opts)?;
        *cur = Some(seg.clone());
        Ok(seg)
    }

    /// Replaces a corrupt segment with a fresh one.
    pub fn recreate(&self, seg: &Segment, reason: &str) -> Result<Segment, SegmentError> {
        let fresh = seg.recreate(reason)?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Where a scrape's families go once its response was sent, for the segment collector's next
/// read to refill in place (see [`ReadCache::give_back`]). Shared by the service and its
/// segment collector.
#[derive(Default)]
pub struct Spent(Mutex<SpentFamilies>);

#[derive(Default)]
struct SpentFamilies {
    /// Names of the families the segment collector returned last, sorted.
    names: Vec<String>,
    /// Of the last sent scrape, the families with those names.
    families: Vec<Family>,
}

impl Spent {
    /// A place for spent families.
    pub fn new() -> Arc<Spent> {
        Arc::new(Spent::default())
    }

    /// Keeps, of a sent scrape's `families`, those named as the segment collector's last
    /// output; the others (and whatever was kept before) are dropped here, by the caller.
    pub fn put(&self, families: Vec<Family>) {
        let Ok(mut spent) = self.0.try_lock() else {
            return; // the collector is taking the last ones: these are dropped
        };
        let SpentFamilies {
            names,
            families: kept,
        } = &mut *spent;
        let old = std::mem::replace(
            kept,
            families
                .into_iter()
                .filter(|f| names.binary_search(&f.name).is_ok())
                .collect(),
        );
        drop(spent);
        drop(old);
    }

    /// Takes the kept families.
    fn take(&self) -> Vec<Family> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()).families)
    }

    /// Notes the names of the segment collector's output, for [`Spent::put`].
    fn expect(&self, output: &[Family]) {
        let mut spent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let same = spent.names.len() == output.len()
            && output
                .iter()
                .all(|f| spent.names.binary_search(&f.name).is_ok());
        if !same {
            spent.names = output.iter().map(|f| f.name.clone()).collect();
            spent.names.sort_unstable();
        }
    }
}

/// Reads the shared segment.
pub struct SegmentCollector {
    source: Arc<SegmentSource>,
    read: ReadOptions,
    /// Decoded labels kept between scrapes (a FastCGI worker scrapes many times).
    cache: Mutex<ReadCache>,
    reads: std::sync::atomic::AtomicU64,
    /// Families of the last sent scrape, for the next warm read to refill.
    spent: Arc<Spent>,
}

impl SegmentCollector {
    /// A collector reading `source`; `worker_label` false combines series over workers.
    /// Families put into `spent` after their scrape was sent are refilled by the next read.
    pub fn new(
        source: Arc<SegmentSource>,
        worker_label: bool,
        spent: Arc<Spent>,
    ) -> SegmentCollector {
        SegmentCollector {
            source,
            read: ReadOptions { worker_label },
            cache: Mutex::new(ReadCache::new()),
            reads: std::sync::atomic::AtomicU64::new(0),
            spent,
        }
    }
}

impl Collector for SegmentCollector {
    fn name(&self) -> &'static str {
        "segment"
    }

    fn inline(&self, ctx: &Context) -> bool {
        self.source.in_time_for(ctx)
    }

    fn collect(&self, _ctx: &Context) -> Result<Vec<Family>, CollectError> {
        let seg = self.source.get().map_err(CollectError::new)?;
        // The first scrape of a process (and CGI's only one) reads cold; later scrapes reuse
        // the decoded labels. Concurrent scrapes in one process: one uses the cache.
        let warm = self
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            > 0;
        let checked = seg.check().and_then(|_| match self.cache.try_lock() {
            Ok(mut cache) if warm => {
                cache.give_back(self.spent.take());
                seg.read_cached(&self.read, &mut cache)
            }
            _ => seg.read(&self.read),
        });
        match checked {
            Ok(fams) => {
                self.spent.expect(&fams);
                Ok(fams)
            }
            Err(SegmentError::Corrupt(first)) => {
                // Recreating loses every value: be sure. A second, cold read that still finds
                // damage confirms it; one that succeeds means the first saw something in motion.
                std::thread::sleep(std::time::Duration::from_millis(20));
                let reason = match seg.check().and_then(|_| seg.read(&self.read)) {
                    Ok(fams) => {
                        log::warn!("segment read failed once ({first}), the retry succeeded");
                        return Ok(fams);
                    }
                    Err(SegmentError::Corrupt(reason)) => reason,
                    Err(e) => return Err(CollectError::new(e)),
                };
                // Values in a corrupt segment cannot be trusted: start over, say so.
                let err = format!("shared segment was corrupt ({reason}); it has been recreated");
                self.source
                    .recreate(&seg, &reason)
                    .map_err(|e| CollectError::new(format!("{err}, but: {e}")))?;
                Err(CollectError(err))
            }
            Err(e) => Err(CollectError::new(e)),
        }
    }
}
