//! Which `malloc` the process (and so the dlopen'ed plugin) uses.
//!
//! nlsq does not choose the process's allocator. A program that links mimalloc built to replace
//! `malloc`, `free` and the rest (libmimalloc-sys with `override`, as the `nlsq` binary does, or
//! this crate's opt-in `mimalloc` feature) exports them from the executable, and the plugin's
//! calls bind to the first definition in the global scope, the executable's. That matters: the
//! plugin makes a great many small allocations when it loads an executable (it builds the HLO
//! module three times), and with glibc's allocator that load took about 1.3 times as long
//! (docs/performance.md, "Cold start"). mimalloc is best built without transparent huge pages
//! (`no_thp`): with them the load was faster still, but about half of the 20-million-point fits
//! ran twice as slow on this project's VMs.

#[cfg(feature = "mimalloc")]
use libmimalloc_sys as _;

/// The allocator that `malloc` resolves to in this process, by name: `"mimalloc"` or `"libc"`.
///
/// `"mimalloc"` when the global `malloc` is mimalloc's `mi_malloc`: with the `mimalloc` feature
/// (nlsq links it), or when the executable exports `mi_malloc` next to the `malloc` it defines
/// (the `nlsq` binary links with `-Wl,--export-dynamic-symbol=mi_malloc`; a preloaded
/// `libmimalloc.so` exports it anyway). `"libc"` otherwise: the C library's `malloc`, or a
/// replacement that nlsq cannot name (mimalloc linked without that export included).
pub fn process_malloc() -> &'static str {
    if imp::malloc_is_mimalloc() {
        "mimalloc"
    } else {
        "libc"
    }
}

#[cfg(unix)]
mod imp {
    use std::ffi::{c_void, CStr};

    /// The address `name` resolves to in the global scope (null when nothing defines it).
    fn global(name: &CStr) -> *const c_void {
        // SAFETY: `dlsym` with `RTLD_DEFAULT` only looks a name up in the global scope; the name
        // is NUL-terminated.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }.cast_const()
    }

    /// Whether the process-wide `malloc` (the symbol the plugin's calls bind to) is mimalloc's.
    pub(super) fn malloc_is_mimalloc() -> bool {
        let found = global(c"malloc");
        if found.is_null() {
            return false;
        }
        #[cfg(feature = "mimalloc")]
        if std::ptr::eq(found, libmimalloc_sys::mi_malloc as *const c_void) {
            return true;
        }
        // mimalloc's override makes `malloc` an alias of `mi_malloc`: the same address.
        std::ptr::eq(found, global(c"mi_malloc"))
    }
}

#[cfg(not(unix))]
mod imp {
    pub(super) fn malloc_is_mimalloc() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    /// The library's unit-test binary does not link mimalloc (only the `mimalloc` feature would):
    /// nlsq leaves the process's `malloc` alone.
    #[test]
    fn nlsq_does_not_replace_malloc_without_the_feature() {
        let expected = if cfg!(feature = "mimalloc") { "mimalloc" } else { "libc" };
        assert_eq!(super::process_malloc(), expected);
    }
}
