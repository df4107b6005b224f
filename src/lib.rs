//! # nlsq
//!
//! Nonlinear least-squares curve fitting compiled to one XLA program.
//!
//! ```
//! use nlsq::{curve_fit, FitOptions, Params, Tensor};
//!
//! // y = a * exp(-k * x) + c, twelve exact points of a = 2.5, k = 1.3, c = 0.5.
//! let x: Vec<f64> = (0..12).map(|i| 0.25 * i as f64).collect();
//! let y: Vec<f64> = x.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
//! let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
//! let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default())?;
//! assert!(fit.success(), "{}", fit.result);
//! for (got, want) in fit.popt.iter().zip([2.5, 1.3, 0.5]) {
//!     assert!((got - want).abs() < 1e-6, "{}", fit.popt);
//! }
//! # Ok::<(), nlsq::Error>(())
//! ```
//!
//! The model is ordinary Rust over traced tensors ([`Tensor`], [`Params`]); [`curve_fit`]
//! follows `scipy.optimize.curve_fit` (p0, sigma, bounds, method, loss; [`FitOptions`]) and
//! returns a [`CurveFit`] (popt, pcov, perr and the solver's [`FitResult`]); [`least_squares`]
//! takes a residual function instead. The first fit of a shape compiles (about a second), later
//! ones reuse the executable, in memory and on disk.
//!
//! The user's model and the solver loop are traced into StableHLO, compiled by XLA through
//! the PJRT C API, and executed on whatever device the loaded PJRT plugin drives (the pinned
//! OpenXLA CPU plugin by default, a GPU or TPU plugin when `NLSQ_PJRT_PLUGIN` points at one).
//!
//! Layers, lowest first: [`types`] and [`error`] (shared value types), [`pjrt`] (the only
//! module with unchecked FFI code: plugin loading and safe handles over the C API), [`runtime`] (the
//! process-wide default client), [`graph`] (tracing, StableHLO emission, forward-mode autodiff),
//! [`linalg`] and [`solve`] (linear algebra and solvers as graph code), [`fit`] (the front ends,
//! the executable cache), [`expr`] (the expression language), [`models`] (built-in models
//! with estimated starting values). Environment variables:
//! `docs/environment.md`. The PJRT level directly:
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
pub mod models;
pub mod pjrt;
pub mod runtime;
mod settings;
pub mod solve;
#[cfg(test)]
mod test_util;
pub mod types;

pub use error::{Error, PjrtCode, Result};
pub use fit::{curve_fit, least_squares, CurveFit, CurveFitter, FitOptions, FitResult, LeastSquaresOptions, Sigma};
pub use graph::{Params, Tensor};
pub use solve::{Loss, Method, Status};
pub use types::{DType, NativeType, Shape};
