//! Where a thread started in the middle of a scrape first runs.
//!
//! Linux often queues a new thread on the CPU of the thread that started it, even while
//! another CPU is idle, and the newcomer then preempts its starter. On the 2-vCPU VMs the
//! benchmarks ran on, a cold CGI scrape's `/proc` collector ran for ~1.1 ms on the scraping
//! thread's CPU while the scraping thread waited and the other vCPU idled, and the render's
//! helper queued behind the very thread it was to help. [`send_away`] moves a new thread, before
//! it has run, to the other CPUs this process may use; a thread that lives on (a pooled
//! collector thread) widens its mask again with [`Mask::restore`] once its job is done.

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

    /// Lets the calling thread run on these CPUs again (errors are ignored: the thread keeps
    /// the mask it has, which still lets it run).
    pub fn restore(&self) {
        // SAFETY: `self.0` is a valid cpu_set_t of the size passed, only read.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

/// Moves the thread of `handle`, just started by this thread, to the CPUs of `allowed` other
/// than the one this thread runs on now, and returns that one. Does nothing (and returns
/// `None`) where that leaves no CPU (one core); where the system refuses, the thread runs
/// wherever the scheduler put it.
pub fn send_away<T>(handle: &std::thread::JoinHandle<T>, allowed: Option<&Mask>) -> Option<usize> {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: sched_getcpu has no preconditions.
    let here = unsafe { libc::sched_getcpu() };
    let here = usize::try_from(here).ok()?;
    let mask = allowed?.without(here)?;
    // SAFETY: the handle keeps the thread joinable, so its pthread_t stays valid during the
    // call; `mask.0` is a valid cpu_set_t of the size passed, only read.
    unsafe {
        libc::pthread_setaffinity_np(
            handle.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &mask.0,
        );
    }
    Some(here)
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

    #[test]
    fn a_thread_sent_away_runs_on_the_other_cpus_until_it_restores_its_mask() {
        let all = Mask::of_this_thread().expect("sched_getaffinity works here");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            rx.recv().unwrap();
            let sent = Mask::of_this_thread().unwrap();
            all.restore();
            (sent, Mask::of_this_thread().unwrap())
        });
        let kept_off = send_away(&handle, Some(&all));
        tx.send(()).unwrap();
        let (sent, restored) = handle.join().unwrap();
        let everything = cpus(&all);
        match kept_off {
            None => {
                assert_eq!(
                    everything.len(),
                    1,
                    "sent away wherever there is another CPU"
                );
                assert_eq!(cpus(&sent), everything, "one CPU: left where it was");
            }
            Some(here) => {
                let want: Vec<_> = everything.iter().copied().filter(|&c| c != here).collect();
                assert_eq!(cpus(&sent), want, "every CPU but the sender's");
            }
        }
        assert_eq!(cpus(&restored), everything);
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
