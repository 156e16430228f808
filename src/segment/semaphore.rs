//! The SysV semaphore that serializes structural changes to the segment.
//!
//! The semaphore works "inverted": its value is 0 when free. Locking is one atomic `semop` of
//! two operations, *wait until zero* then *add one* with `SEM_UNDO`; unlocking subtracts one with
//! `SEM_UNDO`. A freshly created semaphore is 0 on Linux, so there is no initialisation race, and
//! when a holder dies (even by SIGKILL) the kernel applies its undo adjustment and the value goes
//! back to 0: a dead holder can never wedge the others. `nix` has no SysV IPC, so this uses
//! `libc` directly.

use std::io;
use std::time::{Duration, Instant};

use libc::{c_int, c_short, key_t, sembuf};

use super::layout::{fnv1a, FNV_SEED};

extern "C" {
    // glibc exports semtimedop(2); the libc crate does not declare it.
    fn semtimedop(
        semid: c_int,
        sops: *mut sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> c_int;
}

/// Why the semaphore could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process held it for longer than the timeout.
    #[error("segment semaphore (key {key:#x}) still held by another process after {waited:?}")]
    Timeout {
        /// Semaphore key.
        key: key_t,
        /// How long we waited.
        waited: Duration,
    },
    /// The system call failed.
    #[error("segment semaphore (key {key:#x}): {source}")]
    Os {
        /// Semaphore key.
        key: key_t,
        /// The OS error.
        source: io::Error,
    },
}

/// A SysV semaphore set with one semaphore, identified by a key derived from the segment path.
#[derive(Debug)]
pub struct Semaphore {
    key: key_t,
    id: c_int,
    mode: u32,
    gid: Option<u32>,
}

/// Derives the IPC key from the segment path (not its inode, so that a recreated file keeps the
/// same semaphore). Keys never collide with `IPC_PRIVATE` (0).
pub fn key_for_path(path: &std::path::Path) -> key_t {
    use std::os::unix::ffi::OsStrExt;
    let h = fnv1a(FNV_SEED, path.as_os_str().as_bytes());
    let k = ((h >> 32) ^ h) as u32 & 0x7fff_ffff;
    // Tag the high bits so our keys are recognisable in `ipcs` output ("0x4f..").
    ((k & 0x00ff_ffff) | 0x4f00_0000) as key_t
}

impl Semaphore {
    /// Opens (creating if needed) the semaphore for `key`, with permission bits `mode` and, for a
    /// newly created semaphore, group `gid`.
    pub fn open(key: key_t, mode: u32, gid: Option<u32>) -> Result<Semaphore, LockError> {
        let perms = (mode & 0o666) as c_int;
        // SAFETY: plain system call with integer arguments.
        let id = unsafe { libc::semget(key, 1, libc::IPC_CREAT | libc::IPC_EXCL | perms) };
        let (id, created) = if id >= 0 {
            (id, true)
        } else {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(LockError::Os { key, source: err });
            }
            // SAFETY: plain system call with integer arguments.
            let id = unsafe { libc::semget(key, 1, 0) };
            if id < 0 {
                return Err(LockError::Os {
                    key,
                    source: io::Error::last_os_error(),
                });
            }
            (id, false)
        };
        let sem = Semaphore { key, id, mode, gid };
        if created {
            if let Some(gid) = gid {
                sem.set_group(gid)?;
            }
        }
        Ok(sem)
    }

    /// The IPC key.
    pub fn key(&self) -> key_t {
        self.key
    }

    fn set_group(&self, gid: u32) -> Result<(), LockError> {
        // SAFETY: semid_ds is plain old data; zeroed is a valid bit pattern.
        let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: IPC_STAT writes one semid_ds through the pointer we pass.
        let rc =
            unsafe { libc::semctl(self.id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) };
        if rc < 0 {
            return Err(self.os_err());
        }
        ds.sem_perm.gid = gid;
        ds.sem_perm.mode = (self.mode & 0o666) as _;
        // SAFETY: IPC_SET reads one semid_ds through the pointer we pass.
        let rc = unsafe { libc::semctl(self.id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) };
        if rc < 0 {
            return Err(self.os_err());
        }
        Ok(())
    }

    fn os_err(&self) -> LockError {
        LockError::Os {
            key: self.key,
            source: io::Error::last_os_error(),
        }
    }

    fn reopen(&mut self) -> Result<(), LockError> {
        let fresh = Semaphore::open(self.key, self.mode, self.gid)?;
        self.id = fresh.id;
        Ok(())
    }

    /// Takes the semaphore, waiting at most `timeout`. The returned guard releases it on drop.
    pub fn lock(&mut self, timeout: Duration) -> Result<SemGuard, LockError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            let mut ops = [
                sembuf {
                    sem_num: 0,
                    sem_op: 0,
                    sem_flg: 0,
                },
                sembuf {
                    sem_num: 0,
                    sem_op: 1,
                    sem_flg: libc::SEM_UNDO as c_short,
                },
            ];
            // SAFETY: `ops` and `ts` are valid for the duration of the call.
            let rc = unsafe { semtimedop(self.id, ops.as_mut_ptr(), ops.len(), &ts) };
            if rc == 0 {
                return Ok(SemGuard { id: self.id });
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) if start.elapsed() < timeout => continue,
                Some(libc::EAGAIN) | Some(libc::EINTR) => {
                    return Err(LockError::Timeout {
                        key: self.key,
                        waited: start.elapsed(),
                    })
                }
                // Someone removed the semaphore (ipcrm): create it again and retry.
                Some(libc::EIDRM) | Some(libc::EINVAL) => self.reopen()?,
                _ => {
                    return Err(LockError::Os {
                        key: self.key,
                        source: err,
                    })
                }
            }
        }
    }

    /// Takes the semaphore only if it is free right now.
    pub fn try_lock(&mut self) -> Result<Option<SemGuard>, LockError> {
        let mut ops = [
            sembuf {
                sem_num: 0,
                sem_op: 0,
                sem_flg: libc::IPC_NOWAIT as c_short,
            },
            sembuf {
                sem_num: 0,
                sem_op: 1,
                sem_flg: (libc::SEM_UNDO | libc::IPC_NOWAIT) as c_short,
            },
        ];
        // SAFETY: `ops` is valid for the duration of the call.
        let rc = unsafe { libc::semop(self.id, ops.as_mut_ptr(), ops.len()) };
        if rc == 0 {
            return Ok(Some(SemGuard { id: self.id }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            Some(libc::EIDRM) | Some(libc::EINVAL) => {
                self.reopen()?;
                Ok(None)
            }
            _ => Err(LockError::Os {
                key: self.key,
                source: err,
            }),
        }
    }

    /// Current value (1 = held, 0 = free); for diagnostics.
    pub fn value(&self) -> Option<i32> {
        // SAFETY: GETVAL takes no pointer argument.
        let v = unsafe { libc::semctl(self.id, 0, libc::GETVAL) };
        (v >= 0).then_some(v)
    }

    /// Removes the semaphore from the system (used by tests and `segment clear --remove-ipc`).
    pub fn remove(&self) -> io::Result<()> {
        // SAFETY: IPC_RMID takes no pointer argument.
        let rc = unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Proof that this process holds the semaphore; releases it when dropped.
#[derive(Debug)]
pub struct SemGuard {
    id: c_int,
}

impl Drop for SemGuard {
    fn drop(&mut self) {
        let mut op = sembuf {
            sem_num: 0,
            sem_op: -1,
            sem_flg: (libc::SEM_UNDO | libc::IPC_NOWAIT) as c_short,
        };
        // SAFETY: `op` is valid for the duration of the call. Failure (semaphore removed) leaves
        // nothing to release.
        unsafe { libc::semop(self.id, &mut op, 1) };
    }
}
