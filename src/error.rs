//! The library's one error type.
//!
//! Every failure that can reach a caller is a value of [`Error`]; nothing in the library
//! panics on user input. Variants are grouped by the layer that raises them and carry typed
//! context (the PJRT function and code, the op and shapes, the option and its constraint).

use std::path::PathBuf;

use crate::types::{DType, Shape};

/// Result alias used throughout nlsq.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// PJRT error codes (`PJRT_Error_Code`), which follow absl/gRPC status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PjrtCode {
    /// The operation was cancelled.
    Cancelled,
    /// Unknown error.
    Unknown,
    /// The caller passed an invalid argument (this includes MLIR that does not parse).
    InvalidArgument,
    /// A deadline passed.
    DeadlineExceeded,
    /// Something was not found.
    NotFound,
    /// Something already exists.
    AlreadyExists,
    /// Permission denied.
    PermissionDenied,
    /// Out of memory or another resource.
    ResourceExhausted,
    /// The system is not in a state required for the operation.
    FailedPrecondition,
    /// The operation was aborted.
    Aborted,
    /// Out of range.
    OutOfRange,
    /// Not implemented by this plugin.
    Unimplemented,
    /// Internal error of the plugin.
    Internal,
    /// Unavailable.
    Unavailable,
    /// Unrecoverable data loss.
    DataLoss,
    /// Not authenticated.
    Unauthenticated,
    /// A code this version of nlsq does not know.
    Other(i32),
}

impl PjrtCode {
    /// Maps the raw `PJRT_Error_Code` value.
    pub fn from_raw(code: i32) -> Self {
        match code {
            1 => PjrtCode::Cancelled,
            2 => PjrtCode::Unknown,
            3 => PjrtCode::InvalidArgument,
            4 => PjrtCode::DeadlineExceeded,
            5 => PjrtCode::NotFound,
            6 => PjrtCode::AlreadyExists,
            7 => PjrtCode::PermissionDenied,
            8 => PjrtCode::ResourceExhausted,
            9 => PjrtCode::FailedPrecondition,
            10 => PjrtCode::Aborted,
            11 => PjrtCode::OutOfRange,
            12 => PjrtCode::Unimplemented,
            13 => PjrtCode::Internal,
            14 => PjrtCode::Unavailable,
            15 => PjrtCode::DataLoss,
            16 => PjrtCode::Unauthenticated,
            other => PjrtCode::Other(other),
        }
    }
}

/// Everything that can go wrong in nlsq.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- runtime provisioning and loading -------------------------------------------------
    /// The PJRT plugin could not be provisioned (fetched, verified, extracted or found).
    #[error(transparent)]
    Provision(#[from] xla_build::Error),

    /// The plugin file exists but could not be loaded as a PJRT plugin.
    #[error("cannot load PJRT plugin {path:?}: {reason} (set NLSQ_PJRT_PLUGIN to a PJRT plugin .so)")]
    PluginLoad {
        /// The file that was opened.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The plugin speaks a PJRT C API major version these bindings do not understand.
    #[error(
        "PJRT plugin {path:?} implements C API {found_major}.{found_minor}, but nlsq was built \
         against {expected_major}.{expected_minor} (major versions must match)"
    )]
    ApiVersion {
        /// The plugin file.
        path: PathBuf,
        /// Major version the plugin reports.
        found_major: i32,
        /// Minor version the plugin reports.
        found_minor: i32,
        /// Major version of the bindings.
        expected_major: i32,
        /// Minor version of the bindings.
        expected_minor: i32,
    },

    // ---- PJRT calls --------------------------------------------------------------------------
    /// A PJRT C API call returned an error.
    #[error("{function} failed ({code:?}) while {doing}: {message}")]
    Pjrt {
        /// The C API function that failed.
        function: &'static str,
        /// The error code it returned.
        code: PjrtCode,
        /// The plugin's message.
        message: String,
        /// What nlsq was doing.
        doing: String,
    },

    /// The plugin lacks a C API function that nlsq needs.
    #[error("the PJRT plugin does not implement {function}")]
    MissingFunction {
        /// Name of the missing entry of the function table.
        function: &'static str,
    },

    /// Arguments handed to an executable or a buffer constructor do not match what it expects.
    /// Raised before anything reaches PJRT.
    #[error("invalid argument for {what}: {reason}")]
    InvalidArgument {
        /// The operation (e.g. `execute`, `buffer_from_host`).
        what: &'static str,
        /// What did not match.
        reason: String,
    },

    /// A host read asked for a different element type than the buffer holds.
    #[error("buffer holds {actual} but {requested} was requested")]
    BufferDType {
        /// Element type of the buffer.
        actual: DType,
        /// Element type requested.
        requested: DType,
    },

    // ---- device memory -----------------------------------------------------------------------
    /// A compiled program needs more memory than its device has at all: the input is too large
    /// for this device. Raised before the program's inputs are copied to the device.
    #[error(
        "the program needs {} of device memory but {device} has {} ({limit}): {advice}",
        bytes(*needed),
        bytes(*capacity)
    )]
    ProgramTooLarge {
        /// Bytes the program occupies while it runs (machine code, arguments, results, scratch).
        needed: u64,
        /// Bytes the device has in all.
        capacity: u64,
        /// The device.
        device: String,
        /// Where the capacity comes from (the device's allocator, the host's memory, the
        /// process's address-space limit, a cgroup's memory limit).
        limit: &'static str,
        /// What to change so that the program fits.
        advice: &'static str,
    },

    /// A compiled program would fit its device, but what one execution allocates (results and
    /// scratch memory) is more than the device has free now. Raised before the execution
    /// starts.
    #[error(
        "the program needs {} more of device memory but {device} has {} free ({limit}): {advice}",
        bytes(*needed),
        bytes(*available)
    )]
    OutOfMemory {
        /// Bytes one execution allocates beyond its arguments.
        needed: u64,
        /// Bytes free on the device now.
        available: u64,
        /// The device.
        device: String,
        /// Where the free memory comes from (as for [`Error::ProgramTooLarge`]).
        limit: &'static str,
        /// What to change so that the program fits.
        advice: &'static str,
    },

    // ---- graph tracing -----------------------------------------------------------------------
    /// Operand shapes are incompatible for an op.
    #[error("{op}: shape mismatch, lhs {lhs}, rhs {rhs}")]
    ShapeMismatch {
        /// The op being traced.
        op: &'static str,
        /// First operand shape.
        lhs: Shape,
        /// Second operand shape.
        rhs: Shape,
    },

    /// Operand element types are incompatible for an op.
    #[error("{op}: dtype mismatch, lhs {lhs}, rhs {rhs}")]
    DTypeMismatch {
        /// The op being traced.
        op: &'static str,
        /// First operand dtype.
        lhs: DType,
        /// Second operand dtype.
        rhs: DType,
    },

    /// An axis or dimension index is out of range for the operand's rank.
    #[error("{op}: axis {axis} out of range for rank {rank}")]
    InvalidAxis {
        /// The op being traced.
        op: &'static str,
        /// The offending axis.
        axis: i64,
        /// Rank of the operand.
        rank: usize,
    },

    /// Any other invalid use of the graph builder (bad slice bounds, wrong dtype class, ...).
    #[error("{op}: {reason}")]
    InvalidOp {
        /// The op being traced.
        op: &'static str,
        /// What is wrong.
        reason: String,
    },

    // ---- fitting -----------------------------------------------------------------------------
    /// A user option is outside its allowed range.
    #[error("invalid option {field} = {value}: must be {constraint}")]
    InvalidOption {
        /// Option name (scipy's spelling).
        field: &'static str,
        /// The value given.
        value: String,
        /// The constraint it violates.
        constraint: &'static str,
    },

    /// Input data are unusable (NaN, length mismatch, ...).
    #[error("invalid input {field}: {reason}")]
    InvalidInput {
        /// Which input.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A named parameter ([`crate::fit::Parameters`]) that cannot be fitted as given: a bad
    /// name, a non-finite value, bounds that exclude its value or a tie that has bounds, a tie
    /// naming an unknown parameter or forming a cycle, or no parameter left to vary.
    #[error("parameter '{name}': {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// An expression of the expression language does not parse or uses an unknown name.
    #[error("{line}:{column}: {message}")]
    Parse {
        /// 1-based line of the offending token.
        line: usize,
        /// 1-based column of the offending token.
        column: usize,
        /// What is wrong.
        message: String,
    },

    /// A built-in model name (see [`crate::models`]) that nlsq does not have.
    #[error("unknown built-in model '{name}' (built-ins: {builtins})")]
    UnknownModel {
        /// The name as given.
        name: String,
        /// The built-in models, comma-separated.
        builtins: String,
    },

    /// Something nlsq itself got wrong: a compiled program's outputs that do not have the layout
    /// its host side expects, a status code no solver produces. Not the caller's input; please
    /// report it.
    #[error("internal error ({what}): {detail}")]
    Internal {
        /// Which part.
        what: &'static str,
        /// What was found.
        detail: String,
    },

    /// An I/O error with what was being done.
    #[error("{doing}: {source}")]
    Io {
        /// What nlsq was doing.
        doing: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// `n` bytes in decimal units with three significant digits (`12.4 GB`), for messages.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value < 9.995 {
        2
    } else if value < 99.95 {
        1
    } else {
        0
    };
    format!("{value:.digits$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_print_with_three_digits() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(999), "999 bytes");
        assert_eq!(bytes(1000), "1.00 kB");
        assert_eq!(bytes(12_412_345_678), "12.4 GB");
        assert_eq!(bytes(999_499_999), "999 MB");
        assert_eq!(bytes(999_500_000), "1.00 GB");
        assert_eq!(bytes(u64::MAX), "18.4 EB");
    }

    #[test]
    fn memory_errors_print_one_line_with_both_sizes() {
        let e = Error::ProgramTooLarge {
            needed: 12_400_000_000,
            capacity: 2_000_000_000,
            device: "TFRT_CPU_0 (id 0)".into(),
            limit: "the process's address-space limit, ulimit -v",
            advice: "fit fewer points",
        };
        assert_eq!(
            e.to_string(),
            "the program needs 12.4 GB of device memory but TFRT_CPU_0 (id 0) has 2.00 GB (the \
             process's address-space limit, ulimit -v): fit fewer points"
        );
    }

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_and_prints_one_line() {
        assert_send_sync::<Error>();
        let e = Error::ShapeMismatch {
            op: "add",
            lhs: Shape::from([3]),
            rhs: Shape::from([4]),
        };
        assert_eq!(e.to_string(), "add: shape mismatch, lhs [3], rhs [4]");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn pjrt_codes_map_from_raw() {
        assert_eq!(PjrtCode::from_raw(3), PjrtCode::InvalidArgument);
        assert_eq!(PjrtCode::from_raw(99), PjrtCode::Other(99));
    }
}
