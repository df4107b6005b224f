//! Dense linear algebra written as graph code: Householder QR, one-sided Jacobi SVD,
//! triangular solves, Cholesky, and the SVD-based pseudo-inverse and covariance.
//!
//! Every function here takes and returns traced [`Tensor`]s of `f64` with static shapes, so
//! the factorizations run *inside* the compiled program (no LAPACK or cuSOLVER custom calls,
//! which a bare PJRT plugin cannot run). They are the building blocks of the TRF and LM
//! solvers, which per iteration factor `A = [J | f]`:
//!
//! ```text
//!   A = Q R_aug,   R_aug = [ R  Qᵀf ]      (householder_qr_r: R only, Q never formed)
//!                          [ 0   ρ  ]      |ρ| = min_x ‖J x − f‖
//!   R D = U diag(s) Vᵀ                     (jacobi_svd of the small n×n factor)
//! ```
//!
//! and then do only `n × n` work.
//!
//! # Conventions
//!
//! * Matrices are rank-2 `f64` tensors, row-major `[rows, cols]`; vectors are rank 1.
//! * Functions never panic. A shape or dtype problem (not a matrix, `m < n` where `m ≥ n` is
//!   required, mismatched right-hand side) is recorded in the [`Graph`](crate::graph::Graph)
//!   like any other tracing error and returned by `Graph::finish` (or by
//!   `Graph::try_with` around the call); the returned tensor is then a placeholder.
//! * Numerical trouble is never an error: a singular triangular system gives `inf`/`NaN`
//!   entries, a matrix that is not positive definite gives a Cholesky factor with `NaN`s
//!   (see [`cholesky`]), and rank deficiency gives zero singular values.
//!
//! # Cost model
//!
//! On XLA:CPU every kernel has a fixed cost and every distinct shape is compiled separately,
//! so the algorithms are written as `while` loops whose bodies are a few whole-array ops
//! (kernels per step and compile and execute times: `docs/kernels.md`).
//!
//! # References
//!
//! * G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., Johns Hopkins, 2013:
//!   §5.1 (Householder vectors, Alg. 5.1.1), §5.2 (Householder QR), §8.6.3 (one-sided
//!   Jacobi), §3.1 (triangular systems), §4.2 (Cholesky).
//! * R. P. Brent, F. T. Luk, "The solution of singular-value and symmetric eigenvalue
//!   problems on multiprocessor arrays", SIAM J. Sci. Stat. Comput. 6 (1985) 69–84.
//! * J. Demmel, K. Veselić, "Jacobi's method is more accurate than QR", SIAM J. Matrix
//!   Anal. Appl. 13 (1992) 1204–1245.
//! * SciPy `curve_fit` (`scipy/optimize/_minpack_py.py`): covariance from the SVD of the
//!   Jacobian with the cut-off `eps · max(m, n) · s₀`.

pub mod batched;
pub mod gram;
pub mod householder_qr;
pub mod jacobi_svd;
pub mod lstsq;
pub mod triangular;

pub use householder_qr::{cache_block_rows, householder_qr, householder_qr_r, householder_qr_r_blocked};
pub use jacobi_svd::{jacobi_svd, jacobi_svd_with, JacobiOptions, JacobiSvd};
pub use lstsq::{covariance_from_svd, pinv, pinv_from_svd, scipy_cutoff, svd};
pub use triangular::{cholesky, solve_lower_triangular, solve_upper_triangular};

use crate::error::Error;
use crate::graph::Tensor;
use crate::types::{DType, Shape};

/// Machine epsilon of `f64` (`2⁻⁵²`), the unit of every tolerance in this module.
pub const EPS: f64 = f64::EPSILON;

/// Records an [`Error::InvalidOp`] on `x`'s graph and returns a placeholder of `f64[shape]`.
pub(crate) fn invalid(x: &Tensor, op: &'static str, reason: String, shape: impl Into<Shape>) -> Tensor {
    let g = x.graph();
    g.record(Error::InvalidOp { op, reason });
    g.poison(crate::graph::TensorType::new(DType::F64, shape))
}

/// The `[rows, cols]` that placeholder results of an invalid input `x` are shaped by: its first
/// two dimensions where it has them, at least `min`.
pub(crate) fn placeholder_dims(x: &Tensor, min: i64) -> (i64, i64) {
    let dims = x.dims();
    let dim = |i: usize| dims.get(i).copied().unwrap_or(min).max(min);
    (dim(0), dim(1))
}

/// The `[rows, cols]` of an `f64` matrix, or the reason it is not one.
pub(crate) fn matrix_dims(x: &Tensor) -> Result<(i64, i64), String> {
    let ty = x.ty();
    if ty.dtype != DType::F64 {
        return Err(format!("expected an f64 matrix, got {ty}"));
    }
    match ty.dims() {
        [m, n] => Ok((*m, *n)),
        _ => Err(format!("expected a matrix (rank 2), got {ty}")),
    }
}
