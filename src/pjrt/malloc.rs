//! Which `malloc` the process (and so the dlopen'ed plugin) uses.
//!
//! With the `mimalloc` feature (on by default), nlsq links mimalloc built to replace `malloc`,
//! `free` and the rest for the whole process: the executable exports them, and the plugin's
//! calls bind to the first definition in the global scope, the executable's. The plugin makes
//! a great many small allocations when it loads an executable (it builds the HLO module three
//! times); with glibc's allocator that load took about 1.3 times as long (docs/performance.md, "Cold start").
//! mimalloc is built without transparent huge pages (`no_thp`): with them the load was faster
//! still, but about half of the 20-million-point fits ran twice as slow on this project's VMs.

#[cfg(feature = "mimalloc")]
use libmimalloc_sys as _;

/// The allocator that `malloc` resolves to in this process, by name: `"mimalloc"` when nlsq's
/// replacement is in effect (the `mimalloc` feature, in an executable that links it), `"libc"`
/// otherwise (for instance in a shared library loaded into a program with its own `malloc`).
pub fn process_malloc() -> &'static str {
    if imp::malloc_is_mimalloc() {
        "mimalloc"
    } else {
        "libc"
    }
}

#[cfg(all(feature = "mimalloc", unix))]
mod imp {
    /// Whether the process-wide `malloc` (the symbol the plugin's calls bind to) is mimalloc's.
    pub(super) fn malloc_is_mimalloc() -> bool {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` only looks a name up in the global scope; the name
        // is a NUL-terminated literal.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
        let ours = libmimalloc_sys::mi_malloc as *const libc::c_void;
        std::ptr::eq(found.cast_const(), ours)
    }
}

#[cfg(not(all(feature = "mimalloc", unix)))]
mod imp {
    pub(super) fn malloc_is_mimalloc() -> bool {
        false
    }
}
