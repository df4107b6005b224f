//! Device memory: a compiled fit program's needs against what its device has, checked before
//! the program's inputs are copied to the device and again before it runs.
//!
//! XLA allocates a program's results and scratch memory when an execution starts, and a
//! plugin that cannot have them may abort the process (XLA:CPU), or the kernel's OOM killer
//! ends it. The compiler knows those sizes ([`CompiledMemoryStats`], read once per executable
//! and kept with it), so a fit compares them with the device first:
//!
//! 1. before the upload, the program's whole footprint
//!    ([`CompiledMemoryStats::device_bytes`]: code + arguments + results − aliased + scratch)
//!    with the device's capacity: more is [`Error::ProgramTooLarge`], an input too large for
//!    the device;
//! 2. after the upload, right before the execution, what the execution allocates
//!    ([`CompiledMemoryStats::execution_bytes`]: results − aliased + scratch) with the memory
//!    free now: more is [`Error::OutOfMemory`]. Reading the free memory costs a few file reads
//!    on the CPU, so this step is skipped for executions that allocate less than
//!    [`CHECK_FREE_FROM`] (their own work takes longer than the reads would).
//!
//! What a device has:
//! - on the CPU plugin (whose `PJRT_Device_MemoryStats` answers "unimplemented"), the host's
//!   memory: capacity is the smallest of the physical memory (`MemTotal`), the process's
//!   cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`, the tightest of the
//!   process's cgroup and its ancestors) and its address-space limit (`RLIMIT_AS`, `ulimit
//!   -v`); free memory the smallest of `MemAvailable`, that cgroup limit minus its usage, and
//!   the address-space limit minus the process's mapped size (`VmSize`);
//! - on a device whose plugin reports an allocator limit (`bytes_limit`), that limit, and
//!   the limit minus `bytes_in_use`;
//! - otherwise nothing is known and nothing is checked.
//!
//! Both checks are a safety net, not a reservation: fits running at the same time on other
//! threads or processes can still take the memory between the check and the execution. The
//! host's free memory counts page cache that the kernel can reclaim (as `MemAvailable` does).
//!
//! # References
//! - `xla/pjrt/c/pjrt_c_api.h`: `PJRT_Executable_GetCompiledMemoryStats`,
//!   `PJRT_Device_MemoryStats`.
//! - Linux `proc(5)` (`/proc/meminfo`, `/proc/self/status`), `getrlimit(2)`, the kernel's
//!   cgroup v1 and v2 memory controller documentation.

use std::path::PathBuf;

use once_cell::sync::Lazy;

use crate::error::{Error, Result};
use crate::pjrt::{CompiledMemoryStats, Device, LoadedExecutable};

/// Executions that allocate fewer bytes than this skip the check of free memory (step 2 of
/// the module documentation).
pub(super) const CHECK_FREE_FROM: u64 = 16 << 20;

/// What to change when a `curve_fit` or `least_squares` program does not fit.
pub(super) const FIT_ADVICE: &str =
    "fit fewer points at once, chunk the Jacobian (chunk_rows), or use fewer parameters";
/// What to change when a batch program does not fit.
pub(super) const BATCH_ADVICE: &str =
    "use fewer problems per execution (Batch::with_chunk), fewer points, or fewer parameters";

/// Where a device's memory figures come from.
enum Budget {
    /// The host's memory (the CPU plugin).
    Host,
    /// The plugin's allocator: its limit and the bytes in use now.
    Allocator { limit: u64, in_use: u64 },
    /// Nothing known.
    Unknown,
}

/// An amount of memory and what bounds it (a phrase for the error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bound {
    bytes: u64,
    what: &'static str,
}

/// The smallest of the known bounds.
fn tightest(bounds: impl IntoIterator<Item = Option<Bound>>) -> Option<Bound> {
    bounds.into_iter().flatten().min_by_key(|b| b.bytes)
}

fn budget(exe: &LoadedExecutable, device: &Device<'_>) -> Budget {
    // The CPU plugin's device statistics are unimplemented (verified on the pinned plugin):
    // skip the call and its error object.
    if exe.client().platform_name() == "cpu" {
        return Budget::Host;
    }
    match device.memory_stats() {
        Ok(Some(stats)) => match stats.bytes_limit {
            Some(limit) => Budget::Allocator {
                limit,
                in_use: stats.bytes_in_use,
            },
            None => Budget::Unknown,
        },
        _ => Budget::Unknown,
    }
}

/// The compiler's figures; `None` (no check) when the plugin does not give them or fails to.
fn stats(exe: &LoadedExecutable) -> Option<CompiledMemoryStats> {
    exe.memory_stats().ok().flatten()
}

/// Refuses a program that needs more memory than `device` has at all (step 1 of the module
/// documentation). Call before the inputs are copied to the device.
///
/// # Errors
/// [`Error::ProgramTooLarge`] with `advice` as the remedy.
pub(super) fn check_capacity(exe: &LoadedExecutable, device: &Device<'_>, advice: &'static str) -> Result<()> {
    let Some(stats) = stats(exe) else { return Ok(()) };
    let needed = stats.device_bytes();
    let capacity = match budget(exe, device) {
        Budget::Host => host_capacity(),
        Budget::Allocator { limit, .. } => Some(Bound {
            bytes: limit,
            what: "the device's allocator limit",
        }),
        Budget::Unknown => None,
    };
    match capacity {
        Some(c) if needed > c.bytes => Err(Error::ProgramTooLarge {
            needed,
            capacity: c.bytes,
            device: device.to_string(),
            limit: c.what,
            advice,
        }),
        _ => Ok(()),
    }
}

/// Refuses to start an execution that allocates more than `device` has free now (step 2 of
/// the module documentation). Call after the inputs are on the device, right before executing.
///
/// # Errors
/// [`Error::OutOfMemory`] with `advice` as the remedy.
pub(super) fn check_free(exe: &LoadedExecutable, device: &Device<'_>, advice: &'static str) -> Result<()> {
    let Some(stats) = stats(exe) else { return Ok(()) };
    let needed = stats.execution_bytes();
    if needed < CHECK_FREE_FROM {
        return Ok(());
    }
    let free = match budget(exe, device) {
        Budget::Host => host_free(),
        Budget::Allocator { limit, in_use } => Some(Bound {
            bytes: limit.saturating_sub(in_use),
            what: "free under the device's allocator limit",
        }),
        Budget::Unknown => None,
    };
    match free {
        Some(f) if needed > f.bytes => Err(Error::OutOfMemory {
            needed,
            available: f.bytes,
            device: device.to_string(),
            limit: f.what,
            advice,
        }),
        _ => Ok(()),
    }
}

const ADDRESS_SPACE: &str = "the process's address-space limit, ulimit -v";
const ADDRESS_SPACE_LEFT: &str = "left under the process's address-space limit, ulimit -v";

/// The host memory a process may use in all: physical memory, cgroup limit, address-space
/// limit, whichever is smallest. The first two are read once per process.
fn host_capacity() -> Option<Bound> {
    static FIXED: Lazy<Option<Bound>> = Lazy::new(|| {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        tightest([
            meminfo_bytes(&meminfo, "MemTotal:").map(|bytes| Bound {
                bytes,
                what: "the host's physical memory",
            }),
            cgroup_limit().map(|(limit, _)| Bound {
                bytes: limit,
                what: "the process's cgroup memory limit",
            }),
        ])
    });
    tightest([
        *FIXED,
        address_space_limit().map(|bytes| Bound {
            bytes,
            what: ADDRESS_SPACE,
        }),
    ])
}

/// The host memory free for this process now: available memory, what its cgroup limit leaves,
/// what its address-space limit leaves, whichever is smallest.
fn host_free() -> Option<Bound> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mapped = || {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        meminfo_bytes(&status, "VmSize:")
    };
    tightest([
        meminfo_bytes(&meminfo, "MemAvailable:").map(|bytes| Bound {
            bytes,
            what: "the host's available memory",
        }),
        cgroup_limit().map(|(_, left)| Bound {
            bytes: left,
            what: "left under the process's cgroup memory limit",
        }),
        address_space_limit().and_then(|limit| {
            Some(Bound {
                bytes: limit.saturating_sub(mapped()?),
                what: ADDRESS_SPACE_LEFT,
            })
        }),
    ])
}

/// The soft `RLIMIT_AS`, `None` when unlimited.
fn address_space_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::As).current
}

/// The value of a `proc(5)` line `Key:   123 kB`, in bytes.
fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    let rest = text.lines().find_map(|l| l.strip_prefix(key))?;
    let mut words = rest.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// The memory limits of the process's cgroup and its ancestors, as `(limit, limit − usage)`
/// of the tightest: the smallest limit, and the smallest of what each limit leaves. `None`
/// when there is no limit (or no cgroup file system to read).
fn cgroup_limit() -> Option<(u64, u64)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let groups: Vec<(u64, u64)> = cgroup_dirs(&own)
        .into_iter()
        .filter_map(|(dir, v2)| {
            let (limit, usage) = if v2 {
                ("memory.max", "memory.current")
            } else {
                ("memory.limit_in_bytes", "memory.usage_in_bytes")
            };
            let read =
                |file: &str| -> Option<u64> { std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok() };
            // v2 writes "max" for no limit (the parse fails); v1 a number near 2^63.
            let limit = read(limit).filter(|&l| l < 1 << 62)?;
            Some((limit, limit.saturating_sub(read(usage).unwrap_or(0))))
        })
        .collect();
    let limit = groups.iter().map(|g| g.0).min()?;
    let left = groups.iter().map(|g| g.1).min()?;
    Some((limit, left))
}

/// The memory-controller folders of the cgroups listed in `/proc/self/cgroup` (`own`) and
/// their ancestors, each with whether it is cgroup v2.
fn cgroup_dirs(own: &str) -> Vec<(PathBuf, bool)> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let (base, v2) = if id == "0" && controllers.is_empty() {
            (root.clone(), true)
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), false)
        } else {
            continue;
        };
        // The path and each ancestor up to the root of the hierarchy (inside a container the
        // listed path may not exist under its mount; the root then stands for it).
        let mut path = PathBuf::from(path.trim_start_matches('/'));
        loop {
            dirs.push((base.join(&path), v2));
            if !path.pop() {
                break;
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_are_read_in_bytes() {
        let text = "MemTotal:       24683584 kB\nMemFree:  1 kB\nMemAvailable:   23739956 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal:"), Some(24_683_584 * 1024));
        assert_eq!(meminfo_bytes(text, "MemAvailable:"), Some(23_739_956 * 1024));
        assert_eq!(meminfo_bytes(text, "VmSize:"), None);
        assert_eq!(meminfo_bytes("HugePages_Total:       0\n", "HugePages_Total:"), Some(0));
    }

    #[test]
    fn cgroup_folders_cover_the_process_group_and_its_ancestors() {
        let own = "4:memory:/a/b\n3:cpu:/x\n0::/s/t\n";
        let dirs = cgroup_dirs(own);
        let has = |p: &str, v2: bool| dirs.contains(&(PathBuf::from(p), v2));
        assert!(has("/sys/fs/cgroup/memory/a/b", false));
        assert!(has("/sys/fs/cgroup/memory/a", false));
        assert!(has("/sys/fs/cgroup/memory", false));
        assert!(has("/sys/fs/cgroup/s/t", true));
        assert!(has("/sys/fs/cgroup", true));
        assert!(!dirs.iter().any(|(p, _)| p.to_string_lossy().contains('x')));
    }

    #[test]
    fn host_memory_is_known_and_free_memory_is_at_most_capacity() {
        let capacity = host_capacity().expect("the host's memory");
        let free = host_free().expect("the host's free memory");
        assert!(
            capacity.bytes > 0 && free.bytes <= capacity.bytes,
            "{capacity:?} {free:?}"
        );
    }
}
