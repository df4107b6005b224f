//! The CPUs a thread may run on (`sched_getaffinity` / `sched_setaffinity`, Linux only).
//!
//! Threads inherit their creator's CPU set, so a PJRT client created by a thread pinned to one
//! CPU gets its thread pools (the pinned CPU plugin creates them in `PJRT_Client_Create`) pinned
//! to that CPU too. The batch fitter uses this to give every core its own client whose work
//! cannot land on another core (see `runtime::cpu_workers`).

use crate::error::{Error, Result};

/// The CPUs the calling thread may run on, in increasing order.
///
/// # Errors
/// [`Error::InvalidArgument`] where the system call fails, or on systems other than Linux.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    imp::allowed_cpus()
}

/// Restricts the calling thread to `cpu` (for the rest of its life, and for the threads it
/// creates from now on).
///
/// # Errors
/// [`Error::InvalidArgument`] when `cpu` is out of range or not allowed to this process, when
/// the system call fails, or on systems other than Linux.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    imp::pin_current_thread(cpu)
}

fn os_error(what: &'static str) -> Error {
    Error::InvalidArgument {
        what,
        reason: std::io::Error::last_os_error().to_string(),
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{os_error, Error, Result};

    /// CPUs representable in a `cpu_set_t` (1024 on glibc).
    fn capacity() -> usize {
        8 * std::mem::size_of::<libc::cpu_set_t>()
    }

    pub(super) fn allowed_cpus() -> Result<Vec<usize>> {
        // SAFETY: an all-zero `cpu_set_t` is a valid empty set; the kernel writes at most
        // `size_of::<cpu_set_t>()` bytes into it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a live, writable `cpu_set_t` of the size passed; pid 0 is this thread.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Err(os_error("sched_getaffinity"));
        }
        // SAFETY: `CPU_ISSET` reads bit `c` of `set`, `c < capacity()`.
        Ok((0..capacity())
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect())
    }

    pub(super) fn pin_current_thread(cpu: usize) -> Result<()> {
        if cpu >= capacity() {
            return Err(Error::InvalidArgument {
                what: "sched_setaffinity",
                reason: format!("CPU {cpu} is beyond the {} a CPU set holds", capacity()),
            });
        }
        // SAFETY: as in `allowed_cpus`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu < capacity()`, so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: `set` is a valid `cpu_set_t` of the size passed; pid 0 is this thread.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            return Err(os_error("sched_setaffinity"));
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Error, Result};

    fn unsupported() -> Error {
        Error::InvalidArgument {
            what: "thread affinity",
            reason: "only supported on Linux".into(),
        }
    }

    pub(super) fn allowed_cpus() -> Result<Vec<usize>> {
        Err(unsupported())
    }

    pub(super) fn pin_current_thread(_cpu: usize) -> Result<()> {
        Err(unsupported())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_and_its_children_run_on_that_cpu_only() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        let (mine, child) = std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            let child = std::thread::spawn(|| allowed_cpus().unwrap()).join().unwrap();
            (allowed_cpus().unwrap(), child)
        })
        .join()
        .unwrap();
        assert_eq!(mine, vec![last]);
        assert_eq!(child, vec![last]);
        // The spawning thread is unaffected.
        assert_eq!(allowed_cpus().unwrap(), allowed);
    }

    #[test]
    fn out_of_range_cpus_are_errors() {
        let err = std::thread::spawn(|| pin_current_thread(1 << 20))
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("beyond"), "{err}");
    }
}
