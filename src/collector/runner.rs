//! Runs the selected collectors concurrently under a deadline and adds the scrape meta metrics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::Pool;
use super::{Collector, Context, Selection};
use crate::snapshot::{Family, MetricKind};

/// How one collector fared in one scrape.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Collector name.
    pub name: &'static str,
    /// Time it took (the full timeout for one that did not finish).
    pub duration: Duration,
    /// Number of series produced, or why it produced none.
    pub result: Result<usize, String>,
}

/// Everything one scrape collected.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Families from the collectors that finished in time, plus the meta families.
    pub families: Vec<Family>,
    /// Per collector, in registration order.
    pub outcomes: Vec<Outcome>,
    /// Wall time from start to the last collector (or the deadline).
    pub duration: Duration,
}

/// Idle threads kept per collector: one per scrape that can run at the same time in a
/// FastCGI worker without starting threads (more start, and end after their job).
const IDLE_THREADS_PER_COLLECTOR: usize = 2;

/// The threads collector `c` runs on, named after it (`collect-<name>`).
fn pool_for(c: &impl Collector) -> Pool {
    Pool::new(format!("collect-{}", c.name()), IDLE_THREADS_PER_COLLECTOR)
}

/// The set of collectors of one exporter process.
#[derive(Clone, Default)]
pub struct Runner {
    collectors: Vec<Arc<dyn Collector>>,
    /// Each collector's threads, kept between scrapes (same order as `collectors`).
    pools: Vec<Pool>,
    /// How many of `collectors` (from the front) run first, before the others start: those
    /// that feed the segment (log followers) so the segment read sees their lines.
    first: usize,
}

impl Runner {
    /// An empty runner.
    pub fn new() -> Runner {
        Runner::default()
    }

    /// Adds a collector (builder style).
    pub fn with(mut self, c: impl Collector) -> Runner {
        self.pools.push(pool_for(&c));
        self.collectors.push(Arc::new(c));
        self
    }

    /// Adds a collector that runs (and finishes, or hits the deadline) before the others.
    pub fn with_first(mut self, c: impl Collector) -> Runner {
        self.pools.insert(self.first, pool_for(&c));
        self.collectors.insert(self.first, Arc::new(c));
        self.first += 1;
        self
    }

    /// Names of the registered collectors.
    pub fn names(&self) -> Vec<&'static str> {
        self.collectors.iter().map(|c| c.name()).collect()
    }

    /// Runs the collectors `selection` picks, each on a thread of its own (kept between
    /// scrapes, see [`Pool`]), and waits until all are done or `timeout` has passed.
    /// Collectors added with [`Runner::with_first`] run as a first stage. A collector still
    /// running at the deadline is reported as failed and its late result is discarded (its
    /// thread finishes in the background; the next scrape uses another).
    pub fn run(&self, selection: &Selection, timeout: Duration) -> Scrape {
        let start = Instant::now();
        let deadline = start + timeout;
        let ctx = Context::new(deadline);
        let selected: Vec<(usize, Arc<dyn Collector>)> = self
            .collectors
            .iter()
            .enumerate()
            .filter(|(_, c)| selection.includes(c.name()))
            .map(|(i, c)| (i, c.clone()))
            .collect();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; self.collectors.len()];
        let mut results: Vec<Option<Vec<Family>>> = vec![None; self.collectors.len()];
        let (early, late): (Vec<_>, Vec<_>) =
            selected.iter().cloned().partition(|(i, _)| *i < self.first);
        for stage in [early, late] {
            self.run_stage(&stage, &ctx, &mut outcomes, &mut results);
        }
        let duration = start.elapsed();
        let mut families: Vec<Family> = results.into_iter().flatten().flatten().collect();
        let outcomes: Vec<Outcome> = selected
            .iter()
            .map(|(i, c)| {
                outcomes[*i].take().unwrap_or_else(|| {
                    log::warn!("collector {} did not finish within {timeout:?}", c.name());
                    Outcome {
                        name: c.name(),
                        duration,
                        result: Err(format!("did not finish within {timeout:?}")),
                    }
                })
            })
            .collect();
        families.extend(meta_families(&outcomes, duration));
        Scrape {
            families,
            outcomes,
            duration,
        }
    }

    fn run_stage(
        &self,
        stage: &[(usize, Arc<dyn Collector>)],
        ctx: &Context,
        outcomes: &mut [Option<Outcome>],
        results: &mut [Option<Vec<Family>>],
    ) {
        let (tx, rx) = mpsc::channel();
        let mut pending = 0;
        // Collectors that may run here do, one after the other, once the others are on their
        // way: each is a thread the scrape does not wake.
        let (here, pooled): (Vec<_>, Vec<_>) = stage.iter().partition(|(_, c)| c.inline(ctx));
        for (i, c) in pooled {
            let (i, c, tx, ctx) = (*i, c.clone(), tx.clone(), ctx.clone());
            let spawned = self.pools[i].execute(move || {
                let _ = tx.send(collect_caught(i, &*c, &ctx));
            });
            match spawned {
                Ok(()) => pending += 1,
                Err(e) => {
                    outcomes[i] = Some(Outcome {
                        name: self.collectors[i].name(),
                        duration: Duration::ZERO,
                        result: Err(format!("cannot start a thread: {e}")),
                    })
                }
            }
        }
        for (i, c) in here {
            let _ = tx.send(collect_caught(*i, &**c, ctx));
            pending += 1;
        }
        drop(tx);
        while pending > 0 {
            let left = ctx.deadline.saturating_duration_since(Instant::now());
            let Ok((i, duration, r)) = rx.recv_timeout(left) else {
                break;
            };
            let name = self.collectors[i].name();
            let result = match r {
                Ok(fams) => {
                    let n = fams.iter().map(|f| f.series.len()).sum();
                    results[i] = Some(fams);
                    Ok(n)
                }
                Err(e) => {
                    log::warn!("collector {name} failed: {e}");
                    Err(e.0)
                }
            };
            outcomes[i] = Some(Outcome {
                name,
                duration,
                result,
            });
            pending -= 1;
        }
    }
}

/// Runs collector `c` (number `i`), timed, with a panic turned into its failure.
fn collect_caught(
    i: usize,
    c: &dyn Collector,
    ctx: &Context,
) -> (usize, Duration, Result<Vec<Family>, super::CollectError>) {
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| c.collect(ctx)))
        .unwrap_or_else(|_| Err(super::CollectError::new("collector panicked")));
    (i, t.elapsed(), r)
}

/// `otrs_exporter_collector_duration_seconds`, `..._collector_success` and
/// `..._scrape_duration_seconds`, gauges as the exporter guidelines ask.
fn meta_families(outcomes: &[Outcome], duration: Duration) -> Vec<Family> {
    let mut dur = Family::new(
        "otrs_exporter_collector_duration_seconds",
        "Time a collector took in this scrape.",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    let mut ok = Family::new(
        "otrs_exporter_collector_success",
        "Whether a collector succeeded in this scrape (1) or failed or timed out (0).",
        MetricKind::Gauge,
    );
    for o in outcomes {
        dur.push(&[("collector", o.name)], o.duration.as_secs_f64());
        ok.push(
            &[("collector", o.name)],
            if o.result.is_ok() { 1.0 } else { 0.0 },
        );
    }
    let mut total = Family::new(
        "otrs_exporter_scrape_duration_seconds",
        "Time the collectors of this scrape took, rendering excluded.",
        MetricKind::Gauge,
    )
    .with_unit("seconds");
    total.push(&[], duration.as_secs_f64());
    vec![dur, ok, total]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::CollectError;
    use std::sync::Mutex;

    struct Fixed(&'static str, Duration, bool);
    impl Collector for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn collect(&self, _: &Context) -> Result<Vec<Family>, CollectError> {
            std::thread::sleep(self.1);
            if !self.2 {
                return Err(CollectError::new("broken on purpose"));
            }
            let mut f = Family::new(format!("t_{}", self.0), "x", MetricKind::Gauge);
            f.push(&[], 1.0);
            Ok(vec![f])
        }
    }

    /// Meets its partner (another `Meet`) through a pair of channels: it succeeds only if
    /// both run at the same time. Records the thread it ran on.
    struct Meet {
        name: &'static str,
        inline: bool,
        tell: Mutex<mpsc::Sender<()>>,
        hear: Mutex<mpsc::Receiver<()>>,
        ran_on: Mutex<Option<std::thread::ThreadId>>,
    }
    impl Collector for Meet {
        fn name(&self) -> &'static str {
            self.name
        }
        fn inline(&self, _: &Context) -> bool {
            self.inline
        }
        fn collect(&self, _: &Context) -> Result<Vec<Family>, CollectError> {
            *self.ran_on.lock().unwrap() = Some(std::thread::current().id());
            let _ = self.tell.lock().unwrap().send(());
            let met = self
                .hear
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
            met.map(|_| Vec::new())
                .map_err(|_| CollectError::new("partner never ran alongside"))
        }
    }

    #[test]
    fn an_inline_collector_runs_on_the_scraping_thread_alongside_the_others() {
        let (a_tx, a_rx) = mpsc::channel();
        let (b_tx, b_rx) = mpsc::channel();
        let meet = |name, inline, tell, hear| Meet {
            name,
            inline,
            tell: Mutex::new(tell),
            hear: Mutex::new(hear),
            ran_on: Mutex::new(None),
        };
        let here = Arc::new(meet("here", true, a_tx, b_rx));
        let pooled = Arc::new(meet("pooled", false, b_tx, a_rx));
        struct Shared(Arc<Meet>);
        impl Collector for Shared {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn inline(&self, ctx: &Context) -> bool {
                self.0.inline(ctx)
            }
            fn collect(&self, ctx: &Context) -> Result<Vec<Family>, CollectError> {
                self.0.collect(ctx)
            }
        }
        // Registered first, so it would be handed out first if it were not run here.
        let runner = Runner::new()
            .with(Shared(here.clone()))
            .with(Shared(pooled.clone()));
        let s = runner.run(&Selection::All, Duration::from_secs(20));
        assert_eq!(success(&s, "here"), 1.0, "{:?}", s.outcomes);
        assert_eq!(success(&s, "pooled"), 1.0, "{:?}", s.outcomes);
        let me = std::thread::current().id();
        assert_eq!(*here.ran_on.lock().unwrap(), Some(me));
        assert_ne!(*pooled.ran_on.lock().unwrap(), Some(me));
    }

    fn success(s: &Scrape, name: &str) -> f64 {
        let fam = s
            .families
            .iter()
            .find(|f| f.name == "otrs_exporter_collector_success")
            .unwrap();
        let series = fam.series.iter().find(|x| &*x.labels[0].1 == name).unwrap();
        match series.value {
            crate::snapshot::Value::Scalar(v) => v,
            _ => panic!(),
        }
    }

    #[test]
    fn slow_and_failing_collectors_do_not_fail_the_scrape() {
        let runner = Runner::new()
            .with(Fixed("fast", Duration::ZERO, true))
            .with(Fixed("broken", Duration::ZERO, false))
            .with(Fixed("slow", Duration::from_secs(5), true));
        let t = Instant::now();
        let s = runner.run(&Selection::All, Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(2), "deadline honoured");
        assert_eq!(success(&s, "fast"), 1.0);
        assert_eq!(success(&s, "broken"), 0.0);
        assert_eq!(success(&s, "slow"), 0.0);
        assert!(s.families.iter().any(|f| f.name == "t_fast"));
        assert!(!s.families.iter().any(|f| f.name == "t_slow"));
        let sel = Selection::from_query("collect[]=fast", &runner.names()).unwrap();
        let s = runner.run(&sel, Duration::from_secs(1));
        assert_eq!(s.outcomes.len(), 1);
    }
}
