//! Where a thread started in the middle of a scrape first runs.
//!
//! Linux often queues a new thread on the CPU of the thread that started it, even while
//! another CPU is idle, and the newcomer then preempts its starter. On the 2-vCPU VMs the
//! benchmarks ran on, a cold CGI scrape's `/proc` collector ran for ~1.1 ms on the scraping
//! thread's CPU while the scraping thread waited and the other vCPU idled, and the render's
//! helper queued behind the very thread it was to help.
//!
//! [`depart`] gives the starter a [`Departure`], which moves the new thread, before it has
//! run, to the other CPUs this process may use ([`Departure::send_away`]), and the new thread
//! an [`Arrival`], which gives it every CPU back as soon as it runs ([`Arrival::arrived`]):
//! only the first placement is steered, and the scheduler may move the thread later (to the
//! scraping thread's CPU once that one waits, say).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// A set of CPUs a thread may run on.
#[derive(Clone, Copy)]
pub struct Mask(libc::cpu_set_t);

impl Mask {
    /// The CPUs the calling thread may run on, or `None` if the system does not say.
    pub fn of_this_thread() -> Option<Mask> {
        // SAFETY: cpu_set_t is plain bits, for which all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
        let rc =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        (rc == 0).then_some(Mask(set))
    }

    /// How many CPUs the mask holds.
    pub fn count(&self) -> usize {
        // SAFETY: reads the bits of a valid cpu_set_t.
        unsafe { libc::CPU_COUNT(&self.0) as usize }
    }

    /// This mask without `cpu`, or `None` if that leaves no CPU.
    fn without(mut self, cpu: usize) -> Option<Mask> {
        if cpu >= libc::CPU_SETSIZE as usize {
            return None;
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, the number of bits in a cpu_set_t.
        unsafe { libc::CPU_CLR(cpu, &mut self.0) };
        (self.count() > 0).then_some(self)
    }

    /// Lets the calling thread run on these CPUs (errors are ignored: the thread keeps the
    /// mask it has, which still lets it run).
    fn apply(&self) {
        // SAFETY: `self.0` is a valid cpu_set_t of the size passed, only read.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

/// The starter has not yet decided where the new thread goes.
const UNDECIDED: u8 = 0;
/// The starter narrowed the new thread's mask; the thread has not widened it yet.
const SENT: u8 = 1;
/// Nothing (left) to undo: the thread was not moved, or has its CPUs back.
const SETTLED: u8 = 2;

/// The starting thread's half of one new thread's first placement (see [`depart`]).
pub struct Departure {
    arrival: Arrival,
}

/// The new thread's half: it calls [`Arrival::arrived`] first thing, and, if it lives on,
/// [`Arrival::done`] after its first job.
pub struct Arrival {
    /// The starter's CPUs, which the new thread inherited and gets back.
    allowed: Option<Mask>,
    state: Arc<AtomicU8>,
}

/// A departure from the calling thread, which will start the new thread: keep the
/// [`Departure`], move the [`Arrival`] into the new thread, and call
/// [`Departure::send_away`] with its handle once spawned. A departure dropped without being
/// sent leaves the thread where it is.
pub fn depart() -> (Departure, Arrival) {
    let arrival = Arrival {
        allowed: Mask::of_this_thread(),
        state: Arc::new(AtomicU8::new(UNDECIDED)),
    };
    let departure = Departure {
        arrival: Arrival {
            allowed: arrival.allowed,
            state: arrival.state.clone(),
        },
    };
    (departure, arrival)
}

impl Departure {
    /// Moves the thread of `handle`, just started by this thread, to the allowed CPUs other
    /// than the one this thread runs on now, and returns that one. Does nothing (and returns
    /// `None`) where that leaves no CPU (one core); where the system refuses, the thread runs
    /// wherever the scheduler put it.
    pub fn send_away<T>(self, handle: &std::thread::JoinHandle<T>) -> Option<usize> {
        let sent = self.narrow(handle);
        if sent.is_some() {
            // A thread that arrived meanwhile left its mask alone: it finds SENT at `done`.
            self.arrival.state.store(SENT, Ordering::Release);
        }
        sent
    }

    fn narrow<T>(&self, handle: &std::thread::JoinHandle<T>) -> Option<usize> {
        use std::os::unix::thread::JoinHandleExt;
        // SAFETY: sched_getcpu has no preconditions.
        let here = usize::try_from(unsafe { libc::sched_getcpu() }).ok()?;
        let mask = self.arrival.allowed?.without(here)?;
        // SAFETY: the handle keeps the thread joinable, so its pthread_t stays valid during
        // the call; `mask.0` is a valid cpu_set_t of the size passed, only read.
        let rc = unsafe {
            libc::pthread_setaffinity_np(
                handle.as_pthread_t(),
                std::mem::size_of::<libc::cpu_set_t>(),
                &mask.0,
            )
        };
        (rc == 0).then_some(here)
    }
}

impl Drop for Departure {
    /// Decides for a thread that was not sent away (or whose move failed): nothing to undo.
    fn drop(&mut self) {
        let _ = self.arrival.state.compare_exchange(
            UNDECIDED,
            SETTLED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
}

impl Arrival {
    /// First thing in the new thread: once it runs, it may run anywhere again. Does not wait:
    /// a thread that runs before the starter moved it is left for [`Arrival::done`].
    pub fn arrived(&self) {
        self.settle();
    }

    /// In a new thread that lives on, after its first job: waits for the starter's decision
    /// (made right after the spawn, or when its [`Departure`] is dropped) and gives the
    /// thread its CPUs back if still narrowed.
    pub fn done(&self) {
        while self.state.load(Ordering::Acquire) == UNDECIDED {
            std::thread::yield_now();
        }
        self.settle();
    }

    fn settle(&self) {
        let widen = self
            .state
            .compare_exchange(SENT, SETTLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if widen {
            if let Some(all) = &self.allowed {
                all.apply();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(m: &Mask) -> Vec<usize> {
        // SAFETY: reads bits below CPU_SETSIZE of a valid cpu_set_t.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &m.0) })
            .collect()
    }

    /// Starts a thread that waits for `go`, reports its mask, calls `arrived`, reports again,
    /// calls `done` and reports a third time; returns what `send_away` returned and the masks.
    fn travel(send_first: bool) -> (Option<usize>, [Vec<usize>; 3]) {
        let (departure, arrival) = depart();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            wait.recv().unwrap();
            let mask = || cpus(&Mask::of_this_thread().unwrap());
            let before = mask();
            arrival.arrived();
            let arrived = mask();
            arrival.done();
            [before, arrived, mask()]
        });
        let kept_off = if send_first {
            let kept_off = departure.send_away(&handle);
            go.send(()).unwrap();
            kept_off
        } else {
            // The thread runs and arrives first; the starter moves it afterwards.
            go.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            departure.send_away(&handle)
        };
        (kept_off, handle.join().unwrap())
    }

    #[test]
    fn a_thread_sent_away_gets_every_cpu_back_when_it_arrives() {
        let all = cpus(&Mask::of_this_thread().expect("sched_getaffinity works here"));
        let (kept_off, [before, arrived, done]) = travel(true);
        match kept_off {
            None => {
                assert_eq!(all.len(), 1, "sent away wherever there is another CPU");
                assert_eq!(before, all, "one CPU: left where it was");
            }
            Some(here) => {
                let want: Vec<_> = all.iter().copied().filter(|&c| c != here).collect();
                assert_eq!(before, want, "every CPU but the starter's");
            }
        }
        assert_eq!(arrived, all);
        assert_eq!(done, all);
    }

    #[test]
    fn a_thread_that_arrives_before_it_is_sent_gets_its_cpus_back_when_done() {
        let all = cpus(&Mask::of_this_thread().unwrap());
        let (kept_off, [_, _, done]) = travel(false);
        assert_eq!(kept_off.is_some(), all.len() > 1);
        assert_eq!(done, all, "not left narrowed by a move that came late");
    }

    #[test]
    fn a_departure_dropped_unsent_lets_the_thread_finish() {
        let (departure, arrival) = depart();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            arrival.arrived();
            arrival.done();
            let _ = tx.send(cpus(&Mask::of_this_thread().unwrap()));
        });
        drop(departure);
        let all = cpus(&Mask::of_this_thread().unwrap());
        let mask = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("`done` returned");
        assert_eq!(mask, all, "the mask untouched");
    }

    #[test]
    fn without_the_only_cpu_is_none() {
        let all = Mask::of_this_thread().unwrap();
        let only = cpus(&all)[0];
        // SAFETY: all zeroes is the empty set; `only` is below CPU_SETSIZE.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(only, &mut one) };
        assert!(Mask(one).without(only).is_none());
        assert!(Mask(one).without(only + 1).is_some());
    }
}
