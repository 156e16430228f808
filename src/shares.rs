//! One-off work spread over the cores: a CGI process reads the segment and renders the
//! scrape once, with nothing cached, so it cuts each job into equal shares, one per core, on
//! scoped threads (no pool outlives the job).

/// The most threads one job uses.
pub(crate) const MAX_SHARES: usize = 4;

/// How many shares a job of `items` takes: one per core (at most [`MAX_SHARES`]) from `from`
/// items on, else one (a thread costs more than it saves on a small job).
pub(crate) fn count(items: usize, from: usize) -> usize {
    if items < from {
        return 1;
    }
    // Asked once per process: each call reads the cgroup's CPU quota files anew.
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    cores.min(MAX_SHARES)
}

/// Runs share 0 with `first` on this thread and shares `1..shares` with `rest` on scoped
/// threads; returns share 0's result and the others' in order. A panic in a share is
/// resumed here, as if the work had run on this thread.
pub(crate) fn run<F, T>(
    shares: usize,
    first: impl FnOnce() -> F,
    rest: impl Fn(usize) -> T + Sync,
) -> (F, Vec<T>)
where
    T: Send,
{
    std::thread::scope(|s| {
        let rest = &rest;
        let others: Vec<_> = (1..shares).map(|k| s.spawn(move || rest(k))).collect();
        let first = first();
        let others = others
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        (first, others)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_share_order() {
        let (first, rest) = super::run(5, || "zero", |k| k * 10);
        assert_eq!(first, "zero");
        assert_eq!(rest, vec![10, 20, 30, 40]);
        let (_, none) = super::run(1, || (), |k| k);
        assert!(none.is_empty());
    }

    #[test]
    fn a_small_job_takes_one_share() {
        assert_eq!(super::count(10, 2048), 1);
        let n = super::count(5000, 2048);
        assert!((1..=super::MAX_SHARES).contains(&n));
    }
}
