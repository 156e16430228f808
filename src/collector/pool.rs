//! Threads kept between scrapes to run collectors on.
//!
//! Every scrape runs each collector on a thread of its own, so that one stuck in slow I/O only
//! costs its own result at the deadline. Starting those threads anew for each scrape of a
//! FastCGI worker costs a `clone`, a stack and a wake-up per collector. A thread here returns
//! to the pool when its job ends and waits for the next one; a job that finds no idle thread
//! (the first scrape, or one whose predecessor still runs a late collector) starts one.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};

/// Work handed to a pooled thread.
type Job = Box<dyn FnOnce() + Send>;

/// A job plus the thread's own sender, which it puts back into the idle list when done.
struct Delivery(Job, Sender<Delivery>);

/// A set of idle threads, each waiting on its own channel. Clones share the threads.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Name of the threads started.
    name: String,
    idle: Mutex<Vec<Sender<Delivery>>>,
    /// Idle threads kept at most; a thread finishing a job beyond that ends.
    max_idle: usize,
}

impl Pool {
    /// A pool of threads called `name` that keeps up to `max_idle` of them waiting.
    pub fn new(name: String, max_idle: usize) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                name,
                idle: Mutex::new(Vec::new()),
                max_idle,
            }),
        }
    }

    /// Threads waiting for a job now.
    pub fn idle(&self) -> usize {
        self.inner.lock().len()
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut job: Job = Box::new(job);
        loop {
            let Some(tx) = self.inner.lock().pop() else {
                break;
            };
            // A send fails only if that thread is gone (it panicked outside the job); try the
            // next idle one.
            match tx.send(Delivery(job, tx.clone())) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(Delivery(back, _))) => job = back,
            }
        }
        let (tx, rx) = mpsc::channel::<Delivery>();
        let pool = Arc::downgrade(&self.inner);
        // Started on another CPU than this (scraping) thread's, which it would otherwise
        // often preempt (see crate::placement).
        let (departure, arrival) = crate::placement::depart();
        let handle = std::thread::Builder::new()
            .name(self.inner.name.clone())
            .spawn(move || {
                arrival.arrived();
                job();
                arrival.done();
                if give_back(&pool, tx) {
                    wait_for_jobs(&pool, rx);
                }
            })?;
        departure.send_away(&handle);
        Ok(())
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sender<Delivery>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Puts the thread's sender back into the idle list; false when the thread should end (the
/// pool is gone or has enough idle threads).
fn give_back(pool: &Weak<Inner>, tx: Sender<Delivery>) -> bool {
    let Some(inner) = pool.upgrade() else {
        return false;
    };
    let mut idle = inner.lock();
    if idle.len() >= inner.max_idle {
        return false;
    }
    idle.push(tx);
    true
}

/// Runs jobs as they come until the pool drops this thread's sender (the pool was dropped)
/// or no longer wants it.
fn wait_for_jobs(pool: &Weak<Inner>, rx: Receiver<Delivery>) {
    while let Ok(Delivery(job, tx)) = rx.recv() {
        job();
        if !give_back(pool, tx) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Runs `n` jobs; with `together`, each waits for all the others to start (so `n`
    /// threads must run at once). Returns the thread each job ran on.
    fn run(pool: &Pool, n: usize, together: bool) -> Vec<std::thread::ThreadId> {
        let barrier = Arc::new(std::sync::Barrier::new(n));
        let (tx, rx) = mpsc::channel();
        for _ in 0..n {
            let (tx, barrier) = (tx.clone(), barrier.clone());
            pool.execute(move || {
                if together {
                    barrier.wait();
                }
                tx.send(std::thread::current().id()).unwrap();
            })
            .unwrap();
        }
        (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect()
    }

    fn settle(pool: &Pool, idle: usize) {
        for _ in 0..500 {
            if pool.idle() == idle {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("{} idle threads, expected {idle}", pool.idle());
    }

    #[test]
    fn threads_are_reused_and_capped() {
        let pool = Pool::new("test-pool".into(), 3);
        let first = run(&pool, 3, true);
        settle(&pool, 3);
        let again = run(&pool, 3, false);
        settle(&pool, 3);
        assert!(
            again.iter().all(|t| first.contains(t)),
            "no new thread started: {first:?} then {again:?}"
        );
        // More jobs at once than idle threads: new threads start, and only three stay.
        let wide = run(&pool, 6, true);
        assert_eq!(wide.iter().filter(|t| first.contains(t)).count(), 3);
        settle(&pool, 3);
    }

    #[test]
    fn a_busy_thread_does_not_delay_the_next_job() {
        let pool = Pool::new("test-pool".into(), 4);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        pool.execute(move || {
            let _ = release_rx.recv();
        })
        .unwrap();
        // The only thread is busy: the next job gets a thread of its own at once.
        let ids = run(&pool, 1, false);
        assert_eq!(ids.len(), 1);
        release_tx.send(()).unwrap();
        settle(&pool, 2);
    }

    #[test]
    fn a_new_thread_may_start_off_this_cpu_but_runs_later_jobs_on_every_cpu() {
        use crate::placement::Mask;
        let all = Mask::of_this_thread()
            .expect("sched_getaffinity works here")
            .count();
        let pool = Pool::new("test-pool".into(), 1);
        let cpus = |pool: &Pool| {
            let (tx, rx) = mpsc::channel();
            pool.execute(move || {
                let mask = Mask::of_this_thread().unwrap();
                tx.send((std::thread::current().id(), mask.count()))
                    .unwrap();
            })
            .unwrap();
            rx.recv_timeout(Duration::from_secs(5)).unwrap()
        };
        let (first, at_first) = cpus(&pool);
        settle(&pool, 1);
        let (again, then) = cpus(&pool);
        assert_eq!(first, again, "the idle thread took the second job");
        // Moved off the starter's CPU until it ran (see crate::placement), or not moved.
        assert!(
            at_first == all || at_first == all - 1,
            "{at_first} of {all} CPUs"
        );
        assert_eq!(then, all, "the second job could run anywhere");
    }
}
