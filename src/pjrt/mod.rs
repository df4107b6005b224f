//! Safe handles over the PJRT C API: the only module of nlsq with `unsafe` code.
//!
//! * [`Plugin`]: a dlopen'ed PJRT plugin (never unloaded), version-checked and initialised once.
//! * [`Client`]: platform name and version, addressable [`Device`]s (and their memory,
//!   [`DeviceMemoryStats`]), compile, host transfers.
//! * [`Buffer`]: device memory of f64, f32, i64, i32 or bool elements of any shape.
//! * [`LoadedExecutable`]: a compiled program; execute, serialize, deserialize, its memory
//!   needs ([`CompiledMemoryStats`]).
//! * [`Event`]: completion of asynchronous work and the error it carries.
//! * [`affinity`]: the CPUs a thread may run on (Linux).
//! * [`process_malloc`]: which `malloc` the process (the plugin included) uses.
//!
//! Every handle frees its C object in `Drop`. Every C error becomes [`crate::Error::Pjrt`] with
//! the function, the code, the plugin's message and what was being done.
//!
//! # References
//! - `xla/pjrt/c/pjrt_c_api.h` (OpenXLA), C API 0.81 as shipped in `xla-cpu-pjrt==0.0.1`.
// The crate denies `unsafe_code` (Cargo.toml [lints]); this module is the one exception.
#![allow(unsafe_code)]

pub mod affinity;
pub(crate) mod api;
mod buffer;
mod client;
mod compile_options;
mod event;
mod executable;
mod malloc;
mod plugin;
#[allow(unsafe_op_in_unsafe_fn, clippy::all, unreachable_pub)]
pub(crate) mod sys;

pub use buffer::{Buffer, HostVec};
pub use client::{Client, Device, DeviceLease, DeviceMemoryStats};
pub use compile_options::CompileOptions;
pub use event::Event;
pub(crate) use executable::envelope_head_len;
pub use executable::{CompiledMemoryStats, LoadedExecutable, Signature, TensorSpec};
pub use malloc::process_malloc;
pub use plugin::{NamedValue, Plugin};

/// The PJRT C API version these bindings were generated from, `(major, minor)`.
pub const BINDINGS_API_VERSION: (u32, u32) = (sys::PJRT_API_MAJOR, sys::PJRT_API_MINOR);

/// Ends the process now with `code`, after flushing Rust's standard output and error, without
/// running static destructors: for a command-line program whose work is done. A loaded plugin's
/// teardown (its thread pools, the compiler's global state) is a noticeable part of a short
/// `nlsq fit` run (docs/performance.md, "Figures behind the runtime's choices"). Files the
/// program wrote must be closed (flushed) before; nothing of nlsq's own needs a destructor at
/// exit.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    extern "C" {
        fn _exit(code: i32) -> !;
    }
    // SAFETY: `_exit` (POSIX) takes any int and does not return; Rust's buffered standard
    // streams were flushed above, and no Rust destructor is required for correctness here.
    unsafe { _exit(code) }
}
