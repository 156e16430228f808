//! One-off work spread over the cores: a CGI process reads the segment and renders the
//! scrape once, with nothing cached, so it cuts each job into chunks that this thread takes
//! from the front and helper threads, one per other core, from the back (started for the job
//! on the other cores, and joined before it returns: no pool outlives the job).

use std::sync::Mutex;

/// The most threads one job uses.
pub(crate) const MAX_SHARES: usize = 4;

/// Chunks per thread a job is cut into: enough that the ends meet near the middle however
/// late a helper starts, few enough that each chunk is worth its bookkeeping.
pub(crate) const CHUNKS_PER_SHARE: usize = 8;

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

/// Runs jobs `0..jobs`: this thread takes them from the front, in order, with `front`, while
/// `helpers` helper threads take them from the back with `back` (each with a state made by
/// `state` when it gets its first job), until the two ends meet.
///
/// Equal shares fixed in advance made this thread wait for a helper that started late: on a
/// 2-vCPU VM a new helper was often queued behind this very thread (see [`crate::placement`],
/// which now starts it elsewhere), and a cold read ran serially plus a thread's start. Here a
/// late or slow helper leaves its jobs to this thread, so the wait is at most the jobs in
/// progress.
///
/// Returns `k`, the number of jobs run at the front (jobs `0..k`, in that order), and the
/// helpers' results for jobs `k..jobs`, in job order. A panic in a helper is resumed here, as
/// if its job had run on this thread.
pub(crate) fn from_both_ends<S, T: Send>(
    jobs: usize,
    helpers: usize,
    mut front: impl FnMut(usize),
    state: impl Fn() -> S + Sync,
    back: impl Fn(&mut S, usize) -> T + Sync,
) -> (usize, Vec<T>) {
    // (next job at the front, end of the jobs left at the back).
    let ends = Mutex::new((0usize, jobs));
    let take = |from_back: bool| {
        let mut e = ends.lock().unwrap_or_else(|p| p.into_inner());
        if e.0 >= e.1 {
            return None;
        }
        if from_back {
            e.1 -= 1;
            Some(e.1)
        } else {
            e.0 += 1;
            Some(e.0 - 1)
        }
    };
    let (take, state, back) = (&take, &state, &back);
    let helpers = helpers.min(jobs);
    let mut started = Helpers(Vec::with_capacity(helpers));
    for _ in 0..helpers {
        let (departure, arrival) = crate::placement::depart();
        let work = move || {
            arrival.arrived();
            let mut st = None;
            let mut done = Vec::new();
            while let Some(i) = take(true) {
                let st = st.get_or_insert_with(state);
                done.push((i, back(st, i)));
            }
            done
        };
        // SAFETY: the thread borrows `take`, `state` and `back` from this call; `started`
        // joins it before they go, on return and when `front` panics alike.
        match unsafe { std::thread::Builder::new().spawn_unchecked(work) } {
            Ok(handle) => {
                // Held by the guard first, then not queued behind this thread, which it is
                // to help.
                started.0.push(handle);
                if let Some(handle) = started.0.last() {
                    departure.send_away(handle);
                }
            }
            // A helper that cannot start leaves its jobs to this thread.
            Err(_) => break,
        }
    }
    while let Some(i) = take(false) {
        front(i);
    }
    let mut done = started.join();
    done.sort_unstable_by_key(|(i, _)| *i);
    let k = jobs - done.len();
    debug_assert!(done.iter().enumerate().all(|(n, (i, _))| *i == k + n));
    (k, done.into_iter().map(|(_, t)| t).collect())
}

/// Helper threads of [`from_both_ends`], joined when dropped (they borrow from its frame).
struct Helpers<T>(Vec<std::thread::JoinHandle<Vec<(usize, T)>>>);

impl<T> Helpers<T> {
    /// Joins every helper, then resumes the first helper panic, if any, on this thread.
    fn join(mut self) -> Vec<(usize, T)> {
        let results: Vec<_> = self.0.drain(..).map(|h| h.join()).collect();
        let mut done = Vec::new();
        for r in results {
            done.extend(r.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        done
    }
}

impl<T> Drop for Helpers<T> {
    fn drop(&mut self) {
        for h in self.0.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn every_job_runs_once_front_in_order_back_results_in_order() {
        for (jobs, helpers) in [(0, 1), (1, 1), (2, 1), (16, 1), (32, 3), (5, 8)] {
            let mut front = Vec::new();
            let (k, back) =
                super::from_both_ends(jobs, helpers, |i| front.push(i), || (), |_, i| i * 10);
            assert_eq!(front, (0..k).collect::<Vec<_>>(), "{jobs} jobs");
            let want: Vec<usize> = (k..jobs).map(|i| i * 10).collect();
            assert_eq!(back, want, "{jobs} jobs");
        }
    }

    #[test]
    fn a_helper_that_is_held_up_leaves_its_jobs_to_the_front() {
        // The helper's first job waits until the front has run seven: the front takes all of
        // them instead of waiting for the helper, which then finds nothing left.
        let released = AtomicBool::new(false);
        let mut front = Vec::new();
        let (k, back) = super::from_both_ends(
            8,
            1,
            |i| {
                front.push(i);
                if i == 6 {
                    released.store(true, Ordering::Release);
                }
            },
            || (),
            |_, i| {
                while !released.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                i
            },
        );
        assert!(k >= 7, "the front ran {k} of 8");
        assert_eq!(front, (0..k).collect::<Vec<_>>());
        assert_eq!(back, (k..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_panic_at_the_front_waits_for_the_helpers_before_it_unwinds() {
        // The helpers borrow from the caller's frame: they must be done when the panic
        // leaves `from_both_ends`, having run every job the front did not take.
        let ran = std::sync::Mutex::new(Vec::new());
        let started = AtomicBool::new(false);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::from_both_ends(
                24,
                2,
                |_| {
                    started.store(true, Ordering::Release);
                    // As a panic does, without the hook's report (slow enough to hide a
                    // helper still running).
                    std::panic::resume_unwind(Box::new("front job"));
                },
                || (),
                |_, i| {
                    while !started.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    ran.lock().unwrap().push(i);
                },
            )
        }));
        assert!(unwound.is_err());
        let mut ran = ran.into_inner().unwrap();
        ran.sort_unstable();
        // Job 0 panicked at the front; the helpers ran all the others.
        assert_eq!(ran, (1..24).collect::<Vec<_>>());
    }

    #[test]
    fn a_small_job_takes_one_share() {
        assert_eq!(super::count(10, 2048), 1);
        let n = super::count(5000, 2048);
        assert!((1..=super::MAX_SHARES).contains(&n));
    }
}
