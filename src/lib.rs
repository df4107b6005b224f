//! # nlsq
//!
//! Nonlinear least-squares curve fitting compiled to one XLA program.
//!
//! The user's model and the solver loop are traced into StableHLO, compiled by XLA through
//! the PJRT C API, and executed on whatever device the loaded PJRT plugin drives (the pinned
//! OpenXLA CPU plugin by default, a GPU or TPU plugin when `NLSQ_PJRT_PLUGIN` points at one).
//!
//! Layers, lowest first: [`types`] and [`error`] (shared value types), [`pjrt`] (the only
//! module with unchecked FFI code: plugin loading and safe handles over the C API), [`runtime`] (the
//! process-wide default client), [`graph`] (tracing, StableHLO emission, forward-mode autodiff).
//!
//! ```no_run
//! # fn main() -> nlsq::Result<()> {
//! let client = nlsq::runtime::client()?;
//! let exe = client.compile(
//!     "func.func @main(%x: tensor<3xf64>) -> tensor<3xf64> {
//!        %y = stablehlo.multiply %x, %x : tensor<3xf64>
//!        return %y : tensor<3xf64>
//!      }",
//! )?;
//! let x = client.buffer_from_host(&[1.0f64, 2.0, 3.0], &[3])?;
//! let y = exe.execute(&[&x])?;
//! assert_eq!(y[0].to_vec::<f64>()?, vec![1.0, 4.0, 9.0]);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod expr;
pub mod fit;
pub mod graph;
pub mod linalg;
pub mod pjrt;
pub mod runtime;
mod settings;
pub mod solve;
#[cfg(test)]
mod test_util;
pub mod types;

pub use error::{Error, PjrtCode, Result};
pub use types::{DType, NativeType, Shape};
